//! The counting sink: an OTLP receiver (gRPC and HTTP, traces, metrics and logs) that answers
//! success after validating and counting each request with one allocation-free wire walk
//! ([`sightline_core::wire::inspect`]), and records end-to-end latency from the stamp in the
//! first item ([`crate::read_stamp`]).
//!
//! It also takes Prometheus remote write 1.0 (`POST /api/v1/write`, snappy block format) on
//! the same ports: the `WriteRequest` is walked once to count series, samples and native
//! histograms (see [`walk_write_request`]), and answered `204 No Content`.
//!
//! Counters are atomics; latency histograms are sharded by thread (a mutex per shard, taken
//! only by its own thread except when `/stats` merges them). Nothing is decoded unless
//! `--verify-ownership` samples a request.

use crate::hist::{LatencySummary, latency_histogram, record_nanos};
use crate::{Signal, read_stamp, unix_nanos};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde::{Deserialize, Serialize};
use sightline_core::wire::{self, WireType, put_len_field, put_tag, put_varint};
use std::cell::RefCell;
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// `sink`: counting OTLP receiver for benchmarks.
#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "sink",
    version,
    about = "Counting OTLP sink: receives OTLP over gRPC and HTTP, counts items without decoding, and records end-to-end latency.",
    long_about = "Counting OTLP sink for benchmarks: receives OTLP/gRPC and OTLP/HTTP (protobuf; gzip, \
zstd and deflate accepted) for traces, metrics and logs, answers success after validating and \
counting each request with one wire walk (no decode), and records end-to-end latency \
(now - the send time `loadgen` stamped into the first item) in an HDR histogram per signal.\n\n\
Prometheus remote write 1.0 (POST /api/v1/write, snappy) is accepted on the same ports and \
counted (series, samples, native histograms) under `remote_write` in /stats.\n\n\
Admin HTTP: GET /stats (JSON per signal: requests, items, bytes, latency percentiles in µs, \
ownership checks), POST /reset (zero everything), GET /healthz.\n\n\
Examples:\n  \
sink                                   # gRPC :4417, HTTP :4418, admin :4419 on 127.0.0.1\n  \
sink --verify-ownership 0.01           # decode 1% of requests and check owner.team\n  \
sink --delay 20ms --fail-rate 0.05     # a slow, flaky backend\n  \
curl -s 127.0.0.1:4419/stats"
)]
pub struct Args {
    /// OTLP/gRPC listen address (`off` to disable).
    #[arg(long, default_value = "127.0.0.1:4417")]
    pub grpc: String,

    /// OTLP/HTTP listen address (`off` to disable). Both ports accept both protocols (told
    /// apart by content-type); the split is for clients that expect it.
    #[arg(long, default_value = "127.0.0.1:4418")]
    pub http: String,

    /// More OTLP listen addresses (repeatable), counted with the others: several backends in
    /// one sink, e.g. the gateways a load-balancing exporter spreads over.
    #[arg(long = "also-listen")]
    pub also_listen: Vec<String>,

    /// Admin HTTP address for /stats and /reset (`off` to disable).
    #[arg(long, default_value = "127.0.0.1:4419")]
    pub admin: String,

    /// Fraction (0..1) of requests to decode fully and check that every resource has a string
    /// `owner.team` attribute (counted as ownership_ok / ownership_missing per resource). For
    /// remote write: every series of a sampled request must have a non-empty `owner_team` label.
    #[arg(long, default_value_t = 0.0)]
    pub verify_ownership: f64,

    /// Wait this long before answering each request (a slow backend), e.g. 20ms.
    #[arg(long, value_parser = crate::parse_duration, default_value = "0ms")]
    pub delay: Duration,

    /// Fraction (0..1) of requests answered with a retryable failure (gRPC UNAVAILABLE, HTTP
    /// 503) instead of being counted.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,

    /// Largest request accepted, compressed and after decompression, in MiB.
    #[arg(long, default_value_t = 256)]
    pub max_message_mib: usize,

    /// Worker threads of the runtime (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Print a one-line summary per signal with traffic at this interval (0s = never).
    #[arg(long, value_parser = crate::parse_duration, default_value = "0s")]
    pub report_interval: Duration,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            grpc: "127.0.0.1:4417".into(),
            http: "127.0.0.1:4418".into(),
            admin: "127.0.0.1:4419".into(),
            also_listen: Vec::new(),
            verify_ownership: 0.0,
            delay: Duration::ZERO,
            fail_rate: 0.0,
            max_message_mib: 256,
            threads: None,
            report_interval: Duration::ZERO,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Counters.

const SHARDS: usize = 64;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
    /// Decompression output, reused by every request served on this thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The counters of one signal.
#[repr(align(128))]
pub struct SignalCounters {
    requests: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
    wire_bytes: AtomicU64,
    invalid: AtomicU64,
    failed_injected: AtomicU64,
    unstamped: AtomicU64,
    ownership_checked: AtomicU64,
    ownership_ok: AtomicU64,
    ownership_missing: AtomicU64,
    ownership_unowned: AtomicU64,
    fail_seq: AtomicU64,
    sample_seq: AtomicU64,
    latency: Latency,
}

/// End-to-end latency, one histogram per thread shard (a mutex each, taken only by that
/// shard's threads and by `/stats`).
struct Latency(Box<[Mutex<Histogram<u64>>]>);

impl Latency {
    fn new() -> Self {
        Latency((0..SHARDS).map(|_| Mutex::new(latency_histogram())).collect())
    }
    fn record(&self, nanos: u64) {
        let shard = SHARD.with(|s| *s);
        record_nanos(&mut self.0[shard].lock().unwrap_or_else(|e| e.into_inner()), nanos);
    }
    fn summary(&self) -> LatencySummary {
        let mut merged = latency_histogram();
        for h in self.0.iter() {
            let _ = merged.add(&*h.lock().unwrap_or_else(|e| e.into_inner()));
        }
        LatencySummary::of(&merged)
    }
    fn reset(&self) {
        for h in self.0.iter() {
            h.lock().unwrap_or_else(|e| e.into_inner()).reset();
        }
    }
}

impl SignalCounters {
    fn new() -> Self {
        SignalCounters {
            requests: AtomicU64::new(0),
            items: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            wire_bytes: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            failed_injected: AtomicU64::new(0),
            unstamped: AtomicU64::new(0),
            ownership_checked: AtomicU64::new(0),
            ownership_ok: AtomicU64::new(0),
            ownership_missing: AtomicU64::new(0),
            ownership_unowned: AtomicU64::new(0),
            fail_seq: AtomicU64::new(0),
            sample_seq: AtomicU64::new(0),
            latency: Latency::new(),
        }
    }

    fn counters(&self) -> [&AtomicU64; 13] {
        [
            &self.requests,
            &self.items,
            &self.bytes,
            &self.wire_bytes,
            &self.invalid,
            &self.failed_injected,
            &self.unstamped,
            &self.ownership_checked,
            &self.ownership_ok,
            &self.ownership_missing,
            &self.ownership_unowned,
            &self.fail_seq,
            &self.sample_seq,
        ]
    }

    fn reset(&self) {
        for c in self.counters() {
            c.store(0, Ordering::Relaxed);
        }
        self.latency.reset();
    }

    fn snapshot(&self) -> SignalStats {
        let l = self.latency.summary();
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SignalStats {
            requests: g(&self.requests),
            items: g(&self.items),
            bytes: g(&self.bytes),
            wire_bytes: g(&self.wire_bytes),
            invalid: g(&self.invalid),
            failed_injected: g(&self.failed_injected),
            unstamped: g(&self.unstamped),
            latency_count: l.count,
            latency_p50_us: l.p50_us,
            latency_p90_us: l.p90_us,
            latency_p99_us: l.p99_us,
            latency_p999_us: l.p999_us,
            latency_max_us: l.max_us,
            latency_mean_us: l.mean_us,
            ownership_checked_requests: g(&self.ownership_checked),
            ownership_ok: g(&self.ownership_ok),
            ownership_missing: g(&self.ownership_missing),
            ownership_unowned: g(&self.ownership_unowned),
        }
    }
}

/// The counters of the Prometheus remote-write endpoint.
#[repr(align(128))]
pub struct RemoteWriteCounters {
    requests: AtomicU64,
    series: AtomicU64,
    samples: AtomicU64,
    histograms: AtomicU64,
    bytes: AtomicU64,
    wire_bytes: AtomicU64,
    invalid: AtomicU64,
    failed_injected: AtomicU64,
    unstamped: AtomicU64,
    ownership_checked_requests: AtomicU64,
    ownership_ok: AtomicU64,
    ownership_missing: AtomicU64,
    fail_seq: AtomicU64,
    sample_seq: AtomicU64,
    latency: Latency,
}

impl RemoteWriteCounters {
    fn new() -> Self {
        RemoteWriteCounters {
            requests: AtomicU64::new(0),
            series: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            histograms: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            wire_bytes: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            failed_injected: AtomicU64::new(0),
            unstamped: AtomicU64::new(0),
            ownership_checked_requests: AtomicU64::new(0),
            ownership_ok: AtomicU64::new(0),
            ownership_missing: AtomicU64::new(0),
            fail_seq: AtomicU64::new(0),
            sample_seq: AtomicU64::new(0),
            latency: Latency::new(),
        }
    }

    fn reset(&self) {
        for c in [
            &self.requests,
            &self.series,
            &self.samples,
            &self.histograms,
            &self.bytes,
            &self.wire_bytes,
            &self.invalid,
            &self.failed_injected,
            &self.unstamped,
            &self.ownership_checked_requests,
            &self.ownership_ok,
            &self.ownership_missing,
            &self.fail_seq,
            &self.sample_seq,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.latency.reset();
    }

    fn snapshot(&self) -> RemoteWriteStats {
        let l = self.latency.summary();
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RemoteWriteStats {
            requests: g(&self.requests),
            series: g(&self.series),
            samples: g(&self.samples),
            histograms: g(&self.histograms),
            bytes: g(&self.bytes),
            wire_bytes: g(&self.wire_bytes),
            invalid: g(&self.invalid),
            failed_injected: g(&self.failed_injected),
            unstamped: g(&self.unstamped),
            latency_count: l.count,
            latency_p50_us: l.p50_us,
            latency_p90_us: l.p90_us,
            latency_p99_us: l.p99_us,
            latency_p999_us: l.p999_us,
            latency_max_us: l.max_us,
            latency_mean_us: l.mean_us,
            ownership_checked_requests: g(&self.ownership_checked_requests),
            ownership_ok: g(&self.ownership_ok),
            ownership_missing: g(&self.ownership_missing),
        }
    }
}

/// What `/stats` reports for Prometheus remote write (`remote_write`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoteWriteStats {
    /// `WriteRequest`s counted (valid, not failed on purpose).
    pub requests: u64,
    /// `TimeSeries` in them (a series split over several requests counts once per request).
    pub series: u64,
    /// Float samples.
    pub samples: u64,
    /// Native histogram samples.
    pub histograms: u64,
    /// Uncompressed protobuf bytes.
    pub bytes: u64,
    /// Bytes as received (snappy).
    pub wire_bytes: u64,
    /// Requests refused: not snappy, not protobuf, not a valid `WriteRequest`, too large.
    pub invalid: u64,
    /// Requests failed on purpose (`--fail-rate`, HTTP 503).
    pub failed_injected: u64,
    /// Counted requests whose newest sample is older than 10 minutes (no stamp in them).
    pub unstamped: u64,
    /// End-to-end latency: receive time - the newest sample timestamp of the request (which
    /// carries `loadgen`'s stamp, truncated to milliseconds, so up to 1 ms too high), µs.
    pub latency_count: u64,
    pub latency_p50_us: u64,
    pub latency_p90_us: u64,
    pub latency_p99_us: u64,
    pub latency_p999_us: u64,
    pub latency_max_us: u64,
    pub latency_mean_us: f64,
    /// Requests whose series were checked for `owner_team` (`--verify-ownership`).
    pub ownership_checked_requests: u64,
    /// Series (of checked requests) with a non-empty `owner_team` label.
    pub ownership_ok: u64,
    /// Series without one.
    pub ownership_missing: u64,
}

/// What `/stats` reports for one signal.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalStats {
    /// Requests counted (valid, not failed on purpose).
    pub requests: u64,
    /// Spans, metric data points or log records in them.
    pub items: u64,
    /// Uncompressed protobuf bytes.
    pub bytes: u64,
    /// Bytes as received (compressed, with the gRPC frame header).
    pub wire_bytes: u64,
    /// Requests refused as invalid protobuf or unsupported.
    pub invalid: u64,
    /// Requests failed on purpose (`--fail-rate`).
    pub failed_injected: u64,
    /// Counted requests without a usable stamp (compressed by the load generator, or a stamp
    /// older than 10 minutes: items that were not first in their request).
    pub unstamped: u64,
    /// End-to-end latency (receive time - stamp), microseconds.
    pub latency_count: u64,
    pub latency_p50_us: u64,
    pub latency_p90_us: u64,
    pub latency_p99_us: u64,
    pub latency_p999_us: u64,
    pub latency_max_us: u64,
    pub latency_mean_us: f64,
    /// Requests decoded for `--verify-ownership`.
    pub ownership_checked_requests: u64,
    /// Resources (of checked requests) with a string `owner.team`.
    pub ownership_ok: u64,
    /// Resources without one.
    pub ownership_missing: u64,
    /// Resources whose `owner.team` is `unowned` (included in `ownership_ok`).
    pub ownership_unowned: u64,
}

/// What `/stats` returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since start or the last reset.
    pub uptime_s: f64,
    /// CPU seconds the sink process has used since it started.
    pub cpu_seconds: f64,
    pub traces: SignalStats,
    pub metrics: SignalStats,
    pub logs: SignalStats,
    /// Prometheus remote write (`POST /api/v1/write`).
    #[serde(default)]
    pub remote_write: RemoteWriteStats,
}

impl Snapshot {
    pub fn signal(&self, s: Signal) -> &SignalStats {
        match s {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }
}

/// Every counter of the sink.
pub struct Stats {
    signals: [SignalCounters; 3],
    remote_write: RemoteWriteCounters,
    since: Mutex<Instant>,
}

impl Stats {
    fn new() -> Self {
        Stats {
            signals: [SignalCounters::new(), SignalCounters::new(), SignalCounters::new()],
            remote_write: RemoteWriteCounters::new(),
            since: Mutex::new(Instant::now()),
        }
    }

    fn of(&self, s: Signal) -> &SignalCounters {
        &self.signals[s as usize]
    }

    pub fn snapshot(&self) -> Snapshot {
        let since = *self.since.lock().unwrap_or_else(|e| e.into_inner());
        Snapshot {
            uptime_s: (since.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            cpu_seconds: crate::process_cpu_seconds().unwrap_or(0.0),
            traces: self.of(Signal::Traces).snapshot(),
            metrics: self.of(Signal::Metrics).snapshot(),
            logs: self.of(Signal::Logs).snapshot(),
            remote_write: self.remote_write.snapshot(),
        }
    }

    pub fn reset(&self) {
        for s in &self.signals {
            s.reset();
        }
        self.remote_write.reset();
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
}

/// Whether the `n`-th event of a sequence is picked when a fraction `p` is: exactly
/// `floor(n * p)` of the first `n` are, spread evenly.
fn pick(seq: &AtomicU64, p: f64) -> bool {
    if p <= 0.0 {
        return false;
    }
    if p >= 1.0 {
        return true;
    }
    let n = seq.fetch_add(1, Ordering::Relaxed) as f64;
    ((n + 1.0) * p).floor() > (n * p).floor()
}

// ---------------------------------------------------------------------------------------------
// Serving.

/// A running sink.
pub struct Sink {
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub stats: Arc<Stats>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sink {
    /// Stops accepting connections (open connections finish on their own).
    pub fn shutdown(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Shared {
    stats: Arc<Stats>,
    verify_ownership: f64,
    delay: Duration,
    fail_rate: f64,
    limit: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Port {
    Otlp,
    Admin,
}

fn enabled(addr: &str) -> Option<&str> {
    let a = addr.trim();
    (!a.is_empty() && a != "off" && a != "none").then_some(a)
}

async fn listen(a: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(a).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {a}: {e}")))
}

/// Binds the listeners and starts serving. Returns once the sockets are bound.
pub async fn start(args: &Args) -> std::io::Result<Sink> {
    for (name, v) in [("--verify-ownership", args.verify_ownership), ("--fail-rate", args.fail_rate)] {
        if !(0.0..=1.0).contains(&v) {
            let msg = format!("{name} must be a fraction from 0 to 1, got {v}");
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg));
        }
    }
    let stats = Arc::new(Stats::new());
    let shared = Arc::new(Shared {
        stats: stats.clone(),
        verify_ownership: args.verify_ownership,
        delay: args.delay,
        fail_rate: args.fail_rate,
        limit: args.max_message_mib.max(1) << 20,
    });
    let mut sink = Sink { grpc_addr: None, http_addr: None, admin_addr: None, stats, tasks: Vec::new() };
    for (addr, port, slot) in [
        (&args.grpc, Port::Otlp, &mut sink.grpc_addr),
        (&args.http, Port::Otlp, &mut sink.http_addr),
        (&args.admin, Port::Admin, &mut sink.admin_addr),
    ] {
        let Some(a) = enabled(addr) else { continue };
        let l = listen(a).await?;
        *slot = Some(l.local_addr()?);
        sink.tasks.push(tokio::spawn(accept_loop(l, shared.clone(), port)));
    }
    for a in &args.also_listen {
        let Some(a) = enabled(a) else { continue };
        let l = listen(a).await?;
        sink.tasks.push(tokio::spawn(accept_loop(l, shared.clone(), Port::Otlp)));
    }
    if !args.report_interval.is_zero() {
        let stats = sink.stats.clone();
        let every = args.report_interval;
        sink.tasks.push(tokio::spawn(async move {
            let mut last = Snapshot::default();
            loop {
                tokio::time::sleep(every).await;
                let now = stats.snapshot();
                for s in Signal::ALL {
                    let (a, b) = (now.signal(s), last.signal(s));
                    if a.items != b.items {
                        eprintln!(
                            "sink {s}: {:.0} items/s, {} items total, e2e latency p50 {} µs p99 {} µs",
                            a.items.saturating_sub(b.items) as f64 / every.as_secs_f64(),
                            a.items,
                            a.latency_p50_us,
                            a.latency_p99_us
                        );
                    }
                }
                let (a, b) = (&now.remote_write, &last.remote_write);
                if a.samples != b.samples {
                    eprintln!(
                        "sink remote write: {:.0} samples/s, {} samples total, e2e latency p50 {} µs p99 {} µs",
                        a.samples.saturating_sub(b.samples) as f64 / every.as_secs_f64(),
                        a.samples,
                        a.latency_p50_us,
                        a.latency_p99_us
                    );
                }
                last = now;
            }
        }));
    }
    Ok(sink)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, port: Port) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(1024)
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(1 << 20);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let shared = shared.clone();
            async move {
                Ok::<_, Infallible>(match port {
                    Port::Admin => admin(&shared, req),
                    Port::Otlp => otlp(&shared, req).await,
                })
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// A response body: at most one data frame, then optional trailers.
pub struct RespBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl RespBody {
    fn empty() -> Self {
        RespBody { data: None, trailers: None }
    }

    fn data(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        RespBody { data: (!b.is_empty()).then_some(b), trailers: None }
    }
}

impl http_body::Body for RespBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

fn admin(shared: &Shared, req: Request<Incoming>) -> Response<RespBody> {
    let (status, ctype, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/stats") => {
            let json = serde_json::to_vec_pretty(&shared.stats.snapshot()).unwrap_or_default();
            (StatusCode::OK, "application/json", json)
        }
        (&Method::POST, "/reset") => {
            shared.stats.reset();
            (StatusCode::OK, "text/plain", b"reset\n".to_vec())
        }
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
        _ => (StatusCode::NOT_FOUND, "text/plain", b"GET /stats, POST /reset, GET /healthz\n".to_vec()),
    };
    let mut r = Response::new(RespBody::data(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// Why a request was not counted.
struct Refusal {
    grpc: u32,
    http: StatusCode,
    message: &'static str,
}

const INVALID: Refusal = Refusal { grpc: 3, http: StatusCode::BAD_REQUEST, message: "invalid OTLP protobuf" };
const FAILED: Refusal =
    Refusal { grpc: 14, http: StatusCode::SERVICE_UNAVAILABLE, message: "failure injected by sink --fail-rate" };

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Zstd,
    Deflate,
}

fn encoding(h: Option<&HeaderValue>) -> Option<Encoding> {
    match h.map(|v| v.as_bytes()) {
        None | Some(b"identity") | Some(b"") => Some(Encoding::Identity),
        Some(b"gzip") | Some(b"x-gzip") => Some(Encoding::Gzip),
        Some(b"zstd") => Some(Encoding::Zstd),
        Some(b"deflate") => Some(Encoding::Deflate),
        _ => None,
    }
}

async fn otlp(shared: &Shared, req: Request<Incoming>) -> Response<RespBody> {
    if req.uri().path() == REMOTE_WRITE_PATH {
        return remote_write(shared, req).await;
    }
    let grpc = req.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let path = req.uri().path();
    let signal = Signal::ALL.into_iter().find(|s| if grpc { s.grpc_path() == path } else { s.http_path() == path });
    let Some(signal) = signal else {
        return if grpc {
            grpc_error(12, "unknown method")
        } else {
            http_error(StatusCode::NOT_FOUND, 5, "not found: POST /v1/traces, /v1/metrics, /v1/logs or /api/v1/write")
        };
    };
    if !grpc {
        let ct = req.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or(b"");
        if !(ct.starts_with(b"application/x-protobuf") || ct.starts_with(b"application/protobuf")) {
            shared.stats.of(signal).invalid.fetch_add(1, Ordering::Relaxed);
            return http_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, 3, "the sink accepts application/x-protobuf only");
        }
    }
    let enc_header =
        if grpc { req.headers().get("grpc-encoding") } else { req.headers().get(header::CONTENT_ENCODING) };
    let Some(enc) = encoding(enc_header) else {
        shared.stats.of(signal).invalid.fetch_add(1, Ordering::Relaxed);
        return if grpc {
            grpc_error(12, "unsupported grpc-encoding")
        } else {
            http_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, 3, "unsupported content-encoding")
        };
    };
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let body = match read_body(req.into_body(), shared.limit + 5, declared, grpc).await {
        Ok(b) => b,
        Err(()) => {
            shared.stats.of(signal).invalid.fetch_add(1, Ordering::Relaxed);
            return if grpc {
                grpc_error(8, "request too large or unreadable")
            } else {
                http_error(StatusCode::PAYLOAD_TOO_LARGE, 8, "request too large or unreadable")
            };
        }
    };
    let result = if grpc {
        if body.len() < 5 || body.len() != 5 + u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize {
            Err(INVALID)
        } else {
            let enc = if body[0] == 1 { enc } else { Encoding::Identity };
            shared.ingest(signal, enc, &body[5..], body.len())
        }
    } else {
        shared.ingest(signal, enc, &body, body.len())
    };
    drop(body);
    if !shared.delay.is_zero() {
        tokio::time::sleep(shared.delay).await;
    }
    match (result, grpc) {
        (Ok(()), true) => {
            let mut trailers = HeaderMap::with_capacity(1);
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let mut r = Response::new(RespBody { data: Some(Bytes::from_static(&[0; 5])), trailers: Some(trailers) });
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            r
        }
        (Ok(()), false) => {
            let mut r = Response::new(RespBody::empty());
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
            r
        }
        (Err(e), true) => grpc_error(e.grpc, e.message),
        (Err(e), false) => http_error(e.http, e.grpc, e.message),
    }
}

/// Reads a whole body, without copying when it arrives in one frame.
async fn read_body(mut body: Incoming, limit: usize, declared: Option<usize>, grpc: bool) -> Result<Bytes, ()> {
    if declared.is_some_and(|n| n > limit) {
        return Err(());
    }
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| ())?.into_data() else { continue };
        len += data.len();
        if len > limit {
            return Err(());
        }
        if let Some(b) = &mut buf {
            b.extend_from_slice(&data);
        } else if let Some(f) = first.take() {
            // The size is known from Content-Length or from the gRPC frame header.
            let hint = declared
                .or_else(|| (grpc && f.len() >= 5).then(|| 5 + u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize));
            let mut b = BytesMut::with_capacity(hint.unwrap_or(0).clamp(len, limit));
            b.extend_from_slice(&f);
            b.extend_from_slice(&data);
            buf = Some(b);
        } else {
            first = Some(data);
        }
    }
    Ok(match (buf, first) {
        (Some(b), _) => b.freeze(),
        (None, Some(f)) => f,
        (None, None) => Bytes::new(),
    })
}

impl Shared {
    /// Validates, counts and stamps one request (synchronous: nothing here waits).
    fn ingest(&self, signal: Signal, enc: Encoding, data: &[u8], wire_len: usize) -> Result<(), Refusal> {
        if enc == Encoding::Identity {
            return self.count(signal, data, wire_len);
        }
        SCRATCH.with(|scratch| {
            let mut out = scratch.borrow_mut();
            out.clear();
            let limit = self.limit as u64 + 1;
            let r = match enc {
                Encoding::Gzip => flate2::read::MultiGzDecoder::new(data).take(limit).read_to_end(&mut out),
                Encoding::Deflate => flate2::read::ZlibDecoder::new(data).take(limit).read_to_end(&mut out),
                Encoding::Zstd => match zstd::stream::read::Decoder::with_buffer(data) {
                    Ok(d) => d.take(limit).read_to_end(&mut out),
                    Err(e) => Err(e),
                },
                Encoding::Identity => unreachable!("handled above"),
            };
            if r.is_err() || out.len() > self.limit {
                self.stats.of(signal).invalid.fetch_add(1, Ordering::Relaxed);
                return Err(INVALID);
            }
            let result = self.count(signal, &out, wire_len);
            if out.capacity() > 64 << 20 {
                *out = Vec::new();
            }
            result
        })
    }

    fn count(&self, signal: Signal, data: &[u8], wire_len: usize) -> Result<(), Refusal> {
        let c = self.stats.of(signal);
        let Ok(summary) = wire::inspect(signal, data) else {
            c.invalid.fetch_add(1, Ordering::Relaxed);
            return Err(INVALID);
        };
        if pick(&c.fail_seq, self.fail_rate) {
            c.failed_injected.fetch_add(1, Ordering::Relaxed);
            return Err(FAILED);
        }
        let now = unix_nanos();
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.items.fetch_add(summary.items, Ordering::Relaxed);
        c.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        c.wire_bytes.fetch_add(wire_len as u64, Ordering::Relaxed);
        match read_stamp(signal, data) {
            // Plausible stamps only: a stamp older than 10 minutes is a generation-time
            // timestamp of an item that was not first in its original request.
            Some(stamp) if stamp <= now + 1_000_000_000 && now.saturating_sub(stamp) <= 600_000_000_000 => {
                c.latency.record(now.saturating_sub(stamp));
            }
            _ => {
                c.unstamped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if pick(&c.sample_seq, self.verify_ownership) {
            let (ok, missing, unowned) = check_ownership(signal, data);
            c.ownership_checked.fetch_add(1, Ordering::Relaxed);
            c.ownership_ok.fetch_add(ok, Ordering::Relaxed);
            c.ownership_missing.fetch_add(missing, Ordering::Relaxed);
            c.ownership_unowned.fetch_add(unowned, Ordering::Relaxed);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus remote write.

/// The remote-write path (Prometheus' own).
pub const REMOTE_WRITE_PATH: &str = "/api/v1/write";

/// A plain-text response.
fn text(status: StatusCode, message: &'static str) -> Response<RespBody> {
    let mut r = Response::new(RespBody::data(Bytes::from_static(message.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// `POST /api/v1/write`: remote write 1.0 (snappy block format, `WriteRequest` protobuf),
/// counted and answered `204 No Content`.
async fn remote_write(shared: &Shared, req: Request<Incoming>) -> Response<RespBody> {
    let c = &shared.stats.remote_write;
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n");
    }
    let h = req.headers();
    let snappy = h.get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"snappy"));
    let proto = h.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/x-protobuf"));
    if !snappy || !proto {
        c.invalid.fetch_add(1, Ordering::Relaxed);
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "remote write needs Content-Encoding: snappy and Content-Type: application/x-protobuf\n",
        );
    }
    let declared = h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let Ok(body) = read_body(req.into_body(), shared.limit, declared, false).await else {
        c.invalid.fetch_add(1, Ordering::Relaxed);
        return text(StatusCode::PAYLOAD_TOO_LARGE, "request too large or unreadable\n");
    };
    let result = shared.ingest_remote_write(&body);
    drop(body);
    if !shared.delay.is_zero() {
        tokio::time::sleep(shared.delay).await;
    }
    match result {
        Ok(()) => {
            let mut r = Response::new(RespBody::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Err(e) => text(e.http, e.message),
    }
}

impl Shared {
    /// Decompresses (into the thread's scratch buffer), walks and counts one `WriteRequest`.
    fn ingest_remote_write(&self, data: &[u8]) -> Result<(), Refusal> {
        let c = &self.stats.remote_write;
        let invalid = || {
            c.invalid.fetch_add(1, Ordering::Relaxed);
            INVALID
        };
        let len = snap::raw::decompress_len(data).map_err(|_| invalid())?;
        if len > self.limit {
            return Err(invalid());
        }
        SCRATCH.with(|scratch| {
            let mut out = scratch.borrow_mut();
            // Grown, never shrunk below what a request needs: no zeroing per request.
            if out.len() < len {
                out.resize(len, 0);
            }
            let n = snap::raw::Decoder::new().decompress(data, &mut out[..len]).map_err(|_| invalid())?;
            let check = pick(&c.sample_seq, self.verify_ownership);
            let w = walk_write_request(&out[..n], check).map_err(|_| invalid())?;
            if pick(&c.fail_seq, self.fail_rate) {
                c.failed_injected.fetch_add(1, Ordering::Relaxed);
                return Err(FAILED);
            }
            let now = unix_nanos();
            c.requests.fetch_add(1, Ordering::Relaxed);
            c.series.fetch_add(w.series, Ordering::Relaxed);
            c.samples.fetch_add(w.samples, Ordering::Relaxed);
            c.histograms.fetch_add(w.histograms, Ordering::Relaxed);
            c.bytes.fetch_add(n as u64, Ordering::Relaxed);
            c.wire_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            let stamp = u64::try_from(w.max_ts_ms).ok().and_then(|ms| ms.checked_mul(1_000_000));
            match stamp {
                Some(stamp) if stamp <= now + 1_000_000_000 && now.saturating_sub(stamp) <= 600_000_000_000 => {
                    c.latency.record(now.saturating_sub(stamp));
                }
                _ => {
                    c.unstamped.fetch_add(1, Ordering::Relaxed);
                }
            }
            if check {
                c.ownership_checked_requests.fetch_add(1, Ordering::Relaxed);
                c.ownership_ok.fetch_add(w.owned, Ordering::Relaxed);
                c.ownership_missing.fetch_add(w.series - w.owned, Ordering::Relaxed);
            }
            if out.capacity() > 64 << 20 {
                *out = Vec::new();
            }
            Ok(())
        })
    }
}

/// What one `WriteRequest` holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    pub series: u64,
    pub samples: u64,
    pub histograms: u64,
    /// The newest timestamp (ms) of its float samples (`i64::MIN` without any).
    pub max_ts_ms: i64,
    /// Series with a non-empty `owner_team` label (counted only when asked to check).
    pub owned: u64,
}

/// Walks a remote-write 1.0 `WriteRequest` (prompb): `WriteRequest.timeseries` = 1;
/// `TimeSeries.labels` = 1, `samples` = 2, `exemplars` = 3, `histograms` = 4;
/// `Label.name` = 1, `value` = 2; `Sample.value` = 1 (double), `timestamp` = 2 (int64 ms).
/// Counts series, samples and native histograms; reads every sample's timestamp; with
/// `check_owner`, looks for an `owner_team` label on every series. Nothing is allocated.
pub fn walk_write_request(buf: &[u8], check_owner: bool) -> Result<WriteSummary, wire::WireError> {
    let mut w = WriteSummary { max_ts_ms: i64::MIN, ..WriteSummary::default() };
    for f in wire::Fields::new(buf) {
        let f = f?;
        if f.number != 1 {
            continue; // metadata (3)
        }
        w.series += 1;
        let mut owned = false;
        for g in wire::Fields::new(wire::expect_len(&f)?) {
            let g = g?;
            match g.number {
                1 if check_owner && !owned => {
                    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
                    for l in wire::Fields::new(wire::expect_len(&g)?) {
                        match l? {
                            wire::Field { number: 1, value: wire::Value::Len(b), .. } => name = b,
                            wire::Field { number: 2, value: wire::Value::Len(b), .. } => value = b,
                            _ => {}
                        }
                    }
                    owned = name == b"owner_team" && !value.is_empty();
                }
                2 => {
                    w.samples += 1;
                    for s in wire::Fields::new(wire::expect_len(&g)?) {
                        if let wire::Field { number: 2, value: wire::Value::Varint(ts), .. } = s? {
                            w.max_ts_ms = w.max_ts_ms.max(ts as i64);
                        }
                    }
                }
                4 => w.histograms += 1,
                _ => {}
            }
        }
        w.owned += u64::from(owned);
    }
    Ok(w)
}

/// Decodes a request and counts its resources with a string `owner.team` (ok), without one
/// (missing), and with `owner.team = unowned`.
pub fn check_ownership(signal: Signal, data: &[u8]) -> (u64, u64, u64) {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    let resources: Vec<Option<Resource>> = match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(data)
            .map(|r| r.resource_spans.into_iter().map(|x| x.resource).collect())
            .unwrap_or_default(),
        Signal::Metrics => ExportMetricsServiceRequest::decode(data)
            .map(|r| r.resource_metrics.into_iter().map(|x| x.resource).collect())
            .unwrap_or_default(),
        Signal::Logs => ExportLogsServiceRequest::decode(data)
            .map(|r| r.resource_logs.into_iter().map(|x| x.resource).collect())
            .unwrap_or_default(),
    };
    let (mut ok, mut missing, mut unowned) = (0, 0, 0);
    for r in &resources {
        let team = r.as_ref().and_then(|r| {
            r.attributes.iter().find(|kv| kv.key == "owner.team").and_then(|kv| {
                match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
                    _ => None,
                }
            })
        });
        match team {
            Some(t) => {
                ok += 1;
                if t == "unowned" {
                    unowned += 1;
                }
            }
            None => missing += 1,
        }
    }
    (ok, missing, unowned)
}

/// A "Trailers-Only" gRPC error response.
fn grpc_error(code: u32, message: &'static str) -> Response<RespBody> {
    let mut r = Response::new(RespBody::empty());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    h.insert("grpc-message", HeaderValue::from_static(message));
    r
}

/// An OTLP/HTTP error: the status and a `google.rpc.Status` body.
fn http_error(status: StatusCode, code: u32, message: &str) -> Response<RespBody> {
    let mut body = Vec::with_capacity(message.len() + 8);
    put_tag(&mut body, 1, WireType::Varint);
    put_varint(&mut body, u64::from(code));
    put_len_field(&mut body, 2, message.as_bytes());
    let mut r = Response::new(RespBody::data(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_takes_an_exact_evenly_spread_fraction() {
        let seq = AtomicU64::new(0);
        let picked: Vec<bool> = (0..1000).map(|_| pick(&seq, 0.01)).collect();
        assert_eq!(picked.iter().filter(|&&p| p).count(), 10);
        assert!(picked[99] && !picked[98], "every 100th");
        assert!(!pick(&seq, 0.0));
        assert!(pick(&seq, 1.0));
    }

    /// One series: labels, samples (value, ms) and how many native histograms.
    type TestSeries<'a> = (&'a [(&'a str, &'a str)], &'a [(f64, i64)], usize);

    /// A `WriteRequest` encoded by hand (prompb field numbers).
    fn write_request(series: &[TestSeries<'_>]) -> Vec<u8> {
        let mut req = Vec::new();
        for (labels, samples, hists) in series {
            let mut ts = Vec::new();
            for (n, v) in *labels {
                let mut l = Vec::new();
                put_len_field(&mut l, 1, n.as_bytes());
                put_len_field(&mut l, 2, v.as_bytes());
                put_len_field(&mut ts, 1, &l);
            }
            for (v, t) in *samples {
                let mut s = Vec::new();
                put_tag(&mut s, 1, WireType::I64);
                s.extend_from_slice(&v.to_le_bytes());
                put_tag(&mut s, 2, WireType::Varint);
                put_varint(&mut s, *t as u64);
                put_len_field(&mut ts, 2, &s);
            }
            for _ in 0..*hists {
                let mut h = Vec::new();
                put_tag(&mut h, 15, WireType::Varint);
                put_varint(&mut h, 7);
                put_len_field(&mut ts, 4, &h);
            }
            put_len_field(&mut req, 1, &ts);
        }
        req
    }

    #[test]
    fn walks_a_write_request() {
        let req = write_request(&[
            (&[("__name__", "up"), ("owner_team", "payments")], &[(1.0, 1000), (2.0, 3000)], 0),
            (&[("__name__", "x"), ("owner_team", "")], &[(1.0, 2000)], 2),
            (&[("__name__", "y")], &[], 1),
        ]);
        let w = walk_write_request(&req, true).unwrap_or_default();
        assert_eq!(w, WriteSummary { series: 3, samples: 3, histograms: 3, max_ts_ms: 3000, owned: 1 });
        let w = walk_write_request(&req, false).unwrap_or_default();
        assert_eq!((w.series, w.owned), (3, 0));
        assert!(walk_write_request(&req[..req.len() - 1], false).is_err());
    }
}
