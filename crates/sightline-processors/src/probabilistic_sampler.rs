//! `processors.probabilistic_sampler` for traces and logs, as the collector contrib's
//! `probabilisticsamplerprocessor` (v0.161): the same decision for the same span, so agents
//! and gateways of a mixed fleet agree, in its three modes:
//!
//! - `hash_seed` (the default): FNV-1a of the seed and the trace id gives 14 bits of
//!   randomness, compared with `sampling_percentage` scaled to 16384 buckets;
//! - `proportional` and `equalizing`: OpenTelemetry consistent probability sampling on the
//!   trace id's last 56 bits (or the `rv` in the span's `tracestate`), the threshold rounded to
//!   `sampling_precision` hex digits.
//!
//! A sampled span's `tracestate` gets the `ot=rv:...;th:...` values the collector writes (a log
//! record, its `sampling.randomness` / `sampling.threshold` attributes); logs hash the record's
//! trace id (`attribute_source: traceID`) or the `from_attribute` value, and their
//! `sampling_priority` attribute names a minimum percentage. A span whose randomness cannot be read (an empty trace id, a malformed tracestate, `rv` or
//! `th` already present in `hash_seed` mode) is dropped when `fail_closed` (default) and kept
//! otherwise; `sampling.priority` (0: drop; > 0: keep) overrides the decision.

use crate::lazy::{Heads, LazyRequest};
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Pv;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde::Deserialize;
use sightline_core::pipeline::{ProcessError, Processor};
use sightline_core::{Counter, Payload, Registry, Signal};
use sightline_ottl::Val;
use sightline_ottl::slot::Slot;

const MAX: u64 = 1 << 56;
const HASH_BUCKETS: u32 = 0x4000;
const MIN_PROBABILITY: f64 = 1.0 / MAX as f64;

fn default_true() -> bool {
    true
}
fn default_precision() -> i32 {
    4
}

/// `processors.probabilistic_sampler`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticSamplerConfig {
    #[serde(default)]
    pub sampling_percentage: f32,
    #[serde(default)]
    pub hash_seed: u32,
    #[serde(default)]
    pub mode: String,
    #[serde(default = "default_true")]
    pub fail_closed: bool,
    #[serde(default = "default_precision")]
    pub sampling_precision: i32,
    /// Logs: hash the trace id (`traceID`, default) or `from_attribute` (`record`).
    #[serde(default)]
    pub attribute_source: String,
    #[serde(default)]
    pub from_attribute: String,
    #[serde(default)]
    pub sampling_priority: String,
}

impl ProbabilisticSamplerConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let pct = f64::from(self.sampling_percentage);
        if !pct.is_finite() {
            errs.push(("sampling_percentage".into(), format!("sampling rate is invalid: {pct}%")));
        } else if pct < 0.0 {
            errs.push(("sampling_percentage".into(), format!("sampling rate is negative: {pct}%")));
        } else if pct > 0.0 && pct / 100.0 < MIN_PROBABILITY {
            errs.push(("sampling_percentage".into(), format!("sampling rate is too small: {pct}%")));
        }
        if !matches!(self.mode.as_str(), "" | "hash_seed" | "equalizing" | "proportional") {
            errs.push((
                "mode".into(),
                format!("unsupported sampler mode {:?}: use hash_seed, equalizing or proportional", self.mode),
            ));
        }
        if !matches!(self.attribute_source.as_str(), "" | "traceID" | "record") {
            errs.push((
                "attribute_source".into(),
                format!("invalid attribute source: {}. Expected: traceID or record", self.attribute_source),
            ));
        }
        if self.sampling_precision == 0 {
            errs.push(("sampling_precision".into(), "invalid sampling precision: 0".into()));
        } else if self.sampling_precision > 14 {
            errs.push((
                "sampling_precision".into(),
                format!("sampling precision is too great, should be <= 14: {}", self.sampling_precision),
            ));
        }
        errs
    }

    /// Traces and logs; a metrics pipeline is refused (the collector has no metrics sampler).
    pub fn validate_for(&self, signal: Signal) -> Result<(), (String, String)> {
        if signal == Signal::Metrics { Err(("".into(), "samples traces and logs, not metrics".into())) } else { Ok(()) }
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Never,
    Hash { seed: u32, threshold: u64 },
    Equalizing { threshold: u64 },
    Proportional { ratio: f64, precision: i32 },
}

/// Go's `math.Frexp` exponent: `x = f * 2^exp` with `f` in [0.5, 1).
fn frexp_exp(x: f64) -> i32 {
    if x == 0.0 || !x.is_finite() {
        return 0;
    }
    let bits = x.abs().to_bits();
    let e = ((bits >> 52) & 0x7ff) as i32;
    if e == 0 {
        // Subnormal: scale into the normal range first.
        return frexp_exp(x * (1u64 << 54) as f64) - 54;
    }
    e - 1022
}

/// `sampling.ProbabilityToThresholdWithPrecision`; `None` out of range.
fn probability_to_threshold(fraction: f64, precision: i32) -> Option<u64> {
    let precision = if precision == 0 { 14 } else { precision };
    if !(MIN_PROBABILITY..=1.0).contains(&fraction) {
        return None;
    }
    if fraction == 1.0 {
        return Some(0);
    }
    let exp_f = frexp_exp(fraction);
    let exp_r = frexp_exp(1.0 - fraction);
    let precision = 14.min((precision + exp_f / -4).max(precision + exp_r / -4));
    let scaled = (fraction * MAX as f64).round() as u64;
    let mut threshold = MAX - scaled;
    let shift = 4 * (14 - precision);
    if shift != 0 {
        threshold += 1 << (shift - 1);
        threshold >>= shift;
        threshold <<= shift;
    }
    Some(threshold)
}

fn probability(threshold: u64) -> f64 {
    (MAX - threshold) as f64 / MAX as f64
}

/// A threshold's `th` value: 14 hex digits, trailing zeros trimmed; "0" always samples.
fn t_value(threshold: u64) -> String {
    match threshold {
        0 => "0".into(),
        MAX => String::new(),
        t => format!("{t:014x}").trim_end_matches('0').to_string(),
    }
}

fn r_value(rnd: u64) -> String {
    format!("{rnd:014x}")
}

fn fnv1a32(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for p in parts {
        for b in *p {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// The collector's `randomnessFromBytes`: 14 hashed bits on top, the rest mixed.
fn randomness_from_bytes(b: &[u8], seed: u32) -> u64 {
    let h = fnv1a32(&[&seed.to_le_bytes(), b]);
    let hashed = u64::from(h & (HASH_BUCKETS - 1));
    let rprime14 = u64::from(HASH_BUCKETS) - 1 - hashed;
    let unused18 = u64::from(h >> (32 - 14));
    let mixed28 = unused18 ^ (unused18 << 10);
    (rprime14 << 42) | (mixed28 << 14) | hashed
}

/// `sampling.TraceIDToRandomness`: the trace id's last 56 bits.
fn trace_id_randomness(tid: &[u8]) -> Option<u64> {
    let last: [u8; 8] = tid.get(8..16)?.try_into().ok()?;
    Some(u64::from_be_bytes(last) & (MAX - 1))
}

/// The `ot` member of a W3C tracestate, parsed, and the other members.
#[derive(Default)]
struct TraceState {
    rv: Option<(String, u64)>,
    th: Option<(String, u64)>,
    ot_extra: Vec<(String, String)>,
    others: Vec<(String, String)>,
}

fn valid_ot_key(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty() && b[0].is_ascii_lowercase() && b[1..].iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn valid_ot_value(v: &str) -> bool {
    v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
}

impl TraceState {
    /// `Err` when the tracestate (or its `ot` member) is malformed.
    fn parse(s: &str) -> Result<TraceState, ()> {
        let mut ts = TraceState::default();
        if s.is_empty() {
            return Ok(ts);
        }
        if s.len() > 1024 {
            return Err(());
        }
        let mut n = 0;
        for member in s.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            n += 1;
            if n >= 32 {
                return Err(());
            }
            let Some((k, v)) = member.split_once('=') else { return Err(()) };
            let key_ok = !k.is_empty()
                && k.len() <= 256
                && k.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/@".contains(&c));
            let value_ok = !v.is_empty()
                && v.len() <= 256
                && v.bytes().all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
                && !v.ends_with(' ');
            if !key_ok || !value_ok {
                return Err(());
            }
            if k == "ot" {
                if v.len() > 256 || v.ends_with(';') {
                    return Err(());
                }
                for m in v.split(';') {
                    let Some((ok, ov)) = m.split_once(':') else { return Err(()) };
                    if !valid_ot_key(ok) || !valid_ot_value(ov) {
                        return Err(());
                    }
                    match ok {
                        "rv" => {
                            if ov.len() != 14 {
                                return Err(());
                            }
                            let r = u64::from_str_radix(ov, 16).map_err(|_| ())?;
                            ts.rv = Some((ov.to_string(), r));
                        }
                        "th" => {
                            if ov.is_empty() || ov.len() > 14 {
                                return Err(());
                            }
                            let t = u64::from_str_radix(ov, 16).map_err(|_| ())?;
                            ts.th = Some((ov.to_string(), t << (4 * (14 - ov.len()))));
                        }
                        _ => ts.ot_extra.push((ok.to_string(), ov.to_string())),
                    }
                }
            } else {
                ts.others.push((k.to_string(), v.to_string()));
            }
        }
        Ok(ts)
    }

    fn serialize(&self) -> String {
        let mut ot = Vec::new();
        if let Some((rv, _)) = &self.rv {
            ot.push(format!("rv:{rv}"));
        }
        if let Some((th, _)) = &self.th {
            ot.push(format!("th:{th}"));
        }
        for (k, v) in &self.ot_extra {
            ot.push(format!("{k}:{v}"));
        }
        let mut members = Vec::new();
        if !ot.is_empty() {
            members.push(format!("ot={}", ot.join(";")));
        }
        for (k, v) in &self.others {
            members.push(format!("{k}={v}"));
        }
        members.join(",")
    }
}

pub struct ProbabilisticSampler {
    mode: Mode,
    fail_closed: bool,
    /// Logs: hash the record's trace id (`attribute_source: traceID`, the default).
    logs_trace_id: bool,
    /// Logs: the attribute hashed when there is no trace id (`from_attribute`).
    from_attribute: String,
    /// Logs: the attribute whose number is the minimum sampling percentage (`sampling_priority`).
    priority_attribute: String,
    precision: i32,
    sampled: Counter,
    not_sampled: Counter,
}

impl ProbabilisticSampler {
    pub fn new(
        id: &str,
        cfg: &ProbabilisticSamplerConfig,
        signal: Signal,
        registry: &Registry,
    ) -> ProbabilisticSampler {
        let pct = cfg.sampling_percentage.min(100.0);
        let ratio = (f64::from(pct) / 100.0).max(MIN_PROBABILITY);
        let mode = if pct == 0.0 {
            Mode::Never
        } else {
            match cfg.mode.as_str() {
                "equalizing" => {
                    Mode::Equalizing { threshold: probability_to_threshold(ratio, cfg.sampling_precision).unwrap_or(0) }
                }
                "proportional" => Mode::Proportional { ratio, precision: cfg.sampling_precision },
                _ => {
                    // In float32, as the collector computes it.
                    let scaled = (pct * (HASH_BUCKETS as f32 / 100.0)) as u32;
                    if scaled == 0 {
                        Mode::Never
                    } else {
                        Mode::Hash { seed: cfg.hash_seed, threshold: u64::from(HASH_BUCKETS - scaled) << 42 }
                    }
                }
            }
        };
        let (help, name) = match signal {
            Signal::Logs => (
                "Count of logs that were sampled or not by the probabilistic sampler",
                "otelcol_processor_probabilistic_sampler_count_logs_sampled",
            ),
            _ => (
                "Count of spans that were sampled or not by the probabilistic sampler",
                "otelcol_processor_probabilistic_sampler_count_traces_sampled",
            ),
        };
        ProbabilisticSampler {
            mode,
            fail_closed: cfg.fail_closed,
            logs_trace_id: matches!(cfg.attribute_source.as_str(), "" | "traceID"),
            from_attribute: cfg.from_attribute.clone(),
            priority_attribute: cfg.sampling_priority.clone(),
            precision: cfg.sampling_precision,
            sampled: registry.counter(name, help, &[("processor", id), ("sampled", "true")]),
            not_sampled: registry.counter(name, help, &[("processor", id), ("sampled", "false")]),
        }
    }

    /// Whether to keep the span, and its new tracestate when it changes.
    fn decide(&self, slot: &Slot<Span>) -> (bool, Option<String>) {
        let view = slot.view();
        let tid = view.trace_id;
        let tid_empty = tid.iter().all(|b| *b == 0);
        let parsed = TraceState::parse(view.trace_state);
        // (randomness, carrier, error?)
        let (rnd, mut carrier, mut failed): (Option<u64>, Option<TraceState>, bool) = match self.mode {
            Mode::Hash { seed, .. } => {
                let rnd = (!tid_empty).then(|| randomness_from_bytes(tid, seed));
                match parsed {
                    Err(()) => (rnd, None, true),
                    Ok(ts) if ts.rv.is_some() || ts.th.is_some() => (rnd, None, true),
                    Ok(mut ts) => {
                        let r = rnd.unwrap_or(MAX - 1);
                        ts.rv = Some((r_value(r), r));
                        (rnd, Some(ts), false)
                    }
                }
            }
            Mode::Never => match parsed {
                Err(()) => (Some(MAX - 1), None, true),
                Ok(ts) => (Some(MAX - 1), Some(ts), false),
            },
            Mode::Equalizing { .. } | Mode::Proportional { .. } => match parsed {
                Err(()) => (None, None, false),
                Ok(ts) => {
                    let rnd = match &ts.rv {
                        Some((_, r)) => Some(*r),
                        None if !tid_empty => trace_id_randomness(tid),
                        None => None,
                    };
                    (rnd, Some(ts), false)
                }
            },
        };
        // consistencyCheck
        if !failed {
            match rnd {
                None => failed = true,
                Some(r) => {
                    if let Some(ts) = &mut carrier
                        && let Some((_, th)) = ts.th
                        && th > r
                    {
                        ts.th = None;
                        failed = true;
                    }
                }
            }
        }
        let mut threshold = if failed {
            if self.fail_closed { MAX } else { 0 }
        } else {
            match self.mode {
                Mode::Never => MAX,
                Mode::Hash { threshold, .. } => threshold,
                Mode::Equalizing { threshold } => match carrier.as_ref().and_then(|c| c.th.as_ref()) {
                    Some((_, tv)) if threshold < *tv => *tv,
                    _ => threshold,
                },
                Mode::Proportional { ratio, precision } => {
                    let incoming = carrier.as_ref().and_then(|c| c.th.as_ref()).map_or(1.0, |(_, t)| probability(*t));
                    probability_to_threshold(incoming * ratio, precision).unwrap_or(MAX)
                }
            }
        };
        // sampling.priority
        let priority = match slot.attr("sampling.priority") {
            Val::Int(0) => Some(false),
            Val::Int(i) if i > 0 => Some(true),
            Val::Float(0.0) => Some(false),
            Val::Float(f) if f > 0.0 => Some(true),
            Val::Str(s) => match s.parse::<f64>() {
                Ok(0.0) => Some(false),
                Ok(f) if f > 0.0 => Some(true),
                _ => None,
            },
            _ => None,
        };
        match priority {
            Some(false) => threshold = MAX,
            Some(true) => threshold = 0,
            None => {}
        }
        let rnd = rnd.unwrap_or(MAX - 1);
        let sampled = threshold <= rnd;
        let mut new_state = None;
        if sampled && let Some(mut ts) = carrier {
            let inconsistent = matches!(&ts.th, Some((_, old)) if *old > threshold);
            if !inconsistent {
                ts.th = (threshold != MAX).then(|| (t_value(threshold), threshold));
            }
            let s = ts.serialize();
            if s != view.trace_state {
                new_state = Some(s);
            }
        }
        (sampled, new_state)
    }
}

/// A log record's sampling attributes (`sampling.threshold`, `sampling.randomness`).
struct RecordCarrier {
    th: Option<u64>,
    rv: Option<u64>,
}

fn attr_str<'a>(slot: &'a Slot<LogRecord>, key: &str) -> Option<std::borrow::Cow<'a, str>> {
    match slot.attr(key) {
        Val::Str(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

impl ProbabilisticSampler {
    /// The collector's logs decision; edits the record's sampling attributes as it does.
    fn decide_log(&self, slot: &mut Slot<LogRecord>) -> bool {
        let view = slot.view();
        let tid = view.trace_id;
        let tid_empty = tid.iter().all(|b| *b == 0);
        // newLogRecordCarrier
        let mut parse_err = false;
        let mut carrier = RecordCarrier { th: None, rv: None };
        if let Some(t) = attr_str(slot, "sampling.threshold") {
            match (t.len() <= 14).then(|| u64::from_str_radix(&t, 16).ok()).flatten() {
                Some(v) => carrier.th = Some(v << (4 * (14 - t.len()))),
                None => parse_err = true,
            }
        }
        if let Some(r) = attr_str(slot, "sampling.randomness") {
            match (r.len() == 14).then(|| u64::from_str_radix(&r, 16).ok()).flatten() {
                Some(v) => carrier.rv = Some(v),
                None => parse_err = true,
            }
        }
        let mut set_rv: Option<u64> = None;
        let (rnd, mut carrier, mut failed) = match self.mode {
            Mode::Hash { seed, .. } => {
                let mut rnd = None;
                if self.logs_trace_id && !tid_empty {
                    rnd = Some(randomness_from_bytes(tid, seed));
                }
                if rnd.is_none() && !self.from_attribute.is_empty() {
                    let bytes: Option<Vec<u8>> = match slot.attr(&self.from_attribute) {
                        Val::Nil => None,
                        Val::Bytes(b) => Some(b.into_owned()),
                        v => sightline_ottl::value::string_like(&v).map(String::into_bytes),
                    };
                    if let Some(b) = bytes.filter(|b| !b.is_empty()) {
                        rnd = Some(randomness_from_bytes(&b, seed));
                    }
                }
                // A malformed value, or randomness or a threshold already there.
                if parse_err || carrier.rv.is_some() || carrier.th.is_some() {
                    (rnd, None, true)
                } else {
                    if let Some(r) = rnd {
                        carrier.rv = Some(r);
                        set_rv = Some(r);
                    }
                    (rnd, Some(carrier), false)
                }
            }
            Mode::Never => (Some(MAX - 1), (!parse_err).then_some(carrier), parse_err),
            Mode::Equalizing { .. } | Mode::Proportional { .. } => {
                if parse_err {
                    (None, None, false)
                } else {
                    let rnd = match carrier.rv {
                        Some(r) => Some(r),
                        None if !tid_empty => trace_id_randomness(tid),
                        None => None,
                    };
                    (rnd, Some(carrier), false)
                }
            }
        };
        if let Some(r) = set_rv {
            slot.set_attr("sampling.randomness", AnyValue { value: Some(Pv::StringValue(r_value(r))) });
        }
        let mut clear_th = false;
        if !failed {
            match rnd {
                None => failed = true,
                Some(r) => {
                    if let Some(c) = &mut carrier
                        && let Some(th) = c.th
                        && th > r
                    {
                        c.th = None;
                        clear_th = true;
                        failed = true;
                    }
                }
            }
        }
        if clear_th {
            slot.delete_attr("sampling.threshold");
        }
        let mut threshold = if failed {
            if self.fail_closed { MAX } else { 0 }
        } else {
            match self.mode {
                Mode::Never => MAX,
                Mode::Hash { threshold, .. } => threshold,
                Mode::Equalizing { threshold } => match carrier.as_ref().and_then(|c| c.th) {
                    Some(tv) if threshold < tv => tv,
                    _ => threshold,
                },
                Mode::Proportional { ratio, precision } => {
                    let incoming = carrier.as_ref().and_then(|c| c.th).map_or(1.0, probability);
                    probability_to_threshold(incoming * ratio, precision).unwrap_or(MAX)
                }
            }
        };
        if !self.priority_attribute.is_empty() {
            let min_prob = match slot.attr(&self.priority_attribute) {
                Val::Float(f) => f / 100.0,
                Val::Int(i) => i as f64 / 100.0,
                _ => 0.0,
            };
            if min_prob != 0.0
                && let Some(th) = probability_to_threshold(min_prob, self.precision)
            {
                threshold = th;
            }
        }
        let rnd = rnd.unwrap_or(MAX - 1);
        let sampled = threshold <= rnd;
        if sampled
            && let Some(c) = &carrier
            && !matches!(c.th, Some(old) if threshold < old)
        {
            slot.set_attr("sampling.threshold", AnyValue { value: Some(Pv::StringValue(t_value(threshold))) });
        }
        sampled
    }

    fn sample<T: sightline_ottl::slot::Lazy>(
        &self,
        payload: Payload,
        decide: impl Fn(&Self, &mut Slot<T>) -> bool,
    ) -> Result<Payload, ProcessError> {
        let mut req: LazyRequest<T> = LazyRequest::parse(payload.bytes(), Heads::Keep)?;
        let (mut kept, mut dropped) = (0u64, 0u64);
        for slot in req.resources.iter_mut().flat_map(|r| &mut r.scopes).flat_map(|s| &mut s.items) {
            if decide(self, slot) {
                kept += 1;
            } else {
                slot.dropped = true;
                dropped += 1;
            }
        }
        self.sampled.add(kept);
        self.not_sampled.add(dropped);
        req.check()?;
        req.prune();
        let items = req.items();
        Ok(payload.with_bytes(Bytes::from(req.encode()), items))
    }
}

impl Processor for ProbabilisticSampler {
    fn process(&self, payload: Payload) -> Result<Payload, ProcessError> {
        match payload.signal() {
            Signal::Traces => self.sample(payload, |me, slot: &mut Slot<Span>| {
                let (sampled, state) = me.decide(slot);
                if sampled && let Some(s) = state {
                    slot.get_mut().trace_state = s;
                }
                sampled
            }),
            Signal::Logs => self.sample(payload, Self::decide_log),
            Signal::Metrics => Ok(payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_match_the_collectors_encoding() {
        // 10% at precision 4: the collector's th for 0.1 is e666.
        assert_eq!(t_value(probability_to_threshold(0.1, 4).unwrap()), "e666");
        assert_eq!(t_value(probability_to_threshold(0.5, 4).unwrap()), "8");
        assert_eq!(t_value(probability_to_threshold(1.0, 4).unwrap()), "0");
        assert_eq!(t_value(probability_to_threshold(0.25, 2).unwrap()), "c");
        // hash_seed 10%: 1638 of 16384 buckets.
        let pct: f32 = 10.0;
        let scaled = (pct * (HASH_BUCKETS as f32 / 100.0)) as u32;
        assert_eq!(scaled, 1638);
        assert_eq!(frexp_exp(0.1), -3);
        assert_eq!(frexp_exp(1.0), 1);
    }

    #[test]
    fn tracestate_round_trips_with_ot_first() {
        let ts = TraceState::parse("vendor=x, ot=th:8;rv:abcdefabcdef12;p:1").unwrap();
        assert_eq!(ts.serialize(), "ot=rv:abcdefabcdef12;th:8;p:1,vendor=x");
        assert!(TraceState::parse("ot=th:zz").is_err());
        assert!(TraceState::parse("=x").is_err());
    }
}
