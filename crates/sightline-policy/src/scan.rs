//! The policies read off the wire (issue 12: "decode only the subtrees a policy needs"): one
//! pass over a `Resource*` entry's bytes finds what redaction, the attribute limits, the naming
//! rules and the required attributes would find, with the same counts as their decoded walkers
//! ([`crate::redact`], [`crate::limits`], [`crate::naming`]), without building a message.
//! Strings are borrowed from the request and the detectors run on them in place.
//!
//! The caller acts on the answer: a resource whose policies are observed, or enforced with
//! nothing found, needs nothing more (its request goes on with its original bytes); only one
//! that enforcing would change is decoded and rewritten by the walkers. A malformed nested
//! value is an error here, and the caller falls back to the decoding path (which refuses it).

use crate::limits::{Limits, Over};
use crate::naming::{Broken, Naming};
use crate::redact::{Findings, Redactor};
use sightline_core::wire::{self, AnyValue, Fields, WireError};

/// What the enabled policies find in one resource entry.
#[derive(Debug, Default)]
pub struct Seen {
    pub findings: Findings,
    pub over: Over,
    pub broken: Broken,
}

impl Seen {
    /// Whether enforcing would change the entry.
    pub fn changes(&self) -> bool {
        self.findings.total() > 0 || self.over != Over::default() || self.broken != Broken::default()
    }
}

/// The policies to look for; `None` is off.
#[derive(Clone, Copy, Default)]
pub struct Scanner<'a> {
    pub redactor: Option<&'a Redactor>,
    pub limits: Option<&'a Limits>,
    pub naming: Option<&'a Naming>,
}

/// Which list of attributes: the limits and naming rules apply to some levels only.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Resource,
    Scope,
    /// Span, span event, link, log record attributes.
    Item,
    Point,
    Exemplar,
}

/// The encoded `LEN` value of a field.
fn len<'a>(f: &wire::Field<'a>) -> Result<&'a [u8], WireError> {
    wire::expect_len(f)
}

impl Scanner<'_> {
    /// One attribute list: the `KeyValue`s in field `field` of `msg`.
    fn attrs(&self, msg: &[u8], field: u32, level: Level, seen: &mut Seen) -> Result<(), WireError> {
        let limit_here = self.limits.filter(|l| match level {
            Level::Item => true,
            Level::Resource => l.resources,
            Level::Point => l.data_points,
            Level::Scope | Level::Exemplar => false,
        });
        let name_here = self.naming.and_then(|n| n.attribute_key.as_ref()).filter(|_| level != Level::Exemplar);
        let values = self.redactor.is_some() || limit_here.is_some_and(|l| l.max_value_length.is_some());
        if !values && name_here.is_none() && limit_here.is_none() {
            return Ok(());
        }
        let (mut count, kept) = (0usize, limit_here.and_then(|l| l.max_count).unwrap_or(usize::MAX));
        let bad_key = |key: &str, seen: &mut Seen| {
            if let Some(re) = name_here
                && !re.is_match(key)
            {
                seen.broken.keys += 1;
                if seen.broken.first_key.is_none() {
                    seen.broken.first_key = Some(key.to_string());
                }
            }
        };
        if !values {
            // Keys only (naming, counts): the values are not parsed.
            for f in Fields::new(msg) {
                let f = f?;
                if f.number != field {
                    continue;
                }
                count += 1;
                if name_here.is_some() {
                    let mut key = "";
                    for g in Fields::new(len(&f)?) {
                        let g = g?;
                        if g.number == 1 {
                            key = utf8(len(&g)?)?;
                        }
                    }
                    bad_key(key, seen);
                }
            }
        } else {
            for a in wire::attributes(msg, field) {
                let a = a?;
                if let Some(r) = self.redactor {
                    r.scan_entry(a.key, a.value, &mut seen.findings)?;
                }
                bad_key(a.key, seen);
                if let Some(l) = limit_here
                    && count < kept
                    && l.over_length(a.value)?
                {
                    seen.over.truncated += 1;
                }
                count += 1;
            }
        }
        if let Some(max) = limit_here.and_then(|l| l.max_count)
            && count > max
        {
            seen.over.dropped += (count - max) as u64;
        }
        Ok(())
    }

    /// The resource (field 1) and each scope's attributes (field 1 of the scope list entries,
    /// attributes in field 3), calling `items` with each scope's item fields (field 2).
    fn entry(
        &self,
        entry: &[u8],
        mut items: impl FnMut(&[u8], &mut Seen) -> Result<(), WireError>,
    ) -> Result<Seen, WireError> {
        let mut seen = Seen::default();
        if self.redactor.is_none() && self.limits.is_none() && self.naming.is_none() {
            return Ok(seen);
        }
        for f in Fields::new(entry) {
            let f = f?;
            match f.number {
                1 => self.attrs(len(&f)?, 1, Level::Resource, &mut seen)?,
                2 => {
                    for g in Fields::new(len(&f)?) {
                        let g = g?;
                        match g.number {
                            1 => self.attrs(len(&g)?, 3, Level::Scope, &mut seen)?,
                            2 => items(len(&g)?, &mut seen)?,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(seen)
    }

    /// A span or event name: detectors only.
    fn name(&self, f: &wire::Field<'_>, seen: &mut Seen) -> Result<(), WireError> {
        if let Some(r) = self.redactor {
            r.scan_string(utf8(len(f)?)?, &mut seen.findings);
        }
        Ok(())
    }

    /// One `ResourceSpans`.
    pub fn resource_spans(&self, entry: &[u8]) -> Result<Seen, WireError> {
        self.entry(entry, |span, seen| {
            for f in Fields::new(span) {
                let f = f?;
                match f.number {
                    5 => self.name(&f, seen)?,
                    9 => {}
                    11 => {
                        let e = len(&f)?;
                        for g in Fields::new(e) {
                            let g = g?;
                            if g.number == 2 {
                                self.name(&g, seen)?;
                            }
                        }
                        self.attrs(e, 3, Level::Item, seen)?;
                    }
                    13 => self.attrs(len(&f)?, 4, Level::Item, seen)?,
                    _ => {}
                }
            }
            self.attrs(span, 9, Level::Item, seen)
        })
    }

    /// One `ResourceLogs`: bodies (recursively) and attributes.
    pub fn resource_logs(&self, entry: &[u8]) -> Result<Seen, WireError> {
        self.entry(entry, |record, seen| {
            if let Some(r) = self.redactor {
                for f in Fields::new(record) {
                    let f = f?;
                    if f.number == 5 {
                        r.scan_value(AnyValue::parse(len(&f)?)?, &mut seen.findings)?;
                    }
                }
            }
            self.attrs(record, 6, Level::Item, seen)
        })
    }

    /// One `ResourceMetrics`: metric names, data point and exemplar attributes.
    pub fn resource_metrics(&self, entry: &[u8]) -> Result<Seen, WireError> {
        let name_re = self.naming.and_then(|n| n.metric_name.as_ref());
        self.entry(entry, |metric, seen| {
            let mut bad = false;
            if let Some(re) = name_re {
                // An absent name is the empty string, as a decoder reads it.
                let mut name = "";
                for f in Fields::new(metric) {
                    let f = f?;
                    if f.number == 1 {
                        name = utf8(len(&f)?)?;
                    }
                }
                if !re.is_match(name) {
                    bad = true;
                    seen.broken.metrics += 1;
                    if seen.broken.first_metric.is_none() {
                        seen.broken.first_metric = Some(name.to_string());
                    }
                }
            }
            for f in Fields::new(metric) {
                let f = f?;
                // (attributes, exemplars) of the kind's data points.
                let (attrs, exemplars) = match f.number {
                    5 | 7 => (7, 5),
                    9 => (9, 8),
                    10 => (1, 11),
                    11 => (7, 0),
                    _ => continue,
                };
                for g in Fields::new(len(&f)?) {
                    let g = g?;
                    if g.number != 1 {
                        continue;
                    }
                    let point = len(&g)?;
                    seen.broken.points += u64::from(bad);
                    self.attrs(point, attrs, Level::Point, seen)?;
                    for h in Fields::new(point) {
                        let h = h?;
                        if exemplars != 0 && h.number == exemplars {
                            self.attrs(len(&h)?, 7, Level::Exemplar, seen)?;
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

fn utf8(b: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(b).map_err(|_| WireError::new(wire::WireErrorKind::InvalidUtf8))
}

/// Whether an entry's `Resource` lacks `key` (absent, or an empty string), as
/// `required_resource_attributes` checks it; any occurrence with a value counts.
pub fn lacks(resource_attrs: &[(&str, AnyValue<'_>)], key: &str) -> bool {
    !resource_attrs.iter().any(|(k, v)| *k == key && !matches!(v, AnyValue::Empty | AnyValue::String("")))
}

/// The `Resource` attributes of a `Resource*` entry, borrowed.
pub fn resource_attrs(entry: &[u8]) -> Result<Vec<(&str, AnyValue<'_>)>, WireError> {
    let mut out = Vec::new();
    for f in Fields::new(entry) {
        let f = f?;
        if f.number == 1 {
            for a in wire::attributes(len(&f)?, 1) {
                let a = a?;
                out.push((a.key, a.value));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;
    use crate::redact::{Action, Apply};
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue as Any, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Exemplar, Gauge, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
    use prost::Message;
    use regex::Regex;

    const CARD: &str = "4111 1111 1111 1111";

    fn s(v: &str) -> Option<Any> {
        Some(Any { value: Some(V::StringValue(v.into())) })
    }

    fn kv(k: &str, v: Option<Any>) -> KeyValue {
        KeyValue { key: k.into(), value: v, ..Default::default() }
    }

    fn attrs() -> Vec<KeyValue> {
        vec![
            kv("card", s(&format!("card {CARD} ok"))),
            kv("password", s("hunter2")),
            kv("Bad-Key", s("a very long value")),
            kv("mail", s("alice@example.com")),
            kv(
                "tags",
                Some(Any {
                    value: Some(V::ArrayValue(ArrayValue {
                        values: vec![s("AKIAIOSFODNN7EXAMPLE").unwrap_or_default(), s("x").unwrap_or_default()],
                    })),
                }),
            ),
            kv("safe.mail", s("bob@example.com")),
            kv("none", None),
        ]
    }

    fn resource() -> Option<Resource> {
        Some(Resource { attributes: attrs(), ..Default::default() })
    }

    fn scope() -> Option<InstrumentationScope> {
        Some(InstrumentationScope { name: CARD.into(), attributes: attrs(), ..Default::default() })
    }

    fn policies() -> (Redactor, Limits, Naming) {
        let r = Redactor::new(&Kind::ALL, &["(?i)^password$".into()], &["^safe".into()], Action::Mask).expect("valid");
        let l = Limits { max_count: Some(3), max_value_length: Some(8), resources: true, data_points: true };
        let re = Regex::new("^[a-z][a-z.]*$").expect("valid");
        (r, l, Naming { metric_name: Some(re.clone()), attribute_key: Some(re) })
    }

    fn same(wire: Seen, findings: Findings, over: Over, broken: Broken) {
        assert_eq!(wire.findings, findings);
        assert_eq!(wire.over, over);
        assert_eq!(wire.broken, broken);
    }

    #[test]
    fn spans_off_the_wire_count_what_the_decoded_walkers_count() {
        let (r, l, n) = policies();
        let rs = ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![Span {
                    name: format!("charge {CARD}"),
                    attributes: attrs(),
                    events: vec![span::Event {
                        name: "alice@example.com".into(),
                        attributes: attrs(),
                        ..Default::default()
                    }],
                    links: vec![span::Link { attributes: attrs(), ..Default::default() }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let sc = Scanner { redactor: Some(&r), limits: Some(&l), naming: Some(&n) };
        let wire = sc.resource_spans(&rs.encode_to_vec()).expect("reads");
        assert!(wire.findings.total() > 10 && wire.over.dropped > 0 && wire.broken.keys > 0, "{wire:?}");
        let (f, o, b) = (
            r.resource_spans(&mut rs.clone(), Apply::Observe).1,
            l.resource_spans(&mut rs.clone(), Apply::Observe).1,
            n.resource_spans(&mut rs.clone(), Apply::Observe).1,
        );
        same(wire, f, o, b);
    }

    #[test]
    fn logs_with_structured_bodies() {
        let (r, l, n) = policies();
        let body = Any {
            value: Some(V::KvlistValue(KeyValueList {
                values: vec![
                    kv("msg", s(&format!("paid {CARD}"))),
                    kv("secret", s("x")),
                    kv("nested", Some(Any { value: Some(V::KvlistValue(KeyValueList { values: attrs() })) })),
                ],
            })),
        };
        let rl = ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![
                    LogRecord { body: Some(body), attributes: attrs(), ..Default::default() },
                    LogRecord { body: s("alice@example.com"), ..Default::default() },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let sc = Scanner { redactor: Some(&r), limits: Some(&l), naming: Some(&n) };
        let wire = sc.resource_logs(&rl.encode_to_vec()).expect("reads");
        let (f, o, b) = (
            r.resource_logs(&mut rl.clone(), Apply::Observe).1,
            l.resource_logs(&mut rl.clone(), Apply::Observe).1,
            n.resource_logs(&mut rl.clone(), Apply::Observe).1,
        );
        same(wire, f, o, b);
    }

    #[test]
    fn metrics_points_exemplars_and_names() {
        let (r, l, n) = policies();
        let ex = Exemplar { filtered_attributes: attrs(), ..Default::default() };
        let rm = ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![
                    Metric {
                        name: "Logins".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![
                                NumberDataPoint {
                                    attributes: attrs(),
                                    exemplars: vec![ex.clone()],
                                    ..Default::default()
                                };
                                2
                            ],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "latency".into(),
                        data: Some(Data::Histogram(opentelemetry_proto::tonic::metrics::v1::Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes: attrs(),
                                exemplars: vec![ex],
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let sc = Scanner { redactor: Some(&r), limits: Some(&l), naming: Some(&n) };
        let wire = sc.resource_metrics(&rm.encode_to_vec()).expect("reads");
        assert_eq!((wire.broken.metrics, wire.broken.points), (1, 2));
        let (f, o, b) = (
            r.resource_metrics(&mut rm.clone(), Apply::Observe).1,
            l.resource_metrics(&mut rm.clone(), Apply::Observe).1,
            n.resource_metrics(&mut rm.clone(), Apply::Observe).1,
        );
        same(wire, f, o, b);
    }

    #[test]
    fn required_attributes_off_the_wire() {
        let r = Resource {
            attributes: vec![kv("a", s("")), kv("b", s("x")), kv("c", None), kv("c", s("y"))],
            ..Default::default()
        };
        let entry = ResourceSpans { resource: Some(r), ..Default::default() }.encode_to_vec();
        let attrs = resource_attrs(&entry).expect("reads");
        assert!(lacks(&attrs, "a") && !lacks(&attrs, "b") && !lacks(&attrs, "c") && lacks(&attrs, "d"));
    }
}
