//! The `clickhouse` exporter with the Rust SDK as the client: spans, logs and metrics from
//! `opentelemetry-otlp` land in the collector's tables, every field as the SDK made it. ClickHouse is
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
    /// The config sections of a pipeline through `ownership` into a `clickhouse` exporter at
    /// this endpoint with its defaults, plus `options` (indented exporter lines).
    fn sections(&self, options: &str) -> String {
        format!(
            "processors:\n  ownership:\n    catalog: [\"{{dir}}/catalog\"]\nexporters:\n  clickhouse:\n    endpoint: http://127.0.0.1:{}\n{options}",
            self.port
        )
    }

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
    let sections = ch.sections("");
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

/// Logs and metrics from the Rust SDK: every record in `otel_logs` with its body, severity and
/// attributes, and the counter, histogram and gauge points in their metrics tables.
#[test]
fn rust_sdk_logs_and_metrics_land_in_their_tables() {
    use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
    use opentelemetry::metrics::MeterProvider as _;
    let Some(ch) = ClickHouse::start() else { return };
    let dir = catalog_dir();
    let sections = ch.sections("    database: rust_lm\n");
    let sl = Sightline::start(
        dir.path(),
        &otlp_config(
            &sections,
            "    logs: { receivers: [otlp], processors: [ownership], exporters: [clickhouse] }\n    metrics: { receivers: [otlp], processors: [ownership], exporters: [clickhouse] }\n",
        ),
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let _guard = rt.enter();
    let resource = Resource::builder().with_service_name("checkout").build();
    let lp = sdk_logger_provider(sl.http, "checkout");
    let logger = lp.logger("rust-logs");
    let n = 300;
    for i in 0..n {
        let mut rec = logger.create_log_record();
        rec.set_body(AnyValue::from(format!("order {i} placed")));
        rec.set_severity_number(if i % 3 == 0 { Severity::Error } else { Severity::Info });
        rec.set_severity_text(if i % 3 == 0 { "ERROR" } else { "INFO" });
        rec.add_attribute("order.id", i as i64);
        logger.emit(rec);
    }
    lp.force_flush().unwrap();
    let mp = sdk_meter_provider(sl.grpc, resource);
    let meter = mp.meter("rust-metrics");
    meter.u64_counter("orders").build().add(7, &[KeyValue::new("region", "eu")]);
    let h = meter.f64_histogram("latency").with_unit("ms").build();
    for v in [1.0, 7.0, 30.0, 300.0] {
        h.record(v, &[KeyValue::new("route", "/cart")]);
    }
    meter.f64_gauge("temperature").build().record(21.5, &[KeyValue::new("room", "a")]);
    mp.force_flush().unwrap();
    assert!(
        wait_until(60, || ch.count("rust_lm.otel_logs") == n),
        "{} logs\n{}",
        ch.count("rust_lm.otel_logs"),
        sl.stderr()
    );
    let logs: Vec<serde_json::Value> = ch
        .query(
            "SELECT Body, SeverityText, SeverityNumber, ServiceName, OwnerTeam, LogAttributes, ScopeName \
             FROM rust_lm.otel_logs FORMAT JSONEachRow",
        )
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut bodies: Vec<String> = logs.iter().map(|r| r["Body"].as_str().unwrap().to_string()).collect();
    bodies.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("order {i} placed")).collect();
    want.sort();
    assert_eq!(bodies, want);
    for r in &logs {
        let i: usize = r["Body"].as_str().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let (text, number) = if i.is_multiple_of(3) { ("ERROR", 17) } else { ("INFO", 9) };
        assert_eq!((r["SeverityText"].as_str(), r["SeverityNumber"].as_u64()), (Some(text), Some(number)));
        assert_eq!(r["LogAttributes"]["order.id"], i.to_string().as_str());
        assert_eq!((r["ServiceName"].as_str(), r["OwnerTeam"].as_str()), (Some("checkout"), Some("payments")));
        assert_eq!(r["ScopeName"], "rust-logs");
    }
    let one = |sql: &str| -> serde_json::Value {
        let text = ch.query(sql);
        serde_json::from_str(text.lines().next().unwrap_or("null")).unwrap()
    };
    assert!(
        wait_until(60, || ch.count("rust_lm.otel_metrics_histogram") >= 1
            && ch.count("rust_lm.otel_metrics_gauge") >= 1),
        "{}",
        sl.stderr()
    );
    let sum =
        one("SELECT Value, IsMonotonic, AggregationTemporality, Attributes, OwnerTeam FROM rust_lm.otel_metrics_sum \
         WHERE MetricName = 'orders' LIMIT 1 FORMAT JSONEachRow");
    assert_eq!((sum["Value"].as_f64(), sum["IsMonotonic"].as_bool()), (Some(7.0), Some(true)));
    assert_eq!((sum["AggregationTemporality"].as_i64(), sum["Attributes"]["region"].as_str()), (Some(2), Some("eu")));
    assert_eq!(sum["OwnerTeam"], "payments");
    let hist = one("SELECT Count, Sum, Min, Max, MetricUnit, Attributes FROM rust_lm.otel_metrics_histogram \
         WHERE MetricName = 'latency' LIMIT 1 FORMAT JSONEachRow");
    let count = hist["Count"].as_u64().or_else(|| hist["Count"].as_str().and_then(|s| s.parse().ok()));
    assert_eq!((count, hist["Sum"].as_f64()), (Some(4), Some(338.0)));
    assert_eq!(
        (hist["Min"].as_f64(), hist["Max"].as_f64(), hist["MetricUnit"].as_str()),
        (Some(1.0), Some(300.0), Some("ms"))
    );
    let gauge = one(
        "SELECT Value, Attributes FROM rust_lm.otel_metrics_gauge WHERE MetricName = 'temperature' LIMIT 1 FORMAT JSONEachRow",
    );
    assert_eq!((gauge["Value"].as_f64(), gauge["Attributes"]["room"].as_str()), (Some(21.5), Some("a")));
    let _ = lp.shutdown();
    let _ = mp.shutdown();
}
