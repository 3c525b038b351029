//! The `otlphttp` exporter against a real HTTP server (axum) on 127.0.0.1, alone and under the
//! core exporter driver.

mod common;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use common::{batch, payload, wait_for};
use http::{HeaderMap, StatusCode, Uri};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message as _;
use sightline_core::{Registry, Signal, driver};
use sightline_exporters::{Compression, Encoding, OtlpHttpConfig, build_otlphttp};
use std::collections::VecDeque;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body after undoing `Content-Encoding`.
    fn decoded(&self) -> Vec<u8> {
        match self.header("content-encoding") {
            Some("gzip") => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&self.body[..]).read_to_end(&mut out).expect("gunzip");
                out
            }
            Some("zstd") => zstd::decode_all(&self.body[..]).expect("unzstd"),
            None => self.body.to_vec(),
            Some(other) => panic!("unexpected content-encoding {other}"),
        }
    }
}

/// A scripted answer: status, headers, body.
type Answer = (StatusCode, Vec<(&'static str, String)>, Vec<u8>);

#[derive(Default)]
struct ServerState {
    seen: Vec<Seen>,
    /// Answers for the next requests, in order; then 200 with an empty protobuf response.
    script: VecDeque<Answer>,
}

#[derive(Clone, Default)]
struct TestServer(Arc<Mutex<ServerState>>);

impl TestServer {
    fn state(&self) -> std::sync::MutexGuard<'_, ServerState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(handle).with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }
}

async fn handle(State(server): State<TestServer>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = server.state();
    s.seen.push(Seen { path: uri.path().to_string(), headers, body });
    let (status, headers, body) = s
        .script
        .pop_front()
        .unwrap_or_else(|| (StatusCode::OK, vec![("content-type", "application/x-protobuf".into())], vec![]));
    let mut resp = Response::builder().status(status);
    for (k, v) in headers {
        resp = resp.header(k, v);
    }
    resp.body(Body::from(body)).unwrap_or_else(|_| Response::new(Body::empty()))
}

fn config(addr: SocketAddr, compression: Compression) -> OtlpHttpConfig {
    let mut cfg = OtlpHttpConfig::new(format!("http://{addr}"));
    cfg.compression = compression;
    cfg.headers.insert("X-Scope-OrgID".into(), "tenant-1".into());
    cfg
}

fn two_log_requests() -> (ExportLogsServiceRequest, ExportLogsServiceRequest, ExportLogsServiceRequest) {
    let a = common::logs("checkout", 3, 20);
    let b = common::logs("payments", 2, 20);
    let mut union = a.clone();
    union.resource_logs.extend(b.resource_logs.clone());
    (a, b, union)
}

/// A batch of two requests is POSTed to `/v1/logs` as protobuf, as one request holding both,
/// under every compression, with the configured headers.
#[tokio::test]
async fn posts_protobuf_to_the_signal_path() {
    let server = TestServer::default();
    let addr = server.start().await;
    let (a, b, union) = two_log_requests();
    for (i, compression) in [Compression::Gzip, Compression::Zstd, Compression::None].into_iter().enumerate() {
        let (sender, _) =
            build_otlphttp("otlphttp/test", Signal::Logs, &config(addr, compression), &sightline_core::Registry::new())
                .expect("build");
        sender.send(&batch([payload(Signal::Logs, &a, 3), payload(Signal::Logs, &b, 2)])).await.expect("send");
        let seen = server.state().seen[i].clone();
        assert_eq!(seen.path, "/v1/logs");
        assert_eq!(seen.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(seen.header("x-scope-orgid"), Some("tenant-1"));
        assert!(seen.header("user-agent").is_some_and(|ua| ua.starts_with("sightline/")));
        match compression {
            Compression::None => assert_eq!(seen.header("content-encoding"), None),
            c => assert_eq!(seen.header("content-encoding"), Some(c.as_str())),
        }
        let got = ExportLogsServiceRequest::decode(&seen.decoded()[..]).expect("protobuf");
        assert_eq!(got, union, "{compression:?}");
    }
}

/// `encoding: json` sends OTLP/JSON that converts back to the same request.
#[tokio::test]
async fn posts_json() {
    let server = TestServer::default();
    let addr = server.start().await;
    let (a, b, union) = two_log_requests();
    let mut cfg = config(addr, Compression::Gzip);
    cfg.encoding = Encoding::Json;
    let (sender, _) =
        build_otlphttp("otlphttp/json", Signal::Logs, &cfg, &sightline_core::Registry::new()).expect("build");
    sender.send(&batch([payload(Signal::Logs, &a, 3), payload(Signal::Logs, &b, 2)])).await.expect("send");
    let seen = server.state().seen[0].clone();
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let proto =
        sightline_otlp_json::json_to_protobuf(sightline_otlp_json::Signal::Logs, &seen.decoded()).expect("json");
    assert_eq!(ExportLogsServiceRequest::decode(&proto[..]).expect("protobuf"), union);
}

/// 503 and 429 are retryable and carry `Retry-After` (seconds, or an HTTP date); 400 is
/// permanent and its body (text, or a google.rpc.Status message) is in the error.
#[tokio::test]
async fn classifies_http_failures() {
    let server = TestServer::default();
    let addr = server.start().await;
    let (sender, _) =
        build_otlphttp("otlphttp/f", Signal::Logs, &config(addr, Compression::Gzip), &sightline_core::Registry::new())
            .expect("build");
    let l = common::logs("svc", 1, 1);
    let b = batch([payload(Signal::Logs, &l, 1)]);

    server.state().script.push_back((StatusCode::SERVICE_UNAVAILABLE, vec![("retry-after", "7".into())], vec![]));
    let err = sender.send(&b).await.expect_err("503");
    assert!(err.retryable);
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));

    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3600));
    server.state().script.push_back((StatusCode::TOO_MANY_REQUESTS, vec![("retry-after", date)], vec![]));
    let err = sender.send(&b).await.expect_err("429");
    assert!(err.retryable);
    let delay = err.retry_after.expect("a delay from the date");
    assert!(delay > Duration::from_secs(3000) && delay <= Duration::from_secs(3600), "{delay:?}");

    server.state().script.push_back((StatusCode::BAD_GATEWAY, vec![], b"upstream down".to_vec()));
    let err = sender.send(&b).await.expect_err("502");
    assert!(err.retryable);
    assert_eq!(err.retry_after, None);
    assert!(err.message.contains("upstream down"), "{}", err.message);

    let long = format!("bad request: missing service.name {}", "x".repeat(5000));
    server.state().script.push_back((
        StatusCode::BAD_REQUEST,
        vec![("content-type", "text/plain".into())],
        long.into(),
    ));
    let err = sender.send(&b).await.expect_err("400");
    assert!(!err.retryable);
    assert!(err.message.contains("400 Bad Request"), "{}", err.message);
    assert!(err.message.contains("bad request: missing service.name"), "{}", err.message);
    assert!(err.message.len() < 1500, "the body is truncated: {} bytes", err.message.len());

    // An OTLP/HTTP error body: google.rpc.Status { code: 3, message: "invalid span id" }.
    let mut status = vec![0x08, 0x03, 0x12, 15];
    status.extend_from_slice(b"invalid span id");
    server.state().script.push_back((
        StatusCode::BAD_REQUEST,
        vec![("content-type", "application/x-protobuf".into())],
        status,
    ));
    let err = sender.send(&b).await.expect_err("400");
    assert!(!err.retryable);
    assert!(err.message.ends_with(": invalid span id"), "{}", err.message);

    server.state().script.push_back((StatusCode::INTERNAL_SERVER_ERROR, vec![], vec![]));
    assert!(!sender.send(&b).await.expect_err("500").retryable);
}

/// Nothing listening: retryable.
#[tokio::test]
async fn unreachable_backend_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let (sender, _) = build_otlphttp(
        "otlphttp/down",
        Signal::Logs,
        &config(addr, Compression::Gzip),
        &sightline_core::Registry::new(),
    )
    .expect("build");
    let l = common::logs("svc", 1, 1);
    let err = sender.send(&batch([payload(Signal::Logs, &l, 1)])).await.expect_err("nothing listens");
    assert!(err.retryable, "{err:?}");
    assert!(err.message.contains(&addr.to_string()), "{}", err.message);
}

/// End to end under the core driver: the backend answers 503 twice, then accepts. The driver
/// retries, every item ends up counted in `otelcol_exporter_sent_log_records`, none as
/// failed, and the metrics follow the naming rules.
#[tokio::test]
async fn driver_retries_until_the_backend_accepts() {
    let server = TestServer::default();
    let addr = server.start().await;
    server.state().script.extend([
        (StatusCode::SERVICE_UNAVAILABLE, vec![("retry-after", "0".to_string())], b"warming up".to_vec()),
        (StatusCode::SERVICE_UNAVAILABLE, vec![], b"still warming up".to_vec()),
    ]);
    let mut cfg = config(addr, Compression::Gzip);
    cfg.retry_on_failure.initial_interval = Duration::from_millis(10);
    cfg.retry_on_failure.max_interval = Duration::from_millis(50);
    cfg.sending_queue.batch.flush_timeout = Duration::from_millis(20);
    let registry = Registry::new();
    let (sender, driver_cfg) =
        build_otlphttp("otlphttp/e2e", Signal::Logs, &cfg, &sightline_core::Registry::new()).expect("build");
    let running = driver::spawn("otlphttp/e2e", Signal::Logs, driver_cfg, sender, &registry);
    let (a, b, _) = two_log_requests();
    assert_eq!(running.handle.enqueue(payload(Signal::Logs, &a, 3)).await, sightline_core::Enqueued::Queued);
    assert_eq!(running.handle.enqueue(payload(Signal::Logs, &b, 2)).await, sightline_core::Enqueued::Queued);

    let sent = || registry.value("otelcol_exporter_sent_log_records", &[("exporter", "otlphttp/e2e")]);
    assert!(wait_for(|| sent() == Some(5)).await, "sent: {:?}\n{}", sent(), registry.render());
    assert_eq!(registry.value("otelcol_exporter_send_failed_log_records", &[("exporter", "otlphttp/e2e")]), Some(0));
    let seen = server.state().seen.clone();
    assert!(seen.len() >= 3, "two refusals and at least one success, saw {}", seen.len());
    // The first two requests were refused; the accepted ones hold every record once.
    let mut records = 0;
    for s in &seen[2..] {
        let req = ExportLogsServiceRequest::decode(&s.decoded()[..]).expect("protobuf");
        records += req.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum::<usize>();
    }
    assert_eq!(records, 5, "the accepted requests hold all the data");

    drop(running.handle);
    tokio::time::timeout(Duration::from_secs(10), running.task).await.expect("driver stops").expect("no panic");
    registry.assert_compliant();
}

#[test]
fn config_from_yaml() {
    let cfg: OtlpHttpConfig = serde_yaml_ng::from_str(
        "endpoint: https://gw.example.com/otlp\nlogs_endpoint: https://loki.example.com/otlp/v1/logs\nencoding: json\ncompression: none\nsending_queue: {num_consumers: 2}\n",
    )
    .expect("valid");
    assert!(cfg.validate().is_empty());
    assert_eq!(cfg.url(Signal::Traces).expect("url").to_string(), "https://gw.example.com/otlp/v1/traces");
    assert_eq!(cfg.url(Signal::Logs).expect("url").to_string(), "https://loki.example.com/otlp/v1/logs");
    let err = serde_yaml_ng::from_str::<OtlpHttpConfig>("endpoint: http://x\nencoding: xml\n").expect_err("unknown");
    assert!(err.to_string().contains("xml"), "{err}");
}

/// `headers_from_files` and `auth.bearer_token_file`: the files' contents are sent as headers
/// (sensitive), a rotated file is picked up without a rebuild and counted, and an emptied file
/// keeps the previous value.
#[tokio::test]
async fn headers_and_token_from_files_are_sent_and_reloaded() {
    let server = TestServer::default();
    let addr = server.start().await;
    let dir = tempfile::tempdir().expect("dir");
    let (tenant, token) = (dir.path().join("tenant"), dir.path().join("token"));
    std::fs::write(&tenant, "team-a\n").expect("write");
    std::fs::write(&token, "  first-Secret \n").expect("write");
    let yaml = format!(
        "endpoint: http://{addr}\ncompression: none\nheaders_from_files: {{ X-Scope-OrgID: {} }}\nauth: {{ bearer_token_file: {} }}\n",
        tenant.display(),
        token.display()
    );
    let cfg: OtlpHttpConfig = serde_yaml_ng::from_str(&yaml).expect("config");
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    let registry = Registry::new();
    let (sender, _) = build_otlphttp("otlphttp/files", Signal::Logs, &cfg, &registry).expect("build");
    let logs = common::logs("checkout", 1, 1);
    let b = batch([payload(Signal::Logs, &logs, 1)]);
    sender.send(&b).await.expect("send");
    {
        let s = server.state();
        assert_eq!(s.seen[0].header("x-scope-orgid"), Some("team-a"));
        assert_eq!(s.seen[0].header("authorization"), Some("Bearer first-Secret"));
    }

    std::fs::write(&token, "second-Secret\n").expect("write");
    let mut rotated = false;
    for _ in 0..40 {
        sender.send(&b).await.expect("send");
        let last = server.state().seen.last().cloned().expect("seen");
        if last.header("authorization") == Some("Bearer second-Secret") {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rotated, "the rotated token was never sent");
    let text = registry.render();
    assert!(text.contains("sightline_exporter_credential_reloads_total{exporter=\"otlphttp/files\"} 1\n"), "{text}");

    std::fs::write(&tenant, "").expect("write");
    let counted = wait_for(|| {
        registry.render().contains("sightline_exporter_credential_reload_errors_total{exporter=\"otlphttp/files\"} 1\n")
    })
    .await;
    assert!(counted, "{}", registry.render());
    sender.send(&b).await.expect("send");
    let last = server.state().seen.last().cloned().expect("seen");
    assert_eq!(last.header("x-scope-orgid"), Some("team-a"), "the previous value stays in use");
    assert!(!registry.render().contains("Secret"));
}
