//! The kube-rs watches that feed the [`Store`]: pods (of one node for an agent) and namespaces.
//!
//! kube-runtime's watcher lists, then watches from the list's `resourceVersion` with
//! bookmarks; on `410 Gone` it lists again, which arrives here as `Init` .. `InitDone` and
//! becomes [`Store::begin_relist`] .. [`Store::end_relist`], so pods deleted while the watch
//! was away are removed. Each object is stripped to [`PodMeta`] / [`NamespaceMeta`] on arrival;
//! no full object is kept.

use crate::store::{Kept, KeptKeys, Kind};
use crate::{Error, KubernetesConfig, NamespaceMeta, PodMeta, Store, deployment_name};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The label the Deployment controller puts on a ReplicaSet's pods.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The running watches; dropping this stops them.
pub struct Watches {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The node an agent watches, from `node_from_env_var`.
pub fn node_name(cfg: &KubernetesConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, Error> {
    match &cfg.node_from_env_var {
        None => Ok(None),
        Some(var) => match env(var).filter(|v| !v.is_empty()) {
            Some(node) => Ok(Some(node)),
            None => Err(Error::Client(format!(
                "node_from_env_var: the environment variable {var} is not set (set it from spec.nodeName with the downward API)"
            ))),
        },
    }
}

/// Connects (KUBECONFIG, else the pod's service account) and starts the watches. With
/// `wait_for_metadata`, returns only once the first lists are in.
pub async fn start(cfg: &KubernetesConfig, store: Arc<Store>) -> Result<Watches, Error> {
    let node = node_name(cfg, &|v| std::env::var(v).ok())?;
    let client = Client::try_default().await.map_err(|e| Error::Client(e.to_string()))?;
    let mut pods_cfg = watcher::Config::default();
    if let Some(node) = &node {
        pods_cfg = pods_cfg.fields(&format!("spec.nodeName={node}"));
    }
    tracing::info!(node = node.as_deref().unwrap_or("(all)"), "watching Kubernetes pods and namespaces");
    let mut tasks = Vec::new();
    {
        let store = store.clone();
        let api: Api<Pod> = Api::all(client.clone());
        tasks.push(tokio::spawn(async move {
            let mut events = watcher(api, pods_cfg).default_backoff().boxed();
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(watcher::Event::Init) => store.begin_relist(Kind::Pods),
                    Ok(watcher::Event::InitApply(p) | watcher::Event::Apply(p)) => {
                        if let Some(m) = pod_meta(&p, store.kept()) {
                            store.apply_pod(m);
                        }
                    }
                    Ok(watcher::Event::InitDone) => store.end_relist(Kind::Pods),
                    Ok(watcher::Event::Delete(p)) => {
                        if let Some(uid) = p.metadata.uid.as_deref() {
                            store.delete_pod(uid);
                        }
                    }
                    Err(e) => {
                        store.watch_restarted(Kind::Pods);
                        tracing::warn!(error = %e, "Kubernetes pod watch failed; starting again");
                    }
                }
            }
        }));
    }
    {
        let store = store.clone();
        let api: Api<Namespace> = Api::all(client);
        tasks.push(tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(watcher::Event::Init) => store.begin_relist(Kind::Namespaces),
                    Ok(watcher::Event::InitApply(n) | watcher::Event::Apply(n)) => {
                        if let Some(m) = namespace_meta(&n, store.kept()) {
                            store.apply_namespace(m);
                        }
                    }
                    Ok(watcher::Event::InitDone) => store.end_relist(Kind::Namespaces),
                    Ok(watcher::Event::Delete(n)) => {
                        if let Some(name) = n.metadata.name.as_deref() {
                            store.delete_namespace(name);
                        }
                    }
                    Err(e) => {
                        store.watch_restarted(Kind::Namespaces);
                        tracing::warn!(error = %e, "Kubernetes namespace watch failed; starting again");
                    }
                }
            }
        }));
    }
    {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                store.sweep(Instant::now());
            }
        }));
    }
    let watches = Watches { tasks };
    if cfg.wait_for_metadata {
        tokio::time::timeout(cfg.wait_for_metadata_timeout, store.wait_synced())
            .await
            .map_err(|_| Error::SyncTimeout(cfg.wait_for_metadata_timeout))?;
        let (pods, namespaces) = store.len();
        tracing::info!(pods, namespaces, "Kubernetes metadata synced");
    }
    Ok(watches)
}

/// A pod stripped to what ownership uses; `None` without a UID, name or namespace.
pub fn pod_meta(p: &Pod, kept: &KeptKeys) -> Option<PodMeta> {
    let md = &p.metadata;
    let labels = md.labels.as_ref();
    let annotations = md.annotations.as_ref();
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let ip = status.and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok());
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let completed = matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
    let terminating = md.deletion_timestamp.is_some();
    let hash = labels.and_then(|l| l.get(POD_TEMPLATE_HASH)).map(String::as_str);
    let deployment = md
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "ReplicaSet")
        .and_then(|o| deployment_name(&o.name, hash))
        .map(Arc::from);
    Some(PodMeta {
        uid: Arc::from(md.uid.as_deref()?),
        name: Arc::from(md.name.as_deref()?),
        namespace: Arc::from(md.namespace.as_deref()?),
        node: spec.and_then(|s| s.node_name.as_deref()).map(Arc::from),
        deployment,
        ip,
        labels: Kept::pick(&kept.pod_labels, |k| labels.and_then(|l| l.get(k)).map(String::as_str)),
        annotations: Kept::pick(&kept.pod_annotations, |k| annotations.and_then(|l| l.get(k)).map(String::as_str)),
        created: md.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second()),
        owns_ip: ip.is_some() && !host_network && !completed && !terminating,
    })
}

/// A namespace stripped to its kept labels and annotations.
pub fn namespace_meta(n: &Namespace, kept: &KeptKeys) -> Option<NamespaceMeta> {
    let md = &n.metadata;
    let labels = md.labels.as_ref();
    let annotations = md.annotations.as_ref();
    Some(NamespaceMeta {
        name: Arc::from(md.name.as_deref()?),
        labels: Kept::pick(&kept.namespace_labels, |k| labels.and_then(|l| l.get(k)).map(String::as_str)),
        annotations: Kept::pick(&kept.namespace_annotations, |k| {
            annotations.and_then(|l| l.get(k)).map(String::as_str)
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn kept() -> KeptKeys {
        KeptKeys::from(&KubernetesConfig::default().kept_keys())
    }

    #[test]
    fn a_pod_is_stripped_to_what_ownership_uses() {
        let p = pod(serde_json::json!({
            "metadata": {
                "name": "checkout-7d9f8b6c5-x2x4q", "namespace": "shop", "uid": "u-1",
                "creationTimestamp": "2026-12-01T10:00:00Z",
                "labels": {"team": "payments", "pod-template-hash": "7d9f8b6c5", "app": "checkout", "big": "x"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9f8b6c5", "uid": "rs-1"}]
            },
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"podIP": "10.1.2.3", "phase": "Running"}
        }));
        let m = pod_meta(&p, &kept()).unwrap();
        assert_eq!(&*m.uid, "u-1");
        assert_eq!(m.deployment.as_deref(), Some("checkout"));
        assert_eq!(m.node.as_deref(), Some("node-1"));
        assert_eq!(m.ip, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(m.label("team"), Some("payments"));
        assert_eq!(m.labels.len(), 1, "only the labels team_from reads are kept");
        assert!(m.annotations.is_empty());
        assert!(m.owns_ip);
        assert_eq!(m.created, 1_796_119_200);
    }

    #[test]
    fn terminating_host_network_and_completed_pods_do_not_own_their_ip() {
        let base = serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u"},
            "spec": {"containers": []},
            "status": {"podIP": "10.0.0.1", "phase": "Running"}
        });
        assert!(pod_meta(&pod(base.clone()), &kept()).unwrap().owns_ip);
        let mut t = base.clone();
        t["metadata"]["deletionTimestamp"] = "2026-12-01T10:00:00Z".into();
        assert!(!pod_meta(&pod(t), &kept()).unwrap().owns_ip);
        let mut h = base.clone();
        h["spec"]["hostNetwork"] = true.into();
        assert!(!pod_meta(&pod(h), &kept()).unwrap().owns_ip);
        for phase in ["Succeeded", "Failed"] {
            let mut c = base.clone();
            c["status"]["phase"] = phase.into();
            assert!(!pod_meta(&pod(c), &kept()).unwrap().owns_ip, "{phase}");
        }
    }

    #[test]
    fn the_deployment_comes_from_the_replicaset_name_only_with_its_template_hash() {
        assert_eq!(deployment_name("web-5f6d8c9b7", Some("5f6d8c9b7")), Some("web"));
        assert_eq!(deployment_name("my-web-app-5f6d8c9b7", Some("5f6d8c9b7")), Some("my-web-app"));
        assert_eq!(deployment_name("web-5f6d8c9b7", None), None, "a ReplicaSet of its own");
        assert_eq!(deployment_name("web-5f6d8c9b7", Some("other")), None);
        assert_eq!(deployment_name("5f6d8c9b7", Some("5f6d8c9b7")), None);
    }
}
