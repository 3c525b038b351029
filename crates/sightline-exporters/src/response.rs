//! The few things the network exporters read from a backend's answer, read straight off the
//! wire: an `Export*ServiceResponse`'s `partial_success`, and a `google.rpc.Status` with its
//! `google.rpc.RetryInfo`. Anything unreadable is treated as absent: the answer's status
//! (gRPC code, HTTP status) is what decides the outcome, never these details.

use sightline_core::Signal;
use sightline_core::wire::{Fields, Value};
use std::time::Duration;

/// `ExportPartialSuccess`: field 1 is the rejected count (`rejected_spans`,
/// `rejected_data_points`, `rejected_log_records`), field 2 `error_message`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PartialSuccess {
    pub rejected: i64,
    pub message: String,
}

/// The `partial_success` (field 1) of a protobuf `Export*ServiceResponse`, when it says
/// something (the spec's "no partial success" is an absent or empty message).
pub(crate) fn partial_success_proto(body: &[u8]) -> Option<PartialSuccess> {
    let mut found: Option<PartialSuccess> = None;
    for f in Fields::new(body) {
        let f = f.ok()?;
        if f.number != 1 {
            continue;
        }
        let Value::Len(msg) = f.value else { return None };
        // Repeated occurrences of a message field merge.
        let ps = found.get_or_insert_with(PartialSuccess::default);
        for g in Fields::new(msg) {
            match g.ok()? {
                g if g.number == 1 => {
                    if let Value::Varint(v) = g.value {
                        ps.rejected = v as i64;
                    }
                }
                g if g.number == 2 => {
                    if let Value::Len(m) = g.value {
                        ps.message = String::from_utf8_lossy(m).into_owned();
                    }
                }
                _ => {}
            }
        }
    }
    found.filter(|p| p.rejected != 0 || !p.message.is_empty())
}

/// The `partialSuccess` of an OTLP/JSON response.
pub(crate) fn partial_success_json(signal: Signal, body: &[u8]) -> Option<PartialSuccess> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let ps = v.get("partialSuccess").or_else(|| v.get("partial_success"))?;
    let rejected = match ps.get(signal.rejected_field_name()) {
        Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    };
    let message = ps.get("errorMessage").and_then(|m| m.as_str()).unwrap_or_default().to_string();
    Some(PartialSuccess { rejected, message }).filter(|p| p.rejected != 0 || !p.message.is_empty())
}

/// Logs a partial success. The request counts as sent (it was accepted; the backend decided
/// what to keep), as in the collector, but the rejection must be visible.
pub(crate) fn log_partial_success(exporter: &str, signal: Signal, ps: &PartialSuccess) {
    tracing::warn!(
        exporter,
        rejected = ps.rejected,
        message = %ps.message,
        "partial success: the backend rejected {} {}",
        ps.rejected,
        signal.item_name()
    );
}

/// A `google.rpc.Status`: code (1), message (2), details (3, repeated `Any`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RpcStatus {
    pub code: i32,
    pub message: String,
    /// From a `google.rpc.RetryInfo` detail.
    pub retry_delay: Option<Duration>,
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// Reads a `google.rpc.Status` (gRPC `grpc-status-details-bin`, or an OTLP/HTTP error body).
pub(crate) fn rpc_status(bytes: &[u8]) -> Option<RpcStatus> {
    let mut st = RpcStatus::default();
    for f in Fields::new(bytes) {
        let f = f.ok()?;
        match (f.number, f.value) {
            (1, Value::Varint(v)) => st.code = v as i32,
            (2, Value::Len(m)) => st.message = String::from_utf8_lossy(m).into_owned(),
            (3, Value::Len(any)) => {
                if let Some(d) = retry_info(any) {
                    st.retry_delay = Some(d);
                }
            }
            _ => {}
        }
    }
    Some(st)
}

/// The delay of a `google.protobuf.Any` holding a `google.rpc.RetryInfo`.
fn retry_info(any: &[u8]) -> Option<Duration> {
    let mut type_url = None;
    let mut value: &[u8] = &[];
    for f in Fields::new(any) {
        match f.ok()? {
            f if f.number == 1 => type_url = if let Value::Len(b) = f.value { Some(b) } else { None },
            f if f.number == 2 => {
                if let Value::Len(b) = f.value {
                    value = b;
                }
            }
            _ => {}
        }
    }
    if type_url? != RETRY_INFO_TYPE.as_bytes() {
        return None;
    }
    // RetryInfo.retry_delay (1) is a google.protobuf.Duration: seconds (1), nanos (2).
    let mut delay = None;
    for f in Fields::new(value) {
        let f = f.ok()?;
        if let (1, Value::Len(d)) = (f.number, f.value) {
            let (mut secs, mut nanos) = (0i64, 0i32);
            for g in Fields::new(d) {
                match g.ok()? {
                    g if g.number == 1 => {
                        if let Value::Varint(v) = g.value {
                            secs = v as i64;
                        }
                    }
                    g if g.number == 2 => {
                        if let Value::Varint(v) = g.value {
                            nanos = v as i32;
                        }
                    }
                    _ => {}
                }
            }
            if secs < 0 || nanos < 0 {
                return None;
            }
            delay = Some(Duration::from_secs(secs as u64) + Duration::from_nanos(nanos as u64));
        }
    }
    delay
}

/// At most `max` bytes of `s`, cut at a character boundary, with a marker when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_core::wire::{WireType, put_len_field, put_tag, put_varint};

    fn any(type_url: &str, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        put_len_field(&mut a, 1, type_url.as_bytes());
        put_len_field(&mut a, 2, value);
        a
    }

    #[test]
    fn reads_retry_info_among_other_details() {
        let mut duration = Vec::new();
        put_tag(&mut duration, 1, WireType::Varint);
        put_varint(&mut duration, 3);
        put_tag(&mut duration, 2, WireType::Varint);
        put_varint(&mut duration, 500_000_000);
        let mut retry = Vec::new();
        put_len_field(&mut retry, 1, &duration);
        let mut st = Vec::new();
        put_tag(&mut st, 1, WireType::Varint);
        put_varint(&mut st, 8);
        put_len_field(&mut st, 2, b"slow down");
        put_len_field(&mut st, 3, &any("type.googleapis.com/google.rpc.ErrorInfo", b"\x0a\x01x"));
        put_len_field(&mut st, 3, &any(RETRY_INFO_TYPE, &retry));
        let s = rpc_status(&st).expect("status");
        assert_eq!(s.code, 8);
        assert_eq!(s.message, "slow down");
        assert_eq!(s.retry_delay, Some(Duration::from_millis(3500)));
    }

    #[test]
    fn partial_success_needs_content() {
        let mut inner = Vec::new();
        put_tag(&mut inner, 1, WireType::Varint);
        put_varint(&mut inner, 4);
        put_len_field(&mut inner, 2, b"bad spans");
        let mut resp = Vec::new();
        put_len_field(&mut resp, 1, &inner);
        assert_eq!(partial_success_proto(&resp), Some(PartialSuccess { rejected: 4, message: "bad spans".into() }));
        let mut empty = Vec::new();
        put_len_field(&mut empty, 1, &[]);
        assert_eq!(partial_success_proto(&empty), None);
        assert_eq!(partial_success_proto(b""), None);
        assert_eq!(partial_success_proto(b"\xff"), None);
        let json = br#"{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"x"}}"#;
        assert_eq!(partial_success_json(Signal::Logs, json), Some(PartialSuccess { rejected: 2, message: "x".into() }));
        assert_eq!(partial_success_json(Signal::Logs, b"{}"), None);
    }

    #[test]
    fn truncates_at_char_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("héllo", 2), "h... (6 bytes in all)");
    }
}
