//! Criterion benchmarks of the `clickhouse` exporter's CPU work per batch: walking the OTLP
//! request on the wire and writing `RowBinary` rows in the collector's columns, then
//! ClickHouse's LZ4 compressed blocks (the default `compress: lz4`): everything the sender
//! does except the HTTP round trip. Throughput is in items (`Throughput::Elements`). Run:
//! `cargo bench -p sightline-microbench --bench clickhouse_encode`.
//!
//! Ids are `<stage>/<signal>/<size>`: 4 requests of 500 items over 5 resources per batch,
//! enriched by the ownership processor first (so `owner.team` is there, as in production),
//! written to tables that have the `OwnerTeam` column. The encoder is warm (its buffers are
//! reused between batches, as in the exporter).

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sightline_clickhouse::schema::TableShape;
use sightline_clickhouse::{Compress, Encoder, Shapes, encode_bodies};
use sightline_core::Signal;
use sightline_microbench::catalog::enriched_batch;
use sightline_microbench::requests::Size;
use std::hint::black_box;

const PAYLOADS: usize = 4;

fn batch(signal: Signal, size: Size) -> Vec<Bytes> {
    enriched_batch(signal, size, PAYLOADS)
}

fn clickhouse(c: &mut Criterion) {
    let shape = TableShape { owner_team: true, event_name: true, ..Default::default() };
    let shapes = Shapes { traces: shape.clone(), logs: shape.clone(), metrics: std::array::from_fn(|_| shape.clone()) };
    let mut g = c.benchmark_group("clickhouse");
    for signal in [Signal::Traces, Signal::Logs, Signal::Metrics] {
        for size in Size::ALL {
            let reqs = batch(signal, size);
            let items: u64 = reqs.iter().map(|r| sightline_core::wire::inspect(signal, r).expect("valid").items).sum();
            g.throughput(Throughput::Elements(items));
            let mut enc = Encoder::default();
            for (stage, compress) in [("rows", Compress::None), ("rows_lz4", Compress::Lz4)] {
                g.bench_function(format!("{stage}/{signal}/{}", size.as_str()), |b| {
                    b.iter(|| {
                        let bodies =
                            encode_bodies(&mut enc, signal, black_box(&reqs), &shapes, "owner.team", compress, None)
                                .expect("encoded");
                        black_box(bodies.iter().map(Bytes::len).sum::<usize>())
                    })
                });
            }
            let bodies =
                encode_bodies(&mut enc, signal, &reqs, &shapes, "owner.team", Compress::Lz4, None).expect("encoded");
            let rows: usize = enc.rows.len() + enc.metric_rows.iter().map(Vec::len).sum::<usize>();
            let wire: usize = bodies.iter().map(Bytes::len).sum();
            eprintln!(
                "clickhouse {signal}/{}: {items} items, {} B RowBinary per item, {} B LZ4 per item",
                size.as_str(),
                rows / items as usize,
                wire / items as usize
            );
        }
    }
    g.finish();
}

criterion_group!(benches, clickhouse);
criterion_main!(benches);
