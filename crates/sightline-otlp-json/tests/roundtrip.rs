//! protobuf -> JSON: exact output shape, and round trips in both directions.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar,
    exponential_histogram_data_point, metric, number_data_point, summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use serde_json::{Value, json};
use sightline_otlp_json::{
    JsonErrorKind, Signal, json_to_protobuf, logs_to_json, metrics_to_json, protobuf_to_json, traces_to_json,
};

const DATA: [(Signal, &[u8]); 3] = [
    (Signal::Traces, include_bytes!("data/traces.json")),
    (Signal::Metrics, include_bytes!("data/metrics.json")),
    (Signal::Logs, include_bytes!("data/logs.json")),
];

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

#[test]
fn json_proto_json_proto_is_stable() {
    for (signal, json) in DATA {
        let p1 = json_to_protobuf(signal, json).expect("json -> proto");
        let j2 = protobuf_to_json(signal, &p1).expect("proto -> json");
        let p2 = json_to_protobuf(signal, &j2).expect("json -> proto again");
        assert_eq!(p1, p2, "{signal}: protobuf changed across a JSON round trip");
        let j3 = protobuf_to_json(signal, &p2).expect("proto -> json again");
        assert_eq!(text(&j2), text(&j3), "{signal}: canonical JSON is a fixed point");
        // Compact, one object, no trailing newline.
        let s = text(&j2);
        assert!(s.starts_with('{') && s.ends_with('}'), "{s}");
        assert!(!s.contains('\n') && !s.contains(": ") && !s.contains(", "));
        assert!(serde_json::from_str::<Value>(&s).is_ok());
    }
}

#[test]
fn canonical_trace_output_matches_collector_conventions() {
    let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
        "scopeSpans":[{"scope":{"name":"lib"},"spans":[{
            "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","parentSpanId":"",
            "name":"op","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":1,"endTimeUnixNano":"2",
            "droppedAttributesCount":0,"traceState":"","flags":0,
            "attributes":[{"key":"i","value":{"intValue":5}},{"key":"d","value":{"doubleValue":"NaN"}},
                          {"key":"b","value":{"bytesValue":"-_8"}},{"key":"e","value":{}},
                          {"key":"z","value":{"intValue":0}},{"key":"f","value":{"doubleValue":2.0}}],
            "status":{"code":2,"message":""}}]}]}]}"#;
    let proto = json_to_protobuf(Signal::Traces, json).expect("convert");
    let out = protobuf_to_json(Signal::Traces, &proto).expect("render");
    assert_eq!(
        text(&out),
        concat!(
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},"#,
            r#""scopeSpans":[{"scope":{"name":"lib"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","#,
            r#""spanId":"eee19b7ec3c1b174","name":"op","kind":3,"startTimeUnixNano":"1","endTimeUnixNano":"2","#,
            r#""attributes":[{"key":"i","value":{"intValue":"5"}},{"key":"d","value":{"doubleValue":"NaN"}},"#,
            r#"{"key":"b","value":{"bytesValue":"+/8="}},{"key":"e","value":{}},"#,
            r#"{"key":"z","value":{"intValue":"0"}},{"key":"f","value":{"doubleValue":2}}],"#,
            r#""status":{"code":2}}]}]}]}"#
        )
    );
}

#[test]
fn output_value_types() {
    let (_, json) = DATA[1];
    let proto = json_to_protobuf(Signal::Metrics, json).expect("convert");
    let out: Value =
        serde_json::from_slice(&protobuf_to_json(Signal::Metrics, &proto).expect("render")).expect("valid JSON");
    let metrics = &out["resourceMetrics"][0]["scopeMetrics"][0]["metrics"];
    let sum = &metrics[1]["sum"];
    assert_eq!(sum["aggregationTemporality"], json!(2));
    assert_eq!(sum["isMonotonic"], json!(true));
    assert_eq!(sum["dataPoints"][0]["asInt"], json!("9223372036854775807"));
    assert_eq!(sum["dataPoints"][0]["timeUnixNano"], json!("1700000001000000000"));
    let ex = &sum["dataPoints"][0]["exemplars"][0];
    assert_eq!(ex["traceId"], json!("5b8efff798038103d269b633813fc60c"));
    assert_eq!(ex["spanId"], json!("eee19b7ec3c1b174"));
    assert_eq!(ex["asInt"], json!("17"));
    let hist = &metrics[2]["histogram"]["dataPoints"][0];
    assert_eq!(hist["count"], json!("6"));
    assert_eq!(hist["bucketCounts"], json!(["1", "2", "3"]));
    assert_eq!(hist["explicitBounds"], json!([10, 100.5]));
    assert_eq!(hist["max"], json!("Infinity"));
    assert!(hist.get("flags").is_none(), "default flags omitted");
    // Presence of optional doubles survives even at zero.
    let zero = &metrics[2]["histogram"]["dataPoints"][1];
    assert_eq!(zero, &json!({"sum": 0, "min": 0, "max": 0}));
    let exp = &metrics[3]["exponentialHistogram"]["dataPoints"][0];
    assert_eq!(exp["scale"], json!(-3));
    assert_eq!(exp["zeroCount"], json!("2"));
    assert_eq!(exp["positive"], json!({"offset": -2, "bucketCounts": ["1", "0", "4"]}));
    assert_eq!(exp["zeroThreshold"], json!(1e-9));
    assert_eq!(metrics[3]["exponentialHistogram"]["dataPoints"][1]["positive"], json!({}));
    let summary = &metrics[4]["summary"]["dataPoints"][0];
    assert_eq!(summary["quantileValues"][0], json!({"value": 1.5}));
    assert_eq!(metrics[5], json!({"name": "no.data"}));
    assert_eq!(metrics[6], json!({"name": "empty.gauge", "gauge": {}}));
}

fn kv(key: &str, v: V) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), key_strindex: 0 }
}

fn every_any_value() -> Vec<KeyValue> {
    vec![
        kv("s", V::StringValue("x\u{0}\"\\/\u{1f}\u{2028}é😀".into())),
        kv("s.empty", V::StringValue(String::new())),
        kv("b", V::BoolValue(false)),
        kv("i", V::IntValue(i64::MIN)),
        kv("d", V::DoubleValue(-0.0)),
        kv("d.tiny", V::DoubleValue(f64::MIN_POSITIVE)),
        kv("d.big", V::DoubleValue(f64::MAX)),
        kv("d.inf", V::DoubleValue(f64::INFINITY)),
        kv("bytes", V::BytesValue((0..=255).collect())),
        kv(
            "arr",
            V::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: None }, AnyValue { value: Some(V::ArrayValue(ArrayValue::default())) }],
            }),
        ),
        kv(
            "kv",
            V::KvlistValue(KeyValueList {
                values: vec![
                    kv("inner", V::IntValue(1)),
                    KeyValue { key: String::new(), value: None, key_strindex: 3 },
                ],
            }),
        ),
        kv("strindex", V::StringValueStrindex(-1)),
        KeyValue { key: "empty".into(), value: Some(AnyValue { value: None }), key_strindex: 0 },
    ]
}

fn resource() -> Resource {
    Resource {
        attributes: every_any_value(),
        dropped_attributes_count: u32::MAX,
        entity_refs: vec![EntityRef {
            schema_url: "u".into(),
            r#type: "t".into(),
            id_keys: vec!["a".into(), "".into()],
            description_keys: vec!["c".into()],
        }],
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "n".into(),
        version: "v".into(),
        attributes: vec![kv("a", V::BoolValue(true))],
        dropped_attributes_count: 1,
    }
}

fn exemplars() -> Vec<Exemplar> {
    vec![
        Exemplar {
            filtered_attributes: every_any_value(),
            time_unix_nano: u64::MAX,
            span_id: vec![1; 8],
            trace_id: vec![2; 16],
            value: Some(exemplar::Value::AsInt(-1)),
        },
        Exemplar { value: Some(exemplar::Value::AsDouble(0.0)), ..Default::default() },
        Exemplar::default(),
    ]
}

fn full_traces() -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: (0..16).collect(),
        span_id: (0..8).collect(),
        trace_state: "k=v".into(),
        parent_span_id: (8..16).collect(),
        flags: 0x301,
        name: "span".into(),
        kind: span::SpanKind::Consumer as i32,
        start_time_unix_nano: u64::MAX,
        end_time_unix_nano: 1,
        attributes: every_any_value(),
        dropped_attributes_count: 1,
        events: vec![
            span::Event {
                time_unix_nano: 5,
                name: "e".into(),
                attributes: every_any_value(),
                dropped_attributes_count: 2,
            },
            span::Event::default(),
        ],
        dropped_events_count: 3,
        links: vec![span::Link {
            trace_id: vec![0xff; 16],
            span_id: vec![0xee; 8],
            trace_state: "x=y".into(),
            attributes: every_any_value(),
            dropped_attributes_count: 4,
            flags: 0x100,
        }],
        dropped_links_count: 5,
        status: Some(Status { message: "m".into(), code: 1 }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(resource()),
                scope_spans: vec![
                    ScopeSpans { scope: Some(scope()), spans: vec![span, Span::default()], schema_url: "s1".into() },
                    ScopeSpans::default(),
                ],
                schema_url: "s0".into(),
            },
            ResourceSpans::default(),
        ],
    }
}

fn full_metrics() -> ExportMetricsServiceRequest {
    let ndp = |v| NumberDataPoint {
        attributes: every_any_value(),
        start_time_unix_nano: 1,
        time_unix_nano: 2,
        exemplars: exemplars(),
        flags: 1,
        value: v,
    };
    let metrics = vec![
        Metric {
            name: "g".into(),
            description: "d".into(),
            unit: "u".into(),
            metadata: every_any_value(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![
                    ndp(Some(number_data_point::Value::AsDouble(f64::NEG_INFINITY))),
                    ndp(Some(number_data_point::Value::AsInt(0))),
                    ndp(None),
                ],
            })),
        },
        Metric {
            name: "s".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![ndp(Some(number_data_point::Value::AsInt(i64::MAX)))],
                aggregation_temporality: 1,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "h".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![
                    HistogramDataPoint {
                        attributes: every_any_value(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: u64::MAX,
                        sum: Some(0.0),
                        bucket_counts: vec![0, u64::MAX, 3],
                        explicit_bounds: vec![-1.5, 0.0, 1e300],
                        exemplars: exemplars(),
                        flags: 1,
                        min: Some(-1.0),
                        max: Some(f64::INFINITY),
                    },
                    HistogramDataPoint::default(),
                ],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
        Metric {
            name: "e".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![
                    ExponentialHistogramDataPoint {
                        attributes: every_any_value(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 3,
                        sum: Some(4.5),
                        scale: -10,
                        zero_count: 7,
                        positive: Some(exponential_histogram_data_point::Buckets {
                            offset: i32::MIN,
                            bucket_counts: vec![1, 2],
                        }),
                        negative: Some(Default::default()),
                        flags: 1,
                        exemplars: exemplars(),
                        min: Some(0.0),
                        max: Some(9.0),
                        zero_threshold: 1e-300,
                    },
                    ExponentialHistogramDataPoint::default(),
                ],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
        Metric {
            name: "q".into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: every_any_value(),
                    start_time_unix_nano: 1,
                    time_unix_nano: 2,
                    count: 3,
                    sum: -4.25,
                    quantile_values: vec![
                        summary_data_point::ValueAtQuantile { quantile: 0.99, value: 12.0 },
                        summary_data_point::ValueAtQuantile::default(),
                    ],
                    flags: 1,
                }],
            })),
            ..Default::default()
        },
        Metric {
            name: "empty.summary".into(),
            data: Some(metric::Data::Summary(Summary::default())),
            ..Default::default()
        },
        Metric::default(),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource()),
            scope_metrics: vec![ScopeMetrics { scope: Some(scope()), metrics, schema_url: "s1".into() }],
            schema_url: "s0".into(),
        }],
    }
}

fn full_logs() -> ExportLogsServiceRequest {
    let bodies: Vec<Option<AnyValue>> = every_any_value().into_iter().map(|kv| kv.value).chain([None]).collect();
    let records = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| LogRecord {
            time_unix_nano: i as u64,
            observed_time_unix_nano: u64::MAX - i as u64,
            severity_number: (i % 25) as i32,
            severity_text: format!("sev{i}"),
            body,
            attributes: every_any_value(),
            dropped_attributes_count: i as u32,
            flags: 1,
            trace_id: if i % 2 == 0 { vec![i as u8; 16] } else { vec![] },
            span_id: if i % 2 == 0 { vec![i as u8; 8] } else { vec![] },
            event_name: format!("event{i}"),
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs { scope: Some(scope()), log_records: records, schema_url: "s1".into() }],
            schema_url: "s0".into(),
        }],
    }
}

fn proto_json_proto(signal: Signal, proto: Vec<u8>) {
    let json = protobuf_to_json(signal, &proto).expect("proto -> json");
    let back = json_to_protobuf(signal, &json).expect("json -> proto");
    assert_eq!(back, proto, "{signal}: {}", text(&json));
}

#[test]
fn proto_json_proto_round_trip_traces() {
    let req = full_traces();
    proto_json_proto(Signal::Traces, req.encode_to_vec());
    let json = traces_to_json(&req).expect("typed");
    assert_eq!(Some(json), protobuf_to_json(Signal::Traces, &req.encode_to_vec()).ok());
}

#[test]
fn proto_json_proto_round_trip_metrics() {
    let req = full_metrics();
    proto_json_proto(Signal::Metrics, req.encode_to_vec());
    assert!(metrics_to_json(&req).is_ok());
}

#[test]
fn proto_json_proto_round_trip_logs() {
    let req = full_logs();
    proto_json_proto(Signal::Logs, req.encode_to_vec());
    assert!(logs_to_json(&req).is_ok());
}

#[test]
fn round_trip_preserves_struct_equality() {
    // No NaN in these fixtures, so prost structs compare equal directly.
    let req = full_traces();
    let json = traces_to_json(&req).expect("json");
    let back = ExportTraceServiceRequest::decode(json_to_protobuf(Signal::Traces, &json).expect("proto").as_slice())
        .expect("decode");
    assert_eq!(back, req);
}

#[test]
fn nan_survives_round_trip() {
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            value: Some(number_data_point::Value::AsDouble(f64::NAN)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let json = metrics_to_json(&req).expect("json");
    assert!(text(&json).contains(r#""asDouble":"NaN""#));
    proto_json_proto(Signal::Metrics, req.encode_to_vec());
}

#[test]
fn empty_request_is_empty_object() {
    for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        assert_eq!(protobuf_to_json(signal, &[]).map(|j| text(&j)).ok(), Some("{}".into()));
    }
}

#[test]
fn proto_to_json_rejects_bad_input() {
    let err = protobuf_to_json(Signal::Traces, &[0x0a, 0x05, 0x01]).expect_err("truncated");
    assert_eq!(err.kind(), JsonErrorKind::Protobuf);
    assert!(err.to_string().starts_with("invalid protobuf: "), "{err}");

    let mut req = full_traces();
    req.resource_spans[0].scope_spans[0].spans[0].links[0].span_id = vec![1, 2, 3];
    let err = protobuf_to_json(Signal::Traces, &req.encode_to_vec()).expect_err("bad id");
    assert_eq!(
        err.to_string(),
        "resourceSpans[0].scopeSpans[0].spans[0].links[0].spanId: invalid id length (expected 8 bytes, got 3)"
    );

    let mut req = full_logs();
    req.resource_logs[0].scope_logs[0].log_records[0].trace_id = vec![0; 17];
    let err = protobuf_to_json(Signal::Logs, &req.encode_to_vec()).expect_err("bad id");
    assert_eq!(
        err.to_string(),
        "resourceLogs[0].scopeLogs[0].logRecords[0].traceId: invalid id length (expected 16 bytes, got 17)"
    );

    // Invalid UTF-8 in a string field.
    let bad_utf8 = [0x0a, 0x06, 0x1a, 0x04, 0x0a, 0x02, 0xff, 0xfe];
    let err = protobuf_to_json(Signal::Logs, &bad_utf8).expect_err("utf8");
    assert_eq!(err.kind(), JsonErrorKind::Protobuf);
}
