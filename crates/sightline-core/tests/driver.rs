//! The exporter driver with a controllable sender: adaptive batching (a backlog is merged,
//! bounded by max_size/max_bytes), min_size waiting, retries of retryable failures with the
//! server's delay, permanent failures counted, and close flushing what is queued.

use bytes::Bytes;
use sightline_core::driver::{self, DriverConfig};
use sightline_core::{Batch, Payload, Registry, SendError, SendFuture, Sender, Signal};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Records batch sizes; each send waits for a permit from `gate` and pops a scripted result.
struct Scripted {
    gate: Arc<Semaphore>,
    batches: Mutex<Vec<(usize, u64)>>,
    script: Mutex<VecDeque<Result<(), SendError>>>,
}

impl Sender for Scripted {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        Box::pin(async move {
            self.gate.acquire().await.unwrap().forget();
            self.batches.lock().unwrap().push((batch.payloads.len(), batch.items));
            self.script.lock().unwrap().pop_front().unwrap_or(Ok(()))
        })
    }
}

fn payload(items: u64, len: usize) -> Payload {
    Payload::new(Signal::Logs, Bytes::from(vec![0u8; len]), items, None)
}

fn cfg(consumers: usize) -> DriverConfig {
    let mut c = DriverConfig { queue: Default::default(), retry: Default::default(), timeout: Duration::from_secs(30) };
    c.queue.num_consumers = consumers;
    c.retry.initial_interval = Duration::from_millis(1);
    c.retry.max_interval = Duration::from_millis(2);
    c
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn backlog_is_merged_and_bounded_by_max_bytes() {
    let gate = Arc::new(Semaphore::new(0));
    let s = Arc::new(Scripted { gate: gate.clone(), batches: Mutex::default(), script: Mutex::default() });
    let reg = Registry::new();
    let mut c = cfg(1);
    c.queue.batch.max_bytes = 1000;
    let d = driver::spawn("x", Signal::Logs, c, s.clone(), &reg);
    // First payload goes out alone (nothing else queued) and blocks the only consumer.
    d.handle.enqueue(payload(1, 100)).await;
    wait_for(|| {
        s.gate.available_permits() == 0
            && reg.value("otelcol_exporter_queue_size", &[("exporter", "x"), ("data_type", "logs")]) == Some(0)
    })
    .await;
    // A backlog of 15 payloads of 100 bytes builds up behind it.
    for _ in 0..15 {
        d.handle.enqueue(payload(2, 100)).await;
    }
    gate.add_permits(100);
    wait_for(|| reg.value("otelcol_exporter_sent_log_records", &[("exporter", "x")]) == Some(31)).await;
    let b = s.batches.lock().unwrap().clone();
    assert_eq!(b[0], (1, 1));
    // 15 queued payloads of 100 bytes with max_bytes 1000: batches of 10 and 5.
    assert_eq!(&b[1..], &[(10, 20), (5, 10)], "{b:?}");
    reg.assert_compliant();
}

#[tokio::test]
async fn min_size_waits_and_close_flushes() {
    let gate = Arc::new(Semaphore::new(1000));
    let s = Arc::new(Scripted { gate, batches: Mutex::default(), script: Mutex::default() });
    let reg = Registry::new();
    let mut c = cfg(2);
    c.queue.batch.min_size = 100;
    c.queue.batch.flush_timeout = Duration::from_secs(3600);
    let d = driver::spawn("x", Signal::Logs, c, s.clone(), &reg);
    for _ in 0..3 {
        d.handle.enqueue(payload(10, 10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(s.batches.lock().unwrap().is_empty(), "waiting for min_size");
    assert_eq!(d.pending_items.get(), 30);
    d.close.notify_one();
    tokio::time::timeout(Duration::from_secs(10), d.task).await.unwrap().unwrap();
    assert_eq!(*s.batches.lock().unwrap(), vec![(3, 30)]);
    assert_eq!(d.pending_items.get(), 0);
    // After close, enqueues are refused and counted.
    assert_eq!(d.handle.enqueue(payload(4, 1)).await, sightline_core::Enqueued::Dropped);
    assert_eq!(reg.value("otelcol_exporter_enqueue_failed_log_records", &[("exporter", "x")]), Some(4));
}

#[tokio::test]
async fn retryable_failures_are_retried_permanent_ones_counted() {
    let gate = Arc::new(Semaphore::new(1000));
    let script = VecDeque::from(vec![
        Err(SendError::retryable("503").with_retry_after(Some(Duration::from_millis(1)))),
        Err(SendError::retryable("unavailable")),
        Ok(()),
        Err(SendError::permanent("400 bad request")),
    ]);
    let s = Arc::new(Scripted { gate, batches: Mutex::default(), script: Mutex::new(script) });
    let reg = Registry::new();
    let d = driver::spawn("x", Signal::Logs, cfg(1), s.clone(), &reg);
    d.handle.enqueue(payload(7, 10)).await;
    wait_for(|| reg.value("otelcol_exporter_sent_log_records", &[("exporter", "x")]) == Some(7)).await;
    assert_eq!(s.batches.lock().unwrap().len(), 3, "two retries, then success");
    d.handle.enqueue(payload(5, 10)).await;
    wait_for(|| reg.value("otelcol_exporter_send_failed_log_records", &[("exporter", "x")]) == Some(5)).await;
    assert_eq!(s.batches.lock().unwrap().len(), 4, "a permanent failure is not retried");
}

/// The `kafka` receiver's contract: a payload's [`sightline_core::Completion`] answers only when
/// every exporter of the pipeline has an outcome, `true` only when all delivered.
#[tokio::test]
async fn completion_answers_after_every_exporter_and_only_true_when_all_delivered() {
    use sightline_core::{Completion, Pipeline};
    let reg = Registry::new();
    let gate_a = Arc::new(Semaphore::new(0));
    let a = Arc::new(Scripted { gate: gate_a.clone(), batches: Mutex::default(), script: Mutex::default() });
    let gate_b = Arc::new(Semaphore::new(0));
    let b = Arc::new(Scripted {
        gate: gate_b.clone(),
        batches: Mutex::default(),
        script: Mutex::new(VecDeque::from([Ok(()), Err(SendError::permanent("refused"))])),
    });
    let da = driver::spawn("a", Signal::Logs, cfg(1), a.clone(), &reg);
    let db = driver::spawn("b", Signal::Logs, cfg(1), b.clone(), &reg);
    let pipeline = Pipeline {
        id: "logs".into(),
        signal: Signal::Logs,
        processors: Vec::new(),
        exporters: vec![da.handle.clone(), db.handle.clone()],
    };
    // First payload: both deliver.
    let (c, mut rx) = Completion::new();
    pipeline.consume(payload(1, 10).with_completion(c.clone())).await.unwrap();
    c.finish(true); // the receiver's own hold
    drop(c);
    gate_a.add_permits(1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(rx.try_recv().is_err(), "no answer while exporter b has not sent");
    gate_b.add_permits(1);
    assert_eq!(rx.await, Ok(true));
    // Second payload: b refuses it for good.
    let (c, rx) = Completion::new();
    pipeline.consume(payload(1, 10).with_completion(c.clone())).await.unwrap();
    c.finish(true);
    drop(c);
    gate_a.add_permits(1);
    gate_b.add_permits(1);
    assert_eq!(rx.await, Ok(false));
    // Third: a payload dropped without every outcome (its exporter closed) answers false.
    let (c, rx) = Completion::new();
    let p = payload(1, 10).with_completion(c.clone());
    c.expect(); // an exporter took it ...
    c.finish(true);
    drop(c);
    drop(p); // ... and dropped it without an outcome
    assert_eq!(rx.await, Ok(false));
}

/// Counts the sends that started; each then waits for a permit from `gate`.
struct Gated {
    gate: Arc<Semaphore>,
    started: std::sync::atomic::AtomicUsize,
    batches: Mutex<Vec<(usize, u64)>>,
}

impl Sender for Gated {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        Box::pin(async move {
            self.started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.batches.lock().unwrap().push((batch.payloads.len(), batch.items));
            self.gate.acquire().await.unwrap().forget();
            Ok(())
        })
    }
}

/// Starts a driver of 4 consumers whose first send (1 item) is in flight, then queues three
/// payloads of 10 items behind it; returns the sender, the driver and the registry.
async fn one_in_flight_three_queued(coalesce_size: u64, flush: Duration) -> (Arc<Gated>, driver::Driver, Registry) {
    let s =
        Arc::new(Gated { gate: Arc::new(Semaphore::new(0)), started: Default::default(), batches: Mutex::default() });
    let reg = Registry::new();
    let mut c = cfg(4);
    c.queue.batch.coalesce_size = Some(coalesce_size);
    c.queue.batch.flush_timeout = flush;
    let d = driver::spawn("x", Signal::Logs, c, s.clone(), &reg);
    d.handle.enqueue(payload(1, 10)).await;
    wait_for(|| s.started.load(std::sync::atomic::Ordering::SeqCst) == 1).await;
    for _ in 0..3 {
        d.handle.enqueue(payload(10, 10)).await;
    }
    (s, d, reg)
}

fn started(s: &Gated) -> usize {
    s.started.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn a_small_batch_waits_for_the_send_in_flight() {
    let (s, d, reg) = one_in_flight_three_queued(8192, Duration::from_secs(3600)).await;
    // Three consumers are free, but a send is in flight and the batch is below coalesce_size:
    // it waits (and takes every payload that arrives meanwhile).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(started(&s), 1, "{:?}", s.batches.lock().unwrap());
    // The send finishes: the held batch goes at once, all three payloads together.
    s.gate.add_permits(1);
    wait_for(|| started(&s) == 2).await;
    s.gate.add_permits(100);
    wait_for(|| reg.value("otelcol_exporter_sent_log_records", &[("exporter", "x")]) == Some(31)).await;
    assert_eq!(*s.batches.lock().unwrap(), vec![(1, 1), (3, 30)]);
    drop(d);
}

#[tokio::test]
async fn coalescing_is_bounded_by_size_and_flush_timeout_and_can_be_off() {
    // Off: the queued payloads go at once on a free consumer, beside the send in flight.
    let (s, _d, _r) = one_in_flight_three_queued(0, Duration::from_secs(3600)).await;
    wait_for(|| started(&s) >= 2).await;
    // At coalesce_size: the batch of 30 items goes beside the send in flight.
    let (s, _d, _r) = one_in_flight_three_queued(30, Duration::from_secs(3600)).await;
    wait_for(|| started(&s) == 2).await;
    assert_eq!(s.batches.lock().unwrap()[1], (3, 30));
    // Below it, held at most flush_timeout although the first send never finishes.
    let (s, _d, _r) = one_in_flight_three_queued(8192, Duration::from_millis(100)).await;
    wait_for(|| started(&s) == 2).await;
    assert_eq!(s.batches.lock().unwrap()[1], (3, 30));
}

#[tokio::test]
async fn a_waiting_batch_keeps_its_queue_slots() {
    // queue_size 3: the first payload is in flight, the next two wait in a batch and keep two
    // of the three slots; the third fills the queue, so the batch goes at once.
    let s =
        Arc::new(Gated { gate: Arc::new(Semaphore::new(0)), started: Default::default(), batches: Mutex::default() });
    let reg = Registry::new();
    let mut c = cfg(4);
    c.queue.queue_size = 3;
    c.queue.batch.coalesce_size = Some(8192);
    c.queue.batch.flush_timeout = Duration::from_secs(3600);
    let d = driver::spawn("x", Signal::Logs, c, s.clone(), &reg);
    d.handle.enqueue(payload(1, 10)).await;
    wait_for(|| started(&s) == 1).await;
    for _ in 0..2 {
        assert_eq!(d.handle.enqueue(payload(10, 10)).await, sightline_core::Enqueued::Queued);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(started(&s), 1, "two payloads wait for the send in flight");
    // One slot is left: this payload takes it, and with the queue full the batch goes.
    assert_eq!(d.handle.enqueue(payload(10, 10)).await, sightline_core::Enqueued::Queued);
    wait_for(|| started(&s) == 2).await;
    assert_eq!(s.batches.lock().unwrap()[1], (3, 30));
    // The sends hang; the slots are free again once the batch went.
    for _ in 0..3 {
        assert_eq!(d.handle.enqueue(payload(10, 10)).await, sightline_core::Enqueued::Queued);
    }
}
