//! Criterion benchmarks of the `parquet` exporter's CPU work per batch: walking the OTLP
//! request on the wire into Arrow columns (`arrow`), then the same plus writing them as a
//! ZSTD Parquet file in memory (`arrow_parquet`, what the store does, less the disk).
//! Throughput is in items (`Throughput::Elements`). Run:
//! `cargo bench -p sightline-microbench --bench parquet_encode`.
//!
//! Ids are `<stage>/<signal>/<size>`: 4 requests of 500 items over 5 resources per batch,
//! enriched by the ownership processor first (so `owner.team` is there, as in production).
//! The encoder is warm (reused between batches, as in the exporter). Each batch also prints
//! the Parquet bytes per item.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sightline_core::Signal;
use sightline_microbench::catalog::enriched_batch;
use sightline_microbench::requests::Size;
use sightline_parquet::{Encoded, Encoder, ParquetConfig, encode_batch};
use std::hint::black_box;

const PAYLOADS: usize = 4;

fn batch(signal: Signal, size: Size) -> Vec<Bytes> {
    enriched_batch(signal, size, PAYLOADS)
}

fn write(tables: &[Encoded]) -> usize {
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("level")));
    let props = props.build();
    let mut total = 0;
    for t in tables {
        let mut out = Vec::with_capacity(1 << 20);
        let mut w = ArrowWriter::try_new(&mut out, t.rows.schema(), Some(props.clone())).expect("writer");
        w.write(&t.rows).expect("write");
        w.close().expect("close");
        total += out.len();
    }
    total
}

fn parquet(c: &mut Criterion) {
    let cfg = ParquetConfig::new("unused");
    let mut g = c.benchmark_group("parquet");
    for signal in [Signal::Traces, Signal::Logs, Signal::Metrics] {
        for size in Size::ALL {
            let reqs = batch(signal, size);
            let items: u64 = reqs.iter().map(|r| sightline_core::wire::inspect(signal, r).expect("valid").items).sum();
            g.throughput(Throughput::Elements(items));
            let mut enc = Encoder::new(&cfg.attribute_columns.spans, &cfg.attribute_columns.logs);
            g.bench_function(format!("arrow/{signal}/{}", size.as_str()), |b| {
                b.iter(|| {
                    let t = encode_batch(&mut enc, signal, black_box(&reqs), "owner.team").expect("encoded");
                    black_box(t.iter().map(|t| t.rows.num_rows()).sum::<usize>())
                })
            });
            g.bench_function(format!("arrow_parquet/{signal}/{}", size.as_str()), |b| {
                b.iter(|| {
                    let t = encode_batch(&mut enc, signal, black_box(&reqs), "owner.team").expect("encoded");
                    black_box(write(&t))
                })
            });
            let t = encode_batch(&mut enc, signal, &reqs, "owner.team").expect("encoded");
            eprintln!(
                "parquet {signal}/{}: {items} items, {} B zstd Parquet per item",
                size.as_str(),
                write(&t) / items as usize
            );
        }
    }
    g.finish();
}

criterion_group!(benches, parquet);
criterion_main!(benches);
