//! The `kafka` receiver: the collector contrib `kafkareceiver`'s options (v0.165), at least
//! once end to end. Each message enters through the same entry as OTLP requests
//! ([`sightline_core::ingest`]); its offset is committed only when every exporter of every
//! pipeline it feeds has taken responsibility for it ([`Completion`]): per partition, the
//! committed offset is the lowest offset still in flight (or one past the highest done), so an
//! offset is never committed past a message that is not safe yet. A message whose exporters
//! did not all take it is dispatched again (with backoff) until they do. A message that is
//! not valid OTLP is counted, logged with its topic, partition and offset, and skipped. When
//! the memory budget is exhausted the consumer pauses its partitions instead of buffering.

use crate::config::{AuthConfig, Encoding, MetadataConfig, apply_security, validate_security};
use crate::topics::TopicFilter;
use bytes::Bytes;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, TopicPartitionList};
use serde::Deserialize;
use sightline_core::ingest::{self, Consumers, ReceiverCounters};
use sightline_core::{Completion, Counter, MemoryBudget, Payload, ProcessError, Registry, Signal};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `receivers.kafka.<signal>`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalConfig {
    /// Topics (defaults `[otlp_spans]`, `[otlp_metrics]`, `[otlp_logs]`); a topic starting
    /// with `^` is a regular expression.
    pub topics: Option<Vec<String>>,
    /// `otlp_proto` (default) or `otlp_json`.
    pub encoding: Option<String>,
    /// Regular expressions of topics to leave out (only with regular-expression topics).
    pub exclude_topics: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoCommit {
    /// Commit the safe offsets in the background (default true); false: after each message
    /// that moves a partition's safe offset.
    pub enable: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for AutoCommit {
    fn default() -> Self {
        AutoCommit { enable: true, interval: Duration::from_secs(1) }
    }
}

/// `message_marking`: accepted for collector configs. Sightline always marks a message after
/// its pipelines have taken responsibility for it (the collector's `after: true`, stricter:
/// after the exporters, not the first consumer).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessageMarking {
    pub after: bool,
    /// Skip (mark) a message the pipelines refused for good instead of retrying it.
    pub on_error: bool,
    pub on_permanent_error: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderExtraction {
    pub extract_headers: bool,
    /// Header names; each present one becomes the resource attribute `kafka.header.<name>`.
    pub headers: Vec<String>,
}

/// `error_backoff`: the wait before a message is dispatched again.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    pub multiplier: f64,
    pub randomization_factor: f64,
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            enabled: false,
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(30),
            multiplier: 1.5,
            randomization_factor: 0.5,
            max_elapsed_time: Duration::ZERO,
        }
    }
}

/// `receivers.kafka`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaReceiverConfig {
    pub brokers: Vec<String>,
    /// Default `otel-collector`, the collector's (broker-side quotas and logs keyed on it keep
    /// applying when Sightline replaces a collector).
    pub client_id: String,
    /// The consumer group (default `otel-collector`, the collector's: Sightline replacing a
    /// collector continues from the group's committed offsets).
    pub group_id: String,
    pub protocol_version: Option<String>,
    pub rack_id: Option<String>,
    pub use_leader_epoch: Option<bool>,
    #[serde(with = "humantime_serde")]
    pub conn_idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub dial_timeout: Duration,
    pub metadata: MetadataConfig,
    pub auth: AuthConfig,
    pub tls: Option<sightline_exporters::TlsConfig>,
    pub traces: SignalConfig,
    pub metrics: SignalConfig,
    pub logs: SignalConfig,
    /// Removed in the collector v0.165: refused with the per-signal form.
    pub topic: Option<String>,
    pub encoding: Option<String>,
    /// `latest` (default) or `earliest`: where a group without a committed offset starts.
    pub initial_offset: String,
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    pub autocommit: AutoCommit,
    pub message_marking: MessageMarking,
    pub header_extraction: HeaderExtraction,
    pub min_fetch_size: i32,
    pub max_fetch_size: i32,
    pub max_partition_fetch_size: i32,
    #[serde(with = "humantime_serde")]
    pub max_fetch_wait: Duration,
    pub max_decompress_batch_bytes: Option<i64>,
    /// `range`, `roundrobin`, `cooperative-sticky`, in order of preference.
    pub group_rebalance_strategies: Vec<String>,
    pub group_instance_id: String,
    pub error_backoff: Backoff,
    /// Messages being dispatched at once per signal (default 64).
    pub max_in_flight: usize,
}

impl Default for KafkaReceiverConfig {
    fn default() -> Self {
        KafkaReceiverConfig {
            brokers: vec!["localhost:9092".into()],
            client_id: "otel-collector".into(),
            group_id: "otel-collector".into(),
            protocol_version: None,
            rack_id: None,
            use_leader_epoch: None,
            conn_idle_timeout: Duration::from_secs(540),
            dial_timeout: Duration::from_secs(10),
            metadata: MetadataConfig::default(),
            auth: AuthConfig::default(),
            tls: None,
            traces: SignalConfig::default(),
            metrics: SignalConfig::default(),
            logs: SignalConfig::default(),
            topic: None,
            encoding: None,
            initial_offset: "latest".into(),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            autocommit: AutoCommit::default(),
            message_marking: MessageMarking::default(),
            header_extraction: HeaderExtraction::default(),
            min_fetch_size: 1,
            max_fetch_size: 1_048_576,
            max_partition_fetch_size: 1_048_576,
            max_fetch_wait: Duration::from_millis(250),
            max_decompress_batch_bytes: None,
            group_rebalance_strategies: Vec::new(),
            group_instance_id: String::new(),
            error_backoff: Backoff::default(),
            max_in_flight: 64,
        }
    }
}

impl KafkaReceiverConfig {
    pub fn signal(&self, s: Signal) -> &SignalConfig {
        match s {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }

    pub fn topics(&self, s: Signal) -> Vec<String> {
        self.signal(s).topics.clone().unwrap_or_else(|| {
            vec![
                match s {
                    Signal::Traces => "otlp_spans",
                    Signal::Metrics => "otlp_metrics",
                    Signal::Logs => "otlp_logs",
                }
                .to_string(),
            ]
        })
    }

    pub fn encoding(&self, s: Signal) -> Encoding {
        self.signal(s).encoding.as_deref().and_then(Encoding::parse).unwrap_or(Encoding::OtlpProto)
    }

    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut err = |k: &str, m: String| out.push((k.to_string(), m));
        if self.brokers.is_empty() || self.brokers.iter().any(|b| b.trim().is_empty()) {
            err("brokers", "needs at least one host:port, and none empty".into());
        }
        if self.group_id.is_empty() {
            err("group_id", "must not be empty".into());
        }
        if self.topic.is_some() {
            err(
                "topic",
                "was removed in the collector v0.165: set traces.topics, metrics.topics and logs.topics".into(),
            );
        }
        if self.encoding.is_some() {
            err(
                "encoding",
                "was removed in the collector v0.165: set traces.encoding, metrics.encoding and logs.encoding".into(),
            );
        }
        for (name, s) in [("traces", &self.traces), ("metrics", &self.metrics), ("logs", &self.logs)] {
            if let Some(t) = &s.topics
                && (t.is_empty() || t.iter().any(String::is_empty))
            {
                err(&format!("{name}.topics"), "needs at least one topic, and none empty".into());
            }
            if let Some(e) = &s.encoding
                && Encoding::parse(e).is_none()
            {
                err(&format!("{name}.encoding"), format!("{e:?}: Sightline reads otlp_proto (default) and otlp_json"));
            }
            let regex = s.topics.as_ref().is_some_and(|t| t.iter().any(|t| t.starts_with('^')));
            if !s.exclude_topics.is_empty() && !regex {
                err(&format!("{name}.exclude_topics"), "needs regular-expression topics (starting with ^)".into());
            }
            for (i, e) in s.exclude_topics.iter().enumerate() {
                if e.is_empty() {
                    err(
                        &format!("{name}.exclude_topics.{i}"),
                        "must not be empty (it would exclude every topic)".into(),
                    );
                }
            }
            if let Err(e) = TopicFilter::new(s.topics.as_deref().unwrap_or_default(), &s.exclude_topics)
                && let Some((key, why)) = e.split_once(": ")
            {
                err(&format!("{name}.{key}"), why.into());
            }
        }
        if !matches!(self.initial_offset.as_str(), "latest" | "earliest") {
            err("initial_offset", format!("{:?}: use latest or earliest", self.initial_offset));
        }
        for s in &self.group_rebalance_strategies {
            if !matches!(s.as_str(), "range" | "roundrobin" | "cooperative-sticky") {
                err(
                    "group_rebalance_strategies",
                    format!("{s:?}: librdkafka offers range, roundrobin and cooperative-sticky"),
                );
            }
        }
        if self.max_fetch_size < self.min_fetch_size {
            err("max_fetch_size", "must not be less than min_fetch_size".into());
        }
        if self.max_in_flight == 0 {
            err("max_in_flight", "must be at least 1".into());
        }
        for (i, h) in self.header_extraction.headers.iter().enumerate() {
            if h.is_empty() {
                err(&format!("header_extraction.headers.{i}"), "must not be empty".into());
            }
        }
        out.extend(validate_security(&self.auth, self.tls.as_ref()));
        out
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.join(","))
            .set("client.id", &self.client_id)
            .set("group.id", &self.group_id)
            .set("auto.offset.reset", &self.initial_offset)
            .set("session.timeout.ms", self.session_timeout.as_millis().to_string())
            .set("heartbeat.interval.ms", self.heartbeat_interval.as_millis().to_string())
            // Offsets are stored only when safe (see the module's documentation).
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", self.autocommit.enable.to_string())
            .set("auto.commit.interval.ms", self.autocommit.interval.as_millis().max(1).to_string())
            .set("fetch.min.bytes", self.min_fetch_size.max(1).to_string())
            .set("fetch.max.bytes", self.max_fetch_size.max(1).to_string())
            .set("max.partition.fetch.bytes", self.max_partition_fetch_size.max(1).to_string())
            .set("fetch.wait.max.ms", self.max_fetch_wait.as_millis().to_string())
            .set("socket.connection.setup.timeout.ms", self.dial_timeout.as_millis().max(1000).to_string())
            .set("connections.max.idle.ms", self.conn_idle_timeout.as_millis().to_string())
            .set("topic.metadata.refresh.interval.ms", self.metadata.refresh_interval.as_millis().to_string());
        if !self.group_rebalance_strategies.is_empty() {
            c.set("partition.assignment.strategy", self.group_rebalance_strategies.join(","));
        }
        if !self.group_instance_id.is_empty() {
            c.set("group.instance.id", &self.group_instance_id);
        }
        if let Some(r) = &self.rack_id {
            c.set("client.rack", r);
        }
        apply_security(&mut c, &self.auth, self.tls.as_ref());
        c
    }
}

/// Offsets in flight per partition, and the safe offset to commit.
#[derive(Default)]
struct Partition {
    /// Bumped when the partition is assigned again: completions of an older assignment are
    /// ignored (their messages are redelivered to whoever owns the partition now).
    generation: u64,
    in_flight: BTreeSet<i64>,
    /// One past the highest offset seen.
    next: i64,
    /// The offset last stored for commit.
    stored: i64,
}

type Key = (String, i32);

#[derive(Default)]
struct Tracker {
    partitions: Mutex<HashMap<Key, Partition>>,
    generations: std::sync::atomic::AtomicU64,
}

impl Tracker {
    fn begin(&self, key: &Key, offset: i64) -> u64 {
        let mut map = self.partitions.lock().unwrap_or_else(PoisonError::into_inner);
        let p = map.entry(key.clone()).or_insert_with(|| Partition {
            generation: self.generations.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            stored: -1,
            ..Partition::default()
        });
        p.in_flight.insert(offset);
        p.next = p.next.max(offset + 1);
        p.generation
    }

    /// The offset done; `Some(offset to store)` when the partition's safe offset moved.
    fn done(&self, key: &Key, generation: u64, offset: i64) -> Option<i64> {
        let mut map = self.partitions.lock().unwrap_or_else(PoisonError::into_inner);
        let p = map.get_mut(key).filter(|p| p.generation == generation)?;
        p.in_flight.remove(&offset);
        let safe = p.in_flight.first().copied().unwrap_or(p.next);
        (safe > p.stored).then(|| {
            p.stored = safe;
            safe
        })
    }

    fn forget(&self, keys: impl Iterator<Item = Key>) {
        let mut map = self.partitions.lock().unwrap_or_else(PoisonError::into_inner);
        for k in keys {
            map.remove(&k);
        }
    }
}

struct Ctx {
    id: Arc<str>,
    tracker: Arc<Tracker>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(receiver = %self.id, facility = fac, "kafka: {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(receiver = %self.id, facility = fac, "kafka: {message}"),
            _ => tracing::debug!(receiver = %self.id, facility = fac, "kafka: {message}"),
        }
    }
}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _base: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let keys = |tpl: &TopicPartitionList| -> Vec<Key> {
            tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
        };
        match rebalance {
            Rebalance::Assign(tpl) | Rebalance::Revoke(tpl) => {
                tracing::info!(receiver = %self.id, partitions = tpl.count(), "kafka: rebalance {rebalance:?}");
                self.tracker.forget(keys(tpl).into_iter());
            }
            Rebalance::Error(e) => tracing::warn!(receiver = %self.id, "kafka: rebalance error: {e}"),
        }
    }
}

struct Metrics {
    receiver: ReceiverCounters,
    messages: Counter,
    invalid: Counter,
    oversized: Counter,
    redelivered: Counter,
}

/// Starts one consumer per signal that has pipelines.
pub fn start(
    id: &str,
    cfg: &KafkaReceiverConfig,
    consumers: Consumers,
    budget: MemoryBudget,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, String> {
    let errs = cfg.validate();
    if let Some((k, m)) = errs.first() {
        return Err(format!("{k}: {m}"));
    }
    let consumers = Arc::new(consumers);
    let mut tasks = Vec::new();
    for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        if consumers.get(signal).is_empty() {
            continue;
        }
        let id: Arc<str> = id.into();
        let tracker = Arc::new(Tracker::default());
        let consumer: StreamConsumer<Ctx> = cfg
            .client_config()
            .create_with_context(Ctx { id: id.clone(), tracker: tracker.clone() })
            .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
        let topics = cfg.topics(signal);
        let consumer = Arc::new(consumer);
        match TopicFilter::new(&topics, &cfg.signal(signal).exclude_topics)? {
            Some(filter) => {
                // The topic listing has a client of its own: a listing still waiting on brokers
                // that do not answer then holds neither the consumer (its close) nor the exit.
                let lister: BaseConsumer = cfg
                    .client_config()
                    .create()
                    .map_err(|e| format!("cannot create the Kafka client that lists topics: {e}"))?;
                let resolve =
                    resolve_topics(consumer.clone(), lister, filter, cfg.metadata.refresh_interval, id.clone());
                tasks.push(tokio::spawn(with_shutdown(resolve, shutdown.clone())));
            }
            None => {
                let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
                consumer.subscribe(&refs).map_err(|e| format!("cannot subscribe to {topics:?}: {e}"))?;
            }
        }
        let metrics = Arc::new(Metrics {
            receiver: ReceiverCounters::new(registry, &id, "kafka", signal),
            messages: registry.counter(
                "sightline_kafka_receiver_messages_total",
                "Kafka messages read (each committed once its data is safe).",
                &[("receiver", &*id), ("signal", signal.as_str())],
            ),
            invalid: registry.counter(
                "sightline_kafka_receiver_invalid_messages_total",
                "Kafka messages skipped because they are not valid OTLP.",
                &[("receiver", &*id), ("signal", signal.as_str())],
            ),
            oversized: registry.counter(
                "sightline_kafka_receiver_oversized_messages_total",
                "Kafka messages skipped because they are larger than the memory budget.",
                &[("receiver", &*id), ("signal", signal.as_str())],
            ),
            redelivered: registry.counter(
                "sightline_kafka_receiver_redispatched_messages_total",
                "Messages dispatched again because an exporter did not take them.",
                &[("receiver", &*id), ("signal", signal.as_str())],
            ),
        });
        let run = Run {
            id,
            signal,
            encoding: cfg.encoding(signal),
            headers: cfg.header_extraction.extract_headers.then(|| cfg.header_extraction.headers.clone()),
            skip_refused: cfg.message_marking.on_permanent_error.unwrap_or(cfg.message_marking.on_error),
            backoff: cfg.error_backoff.clone(),
            manual_commit: !cfg.autocommit.enable,
            consumer,
            tracker,
            consumers: consumers.clone(),
            budget: budget.clone(),
            metrics,
            in_flight: Arc::new(tokio::sync::Semaphore::new(cfg.max_in_flight)),
        };
        tasks.push(tokio::spawn(run.run(shutdown.clone())));
    }
    Ok(tasks)
}

async fn with_shutdown(f: impl Future<Output = ()>, shutdown: CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        () = f => {}
    }
}

/// A regex subscription ([`TopicFilter`]): lists the cluster's topics now and every `every`,
/// and subscribes `consumer` to the matching ones whenever they change.
/// Each listing runs on a thread of its own rather than the runtime's blocking pool, which
/// the runtime waits for at exit.
async fn resolve_topics(
    consumer: Arc<StreamConsumer<Ctx>>,
    lister: BaseConsumer,
    filter: TopicFilter,
    every: Duration,
    id: Arc<str>,
) {
    let (lister, filter) = (Arc::new(lister), Arc::new(filter));
    let every = every.max(Duration::from_millis(100));
    let mut current: Option<Vec<String>> = None;
    loop {
        let (c, f) = (lister.clone(), filter.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new().name("sl-kafka-topics".into()).spawn(move || {
            let listed = c
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|m| f.select(m.topics().iter().filter(|t| t.error().is_none()).map(|t| t.name())));
            // The client is never assigned partitions: this serves its queued events (broker
            // errors), which would otherwise pile up.
            while c.poll(Duration::ZERO).is_some() {}
            let _ = tx.send(listed);
        });
        let listed = match spawned {
            Ok(_) => rx.await.map_err(|_| "the listing thread ended without an answer".to_string()),
            Err(e) => Err(format!("cannot start the listing thread: {e}")),
        };
        match listed {
            Ok(Ok(names)) if current.as_ref() != Some(&names) => {
                let done = if names.is_empty() {
                    consumer.unsubscribe();
                    Ok(())
                } else {
                    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                    consumer.subscribe(&refs)
                };
                match done {
                    Ok(()) => {
                        tracing::info!(receiver = %id, topics = ?names, "kafka: subscribed to the topics that match");
                        current = Some(names);
                    }
                    Err(e) => tracing::warn!(receiver = %id, "kafka: cannot subscribe to {names:?}: {e}"),
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(receiver = %id, "kafka: cannot list the cluster's topics: {e}"),
            Err(e) => tracing::warn!(receiver = %id, "kafka: topic listing failed: {e}"),
        }
        // Until the first listing succeeds, try again soon.
        let wait = if current.is_some() { every } else { every.min(Duration::from_secs(1)) };
        tokio::time::sleep(wait).await;
    }
}

struct Run {
    id: Arc<str>,
    signal: Signal,
    encoding: Encoding,
    headers: Option<Vec<String>>,
    skip_refused: bool,
    backoff: Backoff,
    manual_commit: bool,
    consumer: Arc<StreamConsumer<Ctx>>,
    tracker: Arc<Tracker>,
    consumers: Arc<Consumers>,
    budget: MemoryBudget,
    metrics: Arc<Metrics>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// One message, copied out of the consumer's buffer.
struct Msg {
    key: Key,
    offset: i64,
    generation: u64,
    value: Bytes,
    headers: Vec<(String, String)>,
}

impl Run {
    async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        loop {
            let m = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = this.consumer.recv() => m,
            };
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(receiver = %this.id, "kafka: consume error: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let key: Key = (m.topic().to_string(), m.partition());
            let offset = m.offset();
            let value = m.payload().unwrap_or_default();
            let headers = match (&this.headers, m.headers()) {
                (Some(names), Some(h)) => names
                    .iter()
                    .filter_map(|n| {
                        h.iter()
                            .find(|x| x.key == n.as_str())
                            .and_then(|x| x.value)
                            .map(|v| (n.clone(), String::from_utf8_lossy(v).into_owned()))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            this.metrics.messages.inc();
            let generation = this.tracker.begin(&key, offset);
            // Memory: a message larger than the whole budget can never be admitted.
            if value.len() > this.budget.limit() {
                this.metrics.oversized.inc();
                tracing::warn!(
                    receiver = %this.id, topic = %key.0, partition = key.1, offset, bytes = value.len(),
                    "kafka: message larger than the memory budget skipped"
                );
                this.finish(&key, generation, offset);
                continue;
            }
            let permit = match this.budget.try_acquire(value.len()) {
                Some(p) => p,
                None => {
                    // Pause fetching instead of buffering; resume once there is room.
                    let assigned = this.consumer.assignment().ok();
                    if let Some(a) = &assigned {
                        let _ = this.consumer.pause(a);
                    }
                    let p = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        p = this.budget.acquire(value.len()) => p,
                    };
                    if let Some(a) = &assigned {
                        let _ = this.consumer.resume(a);
                    }
                    p
                }
            };
            let msg = Msg { key, offset, generation, value: Bytes::copy_from_slice(value), headers };
            drop(m);
            let slot = tokio::select! {
                _ = shutdown.cancelled() => break,
                s = this.in_flight.clone().acquire_owned() => s,
            };
            let Ok(slot) = slot else { break };
            let run = this.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                run.handle(msg, permit, stop).await;
                drop(slot);
            });
        }
        // In-flight messages finish (or not) on their own; what is not committed is read
        // again by whoever owns the partition next.
        if this.manual_commit {
            let _ = this.consumer.commit_consumer_state(CommitMode::Sync);
        }
    }

    fn finish(&self, key: &Key, generation: u64, offset: i64) {
        if let Some(safe) = self.tracker.done(key, generation, offset) {
            // `rd_kafka_offsets_store` takes the next offset to read as it is (the per-topic
            // `rd_kafka_offset_store` behind `store_offset` would add one to it).
            let mut tpl = TopicPartitionList::new();
            if tpl.add_partition_offset(&key.0, key.1, rdkafka::Offset::Offset(safe)).is_err() {
                return;
            }
            match self.consumer.store_offsets(&tpl) {
                Ok(()) if self.manual_commit => {
                    let _ = self.consumer.commit_consumer_state(CommitMode::Async);
                }
                Ok(()) => {}
                Err(e) => tracing::debug!(receiver = %self.id, "kafka: offset not stored (partition revoked?): {e}"),
            }
        }
    }

    async fn handle(&self, msg: Msg, permit: sightline_core::MemoryPermit, stop: CancellationToken) {
        let Msg { key, offset, generation, value, headers } = msg;
        let v = match self.decode(value, &headers).and_then(|proto| ingest::validate(self.signal, proto)) {
            Ok(v) => v,
            Err(why) => {
                self.metrics.invalid.inc();
                tracing::warn!(
                    receiver = %self.id, topic = %key.0, partition = key.1, offset,
                    "kafka: message skipped, not valid OTLP: {why}"
                );
                self.finish(&key, generation, offset);
                return;
            }
        };
        if v.rejected > 0 {
            self.metrics.receiver.refused.add(v.rejected);
            tracing::warn!(receiver = %self.id, topic = %key.0, partition = key.1, offset, "kafka: {}", v.message);
        }
        let mut permit = Some(permit);
        let mut delay = self.backoff.initial_interval.max(Duration::from_millis(50));
        let started = tokio::time::Instant::now();
        loop {
            let (completion, answer) = Completion::new();
            let payload = Payload::new(self.signal, v.proto.clone(), v.items, permit.take())
                .with_completion(completion.clone())
                .with_entry_items(v.entry_items.clone());
            let outcome = ingest::dispatch(self.consumers.get(self.signal), payload).await;
            completion.finish(true);
            drop(completion);
            let safe = match outcome {
                Ok(d) if d.queued == 0 && d.dropped > 0 => false,
                Ok(_) => answer.await.unwrap_or(false),
                Err(ProcessError::Refused { message } | ProcessError::Invalid(message)) if self.skip_refused => {
                    self.metrics.receiver.refused.add(v.items);
                    tracing::warn!(
                        receiver = %self.id, topic = %key.0, partition = key.1, offset,
                        "kafka: message refused by the pipeline and skipped (message_marking.on_error): {message}"
                    );
                    self.finish(&key, generation, offset);
                    return;
                }
                Err(e) => {
                    tracing::warn!(receiver = %self.id, topic = %key.0, partition = key.1, offset, "kafka: {e:?}");
                    false
                }
            };
            if safe {
                self.metrics.receiver.accepted.add(v.items);
                self.finish(&key, generation, offset);
                return;
            }
            if self.backoff.enabled
                && !self.backoff.max_elapsed_time.is_zero()
                && started.elapsed() > self.backoff.max_elapsed_time
            {
                // Given up: not committed, so it is read again after a restart or rebalance.
                self.metrics.receiver.refused.add(v.items);
                tracing::error!(
                    receiver = %self.id, topic = %key.0, partition = key.1, offset,
                    "kafka: message not delivered within error_backoff.max_elapsed_time; its partition stays behind it"
                );
                return;
            }
            self.metrics.redelivered.inc();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay.mul_f64(self.backoff.multiplier.max(1.0))).min(self.backoff.max_interval.max(delay));
        }
    }

    /// The message as an OTLP protobuf request, with the extracted headers on every resource.
    fn decode(&self, value: Bytes, headers: &[(String, String)]) -> Result<Bytes, String> {
        let proto = match self.encoding {
            Encoding::OtlpProto => value,
            Encoding::OtlpJson => Bytes::from(
                sightline_otlp_json::json_to_protobuf(sightline_exporters::json_signal(self.signal), &value)
                    .map_err(|e| format!("invalid OTLP/JSON: {e}"))?,
            ),
        };
        if headers.is_empty() {
            return Ok(proto);
        }
        crate::headers::add_to_resources(self.signal, &proto, headers).map(Bytes::from)
    }
}
