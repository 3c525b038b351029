//! Sightline's general-purpose exporters, each shaped like its OpenTelemetry Collector namesake:
//!
//! - [`otlp`]: OTLP/gRPC (tonic), the batch's protobuf bytes sent as they are;
//! - [`otlphttp`]: OTLP/HTTP (hyper), protobuf or JSON, gzip/zstd;
//! - [`file`](mod@file): one OTLP/JSON (or length-prefixed protobuf) request per batch, with size rotation;
//! - [`debug`]: the batch logged through `tracing` at three verbosities;
//! - [`loadbalancing`]: `otlp` to a pool of backends on the collector's consistent-hash ring.
//!
//! Each exporter is a config struct (serde, unknown keys rejected, every field documented with
//! its default; see the crate's README for the full list) with a `validate()` for what serde
//! cannot check (no I/O), and a `build_<type>` function that returns the backend-specific
//! [`Sender`](sightline_core::Sender) together with the [`DriverConfig`] taken from the common
//! options `timeout`, `sending_queue` and `retry_on_failure`, as in the collector's
//! exporterhelper. An exporter id used by several signals is one component: [`FileExporter`],
//! [`OtlpExporter`] and [`OtlpHttpExporter`] are built once and hand each signal a sender over
//! the shared file, channel or connection pool and credential files. Queueing, batching, concurrency, retries and the `otelcol_exporter_*`
//! metrics are the core driver's job, not the exporters'.
//!
//! What an exporter must never do: decode and re-encode a request it only forwards (the `otlp`
//! and `otlphttp` protobuf paths write the batch's chunks as they are), or block the receive
//! path (senders run on the driver's tasks; file writes and large compressions go to the
//! blocking pool).
//!
//! ```no_run
//! # async fn example() -> Result<(), sightline_exporters::BuildError> {
//! use sightline_core::{Registry, Signal, driver};
//! use sightline_exporters::otlphttp::{OtlpHttpConfig, build_otlphttp};
//!
//! let cfg = OtlpHttpConfig::new("http://tempo:4318");
//! for (key, message) in cfg.validate() {
//!     eprintln!("exporters.otlphttp/tempo.{key}: {message}");
//! }
//! let (sender, driver_cfg) = build_otlphttp("otlphttp/tempo", Signal::Traces, &cfg, &sightline_core::Registry::new())?;
//! let running = driver::spawn("otlphttp/tempo", Signal::Traces, driver_cfg, sender, &Registry::new());
//! # drop(running);
//! # Ok(())
//! # }
//! ```

pub mod compress;
pub mod credentials;
pub mod debug;
pub mod file;
pub mod http_exporter;
pub mod loadbalancing;
pub mod otlp;
pub mod otlphttp;

mod body;
mod response;
mod tls;

pub use compress::{CompressionParams, Compressor};
pub use credentials::ExporterAuth;
pub use debug::{DebugConfig, Verbosity, build_debug};
pub use file::{FileConfig, FileExporter, FileFormat, RotationConfig, build_file};
pub use loadbalancing::{LoadBalancingConfig, LoadBalancingExporter};
pub use otlp::{OtlpConfig, OtlpExporter, build_otlp};
pub use otlphttp::{Encoding, OtlpHttpConfig, OtlpHttpExporter, build_otlphttp};
pub use tls::TlsConfig;

use serde::Deserialize;
use sightline_core::{DriverConfig, QueueConfig, RetryConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Why an exporter could not be built. `key` is the option's path relative to the exporter
/// (`endpoint`, `tls.ca_file`), so that the caller can prefix `exporters.<id>.`.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration is invalid (what `validate()` reports, or a check that needs the
    /// signal, such as a missing per-signal endpoint).
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    /// A file named by the configuration could not be read, created or opened.
    #[error("{key}: {path}: {source}")]
    Io {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Exporters that start background work (gRPC channels, file flushing) must be built from
    /// within a Tokio runtime.
    #[error("exporters must be built from within a Tokio runtime")]
    NoRuntime,
}

impl BuildError {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        BuildError::Invalid { key: key.into(), message: message.into() }
    }

    /// The option the error is about (empty when it is about no option in particular).
    pub fn key(&self) -> &str {
        match self {
            BuildError::Invalid { key, .. } | BuildError::Io { key, .. } => key,
            BuildError::NoRuntime => "",
        }
    }

    /// Turns the first `validate()` finding into an error.
    pub fn from_findings(findings: Vec<(String, String)>) -> Result<(), BuildError> {
        match findings.into_iter().next() {
            Some((key, message)) => Err(BuildError::Invalid { key, message }),
            None => Ok(()),
        }
    }
}

/// `compression` of the `otlp` and `otlphttp` exporters.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (the collector's default).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
    /// No compression.
    None,
}

impl Compression {
    /// The `Content-Encoding` / `grpc-encoding` token.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }
}

pub fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

pub fn driver_config(timeout: Duration, queue: &QueueConfig, retry: &RetryConfig) -> DriverConfig {
    DriverConfig { queue: queue.clone(), retry: retry.clone(), timeout }
}

/// [`driver_config`] of the `otlp` (gRPC) exporter: uncompressed, its batches wait for a send
/// in flight unless `coalesce_size` is set (ADR 32). Compressed, the cost is per byte, and
/// larger batches only added latency and memory (measured with gzip: p50 6.6 -> 44 ms, peak
/// RSS 2x, CPU +3%); `otlphttp` uncompressed used 5% more CPU with it, so it keeps the
/// driver's default (off).
pub fn otlp_driver_config(
    timeout: Duration,
    queue: &QueueConfig,
    retry: &RetryConfig,
    compression: Compression,
) -> DriverConfig {
    let mut d = driver_config(timeout, queue, retry);
    if compression == Compression::None {
        let c = &mut d.queue.batch.coalesce_size;
        *c = Some(c.unwrap_or(sightline_core::driver::COALESCE_UNCOMPRESSED));
    }
    d
}

/// Checks the common options (`timeout`, `sending_queue`, `retry_on_failure`).
pub fn validate_common(timeout: Duration, queue: &QueueConfig, retry: &RetryConfig, out: &mut Vec<(String, String)>) {
    if timeout.is_zero() {
        out.push(("timeout".into(), "must be greater than 0".into()));
    }
    if queue.num_consumers == 0 {
        out.push(("sending_queue.num_consumers".into(), "must be at least 1".into()));
    }
    if queue.enabled && queue.queue_size == 0 {
        out.push(("sending_queue.queue_size".into(), "must be at least 1".into()));
    }
    if queue.batch.enabled && queue.batch.max_size > 0 && queue.batch.max_size < queue.batch.min_size {
        out.push(("sending_queue.batch.max_size".into(), "must be 0 (no limit) or at least min_size".into()));
    }
    // storage, directory, max_size_bytes, on_full, durability.
    out.extend(queue.validate());
    if retry.enabled {
        if !(0.0..=1.0).contains(&retry.randomization_factor) {
            out.push(("retry_on_failure.randomization_factor".into(), "must be between 0 and 1".into()));
        }
        if retry.multiplier.is_nan() || retry.multiplier < 1.0 {
            out.push(("retry_on_failure.multiplier".into(), "must be at least 1".into()));
        }
        if retry.initial_interval.is_zero() {
            out.push(("retry_on_failure.initial_interval".into(), "must be greater than 0".into()));
        }
        if retry.max_interval < retry.initial_interval {
            out.push(("retry_on_failure.max_interval".into(), "must be at least initial_interval".into()));
        }
    }
}

/// Checks that `headers` are valid HTTP header names and values.
pub fn validate_headers(headers: &BTreeMap<String, String>, out: &mut Vec<(String, String)>) {
    for (name, value) in headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            out.push((format!("headers.{name}"), "not a valid header name".into()));
        } else if http::HeaderValue::from_str(value).is_err() {
            out.push((format!("headers.{name}"), "not a valid header value (visible ASCII only)".into()));
        }
    }
}

/// The error and its causes on one line: hyper's and tonic's top-level messages alone
/// ("client error (Connect)") do not say what went wrong.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The user agent sent by the network exporters.
pub fn user_agent() -> &'static str {
    concat!("sightline/", env!("CARGO_PKG_VERSION"))
}

/// Runs CPU-heavy work (compression, JSON conversion) on the blocking pool when the input is
/// large, so that one big batch does not stall the runtime's worker; small inputs are cheaper
/// to handle inline.
pub async fn offload<T: Send + 'static>(
    size: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    const INLINE_LIMIT: usize = 128 * 1024;
    if size < INLINE_LIMIT { Ok(f()) } else { tokio::task::spawn_blocking(f).await }
}

/// The OTLP/JSON crate's name for a signal.
pub fn json_signal(signal: sightline_core::Signal) -> sightline_otlp_json::Signal {
    match signal {
        sightline_core::Signal::Traces => sightline_otlp_json::Signal::Traces,
        sightline_core::Signal::Metrics => sightline_otlp_json::Signal::Metrics,
        sightline_core::Signal::Logs => sightline_otlp_json::Signal::Logs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uncompressed OTLP gRPC coalesces by default; compressed it does not; a set value wins
    /// either way (ADR 32).
    #[test]
    fn otlp_exporters_coalesce_by_default_only_uncompressed() {
        let retry = RetryConfig::default();
        let t = Duration::from_secs(5);
        let of = |c: Compression, set: Option<u64>| {
            let mut q = QueueConfig::default();
            q.batch.coalesce_size = set;
            otlp_driver_config(t, &q, &retry, c).queue.batch.coalesce_size
        };
        assert_eq!(of(Compression::None, None), Some(sightline_core::driver::COALESCE_UNCOMPRESSED));
        assert_eq!(of(Compression::Gzip, None), None);
        assert_eq!(of(Compression::Zstd, None), None);
        assert_eq!(of(Compression::None, Some(0)), Some(0));
        assert_eq!(of(Compression::Gzip, Some(100)), Some(100));
        // Every other exporter keeps the driver's default: off.
        assert_eq!(driver_config(t, &QueueConfig::default(), &retry).queue.batch.coalesce_size, None);
    }
}
