//! JSON -> protobuf: the hand-written payloads in `tests/data/` are converted
//! and the resulting protobuf is decoded with prost and checked field by field.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{exemplar, metric, number_data_point};
use prost::Message;
use sightline_otlp_json::{Signal, json_to_protobuf};

const TRACES: &[u8] = include_bytes!("data/traces.json");
const METRICS: &[u8] = include_bytes!("data/metrics.json");
const LOGS: &[u8] = include_bytes!("data/logs.json");

fn traces(json: &[u8]) -> ExportTraceServiceRequest {
    let proto = json_to_protobuf(Signal::Traces, json).expect("convert traces");
    ExportTraceServiceRequest::decode(proto.as_slice()).expect("decode traces")
}

fn metrics(json: &[u8]) -> ExportMetricsServiceRequest {
    let proto = json_to_protobuf(Signal::Metrics, json).expect("convert metrics");
    ExportMetricsServiceRequest::decode(proto.as_slice()).expect("decode metrics")
}

fn logs(json: &[u8]) -> ExportLogsServiceRequest {
    let proto = json_to_protobuf(Signal::Logs, json).expect("convert logs");
    ExportLogsServiceRequest::decode(proto.as_slice()).expect("decode logs")
}

fn val(v: V) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn kv(key: &str, v: V) -> KeyValue {
    KeyValue { key: key.to_owned(), value: val(v), key_strindex: 0 }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex")).collect()
}

#[test]
fn traces_resource_and_every_any_value_kind() {
    let req = traces(TRACES);
    assert_eq!(req.resource_spans.len(), 2);
    let rs = &req.resource_spans[0];
    assert_eq!(rs.schema_url, "https://opentelemetry.io/schemas/1.30.0");
    let res = rs.resource.as_ref().expect("resource");
    assert_eq!(res.dropped_attributes_count, 2);
    let a = &res.attributes;
    assert_eq!(a.len(), 13);
    assert_eq!(a[0], kv("service.name", V::StringValue("checkout".into())));
    assert_eq!(a[1], kv("bool", V::BoolValue(true)));
    assert_eq!(a[2], kv("int.string", V::IntValue(i64::MIN)));
    assert_eq!(a[3], kv("int.number", V::IntValue(42)));
    assert_eq!(a[4], kv("double", V::DoubleValue(3.25)));
    match a[5].value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(V::DoubleValue(d)) => assert!(d.is_nan()),
        other => panic!("double.nan: {other:?}"),
    }
    assert_eq!(a[6], kv("double.inf", V::DoubleValue(f64::NEG_INFINITY)));
    assert_eq!(a[7], kv("bytes", V::BytesValue(vec![0xde, 0xad, 0xbe, 0xef])));
    // Empty AnyValue: present, with no value.
    assert_eq!(a[8].key, "empty");
    assert_eq!(a[8].value, Some(AnyValue { value: None }));
    // arrayValue, including a nested array and an empty element.
    match a[9].value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(V::ArrayValue(arr)) => {
            assert_eq!(arr.values.len(), 4);
            assert_eq!(arr.values[0].value, Some(V::StringValue("a".into())));
            assert_eq!(arr.values[1].value, Some(V::IntValue(7)));
            match &arr.values[2].value {
                Some(V::ArrayValue(inner)) => {
                    assert_eq!(inner.values[0].value, Some(V::BoolValue(false)));
                }
                other => panic!("nested array: {other:?}"),
            }
            assert_eq!(arr.values[3].value, None);
        }
        other => panic!("array: {other:?}"),
    }
    // kvlistValue, including a nested kvlist.
    match a[10].value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(V::KvlistValue(list)) => {
            assert_eq!(list.values[0], kv("inner", V::DoubleValue(1.0)));
            match list.values[1].value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(V::KvlistValue(inner)) => {
                    assert_eq!(inner.values, vec![kv("deep", V::StringValue("yes".into()))]);
                }
                other => panic!("nested kvlist: {other:?}"),
            }
        }
        other => panic!("kvlist: {other:?}"),
    }
    assert_eq!(a[11].value, val(V::ArrayValue(Default::default())), "an empty arrayValue object is an empty array");
    // A KeyValue without "value" has no AnyValue at all.
    assert_eq!(a[12].key, "no.value");
    assert_eq!(a[12].value, None);

    let er = &res.entity_refs;
    assert_eq!(er.len(), 1);
    assert_eq!(er[0].schema_url, "https://opentelemetry.io/schemas/1.30.0");
    assert_eq!(er[0].r#type, "service");
    assert_eq!(er[0].id_keys, vec!["service.name"]);
    assert_eq!(er[0].description_keys, vec!["bool", "double"]);

    // Second resource: present but empty, no scopes.
    let rs1 = &req.resource_spans[1];
    assert_eq!(rs1.resource, Some(Default::default()));
    assert!(rs1.scope_spans.is_empty());
}

#[test]
fn traces_spans_events_links_status() {
    let req = traces(TRACES);
    let rs = &req.resource_spans[0];
    assert_eq!(rs.scope_spans.len(), 2);
    let ss = &rs.scope_spans[0];
    assert_eq!(ss.schema_url, "https://opentelemetry.io/schemas/1.29.0");
    let scope = ss.scope.as_ref().expect("scope");
    assert_eq!(scope.name, "my.library");
    assert_eq!(scope.version, "1.0.0");
    assert_eq!(scope.attributes, vec![kv("scope.attr", V::StringValue("s".into()))]);
    assert_eq!(scope.dropped_attributes_count, 1);

    let s = &ss.spans[0];
    assert_eq!(s.trace_id, hex("5b8efff798038103d269b633813fc60c"));
    assert_eq!(s.span_id, hex("eee19b7ec3c1b174"));
    assert_eq!(s.parent_span_id, hex("eee19b7ec3c1b173"));
    assert_eq!(s.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(s.flags, 769);
    assert_eq!(s.name, "I'm a server span");
    assert_eq!(s.kind, 2);
    assert_eq!(s.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(s.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(s.attributes, vec![kv("http.method", V::StringValue("GET".into()))]);
    assert_eq!(s.dropped_attributes_count, 3);
    assert_eq!(s.events.len(), 2);
    let e = &s.events[0];
    assert_eq!(e.time_unix_nano, 1_544_712_660_500_000_000);
    assert_eq!(e.name, "exception");
    assert_eq!(e.attributes, vec![kv("exception.message", V::StringValue("boom \"quoted\" é\n".into()))]);
    assert_eq!(e.dropped_attributes_count, 4);
    assert_eq!(s.events[1].name, "bare event");
    assert_eq!(s.events[1].time_unix_nano, 0);
    assert_eq!(s.dropped_events_count, 5);
    let l = &s.links[0];
    assert_eq!(l.trace_id, (1..=16).collect::<Vec<u8>>());
    assert_eq!(l.span_id, (0x11..=0x18).collect::<Vec<u8>>());
    assert_eq!(l.trace_state, "a=b");
    assert_eq!(l.attributes, vec![kv("link.attr", V::IntValue(1))]);
    assert_eq!(l.dropped_attributes_count, 6);
    assert_eq!(l.flags, 256);
    assert_eq!(s.dropped_links_count, 7);
    let st = s.status.as_ref().expect("status");
    assert_eq!(st.message, "it failed");
    assert_eq!(st.code, 2);

    let root = &ss.spans[1];
    assert_eq!(root.kind, 1);
    assert_eq!(root.status, Some(Default::default()));
    assert!(root.parent_span_id.is_empty());

    let other = &rs.scope_spans[1];
    assert_eq!(other.scope, Some(Default::default()));
    let no_ids = &other.spans[0];
    assert!(no_ids.trace_id.is_empty() && no_ids.span_id.is_empty());
    assert_eq!(no_ids.kind, 5);
    assert_eq!(no_ids.status, None);
}

#[test]
fn metrics_every_type() {
    let req = metrics(METRICS);
    let rm = &req.resource_metrics[0];
    assert_eq!(rm.schema_url, "https://opentelemetry.io/schemas/1.30.0");
    let sm = &rm.scope_metrics[0];
    assert_eq!(sm.scope.as_ref().map(|s| s.version.as_str()), Some("2.1"));
    assert_eq!(sm.schema_url, "https://opentelemetry.io/schemas/1.29.0");
    let m = &sm.metrics;
    assert_eq!(m.len(), 7);

    // Gauge.
    assert_eq!(m[0].name, "queue.depth");
    assert_eq!(m[0].description, "items waiting");
    assert_eq!(m[0].unit, "{item}");
    assert_eq!(m[0].metadata, vec![kv("source", V::StringValue("prometheus".into()))]);
    let Some(metric::Data::Gauge(g)) = &m[0].data else { panic!("gauge: {:?}", m[0].data) };
    let dp = &g.data_points;
    assert_eq!(dp.len(), 5);
    assert_eq!(dp[0].attributes, vec![kv("queue", V::StringValue("a".into()))]);
    assert_eq!(dp[0].start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(dp[0].time_unix_nano, 1_700_000_001_000_000_000);
    assert_eq!(dp[0].value, Some(number_data_point::Value::AsDouble(12.5)));
    assert_eq!(dp[0].flags, 1);
    assert_eq!(dp[1].time_unix_nano, 1_700_000_002_000_000_000);
    assert_eq!(dp[1].value, Some(number_data_point::Value::AsInt(-3)));
    assert!(matches!(dp[2].value, Some(number_data_point::Value::AsDouble(d)) if d.is_nan()));
    assert_eq!(dp[3].value, Some(number_data_point::Value::AsDouble(f64::INFINITY)));
    // A oneof member set to its default value is still set.
    assert_eq!(dp[4].value, Some(number_data_point::Value::AsInt(0)));

    // Sum with an exemplar.
    let Some(metric::Data::Sum(s)) = &m[1].data else { panic!("sum: {:?}", m[1].data) };
    assert_eq!(s.aggregation_temporality, 2);
    assert!(s.is_monotonic);
    let dp = &s.data_points[0];
    assert_eq!(dp.value, Some(number_data_point::Value::AsInt(i64::MAX)));
    let ex = &dp.exemplars[0];
    assert_eq!(ex.filtered_attributes, vec![kv("user", V::StringValue("u1".into()))]);
    assert_eq!(ex.time_unix_nano, 1_700_000_000_500_000_000);
    assert_eq!(ex.value, Some(exemplar::Value::AsInt(17)));
    assert_eq!(ex.span_id, hex("eee19b7ec3c1b174"));
    assert_eq!(ex.trace_id, hex("5b8efff798038103d269b633813fc60c"));

    // Histogram.
    let Some(metric::Data::Histogram(h)) = &m[2].data else { panic!("histogram: {:?}", m[2].data) };
    assert_eq!(h.aggregation_temporality, 1);
    let dp = &h.data_points[0];
    assert_eq!(dp.attributes, vec![kv("route", V::StringValue("/".into()))]);
    assert_eq!(dp.count, 6);
    assert_eq!(dp.sum, Some(101.5));
    assert_eq!(dp.bucket_counts, vec![1, 2, 3]);
    assert_eq!(dp.explicit_bounds, vec![10.0, 100.5]);
    assert_eq!(dp.exemplars[0].value, Some(exemplar::Value::AsDouble(55.5)));
    assert_eq!(dp.exemplars[0].span_id, (1..=8).collect::<Vec<u8>>());
    assert_eq!(dp.exemplars[0].trace_id, (1..=16).collect::<Vec<u8>>());
    assert_eq!(dp.flags, 0);
    assert_eq!(dp.min, Some(0.5));
    assert_eq!(dp.max, Some(f64::INFINITY));
    // Optional doubles set to zero keep their presence.
    let zero = &h.data_points[1];
    assert_eq!((zero.sum, zero.min, zero.max), (Some(0.0), Some(0.0), Some(0.0)));

    // Exponential histogram.
    let Some(metric::Data::ExponentialHistogram(e)) = &m[3].data else {
        panic!("exponential histogram: {:?}", m[3].data)
    };
    assert_eq!(e.aggregation_temporality, 2);
    let dp = &e.data_points[0];
    assert_eq!(dp.count, 10);
    assert_eq!(dp.sum, Some(42.25));
    assert_eq!(dp.scale, -3);
    assert_eq!(dp.zero_count, 2);
    let pos = dp.positive.as_ref().expect("positive");
    assert_eq!((pos.offset, pos.bucket_counts.clone()), (-2, vec![1, 0, 4]));
    let neg = dp.negative.as_ref().expect("negative");
    assert_eq!((neg.offset, neg.bucket_counts.clone()), (3, vec![3]));
    assert_eq!(dp.flags, 1);
    assert_eq!(dp.exemplars[0].value, Some(exemplar::Value::AsDouble(f64::NEG_INFINITY)));
    assert_eq!((dp.min, dp.max), (Some(-8.0), Some(16.5)));
    assert_eq!(dp.zero_threshold, 1e-9);
    let dp1 = &e.data_points[1];
    assert_eq!(dp1.positive, Some(Default::default()));
    assert_eq!(dp1.negative, None);
    assert_eq!(dp1.scale, 20);

    // Summary.
    let Some(metric::Data::Summary(s)) = &m[4].data else { panic!("summary: {:?}", m[4].data) };
    let dp = &s.data_points[0];
    assert_eq!(dp.attributes, vec![kv("rpc", V::StringValue("Get".into()))]);
    assert_eq!(dp.count, 100);
    assert_eq!(dp.sum, 2500.75);
    let q: Vec<(f64, f64)> = dp.quantile_values.iter().map(|q| (q.quantile, q.value)).collect();
    assert_eq!(q, vec![(0.0, 1.5), (0.5, 20.0), (1.0, 99.25)]);
    assert_eq!(dp.flags, 1);

    // No data, and an empty gauge.
    assert_eq!(m[5].data, None);
    assert_eq!(m[6].data, Some(metric::Data::Gauge(Default::default())));
}

#[test]
fn logs_records_and_bodies() {
    let req = logs(LOGS);
    let rl = &req.resource_logs[0];
    assert_eq!(rl.schema_url, "https://opentelemetry.io/schemas/1.30.0");
    assert_eq!(rl.resource.as_ref().map(|r| r.dropped_attributes_count), Some(1));
    let sl = &rl.scope_logs[0];
    assert_eq!(sl.scope.as_ref().map(|s| s.name.as_str()), Some("logger"));
    assert_eq!(sl.schema_url, "https://opentelemetry.io/schemas/1.29.0");
    let r = &sl.log_records;
    assert_eq!(r.len(), 9);

    let first = &r[0];
    assert_eq!(first.time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(first.observed_time_unix_nano, 1_700_000_000_100_000_000);
    assert_eq!(first.severity_number, 17);
    assert_eq!(first.severity_text, "ERROR");
    assert_eq!(first.body, val(V::StringValue("disk full".into())));
    assert_eq!(
        first.attributes,
        vec![kv("retries", V::IntValue(3)), kv("payload", V::BytesValue(vec![0, 1, 2, 255])),]
    );
    assert_eq!(first.dropped_attributes_count, 2);
    assert_eq!(first.flags, 1);
    assert_eq!(first.trace_id, hex("5b8efff798038103d269b633813fc60c"));
    assert_eq!(first.span_id, hex("eee19b7ec3c1b174"));
    assert_eq!(first.event_name, "disk.full");

    let second = &r[1];
    assert_eq!(second.severity_number, 9);
    match second.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(V::KvlistValue(list)) => {
            assert_eq!(list.values.len(), 5);
            assert_eq!(list.values[0], kv("msg", V::StringValue("structured".into())));
            assert_eq!(list.values[1], kv("ok", V::BoolValue(true)));
            assert_eq!(list.values[2], kv("ratio", V::DoubleValue(0.125)));
            assert_eq!(list.values[4].value, Some(AnyValue { value: None }));
        }
        other => panic!("kvlist body: {other:?}"),
    }
    match r[2].body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(V::ArrayValue(arr)) => {
            assert_eq!(arr.values[0].value, Some(V::StringValue("x".into())));
            assert_eq!(arr.values[1].value, Some(V::BytesValue(vec![])));
        }
        other => panic!("array body: {other:?}"),
    }
    assert_eq!(r[3].body, val(V::IntValue(-1)));
    assert_eq!(r[4].body, val(V::DoubleValue(f64::NEG_INFINITY)));
    assert_eq!(r[5].body, val(V::BoolValue(false)));
    // Unpadded base64.
    assert_eq!(r[6].body, val(V::BytesValue(b"hello".to_vec())));
    assert_eq!(r[7].body, Some(AnyValue { value: None }));
    assert_eq!(r[8].body, None);
    assert_eq!(r[8].severity_text, "no body");
}

#[test]
fn empty_requests() {
    assert_eq!(traces(b"{}"), ExportTraceServiceRequest::default());
    assert_eq!(metrics(b" { } "), ExportMetricsServiceRequest::default());
    assert_eq!(logs(br#"{"resourceLogs":null}"#), ExportLogsServiceRequest::default());
    assert_eq!(logs(br#"{"resourceLogs":[]}"#), ExportLogsServiceRequest::default());
    assert_eq!(json_to_protobuf(Signal::Traces, b"{}").ok(), Some(vec![]));
}
