//! The cost per span of the processors that read or write item fields (ADR 15), beside the
//! wire-level ones, on the hot path's request of 500 spans over 5 resources
//! (`sightline_microbench::requests`), reported as spans/s. Run:
//! `cargo bench -p sightline-microbench --bench processors`.
//!
//! The statements are compare.py's `transform` and `filter` scenarios; `ownership+transform`
//! and `ownership+filter` are its pipelines, the two processors in turn and as the pipeline runs
//! them (one rewrite, ADR 30).

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sightline_core::{Payload, Pipeline, Processor, Registry, Signal};
use sightline_microbench::catalog::CatalogFixture;
use sightline_microbench::requests::{self, ITEMS, RESOURCES, Size};
use sightline_processors::attributes::{AttributesConfig, AttributesProcessor};
use sightline_processors::filter::{FilterConfig, FilterProcessor};
use sightline_processors::resource::{ResourceConfig, ResourceProcessor};
use sightline_processors::transform::{TransformConfig, TransformProcessor};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_yaml_ng::from_str(s).expect("benchmark config")
}

fn processors(registry: &Registry, catalog: &CatalogFixture) -> Vec<(&'static str, Arc<dyn Processor>)> {
    let resource: ResourceConfig =
        yaml("attributes: [{ key: deployment.environment.name, value: prod, action: upsert }]");
    let attributes: AttributesConfig = yaml("actions: [{ key: url.path, action: delete }]");
    let filter: FilterConfig = yaml(
        r#"
error_mode: ignore
traces:
  span: ['attributes["http.route"] == "/healthz"']
"#,
    );
    let transform: TransformConfig = yaml(
        r#"
error_mode: ignore
trace_statements:
  - 'set(span.attributes["deployment.environment.name"], "prod")'
  - 'delete_key(span.attributes, "url.path")'
  - 'set(span.attributes["http.server.route"], span.attributes["http.route"]) where span.kind == SPAN_KIND_SERVER'
"#,
    );
    vec![
        ("ownership", Arc::new(catalog.processor(Signal::Traces, registry))),
        ("resource", Arc::new(ResourceProcessor::new(&resource, Default::default()).expect("resource"))),
        (
            "attributes",
            Arc::new(AttributesProcessor::new(&attributes, Signal::Traces, Default::default()).expect("attributes")),
        ),
        ("filter", Arc::new(FilterProcessor::new("filter", &filter, Signal::Traces, registry).expect("filter"))),
        ("transform", Arc::new(TransformProcessor::new("transform", &transform, Signal::Traces).expect("transform"))),
    ]
}

fn bench(c: &mut Criterion) {
    let catalog = CatalogFixture::standard();
    let ids = catalog.identities(RESOURCES);
    let registry = Registry::new();
    for size in Size::ALL {
        let proto = Bytes::from(requests::encoded(Signal::Traces, &ids, ITEMS, size, 42));
        let mut g = c.benchmark_group(format!("processor/traces/{}", size.as_str()));
        g.throughput(Throughput::Elements(ITEMS as u64));
        g.measurement_time(Duration::from_secs(3));
        let all = processors(&registry, &catalog);
        for (name, p) in &all {
            g.bench_function(*name, |b| {
                b.iter(|| {
                    let payload = Payload::new(Signal::Traces, proto.clone(), ITEMS as u64, None);
                    black_box(p.process(payload).expect("processes"))
                })
            });
        }
        // compare.py's pipelines: ownership, then the plan, in turn and as one rewrite (ADR 30).
        let get = |n: &str| all.iter().find(|(name, _)| *name == n).map(|(_, p)| p.clone()).expect("processor");
        for second in ["transform", "filter"] {
            let (ownership, then) = (get("ownership"), get(second));
            g.bench_function(format!("ownership+{second}/in_turn"), |b| {
                b.iter(|| {
                    let payload = Payload::new(Signal::Traces, proto.clone(), ITEMS as u64, None);
                    black_box(then.process(ownership.process(payload).expect("ownership")).expect("processes"))
                })
            });
            let pipeline = Pipeline {
                id: "traces".into(),
                signal: Signal::Traces,
                processors: vec![ownership.clone(), then.clone()],
                exporters: vec![],
            };
            g.bench_function(format!("ownership+{second}/pipeline"), |b| {
                b.iter(|| {
                    let payload = Payload::new(Signal::Traces, proto.clone(), ITEMS as u64, None);
                    black_box(pipeline.process(payload).expect("processes"))
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
