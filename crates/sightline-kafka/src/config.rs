//! `exporters.kafka`: the options of the collector contrib's `kafkaexporter` (v0.165), with its
//! names and defaults, and how each maps to librdkafka's settings (ADR 24). Options Sightline
//! does not implement are refused by `validate` with the reason, never ignored.

use serde::Deserialize;
use sightline_core::Signal;
use sightline_core::driver::{QueueConfig, RetryConfig};
use std::time::Duration;

fn default_brokers() -> Vec<String> {
    vec!["localhost:9092".into()]
}

fn default_client_id() -> String {
    "otel-collector".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// `traces`, `metrics`, `logs`: where and how one signal is written.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SignalConfig {
    /// The topic (defaults `otlp_spans`, `otlp_metrics`, `otlp_logs`).
    pub topic: Option<String>,
    /// `otlp_proto` (default) or `otlp_json`.
    pub encoding: Option<String>,
    /// Not supported (the collector's client-metadata routing): refused when set.
    pub topic_from_metadata_key: Option<String>,
    /// Not supported: refused when set.
    pub message_key_from_metadata_key: Option<String>,
}

/// A message's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// The `Export*ServiceRequest` protobuf encoding.
    OtlpProto,
    /// OTLP/JSON.
    OtlpJson,
}

impl Encoding {
    pub fn parse(s: &str) -> Option<Encoding> {
        match s {
            "otlp_proto" => Some(Encoding::OtlpProto),
            "otlp_json" => Some(Encoding::OtlpJson),
            _ => None,
        }
    }
}

/// The collector's encodings Sightline does not write, with the reason.
const OTHER_ENCODINGS: &[&str] = &["jaeger_proto", "jaeger_json", "zipkin_proto", "zipkin_json", "raw"];

/// `record_headers` entry: a header written on every message.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecordHeader {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// `record_partitioner.sticky_key.hasher`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Hasher {
    /// FNV-1a 32 of the key as a signed 32-bit integer modulo the partition count, made
    /// positive (sarama's hash partitioner; the collector's default).
    #[default]
    SaramaCompat,
    /// Kafka's Java client: murmur2 of the key, top bit cleared, modulo the partition count.
    Murmur2,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StickyKey {
    pub hasher: Hasher,
}

/// `record_partitioner`: how a keyed message picks its partition (messages without a key go
/// to librdkafka's sticky partition, as with the collector).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordPartitioner {
    pub sticky_key: Option<StickyKey>,
    /// Not supported: refused when set.
    pub round_robin: Option<serde_yaml_ng::Value>,
    /// Not supported: refused when set.
    pub least_backup: Option<serde_yaml_ng::Value>,
    /// Not supported: refused when set.
    pub extension: Option<String>,
}

impl RecordPartitioner {
    pub fn hasher(&self) -> Hasher {
        self.sticky_key.as_ref().map(|s| s.hasher).unwrap_or_default()
    }
}

/// `required_acks`: 0, 1, -1 or `all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acks(pub i8);

impl Default for Acks {
    fn default() -> Self {
        Acks(1)
    }
}

impl<'de> Deserialize<'de> for Acks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Acks, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n @ -1..=1) => Ok(Acks(n as i8)),
            Raw::Str(s) if s == "all" => Ok(Acks(-1)),
            Raw::Int(n) => Err(serde::de::Error::custom(format!("required_acks {n}: use 0, 1, -1 or all"))),
            Raw::Str(s) => Err(serde::de::Error::custom(format!("required_acks {s:?}: use 0, 1, -1 or all"))),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionParams {
    /// The codec's level (0 or -1: its default).
    pub level: i32,
}

/// `producer`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// The largest message (default 1000000 bytes). Sightline splits a request that does not
    /// fit into several messages (by resource, scope and item); one item larger than this is
    /// refused, counted and logged.
    pub max_message_bytes: usize,
    /// The largest request to a broker (default and minimum 100 MiB).
    pub max_broker_write_bytes: usize,
    /// 0 (no acknowledgement), 1 (the leader's, default) or -1 / `all` (every in-sync
    /// replica, with idempotent produce).
    pub required_acks: Acks,
    /// `none` (default), `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    pub compression_params: CompressionParams,
    /// Messages buffered in the client at most (default 10000).
    pub flush_max_messages: usize,
    /// Requests in flight per broker (default 1; must be 1 with `required_acks: all`).
    pub max_inflight_requests_per_broker: usize,
    /// Let the broker create a topic on first use (default true; the broker must allow it).
    pub allow_auto_topic_creation: bool,
    /// How long the client waits to fill a batch (default 10ms).
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            max_message_bytes: 1_000_000,
            max_broker_write_bytes: 100 << 20,
            required_acks: Acks::default(),
            compression: "none".into(),
            compression_params: CompressionParams::default(),
            flush_max_messages: 10_000,
            max_inflight_requests_per_broker: 1,
            allow_auto_topic_creation: true,
            linger: Duration::from_millis(10),
        }
    }
}

/// `auth.sasl`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub username: String,
    pub password: String,
    /// Not supported (AWS MSK IAM): refused when set.
    pub aws_msk: Option<serde_yaml_ng::Value>,
    /// Not supported: refused when set.
    pub oauthbearer_token_source: Option<String>,
}

/// `auth`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub sasl: Option<SaslConfig>,
    /// Not supported: refused when set.
    pub kerberos: Option<serde_yaml_ng::Value>,
}

/// `metadata`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    /// Deprecated in the collector, no effect there or here.
    pub full: bool,
    /// How often cluster metadata is refreshed (default 10m).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    pub retry: MetadataRetry,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig { full: true, refresh_interval: Duration::from_secs(600), retry: MetadataRetry::default() }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataRetry {
    /// Retries of a failed broker request (default 20).
    pub max: u32,
    /// The first backoff (default 250ms).
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
}

impl Default for MetadataRetry {
    fn default() -> Self {
        MetadataRetry { max: 20, backoff: Duration::from_millis(250) }
    }
}

/// `exporters.kafka`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaExporterConfig {
    /// Bootstrap brokers, `host:port` (default `localhost:9092`).
    pub brokers: Vec<String>,
    /// The client id the brokers see (default `otel-collector`, the collector's).
    pub client_id: String,
    /// Accepted for collector configs; librdkafka negotiates API versions with each broker.
    pub protocol_version: Option<String>,
    pub rack_id: Option<String>,
    pub use_leader_epoch: Option<bool>,
    #[serde(with = "humantime_serde")]
    pub conn_idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub dial_timeout: Duration,
    pub metadata: MetadataConfig,
    pub auth: AuthConfig,
    /// Present: TLS to the brokers (the collector's `tls` block; `insecure: true` without
    /// `ca_file` means plain text).
    pub tls: Option<sightline_exporters::TlsConfig>,
    pub traces: SignalConfig,
    pub metrics: SignalConfig,
    pub logs: SignalConfig,
    /// Removed in the collector v0.165 (use `traces.topic` etc.): refused with that advice.
    pub topic: Option<String>,
    /// Removed in the collector v0.165 (use `traces.encoding` etc.): refused.
    pub encoding: Option<String>,
    /// A resource attribute whose string value names the topic (default: none). Requests are
    /// written one message per resource when set.
    pub topic_from_attribute: String,
    /// Messages keyed by trace id (32 lowercase hex digits), one per trace.
    pub partition_traces_by_id: bool,
    /// Messages keyed by the resource's attributes (pdata's `xhash.MapHash`), one per resource.
    pub partition_metrics_by_resource_attributes: bool,
    pub partition_logs_by_resource_attributes: bool,
    /// Log messages keyed by trace id, one per trace.
    pub partition_logs_by_trace_id: bool,
    pub record_partitioner: RecordPartitioner,
    pub record_headers: Vec<RecordHeader>,
    /// Adds header `otelcol.signal` (`traces`, `metrics` or `logs`).
    pub signal_header: bool,
    /// Not supported: refused when not empty.
    pub include_metadata_keys: Vec<String>,
    pub producer: ProducerConfig,
    /// How long one send may take, the brokers' acknowledgements included (default 5s).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub sending_queue: QueueConfig,
    pub retry_on_failure: RetryConfig,
}

impl Default for KafkaExporterConfig {
    fn default() -> Self {
        KafkaExporterConfig {
            brokers: default_brokers(),
            client_id: default_client_id(),
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
            topic_from_attribute: String::new(),
            partition_traces_by_id: false,
            partition_metrics_by_resource_attributes: false,
            partition_logs_by_resource_attributes: false,
            partition_logs_by_trace_id: false,
            record_partitioner: RecordPartitioner::default(),
            record_headers: Vec::new(),
            signal_header: false,
            include_metadata_keys: Vec::new(),
            producer: ProducerConfig::default(),
            timeout: default_timeout(),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }
}

/// How one signal's requests are cut into messages and keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioning {
    /// The request as it is (split only to fit `max_message_bytes`), no key.
    Whole,
    /// One message per resource; keyed by its attributes' hash when `keyed`.
    Resource { keyed: bool },
    /// One message per trace id, keyed by it.
    TraceId,
}

impl KafkaExporterConfig {
    pub fn signal(&self, s: Signal) -> &SignalConfig {
        match s {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }

    pub fn topic(&self, s: Signal) -> &str {
        match (&self.signal(s).topic, s) {
            (Some(t), _) => t,
            (None, Signal::Traces) => "otlp_spans",
            (None, Signal::Metrics) => "otlp_metrics",
            (None, Signal::Logs) => "otlp_logs",
        }
    }

    pub fn encoding(&self, s: Signal) -> Encoding {
        self.signal(s).encoding.as_deref().and_then(Encoding::parse).unwrap_or(Encoding::OtlpProto)
    }

    pub fn partitioning(&self, s: Signal) -> Partitioning {
        let by_attr = !self.topic_from_attribute.is_empty();
        match s {
            Signal::Traces if self.partition_traces_by_id => Partitioning::TraceId,
            Signal::Metrics if self.partition_metrics_by_resource_attributes => Partitioning::Resource { keyed: true },
            Signal::Logs if self.partition_logs_by_resource_attributes => Partitioning::Resource { keyed: true },
            Signal::Logs if self.partition_logs_by_trace_id && !by_attr => Partitioning::TraceId,
            _ if by_attr => Partitioning::Resource { keyed: false },
            _ => Partitioning::Whole,
        }
    }

    /// Every mistake, keyed by option (relative to the exporter's section).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut err = |k: &str, m: String| out.push((k.to_string(), m));
        if self.brokers.is_empty() || self.brokers.iter().any(|b| b.trim().is_empty()) {
            err("brokers", "needs at least one host:port, and none empty".into());
        }
        for b in &self.brokers {
            if !b.trim().is_empty() && b.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err()) {
                err("brokers", format!("{b:?} is not host:port"));
            }
        }
        if let Some(v) = &self.protocol_version
            && !v.split('.').all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
        {
            err("protocol_version", format!("{v:?} is not a Kafka version such as 2.1.0"));
        }
        if self.topic.is_some() {
            err("topic", "was removed in the collector v0.165: set traces.topic, metrics.topic and logs.topic".into());
        }
        if self.encoding.is_some() {
            err(
                "encoding",
                "was removed in the collector v0.165: set traces.encoding, metrics.encoding and logs.encoding".into(),
            );
        }
        for (name, s) in [("traces", &self.traces), ("metrics", &self.metrics), ("logs", &self.logs)] {
            if let Some(t) = &s.topic
                && t.is_empty()
            {
                err(&format!("{name}.topic"), "must not be empty (remove it for the default)".into());
            }
            if s.topic.as_deref().is_some_and(|t| t.contains('\0')) {
                err(&format!("{name}.topic"), "must not contain a NUL character".into());
            }
            if let Some(e) = &s.encoding
                && Encoding::parse(e).is_none()
            {
                let why = if OTHER_ENCODINGS.contains(&e.as_str()) {
                    "is a collector encoding Sightline does not write (it writes OTLP only)"
                } else {
                    "is not an encoding"
                };
                err(&format!("{name}.encoding"), format!("{e:?} {why}: use otlp_proto (default) or otlp_json"));
            }
            for (k, v) in [
                ("topic_from_metadata_key", &s.topic_from_metadata_key),
                ("message_key_from_metadata_key", &s.message_key_from_metadata_key),
            ] {
                if v.as_deref().is_some_and(|v| !v.is_empty()) {
                    err(
                        &format!("{name}.{k}"),
                        "is not supported by Sightline (client metadata does not reach exporters)".into(),
                    );
                }
            }
        }
        if self.partition_logs_by_resource_attributes && self.partition_logs_by_trace_id {
            err(
                "partition_logs_by_trace_id",
                "partition_logs_by_resource_attributes and partition_logs_by_trace_id cannot both be enabled".into(),
            );
        }
        if !self.include_metadata_keys.is_empty() {
            err(
                "include_metadata_keys",
                "is not supported by Sightline (client metadata does not reach exporters)".into(),
            );
        }
        let rp = &self.record_partitioner;
        for (k, set) in [
            ("round_robin", rp.round_robin.is_some()),
            ("least_backup", rp.least_backup.is_some()),
            ("extension", rp.extension.is_some()),
        ] {
            if set {
                err(
                    &format!("record_partitioner.{k}"),
                    "is not supported by Sightline: use sticky_key (hasher sarama_compat or murmur2)".into(),
                );
            }
        }
        for (i, h) in self.record_headers.iter().enumerate() {
            if h.name.is_empty() {
                err(&format!("record_headers.{i}.name"), "must not be empty".into());
            }
            if h.name.contains('\0') {
                err(&format!("record_headers.{i}.name"), "must not contain a NUL character".into());
            }
            if self.signal_header && h.name == "otelcol.signal" {
                err(&format!("record_headers.{i}.name"), "otelcol.signal is written by signal_header".into());
            }
        }
        let p = &self.producer;
        if p.max_message_bytes == 0 || p.max_message_bytes > i32::MAX as usize {
            err("producer.max_message_bytes", "must be between 1 and 2147483647".into());
        }
        if p.max_broker_write_bytes < 100 << 20 {
            err("producer.max_broker_write_bytes", "must be at least 104857600 (100 MiB)".into());
        } else if p.max_message_bytes > p.max_broker_write_bytes {
            err("producer.max_message_bytes", "must not exceed producer.max_broker_write_bytes".into());
        }
        let level = p.compression_params.level;
        match p.compression.as_str() {
            "none" | "snappy" | "lz4" if level != 0 && level != -1 => {
                err("producer.compression_params.level", format!("{} takes no level", p.compression))
            }
            "gzip" if !(level == 0 || level == -1 || (1..=9).contains(&level)) => {
                err("producer.compression_params.level", "gzip levels are 1 to 9".into())
            }
            "zstd" if !matches!(level, -1 | 0 | 1 | 3 | 6 | 11) => {
                err("producer.compression_params.level", "zstd levels are 1, 3, 6 and 11".into())
            }
            "none" | "gzip" | "snappy" | "lz4" | "zstd" => {}
            other => err(
                "producer.compression",
                format!("{other:?} is not a compression: use none, gzip, snappy, lz4 or zstd"),
            ),
        }
        if p.flush_max_messages == 0 {
            err("producer.flush_max_messages", "must be at least 1".into());
        }
        if p.max_inflight_requests_per_broker == 0 {
            err("producer.max_inflight_requests_per_broker", "must be at least 1".into());
        } else if p.required_acks.0 == -1 && p.max_inflight_requests_per_broker != 1 {
            err("producer.max_inflight_requests_per_broker", "must be 1 with required_acks all (-1)".into());
        }
        let out_tls = validate_security(&self.auth, self.tls.as_ref());
        if self.timeout.is_zero() {
            err("timeout", "must be greater than 0".into());
        }
        out.extend(out_tls);
        sightline_exporters_common(self, &mut out);
        out
    }
}

/// The driver options' checks, shared with every exporter.
fn sightline_exporters_common(c: &KafkaExporterConfig, out: &mut Vec<(String, String)>) {
    let mut common = Vec::new();
    sightline_exporters::validate_common(c.timeout, &c.sending_queue, &c.retry_on_failure, &mut common);
    out.extend(common.into_iter().filter(|(k, _)| k != "timeout"));
}

/// The checks of `auth` and `tls`, shared by the exporter and the receiver.
pub fn validate_security(auth: &AuthConfig, tls: Option<&sightline_exporters::TlsConfig>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut err = |k: &str, m: String| out.push((k.to_string(), m));
    if let Some(s) = &auth.sasl {
        match s.mechanism.as_str() {
            "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" => {
                if s.username.is_empty() || s.password.is_empty() {
                    err("auth.sasl", format!("{} needs username and password", s.mechanism));
                }
            }
            "AWS_MSK_IAM_OAUTHBEARER" | "OAUTHBEARER" => {
                err("auth.sasl.mechanism", format!("{} is not supported by Sightline", s.mechanism))
            }
            m => err(
                "auth.sasl.mechanism",
                format!("{m:?} is not a SASL mechanism: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
            ),
        }
        if s.aws_msk.is_some() || s.oauthbearer_token_source.is_some() {
            err("auth.sasl", "aws_msk and oauthbearer_token_source are not supported by Sightline".into());
        }
    }
    if auth.kerberos.is_some() {
        err("auth.kerberos", "is not supported by Sightline (librdkafka is built without GSSAPI)".into());
    }
    if let Some(t) = tls {
        if t.server_name_override.is_some() {
            err("tls.server_name_override", "is not supported by librdkafka".into());
        }
        t.validate(&mut out);
    }
    out
}

/// librdkafka's `security.protocol`, `sasl.*` and `ssl.*` for `auth` and `tls`.
pub fn apply_security(
    c: &mut rdkafka::config::ClientConfig,
    auth: &AuthConfig,
    tls: Option<&sightline_exporters::TlsConfig>,
) {
    let tls = tls.filter(|t| !(t.insecure && t.ca_file.is_none()));
    let sasl = auth.sasl.as_ref();
    c.set(
        "security.protocol",
        match (tls.is_some(), sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        },
    );
    if let Some(s) = sasl {
        c.set("sasl.mechanisms", &s.mechanism).set("sasl.username", &s.username).set("sasl.password", &s.password);
    }
    if let Some(t) = tls {
        if let Some(ca) = &t.ca_file {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
            c.set("ssl.certificate.location", cert.display().to_string())
                .set("ssl.key.location", key.display().to_string());
        }
        if t.insecure_skip_verify {
            c.set("enable.ssl.certificate.verification", "false").set("ssl.endpoint.identification.algorithm", "none");
        }
    }
}
