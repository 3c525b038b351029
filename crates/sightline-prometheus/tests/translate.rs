//! Translation and encoding, checked by decoding the exporter's hand-encoded `WriteRequest`s
//! with prost-derived structs.

mod common;

use common::*;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Metric, Summary, SummaryDataPoint,
    exponential_histogram_data_point::Buckets, metric, summary_data_point::ValueAtQuantile,
};
use prost::Message;
use sightline_prometheus::translate::STALE_NAN;
use sightline_prometheus::{DropReason, Options, Translator};

/// Translates requests and returns the decoded requests per shard.
fn run(opts: Options, reqs: &[Vec<u8>], shards: usize, max: usize) -> (Vec<Vec<WriteRequest>>, Translator) {
    let mut t = Translator::new(opts);
    for r in reqs {
        t.add_request(r).expect("valid request");
    }
    let mut out: Vec<Vec<WriteRequest>> = vec![Vec::new(); shards];
    t.encode(shards, max, |s, b| out[s].push(WriteRequest::decode(b).expect("decodes")));
    (out, t)
}

fn all_series(reqs: &[Vec<u8>], opts: Options) -> Vec<TimeSeries> {
    let (out, _) = run(opts, reqs, 1, 100_000);
    out.into_iter().flatten().flat_map(|w| w.timeseries).collect()
}

fn find<'a>(series: &'a [TimeSeries], name: &str, extra: Option<(&str, &str)>) -> &'a TimeSeries {
    series
        .iter()
        .find(|s| s.name() == name && extra.is_none_or(|(k, v)| s.label(k) == Some(v)))
        .unwrap_or_else(|| panic!("no series {name} {extra:?} in {series:#?}"))
}

fn drops(t: &Translator, r: DropReason) -> u64 {
    t.drops()[DropReason::ALL.iter().position(|x| *x == r).expect("reason")]
}

/// The main scenario: a counter, a gauge and a histogram from an owned service.
#[test]
fn counter_gauge_histogram_with_ownership() {
    let req = request(
        checkout(),
        "shop.meter",
        vec![
            sum(
                "http.requests",
                "{request}",
                true,
                AggregationTemporality::Cumulative,
                vec![number(vec![kv("http.route", "/pay"), kv_int("code", 200)], T0, 42.0)],
            ),
            gauge("queue.depth", "1", vec![number(vec![], T0, 7.0)]),
            histogram("http.duration", "ms", vec![10.0, 100.0], vec![1, 2, 3], 1234.5, T0),
        ],
    );
    let series = all_series(&[req], Options::default());
    for s in &series {
        let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "labels sorted by name");
    }
    let c = find(&series, "http_requests_total", None);
    assert_eq!(c.samples, vec![Sample { value: 42.0, timestamp: (T0 / 1_000_000) as i64 }]);
    assert_eq!(c.label("job"), Some("shop/checkout"));
    assert_eq!(c.label("instance"), Some("pod-1"));
    assert_eq!(c.label("owner_team"), Some("payments"));
    assert_eq!(c.label("owner_source"), Some("service"));
    assert_eq!(c.label("owner_contact"), None, "only the promoted keys are labels");
    assert_eq!(c.label("http_route"), Some("/pay"));
    assert_eq!(c.label("code"), Some("200"));
    assert_eq!(c.label("otel_scope_name"), Some("shop.meter"));
    assert_eq!(c.label("otel_scope_version"), Some("1.2"));
    assert_eq!(c.label("host_name"), None);

    let g = find(&series, "queue_depth_ratio", None);
    assert_eq!(g.samples[0].value, 7.0);

    let b = |le: &str| find(&series, "http_duration_milliseconds_bucket", Some(("le", le))).samples[0].value;
    assert_eq!((b("10"), b("100"), b("+Inf")), (1.0, 3.0, 6.0), "cumulative buckets");
    assert_eq!(find(&series, "http_duration_milliseconds_sum", None).samples[0].value, 1234.5);
    assert_eq!(find(&series, "http_duration_milliseconds_count", None).samples[0].value, 6.0);
    assert_eq!(find(&series, "http_duration_milliseconds_count", None).label("owner_team"), Some("payments"));

    let ti = find(&series, "target_info", None);
    assert_eq!(ti.samples[0].value, 1.0);
    assert_eq!(ti.label("job"), Some("shop/checkout"));
    assert_eq!(ti.label("host_name"), Some("node-7"));
    assert_eq!(ti.label("owner_contact"), Some("#payments"));
    assert_eq!(ti.label("service_name"), None);
    assert_eq!(ti.label("otel_scope_name"), None);
}

/// A data point cannot forge its owner: promoted resource attributes win over point
/// attributes; point attributes whose sanitized names collide are joined with `;`.
#[test]
fn precedence_and_collisions() {
    let req = request(
        checkout(),
        "s",
        vec![gauge(
            "g",
            "",
            vec![number(vec![kv("owner.team", "forged"), kv("a.b", "1"), kv("a_b", "2"), kv("job", "x")], T0, 1.0)],
        )],
    );
    let series = all_series(&[req], Options::default());
    let g = find(&series, "g", None);
    assert_eq!(g.label("owner_team"), Some("payments"));
    assert_eq!(g.label("a_b"), Some("1;2"));
    assert_eq!(g.label("job"), Some("shop/checkout"));
}

#[test]
fn delta_and_exponential_histograms_are_dropped_and_counted() {
    let exp = Metric {
        name: "latency".into(),
        unit: "s".into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                time_unix_nano: T0,
                count: 6,
                sum: Some(10.0),
                scale: 1,
                zero_count: 1,
                positive: Some(Buckets { offset: -1, bucket_counts: vec![2, 0, 3] }),
                negative: None,
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    let req = request(
        checkout(),
        "s",
        vec![
            sum("d", "", true, AggregationTemporality::Delta, vec![number(vec![], T0, 1.0), number(vec![], T0, 2.0)]),
            exp.clone(),
        ],
    );
    let (out, t) = run(Options::default(), std::slice::from_ref(&req), 1, 1000);
    assert_eq!(drops(&t, DropReason::DeltaTemporality), 2);
    assert_eq!(drops(&t, DropReason::NativeHistogramsDisabled), 1);
    let series: Vec<TimeSeries> = out.into_iter().flatten().flat_map(|w| w.timeseries).collect();
    assert!(series.iter().all(|s| s.name() == "target_info"), "{series:#?}");

    // With native histograms: one histogram, OTLP bucket i is Prometheus bucket i+1.
    let opts = Options { send_native_histograms: true, ..Options::default() };
    let series = all_series(&[req], opts);
    let h = &find(&series, "latency_seconds", None).histograms[0];
    assert_eq!((h.count_int, h.sum, h.schema, h.zero_count_int), (6, 10.0, 1, 1));
    assert_eq!(h.positive_spans, vec![BucketSpan { offset: 0, length: 3 }]);
    assert_eq!(h.positive_deltas, vec![2, -2, 3]);
    assert_eq!(h.timestamp, (T0 / 1_000_000) as i64);
}

/// Scales above 8 are merged down to schema 8.
#[test]
fn exponential_histogram_downscale() {
    let exp = Metric {
        name: "x".into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                time_unix_nano: T0,
                count: 10,
                scale: 9,
                positive: Some(Buckets { offset: 3, bucket_counts: vec![1, 2, 3, 4] }),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    let opts = Options { send_native_histograms: true, ..Options::default() };
    let series = all_series(&[request(checkout(), "s", vec![exp])], opts);
    let h = &find(&series, "x", None).histograms[0];
    assert_eq!(h.schema, 8);
    // indices 3,4,5,6 -> 1,2,2,3 at scale 8: counts [1, 5, 4] from index 1, Prometheus offset 2.
    assert_eq!(h.positive_spans, vec![BucketSpan { offset: 2, length: 3 }]);
    assert_eq!(h.positive_deltas, vec![1, 4, -1]);
}

#[test]
fn summaries_and_staleness() {
    let s = Metric {
        name: "rpc.latency".into(),
        unit: "s".into(),
        data: Some(metric::Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                time_unix_nano: T0,
                count: 3,
                sum: 1.5,
                quantile_values: vec![
                    ValueAtQuantile { quantile: 0.5, value: 0.4 },
                    ValueAtQuantile { quantile: 0.99, value: 0.9 },
                ],
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let mut stale = number(vec![], T0, 5.0);
    stale.flags = 1;
    let req = request(checkout(), "s", vec![s, gauge("temp", "Cel", vec![stale])]);
    let series = all_series(&[req], Options::default());
    assert_eq!(find(&series, "rpc_latency_seconds", Some(("quantile", "0.99"))).samples[0].value, 0.9);
    assert_eq!(find(&series, "rpc_latency_seconds", Some(("quantile", "0.5"))).samples[0].value, 0.4);
    assert_eq!(find(&series, "rpc_latency_seconds_sum", None).samples[0].value, 1.5);
    assert_eq!(find(&series, "rpc_latency_seconds_count", None).samples[0].value, 3.0);
    assert_eq!(find(&series, "temp_celsius", None).samples[0].value.to_bits(), STALE_NAN);
}

#[test]
fn resource_to_telemetry_and_options() {
    let req = request(
        checkout(),
        "",
        vec![sum("c", "By", true, AggregationTemporality::Cumulative, vec![number(vec![], T0, 1.0)])],
    );
    let opts = Options {
        resource_to_telemetry: true,
        target_info: false,
        namespace: "acme".into(),
        external_labels: vec![("cluster".into(), "eu-1".into()), ("host_name".into(), "ignored".into())],
        ..Options::default()
    };
    let series = all_series(std::slice::from_ref(&req), opts);
    assert_eq!(series.len(), 1, "no target_info: {series:#?}");
    let c = &series[0];
    assert_eq!(c.name(), "acme_c_bytes_total");
    assert_eq!(c.label("host_name"), Some("node-7"), "attributes beat external labels");
    assert_eq!(c.label("cluster"), Some("eu-1"));
    assert_eq!(c.label("owner_contact"), Some("#payments"));
    assert_eq!(c.label("otel_scope_name"), None, "empty scope name: no label");
    let opts = Options { add_metric_suffixes: false, ..Options::default() };
    assert!(all_series(&[req], opts).iter().any(|s| s.name() == "c"));
}

/// Sharding keeps each series on one shard, and `max_samples` splits a series across
/// consecutive requests of that shard in order.
#[test]
fn sharding_and_splitting_keep_series_order() {
    let mut reqs = Vec::new();
    for k in 0..5u64 {
        let points = (0..40).map(|i| number(vec![kv_int("i", i)], T0 + k * 1_000_000_000, (k * 100 + i as u64) as f64));
        reqs.push(request(
            checkout(),
            "s",
            vec![sum("c", "", true, AggregationTemporality::Cumulative, points.collect())],
        ));
    }
    let (out, t) = run(Options { target_info: false, ..Options::default() }, &reqs, 4, 7);
    assert_eq!(t.series_count(), 40);
    let mut seen = std::collections::HashMap::<String, (usize, Vec<i64>)>::new();
    let mut total = 0;
    for (shard, reqs) in out.iter().enumerate() {
        assert!(reqs.len() > 1, "shard {shard} split into several requests");
        for w in reqs {
            let n: usize = w.timeseries.iter().map(|s| s.samples.len()).sum();
            assert!(n <= 7);
            total += n;
            for s in &w.timeseries {
                let key = s.label("i").expect("i").to_string();
                let e = seen.entry(key).or_insert((shard, Vec::new()));
                assert_eq!(e.0, shard, "a series stays on one shard");
                e.1.extend(s.samples.iter().map(|x| x.timestamp));
            }
        }
    }
    assert_eq!(total, 200);
    for (_, (_, ts)) in seen {
        assert_eq!(ts.len(), 5);
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "in order: {ts:?}");
    }
}

/// Garbage never panics.
#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let mut t = Translator::new(Options::default());
    for bad in [&[0x0a, 0x05, 0x01][..], &[0xff; 12][..], &[0x0a, 0x02, 0x12, 0x09][..]] {
        let _ = t.add_request(bad);
    }
    let good = request(checkout(), "s", vec![gauge("g", "", vec![number(vec![], T0, 1.0)])]);
    // Truncate a valid request at every length.
    for n in 0..good.len() {
        let _ = t.add_request(&good[..n]);
    }
    t.encode(2, 10, |_, b| {
        WriteRequest::decode(b).expect("still valid output");
    });
}

/// A sample not newer than the series' previous one in the batch would make Prometheus refuse
/// the whole request: it is dropped and counted instead.
#[test]
fn out_of_order_samples_in_a_batch_are_dropped() {
    let at = |t: u64, v: f64| request(checkout(), "s", vec![gauge("g", "", vec![number(vec![], t, v)])]);
    let reqs = [at(T0 + 2_000_000_000, 2.0), at(T0, 1.0), at(T0 + 3_000_000_000, 3.0)];
    let (out, t) = run(Options::default(), &reqs, 1, 1000);
    assert_eq!(drops(&t, DropReason::OutOfOrder), 1);
    let series: Vec<TimeSeries> = out.into_iter().flatten().flat_map(|w| w.timeseries).collect();
    let values: Vec<f64> = find(&series, "g", None).samples.iter().map(|s| s.value).collect();
    assert_eq!(values, [2.0, 3.0]);
    assert_eq!(find(&series, "target_info", None).samples.len(), 2, "one per newer resource time");
}

/// Histograms with different bounds in one batch, and the same bounds again: every bucket
/// series has the `le` of its own point's bound (the formatted bounds are reused only while
/// they are the same).
#[test]
fn bucket_bounds_change_between_histograms() {
    let req = request(
        checkout(),
        "shop.meter",
        vec![
            histogram("a.duration", "s", vec![0.5, 1.0], vec![1, 1, 1], 2.0, T0),
            histogram("b.duration", "s", vec![0.25, 2.5, 10.0], vec![1, 2, 3, 4], 9.0, T0),
            histogram("c.duration", "s", vec![0.25, 2.5, 10.0], vec![4, 3, 2, 1], 9.0, T0),
            histogram("d.duration", "s", vec![0.5, 1.0], vec![2, 0, 0], 1.0, T0),
        ],
    );
    let series = all_series(&[req], Options::default());
    let les = |name: &str| {
        let mut v: Vec<(String, f64)> = series
            .iter()
            .filter(|s| s.name() == name)
            .map(|s| (s.label("le").unwrap_or("").to_string(), s.samples[0].value))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let p = |v: &[(&str, f64)]| v.iter().map(|(l, x)| (l.to_string(), *x)).collect::<Vec<_>>();
    assert_eq!(les("a_duration_seconds_bucket"), p(&[("+Inf", 3.0), ("0.5", 1.0), ("1", 2.0)]));
    assert_eq!(les("b_duration_seconds_bucket"), p(&[("+Inf", 10.0), ("0.25", 1.0), ("10", 6.0), ("2.5", 3.0)]));
    assert_eq!(les("c_duration_seconds_bucket"), p(&[("+Inf", 10.0), ("0.25", 4.0), ("10", 9.0), ("2.5", 7.0)]));
    assert_eq!(les("d_duration_seconds_bucket"), p(&[("+Inf", 2.0), ("0.5", 2.0), ("1", 2.0)]));
    // Every bucket series has the other labels too, around `le`, in name order.
    for s in series.iter().filter(|s| s.name().ends_with("_bucket")) {
        let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "__name__",
                "instance",
                "job",
                "le",
                "otel_scope_name",
                "otel_scope_version",
                "owner_source",
                "owner_team"
            ]
        );
        assert_eq!((s.label("job"), s.label("owner_team")), (Some("shop/checkout"), Some("payments")));
    }
}
