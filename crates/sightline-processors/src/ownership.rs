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
use sightline_core::governance::{Governance, UnownedService};
use sightline_core::wire::{self, ResourceEditor};
use sightline_core::{
    BoundTeam, Counter, Payload, ProcessError, Processor, Registry, ResourceStage, Signal, TeamMismatch,
};
use sightline_k8s::{Found, KubernetesConfig, Object, Store};
use sightline_ownership::{Catalog, CatalogHandle, Ownership};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use thread_local::ThreadLocal;

/// `processors.ownership`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipConfig {
    /// Native catalog files or directories of per-team files: one path or a list (default:
    /// none).
    #[serde(default, deserialize_with = "sightline_core::serde_util::one_or_many")]
    pub catalog: Vec<PathBuf>,
    /// Backstage `catalog-info.yaml` files, globs or directories: one or a list (default:
    /// none).
    #[serde(default, deserialize_with = "sightline_core::serde_util::one_or_many")]
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
    /// Metrics pipelines: also write the team attribute onto every data point, for OTLP metric
    /// backends that do not promote resource attributes to series labels (Mimir's OTLP
    /// endpoint by default). A data point attribute with the same name is replaced. Default
    /// false.
    #[serde(default)]
    pub metrics_datapoint_attributes: bool,
    /// Kubernetes metadata as a source of owners (see `sightline_k8s`): after an exact
    /// catalog service entry, before the catalog's rules. Default: disabled.
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
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
        errs.extend(self.kubernetes.validate().into_iter().map(|(path, m)| (format!("kubernetes.{path}"), m)));
        errs
    }
}

/// Counters per (team, source), created on a cache miss and shared by the cache entries.
struct TeamMetrics {
    registry: Registry,
    signal: Signal,
    id: String,
    by_key: Mutex<HashMap<TeamKey, Arc<TeamCounters>>>,
    /// (token team, catalog team, action) -> resources (auth.bind_ownership_to_token).
    mismatches: Mutex<HashMap<MismatchKey, Counter>>,
}

/// (token team, catalog team, action)
type MismatchKey = (Arc<str>, Arc<str>, &'static str);

/// (team, source)
type TeamKey = (Arc<str>, Arc<str>);

struct TeamCounters {
    resources: Counter,
    bytes: Counter,
    items: Counter,
    /// Set for the default team: resources that nothing in the catalog matched.
    unowned: Option<Counter>,
}

impl TeamMetrics {
    /// Resources of a request bound to `team` that the catalog assigns to `catalog_team`.
    fn mismatch(&self, team: &Arc<str>, catalog_team: &Arc<str>, action: &'static str) -> Counter {
        let mut m = self.mismatches.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((team.clone(), catalog_team.clone(), action))
            .or_insert_with(|| {
                self.registry.counter(
                    "sightline_ownership_team_mismatch_resources_total",
                    "Resources of requests whose token team differs from the team the catalog assigns (auth.bind_ownership_to_token), by action (rejected, reattributed).",
                    &[
                        ("processor", &self.id),
                        ("signal", self.signal.as_str()),
                        ("team", team),
                        ("catalog_team", catalog_team),
                        ("action", action),
                    ],
                )
            })
            .clone()
    }

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
                    items: self.registry.counter(
                        "sightline_team_received_items_total",
                        "Items received per owning team: spans, metric data points or log records.",
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
    /// The connection's address, when Kubernetes association may read it.
    peer: Option<IpAddr>,
    rewritten: Box<[u8]>,
    /// (catalog, Kubernetes cache) generations it was built at.
    generation: (u64, u64),
    counters: Arc<TeamCounters>,
    /// What the catalog decided.
    ownership: Arc<Ownership>,
    /// The service's record in the governance view, when nothing owns it.
    unowned: Option<Arc<UnownedService>>,
    /// The resource attributed to a token's team, for the last team it was bound to.
    bound: Option<BoundEntry>,
}

/// A resource rewritten for a request bound to `team` (the catalog did not know it, or gave it
/// to another team and the mismatch policy re-attributes).
struct BoundEntry {
    team: Arc<str>,
    rewritten: Box<[u8]>,
    counters: Arc<TeamCounters>,
    /// Set when the catalog gave the resource to another team.
    mismatch: Option<Counter>,
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
    /// Set for a metrics pipeline with `metrics_datapoint_attributes`.
    points: Option<PointTeam>,
    signal: Signal,
    /// Where unowned services are recorded for the governance view.
    governance: Option<Arc<Governance>>,
    /// Kubernetes metadata, when `kubernetes.enabled`.
    k8s: Option<K8s>,
}

/// The Kubernetes source of one processor.
struct K8s {
    store: Arc<Store>,
    cfg: KubernetesConfig,
    /// Whether association may read the connection's address (the cache is then keyed by it).
    connection: bool,
}

/// The resource attributes Kubernetes metadata adds (when the resource does not have them),
/// as `k8sattributes` does.
const K8S_ATTRIBUTES: [&str; 5] =
    ["k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.deployment.name", "k8s.node.name"];

/// What `metrics_datapoint_attributes` needs per processor.
struct PointTeam {
    scratch: ThreadLocal<RefCell<crate::datapoints::Scratch>>,
    points: Counter,
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
            points: (signal == Signal::Metrics && cfg.metrics_datapoint_attributes).then(|| PointTeam {
                scratch: ThreadLocal::new(),
                points: registry.counter(
                    "sightline_ownership_datapoints_total",
                    "Metric data points given the owning team as a data point attribute (metrics_datapoint_attributes).",
                    &[("processor", id)],
                ),
            }),
            metrics: TeamMetrics {
                registry: registry.clone(),
                signal,
                id: id.to_string(),
                by_key: Mutex::new(HashMap::new()),
                mismatches: Mutex::new(HashMap::new()),
            },
            signal,
            governance: None,
            k8s: None,
        }
    }

    /// Takes owners and `k8s.*` attributes from Kubernetes metadata in `store` (the
    /// processor's `kubernetes` block must be enabled).
    pub fn with_kubernetes(mut self, cfg: &KubernetesConfig, store: Arc<Store>) -> Self {
        self.k8s = Some(K8s { store, connection: cfg.uses_connection(), cfg: cfg.clone() });
        self
    }

    /// Records the services nobody owns (by volume, first and last seen, SDK language) in
    /// `g`, for the governance view.
    pub fn with_governance(mut self, g: Arc<Governance>) -> Self {
        self.governance = Some(g);
        self
    }
}

struct Editor<'a> {
    catalog: &'a Catalog,
    generation: (u64, u64),
    k8s: Option<&'a K8s>,
    /// The connection's address, when Kubernetes association reads it.
    peer: Option<IpAddr>,
    names: &'a AttributeNames,
    cache: &'a mut Cache,
    cache_size: usize,
    metrics: &'a TeamMetrics,
    /// The request's authenticated team, when the receiver binds ownership to it.
    bound: Option<&'a BoundTeam>,
    /// Bound requests: why the request is refused (the first mismatching resource).
    refused: Option<String>,
    /// Bound requests: counts held back until the request is known to be accepted: (counters,
    /// bytes, items).
    deferred: Vec<(Arc<TeamCounters>, u64, u64)>,
    signal: Signal,
    governance: Option<&'a Governance>,
    /// The time of the request, read once, when an unowned resource needs it.
    now: Option<u64>,
    /// The items of the request when it has one resource entry (what SDKs send): that entry's
    /// count, with no walk over its items.
    single: Option<u64>,
    /// The items of each entry, in order, when the receiver counted them (empty otherwise),
    /// and the entry [`ResourceEditor::edit`] is called for next.
    entries: &'a [u64],
    next: usize,
}

/// `owner.source` of a resource attributed to the authenticated team.
const TOKEN_SOURCE: &str = "token";

impl Editor<'_> {
    /// `resource` without the ownership attributes, then the token team's attributes (its
    /// contact and on-call from the catalog's team entry; no system, repository or criticality,
    /// which describe a service the catalog does not give to this team).
    fn build_bound(&self, resource: &[u8], team: &Arc<str>, out: &mut Vec<u8>) -> Ownership {
        let names = self.names.all();
        for f in wire::Fields::new(resource) {
            let Ok(f) = f else { break };
            if f.number == 1
                && let Some(Ok(a)) = wire::attributes(f.raw, 1).next()
                && names.contains(&a.key)
            {
                continue;
            }
            out.extend_from_slice(f.raw);
        }
        let t = self.catalog.team(team);
        let o = Ownership {
            team: team.clone(),
            contact: t.and_then(|t| t.contact.clone()),
            oncall: t.and_then(|t| t.oncall.clone()),
            system: None,
            repository: None,
            criticality: None,
            source: Arc::from(TOKEN_SOURCE),
        };
        let n = self.names;
        wire::put_string_attribute(out, 1, &n.team, &o.team);
        for (key, val) in [(&n.contact, &o.contact), (&n.oncall, &o.oncall)] {
            if let Some(v) = val {
                wire::put_string_attribute(out, 1, key, v);
            }
        }
        wire::put_string_attribute(out, 1, &n.source, &o.source);
        o
    }

    /// A request bound to `b`: the resource's catalog entry is at `key`.
    fn edit_bound(&mut self, key: u64, resource: &[u8], entry_len: usize, items: u64, b: &BoundTeam) -> &[u8] {
        let o = self.cache.map[&key].ownership.clone();
        if !o.is_default() && o.team == b.team {
            let e = &self.cache.map[&key];
            self.deferred.push((e.counters.clone(), entry_len as u64, items));
            return &self.cache.map[&key].rewritten;
        }
        if !o.is_default() && b.on_mismatch == TeamMismatch::Reject {
            self.metrics.mismatch(&b.team, &o.team, "rejected").inc();
            if self.refused.is_none() {
                let service = service_name(resource).unwrap_or("(no service.name)");
                self.refused = Some(format!(
                    "service {service:?} belongs to team {:?} in the ownership catalog, but the request is authenticated as team {:?}",
                    o.team, b.team
                ));
            }
            // The request is refused as a whole: what is written here is never used.
            return &self.cache.map[&key].rewritten;
        }
        let fresh = matches!(&self.cache.map[&key].bound, Some(be) if be.team == b.team);
        if !fresh {
            let mut out = Vec::with_capacity(resource.len() + 96);
            let own = self.build_bound(resource, &b.team, &mut out);
            let counters = self.metrics.get(&own);
            let mismatch = (!o.is_default()).then(|| self.metrics.mismatch(&b.team, &o.team, "reattributed"));
            if let Some(e) = self.cache.map.get_mut(&key) {
                e.bound =
                    Some(BoundEntry { team: b.team.clone(), rewritten: out.into_boxed_slice(), counters, mismatch });
            }
        }
        let Some(be) = &self.cache.map[&key].bound else { return &self.cache.map[&key].rewritten };
        self.deferred.push((be.counters.clone(), entry_len as u64, items));
        if let Some(m) = &be.mismatch {
            m.inc();
        }
        &be.rewritten
    }

    fn build(&self, resource: &[u8], out: &mut Vec<u8>) -> Arc<Ownership> {
        let keys = self.catalog.match_keys();
        let names = self.names.all();
        // The attributes the catalog matches on (and Kubernetes association reads), borrowed
        // from the request.
        let wanted = |k: &str| {
            keys.iter().any(|m| m == k)
                || (self.k8s.is_some()
                    && (sightline_k8s::ASSOCIATION_ATTRIBUTES.contains(&k) || K8S_ATTRIBUTES.contains(&k)))
        };
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
                    && wanted(a.key)
                {
                    found.push((a.key, v));
                }
            }
            out.extend_from_slice(f.raw);
        }
        // Kubernetes: the pod's attributes the resource does not have are added (and rules
        // can match on them); its team comes after an exact service entry, before rules.
        let pod: Option<Found> = self.k8s.and_then(|k| {
            let lookup = |key: &str| found.iter().find(|(fk, _)| *fk == key).map(|(_, v)| *v);
            k.store.find(&k.cfg.pod_association, &lookup, self.peer)
        });
        if let Some(p) = &pod {
            let m = &p.pod;
            for (key, value) in [
                ("k8s.namespace.name", Some(&*m.namespace)),
                ("k8s.pod.name", Some(&*m.name)),
                ("k8s.pod.uid", Some(&*m.uid).filter(|u| !u.is_empty())),
                ("k8s.deployment.name", m.deployment.as_deref()),
                ("k8s.node.name", m.node.as_deref()),
            ] {
                if let Some(v) = value
                    && !found.iter().any(|(k, _)| *k == key)
                {
                    wire::put_string_attribute(out, 1, key, v);
                    found.push((key, v));
                }
            }
        }
        let lookup = |k: &str| found.iter().find(|(fk, _)| *fk == k).map(|(_, v)| *v);
        let o = self
            .catalog
            .resolve_service(&lookup)
            .or_else(|| pod.as_ref().and_then(|p| self.k8s.and_then(|k| k8s_owner(self.catalog, k, p))))
            .unwrap_or_else(|| self.catalog.resolve_rules(&lookup));
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

/// The owner Kubernetes gives a pod: its Backstage component (`backstage_kubernetes_id`), then
/// `team_from` in order.
fn k8s_owner(catalog: &Catalog, k: &K8s, found: &Found) -> Option<Arc<Ownership>> {
    let pod = &found.pod;
    if k.cfg.backstage_kubernetes_id
        && let Some(o) = pod.label(sightline_k8s::BACKSTAGE_KUBERNETES_ID).and_then(|id| catalog.kubernetes_id(id))
    {
        return Some(o.clone());
    }
    k.cfg.team_from.iter().find_map(|t| {
        let ns = found.namespace.as_deref();
        let v = match (t.from, &t.label, &t.annotation) {
            (Object::Pod, Some(l), _) => pod.label(l),
            (Object::Pod, None, Some(a)) => pod.annotation(a),
            (Object::Namespace, Some(l), _) => ns.and_then(|n| n.label(l)),
            (Object::Namespace, None, Some(a)) => ns.and_then(|n| n.annotation(a)),
            _ => None,
        }?;
        let v = v.trim();
        (!v.is_empty()).then(|| Arc::new(catalog.team_owner(v, t.source())))
    })
}

/// Whether a request has exactly one `Resource*` entry (read from the entries' headers only).
fn single_entry(buf: &[u8]) -> bool {
    let mut n = 0;
    for f in wire::Fields::new(buf) {
        match f {
            Ok(f) if f.number == 1 => n += 1,
            Ok(_) => {}
            Err(_) => return false,
        }
        if n > 1 {
            return false;
        }
    }
    n == 1
}

/// The resource's `service.name`, for messages.
fn service_name(resource: &[u8]) -> Option<&str> {
    wire::attributes(resource, 1)
        .filter_map(Result::ok)
        .find(|a| a.key == "service.name")
        .and_then(|a| a.value.as_str())
}

fn count(counters: &TeamCounters, entry_len: u64, items: u64) {
    counters.resources.inc();
    counters.bytes.add(entry_len);
    counters.items.add(items);
    if let Some(u) = &counters.unowned {
        u.inc();
    }
}

impl ResourceEditor for Editor<'_> {
    fn edit(&mut self, resource: &[u8], entry: &[u8]) -> &[u8] {
        let counted = self.entries.get(self.next).copied();
        self.next += 1;
        let items = self.single.or(counted).unwrap_or_else(|| wire::count_items(self.signal, entry));
        let entry_len = entry.len() as u64;
        let mut key = xxhash_rust::xxh3::xxh3_64(resource);
        if let Some(peer) = self.peer {
            key ^= xxhash_rust::xxh3::xxh3_64(&match peer {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            });
        }
        let hit = matches!(self.cache.map.get(&key),
            Some(e) if e.generation == self.generation && e.peer == self.peer && *e.original == *resource);
        if let Some(b) = self.bound {
            if !hit {
                let mut out = Vec::with_capacity(resource.len() + 160);
                let o = self.build(resource, &mut out);
                let counters = self.metrics.get(&o);
                self.insert(key, resource, out, counters, o);
            }
            return self.edit_bound(key, resource, entry_len as usize, items, b);
        }
        if !hit {
            let mut out = Vec::with_capacity(resource.len() + 160);
            let o = self.build(resource, &mut out);
            let counters = self.metrics.get(&o);
            self.insert(key, resource, out, counters, o);
        }
        let e = &self.cache.map[&key];
        count(&e.counters, entry_len, items);
        if let Some(u) = &e.unowned {
            let now = *self.now.get_or_insert_with(sightline_core::governance::unix_now);
            u.seen(items, entry_len, now);
        }
        &e.rewritten
    }
}

impl Editor<'_> {
    fn insert(&mut self, key: u64, resource: &[u8], out: Vec<u8>, counters: Arc<TeamCounters>, o: Arc<Ownership>) {
        if self.cache.map.len() >= self.cache_size {
            // Bounded: drop an arbitrary eighth (the map's iteration order is effectively
            // random), so a working set just over the limit degrades gradually instead of
            // missing on every request after a full clear.
            let evict: Vec<u64> = self.cache.map.keys().take(self.cache_size / 8 + 1).copied().collect();
            for k in evict {
                self.cache.map.remove(&k);
            }
        }
        let unowned = match self.governance {
            Some(g) if o.is_default() => {
                let attr = |k: &str| {
                    wire::attributes(resource, 1)
                        .filter_map(Result::ok)
                        .find(|a| a.key == k)
                        .and_then(|a| a.value.as_str().map(str::to_string))
                };
                let service = attr("service.name").unwrap_or_else(|| "(no service.name)".into());
                Some(g.unowned(&service, &attr("telemetry.sdk.language").unwrap_or_default()))
            }
            _ => None,
        };
        self.cache.map.insert(
            key,
            Entry {
                original: resource.into(),
                peer: self.peer,
                rewritten: out.into_boxed_slice(),
                generation: self.generation,
                counters,
                ownership: o,
                unowned,
                bound: None,
            },
        );
    }
}

impl ResourceStage for OwnershipProcessor {
    /// After `rewrite`, the request's outcome: a refusal (a bound request with a resource of
    /// another team), or the counts held back until the request is known to be accepted.
    fn with_editor(
        &self,
        payload: &Payload,
        rewrite: &mut dyn FnMut(&mut dyn ResourceEditor) -> Result<(), ProcessError>,
    ) -> Result<(), ProcessError> {
        let catalog = self.handle.current();
        let generation = (self.handle.generation(), self.k8s.as_ref().map_or(0, |k| k.store.generation()));
        let peer = self
            .k8s
            .as_ref()
            .filter(|k| k.connection)
            .and_then(|_| payload.client().and_then(|c| c.addr))
            .map(|a| a.to_canonical());
        let cell = self.cache.get_or_default();
        let mut cache = cell.borrow_mut();
        let mut editor = Editor {
            catalog: &catalog,
            generation,
            k8s: self.k8s.as_ref(),
            peer,
            names: &self.names,
            cache: &mut cache,
            cache_size: self.cache_size,
            metrics: &self.metrics,
            bound: payload.bound_team(),
            refused: None,
            deferred: Vec::new(),
            signal: self.signal,
            governance: self.governance.as_deref(),
            now: None,
            single: single_entry(payload.bytes()).then(|| payload.items()),
            entries: payload.entry_items(),
            next: 0,
        };
        let written = rewrite(&mut editor);
        // The refusal first, as when this processor runs before the one that rewrites.
        if let Some(message) = editor.refused.take() {
            return Err(ProcessError::PermissionDenied { message });
        }
        written?;
        for (c, n, items) in editor.deferred.drain(..) {
            count(&c, n, items);
        }
        Ok(())
    }
}

impl Processor for OwnershipProcessor {
    /// Not with `metrics_datapoint_attributes`: that copies the team to every data point,
    /// which is more than a resource edit.
    fn resource_stage(&self) -> Option<&dyn ResourceStage> {
        if self.points.is_some() { None } else { Some(self) }
    }

    fn process(&self, payload: Payload) -> Result<Payload, ProcessError> {
        let mut out = Vec::new();
        self.with_editor(&payload, &mut |editor| {
            wire::rewrite_resources(payload.bytes(), &mut out, editor).map_err(|e| ProcessError::Invalid(e.to_string()))
        })?;
        // The output is held (and budgeted) by its length until the last exporter is done:
        // give back the slack reserved for growth, so memory in use matches the budget.
        if let Some(pt) = &self.points {
            let mut scratch = pt.scratch.get_or_default().borrow_mut();
            let mut with_points = Vec::new();
            let n = crate::datapoints::copy_resource_attribute_to_points(
                &out,
                &self.names.team,
                &mut with_points,
                &mut scratch,
            )
            .map_err(|e| ProcessError::Invalid(e.to_string()))?;
            pt.points.add(n);
            out = with_points;
        }
        if out.capacity() - out.len() > out.len() / 32 {
            out.shrink_to_fit();
        }
        let items = payload.items();
        Ok(payload.with_bytes(Bytes::from(out), items))
    }
}
