//! prost messages -> OTLP/JSON, written straight into a byte buffer.
//!
//! Output conventions (those of the proto3 JSON mapping as amended by OTLP,
//! and of the OpenTelemetry Collector's JSON marshaler):
//! - lowerCamelCase keys, in .proto declaration order;
//! - trace/span ids as lowercase hex, other bytes as standard base64;
//! - 64-bit integers as decimal strings, 32-bit integers and enums as numbers;
//! - non-finite doubles as `"NaN"`, `"Infinity"`, `"-Infinity"`;
//! - scalar fields with their default value and empty repeated fields are
//!   omitted; message fields and `oneof` members that are set are always
//!   written (so presence survives a round trip), `optional` doubles too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, EntityRef, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, SummaryDataPoint, exemplar, exponential_histogram_data_point, metric, number_data_point,
    summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

use crate::error::{JsonError, JsonErrorKind, Path};
use crate::{MAX_ANY_VALUE_DEPTH, PartialSuccess, Signal};

type R<T> = Result<T, JsonError>;
type Buf = Vec<u8>;

const TRACE_ID_BYTES: usize = 16;
const SPAN_ID_BYTES: usize = 8;

// ---------------------------------------------------------------------------
// Low-level writers
// ---------------------------------------------------------------------------

fn write_str(buf: &mut Buf, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(b >> 4)]);
            buf.push(HEX[usize::from(b & 0xf)]);
        } else {
            buf.extend_from_slice(escape);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

fn write_display(buf: &mut Buf, v: impl std::fmt::Display) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(buf, "{v}");
}

fn write_quoted(buf: &mut Buf, v: impl std::fmt::Display) {
    buf.push(b'"');
    write_display(buf, v);
    buf.push(b'"');
}

fn write_f64(buf: &mut Buf, v: f64) {
    if v.is_nan() {
        buf.extend_from_slice(b"\"NaN\"");
    } else if v == f64::INFINITY {
        buf.extend_from_slice(b"\"Infinity\"");
    } else if v == f64::NEG_INFINITY {
        buf.extend_from_slice(b"\"-Infinity\"");
    } else {
        match serde_json::Number::from_f64(v) {
            Some(n) => {
                // Shortest round-trip form; "5.0" is written as "5" like Go.
                let text = n.to_string();
                let text = text.strip_suffix(".0").unwrap_or(&text);
                buf.extend_from_slice(text.as_bytes());
            }
            // Unreachable for finite values; keep the output valid anyway.
            None => buf.push(b'0'),
        }
    }
}

fn write_hex(buf: &mut Buf, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    for &b in bytes {
        buf.push(HEX[usize::from(b >> 4)]);
        buf.push(HEX[usize::from(b & 0xf)]);
    }
    buf.push(b'"');
}

/// Writes one JSON object; `f` adds its members.
fn object(buf: &mut Buf, f: impl FnOnce(&mut Obj<'_>) -> R<()>) -> R<()> {
    buf.push(b'{');
    let mut obj = Obj { buf, first: true };
    f(&mut obj)?;
    buf.push(b'}');
    Ok(())
}

struct Obj<'b> {
    buf: &'b mut Buf,
    first: bool,
}

impl Obj<'_> {
    /// Starts a member; keys are static ASCII identifiers, never escaped.
    fn key(&mut self, k: &str) -> &mut Buf {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
        self.buf
    }

    fn string(&mut self, k: &str, v: &str) {
        if !v.is_empty() {
            write_str(self.key(k), v);
        }
    }

    fn strings(&mut self, k: &str, v: &[String]) {
        if !v.is_empty() {
            let buf = self.key(k);
            buf.push(b'[');
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_str(buf, s);
            }
            buf.push(b']');
        }
    }

    /// A 64-bit integer: decimal string.
    fn int64(&mut self, k: &str, v: impl std::fmt::Display + Default + PartialEq) {
        if v != Default::default() {
            write_quoted(self.key(k), v);
        }
    }

    fn uint64s(&mut self, k: &str, v: &[u64]) {
        if !v.is_empty() {
            let buf = self.key(k);
            buf.push(b'[');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_quoted(buf, x);
            }
            buf.push(b']');
        }
    }

    /// A 32-bit integer or enum: JSON number.
    fn int32(&mut self, k: &str, v: impl std::fmt::Display + Default + PartialEq) {
        if v != Default::default() {
            write_display(self.key(k), v);
        }
    }

    fn double(&mut self, k: &str, v: f64) {
        // Bit test, so that -0.0 (a non-default value on the wire) survives.
        if v.to_bits() != 0 {
            write_f64(self.key(k), v);
        }
    }

    fn optional_double(&mut self, k: &str, v: Option<f64>) {
        if let Some(v) = v {
            write_f64(self.key(k), v);
        }
    }

    fn doubles(&mut self, k: &str, v: &[f64]) {
        if !v.is_empty() {
            let buf = self.key(k);
            buf.push(b'[');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_f64(buf, *x);
            }
            buf.push(b']');
        }
    }

    fn boolean(&mut self, k: &str, v: bool) {
        if v {
            self.key(k).extend_from_slice(b"true");
        }
    }

    /// A trace or span id; a non-empty id of the wrong length is an error,
    /// as it would be for the Collector's protobuf unmarshaler.
    fn id(&mut self, k: &str, v: &[u8], bytes: usize, p: &Path<'_>) -> R<()> {
        if v.is_empty() {
            return Ok(());
        }
        if v.len() != bytes {
            return Err(JsonError::schema(
                &p.field(k),
                format!("invalid id length (expected {bytes} bytes, got {})", v.len()),
            ));
        }
        write_hex(self.key(k), v);
        Ok(())
    }

    /// A message field that is set; `f` gets the field's path.
    fn message(&mut self, k: &str, p: &Path<'_>, f: impl FnOnce(&mut Buf, &Path<'_>) -> R<()>) -> R<()> {
        let fp = p.field(k);
        f(self.key(k), &fp)
    }

    /// A repeated message field.
    fn list<T>(
        &mut self,
        k: &str,
        items: &[T],
        p: &Path<'_>,
        mut f: impl FnMut(&mut Buf, &T, &Path<'_>) -> R<()>,
    ) -> R<()> {
        if items.is_empty() {
            return Ok(());
        }
        let fp = p.field(k);
        let buf = self.key(k);
        buf.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            f(buf, item, &fp.index(i))?;
        }
        buf.push(b']');
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Requests and responses
// ---------------------------------------------------------------------------

pub(crate) fn traces(req: &ExportTraceServiceRequest) -> R<Buf> {
    let mut buf = Buf::with_capacity(256);
    let p = Path::Root;
    object(&mut buf, |o| o.list("resourceSpans", &req.resource_spans, &p, resource_spans))?;
    Ok(buf)
}

pub(crate) fn metrics(req: &ExportMetricsServiceRequest) -> R<Buf> {
    let mut buf = Buf::with_capacity(256);
    let p = Path::Root;
    object(&mut buf, |o| o.list("resourceMetrics", &req.resource_metrics, &p, resource_metrics))?;
    Ok(buf)
}

pub(crate) fn logs(req: &ExportLogsServiceRequest) -> R<Buf> {
    let mut buf = Buf::with_capacity(256);
    let p = Path::Root;
    object(&mut buf, |o| o.list("resourceLogs", &req.resource_logs, &p, resource_logs))?;
    Ok(buf)
}

pub(crate) fn response(signal: Signal, partial: Option<&PartialSuccess>) -> Buf {
    let rejected_key = match signal {
        Signal::Traces => "rejectedSpans",
        Signal::Metrics => "rejectedDataPoints",
        Signal::Logs => "rejectedLogRecords",
    };
    let mut buf = Buf::with_capacity(64);
    buf.push(b'{');
    if let Some(ps) = partial {
        let mut inner = Obj { buf: &mut buf, first: true };
        let out = inner.key("partialSuccess");
        out.push(b'{');
        let mut o = Obj { buf: out, first: true };
        o.int64(rejected_key, ps.rejected);
        o.string("errorMessage", &ps.error_message);
        buf.push(b'}');
    }
    buf.push(b'}');
    buf
}

pub(crate) fn status(code: i32, message: &str) -> Buf {
    let mut buf = Buf::with_capacity(32 + message.len());
    buf.push(b'{');
    let mut o = Obj { buf: &mut buf, first: true };
    o.int32("code", code);
    o.string("message", message);
    buf.push(b'}');
    buf
}

// ---------------------------------------------------------------------------
// common.v1 / resource.v1
// ---------------------------------------------------------------------------

fn any_value(buf: &mut Buf, v: &AnyValue, p: &Path<'_>, depth: usize) -> R<()> {
    if depth > MAX_ANY_VALUE_DEPTH {
        return Err(JsonError::new(
            JsonErrorKind::TooDeep,
            p,
            format!("AnyValue nesting exceeds {MAX_ANY_VALUE_DEPTH} levels"),
        ));
    }
    object(buf, |o| {
        let Some(value) = &v.value else {
            return Ok(());
        };
        match value {
            any_value::Value::StringValue(s) => write_str(o.key("stringValue"), s),
            any_value::Value::BoolValue(b) => {
                let text: &[u8] = if *b { b"true" } else { b"false" };
                o.key("boolValue").extend_from_slice(text);
            }
            any_value::Value::IntValue(i) => write_quoted(o.key("intValue"), i),
            any_value::Value::DoubleValue(d) => write_f64(o.key("doubleValue"), *d),
            any_value::Value::ArrayValue(a) => {
                o.message("arrayValue", p, |buf, ap| {
                    object(buf, |o| {
                        o.list("values", &a.values, ap, |buf, item, ip| any_value(buf, item, ip, depth + 1))
                    })
                })?;
            }
            any_value::Value::KvlistValue(kv) => {
                o.message("kvlistValue", p, |buf, kp| {
                    object(buf, |o| {
                        o.list("values", &kv.values, kp, |buf, item, ip| key_value(buf, item, ip, depth + 1))
                    })
                })?;
            }
            any_value::Value::BytesValue(b) => write_str(o.key("bytesValue"), &B64.encode(b)),
            any_value::Value::StringValueStrindex(i) => {
                write_display(o.key("stringValueStrindex"), i);
            }
        }
        Ok(())
    })
}

fn key_value(buf: &mut Buf, kv: &KeyValue, p: &Path<'_>, depth: usize) -> R<()> {
    object(buf, |o| {
        o.string("key", &kv.key);
        if let Some(v) = &kv.value {
            o.message("value", p, |buf, vp| any_value(buf, v, vp, depth))?;
        }
        o.int32("keyStrindex", kv.key_strindex);
        Ok(())
    })
}

fn attributes(o: &mut Obj<'_>, k: &str, attrs: &[KeyValue], p: &Path<'_>) -> R<()> {
    o.list(k, attrs, p, |buf, kv, ip| key_value(buf, kv, ip, 1))
}

fn resource(buf: &mut Buf, r: &Resource, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        attributes(o, "attributes", &r.attributes, p)?;
        o.int32("droppedAttributesCount", r.dropped_attributes_count);
        o.list("entityRefs", &r.entity_refs, p, entity_ref)
    })
}

fn entity_ref(buf: &mut Buf, e: &EntityRef, _p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        o.string("schemaUrl", &e.schema_url);
        o.string("type", &e.r#type);
        o.strings("idKeys", &e.id_keys);
        o.strings("descriptionKeys", &e.description_keys);
        Ok(())
    })
}

fn scope(buf: &mut Buf, s: &InstrumentationScope, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        o.string("name", &s.name);
        o.string("version", &s.version);
        attributes(o, "attributes", &s.attributes, p)?;
        o.int32("droppedAttributesCount", s.dropped_attributes_count);
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// trace.v1
// ---------------------------------------------------------------------------

fn resource_spans(buf: &mut Buf, rs: &ResourceSpans, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        if let Some(r) = &rs.resource {
            o.message("resource", p, |buf, rp| resource(buf, r, rp))?;
        }
        o.list("scopeSpans", &rs.scope_spans, p, scope_spans)?;
        o.string("schemaUrl", &rs.schema_url);
        Ok(())
    })
}

fn scope_spans(buf: &mut Buf, ss: &ScopeSpans, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        if let Some(s) = &ss.scope {
            o.message("scope", p, |buf, sp| scope(buf, s, sp))?;
        }
        o.list("spans", &ss.spans, p, span)?;
        o.string("schemaUrl", &ss.schema_url);
        Ok(())
    })
}

fn span(buf: &mut Buf, s: &Span, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        o.id("traceId", &s.trace_id, TRACE_ID_BYTES, p)?;
        o.id("spanId", &s.span_id, SPAN_ID_BYTES, p)?;
        o.string("traceState", &s.trace_state);
        o.id("parentSpanId", &s.parent_span_id, SPAN_ID_BYTES, p)?;
        o.int32("flags", s.flags);
        o.string("name", &s.name);
        o.int32("kind", s.kind);
        o.int64("startTimeUnixNano", s.start_time_unix_nano);
        o.int64("endTimeUnixNano", s.end_time_unix_nano);
        attributes(o, "attributes", &s.attributes, p)?;
        o.int32("droppedAttributesCount", s.dropped_attributes_count);
        o.list("events", &s.events, p, span_event)?;
        o.int32("droppedEventsCount", s.dropped_events_count);
        o.list("links", &s.links, p, span_link)?;
        o.int32("droppedLinksCount", s.dropped_links_count);
        if let Some(st) = &s.status {
            o.message("status", p, |buf, _| span_status(buf, st))?;
        }
        Ok(())
    })
}

fn span_event(buf: &mut Buf, e: &span::Event, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        o.int64("timeUnixNano", e.time_unix_nano);
        o.string("name", &e.name);
        attributes(o, "attributes", &e.attributes, p)?;
        o.int32("droppedAttributesCount", e.dropped_attributes_count);
        Ok(())
    })
}

fn span_link(buf: &mut Buf, l: &span::Link, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        o.id("traceId", &l.trace_id, TRACE_ID_BYTES, p)?;
        o.id("spanId", &l.span_id, SPAN_ID_BYTES, p)?;
        o.string("traceState", &l.trace_state);
        attributes(o, "attributes", &l.attributes, p)?;
        o.int32("droppedAttributesCount", l.dropped_attributes_count);
        o.int32("flags", l.flags);
        Ok(())
    })
}

fn span_status(buf: &mut Buf, s: &Status) -> R<()> {
    object(buf, |o| {
        o.string("message", &s.message);
        o.int32("code", s.code);
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// metrics.v1
// ---------------------------------------------------------------------------

fn resource_metrics(buf: &mut Buf, rm: &ResourceMetrics, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        if let Some(r) = &rm.resource {
            o.message("resource", p, |buf, rp| resource(buf, r, rp))?;
        }
        o.list("scopeMetrics", &rm.scope_metrics, p, scope_metrics)?;
        o.string("schemaUrl", &rm.schema_url);
        Ok(())
    })
}

fn scope_metrics(buf: &mut Buf, sm: &ScopeMetrics, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        if let Some(s) = &sm.scope {
            o.message("scope", p, |buf, sp| scope(buf, s, sp))?;
        }
        o.list("metrics", &sm.metrics, p, metric)?;
        o.string("schemaUrl", &sm.schema_url);
        Ok(())
    })
}

fn metric(buf: &mut Buf, m: &Metric, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        o.string("name", &m.name);
        o.string("description", &m.description);
        o.string("unit", &m.unit);
        match &m.data {
            None => {}
            Some(metric::Data::Gauge(g)) => o.message("gauge", p, |buf, gp| {
                object(buf, |o| o.list("dataPoints", &g.data_points, gp, number_data_point))
            })?,
            Some(metric::Data::Sum(s)) => o.message("sum", p, |buf, sp| {
                object(buf, |o| {
                    o.list("dataPoints", &s.data_points, sp, number_data_point)?;
                    o.int32("aggregationTemporality", s.aggregation_temporality);
                    o.boolean("isMonotonic", s.is_monotonic);
                    Ok(())
                })
            })?,
            Some(metric::Data::Histogram(h)) => o.message("histogram", p, |buf, hp| {
                object(buf, |o| {
                    o.list("dataPoints", &h.data_points, hp, histogram_data_point)?;
                    o.int32("aggregationTemporality", h.aggregation_temporality);
                    Ok(())
                })
            })?,
            Some(metric::Data::ExponentialHistogram(h)) => o.message("exponentialHistogram", p, |buf, hp| {
                object(buf, |o| {
                    o.list("dataPoints", &h.data_points, hp, exponential_histogram_data_point)?;
                    o.int32("aggregationTemporality", h.aggregation_temporality);
                    Ok(())
                })
            })?,
            Some(metric::Data::Summary(s)) => o.message("summary", p, |buf, sp| {
                object(buf, |o| o.list("dataPoints", &s.data_points, sp, summary_data_point))
            })?,
        }
        attributes(o, "metadata", &m.metadata, p)
    })
}

fn number_data_point(buf: &mut Buf, dp: &NumberDataPoint, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        attributes(o, "attributes", &dp.attributes, p)?;
        o.int64("startTimeUnixNano", dp.start_time_unix_nano);
        o.int64("timeUnixNano", dp.time_unix_nano);
        match dp.value {
            None => {}
            Some(number_data_point::Value::AsDouble(d)) => write_f64(o.key("asDouble"), d),
            Some(number_data_point::Value::AsInt(i)) => write_quoted(o.key("asInt"), i),
        }
        o.list("exemplars", &dp.exemplars, p, exemplar)?;
        o.int32("flags", dp.flags);
        Ok(())
    })
}

fn histogram_data_point(buf: &mut Buf, dp: &HistogramDataPoint, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        attributes(o, "attributes", &dp.attributes, p)?;
        o.int64("startTimeUnixNano", dp.start_time_unix_nano);
        o.int64("timeUnixNano", dp.time_unix_nano);
        o.int64("count", dp.count);
        o.optional_double("sum", dp.sum);
        o.uint64s("bucketCounts", &dp.bucket_counts);
        o.doubles("explicitBounds", &dp.explicit_bounds);
        o.list("exemplars", &dp.exemplars, p, exemplar)?;
        o.int32("flags", dp.flags);
        o.optional_double("min", dp.min);
        o.optional_double("max", dp.max);
        Ok(())
    })
}

fn exponential_histogram_data_point(buf: &mut Buf, dp: &ExponentialHistogramDataPoint, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        attributes(o, "attributes", &dp.attributes, p)?;
        o.int64("startTimeUnixNano", dp.start_time_unix_nano);
        o.int64("timeUnixNano", dp.time_unix_nano);
        o.int64("count", dp.count);
        o.optional_double("sum", dp.sum);
        o.int32("scale", dp.scale);
        o.int64("zeroCount", dp.zero_count);
        if let Some(b) = &dp.positive {
            o.message("positive", p, |buf, _| buckets(buf, b))?;
        }
        if let Some(b) = &dp.negative {
            o.message("negative", p, |buf, _| buckets(buf, b))?;
        }
        o.int32("flags", dp.flags);
        o.list("exemplars", &dp.exemplars, p, exemplar)?;
        o.optional_double("min", dp.min);
        o.optional_double("max", dp.max);
        o.double("zeroThreshold", dp.zero_threshold);
        Ok(())
    })
}

fn buckets(buf: &mut Buf, b: &exponential_histogram_data_point::Buckets) -> R<()> {
    object(buf, |o| {
        o.int32("offset", b.offset);
        o.uint64s("bucketCounts", &b.bucket_counts);
        Ok(())
    })
}

fn summary_data_point(buf: &mut Buf, dp: &SummaryDataPoint, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        attributes(o, "attributes", &dp.attributes, p)?;
        o.int64("startTimeUnixNano", dp.start_time_unix_nano);
        o.int64("timeUnixNano", dp.time_unix_nano);
        o.int64("count", dp.count);
        o.double("sum", dp.sum);
        o.list("quantileValues", &dp.quantile_values, p, value_at_quantile)?;
        o.int32("flags", dp.flags);
        Ok(())
    })
}

fn value_at_quantile(buf: &mut Buf, q: &summary_data_point::ValueAtQuantile, _p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        o.double("quantile", q.quantile);
        o.double("value", q.value);
        Ok(())
    })
}

fn exemplar(buf: &mut Buf, e: &Exemplar, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        attributes(o, "filteredAttributes", &e.filtered_attributes, p)?;
        o.int64("timeUnixNano", e.time_unix_nano);
        match e.value {
            None => {}
            Some(exemplar::Value::AsDouble(d)) => write_f64(o.key("asDouble"), d),
            Some(exemplar::Value::AsInt(i)) => write_quoted(o.key("asInt"), i),
        }
        o.id("spanId", &e.span_id, SPAN_ID_BYTES, p)?;
        o.id("traceId", &e.trace_id, TRACE_ID_BYTES, p)?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// logs.v1
// ---------------------------------------------------------------------------

fn resource_logs(buf: &mut Buf, rl: &ResourceLogs, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        if let Some(r) = &rl.resource {
            o.message("resource", p, |buf, rp| resource(buf, r, rp))?;
        }
        o.list("scopeLogs", &rl.scope_logs, p, scope_logs)?;
        o.string("schemaUrl", &rl.schema_url);
        Ok(())
    })
}

fn scope_logs(buf: &mut Buf, sl: &ScopeLogs, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        if let Some(s) = &sl.scope {
            o.message("scope", p, |buf, sp| scope(buf, s, sp))?;
        }
        o.list("logRecords", &sl.log_records, p, log_record)?;
        o.string("schemaUrl", &sl.schema_url);
        Ok(())
    })
}

fn log_record(buf: &mut Buf, r: &LogRecord, p: &Path<'_>) -> R<()> {
    object(buf, |o| {
        o.int64("timeUnixNano", r.time_unix_nano);
        o.int64("observedTimeUnixNano", r.observed_time_unix_nano);
        o.int32("severityNumber", r.severity_number);
        o.string("severityText", &r.severity_text);
        if let Some(body) = &r.body {
            o.message("body", p, |buf, bp| any_value(buf, body, bp, 1))?;
        }
        attributes(o, "attributes", &r.attributes, p)?;
        o.int32("droppedAttributesCount", r.dropped_attributes_count);
        o.int32("flags", r.flags);
        o.id("traceId", &r.trace_id, TRACE_ID_BYTES, p)?;
        o.id("spanId", &r.span_id, SPAN_ID_BYTES, p)?;
        o.string("eventName", &r.event_name);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(buf: Buf) -> String {
        String::from_utf8(buf).unwrap_or_default()
    }

    #[test]
    fn escapes_strings() {
        let mut buf = Buf::new();
        write_str(&mut buf, "a\"b\\c\nd\u{1}é\u{7f}\u{1f}");
        assert_eq!(s(buf), "\"a\\\"b\\\\c\\nd\\u0001é\u{7f}\\u001f\"");
    }

    #[test]
    fn formats_doubles() {
        let cases = [
            (5.0, "5"),
            (1.5, "1.5"),
            (-0.25, "-0.25"),
            (1e300, "1e+300"),
            (1e-7, "1e-7"),
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"Infinity\""),
            (f64::NEG_INFINITY, "\"-Infinity\""),
        ];
        for (v, want) in cases {
            let mut buf = Buf::new();
            write_f64(&mut buf, v);
            assert_eq!(s(buf), want, "{v}");
        }
    }

    #[test]
    fn responses() {
        assert_eq!(s(response(Signal::Traces, None)), "{}");
        let ps = PartialSuccess { rejected: 3, error_message: "bad \"span\"".to_owned() };
        assert_eq!(
            s(response(Signal::Metrics, Some(&ps))),
            r#"{"partialSuccess":{"rejectedDataPoints":"3","errorMessage":"bad \"span\""}}"#
        );
        assert_eq!(s(response(Signal::Logs, Some(&PartialSuccess::default()))), r#"{"partialSuccess":{}}"#);
        assert_eq!(s(status(3, "nope")), r#"{"code":3,"message":"nope"}"#);
    }
}
