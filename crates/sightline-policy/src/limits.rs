//! Attribute limits with the OpenTelemetry SDK specification's semantics (issue 12): past
//! `max_count` attributes the rest of a list are discarded (the first ones kept, the item's
//! `dropped_attributes_count` raised by as many), and string values longer than
//! `max_value_length` characters are truncated (each string of an array too; other types
//! are left alone). They apply to span, span event and link attributes and to log record
//! attributes; resources and metric data points are exempt unless configured, as in the SDK.

use crate::redact::Apply;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

#[derive(Clone, Debug, Default)]
pub struct Limits {
    pub max_count: Option<usize>,
    pub max_value_length: Option<usize>,
    /// Also limit resource attributes.
    pub resources: bool,
    /// Also limit data point attributes.
    pub data_points: bool,
}

/// Attributes over the limits, per resource: discarded past the count, values truncated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Over {
    pub dropped: u64,
    pub truncated: u64,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.max_count.is_none() && self.max_value_length.is_none()
    }

    /// Whether a value off the wire is longer than `max_value_length` (a string, or a string
    /// of an array), as [`truncate`] would find.
    pub(crate) fn over_length(
        &self,
        v: sightline_core::wire::AnyValue<'_>,
    ) -> Result<bool, sightline_core::wire::WireError> {
        use sightline_core::wire::{self, AnyValue};
        let Some(max) = self.max_value_length else { return Ok(false) };
        let long = |s: &str| s.char_indices().nth(max).is_some();
        Ok(match v {
            AnyValue::String(s) => long(s),
            AnyValue::Array(b) => {
                let mut any = false;
                for g in wire::Fields::new(b) {
                    let g = g?;
                    if g.number == 1
                        && let AnyValue::String(s) = AnyValue::parse(wire::expect_len(&g)?)?
                    {
                        any |= long(s);
                    }
                }
                any
            }
            _ => false,
        })
    }

    /// One attribute list: the findings added to `over`; enforced, the list is limited and
    /// the number of attributes discarded returned (for the item's `dropped_attributes_count`).
    fn list(&self, attrs: &mut Vec<KeyValue>, apply: Apply, over: &mut Over) -> u32 {
        let enforce = apply == Apply::Enforce;
        let mut discarded = 0;
        if let Some(max) = self.max_count
            && attrs.len() > max
        {
            discarded = attrs.len() - max;
            over.dropped += discarded as u64;
            if enforce {
                attrs.truncate(max);
            }
        }
        if let Some(max) = self.max_value_length {
            let kept = if enforce { attrs.len() } else { attrs.len().min(self.max_count.unwrap_or(usize::MAX)) };
            for kv in attrs.iter_mut().take(kept) {
                let Some(v) = kv.value.as_mut().and_then(|v| v.value.as_mut()) else { continue };
                if truncate(v, max, enforce) {
                    over.truncated += 1;
                }
            }
        }
        u32::try_from(discarded).unwrap_or(u32::MAX)
    }

    fn resource(&self, r: Option<&mut Resource>, apply: Apply, over: &mut Over) {
        if self.resources
            && let Some(r) = r
        {
            let n = self.list(&mut r.attributes, apply, over);
            if apply == Apply::Enforce {
                r.dropped_attributes_count = r.dropped_attributes_count.saturating_add(n);
            }
        }
    }

    /// Limits one resource's spans (and the resource when configured); whether anything
    /// changed, and what was over the limits.
    pub fn resource_spans(&self, rs: &mut ResourceSpans, a: Apply) -> (bool, Over) {
        let mut over = Over::default();
        self.resource(rs.resource.as_mut(), a, &mut over);
        let enforce = a == Apply::Enforce;
        for span in rs.scope_spans.iter_mut().flat_map(|s| &mut s.spans) {
            let n = self.list(&mut span.attributes, a, &mut over);
            if enforce {
                span.dropped_attributes_count = span.dropped_attributes_count.saturating_add(n);
            }
            for e in &mut span.events {
                let n = self.list(&mut e.attributes, a, &mut over);
                if enforce {
                    e.dropped_attributes_count = e.dropped_attributes_count.saturating_add(n);
                }
            }
            for l in &mut span.links {
                let n = self.list(&mut l.attributes, a, &mut over);
                if enforce {
                    l.dropped_attributes_count = l.dropped_attributes_count.saturating_add(n);
                }
            }
        }
        (enforce && over != Over::default(), over)
    }

    /// [`Limits::resource_spans`] for logs.
    pub fn resource_logs(&self, rl: &mut ResourceLogs, a: Apply) -> (bool, Over) {
        let mut over = Over::default();
        self.resource(rl.resource.as_mut(), a, &mut over);
        for l in rl.scope_logs.iter_mut().flat_map(|s| &mut s.log_records) {
            let n = self.list(&mut l.attributes, a, &mut over);
            if a == Apply::Enforce {
                l.dropped_attributes_count = l.dropped_attributes_count.saturating_add(n);
            }
        }
        (a == Apply::Enforce && over != Over::default(), over)
    }

    /// [`Limits::resource_spans`] for metrics: resources and data points only when configured.
    pub fn resource_metrics(&self, rm: &mut ResourceMetrics, a: Apply) -> (bool, Over) {
        let mut over = Over::default();
        self.resource(rm.resource.as_mut(), a, &mut over);
        if self.data_points {
            for m in rm.scope_metrics.iter_mut().flat_map(|s| &mut s.metrics) {
                // Data points have no dropped-attributes count to raise.
                crate::points::each_attrs(m, &mut |attrs| {
                    self.list(attrs, a, &mut over);
                });
            }
        }
        (a == Apply::Enforce && over != Over::default(), over)
    }
}

/// Truncates a string (or each string of an array) to `max` characters; whether any was
/// longer. Changes nothing unless `enforce`.
fn truncate(v: &mut Value, max: usize, enforce: bool) -> bool {
    let one = |s: &mut String| {
        let Some((cut, _)) = s.char_indices().nth(max) else { return false };
        if enforce {
            s.truncate(cut);
        }
        true
    };
    match v {
        Value::StringValue(s) => one(s),
        Value::ArrayValue(a) => {
            let mut any = false;
            for x in &mut a.values {
                if let Some(Value::StringValue(s)) = &mut x.value {
                    any |= one(s);
                }
            }
            any
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    fn span_request() -> ExportTraceServiceRequest {
        let attrs = vec![
            kv("a", s("héllo wörld")),
            kv("b", Value::IntValue(123456789)),
            kv("c", Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(s("abcdefgh")) }] })),
            kv("d", s("x")),
        ];
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: attrs.clone(), ..Default::default() }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span { attributes: attrs, dropped_attributes_count: 2, ..Default::default() }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn the_sdk_semantics_on_spans_and_resources_exempt() {
        let l = Limits { max_count: Some(3), max_value_length: Some(5), ..Default::default() };
        let mut req = span_request();
        let mut seen = Vec::new();
        assert!(crate::each(
            &mut req.resource_spans,
            |r| r.resource.as_ref(),
            |_| Apply::Enforce,
            |rs, a| l.resource_spans(rs, a),
            |_, o| seen.push(*o)
        ));
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        let got: Vec<(&str, Option<&Value>)> = span
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", Some(&s("héllo"))),
                ("b", Some(&Value::IntValue(123456789))),
                ("c", Some(&Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(s("abcde")) }] }))),
            ],
            "the first 3 kept, strings cut at 5 characters (not bytes), numbers left alone"
        );
        assert_eq!(span.dropped_attributes_count, 3, "2 the SDK dropped + 1 here");
        assert_eq!(seen, [Over { dropped: 1, truncated: 2 }]);
        assert_eq!(req.resource_spans[0].resource.as_ref().expect("resource").attributes.len(), 4, "resources exempt");
    }

    #[test]
    fn observe_counts_the_same_and_changes_nothing() {
        let l = Limits { max_count: Some(3), max_value_length: Some(5), resources: true, ..Default::default() };
        let mut req = span_request();
        let original = req.clone();
        let mut seen = Vec::new();
        assert!(!crate::each(
            &mut req.resource_spans,
            |r| r.resource.as_ref(),
            |_| Apply::Observe,
            |rs, a| l.resource_spans(rs, a),
            |_, o| seen.push(*o)
        ));
        assert_eq!(req, original);
        // The span and, configured here, the resource: each 1 over the count, 2 too long.
        assert_eq!(seen, [Over { dropped: 2, truncated: 4 }]);
    }

    #[test]
    fn log_records() {
        let l = Limits { max_count: Some(1), ..Default::default() };
        let mut req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        attributes: vec![kv("a", s("1")), kv("b", s("2"))],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert!(crate::each(
            &mut req.resource_logs,
            |r| r.resource.as_ref(),
            |_| Apply::Enforce,
            |rl, a| l.resource_logs(rl, a),
            |_, _| {}
        ));
        let r = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!((r.attributes.len(), r.dropped_attributes_count), (1, 1));
    }
}
