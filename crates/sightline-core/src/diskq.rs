//! The disk side of an exporter's queue (`sending_queue.storage: disk`), around
//! [`sightline_diskqueue`]: a writer thread that group-commits appends, a reader thread that
//! reads the backlog ahead into the driver's channel, and the front half that the pipelines'
//! [`ExporterHandle`](crate::ExporterHandle) calls.
//!
//! No file I/O runs on a runtime worker: appends, reads, deletions and the checkpoint happen on
//! the two threads of each queue; the async side only takes the queue's short lock (space
//! reservation, acknowledgements) and awaits a oneshot.
//!
//! Group commit: every append that arrives while the writer is busy (writing or in
//! `fdatasync`) goes into its next call, which ends in one `fdatasync` (`fsync: batch`). So
//! concurrent requests share a sync and the cost of durability falls as load rises.

use crate::driver::{FsyncPolicy, OnFull, Queued};
use crate::{Counter, Gauge, MemoryBudget, Payload, Registry, Signal};
use bytes::Bytes;
use sightline_diskqueue::{self as dq, Entry, Queue};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};

/// How often the writer thread deletes acknowledged segments and writes the checkpoint while
/// appends keep coming (and how long it sleeps when idle).
const MAINTAIN_EVERY: Duration = Duration::from_millis(50);
/// Appends taken into one group at most.
const MAX_GROUP: usize = 4096;

pub(crate) enum Msg {
    Append {
        payload: Payload,
        stored: u64,
        done: Option<oneshot::Sender<bool>>,
    },
    /// Write what is pending, delete what is acknowledged, write the checkpoint, and stop.
    Finish(oneshot::Sender<()>),
}

pub(crate) struct DiskMetrics {
    pub corrupt: Counter,
    pub evicted: Counter,
    pub write_errors: Counter,
    pub fsyncs: Counter,
    pub size_bytes: Gauge,
    pub queue_size: Gauge,
    pub enqueue_failed: Counter,
}

impl DiskMetrics {
    pub fn new(registry: &Registry, id: &str, signal: Signal, queue_size: Gauge, enqueue_failed: Counter) -> Self {
        let labels = [("exporter", id), ("data_type", signal.as_str())];
        DiskMetrics {
            corrupt: registry.counter(
                "sightline_disk_queue_corrupt_records_total",
                "Records of a disk queue found torn or corrupt (cut at recovery or skipped when read).",
                &labels,
            ),
            evicted: registry.counter(
                &format!("sightline_exporter_evicted_{}_total", signal.item_name()),
                "Items dropped from the front of a full disk queue (on_full: drop_oldest).",
                &[("exporter", id)],
            ),
            write_errors: registry.counter(
                "sightline_disk_queue_write_errors_total",
                "Appends to a disk queue that failed (the payloads were refused and counted).",
                &labels,
            ),
            fsyncs: registry.counter(
                "sightline_disk_queue_fsyncs_total",
                "fdatasync calls on a disk queue's segment files.",
                &labels,
            ),
            size_bytes: registry.gauge(
                "sightline_disk_queue_size_bytes",
                "Size of a disk queue's segment files.",
                &labels,
            ),
            queue_size,
            enqueue_failed,
        }
    }
}

/// The part of a disk queue the pipelines hold.
pub(crate) struct DiskFront {
    pub queue: Arc<Queue>,
    pub tx: std_mpsc::Sender<Msg>,
    /// Notified when the writer freed space (for `on_full: block`).
    pub space: Arc<Notify>,
    pub on_full: OnFull,
    /// `durability: ack_after_persist`: enqueue returns once the payload is written and synced.
    pub durable: bool,
    pub metrics: Arc<DiskMetrics>,
}

impl DiskFront {
    /// Persists one payload following the overflow policy. `true` when it is (or, without
    /// `ack_after_persist`, will be) in the queue; `false` when it was refused (counted).
    pub async fn enqueue(&self, p: Payload) -> bool {
        let items = p.items();
        let stored = Entry::stored_len(p.len());
        if stored > self.queue.options().max_size_bytes {
            self.metrics.enqueue_failed.add(items);
            return false;
        }
        loop {
            if self.queue.try_reserve(stored) {
                break;
            }
            match self.on_full {
                OnFull::DropNewest => {
                    self.metrics.enqueue_failed.add(items);
                    return false;
                }
                OnFull::DropOldest => match self.queue.drop_oldest() {
                    Some(d) => {
                        self.metrics.evicted.add(d.items);
                        if d.records > 0 {
                            tracing::warn!(queue = %self.queue.dir().display(), items = d.items, "disk queue full: dropped the oldest data");
                        }
                    }
                    None => {
                        self.metrics.enqueue_failed.add(items);
                        return false;
                    }
                },
                OnFull::Block => {
                    let freed = self.space.notified();
                    tokio::pin!(freed);
                    freed.as_mut().enable();
                    if self.queue.try_reserve(stored) {
                        break;
                    }
                    // Re-check now and then: the writer thread may be gone (shutdown).
                    let _ = tokio::time::timeout(Duration::from_millis(200), freed).await;
                    if self.queue.is_closed() {
                        self.metrics.enqueue_failed.add(items);
                        return false;
                    }
                }
            }
        }
        let (done, wait) = if self.durable {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        if self.tx.send(Msg::Append { payload: p, stored, done }).is_err() {
            self.queue.release(stored);
            self.metrics.enqueue_failed.add(items);
            return false;
        }
        match wait {
            // The writer counts a failed append.
            Some(rx) => rx.await.unwrap_or(false),
            None => true,
        }
    }
}

/// The directory of one (exporter, signal) queue under `sending_queue.directory`.
pub(crate) fn queue_dir(base: &Path, exporter: &str, signal: Signal) -> PathBuf {
    // Component ids are `type[/name]`: keep them readable and collision-free as one path
    // segment.
    let mut seg = String::with_capacity(exporter.len());
    for c in exporter.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
            seg.push(c);
        } else {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                seg.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    base.join(seg).join(signal.as_str())
}

pub(crate) fn options(max_size_bytes: u64, fsync: FsyncPolicy) -> dq::Options {
    dq::Options {
        max_size_bytes,
        segment_size: (max_size_bytes / 16).clamp(64 << 10, 64 << 20),
        fsync: match fsync {
            FsyncPolicy::Always => dq::Fsync::Always,
            FsyncPolicy::Batch => dq::Fsync::Batch,
            FsyncPolicy::Never => dq::Fsync::Never,
        },
    }
}

/// The writer thread: group commit, then housekeeping.
pub(crate) fn writer_loop(
    mut w: dq::Writer,
    rx: std_mpsc::Receiver<Msg>,
    space: Arc<Notify>,
    m: Arc<DiskMetrics>,
    signal: Signal,
) {
    let kind = signal as u8;
    let mut group: Vec<(Payload, u64, Option<oneshot::Sender<bool>>)> = Vec::new();
    let mut finish: Option<oneshot::Sender<()>> = None;
    let mut last_maintain = Instant::now();
    let mut fsyncs_seen = w.queue().stats().fsyncs;
    loop {
        let mut disconnected = false;
        let first = match rx.recv_timeout(MAINTAIN_EVERY) {
            Ok(msg) => Some(msg),
            Err(std_mpsc::RecvTimeoutError::Timeout) => None,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                disconnected = true;
                None
            }
        };
        let mut next = first;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Append { payload, stored, done } => group.push((payload, stored, done)),
                Msg::Finish(f) => finish = Some(f),
            }
            if group.len() >= MAX_GROUP {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !group.is_empty() {
            let res = {
                let entries: Vec<Entry<'_>> =
                    group.iter().map(|(p, _, _)| Entry { kind, items: p.items(), data: p.bytes() }).collect();
                w.append(&entries)
            };
            let ok = match res {
                Ok(_) => true,
                Err(e) => {
                    m.write_errors.inc();
                    let items: u64 = group.iter().map(|(p, _, _)| p.items()).sum();
                    m.enqueue_failed.add(items);
                    tracing::error!(queue = %w.queue().dir().display(), items, error = %e, "dropping data: disk queue append failed");
                    false
                }
            };
            // Dropping the payloads here releases their memory: the disk holds them now.
            for (_, _, done) in group.drain(..) {
                if let Some(d) = done {
                    let _ = d.send(ok);
                }
            }
        }
        let stop = disconnected || finish.is_some();
        if stop || last_maintain.elapsed() >= MAINTAIN_EVERY {
            last_maintain = Instant::now();
            match w.maintain() {
                Ok(freed) if freed > 0 => space.notify_waiters(),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(queue = %w.queue().dir().display(), error = %e, "disk queue housekeeping failed")
                }
            }
            let st = w.queue().stats();
            m.size_bytes.set(st.disk_bytes as i64);
            m.queue_size.set(st.unacked_records as i64);
            m.fsyncs.add(st.fsyncs.saturating_sub(fsyncs_seen));
            fsyncs_seen = st.fsyncs;
        }
        if stop {
            // Wake blocked enqueuers so they see the closed queue.
            w.queue().close();
            space.notify_waiters();
            if let Some(f) = finish.take() {
                let _ = f.send(());
            }
            return;
        }
    }
}

/// The reader thread: reads the backlog in order into the driver's channel, holding each
/// payload's bytes against `prefetch` until it is sent.
pub(crate) fn reader_loop(
    mut r: dq::Reader,
    tx: mpsc::Sender<Queued>,
    prefetch: MemoryBudget,
    rt: tokio::runtime::Handle,
    m: Arc<DiskMetrics>,
    pending: Gauge,
    signal: Signal,
) {
    let mut corrupt_seen = 0u64;
    loop {
        if r.queue().is_closed() || tx.is_closed() {
            return;
        }
        let rec = match r.next(Duration::from_millis(200)) {
            Ok(Some(rec)) => rec,
            Ok(None) => {
                let c = r.queue().stats().corrupt_records;
                m.corrupt.add(c.saturating_sub(corrupt_seen));
                corrupt_seen = c;
                continue;
            }
            Err(e) => {
                tracing::error!(queue = %r.queue().dir().display(), error = %e, "disk queue read failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let c = r.queue().stats().corrupt_records;
        if c > corrupt_seen {
            m.corrupt.add(c - corrupt_seen);
            corrupt_seen = c;
        }
        let permit = rt.block_on(prefetch.acquire(rec.data.len()));
        let items = rec.items;
        let seq = rec.seq;
        let payload = Payload::new(signal, Bytes::from(rec.data), items, Some(permit));
        pending.add(items as i64);
        if tx.blocking_send(Queued { payload, seq: Some(seq) }).is_err() {
            pending.add(-(items as i64));
            return;
        }
    }
}
