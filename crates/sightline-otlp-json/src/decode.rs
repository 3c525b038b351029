//! OTLP/JSON -> prost messages.
//!
//! The input is parsed into a [`serde_json::Value`] tree (after a linear
//! pre-scan bounds its nesting depth), and the tree is walked message by
//! message. Every key is matched against both the lowerCamelCase JSON name and
//! the original snake_case proto field name; other keys are ignored, and
//! `null` means "absent".

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
    exemplar, exponential_histogram_data_point, metric, number_data_point, summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use serde::Deserialize as _;
use serde_json::{Map, Value};

use crate::error::{JsonError, JsonErrorKind, Path};
use crate::{MAX_ANY_VALUE_DEPTH, MAX_JSON_DEPTH, PartialSuccess, Signal};

type R<T> = Result<T, JsonError>;
type Obj = Map<String, Value>;

const TRACE_ID_BYTES: usize = 16;
const SPAN_ID_BYTES: usize = 8;

// ---------------------------------------------------------------------------
// Document level
// ---------------------------------------------------------------------------

/// Rejects documents nested deeper than [`MAX_JSON_DEPTH`] before the real
/// parser (which runs without its own recursion limit) sees them. The scan
/// tokenizes strings exactly as a JSON parser does, so for every prefix the
/// parser accepts, the depth counted here is the parser's recursion depth.
fn check_depth(json: &[u8]) -> R<()> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &b) in json.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(JsonError::new(
                        JsonErrorKind::TooDeep,
                        &Path::Root,
                        format!("JSON nesting exceeds {MAX_JSON_DEPTH} levels (at byte offset {offset})"),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn parse_document(json: &[u8]) -> R<Value> {
    check_depth(json)?;
    let syntax =
        |e: serde_json::Error| JsonError::new(JsonErrorKind::Syntax, &Path::Root, format!("invalid JSON: {e}"));
    let mut de = serde_json::Deserializer::from_slice(json);
    // Safe: `check_depth` bounded the nesting above.
    de.disable_recursion_limit();
    let value = Value::deserialize(&mut de).map_err(syntax)?;
    de.end().map_err(syntax)?;
    Ok(value)
}

pub(crate) fn traces(json: &[u8]) -> R<ExportTraceServiceRequest> {
    let doc = parse_document(json)?;
    let p = Path::Root;
    let m = object(&doc, &p, "ExportTraceServiceRequest")?;
    let mut out = ExportTraceServiceRequest::default();
    for (k, v) in fields(m) {
        let fp = p.field(k);
        if let "resourceSpans" | "resource_spans" = k {
            out.resource_spans = list(v, &fp, resource_spans)?;
        }
    }
    Ok(out)
}

pub(crate) fn metrics(json: &[u8]) -> R<ExportMetricsServiceRequest> {
    let doc = parse_document(json)?;
    let p = Path::Root;
    let m = object(&doc, &p, "ExportMetricsServiceRequest")?;
    let mut out = ExportMetricsServiceRequest::default();
    for (k, v) in fields(m) {
        let fp = p.field(k);
        if let "resourceMetrics" | "resource_metrics" = k {
            out.resource_metrics = list(v, &fp, resource_metrics)?;
        }
    }
    Ok(out)
}

pub(crate) fn logs(json: &[u8]) -> R<ExportLogsServiceRequest> {
    let doc = parse_document(json)?;
    let p = Path::Root;
    let m = object(&doc, &p, "ExportLogsServiceRequest")?;
    let mut out = ExportLogsServiceRequest::default();
    for (k, v) in fields(m) {
        let fp = p.field(k);
        if let "resourceLogs" | "resource_logs" = k {
            out.resource_logs = list(v, &fp, resource_logs)?;
        }
    }
    Ok(out)
}

pub(crate) fn response(signal: Signal, json: &[u8]) -> R<Option<PartialSuccess>> {
    let doc = parse_document(json)?;
    let p = Path::Root;
    let m = object(&doc, &p, "Export*ServiceResponse")?;
    let mut out = None;
    for (k, v) in fields(m) {
        let fp = p.field(k);
        if let "partialSuccess" | "partial_success" = k {
            out = Some(partial_success(signal, v, &fp)?);
        }
    }
    Ok(out)
}

fn partial_success(signal: Signal, v: &Value, p: &Path<'_>) -> R<PartialSuccess> {
    let m = object(v, p, "PartialSuccess")?;
    let (camel, snake) = match signal {
        Signal::Traces => ("rejectedSpans", "rejected_spans"),
        Signal::Metrics => ("rejectedDataPoints", "rejected_data_points"),
        Signal::Logs => ("rejectedLogRecords", "rejected_log_records"),
    };
    let mut out = PartialSuccess::default();
    for (k, v) in fields(m) {
        let fp = p.field(k);
        if k == camel || k == snake {
            out.rejected = int64(v, &fp, "int64")?;
        } else if k == "errorMessage" || k == "error_message" {
            out.error_message = string(v, &fp)?;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Generic readers
// ---------------------------------------------------------------------------

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The members of an object, minus those whose value is `null` (absent).
fn fields(m: &Obj) -> impl Iterator<Item = (&str, &Value)> {
    m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.as_str(), v))
}

fn object<'v>(v: &'v Value, p: &Path<'_>, what: &str) -> R<&'v Obj> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(JsonError::schema(p, format!("expected an object for {what}, got {}", kind_of(other)))),
    }
}

fn list<'v, T>(v: &'v Value, p: &Path<'_>, mut item: impl FnMut(&'v Value, &Path<'_>) -> R<T>) -> R<Vec<T>> {
    let arr = match v {
        Value::Array(a) => a,
        other => {
            return Err(JsonError::schema(p, format!("expected an array, got {}", kind_of(other))));
        }
    };
    let mut out = Vec::with_capacity(arr.len());
    for (i, x) in arr.iter().enumerate() {
        out.push(item(x, &p.index(i))?);
    }
    Ok(out)
}

fn string(v: &Value, p: &Path<'_>) -> R<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(JsonError::schema(p, format!("expected a string, got {}", kind_of(other)))),
    }
}

fn boolean(v: &Value, p: &Path<'_>) -> R<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(JsonError::schema(p, format!("expected a boolean, got {}", kind_of(other)))),
    }
}

/// 2^53: every integer up to this magnitude is exactly representable as f64.
const MAX_EXACT_F64_INT: f64 = 9_007_199_254_740_992.0;

/// Characters that can appear in a JSON number; used to keep Rust's float
/// parser from accepting words such as "inf" or "nan".
fn is_numeric_text(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && s.bytes().any(|b| b.is_ascii_digit())
}

enum IntProblem {
    NotInteger,
    OutOfRange,
}

fn integral_f64(f: f64) -> Result<i128, IntProblem> {
    if !f.is_finite() {
        Err(IntProblem::OutOfRange)
    } else if f.fract() != 0.0 {
        Err(IntProblem::NotInteger)
    } else if f.abs() > MAX_EXACT_F64_INT {
        // Beyond 2^53 a float cannot carry the exact integer; insist on a
        // plain integer literal or a decimal string instead.
        Err(IntProblem::OutOfRange)
    } else {
        Ok(f as i128)
    }
}

/// Reads a JSON number or decimal string as an integer wide enough to
/// range-check any proto integer type; `ty` names that type in errors.
fn integer(v: &Value, p: &Path<'_>, ty: &str) -> R<i128> {
    let (parsed, shown) = match v {
        Value::Number(n) => {
            let parsed = if let Some(u) = n.as_u64() {
                Ok(i128::from(u))
            } else if let Some(i) = n.as_i64() {
                Ok(i128::from(i))
            } else {
                match n.as_f64() {
                    Some(f) => integral_f64(f),
                    None => Err(IntProblem::OutOfRange),
                }
            };
            (parsed, n.to_string())
        }
        Value::String(s) => {
            let parsed = match s.parse::<i128>() {
                Ok(x) => Ok(x),
                Err(e) => match e.kind() {
                    std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                        Err(IntProblem::OutOfRange)
                    }
                    _ if is_numeric_text(s) => match s.parse::<f64>() {
                        Ok(f) => integral_f64(f),
                        Err(_) => {
                            return Err(JsonError::schema(p, format!("invalid {ty} string {}", quoted(s))));
                        }
                    },
                    _ => {
                        return Err(JsonError::schema(p, format!("invalid {ty} string {}", quoted(s))));
                    }
                },
            };
            (parsed, quoted(s))
        }
        other => {
            return Err(JsonError::schema(p, format!("expected a string or number for {ty}, got {}", kind_of(other))));
        }
    };
    parsed.map_err(|problem| match problem {
        IntProblem::NotInteger => JsonError::schema(p, format!("expected an integer for {ty}, got {shown}")),
        IntProblem::OutOfRange => JsonError::schema(p, format!("number {shown} out of range for {ty}")),
    })
}

/// Shows (a bounded prefix of) a string from the input in an error message.
fn quoted(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let prefix: String = s.chars().take(MAX).collect();
        format!("{prefix:?}...")
    }
}

fn ranged<T: TryFrom<i128>>(v: &Value, p: &Path<'_>, ty: &str) -> R<T> {
    let x = integer(v, p, ty)?;
    T::try_from(x).map_err(|_| JsonError::schema(p, format!("number {x} out of range for {ty}")))
}

fn uint64(v: &Value, p: &Path<'_>, ty: &str) -> R<u64> {
    ranged(v, p, ty)
}

fn int64(v: &Value, p: &Path<'_>, ty: &str) -> R<i64> {
    ranged(v, p, ty)
}

fn uint32(v: &Value, p: &Path<'_>, ty: &str) -> R<u32> {
    ranged(v, p, ty)
}

fn int32(v: &Value, p: &Path<'_>, ty: &str) -> R<i32> {
    ranged(v, p, ty)
}

fn double(v: &Value, p: &Path<'_>) -> R<f64> {
    match v {
        Value::Number(n) => {
            n.as_f64().ok_or_else(|| JsonError::schema(p, format!("number {n} out of range for double")))
        }
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            text if is_numeric_text(text) => match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(f),
                Ok(_) => Err(JsonError::schema(p, format!("number {} out of range for double", quoted(text)))),
                Err(_) => Err(JsonError::schema(p, format!("invalid double string {}", quoted(text)))),
            },
            text => Err(JsonError::schema(
                p,
                format!(
                    "invalid double string {} (expected a number, \"NaN\", \"Infinity\" or \"-Infinity\")",
                    quoted(text)
                ),
            )),
        },
        other => Err(JsonError::schema(p, format!("expected a number or string for double, got {}", kind_of(other)))),
    }
}

/// An enum given as its integer value (number or decimal string) or as its
/// proto enum name (e.g. `"SPAN_KIND_SERVER"`).
fn enumeration(v: &Value, p: &Path<'_>, ty: &str, from_name: impl Fn(&str) -> Option<i32>) -> R<i32> {
    match v {
        Value::Number(_) => int32(v, p, ty),
        Value::String(s) => match from_name(s) {
            Some(x) => Ok(x),
            None if is_numeric_text(s) => int32(v, p, ty),
            None => Err(JsonError::schema(p, format!("unknown {ty} value {}", quoted(s)))),
        },
        other => {
            Err(JsonError::schema(p, format!("expected an integer or string for enum {ty}, got {}", kind_of(other))))
        }
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A trace or span id: case-insensitive hex of exactly `bytes` bytes, or the
/// empty string for "no id".
fn hex_id(v: &Value, p: &Path<'_>, bytes: usize) -> R<Vec<u8>> {
    let s = match v {
        Value::String(s) => s,
        other => {
            return Err(JsonError::schema(p, format!("expected a hex string, got {}", kind_of(other))));
        }
    };
    if s.is_empty() {
        return Ok(Vec::new());
    }
    if let Some((pos, c)) = s.chars().enumerate().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(JsonError::schema(p, format!("invalid hex (non-hex character {c:?} at position {pos})")));
    }
    // All ASCII from here on, so bytes == characters.
    let digits = s.as_bytes();
    if digits.len() != bytes * 2 {
        return Err(JsonError::schema(
            p,
            format!("invalid hex (expected {} hex digits, got {})", bytes * 2, digits.len()),
        ));
    }
    let mut out = Vec::with_capacity(bytes);
    for pair in digits.chunks_exact(2) {
        match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
            _ => return Err(JsonError::schema(p, "invalid hex")),
        }
    }
    Ok(out)
}

const B64_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const B64_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, B64_CONFIG);
const B64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, B64_CONFIG);

/// A `bytes` field other than the ids: standard base64 (padding optional),
/// or its URL-safe variant.
fn base64_bytes(v: &Value, p: &Path<'_>) -> R<Vec<u8>> {
    let s = match v {
        Value::String(s) => s,
        other => {
            return Err(JsonError::schema(p, format!("expected a base64 string, got {}", kind_of(other))));
        }
    };
    let engine = if s.bytes().any(|b| b == b'-' || b == b'_') { &B64_URL_SAFE } else { &B64_STANDARD };
    engine.decode(s).map_err(|e| JsonError::schema(p, format!("invalid base64 ({e})")))
}

/// Stores one member of a `oneof`, rejecting a second one.
fn set_oneof<'k, T>(slot: &mut Option<(&'k str, T)>, key: &'k str, value: T, p: &Path<'_>, oneof: &str) -> R<()> {
    if let Some((first, _)) = slot {
        return Err(JsonError::schema(p, format!("more than one member of oneof {oneof} is set ({first} and {key})")));
    }
    *slot = Some((key, value));
    Ok(())
}

// ---------------------------------------------------------------------------
// common.v1 / resource.v1
// ---------------------------------------------------------------------------

fn any_value(v: &Value, p: &Path<'_>, depth: usize) -> R<AnyValue> {
    if depth > MAX_ANY_VALUE_DEPTH {
        return Err(JsonError::new(
            JsonErrorKind::TooDeep,
            p,
            format!("AnyValue nesting exceeds {MAX_ANY_VALUE_DEPTH} levels"),
        ));
    }
    let m = object(v, p, "AnyValue")?;
    let mut slot = None;
    for (k, x) in fields(m) {
        let fp = p.field(k);
        let value = match k {
            "stringValue" | "string_value" => any_value::Value::StringValue(string(x, &fp)?),
            "boolValue" | "bool_value" => any_value::Value::BoolValue(boolean(x, &fp)?),
            "intValue" | "int_value" => any_value::Value::IntValue(int64(x, &fp, "int64")?),
            "doubleValue" | "double_value" => any_value::Value::DoubleValue(double(x, &fp)?),
            "arrayValue" | "array_value" => any_value::Value::ArrayValue(array_value(x, &fp, depth)?),
            "kvlistValue" | "kvlist_value" => any_value::Value::KvlistValue(kvlist_value(x, &fp, depth)?),
            "bytesValue" | "bytes_value" => any_value::Value::BytesValue(base64_bytes(x, &fp)?),
            "stringValueStrindex" | "string_value_strindex" => {
                any_value::Value::StringValueStrindex(int32(x, &fp, "int32")?)
            }
            _ => continue,
        };
        set_oneof(&mut slot, k, value, p, "AnyValue.value")?;
    }
    Ok(AnyValue { value: slot.map(|(_, v)| v) })
}

fn array_value(v: &Value, p: &Path<'_>, depth: usize) -> R<ArrayValue> {
    let m = object(v, p, "ArrayValue")?;
    let mut out = ArrayValue::default();
    for (k, x) in fields(m) {
        if k == "values" {
            out.values = list(x, &p.field(k), |e, ep| any_value(e, ep, depth + 1))?;
        }
    }
    Ok(out)
}

fn kvlist_value(v: &Value, p: &Path<'_>, depth: usize) -> R<KeyValueList> {
    let m = object(v, p, "KeyValueList")?;
    let mut out = KeyValueList::default();
    for (k, x) in fields(m) {
        if k == "values" {
            out.values = list(x, &p.field(k), |e, ep| key_value(e, ep, depth + 1))?;
        }
    }
    Ok(out)
}

/// `depth` is the AnyValue level of this pair's value (1 for attributes).
fn key_value(v: &Value, p: &Path<'_>, depth: usize) -> R<KeyValue> {
    let m = object(v, p, "KeyValue")?;
    let mut out = KeyValue::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "key" => out.key = string(x, &fp)?,
            "value" => out.value = Some(any_value(x, &fp, depth)?),
            "keyStrindex" | "key_strindex" => out.key_strindex = int32(x, &fp, "int32")?,
            _ => {}
        }
    }
    Ok(out)
}

fn attributes(v: &Value, p: &Path<'_>) -> R<Vec<KeyValue>> {
    list(v, p, |e, ep| key_value(e, ep, 1))
}

fn is_dropped_attributes_count(k: &str) -> bool {
    matches!(k, "droppedAttributesCount" | "dropped_attributes_count")
}

fn is_schema_url(k: &str) -> bool {
    matches!(k, "schemaUrl" | "schema_url")
}

fn resource(v: &Value, p: &Path<'_>) -> R<Resource> {
    let m = object(v, p, "Resource")?;
    let mut out = Resource::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "attributes" => out.attributes = attributes(x, &fp)?,
            k if is_dropped_attributes_count(k) => {
                out.dropped_attributes_count = uint32(x, &fp, "uint32")?;
            }
            "entityRefs" | "entity_refs" => out.entity_refs = list(x, &fp, entity_ref)?,
            _ => {}
        }
    }
    Ok(out)
}

fn entity_ref(v: &Value, p: &Path<'_>) -> R<EntityRef> {
    let m = object(v, p, "EntityRef")?;
    let mut out = EntityRef::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            k if is_schema_url(k) => out.schema_url = string(x, &fp)?,
            "type" => out.r#type = string(x, &fp)?,
            "idKeys" | "id_keys" => out.id_keys = list(x, &fp, string)?,
            "descriptionKeys" | "description_keys" => {
                out.description_keys = list(x, &fp, string)?;
            }
            _ => {}
        }
    }
    Ok(out)
}

fn scope(v: &Value, p: &Path<'_>) -> R<InstrumentationScope> {
    let m = object(v, p, "InstrumentationScope")?;
    let mut out = InstrumentationScope::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "name" => out.name = string(x, &fp)?,
            "version" => out.version = string(x, &fp)?,
            "attributes" => out.attributes = attributes(x, &fp)?,
            k if is_dropped_attributes_count(k) => {
                out.dropped_attributes_count = uint32(x, &fp, "uint32")?;
            }
            _ => {}
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// trace.v1
// ---------------------------------------------------------------------------

fn resource_spans(v: &Value, p: &Path<'_>) -> R<ResourceSpans> {
    let m = object(v, p, "ResourceSpans")?;
    let mut out = ResourceSpans::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "resource" => out.resource = Some(resource(x, &fp)?),
            "scopeSpans" | "scope_spans" => out.scope_spans = list(x, &fp, scope_spans)?,
            k if is_schema_url(k) => out.schema_url = string(x, &fp)?,
            _ => {}
        }
    }
    Ok(out)
}

fn scope_spans(v: &Value, p: &Path<'_>) -> R<ScopeSpans> {
    let m = object(v, p, "ScopeSpans")?;
    let mut out = ScopeSpans::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "scope" => out.scope = Some(scope(x, &fp)?),
            "spans" => out.spans = list(x, &fp, span)?,
            k if is_schema_url(k) => out.schema_url = string(x, &fp)?,
            _ => {}
        }
    }
    Ok(out)
}

fn span_kind(name: &str) -> Option<i32> {
    span::SpanKind::from_str_name(name).map(|k| k as i32)
}

fn status_code(name: &str) -> Option<i32> {
    status::StatusCode::from_str_name(name).map(|c| c as i32)
}

fn span(v: &Value, p: &Path<'_>) -> R<Span> {
    let m = object(v, p, "Span")?;
    let mut out = Span::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "traceId" | "trace_id" => out.trace_id = hex_id(x, &fp, TRACE_ID_BYTES)?,
            "spanId" | "span_id" => out.span_id = hex_id(x, &fp, SPAN_ID_BYTES)?,
            "traceState" | "trace_state" => out.trace_state = string(x, &fp)?,
            "parentSpanId" | "parent_span_id" => {
                out.parent_span_id = hex_id(x, &fp, SPAN_ID_BYTES)?;
            }
            "flags" => out.flags = uint32(x, &fp, "fixed32")?,
            "name" => out.name = string(x, &fp)?,
            "kind" => out.kind = enumeration(x, &fp, "SpanKind", span_kind)?,
            "startTimeUnixNano" | "start_time_unix_nano" => {
                out.start_time_unix_nano = uint64(x, &fp, "fixed64")?;
            }
            "endTimeUnixNano" | "end_time_unix_nano" => {
                out.end_time_unix_nano = uint64(x, &fp, "fixed64")?;
            }
            "attributes" => out.attributes = attributes(x, &fp)?,
            k if is_dropped_attributes_count(k) => {
                out.dropped_attributes_count = uint32(x, &fp, "uint32")?;
            }
            "events" => out.events = list(x, &fp, span_event)?,
            "droppedEventsCount" | "dropped_events_count" => {
                out.dropped_events_count = uint32(x, &fp, "uint32")?;
            }
            "links" => out.links = list(x, &fp, span_link)?,
            "droppedLinksCount" | "dropped_links_count" => {
                out.dropped_links_count = uint32(x, &fp, "uint32")?;
            }
            "status" => out.status = Some(span_status(x, &fp)?),
            _ => {}
        }
    }
    Ok(out)
}

fn span_event(v: &Value, p: &Path<'_>) -> R<span::Event> {
    let m = object(v, p, "Span.Event")?;
    let mut out = span::Event::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "timeUnixNano" | "time_unix_nano" => out.time_unix_nano = uint64(x, &fp, "fixed64")?,
            "name" => out.name = string(x, &fp)?,
            "attributes" => out.attributes = attributes(x, &fp)?,
            k if is_dropped_attributes_count(k) => {
                out.dropped_attributes_count = uint32(x, &fp, "uint32")?;
            }
            _ => {}
        }
    }
    Ok(out)
}

fn span_link(v: &Value, p: &Path<'_>) -> R<span::Link> {
    let m = object(v, p, "Span.Link")?;
    let mut out = span::Link::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "traceId" | "trace_id" => out.trace_id = hex_id(x, &fp, TRACE_ID_BYTES)?,
            "spanId" | "span_id" => out.span_id = hex_id(x, &fp, SPAN_ID_BYTES)?,
            "traceState" | "trace_state" => out.trace_state = string(x, &fp)?,
            "attributes" => out.attributes = attributes(x, &fp)?,
            k if is_dropped_attributes_count(k) => {
                out.dropped_attributes_count = uint32(x, &fp, "uint32")?;
            }
            "flags" => out.flags = uint32(x, &fp, "fixed32")?,
            _ => {}
        }
    }
    Ok(out)
}

fn span_status(v: &Value, p: &Path<'_>) -> R<Status> {
    let m = object(v, p, "Status")?;
    let mut out = Status::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "message" => out.message = string(x, &fp)?,
            "code" => out.code = enumeration(x, &fp, "StatusCode", status_code)?,
            _ => {}
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// metrics.v1
// ---------------------------------------------------------------------------

fn resource_metrics(v: &Value, p: &Path<'_>) -> R<ResourceMetrics> {
    let m = object(v, p, "ResourceMetrics")?;
    let mut out = ResourceMetrics::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "resource" => out.resource = Some(resource(x, &fp)?),
            "scopeMetrics" | "scope_metrics" => out.scope_metrics = list(x, &fp, scope_metrics)?,
            k if is_schema_url(k) => out.schema_url = string(x, &fp)?,
            _ => {}
        }
    }
    Ok(out)
}

fn scope_metrics(v: &Value, p: &Path<'_>) -> R<ScopeMetrics> {
    let m = object(v, p, "ScopeMetrics")?;
    let mut out = ScopeMetrics::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "scope" => out.scope = Some(scope(x, &fp)?),
            "metrics" => out.metrics = list(x, &fp, metric)?,
            k if is_schema_url(k) => out.schema_url = string(x, &fp)?,
            _ => {}
        }
    }
    Ok(out)
}

fn metric(v: &Value, p: &Path<'_>) -> R<Metric> {
    let m = object(v, p, "Metric")?;
    let mut out = Metric::default();
    let mut data = None;
    for (k, x) in fields(m) {
        let fp = p.field(k);
        let d = match k {
            "name" => {
                out.name = string(x, &fp)?;
                continue;
            }
            "description" => {
                out.description = string(x, &fp)?;
                continue;
            }
            "unit" => {
                out.unit = string(x, &fp)?;
                continue;
            }
            "metadata" => {
                out.metadata = attributes(x, &fp)?;
                continue;
            }
            "gauge" => metric::Data::Gauge(gauge(x, &fp)?),
            "sum" => metric::Data::Sum(sum(x, &fp)?),
            "histogram" => metric::Data::Histogram(histogram(x, &fp)?),
            "exponentialHistogram" | "exponential_histogram" => {
                metric::Data::ExponentialHistogram(exponential_histogram(x, &fp)?)
            }
            "summary" => metric::Data::Summary(summary(x, &fp)?),
            _ => continue,
        };
        set_oneof(&mut data, k, d, p, "Metric.data")?;
    }
    out.data = data.map(|(_, d)| d);
    Ok(out)
}

fn is_data_points(k: &str) -> bool {
    matches!(k, "dataPoints" | "data_points")
}

fn temporality(v: &Value, p: &Path<'_>) -> R<i32> {
    enumeration(v, p, "AggregationTemporality", |name| AggregationTemporality::from_str_name(name).map(|t| t as i32))
}

fn is_temporality(k: &str) -> bool {
    matches!(k, "aggregationTemporality" | "aggregation_temporality")
}

fn gauge(v: &Value, p: &Path<'_>) -> R<Gauge> {
    let m = object(v, p, "Gauge")?;
    let mut out = Gauge::default();
    for (k, x) in fields(m) {
        if is_data_points(k) {
            out.data_points = list(x, &p.field(k), number_data_point)?;
        }
    }
    Ok(out)
}

fn sum(v: &Value, p: &Path<'_>) -> R<Sum> {
    let m = object(v, p, "Sum")?;
    let mut out = Sum::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            k if is_data_points(k) => out.data_points = list(x, &fp, number_data_point)?,
            k if is_temporality(k) => out.aggregation_temporality = temporality(x, &fp)?,
            "isMonotonic" | "is_monotonic" => out.is_monotonic = boolean(x, &fp)?,
            _ => {}
        }
    }
    Ok(out)
}

fn histogram(v: &Value, p: &Path<'_>) -> R<Histogram> {
    let m = object(v, p, "Histogram")?;
    let mut out = Histogram::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            k if is_data_points(k) => out.data_points = list(x, &fp, histogram_data_point)?,
            k if is_temporality(k) => out.aggregation_temporality = temporality(x, &fp)?,
            _ => {}
        }
    }
    Ok(out)
}

fn exponential_histogram(v: &Value, p: &Path<'_>) -> R<ExponentialHistogram> {
    let m = object(v, p, "ExponentialHistogram")?;
    let mut out = ExponentialHistogram::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            k if is_data_points(k) => {
                out.data_points = list(x, &fp, exponential_histogram_data_point)?;
            }
            k if is_temporality(k) => out.aggregation_temporality = temporality(x, &fp)?,
            _ => {}
        }
    }
    Ok(out)
}

fn summary(v: &Value, p: &Path<'_>) -> R<Summary> {
    let m = object(v, p, "Summary")?;
    let mut out = Summary::default();
    for (k, x) in fields(m) {
        if is_data_points(k) {
            out.data_points = list(x, &p.field(k), summary_data_point)?;
        }
    }
    Ok(out)
}

fn fixed64_list(v: &Value, p: &Path<'_>, ty: &'static str) -> R<Vec<u64>> {
    list(v, p, |e, ep| uint64(e, ep, ty))
}

fn number_data_point(v: &Value, p: &Path<'_>) -> R<NumberDataPoint> {
    let m = object(v, p, "NumberDataPoint")?;
    let mut out = NumberDataPoint::default();
    let mut value = None;
    for (k, x) in fields(m) {
        let fp = p.field(k);
        let val = match k {
            "asDouble" | "as_double" => number_data_point::Value::AsDouble(double(x, &fp)?),
            "asInt" | "as_int" => number_data_point::Value::AsInt(int64(x, &fp, "sfixed64")?),
            _ => {
                match k {
                    "attributes" => out.attributes = attributes(x, &fp)?,
                    "startTimeUnixNano" | "start_time_unix_nano" => {
                        out.start_time_unix_nano = uint64(x, &fp, "fixed64")?;
                    }
                    "timeUnixNano" | "time_unix_nano" => {
                        out.time_unix_nano = uint64(x, &fp, "fixed64")?;
                    }
                    "exemplars" => out.exemplars = list(x, &fp, exemplar)?,
                    "flags" => out.flags = uint32(x, &fp, "uint32")?,
                    _ => {}
                }
                continue;
            }
        };
        set_oneof(&mut value, k, val, p, "NumberDataPoint.value")?;
    }
    out.value = value.map(|(_, v)| v);
    Ok(out)
}

fn histogram_data_point(v: &Value, p: &Path<'_>) -> R<HistogramDataPoint> {
    let m = object(v, p, "HistogramDataPoint")?;
    let mut out = HistogramDataPoint::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "attributes" => out.attributes = attributes(x, &fp)?,
            "startTimeUnixNano" | "start_time_unix_nano" => {
                out.start_time_unix_nano = uint64(x, &fp, "fixed64")?;
            }
            "timeUnixNano" | "time_unix_nano" => out.time_unix_nano = uint64(x, &fp, "fixed64")?,
            "count" => out.count = uint64(x, &fp, "fixed64")?,
            "sum" => out.sum = Some(double(x, &fp)?),
            "bucketCounts" | "bucket_counts" => {
                out.bucket_counts = fixed64_list(x, &fp, "fixed64")?;
            }
            "explicitBounds" | "explicit_bounds" => out.explicit_bounds = list(x, &fp, double)?,
            "exemplars" => out.exemplars = list(x, &fp, exemplar)?,
            "flags" => out.flags = uint32(x, &fp, "uint32")?,
            "min" => out.min = Some(double(x, &fp)?),
            "max" => out.max = Some(double(x, &fp)?),
            _ => {}
        }
    }
    Ok(out)
}

fn exponential_histogram_data_point(v: &Value, p: &Path<'_>) -> R<ExponentialHistogramDataPoint> {
    let m = object(v, p, "ExponentialHistogramDataPoint")?;
    let mut out = ExponentialHistogramDataPoint::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "attributes" => out.attributes = attributes(x, &fp)?,
            "startTimeUnixNano" | "start_time_unix_nano" => {
                out.start_time_unix_nano = uint64(x, &fp, "fixed64")?;
            }
            "timeUnixNano" | "time_unix_nano" => out.time_unix_nano = uint64(x, &fp, "fixed64")?,
            "count" => out.count = uint64(x, &fp, "fixed64")?,
            "sum" => out.sum = Some(double(x, &fp)?),
            "scale" => out.scale = int32(x, &fp, "sint32")?,
            "zeroCount" | "zero_count" => out.zero_count = uint64(x, &fp, "fixed64")?,
            "positive" => out.positive = Some(buckets(x, &fp)?),
            "negative" => out.negative = Some(buckets(x, &fp)?),
            "flags" => out.flags = uint32(x, &fp, "uint32")?,
            "exemplars" => out.exemplars = list(x, &fp, exemplar)?,
            "min" => out.min = Some(double(x, &fp)?),
            "max" => out.max = Some(double(x, &fp)?),
            "zeroThreshold" | "zero_threshold" => out.zero_threshold = double(x, &fp)?,
            _ => {}
        }
    }
    Ok(out)
}

fn buckets(v: &Value, p: &Path<'_>) -> R<exponential_histogram_data_point::Buckets> {
    let m = object(v, p, "ExponentialHistogramDataPoint.Buckets")?;
    let mut out = exponential_histogram_data_point::Buckets::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "offset" => out.offset = int32(x, &fp, "sint32")?,
            "bucketCounts" | "bucket_counts" => {
                out.bucket_counts = fixed64_list(x, &fp, "uint64")?;
            }
            _ => {}
        }
    }
    Ok(out)
}

fn summary_data_point(v: &Value, p: &Path<'_>) -> R<SummaryDataPoint> {
    let m = object(v, p, "SummaryDataPoint")?;
    let mut out = SummaryDataPoint::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "attributes" => out.attributes = attributes(x, &fp)?,
            "startTimeUnixNano" | "start_time_unix_nano" => {
                out.start_time_unix_nano = uint64(x, &fp, "fixed64")?;
            }
            "timeUnixNano" | "time_unix_nano" => out.time_unix_nano = uint64(x, &fp, "fixed64")?,
            "count" => out.count = uint64(x, &fp, "fixed64")?,
            "sum" => out.sum = double(x, &fp)?,
            "quantileValues" | "quantile_values" => {
                out.quantile_values = list(x, &fp, value_at_quantile)?;
            }
            "flags" => out.flags = uint32(x, &fp, "uint32")?,
            _ => {}
        }
    }
    Ok(out)
}

fn value_at_quantile(v: &Value, p: &Path<'_>) -> R<summary_data_point::ValueAtQuantile> {
    let m = object(v, p, "SummaryDataPoint.ValueAtQuantile")?;
    let mut out = summary_data_point::ValueAtQuantile::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "quantile" => out.quantile = double(x, &fp)?,
            "value" => out.value = double(x, &fp)?,
            _ => {}
        }
    }
    Ok(out)
}

fn exemplar(v: &Value, p: &Path<'_>) -> R<Exemplar> {
    let m = object(v, p, "Exemplar")?;
    let mut out = Exemplar::default();
    let mut value = None;
    for (k, x) in fields(m) {
        let fp = p.field(k);
        let val = match k {
            "asDouble" | "as_double" => exemplar::Value::AsDouble(double(x, &fp)?),
            "asInt" | "as_int" => exemplar::Value::AsInt(int64(x, &fp, "sfixed64")?),
            _ => {
                match k {
                    "filteredAttributes" | "filtered_attributes" => {
                        out.filtered_attributes = attributes(x, &fp)?;
                    }
                    "timeUnixNano" | "time_unix_nano" => {
                        out.time_unix_nano = uint64(x, &fp, "fixed64")?;
                    }
                    "spanId" | "span_id" => out.span_id = hex_id(x, &fp, SPAN_ID_BYTES)?,
                    "traceId" | "trace_id" => out.trace_id = hex_id(x, &fp, TRACE_ID_BYTES)?,
                    _ => {}
                }
                continue;
            }
        };
        set_oneof(&mut value, k, val, p, "Exemplar.value")?;
    }
    out.value = value.map(|(_, v)| v);
    Ok(out)
}

// ---------------------------------------------------------------------------
// logs.v1
// ---------------------------------------------------------------------------

fn resource_logs(v: &Value, p: &Path<'_>) -> R<ResourceLogs> {
    let m = object(v, p, "ResourceLogs")?;
    let mut out = ResourceLogs::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "resource" => out.resource = Some(resource(x, &fp)?),
            "scopeLogs" | "scope_logs" => out.scope_logs = list(x, &fp, scope_logs)?,
            k if is_schema_url(k) => out.schema_url = string(x, &fp)?,
            _ => {}
        }
    }
    Ok(out)
}

fn scope_logs(v: &Value, p: &Path<'_>) -> R<ScopeLogs> {
    let m = object(v, p, "ScopeLogs")?;
    let mut out = ScopeLogs::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "scope" => out.scope = Some(scope(x, &fp)?),
            "logRecords" | "log_records" => out.log_records = list(x, &fp, log_record)?,
            k if is_schema_url(k) => out.schema_url = string(x, &fp)?,
            _ => {}
        }
    }
    Ok(out)
}

fn log_record(v: &Value, p: &Path<'_>) -> R<LogRecord> {
    let m = object(v, p, "LogRecord")?;
    let mut out = LogRecord::default();
    for (k, x) in fields(m) {
        let fp = p.field(k);
        match k {
            "timeUnixNano" | "time_unix_nano" => out.time_unix_nano = uint64(x, &fp, "fixed64")?,
            "observedTimeUnixNano" | "observed_time_unix_nano" => {
                out.observed_time_unix_nano = uint64(x, &fp, "fixed64")?;
            }
            "severityNumber" | "severity_number" => {
                out.severity_number = enumeration(x, &fp, "SeverityNumber", |name| {
                    SeverityNumber::from_str_name(name).map(|s| s as i32)
                })?;
            }
            "severityText" | "severity_text" => out.severity_text = string(x, &fp)?,
            "body" => out.body = Some(any_value(x, &fp, 1)?),
            "attributes" => out.attributes = attributes(x, &fp)?,
            k if is_dropped_attributes_count(k) => {
                out.dropped_attributes_count = uint32(x, &fp, "uint32")?;
            }
            "flags" => out.flags = uint32(x, &fp, "fixed32")?,
            "traceId" | "trace_id" => out.trace_id = hex_id(x, &fp, TRACE_ID_BYTES)?,
            "spanId" | "span_id" => out.span_id = hex_id(x, &fp, SPAN_ID_BYTES)?,
            "eventName" | "event_name" => out.event_name = string(x, &fp)?,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scan_ignores_brackets_in_strings() {
        let deep_in_string = format!(r#"{{"a":"{}"}}"#, "[".repeat(10_000));
        assert!(check_depth(deep_in_string.as_bytes()).is_ok());
        let escaped_quote = format!(r#"{{"a":"\"{}"}}"#, "{".repeat(10_000));
        assert!(check_depth(escaped_quote.as_bytes()).is_ok());
        let deep = "[".repeat(MAX_JSON_DEPTH + 1);
        let err = check_depth(deep.as_bytes()).err();
        assert_eq!(err.map(|e| e.kind()), Some(JsonErrorKind::TooDeep));
        let ok = "[".repeat(MAX_JSON_DEPTH);
        assert!(check_depth(ok.as_bytes()).is_ok());
    }

    #[test]
    fn integers() {
        let p = Path::Root;
        let j = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
        assert_eq!(uint64(&j("\"18446744073709551615\""), &p, "uint64").ok(), Some(u64::MAX));
        assert_eq!(uint64(&j("18446744073709551615"), &p, "uint64").ok(), Some(u64::MAX));
        assert_eq!(int64(&j("-9223372036854775808"), &p, "int64").ok(), Some(i64::MIN));
        assert_eq!(int64(&j("\"-5\""), &p, "int64").ok(), Some(-5));
        assert_eq!(int64(&j("1e3"), &p, "int64").ok(), Some(1000));
        assert_eq!(int64(&j("\"1e3\""), &p, "int64").ok(), Some(1000));
        assert_eq!(int64(&j("2.0"), &p, "int64").ok(), Some(2));
        assert!(int64(&j("2.5"), &p, "int64").is_err());
        assert!(int64(&j("1e300"), &p, "int64").is_err());
        assert!(uint64(&j("-1"), &p, "uint64").is_err());
        assert!(uint32(&j("4294967296"), &p, "uint32").is_err());
        assert!(int64(&j("\"inf\""), &p, "int64").is_err());
        assert!(int64(&j("\"\""), &p, "int64").is_err());
        assert!(int64(&j("\" 5\""), &p, "int64").is_err());
    }

    #[test]
    fn doubles() {
        let p = Path::Root;
        let j = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
        assert!(double(&j("\"NaN\""), &p).is_ok_and(f64::is_nan));
        assert_eq!(double(&j("\"Infinity\""), &p).ok(), Some(f64::INFINITY));
        assert_eq!(double(&j("\"-Infinity\""), &p).ok(), Some(f64::NEG_INFINITY));
        assert_eq!(double(&j("\"1.5\""), &p).ok(), Some(1.5));
        assert_eq!(double(&j("7"), &p).ok(), Some(7.0));
        assert!(double(&j("\"nan\""), &p).is_err());
        assert!(double(&j("\"inf\""), &p).is_err());
        assert!(double(&j("\"1e999\""), &p).is_err());
        assert!(double(&j("true"), &p).is_err());
    }

    #[test]
    fn hex_ids() {
        let p = Path::Root;
        let s = |x: &str| Value::String(x.to_owned());
        assert_eq!(hex_id(&s(""), &p, 8).ok(), Some(vec![]));
        assert_eq!(hex_id(&s("00fFaA0102030405"), &p, 8).ok(), Some(vec![0, 0xff, 0xaa, 1, 2, 3, 4, 5]));
        let e = hex_id(&s("0x0102030405060708"), &p, 8).err();
        assert_eq!(e.map(|e| e.to_string()), Some("invalid hex (non-hex character 'x' at position 1)".to_owned()));
        let e = hex_id(&s("0102"), &p, 8).err();
        assert_eq!(e.map(|e| e.to_string()), Some("invalid hex (expected 16 hex digits, got 4)".to_owned()));
    }

    #[test]
    fn base64_variants() {
        let p = Path::Root;
        let s = |x: &str| Value::String(x.to_owned());
        let want = Some(vec![0xfb, 0xff]);
        assert_eq!(base64_bytes(&s("+/8="), &p).ok(), want);
        assert_eq!(base64_bytes(&s("+/8"), &p).ok(), want);
        assert_eq!(base64_bytes(&s("-_8="), &p).ok(), want);
        assert_eq!(base64_bytes(&s("-_8"), &p).ok(), want);
        assert_eq!(base64_bytes(&s(""), &p).ok(), Some(vec![]));
        assert!(base64_bytes(&s("!!!!"), &p).is_err());
        assert!(base64_bytes(&s("+_8="), &p).is_err());
    }
}
