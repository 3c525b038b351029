//! Responses: export responses with partial success, `google.rpc.Status` error bodies (HTTP)
//! and gRPC status trailers with `RetryInfo`, hand-encoded on the wire (they are tiny and this
//! keeps the receiver free of generated types).

use sightline_core::Signal;
use sightline_core::wire::{WireType, put_len_field, put_tag, put_varint};
use std::time::Duration;

/// gRPC status codes used by the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    InvalidArgument = 3,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// Why a request was not (fully) accepted, independent of the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub http_status: u16,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl Refusal {
    pub fn invalid(message: impl Into<String>) -> Self {
        Refusal { code: Code::InvalidArgument, http_status: 400, message: message.into(), retry_after: None }
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Refusal { code: Code::ResourceExhausted, http_status: 413, message: message.into(), retry_after: None }
    }
    /// Overload: retryable, with a delay (HTTP 429 + `Retry-After`, gRPC `RESOURCE_EXHAUSTED`
    /// + `RetryInfo`).
    pub fn overloaded(message: impl Into<String>, after: Duration) -> Self {
        Refusal { code: Code::ResourceExhausted, http_status: 429, message: message.into(), retry_after: Some(after) }
    }
    /// The server cannot take data now (shutting down): HTTP 503, gRPC `UNAVAILABLE`.
    pub fn unavailable(message: impl Into<String>, after: Duration) -> Self {
        Refusal { code: Code::Unavailable, http_status: 503, message: message.into(), retry_after: Some(after) }
    }
    /// No valid credentials: HTTP 401 (with `WWW-Authenticate: Bearer`), gRPC
    /// `UNAUTHENTICATED`. The message must never contain the credential.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Refusal { code: Code::Unauthenticated, http_status: 401, message: message.into(), retry_after: None }
    }
    /// Authenticated, but not allowed to send this data: HTTP 403, gRPC `PERMISSION_DENIED`.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Refusal { code: Code::PermissionDenied, http_status: 403, message: message.into(), retry_after: None }
    }
    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Refusal { code: Code::Unimplemented, http_status: 415, message: message.into(), retry_after: None }
    }
}

/// An `Export*ServiceResponse`: empty, or with `partial_success`.
pub fn export_response_proto(rejected: u64, message: &str) -> Vec<u8> {
    if rejected == 0 && message.is_empty() {
        return Vec::new();
    }
    let mut ps = Vec::new();
    if rejected > 0 {
        put_tag(&mut ps, 1, WireType::Varint);
        put_varint(&mut ps, rejected);
    }
    if !message.is_empty() {
        put_len_field(&mut ps, 2, message.as_bytes());
    }
    let mut out = Vec::with_capacity(ps.len() + 4);
    put_len_field(&mut out, 1, &ps);
    out
}

/// The same response as OTLP/JSON (written by the JSON codec, which owns that format).
pub fn export_response_json(signal: Signal, rejected: u64, message: &str) -> Vec<u8> {
    let sig = crate::json_signal(signal);
    if rejected == 0 && message.is_empty() {
        return sightline_otlp_json::response_to_json(sig, None);
    }
    let ps = sightline_otlp_json::PartialSuccess {
        rejected: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: message.to_string(),
    };
    sightline_otlp_json::response_to_json(sig, Some(&ps))
}

/// `google.rpc.Status` with an optional `RetryInfo` detail.
pub fn rpc_status_proto(code: Code, message: &str, retry_after: Option<Duration>) -> Vec<u8> {
    let mut out = Vec::new();
    if code as i32 != 0 {
        put_tag(&mut out, 1, WireType::Varint);
        put_varint(&mut out, code as u64);
    }
    if !message.is_empty() {
        put_len_field(&mut out, 2, message.as_bytes());
    }
    if let Some(d) = retry_after {
        // google.protobuf.Duration { seconds = 1; nanos = 2 }
        let mut dur = Vec::new();
        if d.as_secs() > 0 {
            put_tag(&mut dur, 1, WireType::Varint);
            put_varint(&mut dur, d.as_secs());
        }
        if d.subsec_nanos() > 0 {
            put_tag(&mut dur, 2, WireType::Varint);
            put_varint(&mut dur, u64::from(d.subsec_nanos()));
        }
        // google.rpc.RetryInfo { retry_delay = 1 }
        let mut ri = Vec::new();
        put_len_field(&mut ri, 1, &dur);
        // google.protobuf.Any { type_url = 1; value = 2 }
        let mut any = Vec::new();
        put_len_field(&mut any, 1, b"type.googleapis.com/google.rpc.RetryInfo");
        put_len_field(&mut any, 2, &ri);
        put_len_field(&mut out, 3, &any);
    }
    out
}

pub fn rpc_status_json(code: Code, message: &str, retry_after: Option<Duration>) -> Vec<u8> {
    let mut s = format!("{{\"code\":{},\"message\":{}", code as i32, json_string(message));
    if let Some(d) = retry_after {
        s.push_str(&format!(
            ",\"details\":[{{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"{}s\"}}]",
            d.as_secs_f64()
        ));
    }
    s.push('}');
    s.into_bytes()
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Percent-encodes a `grpc-message` value (gRPC over HTTP/2 spec).
pub fn grpc_message(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(grpc_message("bad 100% ü\n"), "bad 100%25 %C3%BC%0A");
    }

    #[test]
    fn json_bodies() {
        assert_eq!(export_response_json(Signal::Logs, 0, ""), b"{}");
        assert_eq!(
            String::from_utf8(export_response_json(Signal::Traces, 2, "bad \"id\"")).unwrap(),
            r#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"bad \"id\""}}"#
        );
        let v =
            String::from_utf8(rpc_status_json(Code::ResourceExhausted, "full", Some(Duration::from_secs(1)))).unwrap();
        assert!(v.starts_with(r#"{"code":8,"message":"full","details":[{"#), "{v}");
    }
}
