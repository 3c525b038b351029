//! The exporter driver over a disk queue (`sending_queue.storage: disk`): ack-after-persist,
//! deletion after the backend acknowledged, the backlog of a stopped run sent after a restart,
//! and each overflow policy with its counter.

use bytes::Bytes;
use sightline_core::driver::{self, DriverConfig};
use sightline_core::{
    Batch, Enqueued, FsyncPolicy, OnFull, Payload, Registry, SendError, SendFuture, Sender, Signal, Storage,
};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records every payload it accepts; refuses everything (retryable) while `down`.
#[derive(Default)]
struct Backend {
    down: AtomicBool,
    got: Mutex<Vec<Bytes>>,
}

impl Sender for Backend {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(SendError::retryable("backend down"));
            }
            self.got.lock().unwrap().extend(batch.chunks().cloned());
            Ok(())
        })
    }
}

fn payload(i: u32) -> Payload {
    Payload::new(Signal::Traces, Bytes::from(format!("payload-{i:05}").repeat(20)), 3, None)
}

fn cfg(dir: &Path, max: u64, on_full: Option<OnFull>) -> DriverConfig {
    let mut c = DriverConfig { queue: Default::default(), retry: Default::default(), timeout: Duration::from_secs(5) };
    c.queue.storage = Storage::Disk;
    c.queue.directory = Some(dir.to_path_buf());
    c.queue.max_size_bytes = max;
    c.queue.on_full = on_full;
    c.queue.num_consumers = 2;
    // Sequential enqueues each wait for their sync: keep the overflow tests fast. The first
    // test uses the default (batch).
    c.queue.fsync = FsyncPolicy::Never;
    c.retry.initial_interval = Duration::from_millis(5);
    c.retry.max_interval = Duration::from_millis(10);
    c.retry.max_elapsed_time = Duration::ZERO;
    c
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached");
}

async fn stop(d: driver::Driver) {
    d.close.notify_one();
    tokio::time::timeout(Duration::from_secs(20), d.task).await.expect("driver stops").unwrap();
}

fn segment_bytes(dir: &Path) -> u64 {
    let q = dir.join("x").join("traces");
    std::fs::read_dir(q)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_then_sent_then_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let b = Arc::new(Backend::default());
    let mut c = cfg(dir.path(), 8 << 20, None);
    c.queue.fsync = FsyncPolicy::Batch;
    let d = driver::start("x", Signal::Traces, c, b.clone(), &reg, None).await.unwrap();
    assert!(d.handle.is_durable(), "ack_after_persist is the default for disk");
    for i in 0..200 {
        assert_eq!(d.handle.enqueue(payload(i)).await, Enqueued::Queued);
    }
    wait_for(|| reg.value("otelcol_exporter_sent_spans", &[("exporter", "x")]) == Some(600)).await;
    stop(d).await;
    let mut got = b.got.lock().unwrap().clone();
    // Two consumers send concurrently, so the backend may see them in any order.
    got.sort();
    let want: Vec<Bytes> = (0..200).map(|i| payload(i).bytes().clone()).collect();
    assert_eq!(got, want, "every payload comes back once, its bytes unchanged");
    // Everything was acknowledged: only the (empty-ish) active segment is left.
    assert!(segment_bytes(dir.path()) < 64 << 10);
    reg.assert_compliant();
    // Nothing is sent again after a restart.
    let b2 = Arc::new(Backend::default());
    let reg2 = Registry::new();
    let d = driver::start("x", Signal::Traces, cfg(dir.path(), 8 << 20, None), b2.clone(), &reg2, None).await.unwrap();
    assert_eq!(
        reg2.value("sightline_disk_queue_recovered_records_total", &[("exporter", "x"), ("data_type", "traces")]),
        Some(0)
    );
    stop(d).await;
    assert!(b2.got.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_of_a_stopped_run_is_sent_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(Backend::default());
    down.down.store(true, Ordering::SeqCst);
    let reg = Registry::new();
    let d = driver::start("x", Signal::Traces, cfg(dir.path(), 8 << 20, None), down.clone(), &reg, None).await.unwrap();
    for i in 0..50 {
        assert_eq!(d.handle.enqueue(payload(i)).await, Enqueued::Queued);
    }
    // Closing with the backend down: retries give up at once and nothing counts as lost.
    stop(d).await;
    assert_eq!(reg.value("otelcol_exporter_send_failed_spans", &[("exporter", "x")]), Some(0));
    let up = Arc::new(Backend::default());
    let reg = Registry::new();
    let d = driver::start("x", Signal::Traces, cfg(dir.path(), 8 << 20, None), up.clone(), &reg, None).await.unwrap();
    assert_eq!(
        reg.value("sightline_disk_queue_recovered_records_total", &[("exporter", "x"), ("data_type", "traces")]),
        Some(50)
    );
    wait_for(|| up.got.lock().unwrap().len() >= 50).await;
    stop(d).await;
    let mut got: Vec<Bytes> = up.got.lock().unwrap().clone();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 50, "every payload of the first run arrives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_refuses_when_full_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(Backend::default());
    b.down.store(true, Ordering::SeqCst);
    let reg = Registry::new();
    let d =
        driver::start("x", Signal::Traces, cfg(dir.path(), 1 << 20, Some(OnFull::DropNewest)), b.clone(), &reg, None)
            .await
            .unwrap();
    let (mut queued, mut dropped) = (0u64, 0u64);
    for i in 0..10_000 {
        match d.handle.enqueue(payload(i)).await {
            Enqueued::Queued => queued += 1,
            Enqueued::Dropped => dropped += 1,
        }
        if dropped >= 10 {
            break;
        }
    }
    assert!(queued > 100 && dropped == 10, "queued {queued}");
    assert_eq!(reg.value("otelcol_exporter_enqueue_failed_spans", &[("exporter", "x")]), Some(3 * dropped as i64));
    assert!(segment_bytes(dir.path()) <= 1 << 20);
    stop(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_makes_room_and_counts_evictions() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(Backend::default());
    b.down.store(true, Ordering::SeqCst);
    let reg = Registry::new();
    let d =
        driver::start("x", Signal::Traces, cfg(dir.path(), 1 << 20, Some(OnFull::DropOldest)), b.clone(), &reg, None)
            .await
            .unwrap();
    // About four times the capacity: every enqueue succeeds, the oldest data goes.
    for i in 0..16_000 {
        assert_eq!(d.handle.enqueue(payload(i)).await, Enqueued::Queued, "{i}");
    }
    let evicted = reg.value("sightline_exporter_evicted_spans_total", &[("exporter", "x")]).unwrap();
    assert!(evicted > 0);
    assert_eq!(reg.value("otelcol_exporter_enqueue_failed_spans", &[("exporter", "x")]), Some(0));
    // Dropped segments are deleted by the writer's housekeeping (at the latest on stop).
    stop(d).await;
    assert!(segment_bytes(dir.path()) <= 1 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_waits_for_room_until_the_backend_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(Backend::default());
    b.down.store(true, Ordering::SeqCst);
    let reg = Registry::new();
    let d = driver::start("x", Signal::Traces, cfg(dir.path(), 1 << 20, Some(OnFull::Block)), b.clone(), &reg, None)
        .await
        .unwrap();
    let h = d.handle.clone();
    let producer = tokio::spawn(async move {
        for i in 0..8_000 {
            assert_eq!(h.enqueue(payload(i)).await, Enqueued::Queued);
        }
    });
    // The producer fills the queue and then waits.
    wait_for(|| segment_bytes(dir.path()) > (1 << 20) - (64 << 10)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!producer.is_finished(), "blocked while the queue is full");
    b.down.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(60), producer).await.expect("unblocked").unwrap();
    wait_for(|| b.got.lock().unwrap().len() >= 8_000).await;
    assert_eq!(reg.value("otelcol_exporter_enqueue_failed_spans", &[("exporter", "x")]), Some(0));
    stop(d).await;
}

/// ack_after_persist: a pipeline whose disk queue cannot take a payload fails the request
/// with a retryable `Unavailable` (gRPC UNAVAILABLE / HTTP 503 at the receiver), even when
/// another exporter of the pipeline queued it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_durable_queue_fails_the_request_with_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(Backend::default());
    b.down.store(true, Ordering::SeqCst);
    let reg = Registry::new();
    let disk =
        driver::start("x", Signal::Traces, cfg(dir.path(), 1 << 20, Some(OnFull::DropNewest)), b.clone(), &reg, None)
            .await
            .unwrap();
    let mut mc = DriverConfig { queue: Default::default(), retry: Default::default(), timeout: Duration::from_secs(5) };
    mc.queue.queue_size = 100_000;
    let mem = driver::spawn("m", Signal::Traces, mc, Arc::new(Backend::default()), &reg);
    let p = sightline_core::Pipeline {
        id: "traces".into(),
        signal: Signal::Traces,
        processors: Vec::new(),
        exporters: vec![mem.handle.clone(), disk.handle.clone()],
    };
    let mut refused = 0;
    for i in 0..20_000 {
        match p.consume(payload(i)).await {
            Ok(d) => assert_eq!(d.dropped, 0),
            Err(sightline_core::ProcessError::Unavailable { .. }) => {
                refused += 1;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(refused, 1, "the disk queue filled up and the request was refused");
    drop(p);
    stop(disk).await;
    stop(mem).await;
}

/// A stopped driver has let go of its directory: one started on it at once opens it. (CI once
/// saw "the queue is in use by another process" here: the driver's task ended while its disk
/// threads still held the queue.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_driver_leaves_its_directory_free_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(Backend::default());
    for round in 0..40u32 {
        let reg = Registry::new();
        let d = driver::start("x", Signal::Traces, cfg(dir.path(), 8 << 20, None), b.clone(), &reg, None)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        for i in 0..5 {
            assert_eq!(d.handle.enqueue(payload(round * 5 + i)).await, Enqueued::Queued);
        }
        stop(d).await;
    }
    // What a round left unsent is on disk for the next start: one more start sends the rest.
    let distinct = || {
        let mut got: Vec<Bytes> = b.got.lock().unwrap().clone();
        got.sort();
        got.dedup();
        got.len()
    };
    let d = driver::start("x", Signal::Traces, cfg(dir.path(), 8 << 20, None), b.clone(), &Registry::new(), None)
        .await
        .unwrap();
    wait_for(|| distinct() >= 200).await;
    stop(d).await;
    assert_eq!(distinct(), 200, "every payload of every round arrives");
}
