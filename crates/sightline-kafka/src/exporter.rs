//! The `kafka` exporter: each batch cut into messages (the request whole, one per resource or
//! one per trace id, as the collector's `kafkaexporter`; split further on the wire to fit
//! `producer.max_message_bytes`), produced through librdkafka, and reported sent only when
//! every message has been acknowledged by the brokers at `required_acks`. Messages that failed
//! are what a retry sends again (`SendError::remaining`): the others are not written twice.

use crate::config::{Encoding, Hasher, KafkaExporterConfig, Partitioning};
use crate::partition;
use bytes::Bytes;
use rdkafka::ClientContext;
use rdkafka::IntoOpaque as _;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Partitioner, Producer as _, ProducerContext};
use sightline_core::wire::{self, Fields};
use sightline_core::{Batch, Counter, DriverConfig, Payload, Registry, SendError, SendFuture, Sender, Signal};
use sightline_exporters::BuildError;
use sightline_exporters::loadbalancing::identity;
use sightline_exporters::loadbalancing::split::{self, Split};
use std::ffi::{CStr, CString, c_void};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The client context: librdkafka's log lines go to Sightline's log, deliveries to the send
/// that is waiting for them, keyed messages to the collector's partitioner.
pub(crate) struct Context {
    id: Arc<str>,
    partitioner: KeyPartitioner,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(exporter = %self.id, facility = fac, "kafka: {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(exporter = %self.id, facility = fac, "kafka: {message}"),
            _ => tracing::debug!(exporter = %self.id, facility = fac, "kafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(exporter = %self.id, "kafka client: {error}: {reason}");
    }
}

type Delivered = oneshot::Sender<Result<(), KafkaError>>;

/// A payload at least this large (or a sixteenth of `max_message_bytes`) is written as a
/// message of its own rather than copied into a shared one.
const MIN_ALONE: usize = 16 * 1024;

/// A message librdkafka holds: its value and key, which librdkafka reads in place (it does not
/// copy them, see [`Client::produce`]), and who waits for its delivery report. librdkafka owns
/// it from the produce until the report, which hands it back to [`Context::delivery`].
pub(crate) struct Pending {
    tx: Delivered,
    value: Bytes,
    key: Option<Vec<u8>>,
}

impl ProducerContext<KeyPartitioner> for Context {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<Pending>) {
        let Pending { tx, value, key } = *pending;
        // The send may have timed out and gone: nobody to tell then.
        let _ = tx.send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
        // The message's bytes go last, after the report (which may point at them) is read.
        drop((value, key));
    }

    fn get_custom_partitioner(&self) -> Option<&KeyPartitioner> {
        Some(&self.partitioner)
    }
}

/// The collector's `sticky_key` partitioner for keyed messages (librdkafka's own sticky
/// partitioner places messages without a key).
pub(crate) struct KeyPartitioner(Hasher);

impl Partitioner for KeyPartitioner {
    fn partition(
        &self,
        _topic: &str,
        key: Option<&[u8]>,
        partition_cnt: i32,
        _is_partition_available: impl Fn(i32) -> bool,
    ) -> i32 {
        match key {
            Some(k) => partition::of_key(self.0, k, partition_cnt),
            // Not called for messages without a key while sticky.partitioning.linger.ms > 0.
            None => rdkafka::producer::PARTITION_UA,
        }
    }
}

type Base = BaseProducer<Context, KeyPartitioner>;

/// The producer, and what serves its delivery reports (`poll`).
///
/// Inside a Tokio runtime (always, in the product) a task serves them on the runtime's own
/// threads: librdkafka calls [`on_event`] when a report lands in its empty main queue, and
/// that wakes the task, which polls the queue until it is empty. A report then reaches the
/// waiting send without a thread hop of its own: before, a dedicated thread woke for each
/// one (futex, context switch) only to wake a runtime thread in turn (ADR 31).
///
/// Outside a runtime (tests of the client alone), or should librdkafka give no handle on the
/// main queue, a thread polls instead, in one-second calls:
/// librdkafka's poll takes whole milliseconds, so shorter calls end in a busy loop.
pub(crate) struct Client {
    /// Released first in `drop`: a queue handle must go before its client.
    main: Option<Arc<MainQueue>>,
    base: Arc<Base>,
    wake: Arc<Wake>,
}

/// What wakes the server of the delivery reports, and tells it to stop.
struct Wake {
    notify: tokio::sync::Notify,
    stop: std::sync::atomic::AtomicBool,
    /// Calls of [`on_event`] (a test checks that librdkafka makes them).
    events: std::sync::atomic::AtomicU64,
}

/// A handle on the producer's main queue (where librdkafka puts delivery reports, errors and
/// logs), with [`on_event`] enabled on it while the handle lives.
struct MainQueue(*mut rdkafka::bindings::rd_kafka_queue_t);

// SAFETY: a librdkafka queue handle may be used from any thread: every call made on it here
// (`rd_kafka_queue_length`, `rd_kafka_queue_cb_event_enable`, `rd_kafka_queue_destroy`) takes
// the queue's own lock, and the handle holds a reference that keeps the queue alive.
unsafe impl Send for MainQueue {}
// SAFETY: as for `Send`: shared use is only through those locked calls.
unsafe impl Sync for MainQueue {}

impl MainQueue {
    fn len(&self) -> usize {
        // SAFETY: `self.0` is a live handle from `rd_kafka_queue_get_main` (destroyed only in
        // `drop`); the call takes the queue's lock.
        unsafe { rdkafka::bindings::rd_kafka_queue_length(self.0) }
    }
}

impl Drop for MainQueue {
    fn drop(&mut self) {
        // SAFETY: `self.0` is live until here. Disabling the callback takes the queue's lock,
        // under which librdkafka calls it, so once this returns it is never called again and
        // the `Wake` its opaque points at may go. The handle is destroyed once, here, before
        // the client (`Client::drop` releases `main` before `base` drops, and the task drops
        // its upgraded `main` before its upgraded `base`).
        unsafe {
            rdkafka::bindings::rd_kafka_queue_cb_event_enable(self.0, None, std::ptr::null_mut());
            rdkafka::bindings::rd_kafka_queue_destroy(self.0);
        }
    }
}

/// Called by librdkafka, on one of its threads and under the queue's lock, when an event
/// lands in the empty main queue: wakes the task that serves it. No librdkafka call here.
unsafe extern "C" fn on_event(_rk: *mut rdkafka::bindings::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is `Arc::as_ptr` of the client's `Wake`, which the client keeps alive
    // until after its `MainQueue` has disabled this callback (see `MainQueue::drop`).
    let wake = unsafe { &*(opaque as *const Wake) };
    wake.events.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    wake.notify.notify_one();
}

impl Client {
    fn new(base: Base) -> std::io::Result<Client> {
        let base = Arc::new(base);
        let wake = Arc::new(Wake { notify: tokio::sync::Notify::new(), stop: false.into(), events: 0.into() });
        // SAFETY: the client pointer is valid while `base` lives; a handle returned holds a
        // reference of its own, released by `MainQueue::drop`.
        let main = unsafe { rdkafka::bindings::rd_kafka_queue_get_main(base.client().native_ptr()) };
        let main = (!main.is_null()).then(|| Arc::new(MainQueue(main)));
        let (Ok(runtime), Some(main)) = (tokio::runtime::Handle::try_current(), main) else {
            let (b, w) = (base.clone(), wake.clone());
            std::thread::Builder::new().name("sl-kafka-poll".into()).spawn(move || {
                while !w.stop.load(std::sync::atomic::Ordering::Relaxed) {
                    b.poll(Duration::from_secs(1));
                }
            })?;
            return Ok(Client { main: None, base, wake });
        };
        // SAFETY: `main.0` is live; `on_event` only reads the `Wake` behind the opaque, which
        // outlives the callback's registration (see `MainQueue::drop`).
        unsafe {
            rdkafka::bindings::rd_kafka_queue_cb_event_enable(
                main.0,
                Some(on_event),
                Arc::as_ptr(&wake) as *mut c_void,
            );
        }
        let (b, q, w) = (Arc::downgrade(&base), Arc::downgrade(&main), wake.clone());
        runtime.spawn(serve(b, q, w));
        Ok(Client { main: Some(main), base, wake })
    }

    /// Queues one message for `topic` without librdkafka copying its value or key (rdkafka's
    /// `send` always asks for a copy: a `memcpy` and a large allocation per message, 4% of the
    /// export's CPU). `headers` (name, value) are copied. On failure `pending` comes back.
    fn produce(
        &self,
        topic: &CStr,
        pending: Box<Pending>,
        headers: &[(CString, Vec<u8>)],
    ) -> Result<(), (KafkaError, Box<Pending>)> {
        use rdkafka::bindings as rd;
        let vu = |vtype: rd::rd_kafka_vtype_t, u: rd::rd_kafka_vu_s__bindgen_ty_1| rd::rd_kafka_vu_t { vtype, u };
        let mem = |b: &[u8]| rd::rd_kafka_vu_s__bindgen_ty_1 {
            mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 { ptr: b.as_ptr() as *mut c_void, size: b.len() },
        };
        let mut vus = Vec::with_capacity(5 + headers.len());
        vus.push(vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC,
            rd::rd_kafka_vu_s__bindgen_ty_1 { cstr: topic.as_ptr() },
        ));
        // No RD_KAFKA_MSG_F_COPY (nor F_FREE): librdkafka keeps the pointers and never frees them.
        vus.push(vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_MSGFLAGS, rd::rd_kafka_vu_s__bindgen_ty_1 { i: 0 }));
        vus.push(vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE, mem(&pending.value)));
        if let Some(k) = &pending.key {
            vus.push(vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_KEY, mem(k)));
        }
        for (name, value) in headers {
            let header = rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                name: name.as_ptr(),
                val: value.as_ptr() as *const c_void,
                size: value.len() as isize,
            };
            vus.push(vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER, rd::rd_kafka_vu_s__bindgen_ty_1 { header }));
        }
        let opaque = pending.into_ptr();
        vus.push(vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_OPAQUE, rd::rd_kafka_vu_s__bindgen_ty_1 { ptr: opaque }));
        // SAFETY: the client pointer is valid while `self.base` lives (it does for this call).
        // Every entry of `vus` is typed as its `vtype` requires: a NUL-terminated topic and
        // header names (`CStr`), `(pointer, length)` of live slices for the value, key and
        // header values, an int for the flags, the opaque pointer. librdkafka copies the topic
        // and the headers during the call. With flags 0 it reads the value and key in place
        // until the message is destroyed and never frees them; they are heap buffers owned by
        // the `Pending` behind `opaque` (a `Box` leaked here, so they neither move nor drop),
        // and that `Pending` is dropped only when librdkafka gives it back: in the delivery
        // report (rdkafka's `BaseProducer::poll` rebuilds the `Box` from the message's opaque,
        // exactly as for its own `send`, and `Context::delivery` drops it after using the
        // report), or below when the produce fails and librdkafka keeps nothing. A message
        // still queued when the producer is destroyed gets no report: its `Pending` leaks
        // rather than being freed under librdkafka.
        let error = unsafe { rd::rd_kafka_produceva(self.base.client().native_ptr(), vus.as_ptr(), vus.len()) };
        if error.is_null() {
            return Ok(());
        }
        // SAFETY: `error` is the non-null error object produceva returned, read then destroyed
        // once; on error the message was not queued, so `opaque` is still ours, from `into_ptr`.
        let code = unsafe { rd::rd_kafka_error_code(error) };
        unsafe { rd::rd_kafka_error_destroy(error) };
        let pending = unsafe { Box::<Pending>::from_ptr(opaque) };
        Err((KafkaError::MessageProduction(code.into()), pending))
    }
}

impl std::ops::Deref for Client {
    type Target = Base;

    fn deref(&self) -> &Base {
        &self.base
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.wake.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.wake.notify.notify_one();
        // Before `base` (a field, dropped after this): the callback is disabled and the queue
        // handle released, unless the task holds it this instant, and then it drops its
        // `main` before its `base`.
        drop(self.main.take());
    }
}

/// Serves the producer's main queue whenever [`on_event`] says it is no longer empty (and once
/// a second regardless, should an event ever come without the call): each `poll` with a zero
/// timeout serves one event, a delivery report carrying the reports of a whole produce
/// response. Holds the client weakly: it ends when the client goes.
async fn serve(base: std::sync::Weak<Base>, main: std::sync::Weak<MainQueue>, wake: Arc<Wake>) {
    /// Events served before letting other tasks run.
    const BURST: usize = 64;
    loop {
        if wake.stop.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let (left, progress) = {
            let (Some(base), Some(main)) = (base.upgrade(), main.upgrade()) else { return };
            let before = main.len();
            let mut served = 0;
            while main.len() > 0 && served < BURST {
                base.poll(Duration::ZERO);
                served += 1;
            }
            let left = main.len();
            // `main` drops before `base`: the queue handle is never the client's last user.
            drop(main);
            drop(base);
            (left, left < before || served < BURST)
        };
        if left == 0 {
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notify.notified()).await;
        } else if progress {
            tokio::task::yield_now().await;
        } else {
            // A whole burst left the queue as long as it was: events arrive as fast as they
            // are served, or (never seen) an entry does not leave. A pause, not a spin.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The exporter, built once per id: one librdkafka producer shared by the signals.
pub struct KafkaExporter {
    id: Arc<str>,
    cfg: Arc<KafkaExporterConfig>,
    producer: Arc<Client>,
    metrics: Arc<Metrics>,
}

struct Metrics {
    records: Counter,
    records_failed: Counter,
    too_large: Counter,
}

/// librdkafka's settings for the config (ADR 24 lists the mapping).
pub fn client_config(cfg: &KafkaExporterConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    let p = &cfg.producer;
    c.set("bootstrap.servers", cfg.brokers.join(","))
        .set("client.id", &cfg.client_id)
        .set("acks", p.required_acks.0.to_string())
        .set("enable.idempotence", if p.required_acks.0 == -1 { "true" } else { "false" })
        .set("compression.codec", &p.compression)
        .set("message.max.bytes", (p.max_message_bytes + 64 * 1024).max(1000).to_string())
        .set("queue.buffering.max.messages", p.flush_max_messages.to_string())
        .set("max.in.flight.requests.per.connection", p.max_inflight_requests_per_broker.to_string())
        .set("allow.auto.create.topics", p.allow_auto_topic_creation.to_string())
        .set("linger.ms", p.linger.as_millis().to_string())
        .set("message.timeout.ms", cfg.timeout.as_millis().max(1).to_string())
        .set("request.timeout.ms", cfg.timeout.as_millis().clamp(1, 900_000).to_string())
        .set("socket.connection.setup.timeout.ms", cfg.dial_timeout.as_millis().max(1000).to_string())
        .set("connections.max.idle.ms", cfg.conn_idle_timeout.as_millis().to_string())
        .set("topic.metadata.refresh.interval.ms", cfg.metadata.refresh_interval.as_millis().to_string())
        .set("retry.backoff.ms", cfg.metadata.retry.backoff.as_millis().max(1).to_string())
        .set("message.send.max.retries", cfg.metadata.retry.max.to_string())
        // Sticky for messages without a key; the custom partitioner for keyed ones.
        .set("sticky.partitioning.linger.ms", p.linger.as_millis().max(1).to_string());
    let level = p.compression_params.level;
    if level > 0 {
        c.set("compression.level", level.to_string());
    }
    if let Some(r) = &cfg.rack_id {
        c.set("client.rack", r);
    }
    crate::config::apply_security(&mut c, &cfg.auth, cfg.tls.as_ref());
    c
}

impl KafkaExporter {
    /// Builds the producer (it connects in the background; nothing blocks here).
    pub fn new(id: &str, cfg: &KafkaExporterConfig, registry: &Registry) -> Result<KafkaExporter, BuildError> {
        BuildError::from_findings(cfg.validate())?;
        let id: Arc<str> = id.into();
        let ctx = Context { id: id.clone(), partitioner: KeyPartitioner(cfg.record_partitioner.hasher()) };
        let producer: Base = client_config(cfg)
            .create_with_context(ctx)
            .map_err(|e| BuildError::invalid("brokers", format!("cannot create the Kafka producer: {e}")))?;
        let producer = Client::new(producer)
            .map_err(|e| BuildError::invalid("brokers", format!("cannot start the Kafka producer's thread: {e}")))?;
        let labels = [("exporter", &*id)];
        let metrics = Metrics {
            records: registry.counter(
                "sightline_kafka_exporter_records_total",
                "Messages the brokers acknowledged.",
                &labels,
            ),
            records_failed: registry.counter(
                "sightline_kafka_exporter_records_failed_total",
                "Messages the brokers did not acknowledge (retried or given up with their batch).",
                &labels,
            ),
            too_large: registry.counter(
                "sightline_kafka_exporter_too_large_items_total",
                "Items dropped because one alone does not fit in producer.max_message_bytes.",
                &labels,
            ),
        };
        Ok(KafkaExporter { id, cfg: Arc::new(cfg.clone()), producer: Arc::new(producer), metrics: Arc::new(metrics) })
    }

    pub fn sender(&self, signal: Signal) -> Arc<dyn Sender> {
        // Names were checked for NUL characters by the config's validation.
        let mut headers: Vec<(CString, Vec<u8>)> = self
            .cfg
            .record_headers
            .iter()
            .filter_map(|h| Some((CString::new(h.name.as_str()).ok()?, h.value.as_bytes().to_vec())))
            .collect();
        if self.cfg.signal_header {
            headers.push((c"otelcol.signal".to_owned(), signal.as_str().as_bytes().to_vec()));
        }
        let topic = self.cfg.topic(signal);
        Arc::new(KafkaSender {
            id: self.id.clone(),
            signal,
            topic: CString::new(topic).unwrap_or_default(),
            encoding: self.cfg.encoding(signal),
            partitioning: self.cfg.partitioning(signal),
            topic_from_attribute: (!self.cfg.topic_from_attribute.is_empty())
                .then(|| self.cfg.topic_from_attribute.clone()),
            max: self.cfg.producer.max_message_bytes,
            headers,
            producer: self.producer.clone(),
            metrics: self.metrics.clone(),
        })
    }

    pub fn driver_config(&self) -> DriverConfig {
        sightline_exporters::driver_config(self.cfg.timeout, &self.cfg.sending_queue, &self.cfg.retry_on_failure)
    }
}

impl Drop for KafkaExporter {
    fn drop(&mut self) {
        // What is still buffered gets a last chance (the driver has already drained).
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}

struct KafkaSender {
    id: Arc<str>,
    signal: Signal,
    encoding: Encoding,
    partitioning: Partitioning,
    topic_from_attribute: Option<String>,
    max: usize,
    /// The signal's topic (no NUL: the config's validation).
    topic: CString,
    /// `record_headers` and the signal header: (name, value).
    headers: Vec<(CString, Vec<u8>)>,
    producer: Arc<Client>,
    metrics: Arc<Metrics>,
}

/// One message to produce: an OTLP protobuf request (kept for a retry), its key and topic.
pub(crate) struct Message {
    pub proto: Bytes,
    pub items: u64,
    pub key: Option<Vec<u8>>,
    pub topic: Option<String>,
}

impl Sender for KafkaSender {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        Box::pin(async move {
            let (messages, dropped) = self.messages(batch).map_err(SendError::permanent)?;
            if dropped > 0 {
                self.metrics.too_large.add(dropped);
                tracing::warn!(
                    exporter = %self.id,
                    items = dropped,
                    max_message_bytes = self.max,
                    "kafka: items larger than producer.max_message_bytes on their own were dropped"
                );
            }
            self.produce(messages).await
        })
    }
}

impl KafkaSender {
    /// The batch as messages, and the number of items dropped because one alone is too large.
    fn messages(&self, batch: &Batch) -> Result<(Vec<Message>, u64), String> {
        let mut out = Vec::new();
        let mut dropped = 0;
        let bad = |e: wire::WireError| format!("malformed request in the batch: {e}");
        match self.partitioning {
            Partitioning::Whole => {
                // Small payloads (an SDK's few spans) share a message while it fits; a large
                // one is a message of its own, its bytes not copied.
                let alone = (self.max / 16).max(MIN_ALONE);
                let mut acc: Vec<u8> = Vec::new();
                let mut acc_items = 0;
                for p in &batch.payloads {
                    let b = p.bytes();
                    if !acc.is_empty() && (acc.len() + b.len() > self.max || b.len() >= alone) {
                        let proto = Bytes::from(std::mem::take(&mut acc));
                        out.push(Message { proto, items: acc_items, key: None, topic: None });
                        acc_items = 0;
                    }
                    if b.len() > self.max {
                        dropped += self.fit(b.clone(), p.items(), None, None, &mut out).map_err(bad)?;
                    } else if b.len() >= alone || batch.payloads.len() == 1 {
                        out.push(Message { proto: b.clone(), items: p.items(), key: None, topic: None });
                    } else {
                        acc.extend_from_slice(b);
                        acc_items += p.items();
                    }
                }
                if !acc.is_empty() {
                    out.push(Message { proto: Bytes::from(acc), items: acc_items, key: None, topic: None });
                }
            }
            Partitioning::Resource { keyed } => {
                let mut scratch = Vec::new();
                for p in &batch.payloads {
                    for f in Fields::new(p.bytes()) {
                        let f = f.map_err(bad)?;
                        if f.number != 1 {
                            continue;
                        }
                        let entry = wire::expect_len(&f).map_err(bad)?;
                        let items = items_of(self.signal, entry);
                        if items == 0 {
                            continue;
                        }
                        let resource = resource_of(entry);
                        let key = keyed.then(|| identity::xhash_map_hash(resource, 1, &mut scratch).to_vec());
                        let topic = self.topic_for(resource);
                        let bytes = Bytes::copy_from_slice(f.raw);
                        dropped += self.fit(bytes, items, key, topic, &mut out).map_err(bad)?;
                    }
                }
            }
            Partitioning::TraceId => {
                let field = if self.signal == Signal::Logs { 9 } else { 1 };
                for p in &batch.payloads {
                    let mut ids: Vec<[u8; 16]> = Vec::new();
                    let mut route = |item: &[u8]| {
                        let id = trace_id(item, field);
                        match ids.iter().position(|x| *x == id) {
                            Some(i) => i,
                            None => {
                                ids.push(id);
                                ids.len() - 1
                            }
                        }
                    };
                    let count = |_: &[u8]| 1u64;
                    let parts = split::by_item(p.bytes(), &mut route, &count).map_err(bad)?;
                    let key_of = |i: usize| -> Option<Vec<u8>> {
                        let id = ids[i];
                        // Spans: the hex id even when all zero (an empty key, hashed); log
                        // records without one: no key (the collector's).
                        if id == [0; 16] {
                            return (self.signal == Signal::Traces).then(Vec::new);
                        }
                        Some(hex(&id))
                    };
                    match parts {
                        Split::Empty => {}
                        Split::One(i) => {
                            let key = key_of(i);
                            dropped += self.fit(p.bytes().clone(), p.items(), key, None, &mut out).map_err(bad)?
                        }
                        Split::Many(parts) => {
                            for part in parts {
                                let key = key_of(part.dest);
                                dropped +=
                                    self.fit(Bytes::from(part.bytes), part.items, key, None, &mut out).map_err(bad)?;
                            }
                        }
                    }
                }
            }
        }
        Ok((out, dropped))
    }

    /// The topic named by the resource's `topic_from_attribute`, when set and a non-empty string.
    fn topic_for(&self, resource: &[u8]) -> Option<String> {
        let attr = self.topic_from_attribute.as_deref()?;
        wire::attributes(resource, 1).map_while(Result::ok).find(|a| a.key == attr).and_then(|a| match a.value {
            wire::AnyValue::String(s) if !s.is_empty() => Some(s.to_string()),
            _ => None,
        })
    }

    /// Pushes `bytes` as one message, or split by item into messages that fit; returns the
    /// items dropped because one alone does not fit.
    fn fit(
        &self,
        bytes: Bytes,
        items: u64,
        key: Option<Vec<u8>>,
        topic: Option<String>,
        out: &mut Vec<Message>,
    ) -> Result<u64, wire::WireError> {
        if bytes.len() <= self.max {
            out.push(Message { proto: bytes, items, key, topic });
            return Ok(0);
        }
        let mut dropped = 0;
        for (part, n) in fit_parts(self.signal, &bytes, self.max)? {
            match part {
                Some(b) => {
                    out.push(Message { proto: Bytes::from(b), items: n, key: key.clone(), topic: topic.clone() })
                }
                None => dropped += n,
            }
        }
        Ok(dropped)
    }

    async fn produce(&self, messages: Vec<Message>) -> Result<(), SendError> {
        enum Wait {
            Rx(oneshot::Receiver<Result<(), KafkaError>>),
            Failed(KafkaError),
        }
        let mut waits = Vec::with_capacity(messages.len());
        for m in &messages {
            let value = match self.encoding {
                Encoding::OtlpProto => m.proto.clone(),
                Encoding::OtlpJson => Bytes::from(
                    sightline_otlp_json::protobuf_to_json(sightline_exporters::json_signal(self.signal), &m.proto)
                        .map_err(|e| SendError::permanent(format!("cannot encode OTLP/JSON: {e}")))?,
                ),
            };
            let own_topic;
            let topic: &CStr = match &m.topic {
                None => &self.topic,
                Some(t) => match CString::new(t.as_str()) {
                    Ok(t) => {
                        own_topic = t;
                        &own_topic
                    }
                    Err(_) => {
                        waits.push(Wait::Failed(KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTopic)));
                        continue;
                    }
                },
            };
            let (tx, rx) = oneshot::channel();
            let mut pending = Box::new(Pending { tx, value, key: m.key.clone() });
            let wait = loop {
                match self.producer.produce(topic, pending, &self.headers) {
                    Ok(()) => break Wait::Rx(rx),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), p)) => {
                        // The client's buffer is full: wait for deliveries to make room.
                        pending = p;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => break Wait::Failed(e),
                }
            };
            waits.push(wait);
        }
        let mut failed: Vec<(usize, KafkaError)> = Vec::new();
        for (i, w) in waits.into_iter().enumerate() {
            let r = match w {
                Wait::Rx(rx) => rx.await.unwrap_or(Err(KafkaError::Canceled)),
                Wait::Failed(e) => Err(e),
            };
            if let Err(e) = r {
                failed.push((i, e));
            }
        }
        let ok = messages.len() - failed.len();
        self.metrics.records.add(ok as u64);
        if failed.is_empty() {
            return Ok(());
        }
        self.metrics.records_failed.add(failed.len() as u64);
        let permanent = failed.iter().all(|(_, e)| is_permanent(e));
        let first = &failed[0].1;
        let message = format!("{} of {} Kafka messages failed: {first}", failed.len(), messages.len());
        let mut err = if permanent { SendError::permanent(message) } else { SendError::retryable(message) };
        if ok > 0 {
            let mut rest = Batch::new(self.signal);
            for (i, _) in &failed {
                let m = &messages[*i];
                rest.push(Payload::new(self.signal, m.proto.clone(), m.items, None));
            }
            err = err.with_remaining(rest);
        }
        Err(err)
    }
}

/// Errors a retry cannot fix.
fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidRecord
                | C::InvalidTopic
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::MessageBatchTooLarge
                | C::InvalidRequiredAcks
                | C::UnsupportedForMessageFormat
                | C::InvalidTimestamp
        )
    )
}

/// The trace id (field `field` of a span or log record), 16 zero bytes when absent or not 16
/// bytes long.
fn trace_id(item: &[u8], field: u32) -> [u8; 16] {
    Fields::new(item)
        .map_while(Result::ok)
        .find(|f| f.number == field)
        .and_then(|f| wire::expect_len(&f).ok())
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .unwrap_or([0; 16])
}

fn hex(id: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    id.iter().flat_map(|b| [HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]).collect()
}

/// The `resource` field (1) of a resource entry, empty when absent.
fn resource_of(entry: &[u8]) -> &[u8] {
    Fields::new(entry)
        .map_while(Result::ok)
        .find(|f| f.number == 1)
        .and_then(|f| wire::expect_len(&f).ok())
        .unwrap_or_default()
}

/// Items (spans, log records, data points) of one resource entry.
fn items_of(signal: Signal, entry: &[u8]) -> u64 {
    wire::count_items(signal, entry)
}

/// Items of a whole request.
fn request_items(signal: Signal, buf: &[u8]) -> Result<u64, wire::WireError> {
    let mut n = 0;
    for f in Fields::new(buf) {
        let f = f?;
        if f.number == 1 {
            n += wire::count_items(signal, wire::expect_len(&f)?);
        }
    }
    Ok(n)
}

/// A part of a split request: its bytes (`None`: an item too large on its own, left out) and
/// its items.
pub(crate) type FitPart = (Option<Vec<u8>>, u64);

/// Splits a request larger than `max` by item into requests of at most `max` bytes (each
/// with its resources and scopes around its items). An item that does not fit alone is left
/// out: `(None, its weight)`.
pub(crate) fn fit_parts(signal: Signal, buf: &[u8], max: usize) -> Result<Vec<FitPart>, wire::WireError> {
    // Budget per part: what the items add, leaving room for the resource and scope around
    // them; a part that still comes out too large is split again with half the budget.
    let mut budget = max;
    for _ in 0..24 {
        let (mut bucket, mut used) = (0usize, 0usize);
        let mut too_big: Vec<bool> = Vec::new();
        let mut route = |item: &[u8]| {
            if item.len() + 16 > max {
                too_big.push(true);
                return usize::MAX;
            }
            too_big.push(false);
            if used > 0 && used + item.len() + 6 > budget {
                bucket += 1;
                used = 0;
            }
            used += item.len() + 6;
            bucket
        };
        let count = |item: &[u8]| if signal == Signal::Metrics { wire::metric_points(item) } else { 1 };
        let parts = match split::by_item(buf, &mut route, &count)? {
            Split::Empty => return Ok(Vec::new()),
            Split::One(d) if d == usize::MAX => return Ok(vec![(None, request_items(signal, buf)?)]),
            Split::One(_) => vec![split::Part { dest: 0, bytes: buf.to_vec(), items: request_items(signal, buf)? }],
            Split::Many(p) => p,
        };
        if parts.iter().all(|p| p.dest == usize::MAX || p.bytes.len() <= max) {
            return Ok(parts.into_iter().map(|p| ((p.dest != usize::MAX).then_some(p.bytes), p.items)).collect());
        }
        budget /= 2;
    }
    Ok(vec![(None, request_items(signal, buf)?)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka reads each message's bytes in place (`Client::produce`) and must give them
    /// back with the message's delivery report, here the report of a message it gives up on
    /// because no broker listens. The send then fails as retryable, and nothing else holds
    /// the request's bytes afterwards.
    #[tokio::test]
    async fn a_message_given_up_on_hands_its_bytes_back_with_the_report() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let yaml = format!(
            "brokers: [\"127.0.0.1:{port}\"]\ntimeout: 300ms\nrecord_headers: [{{ name: fleet, value: eu }}]\nsignal_header: true\n"
        );
        let cfg: KafkaExporterConfig = serde_yaml_ng::from_str(&yaml).unwrap();
        let exporter = KafkaExporter::new("kafka", &cfg, &Registry::new()).unwrap();
        let sender = exporter.sender(Signal::Traces);
        // One empty `ResourceSpans`, held by the test and by the batch only.
        let proto = Bytes::from(vec![0x0a, 0x00]);
        let mut batch = Batch::new(Signal::Traces);
        batch.push(Payload::new(Signal::Traces, proto.clone(), 1, None));
        let err = sender.send(&batch).await.expect_err("no broker: the message times out");
        assert!(err.retryable, "{}", err.message);
        assert!(err.message.contains("1 of 1 Kafka messages failed"), "{}", err.message);
        drop(batch);
        // The report is answered before its `Pending` is dropped (by the task serving reports).
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while !proto.is_unique() && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(proto.is_unique(), "librdkafka's hold on the message's bytes was not released");
        // librdkafka calls the queue's event callback: the task is not left to its
        // once-a-second poll.
        assert!(exporter.producer.main.is_some(), "inside a runtime, a task serves the reports");
        assert!(exporter.producer.wake.events.load(std::sync::atomic::Ordering::Relaxed) > 0);
    }
}
