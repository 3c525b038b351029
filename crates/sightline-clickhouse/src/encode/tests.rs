use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue as Any, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
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

fn resource() -> Resource {
    Resource {
        attributes: vec![kv("service.name", s("checkout")), kv("owner.team", s("payments")), kv("pid", V::IntValue(7))],
        ..Default::default()
    }
}

/// Reads RowBinary back, the way ClickHouse does.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn varint(&mut self) -> u64 {
        let mut pos = 0;
        let v = wire::read_varint(self.0, &mut pos).expect("varint");
        self.take(pos);
        v
    }
    fn str(&mut self) -> String {
        let n = self.varint() as usize;
        String::from_utf8(self.take(n).to_vec()).expect("utf8")
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4"))
    }
    fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.take(4).try_into().expect("4"))
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8"))
    }
    fn f64(&mut self) -> f64 {
        f64::from_le_bytes(self.take(8).try_into().expect("8"))
    }
    fn map(&mut self) -> Vec<(String, String)> {
        (0..self.varint()).map(|_| (self.str(), self.str())).collect()
    }
    fn array<T>(&mut self, mut f: impl FnMut(&mut Self) -> T) -> Vec<T> {
        (0..self.varint()).map(|_| f(self)).collect()
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn owner() -> TableShape {
    TableShape { owner_team: true, event_name: true, seconds: false, unsupported: None }
}

#[test]
fn spans_become_rows_in_the_collectors_columns() {
    let span = Span {
        trace_id: vec![0xab; 16],
        span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
        parent_span_id: vec![0; 8],
        trace_state: "k=v".into(),
        name: "GET /cart".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_123_456_789,
        end_time_unix_nano: 1_700_000_000_623_456_789,
        attributes: vec![
            kv("http.route", s("/cart")),
            kv("ok", V::BoolValue(true)),
            kv("ratio", V::DoubleValue(0.5)),
            kv(
                "tags",
                V::ArrayValue(ArrayValue {
                    values: vec![Any { value: Some(s("a")) }, Any { value: Some(V::IntValue(2)) }],
                }),
            ),
            kv("m", V::KvlistValue(KeyValueList { values: vec![kv("z", V::IntValue(1)), kv("a", s("b"))] })),
        ],
        events: vec![
            span::Event {
                time_unix_nano: 5,
                name: "retry".into(),
                attributes: vec![kv("n", V::IntValue(1))],
                ..Default::default()
            },
            span::Event { time_unix_nano: 6, name: "done".into(), ..Default::default() },
        ],
        links: vec![span::Link {
            trace_id: vec![0xcd; 16],
            span_id: vec![0xef; 8],
            trace_state: "x=y".into(),
            attributes: vec![kv("l", s("1"))],
            ..Default::default()
        }],
        status: Some(Status { code: 2, message: "boom".into() }),
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "lib".into(), version: "1.2".into(), ..Default::default() }),
                spans: vec![span, Span { name: "second".into(), ..Default::default() }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let mut e = Encoder::default();
    e.add_traces(&req, &owner(), "owner.team").expect("encode");
    assert_eq!(e.stats, Stats { rows: 2, malformed: 0 });
    let mut r = Reader(&e.rows);
    assert_eq!(r.u64(), 1_700_000_000_123_456_789);
    assert_eq!(r.str(), "ab".repeat(16));
    assert_eq!(r.str(), "0102030405060708");
    assert_eq!(r.str(), "", "an all-zero parent is empty");
    assert_eq!(r.str(), "k=v");
    assert_eq!(r.str(), "GET /cart");
    assert_eq!(r.str(), "Server");
    assert_eq!(r.str(), "checkout");
    assert_eq!(r.str(), "payments");
    assert_eq!(r.map(), pairs(&[("service.name", "checkout"), ("owner.team", "payments"), ("pid", "7")]));
    assert_eq!((r.str(), r.str()), ("lib".into(), "1.2".into()));
    assert_eq!(
        r.map(),
        pairs(&[
            ("http.route", "/cart"),
            ("ok", "true"),
            ("ratio", "0.5"),
            ("tags", r#"["a",2]"#),
            ("m", r#"{"a":"b","z":1}"#)
        ])
    );
    assert_eq!(r.u64(), 500_000_000, "Duration in ns");
    assert_eq!(r.str(), "Error");
    assert_eq!(r.str(), "boom");
    assert_eq!(r.array(|r| r.u64()), vec![5, 6]);
    assert_eq!(r.array(|r| r.str()), vec!["retry", "done"]);
    assert_eq!(r.array(|r| r.map()), vec![pairs(&[("n", "1")]), vec![]]);
    assert_eq!(r.array(|r| r.str()), vec!["cd".repeat(16)]);
    assert_eq!(r.array(|r| r.str()), vec!["ef".repeat(8)]);
    assert_eq!(r.array(|r| r.str()), vec!["x=y"]);
    assert_eq!(r.array(|r| r.map()), vec![pairs(&[("l", "1")])]);
    // The second span: everything empty, the resource and scope columns the same.
    assert_eq!(r.u64(), 0);
    assert_eq!((r.str(), r.str(), r.str(), r.str()), (String::new(), String::new(), String::new(), String::new()));
    assert_eq!(
        (r.str(), r.str(), r.str(), r.str()),
        ("second".into(), "Unspecified".into(), "checkout".into(), "payments".into())
    );
    r.map();
    assert_eq!((r.str(), r.str()), ("lib".into(), "1.2".into()));
    assert!(r.map().is_empty());
    assert_eq!((r.u64(), r.str(), r.str()), (0, "Unset".into(), String::new()));
    for _ in 0..7 {
        assert_eq!(r.varint(), 0, "empty event and link arrays");
    }
    assert!(r.0.is_empty());

    // A table without OwnerTeam (made by the collector): the column is not written.
    let mut e = Encoder::default();
    e.add_traces(&req, &TableShape::default(), "owner.team").expect("encode");
    let mut r = Reader(&e.rows);
    r.u64();
    for _ in 0..7 {
        r.str();
    }
    assert_eq!(r.map().len(), 3, "ResourceAttributes right after ServiceName");
}

#[test]
fn a_span_that_cannot_be_read_is_left_out_whole() {
    let good = Span { name: "good".into(), ..Default::default() }.encode_to_vec();
    // name (field 5) with the varint wire type.
    let bad = [0x28, 0x01];
    let e = encode_spans(&[&bad, &good]);
    assert_eq!(e.stats, Stats { rows: 1, malformed: 1 });
    let mut r = Reader(&e.rows);
    r.u64();
    for _ in 0..4 {
        r.str();
    }
    assert_eq!(r.str(), "good");
}

/// The rows of encoded spans, in one scope of one resource without attributes.
fn encode_spans(spans: &[&[u8]]) -> Encoder {
    let mut ss = Vec::new();
    for span in spans {
        wire::put_len_field(&mut ss, 2, span);
    }
    let mut rs = Vec::new();
    wire::put_len_field(&mut rs, 2, &ss);
    let mut req = Vec::new();
    wire::put_len_field(&mut req, 1, &rs);
    let mut e = Encoder::default();
    e.add_traces(&req, &TableShape::default(), "").expect("encode");
    e
}

#[test]
fn log_records_become_rows() {
    let rec = LogRecord {
        time_unix_nano: 0,
        observed_time_unix_nano: 99,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(Any { value: Some(V::KvlistValue(KeyValueList { values: vec![kv("msg", s("hi<"))] })) }),
        attributes: vec![kv("user", s("u1"))],
        flags: 0x101,
        trace_id: vec![0x11; 16],
        span_id: vec![0x22; 8],
        event_name: "login".into(),
        ..Default::default()
    };
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "log".into(),
                    version: "2".into(),
                    attributes: vec![kv("sa", s("1"))],
                    ..Default::default()
                }),
                log_records: vec![rec],
                schema_url: "https://scope".into(),
            }],
            schema_url: "https://res".into(),
        }],
    }
    .encode_to_vec();
    let mut e = Encoder::default();
    e.add_logs(&req, &owner(), "owner.team").expect("encode");
    let mut r = Reader(&e.rows);
    assert_eq!(r.u64(), 99, "observed time when the time is unset");
    assert_eq!((r.str(), r.str()), ("11".repeat(16), "22".repeat(8)));
    assert_eq!(r.u8(), 1, "TraceFlags is the low byte");
    assert_eq!(r.str(), "INFO");
    assert_eq!(r.u8(), 9);
    assert_eq!((r.str(), r.str()), ("checkout".into(), "payments".into()));
    assert_eq!(r.str(), r#"{"msg":"hi<"}"#);
    assert_eq!(r.str(), "https://res");
    assert_eq!(r.map().len(), 3);
    assert_eq!((r.str(), r.str(), r.str()), ("https://scope".into(), "log".into(), "2".into()));
    assert_eq!(r.map(), pairs(&[("sa", "1")]));
    assert_eq!(r.map(), pairs(&[("user", "u1")]));
    assert_eq!(r.str(), "login");
    assert!(r.0.is_empty());
}

fn metric(name: &str, data: Data) -> Metric {
    Metric { name: name.into(), description: "d".into(), unit: "1".into(), data: Some(data), ..Default::default() }
}

fn metrics_request(metrics: Vec<Metric>) -> Vec<u8> {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "meter".into(),
                    dropped_attributes_count: 3,
                    ..Default::default()
                }),
                metrics,
                schema_url: "https://s".into(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

/// The columns every metrics table starts with, through TimeUnix; returns the point's
/// attributes.
fn prefix(r: &mut Reader<'_>, name: &str) -> Vec<(String, String)> {
    assert_eq!(r.map().len(), 3);
    assert_eq!(r.str(), "", "ResourceSchemaUrl");
    assert_eq!((r.str(), r.str()), ("meter".into(), String::new()));
    assert!(r.map().is_empty());
    assert_eq!(r.u32(), 3, "ScopeDroppedAttrCount");
    assert_eq!(r.str(), "https://s");
    assert_eq!((r.str(), r.str()), ("checkout".into(), "payments".into()));
    assert_eq!((r.str(), r.str(), r.str()), (name.into(), "d".into(), "1".into()));
    let attrs = r.map();
    assert_eq!((r.u64(), r.u64()), (10, 20), "StartTimeUnix, TimeUnix");
    attrs
}

#[test]
fn every_metric_type_goes_to_its_table() {
    let ex = m::Exemplar {
        filtered_attributes: vec![kv("f", s("x"))],
        time_unix_nano: 15,
        value: Some(m::exemplar::Value::AsInt(4)),
        span_id: vec![],
        trace_id: vec![0x33; 16],
    };
    let number = |v| m::NumberDataPoint {
        attributes: vec![kv("route", s("/a"))],
        start_time_unix_nano: 10,
        time_unix_nano: 20,
        value: Some(v),
        exemplars: vec![ex.clone()],
        flags: 1,
    };
    let req = metrics_request(vec![
        metric("g", Data::Gauge(m::Gauge { data_points: vec![number(m::number_data_point::Value::AsDouble(1.5))] })),
        metric(
            "s",
            Data::Sum(m::Sum {
                data_points: vec![number(m::number_data_point::Value::AsInt(7))],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "h",
            Data::Histogram(m::Histogram {
                data_points: vec![m::HistogramDataPoint {
                    start_time_unix_nano: 10,
                    time_unix_nano: 20,
                    count: 6,
                    sum: Some(12.5),
                    bucket_counts: vec![1, 2, 3],
                    explicit_bounds: vec![1.0, 5.0],
                    min: Some(0.5),
                    max: None,
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "e",
            Data::ExponentialHistogram(m::ExponentialHistogram {
                data_points: vec![m::ExponentialHistogramDataPoint {
                    start_time_unix_nano: 10,
                    time_unix_nano: 20,
                    count: 5,
                    sum: Some(3.0),
                    scale: -2,
                    zero_count: 1,
                    positive: Some(m::exponential_histogram_data_point::Buckets {
                        offset: -3,
                        bucket_counts: vec![1, 300],
                    }),
                    negative: None,
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "q",
            Data::Summary(m::Summary {
                data_points: vec![m::SummaryDataPoint {
                    start_time_unix_nano: 10,
                    time_unix_nano: 20,
                    count: 4,
                    sum: 8.0,
                    quantile_values: vec![
                        m::summary_data_point::ValueAtQuantile { quantile: 0.5, value: 1.0 },
                        m::summary_data_point::ValueAtQuantile { quantile: 0.99, value: 9.0 },
                    ],
                    ..Default::default()
                }],
            }),
        ),
    ]);
    let shapes = [owner(), owner(), owner(), owner(), owner()];
    let mut e = Encoder::default();
    e.add_metrics(&req, &shapes, "owner.team").expect("encode");
    assert_eq!(e.metric_counts, [1, 1, 1, 1, 1]);

    let exemplars = |r: &mut Reader<'_>| {
        assert_eq!(r.array(|r| r.map()), vec![pairs(&[("f", "x")])]);
        assert_eq!(r.array(|r| r.u64()), vec![15]);
        assert_eq!(r.array(|r| r.f64()), vec![4.0]);
        assert_eq!(r.array(|r| r.str()), vec!["0".repeat(16)], "an absent exemplar span id is zeros");
        assert_eq!(r.array(|r| r.str()), vec!["33".repeat(16)]);
    };
    let mut r = Reader(&e.metric_rows[0]);
    assert_eq!(prefix(&mut r, "g"), pairs(&[("route", "/a")]));
    assert_eq!((r.f64(), r.u32()), (1.5, 1));
    exemplars(&mut r);
    assert!(r.0.is_empty());

    let mut r = Reader(&e.metric_rows[1]);
    prefix(&mut r, "s");
    assert_eq!((r.f64(), r.u32()), (7.0, 1));
    exemplars(&mut r);
    assert_eq!((r.i32(), r.u8()), (2, 1));
    assert!(r.0.is_empty());

    let mut r = Reader(&e.metric_rows[2]);
    prefix(&mut r, "h");
    assert_eq!((r.u64(), r.f64()), (6, 12.5));
    assert_eq!(r.array(|r| r.u64()), vec![1, 2, 3]);
    assert_eq!(r.array(|r| r.f64()), vec![1.0, 5.0]);
    for _ in 0..5 {
        assert_eq!(r.varint(), 0);
    }
    assert_eq!((r.u32(), r.f64(), r.f64(), r.i32()), (0, 0.5, 0.0, 1));
    assert!(r.0.is_empty());

    let mut r = Reader(&e.metric_rows[3]);
    prefix(&mut r, "e");
    assert_eq!((r.u64(), r.f64(), r.i32(), r.u64()), (5, 3.0, -2, 1));
    assert_eq!(r.i32(), -3);
    assert_eq!(r.array(|r| r.u64()), vec![1, 300]);
    assert_eq!(r.i32(), 0);
    assert!(r.array(|r| r.u64()).is_empty());
    for _ in 0..5 {
        assert_eq!(r.varint(), 0);
    }
    assert_eq!((r.u32(), r.f64(), r.f64(), r.i32()), (0, 0.0, 0.0, 2));
    assert!(r.0.is_empty());

    let mut r = Reader(&e.metric_rows[4]);
    prefix(&mut r, "q");
    assert_eq!((r.u64(), r.f64()), (4, 8.0));
    assert_eq!(r.array(|r| r.f64()), vec![0.5, 0.99]);
    assert_eq!(r.array(|r| r.f64()), vec![1.0, 9.0]);
    assert_eq!(r.u32(), 0);
    assert!(r.0.is_empty());
}

#[test]
fn metric_times_in_seconds_for_newer_tables() {
    let req = metrics_request(vec![metric(
        "g",
        Data::Gauge(m::Gauge {
            data_points: vec![m::NumberDataPoint {
                start_time_unix_nano: 3_000_000_000,
                time_unix_nano: 4_500_000_000,
                ..Default::default()
            }],
        }),
    )]);
    let mut shapes: [TableShape; 5] = Default::default();
    shapes[0].seconds = true;
    let mut e = Encoder::default();
    e.add_metrics(&req, &shapes, "owner.team").expect("encode");
    let mut r = Reader(&e.metric_rows[0]);
    r.map();
    r.str();
    r.str();
    r.str();
    r.map();
    r.u32();
    r.str();
    r.str();
    for _ in 0..3 {
        r.str();
    }
    r.map();
    assert_eq!((r.u32(), r.u32()), (3, 4));
}

#[test]
fn a_resource_that_cannot_be_read_leaves_out_its_items_only() {
    // A resource whose attribute value has the varint wire type, then a good resource.
    let mut kv = Vec::new();
    wire::put_len_field(&mut kv, 1, b"k");
    kv.extend([0x10, 0x01]);
    let mut res = Vec::new();
    wire::put_len_field(&mut res, 1, &kv);
    let good = Span { name: "kept".into(), ..Default::default() }.encode_to_vec();
    let mut ss = Vec::new();
    wire::put_len_field(&mut ss, 2, &good);
    wire::put_len_field(&mut ss, 2, &good);
    let mut bad_rs = Vec::new();
    wire::put_len_field(&mut bad_rs, 1, &res);
    wire::put_len_field(&mut bad_rs, 2, &ss);
    let mut good_rs = Vec::new();
    wire::put_len_field(&mut good_rs, 2, &ss);
    let mut req = Vec::new();
    wire::put_len_field(&mut req, 1, &bad_rs);
    wire::put_len_field(&mut req, 1, &good_rs);
    let mut e = Encoder::default();
    e.add_traces(&req, &TableShape::default(), "owner.team").expect("encode");
    assert_eq!(e.stats, Stats { rows: 2, malformed: 2 });
}

#[test]
fn attribute_bytes_are_copied_without_a_utf8_check() {
    // A ClickHouse `String` holds bytes, and the collector copies them unchecked too: a key
    // and a string value that are not UTF-8 keep their row.
    let mut value = Vec::new();
    wire::put_len_field(&mut value, 1, &[b'v', 0xff]);
    let mut kv = Vec::new();
    wire::put_len_field(&mut kv, 1, &[b'k', 0xfe]);
    wire::put_len_field(&mut kv, 2, &value);
    let mut span = Span { name: "s".into(), ..Default::default() }.encode_to_vec();
    wire::put_len_field(&mut span, 9, &kv);
    let e = encode_spans(&[&span]);
    assert_eq!(e.stats, Stats { rows: 1, malformed: 0 });
    let mut r = Reader(&e.rows);
    r.u64();
    for _ in 0..4 {
        r.str();
    }
    assert_eq!(r.str(), "s");
    // SpanKind, ServiceName, ResourceAttributes, ScopeName, ScopeVersion.
    r.str();
    r.str();
    r.map();
    r.str();
    r.str();
    assert_eq!(r.varint(), 1);
    let n = r.varint() as usize;
    assert_eq!(r.take(n), &[b'k', 0xfe]);
    let n = r.varint() as usize;
    assert_eq!(r.take(n), &[b'v', 0xff]);
}
