//! Redaction of every string an OTLP request carries (issue 12): resource, scope, span, span
//! event and link attributes, span names (detectors only), log bodies (strings, and maps and
//! lists recursively) and log attributes, data point and exemplar attributes of every metric
//! kind.
//!
//! Rules: `allowed_keys` are never touched; a `blocked_keys` match makes the whole value
//! sensitive; otherwise each detector's matches in a string value are. The action: `mask`
//! replaces the sensitive characters with `*` (only the matched part of a value), `hash`
//! replaces them with the hex HMAC-SHA256 of the text under the configured key, `drop` removes
//! the attribute (or map entry, list element or body) that holds them (a span name, which
//! cannot be dropped, is masked). In observe mode nothing changes and the findings are counted
//! all the same. Findings are counts per rule: they never hold the sensitive value.

use crate::detect::{self, Detectors, Kind, Match};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use regex::RegexSet;
use sightline_core::wire;

/// What redaction does to a sensitive value.
#[derive(Clone)]
pub enum Action {
    Mask,
    /// Keyed SHA-256 (HMAC) of the sensitive text, hex.
    Hash(ring::hmac::Key),
    Drop,
}

/// A rule that found something: a detector, or a blocked key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    Detector(Kind),
    BlockedKey,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Detector(k) => k.name(),
            Rule::BlockedKey => "blocked_key",
        }
    }

    fn index(self) -> usize {
        match self {
            Rule::Detector(k) => Kind::ALL.iter().position(|x| *x == k).unwrap_or(0),
            Rule::BlockedKey => Kind::ALL.len(),
        }
    }

    pub const ALL: [Rule; 7] = [
        Rule::Detector(Kind::CreditCard),
        Rule::Detector(Kind::Email),
        Rule::Detector(Kind::Jwt),
        Rule::Detector(Kind::AwsAccessKey),
        Rule::Detector(Kind::BearerToken),
        Rule::Detector(Kind::PrivateKey),
        Rule::BlockedKey,
    ];
}

/// Sensitive values found, per rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Findings([u64; 7]);

impl Findings {
    pub fn get(&self, r: Rule) -> u64 {
        self.0[r.index()]
    }

    fn add(&mut self, r: Rule) {
        self.0[r.index()] += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The rules that found something, with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (Rule, u64)> + '_ {
        Rule::ALL.into_iter().map(|r| (r, self.get(r))).filter(|(_, n)| *n > 0)
    }

    pub fn merge(&mut self, other: &Findings) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

pub struct Redactor {
    detectors: Detectors,
    blocked: RegexSet,
    allowed: RegexSet,
    action: Action,
}

/// Whether findings are acted on (`enforce`) or only counted (`observe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    Observe,
    Enforce,
}

/// The walk's state for one resource: the findings, whether anything changed, a scratch list.
struct Walk<'a> {
    r: &'a Redactor,
    apply: Apply,
    findings: Findings,
    changed: bool,
    matches: Vec<Match>,
}

impl Redactor {
    /// `blocked_keys` and `allowed_keys` are RE2 patterns (unanchored, as the collector's).
    pub fn new(
        kinds: &[Kind],
        blocked_keys: &[String],
        allowed_keys: &[String],
        action: Action,
    ) -> Result<Redactor, String> {
        let set =
            |what: &str, pats: &[String]| RegexSet::new(pats).map_err(|e| format!("{what}: invalid pattern: {e}"));
        Ok(Redactor {
            detectors: Detectors::new(kinds),
            blocked: set("blocked_keys", blocked_keys)?,
            allowed: set("allowed_keys", allowed_keys)?,
            action,
        })
    }

    /// Counts what one attribute (or map entry) holds, off the wire: the decoded walk's
    /// findings for the same key and value.
    pub(crate) fn scan_entry(
        &self,
        key: &str,
        value: wire::AnyValue<'_>,
        f: &mut Findings,
    ) -> Result<(), wire::WireError> {
        if self.allowed.is_match(key) {
            return Ok(());
        }
        if self.blocked.is_match(key) {
            f.add(Rule::BlockedKey);
            return Ok(());
        }
        self.scan_value(value, f)
    }

    /// A value off the wire: strings scanned, lists and maps recursively.
    pub(crate) fn scan_value(&self, v: wire::AnyValue<'_>, f: &mut Findings) -> Result<(), wire::WireError> {
        match v {
            wire::AnyValue::String(s) => self.scan_string(s, f),
            wire::AnyValue::Array(b) => {
                for g in wire::Fields::new(b) {
                    let g = g?;
                    if g.number == 1 {
                        self.scan_value(wire::AnyValue::parse(wire::expect_len(&g)?)?, f)?;
                    }
                }
            }
            wire::AnyValue::KvList(b) => {
                for a in wire::attributes(b, 1) {
                    let a = a?;
                    self.scan_entry(a.key, a.value, f)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The detectors' matches in one string, counted.
    pub(crate) fn scan_string(&self, s: &str, f: &mut Findings) {
        if self.detectors.is_empty() {
            return;
        }
        let mut matches = Vec::new();
        self.detectors.find(s, &mut matches);
        for m in &matches {
            f.add(Rule::Detector(m.kind));
        }
    }

    fn walk(&self, apply: Apply) -> Walk<'_> {
        Walk { r: self, apply, findings: Findings::default(), changed: false, matches: Vec::new() }
    }

    /// One resource entry: its resource's attributes, then `rest` (scopes and items), in one
    /// mode. Returns whether anything changed and what was found.
    fn one<R>(
        &self,
        r: &mut R,
        resource: impl FnOnce(&mut R) -> &mut Option<Resource>,
        apply: Apply,
        rest: impl FnOnce(&mut Walk, &mut R),
    ) -> (bool, Findings) {
        let mut w = self.walk(apply);
        if let Some(x) = resource(r) {
            w.attrs(&mut x.attributes);
        }
        rest(&mut w, r);
        (w.changed, w.findings)
    }

    /// Redacts one resource's spans (the resource, its scopes, spans, span events and links).
    pub fn resource_spans(&self, rs: &mut ResourceSpans, apply: Apply) -> (bool, Findings) {
        self.one(
            rs,
            |r| &mut r.resource,
            apply,
            |w, rs| {
                for ss in &mut rs.scope_spans {
                    w.scope(ss.scope.as_mut());
                    for span in &mut ss.spans {
                        w.name(&mut span.name);
                        w.attrs(&mut span.attributes);
                        for e in &mut span.events {
                            w.name(&mut e.name);
                            w.attrs(&mut e.attributes);
                        }
                        for l in &mut span.links {
                            w.attrs(&mut l.attributes);
                        }
                    }
                }
            },
        )
    }

    /// Redacts one resource's logs: bodies (recursively) and attributes.
    pub fn resource_logs(&self, rl: &mut ResourceLogs, apply: Apply) -> (bool, Findings) {
        self.one(
            rl,
            |r| &mut r.resource,
            apply,
            |w, rl| {
                for sl in &mut rl.scope_logs {
                    w.scope(sl.scope.as_mut());
                    for l in &mut sl.log_records {
                        if let Some(body) = &mut l.body
                            && !w.value(body)
                        {
                            l.body = None;
                        }
                        w.attrs(&mut l.attributes);
                    }
                }
            },
        )
    }

    /// Redacts one resource's metrics: data point and exemplar attributes of every kind.
    pub fn resource_metrics(&self, rm: &mut ResourceMetrics, apply: Apply) -> (bool, Findings) {
        self.one(
            rm,
            |r| &mut r.resource,
            apply,
            |w, rm| {
                for sm in &mut rm.scope_metrics {
                    w.scope(sm.scope.as_mut());
                    for m in &mut sm.metrics {
                        macro_rules! points {
                            ($points:expr) => {
                                for p in $points {
                                    w.attrs(&mut p.attributes);
                                    for e in &mut p.exemplars {
                                        w.attrs(&mut e.filtered_attributes);
                                    }
                                }
                            };
                        }
                        match &mut m.data {
                            Some(Data::Gauge(g)) => points!(&mut g.data_points),
                            Some(Data::Sum(s)) => points!(&mut s.data_points),
                            Some(Data::Histogram(h)) => points!(&mut h.data_points),
                            Some(Data::ExponentialHistogram(h)) => points!(&mut h.data_points),
                            Some(Data::Summary(s)) => {
                                for p in &mut s.data_points {
                                    w.attrs(&mut p.attributes);
                                }
                            }
                            None => {}
                        }
                    }
                }
            },
        )
    }
}

impl Walk<'_> {
    fn enforce(&self) -> bool {
        self.apply == Apply::Enforce
    }

    fn scope(&mut self, scope: Option<&mut opentelemetry_proto::tonic::common::v1::InstrumentationScope>) {
        if let Some(s) = scope {
            self.attrs(&mut s.attributes);
        }
    }

    /// The attributes of one level; the ones to drop are removed (order kept).
    fn attrs(&mut self, attrs: &mut Vec<KeyValue>) {
        let mut drop = Vec::new();
        for (i, kv) in attrs.iter_mut().enumerate() {
            if !self.entry(&kv.key, &mut kv.value) {
                drop.push(i);
            }
        }
        if !drop.is_empty() {
            let mut i = 0;
            attrs.retain(|_| {
                let keep = !drop.contains(&i);
                i += 1;
                keep
            });
        }
    }

    /// One key and its value; false when the entry is to be dropped.
    fn entry(&mut self, key: &str, value: &mut Option<AnyValue>) -> bool {
        if self.r.allowed.is_match(key) {
            return true;
        }
        if self.r.blocked.is_match(key) {
            self.findings.add(Rule::BlockedKey);
            if !self.enforce() {
                return true;
            }
            self.changed = true;
            let text = value.as_ref().map(string_form).unwrap_or_default();
            let replaced = match &self.r.action {
                Action::Drop => return false,
                Action::Mask => "*".repeat(text.chars().count().max(1)),
                Action::Hash(k) => hmac_hex(k, &text),
            };
            *value = Some(AnyValue { value: Some(Value::StringValue(replaced)) });
            return true;
        }
        match value {
            Some(v) => self.value(v),
            None => true,
        }
    }

    /// A value (strings scanned, lists and maps recursively); false when it is to be dropped.
    fn value(&mut self, v: &mut AnyValue) -> bool {
        match &mut v.value {
            Some(Value::StringValue(s)) => self.string(s, true),
            Some(Value::ArrayValue(a)) => {
                let mut drop = Vec::new();
                for (i, x) in a.values.iter_mut().enumerate() {
                    if !self.value(x) {
                        drop.push(i);
                    }
                }
                if !drop.is_empty() {
                    let mut i = 0;
                    a.values.retain(|_| {
                        let keep = !drop.contains(&i);
                        i += 1;
                        keep
                    });
                }
                true
            }
            Some(Value::KvlistValue(m)) => {
                self.attrs(&mut m.values);
                true
            }
            _ => true,
        }
    }

    /// A span or event name: detectors only, and never dropped (masked instead).
    fn name(&mut self, s: &mut String) {
        let _ = self.string(s, false);
    }

    /// Scans one string; false when it is to be dropped.
    fn string(&mut self, s: &mut String, droppable: bool) -> bool {
        if self.r.detectors.is_empty() {
            return true;
        }
        let mut matches = std::mem::take(&mut self.matches);
        self.r.detectors.find(s, &mut matches);
        for m in &matches {
            self.findings.add(Rule::Detector(m.kind));
        }
        let mut keep = true;
        if !matches.is_empty() && self.enforce() {
            self.changed = true;
            match &self.r.action {
                Action::Drop if droppable => keep = false,
                Action::Drop | Action::Mask => *s = detect::mask(s, &matches),
                Action::Hash(k) => *s = detect::replace(s, &matches, |t| hmac_hex(k, t)),
            }
        }
        self.matches = matches;
        keep
    }
}

/// A value as text, for hashing or masking a blocked key's whole value.
fn string_form(v: &AnyValue) -> String {
    match &v.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(Value::ArrayValue(_) | Value::KvlistValue(_)) => format!("{v:?}"),
        // An index into a profile's string table: no text here.
        Some(Value::StringValueStrindex(i)) => i.to_string(),
        None => String::new(),
    }
}

fn hmac_hex(key: &ring::hmac::Key, text: &str) -> String {
    ring::hmac::sign(key, text.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event};

    const CARD: &str = "4111111111111111";
    const BAD_CARD: &str = "4111111111111112";

    fn s(v: &str) -> AnyValue {
        AnyValue { value: Some(Value::StringValue(v.into())) }
    }

    fn kv(k: &str, v: AnyValue) -> KeyValue {
        KeyValue { key: k.into(), value: Some(v), ..Default::default() }
    }

    fn redactor(action: Action) -> Redactor {
        Redactor::new(&Kind::ALL, &["(?i)^(password|authorization)$".into()], &["^safe\\.".into()], action)
            .expect("valid")
    }

    fn team(t: &str) -> Resource {
        Resource { attributes: vec![kv("owner.team", s(t))], ..Default::default() }
    }

    fn traces() -> ExportTraceServiceRequest {
        let span = Span {
            name: format!("charge {CARD}"),
            attributes: vec![
                kv("card", s(&format!("card {CARD} ok"))),
                kv("lookalike", s(BAD_CARD)),
                kv("password", s("hunter2")),
                kv("safe.card", s(CARD)),
                kv(
                    "nested",
                    AnyValue {
                        value: Some(Value::ArrayValue(ArrayValue { values: vec![s("alice@example.com"), s("x")] })),
                    },
                ),
            ],
            events: vec![Event {
                name: "e".into(),
                attributes: vec![kv("mail", s("bob@example.org"))],
                ..Default::default()
            }],
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(team("payments")),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        attributes: vec![kv("token", s("AKIAIOSFODNN7EXAMPLE"))],
                        ..Default::default()
                    }),
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn attr<'a>(attrs: &'a [KeyValue], k: &str) -> Option<&'a AnyValue> {
        attrs.iter().find(|kv| kv.key == k).and_then(|kv| kv.value.as_ref())
    }

    fn text(v: Option<&AnyValue>) -> &str {
        match v.and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => s,
            _ => "<not a string>",
        }
    }

    #[test]
    fn enforce_masks_every_level_and_leaves_look_alikes() {
        let r = redactor(Action::Mask);
        let mut req = traces();
        let mut seen = Vec::new();
        let changed = crate::each(
            &mut req.resource_spans,
            |x| x.resource.as_ref(),
            |_| Apply::Enforce,
            |rs, a| r.resource_spans(rs, a),
            |res, f| seen.push((res.cloned(), *f)),
        );
        assert!(changed);
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.name, format!("charge {}", "*".repeat(16)));
        assert_eq!(text(attr(&span.attributes, "card")), format!("card {} ok", "*".repeat(16)));
        assert_eq!(text(attr(&span.attributes, "lookalike")), BAD_CARD);
        assert_eq!(text(attr(&span.attributes, "password")), "*******");
        assert_eq!(text(attr(&span.attributes, "safe.card")), CARD, "allowed keys are never touched");
        let Some(Value::ArrayValue(a)) = attr(&span.attributes, "nested").and_then(|v| v.value.clone()) else {
            panic!("a list")
        };
        assert_eq!(text(a.values.first()), "*****************");
        assert_eq!(text(attr(&span.events[0].attributes, "mail")), "***************");
        let scope = req.resource_spans[0].scope_spans[0].scope.as_ref().expect("scope");
        assert_eq!(text(attr(&scope.attributes, "token")), "*".repeat(20));
        // One resource, its findings: 2 cards (name, attribute), 2 e-mails, 1 AWS key, 1 blocked key.
        assert_eq!(seen.len(), 1);
        let f = seen[0].1;
        assert_eq!(f.get(Rule::Detector(Kind::CreditCard)), 2);
        assert_eq!(f.get(Rule::Detector(Kind::Email)), 2);
        assert_eq!(f.get(Rule::Detector(Kind::AwsAccessKey)), 1);
        assert_eq!(f.get(Rule::BlockedKey), 1);
        assert_eq!(f.total(), 6);
        assert_eq!(seen[0].0, Some(team("payments")), "the resource as it was, for the team");
    }

    #[test]
    fn observe_changes_nothing_and_counts_the_same() {
        let r = redactor(Action::Mask);
        let mut req = traces();
        let (mut total, original) = (0, req.clone());
        let changed = crate::each(
            &mut req.resource_spans,
            |x| x.resource.as_ref(),
            |_| Apply::Observe,
            |rs, a| r.resource_spans(rs, a),
            |_, f| total += f.total(),
        );
        assert!(!changed);
        assert_eq!(req, original);
        assert_eq!(total, 6);
    }

    #[test]
    fn hash_and_drop() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let r = redactor(Action::Hash(key.clone()));
        let mut req = traces();
        crate::each(
            &mut req.resource_spans,
            |x| x.resource.as_ref(),
            |_| Apply::Enforce,
            |rs, a| r.resource_spans(rs, a),
            |_, _| {},
        );
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(text(attr(&span.attributes, "card")), format!("card {} ok", hmac_hex(&key, CARD)));
        assert_eq!(text(attr(&span.attributes, "password")), hmac_hex(&key, "hunter2"));

        let r = redactor(Action::Drop);
        let mut req = traces();
        crate::each(
            &mut req.resource_spans,
            |x| x.resource.as_ref(),
            |_| Apply::Enforce,
            |rs, a| r.resource_spans(rs, a),
            |_, _| {},
        );
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        let keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["lookalike", "safe.card", "nested"], "the order of the rest kept");
        assert_eq!(span.name, format!("charge {}", "*".repeat(16)), "a name is masked, not dropped");
        let Some(Value::ArrayValue(a)) = attr(&span.attributes, "nested").and_then(|v| v.value.clone()) else {
            panic!("a list")
        };
        assert_eq!(a.values, vec![s("x")], "the list element dropped");
    }

    #[test]
    fn log_bodies_recursively_and_per_resource_modes() {
        let body = AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("msg", s(&format!("paid with {CARD}"))),
                    kv("Authorization", s("Bearer 8f14e45fceea167a5a36dedd4bea2543")),
                    kv(
                        "inner",
                        AnyValue {
                            value: Some(Value::KvlistValue(KeyValueList {
                                values: vec![kv("to", s("carol@example.net"))],
                            })),
                        },
                    ),
                ],
            })),
        };
        let record = |b: AnyValue| LogRecord { body: Some(b), ..Default::default() };
        let mut req = ExportLogsServiceRequest {
            resource_logs: ["payments", "search"]
                .iter()
                .map(|t| ResourceLogs {
                    resource: Some(team(t)),
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![record(body.clone()), record(s(&format!("card {CARD}")))],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        let r = redactor(Action::Mask);
        // payments enforces, search observes.
        let mode = |res: Option<&Resource>| {
            let t = res.and_then(|r| attr(&r.attributes, "owner.team")).map(|v| text(Some(v)).to_string());
            if t.as_deref() == Some("payments") { Apply::Enforce } else { Apply::Observe }
        };
        let mut per_team = Vec::new();
        assert!(crate::each(
            &mut req.resource_logs,
            |x| x.resource.as_ref(),
            mode,
            |rl, a| r.resource_logs(rl, a),
            |_, f| per_team.push(f.total())
        ));
        assert_eq!(per_team, [4, 4], "card in the map, the blocked key, the nested e-mail, the string body's card");
        let enforced = &req.resource_logs[0].scope_logs[0].log_records;
        let Some(Value::KvlistValue(m)) = enforced[0].body.clone().and_then(|b| b.value) else { panic!("a map body") };
        assert_eq!(text(attr(&m.values, "msg")), format!("paid with {}", "*".repeat(16)));
        assert_eq!(text(attr(&m.values, "Authorization")), "*".repeat(39), "a blocked key's whole value");
        assert_eq!(text(enforced[1].body.as_ref()), format!("card {}", "*".repeat(16)));
        let observed = &req.resource_logs[1].scope_logs[0].log_records;
        assert_eq!(observed[0].body, Some(body), "the observing team's data is unchanged");
    }

    #[test]
    fn metric_point_attributes() {
        let point = NumberDataPoint { attributes: vec![kv("user", s("dave@example.com"))], ..Default::default() };
        let mut req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(Data::Gauge(Gauge { data_points: vec![point] })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let r = redactor(Action::Drop);
        assert!(crate::each(
            &mut req.resource_metrics,
            |x| x.resource.as_ref(),
            |_| Apply::Enforce,
            |rm, a| r.resource_metrics(rm, a),
            |_, _| {}
        ));
        let Some(Data::Gauge(g)) = &req.resource_metrics[0].scope_metrics[0].metrics[0].data else { panic!("gauge") };
        assert!(g.data_points[0].attributes.is_empty());
    }

    #[test]
    fn invalid_key_patterns_are_refused() {
        let e = Redactor::new(&[], &["(".into()], &[], Action::Mask).err().expect("refused");
        assert!(e.starts_with("blocked_keys: invalid pattern"), "{e}");
    }
}
