//! What every HTTP exporter does the same way: `otlphttp` here, `prometheusremotewrite` and
//! `loki` in their own crates. The endpoint check, the pooled client, the header map each
//! request starts from, reading a backend's (bounded) answer, `Retry-After`, and the common
//! outcome rule of the non-OTLP backends (429 and 5xx retryable, anything else permanent).
//! What differs per backend (the body, the content headers, OTLP's narrower retryable set and
//! its `google.rpc.Status` bodies) stays with the exporter.

use crate::response::truncate;
use crate::{BuildError, TlsConfig, user_agent};
use http::header::{RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use http_body_util::BodyExt as _;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sightline_core::SendError;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// How much of a response body is read: enough for a partial success or an error message.
pub const RESPONSE_LIMIT: usize = 64 * 1024;
/// How much of an error body goes into the error message.
pub const ERROR_BODY_LIMIT: usize = 1024;

/// The pooled hyper client (HTTP/1.1 and HTTP/2) of an HTTP exporter, with request body `B`.
pub type HttpClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// An endpoint URL: `http://` or `https://` with a host and no user info (credentials go in
/// headers, where they are marked sensitive). The message quotes the configured value.
pub fn parse_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.trim().parse().map_err(|e| format!("{s:?} is not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("{s:?}: unsupported scheme {other:?}, use http:// or https://")),
        None => return Err(format!("{s:?}: missing scheme, use http:// or https://")),
    }
    match uri.authority() {
        Some(a) if a.as_str().contains('@') => {
            Err(format!("{s:?}: user info is not supported; use headers for credentials"))
        }
        Some(a) if !a.host().is_empty() => Ok(uri),
        _ => Err(format!("{s:?} has no host")),
    }
}

/// The client for `url`, with `tls` applied when the URL is `https://`. No connection is made
/// until the first request.
pub fn client<B>(tls: &TlsConfig, url: &Uri) -> Result<HttpClient<B>, BuildError>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    let connector = tls.connector(url.scheme() == Some(&http::uri::Scheme::HTTPS), true)?;
    Ok(Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).timer(TokioTimer::new()).build(connector))
}

/// The configured `headers` and Sightline's `User-Agent`: what every request carries. A name
/// or value HTTP cannot carry is an error on `headers.<name>`.
pub fn base_headers(configured: &BTreeMap<String, String>) -> Result<HeaderMap, BuildError> {
    let mut headers = HeaderMap::new();
    for (name, value) in configured {
        let bad = || BuildError::invalid(format!("headers.{name}"), "not a valid HTTP header");
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value).map_err(|_| bad())?;
        headers.append(name, value);
    }
    headers.insert(USER_AGENT, HeaderValue::from_static(user_agent()));
    Ok(headers)
}

/// Reads at most `limit` bytes of a response body (the rest is dropped with the connection's
/// body; a backend's answer to a push is small). A body that fails midway yields what was read.
pub async fn read_limited(mut body: hyper::body::Incoming, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(Ok(frame)) = body.frame().await else { break };
        if let Some(data) = frame.data_ref() {
            let take = data.len().min(limit - out.len());
            out.extend_from_slice(&data[..take]);
        }
    }
    out
}

/// An error body as text for a message: trimmed, at most [`ERROR_BODY_LIMIT`] bytes (cut at a
/// character boundary, with the full length), or `(empty body)`.
pub fn body_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() { "(empty body)".to_string() } else { truncate(text, ERROR_BODY_LIMIT) }
}

/// `Retry-After`: delay in seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The outcome of a non-2xx answer for backends whose convention is Prometheus remote write's
/// and Loki's: 429 and 5xx are worth retrying (honouring `Retry-After`); any other status means
/// the request itself was refused and sending it again would not help. (OTLP/HTTP retries a
/// narrower set; see [`otlphttp`](crate::otlphttp).)
pub fn status_error(status: StatusCode, message: String, headers: &HeaderMap) -> SendError {
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        SendError::retryable(message).with_retry_after(retry_after(headers, SystemTime::now()))
    } else {
        SendError::permanent(message)
    }
}

/// POSTs `body` to `url` with `headers` and applies [`status_error`]: the whole exchange of
/// the backends with the common convention (`prometheusremotewrite`, `loki`). A success's
/// (small) body is drained so that the connection can be reused, and its headers are returned
/// (Remote Write 2.0 reads what was written from them); a failure's body goes into the error
/// message.
pub async fn post(
    client: &HttpClient<http_body_util::Full<bytes::Bytes>>,
    url: &Uri,
    headers: &HeaderMap,
    body: bytes::Bytes,
) -> Result<HeaderMap, SendError> {
    let mut req = hyper::Request::post(url.clone())
        .body(http_body_util::Full::new(body))
        .map_err(|e| SendError::permanent(format!("cannot build the request: {e}")))?;
    *req.headers_mut() = headers.clone();
    let resp = client
        .request(req)
        .await
        .map_err(|e| SendError::retryable(format!("POST {url}: {}", crate::error_chain(&e))))?;
    let (parts, body) = resp.into_parts();
    let text = read_limited(body, RESPONSE_LIMIT).await;
    if parts.status.is_success() {
        return Ok(parts.headers);
    }
    let message = format!("HTTP {} from {url}: {}", parts.status, body_text(&text));
    Err(status_error(parts.status, message, &parts.headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).expect("date"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn only_429_and_5xx_are_retryable() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        for s in [429, 500, 502, 503, 504, 507] {
            let e = status_error(StatusCode::from_u16(s).unwrap(), "m".into(), &h);
            assert!(e.retryable, "{s}");
            assert_eq!(e.retry_after, Some(Duration::from_secs(3)), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 422] {
            assert!(!status_error(StatusCode::from_u16(s).unwrap(), "m".into(), &h).retryable, "{s}");
        }
    }

    #[test]
    fn urls_need_http_and_a_host() {
        assert!(parse_url(" http://backend:9090/api/v1/write ").is_ok());
        assert!(parse_url("https://backend").is_ok());
        for bad in ["backend:9090", "ftp://backend", "http://user:pw@backend", "http:///x", ""] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_body_text() {
        assert_eq!(body_text(b" \n"), "(empty body)");
        assert_eq!(body_text(b" out of order sample\n"), "out of order sample");
        let long = "x".repeat(ERROR_BODY_LIMIT + 10);
        assert!(body_text(long.as_bytes()).ends_with(&format!("... ({} bytes in all)", long.len())));
    }

    #[test]
    fn bad_header_names_the_key() {
        let mut m = BTreeMap::new();
        m.insert("X-Scope-OrgID".to_string(), "t1".to_string());
        let h = base_headers(&m).expect("valid");
        assert_eq!(h.get("x-scope-orgid").map(|v| v.as_bytes()), Some(&b"t1"[..]));
        assert!(h.contains_key(USER_AGENT));
        m.insert("bad name".to_string(), "v".to_string());
        let e = base_headers(&m).expect_err("invalid name");
        assert!(format!("{e}").contains("headers.bad name"), "{e}");
    }
}
