//! Writes the seed corpus in `fuzz/corpus/<target>/` (committed; small). Deterministic: run
//! it again after changing it and commit the result.
//!
//! ```sh
//! cd fuzz && cargo run --example gen_corpus
//! ```

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exponential_histogram_data_point, metric,
    number_data_point, summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use sightline_core::Signal;
use sightline_core::wire::put_len_field;
use sightline_fuzz::{json_signal, signal_byte};
use std::io::Write;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let requests = requests();
    let with_signal = |signal: Signal, bytes: &[u8]| {
        let mut v = vec![signal_byte(signal)];
        v.extend_from_slice(bytes);
        v
    };

    // Protobuf requests: the wire walker, the rewriters, the protobuf -> JSON round trip and
    // the ClickHouse encoder.
    for target in ["wire_inspect", "ownership_rewrite", "otlp_json_roundtrip", "clickhouse_encode", "wire_plan_rewrite"]
    {
        let dir = fresh(&root, target);
        for (name, signal, bytes) in &requests {
            write(&dir, name, &with_signal(*signal, bytes));
        }
    }
    // ownership_rewrite reads a first byte of 128 or more as `metrics_datapoint_attributes`
    // (130 % 3 = 1: metrics).
    let dir = root.join("ownership_rewrite");
    for (name, signal, bytes) in &requests {
        if *signal == Signal::Metrics {
            let mut v = vec![130u8];
            v.extend_from_slice(bytes);
            write(&dir, &format!("{name}-datapoints"), &v);
        }
    }

    // OTLP/JSON: the crate's examples, and the JSON of each generated request.
    let dir = fresh(&root, "otlp_json_decode");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/sightline-otlp-json/tests/data");
    for (file, signal) in
        [("traces.json", Signal::Traces), ("metrics.json", Signal::Metrics), ("logs.json", Signal::Logs)]
    {
        let json = std::fs::read(examples.join(file)).expect("read the OTLP/JSON examples");
        write(&dir, &format!("example-{file}"), &with_signal(signal, &json));
    }
    for (name, signal, bytes) in &requests {
        if let Ok(json) = sightline_otlp_json::protobuf_to_json(json_signal(*signal), bytes) {
            write(&dir, &format!("{name}.json"), &with_signal(*signal, &json));
        }
    }
    write(
        &dir,
        "response.json",
        &with_signal(Signal::Traces, br#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"x"}}"#),
    );

    // Compressed requests (mode = encoding, limit 64 KiB, a roomy budget) and round-trip seeds.
    let dir = fresh(&root, "decompress");
    let (_, _, sample) = &requests[0];
    let limit = ((64 * 1024 / 16) as u16).to_le_bytes();
    let header = |mode: u8| vec![mode, limit[0], limit[1], 0xff];
    let seeds: [(&str, u8, Vec<u8>); 6] = [
        ("identity", 0, sample.clone()),
        ("gzip", 1, flate(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()), sample)),
        ("zstd", 2, zstd::encode_all(&sample[..], 3).expect("zstd")),
        ("zlib", 3, flate(flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default()), sample)),
        (
            "raw-deflate",
            3,
            flate(flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default()), sample),
        ),
        ("snappy-block", 4, snap::raw::Encoder::new().compress_vec(sample).expect("snappy")),
    ];
    for (name, mode, body) in seeds {
        let mut v = header(mode);
        v.extend_from_slice(&body);
        write(&dir, name, &v);
    }
    let mut framed = snap::write::FrameEncoder::new(Vec::new());
    framed.write_all(sample).expect("snappy");
    let mut v = header(4);
    v.extend_from_slice(&framed.into_inner().expect("snappy"));
    write(&dir, "snappy-framed", &v);
    // A small bomb: 1 MiB of zeros, over the 64 KiB limit.
    let mut v = header(1);
    v.extend_from_slice(&flate(
        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best()),
        &vec![0; 1 << 20],
    ));
    write(&dir, "gzip-bomb", &v);
    for mode in 5..11u8 {
        let mut v = header(mode);
        v.extend_from_slice(b"round trip through a real encoder, round trip through a real encoder");
        write(&dir, &format!("round-trip-{mode}"), &v);
    }
}

fn flate<W: Write + Finish>(mut w: W, data: &[u8]) -> Vec<u8> {
    w.write_all(data).expect("in-memory write");
    w.finish_vec()
}

trait Finish {
    fn finish_vec(self) -> Vec<u8>;
}

macro_rules! finish {
    ($($t:ty),*) => {$(
        impl Finish for $t {
            fn finish_vec(self) -> Vec<u8> {
                self.finish().expect("in-memory write")
            }
        }
    )*};
}
finish!(flate2::write::GzEncoder<Vec<u8>>, flate2::write::ZlibEncoder<Vec<u8>>, flate2::write::DeflateEncoder<Vec<u8>>);

fn fresh(root: &Path, target: &str) -> PathBuf {
    let dir = root.join(target);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write a corpus file");
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn resource(attrs: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource { attributes: attrs, ..Default::default() })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope { name: "io.opentelemetry.http".into(), version: "1.2.3".into(), ..Default::default() })
}

/// Attributes of every value type, nested ones included.
fn rich_attrs() -> Vec<KeyValue> {
    vec![
        s("http.route", "/checkout"),
        kv("http.status_code", any_value::Value::IntValue(200)),
        kv("sampled", any_value::Value::BoolValue(true)),
        kv("ratio", any_value::Value::DoubleValue(0.25)),
        kv("blob", any_value::Value::BytesValue(vec![0, 1, 2, 255])),
        kv(
            "list",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(any_value::Value::StringValue("a".into())) }],
            }),
        ),
        kv("map", any_value::Value::KvlistValue(KeyValueList { values: vec![s("k", "v")] })),
    ]
}

fn span(i: u8) -> Span {
    Span {
        trace_id: vec![i; 16],
        span_id: vec![i + 1; 8],
        parent_span_id: vec![i + 2; 8],
        name: format!("GET /item/{i}"),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_100_000_000,
        attributes: rich_attrs(),
        events: vec![span::Event { name: "exception".into(), time_unix_nano: 5, ..Default::default() }],
        links: vec![span::Link { trace_id: vec![9; 16], span_id: vec![8; 8], ..Default::default() }],
        status: Some(Status { code: 2, message: "boom".into() }),
        ..Default::default()
    }
}

fn log(i: u8) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("hello {i}"))) }),
        attributes: vec![s("user", "u1")],
        trace_id: vec![i; 16],
        span_id: vec![i; 8],
        ..Default::default()
    }
}

fn metrics() -> Vec<Metric> {
    let n = |v: f64| NumberDataPoint {
        attributes: vec![s("queue", "a")],
        time_unix_nano: 7,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    vec![
        Metric {
            name: "queue.depth".into(),
            data: Some(metric::Data::Gauge(Gauge { data_points: vec![n(1.5), n(2.0)] })),
            ..Default::default()
        },
        Metric {
            name: "requests".into(),
            unit: "{request}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    value: Some(number_data_point::Value::AsInt(42)),
                    ..Default::default()
                }],
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "latency".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 3,
                    sum: Some(1.5),
                    bucket_counts: vec![1, 2, 0],
                    explicit_bounds: vec![0.5, 1.0],
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            })),
            ..Default::default()
        },
        Metric {
            name: "latency.exp".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    count: 2,
                    scale: 3,
                    positive: Some(exponential_histogram_data_point::Buckets { offset: -1, bucket_counts: vec![1, 1] }),
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
        Metric {
            name: "rpc.summary".into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    count: 4,
                    sum: 2.0,
                    quantile_values: vec![summary_data_point::ValueAtQuantile { quantile: 0.5, value: 0.4 }],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        },
    ]
}

/// Named requests: each signal, several resources (catalog hits by service, by glob, by
/// regex, forged ownership, none), and a few deliberately odd ones.
fn requests() -> Vec<(String, Signal, Vec<u8>)> {
    let resources = [
        resource(vec![s("service.name", "checkout"), s("owner.team", "evil")]),
        resource(vec![s("service.name", "pay-gateway"), s("host.name", "h1")]),
        resource(vec![s("service.name", "x"), s("k8s.namespace.name", "infra-core")]),
        resource(vec![kv("service.name", any_value::Value::IntValue(3))]),
        None,
    ];
    let traces = ExportTraceServiceRequest {
        resource_spans: resources
            .iter()
            .enumerate()
            .map(|(i, r)| ResourceSpans {
                resource: r.clone(),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans: vec![span(i as u8), span(i as u8 + 10)],
                    schema_url: "https://opentelemetry.io/schemas/1.24.0".into(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: resources
            .iter()
            .enumerate()
            .map(|(i, r)| ResourceLogs {
                resource: r.clone(),
                scope_logs: vec![ScopeLogs {
                    scope: scope(),
                    log_records: vec![log(i as u8)],
                    schema_url: String::new(),
                }],
                schema_url: "u".into(),
            })
            .collect(),
    };
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: resources[..3]
            .iter()
            .map(|r| ResourceMetrics {
                resource: r.clone(),
                scope_metrics: vec![ScopeMetrics { scope: scope(), metrics: metrics(), schema_url: String::new() }],
                schema_url: String::new(),
            })
            .collect(),
    };
    let mut out = vec![
        ("traces".to_string(), Signal::Traces, traces.encode_to_vec()),
        ("metrics".to_string(), Signal::Metrics, metrics.encode_to_vec()),
        ("logs".to_string(), Signal::Logs, logs.encode_to_vec()),
    ];
    // One span with a 15-byte trace id: an invalid item (partial success).
    let mut bad = traces.clone();
    bad.resource_spans[0].scope_spans[0].spans[0].trace_id.pop();
    out.push(("traces-invalid-item".into(), Signal::Traces, bad.encode_to_vec()));
    // The same resource twice in a row (the cache), and a resource split over two fields.
    let mut twice = ExportTraceServiceRequest { resource_spans: vec![traces.resource_spans[0].clone(); 2] };
    twice.resource_spans[1].scope_spans[0].spans.truncate(1);
    out.push(("traces-same-resource".into(), Signal::Traces, twice.encode_to_vec()));
    let r1 = Resource { attributes: vec![s("service.name", "indexer")], ..Default::default() }.encode_to_vec();
    let r2 = Resource {
        attributes: vec![s("deployment.environment", "search")],
        dropped_attributes_count: 1,
        ..Default::default()
    }
    .encode_to_vec();
    let sx = ScopeLogs { log_records: vec![log(1)], ..Default::default() }.encode_to_vec();
    let mut rx = Vec::new();
    put_len_field(&mut rx, 1, &r1);
    put_len_field(&mut rx, 1, &r2);
    put_len_field(&mut rx, 2, &sx);
    let mut split = Vec::new();
    put_len_field(&mut split, 1, &rx);
    out.push(("logs-split-resource".into(), Signal::Logs, split));
    // Regression (ownership_rewrite): a KeyValue whose value field occurs twice, the second
    // one empty; protobuf merges them into `service.name = checkout`.
    let mut kv = Vec::new();
    put_len_field(&mut kv, 1, b"service.name");
    put_len_field(
        &mut kv,
        2,
        &AnyValue { value: Some(any_value::Value::StringValue("checkout".into())) }.encode_to_vec(),
    );
    put_len_field(&mut kv, 2, b"");
    let mut r = Vec::new();
    put_len_field(&mut r, 1, &kv);
    let mut rx = Vec::new();
    put_len_field(&mut rx, 1, &r);
    put_len_field(&mut rx, 2, &ScopeSpans { spans: vec![span(1)], ..Default::default() }.encode_to_vec());
    let mut req = Vec::new();
    put_len_field(&mut req, 1, &rx);
    out.push(("traces-repeated-attribute-value".into(), Signal::Traces, req));
    out.push(("empty".into(), Signal::Traces, Vec::new()));
    out
}
