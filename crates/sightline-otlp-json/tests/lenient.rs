//! What the reader accepts beyond the canonical OTLP/JSON form: snake_case
//! keys, unknown fields, `null`, enum names, integers as numbers or strings.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;
use sightline_otlp_json::{Signal, json_to_protobuf, logs_from_json, metrics_from_json, traces_from_json};

fn traces(json: &str) -> ExportTraceServiceRequest {
    let proto = json_to_protobuf(Signal::Traces, json.as_bytes()).expect("convert");
    ExportTraceServiceRequest::decode(proto.as_slice()).expect("decode")
}

const CANONICAL_TRACES: &[u8] = include_bytes!("data/traces.json");
const CANONICAL_METRICS: &[u8] = include_bytes!("data/metrics.json");
const CANONICAL_LOGS: &[u8] = include_bytes!("data/logs.json");

/// Rewrites every lowerCamelCase key of a JSON document to snake_case.
fn snake_case_keys(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let mut snake = String::new();
                    for c in k.chars() {
                        if c.is_ascii_uppercase() {
                            snake.push('_');
                            snake.push(c.to_ascii_lowercase());
                        } else {
                            snake.push(c);
                        }
                    }
                    (snake, snake_case_keys(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(snake_case_keys).collect()),
        other => other,
    }
}

/// Adds an unknown member to every object of a JSON document (including
/// AnyValue and KeyValue objects) and an unknown top-level member.
fn add_unknown_fields(v: serde_json::Value, depth: usize) -> serde_json::Value {
    use serde_json::{Value, json};
    match v {
        Value::Object(m) => {
            let mut out: serde_json::Map<String, Value> =
                m.into_iter().map(|(k, v)| (k, add_unknown_fields(v, depth + 1))).collect();
            out.insert(
                format!("futureField{depth}"),
                json!({"nested": [1, "two", {"three": null}], "deep": {"x": {"y": []}}}),
            );
            out.insert("anotherUnknown".to_owned(), json!(null));
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|v| add_unknown_fields(v, depth + 1)).collect()),
        other => other,
    }
}

fn transformed(json: &[u8], f: impl Fn(serde_json::Value) -> serde_json::Value) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(json).expect("test data is JSON");
    serde_json::to_vec(&f(v)).expect("serialize")
}

#[test]
fn snake_case_keys_are_accepted_everywhere() {
    for (signal, json) in
        [(Signal::Traces, CANONICAL_TRACES), (Signal::Metrics, CANONICAL_METRICS), (Signal::Logs, CANONICAL_LOGS)]
    {
        let snake = transformed(json, snake_case_keys);
        assert!(String::from_utf8_lossy(&snake).contains("time_unix_nano"), "transformation applied");
        assert_eq!(json_to_protobuf(signal, &snake), json_to_protobuf(signal, json), "{signal}");
    }
}

#[test]
fn unknown_fields_are_ignored_at_every_level() {
    for (signal, json) in
        [(Signal::Traces, CANONICAL_TRACES), (Signal::Metrics, CANONICAL_METRICS), (Signal::Logs, CANONICAL_LOGS)]
    {
        let noisy = transformed(json, |v| add_unknown_fields(v, 0));
        assert!(String::from_utf8_lossy(&noisy).contains("futureField7"));
        assert_eq!(json_to_protobuf(signal, &noisy), json_to_protobuf(signal, json), "{signal}");
    }
}

#[test]
fn deprecated_and_unknown_top_level_members_are_ignored() {
    // Pre-1.0 OTLP used instrumentationLibrarySpans; it is just unknown now.
    let req = traces(
        r#"{"resourceSpans":[{"instrumentationLibrarySpans":[{"spans":[{"name":"old"}]}],
            "scopeSpans":[{"spans":[{"name":"new"}]}]}], "extra": true}"#,
    );
    assert_eq!(req.resource_spans[0].scope_spans.len(), 1);
    assert_eq!(req.resource_spans[0].scope_spans[0].spans[0].name, "new");
}

#[test]
fn null_means_absent() {
    let req = traces(
        r#"{"resourceSpans":[{"resource":null,"schemaUrl":null,"scopeSpans":[{"scope":null,"spans":[
            {"traceId":null,"spanId":null,"name":null,"kind":null,"flags":null,
             "startTimeUnixNano":null,"attributes":null,"events":null,"links":null,"status":null,
             "traceState":null,"droppedAttributesCount":null}
        ]}]}]}"#,
    );
    let rs = &req.resource_spans[0];
    assert_eq!(rs.resource, None);
    assert_eq!(rs.scope_spans[0].scope, None);
    assert_eq!(rs.scope_spans[0].spans[0], Default::default());

    // A null oneof member does not count as set.
    let req = traces(
        r#"{"resourceSpans":[{"resource":{"attributes":[
            {"key":"k","value":{"stringValue":null,"intValue":"5","boolValue":null}}]}}]}"#,
    );
    let attr = &req.resource_spans[0].resource.as_ref().expect("resource").attributes[0];
    assert_eq!(attr.value.as_ref().and_then(|v| v.value.clone()), Some(V::IntValue(5)));
}

#[test]
fn enum_names_and_integers() {
    let req = traces(
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR"}},
            {"kind":"3","status":{"code":1}},
            {"kind":99}
        ]}]}]}"#,
    );
    let spans = &req.resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans[0].kind, 2);
    assert_eq!(spans[0].status.as_ref().map(|s| s.code), Some(2));
    assert_eq!(spans[1].kind, 3);
    assert_eq!(spans[1].status.as_ref().map(|s| s.code), Some(1));
    // proto3 enums are open: unknown numbers are kept.
    assert_eq!(spans[2].kind, 99);

    let m = metrics_from_json(
        br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA"}},
            {"histogram":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE"}},
            {"exponentialHistogram":{"aggregationTemporality":1}}
        ]}]}]}"#,
    )
    .expect("metrics");
    let ms = &m.resource_metrics[0].scope_metrics[0].metrics;
    assert!(matches!(&ms[0].data, Some(metric::Data::Sum(s)) if s.aggregation_temporality == 1));
    assert!(matches!(&ms[1].data, Some(metric::Data::Histogram(h)) if h.aggregation_temporality == 2));
    assert!(matches!(
        &ms[2].data,
        Some(metric::Data::ExponentialHistogram(h)) if h.aggregation_temporality == 1
    ));

    let l = logs_from_json(
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
            {"severityNumber":"SEVERITY_NUMBER_WARN"},{"severityNumber":21}]}]}]}"#,
    )
    .expect("logs");
    let recs = &l.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(recs[0].severity_number, 13);
    assert_eq!(recs[1].severity_number, 21);
}

#[test]
fn integers_as_numbers_or_strings() {
    let req = traces(
        r#"{"resourceSpans":[{"resource":{"droppedAttributesCount":"7","attributes":[
            {"key":"a","value":{"intValue":9007199254740993}},
            {"key":"b","value":{"intValue":"9007199254740993"}},
            {"key":"c","value":{"intValue":"-0"}},
            {"key":"d","value":{"intValue":1e3}},
            {"key":"e","value":{"intValue":"2.0"}}
        ]},"scopeSpans":[{"spans":[{"startTimeUnixNano":18446744073709551615,
            "endTimeUnixNano":"18446744073709551615","flags":"4294967295"}]}]}]}"#,
    );
    let res = req.resource_spans[0].resource.as_ref().expect("resource");
    assert_eq!(res.dropped_attributes_count, 7);
    let ints: Vec<_> = res.attributes.iter().map(|kv| kv.value.as_ref().and_then(|v| v.value.clone())).collect();
    assert_eq!(
        ints,
        vec![
            Some(V::IntValue(9_007_199_254_740_993)),
            Some(V::IntValue(9_007_199_254_740_993)),
            Some(V::IntValue(0)),
            Some(V::IntValue(1000)),
            Some(V::IntValue(2)),
        ]
    );
    let span = &req.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.start_time_unix_nano, u64::MAX);
    assert_eq!(span.end_time_unix_nano, u64::MAX);
    assert_eq!(span.flags, u32::MAX);
}

#[test]
fn doubles_as_numbers_or_strings() {
    let m = metrics_from_json(
        br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":[
            {"asDouble":"1.25"},{"asDouble":-0.0},{"asDouble":5},{"asDouble":"-Infinity"}]}},
            {"histogram":{"dataPoints":[{"explicitBounds":["NaN", 1, "2.5", "Infinity"]}]}}
        ]}]}]}"#,
    )
    .expect("metrics");
    let ms = &m.resource_metrics[0].scope_metrics[0].metrics;
    let Some(metric::Data::Gauge(g)) = &ms[0].data else { panic!("gauge") };
    let vals: Vec<f64> = g
        .data_points
        .iter()
        .map(|dp| match dp.value {
            Some(number_data_point::Value::AsDouble(d)) => d,
            _ => f64::NAN,
        })
        .collect();
    assert_eq!(vals[0], 1.25);
    assert!(vals[1] == 0.0 && vals[1].is_sign_negative());
    assert_eq!(vals[2], 5.0);
    assert_eq!(vals[3], f64::NEG_INFINITY);
    let Some(metric::Data::Histogram(h)) = &ms[1].data else { panic!("histogram") };
    let b = &h.data_points[0].explicit_bounds;
    assert!(b[0].is_nan());
    assert_eq!(&b[1..], &[1.0, 2.5, f64::INFINITY]);
}

#[test]
fn hex_ids_are_case_insensitive_and_empty_means_none() {
    let upper = traces(
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"ABCDEF0123456789ABCDEF0123456789","spanId":"ABCDEF0123456789"}]}]}]}"#,
    );
    let mixed = traces(
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"trace_id":"abcdef0123456789ABCdef0123456789","span_id":"abcDEF0123456789"}]}]}]}"#,
    );
    assert_eq!(upper, mixed);
    let span = &upper.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.span_id, vec![0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89]);

    let l = logs_from_json(br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"","spanId":""}]}]}]}"#)
        .expect("logs");
    let rec = &l.resource_logs[0].scope_logs[0].log_records[0];
    assert!(rec.trace_id.is_empty() && rec.span_id.is_empty());
}

#[test]
fn snake_case_any_value_and_strindex_fields() {
    let req = traces(
        r#"{"resource_spans":[{"resource":{"dropped_attributes_count":1,"entity_refs":[{"schema_url":"s","type":"t","id_keys":["a"],"description_keys":["b"]}],"attributes":[
            {"key":"a","value":{"kvlist_value":{"values":[{"key":"x","value":{"bytes_value":"AQ=="}}]}}},
            {"key":"b","value":{"array_value":{"values":[{"double_value":"NaN"},{"bool_value":true}]}}},
            {"key":"c","value":{"string_value_strindex":4},"key_strindex":2}
        ]}}]}"#,
    );
    let res = req.resource_spans[0].resource.as_ref().expect("resource");
    assert_eq!(res.dropped_attributes_count, 1);
    assert_eq!(res.entity_refs[0].description_keys, vec!["b"]);
    assert!(matches!(
        res.attributes[0].value.as_ref().and_then(|v| v.value.as_ref()),
        Some(V::KvlistValue(l)) if l.values[0].value.as_ref().and_then(|v| v.value.clone()) == Some(V::BytesValue(vec![1]))
    ));
    assert_eq!(res.attributes[2].key_strindex, 2);
    assert_eq!(res.attributes[2].value.as_ref().and_then(|v| v.value.clone()), Some(V::StringValueStrindex(4)));
}

#[test]
fn typed_entry_points_match_bytes_entry_points() {
    let t = traces_from_json(CANONICAL_TRACES).expect("traces");
    assert_eq!(json_to_protobuf(Signal::Traces, CANONICAL_TRACES).ok(), Some(t.encode_to_vec()));
    let l: ExportLogsServiceRequest = logs_from_json(CANONICAL_LOGS).expect("logs");
    assert_eq!(json_to_protobuf(Signal::Logs, CANONICAL_LOGS).ok(), Some(l.encode_to_vec()));
    let m: ExportMetricsServiceRequest = metrics_from_json(CANONICAL_METRICS).expect("metrics");
    assert_eq!(json_to_protobuf(Signal::Metrics, CANONICAL_METRICS).ok(), Some(m.encode_to_vec()));
}
