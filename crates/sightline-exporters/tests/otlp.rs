//! The `otlp` exporter against a real tonic gRPC server built from `opentelemetry-proto`'s
//! generated services, over 127.0.0.1.

mod common;

use common::{batch, payload};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;
use sightline_core::Signal;
use sightline_exporters::{Compression, OtlpConfig, build_otlp};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status};

/// What the test backend saw and how it answers.
#[derive(Default)]
struct State {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
    metadata: Vec<MetadataMap>,
    /// Answer every request with this status instead of OK.
    fail: Option<(Code, String, Vec<u8>)>,
    /// Answer OK with a partial success.
    partial: bool,
}

#[derive(Clone, Default)]
struct Backend(Arc<Mutex<State>>);

impl Backend {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the metadata; the failure to answer with, if any.
    fn admit(&self, md: &MetadataMap) -> Result<(), Status> {
        let mut s = self.state();
        s.metadata.push(md.clone());
        match &s.fail {
            Some((code, msg, details)) => {
                Err(Status::with_details(*code, msg.clone(), bytes::Bytes::from(details.clone())))
            }
            None => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl TraceService for Backend {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.admit(req.metadata())?;
        let mut s = self.state();
        s.traces.push(req.into_inner());
        let partial_success =
            s.partial.then(|| ExportTracePartialSuccess { rejected_spans: 1, error_message: "span too old".into() });
        Ok(Response::new(ExportTraceServiceResponse { partial_success }))
    }
}

#[tonic::async_trait]
impl MetricsService for Backend {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.admit(req.metadata())?;
        self.state().metrics.push(req.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Backend {
    async fn export(
        &self,
        req: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.admit(req.metadata())?;
        self.state().logs.push(req.into_inner());
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Starts the backend on a free port; it accepts gzip and zstd.
async fn start(backend: &Backend) -> SocketAddr {
    start_with(backend, None).await
}

/// Starts the backend, with TLS when given a (certificate, key) PEM pair.
async fn start_with(backend: &Backend, tls: Option<(String, String)>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let b = backend.clone();
    let mut server = Server::builder();
    if let Some((cert, key)) = tls {
        server = server.tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key))).expect("server TLS");
    }
    tokio::spawn(async move {
        let gz = CompressionEncoding::Gzip;
        let zs = CompressionEncoding::Zstd;
        let _ = server
            .add_service(TraceServiceServer::new(b.clone()).accept_compressed(gz).accept_compressed(zs))
            .add_service(MetricsServiceServer::new(b.clone()).accept_compressed(gz).accept_compressed(zs))
            .add_service(LogsServiceServer::new(b).accept_compressed(gz).accept_compressed(zs))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await;
    });
    addr
}

fn config(addr: SocketAddr, compression: Compression) -> OtlpConfig {
    let mut cfg = OtlpConfig::new(format!("http://{addr}"));
    cfg.compression = compression;
    cfg.headers.insert("X-Scope-OrgID".into(), "tenant-1".into());
    cfg
}

/// A batch of two requests arrives as one request holding both requests' resources (the
/// concatenation sent as is), under every compression, with the configured metadata.
#[tokio::test]
async fn sends_the_union_of_a_batch_with_each_compression() {
    let backend = Backend::default();
    let addr = start(&backend).await;
    let a = common::traces("checkout", 3, 1);
    let b = common::traces("payments", 2, 2);
    let mut union = a.clone();
    union.resource_spans.extend(b.resource_spans.clone());
    for (i, compression) in [Compression::Gzip, Compression::Zstd, Compression::None].into_iter().enumerate() {
        let (sender, driver) =
            build_otlp("otlp/test", Signal::Traces, &config(addr, compression), &sightline_core::Registry::new())
                .expect("build");
        assert_eq!(driver.timeout, Duration::from_secs(5));
        let batch = batch([payload(Signal::Traces, &a, 3), payload(Signal::Traces, &b, 2)]);
        sender.send(&batch).await.expect("send");
        let s = backend.state();
        assert_eq!(s.traces.len(), i + 1);
        assert_eq!(s.traces[i], union, "{compression:?}");
        let md = &s.metadata[i];
        assert_eq!(md.get("x-scope-orgid").and_then(|v| v.to_str().ok()), Some("tenant-1"));
        let encoding = md.get("grpc-encoding").and_then(|v| v.to_str().ok());
        match compression {
            Compression::None => assert_eq!(encoding, None),
            c => assert_eq!(encoding, Some(c.as_str())),
        }
        assert!(md.get("grpc-timeout").is_some(), "the send deadline is propagated");
    }
}

/// Each signal goes to its own service path.
#[tokio::test]
async fn metrics_and_logs_reach_their_services() {
    let backend = Backend::default();
    let addr = start(&backend).await;
    let m = common::metrics("svc");
    let l = common::logs("svc", 4, 10);
    let (ms, _) =
        build_otlp("otlp/m", Signal::Metrics, &config(addr, Compression::Gzip), &sightline_core::Registry::new())
            .expect("build");
    let (ls, _) =
        build_otlp("otlp/l", Signal::Logs, &config(addr, Compression::Zstd), &sightline_core::Registry::new())
            .expect("build");
    ms.send(&batch([payload(Signal::Metrics, &m, 7)])).await.expect("metrics");
    ls.send(&batch([payload(Signal::Logs, &l, 4)])).await.expect("logs");
    let s = backend.state();
    assert_eq!(s.metrics, [m]);
    assert_eq!(s.logs, [l]);
}

/// A partial success is a success (logged, not retried).
#[tokio::test]
async fn partial_success_is_success() {
    let backend = Backend::default();
    backend.state().partial = true;
    let addr = start(&backend).await;
    let (sender, _) =
        build_otlp("otlp/p", Signal::Traces, &config(addr, Compression::Gzip), &sightline_core::Registry::new())
            .expect("build");
    let t = common::traces("svc", 1, 1);
    sender.send(&batch([payload(Signal::Traces, &t, 1)])).await.expect("partial success is ok");
}

// google.rpc.Status with a RetryInfo detail, encoded by prost (independently of the exporter's
// hand-written reader).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

fn retry_info_details(code: Code, delay: Duration) -> Vec<u8> {
    let retry = RetryInfo {
        retry_delay: Some(ProtoDuration { seconds: delay.as_secs() as i64, nanos: delay.subsec_nanos() as i32 }),
    };
    RpcStatus {
        code: code as i32,
        message: "quota".into(),
        details: vec![Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: retry.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

/// The OTLP specification's classification of gRPC failures, answered by a real server:
/// UNAVAILABLE is retryable, INVALID_ARGUMENT permanent, RESOURCE_EXHAUSTED permanent unless
/// the server attached a RetryInfo, whose delay is passed on.
#[tokio::test]
async fn classifies_server_failures() {
    let backend = Backend::default();
    let addr = start(&backend).await;
    let (sender, _) =
        build_otlp("otlp/f", Signal::Traces, &config(addr, Compression::Gzip), &sightline_core::Registry::new())
            .expect("build");
    let t = common::traces("svc", 1, 1);
    let b = batch([payload(Signal::Traces, &t, 1)]);
    let cases = [
        (Code::Unavailable, vec![], true, None),
        (Code::InvalidArgument, vec![], false, None),
        (Code::ResourceExhausted, vec![], false, None),
        (
            Code::ResourceExhausted,
            retry_info_details(Code::ResourceExhausted, Duration::from_millis(2500)),
            true,
            Some(Duration::from_millis(2500)),
        ),
        (
            Code::Unavailable,
            retry_info_details(Code::Unavailable, Duration::from_secs(3)),
            true,
            Some(Duration::from_secs(3)),
        ),
    ];
    for (code, details, retryable, retry_after) in cases {
        backend.state().fail = Some((code, format!("{code:?} from test"), details));
        let err = sender.send(&b).await.expect_err("must fail");
        assert_eq!(err.retryable, retryable, "{code:?}: {err:?}");
        assert_eq!(err.retry_after, retry_after, "{code:?}");
        assert!(err.message.contains("from test"), "{}", err.message);
    }
    assert!(backend.state().traces.is_empty());
}

/// A backend whose connection breaks while a request is in flight (a restart, a reset): tonic
/// reports it as UNKNOWN "transport error", and it must be retried, not dropped. The "backend"
/// is a TCP socket that reads the start of the request (more than the HTTP/2 preface and
/// headers: 60 KB of its body) and then closes, so the request is surely in flight.
#[tokio::test]
async fn connection_broken_mid_request_is_retryable() {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 16 << 10];
        let mut seen = 0;
        while seen < 60_000 {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen += n,
            }
        }
        seen
    });
    let (sender, _) =
        build_otlp("otlp/reset", Signal::Traces, &config(addr, Compression::None), &sightline_core::Registry::new())
            .expect("build");
    let t = common::traces("svc", 5000, 7);
    let err = sender.send(&batch([payload(Signal::Traces, &t, 5000)])).await.expect_err("the connection broke");
    assert!(server.await.expect("server") >= 60_000, "the request was not in flight");
    assert!(err.retryable, "{err:?}");
}

/// Nothing listening: retryable (the backend may come up), and building never connects.
#[tokio::test]
async fn unreachable_backend_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let (sender, _) =
        build_otlp("otlp/down", Signal::Traces, &config(addr, Compression::Gzip), &sightline_core::Registry::new())
            .expect("build");
    let t = common::traces("svc", 1, 1);
    let err = sender.send(&batch([payload(Signal::Traces, &t, 1)])).await.expect_err("nothing listens");
    assert!(err.retryable, "{err:?}");
}

/// Invalid configurations are refused before anything starts, naming the key.
#[tokio::test]
async fn build_refuses_invalid_config() {
    let err = build_otlp("otlp/x", Signal::Traces, &OtlpConfig::new(""), &sightline_core::Registry::new())
        .err()
        .expect("invalid");
    assert_eq!(err.key(), "endpoint");
    let mut cfg = OtlpConfig::new("localhost:4317");
    cfg.tls.ca_file = Some("/nonexistent/ca.pem".into());
    let err =
        build_otlp("otlp/x", Signal::Traces, &cfg, &sightline_core::Registry::new()).err().expect("missing CA file");
    assert_eq!(err.key(), "tls.ca_file");
}

#[test]
fn config_from_yaml_rejects_unknown_keys() {
    let cfg: OtlpConfig = serde_yaml_ng::from_str(
        "endpoint: tempo:4317\ntls: {insecure: true}\nheaders: {X-Scope-OrgID: t1}\ncompression: zstd\ntimeout: 2s\nretry_on_failure: {max_elapsed_time: 1m}\n",
    )
    .expect("valid");
    assert_eq!(cfg.compression, Compression::Zstd);
    assert_eq!(cfg.timeout, Duration::from_secs(2));
    assert!(cfg.validate().is_empty());
    let err = serde_yaml_ng::from_str::<OtlpConfig>("endpoint: x:1\ncompresion: gzip\n").expect_err("typo");
    assert!(err.to_string().contains("compresion"), "{err}");
    let err = serde_yaml_ng::from_str::<OtlpConfig>("endpoint: x:1\ncompression: snappy\n").expect_err("unknown");
    assert!(err.to_string().contains("snappy"), "{err}");
}

/// A self-signed certificate for `names`, as (certificate PEM, key PEM).
fn self_signed(names: &[&str]) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("certificate");
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// TLS through the shared rustls connector: a server verified with `tls.ca_file` (by IP, and
/// by `server_name_override` for a certificate of another name), a certificate that does not
/// match refused, and `insecure_skip_verify` accepting anything.
#[tokio::test]
async fn tls_verifies_the_server() {
    let dir = common::temp_dir("otlp-tls");
    let t = common::traces("svc", 1, 1);
    let b = batch([payload(Signal::Traces, &t, 1)]);

    // Certificate for the IP the test dials.
    let (cert, key) = self_signed(&["127.0.0.1"]);
    std::fs::write(dir.join("ip.pem"), &cert).expect("write");
    let backend = Backend::default();
    let addr = start_with(&backend, Some((cert, key))).await;
    let mut cfg = OtlpConfig::new(format!("https://{addr}"));
    cfg.tls.ca_file = Some(dir.join("ip.pem"));
    let (sender, _) = build_otlp("otlp/tls", Signal::Traces, &cfg, &sightline_core::Registry::new()).expect("build");
    sender.send(&b).await.expect("verified by ca_file");
    // host:port without a scheme is TLS too.
    cfg.endpoint = addr.to_string();
    let (sender, _) = build_otlp("otlp/tls", Signal::Traces, &cfg, &sightline_core::Registry::new()).expect("build");
    sender.send(&b).await.expect("verified by ca_file");
    assert_eq!(backend.state().traces.len(), 2);

    // Certificate for another name.
    let (cert, key) = self_signed(&["backend.test"]);
    std::fs::write(dir.join("name.pem"), &cert).expect("write");
    let backend = Backend::default();
    let addr = start_with(&backend, Some((cert, key))).await;
    let mut cfg = OtlpConfig::new(format!("https://{addr}"));
    cfg.tls.ca_file = Some(dir.join("name.pem"));
    let (sender, _) = build_otlp("otlp/tls", Signal::Traces, &cfg, &sightline_core::Registry::new()).expect("build");
    sender.send(&b).await.expect_err("name mismatch");
    cfg.tls.server_name_override = Some("backend.test".into());
    let (sender, _) = build_otlp("otlp/tls", Signal::Traces, &cfg, &sightline_core::Registry::new()).expect("build");
    sender.send(&b).await.expect("verified against the override");
    let mut cfg = OtlpConfig::new(format!("https://{addr}"));
    cfg.tls.insecure_skip_verify = true;
    let (sender, _) = build_otlp("otlp/tls", Signal::Traces, &cfg, &sightline_core::Registry::new()).expect("build");
    sender.send(&b).await.expect("not verified");
    assert_eq!(backend.state().traces.len(), 2);

    // `tls.insecure: true` with host:port is plain text.
    let backend = Backend::default();
    let addr = start(&backend).await;
    let mut cfg = OtlpConfig::new(addr.to_string());
    cfg.tls.insecure = true;
    let (sender, _) = build_otlp("otlp/plain", Signal::Traces, &cfg, &sightline_core::Registry::new()).expect("build");
    sender.send(&b).await.expect("plain text");
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue 9.1's audit: one exporter id listed by several signals is one component. Its signals'
/// senders share one channel (one TCP connection to the backend, not one per signal) and one
/// credential watcher, so that a rotated token file is counted once, not once per signal.
#[tokio::test]
async fn one_exporter_for_several_signals_shares_its_channel_and_credentials() {
    let backend = Backend::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Count the connections the exporter opens by accepting them through a counting stream.
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    let incoming = async_stream_of(listener, counted);
    let b = backend.clone();
    tokio::spawn(async move {
        let _ = Server::builder()
            .add_service(TraceServiceServer::new(b.clone()))
            .add_service(MetricsServiceServer::new(b.clone()))
            .add_service(LogsServiceServer::new(b))
            .serve_with_incoming(incoming)
            .await;
    });
    let dir = tempfile::tempdir().expect("dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "first\n").expect("write");
    let mut cfg = config(addr, Compression::None);
    cfg.auth = Some(sightline_exporters::ExporterAuth { bearer_token_file: token.clone() });
    let registry = sightline_core::Registry::new();
    let exporter = sightline_exporters::OtlpExporter::new("otlp/gw", &cfg, &registry).expect("build");
    let (traces, metrics, logs) =
        (exporter.sender(Signal::Traces), exporter.sender(Signal::Metrics), exporter.sender(Signal::Logs));
    traces.send(&batch([payload(Signal::Traces, &common::traces("svc", 1, 1), 1)])).await.expect("traces");
    metrics.send(&batch([payload(Signal::Metrics, &common::metrics("svc"), 1)])).await.expect("metrics");
    logs.send(&batch([payload(Signal::Logs, &common::logs("svc", 1, 10), 1)])).await.expect("logs");
    assert_eq!(connections.load(std::sync::atomic::Ordering::Relaxed), 1, "one connection for three signals");

    std::fs::write(&token, "second\n").expect("write");
    let series = [("exporter", "otlp/gw")];
    let name = "sightline_exporter_credential_reloads_total";
    for _ in 0..100 {
        if registry.value(name, &series) == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Three more checks of the file (one a second) would have counted it again per signal.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(registry.value(name, &series), Some(1), "{}", registry.render());
    logs.send(&batch([payload(Signal::Logs, &common::logs("svc", 1, 10), 1)])).await.expect("logs");
    let s = backend.state();
    let auth: Vec<_> = s.metadata.iter().map(|m| m.get("authorization").and_then(|v| v.to_str().ok())).collect();
    assert_eq!(auth, [Some("Bearer first"), Some("Bearer first"), Some("Bearer first"), Some("Bearer second")]);
}

/// The listener's connections as a stream for tonic, counting each one accepted.
fn async_stream_of(
    listener: tokio::net::TcpListener,
    count: Arc<std::sync::atomic::AtomicUsize>,
) -> impl futures_core::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold((listener, count), |(l, count)| async move {
        let r = l.accept().await.map(|(s, _)| s);
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some((r, (l, count)))
    })
}
