//! The `policy` processor (issue 12): the platform's guardrails as automated defaults, per team.
//! This version runs the required resource attributes (filled with a default, or the
//! resource's items refused as a partial success), the redaction policy
//! (`sightline_policy::redact`: validated detectors and blocked keys over every string of the
//! data; mask, hash or drop) and the attribute limits
//! (`sightline_policy::limits`: the SDK specification's count and value length limits), in
//! `observe` (count what enforcing would do, change nothing) or `enforce` mode, with a
//! per-team override of the mode, so a team can move to enforce alone.
//!
//! It reads the team attribute (`owner.team` by default) that the `ownership` processor wrote,
//! so it comes after `ownership` in a pipeline (checked by `validate`). Findings are counted in
//! `sightline_policy_findings_total{policy,rule,team,signal,action}` (`action`: `observed`,
//! `masked`, `hashed`, `dropped`, `truncated`); they never hold the sensitive value. Team labels
//! are bounded by `max_teams` (the rest are `other`).
//!
//! The other policies of issue 12 (naming, series limits) are refused by `validate` as not
//! implemented yet, rather than silently ignored.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde::Deserialize;
use sightline_core::{Payload, ProcessError, Processor, Registry, Signal};
use sightline_policy::Kind;
use sightline_policy::limits::{Limits, Over};
use sightline_policy::redact::{Action, Apply, Findings, Redactor};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::RwLock;

/// `observe` counts findings and changes nothing; `enforce` applies the action.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Observe,
    Enforce,
}

/// `processors.policy`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The mode of every team without an override (default `observe`).
    #[serde(default)]
    pub mode: Mode,
    /// The resource attribute that names the team (default `owner.team`).
    #[serde(default = "default_team_attribute")]
    pub team_attribute: String,
    #[serde(default)]
    pub redaction: RedactionConfig,
    /// Per-team overrides, by team name.
    #[serde(default)]
    pub teams: BTreeMap<String, TeamConfig>,
    /// Teams with their own metric label; beyond this many, the rest are labelled `other`
    /// (default 1000).
    #[serde(default = "default_max_teams")]
    pub max_teams: usize,
    // Policies of issue 12 not implemented yet: refused by `validate`.
    #[serde(default)]
    pub required_resource_attributes: Vec<Required>,
    #[serde(default)]
    pub attribute_limits: Option<AttributeLimitsConfig>,
    #[serde(default)]
    pub naming: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub cardinality: Option<serde_yaml_ng::Value>,
}

fn default_team_attribute() -> String {
    "owner.team".into()
}

fn default_max_teams() -> usize {
    1000
}

/// `redaction`: on by default with every detector, the common secret key names, `mask`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Detector names (default all): credit_card, email, jwt, aws_access_key, bearer_token,
    /// private_key.
    #[serde(default = "all_detectors")]
    pub detectors: Vec<String>,
    /// Key patterns (RE2, unanchored) whose whole value is sensitive.
    #[serde(default = "default_blocked_keys")]
    pub blocked_keys: Vec<String>,
    /// Key patterns never touched.
    #[serde(default)]
    pub allowed_keys: Vec<String>,
    /// `mask` (default), `hash` (HMAC-SHA256 under `hash_key_file`) or `drop`.
    #[serde(default = "default_action")]
    pub action: String,
    /// The key for `hash`: the file's bytes (trailing whitespace trimmed), at least 16.
    #[serde(default)]
    pub hash_key_file: Option<PathBuf>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            enabled: true,
            detectors: all_detectors(),
            blocked_keys: default_blocked_keys(),
            allowed_keys: Vec::new(),
            action: default_action(),
            hash_key_file: None,
        }
    }
}

fn yes() -> bool {
    true
}

fn all_detectors() -> Vec<String> {
    Kind::ALL.iter().map(|k| k.name().to_string()).collect()
}

fn default_blocked_keys() -> Vec<String> {
    vec![r"(?i)^(password|passwd|secret|api[_.-]?key|authorization)$".into()]
}

fn default_action() -> String {
    "mask".into()
}

/// One `required_resource_attributes` entry: a key, or a key and the value to fill in.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Required {
    Key(String),
    Filled {
        key: String,
        #[serde(default)]
        default: Option<String>,
    },
}

impl Required {
    fn key(&self) -> &str {
        match self {
            Required::Key(k) | Required::Filled { key: k, .. } => k,
        }
    }

    fn default(&self) -> Option<&str> {
        match self {
            Required::Key(_) => None,
            Required::Filled { default, .. } => default.as_deref(),
        }
    }
}

/// `attribute_limits`: the SDK specification's limits, applied by the gateway.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeLimitsConfig {
    /// Attributes kept per list (span, event, link, log record); the rest discarded.
    #[serde(default)]
    pub max_count: Option<usize>,
    /// Characters kept per string value (each string of an array too).
    #[serde(default)]
    pub max_value_length: Option<usize>,
    /// Also limit resource attributes (default false, as the SDK).
    #[serde(default)]
    pub resources: bool,
    /// Also limit metric data point attributes (default false, as the SDK).
    #[serde(default)]
    pub data_points: bool,
}

/// One team's override.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub redaction: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub cardinality: Option<serde_yaml_ng::Value>,
}

impl PolicyConfig {
    /// Checks serde cannot express: (key path relative to the processor, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let later = "is not implemented yet in Sightline (the policy processor runs required_resource_attributes, redaction and attribute_limits, with observe/enforce per team); remove it";
        if let Some(l) = &self.attribute_limits
            && l.max_count.is_none()
            && l.max_value_length.is_none()
        {
            errs.push(("attribute_limits".into(), "set max_count, max_value_length or both".into()));
        }
        if self.attribute_limits.as_ref().is_some_and(|l| l.max_value_length == Some(0)) {
            errs.push(("attribute_limits.max_value_length".into(), "must be at least 1".into()));
        }
        for (i, r) in self.required_resource_attributes.iter().enumerate() {
            if r.key().is_empty() {
                errs.push((format!("required_resource_attributes.{i}"), "a key is required".into()));
            }
        }
        for (k, v) in [("naming", &self.naming), ("cardinality", &self.cardinality)] {
            if v.is_some() {
                errs.push((k.into(), later.into()));
            }
        }
        for (team, t) in &self.teams {
            for (k, v) in [("redaction", &t.redaction), ("cardinality", &t.cardinality)] {
                if v.is_some() {
                    errs.push((
                        format!("teams.{team}.{k}"),
                        "per-team overrides other than mode are not implemented yet in Sightline".into(),
                    ));
                }
            }
        }
        if let Err((k, m)) = self.redactor() {
            errs.push((k, m));
        }
        errs
    }

    /// The compiled redaction policy, or the key and message of what is wrong.
    fn redactor(&self) -> Result<Option<Redactor>, (String, String)> {
        let r = &self.redaction;
        if !r.enabled {
            return Ok(None);
        }
        let mut kinds = Vec::new();
        for (i, d) in r.detectors.iter().enumerate() {
            match Kind::parse(d) {
                Some(k) => kinds.push(k),
                None => {
                    let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                    return Err((
                        format!("redaction.detectors.{i}"),
                        format!("unknown detector {d:?}; known: {}", known.join(", ")),
                    ));
                }
            }
        }
        let action = match r.action.as_str() {
            "mask" => Action::Mask,
            "drop" => Action::Drop,
            "hash" => {
                let Some(path) = &r.hash_key_file else {
                    return Err(("redaction.hash_key_file".into(), "is required with action hash".into()));
                };
                let key = std::fs::read(path).map_err(|e| {
                    ("redaction.hash_key_file".to_string(), format!("cannot read {}: {e}", path.display()))
                })?;
                let key = key.trim_ascii_end();
                if key.len() < 16 {
                    return Err((
                        "redaction.hash_key_file".into(),
                        format!("{} holds {} bytes: a key needs at least 16", path.display(), key.len()),
                    ));
                }
                Action::Hash(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key))
            }
            other => return Err(("redaction.action".into(), format!("{other:?}: use mask, hash or drop"))),
        };
        Redactor::new(&kinds, &r.blocked_keys, &r.allowed_keys, action).map(Some).map_err(|m| {
            let key = m.split(':').next().unwrap_or("").to_string();
            (format!("redaction.{key}"), m)
        })
    }
}

pub struct PolicyProcessor {
    id: String,
    signal: Signal,
    cfg: PolicyConfig,
    redactor: Option<Redactor>,
    limits: Option<Limits>,
    /// The label of enforced findings: `masked`, `hashed` or `dropped`.
    enforced: &'static str,
    registry: Registry,
    teams: RwLock<HashSet<String>>,
}

impl PolicyProcessor {
    /// `cfg` has passed [`PolicyConfig::validate`].
    pub fn new(id: &str, signal: Signal, cfg: &PolicyConfig, registry: &Registry) -> Result<PolicyProcessor, String> {
        let redactor = cfg.redactor().map_err(|(k, m)| format!("{k}: {m}"))?;
        let enforced = match cfg.redaction.action.as_str() {
            "hash" => "hashed",
            "drop" => "dropped",
            _ => "masked",
        };
        Ok(PolicyProcessor {
            id: id.into(),
            signal,
            cfg: cfg.clone(),
            redactor,
            limits: cfg.attribute_limits.as_ref().map(|l| Limits {
                max_count: l.max_count,
                max_value_length: l.max_value_length,
                resources: l.resources,
                data_points: l.data_points,
            }),
            enforced,
            registry: registry.clone(),
            teams: RwLock::new(HashSet::new()),
        })
    }

    fn team<'a>(&self, resource: Option<&'a Resource>) -> &'a str {
        attr_str(resource, &self.cfg.team_attribute).unwrap_or("")
    }

    fn mode(&self, resource: Option<&Resource>) -> Apply {
        let team = self.team(resource);
        match self.cfg.teams.get(team).and_then(|t| t.mode).unwrap_or(self.cfg.mode) {
            Mode::Observe => Apply::Observe,
            Mode::Enforce => Apply::Enforce,
        }
    }

    /// The team's metric label: its name while fewer than `max_teams` are known, else `other`.
    fn team_label(&self, team: &str) -> String {
        if self.teams.read().unwrap_or_else(|e| e.into_inner()).contains(team) {
            return team.to_string();
        }
        let mut known = self.teams.write().unwrap_or_else(|e| e.into_inner());
        if known.len() < self.cfg.max_teams || known.contains(team) {
            known.insert(team.to_string());
            return team.to_string();
        }
        "other".into()
    }

    /// Counts findings of a resource: (rule, the action when enforced, count).
    fn count(&self, resource: Option<&Resource>, found: &[(&str, &'static str, u64)]) {
        if found.iter().all(|f| f.2 == 0) {
            return;
        }
        let enforce = self.mode(resource) == Apply::Enforce;
        let team = self.team_label(self.team(resource));
        for &(rule, enforced, n) in found.iter().filter(|f| f.2 > 0) {
            let labels = [
                ("policy", self.id.as_str()),
                ("rule", rule),
                ("team", team.as_str()),
                ("signal", self.signal.as_str()),
                ("action", if enforce { enforced } else { "observed" }),
            ];
            self.registry
                .counter(
                    "sightline_policy_findings_total",
                    "Policy findings (sensitive values, attributes over the limits), by rule, team and what was done (observed in observe mode).",
                    &labels,
                )
                .add(n);
        }
    }

    fn record(&self, resource: Option<&Resource>, f: &Findings) {
        let found: Vec<(&str, &'static str, u64)> = f.iter().map(|(r, n)| (r.name(), self.enforced, n)).collect();
        self.count(resource, &found);
    }

    /// `required_resource_attributes` on a request's resources (`items` counts a resource's
    /// items): observed, filled with the default, or the resource removed and its items
    /// refused. Returns whether anything changed, and the refused items with the reason.
    fn required<R>(
        &self,
        list: &mut Vec<R>,
        resource: impl Fn(&R) -> Option<&Resource>,
        resource_mut: impl Fn(&mut R) -> &mut Option<Resource>,
        items: impl Fn(&R) -> u64,
    ) -> (bool, u64, String) {
        let (mut changed, mut refused, mut why) = (false, 0u64, String::new());
        list.retain_mut(|r| {
            let res = resource(r);
            let missing: Vec<&Required> = self
                .cfg
                .required_resource_attributes
                .iter()
                .filter(|q| {
                    let attrs = res.map_or(&[][..], |x| &x.attributes);
                    // Present: with a value other than the empty string.
                    !attrs.iter().any(|kv| {
                        kv.key == q.key()
                            && match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                None => false,
                                Some(Value::StringValue(s)) => !s.is_empty(),
                                Some(_) => true,
                            }
                    })
                })
                .collect();
            if missing.is_empty() {
                return true;
            }
            let before = res.cloned();
            let enforce = self.mode(before.as_ref()) == Apply::Enforce;
            let unfilled: Vec<&str> = missing.iter().filter(|q| q.default().is_none()).map(|q| q.key()).collect();
            let filled = missing.len() - unfilled.len();
            self.count(before.as_ref(), &[
                ("required_attribute", "filled", filled as u64),
                ("required_attribute", "refused", unfilled.len() as u64),
            ]);
            if !enforce {
                return true;
            }
            if !unfilled.is_empty() {
                let n = items(r);
                refused += n;
                if why.is_empty() {
                    let service = attr_str(before.as_ref(), "service.name").unwrap_or("unknown");
                    why = format!(
                        "policy {}: {n} items of service {service:?} (team {:?}) refused: the resource lacks the required attribute{} {}",
                        self.id,
                        self.team(before.as_ref()),
                        if unfilled.len() > 1 { "s" } else { "" },
                        unfilled.join(", ")
                    );
                }
                changed = true;
                return false;
            }
            let res = resource_mut(r).get_or_insert_with(Resource::default);
            for q in &missing {
                let v = Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(Value::StringValue(q.default().unwrap_or_default().to_string())),
                });
                match res.attributes.iter_mut().find(|kv| kv.key == q.key()) {
                    Some(kv) => kv.value = v,
                    None => res.attributes.push(opentelemetry_proto::tonic::common::v1::KeyValue {
                        key: q.key().to_string(),
                        value: v,
                        ..Default::default()
                    }),
                }
            }
            changed = true;
            true
        });
        (changed, refused, why)
    }

    fn record_over(&self, resource: Option<&Resource>, o: &Over) {
        self.count(
            resource,
            &[("attribute_count", "dropped", o.dropped), ("attribute_value_length", "truncated", o.truncated)],
        );
    }
}

/// A resource's string attribute (the last occurrence, as a decoder's map keeps).
fn attr_str<'a>(resource: Option<&'a Resource>, key: &str) -> Option<&'a str> {
    let attrs = resource.map_or(&[][..], |r| &r.attributes);
    match attrs.iter().rev().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn bad(e: prost::DecodeError) -> ProcessError {
    ProcessError::Invalid(format!("cannot decode the request: {e}"))
}

impl Processor for PolicyProcessor {
    fn process(&self, payload: Payload) -> Result<Payload, ProcessError> {
        if self.redactor.is_none() && self.limits.is_none() && self.cfg.required_resource_attributes.is_empty() {
            return Ok(payload);
        }
        let mode = |res: Option<&Resource>| self.mode(res);
        let mut record = |res: Option<&Resource>, f: &Findings| self.record(res, f);
        let mut record_over = |res: Option<&Resource>, o: &Over| self.record_over(res, o);
        let bytes = payload.bytes();
        // Required attributes first (a refused resource needs nothing else), then redaction:
        // a limit must not cut a secret into a fragment detectors miss.
        let mut refused = (0u64, String::new());
        macro_rules! run {
            ($t:ty, $walk:ident, $list:ident, $items:expr) => {{
                let mut req = <$t>::decode(&bytes[..]).map_err(bad)?;
                let mut changed = false;
                if !self.cfg.required_resource_attributes.is_empty() {
                    let (c, n, why) =
                        self.required(&mut req.$list, |r| r.resource.as_ref(), |r| &mut r.resource, $items);
                    changed |= c;
                    refused = (n, why);
                }
                if let Some(r) = &self.redactor {
                    changed |= r.$walk(&mut req, &mode, &mut record);
                }
                if let Some(l) = &self.limits {
                    changed |= l.$walk(&mut req, &mode, &mut record_over);
                }
                changed.then(|| req.encode_to_vec())
            }};
        }
        let out = match payload.signal() {
            Signal::Traces => run!(ExportTraceServiceRequest, traces, resource_spans, |r| r
                .scope_spans
                .iter()
                .map(|s| s.spans.len() as u64)
                .sum()),
            Signal::Logs => run!(ExportLogsServiceRequest, logs, resource_logs, |r| r
                .scope_logs
                .iter()
                .map(|s| s.log_records.len() as u64)
                .sum()),
            Signal::Metrics => run!(ExportMetricsServiceRequest, metrics, resource_metrics, |r| r
                .scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .map(crate::items::point_count)
                .sum()),
        };
        Ok(match out {
            Some(b) => {
                // Redaction's `drop` removes attributes, never items; refused resources do.
                let items = payload.items().saturating_sub(refused.0);
                let p = payload.with_bytes(bytes::Bytes::from(b), items);
                if refused.0 > 0 { p.with_rejected(refused.0, refused.1) } else { p }
            }
            None => payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    fn cfg(yaml: &str) -> PolicyConfig {
        serde_yaml_ng::from_str(yaml).expect("a policy config")
    }

    fn request(teams: &[&str]) -> Payload {
        let req = ExportTraceServiceRequest {
            resource_spans: teams
                .iter()
                .map(|t| ResourceSpans {
                    resource: Some(Resource { attributes: vec![kv("owner.team", t)], ..Default::default() }),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![Span {
                            name: "pay".into(),
                            attributes: vec![kv("card", "4111 1111 1111 1111"), kv("api_key", "k-123")],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        Payload::new(Signal::Traces, bytes::Bytes::from(req.encode_to_vec()), teams.len() as u64, None)
    }

    fn card_of(p: &Payload, i: usize) -> String {
        let req = ExportTraceServiceRequest::decode(&p.bytes()[..]).expect("decodes");
        let span = &req.resource_spans[i].scope_spans[0].spans[0];
        match span.attributes.iter().find(|kv| kv.key == "card").and_then(|kv| kv.value.clone()).and_then(|v| v.value) {
            Some(Value::StringValue(s)) => s,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn one_team_enforces_next_to_one_that_observes() {
        let registry = Registry::new();
        let c = cfg("teams: { payments: { mode: enforce } }");
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let p = PolicyProcessor::new("policy", Signal::Traces, &c, &registry).expect("built");
        let out = p.process(request(&["payments", "search"])).expect("processed");
        assert_eq!(card_of(&out, 0), "*".repeat(19));
        assert_eq!(card_of(&out, 1), "4111 1111 1111 1111", "observe changes nothing");
        let n = |team: &str, rule: &str, action: &str| {
            registry.value(
                "sightline_policy_findings_total",
                &[("policy", "policy"), ("rule", rule), ("team", team), ("signal", "traces"), ("action", action)],
            )
        };
        assert_eq!(n("payments", "credit_card", "masked"), Some(1));
        assert_eq!(n("payments", "blocked_key", "masked"), Some(1));
        assert_eq!(n("search", "credit_card", "observed"), Some(1));
        assert_eq!(n("search", "blocked_key", "observed"), Some(1));
        assert_eq!(n("search", "credit_card", "masked"), None);
    }

    #[test]
    fn attribute_limits_are_counted_and_enforced_per_team() {
        let registry = Registry::new();
        let c = cfg(
            "redaction: { enabled: false }\nattribute_limits: { max_count: 1, max_value_length: 4 }\nteams: { payments: { mode: enforce } }",
        );
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let p = PolicyProcessor::new("policy", Signal::Traces, &c, &registry).expect("built");
        let out = p.process(request(&["payments", "search"])).expect("processed");
        assert_eq!(card_of(&out, 0), "4111", "truncated to 4 characters");
        assert_eq!(card_of(&out, 1), "4111 1111 1111 1111");
        let req = ExportTraceServiceRequest::decode(&out.bytes()[..]).expect("decodes");
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!((span.attributes.len(), span.dropped_attributes_count), (1, 1));
        let n = |team: &str, rule: &str, action: &str| {
            registry.value(
                "sightline_policy_findings_total",
                &[("policy", "policy"), ("rule", rule), ("team", team), ("signal", "traces"), ("action", action)],
            )
        };
        assert_eq!(n("payments", "attribute_count", "dropped"), Some(1));
        assert_eq!(n("payments", "attribute_value_length", "truncated"), Some(1));
        assert_eq!(n("search", "attribute_count", "observed"), Some(1));
        assert_eq!(n("search", "attribute_value_length", "observed"), Some(1));
        assert!(cfg("attribute_limits: {}").validate()[0].1.contains("max_count"));
    }

    #[test]
    fn required_attributes_refuse_fill_or_observe() {
        let registry = Registry::new();
        let c = cfg(
            "redaction: { enabled: false }\nrequired_resource_attributes: [service.name, { key: env, default: unknown }]\nteams: { payments: { mode: enforce }, ops: { mode: enforce } }",
        );
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let p = PolicyProcessor::new("policy", Signal::Traces, &c, &registry).expect("built");
        let mut req =
            ExportTraceServiceRequest::decode(&request(&["payments", "search", "ops"]).bytes()[..]).expect("decodes");
        // ops has service.name: only env is missing, and it has a default.
        req.resource_spans[2].resource.as_mut().expect("resource").attributes.push(kv("service.name", "billing"));
        let payload = Payload::new(Signal::Traces, bytes::Bytes::from(req.encode_to_vec()), 3, None);
        let out = p.process(payload).expect("processed");
        let got = ExportTraceServiceRequest::decode(&out.bytes()[..]).expect("decodes");
        let teams: Vec<&str> =
            got.resource_spans.iter().map(|r| attr_str(r.resource.as_ref(), "owner.team").unwrap_or("")).collect();
        assert_eq!(teams, ["search", "ops"], "payments' resource refused, search observed");
        assert_eq!(attr_str(got.resource_spans[1].resource.as_ref(), "env"), Some("unknown"), "filled");
        assert_eq!(attr_str(got.resource_spans[0].resource.as_ref(), "env"), None, "observe fills nothing");
        assert_eq!(out.items(), 2);
        let r = out.rejected().expect("a partial rejection");
        assert_eq!(r.items, 1);
        assert!(r.message.contains("team \"payments\"") && r.message.contains("service.name"), "{}", r.message);
        let n = |team: &str, action: &str| {
            registry.value(
                "sightline_policy_findings_total",
                &[
                    ("policy", "policy"),
                    ("rule", "required_attribute"),
                    ("team", team),
                    ("signal", "traces"),
                    ("action", action),
                ],
            )
        };
        assert_eq!((n("payments", "refused"), n("payments", "filled")), (Some(1), Some(1)));
        assert_eq!(n("search", "observed"), Some(2));
        assert_eq!((n("ops", "filled"), n("ops", "refused")), (Some(1), None));
    }

    #[test]
    fn nothing_found_passes_the_same_bytes() {
        let registry = Registry::new();
        let p = PolicyProcessor::new(
            "policy",
            Signal::Traces,
            &cfg("mode: enforce\nredaction: { blocked_keys: [] }"),
            &registry,
        )
        .expect("built");
        let req = ExportTraceServiceRequest::default().encode_to_vec();
        let payload = Payload::new(Signal::Traces, bytes::Bytes::from(req), 0, None);
        let before = payload.bytes().clone();
        let out = p.process(payload).expect("processed");
        assert_eq!(out.bytes().as_ptr(), before.as_ptr(), "not re-encoded");
    }

    #[test]
    fn invalid_configs_name_the_key() {
        let errs = |y: &str| cfg(y).validate();
        assert_eq!(errs("redaction: { detectors: [ssn] }")[0].0, "redaction.detectors.0");
        assert_eq!(errs("redaction: { action: shred }")[0].0, "redaction.action");
        assert_eq!(errs("redaction: { action: hash }")[0].0, "redaction.hash_key_file");
        assert_eq!(errs("redaction: { blocked_keys: ['('] }")[0].0, "redaction.blocked_keys");
        assert_eq!(errs("cardinality: { max_series_per_metric: 10 }")[0].0, "cardinality");
        assert_eq!(errs("attribute_limits: { max_value_length: 0 }")[0].0, "attribute_limits.max_value_length");
        assert_eq!(errs("teams: { a: { cardinality: {} } }")[0].0, "teams.a.cardinality");
        let dir = tempfile::tempdir().expect("tmp");
        let short = dir.path().join("k");
        std::fs::write(&short, "short\n").expect("write");
        let e = errs(&format!("redaction: {{ action: hash, hash_key_file: {} }}", short.display()));
        assert!(e[0].1.contains("at least 16"), "{e:?}");
    }
}
