use super::*;
use crate::{Encoded, encode_batch};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::common::v1::{AnyValue as Any, ArrayValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{self as m, Metric, ResourceMetrics, ScopeMetrics, metric::Data};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

fn kv(k: &str, v: V) -> KeyValue {
    KeyValue { key: k.into(), value: Some(Any { value: Some(v) }), ..Default::default() }
}

fn s(x: &str) -> V {
    V::StringValue(x.into())
}

fn resource(team: Option<&str>) -> Resource {
    let mut attributes = vec![kv("service.name", s("checkout")), kv("pid", V::IntValue(7))];
    if let Some(t) = team {
        attributes.push(kv("owner.team", s(t)));
    }
    Resource { attributes, ..Default::default() }
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope { name: "lib".into(), version: "1.2".into(), ..Default::default() })
}

fn text(b: &RecordBatch, col: &str, row: usize) -> Option<String> {
    let a = b.column_by_name(col).unwrap_or_else(|| panic!("no column {col}")).as_string::<i32>();
    a.is_valid(row).then(|| a.value(row).to_string())
}

fn map(b: &RecordBatch, col: &str, row: usize) -> Vec<(String, String)> {
    let m = b.column_by_name(col).expect("map column").as_map();
    let entries = m.value(row);
    let (k, v) = (entries.column(0).as_string::<i32>(), entries.column(1).as_string::<i32>());
    (0..entries.len()).map(|i| (k.value(i).to_string(), v.value(i).to_string())).collect()
}

fn ts(b: &RecordBatch, col: &str, row: usize) -> Option<i64> {
    let a = b.column_by_name(col).expect("ts column").as_primitive::<TimestampNanosecondType>();
    a.is_valid(row).then(|| a.value(row))
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn span_named(name: &str, tid: u8) -> Span {
    Span {
        trace_id: vec![tid; 16],
        span_id: vec![2; 8],
        parent_span_id: vec![],
        name: name.into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 3_500,
        attributes: vec![
            kv("http.route", s("/pay")),
            kv("http.response.status_code", V::IntValue(200)),
            kv("tags", V::ArrayValue(ArrayValue { values: vec![Any { value: Some(s("a")) }] })),
        ],
        ..Default::default()
    }
}

type Tables = Vec<(Table, Vec<(Option<String>, usize, usize)>, RecordBatch)>;

fn encode(signal: Signal, reqs: &[Vec<u8>]) -> (Encoder, Tables) {
    let mut enc = Encoder::new(&["http.route".into(), "http.response.status_code".into()], &["exception.type".into()]);
    let chunks: Vec<Bytes> = reqs.iter().map(|r| Bytes::from(r.clone())).collect();
    let out = encode_batch(&mut enc, signal, &chunks, "owner.team").expect("encode");
    (enc, out.into_iter().map(|e: Encoded| (e.table, e.runs, e.rows)).collect())
}

#[test]
fn spans_events_and_links_become_rows_with_ownership_and_promoted_columns() {
    let mut a = span_named("pay", 1);
    a.events.push(span::Event {
        time_unix_nano: 2_000,
        name: "retry".into(),
        attributes: vec![kv("attempt", V::IntValue(2))],
        ..Default::default()
    });
    a.links.push(span::Link {
        trace_id: vec![9; 16],
        span_id: vec![8; 8],
        trace_state: "k=v".into(),
        attributes: vec![kv("why", s("batch"))],
        ..Default::default()
    });
    a.status = Some(Status { code: 2, message: "boom".into() });
    let mut b = span_named("refund", 3);
    b.parent_span_id = vec![5; 8];
    b.attributes.clear();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(resource(Some("payments"))),
                scope_spans: vec![ScopeSpans { scope: scope(), spans: vec![a], ..Default::default() }],
                ..Default::default()
            },
            ResourceSpans {
                resource: Some(resource(None)),
                scope_spans: vec![ScopeSpans { scope: scope(), spans: vec![b], ..Default::default() }],
                ..Default::default()
            },
        ],
    };
    let (enc, out) = encode(Signal::Traces, &[req.encode_to_vec()]);
    assert_eq!(enc.stats, Stats { items: 2, malformed: 0 });
    let tables: Vec<Table> = out.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(tables, [Table::Spans, Table::SpanEvents, Table::SpanLinks]);
    let (_, runs, spans) = &out[0];
    assert_eq!(runs, &[(Some("payments".to_string()), 0, 1), (None, 1, 1)]);
    assert_eq!(spans.num_rows(), 2);
    assert_eq!(text(spans, "name", 0).as_deref(), Some("pay"));
    assert_eq!(text(spans, "trace_id", 0).as_deref(), Some("01010101010101010101010101010101"));
    assert_eq!(text(spans, "span_id", 0).as_deref(), Some("0202020202020202"));
    assert_eq!(text(spans, "parent_span_id", 0), None);
    assert_eq!(text(spans, "parent_span_id", 1).as_deref(), Some("0505050505050505"));
    assert_eq!(text(spans, "kind", 0).as_deref(), Some("Server"));
    assert_eq!(text(spans, "status_code", 0).as_deref(), Some("Error"));
    assert_eq!(text(spans, "status_message", 0).as_deref(), Some("boom"));
    assert_eq!(text(spans, "status_code", 1).as_deref(), Some("Unset"));
    assert_eq!(ts(spans, "start_time", 0), Some(1_000));
    assert_eq!(ts(spans, "end_time", 0), Some(3_500));
    assert_eq!(spans.column_by_name("duration_ns").expect("col").as_primitive::<Int64Type>().value(0), 2_500);
    assert_eq!(text(spans, "service_name", 0).as_deref(), Some("checkout"));
    assert_eq!(text(spans, "owner_team", 0).as_deref(), Some("payments"));
    assert_eq!(text(spans, "owner_team", 1), None);
    assert_eq!(
        map(spans, "resource_attributes", 0),
        pairs(&[("service.name", "checkout"), ("pid", "7"), ("owner.team", "payments")])
    );
    assert_eq!(
        map(spans, "attributes", 0),
        pairs(&[("http.route", "/pay"), ("http.response.status_code", "200"), ("tags", "[\"a\"]")])
    );
    assert_eq!(map(spans, "attributes", 1), pairs(&[]));
    assert_eq!(text(spans, "http_route", 0).as_deref(), Some("/pay"));
    assert_eq!(text(spans, "http_response_status_code", 0).as_deref(), Some("200"));
    assert_eq!(text(spans, "http_route", 1), None);
    assert_eq!(text(spans, "scope_name", 0).as_deref(), Some("lib"));
    assert_eq!(text(spans, "scope_version", 0).as_deref(), Some("1.2"));
    let counts = spans.column_by_name("event_count").expect("col").as_primitive::<UInt32Type>();
    assert_eq!((counts.value(0), counts.value(1)), (1, 0));

    let (_, runs, events) = &out[1];
    assert_eq!(runs, &[(Some("payments".to_string()), 0, 1)]);
    assert_eq!(text(events, "name", 0).as_deref(), Some("retry"));
    assert_eq!(text(events, "span_name", 0).as_deref(), Some("pay"));
    assert_eq!(ts(events, "time", 0), Some(2_000));
    assert_eq!(map(events, "attributes", 0), pairs(&[("attempt", "2")]));
    let (_, _, links) = &out[2];
    assert_eq!(text(links, "linked_trace_id", 0).as_deref(), Some("09090909090909090909090909090909"));
    assert_eq!(text(links, "linked_span_id", 0).as_deref(), Some("0808080808080808"));
    assert_eq!(text(links, "linked_trace_state", 0).as_deref(), Some("k=v"));
    assert_eq!(text(links, "span_id", 0).as_deref(), Some("0202020202020202"));
    assert_eq!(map(links, "attributes", 0), pairs(&[("why", "batch")]));
}

#[test]
fn an_unreadable_span_is_left_out_whole_and_the_columns_stay_aligned() {
    let good = span_named("good", 1);
    let mut bad = span_named("bad", 2);
    // An event whose attribute key is not UTF-8: found only by the nested check.
    bad.events.push(span::Event {
        name: "e".into(),
        attributes: vec![KeyValue { key: "ok".into(), value: Some(Any { value: Some(s("x")) }), ..Default::default() }],
        ..Default::default()
    });
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(Some("payments"))),
            scope_spans: vec![ScopeSpans { scope: scope(), spans: vec![bad, good], ..Default::default() }],
            ..Default::default()
        }],
    };
    let mut bytes = req.encode_to_vec();
    let at = bytes.windows(2).position(|w| w == b"ok").expect("key");
    bytes[at] = 0xff;
    let (enc, out) = encode(Signal::Traces, &[bytes]);
    assert_eq!(enc.stats, Stats { items: 1, malformed: 1 });
    assert_eq!(out.len(), 1, "no event rows: the span that had the event was left out");
    let spans = &out[0].2;
    assert_eq!(spans.num_rows(), 1);
    assert_eq!(text(spans, "name", 0).as_deref(), Some("good"));
}

#[test]
fn logs_keep_body_severity_ids_and_event_name() {
    let rec = LogRecord {
        time_unix_nano: 0,
        observed_time_unix_nano: 77,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(Any { value: Some(V::IntValue(42)) }),
        attributes: vec![kv("exception.type", s("Timeout")), kv("n", V::DoubleValue(1.5))],
        flags: 1,
        trace_id: vec![1; 16],
        span_id: vec![0; 8],
        event_name: "checkout.failed".into(),
        ..Default::default()
    };
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(Some("payments"))),
            scope_logs: vec![ScopeLogs { scope: scope(), log_records: vec![rec], ..Default::default() }],
            ..Default::default()
        }],
    };
    let (enc, out) = encode(Signal::Logs, &[req.encode_to_vec()]);
    assert_eq!(enc.stats.items, 1);
    let logs = &out[0].2;
    assert_eq!(ts(logs, "time", 0), None);
    assert_eq!(ts(logs, "observed_time", 0), Some(77));
    assert_eq!(text(logs, "body", 0).as_deref(), Some("42"));
    assert_eq!(text(logs, "severity_text", 0).as_deref(), Some("ERROR"));
    assert_eq!(logs.column_by_name("severity_number").expect("col").as_primitive::<Int32Type>().value(0), 17);
    assert_eq!(logs.column_by_name("flags").expect("col").as_primitive::<UInt32Type>().value(0), 1);
    assert_eq!(text(logs, "trace_id", 0).as_deref(), Some("01010101010101010101010101010101"));
    assert_eq!(text(logs, "span_id", 0), None, "an all-zero id is absent");
    assert_eq!(text(logs, "event_name", 0).as_deref(), Some("checkout.failed"));
    assert_eq!(text(logs, "exception_type", 0).as_deref(), Some("Timeout"));
    assert_eq!(map(logs, "attributes", 0), pairs(&[("exception.type", "Timeout"), ("n", "1.5")]));
}

fn metric(name: &str, data: Data) -> Metric {
    Metric { name: name.into(), unit: "s".into(), data: Some(data), ..Default::default() }
}

#[test]
fn each_metric_type_goes_to_its_table() {
    let attrs = vec![kv("route", s("/a"))];
    let number = |v: m::number_data_point::Value| m::NumberDataPoint {
        attributes: attrs.clone(),
        time_unix_nano: 10,
        value: Some(v),
        ..Default::default()
    };
    let metrics = vec![
        metric("g", Data::Gauge(m::Gauge { data_points: vec![number(m::number_data_point::Value::AsInt(5))] })),
        metric(
            "c",
            Data::Sum(m::Sum {
                data_points: vec![number(m::number_data_point::Value::AsDouble(2.5))],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "h",
            Data::Histogram(m::Histogram {
                data_points: vec![m::HistogramDataPoint {
                    attributes: attrs.clone(),
                    start_time_unix_nano: 1,
                    time_unix_nano: 10,
                    count: 3,
                    sum: Some(6.0),
                    bucket_counts: vec![1, 2, 0],
                    explicit_bounds: vec![1.0, 5.0],
                    min: Some(0.5),
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "e",
            Data::ExponentialHistogram(m::ExponentialHistogram {
                data_points: vec![m::ExponentialHistogramDataPoint {
                    attributes: attrs.clone(),
                    count: 4,
                    scale: -2,
                    zero_count: 1,
                    positive: Some(m::exponential_histogram_data_point::Buckets {
                        offset: -3,
                        bucket_counts: vec![1, 2],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "s",
            Data::Summary(m::Summary {
                data_points: vec![m::SummaryDataPoint {
                    attributes: attrs.clone(),
                    count: 2,
                    sum: 3.0,
                    quantile_values: vec![
                        m::summary_data_point::ValueAtQuantile { quantile: 0.5, value: 1.0 },
                        m::summary_data_point::ValueAtQuantile { quantile: 0.99, value: 2.0 },
                    ],
                    ..Default::default()
                }],
            }),
        ),
    ];
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(Some("payments"))),
            scope_metrics: vec![ScopeMetrics { scope: scope(), metrics, ..Default::default() }],
            ..Default::default()
        }],
    };
    let (enc, out) = encode(Signal::Metrics, &[req.encode_to_vec()]);
    assert_eq!(enc.stats, Stats { items: 5, malformed: 0 });
    let by = |t: Table| &out.iter().find(|(x, _, _)| *x == t).expect("table").2;
    let g = by(Table::Gauge);
    assert_eq!(text(g, "metric_name", 0).as_deref(), Some("g"));
    assert_eq!(text(g, "unit", 0).as_deref(), Some("s"));
    assert_eq!(ts(g, "start_time", 0), None);
    assert_eq!(g.column_by_name("value").expect("col").as_primitive::<Float64Type>().value(0), 5.0);
    assert_eq!(map(g, "attributes", 0), pairs(&[("route", "/a")]));
    assert_eq!(text(g, "owner_team", 0).as_deref(), Some("payments"));
    let c = by(Table::Sum);
    assert_eq!(text(c, "aggregation_temporality", 0).as_deref(), Some("Cumulative"));
    assert!(c.column_by_name("is_monotonic").expect("col").as_boolean().value(0));
    let h = by(Table::Histogram);
    assert_eq!(h.column_by_name("count").expect("col").as_primitive::<UInt64Type>().value(0), 3);
    assert_eq!(h.column_by_name("sum").expect("col").as_primitive::<Float64Type>().value(0), 6.0);
    assert!(h.column_by_name("max").expect("col").is_null(0));
    let buckets = h.column_by_name("bucket_counts").expect("col").as_list::<i32>().value(0);
    assert_eq!(buckets.as_primitive::<UInt64Type>().values().to_vec(), [1, 2, 0]);
    let bounds = h.column_by_name("explicit_bounds").expect("col").as_list::<i32>().value(0);
    assert_eq!(bounds.as_primitive::<Float64Type>().values().to_vec(), [1.0, 5.0]);
    assert_eq!(text(h, "aggregation_temporality", 0).as_deref(), Some("Delta"));
    let e = by(Table::ExponentialHistogram);
    assert_eq!(e.column_by_name("scale").expect("col").as_primitive::<Int32Type>().value(0), -2);
    assert_eq!(e.column_by_name("positive_offset").expect("col").as_primitive::<Int32Type>().value(0), -3);
    let pos = e.column_by_name("positive_bucket_counts").expect("col").as_list::<i32>().value(0);
    assert_eq!(pos.as_primitive::<UInt64Type>().values().to_vec(), [1, 2]);
    let neg = e.column_by_name("negative_bucket_counts").expect("col").as_list::<i32>().value(0);
    assert_eq!(neg.len(), 0);
    let su = by(Table::Summary);
    let q = su.column_by_name("quantiles").expect("col").as_list::<i32>().value(0);
    assert_eq!(q.as_primitive::<Float64Type>().values().to_vec(), [0.5, 0.99]);
    let qv = su.column_by_name("quantile_values").expect("col").as_list::<i32>().value(0);
    assert_eq!(qv.as_primitive::<Float64Type>().values().to_vec(), [1.0, 2.0]);
}

#[test]
fn garbage_never_panics_and_keeps_tables_aligned() {
    // Every prefix of a valid request, and bytes flipped through it: the encoder either reads
    // it or fails it, and every table it returns is a valid record batch.
    let mut s1 = span_named("a", 1);
    s1.events.push(span::Event { name: "e".into(), ..Default::default() });
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(Some("t"))),
            scope_spans: vec![ScopeSpans { scope: scope(), spans: vec![s1.clone(), s1], ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let mut enc = Encoder::new(&["http.route".into()], &[]);
    for cut in 0..req.len() {
        for flip in [None, Some(cut)] {
            let mut b = req[..cut.max(1)].to_vec();
            if let Some(i) = flip.filter(|&i| i < b.len()) {
                b[i] ^= 0x5a;
            }
            if let Ok(out) = encode_batch(&mut enc, Signal::Traces, &[Bytes::from(b)], "owner.team") {
                for e in out {
                    assert_eq!(e.runs.iter().map(|r| r.2).sum::<usize>(), e.rows.num_rows());
                }
            }
        }
    }
}
