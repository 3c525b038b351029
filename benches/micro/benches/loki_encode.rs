//! Criterion benchmarks of the `loki` exporter's CPU work per batch: walking the OTLP logs on
//! the wire, grouping records into streams by their labels, ordering them, and writing the
//! Loki push body (protobuf, then snappy; or JSON, then gzip): everything the sender does
//! except the HTTP round trip. Throughput is in log records (`Throughput::Elements`). Run:
//! `cargo bench -p sightline-microbench --bench loki_encode`.
//!
//! Ids are `<stage>/logs/<size>`: `small`/`large` are ~250 B / ~1.7 KB log records; 4
//! requests of 500 records over 5 resources per batch, enriched by the ownership processor
//! first (so the `owner.*` attributes are there, as in production). The encoder is warm (its
//! buffers are reused between batches, as in the exporter). `..._no_resource_metadata` is the
//! same with `resource_attributes_as_metadata: false`.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sightline_core::{Payload, Processor, Registry, Signal};
use sightline_loki::{Compression, Encoder, Encoding, LokiConfig, Packing, Plan, encode_batch};
use sightline_microbench::catalog::CatalogFixture;
use sightline_microbench::requests::{self, ITEMS, RESOURCES, Size};
use std::hint::black_box;

const PAYLOADS: usize = 4;
const NOW: i64 = 1_700_000_000_000_000_000;

fn batches() -> Vec<(Size, Vec<Bytes>)> {
    let fixture = CatalogFixture::standard();
    let ids = fixture.identities(RESOURCES);
    let ownership = fixture.processor(Signal::Logs, &Registry::new());
    Size::ALL
        .iter()
        .map(|&size| {
            let reqs = (0..PAYLOADS)
                .map(|k| {
                    let raw = requests::encoded(Signal::Logs, &ids, ITEMS, size, 1000 + k as u64);
                    let p = Payload::new(Signal::Logs, Bytes::from(raw), ITEMS as u64, None);
                    ownership.process(p).expect("enriched").bytes().clone()
                })
                .collect();
            (size, reqs)
        })
        .collect()
}

fn loki(c: &mut Criterion) {
    let batches = batches();
    let mut cfg = LokiConfig::new("http://127.0.0.1:3100/loki/api/v1/push");
    let plan = Plan::new(&cfg);
    // Only the record's own attributes, ids and the scope as metadata.
    cfg.resource_attributes_as_metadata = false;
    let lean = Plan::new(&cfg);
    let mut g = c.benchmark_group("loki");
    for (size, reqs) in &batches {
        let records = (PAYLOADS * ITEMS) as u64;
        g.throughput(Throughput::Elements(records));
        let id = |stage: &str| format!("{stage}/logs/{}", size.as_str());
        let mut enc = Encoder::new();
        let mut out = Vec::new();
        g.bench_function(id("encode_protobuf"), |b| {
            b.iter(|| {
                enc.reset();
                out.clear();
                for r in reqs {
                    enc.add_request(&plan, black_box(r), NOW).expect("valid");
                }
                enc.encode_protobuf(&mut out);
                black_box(out.len())
            })
        });
        for (stage, plan, encoding, compression) in [
            ("encode_protobuf_snappy", &plan, Encoding::Protobuf, Compression::Snappy),
            ("encode_protobuf_snappy_no_resource_metadata", &lean, Encoding::Protobuf, Compression::Snappy),
            ("encode_json_gzip", &plan, Encoding::Json, Compression::Gzip),
        ] {
            let (mut enc, mut buf) = (Encoder::new(), Vec::new());
            // The sender's compressor (contexts reused), as the exporter holds it.
            let gzip = sightline_exporters::Compressor::new(
                sightline_exporters::Compression::Gzip,
                sightline_exporters::CompressionParams::default(),
            );
            g.bench_function(id(stage), |b| {
                b.iter(|| {
                    let packing = match compression {
                        Compression::Snappy => Packing::Snappy,
                        Compression::Gzip => Packing::Gzip(&gzip),
                        Compression::None => Packing::None,
                    };
                    let body = encode_batch(plan, &mut enc, &mut buf, black_box(reqs), encoding, packing, NOW)
                        .expect("encoded");
                    black_box(body.len())
                })
            });
        }
        // What the batch turned into, for the README's table.
        let (mut enc, mut buf) = (Encoder::new(), Vec::new());
        let otlp: usize = reqs.iter().map(|r| r.len()).sum();
        let body =
            encode_batch(&plan, &mut enc, &mut buf, reqs, Encoding::Protobuf, Packing::Snappy, NOW).expect("encoded");
        eprintln!(
            "loki/logs/{}: {records} records, {otlp} B of OTLP -> {} streams, {} B PushRequest, {} B snappy",
            size.as_str(),
            enc.streams(),
            buf.len(),
            body.len()
        );
    }
    g.finish();
}

criterion_group!(benches, loki);
criterion_main!(benches);
