//! The cost of the `policy` processor (issue 12) with each of its parts on alone, and all of
//! them, in enforce mode, on the hot path's requests (500 items over 5 resources,
//! `sightline_microbench::requests`), which hold no sensitive value: the cost of looking, which
//! is what every request pays. Reported as items/s. Run:
//! `cargo bench -p sightline-microbench --bench policy`.
//!
//! `off` is a policy with every part turned off (the processor passes the payload on without
//! decoding it); each other row turns one part on.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sightline_core::{Payload, Processor, Registry, Signal};
use sightline_microbench::catalog::CatalogFixture;
use sightline_microbench::requests::{self, ITEMS, RESOURCES, Size};
use sightline_processors::policy::{PolicyConfig, PolicyProcessor};
use std::hint::black_box;
use std::time::Duration;

const OFF: &str = "mode: enforce\nredaction: { enabled: false }\n";

/// (part, the config lines that turn it on), for `signal`.
fn parts(signal: Signal) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("off", String::new()),
        ("required", "required_resource_attributes: [service.name]\n".into()),
        ("naming", "naming: { metric_name: '^[a-z][a-z0-9_.]*$', attribute_key: '^[a-z][a-z0-9_.]*$' }\n".into()),
        ("redaction", "redaction: { enabled: true }\n".into()),
        ("limits", "attribute_limits: { max_count: 128, max_value_length: 4096 }\n".into()),
    ];
    if signal == Signal::Metrics {
        v.push(("series", "cardinality: { max_series_per_metric: 2000 }\n".into()));
    }
    let all: String = v.iter().skip(1).map(|(_, c)| c.as_str()).collect();
    v.push(("all", all));
    v
}

fn bench(c: &mut Criterion) {
    let catalog = CatalogFixture::standard();
    let ids = catalog.identities(RESOURCES);
    let registry = Registry::new();
    for (signal, size) in [
        (Signal::Logs, Size::Small),
        (Signal::Logs, Size::Large),
        (Signal::Traces, Size::Small),
        (Signal::Metrics, Size::Small),
    ] {
        let proto = Bytes::from(requests::encoded(signal, &ids, ITEMS, size, 42));
        let items = sightline_core::wire::inspect(signal, &proto).expect("a valid request").items;
        let mut g = c.benchmark_group(format!("policy/{}/{}", signal.as_str(), size.as_str()));
        g.throughput(Throughput::Elements(items));
        g.measurement_time(Duration::from_secs(3));
        for (part, lines) in parts(signal) {
            // A part's `redaction` line replaces the off switch.
            let yaml =
                if lines.contains("redaction:") { format!("mode: enforce\n{lines}") } else { format!("{OFF}{lines}") };
            let cfg: PolicyConfig = serde_yaml_ng::from_str(&yaml).expect("a policy config");
            assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
            let p = PolicyProcessor::new("policy", signal, &cfg, &registry).expect("built");
            g.bench_function(part, |b| {
                b.iter(|| {
                    let payload = Payload::new(signal, proto.clone(), items, None);
                    black_box(p.process(payload).expect("processes"))
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
