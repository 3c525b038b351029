//! The compressors Sightline could use, on the benchmark corpus (issue 10, ADR 13): a batch of
//! four distinct requests of 500 items (the `small` fixtures: ~265 B spans, ~244 B log
//! records, ~153 B metric points), compressed and decompressed whole, as the exporters and
//! the receiver do. Throughput is uncompressed bytes per second (`Throughput::Bytes`); the
//! compressed size per item of every candidate and level is printed to stderr once.
//!
//! Candidates: `miniz` (miniz_oxide, flate2's default backend, what Sightline used),
//! `zlib-rs` (flate2 with its `zlib-rs` backend), `libdeflate` (libdeflater, whole buffers
//! only) and `zstd` (a reused context). Run:
//! `cargo bench -p sightline-microbench --bench compression -- --warm-up-time 1 --measurement-time 3`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sightline_core::Signal;
use sightline_microbench::catalog::CatalogFixture;
use sightline_microbench::requests::{self, ITEMS, RESOURCES, Size};
use sightline_otlp::decompress::{Encoding, decompress};
use std::hint::black_box;
use std::io::{Read as _, Write as _};

/// Requests per batch: 2,000 items, about 0.5 MB of protobuf.
const PAYLOADS: usize = 4;

#[derive(Clone, Copy, Debug)]
enum Codec {
    Miniz(u8),
    ZlibRs(u32),
    Libdeflate(i32),
    Zstd(i32),
}

impl Codec {
    fn name(self) -> String {
        match self {
            Codec::Miniz(l) => format!("miniz/{l}"),
            Codec::ZlibRs(l) => format!("zlib-rs/{l}"),
            Codec::Libdeflate(l) => format!("libdeflate/{l}"),
            Codec::Zstd(l) => format!("zstd/{l}"),
        }
    }
}

const CODECS: [Codec; 12] = [
    Codec::Miniz(1),
    Codec::Miniz(6),
    Codec::ZlibRs(1),
    Codec::ZlibRs(3),
    Codec::ZlibRs(6),
    Codec::Libdeflate(1),
    Codec::Libdeflate(3),
    Codec::Libdeflate(4),
    Codec::Libdeflate(6),
    Codec::Zstd(1),
    Codec::Zstd(2),
    Codec::Zstd(3),
];

/// Reusable state per codec, as a consumer task would hold it.
struct Contexts {
    libdeflate: Vec<(i32, libdeflater::Compressor)>,
    inflate: libdeflater::Decompressor,
    zstd: Vec<(i32, zstd::bulk::Compressor<'static>)>,
    unzstd: zstd::bulk::Decompressor<'static>,
}

impl Contexts {
    fn new() -> Self {
        let libdeflate = [1, 3, 4, 6]
            .into_iter()
            .map(|l| (l, libdeflater::Compressor::new(libdeflater::CompressionLvl::new(l).expect("level"))))
            .collect();
        let zstd = [1, 2, 3].into_iter().map(|l| (l, zstd::bulk::Compressor::new(l).expect("zstd"))).collect();
        Contexts {
            libdeflate,
            inflate: libdeflater::Decompressor::new(),
            zstd,
            unzstd: zstd::bulk::Decompressor::new().expect("zstd"),
        }
    }

    fn compress(&mut self, codec: Codec, input: &[u8], out: &mut Vec<u8>) {
        out.clear();
        match codec {
            Codec::Miniz(l) => *out = miniz_oxide::deflate::compress_to_vec(input, l),
            Codec::ZlibRs(l) => {
                let mut enc = flate2::write::GzEncoder::new(std::mem::take(out), flate2::Compression::new(l));
                enc.write_all(input).expect("gzip");
                *out = enc.finish().expect("gzip");
            }
            Codec::Libdeflate(l) => {
                let c = &mut self.libdeflate.iter_mut().find(|(x, _)| *x == l).expect("level").1;
                out.resize(c.gzip_compress_bound(input.len()), 0);
                let n = c.gzip_compress(input, out).expect("libdeflate");
                out.truncate(n);
            }
            Codec::Zstd(l) => {
                let c = &mut self.zstd.iter_mut().find(|(x, _)| *x == l).expect("level").1;
                out.resize(zstd::zstd_safe::compress_bound(input.len()), 0);
                let n = c.compress_to_buffer(input, out.as_mut_slice()).expect("zstd");
                out.truncate(n);
            }
        }
    }

    fn decompress(&mut self, codec: Codec, input: &[u8], size: usize, out: &mut Vec<u8>) {
        out.clear();
        match codec {
            Codec::Miniz(_) => *out = miniz_oxide::inflate::decompress_to_vec(input).expect("inflate"),
            Codec::ZlibRs(_) => {
                out.reserve(size);
                flate2::read::GzDecoder::new(input).read_to_end(out).expect("gunzip");
            }
            Codec::Libdeflate(_) => {
                out.resize(size, 0);
                let n = self.inflate.gzip_decompress(input, out).expect("libdeflate");
                out.truncate(n);
            }
            Codec::Zstd(_) => {
                out.resize(size, 0);
                let n = self.unzstd.decompress_to_buffer(input, out.as_mut_slice()).expect("zstd");
                out.truncate(n);
            }
        }
    }
}

fn corpus() -> Vec<(Signal, Vec<u8>)> {
    let catalog = CatalogFixture::standard();
    let ids = catalog.identities(RESOURCES);
    Signal::ALL
        .into_iter()
        .map(|signal| {
            let mut batch = Vec::new();
            for k in 0..PAYLOADS {
                batch.extend(requests::encoded(signal, &ids, ITEMS, Size::Small, 1000 + k as u64));
            }
            (signal, batch)
        })
        .collect()
}

fn compression(c: &mut Criterion) {
    let corpus = corpus();
    let mut ctx = Contexts::new();
    let items = (PAYLOADS * ITEMS) as f64;
    let mut out = Vec::new();
    let mut back = Vec::new();
    for (signal, input) in &corpus {
        for codec in CODECS {
            ctx.compress(codec, input, &mut out);
            // A codec that does not round-trip would make its numbers meaningless.
            ctx.decompress(codec, &out, input.len(), &mut back);
            assert!(back == *input, "{} round trip", codec.name());
            eprintln!(
                "compression {signal}/{}: {} B -> {} B, {:.1} B/item, ratio {:.2}",
                codec.name(),
                input.len(),
                out.len(),
                out.len() as f64 / items,
                input.len() as f64 / out.len() as f64
            );
        }
    }
    let mut g = c.benchmark_group("compress");
    for (signal, input) in &corpus {
        g.throughput(Throughput::Bytes(input.len() as u64));
        for codec in CODECS {
            g.bench_function(format!("{signal}/{}", codec.name()), |b| {
                b.iter(|| {
                    ctx.compress(codec, black_box(input), &mut out);
                    out.len()
                })
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("decompress");
    for (signal, input) in &corpus {
        g.throughput(Throughput::Bytes(input.len() as u64));
        for codec in [Codec::Miniz(6), Codec::ZlibRs(6), Codec::Libdeflate(6), Codec::Zstd(3)] {
            let mut packed = Vec::new();
            ctx.compress(codec, input, &mut packed);
            g.bench_function(format!("{signal}/{}", codec.name()), |b| {
                b.iter(|| {
                    ctx.decompress(codec, black_box(&packed), input.len(), &mut back);
                    back.len()
                })
            });
        }
    }
    g.finish();
    // The receiver's own path (`sightline_otlp::decompress`): bounded output held against the
    // memory budget, as a request body is decoded.
    let budget = sightline_core::MemoryBudget::new(1 << 30);
    let mut g = c.benchmark_group("receiver_decompress");
    for (signal, input) in &corpus {
        g.throughput(Throughput::Bytes(input.len() as u64));
        for (codec, enc) in [(Codec::ZlibRs(6), Encoding::Gzip), (Codec::Zstd(3), Encoding::Zstd)] {
            let mut packed = Vec::new();
            ctx.compress(codec, input, &mut packed);
            g.bench_function(format!("{signal}/{}", codec.name()), |b| {
                b.iter(|| {
                    let mut permit = budget.try_acquire(packed.len()).expect("budget");
                    let out = decompress(enc, black_box(&packed), 64 << 20, &mut permit).expect("decompress");
                    out.len()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, compression);
criterion_main!(benches);
