//! Test data shared by the exporter tests: OTLP requests built with `opentelemetry-proto`'s
//! prost types (so that the exporters are checked against an independent encoder/decoder),
//! turned into payloads and batches the way the receivers produce them.
#![allow(dead_code)]

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar, exponential_histogram_data_point, metric,
    number_data_point, summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use sightline_core::{Batch, Payload, Signal};
use std::path::PathBuf;

pub fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

pub fn str_kv(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource { attributes: vec![str_kv("service.name", service)], ..Default::default() })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope { name: "test-scope".into(), version: "1.0".into(), ..Default::default() })
}

/// A nested value covering every AnyValue kind.
pub fn rich_value() -> any_value::Value {
    any_value::Value::KvlistValue(KeyValueList {
        values: vec![
            kv("s", any_value::Value::StringValue("x".into())),
            kv("b", any_value::Value::BoolValue(true)),
            kv("i", any_value::Value::IntValue(-3)),
            kv("d", any_value::Value::DoubleValue(1.5)),
            kv("bytes", any_value::Value::BytesValue(vec![0, 255])),
            kv(
                "arr",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue { value: Some(any_value::Value::IntValue(1)) }, AnyValue { value: None }],
                }),
            ),
            KeyValue { key: "empty".into(), value: None, ..Default::default() },
        ],
    })
}

/// `n` spans of `service`, ids derived from `seed`, with events, links and a status.
pub fn traces(service: &str, n: usize, seed: u8) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![seed; 16],
            span_id: vec![seed, i as u8, 1, 2, 3, 4, 5, 6],
            parent_span_id: if i == 0 { vec![] } else { vec![seed, 0, 1, 2, 3, 4, 5, 6] },
            name: format!("span-{seed}-{i}"),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            end_time_unix_nano: 1_700_000_000_100_000_000 + i as u64,
            attributes: vec![str_kv("http.route", "/checkout"), kv("rich", rich_value())],
            events: vec![span::Event {
                time_unix_nano: 1_700_000_000_050_000_000,
                name: "exception".into(),
                attributes: vec![str_kv("exception.type", "Boom")],
                dropped_attributes_count: 1,
            }],
            links: vec![span::Link { trace_id: vec![9; 16], span_id: vec![8; 8], ..Default::default() }],
            status: Some(Status { message: "ok".into(), code: 1 }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans { scope: scope(), spans, schema_url: String::new() }],
            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
        }],
    }
}

/// `n` log records of `service`, some with a large body.
pub fn logs(service: &str, n: usize, body_len: usize) -> ExportLogsServiceRequest {
    let log_records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            observed_time_unix_nano: 1_700_000_000_000_000_001,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("{i}:{}", "x".repeat(body_len)))),
            }),
            attributes: vec![str_kv("log.file", "app.log"), kv("rich", rich_value())],
            trace_id: if i % 2 == 0 { vec![7; 16] } else { vec![] },
            span_id: if i % 2 == 0 { vec![6; 8] } else { vec![] },
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs { scope: scope(), log_records, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    }
}

/// One metric of every kind (gauge, sum, histogram, exponential histogram, summary, and one
/// without data), one data point each (two for the gauge).
pub fn metrics(service: &str) -> ExportMetricsServiceRequest {
    let number = |v: number_data_point::Value| NumberDataPoint {
        attributes: vec![str_kv("host", "a")],
        start_time_unix_nano: 1_700_000_000_000_000_000,
        time_unix_nano: 1_700_000_010_000_000_000,
        value: Some(v),
        exemplars: vec![opentelemetry_proto::tonic::metrics::v1::Exemplar {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            value: Some(exemplar::Value::AsDouble(0.5)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let metric = |name: &str, data: Option<metric::Data>| Metric {
        name: name.into(),
        description: "test".into(),
        unit: "1".into(),
        data,
        ..Default::default()
    };
    let metrics = vec![
        metric(
            "g",
            Some(metric::Data::Gauge(Gauge {
                data_points: vec![
                    number(number_data_point::Value::AsDouble(2.5)),
                    number(number_data_point::Value::AsInt(3)),
                ],
            })),
        ),
        metric(
            "s",
            Some(metric::Data::Sum(Sum {
                data_points: vec![number(number_data_point::Value::AsInt(7))],
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
        ),
        metric(
            "h",
            Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 3,
                    sum: Some(6.0),
                    bucket_counts: vec![1, 2, 0],
                    explicit_bounds: vec![1.0, 5.0],
                    min: Some(1.0),
                    max: Some(4.0),
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            })),
        ),
        metric(
            "e",
            Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    count: 4,
                    scale: 2,
                    zero_count: 1,
                    positive: Some(exponential_histogram_data_point::Buckets { offset: -1, bucket_counts: vec![1, 2] }),
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
        ),
        metric(
            "q",
            Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    count: 2,
                    sum: 3.0,
                    quantile_values: vec![summary_data_point::ValueAtQuantile { quantile: 0.5, value: 1.0 }],
                    ..Default::default()
                }],
            })),
        ),
        metric("empty", None),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(service),
            scope_metrics: vec![ScopeMetrics { scope: scope(), metrics, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    }
}

pub fn payload(signal: Signal, msg: &impl Message, items: u64) -> Payload {
    Payload::new(signal, Bytes::from(msg.encode_to_vec()), items, None)
}

pub fn batch(payloads: impl IntoIterator<Item = Payload>) -> Batch {
    let mut payloads = payloads.into_iter().peekable();
    let signal = payloads.peek().map_or(Signal::Traces, |p| p.signal());
    let mut b = Batch::new(signal);
    for p in payloads {
        b.push(p);
    }
    b
}

/// A fresh, empty directory under the system's temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("sightline-exporters-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Polls `cond` every 10ms for at most 10s (a bound, not a timing assertion).
pub async fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if cond() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    cond()
}
