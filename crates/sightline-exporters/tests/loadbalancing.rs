//! The `loadbalancing` exporter against real tonic gRPC backends on 127.0.0.1: routing by trace
//! id, service and metric name on the collector's ring, failover to the next ring member, only
//! the failed part retried, and the DNS resolver.

mod common;

use common::{batch, payload};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sightline_core::driver::{self, RetryConfig};
use sightline_core::{Registry, Signal};
use sightline_exporters::loadbalancing::ring::Ring;
use sightline_exporters::{LoadBalancingConfig, LoadBalancingExporter};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

#[derive(Default)]
struct Seen {
    spans: Vec<Span>,
    logs: Vec<ExportLogsServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    /// Requests to refuse with UNAVAILABLE before accepting.
    fail_next: usize,
    /// Refuse every request with this code.
    fail_always: Option<Code>,
    refused: usize,
}

#[derive(Clone, Default)]
struct Backend(Arc<Mutex<Seen>>);

impl Backend {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(&self) -> Result<(), Status> {
        let mut s = self.seen();
        if let Some(code) = s.fail_always {
            s.refused += 1;
            return Err(Status::new(code, "refused by the test"));
        }
        if s.fail_next > 0 {
            s.fail_next -= 1;
            s.refused += 1;
            return Err(Status::unavailable("not now"));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl TraceService for Backend {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.admit()?;
        let spans = req.into_inner().resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
        self.seen().spans.extend(spans);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Backend {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.admit()?;
        self.seen().metrics.push(req.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Backend {
    async fn export(
        &self,
        req: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.admit()?;
        self.seen().logs.push(req.into_inner());
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

async fn start(backend: &Backend) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let b = backend.clone();
    tokio::spawn(async move {
        let _ = Server::builder()
            .add_service(TraceServiceServer::new(b.clone()))
            .add_service(MetricsServiceServer::new(b.clone()))
            .add_service(LogsServiceServer::new(b))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await;
    });
    addr
}

/// `n` backends started, and their names (`127.0.0.1:port`) in start order.
async fn pool(n: usize) -> (Vec<Backend>, Vec<String>) {
    let backends: Vec<Backend> = (0..n).map(|_| Backend::default()).collect();
    let mut names = Vec::new();
    for b in &backends {
        names.push(start(b).await.to_string());
    }
    (backends, names)
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn config(yaml: &str) -> LoadBalancingConfig {
    let cfg: LoadBalancingConfig = serde_yaml_ng::from_str(yaml).expect("config");
    assert_eq!(cfg.validate(), Vec::<(String, String)>::new());
    cfg
}

/// The exporter for `hostnames` behind the core driver (traces), retrying from `initial` up
/// to `max` between attempts for 20 s; with its registry.
fn traces_driver(hostnames: &[String], initial: Duration, max: Duration) -> (driver::Driver, Registry) {
    let mut cfg = static_config(hostnames);
    cfg.retry_on_failure = Some(RetryConfig {
        initial_interval: initial,
        max_interval: max,
        max_elapsed_time: Duration::from_secs(20),
        ..RetryConfig::default()
    });
    let registry = Registry::new();
    let exporter = LoadBalancingExporter::new("loadbalancing", &cfg, &registry).expect("build");
    let d = driver::spawn(
        "loadbalancing",
        Signal::Traces,
        exporter.driver_config(),
        exporter.sender(Signal::Traces),
        &registry,
    );
    (d, registry)
}

fn static_config(hostnames: &[String]) -> LoadBalancingConfig {
    let list = hostnames.iter().map(|h| format!("\"{h}\"")).collect::<Vec<_>>().join(", ");
    config(&format!(
        "protocol: {{ otlp: {{ tls: {{ insecure: true }}, compression: none, timeout: 2s }} }}\nresolver: {{ static: {{ hostnames: [{list}] }} }}\n"
    ))
}

/// `n` traces of `spans` spans each over two services and two scopes, trace ids from `seed`.
fn traces(n: usize, spans: usize, seed: u64) -> ExportTraceServiceRequest {
    let resource = |svc: &str| Resource { attributes: vec![common::str_kv("service.name", svc)], ..Default::default() };
    let mut rs = Vec::new();
    for svc in ["checkout", "payments"] {
        let mut scopes = Vec::new();
        for lib in ["http", "db"] {
            let spans = (0..n)
                .flat_map(|t| {
                    (0..spans).map(move |i| {
                        let mut tid = [0u8; 16];
                        tid[..8].copy_from_slice(&(seed * 1_000_003 + t as u64).to_be_bytes());
                        tid[8..].copy_from_slice(&(t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
                        Span {
                            trace_id: tid.to_vec(),
                            span_id: (((t * 100 + i) as u64) << 16
                                | (svc.as_bytes()[0] as u64) << 8
                                | lib.len() as u64)
                                .to_be_bytes()
                                .to_vec(),
                            name: format!("{svc}/{lib}/{i}"),
                            ..Default::default()
                        }
                    })
                })
                .collect();
            scopes.push(ScopeSpans {
                scope: Some(InstrumentationScope { name: lib.into(), ..Default::default() }),
                spans,
                schema_url: String::new(),
            });
        }
        rs.push(ResourceSpans { resource: Some(resource(svc)), scope_spans: scopes, schema_url: String::new() });
    }
    ExportTraceServiceRequest { resource_spans: rs }
}

fn all_spans(req: &ExportTraceServiceRequest) -> Vec<Span> {
    req.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| s.spans.clone()).collect()
}

fn span_ids(spans: &[Span]) -> BTreeSet<Vec<u8>> {
    spans.iter().map(|s| s.span_id.clone()).collect()
}

/// Every span reaches the backend the ring gives its trace id, exactly once, with its resource
/// and scope (the span names carry both).
#[tokio::test]
async fn spans_go_to_the_owner_of_their_trace_id() {
    let (backends, names) = pool(3).await;
    let exporter =
        LoadBalancingExporter::new("loadbalancing", &static_config(&names), &Registry::new()).expect("build");
    let sender = exporter.sender(Signal::Traces);
    let req = traces(60, 3, 1);
    assert_eq!(span_ids(&all_spans(&req)).len(), 720, "span ids are unique");
    sender.send(&batch([payload(Signal::Traces, &req, 720)])).await.expect("send");
    let ring = Ring::new(&names);
    let mut total = 0;
    for (i, b) in backends.iter().enumerate() {
        let seen = b.seen();
        assert!(!seen.spans.is_empty(), "backend {i} got nothing");
        for s in &seen.spans {
            let owner = &ring.endpoints()[ring.lookup(&s.trace_id).expect("owner")];
            assert_eq!(owner, &names[i], "span {:?} at the wrong backend", s.name);
        }
        total += seen.spans.len();
    }
    assert_eq!(total, 720);
    let got: BTreeSet<Vec<u8>> = backends.iter().flat_map(|b| span_ids(&b.seen().spans)).collect();
    assert_eq!(got, span_ids(&all_spans(&req)));
}

/// A backend that refuses (UNAVAILABLE) has its share sent to the next ring member in the same
/// attempt; nothing is lost or sent twice.
#[tokio::test]
async fn a_failing_backends_share_goes_to_the_next_member() {
    let (backends, names) = pool(3).await;
    backends[1].seen().fail_always = Some(Code::Unavailable);
    let registry = Registry::new();
    let exporter = LoadBalancingExporter::new("loadbalancing", &static_config(&names), &registry).expect("build");
    let sender = exporter.sender(Signal::Traces);
    let req = traces(50, 2, 2);
    sender.send(&batch([payload(Signal::Traces, &req, 400)])).await.expect("failover delivers everything");
    assert!(backends[1].seen().refused > 0);
    let mut ids = Vec::new();
    for b in &backends {
        ids.extend(b.seen().spans.iter().map(|s| s.span_id.clone()));
    }
    assert_eq!(ids.len(), 400, "no duplicates");
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), span_ids(&all_spans(&req)));
    let failed = registry.value(
        "otelcol_loadbalancer_backend_outcome",
        &[("exporter", "loadbalancing"), ("endpoint", &names[1]), ("success", "false")],
    );
    assert_eq!(failed, Some(1));
}

/// Through the core driver: with every backend refusing at first, the retry sends only what was
/// not delivered; a backend that is down for good loses nothing either.
#[tokio::test]
async fn only_the_failed_part_is_retried() {
    let (backends, mut names) = pool(2).await;
    names.push(format!("127.0.0.1:{}", closed_port()));
    // Backend 0 refuses twice: its share fails over to backend 1 (or the closed port) in the
    // first attempt, and whatever is left is retried.
    backends[0].seen().fail_next = 2;
    backends[1].seen().fail_next = 1;
    let (d, registry) = traces_driver(&names, Duration::from_millis(50), Duration::from_millis(100));
    let req = traces(80, 2, 3);
    let expected = span_ids(&all_spans(&req));
    assert_eq!(d.handle.enqueue(payload(Signal::Traces, &req, 640)).await, driver::Enqueued::Queued);
    let delivered = || backends.iter().map(|b| b.seen().spans.len()).sum::<usize>();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while delivered() < 640 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(d.handle);
    tokio::time::timeout(Duration::from_secs(10), d.task).await.expect("driver stops").expect("driver task");
    let ids: Vec<Vec<u8>> =
        backends.iter().flat_map(|b| b.seen().spans.iter().map(|s| s.span_id.clone()).collect::<Vec<_>>()).collect();
    assert_eq!(ids.len(), 640, "every span once: no duplicates, nothing lost");
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), expected);
    let sent = registry.value("otelcol_exporter_sent_spans", &[("exporter", "loadbalancing")]);
    assert_eq!(sent, Some(640));
}

/// A permanent refusal is not sent to another backend, and is counted as failed.
#[tokio::test]
async fn a_permanent_refusal_is_not_failed_over() {
    let (backends, names) = pool(2).await;
    backends[0].seen().fail_always = Some(Code::InvalidArgument);
    let exporter =
        LoadBalancingExporter::new("loadbalancing", &static_config(&names), &Registry::new()).expect("build");
    let req = traces(40, 1, 4);
    let err =
        exporter.sender(Signal::Traces).send(&batch([payload(Signal::Traces, &req, 160)])).await.expect_err("refused");
    assert!(!err.retryable);
    let refused = err.remaining.as_ref().expect("the refused part").0.items;
    let delivered = backends[1].seen().spans.len() as u64;
    assert!(refused > 0 && delivered > 0);
    assert_eq!(refused + delivered, 160);
    assert!(err.message.contains(&names[0]), "{}", err.message);
}

/// `routing_key: service`: each resource goes whole to the owner of its `service.name`.
#[tokio::test]
async fn service_routing_keeps_resources_whole() {
    let (backends, names) = pool(4).await;
    let mut cfg = static_config(&names);
    cfg.routing_key = Some(sightline_exporters::loadbalancing::RoutingKey::Service);
    let exporter = LoadBalancingExporter::new("loadbalancing", &cfg, &Registry::new()).expect("build");
    let mut metrics = common::metrics("checkout");
    for svc in ["payments", "search", "ads", "auth"] {
        metrics.resource_metrics.extend(common::metrics(svc).resource_metrics);
    }
    exporter.sender(Signal::Metrics).send(&batch([payload(Signal::Metrics, &metrics, 35)])).await.expect("send");
    let ring = Ring::new(&names);
    let mut by_service: BTreeMap<String, usize> = BTreeMap::new();
    for (i, b) in backends.iter().enumerate() {
        for req in &b.seen().metrics {
            for rm in &req.resource_metrics {
                let svc = service(rm.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default());
                assert_eq!(ring.endpoints()[ring.lookup(svc.as_bytes()).expect("owner")], names[i]);
                assert_eq!(
                    rm,
                    &metrics.resource_metrics.iter().find(|m| m.resource == rm.resource).cloned().expect("sent")
                );
                *by_service.entry(svc).or_default() += 1;
            }
        }
    }
    assert_eq!(by_service.len(), 5);
    assert!(by_service.values().all(|&n| n == 1));
}

fn service(attrs: &[KeyValue]) -> String {
    attrs
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Logs by trace id: the records of one trace reach one backend, keyed by the id's hex digits.
#[tokio::test]
async fn logs_by_trace_id() {
    let (backends, names) = pool(3).await;
    let mut cfg = static_config(&names);
    cfg.routing_key = Some(sightline_exporters::loadbalancing::RoutingKey::TraceId);
    let exporter = LoadBalancingExporter::new("loadbalancing", &cfg, &Registry::new()).expect("build");
    let mut req = common::logs("svc", 0, 0);
    let records = &mut req.resource_logs[0].scope_logs[0].log_records;
    for i in 0..90u8 {
        let mut r = common::logs("svc", 1, 3).resource_logs[0].scope_logs[0].log_records[0].clone();
        r.trace_id = vec![i / 3; 16];
        r.trace_id[15] = i / 3 + 1;
        r.span_id = vec![i + 1; 8];
        records.push(r);
    }
    exporter.sender(Signal::Logs).send(&batch([payload(Signal::Logs, &req, 90)])).await.expect("send");
    let ring = Ring::new(&names);
    let mut n = 0;
    for (i, b) in backends.iter().enumerate() {
        for l in
            b.seen().logs.iter().flat_map(|r| &r.resource_logs).flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records)
        {
            let hex: String = l.trace_id.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(ring.endpoints()[ring.lookup(hex.as_bytes()).expect("owner")], names[i]);
            n += 1;
        }
    }
    assert_eq!(n, 90);
}

/// The DNS resolver: `localhost` resolves to the test backend's loopback address (and maybe
/// ::1, where nothing listens: its share fails over); the ring is named as the collector names
/// it (`ip:port`).
#[tokio::test]
async fn dns_resolver_finds_the_backends() {
    let backend = Backend::default();
    let addr = start(&backend).await;
    let cfg = config(&format!(
        "protocol: {{ otlp: {{ tls: {{ insecure: true }}, compression: none, timeout: 2s }} }}\nresolver: {{ dns: {{ hostname: localhost, port: {}, interval: 100ms }} }}\n",
        addr.port()
    ));
    let registry = Registry::new();
    let exporter = LoadBalancingExporter::new("loadbalancing", &cfg, &registry).expect("build");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while exporter.endpoints().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let endpoints = exporter.endpoints();
    assert!(endpoints.contains(&format!("127.0.0.1:{}", addr.port())), "{endpoints:?}");
    let sender = exporter.sender(Signal::Traces);
    let req = traces(20, 1, 5);
    sender.send(&batch([payload(Signal::Traces, &req, 80)])).await.expect("send");
    assert_eq!(backend.seen().spans.len(), 80);
    let resolutions = registry.value(
        "otelcol_loadbalancer_num_resolutions",
        &[("exporter", "loadbalancing"), ("resolver", "dns"), ("success", "true")],
    );
    assert!(resolutions.unwrap_or(0) >= 1);
}

/// Config checks: the collector's errors, and what Sightline does not do named precisely.
#[test]
fn config_errors_name_the_option() {
    let errs = |yaml: &str| -> Vec<String> {
        let cfg: LoadBalancingConfig = serde_yaml_ng::from_str(yaml).expect("parse");
        cfg.validate().into_iter().map(|(k, m)| format!("{k}: {m}")).collect()
    };
    let otlp = "protocol: { otlp: { tls: { insecure: true } } }\n";
    assert_eq!(
        errs(&format!("{otlp}resolver: {{}}")),
        ["resolver: no resolvers specified for the exporter: use static or dns"]
    );
    assert!(errs(&format!("{otlp}resolver: {{ static: {{ hostnames: [] }} }}"))[0].contains("no endpoints specified"));
    assert!(
        errs(&format!("{otlp}resolver: {{ static: {{ hostnames: [a] }}, dns: {{ hostname: b }} }}"))[0]
            .contains("only one resolver")
    );
    assert!(
        errs(&format!("{otlp}resolver: {{ k8s: {{ service: lb.ns }} }}"))[0]
            .starts_with("resolver.k8s: the Kubernetes resolver is not supported")
    );
    assert!(
        errs(&format!("{otlp}routing_key: attributes\nresolver: {{ static: {{ hostnames: [a] }} }}"))[0]
            .starts_with("routing_key: \"attributes\" is not supported yet")
    );
    // streamID and resource are metrics (and, for resource, logs) keys, as in the collector.
    let sid: LoadBalancingConfig =
        serde_yaml_ng::from_str(&format!("{otlp}routing_key: streamID\nresolver: {{ static: {{ hostnames: [a] }} }}"))
            .expect("parse");
    assert!(sid.validate().is_empty() && sid.validate_for(Signal::Metrics).is_ok());
    assert!(sid.validate_for(Signal::Traces).expect_err("streamID for traces").1.contains("unsupported routing_key"));
    let res: LoadBalancingConfig =
        serde_yaml_ng::from_str(&format!("{otlp}routing_key: resource\nresolver: {{ static: {{ hostnames: [a] }} }}"))
            .expect("parse");
    assert!(res.validate_for(Signal::Logs).is_ok() && res.validate_for(Signal::Metrics).is_ok());
    assert!(res.validate_for(Signal::Traces).is_err(), "the collector does not route spans by resource");
    let ok: LoadBalancingConfig =
        serde_yaml_ng::from_str(&format!("{otlp}routing_key: traceID\nresolver: {{ static: {{ hostnames: [a] }} }}"))
            .expect("parse");
    assert!(ok.validate().is_empty());
    assert!(ok.validate_for(Signal::Metrics).expect_err("traceID for metrics").1.contains("unsupported routing_key"));
    assert!(ok.validate_for(Signal::Logs).is_ok());
    // A default endpoint port, as the collector adds it.
    let a: LoadBalancingConfig =
        serde_yaml_ng::from_str(&format!("{otlp}resolver: {{ static: {{ hostnames: [gw-0, \"[::1]\"] }} }}"))
            .expect("parse");
    assert!(a.validate().is_empty());
}

/// `routing_key: metric`: each metric goes to the owner of its name, with its resource and
/// scope; the points counted for the driver are the points sent.
#[tokio::test]
async fn metrics_by_name() {
    let (backends, names) = pool(3).await;
    backends[0].seen().fail_always = Some(Code::InvalidArgument);
    let mut cfg = static_config(&names);
    cfg.routing_key = Some(sightline_exporters::loadbalancing::RoutingKey::Metric);
    let exporter = LoadBalancingExporter::new("loadbalancing", &cfg, &Registry::new()).expect("build");
    let metrics = common::metrics("checkout");
    let res = exporter.sender(Signal::Metrics).send(&batch([payload(Signal::Metrics, &metrics, 6)])).await;
    let ring = Ring::new(&names);
    // The owner's name (ring indices follow the sorted names, not the start order).
    let owner = |m: &str| ring.endpoints()[ring.lookup(m.as_bytes()).expect("owner")].clone();
    let mut delivered_points = 0u64;
    for (i, b) in backends.iter().enumerate() {
        for req in &b.seen().metrics {
            for m in req.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
                assert_eq!(owner(&m.name), names[i], "{}", m.name);
                delivered_points += match &m.data {
                    Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) => g.data_points.len() as u64,
                    Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) => s.data_points.len() as u64,
                    Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Histogram(h)) => {
                        h.data_points.len() as u64
                    }
                    Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::ExponentialHistogram(e)) => {
                        e.data_points.len() as u64
                    }
                    Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Summary(s)) => {
                        s.data_points.len() as u64
                    }
                    None => 0,
                };
            }
        }
    }
    // Backend 0 refuses for good: whatever it owned is the refused part, counted in points.
    let owned_by_0: Vec<&str> = ["g", "s", "h", "e", "q"].into_iter().filter(|m| owner(m) == names[0]).collect();
    match res {
        Ok(()) => assert!(owned_by_0.is_empty()),
        Err(e) => {
            let refused = e.remaining.expect("refused part").0.items;
            assert_eq!(refused + delivered_points, 6, "owned by the refusing backend: {owned_by_0:?}");
        }
    }
}

/// Through the driver, with one backend refusing for good, others failing for a while and a
/// closed port in the ring: the driver's counts match what arrived, whichever path each part
/// took (`sent` = spans the backends hold, `sent` + `send_failed` = spans sent in).
#[tokio::test]
async fn counts_match_what_arrived() {
    let (backends, mut names) = pool(3).await;
    names.push(format!("127.0.0.1:{}", closed_port()));
    backends[0].seen().fail_always = Some(Code::InvalidArgument);
    backends[1].seen().fail_next = 2;
    backends[2].seen().fail_next = 1;
    let (d, registry) = traces_driver(&names, Duration::from_millis(20), Duration::from_millis(50));
    for seed in 10..14 {
        let req = traces(40, 2, seed);
        assert_eq!(d.handle.enqueue(payload(Signal::Traces, &req, 320)).await, driver::Enqueued::Queued);
    }
    drop(d.handle);
    tokio::time::timeout(Duration::from_secs(20), d.task).await.expect("driver stops").expect("driver task");
    let held: usize = backends.iter().map(|b| b.seen().spans.len()).sum();
    let count = |name| registry.value(name, &[("exporter", "loadbalancing")]).unwrap_or(0);
    let (sent, failed) = (count("otelcol_exporter_sent_spans"), count("otelcol_exporter_send_failed_spans"));
    assert_eq!(sent as usize, held, "sent counts what the backends hold");
    assert_eq!(sent + failed, 1280);
    assert!(failed > 0, "backend 0 refuses its share for good");
    assert!(backends[0].seen().spans.is_empty());
}

/// A batch where one part is refused for good while another is still to retry: the refused
/// part stays in what is left (the next attempt is refused again and the driver then counts it
/// as failed), so nothing refused is counted as sent. Trace ids are picked on the ring: owned
/// by A (refuses for good) or B (down), with some of B's next member C (down, owning nothing).
#[tokio::test]
async fn a_refused_part_is_not_counted_as_sent() {
    let (backends, names) = pool(3).await;
    let ring = Ring::new(&names);
    let idx = |name: &String| names.iter().position(|n| n == name).expect("known");
    let owner = |tid: &[u8]| idx(&ring.endpoints()[ring.lookup(tid).expect("owner")]);
    let (a, b, c) = (0, 1, 2);
    backends[a].seen().fail_always = Some(Code::InvalidArgument);
    backends[b].seen().fail_always = Some(Code::Unavailable);
    backends[c].seen().fail_always = Some(Code::Unavailable);
    let excluding_b = |tid: &[u8]| {
        let mut ex = vec![false; 3];
        ex[ring.endpoints().iter().position(|n| *n == names[b]).expect("b")] = true;
        idx(&ring.endpoints()[ring
            .lookup_position_excluding(sightline_exporters::loadbalancing::ring::position(tid), &ex)
            .expect("next")])
    };
    let (mut spans, mut to_c) = (Vec::new(), 0);
    for k in 0u64..100_000 {
        let tid = [k.to_le_bytes(), (!k).to_le_bytes()].concat();
        let o = owner(&tid);
        let keep = o == a && spans.len() < 40 || o == b && (excluding_b(&tid) == c || spans.len() < 60);
        if keep {
            to_c += usize::from(o == b && excluding_b(&tid) == c);
            spans.push(Span { trace_id: tid, span_id: (k + 1).to_be_bytes().to_vec(), ..Default::default() });
        }
        if spans.len() >= 80 && to_c > 0 {
            break;
        }
    }
    assert!(to_c > 0 && spans.iter().any(|s| owner(&s.trace_id) == a));
    let n = spans.len() as u64;
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    };
    let exporter =
        LoadBalancingExporter::new("loadbalancing", &static_config(&names), &Registry::new()).expect("build");
    let err =
        exporter.sender(Signal::Traces).send(&batch([payload(Signal::Traces, &req, n)])).await.expect_err("all fail");
    assert!(err.retryable, "part of it is worth retrying");
    assert_eq!(err.remaining.expect("what is left").0.items, n, "the refused part is still left, not counted as sent");
}
