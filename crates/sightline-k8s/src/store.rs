//! The pod and namespace cache, and the lookup by association rule.
//!
//! Writers are the watch tasks (one event at a time); readers are the ownership processors,
//! and only when a resource is not in their per-thread cache or the cache's generation
//! changed. The lock is a `std::sync::RwLock`: readers do not wait on each other, and a writer
//! holds it for one map update.

use crate::{Association, SourceFrom};
use sightline_core::{Counter, Gauge, Registry};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// The label and annotation keys the cache keeps (everything else is dropped on arrival).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kept {
    pub pod_labels: Vec<String>,
    pub pod_annotations: Vec<String>,
    pub namespace_labels: Vec<String>,
    pub namespace_annotations: Vec<String>,
}

impl Kept {
    /// The kept `(key, value)` pairs of `all`, keys shared with every other object.
    pub fn pick<'a>(keys: &[Arc<str>], all: impl Fn(&str) -> Option<&'a str>) -> Box<[(Arc<str>, Box<str>)]> {
        keys.iter().filter_map(|k| all(k).map(|v| (k.clone(), Box::from(v)))).collect()
    }
}

/// A pod, stripped to what ownership uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMeta {
    pub uid: Arc<str>,
    pub name: Arc<str>,
    pub namespace: Arc<str>,
    pub node: Option<Arc<str>>,
    /// From the owning ReplicaSet's name less the `pod-template-hash` suffix.
    pub deployment: Option<Arc<str>>,
    pub ip: Option<IpAddr>,
    /// Kept labels (see [`Kept`]).
    pub labels: Box<[(Arc<str>, Box<str>)]>,
    /// Kept annotations.
    pub annotations: Box<[(Arc<str>, Box<str>)]>,
    /// `metadata.creationTimestamp`, seconds since the epoch (the newer pod wins an IP).
    pub created: i64,
    /// Whether the pod may own its IP: it has one, is not terminating, not on the host's
    /// network and not completed (`Succeeded`/`Failed`).
    pub owns_ip: bool,
}

impl PodMeta {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }

    /// Heap and inline bytes this entry holds (names, kept labels; shared keys not counted).
    pub fn bytes(&self) -> usize {
        let s = |a: &Arc<str>| a.len() + 16;
        let kv = |l: &[(Arc<str>, Box<str>)]| l.iter().map(|(_, v)| v.len() + 32).sum::<usize>();
        std::mem::size_of::<PodMeta>()
            + s(&self.uid)
            + s(&self.name)
            + self.deployment.as_ref().map_or(0, s)
            + kv(&self.labels)
            + kv(&self.annotations)
    }
}

/// A namespace, stripped to its kept labels and annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceMeta {
    pub name: Arc<str>,
    pub labels: Box<[(Arc<str>, Box<str>)]>,
    pub annotations: Box<[(Arc<str>, Box<str>)]>,
}

impl NamespaceMeta {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }
}

/// What a lookup found: the pod and its namespace (when the namespace is known).
#[derive(Debug, Clone)]
pub struct Found {
    pub pod: Arc<PodMeta>,
    pub namespace: Option<Arc<NamespaceMeta>>,
}

#[derive(Default)]
struct Index {
    /// By UID: live pods, and deleted ones for the grace period.
    pods: HashMap<Arc<str>, Arc<PodMeta>>,
    /// The pod that owns each IP now.
    by_ip: HashMap<IpAddr, Arc<PodMeta>>,
    /// namespace -> name -> pod.
    by_name: HashMap<Arc<str>, HashMap<Arc<str>, Arc<PodMeta>>>,
    namespaces: HashMap<Arc<str>, Arc<NamespaceMeta>>,
    /// Deleted pods, in deletion order, with when to forget them.
    deleted: VecDeque<(Instant, Arc<str>)>,
    deleted_uids: HashSet<Arc<str>>,
    /// During a (re)list: what the list has shown so far.
    relist_pods: Option<HashSet<Arc<str>>>,
    relist_namespaces: Option<HashSet<Arc<str>>>,
    /// What the pods in `pods` hold ([`PodMeta::bytes`]), kept as they come and go.
    pod_bytes: usize,
}

/// Self-metrics of one cache.
struct Metrics {
    pods: Gauge,
    bytes: Gauge,
    namespaces: Gauge,
    hits: Counter,
    misses: Counter,
}

/// Which watch restarted, for [`Store::watch_restarted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pods,
    Namespaces,
}

/// The cache. Shared (`Arc`) by the watch tasks and the processors of every signal.
pub struct Store {
    index: RwLock<Index>,
    generation: AtomicU64,
    grace: Duration,
    kept: KeptKeys,
    /// A sidecar's own pod: every lookup finds it.
    fixed: Option<Found>,
    metrics: Option<Metrics>,
    restarts: Option<[Counter; 2]>,
    synced: tokio::sync::watch::Sender<[bool; 2]>,
}

/// [`Kept`] with shared keys.
#[derive(Default)]
pub struct KeptKeys {
    pub pod_labels: Vec<Arc<str>>,
    pub pod_annotations: Vec<Arc<str>>,
    pub namespace_labels: Vec<Arc<str>>,
    pub namespace_annotations: Vec<Arc<str>>,
}

impl From<&Kept> for KeptKeys {
    fn from(k: &Kept) -> Self {
        let a = |v: &[String]| v.iter().map(|s| Arc::from(s.as_str())).collect();
        KeptKeys {
            pod_labels: a(&k.pod_labels),
            pod_annotations: a(&k.pod_annotations),
            namespace_labels: a(&k.namespace_labels),
            namespace_annotations: a(&k.namespace_annotations),
        }
    }
}

impl Store {
    /// An empty cache that keeps `kept` and forgets deleted pods after `grace`. With a
    /// registry (and the processor id), it reports its size, lookups and watch restarts.
    pub fn new(kept: &Kept, grace: Duration, metrics: Option<(&Registry, &str)>) -> Store {
        let (synced, _) = tokio::sync::watch::channel([false; 2]);
        Store {
            index: RwLock::new(Index::default()),
            generation: AtomicU64::new(1),
            grace,
            kept: KeptKeys::from(kept),
            fixed: None,
            metrics: metrics.map(|(r, id)| Metrics {
                pods: r.gauge(
                    "sightline_k8s_pods",
                    "Pods in the Kubernetes metadata cache (deleted pods kept for the grace period included).",
                    &[("processor", id)],
                ),
                bytes: r.gauge(
                    "sightline_k8s_pod_cache_bytes",
                    "Bytes the cached pods hold (names, UID, Deployment and the kept labels and annotations).",
                    &[("processor", id)],
                ),
                namespaces: r.gauge(
                    "sightline_k8s_namespaces",
                    "Namespaces in the Kubernetes metadata cache.",
                    &[("processor", id)],
                ),
                hits: r.counter(
                    "sightline_k8s_lookups_total",
                    "Lookups in the Kubernetes metadata cache (one per resource the ownership processor has not cached yet), by result (hit: a pod was found).",
                    &[("processor", id), ("result", "hit")],
                ),
                misses: r.counter(
                    "sightline_k8s_lookups_total",
                    "Lookups in the Kubernetes metadata cache (one per resource the ownership processor has not cached yet), by result (hit: a pod was found).",
                    &[("processor", id), ("result", "miss")],
                ),
            }),
            restarts: metrics.map(|(r, id)| {
                let c = |resource: &str| {
                    r.counter(
                        "sightline_k8s_watch_restarts_total",
                        "Kubernetes watches that failed and were started again (a full list follows), by resource.",
                        &[("processor", id), ("resource", resource)],
                    )
                };
                [c("pods"), c("namespaces")]
            }),
            synced,
        }
    }

    /// A sidecar's cache: one pod, found by every lookup; never changes.
    pub fn fixed(pod: PodMeta, metrics: Option<(&Registry, &str)>) -> Store {
        let mut s = Store::new(&Kept::default(), Duration::ZERO, metrics);
        if let Some(m) = &s.metrics {
            m.pods.set(1);
        }
        s.fixed = Some(Found { pod: Arc::new(pod), namespace: None });
        s.synced.send_replace([true; 2]);
        s
    }

    /// The keys to keep.
    pub fn kept(&self) -> &KeptKeys {
        &self.kept
    }

    /// Changes whenever a lookup could give a different answer.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self, ix: &Index) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(m) = &self.metrics {
            m.pods.set(ix.pods.len() as i64);
            m.bytes.set(ix.pod_bytes as i64);
            m.namespaces.set(ix.namespaces.len() as i64);
        }
    }

    /// A pod was added or changed.
    pub fn apply_pod(&self, pod: PodMeta) {
        let mut ix = self.write();
        if let Some(seen) = &mut ix.relist_pods {
            seen.insert(pod.uid.clone());
        }
        if ix.pods.get(&pod.uid).is_some_and(|old| **old == pod) && !ix.deleted_uids.contains(&pod.uid) {
            return; // nothing ownership uses changed (most status updates)
        }
        let pod = Arc::new(pod);
        ix.pod_bytes += pod.bytes();
        if let Some(old) = ix.pods.insert(pod.uid.clone(), pod.clone()) {
            ix.pod_bytes -= old.bytes();
            unindex(&mut ix, &old);
        }
        if ix.deleted_uids.remove(&pod.uid) {
            // A pod seen again after its delete (a re-list raced it): it is live.
            ix.deleted.retain(|(_, u)| *u != pod.uid);
        }
        if pod.owns_ip
            && let Some(ip) = pod.ip
        {
            match ix.by_ip.entry(ip) {
                Entry::Vacant(v) => {
                    v.insert(pod.clone());
                }
                Entry::Occupied(mut o) => {
                    // Two live pods with one IP: the old one's delete is late. The newer
                    // pod keeps the IP whichever event comes first.
                    if o.get().uid == pod.uid || o.get().created <= pod.created {
                        o.insert(pod.clone());
                    }
                }
            }
        }
        ix.by_name.entry(pod.namespace.clone()).or_default().insert(pod.name.clone(), pod.clone());
        self.changed(&ix);
    }

    /// A pod was deleted: its IP and name are released now; its UID is still found for the
    /// grace period.
    pub fn delete_pod(&self, uid: &str) {
        let mut ix = self.write();
        self.delete_locked(&mut ix, uid, Instant::now());
        self.changed(&ix);
    }

    fn delete_locked(&self, ix: &mut Index, uid: &str, now: Instant) {
        let Some(pod) = ix.pods.get(uid).cloned() else { return };
        if ix.deleted_uids.contains(uid) {
            return;
        }
        unindex(ix, &pod);
        if self.grace.is_zero() {
            if let Some(p) = ix.pods.remove(uid) {
                ix.pod_bytes -= p.bytes();
            }
        } else {
            ix.deleted.push_back((now + self.grace, pod.uid.clone()));
            ix.deleted_uids.insert(pod.uid.clone());
        }
    }

    /// Forgets deleted pods whose grace period is over. Called by the watch task.
    pub fn sweep(&self, now: Instant) {
        let mut ix = self.write();
        let mut any = false;
        while ix.deleted.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, uid)) = ix.deleted.pop_front()
                && ix.deleted_uids.remove(&uid)
                && let Some(p) = ix.pods.remove(&uid)
            {
                ix.pod_bytes -= p.bytes();
                any = true;
            }
        }
        if any {
            self.changed(&ix);
        }
    }

    pub fn apply_namespace(&self, ns: NamespaceMeta) {
        let mut ix = self.write();
        if let Some(seen) = &mut ix.relist_namespaces {
            seen.insert(ns.name.clone());
        }
        if ix.namespaces.get(&ns.name).is_some_and(|old| **old == ns) {
            return;
        }
        ix.namespaces.insert(ns.name.clone(), Arc::new(ns));
        self.changed(&ix);
    }

    pub fn delete_namespace(&self, name: &str) {
        let mut ix = self.write();
        if ix.namespaces.remove(name).is_some() {
            self.changed(&ix);
        }
    }

    /// A (re)list starts: what it does not show by [`Store::end_relist`] was deleted while
    /// the watch was away.
    pub fn begin_relist(&self, kind: Kind) {
        let mut ix = self.write();
        match kind {
            Kind::Pods => ix.relist_pods = Some(HashSet::new()),
            Kind::Namespaces => ix.relist_namespaces = Some(HashSet::new()),
        }
    }

    /// The (re)list is complete: objects it did not show are deleted, and the kind is synced.
    pub fn end_relist(&self, kind: Kind) {
        let mut ix = self.write();
        let now = Instant::now();
        match kind {
            Kind::Pods => {
                if let Some(seen) = ix.relist_pods.take() {
                    let gone: Vec<Arc<str>> = ix
                        .pods
                        .keys()
                        .filter(|u| !seen.contains(*u) && !ix.deleted_uids.contains(*u))
                        .cloned()
                        .collect();
                    for uid in gone {
                        self.delete_locked(&mut ix, &uid, now);
                    }
                }
            }
            Kind::Namespaces => {
                if let Some(seen) = ix.relist_namespaces.take() {
                    ix.namespaces.retain(|n, _| seen.contains(n));
                }
            }
        }
        self.changed(&ix);
        drop(ix);
        self.synced.send_modify(|s| s[kind as usize] = true);
    }

    /// A watch failed and is starting again.
    pub fn watch_restarted(&self, kind: Kind) {
        if let Some(r) = &self.restarts {
            r[kind as usize].inc();
        }
    }

    /// True once pods and namespaces have each been listed once.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow() == [true; 2]
    }

    /// Waits until [`Store::is_synced`].
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s == [true; 2]).await;
    }

    /// Pods and namespaces in the cache.
    pub fn len(&self) -> (usize, usize) {
        if self.fixed.is_some() {
            return (1, 0);
        }
        let ix = self.read();
        (ix.pods.len(), ix.namespaces.len())
    }

    /// Bytes the cached pods hold (see [`PodMeta::bytes`]).
    pub fn pod_bytes(&self) -> usize {
        self.read().pod_bytes
    }

    /// The pod of a resource: the first `rules` entry whose sources are all present decides
    /// (as in `k8sattributes`: a later rule is not tried when that pod is unknown). `attr`
    /// reads the resource's string attributes; `peer` is the connection's address.
    pub fn find<'a>(
        &self,
        rules: &[Association],
        attr: &dyn Fn(&str) -> Option<&'a str>,
        peer: Option<IpAddr>,
    ) -> Option<Found> {
        if let Some(f) = &self.fixed {
            self.count(true);
            return Some(f.clone());
        }
        let ix = self.read();
        let found = rules.iter().find_map(|rule| identify(rule, attr, peer)).and_then(|keys| ix.resolve(&keys));
        self.count(found.is_some());
        found.map(|pod| {
            let namespace = ix.namespaces.get(&pod.namespace).cloned();
            Found { pod, namespace }
        })
    }

    fn count(&self, hit: bool) {
        if let Some(m) = &self.metrics {
            if hit { m.hits.inc() } else { m.misses.inc() }
        }
    }
}

/// Removes the IP and name entries that point at `pod`.
fn unindex(ix: &mut Index, pod: &PodMeta) {
    if let Some(ip) = pod.ip
        && ix.by_ip.get(&ip).is_some_and(|p| p.uid == pod.uid)
    {
        ix.by_ip.remove(&ip);
    }
    if let Some(names) = ix.by_name.get_mut(&pod.namespace) {
        if names.get(&pod.name).is_some_and(|p| p.uid == pod.uid) {
            names.remove(&pod.name);
        }
        if names.is_empty() {
            ix.by_name.remove(&pod.namespace);
        }
    }
}

/// What one rule's sources read from a resource.
#[derive(Default, Debug, PartialEq, Eq)]
struct Keys<'a> {
    uid: Option<&'a str>,
    ip: Option<IpAddr>,
    name: Option<&'a str>,
    namespace: Option<&'a str>,
}

/// The identifiers of `rule`, when all its sources are present.
fn identify<'a>(rule: &Association, attr: &dyn Fn(&str) -> Option<&'a str>, peer: Option<IpAddr>) -> Option<Keys<'a>> {
    let mut k = Keys::default();
    if rule.sources.is_empty() {
        return None;
    }
    for s in &rule.sources {
        match s.from {
            SourceFrom::Connection => k.ip = Some(peer?.to_canonical()),
            SourceFrom::ResourceAttribute => {
                let name = s.name.as_deref()?;
                let v = attr(name).filter(|v| !v.is_empty())?;
                match name {
                    "k8s.pod.uid" => k.uid = Some(v),
                    "k8s.pod.name" => k.name = Some(v),
                    "k8s.namespace.name" => k.namespace = Some(v),
                    // k8s.pod.ip, ip, host.name: an address (a host name that is not one
                    // does not identify a pod).
                    _ => k.ip = Some(v.parse::<IpAddr>().ok()?.to_canonical()),
                }
            }
        }
    }
    Some(k)
}

impl Index {
    /// The one pod every present key names.
    fn resolve(&self, k: &Keys<'_>) -> Option<Arc<PodMeta>> {
        let by_uid = k.uid.map(|uid| self.pods.get(uid));
        let by_ip = k.ip.map(|ip| self.by_ip.get(&ip));
        let by_name = match (k.namespace, k.name) {
            (Some(ns), Some(name)) => Some(self.by_name.get(ns).and_then(|m| m.get(name))),
            _ => None,
        };
        let mut pod: Option<&Arc<PodMeta>> = None;
        for p in [by_uid, by_ip, by_name].into_iter().flatten() {
            let p = p?;
            if pod.is_some_and(|q| q.uid != p.uid) {
                return None;
            }
            pod = Some(p);
        }
        pod.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AssociationSource;

    fn pod(uid: &str, name: &str, ip: &str, created: i64) -> PodMeta {
        PodMeta {
            uid: uid.into(),
            name: name.into(),
            namespace: "shop".into(),
            node: Some("node-1".into()),
            deployment: None,
            ip: Some(ip.parse().unwrap()),
            labels: Box::new([]),
            annotations: Box::new([]),
            created,
            owns_ip: true,
        }
    }

    fn rules() -> Vec<Association> {
        crate::KubernetesConfig::default().pod_association
    }

    fn by_ip(s: &Store, ip: &str) -> Option<String> {
        s.find(&rules(), &|_| None, Some(ip.parse().unwrap())).map(|f| f.pod.name.to_string())
    }

    fn by_uid(s: &Store, uid: &str) -> Option<String> {
        let attr = |k: &str| (k == "k8s.pod.uid").then_some(uid);
        s.find(&rules(), &attr, None).map(|f| f.pod.name.to_string())
    }

    fn store() -> Store {
        Store::new(&Kept::default(), Duration::from_secs(60), None)
    }

    #[test]
    fn a_late_delete_of_the_old_pod_does_not_release_the_new_pods_ip() {
        let s = store();
        s.apply_pod(pod("u-old", "old", "10.0.0.7", 100));
        s.apply_pod(pod("u-new", "new", "10.0.0.7", 200));
        assert_eq!(by_ip(&s, "10.0.0.7").as_deref(), Some("new"));
        // The old pod's late update (still running, by its own account) does not take it back.
        s.apply_pod(PodMeta {
            labels: Box::new([(Arc::from("x"), Box::from("y"))]),
            ..pod("u-old", "old", "10.0.0.7", 100)
        });
        assert_eq!(by_ip(&s, "10.0.0.7").as_deref(), Some("new"));
        s.delete_pod("u-old");
        assert_eq!(by_ip(&s, "10.0.0.7").as_deref(), Some("new"));
        // The deleted pod is still found by its UID during the grace period.
        assert_eq!(by_uid(&s, "u-old").as_deref(), Some("old"));
    }

    #[test]
    fn terminating_pods_release_their_ip_and_deleted_ones_are_forgotten_after_the_grace_period() {
        let s = store();
        s.apply_pod(pod("u1", "a", "10.0.0.1", 1));
        s.apply_pod(PodMeta { owns_ip: false, ..pod("u1", "a", "10.0.0.1", 1) });
        assert_eq!(by_ip(&s, "10.0.0.1"), None);
        assert_eq!(by_uid(&s, "u1").as_deref(), Some("a"));
        s.delete_pod("u1");
        s.sweep(Instant::now());
        assert_eq!(by_uid(&s, "u1").as_deref(), Some("a"), "within the grace period");
        s.sweep(Instant::now() + Duration::from_secs(61));
        assert_eq!(by_uid(&s, "u1"), None);
        assert_eq!(s.len(), (0, 0));
        assert_eq!(s.pod_bytes(), 0);
    }

    #[test]
    fn a_relist_deletes_what_it_no_longer_shows() {
        let s = store();
        s.begin_relist(Kind::Pods);
        s.apply_pod(pod("u1", "a", "10.0.0.1", 1));
        s.apply_pod(pod("u2", "b", "10.0.0.2", 1));
        s.end_relist(Kind::Pods);
        assert!(!s.is_synced(), "namespaces are not listed yet");
        s.begin_relist(Kind::Namespaces);
        s.end_relist(Kind::Namespaces);
        assert!(s.is_synced());
        // The watch is lost; while it is away, b is deleted; the new list shows only a.
        s.begin_relist(Kind::Pods);
        s.apply_pod(pod("u1", "a", "10.0.0.1", 1));
        s.end_relist(Kind::Pods);
        assert_eq!(by_ip(&s, "10.0.0.2"), None);
        assert_eq!(by_ip(&s, "10.0.0.1").as_deref(), Some("a"));
    }

    #[test]
    fn the_first_rule_whose_sources_are_present_decides() {
        let s = store();
        s.apply_pod(pod("u1", "a", "10.0.0.1", 1));
        s.apply_pod(pod("u2", "b", "10.0.0.2", 1));
        // The resource names pod b's UID; the connection comes from a: the UID rule decides.
        let attr = |k: &str| (k == "k8s.pod.uid").then_some("u2");
        let f = s.find(&rules(), &attr, Some("10.0.0.1".parse().unwrap())).unwrap();
        assert_eq!(&*f.pod.name, "b");
        // An unknown UID does not fall through to the connection.
        let attr = |k: &str| (k == "k8s.pod.uid").then_some("nope");
        assert!(s.find(&rules(), &attr, Some("10.0.0.1".parse().unwrap())).is_none());
        // IPv4-mapped IPv6 peers (a dual-stack listener) are the IPv4 pod.
        assert_eq!(by_ip(&s, "::ffff:10.0.0.2").as_deref(), Some("b"));
        // A rule of two sources needs both, naming the same pod.
        let both = vec![Association {
            sources: vec![
                AssociationSource { from: SourceFrom::ResourceAttribute, name: Some("k8s.pod.name".into()) },
                AssociationSource { from: SourceFrom::ResourceAttribute, name: Some("k8s.namespace.name".into()) },
            ],
        }];
        let attr = |k: &str| match k {
            "k8s.pod.name" => Some("a"),
            "k8s.namespace.name" => Some("shop"),
            _ => None,
        };
        assert_eq!(s.find(&both, &attr, None).map(|f| f.pod.uid.to_string()).as_deref(), Some("u1"));
        let attr = |k: &str| (k == "k8s.pod.name").then_some("a");
        assert!(s.find(&both, &attr, None).is_none());
    }

    #[test]
    fn unchanged_updates_do_not_change_the_generation() {
        let s = store();
        s.apply_pod(pod("u1", "a", "10.0.0.1", 1));
        let g = s.generation();
        s.apply_pod(pod("u1", "a", "10.0.0.1", 1));
        assert_eq!(s.generation(), g);
        s.apply_pod(pod("u1", "a", "10.0.0.9", 1));
        assert_ne!(s.generation(), g);
        assert_eq!(by_ip(&s, "10.0.0.1"), None);
        assert_eq!(by_ip(&s, "10.0.0.9").as_deref(), Some("a"));
    }
}
