//! Naming rules (issue 12): metric names and attribute keys checked against the platform's
//! patterns (RE2 syntax, unanchored unless the pattern anchors itself, as the collector's).
//!
//! Attribute keys are checked on every attribute list: resource, scope, span, span event,
//! link, log record and data point. Enforced, an attribute with a bad key is removed (the
//! item's `dropped_attributes_count` raised where it has one) and a metric with a bad name is
//! removed with its points, which the caller refuses as a partial success.

use crate::redact::Apply;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use regex::Regex;

pub struct Naming {
    pub metric_name: Option<Regex>,
    pub attribute_key: Option<Regex>,
}

/// What one resource broke.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Broken {
    /// Attributes with a key the pattern refuses.
    pub keys: u64,
    /// Metrics with a name the pattern refuses, and their points.
    pub metrics: u64,
    pub points: u64,
    /// The first such metric's name and the first such key (for the refusal's message).
    pub first_metric: Option<String>,
    pub first_key: Option<String>,
}

impl Naming {
    pub fn is_empty(&self) -> bool {
        self.metric_name.is_none() && self.attribute_key.is_none()
    }

    /// One attribute list; the number removed.
    fn list(&self, attrs: &mut Vec<KeyValue>, apply: Apply, b: &mut Broken) -> u32 {
        let Some(re) = &self.attribute_key else { return 0 };
        let before = attrs.len();
        attrs.retain(|kv| {
            if re.is_match(&kv.key) {
                return true;
            }
            b.keys += 1;
            if b.first_key.is_none() {
                b.first_key = Some(kv.key.clone());
            }
            apply == Apply::Observe
        });
        u32::try_from(before - attrs.len()).unwrap_or(u32::MAX)
    }

    fn shared(&self, r: Option<&mut Resource>, s: Option<&mut InstrumentationScope>, apply: Apply, b: &mut Broken) {
        if let Some(r) = r {
            let n = self.list(&mut r.attributes, apply, b);
            r.dropped_attributes_count = r.dropped_attributes_count.saturating_add(n);
        }
        if let Some(s) = s {
            let n = self.list(&mut s.attributes, apply, b);
            s.dropped_attributes_count = s.dropped_attributes_count.saturating_add(n);
        }
    }

    pub fn resource_spans(&self, rs: &mut ResourceSpans, apply: Apply) -> (bool, Broken) {
        let mut b = Broken::default();
        if self.attribute_key.is_some() {
            self.shared(rs.resource.as_mut(), None, apply, &mut b);
            for ss in &mut rs.scope_spans {
                self.shared(None, ss.scope.as_mut(), apply, &mut b);
                for span in &mut ss.spans {
                    let n = self.list(&mut span.attributes, apply, &mut b);
                    span.dropped_attributes_count = span.dropped_attributes_count.saturating_add(n);
                    for e in &mut span.events {
                        let n = self.list(&mut e.attributes, apply, &mut b);
                        e.dropped_attributes_count = e.dropped_attributes_count.saturating_add(n);
                    }
                    for l in &mut span.links {
                        let n = self.list(&mut l.attributes, apply, &mut b);
                        l.dropped_attributes_count = l.dropped_attributes_count.saturating_add(n);
                    }
                }
            }
        }
        (apply == Apply::Enforce && b != Broken::default(), b)
    }

    pub fn resource_logs(&self, rl: &mut ResourceLogs, apply: Apply) -> (bool, Broken) {
        let mut b = Broken::default();
        if self.attribute_key.is_some() {
            self.shared(rl.resource.as_mut(), None, apply, &mut b);
            for sl in &mut rl.scope_logs {
                self.shared(None, sl.scope.as_mut(), apply, &mut b);
                for l in &mut sl.log_records {
                    let n = self.list(&mut l.attributes, apply, &mut b);
                    l.dropped_attributes_count = l.dropped_attributes_count.saturating_add(n);
                }
            }
        }
        (apply == Apply::Enforce && b != Broken::default(), b)
    }

    /// Metrics: bad names first (the metric and its points go), then the keys of the rest.
    pub fn resource_metrics(&self, rm: &mut ResourceMetrics, apply: Apply) -> (bool, Broken) {
        let mut b = Broken::default();
        self.shared(rm.resource.as_mut(), None, apply, &mut b);
        for sm in &mut rm.scope_metrics {
            self.shared(None, sm.scope.as_mut(), apply, &mut b);
            sm.metrics.retain_mut(|m| {
                if let Some(re) = &self.metric_name
                    && !re.is_match(&m.name)
                {
                    b.metrics += 1;
                    b.points += crate::points::count(m);
                    if b.first_metric.is_none() {
                        b.first_metric = Some(m.name.clone());
                    }
                    if apply == Apply::Enforce {
                        return false;
                    }
                }
                if self.attribute_key.is_some() {
                    // Data points have no dropped-attributes count to raise.
                    crate::points::each_attrs(m, &mut |attrs| {
                        self.list(attrs, apply, &mut b);
                    });
                }
                true
            });
        }
        if apply == Apply::Enforce {
            rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
        }
        (apply == Apply::Enforce && b != Broken::default(), b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, NumberDataPoint, ScopeMetrics, metric::Data};

    fn kv(k: &str) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(Value::IntValue(1)) }), ..Default::default() }
    }

    fn metrics() -> ResourceMetrics {
        let gauge = |name: &str, keys: &[&str]| Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![
                    NumberDataPoint { attributes: keys.iter().map(|k| kv(k)).collect(), ..Default::default() },
                    NumberDataPoint::default(),
                ],
            })),
            ..Default::default()
        };
        ResourceMetrics {
            resource: Some(Resource { attributes: vec![kv("service.name"), kv("Bad-Key")], ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    gauge("http.server.duration", &["http.route", "HTTP_Method"]),
                    gauge("HTTPRequests", &[]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn naming() -> Naming {
        Naming {
            metric_name: Some(Regex::new(r"^[a-z][a-z0-9_.]*$").expect("valid")),
            attribute_key: Some(Regex::new(r"^[a-z][a-z0-9_.]*$").expect("valid")),
        }
    }

    #[test]
    fn observe_counts_and_changes_nothing() {
        let mut rm = metrics();
        let (changed, b) = naming().resource_metrics(&mut rm, Apply::Observe);
        assert!(!changed);
        assert_eq!(rm, metrics());
        assert_eq!((b.keys, b.metrics, b.points), (2, 1, 2));
        assert_eq!(b.first_metric.as_deref(), Some("HTTPRequests"));
        assert_eq!(b.first_key.as_deref(), Some("Bad-Key"));
    }

    #[test]
    fn enforce_removes_bad_keys_and_metrics() {
        let mut rm = metrics();
        let (changed, b) = naming().resource_metrics(&mut rm, Apply::Enforce);
        assert!(changed);
        assert_eq!((b.keys, b.metrics, b.points), (2, 1, 2));
        let res = rm.resource.as_ref().expect("resource");
        assert_eq!(res.attributes, vec![kv("service.name")]);
        assert_eq!(res.dropped_attributes_count, 1);
        let names: Vec<&str> = rm.scope_metrics[0].metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["http.server.duration"]);
        let Some(Data::Gauge(g)) = &rm.scope_metrics[0].metrics[0].data else { panic!("a gauge") };
        assert_eq!(g.data_points[0].attributes, vec![kv("http.route")]);
    }

    #[test]
    fn only_metric_names_when_no_key_pattern() {
        let n = Naming { metric_name: Some(Regex::new("^[a-z]").expect("valid")), attribute_key: None };
        let mut rm = metrics();
        let (_, b) = n.resource_metrics(&mut rm, Apply::Enforce);
        assert_eq!((b.keys, b.metrics), (0, 1));
        assert_eq!(rm.resource.as_ref().map(|r| r.attributes.len()), Some(2));
    }
}
