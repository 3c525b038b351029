//! `loki`: OTLP logs to the Loki push API (`POST /loki/api/v1/push`), with ownership as
//! stream labels. Works with Loki and with VictoriaLogs' Loki-compatible endpoint
//! (`/insert/loki/api/v1/push`).
//!
//! What it owns: turning a batch (one OTLP `ExportLogsServiceRequest`, already validated) into
//! Loki streams, and posting them. Queueing, batching, concurrency, retries and the
//! `otelcol_exporter_*` metrics are the core driver's job.
//!
//! - Stream labels come from attributes named in `labels` (record first, then resource), by
//!   default `service_name`, `service_namespace`, `deployment_environment`, `owner_team` and
//!   `level`; everything else an entry knows goes to its structured metadata (the record's
//!   other attributes, `trace_id`, `span_id`, the resource's other attributes, the scope).
//! - The line is the body: a string as it is, anything else as JSON.
//! - Backend limits are applied here, not left to a 400 that loses the whole batch: labels
//!   past `max_label_count` become metadata, long label values and lines are truncated,
//!   structured-metadata pairs past `max_structured_metadata_entries` /
//!   `max_structured_metadata_size` are left out (lowest priority first), and each is counted
//!   in `sightline_exporter_limited_log_records_total{exporter,reason}`.
//!
//! It never decodes a record into structs ([`encode`] walks the protobuf on the wire and reuses
//! its buffers between batches) and never blocks the runtime (large batches are encoded on the
//! blocking pool).
//!
//! ```no_run
//! # async fn example() -> Result<(), sightline_exporters::BuildError> {
//! use sightline_core::{Registry, Signal, driver};
//! use sightline_loki::{LokiConfig, build_loki};
//!
//! let registry = Registry::new();
//! let cfg = LokiConfig::new("http://loki:3100/loki/api/v1/push");
//! let (sender, driver_cfg) = build_loki("loki", Signal::Logs, &cfg, &registry)?;
//! let running = driver::spawn("loki", Signal::Logs, driver_cfg, sender, &registry);
//! # drop(running);
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod encode;

pub use config::{Compression, Encoding, LokiConfig, Sources};
pub use encode::{Encoder, Plan, Stats};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use http_body_util::Full;
use sightline_core::{Batch, Counter, DriverConfig, Registry, SendError, SendFuture, Sender, Signal};
use sightline_exporters::http_exporter::{self, HttpClient};
use sightline_exporters::{BuildError, Compressor, driver_config, offload};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The limit-reason label values of `sightline_exporter_limited_log_records_total`.
pub const LIMIT_REASONS: [&str; 5] =
    ["label_count", "label_value_length", "line_size", "metadata_entries", "metadata_size"];

/// Builds the `loki` exporter's sender. Only logs pipelines can use it. No connection is made
/// until the first send.
pub fn build_loki(
    id: &str,
    signal: Signal,
    cfg: &LokiConfig,
    registry: &Registry,
) -> Result<(Arc<dyn Sender>, DriverConfig), BuildError> {
    if signal != Signal::Logs {
        return Err(BuildError::invalid(
            "",
            format!("the loki exporter sends logs only; it cannot be used in a {signal} pipeline"),
        ));
    }
    BuildError::from_findings(cfg.validate())?;
    let url = config::parse_url(&cfg.endpoint).map_err(|m| BuildError::invalid("endpoint", m))?;
    let client = http_exporter::client(&cfg.tls, &url)?;
    let mut headers = http_exporter::base_headers(&cfg.headers)?;
    if let Some(t) = &cfg.tenant_id {
        let v = HeaderValue::from_str(t).map_err(|_| BuildError::invalid("tenant_id", "not a valid header value"))?;
        headers.insert(HeaderName::from_static("x-scope-orgid"), v);
    }
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(match cfg.encoding {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }),
    );
    let compression = cfg.effective_compression();
    if compression == Compression::Gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    let counter = |reason: &str| {
        registry.counter(
            "sightline_exporter_limited_log_records_total",
            "Log records changed to fit a backend limit (labels moved to metadata, values or lines truncated, metadata pairs left out), by reason.",
            &[("exporter", id), ("reason", reason)],
        )
    };
    let metrics = Metrics {
        label_count: counter(LIMIT_REASONS[0]),
        label_value_length: counter(LIMIT_REASONS[1]),
        line_size: counter(LIMIT_REASONS[2]),
        metadata_entries: counter(LIMIT_REASONS[3]),
        metadata_size: counter(LIMIT_REASONS[4]),
        malformed: registry.counter(
            "sightline_exporter_dropped_log_records_total",
            "Log records an exporter dropped without sending them, by reason.",
            &[("exporter", id), ("reason", "malformed")],
        ),
    };
    let sender = LokiSender {
        url,
        client,
        headers,
        encoding: cfg.encoding,
        compression,
        gzip: (compression == Compression::Gzip)
            .then(|| Arc::new(Compressor::new(sightline_exporters::Compression::Gzip, cfg.compression_params))),
        plan: Arc::new(Plan::new(cfg)),
        pool: Arc::new(Mutex::new(Vec::new())),
        pool_size: cfg.sending_queue.num_consumers.max(1),
        metrics,
    };
    Ok((Arc::new(sender), driver_config(cfg.timeout, &cfg.sending_queue, &cfg.retry_on_failure)))
}

struct Metrics {
    label_count: Counter,
    label_value_length: Counter,
    line_size: Counter,
    metadata_entries: Counter,
    metadata_size: Counter,
    malformed: Counter,
}

/// An encoder and its output buffer, kept between batches.
#[derive(Default)]
struct Scratch {
    encoder: Encoder,
    body: Vec<u8>,
}

struct LokiSender {
    url: Uri,
    client: HttpClient<Full<Bytes>>,
    headers: HeaderMap,
    encoding: Encoding,
    compression: Compression,
    /// `encoding: json` with gzip: the whole-body compressor at `compression_params.level`.
    gzip: Option<Arc<Compressor>>,
    plan: Arc<Plan>,
    /// Encoders of finished sends, reused by the next ones (at most `pool_size`).
    pool: Arc<Mutex<Vec<Scratch>>>,
    pool_size: usize,
    metrics: Metrics,
}

/// Encodes a whole batch (its chunks, each one request) into a request body, compressed as
/// configured. `encoder` and `buf` are reused; `encoder.stats` tells what was limited.
pub fn encode_batch(
    plan: &Plan,
    encoder: &mut Encoder,
    buf: &mut Vec<u8>,
    chunks: &[Bytes],
    encoding: Encoding,
    packing: Packing<'_>,
    now_ns: i64,
) -> Result<Bytes, String> {
    encoder.reset();
    buf.clear();
    for c in chunks {
        encoder.add_request(plan, c, now_ns).map_err(|e| format!("cannot read the batch: {e}"))?;
    }
    match encoding {
        Encoding::Protobuf => encoder.encode_protobuf(buf),
        Encoding::Json => encoder.encode_json(buf),
    }
    match packing {
        Packing::Snappy => snap::raw::Encoder::new()
            .compress_vec(buf)
            .map(Bytes::from)
            .map_err(|e| format!("snappy compression failed: {e}")),
        Packing::Gzip(c) => c
            .compress(std::iter::once(&buf[..]), buf.len())
            .map(Bytes::from)
            .map_err(|e| format!("gzip compression failed: {e}")),
        Packing::None => Ok(Bytes::copy_from_slice(buf)),
    }
}

/// How [`encode_batch`] compresses the body.
#[derive(Clone, Copy, Debug)]
pub enum Packing<'a> {
    /// Block snappy (protobuf).
    Snappy,
    /// gzip with the sender's compressor (json).
    Gzip(&'a Compressor),
    /// Uncompressed (json).
    None,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl LokiSender {
    async fn encode(&self, batch: &Batch) -> Result<Bytes, SendError> {
        let mut scratch = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        let chunks: Vec<Bytes> = batch.chunks().cloned().collect();
        let plan = self.plan.clone();
        let (encoding, compression, gzip) = (self.encoding, self.compression, self.gzip.clone());
        let (res, scratch) = offload(batch.bytes, move || {
            let s = &mut scratch;
            let packing = match (compression, gzip.as_deref()) {
                (Compression::Snappy, _) => Packing::Snappy,
                (Compression::Gzip, Some(c)) => Packing::Gzip(c),
                _ => Packing::None,
            };
            let res = encode_batch(&plan, &mut s.encoder, &mut s.body, &chunks, encoding, packing, now_ns());
            (res, scratch)
        })
        .await
        .map_err(|e| SendError::permanent(format!("encoding task failed: {e}")))?;
        let stats = scratch.encoder.stats;
        {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < self.pool_size {
                pool.push(scratch);
            }
        }
        self.metrics.label_count.add(stats.label_count);
        self.metrics.label_value_length.add(stats.label_value_length);
        self.metrics.line_size.add(stats.line_size);
        self.metrics.metadata_entries.add(stats.metadata_entries);
        self.metrics.metadata_size.add(stats.metadata_size);
        if stats.malformed > 0 {
            self.metrics.malformed.add(stats.malformed);
            tracing::warn!(records = stats.malformed, "loki: dropped log records with undecodable fields");
        }
        res.map_err(SendError::permanent)
    }
}

impl Sender for LokiSender {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        Box::pin(async move {
            let body = self.encode(batch).await?;
            // Loki's convention is the common one: 429 and 5xx are worth retrying; any other
            // status means the request itself was refused (bad labels, too old, too large).
            http_exporter::post(&self.client, &self.url, &self.headers, body).await.map(drop)
        })
    }
}

#[cfg(test)]
mod tests;
