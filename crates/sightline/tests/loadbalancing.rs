//! Agents and gateways on loopback, all the real binary: two agents whose `loadbalancing`
//! exporter spreads traces over three gateways, each gateway exporting to its own recording
//! OTLP backend, and the Rust SDK as the client. The traces are distributed: each has a span
//! sent through each agent, so they meet only if both agents route by the same ring.
//! (The Python SDK and the collector's ring are in tests/python/test_diff_loadbalancing.py.)

mod common;

use common::*;
use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, SdkTracerProvider};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A gateway: OTLP in on `port`, ownership, OTLP out to `sink` through a disk queue that
/// acknowledges after persisting (so a kill -9 loses nothing it acknowledged).
fn start_gateway(dir: &Path, port: u16, sink: u16) -> Sightline {
    std::fs::create_dir_all(dir.join("catalog")).unwrap();
    std::fs::write(dir.join("catalog/teams.yaml"), CATALOG).unwrap();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{port}" }}
      http: {{ endpoint: "127.0.0.1:{{http}}" }}
processors:
  ownership:
    catalog: ["{{dir}}/catalog"]
exporters:
  otlp/backend:
    endpoint: 127.0.0.1:{sink}
    tls: {{ insecure: true }}
    sending_queue:
      storage: disk
      directory: "{{dir}}/queue"
      fsync: batch
      durability: ack_after_persist
      batch: {{ flush_timeout: 20ms }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{{admin}}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [ownership], exporters: [otlp/backend] }}
"#
    );
    Sightline::start(dir, &config)
}

/// An agent: OTLP in, the `loadbalancing` exporter over `gateways` (static resolver).
fn start_agent(dir: &Path, gateways: &[u16]) -> Sightline {
    let hosts: Vec<String> = gateways.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let sections = format!(
        r#"exporters:
  loadbalancing:
    protocol:
      otlp:
        tls: {{ insecure: true }}
        timeout: 2s
    resolver:
      static: {{ hostnames: [{}] }}
    sending_queue: {{ batch: {{ flush_timeout: 20ms }} }}
"#,
        hosts.join(", ")
    );
    let pipelines = "    traces: { receivers: [otlp], processors: [], exporters: [loadbalancing] }\n";
    Sightline::start(dir, &otlp_config(&sections, pipelines))
}

/// Trace and span ids from a counter, so a run can send the same traces again.
#[derive(Debug)]
struct Ids(AtomicU64);

impl IdGenerator for Ids {
    fn new_trace_id(&self) -> opentelemetry::trace::TraceId {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        // Spread over the id space like random ids (the ring hashes them anyway).
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
        opentelemetry::trace::TraceId::from_bytes(b)
    }
    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        opentelemetry::trace::SpanId::from_bytes((self.0.fetch_add(1, Ordering::Relaxed) | 1 << 63).to_be_bytes())
    }
}

fn provider(agent: &Sightline, service: &str, ids: Option<Ids>) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://127.0.0.1:{}", agent.grpc))
        .build()
        .unwrap();
    let mut b = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service.to_string()).build())
        .with_batch_exporter(exporter);
    if let Some(ids) = ids {
        b = b.with_id_generator(ids);
    }
    b.build()
}

/// Sends `n` traces of two spans, the first through `a`, its child through `b`.
fn send_traces(a: &SdkTracerProvider, b: &SdkTracerProvider, n: usize, pace: Option<Duration>) {
    let (ta, tb) = (a.tracer("front"), b.tracer("back"));
    for i in 0..n {
        let mut front = ta.start(format!("front-{i}"));
        let cx = Context::new().with_remote_span_context(front.span_context().clone());
        let mut back = tb.start_with_context(format!("back-{i}"), &cx);
        back.set_attribute(KeyValue::new("i", i as i64));
        back.end();
        front.end();
        if let Some(p) = pace {
            std::thread::sleep(p);
        }
    }
}

/// (trace id, span id) of every span a backend received, with repeats.
fn spans(sink: &Sink) -> Vec<(Vec<u8>, Vec<u8>)> {
    sink.traces
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| (s.trace_id.clone(), s.span_id.clone()))
        .collect()
}

/// trace id -> the gateways (indices) that received a span of it.
fn placement(sinks: &[Sink]) -> HashMap<Vec<u8>, HashSet<usize>> {
    let mut out: HashMap<Vec<u8>, HashSet<usize>> = HashMap::new();
    for (g, s) in sinks.iter().enumerate() {
        for (t, _) in spans(s) {
            out.entry(t).or_default().insert(g);
        }
    }
    out
}

fn start_sinks(rt: &tokio::runtime::Runtime, n: usize) -> (Vec<Sink>, Vec<u16>) {
    (0..n).map(|_| Sink::start(rt)).unzip()
}

fn total(sinks: &[Sink]) -> usize {
    sinks.iter().map(Sink::span_count).sum()
}

#[test]
fn every_span_of_a_trace_reaches_one_gateway_through_either_agent() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let _guard = rt.enter();
    let (sinks, sink_ports) = start_sinks(&rt, 3);
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let _gateways: Vec<_> = (0..3).map(|g| start_gateway(dirs[g].path(), ports[g], sink_ports[g])).collect();
    let agents = [start_agent(dirs[3].path(), &ports), start_agent(dirs[4].path(), &ports)];
    let (a, b) = (provider(&agents[0], "checkout", None), provider(&agents[1], "search-api", None));
    send_traces(&a, &b, 300, None);
    a.force_flush().unwrap();
    b.force_flush().unwrap();
    assert!(wait_until(30, || total(&sinks) >= 600), "{} of 600 spans arrived", total(&sinks));
    let p = placement(&sinks);
    assert_eq!(p.len(), 300);
    let split: Vec<_> = p.iter().filter(|(_, g)| g.len() != 1).collect();
    assert!(split.is_empty(), "traces split over gateways: {split:?}");
    for g in 0..3 {
        let n = p.values().filter(|s| s.contains(&g)).count();
        assert!(n > 50, "gateway {g} got {n} of 300 traces");
    }
    // The gateways enriched what they received.
    let t = sinks[0].traces.lock().unwrap();
    let r = t[0].resource_spans[0].resource.as_ref().unwrap();
    assert!(attr(&r.attributes, "owner.team").is_some());
}

#[test]
fn a_fourth_gateway_takes_about_a_quarter_of_the_traces_and_nothing_else_moves() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let _guard = rt.enter();
    let (sinks, sink_ports) = start_sinks(&rt, 4);
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let _gateways: Vec<_> = (0..4).map(|g| start_gateway(dirs[g].path(), ports[g], sink_ports[g])).collect();
    let n = 400;
    let run = |gateways: &[u16], dir: &Path| -> HashMap<Vec<u8>, usize> {
        for s in &sinks {
            s.traces.lock().unwrap().clear();
        }
        let agent = start_agent(dir, gateways);
        let a = provider(&agent, "checkout", Some(Ids(AtomicU64::new(1))));
        let b = provider(&agent, "search-api", Some(Ids(AtomicU64::new(1 << 40))));
        send_traces(&a, &b, n, None);
        a.force_flush().unwrap();
        b.force_flush().unwrap();
        assert!(wait_until(30, || total(&sinks) >= 2 * n), "{} of {} spans", total(&sinks), 2 * n);
        placement(&sinks)
            .into_iter()
            .map(|(t, g)| {
                assert_eq!(g.len(), 1);
                (t, g.into_iter().next().unwrap())
            })
            .collect()
    };
    let before = run(&ports[..3], dirs[4].path());
    let after = run(&ports, dirs[5].path());
    let front: Vec<_> = before.keys().filter(|t| after.contains_key(*t)).collect();
    assert_eq!(front.len(), before.len(), "the same trace ids were sent twice");
    let moved: Vec<_> = front.iter().filter(|t| before[**t] != after[**t]).collect();
    assert!(moved.iter().all(|t| after[**t] == 3), "a trace moved between the old gateways");
    let share = moved.len() as f64 / front.len() as f64;
    assert!((0.12..=0.40).contains(&share), "{share:.2} of the traces moved to the new gateway (about 0.25 expected)");
}

#[test]
fn killing_a_gateway_mid_stream_loses_no_acknowledged_span() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let _guard = rt.enter();
    let (sinks, sink_ports) = start_sinks(&rt, 3);
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut gateways: Vec<_> = (0..3).map(|g| start_gateway(dirs[g].path(), ports[g], sink_ports[g])).collect();
    let mut agents = [start_agent(dirs[3].path(), &ports), start_agent(dirs[4].path(), &ports)];
    let (a, b) = (provider(&agents[0], "checkout", None), provider(&agents[1], "search-api", None));
    let n = 1500;
    std::thread::scope(|s| {
        let sender = s.spawn(|| send_traces(&a, &b, n, Some(Duration::from_micros(700))));
        // Mid-stream: kill -9 one gateway.
        assert!(wait_until(30, || total(&sinks) > n / 2), "the stream did not start");
        gateways[1].signal(9);
        let _ = gateways[1].child.wait();
        sender.join().unwrap();
    });
    a.force_flush().unwrap();
    b.force_flush().unwrap();
    // What the agents acknowledged to the SDK.
    let accepted: f64 = agents
        .iter_mut()
        .map(|ag| ag.metric("otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"}").unwrap_or(0.0))
        .sum();
    assert_eq!(accepted as usize, 2 * n, "the SDK had every span acknowledged");
    // The killed gateway comes back on its queue directory and delivers what it had persisted.
    gateways[1] = start_gateway(dirs[1].path(), ports[1], sink_ports[1]);
    let unique = || sinks.iter().flat_map(spans).collect::<HashSet<_>>().len();
    assert!(
        wait_until(60, || unique() >= 2 * n),
        "{} of {} acknowledged spans arrived\nagent 0:\n{}",
        unique(),
        2 * n,
        agents[0].stderr()
    );
    let received = total(&sinks);
    println!("{} spans received for {} sent: {} duplicates", received, 2 * n, received - 2 * n);
    let failed: f64 = agents
        .iter_mut()
        .map(|ag| ag.metric("otelcol_exporter_send_failed_spans{exporter=\"loadbalancing\"}").unwrap_or(0.0))
        .sum();
    assert_eq!(failed, 0.0, "the agents failed over instead of giving up");
}
