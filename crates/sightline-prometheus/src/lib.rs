//! The `prometheusremotewrite` exporter: OTLP metrics to Prometheus remote write 1.0 (or 2.0
//! with `protobuf_message: io.prometheus.write.v2.Request`), as the OpenTelemetry Collector's
//! exporter of the same name (and its option names where they fit).
//!
//! - [`translate`]: walks the OTLP protobuf on the wire (no decoding into structs) and builds
//!   Prometheus series by the rules of the OpenTelemetry specification, the collector and
//!   Prometheus' own OTLP endpoint (names with unit and type suffixes, sanitized labels,
//!   `job`/`instance`/`target_info`, histograms, summaries, native histograms), then encodes
//!   `WriteRequest`s by hand into reused buffers.
//! - [`sender`]: snappy block compression, the remote-write headers, series sharding
//!   (`sending_queue.num_consumers` shards, each sending its requests in order) and the
//!   retry classification (5xx and 429 retryable, any other 4xx permanent).
//!
//! What it must never do: panic on input (a metric it cannot translate is dropped and counted
//! in `sightline_exporter_dropped_points_total{exporter,reason}`), send the samples of one
//! series out of order, or send two batches concurrently (the core driver runs this exporter
//! with one consumer; the concurrency is the shards'; see ADR 0009).
//!
//! ```no_run
//! # async fn example() -> Result<(), sightline_exporters::BuildError> {
//! use sightline_core::{Registry, Signal, driver};
//! use sightline_prometheus::{PrometheusRemoteWriteConfig, build_prometheusremotewrite};
//!
//! let cfg = PrometheusRemoteWriteConfig::new("http://prometheus:9090/api/v1/write");
//! let registry = Registry::new();
//! let (sender, dcfg) = build_prometheusremotewrite("prometheusremotewrite", Signal::Metrics, &cfg, &registry)?;
//! let running = driver::spawn("prometheusremotewrite", Signal::Metrics, dcfg, sender, &registry);
//! # drop(running);
//! # Ok(())
//! # }
//! ```

pub mod naming;
pub mod sender;
pub mod translate;

use serde::Deserialize;
use sightline_core::{DriverConfig, QueueConfig, Registry, RetryConfig, Sender, Signal};
use sightline_exporters::http_exporter::parse_url;
use sightline_exporters::{BuildError, TlsConfig, default_timeout, driver_config, validate_common, validate_headers};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use translate::{DropReason, Options, ProtobufMessage, Translator};

fn yes() -> bool {
    true
}

fn default_promote() -> Vec<String> {
    vec!["owner.team".into(), "owner.system".into(), "owner.source".into()]
}

fn default_max_samples() -> usize {
    2000
}

fn default_protobuf_message() -> String {
    ProtobufMessage::V1.as_str().into()
}

/// `resource_to_telemetry_conversion`, as in the collector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceToTelemetry {
    /// Every resource attribute becomes a label of every series (default false).
    pub enabled: bool,
}

/// `target_info`, as in the collector.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetInfo {
    /// Send a `target_info` series per resource with its other attributes (default true).
    pub enabled: bool,
}

impl Default for TargetInfo {
    fn default() -> Self {
        TargetInfo { enabled: true }
    }
}

/// `remote_write_queue`, the collector's name for the queue of this exporter; accepted so that
/// collector configs load. Each key that is set replaces the same key of `sending_queue`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteQueue {
    /// = `sending_queue.enabled`.
    pub enabled: Option<bool>,
    /// = `sending_queue.queue_size`.
    pub queue_size: Option<usize>,
    /// = `sending_queue.num_consumers` (the number of shards).
    pub num_consumers: Option<usize>,
}

/// `exporters.prometheusremotewrite`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusRemoteWriteConfig {
    /// The remote-write URL, `http://` or `https://`, e.g.
    /// `http://prometheus:9090/api/v1/write` or `http://mimir/api/v1/push` (required).
    #[serde(default)]
    pub endpoint: String,
    /// The remote-write message, as the collector's option: `prometheus.WriteRequest`
    /// (Remote Write 1.0, the default) or `io.prometheus.write.v2.Request` (Remote Write 2.0:
    /// a symbol table per request and metadata per series; the backend must accept it).
    #[serde(default = "default_protobuf_message")]
    pub protobuf_message: String,
    /// TLS settings for `https://` (default: the system's roots).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Headers sent with every request, e.g. `X-Scope-OrgID` (default: none). The protocol's
    /// own headers cannot be replaced.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Deadline of one HTTP request (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Prefix of every metric name, joined with `_` (default: none).
    #[serde(default)]
    pub namespace: String,
    /// Labels added to every series unless the series has a label of that name (default:
    /// none).
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Add unit and type suffixes to metric names (`_seconds`, `_total`, `_ratio`) (default
    /// true).
    #[serde(default = "yes")]
    pub add_metric_suffixes: bool,
    /// Send exponential histograms as native histograms (default false: they are dropped and
    /// counted). Prometheus needs `--enable-feature=native-histograms`.
    #[serde(default)]
    pub send_native_histograms: bool,
    /// Copy every resource attribute to every series (default disabled).
    #[serde(default)]
    pub resource_to_telemetry_conversion: ResourceToTelemetry,
    /// The `target_info` series (default enabled).
    #[serde(default)]
    pub target_info: TargetInfo,
    /// Resource attributes that become labels of every series, sanitized (`owner.team` ->
    /// `owner_team`) (default `[owner.team, owner.system, owner.source]`). They take
    /// precedence over data point attributes, so that ownership cannot be forged. One name or
    /// a list.
    #[serde(default = "default_promote", deserialize_with = "sightline_core::serde_util::one_or_many")]
    pub promote_resource_attributes: Vec<String>,
    /// Most samples (and native histograms) in one request (default 2000, Prometheus' own).
    #[serde(default = "default_max_samples")]
    pub max_samples_per_send: usize,
    /// The queue in front of the exporter; `num_consumers` (default 10) is the number of
    /// shards sending concurrently.
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// The collector's name for the queue (see [`RemoteWriteQueue`]).
    #[serde(default)]
    pub remote_write_queue: RemoteWriteQueue,
    /// Retries of retryable failures (5xx, 429, network errors).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

/// Headers the exporter sets itself.
const PROTOCOL_HEADERS: [&str; 4] =
    ["content-encoding", "content-type", "x-prometheus-remote-write-version", "content-length"];

impl PrometheusRemoteWriteConfig {
    /// The defaults, sending to `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        PrometheusRemoteWriteConfig {
            endpoint: endpoint.into(),
            protobuf_message: default_protobuf_message(),
            tls: TlsConfig::default(),
            headers: BTreeMap::new(),
            timeout: default_timeout(),
            namespace: String::new(),
            external_labels: BTreeMap::new(),
            add_metric_suffixes: true,
            send_native_histograms: false,
            resource_to_telemetry_conversion: ResourceToTelemetry::default(),
            target_info: TargetInfo::default(),
            promote_resource_attributes: default_promote(),
            max_samples_per_send: default_max_samples(),
            sending_queue: QueueConfig::default(),
            remote_write_queue: RemoteWriteQueue::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }

    /// `sending_queue` with the `remote_write_queue` keys applied.
    pub fn queue(&self) -> QueueConfig {
        let mut q = self.sending_queue.clone();
        let r = &self.remote_write_queue;
        if let Some(e) = r.enabled {
            q.enabled = e;
        }
        if let Some(s) = r.queue_size {
            q.queue_size = s;
        }
        if let Some(n) = r.num_consumers {
            q.num_consumers = n;
        }
        q
    }

    /// Checks serde cannot express (no I/O): `(key relative to the exporter, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.endpoint.trim().is_empty() {
            out.push(("endpoint".into(), "required (e.g. http://prometheus:9090/api/v1/write)".into()));
        } else if let Err(m) = parse_url(&self.endpoint) {
            out.push(("endpoint".into(), m));
        }
        if ProtobufMessage::parse(&self.protobuf_message).is_none() {
            out.push((
                "protobuf_message".into(),
                format!(
                    "unknown message `{}`; one of `{}` (Remote Write 1.0) or `{}` (Remote Write 2.0)",
                    self.protobuf_message,
                    ProtobufMessage::NAMES[0],
                    ProtobufMessage::NAMES[1]
                ),
            ));
        }
        self.tls.validate(&mut out);
        validate_headers(&self.headers, &mut out);
        for name in self.headers.keys() {
            if PROTOCOL_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                out.push((format!("headers.{name}"), "set by the remote-write protocol; remove it".into()));
            }
        }
        validate_common(self.timeout, &self.queue(), &self.retry_on_failure, &mut out);
        if self.max_samples_per_send == 0 {
            out.push(("max_samples_per_send".into(), "must be at least 1".into()));
        }
        for (name, value) in &self.external_labels {
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with("__");
            if !valid {
                out.push((
                    format!("external_labels.{name}"),
                    "not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)".into(),
                ));
            } else if value.is_empty() {
                out.push((format!("external_labels.{name}"), "must not be empty".into()));
            }
        }
        for (i, a) in self.promote_resource_attributes.iter().enumerate() {
            if a.is_empty() {
                out.push((format!("promote_resource_attributes.{i}"), "must not be empty".into()));
            }
        }
        out
    }

    /// The chosen message (1.0 when the value is unknown, which [`validate`](Self::validate)
    /// refuses).
    pub fn protobuf_message(&self) -> ProtobufMessage {
        ProtobufMessage::parse(&self.protobuf_message).unwrap_or_default()
    }

    /// The translation options.
    pub fn options(&self) -> Options {
        Options {
            protobuf_message: self.protobuf_message(),
            namespace: self.namespace.clone(),
            add_metric_suffixes: self.add_metric_suffixes,
            send_native_histograms: self.send_native_histograms,
            resource_to_telemetry: self.resource_to_telemetry_conversion.enabled,
            target_info: self.target_info.enabled,
            promote: self.promote_resource_attributes.clone(),
            external_labels: self.external_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

/// Builds the exporter's sender. Metrics only: any other signal is an error (the config check
/// reports it first, naming the pipeline). The driver gets ONE consumer: the sender shards each
/// batch itself across `sending_queue.num_consumers` (ADR 0009). The driver's per-attempt
/// deadline is ten times `timeout`; each HTTP request has `timeout`.
pub fn build_prometheusremotewrite(
    id: &str,
    signal: Signal,
    cfg: &PrometheusRemoteWriteConfig,
    registry: &Registry,
) -> Result<(Arc<dyn Sender>, DriverConfig), BuildError> {
    if signal != Signal::Metrics {
        return Err(BuildError::invalid(
            "type",
            format!("the prometheusremotewrite exporter supports metrics pipelines only, not {signal}"),
        ));
    }
    BuildError::from_findings(cfg.validate())?;
    let url = parse_url(&cfg.endpoint).map_err(|m| BuildError::invalid("endpoint", m))?;
    let queue = cfg.queue();
    let sender = sender::RemoteWriteSender::new(id, url, cfg, queue.num_consumers.max(1), registry)?;
    let mut driver_queue = queue;
    driver_queue.num_consumers = 1;
    let dcfg = driver_config(cfg.timeout.saturating_mul(10), &driver_queue, &cfg.retry_on_failure);
    Ok((Arc::new(sender), dcfg))
}
