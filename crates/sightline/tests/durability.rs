//! Durability with real processes: the `sightline` binary with a disk queue (or a memory
//! queue) in front of an OTLP/gRPC sink that can be stopped and started again on the same
//! port, and a client that sends spans with unique ids and remembers which requests were
//! acknowledged.
//!
//! What is asserted is counts, never timings: every span whose request got a success response
//! reaches the sink at least once (duplicates are allowed and printed); with a memory queue,
//! what is lost equals `otelcol_exporter_enqueue_failed_spans`. Every wait is bounded.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counts every span id it receives.
#[derive(Clone, Default)]
struct IdSink {
    seen: Arc<Mutex<HashMap<u64, u32>>>,
}

#[tonic::async_trait]
impl TraceService for IdSink {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut seen = self.seen.lock().unwrap();
        for rs in &r.get_ref().resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let mut id = [0u8; 8];
                    id.copy_from_slice(&s.span_id[..8]);
                    *seen.entry(u64::from_be_bytes(id)).or_default() += 1;
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl IdSink {
    fn unique(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    fn duplicates(&self) -> u64 {
        self.seen.lock().unwrap().values().map(|&n| u64::from(n.saturating_sub(1))).sum()
    }
    fn missing(&self, ids: &[u64]) -> Vec<u64> {
        let seen = self.seen.lock().unwrap();
        ids.iter().copied().filter(|id| !seen.contains_key(id)).collect()
    }
}

/// The sink on `port`, in a runtime of its own: dropping it (shutdown_background) is the
/// backend going away, connections and all.
fn start_sink(port: u16, sink: &IdSink) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = rt
        .block_on(async {
            for _ in 0..100 {
                if let Ok(l) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                    return Some(l);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None
        })
        .expect("sink port free again");
    let s = sink.clone();
    rt.spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(s))
            .serve_with_incoming(incoming(listener))
            .await;
    });
    rt
}

const SPANS_PER_REQUEST: u64 = 50;

fn request(i: u64) -> ExportTraceServiceRequest {
    let spans = (0..SPANS_PER_REQUEST)
        .map(|j| {
            let id = i * SPANS_PER_REQUEST + j;
            Span {
                trace_id: [[1u8; 8], id.to_be_bytes()].concat(),
                span_id: id.to_be_bytes().to_vec(),
                name: format!("op-{id}"),
                start_time_unix_nano: 1_700_000_000_000_000_000 + id,
                end_time_unix_nano: 1_700_000_000_000_001_000 + id,
                ..Default::default()
            }
        })
        .collect();
    let attr = KeyValue {
        key: "service.name".into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue("checkout".into())) }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![attr], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn ids_of(requests: &[u64]) -> Vec<u64> {
    requests.iter().flat_map(|i| (0..SPANS_PER_REQUEST).map(move |j| i * SPANS_PER_REQUEST + j)).collect()
}

/// What a client run did: requests acknowledged, refused (an error status) or never answered.
#[derive(Default)]
struct Outcome {
    acked: Vec<u64>,
    refused: Vec<u64>,
}

/// Sends requests `range` one after the other to the port in `port` (which changes when
/// sightline restarts). With `retry`, a request that fails is sent again until it succeeds
/// (bounded); without, each request is sent once.
async fn client(port: Arc<AtomicU16>, range: std::ops::Range<u64>, retry: bool, out: Arc<Mutex<Outcome>>) {
    let mut conn: Option<(u16, TraceServiceClient<tonic::transport::Channel>)> = None;
    for i in range {
        for attempt in 0..600 {
            let p = port.load(Ordering::SeqCst);
            if conn.as_ref().is_none_or(|(cp, _)| *cp != p) {
                conn = TraceServiceClient::connect(format!("http://127.0.0.1:{p}")).await.ok().map(|c| (p, c));
            }
            let res = match &mut conn {
                Some((_, c)) => c.export(request(i)).await.map(|_| ()),
                None => Err(tonic::Status::unavailable("no connection")),
            };
            match res {
                Ok(()) => {
                    out.lock().unwrap().acked.push(i);
                    break;
                }
                Err(e) => {
                    if e.code() == tonic::Code::Unavailable || e.code() == tonic::Code::Unknown {
                        conn = None;
                    }
                    if !retry || attempt == 599 {
                        out.lock().unwrap().refused.push(i);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

fn config(sink_port: u16, queue: &str) -> String {
    let sections = format!(
        r#"exporters:
  otlp/sink:
    endpoint: 127.0.0.1:{sink_port}
    tls:
      insecure: true
    compression: none
    timeout: 2s
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 300ms
      max_elapsed_time: 0s
    sending_queue:
{queue}"#
    );
    let pipelines = r#"    traces:
      receivers: [otlp]
      exporters: [otlp/sink]
"#;
    otlp_config(&sections, pipelines)
}

fn disk_queue(dir: &Path) -> String {
    format!(
        "      storage: disk\n      directory: \"{}/queue\"\n      fsync: batch\n      num_consumers: 4\n",
        dir.display()
    )
}

/// kill -9 in the middle of a stream, three times, each time restarted on the same queue
/// directory: every span of every acknowledged request reaches the sink at least once.
#[test]
fn sigkill_mid_stream_loses_no_acknowledged_span() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sink = IdSink::default();
    let sink_port = free_port();
    let _sink_rt = start_sink(sink_port, &sink);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(sink_port, &disk_queue(dir.path()));
    let mut sl = Sightline::start(dir.path(), &cfg);
    let port = Arc::new(AtomicU16::new(sl.grpc));
    let out = Arc::new(Mutex::new(Outcome::default()));
    const REQUESTS: u64 = 600;
    let client = rt.spawn(client(port.clone(), 0..REQUESTS, true, out.clone()));
    let mut kills = 0;
    for k in 1..=3u64 {
        // Kill once a quarter, a half, three quarters of the requests are acknowledged.
        let target = (k * REQUESTS / 4) as usize;
        assert!(wait_until(120, || out.lock().unwrap().acked.len() >= target), "client stalled:\n{}", sl.stderr());
        sl.signal(9);
        let _ = sl.child.wait();
        kills += 1;
        sl = Sightline::start(dir.path(), &cfg);
        port.store(sl.grpc, Ordering::SeqCst);
    }
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(300), client).await }).expect("client done").unwrap();
    let acked = out.lock().unwrap().acked.clone();
    assert_eq!(acked.len() as u64, REQUESTS, "the client retries until each request is acknowledged");
    let ids = ids_of(&acked);
    let all_there = wait_until(120, || sink.missing(&ids).is_empty());
    let missing = sink.missing(&ids);
    println!(
        "kill -9 x{kills}: {} acknowledged spans, {} received at the sink, {} duplicates, {} missing",
        ids.len(),
        sink.unique(),
        sink.duplicates(),
        missing.len()
    );
    assert!(
        all_there,
        "{} acknowledged spans never arrived (first: {:?})\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        sl.stderr()
    );
}

/// The backend is down for a while (a few seconds: what matters is that sightline keeps
/// accepting and holding data while retries fail, not how long that lasts), then comes back
/// on the same port. With a disk queue nothing is lost.
#[test]
fn backend_outage_with_a_disk_queue_loses_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sink = IdSink::default();
    let sink_port = free_port();
    let sink_rt = start_sink(sink_port, &sink);
    let dir = tempfile::tempdir().unwrap();
    let sl = Sightline::start(dir.path(), &config(sink_port, &disk_queue(dir.path())));
    let port = Arc::new(AtomicU16::new(sl.grpc));
    let out = Arc::new(Mutex::new(Outcome::default()));
    rt.block_on(client(port.clone(), 0..100, false, out.clone()));
    assert!(wait_until(60, || sink.unique() >= 100 * SPANS_PER_REQUEST as usize), "{}", sl.stderr());
    sink_rt.shutdown_background();
    // While the sink is down: 300 more requests, all acknowledged once persisted.
    rt.block_on(client(port.clone(), 100..400, false, out.clone()));
    std::thread::sleep(Duration::from_secs(2));
    let _sink_rt = start_sink(sink_port, &sink);
    let o = out.lock().unwrap();
    assert!(o.refused.is_empty(), "refused: {:?}", &o.refused[..o.refused.len().min(10)]);
    let ids = ids_of(&o.acked);
    let all_there = wait_until(120, || sink.missing(&ids).is_empty());
    println!(
        "outage (disk): {} spans acknowledged, {} received, {} duplicates",
        ids.len(),
        sink.unique(),
        sink.duplicates()
    );
    assert!(all_there, "{} spans lost:\n{}", sink.missing(&ids).len(), sl.stderr());
}

/// The same outage with a small memory queue: requests beyond its capacity are refused with
/// UNAVAILABLE, and what never reaches the sink is exactly what
/// `otelcol_exporter_enqueue_failed_spans` counts; every acknowledged span arrives.
#[test]
fn backend_outage_with_a_memory_queue_loses_only_what_is_counted() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sink = IdSink::default();
    let sink_port = free_port();
    let sink_rt = start_sink(sink_port, &sink);
    let dir = tempfile::tempdir().unwrap();
    let queue = "      queue_size: 20\n      num_consumers: 2\n";
    let mut sl = Sightline::start(dir.path(), &config(sink_port, queue));
    let port = Arc::new(AtomicU16::new(sl.grpc));
    let out = Arc::new(Mutex::new(Outcome::default()));
    rt.block_on(client(port.clone(), 0..50, false, out.clone()));
    // Before the outage, what was acknowledged arrives (on a loaded machine the small queue
    // may already have refused some of these 50 requests: those are not waited for).
    let before = ids_of(&out.lock().unwrap().acked);
    assert!(!before.is_empty());
    assert!(wait_until(60, || sink.missing(&before).is_empty()), "{}", sl.stderr());
    sink_rt.shutdown_background();
    rt.block_on(client(port.clone(), 50..200, false, out.clone()));
    std::thread::sleep(Duration::from_secs(2));
    let _sink_rt = start_sink(sink_port, &sink);
    let (acked, refused) = {
        let o = out.lock().unwrap();
        (o.acked.clone(), o.refused.clone())
    };
    let ids = ids_of(&acked);
    assert!(wait_until(120, || sink.missing(&ids).is_empty()), "acknowledged spans lost:\n{}", sl.stderr());
    let failed = sl.metric("otelcol_exporter_enqueue_failed_spans{").expect("metric") as u64;
    let lost = 200 * SPANS_PER_REQUEST - sink.unique() as u64;
    println!(
        "outage (memory, queue_size 20): {} requests acknowledged, {} refused, {lost} spans lost, enqueue_failed {failed}",
        acked.len(),
        refused.len()
    );
    assert!(!refused.is_empty(), "150 requests against a queue of 20 must overflow");
    assert_eq!(lost, failed, "every lost span is counted");
    assert_eq!(lost, refused.len() as u64 * SPANS_PER_REQUEST, "and only refused requests lose data");
}

/// SIGTERM with a backlog on disk and the sink down; then both start: the backlog is
/// delivered by the new process.
#[test]
fn backlog_survives_a_restart_with_the_backend_down() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sink = IdSink::default();
    let sink_port = free_port(); // nothing listens yet
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(sink_port, &disk_queue(dir.path()));
    let mut sl = Sightline::start(dir.path(), &cfg);
    let port = Arc::new(AtomicU16::new(sl.grpc));
    let out = Arc::new(Mutex::new(Outcome::default()));
    rt.block_on(client(port.clone(), 0..200, false, out.clone()));
    let acked = out.lock().unwrap().acked.clone();
    assert_eq!(acked.len(), 200, "persisted requests are acknowledged while the backend is down");
    let status = sl.terminate().expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", sl.stderr());
    let _sink_rt = start_sink(sink_port, &sink);
    let mut sl = Sightline::start(dir.path(), &cfg);
    let ids = ids_of(&acked);
    let all_there = wait_until(120, || sink.missing(&ids).is_empty());
    let recovered = sl.metric("sightline_disk_queue_recovered_records_total{").unwrap_or(-1.0);
    println!(
        "restart: {} spans in the backlog, {recovered} records recovered, {} duplicates",
        ids.len(),
        sink.duplicates()
    );
    assert!(all_there, "{} spans lost:\n{}", sink.missing(&ids).len(), sl.stderr());
    assert!(recovered >= 1.0);
}
