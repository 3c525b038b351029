//! Shared test helpers: remote-write messages derived with prost (to decode what the exporter
//! encodes by hand) and OTLP request builders.
#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<PromHistogram>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PromHistogram {
    #[prost(uint64, tag = "1")]
    pub count_int: u64,
    #[prost(double, tag = "3")]
    pub sum: f64,
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    #[prost(uint64, tag = "6")]
    pub zero_count_int: u64,
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

impl TimeSeries {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|l| l.name == name).map(|l| l.value.as_str())
    }
    pub fn name(&self) -> &str {
        self.label("__name__").unwrap_or("")
    }
}

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

pub fn kv_int(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(v)) }),
        ..Default::default()
    }
}

pub const T0: u64 = 1_700_000_000_000_000_000;

pub fn number(attrs: Vec<KeyValue>, t: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

pub fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(metric::Data::Gauge(Gauge { data_points: points })),
        ..Default::default()
    }
}

pub fn sum(
    name: &str,
    unit: &str,
    monotonic: bool,
    temporality: AggregationTemporality,
    points: Vec<NumberDataPoint>,
) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: monotonic,
        })),
        ..Default::default()
    }
}

pub fn histogram(name: &str, unit: &str, bounds: Vec<f64>, counts: Vec<u64>, sum: f64, t: u64) -> Metric {
    let count = counts.iter().sum();
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: t,
                count,
                sum: Some(sum),
                bucket_counts: counts,
                explicit_bounds: bounds,
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

pub fn request(resource: Vec<KeyValue>, scope: &str, metrics: Vec<Metric>) -> Vec<u8> {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: resource, ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope { name: scope.into(), version: "1.2".into(), ..Default::default() }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

pub fn checkout() -> Vec<KeyValue> {
    vec![
        kv("service.name", "checkout"),
        kv("service.namespace", "shop"),
        kv("service.instance.id", "pod-1"),
        kv("owner.team", "payments"),
        kv("owner.contact", "#payments"),
        kv("owner.source", "service"),
        kv("host.name", "node-7"),
    ]
}

/// One scripted answer of [`scripted_server`]: a status, and optionally `Retry-After` and
/// (Remote Write 2.0) the samples-written header.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<&'static str>,
    pub samples_written: Option<u64>,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Answer { status, retry_after: None, samples_written: None }
    }
    pub fn retry_after(status: u16, after: &'static str) -> Self {
        Answer { retry_after: Some(after), ..Answer::status(status) }
    }
    /// A 2.0 answer with `X-Prometheus-Remote-Write-Samples-Written` (and 0 histograms).
    pub fn written(status: u16, samples: u64) -> Self {
        Answer { samples_written: Some(samples), ..Answer::status(status) }
    }
}

/// What a [`scripted_server`] answers (each request the next answer, then 204) and received
/// (each body decoded as `M`: `WriteRequest` or the 2.0 `Request`).
pub struct Script<M> {
    pub answers: Vec<Answer>,
    pub received: Vec<(axum::http::HeaderMap, M)>,
}

pub type Shared<M> = std::sync::Arc<std::sync::Mutex<Script<M>>>;

/// A stand-in remote-write receiver on a free loopback port for the status and header paths
/// only (not a protocol implementation); returns the write URL and the script.
pub async fn scripted_server<M: Message + Default + Send + 'static>(answers: Vec<Answer>) -> (String, Shared<M>) {
    use axum::http::{HeaderMap, StatusCode};
    async fn write<M: Message + Default + Send + 'static>(
        axum::extract::State(s): axum::extract::State<Shared<M>>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> (StatusCode, HeaderMap, String) {
        let raw = snap::raw::Decoder::new().decompress_vec(&body).expect("snappy block format");
        let req = M::decode(&raw[..]).expect("a remote-write request");
        let mut s = s.lock().expect("lock");
        let i = s.received.len();
        s.received.push((headers, req));
        let a = s.answers.get(i).copied().unwrap_or(Answer::status(204));
        let mut h = HeaderMap::new();
        if let Some(r) = a.retry_after {
            h.insert("retry-after", r.parse().expect("header"));
        }
        if let Some(w) = a.samples_written {
            h.insert("x-prometheus-remote-write-samples-written", w.to_string().parse().expect("header"));
            h.insert("x-prometheus-remote-write-histograms-written", "0".parse().expect("header"));
        }
        (StatusCode::from_u16(a.status).expect("status"), h, format!("script says {}", a.status))
    }
    let shared: Shared<M> = std::sync::Arc::new(std::sync::Mutex::new(Script { answers, received: Vec::new() }));
    let app = axum::Router::new().route("/api/v1/write", axum::routing::post(write::<M>)).with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/api/v1/write"), shared)
}

/// A batch of one cumulative counter with `n_series` series (one point each).
pub fn counter_batch(n_series: i64) -> sightline_core::Batch {
    use sightline_core::{Batch, Payload, Signal};
    let points = (0..n_series).map(|i| number(vec![kv_int("i", i)], T0, i as f64)).collect();
    let req = request(checkout(), "s", vec![sum("c", "", true, AggregationTemporality::Cumulative, points)]);
    let mut b = Batch::new(Signal::Metrics);
    b.push(Payload::new(Signal::Metrics, req.into(), n_series as u64, None));
    b
}
