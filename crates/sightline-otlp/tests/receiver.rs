//! The `otlp` receiver over real sockets: HTTP (protobuf and JSON, compression, limits, status
//! codes) with a plain HTTP client, and gRPC with tonic's generated OTLP client. A capturing
//! exporter behind a real pipeline records what was accepted.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sightline_core::{Batch, DriverConfig, MemoryBudget, Pipeline, Registry, SendFuture, Sender, Signal};
use sightline_otlp::{Consumers, OtlpReceiverConfig};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Capture(Mutex<Vec<Bytes>>);
impl Sender for Capture {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        self.0.lock().unwrap().push(batch.to_bytes());
        Box::pin(async { Ok(()) })
    }
}

struct Harness {
    grpc: SocketAddr,
    http: SocketAddr,
    capture: Arc<Capture>,
    registry: Registry,
    budget: MemoryBudget,
    _stop: tokio_util::sync::DropGuard,
}

impl Harness {
    async fn start(budget_bytes: usize, http_limit: usize) -> Harness {
        let yaml = format!(
            "protocols:\n  grpc:\n    endpoint: 127.0.0.1:0\n  http:\n    endpoint: 127.0.0.1:0\n    max_request_body_size: {http_limit}\n"
        );
        let cfg: OtlpReceiverConfig = serde_yaml_ng::from_str(&yaml).unwrap();
        let registry = Registry::new();
        let capture = Arc::new(Capture::default());
        let mut dcfg =
            DriverConfig { queue: Default::default(), retry: Default::default(), timeout: Duration::from_secs(5) };
        dcfg.queue.batch.enabled = false;
        let mut consumers = Consumers::default();
        for signal in Signal::ALL {
            let d = sightline_core::driver::spawn("capture", signal, dcfg.clone(), capture.clone(), &registry);
            let p = Pipeline { id: signal.to_string(), signal, processors: vec![], exporters: vec![d.handle.clone()] };
            match signal {
                Signal::Traces => consumers.traces.push(Arc::new(p)),
                Signal::Metrics => consumers.metrics.push(Arc::new(p)),
                Signal::Logs => consumers.logs.push(Arc::new(p)),
            }
        }
        let budget = MemoryBudget::new(budget_bytes);
        let stop = CancellationToken::new();
        let running =
            sightline_otlp::start("otlp", &cfg, consumers, budget.clone(), &registry, stop.clone()).await.unwrap();
        let addr = |t| running.addrs.iter().find(|(n, _)| *n == t).unwrap().1;
        Harness { grpc: addr("grpc"), http: addr("http"), capture, registry, budget, _stop: stop.drop_guard() }
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, http::HeaderMap, Vec<u8>) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut req = http::Request::post(format!("http://{}{path}", self.http));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = client.request(req.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, headers, body)
    }

    /// Waits (bounded) until the capture holds `n` requests.
    async fn captured(&self, n: usize) -> Vec<Bytes> {
        for _ in 0..500 {
            if self.capture.0.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.capture.0.lock().unwrap().clone()
    }
}

fn traces(n: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: vec![1; 16],
                        span_id: vec![i as u8 + 1; 8],
                        name: format!("s{i}"),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

const PROTO: (&str, &str) = ("content-type", "application/x-protobuf");

#[tokio::test]
async fn http_protobuf_gzip_and_zstd_are_accepted_and_counted() {
    let h = Harness::start(64 << 20, 20 << 20).await;
    let body = traces(3).encode_to_vec();
    let (st, hd, resp) = h.post("/v1/traces", &[PROTO], body.clone()).await;
    assert_eq!(st, 200);
    assert_eq!(hd["content-type"], "application/x-protobuf");
    assert!(resp.is_empty(), "full success is an empty ExportTraceServiceResponse");
    let (st, _, _) = h.post("/v1/traces", &[PROTO, ("content-encoding", "gzip")], gzip(&body)).await;
    assert_eq!(st, 200);
    let z = zstd::encode_all(&body[..], 1).unwrap();
    let (st, _, _) = h.post("/v1/traces", &[PROTO, ("content-encoding", "zstd")], z).await;
    assert_eq!(st, 200);
    let got = h.captured(3).await;
    assert_eq!(got.len(), 3);
    for g in got {
        assert_eq!(ExportTraceServiceRequest::decode(g.as_ref()).unwrap(), traces(3));
    }
    assert_eq!(
        h.registry.value("otelcol_receiver_accepted_spans", &[("receiver", "otlp"), ("transport", "http")]),
        Some(9)
    );
    h.registry.assert_compliant();
}

#[tokio::test]
async fn http_json_request_gets_a_json_response() {
    let h = Harness::start(64 << 20, 20 << 20).await;
    let json = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}}]},
        "scopeLogs":[{"logRecords":[{"timeUnixNano":"1700000000000000000","body":{"stringValue":"hello"}}]}]}]}"#;
    let (st, hd, resp) = h.post("/v1/logs", &[("content-type", "application/json")], json.as_bytes().to_vec()).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(hd["content-type"], "application/json");
    assert_eq!(resp, b"{}");
    assert_eq!(h.captured(1).await.len(), 1);
}

/// A JSON body over the inline limit is converted on the blocking pool; same result.
#[tokio::test]
async fn large_json_request_is_accepted() {
    let h = Harness::start(64 << 20, 20 << 20).await;
    let rec = r#"{"timeUnixNano":"1700000000000000000","body":{"stringValue":"a fairly long log line to make the body large"}}"#;
    let recs = vec![rec; 2000].join(",");
    let json = format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{recs}]}}]}}]}}"#);
    assert!(json.len() > 128 << 10);
    let (st, _, resp) = h.post("/v1/logs", &[("content-type", "application/json")], json.into_bytes()).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(
        h.registry.value("otelcol_receiver_accepted_log_records", &[("receiver", "otlp"), ("transport", "http")]),
        Some(2000)
    );
}

#[tokio::test]
async fn http_errors_have_the_right_status_and_a_message() {
    let h = Harness::start(64 << 20, 64 << 10).await;
    // 415: unknown media type.
    let (st, _, body) = h.post("/v1/traces", &[("content-type", "text/plain")], b"x".to_vec()).await;
    assert_eq!(st, 415);
    assert!(String::from_utf8_lossy(&body).contains("unsupported Content-Type"));
    // 400: not protobuf, with the problem named.
    let (st, _, body) = h.post("/v1/traces", &[PROTO], vec![0x0a, 0x05, 0x01]).await;
    assert_eq!(st, 400);
    let status = String::from_utf8_lossy(&body).to_string();
    assert!(status.contains("invalid protobuf"), "{status}");
    // 400 in JSON for a JSON request.
    let (st, hd, body) = h
        .post(
            "/v1/traces",
            &[("content-type", "application/json")],
            b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":\"zz\"}]}]}]}".to_vec(),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(hd["content-type"], "application/json");
    assert!(String::from_utf8_lossy(&body).contains("\"code\":3"), "{}", String::from_utf8_lossy(&body));
    // 400: unknown encoding.
    let (st, _, _) = h.post("/v1/traces", &[PROTO, ("content-encoding", "br")], b"x".to_vec()).await;
    assert_eq!(st, 400);
    // 413: declared too large.
    let (st, _, _) = h.post("/v1/traces", &[PROTO], vec![0; 65 << 10]).await;
    assert_eq!(st, 413);
    // 413: a gzip bomb expands past the limit.
    let bomb = gzip(&vec![0u8; 8 << 20]);
    let (st, _, body) = h.post("/v1/traces", &[PROTO, ("content-encoding", "gzip")], bomb).await;
    assert_eq!(st, 413, "{}", String::from_utf8_lossy(&body));
    // 405 for GET, 404 for an unknown path.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let r = client.get(format!("http://{}/v1/traces", h.http).parse().unwrap()).await.unwrap();
    assert_eq!(r.status(), 405);
    let r = client.get(format!("http://{}/nope", h.http).parse().unwrap()).await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(h.capture.0.lock().unwrap().is_empty(), "nothing was accepted");
    assert_eq!(h.budget.in_use(), 0, "every refused request released its budget");
}

#[tokio::test]
async fn partial_success_drops_only_invalid_spans() {
    let h = Harness::start(64 << 20, 20 << 20).await;
    let mut req = traces(3);
    req.resource_spans[0].scope_spans[0].spans[1].span_id = vec![1, 2, 3];
    let (st, _, body) = h.post("/v1/traces", &[PROTO], req.encode_to_vec()).await;
    assert_eq!(st, 200);
    let resp = ExportTraceServiceResponse::decode(&body[..]).unwrap();
    let ps = resp.partial_success.unwrap();
    assert_eq!(ps.rejected_spans, 1);
    assert!(
        ps.error_message.contains("resource_spans[0].scope_spans[0].spans[1]: span_id must be 8 bytes"),
        "{}",
        ps.error_message
    );
    let got = ExportTraceServiceRequest::decode(h.captured(1).await[0].as_ref()).unwrap();
    assert_eq!(got.resource_spans[0].scope_spans[0].spans.len(), 2);
}

#[tokio::test]
async fn over_budget_is_refused_with_retry_after() {
    // A budget smaller than the request: refused before buffering, retryable.
    let h = Harness::start(1024, 20 << 20).await;
    let body = traces(200).encode_to_vec();
    assert!(body.len() > 1024);
    let (st, hd, _) = h.post("/v1/traces", &[PROTO], body.clone()).await;
    assert_eq!(st, 429);
    assert_eq!(hd["retry-after"], "1");
    // gRPC: RESOURCE_EXHAUSTED with RetryInfo in the status details.
    let mut client = TraceServiceClient::connect(format!("http://{}", h.grpc)).await.unwrap();
    let err = client.export(traces(200)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(!err.details().is_empty(), "google.rpc.Status with RetryInfo");
    assert!(String::from_utf8_lossy(err.details()).contains("google.rpc.RetryInfo"));
}

#[tokio::test]
async fn grpc_export_plain_gzip_and_zstd() {
    let h = Harness::start(64 << 20, 20 << 20).await;
    let mut client = TraceServiceClient::connect(format!("http://{}", h.grpc)).await.unwrap();
    let resp = client.export(traces(5)).await.unwrap().into_inner();
    assert_eq!(resp.partial_success, None);
    let mut gz = client.clone().send_compressed(tonic::codec::CompressionEncoding::Gzip);
    gz.export(traces(5)).await.unwrap();
    let mut zs = client.clone().send_compressed(tonic::codec::CompressionEncoding::Zstd);
    zs.export(traces(5)).await.unwrap();
    let got = h.captured(3).await;
    assert_eq!(got.len(), 3);
    assert_eq!(
        h.registry.value("otelcol_receiver_accepted_spans", &[("receiver", "otlp"), ("transport", "grpc")]),
        Some(15)
    );
    // Invalid data: INVALID_ARGUMENT naming the problem.
    let mut bad = traces(1);
    bad.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1; 3];
    let err = client.export(bad).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("trace_id must be 16 bytes"), "{}", err.message());
    // Too large for max_recv_msg_size_mib (4): RESOURCE_EXHAUSTED.
    let mut big = traces(1);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(5 << 20);
    let mut client = client.max_encoding_message_size(64 << 20);
    let err = client.export(big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
}

/// A processor that refuses while `refuse` is set (a quota, say).
struct Gate(std::sync::atomic::AtomicBool);
impl sightline_core::Processor for Gate {
    fn process(&self, p: sightline_core::Payload) -> Result<sightline_core::Payload, sightline_core::ProcessError> {
        if self.0.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(sightline_core::ProcessError::Retryable { message: "gate closed".into(), retry_after_secs: 1 });
        }
        Ok(p)
    }
}

/// Two traces pipelines: when the second one's processor refuses, the first one must not have
/// queued the request (the client's retry would duplicate it there); once the second accepts,
/// both deliver it once.
#[tokio::test]
async fn a_refusal_in_one_pipeline_queues_nothing_in_another() {
    let registry = Registry::new();
    let mut dcfg =
        DriverConfig { queue: Default::default(), retry: Default::default(), timeout: Duration::from_secs(5) };
    dcfg.queue.batch.enabled = false;
    let (first, second) = (Arc::new(Capture::default()), Arc::new(Capture::default()));
    let d1 = sightline_core::driver::spawn("first", Signal::Traces, dcfg.clone(), first.clone(), &registry);
    let d2 = sightline_core::driver::spawn("second", Signal::Traces, dcfg, second.clone(), &registry);
    let gate = Arc::new(Gate(std::sync::atomic::AtomicBool::new(true)));
    let consumers = Consumers {
        traces: vec![
            Arc::new(Pipeline {
                id: "traces/a".into(),
                signal: Signal::Traces,
                processors: vec![],
                exporters: vec![d1.handle.clone()],
            }),
            Arc::new(Pipeline {
                id: "traces/b".into(),
                signal: Signal::Traces,
                processors: vec![gate.clone()],
                exporters: vec![d2.handle.clone()],
            }),
        ],
        ..Default::default()
    };
    let cfg: OtlpReceiverConfig = serde_yaml_ng::from_str("protocols:\n  grpc:\n    endpoint: 127.0.0.1:0\n").unwrap();
    let stop = CancellationToken::new();
    let running = sightline_otlp::start("otlp", &cfg, consumers, MemoryBudget::new(64 << 20), &registry, stop.clone())
        .await
        .unwrap();
    let mut client = TraceServiceClient::connect(format!("http://{}", running.addrs[0].1)).await.unwrap();

    let err = client.export(traces(3)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    gate.0.store(false, std::sync::atomic::Ordering::Relaxed);
    client.export(traces(3)).await.expect("accepted once the gate opens");
    for _ in 0..500 {
        if first.0.lock().unwrap().len() + second.0.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Give a wrongly queued first copy every chance to arrive too.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(first.0.lock().unwrap().len(), 1, "the refused request was queued in the first pipeline");
    assert_eq!(second.0.lock().unwrap().len(), 1);
    stop.cancel();
}

/// A processor that records who sent each request.
#[derive(Default)]
struct Clients(Mutex<Vec<Option<sightline_core::ClientInfo>>>);
impl sightline_core::Processor for Clients {
    fn process(&self, p: sightline_core::Payload) -> Result<sightline_core::Payload, sightline_core::ProcessError> {
        self.0.lock().unwrap().push(p.client().cloned());
        Ok(p)
    }
}

/// `include_metadata` (here on gRPC, not on HTTP): processors see the request's metadata; both
/// transports record the client's address.
#[tokio::test]
async fn include_metadata_hands_the_request_metadata_to_processors() {
    let registry = Registry::new();
    let mut dcfg =
        DriverConfig { queue: Default::default(), retry: Default::default(), timeout: Duration::from_secs(5) };
    dcfg.queue.batch.enabled = false;
    let capture = Arc::new(Capture::default());
    let d = sightline_core::driver::spawn("capture", Signal::Traces, dcfg, capture.clone(), &registry);
    let clients = Arc::new(Clients::default());
    let consumers = Consumers {
        traces: vec![Arc::new(Pipeline {
            id: "traces".into(),
            signal: Signal::Traces,
            processors: vec![clients.clone()],
            exporters: vec![d.handle.clone()],
        })],
        ..Default::default()
    };
    let yaml = "protocols:\n  grpc:\n    endpoint: 127.0.0.1:0\n    include_metadata: true\n  http:\n    endpoint: 127.0.0.1:0\n";
    let cfg: OtlpReceiverConfig = serde_yaml_ng::from_str(yaml).unwrap();
    let stop = CancellationToken::new();
    let running = sightline_otlp::start("otlp", &cfg, consumers, MemoryBudget::new(64 << 20), &registry, stop.clone())
        .await
        .unwrap();
    let addr = |t| running.addrs.iter().find(|(n, _)| *n == t).unwrap().1;
    let mut client = TraceServiceClient::connect(format!("http://{}", addr("grpc"))).await.unwrap();
    let mut req = tonic::Request::new(traces(1));
    req.metadata_mut().insert("x-tenant", "acme".parse().unwrap());
    req.metadata_mut().append("x-tenant", "beta".parse().unwrap());
    client.export(req).await.expect("accepted");
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let post = http::Request::post(format!("http://{}/v1/traces", addr("http")))
        .header("content-type", "application/x-protobuf")
        .header("x-tenant", "acme")
        .body(Full::new(Bytes::from(traces(1).encode_to_vec())))
        .unwrap();
    assert_eq!(http.request(post).await.unwrap().status(), 200);
    let seen = clients.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let grpc = seen[0].as_ref().expect("the gRPC request's client");
    let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(grpc.addr.map(|a| a.to_canonical()), Some(local));
    assert_eq!(grpc.metadata("X-Tenant").collect::<Vec<_>>(), ["acme", "beta"], "{grpc:?}");
    let h = seen[1].as_ref().expect("the HTTP request's client");
    assert_eq!(h.addr.map(|a| a.to_canonical()), Some(local));
    assert!(h.metadata.is_empty(), "include_metadata is off for HTTP: {h:?}");
    stop.cancel();
}
