//! loadgen -> sink over loopback, in-process (and once through the real `loadgen` binary).

use clap::Parser as _;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use sightline_bench_tools::loadgen::{self, Report, admin_call};
use sightline_bench_tools::sink::{self, Sink, Snapshot};
use sightline_bench_tools::{CorpusConfig, Signal, SpanSize, corpus};
use tonic::codec::CompressionEncoding;

async fn start_sink(fail_rate: f64) -> Sink {
    sink::start(&sink::Args {
        grpc: "127.0.0.1:0".into(),
        http: "127.0.0.1:0".into(),
        admin: "127.0.0.1:0".into(),
        verify_ownership: 1.0,
        fail_rate,
        ..Default::default()
    })
    .await
    .expect("sink starts")
}

fn args(endpoint: String, extra: &[&str]) -> loadgen::Args {
    let defaults = [
        ("--duration", "1s"),
        ("--warmup", "0s"),
        ("--items-per-request", "100"),
        ("--corpus-requests", "16"),
        ("--connections", "2"),
    ];
    let mut v = vec!["loadgen".to_string(), "--quiet".into(), "--endpoint".into(), endpoint];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            v.extend([flag.to_string(), value.to_string()]);
        }
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    loadgen::Args::parse_from(v)
}

/// What the sink counted matches what the load generator saw accepted.
fn check_totals(report: &Report, snap: &Snapshot, signal: Signal, stamped: bool) {
    let s = snap.signal(signal);
    assert!(report.requests.accepted > 0, "some requests were accepted: {report:?}");
    assert_eq!(report.requests.errors, 0, "{:?}", report.errors);
    assert_eq!(report.requests.abandoned, 0);
    assert_eq!(s.items, report.items.accepted, "sink items == loadgen accepted items");
    assert_eq!(s.requests, report.requests.accepted);
    assert_eq!(s.invalid, 0);
    assert_eq!(report.items.accepted, report.requests.accepted * 100);
    assert_eq!(report.latency.summary.count, report.requests.accepted, "client latency histogram");
    assert!(report.latency.summary.p50_us > 0 && report.latency.summary.max_us >= report.latency.summary.p99_us);
    if stamped {
        assert_eq!(s.unstamped, 0);
        assert_eq!(s.latency_count, s.requests, "end-to-end latency for every request");
        assert!(s.latency_max_us > 0);
    } else {
        assert_eq!(s.unstamped, s.requests, "compressed requests carry no stamp");
        assert_eq!(s.latency_count, 0);
    }
    // No Sightline in between: nothing stamped owner.team.
    assert_eq!(s.ownership_checked_requests, s.requests);
    assert!(s.ownership_missing >= s.requests * 4, "every resource is checked");
    assert_eq!(s.ownership_ok, 0);
    // The report round-trips through JSON.
    let json = serde_json::to_string(report).unwrap();
    let back: Report = serde_json::from_str(&json).expect("the JSON report parses");
    assert_eq!(back.items.accepted, report.items.accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_closed_loop_counts_match() {
    let sink = start_sink(0.0).await;
    let a = args(sink.grpc_addr.unwrap().to_string(), &["--protocol", "grpc", "--inflight", "2"]);
    let report = loadgen::run(a).await.expect("run");
    assert_eq!(report.config.mode, "closed");
    assert!(report.stamped);
    check_totals(&report, &sink.stats.snapshot(), Signal::Traces, true);
    assert!(report.buffer_copies < report.requests.sent, "buffers come back from the HTTP stack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_open_loop_counts_match() {
    let sink = start_sink(0.0).await;
    let a = args(
        format!("http://{}", sink.http_addr.unwrap()),
        &["--protocol", "http", "--signal", "logs", "--rate", "10000", "--span-size", "large"],
    );
    let report = loadgen::run(a).await.expect("run");
    assert_eq!(report.config.mode, "open");
    assert_eq!(report.latency.basis, "scheduled");
    assert!(report.send_lag.is_some());
    check_totals(&report, &sink.stats.snapshot(), Signal::Logs, true);
    // 10 000 items/s = 100 requests/s for 1 s.
    assert_eq!(report.requests.sent + report.requests.missed, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_metrics_count_but_carry_no_stamp() {
    for (protocol, compression, endpoint) in [("grpc", "zstd", true), ("http", "gzip", false)] {
        let sink = start_sink(0.0).await;
        let addr = if endpoint { sink.grpc_addr } else { sink.http_addr }.unwrap().to_string();
        let a = args(
            addr,
            &["--protocol", protocol, "--compression", compression, "--signal", "metrics", "--duration", "500ms"],
        );
        let report = loadgen::run(a).await.expect("run");
        assert!(!report.stamped);
        assert!(report.corpus.avg_wire_request_bytes < report.corpus.avg_request_bytes / 2.0, "compressed");
        let snap = sink.stats.snapshot();
        check_totals(&report, &snap, Signal::Metrics, false);
        assert!(snap.metrics.wire_bytes < snap.metrics.bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_reported_by_status() {
    let sink = start_sink(0.5).await;
    for (protocol, addr, key) in [("grpc", sink.grpc_addr, "UNAVAILABLE"), ("http", sink.http_addr, "503")] {
        sink.stats.reset();
        let a = args(addr.unwrap().to_string(), &["--protocol", protocol, "--duration", "300ms"]);
        let report = loadgen::run(a).await.expect("run");
        let snap = sink.stats.snapshot();
        assert!(report.requests.refused > 0);
        assert_eq!(report.refusals.get(key).copied(), Some(report.requests.refused), "{:?}", report.refusals);
        assert_eq!(snap.traces.failed_injected, report.requests.refused);
        assert_eq!(snap.traces.items, report.items.accepted);
        assert_eq!(report.items.refused, report.requests.refused * 100);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_accepts_gzip_and_zstd_grpc_from_tonic() {
    let sink = start_sink(0.0).await;
    let endpoint = format!("http://{}", sink.grpc_addr.unwrap());
    let traces = corpus(&CorpusConfig { requests: 2, items_per_request: 50, ..Default::default() });
    let logs = corpus(&CorpusConfig {
        signal: Signal::Logs,
        span_size: SpanSize::Large,
        requests: 1,
        items_per_request: 30,
        ..Default::default()
    });
    let channel = tonic::transport::Endpoint::from_shared(endpoint).unwrap().connect().await.expect("connects");
    for enc in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let mut client = TraceServiceClient::new(channel.clone()).send_compressed(enc);
        for r in &traces.requests {
            let req = ExportTraceServiceRequest::decode(r.bytes.clone()).unwrap();
            client.export(req).await.expect("accepted");
        }
        let mut client = LogsServiceClient::new(channel.clone()).send_compressed(enc);
        let req = ExportLogsServiceRequest::decode(logs.requests[0].bytes.clone()).unwrap();
        client.export(req).await.expect("accepted");
    }
    let snap = sink.stats.snapshot();
    assert_eq!(snap.traces.requests, 4);
    assert_eq!(snap.traces.items, 200);
    assert_eq!(snap.logs.items, 60);
    assert_eq!(snap.traces.invalid + snap.logs.invalid, 0);
    assert!(snap.traces.wire_bytes < snap.traces.bytes, "arrived compressed");
    // Generation-time timestamps are an hour old: not taken for stamps.
    assert_eq!(snap.traces.unstamped, 4);

    // Garbage is refused (HTTP 400) and counted.
    let status = post(&sink.http_addr.unwrap().to_string(), "/v1/traces", b"\x0a\xffnot protobuf").await;
    assert_eq!(status, 400);
    assert_eq!(sink.stats.snapshot().traces.invalid, 1);
    // Admin endpoints.
    let admin = sink.admin_addr.unwrap().to_string();
    let stats: Snapshot =
        serde_json::from_slice(&admin_call(&admin, http::Method::GET, "/stats").await.unwrap()).unwrap();
    assert_eq!(stats.traces.items, 200);
    admin_call(&admin, http::Method::POST, "/reset").await.unwrap();
    assert_eq!(sink.stats.snapshot().traces, Default::default());
}

/// The real binary: flags, the text report, and the JSON file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_binary_writes_a_json_report() {
    let sink = start_sink(0.0).await;
    let json = std::env::temp_dir().join(format!("loadgen-report-{}.json", std::process::id()));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
    cmd.args(["--endpoint", &sink.grpc_addr.unwrap().to_string(), "--duration", "1s", "--warmup", "200ms"])
        .args(["--items-per-request", "50", "--corpus-requests", "8", "--quiet", "--threads", "2"])
        .args(["--sink-admin", &sink.admin_addr.unwrap().to_string(), "--json"])
        .arg(&json);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("achieved:") && stdout.contains("latency:"), "{stdout}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("JSON written")).expect("parses");
    std::fs::remove_file(&json).ok();
    assert!(v["throughput"]["items_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["latency"]["p99_us"].as_u64().unwrap() > 0);
    assert!(v["sink"]["traces"]["items"].as_u64().unwrap() > 0, "the sink's stats are included");
    assert!(v["sink"]["traces"]["latency_count"].as_u64().unwrap() > 0);

    let help = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--endpoint", "--protocol", "--rate", "--inflight", "--compression", "--json", "--threads"] {
        assert!(help.contains(flag), "--help documents {flag}");
    }
}

/// Real remote-write requests (Sightline's translator over a metrics corpus, snappy) are
/// counted by the sink exactly: series, samples, native histograms, and `owner_team` labels.
#[tokio::test]
async fn sink_counts_prometheus_remote_write() {
    let mut s = start_sink(0.0).await;
    let addr = s.http_addr.unwrap().to_string();
    let c = corpus(&CorpusConfig { signal: Signal::Metrics, requests: 8, items_per_request: 50, ..Default::default() });
    let mut opts = sightline_prometheus::Options::default();
    // The corpus has no owner.team: the external label stands in for it on every series.
    opts.external_labels.push(("owner_team".into(), "payments".into()));
    let mut t = sightline_prometheus::Translator::new(opts);
    let mut bodies = Vec::new();
    for r in c.requests.iter() {
        t.reset();
        t.add_request(&r.bytes).unwrap();
        t.encode(3, 100, |_, req| bodies.push(req.to_vec()));
    }
    let mut expect = sink::WriteSummary::default();
    let mut enc = snap::raw::Encoder::new();
    for b in &bodies {
        let w = sink::walk_write_request(b, true).unwrap();
        expect.series += w.series;
        expect.samples += w.samples;
        expect.histograms += w.histograms;
        expect.owned += w.owned;
        let z: &'static [u8] = Vec::leak(enc.compress_vec(b).unwrap());
        assert_eq!(post_rw(&addr, z, "snappy").await, 204);
    }
    assert!(expect.samples > 400, "histograms expand to many samples: {expect:?}");
    assert_eq!(expect.owned, expect.series, "every series has owner_team");
    // Not snappy: refused and not counted.
    assert_eq!(post_rw(&addr, b"not snappy", "snappy").await, 400);
    assert_eq!(post_rw(&addr, b"x", "gzip").await, 415);
    let snap: Snapshot = serde_json::from_slice(
        &admin_call(&s.admin_addr.unwrap().to_string(), http::Method::GET, "/stats").await.unwrap(),
    )
    .unwrap();
    let rw = &snap.remote_write;
    assert_eq!(rw.requests, bodies.len() as u64);
    assert_eq!((rw.series, rw.samples, rw.histograms), (expect.series, expect.samples, expect.histograms));
    assert_eq!(rw.bytes, bodies.iter().map(|b| b.len() as u64).sum::<u64>());
    assert_eq!(rw.invalid, 2);
    assert_eq!(rw.ownership_checked_requests, bodies.len() as u64);
    assert_eq!((rw.ownership_ok, rw.ownership_missing), (expect.series, 0));
    assert_eq!(snap.metrics.items, 0, "remote write is not counted as OTLP");
    s.shutdown();
}

async fn post_rw(addr: &str, body: &'static [u8], encoding: &str) -> u16 {
    use http_body_util::Full;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/api/v1/write")
        .header("host", addr)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", encoding)
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(Full::new(bytes::Bytes::from_static(body)))
        .unwrap();
    sender.send_request(req).await.unwrap().status().as_u16()
}

/// POSTs a protobuf body over HTTP/1.1 and returns the status.
async fn post(addr: &str, path: &str, body: &'static [u8]) -> u16 {
    use http_body_util::Full;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(path)
        .header("host", addr)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(bytes::Bytes::from_static(body)))
        .unwrap();
    sender.send_request(req).await.unwrap().status().as_u16()
}
