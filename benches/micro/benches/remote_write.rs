//! Criterion benchmarks of the `prometheusremotewrite` exporter's CPU work per batch: walking
//! the OTLP request on the wire, building the Prometheus series, encoding the per-shard
//! `WriteRequest`s and compressing them with snappy (everything the sender does except the
//! HTTP round trip). Throughput is in OTLP data points (`Throughput::Elements`); a histogram
//! point becomes 2 + buckets series. Run: `cargo bench -p sightline-microbench --bench
//! remote_write`.
//!
//! Ids are `<stage>/metrics/<size>`: `small` = sums and gauges, `large` = explicit-bucket
//! histograms (16 buckets); 4 requests of 500 points over 5 resources per batch, 10 shards,
//! 2000 samples per request (the exporter's defaults).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sightline_core::Signal;
use sightline_microbench::catalog::CatalogFixture;
use sightline_microbench::requests::{self, ITEMS, RESOURCES, Size};
use sightline_prometheus::{Options, Translator};
use std::hint::black_box;

const PAYLOADS: usize = 4;
const SHARDS: usize = 10;
const MAX_SAMPLES: usize = 2000;

fn batches() -> Vec<(Size, Vec<Vec<u8>>)> {
    let ids = CatalogFixture::standard().identities(RESOURCES);
    Size::ALL
        .iter()
        .map(|&size| {
            let reqs =
                (0..PAYLOADS).map(|k| requests::encoded(Signal::Metrics, &ids, ITEMS, size, 1000 + k as u64)).collect();
            (size, reqs)
        })
        .collect()
}

fn remote_write(c: &mut Criterion) {
    let batches = batches();
    let mut g = c.benchmark_group("remote_write");
    for (size, reqs) in &batches {
        let points = (PAYLOADS * ITEMS) as u64;
        g.throughput(Throughput::Elements(points));
        // A warm translator, as in the exporter (its buffers are reused between batches).
        let mut t = Translator::new(Options::default());
        g.bench_function(format!("translate_encode/metrics/{}", size.as_str()), |b| {
            b.iter(|| {
                t.reset();
                for r in reqs {
                    t.add_request(black_box(r)).expect("valid");
                }
                let mut bytes = 0;
                t.encode(SHARDS, MAX_SAMPLES, |_, req| bytes += req.len());
                black_box(bytes)
            })
        });
        let mut t = Translator::new(Options::default());
        let mut enc = snap::raw::Encoder::new();
        let mut out = Vec::new();
        g.bench_function(format!("translate_encode_snappy/metrics/{}", size.as_str()), |b| {
            b.iter(|| {
                t.reset();
                for r in reqs {
                    t.add_request(black_box(r)).expect("valid");
                }
                let mut bytes = 0;
                t.encode(SHARDS, MAX_SAMPLES, |_, req| {
                    out.resize(snap::raw::max_compress_len(req.len()), 0);
                    bytes += enc.compress(req, &mut out).expect("snappy");
                });
                black_box(bytes)
            })
        });
        let mut t = Translator::new(Options::default());
        for r in reqs {
            t.add_request(r).expect("valid");
        }
        let mut bytes = 0;
        t.encode(SHARDS, MAX_SAMPLES, |_, req| bytes += req.len());
        eprintln!(
            "remote_write/metrics/{}: {points} points -> {} series, {} samples, {bytes} B of WriteRequests",
            size.as_str(),
            t.series_count(),
            t.sample_count()
        );
    }
    g.finish();
}

criterion_group!(benches, remote_write);
criterion_main!(benches);
