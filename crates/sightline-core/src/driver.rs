//! The one exporter driver every exporter runs on: a bounded queue, a batcher that merges
//! payloads by concatenating their encodings, `num_consumers` concurrent sends, retry with
//! exponential backoff that honours the server's `Retry-After` / `RetryInfo`, and the
//! collector-compatible exporter metrics. A backend-specific exporter only implements
//! [`Sender`] (encode + send one batch, classify the outcome).
//!
//! Isolation: each exporter has its own queue. When it is full the payload is dropped and
//! counted (`otelcol_exporter_enqueue_failed_*`), or, with `on_full: block` (or
//! `block_on_overflow: true`), the receiving task waits for room (back-pressure to that
//! pipeline's clients only).
//!
//! Durability: with `storage: disk` the queue is a directory of segment files
//! ([`sightline_diskqueue`], driven from two threads per queue by [`crate::diskq`]); a
//! payload is removed only after the backend acknowledged it (or it was given up), and the
//! backlog of a previous run is sent first. With `durability: ack_after_persist` (the default
//! for disk) [`ExporterHandle::enqueue`] returns only once the payload is written and synced
//! per `fsync`, so the receiver acknowledges the client after that.

use crate::diskq::{self, DiskFront, DiskMetrics};
use crate::{Batch, Counter, Gauge, MemoryBudget, Payload, Registry, Signal};
use serde::Deserialize;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How a send ended when it did not succeed.
#[derive(Clone, Debug, PartialEq)]
pub struct SendError {
    /// Retryable per the OTLP specification (e.g. gRPC `UNAVAILABLE`, HTTP 429/502/503/504).
    pub retryable: bool,
    /// The server's requested delay (`Retry-After`, gRPC `RetryInfo`).
    pub retry_after: Option<Duration>,
    /// What the backend said, for the log.
    pub message: String,
    /// The part of the batch still to send, when the sender delivered the rest (the
    /// `loadbalancing` exporter, whose backends answer separately): a retry sends only this.
    pub remaining: Option<Remaining>,
}

/// What is left of a batch after a partial delivery (see [`SendError::remaining`]).
#[derive(Clone)]
pub struct Remaining(pub Arc<Batch>);

impl PartialEq for Remaining {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Remaining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remaining({} items)", self.0.items)
    }
}

impl SendError {
    pub fn retryable(message: impl Into<String>) -> Self {
        SendError { retryable: true, retry_after: None, message: message.into(), remaining: None }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError { retryable: false, retry_after: None, message: message.into(), remaining: None }
    }
    pub fn with_retry_after(mut self, d: Option<Duration>) -> Self {
        self.retry_after = d;
        self
    }
    pub fn with_remaining(mut self, rest: Batch) -> Self {
        self.remaining = Some(Remaining(Arc::new(rest)));
        self
    }
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// The backend-specific part of an exporter: encode one batch and send it.
pub trait Sender: Send + Sync + 'static {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a>;
}

fn default_true() -> bool {
    true
}

/// `sending_queue.storage`: where queued payloads wait.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// In memory (lost on restart), bounded by `queue_size` payloads. The default.
    #[default]
    Memory,
    /// Segment files under `directory`, bounded by `max_size_bytes`; survives restarts and
    /// crashes.
    Disk,
}

/// `sending_queue.fsync`: when a disk queue forces appended payloads to stable storage.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// One `fdatasync` per payload.
    Always,
    /// Group commit (default): payloads that arrive while a write is in progress are written
    /// together and share one `fdatasync`.
    #[default]
    Batch,
    /// Never: the OS writes back when it likes (survives a crash of Sightline, not of the
    /// machine).
    Never,
}

/// `sending_queue.on_full`: what a full queue does with a new payload.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Wait for room (back-pressure to the pipeline's clients).
    Block,
    /// Make room by dropping the oldest data not yet sent (disk queues only); counted in
    /// `sightline_exporter_evicted_*_total`.
    DropOldest,
    /// Refuse the new payload; counted in `otelcol_exporter_enqueue_failed_*`.
    DropNewest,
}

/// `sending_queue.durability`: when the client's request is acknowledged.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Only after the payload is written to this disk queue (and synced per `fsync`); a
    /// payload that cannot be persisted makes the request fail with a retryable error. The
    /// default for disk queues.
    AckAfterPersist,
    /// As soon as the payload is handed to the queue's writer (faster; a crash can lose what
    /// was acknowledged but not yet written).
    AckAfterEnqueue,
}

/// Takes queue slots (`slots`: the queue's sender, `None` for a disk queue) until `held` has
/// `n`; false when that fills the queue (a batch as large as the queue allows goes at once)
/// or the queue is closed.
fn hold_slots(slots: Option<&mpsc::WeakSender<Queued>>, held: &mut Vec<mpsc::OwnedPermit<Queued>>, n: usize) -> bool {
    let Some(tx) = slots.and_then(|w| w.upgrade()) else { return slots.is_none() };
    while held.len() < n {
        match tx.clone().try_reserve_owned() {
            Ok(permit) => held.push(permit),
            Err(_) => return false,
        }
    }
    tx.capacity() > 0
}

/// `sending_queue`, as in the collector's exporterhelper.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Queue payloads and send them from background consumers (default true). When false, the
    /// queue still exists (one slot per consumer) so that a slow backend never blocks others.
    pub enabled: bool,
    /// Capacity in requests (payloads) of a memory queue (default 1000).
    pub queue_size: usize,
    /// Concurrent sends (default 10).
    pub num_consumers: usize,
    /// When the queue is full: wait for room (true) or drop and count (false, default).
    /// `on_full`, when set, takes precedence.
    pub block_on_overflow: bool,
    /// `block`, `drop_oldest` (disk only) or `drop_newest` (default: `block` when
    /// `block_on_overflow` is true, else `drop_newest`).
    pub on_full: Option<OnFull>,
    /// `memory` (default) or `disk`.
    pub storage: Storage,
    /// Disk queues: the base directory; each (exporter, signal) gets its own subdirectory
    /// `<directory>/<exporter id>/<signal>`. Required with `storage: disk`.
    pub directory: Option<PathBuf>,
    /// Disk queues: upper bound of the segment files, in bytes (default 1073741824 = 1 GiB).
    pub max_size_bytes: u64,
    /// Disk queues: `always`, `batch` (default) or `never`.
    pub fsync: FsyncPolicy,
    /// Disk queues: `ack_after_persist` (default) or `ack_after_enqueue`.
    pub durability: Option<Durability>,
    /// Batching in front of the consumers.
    pub batch: BatchConfig,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            queue_size: 1000,
            num_consumers: 10,
            block_on_overflow: false,
            on_full: None,
            storage: Storage::Memory,
            directory: None,
            max_size_bytes: 1 << 30,
            fsync: FsyncPolicy::Batch,
            durability: None,
            batch: BatchConfig::default(),
        }
    }
}

/// The smallest `max_size_bytes` of a disk queue.
pub const MIN_DISK_QUEUE_BYTES: u64 = 1 << 20;

impl QueueConfig {
    /// The overflow policy in force.
    pub fn overflow(&self) -> OnFull {
        self.on_full.unwrap_or(if self.block_on_overflow { OnFull::Block } else { OnFull::DropNewest })
    }

    /// Whether the client's acknowledgement waits for this queue's disk write.
    pub fn ack_after_persist(&self) -> bool {
        self.storage == Storage::Disk
            && self.durability.unwrap_or(Durability::AckAfterPersist) == Durability::AckAfterPersist
    }

    /// Checks the storage options; keys are relative to the exporter (`sending_queue.*`).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match self.storage {
            Storage::Disk => {
                if self.directory.as_ref().is_none_or(|d| d.as_os_str().is_empty()) {
                    out.push(("sending_queue.directory".into(), "required with storage: disk".into()));
                }
                if self.max_size_bytes < MIN_DISK_QUEUE_BYTES {
                    out.push((
                        "sending_queue.max_size_bytes".into(),
                        format!("must be at least {MIN_DISK_QUEUE_BYTES} (1 MiB)"),
                    ));
                }
                if !self.enabled {
                    out.push(("sending_queue.enabled".into(), "storage: disk needs the queue enabled".into()));
                }
            }
            Storage::Memory => {
                if self.on_full == Some(OnFull::DropOldest) {
                    out.push(("sending_queue.on_full".into(), "drop_oldest needs storage: disk".into()));
                }
                if self.durability.is_some() {
                    out.push(("sending_queue.durability".into(), "only applies to storage: disk".into()));
                }
                if self.directory.is_some() {
                    out.push(("sending_queue.directory".into(), "only applies to storage: disk".into()));
                }
            }
        }
        out
    }
}

/// `coalesce_size` of the exporter whose requests cost mostly per request, not per byte: OTLP
/// gRPC sent uncompressed (ADR 32).
pub const COALESCE_UNCOMPRESSED: u64 = 8192;

/// `sending_queue.batch`. When a consumer is free it takes every payload already queued (up
/// to `max_size` items / `max_bytes`) into one batch; it waits for more, at most
/// `flush_timeout`, only while the batch is below `min_size` items, or below `coalesce_size`
/// while another send is in flight. With `min_size: 0` and no send in flight nothing waits:
/// batches are as large as the backlog, so latency stays low when the backend keeps up and
/// batches grow when it does not.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Batch at all (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Wait (up to `flush_timeout`) until a batch holds this many items (default 0: never
    /// wait). The collector's batch processor behaves like `min_size: 8192, flush_timeout:
    /// 200ms`.
    pub min_size: u64,
    /// Never merge past this many items; 0 = no limit (default 0). A single request larger
    /// than this is sent on its own (requests are not split).
    pub max_size: u64,
    /// Never merge past this many bytes (default 4194304 = 4 MiB, the usual gRPC receive
    /// limit of backends). Sightline extension.
    pub max_bytes: usize,
    /// How long a batch below `min_size` (or `coalesce_size`) waits for more (default 200ms).
    #[serde(with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// While another send of this exporter is in flight, a batch below this many items (and
    /// below half of `max_bytes`) waits for more payloads until a send finishes, at most
    /// `flush_timeout` (0 = never wait for a send). With nothing in flight a batch goes at
    /// once, so an idle backend adds no latency; under load the payloads that arrive during a
    /// send go out together. Default: the exporter's ([`COALESCE_UNCOMPRESSED`] for `otlp`
    /// with `compression: none`, else 0). Sightline extension (ADR 32).
    pub coalesce_size: Option<u64>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            enabled: true,
            min_size: 0,
            max_size: 0,
            max_bytes: 4 << 20,
            flush_timeout: Duration::from_millis(200),
            coalesce_size: None,
        }
    }
}

/// `retry_on_failure`, as in the collector.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retry retryable failures (default true).
    pub enabled: bool,
    /// First delay (default 5s).
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Jitter: each delay is multiplied by a random factor in [1-f, 1+f] (default 0.5).
    pub randomization_factor: f64,
    /// Growth of the delay per attempt (default 1.5).
    pub multiplier: f64,
    /// Upper bound of one delay (default 30s).
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Give up (and count the loss) after this long; 0 = never (default 300s).
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

/// Everything the driver needs besides the sender.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    pub queue: QueueConfig,
    pub retry: RetryConfig,
    /// Timeout of one send attempt.
    pub timeout: Duration,
}

struct Metrics {
    sent: Counter,
    send_failed: Counter,
    enqueue_failed: Counter,
    queue_size: Gauge,
    /// Items accepted into the queue and not yet sent or given up.
    pending: Gauge,
}

/// A payload in the driver's channel; `seq` is its record in the disk queue, if any.
pub(crate) struct Queued {
    pub payload: Payload,
    pub seq: Option<u64>,
}

/// The front of an exporter's queue, held by the pipelines that feed it.
#[derive(Clone)]
pub struct ExporterHandle {
    id: Arc<str>,
    tx: mpsc::Sender<Queued>,
    block: bool,
    metrics: Arc<Metrics>,
    disk: Option<Arc<DiskFront>>,
}

/// What happened to a payload handed to an exporter.
#[derive(Debug, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    /// The queue was full (or the exporter is shut down) and the payload was dropped; counted.
    Dropped,
}

impl ExporterHandle {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the client's acknowledgement must wait for this exporter's queue
    /// (`durability: ack_after_persist` on a disk queue): a payload it drops must fail the
    /// request with a retryable error.
    pub fn is_durable(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| d.durable)
    }

    /// Whether the queue is on disk: a payload it accepted is its responsibility from then on
    /// (written and synced first with `ack_after_persist`).
    pub fn is_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// Hands a payload to the exporter's queue, following its overflow setting. For a disk
    /// queue with `ack_after_persist`, returns once the payload is persisted.
    pub async fn enqueue(&self, p: Payload) -> Enqueued {
        if let Some(d) = &self.disk {
            return if d.enqueue(p).await { Enqueued::Queued } else { Enqueued::Dropped };
        }
        let items = p.items();
        let q = Queued { payload: p, seq: None };
        let res = if self.block { self.tx.send(q).await.map_err(|_| ()) } else { self.tx.try_send(q).map_err(|_| ()) };
        match res {
            Ok(()) => {
                self.metrics.queue_size.add(1);
                self.metrics.pending.add(items as i64);
                Enqueued::Queued
            }
            Err(()) => {
                self.metrics.enqueue_failed.add(items);
                Enqueued::Dropped
            }
        }
    }
}

/// A running exporter: its queue handle and the task that drains it.
pub struct Driver {
    pub handle: ExporterHandle,
    pub task: JoinHandle<()>,
    /// Set to true to make pending retries give up (used when the shutdown deadline passes).
    pub abort: watch::Sender<bool>,
    /// Closes the queue: nothing more is accepted (enqueues are dropped and counted), what is
    /// queued is sent at once without waiting for batch timers, then the task ends.
    pub close: Arc<tokio::sync::Notify>,
    /// Items queued or in flight, for the shutdown report.
    pub pending_items: Gauge,
}

/// Starts an exporter driver with a memory queue. The task ends when every
/// [`ExporterHandle`] clone is dropped and the queue is drained (or `abort` is set).
///
/// `send_budget`, when given, bounds the memory of batches being sent: a sender makes its own
/// copy of a batch (the encoded request, compressed or not, in its transport's buffers), so
/// each send holds the batch's size against this budget while it runs, and waits for room.
///
/// A config with `storage: disk` needs [`start`] (opening the queue can fail); here it gets a
/// queue that refuses every payload (counted), and an error is logged.
pub fn spawn(id: &str, signal: Signal, cfg: DriverConfig, sender: Arc<dyn Sender>, registry: &Registry) -> Driver {
    spawn_with_budget(id, signal, cfg, sender, registry, None)
}

/// [`spawn`] with a budget for the senders' copies.
pub fn spawn_with_budget(
    id: &str,
    signal: Signal,
    cfg: DriverConfig,
    sender: Arc<dyn Sender>,
    registry: &Registry,
    send_budget: Option<MemoryBudget>,
) -> Driver {
    if cfg.queue.storage == Storage::Disk {
        tracing::error!(exporter = %id, "storage: disk needs driver::start; this exporter refuses all data");
        let d = spawn_inner(id, signal, cfg, sender, registry, send_budget, None);
        d.close.notify_one();
        return d;
    }
    spawn_inner(id, signal, cfg, sender, registry, send_budget, None)
}

/// Why a driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("sending_queue.directory: {path}: {source}")]
    Disk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Starts an exporter driver with the queue its config asks for. A disk queue is opened (and
/// its backlog recovered) on the blocking pool; its backlog is sent before anything new.
pub async fn start(
    id: &str,
    signal: Signal,
    cfg: DriverConfig,
    sender: Arc<dyn Sender>,
    registry: &Registry,
    send_budget: Option<MemoryBudget>,
) -> Result<Driver, StartError> {
    if cfg.queue.storage != Storage::Disk {
        return Ok(spawn_inner(id, signal, cfg, sender, registry, send_budget, None));
    }
    let base = cfg.queue.directory.clone().unwrap_or_default();
    let dir = diskq::queue_dir(&base, id, signal);
    let opts = diskq::options(cfg.queue.max_size_bytes, cfg.queue.fsync);
    let d2 = dir.clone();
    let opened = tokio::task::spawn_blocking(move || sightline_diskqueue::open(&d2, opts))
        .await
        .map_err(|e| StartError::Disk { path: dir.clone(), source: std::io::Error::other(e.to_string()) })?
        .map_err(|source| StartError::Disk { path: dir.clone(), source })?;
    let (queue, writer, reader, rec) = opened;
    tracing::info!(
        exporter = %id, %signal, directory = %dir.display(), backlog_records = rec.records,
        backlog_items = rec.items, bytes = rec.bytes, corrupt_records = rec.corrupt_records,
        "disk queue opened"
    );
    if rec.corrupt_records > 0 {
        tracing::warn!(exporter = %id, %signal, records = rec.corrupt_records, truncated_bytes = rec.truncated_bytes,
            "disk queue: torn or corrupt records were cut at recovery");
    }
    Ok(spawn_inner(id, signal, cfg, sender, registry, send_budget, Some(DiskParts { queue, writer, reader, rec })))
}

struct DiskParts {
    queue: Arc<sightline_diskqueue::Queue>,
    writer: sightline_diskqueue::Writer,
    reader: sightline_diskqueue::Reader,
    rec: sightline_diskqueue::Recovery,
}

/// What the run loop needs of a disk queue.
struct DiskBack {
    queue: Arc<sightline_diskqueue::Queue>,
    tx: std::sync::mpsc::Sender<diskq::Msg>,
    /// Resolve when the writer and reader threads have ended, and so dropped their hold on
    /// the queue (its directory lock): the driver's task ends only then, so a driver started
    /// on the same directory right after finds it free.
    threads_done: Vec<tokio::sync::oneshot::Receiver<()>>,
}

fn spawn_inner(
    id: &str,
    signal: Signal,
    cfg: DriverConfig,
    sender: Arc<dyn Sender>,
    registry: &Registry,
    send_budget: Option<MemoryBudget>,
    disk: Option<DiskParts>,
) -> Driver {
    let items = signal.item_name();
    let labels = [("exporter", id)];
    let pending = registry.gauge(
        "sightline_exporter_pending_items",
        "Items queued or being sent by an exporter.",
        &[("exporter", id), ("data_type", signal.as_str())],
    );
    let metrics = Arc::new(Metrics {
        pending: pending.clone(),
        sent: registry.counter(
            &format!("otelcol_exporter_sent_{items}"),
            &format!("Number of {items} successfully sent to destination."),
            &labels,
        ),
        send_failed: registry.counter(
            &format!("otelcol_exporter_send_failed_{items}"),
            &format!("Number of {items} in failed attempts to send to destination (given up)."),
            &labels,
        ),
        enqueue_failed: registry.counter(
            &format!("otelcol_exporter_enqueue_failed_{items}"),
            &format!("Number of {items} failed to be added to the sending queue."),
            &labels,
        ),
        queue_size: registry.gauge(
            "otelcol_exporter_queue_size",
            "Current size of the retry queue (in batches).",
            &[("exporter", id), ("data_type", signal.as_str())],
        ),
    });
    let capacity = if cfg.queue.enabled { cfg.queue.queue_size.max(1) } else { cfg.queue.num_consumers.max(1) };
    registry
        .gauge(
            "otelcol_exporter_queue_capacity",
            "Fixed capacity of the retry queue (in batches).",
            &[("exporter", id), ("data_type", signal.as_str())],
        )
        .set(capacity as i64);
    let (abort_tx, abort_rx) = watch::channel(false);
    let close = Arc::new(tokio::sync::Notify::new());
    let block = cfg.queue.overflow() == OnFull::Block;
    let (tx, rx, front, back) = match disk {
        None => {
            let (tx, rx) = mpsc::channel(capacity);
            (tx, rx, None, None)
        }
        Some(parts) => {
            // Disk: the channel only carries what the reader thread read ahead.
            let dm = Arc::new(DiskMetrics::new(
                registry,
                id,
                signal,
                metrics.queue_size.clone(),
                metrics.enqueue_failed.clone(),
            ));
            registry
                .gauge(
                    "sightline_disk_queue_capacity_bytes",
                    "Upper bound of a disk queue's segment files.",
                    &[("exporter", id), ("data_type", signal.as_str())],
                )
                .set(cfg.queue.max_size_bytes.min(i64::MAX as u64) as i64);
            registry
                .counter(
                    "sightline_disk_queue_recovered_records_total",
                    "Records found in a disk queue at start (the backlog of a previous run).",
                    &[("exporter", id), ("data_type", signal.as_str())],
                )
                .add(parts.rec.records);
            dm.corrupt.add(parts.rec.corrupt_records);
            dm.queue_size.set(parts.rec.records as i64);
            dm.size_bytes.set(parts.rec.bytes as i64);
            let (wtx, wrx) = std::sync::mpsc::channel();
            let space = Arc::new(tokio::sync::Notify::new());
            let front = Arc::new(DiskFront {
                queue: parts.queue.clone(),
                tx: wtx.clone(),
                space: space.clone(),
                on_full: cfg.queue.overflow(),
                durable: cfg.queue.ack_after_persist(),
                metrics: dm.clone(),
            });
            let name = format!("sl-dq-{}", signal.as_str());
            let (writer_done, writer_ended) = tokio::sync::oneshot::channel::<()>();
            {
                let dm = dm.clone();
                let writer = parts.writer;
                spawn_disk_thread(id, format!("{name}-w"), "writer", move || {
                    diskq::writer_loop(writer, wrx, space, dm, signal);
                    // After the loop has dropped the writer.
                    drop(writer_done);
                });
            }
            // Read-ahead: enough for the batcher to fill a batch while the previous one is sent.
            let read_ahead = (cfg.queue.batch.max_bytes.saturating_mul(2)).clamp(8 << 20, 256 << 20);
            let (tx, rx) = mpsc::channel(4096);
            let (reader_done, reader_ended) = tokio::sync::oneshot::channel::<()>();
            {
                let dm = dm.clone();
                let reader = parts.reader;
                let pending = pending.clone();
                let rt = tokio::runtime::Handle::current();
                let prefetch = MemoryBudget::new(read_ahead);
                let rtx = tx.clone();
                spawn_disk_thread(id, format!("{name}-r"), "reader", move || {
                    diskq::reader_loop(reader, rtx, prefetch, rt, dm, pending, signal);
                    drop(reader_done);
                });
            }
            let back = DiskBack { queue: parts.queue, tx: wtx, threads_done: vec![writer_ended, reader_ended] };
            (tx, rx, Some(front), Some(back))
        }
    };
    // A memory queue's slots, for a batch that waits for a send in flight to hold (the
    // channel of a disk queue only carries its read-ahead).
    let slots = back.is_none().then(|| tx.downgrade());
    let handle = ExporterHandle { id: Arc::from(id), tx, block, metrics: metrics.clone(), disk: front };
    let task = tokio::spawn(run(
        Arc::from(id),
        signal,
        cfg,
        sender,
        metrics,
        (rx, slots),
        abort_rx,
        close.clone(),
        send_budget,
        back,
    ));
    Driver { handle, task, abort: abort_tx, close, pending_items: pending }
}

/// Starts one of a disk queue's threads (`role`: writer or reader); if the OS refuses, that is
/// logged rather than a panic.
fn spawn_disk_thread(id: &str, name: String, role: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name).spawn(f) {
        tracing::error!(exporter = %id, error = %e, "cannot start the disk queue {role} thread");
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    id: Arc<str>,
    signal: Signal,
    cfg: DriverConfig,
    sender: Arc<dyn Sender>,
    metrics: Arc<Metrics>,
    (mut rx, slots): (mpsc::Receiver<Queued>, Option<mpsc::WeakSender<Queued>>),
    mut abort: watch::Receiver<bool>,
    close: Arc<tokio::sync::Notify>,
    send_budget: Option<MemoryBudget>,
    disk: Option<DiskBack>,
) {
    let consumers_n = cfg.queue.num_consumers.max(1);
    let consumers = Arc::new(Semaphore::new(consumers_n));
    // Signalled after each send gives its permit back: a batch held by `coalesce_size` goes
    // then.
    let sent = Arc::new(tokio::sync::Notify::new());
    let flush = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(flush);
    let batching = cfg.queue.batch.enabled && cfg.queue.enabled;
    let is_disk = disk.is_some();
    // Retries give up when the owner aborts, and, for a disk queue, as soon as it closes:
    // what is not sent stays on disk for the next start.
    let (give_up, give_up_rx) = watch::channel(false);
    let give_up = Arc::new(give_up);
    {
        let give_up = give_up.clone();
        tokio::spawn(async move {
            if abort.wait_for(|a| *a).await.is_ok() {
                let _ = give_up.send(true);
            }
        });
    }
    let on_close = |rx: &mut mpsc::Receiver<Queued>| {
        rx.close();
        if let Some(d) = &disk {
            d.queue.close();
            let _ = give_up.send(true);
        }
    };
    let mut carry: Option<Queued> = None;
    // Once closing, the channel is closed: `recv` returns what is buffered without waiting,
    // then `None`, and batch timers are not waited for.
    let mut closing = false;
    loop {
        // A free consumer first, then the batch: while every consumer is busy, payloads pile
        // up in the queue and the next free consumer takes them all in one batch. Batches
        // grow with the backlog and stay small (low latency) when the backend keeps up.
        // While every consumer is busy (e.g. retrying against a backend that is down), a close
        // must still be seen: a disk queue's retries give up at once on close.
        let permit = tokio::select! {
            biased;
            p = consumers.clone().acquire_owned() => p,
            _ = close.notified(), if !closing => {
                closing = true;
                on_close(&mut rx);
                continue;
            }
        };
        let Ok(permit) = permit else { break };
        // Wait for the first payload of the next batch.
        let first = match carry.take() {
            Some(p) => p,
            None => {
                let next = tokio::select! {
                    biased;
                    p = rx.recv() => p,
                    _ = close.notified(), if !closing => {
                        closing = true;
                        on_close(&mut rx);
                        drop(permit);
                        continue;
                    }
                };
                match next {
                    Some(p) => p,
                    None => break,
                }
            }
        };
        if !is_disk {
            metrics.queue_size.add(-1);
        }
        let mut batch = Batch::new(signal);
        let mut seqs: Vec<u64> = Vec::new();
        seqs.extend(first.seq);
        batch.push(first.payload);
        if batching {
            let b = &cfg.queue.batch;
            let coalesce_size = b.coalesce_size.unwrap_or(0);
            let deadline = Instant::now() + b.flush_timeout;
            // The flush timer is set once per batch that waits, on a timer kept across batches:
            // a timer registered anew while the runtime sleeps wakes it (an eventfd write),
            // one per held batch under load.
            let mut timer_set = false;
            // While a batch waits for a send in flight, each of its payloads keeps its slot
            // in the queue taken: `queue_size` bounds what is queued and held together, and a
            // full queue sends the batch.
            let mut held: Vec<mpsc::OwnedPermit<Queued>> = Vec::new();
            loop {
                if (b.max_size > 0 && batch.items >= b.max_size) || batch.bytes >= b.max_bytes {
                    break;
                }
                // Take what is already queued without waiting; wait (up to flush_timeout) only
                // while the batch is below min_size, or below coalesce_size with a send in
                // flight.
                let next = match rx.try_recv() {
                    Ok(p) => Some(p),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if closing {
                            break;
                        }
                        // Sends in flight besides the one this batch holds a permit for.
                        let in_flight = (consumers_n - 1).saturating_sub(consumers.available_permits());
                        let coalesce = in_flight > 0 && batch.items < coalesce_size && batch.bytes < b.max_bytes / 2;
                        if batch.items >= b.min_size && !coalesce {
                            break;
                        }
                        if coalesce && !hold_slots(slots.as_ref(), &mut held, batch.payloads.len()) {
                            break;
                        }
                        if !timer_set {
                            flush.as_mut().reset(deadline);
                            timer_set = true;
                        }
                        tokio::select! {
                            p = rx.recv() => p,
                            // A send finished: decide again (a stale wake-up only re-checks).
                            _ = sent.notified(), if coalesce => continue,
                            _ = flush.as_mut() => break,
                            _ = close.notified() => {
                                closing = true;
                                on_close(&mut rx);
                                continue;
                            }
                        }
                    }
                };
                let Some(q) = next else { break };
                if !is_disk {
                    metrics.queue_size.add(-1);
                }
                let p = &q.payload;
                if (b.max_size > 0 && batch.items + p.items() > b.max_size) || batch.bytes + p.len() > b.max_bytes {
                    carry = Some(q);
                    if !is_disk {
                        metrics.queue_size.add(1);
                    }
                    break;
                }
                seqs.extend(q.seq);
                batch.push(q.payload);
            }
        }
        let sender = sender.clone();
        let metrics = metrics.clone();
        let retry = cfg.retry.clone();
        let timeout = cfg.timeout;
        let give_up = give_up_rx.clone();
        let id = id.clone();
        let send_budget = send_budget.clone();
        let queue = disk.as_ref().map(|d| d.queue.clone());
        let sent = sent.clone();
        tokio::spawn(async move {
            let items = batch.items;
            let _copy = match &send_budget {
                // Transport buffers grow by doubling: hold twice the batch.
                Some(b) => Some(b.acquire(batch.bytes * 2).await),
                None => None,
            };
            let res = send_with_retry(&*sender, &batch, &retry, timeout, give_up.clone()).await;
            // A sender that delivered part of the batch names what is left.
            let failed = match &res {
                Err(e) => e.remaining.as_ref().map_or(items, |r| r.0.items),
                Ok(()) => 0,
            };
            // The receivers waiting for these payloads (memory queues only: a disk queue's
            // payloads are read back from disk and were reported when written).
            let waiting: Vec<Arc<crate::Completion>> =
                batch.payloads.iter().filter_map(|p| p.completion().cloned()).collect();
            // Release the batch's memory (read-ahead budget for a disk queue) before the
            // bookkeeping.
            drop(batch);
            for c in &waiting {
                c.finish(res.is_ok());
            }
            match res {
                Ok(()) => {
                    metrics.sent.add(items);
                    if let Some(q) = &queue {
                        for s in &seqs {
                            q.ack(*s);
                        }
                    }
                }
                Err(e) if queue.is_some() && *give_up.borrow() => {
                    // Shutting down: not acknowledged, so it is sent again after the restart.
                    tracing::debug!(exporter = %id, items, error = %e.message, "send interrupted; kept on disk");
                }
                Err(e) => {
                    metrics.sent.add(items.saturating_sub(failed));
                    metrics.send_failed.add(failed);
                    tracing::error!(exporter = %id, items = failed, error = %e.message, "dropping data: export failed");
                    if let Some(q) = &queue {
                        for s in &seqs {
                            q.ack(*s);
                        }
                    }
                }
            }
            metrics.pending.add(-(items as i64));
            // The queue before the permit: once every permit is back, the driver may end, and
            // nothing of it may hold the queue then.
            drop(queue);
            drop(permit);
            sent.notify_one();
        });
    }
    // Wait for in-flight sends.
    let _ = consumers.acquire_many(cfg.queue.num_consumers.max(1) as u32).await;
    if let Some(d) = disk {
        // Final housekeeping on the writer thread: delete what was acknowledged, write the
        // checkpoint.
        let (tx, rx) = tokio::sync::oneshot::channel();
        if d.tx.send(diskq::Msg::Finish(tx)).is_ok() {
            let _ = rx.await;
        }
        // The writer has closed the queue: the reader sees that within its 200 ms poll.
        for ended in d.threads_done {
            if tokio::time::timeout(Duration::from_secs(10), ended).await.is_err() {
                tracing::warn!(exporter = %id, "a disk queue thread did not end within 10 s of the close");
            }
        }
    }
}

/// Sends one batch, retrying retryable failures with exponential backoff.
pub async fn send_with_retry(
    sender: &dyn Sender,
    batch: &Batch,
    retry: &RetryConfig,
    timeout: Duration,
    mut abort: watch::Receiver<bool>,
) -> Result<(), SendError> {
    let start = Instant::now();
    let mut interval = retry.initial_interval;
    // After a partial delivery, only what is left.
    let mut rest: Option<Arc<Batch>> = None;
    loop {
        let current = rest.as_deref().unwrap_or(batch);
        let res = match tokio::time::timeout(timeout, sender.send(current)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retryable(format!("timed out after {timeout:?}"))),
        };
        let mut err = match res {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match &err.remaining {
            Some(r) => rest = Some(r.0.clone()),
            // This attempt sent only what an earlier one left: that is what is still to send.
            None => err.remaining = rest.clone().map(Remaining),
        }
        if !err.retryable || !retry.enabled || *abort.borrow() {
            return Err(err);
        }
        let delay = match err.retry_after {
            Some(d) => d,
            None => jitter(interval, retry.randomization_factor),
        };
        if !retry.max_elapsed_time.is_zero() && start.elapsed() + delay > retry.max_elapsed_time {
            return Err(SendError {
                message: format!("no more retries after {:?}: {}", start.elapsed(), err.message),
                ..err
            });
        }
        tracing::debug!(error = %err.message, ?delay, "export failed, will retry");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = abort.wait_for(|a| *a) => return Err(SendError { message: format!("shutting down: {}", err.message), ..err }),
        }
        interval = interval.mul_f64(retry.multiplier.max(1.0)).min(retry.max_interval);
    }
}

fn jitter(d: Duration, factor: f64) -> Duration {
    let f = factor.clamp(0.0, 1.0);
    if f == 0.0 {
        return d;
    }
    let r: f64 = rand::random_range(1.0 - f..=1.0 + f);
    d.mul_f64(r)
}
