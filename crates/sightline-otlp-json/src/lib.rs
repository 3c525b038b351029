//! OTLP/JSON <-> OTLP protobuf conversion for Sightline.
//!
//! This crate converts between the two encodings of OTLP export requests
//! (`ExportTraceServiceRequest`, `ExportMetricsServiceRequest`,
//! `ExportLogsServiceRequest`), following the OTLP specification's
//! [JSON Protobuf Encoding](https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding):
//! the proto3 JSON mapping, with trace and span ids as hex strings and enums
//! as integers.
//!
//! ```
//! use sightline_otlp_json::{Signal, json_to_protobuf, protobuf_to_json};
//!
//! let json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
//!     "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174",
//!     "name":"GET /","kind":2,"startTimeUnixNano":"1544712660000000000"}]}]}]}"#;
//! let proto = json_to_protobuf(Signal::Traces, json)?;
//! let back = protobuf_to_json(Signal::Traces, &proto)?;
//! assert_eq!(
//!     String::from_utf8_lossy(&back),
//!     r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /","kind":2,"startTimeUnixNano":"1544712660000000000"}]}]}]}"#
//! );
//! # Ok::<(), sightline_otlp_json::JsonError>(())
//! ```
//!
//! # Reading JSON ([`json_to_protobuf`])
//!
//! Lenient in what it accepts, as protobuf JSON parsers are:
//! - keys in lowerCamelCase (`startTimeUnixNano`) or as the original proto
//!   field names (`start_time_unix_nano`);
//! - unknown keys are ignored at every level; `null` means "field absent";
//! - `traceId`, `spanId`, `parentSpanId` (spans, links, log records,
//!   exemplars): case-insensitive hex of exactly 16 / 8 bytes, or `""` for
//!   none; other `bytes` (`bytesValue`): base64, standard or URL-safe,
//!   padding optional;
//! - 64-bit integers (and 32-bit ones) as JSON numbers or decimal strings;
//!   a number with a fraction or beyond 2^53 that is not an exact integer
//!   literal is rejected rather than silently rounded;
//! - doubles as numbers or strings, including `"NaN"`, `"Infinity"`,
//!   `"-Infinity"`;
//! - enums (span kind, status code, aggregation temporality, severity number)
//!   as integers or as their proto names (`"SPAN_KIND_SERVER"`);
//! - setting two members of one `oneof` (e.g. `stringValue` and `intValue`
//!   in one AnyValue, `gauge` and `sum` in one metric) is an error.
//!
//! Errors carry a JSON path: `resourceSpans[0].scopeSpans[1].spans[3].traceId:
//! invalid hex (expected 32 hex digits, got 31)`. Nesting is bounded: JSON
//! deeper than [`MAX_JSON_DEPTH`] levels, or AnyValues nested deeper than
//! [`MAX_ANY_VALUE_DEPTH`] levels, is rejected with a
//! [`JsonErrorKind::TooDeep`] error instead of risking the stack.
//!
//! # Writing JSON ([`protobuf_to_json`])
//!
//! Strict, in the shape the OpenTelemetry Collector's JSON marshaler (file
//! exporter `format: json`) writes: one compact object, lowerCamelCase keys,
//! lowercase hex ids, 64-bit integers as strings, enums as integers, default
//! scalars and empty lists omitted. Ids of the wrong length and undecodable
//! protobuf are errors.
//!
//! # Why not `opentelemetry-proto`'s `with-serde`
//!
//! Its serde derives were checked against the rules above and fail several:
//! snake_case keys are silently dropped, `null` scalars and enum names are
//! rejected, ids of any length (and a `0x` prefix) are accepted, `"NaN"` is
//! rejected in AnyValue and silently drops a data point's value or a whole
//! histogram elsewhere, and its serializer writes defaults (`"traceState":""`,
//! `"resource":null`). Errors also lack a JSON path. Hence the hand-written
//! conversion here, which builds the `opentelemetry_proto::tonic` prost types
//! directly.

mod decode;
mod encode;
mod error;

pub use error::{JsonError, JsonErrorKind};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

use crate::error::Path;

/// Deepest JSON nesting (arrays and objects) accepted by the readers.
pub const MAX_JSON_DEPTH: usize = 256;

/// Deepest AnyValue nesting accepted and written (an attribute's or a log
/// body's value is level 1; each `arrayValue`/`kvlistValue` adds one).
///
/// Chosen so that the protobuf this crate produces stays decodable under
/// prost's default recursion limit of 100 nested messages: the deepest OTLP
/// placement (an exemplar's filtered attribute holding nested `kvlistValue`s)
/// decodes at 31 AnyValue levels and fails at 32; 30 leaves one level spare.
pub const MAX_ANY_VALUE_DEPTH: usize = 30;

/// An OTLP signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `ExportTraceServiceRequest` / `ExportTraceServiceResponse`.
    Traces,
    /// `ExportMetricsServiceRequest` / `ExportMetricsServiceResponse`.
    Metrics,
    /// `ExportLogsServiceRequest` / `ExportLogsServiceResponse`.
    Logs,
}

impl Signal {
    /// `"traces"`, `"metrics"` or `"logs"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Converts an OTLP/JSON `Export<Signal>ServiceRequest` into its binary
/// protobuf encoding.
pub fn json_to_protobuf(signal: Signal, json: &[u8]) -> Result<Vec<u8>, JsonError> {
    Ok(match signal {
        Signal::Traces => decode::traces(json)?.encode_to_vec(),
        Signal::Metrics => decode::metrics(json)?.encode_to_vec(),
        Signal::Logs => decode::logs(json)?.encode_to_vec(),
    })
}

/// Converts a binary protobuf `Export<Signal>ServiceRequest` into OTLP/JSON:
/// one compact JSON object without a trailing newline.
pub fn protobuf_to_json(signal: Signal, proto: &[u8]) -> Result<Vec<u8>, JsonError> {
    match signal {
        Signal::Traces => encode::traces(&decode_protobuf(proto)?),
        Signal::Metrics => encode::metrics(&decode_protobuf(proto)?),
        Signal::Logs => encode::logs(&decode_protobuf(proto)?),
    }
}

fn decode_protobuf<M: prost::Message + Default>(proto: &[u8]) -> Result<M, JsonError> {
    M::decode(proto).map_err(|e| JsonError::new(JsonErrorKind::Protobuf, &Path::Root, format!("invalid protobuf: {e}")))
}

/// Parses an OTLP/JSON `ExportTraceServiceRequest`.
pub fn traces_from_json(json: &[u8]) -> Result<ExportTraceServiceRequest, JsonError> {
    decode::traces(json)
}

/// Parses an OTLP/JSON `ExportMetricsServiceRequest`.
pub fn metrics_from_json(json: &[u8]) -> Result<ExportMetricsServiceRequest, JsonError> {
    decode::metrics(json)
}

/// Parses an OTLP/JSON `ExportLogsServiceRequest`.
pub fn logs_from_json(json: &[u8]) -> Result<ExportLogsServiceRequest, JsonError> {
    decode::logs(json)
}

/// Writes an `ExportTraceServiceRequest` as OTLP/JSON. Fails only on ids of
/// the wrong length or AnyValues nested deeper than [`MAX_ANY_VALUE_DEPTH`].
pub fn traces_to_json(request: &ExportTraceServiceRequest) -> Result<Vec<u8>, JsonError> {
    encode::traces(request)
}

/// Writes an `ExportMetricsServiceRequest` as OTLP/JSON (see [`traces_to_json`]).
pub fn metrics_to_json(request: &ExportMetricsServiceRequest) -> Result<Vec<u8>, JsonError> {
    encode::metrics(request)
}

/// Writes an `ExportLogsServiceRequest` as OTLP/JSON (see [`traces_to_json`]).
pub fn logs_to_json(request: &ExportLogsServiceRequest) -> Result<Vec<u8>, JsonError> {
    encode::logs(request)
}

/// The `partial_success` member of an `Export<Signal>ServiceResponse`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartialSuccess {
    /// `rejected_spans`, `rejected_data_points` or `rejected_log_records`,
    /// depending on the signal.
    pub rejected: i64,
    /// Human-readable reason, or a warning when `rejected` is 0.
    pub error_message: String,
}

/// Encodes an `Export<Signal>ServiceResponse` as OTLP/JSON.
///
/// `None` is a full success and encodes as `{}` (the specification requires
/// `partial_success` to be unset then); `Some` encodes e.g.
/// `{"partialSuccess":{"rejectedSpans":"2","errorMessage":"..."}}`.
pub fn response_to_json(signal: Signal, partial_success: Option<&PartialSuccess>) -> Vec<u8> {
    encode::response(signal, partial_success)
}

/// Parses an OTLP/JSON `Export<Signal>ServiceResponse` (as received by an
/// OTLP/HTTP JSON exporter); `None` when `partialSuccess` is absent.
pub fn response_from_json(signal: Signal, json: &[u8]) -> Result<Option<PartialSuccess>, JsonError> {
    decode::response(signal, json)
}

/// Encodes a `google.rpc.Status` (the body of OTLP/HTTP 4xx/5xx responses)
/// as JSON, e.g. `{"code":3,"message":"..."}`; `details` are not written.
pub fn status_to_json(code: i32, message: &str) -> Vec<u8> {
    encode::status(code, message)
}
