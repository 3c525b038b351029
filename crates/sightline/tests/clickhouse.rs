//! The `clickhouse` exporter with the Rust SDK as the client: spans from `opentelemetry-otlp`
//! land in the collector's `otel_traces` table, every field as the SDK made it. ClickHouse is
//! chDB (its engine, from PyPI) behind the loopback HTTP endpoint of
//! `tests/python/peer_chdb.py`, run with the Python environment `scripts/test.sh` installs
//! (no ClickHouse server can be installed on these machines).

mod common;

use common::*;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The chDB endpoint; stopped (stdin closed, then killed) on drop.
struct ClickHouse {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl ClickHouse {
    /// `None` when the Python environment is missing outside CI (a developer's plain
    /// `cargo test`); in CI (`CI=true`) a missing environment fails the test.
    fn start() -> Option<ClickHouse> {
        let python = root().join(".peers/venv/bin/python");
        if !python.exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{} is missing: scripts/test.sh installs it",
                python.display()
            );
            eprintln!("skipped: {} is missing (scripts/test.sh installs it)", python.display());
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(python)
            .arg(root().join("tests/python/peer_chdb.py"))
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("peer_chdb.py printed {line:?}"));
        Some(ClickHouse { child, port, _dir: dir })
    }

    /// Runs `sql` (ending with its FORMAT) and returns the answer's body.
    fn query(&self, sql: &str) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{sql}", sql.len())
            .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
    }

    fn count(&self, table: &str) -> usize {
        self.query(&format!("SELECT count() FROM {table} FORMAT TabSeparated")).trim().parse().unwrap_or(0)
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the SDK made of one span.
struct Made {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: &'static str,
    attempt: i64,
    error: bool,
}

/// The exporter's defaults (database `default`, lz4 blocks, async inserts, the default batch).
#[test]
fn rust_sdk_spans_land_in_the_collector_traces_table() {
    let Some(ch) = ClickHouse::start() else { return };
    let dir = catalog_dir();
    let sections = format!(
        r#"processors:
  ownership:
    catalog: ["{{dir}}/catalog"]
exporters:
  clickhouse:
    endpoint: http://127.0.0.1:{}
"#,
        ch.port
    );
    let sl = Sightline::start(
        dir.path(),
        &otlp_config(
            &sections,
            "    traces: { receivers: [otlp], processors: [ownership], exporters: [clickhouse] }\n",
        ),
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let _guard = rt.enter();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://127.0.0.1:{}", sl.grpc))
        .build()
        .unwrap();
    let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name("checkout").build())
        .with_batch_exporter(exporter)
        .build();
    let tracer = tp.tracer("rust-e2e");
    let mut made = Vec::new();
    let n = 500;
    for i in 0..n {
        let mut root = tracer
            .span_builder(format!("GET /item/{}", i % 9))
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new("attempt", i as i64), KeyValue::new("ratio", 0.5)])
            .start(&tracer);
        if i % 4 == 0 {
            root.set_status(Status::error("no stock"));
        }
        let rc = root.span_context().clone();
        let cx = opentelemetry::Context::current().with_remote_span_context(rc.clone());
        let child = tracer.span_builder("SELECT item").with_kind(SpanKind::Client).start_with_context(&tracer, &cx);
        let cc = child.span_context().clone();
        drop(child);
        drop(root);
        made.push(Made {
            trace_id: rc.trace_id().to_string(),
            span_id: rc.span_id().to_string(),
            parent: String::new(),
            name: format!("GET /item/{}", i % 9),
            kind: "Server",
            attempt: i as i64,
            error: i % 4 == 0,
        });
        made.push(Made {
            trace_id: cc.trace_id().to_string(),
            span_id: cc.span_id().to_string(),
            parent: rc.span_id().to_string(),
            name: "SELECT item".into(),
            kind: "Client",
            attempt: -1,
            error: false,
        });
    }
    tp.force_flush().unwrap();
    let _ = tp.shutdown();
    assert!(
        wait_until(60, || ch.count("default.otel_traces") == 2 * n),
        "{} rows\n{}",
        ch.count("default.otel_traces"),
        sl.stderr()
    );
    let rows: HashMap<String, serde_json::Value> = ch
        .query(
            "SELECT SpanId, TraceId, ParentSpanId, SpanName, SpanKind, ServiceName, OwnerTeam, StatusCode, \
             StatusMessage, SpanAttributes, Duration, ScopeName FROM default.otel_traces FORMAT JSONEachRow",
        )
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["SpanId"].as_str().unwrap().to_string(), v)
        })
        .collect();
    assert_eq!(rows.len(), 2 * n);
    for m in &made {
        let r = &rows[&m.span_id];
        assert_eq!(r["TraceId"], m.trace_id.as_str());
        assert_eq!(r["ParentSpanId"], m.parent.as_str());
        assert_eq!(r["SpanName"], m.name.as_str());
        assert_eq!(r["SpanKind"], m.kind);
        assert_eq!((r["ServiceName"].as_str(), r["OwnerTeam"].as_str()), (Some("checkout"), Some("payments")));
        assert_eq!(r["ScopeName"], "rust-e2e");
        if m.error {
            assert_eq!((r["StatusCode"].as_str(), r["StatusMessage"].as_str()), (Some("Error"), Some("no stock")));
        } else {
            assert_eq!(r["StatusCode"], "Unset");
        }
        if m.attempt >= 0 {
            assert_eq!(r["SpanAttributes"]["attempt"], m.attempt.to_string().as_str());
            assert_eq!(r["SpanAttributes"]["ratio"], "0.5");
        } else {
            assert_eq!(r["SpanAttributes"], serde_json::json!({}));
        }
    }
}
