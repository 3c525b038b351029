//! Remote Write 2.0 (`protobuf_message: io.prometheus.write.v2.Request`): the hand-encoded
//! `io.prometheus.write.v2.Request`s decoded with prost structs written from the spec's proto
//! (symbols, label refs, samples, native histograms, metadata, one symbol table per shard
//! request), the same series and samples as 1.0, the config option, and the HTTP side against
//! a tiny local server (headers, the written headers of a partial write, 415).

mod common;

use common::*;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Metric,
    exponential_histogram_data_point::Buckets, metric,
};
use prost::Message;
use sightline_core::{Registry, Signal};
use sightline_prometheus::{
    Options, PrometheusRemoteWriteConfig, ProtobufMessage, Translator, build_prometheusremotewrite,
};

#[derive(Clone, PartialEq, prost::Message)]
struct RequestV2 {
    #[prost(string, repeated, tag = "4")]
    symbols: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    timeseries: Vec<TimeSeriesV2>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TimeSeriesV2 {
    #[prost(uint32, repeated, tag = "1")]
    labels_refs: Vec<u32>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    histograms: Vec<PromHistogram>,
    #[prost(message, optional, tag = "5")]
    metadata: Option<MetadataV2>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MetadataV2 {
    #[prost(int32, tag = "1")]
    r#type: i32,
    #[prost(uint32, tag = "3")]
    help_ref: u32,
    #[prost(uint32, tag = "4")]
    unit_ref: u32,
}

const COUNTER: i32 = 1;
const GAUGE: i32 = 2;
const HISTOGRAM: i32 = 3;

/// A series with its refs resolved against its request's symbols.
#[derive(Debug, Clone, PartialEq)]
struct Resolved {
    labels: Vec<(String, String)>,
    samples: Vec<(f64, i64)>,
    histograms: Vec<PromHistogram>,
    /// (type, help, unit)
    meta: Option<(i32, String, String)>,
}

impl Resolved {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn name(&self) -> &str {
        self.label("__name__").unwrap_or("")
    }
}

fn sym(req: &RequestV2, r: u32) -> String {
    req.symbols.get(r as usize).unwrap_or_else(|| panic!("ref {r} outside {} symbols", req.symbols.len())).clone()
}

/// Checks the request's invariants and resolves its series.
fn resolve(req: &RequestV2) -> Vec<Resolved> {
    assert_eq!(req.symbols.first().map(String::as_str), Some(""), "symbols[0] is the empty string");
    let mut uniq = req.symbols.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), req.symbols.len(), "every symbol once");
    req.timeseries
        .iter()
        .map(|ts| {
            assert_eq!(ts.labels_refs.len() % 2, 0, "name/value pairs");
            assert!(ts.samples.is_empty() || ts.histograms.is_empty(), "samples or histograms, not both");
            let labels: Vec<(String, String)> =
                ts.labels_refs.chunks(2).map(|p| (sym(req, p[0]), sym(req, p[1]))).collect();
            assert!(labels.windows(2).all(|w| w[0].0 < w[1].0), "sorted by name: {labels:?}");
            Resolved {
                labels,
                samples: ts.samples.iter().map(|s| (s.value, s.timestamp)).collect(),
                histograms: ts.histograms.clone(),
                meta: ts.metadata.as_ref().map(|m| (m.r#type, sym(req, m.help_ref), sym(req, m.unit_ref))),
            }
        })
        .collect()
}

fn v2() -> Options {
    Options { protobuf_message: ProtobufMessage::V2, ..Options::default() }
}

/// Per shard, the decoded requests and the (samples, histograms) counts `encode_v2` reported.
fn run_v2(opts: Options, reqs: &[Vec<u8>], shards: usize, max: usize) -> Vec<Vec<(RequestV2, u32, u32)>> {
    let mut t = Translator::new(opts);
    for r in reqs {
        t.add_request(r).expect("valid request");
    }
    let mut out = vec![Vec::new(); shards];
    t.encode_v2(shards, max, |s, b, n, h| out[s].push((RequestV2::decode(b).expect("a v2 Request"), n, h)));
    out
}

fn all_v2(opts: Options, reqs: &[Vec<u8>]) -> Vec<Resolved> {
    run_v2(opts, reqs, 1, 100_000).into_iter().flatten().flat_map(|(r, _, _)| resolve(&r)).collect()
}

fn find<'a>(series: &'a [Resolved], name: &str, extra: Option<(&str, &str)>) -> &'a Resolved {
    series
        .iter()
        .find(|s| s.name() == name && extra.is_none_or(|(k, v)| s.label(k) == Some(v)))
        .unwrap_or_else(|| panic!("no series {name} {extra:?} in {series:#?}"))
}

fn described(mut m: Metric, help: &str) -> Metric {
    m.description = help.into();
    m
}

/// The main scenario in 2.0: labels (with ownership, job, instance) through the symbol table,
/// samples, and each series' metadata as Prometheus' OTLP endpoint sets it (classic histogram
/// component series are of type histogram).
#[test]
fn labels_samples_and_metadata() {
    let req = request(
        checkout(),
        "shop.meter",
        vec![
            described(
                sum(
                    "http.requests",
                    "{request}",
                    true,
                    AggregationTemporality::Cumulative,
                    vec![number(vec![kv("http.route", "/pay")], T0, 42.0)],
                ),
                "Requests served.",
            ),
            gauge("queue.depth", "1", vec![number(vec![], T0, 7.0)]),
            sum("in.flight", "By", false, AggregationTemporality::Cumulative, vec![number(vec![], T0, 3.0)]),
            described(histogram("http.duration", "ms", vec![10.0, 100.0], vec![1, 2, 3], 1234.5, T0), "Latency."),
        ],
    );
    let series = all_v2(v2(), &[req]);
    let ms = (T0 / 1_000_000) as i64;

    let c = find(&series, "http_requests_total", None);
    let want: Vec<(String, String)> = [
        ("__name__", "http_requests_total"),
        ("http_route", "/pay"),
        ("instance", "pod-1"),
        ("job", "shop/checkout"),
        ("otel_scope_name", "shop.meter"),
        ("otel_scope_version", "1.2"),
        ("owner_source", "service"),
        ("owner_team", "payments"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(c.labels, want);
    assert_eq!(c.samples, vec![(42.0, ms)]);
    assert_eq!(c.meta, Some((COUNTER, "Requests served.".into(), "".into())));

    let g = find(&series, "queue_depth_ratio", None);
    assert_eq!(g.samples, vec![(7.0, ms)]);
    assert_eq!(g.meta, Some((GAUGE, "".into(), "".into())));

    let nm = find(&series, "in_flight_bytes", None);
    assert_eq!(nm.meta, Some((GAUGE, "".into(), "bytes".into())), "a non-monotonic sum is a gauge");

    for (name, le) in [
        ("http_duration_milliseconds_bucket", Some(("le", "10"))),
        ("http_duration_milliseconds_bucket", Some(("le", "+Inf"))),
        ("http_duration_milliseconds_sum", None),
        ("http_duration_milliseconds_count", None),
    ] {
        let h = find(&series, name, le);
        assert_eq!(h.meta, Some((HISTOGRAM, "Latency.".into(), "milliseconds".into())), "{name} {le:?}");
    }
    assert_eq!(find(&series, "http_duration_milliseconds_bucket", Some(("le", "100"))).samples, vec![(3.0, ms)]);
    assert_eq!(find(&series, "http_duration_milliseconds_count", None).samples, vec![(6.0, ms)]);

    let ti = find(&series, "target_info", None);
    assert_eq!(ti.label("host_name"), Some("node-7"));
    assert_eq!(ti.samples, vec![(1.0, ms)]);
    assert_eq!(ti.meta, Some((GAUGE, "Target metadata".into(), "".into())));
}

/// 1.0 and 2.0 carry the same series with the same samples, shard by shard, request by request
/// (the 2.0 encoding changes only how labels are written and adds metadata).
#[test]
fn same_series_and_samples_as_v1() {
    let mut reqs = Vec::new();
    for k in 0..3u64 {
        let points = (0..30).map(|i| number(vec![kv_int("i", i)], T0 + k * 1_000_000_000, (k * 100 + i as u64) as f64));
        reqs.push(request(
            checkout(),
            "s",
            vec![sum("c", "s", true, AggregationTemporality::Cumulative, points.collect())],
        ));
    }
    reqs.push(request(checkout(), "s", vec![histogram("h", "", vec![1.0, 2.0, 5.0], vec![1, 1, 1, 1], 9.0, T0)]));
    let (shards, max) = (3, 5);

    let mut t1 = Translator::new(Options::default());
    for r in &reqs {
        t1.add_request(r).expect("valid");
    }
    // Per shard, per request: each series' labels and samples.
    type Series = (Vec<(String, String)>, Vec<(f64, i64)>);
    let mut v1: Vec<Vec<Vec<Series>>> = vec![Vec::new(); shards];
    t1.encode(shards, max, |s, b| {
        let w = WriteRequest::decode(b).expect("v1");
        v1[s].push(
            w.timeseries
                .iter()
                .map(|ts| {
                    let l = ts.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
                    (l, ts.samples.iter().map(|x| (x.value, x.timestamp)).collect())
                })
                .collect(),
        );
    });

    let out = run_v2(v2(), &reqs, shards, max);
    let mut total = 0;
    for (shard, reqs) in out.iter().enumerate() {
        assert_eq!(reqs.len(), v1[shard].len(), "shard {shard}: as many requests");
        for (i, (r, n, h)) in reqs.iter().enumerate() {
            let series = resolve(r);
            let got: Vec<_> = series.iter().map(|s| (s.labels.clone(), s.samples.clone())).collect();
            assert_eq!(got, v1[shard][i], "shard {shard} request {i}");
            let samples: usize = series.iter().map(|s| s.samples.len()).sum();
            assert_eq!((*n as usize, *h), (samples, 0), "the reported counts");
            assert!(samples <= max);
            total += samples;
        }
    }
    let v1_total: usize = v1.iter().flatten().flatten().map(|(_, s)| s.len()).sum();
    assert_eq!(total, v1_total);
    assert!(total > 3 * 30 + 6, "counter samples, histogram samples, target_info");
}

/// Each request of each shard has its own symbol table: every ref resolves within its own
/// request, and a string used by two shards is in both tables.
#[test]
fn one_symbol_table_per_shard_request() {
    let points = (0..64).map(|i| number(vec![kv_int("i", i)], T0, i as f64)).collect();
    let req = request(checkout(), "s", vec![sum("c", "", true, AggregationTemporality::Cumulative, points)]);
    let out = run_v2(Options { target_info: false, ..v2() }, &[req], 4, 10);
    let mut requests = 0;
    for (shard, reqs) in out.iter().enumerate() {
        assert!(!reqs.is_empty(), "shard {shard} has series");
        for (r, _, _) in reqs {
            requests += 1;
            // resolve() panics on a ref outside this request's table.
            let series = resolve(r);
            assert!(r.symbols.iter().any(|s| s == "payments"), "owner_team's value in this table");
            // Only the strings this request's series use.
            let used: std::collections::BTreeSet<&str> = series
                .iter()
                .flat_map(|s| s.labels.iter().flat_map(|(n, v)| [n.as_str(), v.as_str()]))
                .chain([""])
                .collect();
            let table: std::collections::BTreeSet<&str> = r.symbols.iter().map(String::as_str).collect();
            assert_eq!(used, table);
        }
    }
    assert!(requests >= 7, "64 samples at 10 per request");
}

/// Native histograms go in `histograms` (field 3) with the 1.0 field numbers, in their own
/// series message, with histogram metadata.
#[test]
fn native_histograms() {
    let exp = Metric {
        name: "rpc.latency".into(),
        unit: "s".into(),
        description: "RPC latency.".into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                time_unix_nano: T0,
                count: 7,
                sum: Some(3.5),
                scale: 2,
                zero_count: 1,
                zero_threshold: 0.001,
                positive: Some(Buckets { offset: -1, bucket_counts: vec![2, 3] }),
                negative: Some(Buckets { offset: 0, bucket_counts: vec![1] }),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    let opts = Options { send_native_histograms: true, ..v2() };
    let out = run_v2(opts, &[request(checkout(), "s", vec![exp])], 1, 100);
    let (r, n, h) = &out[0][0];
    assert_eq!((*n, *h), (1, 1), "target_info's sample and the histogram");
    let series = resolve(r);
    let s = find(&series, "rpc_latency_seconds", None);
    assert!(s.samples.is_empty());
    assert_eq!(s.meta, Some((HISTOGRAM, "RPC latency.".into(), "seconds".into())));
    let h = &s.histograms[0];
    assert_eq!((h.count_int, h.sum, h.schema, h.zero_count_int), (7, 3.5, 2, 1));
    assert_eq!(h.zero_threshold, 0.001);
    assert_eq!(h.timestamp, (T0 / 1_000_000) as i64);
    assert_eq!(h.positive_spans, vec![BucketSpan { offset: 0, length: 2 }]);
    assert_eq!(h.positive_deltas, vec![2, 1]);
    assert_eq!(h.negative_spans, vec![BucketSpan { offset: 1, length: 1 }]);
    assert_eq!(h.negative_deltas, vec![1]);
}

/// The option: the collector's name and values; anything else is refused naming the key and
/// both values.
#[test]
fn config_option() {
    let cfg: PrometheusRemoteWriteConfig = serde_yaml_ng::from_str(
        "endpoint: http://prometheus:9090/api/v1/write\nprotobuf_message: io.prometheus.write.v2.Request\n",
    )
    .expect("parses");
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    assert_eq!(cfg.protobuf_message(), ProtobufMessage::V2);
    assert_eq!(cfg.options().protobuf_message, ProtobufMessage::V2);
    let cfg = PrometheusRemoteWriteConfig::new("http://p/api/v1/write");
    assert_eq!(cfg.protobuf_message(), ProtobufMessage::V1, "1.0 by default");

    let mut bad = PrometheusRemoteWriteConfig::new("http://p/api/v1/write");
    bad.protobuf_message = "v2".into();
    let errs = bad.validate();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "protobuf_message");
    assert!(errs[0].1.contains("prometheus.WriteRequest") && errs[0].1.contains("io.prometheus.write.v2.Request"));
}

fn config(url: &str) -> PrometheusRemoteWriteConfig {
    let mut cfg = PrometheusRemoteWriteConfig::new(url);
    cfg.protobuf_message = "io.prometheus.write.v2.Request".into();
    cfg.sending_queue.num_consumers = 1;
    cfg.target_info.enabled = false;
    cfg
}

fn rejected(registry: &Registry) -> i64 {
    registry
        .value("sightline_exporter_dropped_points_total", &[("exporter", "prw"), ("reason", "rejected_by_backend")])
        .unwrap_or(0)
}

/// The 2.0 headers; a 2xx whose samples-written header is below what was sent counts the
/// difference as `rejected_by_backend`; a full write counts nothing; a 2xx without the
/// written headers (a 1.0-only receiver that decoded the body as an empty 1.0 request) is a
/// permanent failure naming the option.
#[tokio::test]
async fn headers_and_partial_writes() {
    let (url, script) =
        scripted_server::<RequestV2>(vec![Answer::written(204, 5), Answer::written(200, 2), Answer::status(204)]).await;
    let registry = Registry::new();
    let (sender, _) = build_prometheusremotewrite("prw", Signal::Metrics, &config(&url), &registry).expect("build");
    sender.send(&counter_batch(5)).await.expect("full write");
    assert_eq!(rejected(&registry), 0);
    sender.send(&counter_batch(5)).await.expect("a partial write is a 2xx");
    assert_eq!(rejected(&registry), 3, "5 sent, 2 written");
    let e = sender.send(&counter_batch(5)).await.expect_err("no written headers");
    assert!(!e.retryable);
    assert!(e.message.contains("protobuf_message: prometheus.WriteRequest"), "{}", e.message);
    assert_eq!(rejected(&registry), 3, "not counted as a partial write");
    let s = script.lock().expect("lock");
    assert_eq!(s.received.len(), 3);
    let (h, r) = &s.received[0];
    assert_eq!(h["content-type"], "application/x-protobuf;proto=io.prometheus.write.v2.Request");
    assert_eq!(h["content-encoding"], "snappy");
    assert_eq!(h["x-prometheus-remote-write-version"], "2.0.0");
    assert_eq!(resolve(r).len(), 5);
    registry.assert_compliant();
}

/// 415 (a receiver without 2.0): permanent, and the message says what to change.
#[tokio::test]
async fn unsupported_media_type_names_the_option() {
    let (url, script) = scripted_server::<RequestV2>(vec![Answer::status(415)]).await;
    let registry = Registry::new();
    let (sender, _) = build_prometheusremotewrite("prw", Signal::Metrics, &config(&url), &registry).expect("build");
    let e = sender.send(&counter_batch(2)).await.expect_err("415");
    assert!(!e.retryable, "415 is permanent");
    assert!(e.message.contains("does not accept Remote Write 2.0"), "{}", e.message);
    assert!(e.message.contains("protobuf_message: prometheus.WriteRequest"), "{}", e.message);
    assert!(e.message.contains("script says 415"), "the backend's answer: {}", e.message);
    assert_eq!(script.lock().expect("lock").received.len(), 1, "sent once");
}
