//! The wire walk and the resource rewrite checked against prost, the reference decoder: what
//! `inspect` counts is what prost decodes, and what `rewrite_resources` writes decodes to the
//! same spans / points / records with only the resource changed.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sightline_core::Signal;
use sightline_core::wire::{self, ResourceEditor, WireErrorKind};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn span(i: u8) -> Span {
    Span {
        trace_id: vec![i; 16],
        span_id: vec![i; 8],
        name: format!("span-{i}"),
        attributes: vec![kv("http.route", "/x")],
        ..Default::default()
    }
}

fn traces(resources: usize, spans: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: (0..resources)
            .map(|r| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", &format!("svc-{r}")), kv("owner.team", "forged")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: (0..spans).map(|i| span(i as u8)).collect(),
                    ..Default::default()
                }],
                schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
            })
            .collect(),
    }
}

/// Drops `owner.*` attributes and appends `owner.team = <service.name>-team`.
struct Stamp(Vec<u8>);
impl ResourceEditor for Stamp {
    fn edit(&mut self, resource: &[u8], _entry: &[u8]) -> &[u8] {
        self.0.clear();
        let mut svc = String::new();
        for f in wire::Fields::new(resource) {
            let f = f.unwrap();
            if f.number == 1 {
                let a = wire::attributes(f.raw, 1).next().unwrap().unwrap();
                if a.key.starts_with("owner.") {
                    continue;
                }
                if a.key == "service.name" {
                    svc = a.value.as_str().unwrap_or("").to_string();
                }
            }
            self.0.extend_from_slice(f.raw);
        }
        wire::put_string_attribute(&mut self.0, 1, "owner.team", &format!("{svc}-team"));
        &self.0
    }
}

#[test]
fn inspect_counts_spans_and_resources() {
    let req = traces(3, 5).encode_to_vec();
    let s = wire::inspect(Signal::Traces, &req).unwrap();
    assert_eq!((s.items, s.resources, s.invalid_items), (15, 3, 0));
}

#[test]
fn rewrite_changes_only_resources() {
    let orig = traces(3, 4);
    let bytes = orig.encode_to_vec();
    let mut out = Vec::new();
    wire::rewrite_resources(&bytes, &mut out, &mut Stamp(Vec::new())).unwrap();
    let got = ExportTraceServiceRequest::decode(&out[..]).unwrap();
    assert_eq!(got.resource_spans.len(), 3);
    for (i, (g, o)) in got.resource_spans.iter().zip(&orig.resource_spans).enumerate() {
        assert_eq!(g.scope_spans, o.scope_spans, "spans untouched");
        assert_eq!(g.schema_url, o.schema_url);
        let attrs = &g.resource.as_ref().unwrap().attributes;
        assert_eq!(attrs, &vec![kv("service.name", &format!("svc-{i}")), kv("owner.team", &format!("svc-{i}-team"))]);
    }
    assert_eq!(wire::inspect(Signal::Traces, &out).unwrap().items, 12);
}

#[test]
fn rewrite_adds_missing_resource() {
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: None,
            scope_logs: vec![ScopeLogs { log_records: vec![LogRecord::default(); 2], ..Default::default() }],
            schema_url: String::new(),
        }],
    };
    let bytes = req.encode_to_vec();
    assert_eq!(wire::inspect(Signal::Logs, &bytes).unwrap().items, 2);
    let mut out = Vec::new();
    wire::rewrite_resources(&bytes, &mut out, &mut Stamp(Vec::new())).unwrap();
    let got = ExportLogsServiceRequest::decode(&out[..]).unwrap();
    assert_eq!(got.resource_logs[0].resource.as_ref().unwrap().attributes, vec![kv("owner.team", "-team")]);
    assert_eq!(got.resource_logs[0].scope_logs, req.resource_logs[0].scope_logs);
}

#[test]
fn metrics_count_data_points() {
    let ndp = NumberDataPoint::default();
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: None,
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "g".into(),
                        data: Some(metric::Data::Gauge(Gauge { data_points: vec![ndp.clone(); 3] })),
                        ..Default::default()
                    },
                    Metric {
                        name: "s".into(),
                        data: Some(metric::Data::Sum(Sum { data_points: vec![ndp; 2], ..Default::default() })),
                        ..Default::default()
                    },
                    Metric {
                        name: "h".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint { bucket_counts: vec![1, 2], ..Default::default() }],
                            aggregation_temporality: 2,
                        })),
                        ..Default::default()
                    },
                    Metric { name: "empty".into(), ..Default::default() },
                ],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    let s = wire::inspect(Signal::Metrics, &req.encode_to_vec()).unwrap();
    assert_eq!(s.items, 6);
    // Per resource entry, as the ownership processor counts a team's items.
    let entry = req.resource_metrics[0].encode_to_vec();
    assert_eq!(wire::count_items(Signal::Metrics, &entry), 6);
    let spans = traces(1, 4).resource_spans[0].encode_to_vec();
    assert_eq!(wire::count_items(Signal::Traces, &spans), 4);
    assert_eq!(wire::count_items(Signal::Traces, &spans[..spans.len() / 2]), 0, "malformed: the count stops");
}

#[test]
fn bad_span_id_is_an_invalid_item_with_a_path() {
    let mut req = traces(2, 3);
    req.resource_spans[1].scope_spans[0].spans[2].span_id = vec![1, 2, 3];
    let bytes = req.encode_to_vec();
    let s = wire::inspect(Signal::Traces, &bytes).unwrap();
    assert_eq!((s.items, s.invalid_items), (5, 1));
    let e = s.first_invalid.unwrap();
    assert_eq!(e.path(), "resource_spans[1].scope_spans[0].spans[2]");
    assert_eq!(*e.kind(), WireErrorKind::InvalidIdLength { name: "span_id", expected: 8, got: 3 });
    let (kept, removed) = wire::retain_items(&bytes, &mut |i| wire::item_is_valid(Signal::Traces, i)).unwrap();
    assert_eq!(removed, 1);
    let got = ExportTraceServiceRequest::decode(&kept[..]).unwrap();
    assert_eq!(got.resource_spans[1].scope_spans[0].spans.len(), 2);
    assert_eq!(got.resource_spans[0], req.resource_spans[0]);
}

#[test]
fn truncated_and_garbage_input_is_an_error_not_a_panic() {
    let bytes = traces(2, 3).encode_to_vec();
    for cut in 1..bytes.len() {
        // Any prefix either fails or is a valid shorter request; it never panics.
        let _ = wire::inspect(Signal::Traces, &bytes[..cut]);
    }
    let e = wire::inspect(Signal::Traces, &bytes[..bytes.len() - 1]).unwrap_err();
    assert_eq!(*e.kind(), WireErrorKind::Truncated);
    // The outer length of resource_spans[1] runs past the end: reported at the top level.
    assert_eq!(e.to_string(), "invalid protobuf: truncated message (a length or varint runs past the end)");
    assert!(wire::inspect(Signal::Traces, &[0x0f]).is_err(), "wire type 7");
    assert!(
        wire::inspect(Signal::Traces, &[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
            .is_err()
    );
    // Deterministic pseudo-random bytes.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..20_000 {
        let mut buf = bytes.clone();
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % buf.len();
            buf[i] = (x >> 32) as u8;
        }
        for sig in Signal::ALL {
            if wire::inspect(sig, &buf).is_ok() {
                let mut out = Vec::new();
                wire::rewrite_resources(&buf, &mut out, &mut Stamp(Vec::new())).ok();
            }
        }
    }
}

#[test]
fn varint_len_matches_encoding() {
    for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
        let mut out = Vec::new();
        wire::put_varint(&mut out, v);
        assert_eq!(out.len(), wire::varint_len(v), "{v}");
        let mut pos = 0;
        assert_eq!(wire::read_varint(&out, &mut pos).unwrap(), v);
    }
}
