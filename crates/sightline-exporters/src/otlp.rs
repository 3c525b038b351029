//! `otlp`: OTLP over gRPC, as the collector's `otlp` exporter.
//!
//! The exporter frames the gRPC message itself and sends it with hyper's HTTP/2 client: the
//! concatenation of `Export*ServiceRequest` encodings is itself the merged request, so nothing
//! is decoded or re-encoded. Uncompressed, the request's data is the 5-byte message header
//! followed by the batch's payloads as they are, one chain of buffers that h2 writes with one
//! vectored write per HTTP/2 frame (ADR 33: copying the batch into one buffer, as tonic's
//! channel needed, was 5% of the CPU of a transform pipeline; handing h2 the payloads one by
//! one cost a write each). Compressed, the whole batch is compressed once at
//! `compression_params.level` (libdeflate for gzip, a reused zstd context; ADR 13) rather than
//! by tonic's codec, whose gzip level is fixed at 6. The response is read for its status (the
//! headers of a Trailers-Only answer, or the trailers) and its `partial_success`.
//!
//! Outcomes follow the OTLP specification: `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`,
//! `OUT_OF_RANGE`, `UNAVAILABLE` and `DATA_LOSS` are retryable, `RESOURCE_EXHAUSTED` only when
//! the server attached a `google.rpc.RetryInfo` (it then says when to come back), every other
//! code is permanent. A `RetryInfo` delay is passed to the driver as `retry_after`.

use crate::body::ChainBody;
use crate::compress::{CompressionParams, Compressor, GRPC_HEADER};
use crate::credentials::{ExporterAuth, FileHeaders};
use crate::response::{PartialSuccess, log_partial_success, partial_success_proto, rpc_status};
use crate::{
    BuildError, Compression, TlsConfig, default_timeout, error_chain, offload, otlp_driver_config, user_agent,
    validate_common,
};
use bytes::{Bytes, BytesMut};
use http::uri::Authority;
use http::{HeaderName, HeaderValue, Uri};
use http_body_util::BodyExt as _;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use sightline_core::{Batch, DriverConfig, QueueConfig, Registry, RetryConfig, SendError, SendFuture, Sender, Signal};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataKey, MetadataMap, MetadataValue};
use tonic::{Code, Status};

/// `exporters.otlp`: OTLP/gRPC.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Where to send (required): `host:port` (TLS unless `tls.insecure: true`),
    /// `http://host[:port]` (plain text, port 80 by default) or `https://host[:port]` (TLS,
    /// port 443 by default). No path: the gRPC method path is the signal's service.
    #[serde(default)]
    pub endpoint: String,
    /// TLS settings (default: TLS with the system's roots; see `tls.insecure`).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Sent as gRPC metadata with every request, e.g. `X-Scope-OrgID: tenant-1` (default: none).
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
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// `level`: gzip 1-9 (default 1), zstd 1-22 or -7..-1 (default 1).
    #[serde(default)]
    pub compression_params: CompressionParams,
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
            headers_from_files: BTreeMap::new(),
            auth: None,
            compression: Compression::default(),
            compression_params: CompressionParams::default(),
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
        crate::credentials::validate(&self.headers_from_files, self.auth.as_ref(), &self.headers, &mut out);
        for name in self.headers_from_files.keys() {
            if MetadataKey::<Ascii>::from_bytes(name.to_ascii_lowercase().as_bytes()).is_err() {
                out.push((format!("headers_from_files.{name}"), "not a valid gRPC metadata key".into()));
            }
        }
        self.compression_params.validate(self.compression, &mut out);
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

/// One `otlp` exporter: the gRPC channel (one connection, HTTP/2-multiplexed), the metadata
/// and the credential files, shared by every pipeline and signal that lists the exporter.
/// Each signal gets its own [`Sender`] (and driver) over them.
pub struct OtlpExporter {
    id: Arc<str>,
    client: GrpcClient,
    /// `http://authority` or `https://authority`: each request's URI is this and the signal's
    /// method path.
    origin: String,
    compressor: Option<Arc<Compressor>>,
    metadata: MetadataMap,
    file_headers: Option<FileHeaders>,
    timeout: Duration,
    driver: DriverConfig,
}

/// Builds a sender for one signal (see [`OtlpExporter`] for several).
pub fn build_otlp(
    id: &str,
    signal: Signal,
    cfg: &OtlpConfig,
    registry: &Registry,
) -> Result<(Arc<dyn Sender>, DriverConfig), BuildError> {
    let e = OtlpExporter::new(id, cfg, registry)?;
    Ok((e.sender(signal), e.driver_config()))
}

impl OtlpExporter {
    /// Must be called from within a Tokio runtime (the gRPC channel's worker is spawned
    /// here); no connection is made until the first send, so a backend that is down does not
    /// stop the process from starting.
    pub fn new(id: &str, cfg: &OtlpConfig, registry: &Registry) -> Result<OtlpExporter, BuildError> {
        BuildError::from_findings(cfg.validate())?;
        tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let target = parse_endpoint(&cfg.endpoint, cfg.tls.insecure).map_err(|m| BuildError::invalid("endpoint", m))?;
        // The connector decides TLS from the URI's scheme; HTTP/2 only (with prior knowledge in
        // plain text, by ALPN over TLS), one connection multiplexed by every send.
        let origin = format!("{}://{}", if target.tls { "https" } else { "http" }, target.authority);
        if origin.parse::<Uri>().is_err() {
            return Err(BuildError::invalid("endpoint", "not a valid URI"));
        }
        let mut http = crate::tls::http_connector();
        http.set_connect_timeout(Some(cfg.timeout));
        let connector = cfg.tls.connector_over(target.tls, false, http)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(true)
            .build(connector);
        let compressor = (cfg.compression != Compression::None)
            .then(|| Arc::new(Compressor::new(cfg.compression, cfg.compression_params)));
        let mut metadata = MetadataMap::new();
        for (name, value) in &cfg.headers {
            let key = MetadataKey::<Ascii>::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| BuildError::invalid(format!("headers.{name}"), "not a valid gRPC metadata key"))?;
            let value = MetadataValue::<Ascii>::try_from(value.as_str())
                .map_err(|_| BuildError::invalid(format!("headers.{name}"), "not a valid metadata value"))?;
            metadata.append(key, value);
        }
        let file_headers = FileHeaders::new(id, &cfg.headers_from_files, cfg.auth.as_ref(), registry)?;
        Ok(OtlpExporter {
            id: Arc::from(id),
            client,
            origin,
            compressor,
            metadata,
            file_headers,
            timeout: cfg.timeout,
            driver: otlp_driver_config(cfg.timeout, &cfg.sending_queue, &cfg.retry_on_failure, cfg.compression),
        })
    }

    /// The sender of `signal`'s batches over the shared connection.
    pub fn sender(&self, signal: Signal) -> Arc<dyn Sender> {
        // The origin was checked in `new`, and the path is a constant: this parses.
        let uri = format!("{}{}", self.origin, signal.grpc_path()).parse().unwrap_or_default();
        Arc::new(OtlpSender {
            id: self.id.clone(),
            signal,
            client: self.client.clone(),
            uri,
            compressor: self.compressor.clone(),
            metadata: self.metadata.clone(),
            file_headers: self.file_headers.clone(),
            timeout: self.timeout,
        })
    }

    /// The driver options (`timeout`, `sending_queue`, `retry_on_failure`).
    pub fn driver_config(&self) -> DriverConfig {
        self.driver.clone()
    }
}

/// The HTTP/2 client of an `otlp` exporter, with the request body of [`ChainBody`].
type GrpcClient = Client<HttpsConnector<HttpConnector>, ChainBody>;

struct OtlpSender {
    id: Arc<str>,
    signal: Signal,
    client: GrpcClient,
    /// The origin and the signal's method path.
    uri: Uri,
    compressor: Option<Arc<Compressor>>,
    metadata: MetadataMap,
    /// Metadata whose values come from files (`headers_from_files`, `auth`).
    file_headers: Option<FileHeaders>,
    timeout: Duration,
}

/// The gRPC message header: compressed flag and big-endian length.
const MESSAGE_HEADER: usize = GRPC_HEADER;
/// The most of a response body read (an `Export*ServiceResponse` is a few bytes).
const RESPONSE_BODY_LIMIT: usize = 64 * 1024;

impl OtlpSender {
    /// The request body: one length-prefixed message holding the batch.
    async fn frame(&self, batch: &Batch) -> Result<ChainBody, SendError> {
        let Some(compressor) = self.compressor.clone() else {
            let len = u32::try_from(batch.bytes)
                .map_err(|_| SendError::permanent(format!("batch of {} bytes is too large for gRPC", batch.bytes)))?;
            let mut header = [0u8; MESSAGE_HEADER];
            header[1..].copy_from_slice(&len.to_be_bytes());
            let header = Bytes::copy_from_slice(&header);
            return Ok(ChainBody::new(std::iter::once(header).chain(batch.chunks().cloned())));
        };
        let batch = batch.clone();
        let name = compressor.compression().as_str();
        let framed = offload(batch.bytes, move || compressor.compress_batch_shared(&batch))
            .await
            .map_err(|e| SendError::permanent(format!("compression task failed: {e}")))?
            .map_err(|e| SendError::permanent(format!("{name} compression failed: {e}")))?;
        Ok(ChainBody::new([framed]))
    }

    fn request(&self, body: ChainBody) -> Result<http::Request<ChainBody>, SendError> {
        let mut req = http::Request::builder()
            .method(http::Method::POST)
            .version(http::Version::HTTP_2)
            .uri(self.uri.clone())
            .body(body)
            .map_err(|e| SendError::permanent(format!("cannot build the request: {e}")))?;
        let h = req.headers_mut();
        *h = self.metadata.clone().into_headers();
        if let Some(fh) = &self.file_headers {
            for (name, value) in fh.current() {
                // Both were checked when read; a value that no longer converts is skipped
                // (and the backend will say so) rather than logged.
                if let (Ok(k), Ok(mut v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
                    v.set_sensitive(true);
                    h.insert(k, v);
                }
            }
        }
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert(http::header::TE, HeaderValue::from_static("trailers"));
        h.insert(http::header::USER_AGENT, HeaderValue::from_static(user_agent()));
        h.insert("grpc-accept-encoding", HeaderValue::from_static("gzip,zstd,identity"));
        if let Some(c) = &self.compressor {
            h.insert("grpc-encoding", HeaderValue::from_static(c.compression().as_str()));
        }
        // gRPC's timeout: at most 8 digits and a unit.
        let ms = self.timeout.as_millis().clamp(1, 99_999_999);
        if let Ok(v) = HeaderValue::from_str(&format!("{ms}m")) {
            h.insert("grpc-timeout", v);
        }
        Ok(req)
    }
}

impl Sender for OtlpSender {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        Box::pin(async move {
            let body = self.frame(batch).await?;
            let req = self.request(body)?;
            // No answer at all (refused, reset, a connection that broke mid-request): retried
            // like any network failure.
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| SendError::retryable(format!("gRPC transport failure: {}", error_chain(&e))))?;
            let response = read_response(resp).await?;
            if let Some(ps) = response {
                log_partial_success(&self.id, self.signal, &ps);
            }
            Ok(())
        })
    }
}

/// Reads a unary gRPC response: its status (Trailers-Only headers or trailers) and, on
/// success, the message's `partial_success`.
async fn read_response<B>(resp: http::Response<B>) -> Result<Option<PartialSuccess>, SendError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    let (parts, mut body) = resp.into_parts();
    if parts.status != http::StatusCode::OK {
        // Not a gRPC answer (a proxy's error page): the gRPC HTTP-to-status mapping.
        let status = Status::from_header_map(&parts.headers).unwrap_or_else(|| {
            let code = match parts.status.as_u16() {
                400 => Code::Internal,
                401 => Code::Unauthenticated,
                403 => Code::PermissionDenied,
                404 => Code::Unimplemented,
                429 | 502..=504 => Code::Unavailable,
                _ => Code::Unknown,
            };
            Status::new(code, format!("HTTP {} from the server, not a gRPC answer", parts.status))
        });
        return Err(classify(&status));
    }
    if let Some(status) = Status::from_header_map(&parts.headers) {
        // Trailers-Only.
        return if status.code() == Code::Ok { Ok(None) } else { Err(classify(&status)) };
    }
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| SendError::retryable(format!("gRPC response broken: {}", error_chain(&e))))?;
        match frame.into_data() {
            Ok(d) => {
                if data.len() + d.len() <= RESPONSE_BODY_LIMIT {
                    data.extend_from_slice(&d);
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    let status = trailers
        .as_ref()
        .and_then(Status::from_header_map)
        .unwrap_or_else(|| Status::new(Code::Internal, "the server's answer has no grpc-status"));
    if status.code() != Code::Ok {
        return Err(classify(&status));
    }
    if data.len() < MESSAGE_HEADER {
        return Ok(None);
    }
    let message = &data[MESSAGE_HEADER..];
    if data[0] == 0 {
        return Ok(partial_success_proto(message));
    }
    // A compressed answer (gRPC-Go answers with the request's encoding): small, decoded
    // in place of the caller.
    let encoding = parts.headers.get("grpc-encoding").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut plain = Vec::new();
    let ok = match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(message).take(RESPONSE_BODY_LIMIT as u64).read_to_end(&mut plain).is_ok()
        }
        "zstd" => zstd::stream::read::Decoder::new(message)
            .and_then(|d| d.take(RESPONSE_BODY_LIMIT as u64).read_to_end(&mut plain))
            .is_ok(),
        _ => false,
    };
    // The export succeeded either way; an unreadable answer only loses its partial success.
    Ok(if ok { partial_success_proto(&plain) } else { None })
}

/// The OTLP specification's classification of a status a server sent. (Failures with no
/// answer, such as a connection that broke mid-request, never get here: the send maps them
/// to retryable errors first.)
pub(crate) fn classify(status: &Status) -> SendError {
    let retry_delay = rpc_status(status.details()).and_then(|s| s.retry_delay);
    let message = format!("gRPC {}: {}", code_name(status.code()), status.message());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => SendError::retryable(message).with_retry_after(retry_delay),
        // Retryable only when the server says when: otherwise it is a hard quota.
        Code::ResourceExhausted if retry_delay.is_some() => SendError::retryable(message).with_retry_after(retry_delay),
        _ => SendError::permanent(message),
    }
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
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

    #[test]
    fn classification_follows_the_spec() {
        for code in [Code::Cancelled, Code::DeadlineExceeded, Code::Aborted, Code::OutOfRange, Code::Unavailable] {
            assert!(classify(&Status::new(code, "x")).retryable, "{code:?}");
        }
        for code in [Code::InvalidArgument, Code::Unauthenticated, Code::PermissionDenied, Code::ResourceExhausted] {
            assert!(!classify(&Status::new(code, "x")).retryable, "{code:?}");
        }
        let e = classify(&Status::new(Code::InvalidArgument, "bad span"));
        assert_eq!(e.message, "gRPC INVALID_ARGUMENT: bad span");
        // A server's UNKNOWN is permanent (a broken connection is retried before classification:
        // tests/otlp.rs `connection_broken_mid_request_is_retryable`).
        assert!(!classify(&Status::new(Code::Unknown, "x")).retryable);
    }
}
