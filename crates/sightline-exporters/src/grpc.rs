//! The `otlp` exporter's transport: unary gRPC written by hand over hyper's HTTP/2 client.
//!
//! tonic encodes every message into its own buffer. With several exporters sharing one
//! payload, that was one full copy of each batch per exporter, and it sat outside the memory
//! budget. Here the request body is the 5-byte gRPC message prefix followed by the batch's
//! chunks themselves, the same `Bytes` every exporter shares, so an uncompressed send copies
//! nothing. Compression makes one pass into a new buffer: gzip at the fastest level, or zstd.
//! The response is read for `grpc-status` (trailers, or headers for a Trailers-Only
//! response), `grpc-message` and `grpc-status-details-bin` (for `RetryInfo`), and for a
//! `partial_success`.

use crate::body::ChunksBody;
use crate::otlphttp::compress;
use crate::response::{log_partial_success, partial_success_proto, rpc_status};
use crate::{Compression, error_chain, offload};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Uri};
use http_body_util::BodyExt as _;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use sightline_core::{Batch, SendError, SendFuture, Sender, Signal};
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct GrpcSender {
    pub(crate) id: Arc<str>,
    pub(crate) signal: Signal,
    /// `scheme://authority/<service>/Export`.
    pub(crate) uri: Uri,
    pub(crate) client: Client<HttpsConnector<HttpConnector>, ChunksBody>,
    /// Everything but the per-request `grpc-timeout`.
    pub(crate) headers: HeaderMap,
    pub(crate) compression: Compression,
    pub(crate) timeout: Duration,
}

/// How much of a response body is read (a partial success is small).
const RESPONSE_LIMIT: usize = 64 * 1024;

impl Sender for GrpcSender {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        Box::pin(async move {
            let (flag, chunks): (u8, Vec<Bytes>) = match self.compression {
                Compression::None => (0, batch.chunks().cloned().collect()),
                c => {
                    let b = batch.clone();
                    let out = offload(b.bytes, move || {
                        compress(c, b.chunks().map(|x| &x[..]), b.bytes)
                            .map_err(|e| SendError::permanent(format!("{} compression failed: {e}", c.as_str())))
                    })
                    .await
                    .map_err(|e| SendError::permanent(format!("compression task failed: {e}")))??;
                    (1, vec![out])
                }
            };
            let len: usize = chunks.iter().map(Bytes::len).sum();
            let len = u32::try_from(len).map_err(|_| SendError::permanent("batch larger than 4 GiB"))?;
            let mut prefix = [0u8; 5];
            prefix[0] = flag;
            prefix[1..].copy_from_slice(&len.to_be_bytes());
            let body = ChunksBody::new(std::iter::once(Bytes::copy_from_slice(&prefix)).chain(chunks));
            let mut req = Request::post(self.uri.clone())
                .body(body)
                .map_err(|e| SendError::permanent(format!("cannot build the request: {e}")))?;
            *req.headers_mut() = self.headers.clone();
            if let Ok(v) = HeaderValue::from_str(&format!("{}m", self.timeout.as_millis().max(1))) {
                req.headers_mut().insert("grpc-timeout", v);
            }
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| SendError::retryable(format!("gRPC {}: {}", self.uri, error_chain(&e))))?;
            let (parts, mut body) = resp.into_parts();
            if parts.status != http::StatusCode::OK {
                // The gRPC spec's mapping of HTTP statuses for responses without grpc-status.
                let code = match parts.status.as_u16() {
                    400 => 13,
                    401 => 16,
                    403 => 7,
                    404 => 12,
                    429 | 502..=504 => 14,
                    _ => 2,
                };
                return Err(classify_code(code, &format!("HTTP {} from {}", parts.status, self.uri), None));
            }
            let mut data = Vec::new();
            let mut trailers = None;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| SendError::retryable(format!("gRPC response: {}", error_chain(&e))))?;
                match frame.into_data() {
                    Ok(d) => {
                        let take = d.len().min(RESPONSE_LIMIT.saturating_sub(data.len()));
                        data.extend_from_slice(&d[..take]);
                    }
                    Err(frame) => trailers = frame.into_trailers().ok(),
                }
            }
            // Trailers-Only responses carry the status in the headers.
            let status_headers = match &trailers {
                Some(t) if t.contains_key("grpc-status") => t,
                _ => &parts.headers,
            };
            let Some(code) =
                status_headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok())
            else {
                return Err(SendError::permanent(format!("gRPC {}: response without grpc-status", self.uri)));
            };
            if code == 0 {
                // One uncompressed message: the Export*ServiceResponse.
                if data.len() >= 5
                    && data[0] == 0
                    && let Some(ps) = partial_success_proto(&data[5..])
                {
                    log_partial_success(&self.id, self.signal, &ps);
                }
                return Ok(());
            }
            let message = status_headers.get("grpc-message").map(|v| percent_decode(v.as_bytes())).unwrap_or_default();
            let delay = status_headers
                .get("grpc-status-details-bin")
                .and_then(|v| {
                    let s = v.as_bytes();
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(s.strip_suffix(b"==").or_else(|| s.strip_suffix(b"=")).unwrap_or(s))
                        .ok()
                })
                .and_then(|b| rpc_status(&b))
                .and_then(|s| s.retry_delay);
            Err(classify_code(code, &message, delay))
        })
    }
}

/// The OTLP specification's classification of a gRPC status code.
pub(crate) fn classify_code(code: i32, message: &str, retry_delay: Option<Duration>) -> SendError {
    let message = format!("gRPC {}: {message}", code_name(code));
    match code {
        // CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS
        1 | 4 | 10 | 11 | 14 | 15 => SendError::retryable(message).with_retry_after(retry_delay),
        // RESOURCE_EXHAUSTED is retryable only when the server says when: otherwise it is a
        // hard quota.
        8 if retry_delay.is_some() => SendError::retryable(message).with_retry_after(retry_delay),
        _ => SendError::permanent(message),
    }
}

pub(crate) fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// Decodes a percent-encoded `grpc-message`.
fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%'
            && i + 2 < v.len()
            && let Ok(b) = u8::from_str_radix(std::str::from_utf8(&v[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(v[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"bad 100%25 %C3%BC%0A"), "bad 100% \u{fc}\n");
        assert_eq!(percent_decode(b"50%"), "50%");
        assert_eq!(percent_decode(b"%zz"), "%zz");
    }

    #[test]
    fn classification() {
        for code in [1, 4, 10, 11, 14, 15] {
            assert!(classify_code(code, "x", None).retryable, "{code}");
        }
        for code in [2, 3, 7, 8, 12, 13, 16] {
            assert!(!classify_code(code, "x", None).retryable, "{code}");
        }
        let e = classify_code(8, "slow down", Some(Duration::from_secs(2)));
        assert!(e.retryable);
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
        assert_eq!(e.message, "gRPC RESOURCE_EXHAUSTED: slow down");
    }
}
