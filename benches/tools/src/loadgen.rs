//! The load generator: sends a pre-generated corpus over OTLP/gRPC or OTLP/HTTP, closed loop
//! (each connection keeps `--inflight` requests in flight, as fast as responses come back) or
//! open loop (a fixed schedule of `--rate` items per second; latency is measured from the
//! *scheduled* send time, so a stalled server cannot hide behind a stalled client).
//!
//! Nothing is generated or encoded while the clock runs: every connection owns a share of the
//! corpus as ready-to-send buffers (with the gRPC frame header in front, compressed when asked)
//! and only overwrites the 8 bytes of the latency stamp before each send. A buffer comes back
//! from the HTTP stack when its request completes and is reused without allocating.

use crate::generate::{Corpus, CorpusConfig, SpanSize, corpus};
use crate::hist::{LatencySummary, latency_histogram, record_nanos};
use crate::{Signal, unix_nanos, write_stamp};
use anyhow::{Context as _, bail};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use sightline_core::wire::{Fields, Value};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};

/// The transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/gRPC (unary `Export` calls over HTTP/2, one HTTP/2 connection per `--connections`).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`POST /v1/<signal>`, HTTP/1.1 keep-alive).
    Http,
}

/// Request compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// The longest drain of in-flight requests after `--duration`.
pub const MAX_DRAIN: Duration = Duration::from_secs(5);

/// Requests sent this much later than scheduled (open loop) count as `late`.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(10);

/// `loadgen`: OTLP load generator for benchmarking Sightline and the OpenTelemetry Collector.
#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "OTLP load generator: sends a pre-generated corpus over gRPC or HTTP and reports throughput, refusals and latency.",
    long_about = "OTLP load generator: sends a pre-generated corpus of realistic OTLP requests over gRPC or \
HTTP, closed loop (default) or open loop (--rate), and reports throughput, refusals by status, \
connection errors and latency percentiles (text on stdout, JSON with --json).\n\n\
Every uncompressed request carries its send time in its first item (span start time, log \
record time or data point time), which `sink` turns into end-to-end latency. With \
--compression the corpus is compressed once at start-up and cannot be stamped: latency is \
then client-side only (send -> response).\n\n\
Examples:\n  \
loadgen --endpoint 127.0.0.1:4317 --duration 30s --json out.json\n  \
loadgen --protocol http --endpoint 127.0.0.1:4318 --signal logs --rate 200000 --duration 60s\n  \
loadgen --write-catalog /tmp/catalog.yaml     # the ownership catalog matching the corpus"
)]
pub struct Args {
    /// Where to send: host:port (http://host:port also works). For --protocol http a path may
    /// follow (http://host:4318/custom/v1/traces); the default path is /v1/<signal>.
    #[arg(long, default_value = "127.0.0.1:4317")]
    pub endpoint: String,

    /// Transport: grpc (OTLP/gRPC over HTTP/2) or http (OTLP/HTTP protobuf over HTTP/1.1).
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    pub protocol: Protocol,

    /// Signal to send: traces, logs or metrics (gauges, sums and histograms).
    #[arg(long, value_parser = crate::parse_signal, default_value = "traces")]
    pub signal: Signal,

    /// Item richness: small (~250 B per span, few attributes) or large (~1.7 KB per span,
    /// many attributes and events). Logs and metrics scale the same way.
    #[arg(long, value_enum, default_value_t = SpanSize::Small)]
    pub span_size: SpanSize,

    /// Spans, log records or metric data points per request.
    #[arg(long, default_value_t = 500)]
    pub items_per_request: usize,

    /// Distinct pre-generated requests, reused round-robin.
    #[arg(long, default_value_t = 200)]
    pub corpus_requests: usize,

    /// Distinct services (service.name) in the corpus.
    #[arg(long, default_value_t = 500)]
    pub services: usize,

    /// Teams owning the services (see --write-catalog).
    #[arg(long, default_value_t = 40)]
    pub teams: usize,

    /// Seed of the corpus generator (same seed, same corpus).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Connections to open. gRPC: one HTTP/2 connection each, multiplexing its in-flight
    /// requests. HTTP/1.1 cannot multiplex: each in-flight request of a connection uses its own
    /// keep-alive socket (opened on demand), so up to connections x inflight sockets.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,

    /// How long to measure (after --warmup), e.g. 10s, 2m.
    #[arg(long, value_parser = crate::parse_duration, default_value = "10s")]
    pub duration: Duration,

    /// Open loop: send this many items per second in total (requests per second =
    /// rate / items-per-request, spread evenly over the connections). Without it the run is
    /// closed loop.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Concurrent requests per connection. Closed loop: how many each connection keeps in
    /// flight (default 1). Open loop: the most it lets be in flight before sends fall behind
    /// schedule (default 64).
    #[arg(long)]
    pub inflight: Option<usize>,

    /// Open loop: pace sends from a dedicated thread with precise sleeps (send lag ~0.1 ms
    /// instead of up to ~0.5 ms with the runtime's millisecond timers). Costs a thread wake-up
    /// per request: use it for latency runs at moderate request rates.
    #[arg(long, requires = "rate")]
    pub precise_pacing: bool,

    /// Compress every request (done once at start-up). With compression the send time cannot
    /// be patched into the request, so only client-side latency is measured.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,

    /// Send for this long before measuring (results discarded).
    #[arg(long, value_parser = crate::parse_duration, default_value = "2s")]
    pub warmup: Duration,

    /// Per-request timeout (counted as error `timeout`).
    #[arg(long, value_parser = crate::parse_duration, default_value = "10s")]
    pub timeout: Duration,

    /// After --duration, wait at most this long (capped at 5s) for in-flight requests; the
    /// rest are counted as `abandoned`.
    #[arg(long, value_parser = crate::parse_duration, default_value = "5s")]
    pub drain: Duration,

    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Worker threads of the runtime (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Admin address of a `sink` (host:port): reset its counters when measuring starts, and
    /// include its /stats in the report when the run ends.
    #[arg(long)]
    pub sink_admin: Option<String>,

    /// Write the ownership catalog (YAML) that matches the corpus's services to this file and
    /// exit.
    #[arg(long)]
    pub write_catalog: Option<PathBuf>,

    /// Generate the corpus, print its measured sizes, and exit without sending.
    #[arg(long)]
    pub dry_run: bool,

    /// No per-second progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl Args {
    /// The corpus this run sends.
    pub fn corpus_config(&self) -> CorpusConfig {
        CorpusConfig {
            signal: self.signal,
            span_size: self.span_size,
            items_per_request: self.items_per_request,
            requests: self.corpus_requests,
            services: self.services,
            teams: self.teams,
            seed: self.seed,
            base_time_unix_nano: None,
        }
    }

    fn inflight(&self) -> usize {
        self.inflight.unwrap_or(if self.rate.is_some() { 64 } else { 1 }).max(1)
    }
}

/// Where and how requests go.
struct Target {
    addr: String,
    protocol: Protocol,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    closed_loop: bool,
}

/// Where the stamp goes in a ready-to-send buffer.
#[derive(Clone, Copy)]
struct Patch {
    stamp: usize,
    end: Option<usize>,
    span_nanos: u64,
}

/// One ready-to-send request owned by one connection.
struct Slot {
    /// `None` while the request is in flight.
    bytes: Option<Bytes>,
    items: u64,
    raw_len: u64,
    patch: Option<Patch>,
}

/// A run, ready to start: the corpus is generated and laid out per connection.
pub struct Prepared {
    args: Args,
    target: Arc<Target>,
    conns: Vec<Vec<Slot>>,
    corpus: CorpusReport,
}

impl Prepared {
    /// What the corpus looks like (measured sizes).
    pub fn corpus(&self) -> &CorpusReport {
        &self.corpus
    }
}

/// Parses `--endpoint` into the address to dial and the URI to request.
fn target(args: &Args) -> anyhow::Result<Target> {
    let e = args.endpoint.trim();
    let e = e.strip_prefix("http://").unwrap_or(e);
    if e.starts_with("https://") {
        bail!("--endpoint: TLS is not supported; use host:port or http://host:port");
    }
    let (authority, path) = match e.find('/') {
        Some(i) => (&e[..i], &e[i..]),
        None => (e, ""),
    };
    if authority.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
        bail!("--endpoint {:?}: expected host:port", args.endpoint);
    }
    let path = match args.protocol {
        Protocol::Grpc => args.signal.grpc_path(),
        Protocol::Http if path.len() > 1 => path,
        Protocol::Http => args.signal.http_path(),
    };
    let ua = HeaderValue::from_static(concat!("sightline-loadgen/", env!("CARGO_PKG_VERSION")));
    let mut headers = vec![(header::USER_AGENT, ua)];
    let uri: Uri = match args.protocol {
        Protocol::Grpc => {
            headers.push((header::CONTENT_TYPE, HeaderValue::from_static("application/grpc")));
            headers.push((header::TE, HeaderValue::from_static("trailers")));
            headers.push((HeaderName::from_static("grpc-accept-encoding"), HeaderValue::from_static("identity")));
            if args.compression != Compression::None {
                headers.push((
                    HeaderName::from_static("grpc-encoding"),
                    HeaderValue::from_static(args.compression.name()),
                ));
            }
            format!("http://{authority}{path}").parse().context("--endpoint")?
        }
        Protocol::Http => {
            headers.push((header::HOST, HeaderValue::from_str(authority).context("--endpoint")?));
            headers.push((header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf")));
            if args.compression != Compression::None {
                headers.push((header::CONTENT_ENCODING, HeaderValue::from_static(args.compression.name())));
            }
            path.parse().context("--endpoint path")?
        }
    };
    Ok(Target {
        addr: authority.to_string(),
        protocol: args.protocol,
        uri,
        headers,
        timeout: args.timeout,
        closed_loop: args.rate.is_none(),
    })
}

/// Generates the corpus and lays it out as ready-to-send buffers, one share per connection.
/// CPU-heavy (done before any clock starts); call it outside the async runtime or in
/// `spawn_blocking`.
pub fn prepare(args: &Args) -> anyhow::Result<Prepared> {
    if args.connections == 0 || args.items_per_request == 0 || args.corpus_requests == 0 {
        bail!("--connections, --items-per-request and --corpus-requests must be at least 1");
    }
    if let Some(r) = args.rate
        && !(r.is_finite() && r > 0.0)
    {
        bail!("--rate must be a positive number of items per second");
    }
    if args.duration.is_zero() {
        bail!("--duration must be positive");
    }
    let target = target(args)?;
    let corpus = corpus(&args.corpus_config());
    let report = CorpusReport::of(&corpus, args.compression);
    let (wire, patches) = lay_out(corpus, args.protocol, args.compression);
    let compressed_total: u64 = wire.iter().map(|w| w.len() as u64).sum();
    let mut report = report;
    report.avg_wire_request_bytes = compressed_total as f64 / wire.len().max(1) as f64;

    // Connection c owns corpus entries c, c+C, c+2C, ...; it needs more buffers than it can
    // have requests in flight, so small corpora are repeated.
    let n = wire.len();
    let c_count = args.connections;
    let need = args.inflight() + 1;
    let mut conns: Vec<Vec<Slot>> = (0..c_count)
        .map(|c| {
            let own = (n + c_count - 1 - c) / c_count;
            (0..own.max(need))
                .map(|k| {
                    let i = (c + k * c_count) % n;
                    Slot {
                        bytes: Some(wire[i].clone()),
                        items: patches[i].1,
                        raw_len: patches[i].2,
                        patch: patches[i].0,
                    }
                })
                .collect()
        })
        .collect();
    drop(wire);
    if args.compression == Compression::None {
        // Each slot gets a buffer of its own, so stamping never copies on the hot path.
        for slot in conns.iter_mut().flatten() {
            let b = slot.bytes.take().expect("filled above");
            slot.bytes = Some(match b.try_into_mut() {
                Ok(m) => m.freeze(),
                Err(shared) => Bytes::copy_from_slice(&shared),
            });
        }
    }
    Ok(Prepared { args: args.clone(), target: Arc::new(target), conns, corpus: report })
}

/// Per corpus request: (patch, items, uncompressed length).
type PatchInfo = (Option<Patch>, u64, u64);

/// Turns the corpus into what goes on the wire (gRPC frame header, compression).
fn lay_out(corpus: Corpus, protocol: Protocol, compression: Compression) -> (Vec<Bytes>, Vec<PatchInfo>) {
    let prefix = if protocol == Protocol::Grpc { 5 } else { 0 };
    let requests = corpus.requests;
    let mut out: Vec<Option<(Bytes, PatchInfo)>> = vec![None; requests.len()];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(requests.len()).max(1);
    let chunk = requests.len().div_ceil(threads);
    std::thread::scope(|s| {
        for (reqs, outs) in requests.chunks(chunk).zip(out.chunks_mut(chunk)) {
            s.spawn(move || {
                for (r, o) in reqs.iter().zip(outs.iter_mut()) {
                    let raw_len = r.bytes.len() as u64;
                    let info = |patch| (patch, r.items, raw_len);
                    *o = Some(match compression {
                        Compression::None if prefix == 0 => {
                            let p = Patch { stamp: r.stamp.stamp, end: r.stamp.end, span_nanos: r.stamp_span_nanos };
                            (r.bytes.clone(), info(Some(p)))
                        }
                        Compression::None => {
                            let mut v = Vec::with_capacity(prefix + r.bytes.len());
                            v.push(0);
                            v.extend_from_slice(&(r.bytes.len() as u32).to_be_bytes());
                            v.extend_from_slice(&r.bytes);
                            let p = Patch {
                                stamp: prefix + r.stamp.stamp,
                                end: r.stamp.end.map(|e| e + prefix),
                                span_nanos: r.stamp_span_nanos,
                            };
                            (Bytes::from(v), info(Some(p)))
                        }
                        c => {
                            // Zero the stamp: the sink then knows this request carries none.
                            let mut raw = r.bytes.to_vec();
                            write_stamp(&mut raw, r.stamp.stamp, 0);
                            let z = compress(c, &raw);
                            let mut v = Vec::with_capacity(prefix + z.len());
                            if prefix > 0 {
                                v.push(1);
                                v.extend_from_slice(&(z.len() as u32).to_be_bytes());
                            }
                            v.extend_from_slice(&z);
                            (Bytes::from(v), info(None))
                        }
                    });
                }
            });
        }
    });
    out.into_iter().map(|o| o.expect("laid out")).unzip()
}

/// Compresses one request body.
pub fn compress(c: Compression, raw: &[u8]) -> Vec<u8> {
    match c {
        Compression::None => raw.to_vec(),
        Compression::Gzip => {
            let mut e =
                flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::default());
            e.write_all(raw).expect("in-memory write");
            e.finish().expect("in-memory write")
        }
        Compression::Zstd => zstd::bulk::compress(raw, 3).expect("zstd compression of an in-memory buffer"),
    }
}

// ---------------------------------------------------------------------------------------------
// Results.

/// The corpus as sent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CorpusReport {
    pub requests: usize,
    pub items_per_request: u64,
    pub distinct_resources: usize,
    /// Request bytes (uncompressed) per item, resources and scopes included.
    pub avg_item_bytes: f64,
    /// The item messages alone (spans, log records, metrics) per item.
    pub avg_item_message_bytes: f64,
    pub avg_request_bytes: f64,
    /// As sent: compressed, with the gRPC frame header.
    pub avg_wire_request_bytes: f64,
}

impl CorpusReport {
    fn of(c: &Corpus, _compression: Compression) -> Self {
        CorpusReport {
            requests: c.requests.len(),
            items_per_request: c.requests.first().map_or(0, |r| r.items),
            distinct_resources: c.distinct_resources,
            avg_item_bytes: round1(c.avg_item_bytes()),
            avg_item_message_bytes: round1(c.avg_item_message_bytes()),
            avg_request_bytes: round1(c.avg_request_bytes()),
            avg_wire_request_bytes: 0.0,
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The configuration a report was produced with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    pub endpoint: String,
    pub protocol: Protocol,
    pub signal: String,
    pub span_size: SpanSize,
    pub items_per_request: usize,
    pub connections: usize,
    pub inflight: usize,
    /// `closed` or `open`.
    pub mode: String,
    /// Open loop: items per second asked for.
    pub rate: Option<f64>,
    pub compression: Compression,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub threads: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Requests sent in the measured window.
    pub sent: u64,
    /// Answered with success (possibly a partial success).
    pub accepted: u64,
    /// Answered with a failure status (see `refusals`).
    pub refused: u64,
    /// No answer: connection failures, timeouts (see `errors`).
    pub errors: u64,
    /// Still in flight when the drain ended.
    pub abandoned: u64,
    /// Open loop: sent at least 10 ms after their scheduled time.
    pub late: u64,
    /// Open loop: scheduled within the run but never sent.
    pub missed: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ItemCounts {
    pub sent: u64,
    /// Items of accepted requests, less those the server rejected in a partial success.
    pub accepted: u64,
    pub refused: u64,
    /// Rejected by the server in partial successes.
    pub rejected: u64,
    pub errors: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Throughput {
    pub items_per_s: f64,
    pub requests_per_s: f64,
    /// Bytes of accepted requests as sent (compressed, framing included).
    pub wire_bytes_per_s: f64,
    /// Uncompressed OTLP protobuf bytes of accepted requests.
    pub proto_bytes_per_s: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    /// `scheduled` (open loop: from the scheduled send time, no coordinated omission) or
    /// `send` (closed loop).
    pub basis: String,
    #[serde(flatten)]
    pub summary: LatencySummary,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Cpu {
    /// CPU seconds (user + system) the load generator used while measuring.
    pub seconds: f64,
    /// The same as cores busy on average.
    pub cores: f64,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub config: RunConfig,
    pub corpus: CorpusReport,
    /// The measured window (seconds).
    pub duration_s: f64,
    pub requests: RequestCounts,
    pub items: ItemCounts,
    pub bytes_sent_wire: u64,
    pub bytes_sent_proto: u64,
    pub throughput: Throughput,
    /// Failure answers by gRPC code name (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`, ...) or HTTP
    /// status (`429`, `503`, ...).
    pub refusals: BTreeMap<String, u64>,
    /// Requests without an answer by kind (`connect`, `connection_closed`, `timeout`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Client-side latency of accepted requests (send -> response).
    pub latency: Latency,
    /// Open loop: how late sends went out relative to the schedule.
    pub send_lag: Option<LatencySummary>,
    /// Whether requests carried the send time in their first item (not with compression).
    pub stamped: bool,
    pub cpu: Cpu,
    /// Times a buffer was still held by the HTTP stack when reused (copied instead).
    pub buffer_copies: u64,
    /// The sink's /stats at the end of the run, with --sink-admin.
    pub sink: Option<serde_json::Value>,
}

/// Counters of one connection (merged at the end; nothing shared on the hot path).
struct ConnStats {
    req: RequestCounts,
    items: ItemCounts,
    wire_bytes: u64,
    proto_bytes: u64,
    accepted_wire_bytes: u64,
    accepted_proto_bytes: u64,
    refusals: BTreeMap<Refusal, u64>,
    errors: BTreeMap<&'static str, u64>,
    latency: Histogram<u64>,
    lag: Histogram<u64>,
    buffer_copies: u64,
}

impl ConnStats {
    fn new() -> Self {
        ConnStats {
            req: RequestCounts::default(),
            items: ItemCounts::default(),
            wire_bytes: 0,
            proto_bytes: 0,
            accepted_wire_bytes: 0,
            accepted_proto_bytes: 0,
            refusals: BTreeMap::new(),
            errors: BTreeMap::new(),
            latency: latency_histogram(),
            lag: latency_histogram(),
            buffer_copies: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Refusal {
    Grpc(u32),
    Http(u16),
}

impl Refusal {
    fn key(self) -> String {
        match self {
            Refusal::Grpc(c) => grpc_code_name(c).to_string(),
            Refusal::Http(s) => s.to_string(),
        }
    }
}

/// The gRPC status code names.
pub fn grpc_code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN_CODE",
    }
}

enum Outcome {
    Accepted { rejected: u64 },
    Refused(Refusal),
    Error(&'static str),
}

/// A finished request.
struct Done {
    slot: usize,
    bytes: Bytes,
    /// What latency is measured from.
    since: Instant,
    measured: bool,
    finished: Instant,
    outcome: Outcome,
    h1: Option<http1::SendRequest<Full<Bytes>>>,
}

/// Progress counters shared with the progress printer (one relaxed add per response).
#[derive(Default)]
#[repr(align(64))]
struct ConnProgress {
    items: AtomicU64,
    failed: AtomicU64,
}

// ---------------------------------------------------------------------------------------------
// Sending.

enum Lane {
    H2(http2::SendRequest<Full<Bytes>>),
    H1(Option<http1::SendRequest<Full<Bytes>>>),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

async fn connect_tcp(addr: &str) -> Result<TcpStream, &'static str> {
    let s = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await.map_err(|_| "connect_timeout")?;
    let s = s.map_err(|_| "connect")?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

async fn connect_h2(addr: &str) -> Result<http2::SendRequest<Full<Bytes>>, &'static str> {
    let tcp = connect_tcp(addr).await?;
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .max_send_buf_size(4 << 20)
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|_| "handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn connect_h1(addr: &str) -> Result<http1::SendRequest<Full<Bytes>>, &'static str> {
    let tcp = connect_tcp(addr).await?;
    let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(tcp)).await.map_err(|_| "handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn hyper_error_kind(e: &hyper::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_closed() || e.is_canceled() {
        "connection_closed"
    } else if e.is_incomplete_message() {
        "incomplete_message"
    } else if e.is_parse() || e.is_user() {
        "protocol"
    } else {
        "io"
    }
}

/// The number of rejected items in an `Export*ServiceResponse` (its `partial_success`).
fn rejected_items(msg: &[u8]) -> u64 {
    for f in Fields::new(msg) {
        let Ok(f) = f else { return 0 };
        if let (1, Value::Len(ps)) = (f.number, f.value) {
            for g in Fields::new(ps) {
                if let Ok(g) = g
                    && let (1, Value::Varint(n)) = (g.number, g.value)
                {
                    return n;
                }
            }
        }
    }
    0
}

fn grpc_status(h: &http::HeaderMap) -> Option<u32> {
    h.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

async fn read_response(protocol: Protocol, resp: Response<Incoming>) -> Outcome {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status.as_u16();
    let mut grpc = if protocol == Protocol::Grpc { grpc_status(&parts.headers) } else { None };
    let mut rejected = 0;
    let mut first = true;
    // Read to the end: the trailers carry the gRPC status, and HTTP/1.1 can only reuse a
    // connection whose response was read whole.
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return Outcome::Error(hyper_error_kind(&e)),
        };
        match frame.into_data() {
            Ok(d) => {
                if first && (200..300).contains(&status) {
                    // Responses are tiny: they arrive in one frame.
                    rejected = match protocol {
                        Protocol::Grpc if d.len() >= 5 && d[0] == 0 => rejected_items(&d[5..]),
                        Protocol::Grpc => 0,
                        Protocol::Http => rejected_items(&d),
                    };
                }
                first = false;
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers()
                    && protocol == Protocol::Grpc
                {
                    grpc = grpc.or(grpc_status(&t));
                }
            }
        }
    }
    match protocol {
        Protocol::Grpc if status != 200 => Outcome::Refused(Refusal::Http(status)),
        Protocol::Grpc => match grpc {
            Some(0) => Outcome::Accepted { rejected },
            Some(c) => Outcome::Refused(Refusal::Grpc(c)),
            None => Outcome::Error("missing_grpc_status"),
        },
        Protocol::Http if (200..300).contains(&status) => Outcome::Accepted { rejected },
        Protocol::Http => Outcome::Refused(Refusal::Http(status)),
    }
}

/// Sends one request and reads its answer.
async fn exchange(
    target: Arc<Target>,
    lane: Lane,
    body: Bytes,
) -> (Outcome, Instant, Option<http1::SendRequest<Full<Bytes>>>) {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = target.uri.clone();
    let h = req.headers_mut();
    for (k, v) in &target.headers {
        h.insert(k.clone(), v.clone());
    }
    let deadline = Instant::now() + target.timeout;
    let result = match lane {
        Lane::H2(mut sender) => {
            let r = timeout_at(deadline, async {
                match sender.send_request(req).await {
                    Ok(resp) => read_response(target.protocol, resp).await,
                    Err(e) => Outcome::Error(hyper_error_kind(&e)),
                }
            })
            .await;
            (r.unwrap_or(Outcome::Error("timeout")), None)
        }
        Lane::H1(sender) => {
            let r = timeout_at(deadline, async {
                let mut sender = match sender {
                    Some(s) => s,
                    None => match connect_h1(&target.addr).await {
                        Ok(s) => s,
                        Err(e) => return (Outcome::Error(e), None),
                    },
                };
                if sender.ready().await.is_err() {
                    return (Outcome::Error("connection_closed"), None);
                }
                match sender.send_request(req).await {
                    Ok(resp) => {
                        let o = read_response(target.protocol, resp).await;
                        let keep = !matches!(o, Outcome::Error(_));
                        (o, keep.then_some(sender))
                    }
                    Err(e) => (Outcome::Error(hyper_error_kind(&e)), None),
                }
            })
            .await;
            r.unwrap_or((Outcome::Error("timeout"), None))
        }
    };
    let finished = Instant::now();
    if matches!(result.0, Outcome::Error(_)) && target.closed_loop {
        // Do not spin against a dead endpoint.
        sleep(RECONNECT_BACKOFF).await;
    }
    (result.0, finished, result.1)
}

/// The timing of a run.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    measure_start: Instant,
    end: Instant,
    drain_deadline: Instant,
}

/// Where a connection's send times come from.
enum Schedule {
    /// Closed loop: as soon as a response comes back.
    Closed,
    /// Open loop on the runtime's (millisecond) timers.
    Coarse { rps: f64, conns: usize },
    /// Open loop from the pacer thread.
    Precise(UnboundedReceiver<Instant>),
}

/// How early a coarse open-loop timer is set: the runtime's timers fire 0-2 ms late (1 ms
/// ticks, rounded up), so this centres the sends on the schedule.
const TIMER_LEAD: Duration = Duration::from_millis(1);

/// One connection: its buffers, its HTTP connection(s) and its counters.
struct Connection {
    index: usize,
    target: Arc<Target>,
    slots: Vec<Slot>,
    next_slot: usize,
    h2: Option<http2::SendRequest<Full<Bytes>>>,
    h2_retry_at: Option<Instant>,
    h1_idle: Vec<http1::SendRequest<Full<Bytes>>>,
    stats: ConnStats,
    progress: Arc<Vec<ConnProgress>>,
}

impl Connection {
    /// Makes sure a gRPC connection is up (reconnecting with a backoff). Returns false when it
    /// is down.
    async fn ensure_connected(&mut self) -> bool {
        if self.target.protocol != Protocol::Grpc {
            return true;
        }
        if self.h2.as_ref().is_some_and(|s| !s.is_closed()) {
            return true;
        }
        self.h2 = None;
        if let Some(at) = self.h2_retry_at {
            if self.target.closed_loop {
                sleep_until(at).await;
            } else if Instant::now() < at {
                return false;
            }
        }
        match connect_h2(&self.target.addr).await {
            Ok(s) => {
                self.h2 = Some(s);
                self.h2_retry_at = None;
                true
            }
            Err(_) => {
                self.h2_retry_at = Some(Instant::now() + RECONNECT_BACKOFF);
                false
            }
        }
    }

    /// Stamps the next free buffer and returns the request future.
    fn launch(&mut self, scheduled: Instant, measured: bool) -> impl Future<Output = Done> + Send + 'static + use<> {
        let n = self.slots.len();
        let mut i = self.next_slot;
        while self.slots[i].bytes.is_none() {
            i = (i + 1) % n;
        }
        self.next_slot = (i + 1) % n;
        let slot = &mut self.slots[i];
        let b = slot.bytes.take().expect("free slot");
        let b = match slot.patch {
            Some(p) => {
                let mut m = match b.try_into_mut() {
                    Ok(m) => m,
                    Err(shared) => {
                        self.stats.buffer_copies += 1;
                        BytesMut::from(&shared[..])
                    }
                };
                let now = unix_nanos();
                write_stamp(&mut m, p.stamp, now);
                if let Some(e) = p.end {
                    write_stamp(&mut m, e, now + p.span_nanos);
                }
                m.freeze()
            }
            None => b,
        };
        let sent = Instant::now();
        if measured {
            self.stats.req.sent += 1;
            self.stats.items.sent += slot.items;
            self.stats.wire_bytes += b.len() as u64;
            self.stats.proto_bytes += slot.raw_len;
            let lag = sent.saturating_duration_since(scheduled);
            if !self.target.closed_loop {
                record_nanos(&mut self.stats.lag, lag.as_nanos() as u64);
                if lag >= LATE_THRESHOLD {
                    self.stats.req.late += 1;
                }
            }
        }
        let lane = match self.target.protocol {
            Protocol::Grpc => Lane::H2(self.h2.clone().expect("connected before launch")),
            Protocol::Http => Lane::H1(self.h1_idle.pop()),
        };
        let target = self.target.clone();
        // Latency runs from the scheduled time, or from the actual send when that was earlier
        // (coarse open-loop timers may fire up to 1 ms early).
        let since = scheduled.min(sent);
        async move {
            let (outcome, finished, h1) = exchange(target, lane, b.clone()).await;
            Done { slot: i, bytes: b, since, measured, finished, outcome, h1 }
        }
    }

    /// Books a send that could not even start (connection down).
    fn fail_unsent(&mut self, items: u64, measured: bool) {
        if measured {
            self.stats.req.sent += 1;
            self.stats.items.sent += items;
            self.stats.req.errors += 1;
            self.stats.items.errors += items;
            *self.stats.errors.entry("connect").or_default() += 1;
        }
        self.progress[self.index].failed.fetch_add(1, Ordering::Relaxed);
    }

    fn complete(&mut self, d: Done) {
        let slot = &mut self.slots[d.slot];
        let items = slot.items;
        let raw_len = slot.raw_len;
        let wire_len = d.bytes.len() as u64;
        slot.bytes = Some(d.bytes);
        if let Some(h) = d.h1 {
            self.h1_idle.push(h);
        }
        let p = &self.progress[self.index];
        match &d.outcome {
            Outcome::Accepted { rejected } => p.items.fetch_add(items.saturating_sub(*rejected), Ordering::Relaxed),
            _ => p.failed.fetch_add(1, Ordering::Relaxed),
        };
        if !d.measured {
            return;
        }
        let s = &mut self.stats;
        match d.outcome {
            Outcome::Accepted { rejected } => {
                s.req.accepted += 1;
                let rejected = rejected.min(items);
                s.items.accepted += items - rejected;
                s.items.rejected += rejected;
                s.accepted_wire_bytes += wire_len;
                s.accepted_proto_bytes += raw_len;
                record_nanos(&mut s.latency, d.finished.saturating_duration_since(d.since).as_nanos() as u64);
            }
            Outcome::Refused(r) => {
                s.req.refused += 1;
                s.items.refused += items;
                *s.refusals.entry(r).or_default() += 1;
            }
            Outcome::Error(e) => {
                s.req.errors += 1;
                s.items.errors += items;
                *s.errors.entry(e).or_default() += 1;
            }
        }
    }

    async fn run(mut self, clock: Clock, inflight: usize, schedule: Schedule) -> ConnStats {
        let mut futs = FuturesUnordered::new();
        match schedule {
            Schedule::Closed => {
                while Instant::now() < clock.end {
                    while futs.len() < inflight && Instant::now() < clock.end {
                        if !self.ensure_connected().await {
                            let now = Instant::now();
                            let items = self.slots[self.next_slot].items;
                            self.fail_unsent(items, now >= clock.measure_start);
                            continue;
                        }
                        let now = Instant::now();
                        futs.push(self.launch(now, now >= clock.measure_start));
                    }
                    tokio::select! {
                        Some(d) = futs.next() => self.complete(d),
                        _ = sleep_until(clock.end) => break,
                    }
                }
            }
            Schedule::Coarse { rps, conns } => {
                // The global schedule is start + k / rps; this connection takes every
                // `conns`-th send of it, starting at its index. The runtime's timers tick in
                // milliseconds and fire 0-2 ms late, so waking 1 ms early centres the send
                // times on the schedule (an early send is measured from when it went out).
                let idx = self.index as f64;
                let due = |k: u64| clock.start + Duration::from_secs_f64((idx + k as f64 * conns as f64) / rps);
                let mut k = 0u64;
                let mut next = due(0);
                loop {
                    let now = Instant::now();
                    while next <= now + TIMER_LEAD && next < clock.end && futs.len() < inflight {
                        let measured = next >= clock.measure_start;
                        if self.ensure_connected().await {
                            futs.push(self.launch(next, measured));
                        } else {
                            let items = self.slots[self.next_slot].items;
                            self.fail_unsent(items, measured);
                        }
                        k += 1;
                        next = due(k);
                    }
                    if now >= clock.end || next >= clock.end && futs.is_empty() {
                        break;
                    }
                    let wake = if futs.len() < inflight && next < clock.end { next - TIMER_LEAD } else { clock.end };
                    tokio::select! {
                        biased;
                        Some(d) = futs.next(), if !futs.is_empty() => self.complete(d),
                        _ = sleep_until(wake) => {}
                    }
                }
                // Scheduled within the run but never sent.
                while next < clock.end {
                    self.stats.req.missed += u64::from(next >= clock.measure_start);
                    k += 1;
                    next = due(k);
                }
            }
            Schedule::Precise(mut schedule) => {
                // The pacer thread hands out this connection's send times as they come due.
                // At the in-flight limit they wait in the channel (and go out late, still
                // measured from their scheduled time).
                loop {
                    tokio::select! {
                        biased;
                        Some(d) = futs.next(), if !futs.is_empty() => self.complete(d),
                        due = schedule.recv(), if futs.len() < inflight => {
                            let Some(due) = due else { break };
                            if Instant::now() >= clock.end {
                                // Too late to send: the run is over.
                                self.stats.req.missed += u64::from(due >= clock.measure_start);
                                continue;
                            }
                            let measured = due >= clock.measure_start;
                            if self.ensure_connected().await {
                                futs.push(self.launch(due, measured));
                            } else {
                                let items = self.slots[self.next_slot].items;
                                self.fail_unsent(items, measured);
                            }
                        }
                        _ = sleep_until(clock.end), if futs.len() >= inflight => break,
                    }
                }
                schedule.close();
                while let Some(due) = schedule.recv().await {
                    self.stats.req.missed += u64::from(due >= clock.measure_start);
                }
            }
        }
        // Drain.
        while !futs.is_empty() {
            match timeout_at(clock.drain_deadline, futs.next()).await {
                Ok(Some(d)) => self.complete(d),
                Ok(None) => break,
                Err(_) => {
                    self.stats.req.abandoned += futs.len() as u64;
                    break;
                }
            }
        }
        self.stats
    }
}

/// The open-loop schedule: sends at `start + k / rps` for every k before the end, handed to
/// connection `k mod C` when due. A thread of its own sleeps precisely (tens of microseconds;
/// the runtime's timers have millisecond ticks).
fn pace(clock: Clock, rps: f64, txs: Vec<UnboundedSender<Instant>>) {
    let start = clock.start.into_std();
    let end = clock.end.into_std();
    let mut k = 0u64;
    loop {
        let due = start + Duration::from_secs_f64(k as f64 / rps);
        if due >= end {
            break;
        }
        let now = std::time::Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // A connection that has stopped no longer listens; its sends are simply not made.
        let _ = txs[(k % txs.len() as u64) as usize].send(Instant::from_std(due));
        k += 1;
    }
}

/// Generates the corpus (in a blocking task) and runs.
pub async fn run(args: Args) -> anyhow::Result<Report> {
    let a = args.clone();
    let prepared = tokio::task::spawn_blocking(move || prepare(&a)).await.context("corpus generation panicked")??;
    execute(prepared).await
}

/// Runs a prepared load: warm-up, measurement, drain, report.
pub async fn execute(p: Prepared) -> anyhow::Result<Report> {
    let args = p.args;
    let inflight = args.inflight();
    let conns = p.conns.len();
    let start = Instant::now() + Duration::from_millis(20);
    let measure_start = start + args.warmup;
    let end = measure_start + args.duration;
    let clock = Clock { start, measure_start, end, drain_deadline: end + args.drain.min(MAX_DRAIN) };
    // Open loop: send k of the global schedule (start + k / requests-per-second) goes to
    // connection k mod C. With --precise-pacing one pacer thread walks the schedule with
    // precise sleeps and hands the sends out.
    let mut schedules: Vec<Schedule> = Vec::with_capacity(conns);
    match args.rate.map(|r| r / args.items_per_request as f64) {
        None => schedules.extend((0..conns).map(|_| Schedule::Closed)),
        Some(rps) if !args.precise_pacing => schedules.extend((0..conns).map(|_| Schedule::Coarse { rps, conns })),
        Some(rps) => {
            let mut txs = Vec::with_capacity(conns);
            for _ in 0..conns {
                let (tx, rx) = unbounded_channel();
                txs.push(tx);
                schedules.push(Schedule::Precise(rx));
            }
            std::thread::Builder::new()
                .name("loadgen-pacer".into())
                .spawn(move || pace(clock, rps, txs))
                .context("starting the pacer thread")?;
        }
    }
    let progress: Arc<Vec<ConnProgress>> = Arc::new((0..conns).map(|_| ConnProgress::default()).collect());

    let mut tasks = Vec::with_capacity(conns);
    for ((index, slots), schedule) in p.conns.into_iter().enumerate().zip(schedules) {
        let c = Connection {
            index,
            target: p.target.clone(),
            slots,
            next_slot: 0,
            h2: None,
            h2_retry_at: None,
            h1_idle: Vec::new(),
            stats: ConnStats::new(),
            progress: progress.clone(),
        };
        tasks.push(tokio::spawn(async move {
            sleep_until(start).await;
            c.run(clock, inflight, schedule).await
        }));
    }

    // Measurement start and end: CPU time, and the sink's counters.
    let sink_admin = args.sink_admin.clone();
    let marks = tokio::spawn(async move {
        sleep_until(clock.measure_start).await;
        let cpu0 = crate::process_cpu_seconds();
        if let Some(a) = &sink_admin
            && let Err(e) = admin_call(a, Method::POST, "/reset").await
        {
            eprintln!("loadgen: cannot reset the sink at {a}: {e:#}");
        }
        sleep_until(clock.end).await;
        let cpu1 = crate::process_cpu_seconds();
        (cpu0, cpu1)
    });

    let printer = (!args.quiet).then(|| {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut tick = start;
            loop {
                tick += Duration::from_secs(1);
                if tick > clock.end + Duration::from_millis(500) {
                    break;
                }
                sleep_until(tick).await;
                let items: u64 = progress.iter().map(|p| p.items.load(Ordering::Relaxed)).sum();
                let failed: u64 = progress.iter().map(|p| p.failed.load(Ordering::Relaxed)).sum();
                let phase = if tick <= clock.measure_start { "warmup " } else { "measure" };
                eprintln!(
                    "[{:>6.1}s] {phase}  {:>12.0} items/s  accepted {:>12}  failed requests {}",
                    (tick - start).as_secs_f64(),
                    (items - last) as f64,
                    items,
                    failed
                );
                last = items;
            }
        })
    });

    let mut total = ConnStats::new();
    for t in tasks {
        let s = t.await.context("connection task panicked")?;
        merge(&mut total, s);
    }
    if let Some(p) = printer {
        p.abort();
    }
    let (cpu0, cpu1) = marks.await.unwrap_or((None, None));
    let sink = match &args.sink_admin {
        Some(a) => match admin_call(a, Method::GET, "/stats").await {
            Ok(b) => serde_json::from_slice(&b).ok(),
            Err(e) => {
                eprintln!("loadgen: cannot read the sink's stats at {a}: {e:#}");
                None
            }
        },
        None => None,
    };
    let secs = args.duration.as_secs_f64();
    let cpu_seconds = match (cpu0, cpu1) {
        (Some(a), Some(b)) => ((b - a) * 100.0).round() / 100.0,
        _ => 0.0,
    };
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Ok(Report {
        config: RunConfig {
            endpoint: args.endpoint.clone(),
            protocol: args.protocol,
            signal: args.signal.to_string(),
            span_size: args.span_size,
            items_per_request: args.items_per_request,
            connections: conns,
            inflight,
            mode: if args.rate.is_some() { "open" } else { "closed" }.into(),
            rate: args.rate,
            compression: args.compression,
            warmup_s: args.warmup.as_secs_f64(),
            duration_s: secs,
            threads,
        },
        corpus: p.corpus,
        duration_s: secs,
        throughput: Throughput {
            items_per_s: round1(total.items.accepted as f64 / secs),
            requests_per_s: round1(total.req.accepted as f64 / secs),
            wire_bytes_per_s: round1(total.accepted_wire_bytes as f64 / secs),
            proto_bytes_per_s: round1(total.accepted_proto_bytes as f64 / secs),
        },
        requests: total.req,
        items: total.items,
        bytes_sent_wire: total.wire_bytes,
        bytes_sent_proto: total.proto_bytes,
        refusals: total.refusals.iter().map(|(k, v)| (k.key(), *v)).collect(),
        errors: total.errors.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
        latency: Latency {
            basis: if args.rate.is_some() { "scheduled" } else { "send" }.into(),
            summary: LatencySummary::of(&total.latency),
        },
        send_lag: args.rate.map(|_| LatencySummary::of(&total.lag)),
        stamped: args.compression == Compression::None,
        cpu: Cpu { seconds: cpu_seconds, cores: (cpu_seconds / secs * 100.0).round() / 100.0 },
        buffer_copies: total.buffer_copies,
        sink,
    })
}

fn merge(into: &mut ConnStats, s: ConnStats) {
    let (a, b) = (&mut into.req, &s.req);
    a.sent += b.sent;
    a.accepted += b.accepted;
    a.refused += b.refused;
    a.errors += b.errors;
    a.abandoned += b.abandoned;
    a.late += b.late;
    a.missed += b.missed;
    let (a, b) = (&mut into.items, &s.items);
    a.sent += b.sent;
    a.accepted += b.accepted;
    a.refused += b.refused;
    a.rejected += b.rejected;
    a.errors += b.errors;
    into.wire_bytes += s.wire_bytes;
    into.proto_bytes += s.proto_bytes;
    into.accepted_wire_bytes += s.accepted_wire_bytes;
    into.accepted_proto_bytes += s.accepted_proto_bytes;
    for (k, v) in s.refusals {
        *into.refusals.entry(k).or_default() += v;
    }
    for (k, v) in s.errors {
        *into.errors.entry(k).or_default() += v;
    }
    let _ = into.latency.add(&s.latency);
    let _ = into.lag.add(&s.lag);
    into.buffer_copies += s.buffer_copies;
}

/// One request to a sink's admin port.
pub async fn admin_call(addr: &str, method: Method, path: &str) -> anyhow::Result<Bytes> {
    let addr = addr.strip_prefix("http://").unwrap_or(addr).trim_end_matches('/');
    let tcp = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::builder().method(method).uri(path).header(header::HOST, addr).body(Full::new(Bytes::new()))?;
    let resp = timeout(Duration::from_secs(10), sender.send_request(req)).await.context("timed out")??;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("{path}: HTTP {status}");
    }
    Ok(body)
}

impl Report {
    /// The human-readable report.
    pub fn text(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let mode = match c.rate {
            Some(r) => format!("open loop at {r:.0} items/s, max {} in flight per connection", c.inflight),
            None => format!("closed loop, {} in flight per connection", c.inflight),
        };
        s += &format!(
            "loadgen: {} over {} ({} items) -> {}, {} connections, {mode}, compression {}\n",
            c.signal,
            match c.protocol {
                Protocol::Grpc => "gRPC",
                Protocol::Http => "HTTP",
            },
            c.span_size.as_str(),
            c.endpoint,
            c.connections,
            c.compression.name()
        );
        s += &format!(
            "corpus:   {} requests x {} items, avg {:.0} B/item, avg request {:.1} KiB ({:.1} KiB on the wire)\n",
            self.corpus.requests,
            self.corpus.items_per_request,
            self.corpus.avg_item_bytes,
            self.corpus.avg_request_bytes / 1024.0,
            self.corpus.avg_wire_request_bytes / 1024.0
        );
        s += &format!("duration: {:.1} s measured (after {:.1} s warm-up)\n", self.duration_s, c.warmup_s);
        let r = &self.requests;
        s += &format!(
            "requests: sent {}  accepted {}  refused {}  errors {}  abandoned {}",
            r.sent, r.accepted, r.refused, r.errors, r.abandoned
        );
        if c.rate.is_some() {
            s += &format!("  late {}  missed {}", r.late, r.missed);
        }
        s += "\n";
        let i = &self.items;
        s += &format!(
            "items:    sent {}  accepted {}  refused {}  rejected {}  errors {}\n",
            i.sent, i.accepted, i.refused, i.rejected, i.errors
        );
        let t = &self.throughput;
        s += &format!(
            "achieved: {:.0} items/s  {:.1} requests/s  {:.1} MB/s on the wire  {:.1} MB/s protobuf\n",
            t.items_per_s,
            t.requests_per_s,
            t.wire_bytes_per_s / 1e6,
            t.proto_bytes_per_s / 1e6
        );
        if !self.refusals.is_empty() {
            let v: Vec<String> = self.refusals.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s += &format!("refusals: {}\n", v.join("  "));
        }
        if !self.errors.is_empty() {
            let v: Vec<String> = self.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s += &format!("errors:   {}\n", v.join("  "));
        }
        s += &format!(
            "latency:  {} (client-side, from the {} time)\n",
            self.latency.summary.text(),
            if self.latency.basis == "scheduled" { "scheduled send" } else { "send" }
        );
        if let Some(l) = &self.send_lag {
            s += &format!("send lag: {}\n", l.text());
        }
        if !self.stamped {
            s += "note:     compressed requests carry no send-time stamp: end-to-end latency is not measured\n";
        }
        s += &format!(
            "cpu:      {:.2} s ({:.2} cores) used by loadgen while measuring\n",
            self.cpu.seconds, self.cpu.cores
        );
        if let Some(sink) = &self.sink
            && let Some(sig) = sink.get(&c.signal)
        {
            let g = |k: &str| sig.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            s += &format!(
                "sink:     {} items in {} requests; end-to-end latency p50 {} µs  p99 {} µs  p99.9 {} µs  max {} µs\n",
                g("items"),
                g("requests"),
                g("latency_p50_us"),
                g("latency_p99_us"),
                g("latency_p999_us"),
                g("latency_max_us")
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_success_is_read_from_the_response() {
        // ExportTraceServiceResponse { partial_success { rejected_spans: 7, error_message: "x" } }
        assert_eq!(rejected_items(&[0x0a, 0x05, 0x08, 0x07, 0x12, 0x01, b'x']), 7);
        assert_eq!(rejected_items(&[]), 0);
        assert_eq!(rejected_items(&[0xff]), 0);
    }

    #[test]
    fn endpoints() {
        use clap::Parser as _;
        let a =
            Args::parse_from(["loadgen", "--endpoint", "http://10.0.0.1:4318/custom/v1/traces", "--protocol", "http"]);
        let t = target(&a).unwrap();
        assert_eq!((t.addr.as_str(), t.uri.to_string().as_str()), ("10.0.0.1:4318", "/custom/v1/traces"));
        let a = Args::parse_from(["loadgen", "--endpoint", "127.0.0.1:4317", "--signal", "logs"]);
        let t = target(&a).unwrap();
        assert_eq!(t.uri.path(), Signal::Logs.grpc_path());
        for bad in ["localhost", "https://x:1", "x:port"] {
            let a = Args::parse_from(["loadgen", "--endpoint", bad]);
            assert!(target(&a).is_err(), "{bad}");
        }
        assert!(crate::process_cpu_seconds().is_some());
    }
}
