//! The enrichment rewriter: the `ownership` processor (over `wire::rewrite_resources`) with a
//! small catalog, on any request that passes `inspect` (as the receiver hands it over: invalid
//! items already dropped). Input: one byte for the signal, then the request.
//!
//! Oracles:
//! - nothing panics, and the processor never fails on a request that passed `inspect`;
//! - its output passes `inspect` with the same item and resource counts;
//! - when prost decodes the input, it decodes the output, and the output is the input with
//!   each resource's attributes replaced by: the client's attributes minus any with an
//!   ownership key (in order), then `owner.team`, the team's and service's metadata that are
//!   set, and `owner.source`, as `Catalog::resolve` answers for the client's attributes
//!   (first string value per key) — spans, log records, metrics, scopes, schema URLs and the
//!   resource's other fields unchanged. Compared as prost's canonical re-encoding.
//!
//! The processor keeps its per-thread cache across inputs, so cache hits are checked too.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sightline_core::{Payload, Processor, Registry, Signal, wire};
use sightline_fuzz::{Request, split_signal};
use sightline_ownership::{Catalog, CatalogHandle};
use sightline_processors::ownership::{OwnershipConfig, OwnershipProcessor};
use std::sync::{Arc, LazyLock};

/// Exact services, a glob rule, a regex rule and a rule on another attribute; teams with and
/// without metadata.
const CATALOG: &str = r##"
teams:
  - name: payments
    contact: "#payments"
    oncall: "pagerduty:PAY123"
  - name: search
    contact: search@acme.test
  - name: platform
services:
  - name: checkout
    team: payments
    system: storefront
    repository: github.com/acme/checkout
    criticality: high
  - name: indexer
    team: search
rules:
  - match: { service.name: "pay-*" }
    team: payments
  - match: { k8s.namespace.name: "regex:^(infra|platform)-[a-z]+$" }
    team: platform
  - match: { deployment.environment: search }
    team: search
"##;

const OWNER_KEYS: [&str; 7] = [
    "owner.team",
    "owner.contact",
    "owner.oncall",
    "owner.system",
    "owner.repository",
    "service.criticality",
    "owner.source",
];

struct Setup {
    handle: Arc<CatalogHandle>,
    processors: Vec<OwnershipProcessor>,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("sightline-fuzz-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("teams.yaml"), CATALOG).expect("write the catalog");
    // Through serde, so that options added later keep their defaults here.
    let json = format!(r#"{{"catalog":[{:?}],"watch":false,"cache_size":64}}"#, dir.display().to_string());
    let cfg: OwnershipConfig = serde_json::from_str(&json).expect("ownership config");
    let handle = Arc::new(CatalogHandle::new(cfg.catalog_config()).expect("the catalog loads"));
    let registry = Registry::new();
    let processors =
        Signal::ALL.iter().map(|&s| OwnershipProcessor::new("ownership", s, &cfg, handle.clone(), &registry)).collect();
    Setup { handle, processors }
});

fuzz_target!(|data: &[u8]| {
    if let Some((signal, buf)) = split_signal(data) {
        check(signal, buf);
    }
});

fn check(signal: Signal, buf: &[u8]) {
    let Ok(summary) = wire::inspect(signal, buf) else { return };
    let input: Vec<u8> = if summary.invalid_items > 0 {
        wire::retain_items(buf, &mut |i| wire::item_is_valid(signal, i)).expect("retain_items after inspect").0
    } else {
        buf.to_vec()
    };
    let setup = &*SETUP;
    let processor = &setup.processors[Signal::ALL.iter().position(|&s| s == signal).unwrap_or(0)];
    let payload = Payload::new(signal, Bytes::from(input.clone()), summary.items, None);
    let out = processor.process(payload).expect("the ownership processor accepts what inspect accepts");
    assert_eq!(out.items(), summary.items);
    let after = wire::inspect(signal, out.bytes()).expect("the enriched request inspects");
    assert_eq!((after.items, after.resources, after.invalid_items), (summary.items, summary.resources, 0));

    let catalog = setup.handle.snapshot();
    match signal {
        Signal::Traces => compare::<ExportTraceServiceRequest>(&catalog, &input, out.bytes()),
        Signal::Metrics => compare::<ExportMetricsServiceRequest>(&catalog, &input, out.bytes()),
        Signal::Logs => compare::<ExportLogsServiceRequest>(&catalog, &input, out.bytes()),
    }
}

fn compare<R: Request>(catalog: &Catalog, input: &[u8], output: &[u8]) {
    let Ok(mut expected) = R::decode(input) else { return };
    let got = R::decode(output).expect("prost decodes the enriched request when it decodes the input");
    for r in expected.resources_mut() {
        let resource = r.get_or_insert_with(Resource::default);
        enrich(catalog, resource);
    }
    // Byte comparison of canonical encodings (a NaN attribute would defeat `==`).
    assert_eq!(got.encode_to_vec(), expected.encode_to_vec(), "enriched request differs from the expected one");
}

/// What the processor must make of one resource, written independently of it.
fn enrich(catalog: &Catalog, resource: &mut Resource) {
    resource.attributes.retain(|kv| !OWNER_KEYS.contains(&kv.key.as_str()));
    let attrs = &resource.attributes;
    let lookup = |key: &str| {
        attrs.iter().filter(|kv| kv.key == key).find_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
    };
    let o = catalog.resolve(&lookup);
    let mut added = vec![string_kv("owner.team", &o.team)];
    for (key, value) in [
        ("owner.contact", &o.contact),
        ("owner.oncall", &o.oncall),
        ("owner.system", &o.system),
        ("owner.repository", &o.repository),
        ("service.criticality", &o.criticality),
    ] {
        if let Some(v) = value {
            added.push(string_kv(key, v));
        }
    }
    added.push(string_kv("owner.source", &o.source));
    resource.attributes.extend(added);
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}
