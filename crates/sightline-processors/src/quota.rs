//! The `quota` processor: per-team ingest quotas (items/s and bytes/s, token buckets with a
//! burst), applied after ownership is known.
//!
//! It reads the team attribute (`owner.team` by default) that the `ownership` processor wrote
//! on each resource, so it must come after `ownership` in the pipeline (checked when the
//! configuration is validated). A request whose team is over its quota is refused with a
//! retryable error that names the team and the quota (HTTP 429 + `Retry-After`, gRPC
//! `RESOURCE_EXHAUSTED` + `RetryInfo`); other teams draw from their own buckets and are not
//! affected. A request that holds several teams' resources is admitted only when every one
//! of them is within quota, and charges each team for its own items and bytes.
//!
//! Buckets are per processor id and signal: a `quota` processor in the traces and the logs
//! pipelines gives each team a spans budget and a log records budget. A bucket holds up to
//! `burst` tokens and refills at the rate; a request is admitted while the bucket is not in
//! debt and then charged in full (so a request larger than the burst still passes when the
//! bucket is full, and the debt delays the team's next requests).

use serde::Deserialize;
use sightline_core::wire::{self, Fields, Value};
use sightline_core::{Counter, Payload, ProcessError, Processor, Registry, Signal};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// `processors.quota`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// The resource attribute that names the team (default `owner.team`, the `ownership`
    /// processor's default output).
    #[serde(default = "default_attribute")]
    pub team_attribute: String,
    /// The quota of every team without an entry in `teams` (default: none, unlimited).
    #[serde(default)]
    pub default: Option<Limit>,
    /// Quotas by team name.
    #[serde(default)]
    pub teams: BTreeMap<String, Limit>,
    /// Teams tracked with their own bucket and metric label when they have no entry in
    /// `teams`; beyond this many, the rest share one bucket labelled `other` (default 1000).
    /// Bounds memory and label cardinality if team values are not catalog names.
    #[serde(default = "default_max_teams")]
    pub max_teams: usize,
}

fn default_attribute() -> String {
    "owner.team".into()
}
fn default_max_teams() -> usize {
    1000
}

/// One team's quota for one signal. At least one of the rates must be set; an unset rate is
/// unlimited.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Items (spans, log records, metric data points) per second.
    #[serde(default)]
    pub items_per_second: Option<f64>,
    /// Bytes of OTLP protobuf per second.
    #[serde(default)]
    pub bytes_per_second: Option<f64>,
    /// The bucket's size in items (default: one second's worth, `items_per_second`).
    #[serde(default)]
    pub burst_items: Option<f64>,
    /// The bucket's size in bytes (default: one second's worth, `bytes_per_second`).
    #[serde(default)]
    pub burst_bytes: Option<f64>,
}

impl QuotaConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        if self.team_attribute.is_empty() {
            errs.push(("team_attribute".into(), "must not be empty".into()));
        }
        if let Some(d) = &self.default {
            d.validate("default", &mut errs);
        }
        for (team, l) in &self.teams {
            l.validate(&format!("teams.{team}"), &mut errs);
        }
        if self.default.is_none() && self.teams.is_empty() {
            errs.push(("teams".into(), "no quota configured: set `default` or at least one team".into()));
        }
        errs
    }
}

impl Limit {
    fn validate(&self, at: &str, errs: &mut Vec<(String, String)>) {
        let positive = |v: Option<f64>| v.is_none_or(|v| v.is_finite() && v > 0.0);
        for (k, v) in [
            ("items_per_second", self.items_per_second),
            ("bytes_per_second", self.bytes_per_second),
            ("burst_items", self.burst_items),
            ("burst_bytes", self.burst_bytes),
        ] {
            if !positive(v) {
                errs.push((format!("{at}.{k}"), "must be a positive number".into()));
            }
        }
        if self.items_per_second.is_none() && self.bytes_per_second.is_none() {
            errs.push((at.into(), "set items_per_second, bytes_per_second or both".into()));
        }
        if self.burst_items.is_some() && self.items_per_second.is_none() {
            errs.push((format!("{at}.burst_items"), "needs items_per_second".into()));
        }
        if self.burst_bytes.is_some() && self.bytes_per_second.is_none() {
            errs.push((format!("{at}.burst_bytes"), "needs bytes_per_second".into()));
        }
    }
}

/// A token bucket for one dimension.
#[derive(Clone, Copy, Debug)]
struct Tokens {
    rate: f64,
    burst: f64,
    level: f64,
}

impl Tokens {
    fn new(rate: Option<f64>, burst: Option<f64>) -> Option<Tokens> {
        let rate = rate?;
        let burst = burst.unwrap_or(rate);
        Some(Tokens { rate, burst, level: burst })
    }
    fn refill(&mut self, secs: f64) {
        self.level = (self.level + secs * self.rate).min(self.burst);
    }
    /// Seconds until the bucket is out of debt (0 when it is not in debt).
    fn wait(&self) -> f64 {
        if self.level >= 0.0 { 0.0 } else { -self.level / self.rate }
    }
}

struct State {
    items: Option<Tokens>,
    bytes: Option<Tokens>,
    last: Instant,
}

/// One team's bucket and counters for one (processor, signal).
struct Bucket {
    team: Arc<str>,
    limit: Limit,
    state: Mutex<State>,
    refused_requests: Counter,
    refused_items: Counter,
    refused_bytes: Counter,
}

impl Bucket {
    /// Refills to `now` and returns how long the team must wait (0 = within quota).
    fn check(&self, now: Instant) -> f64 {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let secs = now.saturating_duration_since(s.last).as_secs_f64();
        s.last = now;
        let State { items, bytes, .. } = &mut *s;
        let mut wait: f64 = 0.0;
        for t in [items, bytes].into_iter().flatten() {
            t.refill(secs);
            wait = wait.max(t.wait());
        }
        wait
    }
    fn charge(&self, items: u64, bytes: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = &mut s.items {
            t.level -= items as f64;
        }
        if let Some(t) = &mut s.bytes {
            t.level -= bytes as f64;
        }
    }
    fn describe(&self, signal: Signal) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.limit.items_per_second {
            parts.push(format!("{r} {}/s", signal.item_name()));
        }
        if let Some(r) = self.limit.bytes_per_second {
            parts.push(format!("{r} bytes/s"));
        }
        parts.join(", ")
    }
}

/// The `quota` processor for one signal.
pub struct QuotaProcessor {
    id: String,
    signal: Signal,
    cfg: QuotaConfig,
    registry: Registry,
    buckets: RwLock<HashMap<Arc<str>, Arc<Bucket>>>,
    /// Shared by teams beyond `max_teams`.
    other: Option<Arc<Bucket>>,
}

impl QuotaProcessor {
    pub fn new(id: &str, signal: Signal, cfg: &QuotaConfig, registry: &Registry) -> Self {
        let p = QuotaProcessor {
            id: id.into(),
            signal,
            cfg: cfg.clone(),
            registry: registry.clone(),
            buckets: RwLock::new(HashMap::new()),
            other: None,
        };
        let mut map = HashMap::new();
        for (team, l) in &cfg.teams {
            let b = p.bucket(team, *l);
            map.insert(b.team.clone(), b);
        }
        let other = cfg.default.map(|d| p.bucket("other", d));
        QuotaProcessor { buckets: RwLock::new(map), other, ..p }
    }

    fn bucket(&self, team: &str, limit: Limit) -> Arc<Bucket> {
        let labels: &[(&str, &str)] = &[("processor", &self.id), ("signal", self.signal.as_str()), ("team", team)];
        let item = self.signal.item_name();
        Arc::new(Bucket {
            team: team.into(),
            limit,
            state: Mutex::new(State {
                items: Tokens::new(limit.items_per_second, limit.burst_items),
                bytes: Tokens::new(limit.bytes_per_second, limit.burst_bytes),
                last: Instant::now(),
            }),
            refused_requests: self.registry.counter(
                "sightline_quota_refused_requests_total",
                "Requests refused because a team was over its quota.",
                labels,
            ),
            refused_items: self.registry.counter(
                &format!("sightline_quota_refused_{item}_total"),
                "Items in requests refused because a team was over its quota.",
                labels,
            ),
            refused_bytes: self.registry.counter(
                "sightline_quota_refused_bytes_total",
                "Bytes of OTLP protobuf in requests refused because a team was over its quota.",
                labels,
            ),
        })
    }

    /// The bucket of `team`, or `None` if the team has no quota.
    fn lookup(&self, team: &str) -> Option<Arc<Bucket>> {
        if let Some(b) = self.buckets.read().unwrap_or_else(|e| e.into_inner()).get(team) {
            return Some(b.clone());
        }
        let limit = self.cfg.default?;
        let mut map = self.buckets.write().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.get(team) {
            return Some(b.clone());
        }
        if map.len() >= self.cfg.teams.len() + self.cfg.max_teams {
            return self.other.clone();
        }
        let b = self.bucket(team, limit);
        map.insert(b.team.clone(), b.clone());
        Some(b)
    }
}

/// The string value of resource attribute `key` in one `Resource*` message.
fn team_of<'a>(rx: &'a [u8], key: &str) -> Option<&'a str> {
    let mut team = None;
    for f in Fields::new(rx) {
        let Ok(f) = f else { return team };
        if f.number != 1 {
            continue;
        }
        let Value::Len(resource) = f.value else { continue };
        for a in wire::attributes(resource, 1).flatten() {
            if a.key == key {
                team = a.value.as_str();
            }
        }
    }
    team
}

impl Processor for QuotaProcessor {
    fn process(&self, payload: Payload) -> Result<Payload, ProcessError> {
        let buf = payload.bytes();
        // The teams of the request's resources, with the items and bytes of each.
        let mut teams: Vec<(&str, &[u8])> = Vec::new();
        for f in Fields::new(buf) {
            let f = f.map_err(|e| ProcessError::Invalid(e.to_string()))?;
            if let (1, Value::Len(rx)) = (f.number, f.value) {
                teams.push((team_of(rx, &self.cfg.team_attribute).unwrap_or(""), f.raw));
            }
        }
        let single = teams.windows(2).all(|w| w[0].0 == w[1].0);
        let mut charges: Vec<(Arc<Bucket>, u64, u64)> = Vec::with_capacity(if single { 1 } else { teams.len() });
        if single {
            if let Some(b) = teams.first().and_then(|(t, _)| self.lookup(t)) {
                charges.push((b, payload.items(), payload.len() as u64));
            }
        } else {
            for (team, raw) in &teams {
                let Some(b) = self.lookup(team) else { continue };
                // Each resource entry is a valid request of its own: count its items.
                let items = wire::inspect(self.signal, raw).map(|s| s.items).unwrap_or(0);
                match charges.iter_mut().find(|(c, _, _)| Arc::ptr_eq(c, &b)) {
                    Some(c) => {
                        c.1 += items;
                        c.2 += raw.len() as u64;
                    }
                    None => charges.push((b, items, raw.len() as u64)),
                }
            }
        }
        let now = Instant::now();
        let over = charges.iter().map(|(b, _, _)| (b, b.check(now))).find(|(_, wait)| *wait > 0.0);
        if let Some((b, wait)) = over {
            for (c, items, bytes) in &charges {
                if Arc::ptr_eq(c, b) {
                    c.refused_requests.inc();
                    c.refused_items.add(*items);
                    c.refused_bytes.add(*bytes);
                }
            }
            return Err(ProcessError::Retryable {
                message: format!(
                    "team {:?} is over its {} quota ({}); retry later",
                    &*b.team,
                    self.signal.as_str(),
                    b.describe(self.signal)
                ),
                retry_after_secs: wait.ceil().max(1.0) as u64,
            });
        }
        for (b, items, bytes) in &charges {
            b.charge(*items, *bytes);
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    fn spans(team: &str, n: usize) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("owner.team", team)], ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: vec![1; 16],
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        name: "op".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn payload(rs: Vec<ResourceSpans>) -> Payload {
        let buf = ExportTraceServiceRequest { resource_spans: rs }.encode_to_vec();
        let items = wire::inspect(Signal::Traces, &buf).unwrap().items;
        Payload::new(Signal::Traces, Bytes::from(buf), items, None)
    }

    fn cfg(yaml: &str) -> QuotaConfig {
        let c: QuotaConfig = serde_yaml_ng::from_str(yaml).unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        c
    }

    #[test]
    fn a_team_over_quota_is_refused_by_name_and_others_are_not() {
        let reg = Registry::new();
        // A rate so low that nothing refills during the test.
        let c = cfg("teams: { payments: { items_per_second: 0.001, burst_items: 10 } }");
        let p = QuotaProcessor::new("quota", Signal::Traces, &c, &reg);
        assert!(p.process(payload(vec![spans("payments", 6)])).is_ok());
        assert!(p.process(payload(vec![spans("payments", 6)])).is_ok(), "admitted while not in debt");
        let err = p.process(payload(vec![spans("payments", 1)])).unwrap_err();
        let ProcessError::Retryable { message, retry_after_secs } = err else { panic!("{err:?}") };
        assert!(message.contains("\"payments\"") && message.contains("0.001 spans/s"), "{message}");
        assert!(retry_after_secs >= 1);
        // Another team (no quota configured, no default) is unaffected.
        for _ in 0..5 {
            assert!(p.process(payload(vec![spans("search", 100)])).is_ok());
        }
        let labels = [("processor", "quota"), ("signal", "traces"), ("team", "payments")];
        assert_eq!(reg.value("sightline_quota_refused_requests_total", &labels), Some(1));
        assert_eq!(reg.value("sightline_quota_refused_spans_total", &labels), Some(1));
        reg.assert_compliant();
    }

    #[test]
    fn the_default_quota_gives_each_team_its_own_bucket() {
        let reg = Registry::new();
        let c = cfg("default: { items_per_second: 0.001, burst_items: 5 }");
        let p = QuotaProcessor::new("quota", Signal::Traces, &c, &reg);
        assert!(p.process(payload(vec![spans("a", 6)])).is_ok(), "larger than the burst: passes on a full bucket");
        assert!(p.process(payload(vec![spans("a", 1)])).is_err());
        assert!(p.process(payload(vec![spans("b", 6)])).is_ok(), "b has its own bucket");
        assert!(p.process(payload(vec![spans("b", 1)])).is_err());
    }

    #[test]
    fn bytes_quota_and_mixed_requests_charge_each_team() {
        let reg = Registry::new();
        let c = cfg(
            "teams: { a: { items_per_second: 0.001, burst_items: 4 }, b: { items_per_second: 0.001, burst_items: 100 } }",
        );
        let p = QuotaProcessor::new("quota", Signal::Traces, &c, &reg);
        // 3 spans of a and 50 of b: both within quota; a is charged 3, b 50.
        assert!(p.process(payload(vec![spans("a", 3), spans("b", 50)])).is_ok());
        assert!(p.process(payload(vec![spans("a", 1)])).is_ok(), "a: 1 token left");
        // a is now exactly at 0: not in debt, so one more request passes and puts it in debt.
        assert!(p.process(payload(vec![spans("a", 1)])).is_ok());
        // A mixed request with a in debt is refused as a whole, naming a.
        let err = p.process(payload(vec![spans("b", 1), spans("a", 1)])).unwrap_err();
        assert!(err.to_string().contains("\"a\""), "{err}");
        assert!(p.process(payload(vec![spans("b", 40)])).is_ok(), "b was not charged for the refused request");
        let c = cfg("teams: { a: { bytes_per_second: 1, burst_bytes: 100 } }");
        let p = QuotaProcessor::new("quota", Signal::Traces, &c, &reg);
        assert!(p.process(payload(vec![spans("a", 10)])).is_ok());
        let err = p.process(payload(vec![spans("a", 1)])).unwrap_err();
        assert!(err.to_string().contains("1 bytes/s"), "{err}");
    }

    #[test]
    fn tokens_refill_at_the_rate() {
        let mut t = Tokens::new(Some(10.0), Some(20.0)).unwrap();
        t.level = -5.0;
        assert!((t.wait() - 0.5).abs() < 1e-9);
        t.refill(1.0);
        assert!((t.level - 5.0).abs() < 1e-9);
        t.refill(100.0);
        assert!((t.level - 20.0).abs() < 1e-9, "capped at the burst");
    }

    #[test]
    fn beyond_max_teams_share_one_bucket() {
        let reg = Registry::new();
        let c = cfg("max_teams: 2\ndefault: { items_per_second: 0.001, burst_items: 3 }");
        let p = QuotaProcessor::new("quota", Signal::Traces, &c, &reg);
        assert!(p.process(payload(vec![spans("t1", 1)])).is_ok());
        assert!(p.process(payload(vec![spans("t2", 1)])).is_ok());
        assert!(p.process(payload(vec![spans("t3", 4)])).is_ok());
        let err = p.process(payload(vec![spans("t4", 1)])).unwrap_err();
        assert!(err.to_string().contains("\"other\""), "t3 and t4 share the other bucket: {err}");
    }

    #[test]
    fn invalid_configs_are_reported() {
        let c: QuotaConfig = serde_yaml_ng::from_str("teams: { a: { burst_items: 3 } }").unwrap();
        let errs = c.validate();
        assert!(errs.iter().any(|(k, _)| k == "teams.a"), "{errs:?}");
        assert!(errs.iter().any(|(k, _)| k == "teams.a.burst_items"), "{errs:?}");
        let c: QuotaConfig = serde_yaml_ng::from_str("default: { items_per_second: -1 }").unwrap();
        assert!(c.validate().iter().any(|(k, _)| k == "default.items_per_second"));
        let c: QuotaConfig = serde_yaml_ng::from_str("{}").unwrap();
        assert!(!c.validate().is_empty());
    }
}
