//! The ownership processor with Kubernetes metadata, on real protobuf, with the cache filled
//! directly (the watches against a real kube-apiserver are tested in
//! tests/python/test_kubernetes.py): the precedence catalog service entry > Kubernetes >
//! rules > default, the `k8s.*` attributes added but never overwritten, association by UID and
//! by the connection's address, and a change to a pod seen on the next request.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sightline_core::{ClientInfo, Payload, Processor, Registry, Signal};
use sightline_k8s::{KubernetesConfig, NamespaceMeta, PodMeta, Store};
use sightline_ownership::CatalogHandle;
use sightline_processors::ownership::{OwnershipConfig, OwnershipProcessor};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

const CATALOG: &str = r##"
teams:
  - name: payments
    contact: "#payments"
  - name: search
services:
  - name: checkout
    team: payments
rules:
  - match: { k8s.namespace.name: search }
    team: search
"##;

const K8S: &str = r#"
enabled: true
team_from:
  - { from: pod, label: team }
  - { from: namespace, label: team }
  - { from: namespace, annotation: owner.example.com/team }
"#;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn request(resources: &[&[(&str, &str)]]) -> Payload {
    let req = ExportTraceServiceRequest {
        resource_spans: resources
            .iter()
            .map(|attrs| ResourceSpans {
                resource: Some(Resource {
                    attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "s".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                schema_url: String::new(),
            })
            .collect(),
    };
    Payload::new(Signal::Traces, Bytes::from(req.encode_to_vec()), resources.len() as u64, None)
}

fn from(p: Payload, ip: &str) -> Payload {
    let client = ClientInfo { addr: Some(ip.parse().unwrap()), metadata: Vec::new() };
    p.with_sender(None, Some(Arc::new(client)))
}

/// Each resource's attributes, in order.
fn resources(out: &Payload) -> Vec<BTreeMap<String, String>> {
    let req = ExportTraceServiceRequest::decode(out.bytes().clone()).unwrap();
    req.resource_spans
        .iter()
        .map(|rs| {
            let r = rs.resource.as_ref().unwrap();
            r.attributes
                .iter()
                .map(|a| {
                    let v = match &a.value.as_ref().unwrap().value {
                        Some(any_value::Value::StringValue(s)) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (a.key.clone(), v)
                })
                .collect()
        })
        .collect()
}

fn pod(
    uid: &str,
    name: &str,
    ns: &str,
    ip: &str,
    team: Option<&str>,
    kept: &sightline_k8s::store::KeptKeys,
) -> PodMeta {
    let labels: Vec<(&str, &str)> = team.map(|t| ("team", t)).into_iter().collect();
    PodMeta {
        uid: uid.into(),
        name: name.into(),
        namespace: ns.into(),
        node: Some("node-1".into()),
        deployment: Some(name.rsplit_once('-').map_or(name, |(d, _)| d).into()),
        ip: Some(ip.parse::<IpAddr>().unwrap()),
        labels: sightline_k8s::store::Kept::pick(&kept.pod_labels, |k| {
            labels.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v)
        }),
        annotations: Box::new([]),
        created: 1,
        owns_ip: true,
    }
}

fn setup(dir: &std::path::Path) -> (OwnershipProcessor, Arc<Store>, Registry) {
    std::fs::write(dir.join("teams.yaml"), CATALOG).unwrap();
    let k: KubernetesConfig = serde_yaml_ng::from_str(K8S).unwrap();
    assert!(k.validate().is_empty());
    let cfg = OwnershipConfig {
        catalog: vec![dir.to_path_buf()],
        backstage: vec![],
        default_team: "unowned".into(),
        attributes: Default::default(),
        watch: false,
        cache_size: 1024,
        metrics_datapoint_attributes: false,
        kubernetes: k.clone(),
    };
    let handle = Arc::new(CatalogHandle::new(cfg.catalog_config()).unwrap());
    let reg = Registry::new();
    let store = Arc::new(Store::new(&k.kept_keys(), Duration::from_secs(60), Some((&reg, "ownership"))));
    let kept = store.kept();
    store.apply_namespace(NamespaceMeta {
        name: "shop".into(),
        labels: sightline_k8s::store::Kept::pick(&kept.namespace_labels, |k| (k == "team").then_some("shop-team")),
        annotations: Box::new([]),
    });
    store.apply_namespace(NamespaceMeta {
        name: "ops".into(),
        labels: Box::new([]),
        annotations: sightline_k8s::store::Kept::pick(&kept.namespace_annotations, |k| {
            (k == "owner.example.com/team").then_some("platform")
        }),
    });
    store.apply_namespace(NamespaceMeta { name: "search".into(), labels: Box::new([]), annotations: Box::new([]) });
    store.apply_pod(pod("u-cart", "cart-1", "shop", "10.0.0.1", Some("carts"), kept));
    store.apply_pod(pod("u-web", "web-1", "shop", "10.0.0.2", None, kept));
    store.apply_pod(pod("u-tool", "tool-1", "ops", "10.0.0.3", None, kept));
    store.apply_pod(pod("u-idx", "indexer-1", "search", "10.0.0.4", None, kept));
    store.apply_pod(pod("u-co", "checkout-1", "shop", "10.0.0.5", Some("carts"), kept));
    let p = OwnershipProcessor::new("ownership", Signal::Traces, &cfg, handle, &reg).with_kubernetes(&k, store.clone());
    (p, store, reg)
}

fn owner(r: &BTreeMap<String, String>) -> (&str, &str) {
    (r["owner.team"].as_str(), r["owner.source"].as_str())
}

#[test]
fn precedence_is_catalog_service_then_kubernetes_then_rules_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _store, reg) = setup(dir.path());
    let out = p
        .process(request(&[
            // A catalog service entry wins over the pod's label.
            &[("service.name", "checkout"), ("k8s.pod.uid", "u-co")],
            // Pod label, namespace label, namespace annotation.
            &[("service.name", "cart"), ("k8s.pod.uid", "u-cart")],
            &[("service.name", "web"), ("k8s.pod.uid", "u-web")],
            &[("service.name", "tool"), ("k8s.pod.uid", "u-tool")],
            // No team in Kubernetes: the rule on the namespace Kubernetes added decides.
            &[("service.name", "indexer"), ("k8s.pod.uid", "u-idx")],
            // No pod: the default.
            &[("service.name", "mystery"), ("k8s.pod.uid", "u-none")],
        ]))
        .unwrap();
    let r = resources(&out);
    assert_eq!(owner(&r[0]), ("payments", "service"));
    assert_eq!(r[0]["k8s.pod.name"], "checkout-1", "Kubernetes attributes are added whoever owns it");
    assert_eq!(owner(&r[1]), ("carts", "k8s:pod-label"));
    assert_eq!(owner(&r[2]), ("shop-team", "k8s:namespace-label"));
    assert_eq!(owner(&r[3]), ("platform", "k8s:namespace-annotation"));
    assert_eq!(owner(&r[4]), ("search", "rule:1"));
    assert_eq!(r[4]["k8s.namespace.name"], "search");
    assert_eq!(owner(&r[5]), ("unowned", "default"));
    assert!(!r[5].contains_key("k8s.pod.name"));
    let cart = &r[1];
    assert_eq!(cart["k8s.namespace.name"], "shop");
    assert_eq!(cart["k8s.pod.name"], "cart-1");
    assert_eq!(cart["k8s.pod.uid"], "u-cart");
    assert_eq!(cart["k8s.deployment.name"], "cart");
    assert_eq!(cart["k8s.node.name"], "node-1");
    let m = reg.render();
    assert!(m.contains(r#"sightline_k8s_lookups_total{processor="ownership",result="hit"} 5"#), "{m}");
    assert!(m.contains(r#"sightline_k8s_lookups_total{processor="ownership",result="miss"} 1"#), "{m}");
    assert!(m.contains(r#"sightline_k8s_pods{processor="ownership"} 5"#), "{m}");
    assert!(
        m.contains(r#"sightline_ownership_resources_total{processor="ownership",signal="traces",team="carts",source="k8s:pod-label"} 1"#),
        "{m}"
    );
}

#[test]
fn attributes_the_resource_has_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _store, _reg) = setup(dir.path());
    let out = p.process(request(&[&[("k8s.pod.uid", "u-cart"), ("k8s.namespace.name", "sent-by-sdk")]])).unwrap();
    let r = &resources(&out)[0];
    assert_eq!(r["k8s.namespace.name"], "sent-by-sdk");
    assert_eq!(r["k8s.pod.name"], "cart-1");
}

#[test]
fn the_connection_identifies_the_pod_and_keys_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _store, _reg) = setup(dir.path());
    // The same resource bytes from two pods: two owners, each cached under its address.
    let same: &[(&str, &str)] = &[("service.name", "worker")];
    for _ in 0..2 {
        let a = p.process(from(request(&[same]), "10.0.0.1")).unwrap();
        let b = p.process(from(request(&[same]), "::ffff:10.0.0.3")).unwrap();
        assert_eq!(owner(&resources(&a)[0]), ("carts", "k8s:pod-label"));
        assert_eq!(owner(&resources(&b)[0]), ("platform", "k8s:namespace-annotation"));
    }
    // An address no pod owns: nothing from Kubernetes.
    let c = p.process(from(request(&[same]), "10.9.9.9")).unwrap();
    assert_eq!(owner(&resources(&c)[0]), ("unowned", "default"));
}

#[test]
fn a_change_to_the_cache_is_seen_on_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let (p, store, _reg) = setup(dir.path());
    let res: &[(&str, &str)] = &[("service.name", "web"), ("k8s.pod.uid", "u-web")];
    assert_eq!(owner(&resources(&p.process(request(&[res])).unwrap())[0]), ("shop-team", "k8s:namespace-label"));
    let kept = store.kept();
    store.apply_pod(pod("u-web", "web-1", "shop", "10.0.0.2", Some("web-team"), kept));
    assert_eq!(owner(&resources(&p.process(request(&[res])).unwrap())[0]), ("web-team", "k8s:pod-label"));
    // The pod's IP goes to a new pod: connection lookups follow; the UID still finds the old one.
    store.apply_pod(PodMeta { created: 2, ..pod("u-new", "new-1", "ops", "10.0.0.2", None, kept) });
    let by_ip = p.process(from(request(&[&[("service.name", "x")]]), "10.0.0.2")).unwrap();
    assert_eq!(resources(&by_ip)[0]["k8s.pod.uid"], "u-new");
    store.delete_pod("u-web");
    assert_eq!(owner(&resources(&p.process(request(&[res])).unwrap())[0]), ("web-team", "k8s:pod-label"));
    let by_ip = p.process(from(request(&[&[("service.name", "x")]]), "10.0.0.2")).unwrap();
    assert_eq!(resources(&by_ip)[0]["k8s.pod.uid"], "u-new", "the old pod's delete does not release the new pod's IP");
}
