//! The `ownership` processor: adds `owner.team` and the team's metadata to every resource.
//!
//! Per request it makes one pass over the request's top level with
//! [`wire::rewrite_resources`]: each `Resource` is looked up in a per-thread cache keyed by
//! the xxh3 hash of its bytes (verified byte for byte), and only on a miss are its attributes
//! read, the catalog consulted and the new `Resource` encoded. Scopes, spans, log records and
//! data points are copied as bytes. The cache is per thread (no lock, no contention) and is
//! invalidated by the catalog's generation, so a reload takes effect on the next request.
//!
//! Clients cannot forge ownership: any attribute with one of the output keys that a client
//! sent is removed before the catalog's values are added.

use bytes::Bytes;
use serde::Deserialize;
use sightline_core::wire::{self, ResourceEditor};
use sightline_core::{Counter, Payload, ProcessError, Processor, Registry, Signal};
use sightline_ownership::{Catalog, CatalogHandle, Ownership};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use thread_local::ThreadLocal;

/// `processors.ownership`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipConfig {
    /// Native catalog files or directories of per-team files (default: none).
    #[serde(default)]
    pub catalog: Vec<PathBuf>,
    /// Backstage `catalog-info.yaml` files, globs or directories (default: none).
    #[serde(default)]
    pub backstage: Vec<String>,
    /// Team of resources that nothing matches (default `unowned`).
    #[serde(default = "default_team")]
    pub default_team: String,
    /// Output attribute names.
    #[serde(default)]
    pub attributes: AttributeNames,
    /// Reload the catalog when its files change and on SIGHUP (default true).
    #[serde(default = "yes")]
    pub watch: bool,
    /// Distinct resources remembered per worker thread (default 16384).
    #[serde(default = "default_cache")]
    pub cache_size: usize,
}

fn default_team() -> String {
    "unowned".into()
}
fn yes() -> bool {
    true
}
fn default_cache() -> usize {
    16384
}

/// `processors.ownership.attributes`: the resource attribute each ownership field is written
/// to. An attribute with one of these names sent by a client is always removed first.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributeNames {
    /// Default `owner.team`.
    pub team: String,
    /// Default `owner.contact`.
    pub contact: String,
    /// Default `owner.oncall`.
    pub oncall: String,
    /// Default `owner.system`.
    pub system: String,
    /// Default `owner.repository`.
    pub repository: String,
    /// Default `service.criticality`.
    pub criticality: String,
    /// Default `owner.source`.
    pub source: String,
}

impl Default for AttributeNames {
    fn default() -> Self {
        AttributeNames {
            team: "owner.team".into(),
            contact: "owner.contact".into(),
            oncall: "owner.oncall".into(),
            system: "owner.system".into(),
            repository: "owner.repository".into(),
            criticality: "service.criticality".into(),
            source: "owner.source".into(),
        }
    }
}

impl AttributeNames {
    fn all(&self) -> [&str; 7] {
        [&self.team, &self.contact, &self.oncall, &self.system, &self.repository, &self.criticality, &self.source]
    }
}

impl OwnershipConfig {
    pub fn catalog_config(&self) -> sightline_ownership::CatalogConfig {
        sightline_ownership::CatalogConfig {
            catalog: self.catalog.clone(),
            backstage: self.backstage.clone(),
            default_team: self.default_team.clone(),
        }
    }

    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let names = self.attributes.all();
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() {
                errs.push(("attributes".into(), "attribute names must not be empty".into()));
            } else if names[..i].contains(n) {
                errs.push(("attributes".into(), format!("attribute name {n:?} is used twice")));
            }
        }
        if self.default_team.is_empty() {
            errs.push(("default_team".into(), "must not be empty".into()));
        }
        errs
    }
}

/// Counters per (team, source), created on a cache miss and shared by the cache entries.
struct TeamMetrics {
    registry: Registry,
    signal: Signal,
    id: String,
    by_key: Mutex<HashMap<TeamKey, Arc<TeamCounters>>>,
}

/// (team, source)
type TeamKey = (Arc<str>, Arc<str>);

struct TeamCounters {
    resources: Counter,
    bytes: Counter,
    /// Set for the default team: resources that nothing in the catalog matched.
    unowned: Option<Counter>,
}

impl TeamMetrics {
    fn get(&self, o: &Ownership) -> Arc<TeamCounters> {
        let mut m = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((o.team.clone(), o.source.clone()))
            .or_insert_with(|| {
                let source_kind = o.source.split(':').next().unwrap_or("");
                let team = &*o.team;
                Arc::new(TeamCounters {
                    resources: self.registry.counter(
                        "sightline_ownership_resources_total",
                        "Resources enriched, by owning team and by what decided the owner (service, rule:N, backstage, default).",
                        &[("processor", &self.id), ("signal", self.signal.as_str()), ("team", team), ("source", &o.source)],
                    ),
                    bytes: self.registry.counter(
                        "sightline_team_received_bytes_total",
                        "Bytes of OTLP protobuf received per owning team (resource, scopes and items).",
                        &[("signal", self.signal.as_str()), ("team", team), ("source_kind", source_kind)],
                    ),
                    unowned: o.is_default().then(|| {
                        self.registry.counter(
                            "sightline_ownership_unowned_resources_total",
                            "Resources that no catalog entry or rule matched (given the default team).",
                            &[("processor", &self.id), ("signal", self.signal.as_str())],
                        )
                    }),
                })
            })
            .clone()
    }
}

struct Entry {
    original: Box<[u8]>,
    rewritten: Box<[u8]>,
    generation: u64,
    counters: Arc<TeamCounters>,
}

#[derive(Default)]
struct Cache {
    map: HashMap<u64, Entry>,
}

/// The `ownership` processor for one signal.
pub struct OwnershipProcessor {
    handle: Arc<CatalogHandle>,
    names: AttributeNames,
    cache: ThreadLocal<RefCell<Cache>>,
    cache_size: usize,
    metrics: TeamMetrics,
}

impl OwnershipProcessor {
    pub fn new(
        id: &str,
        signal: Signal,
        cfg: &OwnershipConfig,
        handle: Arc<CatalogHandle>,
        registry: &Registry,
    ) -> Self {
        OwnershipProcessor {
            handle,
            names: cfg.attributes.clone(),
            cache: ThreadLocal::new(),
            cache_size: cfg.cache_size.max(16),
            metrics: TeamMetrics {
                registry: registry.clone(),
                signal,
                id: id.to_string(),
                by_key: Mutex::new(HashMap::new()),
            },
        }
    }
}

struct Editor<'a> {
    catalog: &'a Catalog,
    generation: u64,
    names: &'a AttributeNames,
    cache: &'a mut Cache,
    cache_size: usize,
    metrics: &'a TeamMetrics,
}

impl Editor<'_> {
    fn build(&self, resource: &[u8], out: &mut Vec<u8>) -> Arc<Ownership> {
        let keys = self.catalog.match_keys();
        let names = self.names.all();
        // The attributes the catalog matches on, borrowed from the request.
        let mut found: Vec<(&str, &str)> = Vec::with_capacity(keys.len());
        for f in wire::Fields::new(resource) {
            let Ok(f) = f else { break };
            if f.number == 1
                && let Some(Ok(a)) = wire::attributes(f.raw, 1).next()
            {
                if names.contains(&a.key) {
                    continue; // never trust a client's ownership attributes
                }
                if let Some(v) = a.value.as_str()
                    && keys.iter().any(|k| k == a.key)
                {
                    found.push((a.key, v));
                }
            }
            out.extend_from_slice(f.raw);
        }
        let lookup = |k: &str| found.iter().find(|(fk, _)| *fk == k).map(|(_, v)| *v);
        let o = self.catalog.resolve(&lookup);
        let n = self.names;
        wire::put_string_attribute(out, 1, &n.team, &o.team);
        for (key, val) in [
            (&n.contact, &o.contact),
            (&n.oncall, &o.oncall),
            (&n.system, &o.system),
            (&n.repository, &o.repository),
            (&n.criticality, &o.criticality),
        ] {
            if let Some(v) = val {
                wire::put_string_attribute(out, 1, key, v);
            }
        }
        wire::put_string_attribute(out, 1, &n.source, &o.source);
        o
    }
}

impl ResourceEditor for Editor<'_> {
    fn edit(&mut self, resource: &[u8], entry_len: usize) -> &[u8] {
        let key = xxhash_rust::xxh3::xxh3_64(resource);
        let hit =
            matches!(self.cache.map.get(&key), Some(e) if e.generation == self.generation && *e.original == *resource);
        if hit {
            let e = &self.cache.map[&key];
            e.counters.resources.inc();
            e.counters.bytes.add(entry_len as u64);
            if let Some(u) = &e.counters.unowned {
                u.inc();
            }
            return &e.rewritten;
        }
        let mut out = Vec::with_capacity(resource.len() + 160);
        let o = self.build(resource, &mut out);
        let counters = self.metrics.get(&o);
        counters.resources.inc();
        counters.bytes.add(entry_len as u64);
        if let Some(u) = &counters.unowned {
            u.inc();
        }
        if self.cache.map.len() >= self.cache_size {
            // Bounded: drop an arbitrary eighth (the map's iteration order is effectively
            // random), so a working set just over the limit degrades gradually instead of
            // missing on every request after a full clear.
            let evict: Vec<u64> = self.cache.map.keys().take(self.cache_size / 8 + 1).copied().collect();
            for k in evict {
                self.cache.map.remove(&k);
            }
        }
        self.cache.map.insert(
            key,
            Entry {
                original: resource.into(),
                rewritten: out.into_boxed_slice(),
                generation: self.generation,
                counters,
            },
        );
        &self.cache.map[&key].rewritten
    }
}

impl Processor for OwnershipProcessor {
    fn process(&self, payload: Payload) -> Result<Payload, ProcessError> {
        let catalog = self.handle.current();
        let generation = self.handle.generation();
        let cell = self.cache.get_or_default();
        let mut cache = cell.borrow_mut();
        let mut editor = Editor {
            catalog: &catalog,
            generation,
            names: &self.names,
            cache: &mut cache,
            cache_size: self.cache_size,
            metrics: &self.metrics,
        };
        let mut out = Vec::new();
        wire::rewrite_resources(payload.bytes(), &mut out, &mut editor)
            .map_err(|e| ProcessError::Invalid(e.to_string()))?;
        // The output is held (and budgeted) by its length until the last exporter is done:
        // give back the slack reserved for growth, so memory in use matches the budget.
        if out.capacity() - out.len() > out.len() / 32 {
            out.shrink_to_fit();
        }
        let items = payload.items();
        Ok(payload.with_bytes(Bytes::from(out), items))
    }
}
