//! The enrichment rewriter: the `ownership` processor (over `wire::rewrite_resources`) with a
//! small catalog, on any request that passes `inspect` (as the receiver hands it over: invalid
//! items already dropped). Input: one byte for the signal, then the request. For metrics, a
//! first byte of 128 or more also turns on `metrics_datapoint_attributes`.
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
//! - with `metrics_datapoint_attributes`, additionally every data point of every metric kind
//!   has its `owner.team` attributes removed and the resource's `owner.team` appended.
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
use prost::Message as _;
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
    /// Metrics with `metrics_datapoint_attributes: true`.
    points: OwnershipProcessor,
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
    let json = format!(
        r#"{{"catalog":[{:?}],"watch":false,"cache_size":64,"metrics_datapoint_attributes":true}}"#,
        dir.display().to_string()
    );
    let points_cfg: OwnershipConfig = serde_json::from_str(&json).expect("ownership config");
    let points = OwnershipProcessor::new("ownership/points", Signal::Metrics, &points_cfg, handle.clone(), &registry);
    Setup { handle, processors, points }
});

fuzz_target!(|data: &[u8]| {
    if let Some((signal, buf)) = split_signal(data) {
        check(signal, buf, signal == Signal::Metrics && data[0] >= 128);
    }
});

fn check(signal: Signal, buf: &[u8], points: bool) {
    let Ok(summary) = wire::inspect(signal, buf) else { return };
    let input: Vec<u8> = if summary.invalid_items > 0 {
        wire::retain_items(buf, &mut |i| wire::item_is_valid(signal, i)).expect("retain_items after inspect").0
    } else {
        buf.to_vec()
    };
    let setup = &*SETUP;
    let processor = if points {
        &setup.points
    } else {
        &setup.processors[Signal::ALL.iter().position(|&s| s == signal).unwrap_or(0)]
    };
    let payload = Payload::new(signal, Bytes::from(input.clone()), summary.items, None);
    let out = processor.process(payload).expect("the ownership processor accepts what inspect accepts");
    assert_eq!(out.items(), summary.items);
    let after = wire::inspect(signal, out.bytes()).expect("the enriched request inspects");
    assert_eq!((after.items, after.resources, after.invalid_items), (summary.items, summary.resources, 0));

    let catalog = setup.handle.snapshot();
    match signal {
        Signal::Traces => compare::<ExportTraceServiceRequest>(&catalog, &input, out.bytes()),
        Signal::Metrics if points => compare_points(&catalog, &input, out.bytes()),
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

/// `compare` for `metrics_datapoint_attributes`: the resources as in `compare`, and every data
/// point with its own `owner.team` attributes replaced by the resource's.
fn compare_points(catalog: &Catalog, input: &[u8], output: &[u8]) {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let Ok(mut expected) = ExportMetricsServiceRequest::decode(input) else { return };
    let got = ExportMetricsServiceRequest::decode(output).expect("prost decodes the enriched request");
    for rm in &mut expected.resource_metrics {
        let resource = rm.resource.get_or_insert_with(Resource::default);
        enrich(catalog, resource);
        let team = resource.attributes.iter().rev().find(|kv| kv.key == "owner.team").cloned();
        let Some(team) = team else { continue };
        let fix = |attrs: &mut Vec<KeyValue>| {
            attrs.retain(|kv| kv.key != "owner.team");
            attrs.push(team.clone());
        };
        for sm in &mut rm.scope_metrics {
            for m in &mut sm.metrics {
                match &mut m.data {
                    Some(Data::Gauge(g)) => g.data_points.iter_mut().for_each(|p| fix(&mut p.attributes)),
                    Some(Data::Sum(x)) => x.data_points.iter_mut().for_each(|p| fix(&mut p.attributes)),
                    Some(Data::Histogram(h)) => h.data_points.iter_mut().for_each(|p| fix(&mut p.attributes)),
                    Some(Data::ExponentialHistogram(h)) => {
                        h.data_points.iter_mut().for_each(|p| fix(&mut p.attributes))
                    }
                    Some(Data::Summary(x)) => x.data_points.iter_mut().for_each(|p| fix(&mut p.attributes)),
                    None => {}
                }
            }
        }
    }
    assert_eq!(got.encode_to_vec(), expected.encode_to_vec(), "data point attributes differ from the expected ones");
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
