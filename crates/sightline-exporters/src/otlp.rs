//! `otlp`: OTLP over gRPC, as the collector's `otlp` exporter.
//!
//! The batch's chunks are the gRPC message as they are (see [`crate::grpc`]): the
//! concatenation of `Export*ServiceRequest` encodings is itself the merged request, so nothing
//! is decoded, re-encoded or, without compression, copied. The response is only read for its
//! `partial_success`.
//!
//! Outcomes follow the OTLP specification: `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`,
//! `OUT_OF_RANGE`, `UNAVAILABLE` and `DATA_LOSS` are retryable, `RESOURCE_EXHAUSTED` only when
//! the server attached a `google.rpc.RetryInfo` (it then says when to come back), every other
//! code is permanent. A `RetryInfo` delay is passed to the driver as `retry_after`.

use crate::grpc::GrpcSender;
use crate::{BuildError, Compression, TlsConfig, default_timeout, driver_config, user_agent, validate_common};
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use sightline_core::{DriverConfig, QueueConfig, RetryConfig, Sender, Signal};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataKey, MetadataValue};

/// `exporters.otlp`: OTLP/gRPC.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Where to send (required): `host:port` (TLS unless `tls.insecure: true`),
    /// `http://host[:port]` (plain text, port 80 by default) or `https://host[:port]` (TLS,
    /// port 443 by default). No path: the gRPC method path is the signal's service.
    pub endpoint: String,
    /// TLS settings (default: TLS with the system's roots; see `tls.insecure`).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Sent as gRPC metadata with every request, e.g. `X-Scope-OrgID: tenant-1` (default: none).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Deadline of one send attempt, also sent to the server as `grpc-timeout` (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The queue in front of the exporter (default: see the core `sending_queue` options).
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Retries of retryable failures (default: see the core `retry_on_failure` options).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

impl OtlpConfig {
    /// The defaults, sending to `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        OtlpConfig {
            endpoint: endpoint.into(),
            tls: TlsConfig::default(),
            headers: BTreeMap::new(),
            compression: Compression::default(),
            timeout: default_timeout(),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }

    /// Checks serde cannot express (no I/O): `(key relative to the exporter, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Err(m) = parse_endpoint(&self.endpoint, self.tls.insecure) {
            out.push(("endpoint".into(), m));
        }
        self.tls.validate(&mut out);
        for (name, value) in &self.headers {
            if MetadataKey::<Ascii>::from_bytes(name.to_ascii_lowercase().as_bytes()).is_err() {
                out.push((
                    format!("headers.{name}"),
                    "not a valid gRPC metadata key (lowercase letters, digits, '-', '_', '.'; no '-bin' suffix)".into(),
                ));
            } else if MetadataValue::<Ascii>::try_from(value.as_str()).is_err() {
                out.push((format!("headers.{name}"), "not a valid metadata value (visible ASCII only)".into()));
            }
        }
        validate_common(self.timeout, &self.sending_queue, &self.retry_on_failure, &mut out);
        out
    }
}

/// Where the endpoint points and whether to use TLS.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub authority: Authority,
    pub tls: bool,
}

pub(crate) fn parse_endpoint(endpoint: &str, insecure: bool) -> Result<Target, String> {
    let e = endpoint.trim();
    if e.is_empty() {
        return Err("required: host:port, http://host:port or https://host:port".into());
    }
    let (rest, tls, default_port) = if let Some(r) = e.strip_prefix("http://") {
        (r, false, Some(80))
    } else if let Some(r) = e.strip_prefix("https://") {
        (r, true, Some(443))
    } else if let Some((scheme, _)) = e.split_once("://") {
        return Err(format!("unsupported scheme {scheme:?}: use host:port, http:// or https://"));
    } else {
        (e, !insecure, None)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(format!("{endpoint:?} has a path; a gRPC endpoint is host:port only"));
    }
    if rest.contains('@') {
        return Err(format!("{endpoint:?}: user info is not supported; use headers for credentials"));
    }
    let authority: Authority = rest.parse().map_err(|_| format!("{endpoint:?} is not a valid host:port"))?;
    if authority.host().is_empty() {
        return Err(format!("{endpoint:?} has no host"));
    }
    let authority = match (authority.port_u16(), default_port) {
        (Some(_), _) => authority,
        (None, Some(p)) => {
            format!("{}:{p}", authority.host()).parse().map_err(|_| format!("{endpoint:?} is not a valid host:port"))?
        }
        (None, None) => return Err(format!("{endpoint:?} has no port (e.g. tempo:4317)")),
    };
    Ok(Target { authority, tls })
}

/// Builds the `otlp` exporter's sender for `signal`. Must be called from within a Tokio
/// runtime (the gRPC channel's worker is spawned here); no connection is made until the first
/// send, so a backend that is down does not stop the process from starting.
pub fn build_otlp(id: &str, signal: Signal, cfg: &OtlpConfig) -> Result<(Arc<dyn Sender>, DriverConfig), BuildError> {
    BuildError::from_findings(cfg.validate())?;
    tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
    let target = parse_endpoint(&cfg.endpoint, cfg.tls.insecure).map_err(|m| BuildError::invalid("endpoint", m))?;
    let scheme = if target.tls { "https" } else { "http" };
    let uri: Uri = format!("{scheme}://{}{}", target.authority, signal.grpc_path())
        .parse()
        .map_err(|_| BuildError::invalid("endpoint", "not a valid URI"))?;
    let connector = cfg.tls.connector(target.tls, false)?;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .http2_initial_stream_window_size(1 << 20)
        .http2_initial_connection_window_size(4 << 20)
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .build(connector);
    let mut headers = HeaderMap::new();
    for (name, value) in &cfg.headers {
        let bad =
            |what: &str| BuildError::invalid(format!("headers.{name}"), format!("not a valid gRPC metadata {what}"));
        let key = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| bad("key"))?;
        let value = HeaderValue::from_str(value).map_err(|_| bad("value"))?;
        headers.append(key, value);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("te", HeaderValue::from_static("trailers"));
    headers.insert(USER_AGENT, HeaderValue::from_static(user_agent()));
    if cfg.compression != Compression::None {
        headers.insert("grpc-encoding", HeaderValue::from_static(cfg.compression.as_str()));
    }
    let sender = GrpcSender {
        id: Arc::from(id),
        signal,
        uri,
        client,
        headers,
        compression: cfg.compression,
        timeout: cfg.timeout,
    };
    Ok((Arc::new(sender), driver_config(cfg.timeout, &cfg.sending_queue, &cfg.retry_on_failure)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let t = parse_endpoint("tempo:4317", false).expect("valid");
        assert_eq!((t.authority.as_str(), t.tls), ("tempo:4317", true));
        let t = parse_endpoint("tempo:4317", true).expect("valid");
        assert!(!t.tls);
        let t = parse_endpoint("http://10.0.0.1:4317/", false).expect("valid");
        assert_eq!((t.authority.as_str(), t.tls), ("10.0.0.1:4317", false));
        let t = parse_endpoint("https://tempo.example.com", true).expect("valid");
        assert_eq!((t.authority.as_str(), t.tls), ("tempo.example.com:443", true));
        let t = parse_endpoint("[::1]:4317", true).expect("valid");
        assert_eq!(t.authority.as_str(), "[::1]:4317");
        for bad in ["", "tempo", "ftp://x:1", "http://x:1/v1/traces", "a b:1", "u@x:1", ":4317"] {
            assert!(parse_endpoint(bad, false).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn validate_reports_keys() {
        let mut cfg = OtlpConfig::new("tempo");
        cfg.headers.insert("x-token-bin".into(), "x".into());
        cfg.headers.insert("X-Scope-OrgID".into(), "tenant-1".into());
        cfg.tls.cert_file = Some("c.pem".into());
        cfg.timeout = Duration::ZERO;
        let keys: Vec<String> = cfg.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["endpoint", "tls.key_file", "headers.x-token-bin", "timeout"]);
    }
}
