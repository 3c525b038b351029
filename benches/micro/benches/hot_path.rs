//! Criterion micro-benchmarks of every stage of Sightline's hot path, per request of 500 items
//! over 5 resources (see `sightline_microbench::requests`), reported as items/s
//! (`Throughput::Elements`). Run: `cargo bench -p sightline-microbench` (see README.md).
//!
//! Benchmark ids are `<stage>/<signal>/<size>`; `small`/`large` are ~250 B / ~1.7 KB spans
//! and log records, sum+gauge / histogram metric points.

use bytes::{BufMut as _, Bytes, BytesMut};
use criterion::{BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use sightline_core::{Batch, MemoryBudget, Payload, Processor, Registry, Signal, wire};
use sightline_microbench::catalog::{CatalogFixture, Resolution};
use sightline_microbench::requests::{self, ITEMS, Identity, RESOURCES, Size};
use std::hint::black_box;
use std::io::Read as _;
use std::sync::OnceLock;
use std::time::Duration;

/// Requests merged by the batch-merge benchmark: the driver's default `min_size` of 8192
/// items is reached after ~17 requests of 500.
const MERGE_PAYLOADS: usize = 16;
/// Requests per batch in the exporter benchmarks (2,000 items), kept smaller than a default
/// batch so that the slow encodings (JSON, gzip level 6) fit in a few seconds of measurement.
const EXPORT_PAYLOADS: usize = 4;

/// One benchmark request: a signal at one item size.
struct Case {
    signal: Signal,
    size: Size,
    proto: Bytes,
    json: Vec<u8>,
    items: u64,
}

impl Case {
    fn id(&self) -> String {
        format!("{}/{}", self.signal, self.size.as_str())
    }

    fn payload(&self) -> Payload {
        Payload::new(self.signal, self.proto.clone(), self.items, None)
    }

    /// `n` distinct requests of this signal and size (other seeds: copies of one request
    /// would flatter the compressors).
    fn payloads(&self, n: usize) -> Vec<Payload> {
        let ids = &fixtures().ids;
        (0..n)
            .map(|k| {
                let buf = requests::encoded(self.signal, ids, ITEMS, self.size, 1000 + k as u64);
                Payload::new(self.signal, Bytes::from(buf), self.items, None)
            })
            .collect()
    }

    /// A batch of `n` distinct requests, as the exporter driver hands it to a sender.
    fn batch(&self, n: usize) -> Batch {
        let mut batch = Batch::new(self.signal);
        for p in self.payloads(n) {
            batch.push(p);
        }
        batch
    }
}

struct Fixtures {
    catalog: CatalogFixture,
    ids: Vec<Identity>,
    cases: Vec<Case>,
}

fn json_signal(s: Signal) -> sightline_otlp_json::Signal {
    match s {
        Signal::Traces => sightline_otlp_json::Signal::Traces,
        Signal::Metrics => sightline_otlp_json::Signal::Metrics,
        Signal::Logs => sightline_otlp_json::Signal::Logs,
    }
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let catalog = CatalogFixture::standard();
        let ids = catalog.identities(RESOURCES);
        let mut cases = Vec::new();
        for signal in Signal::ALL {
            for size in Size::ALL {
                let proto = Bytes::from(requests::encoded(signal, &ids, ITEMS, size, 42));
                let summary = wire::inspect(signal, &proto).expect("valid request");
                assert_eq!(summary.items, ITEMS as u64);
                assert_eq!(summary.resources, RESOURCES as u64);
                let json = sightline_otlp_json::protobuf_to_json(json_signal(signal), &proto).expect("to JSON");
                eprintln!(
                    "fixture {signal}/{}: {} items, {} resources, protobuf {} B ({:.0} B/item), JSON {} B",
                    size.as_str(),
                    summary.items,
                    summary.resources,
                    proto.len(),
                    proto.len() as f64 / ITEMS as f64,
                    json.len()
                );
                cases.push(Case { signal, size, proto, json, items: summary.items });
            }
        }
        Fixtures { catalog, ids, cases }
    })
}

/// Groups whose iterations take milliseconds: flat sampling keeps them within the
/// measurement time.
fn slow(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.sampling_mode(SamplingMode::Flat).sample_size(20);
}

// ---------------------------------------------------------------------------------------------
// validate

fn validate(c: &mut Criterion) {
    let f = fixtures();
    let mut g = c.benchmark_group("validate");
    for case in &f.cases {
        g.throughput(Throughput::Elements(case.items));
        g.bench_function(case.id(), |b| b.iter(|| wire::inspect(case.signal, black_box(&case.proto)).expect("valid")));
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// enrich

/// Steady state: the request's five resources are in the processor's per-thread cache, each
/// costs a hash, a lookup and a byte comparison; the rest is one copy of the request. The
/// payload carries a memory permit, as on the receive path.
fn enrich_warm(c: &mut Criterion) {
    warm(c, "enrich_warm", false);
}

/// Metrics with `metrics_datapoint_attributes: true`, warm cache: the resource rewrite plus a
/// second pass that re-encodes every level down to the data points to add `owner.team`.
fn enrich_warm_datapoints(c: &mut Criterion) {
    warm(c, "enrich_warm_datapoints", true);
}

fn warm(c: &mut Criterion, group: &str, datapoints: bool) {
    let f = fixtures();
    let budget = MemoryBudget::new(1 << 40);
    let mut g = c.benchmark_group(group);
    for case in f.cases.iter().filter(|c| !datapoints || c.signal == Signal::Metrics) {
        let registry = Registry::new();
        let processor = f.catalog.processor_with(case.signal, &registry, datapoints);
        for _ in 0..3 {
            processor.process(case.payload()).expect("enriched");
        }
        g.throughput(Throughput::Elements(case.items));
        g.bench_function(case.id(), |b| {
            b.iter_batched(
                || Payload::new(case.signal, case.proto.clone(), case.items, budget.try_acquire(case.proto.len())),
                |p| processor.process(p).expect("enriched"),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// Benchmarks `process` on `proto` with every resource new: each resource's
/// `service.instance.id` is rewritten in place before each iteration (outside the timing).
fn cold(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: String,
    signal: Signal,
    proto: &Bytes,
    items: u64,
) {
    let f = fixtures();
    let budget = MemoryBudget::new(1 << 40);
    let registry = Registry::new();
    let processor = f.catalog.processor(signal, &registry);
    let offsets = requests::instance_id_offsets(proto);
    assert_eq!(offsets.len(), RESOURCES, "one instance id per resource");
    let mut next = 1u64 << 32;
    let mut fresh = || {
        let mut buf = proto.to_vec();
        for &at in &offsets {
            requests::write_instance_id(&mut buf, at, next);
            next += 1;
        }
        Payload::new(signal, Bytes::from(buf), items, budget.try_acquire(proto.len()))
    };
    g.throughput(Throughput::Elements(items));
    g.bench_function(id, |b| {
        b.iter_batched(&mut fresh, |p| processor.process(p).expect("enriched"), BatchSize::PerIteration)
    });
}

/// Every resource of every request is one the processor has never seen: five cache misses
/// per request, each reading the resource's attributes, resolving it in the catalog (exact
/// service x3, glob rule, default team after all 80 rules), encoding the new resource and
/// inserting it into the cache (cleared every 16384 entries, the default size).
fn enrich_cold(c: &mut Criterion) {
    let f = fixtures();
    let mut g = c.benchmark_group("enrich_cold");
    for case in &f.cases {
        cold(&mut g, case.id(), case.signal, &case.proto, case.items);
    }
    g.finish();
}

/// The cold cost per resolution path: small-span requests whose five resources all resolve
/// the same way (exact service entry, glob rule, or nothing: the default team).
fn enrich_cold_by_resolution(c: &mut Criterion) {
    let f = fixtures();
    let mut g = c.benchmark_group("enrich_cold_by_resolution");
    for kind in Resolution::ALL {
        let ids = f.catalog.identities_of(kind, RESOURCES);
        let proto = Bytes::from(requests::encoded(Signal::Traces, &ids, ITEMS, Size::Small, 42));
        cold(&mut g, format!("traces/small/{}", kind.as_str()), Signal::Traces, &proto, ITEMS as u64);
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// JSON

fn json_to_protobuf(c: &mut Criterion) {
    let f = fixtures();
    let mut g = c.benchmark_group("json_to_protobuf");
    slow(&mut g);
    for case in &f.cases {
        g.throughput(Throughput::Elements(case.items));
        g.bench_function(case.id(), |b| {
            b.iter(|| {
                sightline_otlp_json::json_to_protobuf(json_signal(case.signal), black_box(&case.json)).expect("ok")
            })
        });
    }
    g.finish();
}

fn protobuf_to_json(c: &mut Criterion) {
    let f = fixtures();
    let mut g = c.benchmark_group("protobuf_to_json");
    slow(&mut g);
    for case in &f.cases {
        g.throughput(Throughput::Elements(case.items));
        g.bench_function(case.id(), |b| {
            b.iter(|| {
                sightline_otlp_json::protobuf_to_json(json_signal(case.signal), black_box(&case.proto)).expect("ok")
            })
        });
    }
    g.finish();
}

/// Reference point for `json_to_protobuf`, which first parses the whole document into a
/// `serde_json::Value` tree: that parse alone.
fn reference_json_value(c: &mut Criterion) {
    let f = fixtures();
    let mut g = c.benchmark_group("reference_serde_json_value_parse");
    slow(&mut g);
    for case in f.cases.iter().filter(|c| c.signal == Signal::Traces) {
        g.throughput(Throughput::Elements(case.items));
        g.bench_function(case.id(), |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&case.json)).expect("JSON"))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// baseline: what a decode-based pipeline pays per request

fn decode_encode<M: Message + Default>(buf: &[u8]) -> Vec<u8> {
    M::decode(buf).expect("decodes").encode_to_vec()
}

fn baseline_prost(c: &mut Criterion) {
    let f = fixtures();
    let mut g = c.benchmark_group("baseline_prost_decode_encode");
    slow(&mut g);
    for case in &f.cases {
        let run: fn(&[u8]) -> Vec<u8> = match case.signal {
            Signal::Traces => decode_encode::<ExportTraceServiceRequest>,
            Signal::Metrics => decode_encode::<ExportMetricsServiceRequest>,
            Signal::Logs => decode_encode::<ExportLogsServiceRequest>,
        };
        assert_eq!(run(&case.proto).len(), case.proto.len(), "prost re-encodes to the same size");
        g.throughput(Throughput::Elements(case.items));
        g.bench_function(case.id(), |b| b.iter(|| run(black_box(&case.proto))));
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// batch merge

/// The batcher's work for one batch: push `MERGE_PAYLOADS` payloads (reference counts), then
/// `to_bytes()` (one copy of everything into one buffer).
fn batch_merge(c: &mut Criterion) {
    let f = fixtures();
    let mut g = c.benchmark_group("batch_merge");
    for case in f.cases.iter().filter(|c| c.signal == Signal::Traces) {
        let payloads = case.payloads(MERGE_PAYLOADS);
        g.throughput(Throughput::Elements(case.items * MERGE_PAYLOADS as u64));
        g.bench_function(format!("{}/x{MERGE_PAYLOADS}", case.id()), |b| {
            b.iter(|| {
                let mut batch = Batch::new(case.signal);
                for p in &payloads {
                    batch.push(p.clone());
                }
                batch.to_bytes()
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// exporters' encodings (their encoders are private: these are the same steps, through the same
// public crates and settings)

/// The gRPC message prefix: compressed flag and big-endian length.
const GRPC_HEADER: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compress {
    None,
    Gzip,
    Zstd,
}

/// What the `otlp` exporter's send does to a batch before HTTP/2 (`otlp::OtlpSender::frame`):
/// uncompressed, the 5-byte message header and the chunks as they are (modelled here as one
/// copy into a frame buffer, an upper bound); compressed, the whole batch compressed once by
/// the exporter's `Compressor` at its default level (gzip: libdeflate level 1, zstd level 1),
/// after the reserved header.
fn grpc_frame(batch: &Batch, compression: Compress) -> Bytes {
    let compressor = match compression {
        Compress::None => None,
        Compress::Gzip => Some(&compressors().0),
        Compress::Zstd => Some(&compressors().1),
    };
    let Some(c) = compressor else {
        let mut buf = BytesMut::with_capacity(GRPC_HEADER + batch.bytes);
        buf.put_slice(&[0u8; GRPC_HEADER]);
        for chunk in batch.chunks() {
            buf.put_slice(chunk);
        }
        let len = (buf.len() - GRPC_HEADER) as u32;
        buf[1..GRPC_HEADER].copy_from_slice(&len.to_be_bytes());
        return buf.freeze();
    };
    let mut out = Vec::with_capacity(GRPC_HEADER + batch.bytes / 4 + 64);
    out.extend_from_slice(&[1, 0, 0, 0, 0]);
    c.compress_into(batch.chunks().map(|c| &c[..]), batch.bytes, &mut out).expect("compress");
    let len = (out.len() - GRPC_HEADER) as u32;
    out[1..GRPC_HEADER].copy_from_slice(&len.to_be_bytes());
    Bytes::from(out)
}

/// The exporters' default compressors (gzip, zstd), contexts reused across iterations as
/// across an exporter's sends.
fn compressors() -> &'static (sightline_exporters::Compressor, sightline_exporters::Compressor) {
    use sightline_exporters::{Compression, CompressionParams, Compressor};
    static C: OnceLock<(Compressor, Compressor)> = OnceLock::new();
    C.get_or_init(|| {
        (
            Compressor::new(Compression::Gzip, CompressionParams::default()),
            Compressor::new(Compression::Zstd, CompressionParams::default()),
        )
    })
}

fn export_otlp(c: &mut Criterion) {
    let f = fixtures();
    let mut g = c.benchmark_group("export_otlp_grpc_frame");
    slow(&mut g);
    for case in f.cases.iter().filter(|c| c.signal == Signal::Traces) {
        let batch = case.batch(EXPORT_PAYLOADS);
        for (name, comp) in [("none", Compress::None), ("gzip1", Compress::Gzip), ("zstd1", Compress::Zstd)] {
            let frame = grpc_frame(&batch, comp);
            eprintln!(
                "export_otlp {}/{name}: {} B -> {} B framed ({:.1}x)",
                case.id(),
                batch.bytes,
                frame.len(),
                batch.bytes as f64 / frame.len() as f64
            );
            g.throughput(Throughput::Elements(batch.items));
            g.bench_function(format!("{}/{name}", case.id()), |b| b.iter(|| grpc_frame(&batch, comp)));
        }
    }
    g.finish();
}

/// The `otlphttp` exporter's protobuf body with compression: the batch compressed once by
/// the exporter's `Compressor` at its default level. Without compression the body is the
/// chunks themselves (no work).
fn otlphttp_body(compression: Compress, batch: &Batch) -> Vec<u8> {
    let c = match compression {
        Compress::Gzip => &compressors().0,
        Compress::Zstd => &compressors().1,
        Compress::None => unreachable!(),
    };
    c.compress(batch.chunks().map(|c| &c[..]), batch.bytes).expect("compress")
}

fn export_otlphttp(c: &mut Criterion) {
    let f = fixtures();
    let mut g = c.benchmark_group("export_otlphttp_body");
    slow(&mut g);
    for case in f.cases.iter().filter(|c| c.signal == Signal::Traces) {
        let batch = case.batch(EXPORT_PAYLOADS);
        for (name, comp) in [("gzip1", Compress::Gzip), ("zstd1", Compress::Zstd)] {
            let body = otlphttp_body(comp, &batch);
            let mut check = Vec::new();
            if comp == Compress::Gzip {
                flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut check).expect("gunzip");
                assert_eq!(check.len(), batch.bytes);
            }
            eprintln!(
                "export_otlphttp {}/{name}: {} B -> {} B ({:.1}x)",
                case.id(),
                batch.bytes,
                body.len(),
                batch.bytes as f64 / body.len() as f64
            );
            g.throughput(Throughput::Elements(batch.items));
            g.bench_function(format!("{}/{name}", case.id()), |b| b.iter(|| otlphttp_body(comp, &batch)));
        }
    }
    g.finish();
}

/// The `file` exporter's JSON record: the batch in one buffer (`to_bytes`), converted to
/// OTLP/JSON, plus the newline (`file::encode`).
fn export_file(c: &mut Criterion) {
    let f = fixtures();
    let mut g = c.benchmark_group("export_file_json_line");
    slow(&mut g);
    for case in &f.cases {
        let batch = case.batch(EXPORT_PAYLOADS);
        g.throughput(Throughput::Elements(batch.items));
        g.bench_function(case.id(), |b| {
            b.iter(|| {
                let mut line = sightline_otlp_json::protobuf_to_json(json_signal(case.signal), &batch.to_bytes())
                    .expect("to JSON");
                line.push(b'\n');
                line
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// whole sends against local no-op servers

mod noop {
    //! A local server that reads and discards every request body and answers success: HTTP/1.1
    //! `200` for OTLP/HTTP, an empty gRPC message with `grpc-status: 0` for gRPC (HTTP/2).

    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Request, Response};
    use http_body::{Body, Frame};
    use http_body_util::BodyExt as _;
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A response body made of a fixed list of frames (data, then trailers for gRPC).
    pub struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    async fn handle(req: Request<Incoming>) -> Result<Response<Frames>, Infallible> {
        let grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
        let response = if grpc {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let frames = [Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0])), Frame::trailers(trailers)];
            Response::builder()
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .body(Frames(frames.into_iter().collect()))
        } else {
            Response::builder()
                .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                .body(Frames(VecDeque::new()))
        };
        Ok(response.expect("response"))
    }

    /// Starts the server on the current runtime; returns its address.
    pub async fn start() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let service = hyper::service::service_fn(handle);
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        addr
    }
}

/// Whole `Sender::send` calls of the real exporters (built with their public `build_*`
/// functions) for one batch, against the no-op server above on this machine (client and
/// server share the two cores), and for the file exporter into a temporary file (page cache).
/// This adds to the encodings above: HTTP/2 or HTTP/1.1 framing, loopback TCP, the server's
/// reading, and the exporters' task hand-offs (`spawn_blocking` for large bodies and for file
/// writes).
fn send_e2e(c: &mut Criterion) {
    use sightline_exporters::{Compression, FileConfig, OtlpConfig, OtlpHttpConfig, RotationConfig};
    let f = fixtures();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let addr = rt.block_on(noop::start());
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut g = c.benchmark_group("send_e2e");
    slow(&mut g);
    for case in f.cases.iter().filter(|c| c.signal == Signal::Traces) {
        let batch = case.batch(EXPORT_PAYLOADS);
        let senders = rt.block_on(async {
            let mut otlp = OtlpConfig::new(format!("http://{addr}"));
            otlp.compression = Compression::Gzip;
            let mut http = OtlpHttpConfig::new(format!("http://{addr}"));
            http.compression = Compression::Gzip;
            let mut file = FileConfig::new(dir.path().join(format!("{}.json", case.size.as_str())));
            file.rotation = Some(RotationConfig { max_megabytes: 256, max_days: 0, max_backups: 1 });
            [
                (
                    "otlp_gzip",
                    sightline_exporters::build_otlp("otlp", case.signal, &otlp, &sightline_core::Registry::new())
                        .expect("otlp")
                        .0,
                ),
                (
                    "otlphttp_gzip",
                    sightline_exporters::build_otlphttp(
                        "otlphttp",
                        case.signal,
                        &http,
                        &sightline_core::Registry::new(),
                    )
                    .expect("http")
                    .0,
                ),
                ("file_json", sightline_exporters::build_file("file", case.signal, &file).expect("file").0),
            ]
        });
        for (name, sender) in senders {
            rt.block_on(sender.send(&batch)).unwrap_or_else(|e| panic!("{name}: {}", e.message));
            g.throughput(Throughput::Elements(batch.items));
            g.bench_function(format!("{}/{name}", case.id()), |b| {
                b.iter(|| rt.block_on(sender.send(&batch)).expect("sent"))
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = validate, enrich_warm, enrich_warm_datapoints, enrich_cold, enrich_cold_by_resolution, json_to_protobuf, protobuf_to_json,
        reference_json_value, baseline_prost,
        batch_merge, export_otlp, export_otlphttp, export_file, send_e2e
}
criterion_main!(benches);
