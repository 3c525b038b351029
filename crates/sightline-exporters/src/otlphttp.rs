//! `otlphttp`: OTLP over HTTP, as the collector's `otlphttp` exporter.
//!
//! Client: hyper-util's legacy pooled client over hyper-rustls rather than reqwest. The
//! workspace already has hyper, hyper-util and rustls (through tonic); reqwest would add its
//! own stack of features (redirects, cookies, proxies from the environment) that an exporter
//! must not have implicitly, and would hide the body type: here a batch goes out as its chunks
//! when uncompressed (one chain of buffers, written without a copy), and compression streams the
//! chunks through the encoder in one pass.
//!
//! Outcomes follow the OTLP specification: 2xx is success (a `partial_success` in the response
//! is logged), 429, 502, 503 and 504 are retryable and honour `Retry-After` (seconds or an HTTP
//! date), any other status is permanent; the backend's explanation (a `google.rpc.Status` or
//! text, at most 1 KiB) goes into the error message, which the driver logs.

use crate::body::ChainBody;
use crate::compress::{CompressionParams, Compressor, GRPC_HEADER};
use crate::credentials::{ExporterAuth, FileHeaders};
use crate::http_exporter::{self, ERROR_BODY_LIMIT, HttpClient, RESPONSE_LIMIT, body_text, parse_url, read_limited};
use crate::response::{log_partial_success, partial_success_json, partial_success_proto, rpc_status, truncate};
use crate::{
    BuildError, Compression, TlsConfig, default_timeout, driver_config, error_chain, json_signal, offload,
    validate_common, validate_headers,
};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use serde::Deserialize;
use sightline_core::{Batch, DriverConfig, QueueConfig, Registry, RetryConfig, SendError, SendFuture, Sender, Signal};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use crate::http_exporter::retry_after;

/// `encoding` of the request body.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Binary protobuf, `application/x-protobuf` (default): the batch's bytes as they are.
    #[default]
    Proto,
    /// OTLP/JSON, `application/json`: the batch converted once per send.
    Json,
}

/// `exporters.otlphttp`: OTLP/HTTP.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpConfig {
    /// Base URL, `http://` or `https://` (default: none; required unless the signal's own
    /// endpoint is set). `/v1/traces`, `/v1/metrics` or `/v1/logs` is appended to its path:
    /// `https://gw/otlp` sends traces to `https://gw/otlp/v1/traces`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Full URL for traces, used as is (default: none, `endpoint` + `/v1/traces`).
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    /// Full URL for metrics, used as is (default: none, `endpoint` + `/v1/metrics`).
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    /// Full URL for logs, used as is (default: none, `endpoint` + `/v1/logs`).
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    /// TLS settings for `https://` URLs (default: the system's roots). `tls.insecure` is not
    /// read: the URL's scheme decides.
    #[serde(default)]
    pub tls: TlsConfig,
    /// HTTP headers sent with every request, e.g. `Authorization` (default: none).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are read from files, e.g. `X-Scope-OrgID: /etc/tenant` (default:
    /// none). Each file is read at start (an unreadable or empty file stops the start) and
    /// re-read when it changes; surrounding whitespace is ignored.
    #[serde(default)]
    pub headers_from_files: BTreeMap<String, PathBuf>,
    /// `auth.bearer_token_file`: send `Authorization: Bearer <token>` with the token read from
    /// a file, re-read when it changes (default: none).
    #[serde(default)]
    pub auth: Option<ExporterAuth>,
    /// `gzip` (default), `zstd` or `none`; sent as `Content-Encoding`.
    #[serde(default)]
    pub compression: Compression,
    /// `level`: gzip 1-9 (default 1), zstd 1-22 or -7..-1 (default 1).
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// `proto` (default) or `json`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Deadline of one send attempt, connection included (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The queue in front of the exporter (default: see the core `sending_queue` options).
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Retries of retryable failures (default: see the core `retry_on_failure` options).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

impl OtlpHttpConfig {
    /// The defaults, sending to the base URL `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        OtlpHttpConfig {
            endpoint: Some(endpoint.into()),
            traces_endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            tls: TlsConfig::default(),
            headers: BTreeMap::new(),
            headers_from_files: BTreeMap::new(),
            auth: None,
            compression: Compression::default(),
            compression_params: CompressionParams::default(),
            encoding: Encoding::default(),
            timeout: default_timeout(),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }

    fn signal_endpoint(&self, signal: Signal) -> (&'static str, Option<&String>) {
        match signal {
            Signal::Traces => ("traces_endpoint", self.traces_endpoint.as_ref()),
            Signal::Metrics => ("metrics_endpoint", self.metrics_endpoint.as_ref()),
            Signal::Logs => ("logs_endpoint", self.logs_endpoint.as_ref()),
        }
    }

    /// Checks serde cannot express (no I/O): `(key relative to the exporter, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let per_signal = Signal::ALL.map(|s| self.signal_endpoint(s));
        if self.endpoint.is_none() && per_signal.iter().all(|(_, e)| e.is_none()) {
            out.push(("endpoint".into(), "required (or traces_endpoint / metrics_endpoint / logs_endpoint)".into()));
        }
        if let Some(e) = &self.endpoint
            && let Err(m) = parse_url(e)
        {
            out.push(("endpoint".into(), m));
        }
        for (key, e) in per_signal {
            if let Some(e) = e
                && let Err(m) = parse_url(e)
            {
                out.push((key.into(), m));
            }
        }
        self.tls.validate(&mut out);
        validate_headers(&self.headers, &mut out);
        crate::credentials::validate(&self.headers_from_files, self.auth.as_ref(), &self.headers, &mut out);
        self.compression_params.validate(self.compression, &mut out);
        validate_common(self.timeout, &self.sending_queue, &self.retry_on_failure, &mut out);
        out
    }

    /// The URL `signal` is posted to, and the key it comes from.
    pub fn url(&self, signal: Signal) -> Result<Uri, BuildError> {
        let (key, own) = self.signal_endpoint(signal);
        if let Some(e) = own {
            return parse_url(e).map_err(|m| BuildError::invalid(key, m));
        }
        let Some(base) = &self.endpoint else {
            return Err(BuildError::invalid("endpoint", format!("required for {signal} (or set {key})")));
        };
        let base = parse_url(base).map_err(|m| BuildError::invalid("endpoint", m))?;
        join_path(&base, signal.http_path()).map_err(|m| BuildError::invalid("endpoint", m))
    }
}

/// Appends `path` to the base URL's path, keeping its query, as the collector's
/// `url.JoinPath`.
fn join_path(base: &Uri, path: &str) -> Result<Uri, String> {
    let prefix = base.path().trim_end_matches('/');
    let pq = match base.query() {
        Some(q) => format!("{prefix}{path}?{q}"),
        None => format!("{prefix}{path}"),
    };
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|e| format!("cannot append {path}: {e}"))?);
    Uri::from_parts(parts).map_err(|e| format!("cannot append {path}: {e}"))
}

/// One `otlphttp` exporter: the HTTP client (its connection pool), the headers and the
/// credential files, shared by every pipeline and signal that lists the exporter. Each signal
/// gets its own [`Sender`] (and driver), posting to its own URL.
pub struct OtlpHttpExporter {
    id: Arc<str>,
    cfg: OtlpHttpConfig,
    client: HttpClient<ChainBody>,
    headers: HeaderMap,
    file_headers: Option<FileHeaders>,
    compressor: Option<Arc<Compressor>>,
}

/// Builds a sender for one signal (see [`OtlpHttpExporter`] for several). No connection is
/// made until the first send.
pub fn build_otlphttp(
    id: &str,
    signal: Signal,
    cfg: &OtlpHttpConfig,
    registry: &Registry,
) -> Result<(Arc<dyn Sender>, DriverConfig), BuildError> {
    let e = OtlpHttpExporter::new(id, cfg, registry)?;
    Ok((e.sender(signal)?, e.driver_config()))
}

impl OtlpHttpExporter {
    /// No connection is made until the first send.
    pub fn new(id: &str, cfg: &OtlpHttpConfig, registry: &Registry) -> Result<OtlpHttpExporter, BuildError> {
        BuildError::from_findings(cfg.validate())?;
        // One client (one pool) for every signal: it speaks TLS to https URLs and plain text
        // to http ones; the TLS settings are loaded when any signal's URL is https.
        let urls: Vec<Uri> =
            [Signal::Traces, Signal::Metrics, Signal::Logs].into_iter().filter_map(|s| cfg.url(s).ok()).collect();
        let tls_url = urls.iter().find(|u| u.scheme() == Some(&http::uri::Scheme::HTTPS)).or(urls.first());
        let client = match tls_url {
            Some(u) => http_exporter::client(&cfg.tls, u)?,
            None => return Err(BuildError::invalid("endpoint", "required")),
        };
        let mut headers = http_exporter::base_headers(&cfg.headers)?;
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(match cfg.encoding {
                Encoding::Proto => "application/x-protobuf",
                Encoding::Json => "application/json",
            }),
        );
        if cfg.compression != Compression::None {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(cfg.compression.as_str()));
        }
        let file_headers = FileHeaders::new(id, &cfg.headers_from_files, cfg.auth.as_ref(), registry)?;
        let compressor = (cfg.compression != Compression::None)
            .then(|| Arc::new(Compressor::new(cfg.compression, cfg.compression_params)));
        Ok(OtlpHttpExporter { id: Arc::from(id), cfg: cfg.clone(), client, headers, file_headers, compressor })
    }

    /// The sender of `signal`'s batches to its URL (an error when the config gives none).
    pub fn sender(&self, signal: Signal) -> Result<Arc<dyn Sender>, BuildError> {
        Ok(Arc::new(OtlpHttpSender {
            file_headers: self.file_headers.clone(),
            id: self.id.clone(),
            signal,
            url: self.cfg.url(signal)?,
            client: self.client.clone(),
            headers: self.headers.clone(),
            compressor: self.compressor.clone(),
            encoding: self.cfg.encoding,
        }))
    }

    /// The driver options (`timeout`, `sending_queue`, `retry_on_failure`).
    pub fn driver_config(&self) -> DriverConfig {
        driver_config(self.cfg.timeout, &self.cfg.sending_queue, &self.cfg.retry_on_failure)
    }
}

struct OtlpHttpSender {
    id: Arc<str>,
    signal: Signal,
    url: Uri,
    client: HttpClient<ChainBody>,
    headers: HeaderMap,
    /// Headers whose values come from files (`headers_from_files`, `auth`).
    file_headers: Option<FileHeaders>,
    /// `None` without compression.
    compressor: Option<Arc<Compressor>>,
    encoding: Encoding,
}

impl Sender for OtlpHttpSender {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        Box::pin(async move {
            let body = self.encode(batch).await?;
            let mut req = Request::post(self.url.clone())
                .body(body)
                .map_err(|e| SendError::permanent(format!("cannot build the request: {e}")))?;
            *req.headers_mut() = self.headers.clone();
            if let Some(fh) = &self.file_headers {
                for (name, value) in fh.current() {
                    if let (Ok(k), Ok(mut v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value))
                    {
                        v.set_sensitive(true);
                        req.headers_mut().insert(k, v);
                    }
                }
            }
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| SendError::retryable(format!("POST {}: {}", self.url, error_chain(&e))))?;
            let (parts, body) = resp.into_parts();
            let body = read_limited(body, RESPONSE_LIMIT).await;
            let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            if parts.status.is_success() {
                let ps = if content_type.starts_with("application/json") {
                    partial_success_json(self.signal, &body)
                } else {
                    partial_success_proto(&body)
                };
                if let Some(ps) = ps {
                    log_partial_success(&self.id, self.signal, &ps);
                }
                return Ok(());
            }
            let message = format!("HTTP {} from {}: {}", parts.status, self.url, error_detail(content_type, &body));
            Err(match parts.status {
                StatusCode::TOO_MANY_REQUESTS
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT => {
                    SendError::retryable(message).with_retry_after(retry_after(&parts.headers, SystemTime::now()))
                }
                _ => SendError::permanent(message),
            })
        })
    }
}

impl OtlpHttpSender {
    /// The request body: the chunks themselves when nothing needs transforming, otherwise one
    /// buffer produced in a single pass (large batches on the blocking pool).
    async fn encode(&self, batch: &Batch) -> Result<ChainBody, SendError> {
        if self.encoding == Encoding::Proto && self.compressor.is_none() {
            return Ok(ChainBody::new(batch.chunks().cloned()));
        }
        let batch = batch.clone();
        let encoding = self.encoding;
        let signal = self.signal;
        let compressor = self.compressor.clone();
        let name = self.compressor.as_ref().map_or("none", |c| c.compression().as_str());
        let out = offload(batch.bytes, move || match (encoding, &compressor) {
            (Encoding::Proto, Some(c)) => c.compress_batch_shared(&batch).map(|framed| framed.slice(GRPC_HEADER..)),
            (Encoding::Proto, None) => Ok(batch.to_bytes()),
            (Encoding::Json, _) => {
                let json = sightline_otlp_json::protobuf_to_json(json_signal(signal), &batch.to_bytes())
                    .map_err(|e| std::io::Error::other(format!("cannot convert the batch to OTLP/JSON: {e}")))?;
                match &compressor {
                    Some(c) => c.compress(std::iter::once(&json[..]), json.len()).map(Bytes::from),
                    None => Ok(Bytes::from(json)),
                }
            }
        })
        .await
        .map_err(|e| SendError::permanent(format!("encoding task failed: {e}")))?
        .map_err(|e| SendError::permanent(format!("encoding ({name}) failed: {e}")))?;
        Ok(ChainBody::new([out]))
    }
}

/// What the backend said about a failure: a `google.rpc.Status` message when the body is
/// protobuf (the OTLP/HTTP convention), otherwise the body as text; at most 1 KiB.
fn error_detail(content_type: &str, body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".into();
    }
    if content_type.starts_with("application/x-protobuf")
        && let Some(st) = rpc_status(body).filter(|s| !s.message.is_empty())
    {
        return truncate(&st.message, ERROR_BODY_LIMIT);
    }
    body_text(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_collector() {
        let cfg = OtlpHttpConfig::new("https://gw.example.com/otlp/");
        assert_eq!(cfg.url(Signal::Logs).expect("url").to_string(), "https://gw.example.com/otlp/v1/logs");
        let cfg = OtlpHttpConfig::new("http://127.0.0.1:4318");
        assert_eq!(cfg.url(Signal::Traces).expect("url").to_string(), "http://127.0.0.1:4318/v1/traces");
        let mut cfg = OtlpHttpConfig::new("http://h:1?tenant=a");
        assert_eq!(cfg.url(Signal::Metrics).expect("url").to_string(), "http://h:1/v1/metrics?tenant=a");
        cfg.metrics_endpoint = Some("http://m:9/api/push".into());
        assert_eq!(cfg.url(Signal::Metrics).expect("url").to_string(), "http://m:9/api/push");
        cfg.endpoint = None;
        assert!(cfg.validate().is_empty());
        assert_eq!(cfg.url(Signal::Logs).expect_err("no endpoint for logs").key(), "endpoint");
    }

    #[test]
    fn validate_reports_keys() {
        let mut cfg = OtlpHttpConfig::new("tempo:4318");
        cfg.logs_endpoint = Some("ftp://x/".into());
        cfg.headers.insert("bad header".into(), "v".into());
        let keys: Vec<String> = cfg.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["endpoint", "logs_endpoint", "headers.bad header"]);
        cfg.endpoint = None;
        cfg.logs_endpoint = None;
        assert_eq!(cfg.validate()[0].0, "endpoint");
    }

    #[test]
    fn compression_params_are_checked() {
        let mut cfg = OtlpHttpConfig::new("http://h:4318");
        cfg.compression_params.level = Some(12);
        assert_eq!(cfg.validate()[0].0, "compression_params.level");
        cfg.compression = Compression::Zstd;
        assert!(cfg.validate().is_empty());
    }
}
