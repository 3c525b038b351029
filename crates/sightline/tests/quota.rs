//! Per-team quotas on the real binary: a team over its quota is refused with HTTP 429 +
//! `Retry-After` and gRPC `RESOURCE_EXHAUSTED`, naming the team and the quota; another team
//! keeps being accepted; the refusals are counted per team. Counts only, no timings: the
//! quota's refill rate is so low that nothing refills during the test.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::io::{Read, Write};
use std::time::Duration;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:{grpc}" }
      http: { endpoint: "127.0.0.1:{http}" }
processors:
  ownership:
    catalog: ["{dir}/catalog"]
  quota:
    teams:
      payments: { items_per_second: 0.001, burst_items: 10 }
exporters:
  file/traces:
    path: "{dir}/out/traces.jsonl"
service:
  telemetry: { metrics: { address: "127.0.0.1:{admin}" } }
  pipelines:
    traces: { receivers: [otlp], processors: [ownership, quota], exporters: [file/traces] }
"#;

fn request(service: &str, spans: u64, first_id: u64) -> ExportTraceServiceRequest {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                spans: (first_id..first_id + spans)
                    .map(|i| Span {
                        trace_id: vec![9; 16],
                        span_id: i.to_be_bytes().to_vec(),
                        name: "op".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// POST /v1/traces over plain HTTP/1.1; returns (status, headers+body as text).
fn post(port: u16, body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn a_team_over_quota_is_refused_and_other_teams_are_not() {
    let dir = catalog_dir();
    let mut sl = Sightline::start(dir.path(), CONFIG);

    // payments (checkout): burst 10; requests of 4 are admitted while the bucket is not in
    // debt: 10 -> 6 -> 2 -> -2, then refused.
    let mut accepted = 0;
    let mut refused = Vec::new();
    for i in 0..5 {
        let (status, text) = post(sl.http, &request("checkout", 4, i * 4 + 1).encode_to_vec());
        match status {
            200 => accepted += 4,
            429 => refused.push(text),
            other => panic!("unexpected status {other}: {text}"),
        }
    }
    assert_eq!(accepted, 12);
    assert_eq!(refused.len(), 2);
    let text = refused[0].to_ascii_lowercase();
    assert!(text.contains("retry-after:"), "{text}");
    assert!(text.contains("team \\\"payments\\\"") || text.contains("team \"payments\""), "{text}");
    assert!(text.contains("0.001 spans/s"), "{text}");

    // Another team is unaffected.
    for i in 0..10 {
        let (status, text) = post(sl.http, &request("search-api", 50, 1000 + i * 50).encode_to_vec());
        assert_eq!(status, 200, "{text}");
    }

    // gRPC: RESOURCE_EXHAUSTED naming the team.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        let mut c = TraceServiceClient::connect(format!("http://127.0.0.1:{}", sl.grpc)).await.unwrap();
        c.export(request("checkout", 1, 5000)).await.unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("\"payments\""), "{status:?}");

    let labels = r#"{processor="quota",signal="traces",team="payments"}"#;
    assert_eq!(sl.metric(&format!("sightline_quota_refused_requests_total{labels}")), Some(3.0));
    assert_eq!(sl.metric(&format!("sightline_quota_refused_spans_total{labels}")), Some(9.0));
    assert_eq!(sl.metric(r#"otelcol_receiver_accepted_spans{receiver="otlp",transport="http"}"#), Some(512.0));
    assert!(wait_until(10, || sl.metric(r#"otelcol_exporter_sent_spans{exporter="file/traces""#) == Some(512.0)));
}

/// A quota before the ownership processor would read a team nobody set: `validate` refuses it.
#[test]
fn quota_must_follow_ownership() {
    let dir = catalog_dir();
    let cfg = CONFIG
        .replace("processors: [ownership, quota]", "processors: [quota, ownership]")
        .replace("{dir}", &dir.path().display().to_string());
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, cfg).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["validate", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("service.pipelines.traces.processors") && err.contains("list an ownership processor before it"),
        "{err}"
    );
}
