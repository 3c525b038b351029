//! Test harness: runs the real `sightline` binary on free loopback ports with a generated
//! config, and a real OTLP/gRPC sink (tonic with the generated OTLP services) that records what
//! it receives.

#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free loopback port, never one this test process was given before (the kernel can hand
/// a just-released port out again, and two components of one test then collide).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `f` every 20 ms for up to `secs` seconds; returns whether it became true.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

pub fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        other => Some(format!("{other:?}")),
    })
}

/// A config whose OTLP receiver listens on `{grpc}` and `{http}` and whose self-metrics (and
/// `/readyz`, which [`Sightline::start`] waits for) are on `{admin}`: the ports `start` fills
/// in. `sections` holds the top-level `processors:` and `exporters:`, `pipelines` the entries
/// under `service.pipelines` (indented by four spaces).
pub fn otlp_config(sections: &str, pipelines: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
      http:
        endpoint: 127.0.0.1:{{http}}
{sections}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{admin}}
  pipelines:
{pipelines}"#
    )
}

/// A temporary directory holding `catalog/teams.yaml` with [`CATALOG`].
pub fn catalog_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("catalog")).unwrap();
    std::fs::write(dir.path().join("catalog/teams.yaml"), CATALOG).unwrap();
    dir
}

/// A running sightline process; killed on drop.
pub struct Sightline {
    pub child: Child,
    pub grpc: u16,
    pub http: u16,
    pub admin: u16,
    pub dir: PathBuf,
    pub stderr_path: PathBuf,
}

impl Sightline {
    /// Writes `config` (with `{grpc}`, `{http}`, `{admin}`, `{dir}` filled in) and starts the
    /// binary, waiting until `/readyz` answers 200.
    pub fn start(dir: &Path, config: &str) -> Sightline {
        let (grpc, http, admin) = (free_port(), free_port(), free_port());
        let text = config
            .replace("{grpc}", &grpc.to_string())
            .replace("{http}", &http.to_string())
            .replace("{admin}", &admin.to_string())
            .replace("{dir}", &dir.display().to_string());
        let cfg = dir.join("sightline.yaml");
        std::fs::write(&cfg, text).unwrap();
        let stderr_path = dir.join("sightline.stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["run", "--config", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let mut s = Sightline { child, grpc, http, admin, dir: dir.to_path_buf(), stderr_path };
        let ready = wait_until(30, || s.get("/readyz").map(|(st, _)| st == 200).unwrap_or(false));
        assert!(ready, "sightline did not become ready:\n{}", s.stderr());
        s
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// A plain HTTP/1.1 GET on the admin port.
    pub fn get(&mut self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        if let Ok(Some(_)) = self.child.try_wait() {
            return None;
        }
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.admin)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((status, body))
    }

    /// The value of a metric series from `/metrics` (the first line starting with `series`).
    pub fn metric(&mut self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits in pid_t");
        // SAFETY: kill(2) takes two integers and reads or writes no memory of this process; the
        // pid is our own child's, which we have not waited for yet, so it cannot be reused.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.signal(15);
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Sightline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OTLP/gRPC server that records every request.
#[derive(Clone, Default)]
pub struct Sink {
    pub traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    pub metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    pub logs: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
    pub headers: Arc<Mutex<Vec<tonic::metadata::MetadataMap>>>,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.headers.lock().unwrap().push(r.metadata().clone());
        self.traces.lock().unwrap().push(r.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        r: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics.lock().unwrap().push(r.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        r: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.logs.lock().unwrap().push(r.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

impl Sink {
    /// Starts the sink on a free port in `rt`; returns it and its port.
    pub fn start(rt: &tokio::runtime::Runtime) -> (Sink, u16) {
        let sink = Sink::default();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = sink.clone();
        rt.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(
                    TraceServiceServer::new(s.clone()).accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                )
                .add_service(
                    MetricsServiceServer::new(s.clone()).accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                )
                .add_service(LogsServiceServer::new(s).accept_compressed(tonic::codec::CompressionEncoding::Gzip))
                .serve_with_incoming(incoming(listener))
                .await
                .unwrap();
        });
        (sink, port)
    }

    pub fn span_count(&self) -> usize {
        self.traces
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum()
    }
}

/// The connections `l` accepts, as the stream tonic's `serve_with_incoming` takes.
pub fn incoming(
    l: tokio::net::TcpListener,
) -> impl futures_core::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures_util::stream::unfold(l, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}

pub const CATALOG: &str = r##"
teams:
  - name: payments
    contact: "#payments"
    oncall: "pagerduty:PAY123"
  - name: search
    contact: search@acme.test
services:
  - name: checkout
    team: payments
    system: storefront
    repository: github.com/acme/checkout
    criticality: high
rules:
  - match: { service.name: "search-*" }
    team: search
"##;

/// The Rust SDK's logger provider exporting OTLP/HTTP protobuf to `http_port` with a batch
/// processor, for a resource of `service`.
#[allow(dead_code)]
pub fn sdk_logger_provider(http_port: u16, service: &str) -> opentelemetry_sdk::logs::SdkLoggerProvider {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_endpoint(format!("http://127.0.0.1:{http_port}/v1/logs"))
        .build()
        .unwrap();
    opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service.to_string()).build())
        .with_batch_exporter(exporter)
        .build()
}

/// The Rust SDK's meter provider exporting OTLP/gRPC to `grpc_port` with a periodic reader,
/// for `resource`.
#[allow(dead_code)]
pub fn sdk_meter_provider(
    grpc_port: u16,
    resource: opentelemetry_sdk::Resource,
) -> opentelemetry_sdk::metrics::SdkMeterProvider {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://127.0.0.1:{grpc_port}"))
        .build()
        .unwrap();
    opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_resource(resource)
        .with_periodic_exporter(exporter)
        .build()
}
