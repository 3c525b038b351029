//! End to end: the real binary, the real Rust OpenTelemetry SDK (`opentelemetry-otlp`) as
//! the client, and a real OTLP/gRPC server as the backend.

mod common;

use common::*;
use opentelemetry::KeyValue;
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use std::time::Duration;

fn config(sink_port: u16, extra_exporter: &str) -> String {
    let sections = format!(
        r#"processors:
  memory_limiter:
    limit_mib: 64
  ownership:
    catalog: ["{{dir}}/catalog"]
exporters:
  otlp/backend:
    endpoint: 127.0.0.1:{sink_port}
    tls:
      insecure: true
    headers:
      X-Scope-OrgID: tenant-1
    sending_queue:
      batch:
        flush_timeout: 50ms
  file/traces:
    path: "{{dir}}/out/traces.jsonl"
{extra_exporter}"#
    );
    let pipelines = r#"    traces:
      receivers: [otlp]
      processors: [memory_limiter, ownership]
      exporters: [otlp/backend, file/traces]
    metrics:
      receivers: [otlp]
      processors: [ownership]
      exporters: [otlp/backend]
    logs:
      receivers: [otlp]
      processors: [ownership]
      exporters: [otlp/backend]
"#;
    otlp_config(&sections, pipelines)
}

fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_string())
        .with_attribute(KeyValue::new("owner.team", "forged-by-client"))
        .build()
}

/// The golden path: spans over gRPC, logs over HTTP/protobuf and metrics over gRPC from the
/// Rust SDK arrive at the backend with the catalog's ownership on their resources, forged
/// client values replaced, the tenant header forwarded, and the self-metrics counting them.
#[test]
fn sdk_traces_metrics_logs_arrive_enriched() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (sink, sink_port) = Sink::start(&rt);
    let dir = catalog_dir();
    let mut sl = Sightline::start(dir.path(), &config(sink_port, ""));
    let _guard = rt.enter();

    // Traces: gRPC with gzip.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://127.0.0.1:{}", sl.grpc))
        .with_compression(opentelemetry_otlp::Compression::Gzip)
        .build()
        .unwrap();
    let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_resource(resource("checkout"))
        .with_batch_exporter(exporter)
        .build();
    let tracer = tp.tracer("e2e");
    for i in 0..10 {
        tracer.in_span(format!("op-{i}"), |_| {});
    }
    tp.force_flush().unwrap();

    // Logs: HTTP/protobuf.
    let lexp = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_endpoint(format!("http://127.0.0.1:{}/v1/logs", sl.http))
        .build()
        .unwrap();
    let lp = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_resource(resource("search-indexer"))
        .with_batch_exporter(lexp)
        .build();
    let logger = lp.logger("e2e");
    for i in 0..5 {
        let mut rec = logger.create_log_record();
        rec.set_body(format!("hello {i}").into());
        logger.emit(rec);
    }
    lp.force_flush().unwrap();

    // Metrics: gRPC.
    let mp = sdk_meter_provider(sl.grpc, resource("mystery"));
    let counter = mp.meter("e2e").u64_counter("requests").build();
    counter.add(3, &[KeyValue::new("route", "/")]);
    mp.force_flush().unwrap();

    assert!(wait_until(20, || sink.span_count() >= 10), "spans did not arrive:\n{}", sl.stderr());
    assert!(wait_until(20, || !sink.logs.lock().unwrap().is_empty()), "logs did not arrive:\n{}", sl.stderr());
    assert!(wait_until(20, || !sink.metrics.lock().unwrap().is_empty()), "metrics did not arrive:\n{}", sl.stderr());

    for r in sink.traces.lock().unwrap().iter().flat_map(|r| &r.resource_spans) {
        let a = &r.resource.as_ref().unwrap().attributes;
        assert_eq!(attr(a, "service.name").as_deref(), Some("checkout"));
        assert_eq!(attr(a, "owner.team").as_deref(), Some("payments"), "forged value replaced");
        assert_eq!(attr(a, "owner.oncall").as_deref(), Some("pagerduty:PAY123"));
        assert_eq!(attr(a, "owner.repository").as_deref(), Some("github.com/acme/checkout"));
        assert_eq!(attr(a, "service.criticality").as_deref(), Some("high"));
        assert_eq!(attr(a, "owner.source").as_deref(), Some("service"));
        assert_eq!(a.iter().filter(|kv| kv.key == "owner.team").count(), 1);
    }
    for r in sink.logs.lock().unwrap().iter().flat_map(|r| &r.resource_logs) {
        let a = &r.resource.as_ref().unwrap().attributes;
        assert_eq!(attr(a, "owner.team").as_deref(), Some("search"));
        assert_eq!(attr(a, "owner.source").as_deref(), Some("rule:1"));
    }
    for r in sink.metrics.lock().unwrap().iter().flat_map(|r| &r.resource_metrics) {
        let a = &r.resource.as_ref().unwrap().attributes;
        assert_eq!(attr(a, "owner.team").as_deref(), Some("unowned"));
        assert_eq!(attr(a, "owner.source").as_deref(), Some("default"));
    }
    let h = sink.headers.lock().unwrap();
    assert_eq!(h[0].get("x-scope-orgid").unwrap(), "tenant-1");
    drop(h);

    // The file exporter got the same enriched spans as OTLP/JSON lines.
    let file = dir.path().join("out/traces.jsonl");
    assert!(wait_until(10, || std::fs::read_to_string(&file).map(|s| s.contains("\"payments\"")).unwrap_or(false)));
    for line in std::fs::read_to_string(&file).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["resourceSpans"].is_array());
    }

    // Self-metrics.
    let accepted = sl.metric("otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"}");
    assert_eq!(accepted, Some(10.0));
    assert!(wait_until(10, || sl.metric("otelcol_exporter_sent_spans{exporter=\"otlp/backend\"}") == Some(10.0)));
    let (_, metrics) = sl.get("/metrics").unwrap();
    assert!(metrics.contains("sightline_ownership_resources_total{processor=\"ownership\",signal=\"traces\",team=\"payments\",source=\"service\"}"), "{metrics}");
    assert!(metrics.contains("otelcol_exporter_queue_capacity"));
    // The status page: coverage counts resources; the metrics went to the default team.
    let (st, page) = sl.get("/status").unwrap();
    assert_eq!(st, 200);
    assert!(page.contains("<td>payments</td>"), "{page}");
    assert!(page.contains("<td>unowned</td>"), "{page}");
    assert!(page.contains("Ownership coverage"), "{page}");
    let _ = tp.shutdown();
    let _ = lp.shutdown();
    let _ = mp.shutdown();
    assert!(sl.terminate().is_some_and(|s| s.success()), "clean exit on SIGTERM:\n{}", sl.stderr());
}

/// A team edits its catalog file while data flows: the next spans carry the new owner, no
/// restart. A broken edit keeps the previous catalog and is counted.
#[test]
fn catalog_reload_without_restart() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (sink, sink_port) = Sink::start(&rt);
    let dir = catalog_dir();
    let mut sl = Sightline::start(dir.path(), &config(sink_port, ""));
    let _guard = rt.enter();
    let grpc = sl.grpc;
    let send = |service: &str| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://127.0.0.1:{grpc}"))
            .build()
            .unwrap();
        let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_resource(resource(service))
            .with_batch_exporter(exporter)
            .build();
        tp.tracer("e2e").in_span("op", |_| {});
        tp.force_flush().unwrap();
        let _ = tp.shutdown();
    };
    let last_team = |sink: &Sink| {
        let t = sink.traces.lock().unwrap();
        let r = t.last()?.resource_spans.last()?.resource.clone()?;
        attr(&r.attributes, "owner.team")
    };
    send("ledger");
    assert!(wait_until(20, || sink.span_count() == 1));
    assert_eq!(last_team(&sink).as_deref(), Some("unowned"));

    // Broken edit: refused, counted, previous catalog kept.
    std::fs::write(dir.path().join("catalog/teams.yaml"), format!("{CATALOG}\n  - match: {{}}\n    team: nobody\n"))
        .unwrap();
    assert!(
        wait_until(20, || sl.metric("sightline_catalog_reload_errors_total{processor=\"ownership\"}") == Some(1.0)),
        "{}",
        sl.stderr()
    );
    assert!(sl.stderr().contains("teams.yaml"), "the error names the file:\n{}", sl.stderr());

    // Good edit: payments takes over the ledger service.
    std::fs::write(
        dir.path().join("catalog/teams.yaml"),
        CATALOG.replace("rules:", "  - name: ledger\n    team: payments\nrules:"),
    )
    .unwrap();
    assert!(wait_until(20, || sl.metric("sightline_catalog_reloads_total{processor=\"ownership\"}") == Some(1.0)));
    send("ledger");
    assert!(wait_until(20, || sink.span_count() == 2));
    assert_eq!(last_team(&sink).as_deref(), Some("payments"));

    // SIGHUP reloads too.
    sl.signal(1);
    assert!(wait_until(20, || sl.metric("sightline_catalog_reloads_total{processor=\"ownership\"}") == Some(2.0)));
}

/// A dead backend does not stop the other exporter of the same pipeline: the file exporter
/// keeps receiving while the OTLP exporter's queue retries.
#[test]
fn dead_backend_does_not_block_the_other_exporter() {
    let dir = catalog_dir();
    let dead = free_port();
    let mut sl = Sightline::start(dir.path(), &config(dead, ""));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let _guard = rt.enter();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://127.0.0.1:{}", sl.grpc))
        .build()
        .unwrap();
    let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_resource(resource("checkout"))
        .with_batch_exporter(exporter)
        .build();
    for _ in 0..3 {
        tp.tracer("e2e").in_span("op", |_| {});
        tp.force_flush().unwrap();
    }
    let file = dir.path().join("out/traces.jsonl");
    assert!(wait_until(15, || std::fs::read_to_string(&file).map(|s| s.lines().count() >= 1).unwrap_or(false)));
    assert_eq!(sl.metric("otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"}"), Some(3.0));
    assert!(wait_until(10, || sl.metric("otelcol_exporter_sent_spans{exporter=\"file/traces\"}") == Some(3.0)));
    assert_eq!(sl.metric("otelcol_exporter_sent_spans{exporter=\"otlp/backend\"}"), Some(0.0));
    let _ = tp.shutdown();
}

/// `sightline validate` prints every error, path-qualified with its line, and exits 1; a good
/// config exits 0. The shipped default config is valid.
#[test]
fn validate_reports_every_error_with_path_and_line() {
    let dir = catalog_dir();
    let bad = config(4317, "  otlp/typo:\n    endpont: x:1\n")
        .replace("exporters: [otlp/backend, file/traces]", "exporters: [otlp/backend, file/tracez]");
    let path = dir.path().join("bad.yaml");
    let fill = |t: &str| {
        t.replace("{dir}", &dir.path().display().to_string())
            .replace("{grpc}", "14317")
            .replace("{http}", "14318")
            .replace("{admin}", "18888")
    };
    std::fs::write(&path, fill(&bad)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["validate", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("exporters.otlp/typo.endpont: unknown key `endpont` (did you mean `endpoint`?)"),
        "{stderr}"
    );
    assert!(stderr.contains("(line 27)"), "{stderr}");
    assert_eq!(stderr.lines().count(), 3, "two errors and the summary line: {stderr}");
    assert!(stderr.ends_with("2 error(s)\n"), "{stderr}");
    assert!(stderr.contains("service.pipelines.traces.exporters: refers to exporter \"file/tracez\""), "{stderr}");
    assert!(stderr.contains("did you mean \"file/traces\"?"), "{stderr}");

    // A catalog error is reported too, with its file and line.
    std::fs::write(dir.path().join("catalog/bad.yaml"), "services:\n  - name: x\n    team: paymnts\n").unwrap();
    std::fs::write(&path, fill(&config(4317, ""))).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["validate", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.yaml:3"), "{stderr}");
    assert!(stderr.contains("paymnts"), "{stderr}");
    std::fs::remove_file(dir.path().join("catalog/bad.yaml")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["validate", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // The shipped default.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
        .current_dir(&root)
        .args(["validate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// SIGTERM flushes what is queued: data still waiting for its batch timer is delivered
/// before the process exits.
#[test]
fn sigterm_flushes_queued_data() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (sink, sink_port) = Sink::start(&rt);
    let dir = catalog_dir();
    let cfg = config(sink_port, "").replace("flush_timeout: 50ms", "min_size: 100000\n        flush_timeout: 60s");
    let mut sl = Sightline::start(dir.path(), &cfg);
    let _guard = rt.enter();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://127.0.0.1:{}", sl.grpc))
        .build()
        .unwrap();
    let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_resource(resource("checkout"))
        .with_batch_exporter(exporter)
        .build();
    for _ in 0..4 {
        tp.tracer("e2e").in_span("op", |_| {});
    }
    tp.force_flush().unwrap();
    let _ = tp.shutdown();
    assert!(wait_until(10, || sl.metric("otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"}")
        == Some(4.0)));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.span_count(), 0, "held by the 60 s batch timer");
    let st = sl.terminate().expect("exits");
    assert!(st.success(), "{}", sl.stderr());
    assert_eq!(sink.span_count(), 4, "flushed on shutdown:\n{}", sl.stderr());
}
