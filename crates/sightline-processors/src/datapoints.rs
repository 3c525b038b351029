//! `metrics_datapoint_attributes`: copies a resource attribute (the owning team) onto every
//! metric data point, for OTLP metric backends that do not promote resource attributes to
//! series labels (Mimir's OTLP endpoint by default, most Prometheus-style stores).
//!
//! The request is rewritten on the wire like the resource rewrite: each level that contains a
//! data point is re-encoded with its new length, everything else is copied as bytes. One
//! scratch buffer per nesting level is reused for the whole request, so the cost is a handful
//! of allocations per request, not per point.

use sightline_core::wire::{Fields, Value, WireError, expect_len, put_len_field};

/// `ResourceMetrics.resource`, `Resource.attributes`, `ResourceMetrics.scope_metrics`,
/// `ScopeMetrics.metrics`.
const RESOURCE: u32 = 1;
const ATTRIBUTES: u32 = 1;
const SCOPE_METRICS: u32 = 2;
const METRICS: u32 = 2;
/// `Gauge.data_points`, `Sum.data_points`, ... are all field 1.
const DATA_POINTS: u32 = 1;

/// The attributes field of the data points held by a `Metric` data field, or `None` for a
/// field that holds no data points (name, description, unit, metadata).
fn point_attributes_field(metric_field: u32) -> Option<u32> {
    match metric_field {
        5 | 7 => Some(7), // gauge, sum: NumberDataPoint.attributes
        9 => Some(9),     // histogram: HistogramDataPoint.attributes
        10 => Some(1),    // exponential_histogram: ExponentialHistogramDataPoint.attributes
        11 => Some(7),    // summary: SummaryDataPoint.attributes
        _ => None,
    }
}

/// Reusable buffers, one per nesting level below the resource.
#[derive(Default)]
pub struct Scratch {
    resource_x: Vec<u8>,
    scope_x: Vec<u8>,
    metric: Vec<u8>,
    data: Vec<u8>,
    point: Vec<u8>,
}

/// Writes `buf` (a validated `ExportMetricsServiceRequest`) to `out` with the resource
/// attribute `key` of each `ResourceMetrics` added to every data point of that resource. A
/// data point attribute with the same key is replaced (a client cannot forge it on the point
/// either). Resources without the attribute are copied unchanged. Returns the number of data
/// points written to.
pub fn copy_resource_attribute_to_points(
    buf: &[u8],
    key: &str,
    out: &mut Vec<u8>,
    s: &mut Scratch,
) -> Result<u64, WireError> {
    out.reserve(buf.len() + buf.len() / 4);
    let mut points = 0;
    for f in Fields::new(buf) {
        let f = f?;
        let (RESOURCE, Value::Len(rx)) = (f.number, f.value) else {
            out.extend_from_slice(f.raw);
            continue;
        };
        let Some(kv) = resource_attribute(rx, key)? else {
            out.extend_from_slice(f.raw);
            continue;
        };
        let mut rbuf = std::mem::take(&mut s.resource_x);
        rbuf.clear();
        for g in Fields::new(rx) {
            let g = g?;
            if g.number != SCOPE_METRICS {
                rbuf.extend_from_slice(g.raw);
                continue;
            }
            let sx = expect_len(&g)?;
            let mut sbuf = std::mem::take(&mut s.scope_x);
            sbuf.clear();
            for h in Fields::new(sx) {
                let h = h?;
                if h.number != METRICS {
                    sbuf.extend_from_slice(h.raw);
                    continue;
                }
                points += rewrite_metric(expect_len(&h)?, key, kv, s)?;
                put_len_field(&mut sbuf, METRICS, &s.metric);
            }
            put_len_field(&mut rbuf, SCOPE_METRICS, &sbuf);
            s.scope_x = sbuf;
        }
        put_len_field(out, RESOURCE, &rbuf);
        s.resource_x = rbuf;
    }
    Ok(points)
}

/// The encoded `KeyValue` of the resource attribute `key`, if the resource has one (the last
/// one wins, as in a protobuf map merge).
fn resource_attribute<'a>(rx: &'a [u8], key: &str) -> Result<Option<&'a [u8]>, WireError> {
    let mut found = None;
    for g in Fields::new(rx) {
        let g = g?;
        if g.number != RESOURCE {
            continue;
        }
        for a in Fields::new(expect_len(&g)?) {
            let a = a?;
            if a.number == ATTRIBUTES {
                let kv = expect_len(&a)?;
                if key_of(kv)? == key.as_bytes() {
                    found = Some(kv);
                }
            }
        }
    }
    Ok(found)
}

fn key_of(kv: &[u8]) -> Result<&[u8], WireError> {
    for f in Fields::new(kv) {
        let f = f?;
        if f.number == 1 {
            return expect_len(&f);
        }
    }
    Ok(&[])
}

/// Re-encodes one `Metric` into `s.metric`.
fn rewrite_metric(metric: &[u8], key: &str, kv: &[u8], s: &mut Scratch) -> Result<u64, WireError> {
    let mut points = 0;
    s.metric.clear();
    for f in Fields::new(metric) {
        let f = f?;
        let (Some(attr_field), Value::Len(data)) = (point_attributes_field(f.number), f.value) else {
            s.metric.extend_from_slice(f.raw);
            continue;
        };
        s.data.clear();
        for g in Fields::new(data) {
            let g = g?;
            if g.number != DATA_POINTS {
                s.data.extend_from_slice(g.raw);
                continue;
            }
            s.point.clear();
            for h in Fields::new(expect_len(&g)?) {
                let h = h?;
                // A point attribute that is not a well-formed `KeyValue` is not ours to judge
                // (the receiver's validation does not read point attributes): copied as is.
                if h.number == attr_field
                    && let Value::Len(kv) = h.value
                    && key_of(kv).is_ok_and(|k| k == key.as_bytes())
                {
                    continue;
                }
                s.point.extend_from_slice(h.raw);
            }
            put_len_field(&mut s.point, attr_field, kv);
            put_len_field(&mut s.data, DATA_POINTS, &s.point);
            points += 1;
        }
        put_len_field(&mut s.metric, f.number, &s.data);
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
        NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    fn metric(name: &str, data: metric::Data) -> Metric {
        Metric { name: name.into(), unit: "1".into(), data: Some(data), ..Default::default() }
    }

    fn request(resource_attrs: Vec<KeyValue>) -> ExportMetricsServiceRequest {
        let point =
            NumberDataPoint { attributes: vec![kv("route", "/a"), kv("owner.team", "forged")], ..Default::default() };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource { attributes: resource_attrs, ..Default::default() }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        metric("g", metric::Data::Gauge(Gauge { data_points: vec![point.clone(), point.clone()] })),
                        metric(
                            "s",
                            metric::Data::Sum(Sum {
                                data_points: vec![point],
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            }),
                        ),
                        metric(
                            "h",
                            metric::Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint {
                                    count: 3,
                                    bucket_counts: vec![1, 2],
                                    explicit_bounds: vec![1.0],
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                            }),
                        ),
                        metric(
                            "e",
                            metric::Data::ExponentialHistogram(ExponentialHistogram {
                                data_points: vec![ExponentialHistogramDataPoint { count: 1, ..Default::default() }],
                                aggregation_temporality: 2,
                            }),
                        ),
                        metric(
                            "q",
                            metric::Data::Summary(Summary {
                                data_points: vec![SummaryDataPoint { count: 4, ..Default::default() }],
                            }),
                        ),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn team_of(attrs: &[KeyValue]) -> Vec<String> {
        attrs
            .iter()
            .filter(|a| a.key == "owner.team")
            .map(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn every_kind_of_point_gets_the_team_once() {
        let req = request(vec![kv("service.name", "checkout"), kv("owner.team", "payments")]);
        let buf = req.encode_to_vec();
        let mut out = Vec::new();
        let n = copy_resource_attribute_to_points(&buf, "owner.team", &mut out, &mut Scratch::default()).unwrap();
        assert_eq!(n, 6);
        let got = ExportMetricsServiceRequest::decode(&out[..]).unwrap();
        let mut want = req.clone();
        let metrics = &mut want.resource_metrics[0].scope_metrics[0].metrics;
        for m in metrics.iter_mut() {
            match m.data.as_mut().unwrap() {
                metric::Data::Gauge(g) => g.data_points.iter_mut().for_each(|p| {
                    p.attributes.retain(|a| a.key != "owner.team");
                    p.attributes.push(kv("owner.team", "payments"));
                }),
                metric::Data::Sum(g) => g.data_points.iter_mut().for_each(|p| {
                    p.attributes.retain(|a| a.key != "owner.team");
                    p.attributes.push(kv("owner.team", "payments"));
                }),
                metric::Data::Histogram(g) => {
                    g.data_points.iter_mut().for_each(|p| p.attributes.push(kv("owner.team", "payments")))
                }
                metric::Data::ExponentialHistogram(g) => {
                    g.data_points.iter_mut().for_each(|p| p.attributes.push(kv("owner.team", "payments")))
                }
                metric::Data::Summary(g) => {
                    g.data_points.iter_mut().for_each(|p| p.attributes.push(kv("owner.team", "payments")))
                }
            }
        }
        assert_eq!(got, want);
        let g = match got.resource_metrics[0].scope_metrics[0].metrics[0].data.as_ref().unwrap() {
            metric::Data::Gauge(g) => g.clone(),
            _ => unreachable!(),
        };
        assert_eq!(team_of(&g.data_points[0].attributes), vec!["payments".to_string()]);
    }

    #[test]
    fn a_resource_without_the_attribute_is_copied_unchanged() {
        let req = request(vec![kv("service.name", "checkout")]);
        let buf = req.encode_to_vec();
        let mut out = Vec::new();
        let n = copy_resource_attribute_to_points(&buf, "owner.team", &mut out, &mut Scratch::default()).unwrap();
        assert_eq!(n, 0);
        assert_eq!(out, buf);
    }

    #[test]
    fn a_malformed_point_attribute_is_copied_not_an_error() {
        // Fuzzing regression (fuzz target `ownership_rewrite`, data point mode): a point
        // attribute whose `KeyValue` is truncated inside made the whole request fail, although
        // the receiver's validation (which does not read point attributes) had accepted it.
        let team = kv("owner.team", "payments").encode_to_vec();
        let mut point = NumberDataPoint { time_unix_nano: 7, ..Default::default() }.encode_to_vec();
        put_len_field(&mut point, 7, &[0x0a, 0x05, b'a']); // key says 5 bytes, holds 1
        let mut gauge = Vec::new();
        put_len_field(&mut gauge, DATA_POINTS, &point);
        let mut metric = Vec::new();
        put_len_field(&mut metric, 5, &gauge);
        let mut scope = Vec::new();
        put_len_field(&mut scope, METRICS, &metric);
        let mut resource = Vec::new();
        put_len_field(&mut resource, ATTRIBUTES, &team);
        let mut rm = Vec::new();
        put_len_field(&mut rm, RESOURCE, &resource);
        put_len_field(&mut rm, SCOPE_METRICS, &scope);
        let mut req = Vec::new();
        put_len_field(&mut req, 1, &rm);

        let mut out = Vec::new();
        let n =
            copy_resource_attribute_to_points(&req, "owner.team", &mut out, &mut Scratch::default()).expect("copied");
        assert_eq!(n, 1);
        let mut expected_point = point.clone();
        put_len_field(&mut expected_point, 7, &team);
        assert!(out.windows(expected_point.len()).any(|w| w == expected_point), "malformed bytes kept, team appended");
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let buf = request(vec![kv("owner.team", "payments")]).encode_to_vec();
        for cut in 1..buf.len() {
            let mut out = Vec::new();
            let _ = copy_resource_attribute_to_points(&buf[..cut], "owner.team", &mut out, &mut Scratch::default());
        }
    }
}
