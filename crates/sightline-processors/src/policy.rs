//! The `policy` processor (issue 12): the platform's guardrails as automated defaults, per team.
//!
//! Per resource, in this order: the required resource attributes (filled with a default, or
//! the resource's items refused as a partial success), the naming rules
//! (`sightline_policy::naming`: metric names and attribute keys), the redaction policy
//! (`sightline_policy::redact`: validated detectors and blocked keys over every string of the
//! data; mask, hash or drop), the attribute limits (`sightline_policy::limits`: the SDK
//! specification's count and value length limits) and, for metrics, the series limits
//! (`sightline_policy::series`: distinct series per team and metric per window, in bounded
//! memory). Each runs in `observe` (count what enforcing would do, change nothing) or
//! `enforce` mode. `teams.<name>` overrides any of them for one team (deep-merged over the
//! processor's own settings), so a team can move to enforce alone, or get a higher limit.
//!
//! It reads the team attribute (`owner.team` by default) that the `ownership` processor wrote,
//! so it comes after `ownership` in a pipeline (checked by `validate`). Findings are counted in
//! `sightline_policy_findings_total{policy,rule,team,signal,action}`; they never hold the
//! sensitive value. Team labels are bounded by `max_teams` (the rest are `other`); the series
//! gauges by `cardinality.top_offenders`.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde::{Deserialize, Serialize};
use sightline_core::wire;
use sightline_core::{Payload, ProcessError, Processor, Registry, Signal};
use sightline_policy::Kind;
use sightline_policy::limits::{Limits, Over};
use sightline_policy::naming::{Broken, Naming};
use sightline_policy::redact::{Action, Apply, Findings, Redactor};
use sightline_policy::scan::{self, Scanner, Seen};
use sightline_policy::series::{Admit, SeriesLimiter, attrs_hash};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// `observe` counts findings and changes nothing; `enforce` applies the action.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Observe,
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Enforce => "enforce",
        }
    }
}

/// `processors.policy`.
#[derive(Clone, Debug, Deserialize, Serialize)]
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
    /// Per-team overrides of any setting but `team_attribute`, `max_teams`, `teams` and the
    /// series limiter's own (`cardinality.window`, `max_tracked_metrics`, `top_offenders`),
    /// deep-merged over this section (`null` removes a setting).
    #[serde(default, skip_serializing)]
    pub teams: BTreeMap<String, serde_yaml_ng::Value>,
    /// Teams with their own metric label; beyond this many, the rest are labelled `other`
    /// (default 1000).
    #[serde(default = "default_max_teams")]
    pub max_teams: usize,
    #[serde(default)]
    pub required_resource_attributes: Vec<Required>,
    #[serde(default)]
    pub attribute_limits: Option<AttributeLimitsConfig>,
    #[serde(default)]
    pub naming: Option<NamingConfig>,
    #[serde(default)]
    pub cardinality: Option<CardinalityConfig>,
}

fn default_team_attribute() -> String {
    "owner.team".into()
}

fn default_max_teams() -> usize {
    1000
}

/// `redaction`: on by default with every detector, the common secret key names, `mask`.
#[derive(Clone, Debug, Deserialize, Serialize)]
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
    /// Key patterns never touched (default: the ownership processor's own attributes, which
    /// come from the catalog, e.g. a team's contact address).
    #[serde(default = "default_allowed_keys")]
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
            allowed_keys: default_allowed_keys(),
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

fn default_allowed_keys() -> Vec<String> {
    vec![r"^owner\.(team|contact|oncall|system|repository|source)$".into()]
}

fn default_action() -> String {
    "mask".into()
}

/// One `required_resource_attributes` entry: a key, or a key and the value to fill in.
#[derive(Clone, Debug, Deserialize, Serialize)]
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
#[derive(Clone, Debug, Deserialize, Serialize)]
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

/// `naming`: patterns (RE2, unanchored unless anchored) names must match.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamingConfig {
    /// Metric names; enforced, a metric that does not match is refused with its points.
    #[serde(default)]
    pub metric_name: Option<String>,
    /// Attribute keys at every level; enforced, an attribute that does not match is dropped.
    #[serde(default)]
    pub attribute_key: Option<String>,
}

/// What happens to a point of a series past the limit, enforced.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnExceed {
    /// Refused (a partial success naming the metric and the team).
    #[default]
    Drop,
    /// Kept, with the boolean attribute `otel.metric.overflow=true`.
    OverflowAttribute,
}

/// `cardinality`: series limits per (team, metric name).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CardinalityConfig {
    /// Distinct series (resource and point attributes) per team and metric per window
    /// (default 2000).
    #[serde(default = "default_max_series")]
    pub max_series_per_metric: usize,
    /// The tumbling window (default 1h).
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    #[serde(default)]
    pub on_exceed: OnExceed,
    /// (team, metric) pairs tracked per window, which bounds the memory (default 10000); a
    /// pair past it is not limited in that window and counted as untracked.
    #[serde(default = "default_max_tracked")]
    pub max_tracked_metrics: usize,
    /// (team, metric) pairs with the most series exported as gauges (default 10).
    #[serde(default = "default_top_offenders")]
    pub top_offenders: usize,
}

fn default_max_series() -> usize {
    2000
}

fn default_window() -> Duration {
    Duration::from_secs(3600)
}

fn default_max_tracked() -> usize {
    10_000
}

fn default_top_offenders() -> usize {
    10
}

/// Deep-merges `over` into `base`: maps key by key, anything else replaced; `null` removes.
fn merge(base: &mut serde_yaml_ng::Value, over: &serde_yaml_ng::Value) {
    use serde_yaml_ng::Value as Y;
    match (base, over) {
        (Y::Mapping(b), Y::Mapping(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(x) = b.get_mut(k) {
                    merge(x, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

impl PolicyConfig {
    /// Checks serde cannot express: (key path relative to the processor, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = self.validate_one();
        if !errs.is_empty() {
            return errs;
        }
        for team in self.teams.keys() {
            match self.for_team(team) {
                Ok(c) => errs.extend(c.validate_one().into_iter().map(|(k, m)| (format!("teams.{team}.{k}"), m))),
                Err(e) => errs.push(e),
            }
        }
        errs
    }

    fn validate_one(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
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
        if let Some(c) = &self.cardinality {
            if c.max_series_per_metric == 0 {
                errs.push(("cardinality.max_series_per_metric".into(), "must be at least 1".into()));
            }
            if c.window.is_zero() {
                errs.push(("cardinality.window".into(), "must be longer than 0s".into()));
            }
            if c.max_tracked_metrics == 0 {
                errs.push(("cardinality.max_tracked_metrics".into(), "must be at least 1".into()));
            }
        }
        if let Err(e) = self.naming() {
            errs.push(e);
        }
        if let Err(e) = self.redactor() {
            errs.push(e);
        }
        errs
    }

    /// The mode of each team with an override (for the governance view).
    pub fn team_modes(&self) -> Vec<(String, &'static str)> {
        self.teams.keys().map(|t| (t.clone(), self.for_team(t).map_or(self.mode, |c| c.mode).as_str())).collect()
    }

    /// The settings of one team: its override deep-merged over the processor's.
    fn for_team(&self, team: &str) -> Result<PolicyConfig, (String, String)> {
        let at = |k: &str| format!("teams.{team}{}{k}", if k.is_empty() { "" } else { "." });
        let Some(over) = self.teams.get(team) else { return Ok(self.clone()) };
        if !over.is_mapping() && !over.is_null() {
            return Err((at(""), "a team's override is a map of the policy's settings".into()));
        }
        for k in ["team_attribute", "max_teams", "teams"] {
            if over.get(k).is_some() {
                return Err((at(k), "is one setting for every team: set it on the processor".into()));
            }
        }
        for k in ["window", "max_tracked_metrics", "top_offenders"] {
            if over.get("cardinality").and_then(|c| c.get(k)).is_some() {
                return Err((
                    at(&format!("cardinality.{k}")),
                    "belongs to the processor's one series limiter: set it on the processor".into(),
                ));
            }
        }
        let mut base = serde_yaml_ng::to_value(self).map_err(|e| (at(""), e.to_string()))?;
        // A team's `cardinality` without one on the processor starts from the defaults.
        if over.get("cardinality").is_some()
            && base.get("cardinality").is_none_or(|c| c.is_null())
            && let serde_yaml_ng::Value::Mapping(m) = &mut base
        {
            m.insert("cardinality".into(), serde_yaml_ng::Value::Mapping(Default::default()));
        }
        if !over.is_null() {
            merge(&mut base, over);
        }
        let mut c: PolicyConfig = serde_yaml_ng::from_value(base).map_err(|e| (at(""), e.to_string()))?;
        c.teams.clear();
        Ok(c)
    }

    fn naming(&self) -> Result<Option<Naming>, (String, String)> {
        let Some(n) = &self.naming else { return Ok(None) };
        let re = |k: &str, p: &Option<String>| {
            p.as_deref()
                .map(regex::Regex::new)
                .transpose()
                .map_err(|e| (format!("naming.{k}"), format!("invalid pattern: {e}")))
        };
        let n = Naming {
            metric_name: re("metric_name", &n.metric_name)?,
            attribute_key: re("attribute_key", &n.attribute_key)?,
        };
        Ok((!n.is_empty()).then_some(n))
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

/// One team's compiled policies (or the processor's, for every team without an override).
struct Policies {
    apply: Apply,
    required: Vec<Required>,
    naming: Option<Naming>,
    redactor: Option<Redactor>,
    /// The label of enforced redaction findings: `masked`, `hashed` or `dropped`.
    redacted: &'static str,
    limits: Option<Limits>,
    /// The series limit and what happens past it.
    series: Option<(usize, OnExceed)>,
}

impl Policies {
    fn new(cfg: &PolicyConfig) -> Result<Policies, String> {
        let e = |(k, m): (String, String)| format!("{k}: {m}");
        Ok(Policies {
            apply: match cfg.mode {
                Mode::Observe => Apply::Observe,
                Mode::Enforce => Apply::Enforce,
            },
            required: cfg.required_resource_attributes.clone(),
            naming: cfg.naming().map_err(e)?,
            redactor: cfg.redactor().map_err(e)?,
            redacted: match cfg.redaction.action.as_str() {
                "hash" => "hashed",
                "drop" => "dropped",
                _ => "masked",
            },
            limits: cfg.attribute_limits.as_ref().map(|l| Limits {
                max_count: l.max_count,
                max_value_length: l.max_value_length,
                resources: l.resources,
                data_points: l.data_points,
            }),
            series: cfg.cardinality.as_ref().map(|c| (c.max_series_per_metric, c.on_exceed)),
        })
    }

    fn is_empty(&self) -> bool {
        self.required.is_empty()
            && self.naming.is_none()
            && self.redactor.is_none()
            && self.limits.is_none()
            && self.series.is_none()
    }

    fn enforce(&self) -> bool {
        self.apply == Apply::Enforce
    }
}

/// Items refused in one request: the first reason in full, and how many others.
#[derive(Default)]
struct Refused {
    items: u64,
    message: String,
    more: u64,
}

impl Refused {
    fn add(&mut self, items: u64, why: impl FnOnce() -> String) {
        if items == 0 {
            return;
        }
        self.items += items;
        if self.message.is_empty() {
            self.message = why();
        } else {
            self.more += 1;
        }
    }

    fn message(&self) -> String {
        match self.more {
            0 => self.message.clone(),
            n => format!("{} (and {n} more refusal{})", self.message, if n > 1 { "s" } else { "" }),
        }
    }
}

/// The label sets of the published series gauges: (team, metric, top attribute key).
type Published = Vec<(String, String, Option<String>)>;

/// The series limiter and the gauges of its top offenders.
struct Series {
    limiter: SeriesLimiter,
    window: Duration,
    top: usize,
    /// When the gauges were last published, and the label sets they hold.
    published: Mutex<(Option<Instant>, Published)>,
}

pub struct PolicyProcessor {
    id: String,
    signal: Signal,
    team_attribute: String,
    max_teams: usize,
    default: Policies,
    teams: HashMap<String, Policies>,
    /// Policies the processor runs for no team: requests pass untouched.
    none: bool,
    series: Option<Series>,
    registry: Registry,
    labels: RwLock<HashSet<String>>,
}

/// How often the series gauges are refreshed, at most.
const PUBLISH_EVERY: Duration = Duration::from_secs(5);

impl PolicyProcessor {
    /// `cfg` has passed [`PolicyConfig::validate`].
    pub fn new(id: &str, signal: Signal, cfg: &PolicyConfig, registry: &Registry) -> Result<PolicyProcessor, String> {
        let default = Policies::new(cfg)?;
        let mut teams = HashMap::new();
        for team in cfg.teams.keys() {
            let c = cfg.for_team(team).map_err(|(k, m)| format!("{k}: {m}"))?;
            teams.insert(team.clone(), Policies::new(&c).map_err(|m| format!("teams.{team}.{m}"))?);
        }
        let any_series = default.series.is_some() || teams.values().any(|p| p.series.is_some());
        let series = (signal == Signal::Metrics && any_series).then(|| {
            let c = cfg.cardinality.clone().unwrap_or_else(|| {
                serde_yaml_ng::from_str("{}").unwrap_or_else(|_| unreachable!("every field has a default"))
            });
            Series {
                limiter: SeriesLimiter::new(c.window, c.max_tracked_metrics, Instant::now()),
                window: c.window,
                top: c.top_offenders,
                published: Mutex::new((None, Vec::new())),
            }
        });
        let none = default.is_empty() && teams.values().all(Policies::is_empty);
        Ok(PolicyProcessor {
            id: id.into(),
            signal,
            team_attribute: cfg.team_attribute.clone(),
            max_teams: cfg.max_teams,
            default,
            teams,
            none,
            series,
            registry: registry.clone(),
            labels: RwLock::new(HashSet::new()),
        })
    }

    fn team<'a>(&self, resource: Option<&'a Resource>) -> &'a str {
        attr_str(resource, &self.team_attribute).unwrap_or("")
    }

    fn policies(&self, team: &str) -> &Policies {
        self.teams.get(team).unwrap_or(&self.default)
    }

    /// The team's metric label: its name while fewer than `max_teams` are known, else `other`.
    fn team_label(&self, team: &str) -> String {
        if self.labels.read().unwrap_or_else(|e| e.into_inner()).contains(team) {
            return team.to_string();
        }
        let mut known = self.labels.write().unwrap_or_else(|e| e.into_inner());
        if known.len() < self.max_teams || known.contains(team) {
            known.insert(team.to_string());
            return team.to_string();
        }
        "other".into()
    }

    /// Counts one resource's findings: (rule, the action when enforced, count).
    fn count(&self, team: &str, p: &Policies, found: &[(&str, &'static str, u64)]) {
        if found.iter().all(|f| f.2 == 0) {
            return;
        }
        let team = self.team_label(team);
        for &(rule, enforced, n) in found.iter().filter(|f| f.2 > 0) {
            let labels = [
                ("policy", self.id.as_str()),
                ("rule", rule),
                ("team", team.as_str()),
                ("signal", self.signal.as_str()),
                ("action", if p.enforce() { enforced } else { "observed" }),
            ];
            self.registry
                .counter(
                    "sightline_policy_findings_total",
                    "Policy findings (sensitive values, attributes over the limits, missing attributes, bad names, series over the limit), by rule, team and what was done (observed in observe mode).",
                    &labels,
                )
                .add(n);
        }
    }

    fn redaction(&self, team: &str, p: &Policies, f: &Findings) {
        let found: Vec<(&str, &'static str, u64)> = f.iter().map(|(r, n)| (r.name(), p.redacted, n)).collect();
        self.count(team, p, &found);
    }

    fn over(&self, team: &str, p: &Policies, o: &Over) {
        self.count(
            team,
            p,
            &[("attribute_count", "dropped", o.dropped), ("attribute_value_length", "truncated", o.truncated)],
        );
    }

    /// Naming findings; a refused metric's points go to `refused`.
    fn naming(&self, team: &str, p: &Policies, b: &Broken, service: &str, refused: &mut Refused) {
        self.count(team, p, &[("metric_name", "refused", b.metrics), ("attribute_key", "dropped", b.keys)]);
        if p.enforce() {
            refused.add(b.points, || {
                format!(
                    "policy {}: {} points of metric {:?} of service {service:?} (team {team:?}) refused: the name does not match the naming rule",
                    self.id,
                    b.points,
                    b.first_metric.as_deref().unwrap_or_default()
                )
            });
        }
    }

    /// `required_resource_attributes` on one resource: observed, filled with the default, or
    /// refused (false: the caller removes the resource and refuses its `items`).
    fn required(
        &self,
        team: &str,
        p: &Policies,
        res: &mut Option<Resource>,
        items: u64,
        refused: &mut Refused,
    ) -> (bool, bool) {
        let attrs = res.as_ref().map_or(&[][..], |x| &x.attributes);
        let missing: Vec<&Required> = p
            .required
            .iter()
            .filter(|q| {
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
            return (true, false);
        }
        let unfilled: Vec<&str> = missing.iter().filter(|q| q.default().is_none()).map(|q| q.key()).collect();
        let filled = missing.len() - unfilled.len();
        self.count(
            team,
            p,
            &[
                ("required_attribute", "filled", filled as u64),
                ("required_attribute", "refused", unfilled.len() as u64),
            ],
        );
        if !p.enforce() {
            return (true, false);
        }
        if !unfilled.is_empty() {
            let service = attr_str(res.as_ref(), "service.name").unwrap_or("unknown");
            refused.add(items, || {
                format!(
                    "policy {}: {items} items of service {service:?} (team {team:?}) refused: the resource lacks the required attribute{} {}",
                    self.id,
                    if unfilled.len() > 1 { "s" } else { "" },
                    unfilled.join(", ")
                )
            });
            return (false, true);
        }
        let res = res.get_or_insert_with(Resource::default);
        for q in &missing {
            let v = Some(AnyValue { value: Some(Value::StringValue(q.default().unwrap_or_default().to_string())) });
            match res.attributes.iter_mut().find(|kv| kv.key == q.key()) {
                Some(kv) => kv.value = v,
                None => res.attributes.push(KeyValue { key: q.key().to_string(), value: v, ..Default::default() }),
            }
        }
        (true, true)
    }

    /// The series limits on one resource's metrics; whether anything changed.
    fn series(&self, team: &str, p: &Policies, rm: &mut ResourceMetrics, now: Instant, refused: &mut Refused) -> bool {
        let (Some(s), Some((limit, on_exceed))) = (&self.series, p.series) else { return false };
        let enforce = p.enforce();
        let resource = attrs_hash(rm.resource.as_ref().map_or(&[][..], |r| &r.attributes));
        let service = attr_str(rm.resource.as_ref(), "service.name").unwrap_or("unknown").to_string();
        let (mut over, mut untracked, mut changed) = (0u64, 0u64, false);
        for sm in &mut rm.scope_metrics {
            sm.metrics.retain_mut(|m| {
                let name = std::mem::take(&mut m.name);
                let had = sightline_policy::points::count(m);
                let mut here = 0u64;
                s.limiter.metric(now, team, &name, limit, resource, |check| {
                    sightline_policy::points::retain(m, &mut |attrs| match check(attrs) {
                        Admit::Within => true,
                        Admit::Untracked => {
                            untracked += 1;
                            true
                        }
                        Admit::Over => {
                            here += 1;
                            match (enforce, on_exceed) {
                                (false, _) => true,
                                (true, OnExceed::Drop) => false,
                                (true, OnExceed::OverflowAttribute) => {
                                    attrs.push(KeyValue {
                                        key: "otel.metric.overflow".into(),
                                        value: Some(AnyValue { value: Some(Value::BoolValue(true)) }),
                                        ..Default::default()
                                    });
                                    true
                                }
                            }
                        }
                    })
                });
                if here > 0 && enforce {
                    changed = true;
                    if on_exceed == OnExceed::Drop {
                        refused.add(here, || {
                            format!(
                                "policy {}: {here} points of metric {name:?} of service {service:?} (team {team:?}) refused: over the series limit of {limit} distinct series per metric per {}",
                                self.id,
                                humantime::format_duration(s.window)
                            )
                        });
                    }
                }
                over += here;
                m.name = name;
                had == 0 || sightline_policy::points::count(m) > 0
            });
        }
        if changed {
            rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
        }
        let action = match on_exceed {
            OnExceed::Drop => "dropped",
            OnExceed::OverflowAttribute => "marked",
        };
        self.count(team, p, &[("series_limit", action, over)]);
        if untracked > 0 {
            self.registry
                .counter(
                    "sightline_policy_series_untracked_total",
                    "Metric points not checked against the series limit: cardinality.max_tracked_metrics (team, metric) pairs were already tracked in the window.",
                    &[("policy", self.id.as_str())],
                )
                .add(untracked);
        }
        changed
    }

    /// Refreshes the gauges of the top offenders (at most every few seconds; one caller at a
    /// time, the others skip).
    fn publish(&self, now: Instant) {
        let Some(s) = &self.series else { return };
        let Ok(mut last) = s.published.try_lock() else { return };
        if last.0.is_some_and(|t| now.saturating_duration_since(t) < PUBLISH_EVERY) {
            return;
        }
        last.0 = Some(now);
        for (team, metric, key) in last.1.drain(..) {
            let l = [("policy", self.id.as_str()), ("team", team.as_str()), ("metric", metric.as_str())];
            self.registry.remove("sightline_policy_series", &l);
            if let Some(k) = key {
                let mut l = l.to_vec();
                l.push(("attribute", k.as_str()));
                self.registry.remove("sightline_policy_series_top_attribute_values", &l);
            }
        }
        for o in s.limiter.top(s.top) {
            let l = [("policy", self.id.as_str()), ("team", o.team.as_str()), ("metric", o.metric.as_str())];
            self.registry
                .gauge(
                    "sightline_policy_series",
                    "Distinct series in the current window of the (team, metric) pairs with the most (cardinality.top_offenders of them; estimated past the limit).",
                    &l,
                )
                .set(i64::try_from(o.series).unwrap_or(i64::MAX));
            if let Some((k, n)) = &o.top_key {
                let mut l = l.to_vec();
                l.push(("attribute", k.as_str()));
                self.registry
                    .gauge(
                        "sightline_policy_series_top_attribute_values",
                        "For a top (team, metric) pair over its series limit: the attribute key with the most distinct values, and their estimated number.",
                        &l,
                    )
                    .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
            last.1.push((o.team, o.metric, o.top_key.map(|k| k.0)));
        }
    }
}

/// What the wire pass found in one resource entry that needs no rewrite, counted once the
/// whole request has been read.
struct Pending<'a> {
    team: String,
    service: String,
    p: &'a Policies,
    seen: Seen,
    /// Required attributes missing: with a default, without.
    missing: (u64, u64),
}

impl PolicyProcessor {
    /// The policies read off the wire (`sightline_policy::scan`): per resource entry, whether
    /// enforcing changes it, and the findings of those it does not change. `None` when the
    /// request takes the decoding path whole: metrics with series limits (admission decides
    /// per point and is done once, by that path), or bytes the wire reader refuses.
    fn wire_pass<'a>(&'a self, signal: Signal, bytes: &[u8]) -> Option<(Vec<bool>, Vec<Pending<'a>>)> {
        if signal == Signal::Metrics && self.series.is_some() {
            return None;
        }
        let (mut needs, mut pending) = (Vec::new(), Vec::new());
        for f in wire::Fields::new(bytes) {
            let f = f.ok()?;
            if f.number != 1 {
                continue;
            }
            let entry = wire::expect_len(&f).ok()?;
            let attrs = scan::resource_attrs(entry).ok()?;
            let last = |k: &str| attrs.iter().rev().find(|(key, _)| *key == k).and_then(|(_, v)| v.as_str());
            let team = last(&self.team_attribute).unwrap_or("").to_string();
            let p = self.policies(&team);
            let missing = p.required.iter().filter(|q| scan::lacks(&attrs, q.key()));
            let (mut filled, mut unfilled) = (0u64, 0u64);
            for q in missing {
                if q.default().is_some() { filled += 1 } else { unfilled += 1 }
            }
            let scanner =
                Scanner { redactor: p.redactor.as_ref(), limits: p.limits.as_ref(), naming: p.naming.as_ref() };
            let seen = match signal {
                Signal::Traces => scanner.resource_spans(entry),
                Signal::Logs => scanner.resource_logs(entry),
                Signal::Metrics => scanner.resource_metrics(entry),
            }
            .ok()?;
            let need = p.enforce() && (seen.changes() || filled + unfilled > 0);
            needs.push(need);
            if !need {
                let service = last("service.name").unwrap_or("unknown").to_string();
                pending.push(Pending { team, service, p, seen, missing: (filled, unfilled) });
            }
        }
        Some((needs, pending))
    }

    /// Counts the findings of the entries the wire pass settled.
    fn count_pending(&self, pending: &[Pending<'_>]) {
        for x in pending {
            let (team, p) = (x.team.as_str(), x.p);
            self.count(
                team,
                p,
                &[("required_attribute", "filled", x.missing.0), ("required_attribute", "refused", x.missing.1)],
            );
            self.naming(team, p, &x.seen.broken, &x.service, &mut Refused::default());
            self.redaction(team, p, &x.seen.findings);
            self.over(team, p, &x.seen.over);
        }
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
        if self.none {
            return Ok(payload);
        }
        let bytes = payload.bytes();
        // Read off the wire first: a request that enforcing would not change (any request in
        // observe mode, or with nothing found) goes on with its bytes, never decoded.
        let needs = match self.wire_pass(payload.signal(), bytes) {
            Some((needs, pending)) => {
                self.count_pending(&pending);
                if !needs.iter().any(|n| *n) {
                    return Ok(payload);
                }
                Some(needs)
            }
            None => None,
        };
        let now = Instant::now();
        let mut refused = Refused::default();
        let mut changed = false;
        let mut index = 0usize;
        // Per resource: required attributes first (a refused resource needs nothing else),
        // naming, then redaction (a limit must not cut a secret into a fragment detectors
        // miss), the attribute limits, and last the series limits (which see the attributes as
        // they will be stored).
        macro_rules! run {
            ($t:ty, $list:ident, $items:expr, $walk:ident, $extra:expr) => {{
                let mut req = <$t>::decode(&bytes[..]).map_err(bad)?;
                req.$list.retain_mut(|r| {
                    index += 1;
                    if needs.as_ref().is_some_and(|n| !n.get(index - 1).copied().unwrap_or(true)) {
                        return true; // settled by the wire pass
                    }
                    let team = self.team(r.resource.as_ref()).to_string();
                    let p = self.policies(&team);
                    if !p.required.is_empty() {
                        let items = $items(&*r);
                        let (keep, c) = self.required(&team, p, &mut r.resource, items, &mut refused);
                        changed |= c;
                        if !keep {
                            return false;
                        }
                    }
                    if let Some(n) = &p.naming {
                        let (c, b) = n.$walk(r, p.apply);
                        let service = attr_str(r.resource.as_ref(), "service.name").unwrap_or("unknown");
                        self.naming(&team, p, &b, service, &mut refused);
                        changed |= c;
                    }
                    if let Some(x) = &p.redactor {
                        let (c, f) = x.$walk(r, p.apply);
                        self.redaction(&team, p, &f);
                        changed |= c;
                    }
                    if let Some(l) = &p.limits {
                        let (c, o) = l.$walk(r, p.apply);
                        self.over(&team, p, &o);
                        changed |= c;
                    }
                    changed |= $extra(&team, p, r, &mut refused);
                    true
                });
                changed.then(|| req.encode_to_vec())
            }};
        }
        let out = match payload.signal() {
            Signal::Traces => run!(
                ExportTraceServiceRequest,
                resource_spans,
                |r: &opentelemetry_proto::tonic::trace::v1::ResourceSpans| r
                    .scope_spans
                    .iter()
                    .map(|s| s.spans.len() as u64)
                    .sum::<u64>(),
                resource_spans,
                |_: &str, _: &Policies, _: &mut _, _: &mut Refused| false
            ),
            Signal::Logs => run!(
                ExportLogsServiceRequest,
                resource_logs,
                |r: &opentelemetry_proto::tonic::logs::v1::ResourceLogs| r
                    .scope_logs
                    .iter()
                    .map(|s| s.log_records.len() as u64)
                    .sum::<u64>(),
                resource_logs,
                |_: &str, _: &Policies, _: &mut _, _: &mut Refused| false
            ),
            Signal::Metrics => {
                let out = run!(
                    ExportMetricsServiceRequest,
                    resource_metrics,
                    |r: &ResourceMetrics| r
                        .scope_metrics
                        .iter()
                        .flat_map(|s| &s.metrics)
                        .map(sightline_policy::points::count)
                        .sum::<u64>(),
                    resource_metrics,
                    |team: &str, p: &Policies, r: &mut ResourceMetrics, refused: &mut Refused| {
                        self.series(team, p, r, now, refused)
                    }
                );
                self.publish(now);
                out
            }
        };
        Ok(match out {
            Some(b) => {
                // Redaction's `drop` removes attributes, never items; refusals do.
                let items = payload.items().saturating_sub(refused.items);
                let p = payload.with_bytes(bytes::Bytes::from(b), items);
                if refused.items > 0 { p.with_rejected(refused.items, refused.message()) } else { p }
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

    /// A findings counter's value.
    fn found(registry: &Registry, signal: &str, rule: &str, team: &str, action: &str) -> Option<i64> {
        registry.value(
            "sightline_policy_findings_total",
            &[("policy", "policy"), ("rule", rule), ("team", team), ("signal", signal), ("action", action)],
        )
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
        let n = |team: &str, rule: &str, action: &str| found(&registry, "traces", rule, team, action);
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
        let n = |team: &str, rule: &str, action: &str| found(&registry, "traces", rule, team, action);
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
        let n = |team: &str, action: &str| found(&registry, "traces", "required_attribute", team, action);
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
        assert_eq!(errs("cardinality: { max_series_per_metric: 0 }")[0].0, "cardinality.max_series_per_metric");
        assert_eq!(errs("naming: { metric_name: '(' }")[0].0, "naming.metric_name");
        assert_eq!(errs("attribute_limits: { max_value_length: 0 }")[0].0, "attribute_limits.max_value_length");
        assert!(errs("teams: { a: { cardinality: {} } }").is_empty());
        assert_eq!(errs("teams: { a: { cardinality: { window: 1m } } }")[0].0, "teams.a.cardinality.window");
        assert_eq!(errs("teams: { a: { max_teams: 3 } }")[0].0, "teams.a.max_teams");
        assert_eq!(errs("teams: { a: { redaction: { detectors: [ssn] } } }")[0].0, "teams.a.redaction.detectors.0");
        let e = errs("teams: { a: { moode: enforce } }");
        assert!(e[0].0 == "teams.a" && e[0].1.contains("moode"), "{e:?}");
        let dir = tempfile::tempdir().expect("tmp");
        let short = dir.path().join("k");
        std::fs::write(&short, "short\n").expect("write");
        let e = errs(&format!("redaction: {{ action: hash, hash_key_file: {} }}", short.display()));
        assert!(e[0].1.contains("at least 16"), "{e:?}");
    }

    fn gauge_request(points: &[(&str, &str, u32)]) -> Payload {
        use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, NumberDataPoint, ScopeMetrics, metric::Data};
        // (team, metric, user id): one resource per point, as a batch of many services would be.
        let req = ExportMetricsServiceRequest {
            resource_metrics: points
                .iter()
                .map(|(team, metric, user)| ResourceMetrics {
                    resource: Some(Resource {
                        attributes: vec![kv("owner.team", team), kv("service.name", "svc")],
                        ..Default::default()
                    }),
                    scope_metrics: vec![ScopeMetrics {
                        metrics: vec![Metric {
                            name: metric.to_string(),
                            data: Some(Data::Gauge(Gauge {
                                data_points: vec![NumberDataPoint {
                                    attributes: vec![kv("user.id", &user.to_string()), kv("route", "/a")],
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        Payload::new(Signal::Metrics, bytes::Bytes::from(req.encode_to_vec()), points.len() as u64, None)
    }

    fn points_of(p: &Payload) -> Vec<(String, Vec<KeyValue>)> {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let req = ExportMetricsServiceRequest::decode(&p.bytes()[..]).expect("decodes");
        let mut out = Vec::new();
        for rm in &req.resource_metrics {
            let team = attr_str(rm.resource.as_ref(), "owner.team").unwrap_or("").to_string();
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                if let Some(Data::Gauge(g)) = &m.data {
                    out.extend(g.data_points.iter().map(|d| (team.clone(), d.attributes.clone())));
                }
            }
        }
        out
    }

    #[test]
    fn series_over_the_limit_are_refused_per_team() {
        let registry = Registry::new();
        let c = cfg(
            "redaction: { enabled: false }\nmode: enforce\ncardinality: { max_series_per_metric: 1000, top_offenders: 2 }",
        );
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let p = PolicyProcessor::new("policy", Signal::Metrics, &c, &registry).expect("built");
        // 5,000 series of one metric from team a, in requests of 500, with team b's 100 mixed in.
        let (mut passed_a, mut passed_b, mut rejected) = (0, 0, 0);
        for chunk in 0..10u32 {
            let mut pts: Vec<(&str, &str, u32)> =
                (chunk * 500..(chunk + 1) * 500).map(|u| ("a", "logins", u)).collect();
            pts.extend((chunk * 10..(chunk + 1) * 10).map(|u| ("b", "logins", u)));
            let out = p.process(gauge_request(&pts)).expect("processed");
            let got = points_of(&out);
            passed_a += got.iter().filter(|(t, _)| t == "a").count();
            passed_b += got.iter().filter(|(t, _)| t == "b").count();
            assert_eq!(out.items() as usize, got.len());
            if let Some(r) = out.rejected() {
                rejected += r.items;
                assert!(
                    r.message.contains("\"logins\"") && r.message.contains("team \"a\"") && r.message.contains("1000"),
                    "{}",
                    r.message
                );
            }
        }
        assert_eq!((passed_a, passed_b, rejected), (1000, 100, 4000));
        // The first 1,000 series keep passing; a new one does not.
        let out =
            p.process(gauge_request(&[("a", "logins", 7), ("a", "logins", 999), ("a", "logins", 1000)])).expect("ok");
        assert_eq!(points_of(&out).len(), 2);
        let n = |team: &str, action: &str| found(&registry, "metrics", "series_limit", team, action);
        assert_eq!((n("a", "dropped"), n("b", "dropped")), (Some(4001), None));
        // The gauges were published on the first request: force a refresh.
        p.series.as_ref().expect("a limiter").published.lock().expect("lock").0 = None;
        p.publish(Instant::now());
        let series = registry.series("sightline_policy_series");
        assert_eq!(series.len(), 2, "bounded by top_offenders: {series:?}");
        let a = registry
            .value("sightline_policy_series", &[("policy", "policy"), ("team", "a"), ("metric", "logins")])
            .expect("team a's gauge");
        assert!((4000..=6000).contains(&a), "about 5000: {a}");
        let top = registry.series("sightline_policy_series_top_attribute_values");
        assert_eq!(top.len(), 1, "{top:?}");
        assert!(top[0].0.contains(&("attribute".to_string(), "user.id".to_string())), "{top:?}");
        registry.assert_compliant();
    }

    #[test]
    fn overflow_is_marked_and_observe_only_counts() {
        let registry = Registry::new();
        let c = cfg(
            "redaction: { enabled: false }\ncardinality: { max_series_per_metric: 2, on_exceed: overflow_attribute }\nteams: { a: { mode: enforce }, big: { mode: enforce, cardinality: { max_series_per_metric: 10 } } }",
        );
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let p = PolicyProcessor::new("policy", Signal::Metrics, &c, &registry).expect("built");
        let pts: Vec<(&str, &str, u32)> =
            (0..4).flat_map(|u| [("a", "m", u), ("b", "m", u), ("big", "m", u)]).collect();
        let out = p.process(gauge_request(&pts)).expect("processed");
        assert!(out.rejected().is_none());
        let got = points_of(&out);
        assert_eq!(got.len(), 12, "nothing dropped");
        let marked = |team: &str| {
            got.iter()
                .filter(|(t, a)| {
                    t == team
                        && a.iter().any(|kv| {
                            kv.key == "otel.metric.overflow"
                                && kv.value == Some(AnyValue { value: Some(Value::BoolValue(true)) })
                        })
                })
                .count()
        };
        assert_eq!((marked("a"), marked("b"), marked("big")), (2, 0, 0), "b observes; big has a limit of 10");
        let n = |team: &str, action: &str| found(&registry, "metrics", "series_limit", team, action);
        assert_eq!((n("a", "marked"), n("b", "observed"), n("big", "marked")), (Some(2), Some(2), None));
    }

    #[test]
    fn naming_refuses_metrics_and_drops_keys_in_enforce() {
        let registry = Registry::new();
        let c = cfg(
            "redaction: { enabled: false }\nnaming: { metric_name: '^[a-z][a-z0-9_.]*$', attribute_key: '^[a-z][a-z0-9_.]*$' }\nteams: { a: { mode: enforce } }",
        );
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let p = PolicyProcessor::new("policy", Signal::Metrics, &c, &registry).expect("built");
        let out = p.process(gauge_request(&[("a", "Logins", 1), ("a", "logins", 2), ("b", "Logins", 3)])).expect("ok");
        assert_eq!(points_of(&out).len(), 2, "a's Logins refused, b observes");
        let r = out.rejected().expect("refused");
        assert_eq!(r.items, 1);
        assert!(r.message.contains("\"Logins\"") && r.message.contains("team \"a\""), "{}", r.message);
        let n = |team: &str, rule: &str, action: &str| found(&registry, "metrics", rule, team, action);
        assert_eq!((n("a", "metric_name", "refused"), n("b", "metric_name", "observed")), (Some(1), Some(1)));
    }

    #[test]
    fn a_team_can_override_redaction() {
        let registry = Registry::new();
        let c = cfg(
            "mode: enforce\nteams: { search: { redaction: { enabled: false } }, ops: { redaction: { action: drop } } }",
        );
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let p = PolicyProcessor::new("policy", Signal::Traces, &c, &registry).expect("built");
        let out = p.process(request(&["payments", "search", "ops"])).expect("processed");
        assert_eq!(card_of(&out, 0), "*".repeat(19));
        assert_eq!(card_of(&out, 1), "4111 1111 1111 1111", "search turned redaction off");
        assert_eq!(card_of(&out, 2), "None", "ops drops the attribute");
    }
}
