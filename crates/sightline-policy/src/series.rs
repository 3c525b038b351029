//! Series limits (issue 12): distinct series per (team, metric name) over a window, in bounded
//! memory.
//!
//! A series is a metric's data points with one identity: the resource's attributes and the
//! point's attributes (each list order-independent), hashed to 64 bits (xxh3). Per (team,
//! metric) the limiter keeps the exact set of admitted series, which the limit bounds: the
//! first `limit` distinct series seen in a window are admitted, later points of those series
//! too; a point of any other series is over the limit. Windows are tumbling: at the end of one
//! every set starts empty (so a series that stopped frees its place within one window).
//!
//! What is over the limit is estimated, not stored: a k-minimum-values sketch of the series
//! over the limit, and one per attribute key of the offending metric (at most
//! [`MAX_KEYS`] keys), to name the key with the most distinct values. With k = [`K`] the
//! relative standard error of an estimate is about 1/sqrt(k - 2), 9%; counts below k are exact.
//!
//! Memory is bounded by `max_tracked` (team, metric) pairs per window, each holding at most
//! `limit` 8-byte hashes (plus the set's overhead, about 16 bytes per series in all) and, once
//! over its limit, (1 + [`MAX_KEYS`]) sketches of k hashes. A pair past `max_tracked` is not
//! tracked in that window: its points pass and [`Admit::Untracked`] says so.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// The sketches' size.
pub const K: usize = 128;
/// Attribute keys sketched per offending metric.
pub const MAX_KEYS: usize = 16;
const SHARDS: usize = 16;

/// A k-minimum-values sketch of distinct 64-bit hashes.
#[derive(Clone, Debug, Default)]
pub struct Kmv {
    /// The smallest hashes seen, ascending, at most [`K`].
    min: Vec<u64>,
}

impl Kmv {
    pub fn insert(&mut self, h: u64) {
        if self.min.len() == K && h >= self.min[K - 1] {
            return;
        }
        if let Err(i) = self.min.binary_search(&h) {
            self.min.insert(i, h);
            self.min.truncate(K);
        }
    }

    /// The estimated number of distinct hashes inserted (exact below [`K`]).
    pub fn estimate(&self) -> u64 {
        if self.min.len() < K {
            return self.min.len() as u64;
        }
        let kth = self.min[K - 1] as f64 / u64::MAX as f64;
        ((K - 1) as f64 / kth.max(f64::MIN_POSITIVE)) as u64
    }
}

/// A hasher for keys that are already hashes.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HashSet64 = HashSet<u64, BuildHasherDefault<Identity>>;

fn hash_value(h: &mut Xxh3, v: Option<&AnyValue>) {
    match v.and_then(|v| v.value.as_ref()) {
        None => h.update(&[0]),
        Some(Value::StringValue(s)) => {
            h.update(&[1]);
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Some(Value::BoolValue(b)) => h.update(&[2, u8::from(*b)]),
        Some(Value::IntValue(i)) => {
            h.update(&[3]);
            h.update(&i.to_le_bytes());
        }
        Some(Value::DoubleValue(d)) => {
            h.update(&[4]);
            h.update(&d.to_bits().to_le_bytes());
        }
        Some(Value::BytesValue(b)) => {
            h.update(&[5]);
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        }
        Some(Value::ArrayValue(a)) => {
            h.update(&[6]);
            h.update(&(a.values.len() as u64).to_le_bytes());
            for x in &a.values {
                hash_value(h, Some(x));
            }
        }
        Some(Value::KvlistValue(m)) => {
            h.update(&[7]);
            h.update(&attrs_hash(&m.values).to_le_bytes());
        }
        // An index into a profile's string table (profiles only).
        Some(Value::StringValueStrindex(i)) => {
            h.update(&[8]);
            h.update(&i.to_le_bytes());
        }
    }
}

/// One attribute's hash.
fn kv_hash(kv: &KeyValue) -> u64 {
    let mut h = Xxh3::new();
    h.update(&(kv.key.len() as u64).to_le_bytes());
    h.update(kv.key.as_bytes());
    hash_value(&mut h, kv.value.as_ref());
    h.digest()
}

/// An attribute list's hash, independent of the order (the sum of each attribute's hash).
pub fn attrs_hash(attrs: &[KeyValue]) -> u64 {
    attrs.iter().fold(0x9e37_79b9_7f4a_7c15, |acc: u64, kv| acc.wrapping_add(kv_hash(kv)))
}

/// What one (team, metric) saw in the current window.
#[derive(Debug)]
struct Track {
    team: String,
    metric: String,
    limit: usize,
    admitted: HashSet64,
    /// The series over the limit, and the points of them.
    over: Kmv,
    over_points: u64,
    /// Distinct values per attribute key, from the first point over the limit on.
    keys: Vec<(String, Kmv)>,
}

#[derive(Debug)]
struct Shard {
    start: Instant,
    tracks: HashMap<u64, Track, BuildHasherDefault<Identity>>,
}

/// Whether a point's series is within its (team, metric)'s limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Within,
    Over,
    /// Not tracked: `max_tracked` pairs are already tracked in this window.
    Untracked,
}

/// One (team, metric) as the status page and the gauges show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offender {
    pub team: String,
    pub metric: String,
    pub limit: usize,
    /// Distinct series in the window (admitted, plus the estimate of those over the limit).
    pub series: u64,
    pub over_points: u64,
    /// The attribute key with the most distinct values once over the limit, and its estimate.
    pub top_key: Option<(String, u64)>,
}

pub struct SeriesLimiter {
    window: Duration,
    max_tracked: usize,
    shards: Vec<Mutex<Shard>>,
}

impl SeriesLimiter {
    pub fn new(window: Duration, max_tracked: usize, now: Instant) -> SeriesLimiter {
        SeriesLimiter {
            window,
            max_tracked,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard { start: now, tracks: HashMap::default() })).collect(),
        }
    }

    /// Checks the points of one metric of one resource (whose attributes hash to `resource`):
    /// `f` gets a checker to call with each point's attributes. The metric's shard is locked
    /// for as long as `f` runs (one lock per metric, not per point).
    pub fn metric<T>(
        &self,
        now: Instant,
        team: &str,
        metric: &str,
        limit: usize,
        resource: u64,
        f: impl FnOnce(&mut dyn FnMut(&[KeyValue]) -> Admit) -> T,
    ) -> T {
        let key = {
            let mut h = Xxh3::new();
            h.update(&(team.len() as u64).to_le_bytes());
            h.update(team.as_bytes());
            h.update(metric.as_bytes());
            h.digest()
        };
        let per_shard = self.max_tracked.div_ceil(SHARDS);
        let mut shard = self.shards[(key % SHARDS as u64) as usize].lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(shard.start) >= self.window {
            shard.tracks.clear();
            shard.start = now;
        }
        let full = shard.tracks.len() >= per_shard;
        let track = match shard.tracks.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(_) if full => None,
            std::collections::hash_map::Entry::Vacant(e) => Some(e.insert(Track {
                team: team.to_string(),
                metric: metric.to_string(),
                limit,
                admitted: HashSet64::default(),
                over: Kmv::default(),
                over_points: 0,
                keys: Vec::new(),
            })),
        };
        let Some(t) = track else {
            return f(&mut |_| Admit::Untracked);
        };
        f(&mut |attrs| {
            let id = resource.wrapping_add(attrs_hash(attrs));
            let admit = if t.admitted.contains(&id) {
                Admit::Within
            } else if t.admitted.len() < t.limit {
                t.admitted.insert(id);
                Admit::Within
            } else {
                t.over.insert(id);
                t.over_points += 1;
                Admit::Over
            };
            if t.over_points > 0 {
                for kv in attrs {
                    let i = match t.keys.iter().position(|(k, _)| *k == kv.key) {
                        Some(i) => i,
                        None if t.keys.len() < MAX_KEYS => {
                            t.keys.push((kv.key.clone(), Kmv::default()));
                            t.keys.len() - 1
                        }
                        None => continue,
                    };
                    let mut h = Xxh3::new();
                    hash_value(&mut h, kv.value.as_ref());
                    t.keys[i].1.insert(h.digest());
                }
            }
            admit
        })
    }

    /// The `n` (team, metric) pairs with the most distinct series in the current window,
    /// most first.
    pub fn top(&self, n: usize) -> Vec<Offender> {
        let mut all = Vec::new();
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            for t in s.tracks.values() {
                let top_key = t
                    .keys
                    .iter()
                    .map(|(k, s)| (k.clone(), s.estimate()))
                    .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
                all.push(Offender {
                    team: t.team.clone(),
                    metric: t.metric.clone(),
                    limit: t.limit,
                    series: t.admitted.len() as u64 + t.over.estimate(),
                    over_points: t.over_points,
                    top_key,
                });
            }
        }
        all.sort_by(|a, b| b.series.cmp(&a.series).then_with(|| (&a.team, &a.metric).cmp(&(&b.team, &b.metric))));
        all.truncate(n);
        all
    }

    /// The (team, metric) pairs tracked in the current windows.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).tracks.len()).sum()
    }
}

/// A series' stable identity hash, for tests and tools: the resource's and the point's
/// attributes.
pub fn series_hash(resource: &[KeyValue], point: &[KeyValue]) -> u64 {
    attrs_hash(resource).wrapping_add(attrs_hash(point))
}

/// The hash of a string (for sketches of names).
pub fn str_hash(s: &str) -> u64 {
    xxh3_64(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    #[test]
    fn the_sketch_is_exact_below_k_and_close_above() {
        let mut s = Kmv::default();
        for i in 0..100u64 {
            s.insert(str_hash(&i.to_string()));
            s.insert(str_hash(&i.to_string()));
        }
        assert_eq!(s.estimate(), 100);
        for n in [1_000u64, 10_000, 100_000] {
            let mut s = Kmv::default();
            for i in 0..n {
                s.insert(str_hash(&format!("user-{i}")));
            }
            let e = s.estimate() as f64;
            // Four standard errors: a failure is a bug, not bad luck.
            assert!((e - n as f64).abs() / (n as f64) < 0.36, "{n}: estimated {e}");
            assert_eq!(s.min.len(), K, "bounded");
        }
    }

    #[test]
    fn the_order_of_attributes_does_not_make_a_new_series() {
        let a = [kv("a", "1"), kv("b", "2")];
        let b = [kv("b", "2"), kv("a", "1")];
        assert_eq!(attrs_hash(&a), attrs_hash(&b));
        assert_ne!(attrs_hash(&a), attrs_hash(&[kv("a", "2"), kv("b", "1")]));
        assert_ne!(attrs_hash(&[kv("ab", "")]), attrs_hash(&[kv("a", "b")]));
    }

    #[test]
    fn the_first_series_of_a_window_are_admitted_per_team_and_metric() {
        let t0 = Instant::now();
        let l = SeriesLimiter::new(Duration::from_secs(60), 100, t0);
        let run = |now: Instant, team: &str, metric: &str, users: std::ops::Range<u32>| {
            l.metric(now, team, metric, 10, 7, |check| {
                let mut v = Vec::new();
                for u in users {
                    v.push(check(&[kv("user", &u.to_string()), kv("route", "/")]));
                }
                v
            })
        };
        let first = run(t0, "a", "m", 0..25);
        assert!(first[..10].iter().all(|a| *a == Admit::Within));
        assert!(first[10..].iter().all(|a| *a == Admit::Over));
        assert!(run(t0, "a", "m", 0..10).iter().all(|a| *a == Admit::Within), "admitted series stay admitted");
        assert!(run(t0, "b", "m", 0..10).iter().all(|a| *a == Admit::Within), "another team has its own limit");
        assert!(run(t0, "a", "n", 0..10).iter().all(|a| *a == Admit::Within), "another metric too");
        let top = l.top(1);
        assert_eq!((top[0].team.as_str(), top[0].metric.as_str(), top[0].series), ("a", "m", 25));
        assert_eq!(top[0].over_points, 15);
        // From the first point over the limit on, every point feeds the key sketches: users 10..25,
        // then 0..10 again.
        assert_eq!(top[0].top_key, Some(("user".to_string(), 25)), "route has one value");
        // A new window: the set starts again.
        let later = run(t0 + Duration::from_secs(61), "a", "m", 100..110);
        assert!(later.iter().all(|a| *a == Admit::Within));
    }

    #[test]
    fn tracking_is_bounded() {
        let t0 = Instant::now();
        let l = SeriesLimiter::new(Duration::from_secs(60), 16, t0);
        let mut untracked = 0;
        for m in 0..200 {
            l.metric(t0, "a", &format!("m{m}"), 5, 0, |check| {
                if check(&[]) == Admit::Untracked {
                    untracked += 1;
                }
            });
        }
        assert!(l.tracked() <= 16, "{}", l.tracked());
        assert_eq!(untracked, 200 - l.tracked());
    }
}
