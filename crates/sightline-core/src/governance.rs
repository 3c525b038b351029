//! What the governance view (`/status`, `/status.json`) shows beyond the metrics registry:
//! the services nobody owns (bounded), the catalog's health, and each policy's mode per team.
//! Components write it off the hot path (an unowned service is looked up once per distinct
//! resource, then counted with atomics); the admin server reads it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The name under which services past [`Governance::max_unowned`] are counted.
pub const OTHER: &str = "(other)";

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One service that no catalog entry or rule matched.
#[derive(Debug)]
pub struct UnownedService {
    pub service: Arc<str>,
    /// `telemetry.sdk.language` of the first resource seen (empty when absent).
    pub language: Arc<str>,
    pub first_seen: u64,
    last_seen: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
}

impl UnownedService {
    /// Counts one resource entry's items and bytes, seen at `now` (Unix seconds).
    pub fn seen(&self, items: u64, bytes: u64, now: u64) {
        self.items.fetch_add(items, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.last_seen.fetch_max(now, Ordering::Relaxed);
    }

    pub fn items(&self) -> u64 {
        self.items.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }
}

/// The catalog's state after its last load or reload.
#[derive(Clone, Debug, Default)]
pub struct CatalogHealth {
    /// When it was last loaded or a reload was attempted (Unix seconds; 0: never).
    pub last_reload: u64,
    /// Whether that attempt succeeded (a failed reload keeps the previous catalog).
    pub ok: bool,
    /// The errors of a failed attempt, `file:line: message`.
    pub errors: Vec<String>,
    pub teams: usize,
    pub services: usize,
    pub rules: usize,
}

/// A policy processor's mode for its teams: the default and the overrides.
#[derive(Clone, Debug)]
pub struct PolicyModes {
    pub policy: String,
    pub signal: &'static str,
    pub default: &'static str,
    pub teams: Vec<(String, &'static str)>,
}

#[derive(Debug)]
pub struct Governance {
    max_unowned: usize,
    unowned: Mutex<HashMap<Arc<str>, Arc<UnownedService>>>,
    catalogs: Mutex<BTreeMap<String, CatalogHealth>>,
    policies: Mutex<Vec<PolicyModes>>,
}

impl Default for Governance {
    fn default() -> Self {
        Governance::new(1000)
    }
}

impl Governance {
    /// Tracks at most `max_unowned` services by name; the rest are counted as [`OTHER`].
    pub fn new(max_unowned: usize) -> Governance {
        Governance {
            max_unowned,
            unowned: Mutex::new(HashMap::new()),
            catalogs: Mutex::new(BTreeMap::new()),
            policies: Mutex::new(Vec::new()),
        }
    }

    pub fn max_unowned(&self) -> usize {
        self.max_unowned
    }

    /// The record of an unowned service (created on first sight).
    pub fn unowned(&self, service: &str, language: &str) -> Arc<UnownedService> {
        let mut m = self.unowned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = m.get(service) {
            return u.clone();
        }
        let (name, language) = if m.len() < self.max_unowned { (service, language) } else { (OTHER, "") };
        let now = unix_now();
        m.entry(Arc::from(name))
            .or_insert_with(|| {
                Arc::new(UnownedService {
                    service: Arc::from(name),
                    language: Arc::from(language),
                    first_seen: now,
                    last_seen: AtomicU64::new(now),
                    items: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// The `n` unowned services with the most items, most first.
    pub fn top_unowned(&self, n: usize) -> Vec<Arc<UnownedService>> {
        let mut v: Vec<Arc<UnownedService>> =
            self.unowned.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| b.items().cmp(&a.items()).then_with(|| a.service.cmp(&b.service)));
        v.truncate(n);
        v
    }

    /// Distinct unowned services tracked (the [`OTHER`] bucket counts as one).
    pub fn unowned_count(&self) -> usize {
        self.unowned.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The catalog of ownership processor `id` after a successful load.
    pub fn set_catalog(&self, id: &str, h: CatalogHealth) {
        self.catalogs.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string(), h);
    }

    /// A failed reload of processor `id`'s catalog: the previous one stays, with these errors.
    pub fn catalog_failed(&self, id: &str, errors: Vec<String>) {
        let mut m = self.catalogs.lock().unwrap_or_else(|e| e.into_inner());
        let c = m.entry(id.to_string()).or_default();
        c.last_reload = unix_now();
        c.ok = false;
        c.errors = errors;
    }

    /// Every ownership processor's catalog health, by processor id.
    pub fn catalogs(&self) -> Vec<(String, CatalogHealth)> {
        self.catalogs.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn add_policy(&self, p: PolicyModes) {
        self.policies.lock().unwrap_or_else(|e| e.into_inner()).push(p);
    }

    pub fn policies(&self) -> Vec<PolicyModes> {
        self.policies.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unowned_services_are_bounded_and_ranked() {
        let g = Governance::new(2);
        g.unowned("a", "python").seen(5, 50, 10);
        g.unowned("b", "go").seen(9, 90, 11);
        g.unowned("c", "java").seen(1, 10, 12);
        g.unowned("d", "rust").seen(20, 10, 12);
        assert_eq!(g.unowned_count(), 3, "a, b and the other bucket");
        let top: Vec<(String, u64)> = g.top_unowned(5).iter().map(|u| (u.service.to_string(), u.items())).collect();
        assert_eq!(top, [("(other)".to_string(), 21), ("b".to_string(), 9), ("a".to_string(), 5)]);
        assert_eq!(&*g.unowned("a", "").language, "python", "the first language seen stays");
        let b = g.unowned("b", "");
        assert!(b.last_seen() >= b.first_seen, "seen at start");
        b.seen(0, 0, b.first_seen + 100);
        b.seen(0, 0, b.first_seen + 50);
        assert_eq!(b.last_seen(), b.first_seen + 100, "the latest time stays");
    }
}
