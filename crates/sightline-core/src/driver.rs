//! The one exporter driver every exporter runs on: a bounded queue, a batcher that merges
//! payloads by concatenating their encodings, `num_consumers` concurrent sends, retry with
//! exponential backoff that honours the server's `Retry-After` / `RetryInfo`, and the
//! collector-compatible exporter metrics. A backend-specific exporter only implements
//! [`Sender`] (encode + send one batch, classify the outcome).
//!
//! Isolation: each exporter has its own queue. When it is full the payload is dropped and
//! counted (`otelcol_exporter_enqueue_failed_*`), or, with `block_on_overflow: true`, the
//! receiving task waits for room (back-pressure to that pipeline's clients only).

use crate::{Batch, Counter, Gauge, MemoryBudget, Payload, Registry, Signal};
use serde::Deserialize;
use std::future::Future;
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
}

impl SendError {
    pub fn retryable(message: impl Into<String>) -> Self {
        SendError { retryable: true, retry_after: None, message: message.into() }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError { retryable: false, retry_after: None, message: message.into() }
    }
    pub fn with_retry_after(mut self, d: Option<Duration>) -> Self {
        self.retry_after = d;
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

/// `sending_queue`, as in the collector's exporterhelper.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Queue payloads and send them from background consumers (default true). When false, the
    /// queue still exists (one slot per consumer) so that a slow backend never blocks others.
    pub enabled: bool,
    /// Capacity in requests (payloads) (default 1000).
    pub queue_size: usize,
    /// Concurrent sends (default 10).
    pub num_consumers: usize,
    /// When the queue is full: wait for room (true) or drop and count (false, default).
    pub block_on_overflow: bool,
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
            batch: BatchConfig::default(),
        }
    }
}

/// `sending_queue.batch`. When a consumer is free it takes every payload already queued (up
/// to `max_size` items / `max_bytes`) into one batch; only while the batch is below
/// `min_size` items does it wait for more, at most `flush_timeout`. With the default
/// `min_size: 0` nothing waits: batches are as large as the backlog, so latency stays low
/// when the backend keeps up and batches grow when it does not.
#[derive(Clone, Debug, Deserialize)]
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
    /// How long a batch below `min_size` waits for more (default 200ms).
    #[serde(with = "humantime_serde")]
    pub flush_timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            enabled: true,
            min_size: 0,
            max_size: 0,
            max_bytes: 4 << 20,
            flush_timeout: Duration::from_millis(200),
        }
    }
}

/// `retry_on_failure`, as in the collector.
#[derive(Clone, Debug, Deserialize)]
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

/// The front of an exporter's queue, held by the pipelines that feed it.
#[derive(Clone)]
pub struct ExporterHandle {
    id: Arc<str>,
    tx: mpsc::Sender<Payload>,
    block: bool,
    metrics: Arc<Metrics>,
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

    /// Hands a payload to the exporter's queue, following its overflow setting.
    pub async fn enqueue(&self, p: Payload) -> Enqueued {
        let items = p.items();
        let res = if self.block { self.tx.send(p).await.map_err(|_| ()) } else { self.tx.try_send(p).map_err(|_| ()) };
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

/// Starts an exporter driver. The task ends when every [`ExporterHandle`] clone is dropped and
/// the queue is drained (or `abort` is set).
///
/// `send_budget`, when given, bounds the memory of batches being sent: a sender makes its own
/// copy of a batch (the encoded request, compressed or not, in its transport's buffers), so
/// each send holds the batch's size against this budget while it runs, and waits for room.
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
    let (tx, rx) = mpsc::channel(capacity);
    let (abort_tx, abort_rx) = watch::channel(false);
    let handle = ExporterHandle { id: Arc::from(id), tx, block: cfg.queue.block_on_overflow, metrics: metrics.clone() };
    let close = Arc::new(tokio::sync::Notify::new());
    let task = tokio::spawn(run(Arc::from(id), signal, cfg, sender, metrics, rx, abort_rx, close.clone(), send_budget));
    Driver { handle, task, abort: abort_tx, close, pending_items: pending }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    id: Arc<str>,
    signal: Signal,
    cfg: DriverConfig,
    sender: Arc<dyn Sender>,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Payload>,
    abort: watch::Receiver<bool>,
    close: Arc<tokio::sync::Notify>,
    send_budget: Option<MemoryBudget>,
) {
    let consumers = Arc::new(Semaphore::new(cfg.queue.num_consumers.max(1)));
    let batching = cfg.queue.batch.enabled && cfg.queue.enabled;
    let mut carry: Option<Payload> = None;
    // Once closing, the channel is closed: `recv` returns what is buffered without waiting,
    // then `None`, and batch timers are not waited for.
    let mut closing = false;
    loop {
        // A free consumer first, then the batch: while every consumer is busy, payloads pile
        // up in the queue and the next free consumer takes them all in one batch. Batches
        // grow with the backlog and stay small (low latency) when the backend keeps up.
        let Ok(permit) = consumers.clone().acquire_owned().await else { break };
        // Wait for the first payload of the next batch.
        let first = match carry.take() {
            Some(p) => p,
            None => {
                let next = tokio::select! {
                    biased;
                    p = rx.recv() => p,
                    _ = close.notified(), if !closing => {
                        closing = true;
                        rx.close();
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
        metrics.queue_size.add(-1);
        let mut batch = Batch::new(signal);
        batch.push(first);
        if batching {
            let b = &cfg.queue.batch;
            let deadline = Instant::now() + b.flush_timeout;
            loop {
                if (b.max_size > 0 && batch.items >= b.max_size) || batch.bytes >= b.max_bytes {
                    break;
                }
                // Take what is already queued without waiting; wait (up to flush_timeout) only
                // while the batch is below min_size.
                let next = match rx.try_recv() {
                    Ok(p) => Some(p),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if batch.items >= b.min_size || closing {
                            break;
                        }
                        tokio::select! {
                            p = rx.recv() => p,
                            _ = tokio::time::sleep_until(deadline) => break,
                            _ = close.notified() => {
                                closing = true;
                                rx.close();
                                continue;
                            }
                        }
                    }
                };
                let Some(p) = next else { break };
                metrics.queue_size.add(-1);
                if (b.max_size > 0 && batch.items + p.items() > b.max_size) || batch.bytes + p.len() > b.max_bytes {
                    carry = Some(p);
                    metrics.queue_size.add(1);
                    break;
                }
                batch.push(p);
            }
        }
        let sender = sender.clone();
        let metrics = metrics.clone();
        let retry = cfg.retry.clone();
        let timeout = cfg.timeout;
        let abort = abort.clone();
        let id = id.clone();
        let send_budget = send_budget.clone();
        tokio::spawn(async move {
            let items = batch.items;
            let _copy = match &send_budget {
                // Transport buffers grow by doubling: hold twice the batch.
                Some(b) => Some(b.acquire(batch.bytes * 2).await),
                None => None,
            };
            match send_with_retry(&*sender, &batch, &retry, timeout, abort).await {
                Ok(()) => metrics.sent.add(items),
                Err(e) => {
                    metrics.send_failed.add(items);
                    tracing::error!(exporter = %id, items, error = %e.message, "dropping data: export failed");
                }
            }
            metrics.pending.add(-(items as i64));
            drop(permit);
        });
    }
    // Wait for in-flight sends.
    let _ = consumers.acquire_many(cfg.queue.num_consumers.max(1) as u32).await;
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
    loop {
        let res = match tokio::time::timeout(timeout, sender.send(batch)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retryable(format!("timed out after {timeout:?}"))),
        };
        let err = match res {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
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
