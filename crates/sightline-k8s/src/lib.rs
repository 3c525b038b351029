//! # sightline-k8s — Kubernetes metadata as an ownership source
//!
//! The `ownership` processor's `kubernetes:` block. It owns:
//!
//! - **The configuration** ([`KubernetesConfig`]): pod association rules (the collector's
//!   `k8sattributes` `pod_association`), where the team comes from (`team_from`), the
//!   Backstage `backstage.io/kubernetes-id` link, the node filter and the sidecar mode.
//! - **The cache** ([`Store`]): pods and namespaces stripped to what ownership uses (names,
//!   UID, node, Deployment, IP and only the labels and annotations `team_from` reads), indexed
//!   by UID, by IP and by namespace/name. Lookups take a read lock and never wait on I/O.
//! - **The sources**: [`watch::start`] runs kube-rs watches of pods (node-filtered for agents)
//!   and namespaces; [`downward::load`] reads a sidecar's own pod from the downward API (no API
//!   calls at all).
//!
//! The known failure modes of the collector's `k8sattributes`, and what is done here:
//! - IP reuse: a pod is indexed by UID; the IP index points at the newest running pod with
//!   that IP, and a pod's delete or update only clears the IP entry while it still points at
//!   that pod. Terminating, host-network and completed pods are never in the IP index.
//! - Data before the cache is synced: `wait_for_metadata` holds start-up (and readiness)
//!   until the first list of pods and namespaces is in, within `wait_for_metadata_timeout`;
//!   a resource that found no pod is not remembered as such: the processor looks again after
//!   the next change to the cache.
//! - 410 Gone and lost watches: the watcher lists again, and pods and namespaces that the new
//!   list no longer has are removed ([`Store::begin_relist`] / [`Store::end_relist`]).
//! - Memory: the full objects are dropped as soon as they are read; only [`PodMeta`] stays
//!   (see `bytes_per_pod` in the tests).

pub mod downward;
pub mod store;
#[cfg(feature = "watch")]
pub mod watch;

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

pub use store::{Found, NamespaceMeta, PodMeta, Store};

/// Pod label that links a pod to a Backstage component (the Backstage Kubernetes plugin's).
pub const BACKSTAGE_KUBERNETES_ID: &str = "backstage.io/kubernetes-id";

/// The Deployment of a pod whose owner is a ReplicaSet made by one: the ReplicaSet's name less
/// `-<pod-template-hash>`.
pub fn deployment_name<'a>(replicaset: &'a str, template_hash: Option<&str>) -> Option<&'a str> {
    let hash = template_hash.filter(|h| !h.is_empty())?;
    replicaset.strip_suffix(hash)?.strip_suffix('-').filter(|d| !d.is_empty())
}

/// `processors.ownership.kubernetes`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Use Kubernetes metadata (default false).
    #[serde(default)]
    pub enabled: bool,
    /// `api` (default): watch pods and namespaces through the API server. `downward_api`:
    /// a sidecar, whose data all comes from its own pod, described by the downward API; no
    /// API calls and no RBAC.
    #[serde(default)]
    pub mode: Mode,
    /// Agents: the environment variable holding this node's name (set from `spec.nodeName`
    /// by the downward API); only that node's pods are watched. Unset: every pod (a gateway).
    #[serde(default)]
    pub node_from_env_var: Option<String>,
    /// How a resource is matched to a pod: the first rule whose sources are all present
    /// decides, as in `k8sattributes`. Default: `k8s.pod.uid`, then `k8s.pod.ip`, then the
    /// connection's address.
    #[serde(default = "default_association")]
    pub pod_association: Vec<Association>,
    /// Where the team comes from, in order. Default: the pod's `team` label, then the
    /// namespace's `team` label.
    #[serde(default = "default_team_from")]
    pub team_from: Vec<TeamFrom>,
    /// The pod label `backstage.io/kubernetes-id` names a Backstage component (matched by
    /// the component's `backstage.io/kubernetes-id` annotation, or its name); the component's
    /// owner is the team, before `team_from`. Default false.
    #[serde(default)]
    pub backstage_kubernetes_id: bool,
    /// Hold start-up (and `/readyz`) until the first list of pods and namespaces is in
    /// (default false, as in `k8sattributes`). Start-up fails when it takes longer than
    /// `wait_for_metadata_timeout`.
    #[serde(default)]
    pub wait_for_metadata: bool,
    /// Default 10s.
    #[serde(default = "default_wait", with = "humantime_serde")]
    pub wait_for_metadata_timeout: Duration,
    /// How long a deleted pod is still found by its UID, for data it sent just before it
    /// went (default 2m, as in `k8sattributes`). Its IP is released at once.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub pod_delete_grace_period: Duration,
    /// `mode: downward_api`: where the sidecar's pod is described.
    #[serde(default)]
    pub downward_api: DownwardApi,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            enabled: false,
            mode: Mode::Api,
            node_from_env_var: None,
            pod_association: default_association(),
            team_from: default_team_from(),
            backstage_kubernetes_id: false,
            wait_for_metadata: false,
            wait_for_metadata_timeout: default_wait(),
            pod_delete_grace_period: default_grace(),
            downward_api: DownwardApi::default(),
        }
    }
}

fn default_wait() -> Duration {
    Duration::from_secs(10)
}
fn default_grace() -> Duration {
    Duration::from_secs(120)
}

fn default_association() -> Vec<Association> {
    let attr = |name: &str| Association {
        sources: vec![AssociationSource { from: SourceFrom::ResourceAttribute, name: Some(name.into()) }],
    };
    vec![
        attr("k8s.pod.uid"),
        attr("k8s.pod.ip"),
        Association { sources: vec![AssociationSource { from: SourceFrom::Connection, name: None }] },
    ]
}

fn default_team_from() -> Vec<TeamFrom> {
    vec![
        TeamFrom { from: Object::Pod, label: Some("team".into()), annotation: None },
        TeamFrom { from: Object::Namespace, label: Some("team".into()), annotation: None },
    ]
}

/// `kubernetes.mode`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Api,
    DownwardApi,
}

/// One `pod_association` rule: every source must be present.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Association {
    pub sources: Vec<AssociationSource>,
}

/// `{from: resource_attribute, name: k8s.pod.uid}` or `{from: connection}`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AssociationSource {
    pub from: SourceFrom,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceFrom {
    ResourceAttribute,
    Connection,
}

/// The resource attributes a pod can be found by, and what each means.
pub const ASSOCIATION_ATTRIBUTES: &[&str] =
    &["k8s.pod.uid", "k8s.pod.ip", "ip", "host.name", "k8s.pod.name", "k8s.namespace.name"];

/// One `team_from` entry: a label or an annotation of the pod or its namespace.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TeamFrom {
    pub from: Object,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub annotation: Option<String>,
}

impl TeamFrom {
    /// `owner.source` of a team found this way: `k8s:pod-label`, `k8s:namespace-annotation`...
    pub fn source(&self) -> &'static str {
        match (self.from, self.label.is_some()) {
            (Object::Pod, true) => "k8s:pod-label",
            (Object::Pod, false) => "k8s:pod-annotation",
            (Object::Namespace, true) => "k8s:namespace-label",
            (Object::Namespace, false) => "k8s:namespace-annotation",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Object {
    Pod,
    Namespace,
}

/// `kubernetes.downward_api`: the sidecar's own pod, from environment variables set with
/// `fieldRef` and from the downward API's `labels`/`annotations` files.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DownwardApi {
    /// Default `K8S_POD_NAME` (`metadata.name`).
    pub pod_name_env: String,
    /// Default `K8S_NAMESPACE` (`metadata.namespace`).
    pub namespace_env: String,
    /// Default `K8S_POD_UID` (`metadata.uid`).
    pub pod_uid_env: String,
    /// Default `K8S_NODE_NAME` (`spec.nodeName`).
    pub node_name_env: String,
    /// Default `K8S_POD_IP` (`status.podIP`).
    pub pod_ip_env: String,
    /// A downward-API volume file of `metadata.labels` (default
    /// `/etc/podinfo/labels`; a missing file means no labels).
    pub labels_file: Option<PathBuf>,
    /// A downward-API volume file of `metadata.annotations` (default
    /// `/etc/podinfo/annotations`; a missing file means no annotations).
    pub annotations_file: Option<PathBuf>,
}

impl Default for DownwardApi {
    fn default() -> Self {
        DownwardApi {
            pod_name_env: "K8S_POD_NAME".into(),
            namespace_env: "K8S_NAMESPACE".into(),
            pod_uid_env: "K8S_POD_UID".into(),
            node_name_env: "K8S_NODE_NAME".into(),
            pod_ip_env: "K8S_POD_IP".into(),
            labels_file: Some("/etc/podinfo/labels".into()),
            annotations_file: Some("/etc/podinfo/annotations".into()),
        }
    }
}

impl KubernetesConfig {
    /// Problems with the block, as (path under `kubernetes`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        if !self.enabled {
            return errs;
        }
        for (i, rule) in self.pod_association.iter().enumerate() {
            if rule.sources.is_empty() {
                errs.push((format!("pod_association[{i}].sources"), "must list at least one source".into()));
            }
            for (j, s) in rule.sources.iter().enumerate() {
                let at = format!("pod_association[{i}].sources[{j}]");
                match (s.from, s.name.as_deref()) {
                    (SourceFrom::Connection, Some(_)) => {
                        errs.push((at, "`from: connection` takes no `name`".into()));
                    }
                    (SourceFrom::ResourceAttribute, None) => {
                        errs.push((at, "`from: resource_attribute` needs a `name`".into()));
                    }
                    (SourceFrom::ResourceAttribute, Some(n)) if !ASSOCIATION_ATTRIBUTES.contains(&n) => {
                        errs.push((
                            format!("{at}.name"),
                            format!("{n:?} does not identify a pod: use one of {}", ASSOCIATION_ATTRIBUTES.join(", ")),
                        ));
                    }
                    _ => {}
                }
            }
            let names: Vec<&str> = rule.sources.iter().filter_map(|s| s.name.as_deref()).collect();
            if names.contains(&"k8s.pod.name") != names.contains(&"k8s.namespace.name") {
                errs.push((
                    format!("pod_association[{i}]"),
                    "`k8s.pod.name` and `k8s.namespace.name` identify a pod together: list both in one rule".into(),
                ));
            }
        }
        if self.pod_association.is_empty() && self.mode == Mode::Api {
            errs.push(("pod_association".into(), "must list at least one rule".into()));
        }
        for (i, t) in self.team_from.iter().enumerate() {
            let at = format!("team_from[{i}]");
            match (&t.label, &t.annotation) {
                (Some(_), Some(_)) | (None, None) => {
                    errs.push((at.clone(), "give exactly one of `label` and `annotation`".into()));
                }
                (Some(k), None) | (None, Some(k)) if k.is_empty() => {
                    errs.push((at.clone(), "the key must not be empty".into()));
                }
                _ => {}
            }
            if self.mode == Mode::DownwardApi && t.from == Object::Namespace {
                errs.push((
                    at,
                    "`from: namespace` needs the API (mode: api): the downward API describes only the pod".into(),
                ));
            }
        }
        if self.mode == Mode::Api
            && let Some(v) = &self.node_from_env_var
            && v.is_empty()
        {
            errs.push(("node_from_env_var".into(), "must not be empty".into()));
        }
        if self.wait_for_metadata_timeout.is_zero() {
            errs.push(("wait_for_metadata_timeout".into(), "must be > 0".into()));
        }
        errs
    }

    /// The pod label keys and annotation keys the cache must keep.
    pub fn kept_keys(&self) -> store::Kept {
        let mut k = store::Kept::default();
        for t in &self.team_from {
            let list = match (t.from, &t.label, &t.annotation) {
                (Object::Pod, Some(l), _) => (&mut k.pod_labels, l),
                (Object::Pod, None, Some(a)) => (&mut k.pod_annotations, a),
                (Object::Namespace, Some(l), _) => (&mut k.namespace_labels, l),
                (Object::Namespace, None, Some(a)) => (&mut k.namespace_annotations, a),
                _ => continue,
            };
            if !list.0.contains(list.1) {
                list.0.push(list.1.clone());
            }
        }
        if self.backstage_kubernetes_id && !k.pod_labels.iter().any(|l| l == BACKSTAGE_KUBERNETES_ID) {
            k.pod_labels.push(BACKSTAGE_KUBERNETES_ID.into());
        }
        k
    }

    /// Whether any association rule uses the connection's address (the processor then keys
    /// its cache by that address too).
    pub fn uses_connection(&self) -> bool {
        self.pod_association.iter().any(|r| r.sources.iter().any(|s| s.from == SourceFrom::Connection))
    }
}

/// What a running source reports: the cache, and whether the first list is in.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(String),
    #[error("the pod and namespace cache did not sync within {0:?} (wait_for_metadata_timeout)")]
    SyncTimeout(Duration),
    #[error("{0}")]
    Downward(String),
}
