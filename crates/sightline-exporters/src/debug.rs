//! `debug`: logs what would be exported, as the collector's `debug` exporter.
//!
//! - `basic`: one line per batch with counts, read off the wire without decoding;
//! - `normal`: plus one line per span, data point or log record (name, ids, attributes);
//! - `detailed`: every field of every item.
//!
//! Output goes through `tracing` at INFO with target `sightline::debug`. `normal` and
//! `detailed` decode the batch with prost: this exporter is for looking at data, not for the
//! hot path. Sampling (per second, like the collector's zap sampler): the first
//! `sampling_initial` batches of each second are logged, then every `sampling_thereafter`-th.

use crate::file::civil_from_days;
use crate::{BuildError, default_timeout, driver_config, validate_common};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, exemplar, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message as _;
use serde::Deserialize;
use sightline_core::wire::{Fields, Value};
use sightline_core::{Batch, DriverConfig, QueueConfig, RetryConfig, SendError, SendFuture, Sender, Signal};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How much the `debug` exporter prints.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One line per batch with counts (default).
    #[default]
    Basic,
    /// Plus one line per span, data point or log record.
    Normal,
    /// Every field of every item.
    Detailed,
}

fn default_sampling_initial() -> u32 {
    2
}

fn default_sampling_thereafter() -> u32 {
    1
}

/// `exporters.debug`: logs batches.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugConfig {
    /// `basic` (default), `normal` or `detailed`.
    #[serde(default)]
    pub verbosity: Verbosity,
    /// Batches logged each second before sampling starts (default 2).
    #[serde(default = "default_sampling_initial")]
    pub sampling_initial: u32,
    /// After `sampling_initial` in a second, log every n-th batch; 0 = none (default 1, all).
    #[serde(default = "default_sampling_thereafter")]
    pub sampling_thereafter: u32,
    /// Deadline of one batch's logging (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The queue in front of the exporter (default: see the core `sending_queue` options).
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Retries (default: see the core `retry_on_failure` options; logging does not fail).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

impl Default for DebugConfig {
    fn default() -> Self {
        DebugConfig {
            verbosity: Verbosity::default(),
            sampling_initial: default_sampling_initial(),
            sampling_thereafter: default_sampling_thereafter(),
            timeout: default_timeout(),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }
}

impl DebugConfig {
    /// Checks serde cannot express (no I/O): `(key relative to the exporter, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        validate_common(self.timeout, &self.sending_queue, &self.retry_on_failure, &mut out);
        out
    }
}

/// Builds the `debug` exporter's sender for `signal`.
pub fn build_debug(id: &str, signal: Signal, cfg: &DebugConfig) -> Result<(Arc<dyn Sender>, DriverConfig), BuildError> {
    BuildError::from_findings(cfg.validate())?;
    let sender = DebugSender {
        id: Arc::from(id),
        signal,
        verbosity: cfg.verbosity,
        sampler: Sampler::new(cfg.sampling_initial, cfg.sampling_thereafter),
    };
    Ok((Arc::new(sender), driver_config(cfg.timeout, &cfg.sending_queue, &cfg.retry_on_failure)))
}

/// Per-second sampling of batches.
struct Sampler {
    initial: u64,
    thereafter: u64,
    window: Mutex<(Instant, u64)>,
}

impl Sampler {
    fn new(initial: u32, thereafter: u32) -> Self {
        Sampler { initial: initial.into(), thereafter: thereafter.into(), window: Mutex::new((Instant::now(), 0)) }
    }

    fn sample(&self) -> bool {
        self.sample_at(Instant::now())
    }

    fn sample_at(&self, now: Instant) -> bool {
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if now.duration_since(w.0) >= Duration::from_secs(1) {
            *w = (now, 0);
        }
        w.1 += 1;
        let n = w.1;
        n <= self.initial || (self.thereafter > 0 && (n - self.initial).is_multiple_of(self.thereafter))
    }
}

struct DebugSender {
    id: Arc<str>,
    signal: Signal,
    verbosity: Verbosity,
    sampler: Sampler,
}

impl Sender for DebugSender {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        Box::pin(async move {
            if !self.sampler.sample() {
                return Ok(());
            }
            self.log_counts(batch);
            if self.verbosity == Verbosity::Basic {
                return Ok(());
            }
            let text = render(self.signal, self.verbosity, &batch.to_bytes())
                .map_err(|e| SendError::permanent(format!("cannot decode the batch: {e}")))?;
            if !text.is_empty() {
                tracing::info!(target: "sightline::debug", exporter = %self.id, "{}", text.trim_end());
            }
            Ok(())
        })
    }
}

impl DebugSender {
    fn log_counts(&self, batch: &Batch) {
        let (mut resources, mut level2) = (0u64, 0u64);
        for c in batch.chunks() {
            let (r, n) = count(c);
            resources += r;
            level2 += n;
        }
        let id = &*self.id;
        match self.signal {
            Signal::Traces => {
                tracing::info!(target: "sightline::debug", exporter = id, resource_spans = resources, spans = level2, "Traces")
            }
            Signal::Metrics => tracing::info!(
                target: "sightline::debug",
                exporter = id,
                resource_metrics = resources,
                metrics = level2,
                data_points = batch.items,
                "Metrics"
            ),
            Signal::Logs => tracing::info!(
                target: "sightline::debug",
                exporter = id,
                resource_logs = resources,
                log_records = level2,
                "Logs"
            ),
        }
    }
}

/// Resources (field 1) and the items two levels below them (field 2 of field 2: spans,
/// metrics, log records), the same shape for every signal. Payloads were validated at the
/// receiver; anything unreadable is simply not counted.
fn count(buf: &[u8]) -> (u64, u64) {
    fn len_fields(b: &[u8], n: u32) -> impl Iterator<Item = &[u8]> {
        Fields::new(b).map_while(Result::ok).filter_map(move |f| match f.value {
            Value::Len(v) if f.number == n => Some(v),
            _ => None,
        })
    }
    let (mut resources, mut items) = (0, 0);
    for r in len_fields(buf, 1) {
        resources += 1;
        for s in len_fields(r, 2) {
            items += len_fields(s, 2).count() as u64;
        }
    }
    (resources, items)
}

/// The text of a batch at `normal` or `detailed` verbosity.
fn render(signal: Signal, verbosity: Verbosity, bytes: &[u8]) -> Result<String, prost::DecodeError> {
    let detailed = verbosity == Verbosity::Detailed;
    let mut out = String::new();
    match signal {
        Signal::Traces => traces(&ExportTraceServiceRequest::decode(bytes)?, detailed, &mut out),
        Signal::Metrics => metrics(&ExportMetricsServiceRequest::decode(bytes)?, detailed, &mut out),
        Signal::Logs => logs(&ExportLogsServiceRequest::decode(bytes)?, detailed, &mut out),
    }
    Ok(out)
}

fn traces(req: &ExportTraceServiceRequest, detailed: bool, out: &mut String) {
    for (ri, rs) in req.resource_spans.iter().enumerate() {
        resource_header(out, "ResourceSpans", ri, rs.resource.as_ref(), &rs.schema_url, detailed);
        for (si, ss) in rs.scope_spans.iter().enumerate() {
            scope_header(out, "ScopeSpans", si, ss.scope.as_ref(), &ss.schema_url, detailed);
            for (i, sp) in ss.spans.iter().enumerate() {
                if !detailed {
                    let _ = writeln!(
                        out,
                        "{} trace_id={} span_id={}{}",
                        sp.name,
                        hex::encode(&sp.trace_id),
                        hex::encode(&sp.span_id),
                        inline_attrs(&sp.attributes)
                    );
                    continue;
                }
                let kind = SpanKind::try_from(sp.kind).map_or("?", |k| k.as_str_name());
                let (code, message) = sp.status.as_ref().map_or((0, ""), |s| (s.code, s.message.as_str()));
                let code = StatusCode::try_from(code).map_or("?", |c| c.as_str_name());
                let _ = writeln!(out, "Span #{i}");
                let _ = writeln!(out, "    Trace ID       : {}", hex::encode(&sp.trace_id));
                let _ = writeln!(out, "    Parent ID      : {}", hex::encode(&sp.parent_span_id));
                let _ = writeln!(out, "    ID             : {}", hex::encode(&sp.span_id));
                let _ = writeln!(out, "    Name           : {}", sp.name);
                let _ = writeln!(out, "    Kind           : {kind}");
                let _ = writeln!(out, "    TraceState     : {}", sp.trace_state);
                let _ = writeln!(out, "    Flags          : {:#x}", sp.flags);
                let _ = writeln!(out, "    Start time     : {}", time(sp.start_time_unix_nano));
                let _ = writeln!(out, "    End time       : {}", time(sp.end_time_unix_nano));
                let _ = writeln!(out, "    Status code    : {code}");
                let _ = writeln!(out, "    Status message : {message}");
                attributes(out, "Attributes", &sp.attributes, sp.dropped_attributes_count);
                if !sp.events.is_empty() || sp.dropped_events_count > 0 {
                    let _ = writeln!(out, "Events: (dropped {})", sp.dropped_events_count);
                    for (ei, ev) in sp.events.iter().enumerate() {
                        let _ = writeln!(out, "SpanEvent #{ei}");
                        let _ = writeln!(out, "     -> Name: {}", ev.name);
                        let _ = writeln!(out, "     -> Timestamp: {}", time(ev.time_unix_nano));
                        attributes(out, "     -> Attributes", &ev.attributes, ev.dropped_attributes_count);
                    }
                }
                if !sp.links.is_empty() || sp.dropped_links_count > 0 {
                    let _ = writeln!(out, "Links: (dropped {})", sp.dropped_links_count);
                    for (li, l) in sp.links.iter().enumerate() {
                        let _ = writeln!(out, "SpanLink #{li}");
                        let _ = writeln!(out, "     -> Trace ID: {}", hex::encode(&l.trace_id));
                        let _ = writeln!(out, "     -> ID: {}", hex::encode(&l.span_id));
                        let _ = writeln!(out, "     -> TraceState: {}", l.trace_state);
                        let _ = writeln!(out, "     -> Flags: {:#x}", l.flags);
                        attributes(out, "     -> Attributes", &l.attributes, l.dropped_attributes_count);
                    }
                }
            }
        }
    }
}

fn metrics(req: &ExportMetricsServiceRequest, detailed: bool, out: &mut String) {
    for (ri, rm) in req.resource_metrics.iter().enumerate() {
        resource_header(out, "ResourceMetrics", ri, rm.resource.as_ref(), &rm.schema_url, detailed);
        for (si, sm) in rm.scope_metrics.iter().enumerate() {
            scope_header(out, "ScopeMetrics", si, sm.scope.as_ref(), &sm.schema_url, detailed);
            for (mi, m) in sm.metrics.iter().enumerate() {
                if detailed {
                    let _ = writeln!(out, "Metric #{mi}");
                    let _ = writeln!(out, "Descriptor:");
                    let _ = writeln!(out, "     -> Name: {}", m.name);
                    let _ = writeln!(out, "     -> Description: {}", m.description);
                    let _ = writeln!(out, "     -> Unit: {}", m.unit);
                    let _ = writeln!(out, "     -> DataType: {}", data_type(m.data.as_ref()));
                    if !m.metadata.is_empty() {
                        attributes(out, "     -> Metadata", &m.metadata, 0);
                    }
                }
                metric_data(out, &m.name, m.data.as_ref(), detailed);
            }
        }
    }
}

fn data_type(d: Option<&Data>) -> &'static str {
    match d {
        None => "Empty",
        Some(Data::Gauge(_)) => "Gauge",
        Some(Data::Sum(_)) => "Sum",
        Some(Data::Histogram(_)) => "Histogram",
        Some(Data::ExponentialHistogram(_)) => "ExponentialHistogram",
        Some(Data::Summary(_)) => "Summary",
    }
}

fn temporality(t: i32) -> &'static str {
    AggregationTemporality::try_from(t).map_or("?", |t| t.as_str_name())
}

fn metric_data(out: &mut String, name: &str, data: Option<&Data>, detailed: bool) {
    let Some(data) = data else { return };
    match data {
        Data::Gauge(g) => number_points(out, name, &g.data_points, detailed),
        Data::Sum(s) => {
            if detailed {
                let _ = writeln!(out, "     -> IsMonotonic: {}", s.is_monotonic);
                let _ = writeln!(out, "     -> AggregationTemporality: {}", temporality(s.aggregation_temporality));
            }
            number_points(out, name, &s.data_points, detailed)
        }
        Data::Histogram(h) => {
            if detailed {
                let _ = writeln!(out, "     -> AggregationTemporality: {}", temporality(h.aggregation_temporality));
            }
            for (i, p) in h.data_points.iter().enumerate() {
                if !detailed {
                    let _ =
                        writeln!(out, "{name}{} count={} sum={}", inline_attrs(&p.attributes), p.count, opt_f64(p.sum));
                    continue;
                }
                let _ = writeln!(out, "HistogramDataPoints #{i}");
                point_common(out, &p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags);
                let _ = writeln!(out, "Count: {}", p.count);
                let _ = writeln!(out, "Sum: {}", opt_f64(p.sum));
                let _ = writeln!(out, "Min: {}", opt_f64(p.min));
                let _ = writeln!(out, "Max: {}", opt_f64(p.max));
                for (b, bound) in p.explicit_bounds.iter().enumerate() {
                    let _ = writeln!(out, "ExplicitBounds #{b}: {bound}");
                }
                for (b, c) in p.bucket_counts.iter().enumerate() {
                    let _ = writeln!(out, "Buckets #{b}, Count: {c}");
                }
                exemplars(out, &p.exemplars);
            }
        }
        Data::ExponentialHistogram(h) => {
            if detailed {
                let _ = writeln!(out, "     -> AggregationTemporality: {}", temporality(h.aggregation_temporality));
            }
            for (i, p) in h.data_points.iter().enumerate() {
                if !detailed {
                    let _ = writeln!(
                        out,
                        "{name}{} count={} sum={} scale={}",
                        inline_attrs(&p.attributes),
                        p.count,
                        opt_f64(p.sum),
                        p.scale
                    );
                    continue;
                }
                let _ = writeln!(out, "ExponentialHistogramDataPoints #{i}");
                point_common(out, &p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags);
                let _ = writeln!(out, "Count: {}", p.count);
                let _ = writeln!(out, "Sum: {}", opt_f64(p.sum));
                let _ = writeln!(out, "Min: {}", opt_f64(p.min));
                let _ = writeln!(out, "Max: {}", opt_f64(p.max));
                let _ = writeln!(out, "Scale: {}", p.scale);
                let _ = writeln!(out, "ZeroCount: {} (threshold {})", p.zero_count, p.zero_threshold);
                for (label, b) in [("Positive", &p.positive), ("Negative", &p.negative)] {
                    if let Some(b) = b {
                        let _ = writeln!(out, "{label} buckets: offset {} counts {:?}", b.offset, b.bucket_counts);
                    }
                }
                exemplars(out, &p.exemplars);
            }
        }
        Data::Summary(s) => {
            for (i, p) in s.data_points.iter().enumerate() {
                if !detailed {
                    let _ = writeln!(out, "{name}{} count={} sum={}", inline_attrs(&p.attributes), p.count, p.sum);
                    continue;
                }
                let _ = writeln!(out, "SummaryDataPoints #{i}");
                point_common(out, &p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags);
                let _ = writeln!(out, "Count: {}", p.count);
                let _ = writeln!(out, "Sum: {}", p.sum);
                for (q, v) in p.quantile_values.iter().enumerate() {
                    let _ = writeln!(out, "QuantileValue #{q}: Quantile {}, Value {}", v.quantile, v.value);
                }
            }
        }
    }
}

fn number_points(
    out: &mut String,
    name: &str,
    points: &[opentelemetry_proto::tonic::metrics::v1::NumberDataPoint],
    detailed: bool,
) {
    for (i, p) in points.iter().enumerate() {
        let value = match p.value {
            Some(number_data_point::Value::AsInt(v)) => v.to_string(),
            Some(number_data_point::Value::AsDouble(v)) => v.to_string(),
            None => "(none)".to_string(),
        };
        if !detailed {
            let _ = writeln!(out, "{name}{} {value}", inline_attrs(&p.attributes));
            continue;
        }
        let _ = writeln!(out, "NumberDataPoints #{i}");
        point_common(out, &p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags);
        let _ = writeln!(out, "Value: {value}");
        exemplars(out, &p.exemplars);
    }
}

fn point_common(out: &mut String, attrs: &[KeyValue], start: u64, ts: u64, flags: u32) {
    attributes(out, "Data point attributes", attrs, 0);
    let _ = writeln!(out, "StartTimestamp: {}", time(start));
    let _ = writeln!(out, "Timestamp: {}", time(ts));
    if flags != 0 {
        let _ = writeln!(out, "Flags: {flags:#x}");
    }
}

fn exemplars(out: &mut String, ex: &[Exemplar]) {
    for (i, e) in ex.iter().enumerate() {
        let value = match e.value {
            Some(exemplar::Value::AsInt(v)) => v.to_string(),
            Some(exemplar::Value::AsDouble(v)) => v.to_string(),
            None => "(none)".to_string(),
        };
        let _ = writeln!(out, "Exemplar #{i}");
        let _ = writeln!(out, "     -> Trace ID: {}", hex::encode(&e.trace_id));
        let _ = writeln!(out, "     -> Span ID: {}", hex::encode(&e.span_id));
        let _ = writeln!(out, "     -> Timestamp: {}", time(e.time_unix_nano));
        let _ = writeln!(out, "     -> Value: {value}");
        attributes(out, "     -> FilteredAttributes", &e.filtered_attributes, 0);
    }
}

fn logs(req: &ExportLogsServiceRequest, detailed: bool, out: &mut String) {
    for (ri, rl) in req.resource_logs.iter().enumerate() {
        resource_header(out, "ResourceLog", ri, rl.resource.as_ref(), &rl.schema_url, detailed);
        for (si, sl) in rl.scope_logs.iter().enumerate() {
            scope_header(out, "ScopeLogs", si, sl.scope.as_ref(), &sl.schema_url, detailed);
            for (i, l) in sl.log_records.iter().enumerate() {
                let body = l.body.as_ref().map(plain).unwrap_or_default();
                if !detailed {
                    let ids = if l.trace_id.is_empty() {
                        String::new()
                    } else {
                        format!(" trace_id={} span_id={}", hex::encode(&l.trace_id), hex::encode(&l.span_id))
                    };
                    let _ = writeln!(out, "{body}{ids}{}", inline_attrs(&l.attributes));
                    continue;
                }
                let severity = SeverityNumber::try_from(l.severity_number).map_or("?", |s| s.as_str_name());
                let _ = writeln!(out, "LogRecord #{i}");
                let _ = writeln!(out, "ObservedTimestamp: {}", time(l.observed_time_unix_nano));
                let _ = writeln!(out, "Timestamp: {}", time(l.time_unix_nano));
                let _ = writeln!(out, "SeverityText: {}", l.severity_text);
                let _ = writeln!(out, "SeverityNumber: {severity}({})", l.severity_number);
                if !l.event_name.is_empty() {
                    let _ = writeln!(out, "EventName: {}", l.event_name);
                }
                let _ = writeln!(out, "Body: {}", l.body.as_ref().map(typed).unwrap_or_else(|| "Empty()".into()));
                attributes(out, "Attributes", &l.attributes, l.dropped_attributes_count);
                let _ = writeln!(out, "Trace ID: {}", hex::encode(&l.trace_id));
                let _ = writeln!(out, "Span ID: {}", hex::encode(&l.span_id));
                let _ = writeln!(out, "Flags: {}", l.flags);
            }
        }
    }
}

fn resource_header(out: &mut String, what: &str, i: usize, r: Option<&Resource>, schema: &str, detailed: bool) {
    let attrs = r.map_or(&[][..], |r| &r.attributes[..]);
    if !detailed {
        let _ = writeln!(out, "{what} #{i}{}", inline_attrs(attrs));
        return;
    }
    let _ = writeln!(out, "{what} #{i}");
    let _ = writeln!(out, "Resource SchemaURL: {schema}");
    attributes(out, "Resource attributes", attrs, r.map_or(0, |r| r.dropped_attributes_count));
}

fn scope_header(
    out: &mut String,
    what: &str,
    i: usize,
    s: Option<&InstrumentationScope>,
    schema: &str,
    detailed: bool,
) {
    let (name, version) = s.map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
    if !detailed {
        let _ = writeln!(out, "{what} #{i} {name}@{version}");
        return;
    }
    let _ = writeln!(out, "{what} #{i}");
    let _ = writeln!(out, "{what} SchemaURL: {schema}");
    let _ = writeln!(out, "InstrumentationScope {name} {version}");
    if let Some(s) = s {
        attributes(out, "InstrumentationScope attributes", &s.attributes, s.dropped_attributes_count);
    }
}

/// ` k=v k2=v2`, for one-line output.
fn inline_attrs(attrs: &[KeyValue]) -> String {
    let mut s = String::new();
    for kv in attrs {
        let _ = write!(s, " {}={}", kv.key, kv.value.as_ref().map(plain).unwrap_or_default());
    }
    s
}

fn attributes(out: &mut String, title: &str, attrs: &[KeyValue], dropped: u32) {
    if attrs.is_empty() && dropped == 0 {
        return;
    }
    if dropped > 0 {
        let _ = writeln!(out, "{title}: (dropped {dropped})");
    } else {
        let _ = writeln!(out, "{title}:");
    }
    for kv in attrs {
        let _ =
            writeln!(out, "     -> {}: {}", kv.key, kv.value.as_ref().map(typed).unwrap_or_else(|| "Empty()".into()));
    }
}

/// A value with its type, as the collector prints it: `Str(x)`, `Int(1)`, `Slice([...])`.
fn typed(v: &AnyValue) -> String {
    match &v.value {
        None => "Empty()".into(),
        Some(any_value::Value::StringValue(s)) => format!("Str({s})"),
        Some(any_value::Value::BoolValue(b)) => format!("Bool({b})"),
        Some(any_value::Value::IntValue(i)) => format!("Int({i})"),
        Some(any_value::Value::DoubleValue(d)) => format!("Double({d})"),
        Some(any_value::Value::BytesValue(b)) => format!("Bytes({})", hex::encode(b)),
        Some(any_value::Value::StringValueStrindex(i)) => format!("StrIndex({i})"),
        Some(any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_)) => {
            let kind = if matches!(v.value, Some(any_value::Value::ArrayValue(_))) { "Slice" } else { "Map" };
            format!("{kind}({})", plain(v))
        }
    }
}

/// A value as plain text; arrays and maps as JSON-like text.
fn plain(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BytesValue(b)) => hex::encode(b),
        _ => {
            let mut out = String::new();
            nested(v, &mut out);
            out
        }
    }
}

/// JSON-like text of a value: strings quoted, numbers and booleans bare, bytes as hex.
fn nested(v: &AnyValue, out: &mut String) {
    match &v.value {
        None => out.push_str("null"),
        Some(any_value::Value::StringValue(s)) => {
            let _ = write!(out, "{s:?}");
        }
        Some(any_value::Value::BoolValue(b)) => {
            let _ = write!(out, "{b}");
        }
        Some(any_value::Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(any_value::Value::DoubleValue(d)) => {
            let _ = write!(out, "{d}");
        }
        Some(any_value::Value::BytesValue(b)) => {
            let _ = write!(out, "{:?}", hex::encode(b));
        }
        Some(any_value::Value::StringValueStrindex(i)) => {
            let _ = write!(out, "#{i}");
        }
        Some(any_value::Value::ArrayValue(a)) => {
            out.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nested(v, out);
            }
            out.push(']');
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            out.push('{');
            for (i, kv) in kv.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{:?}:", kv.key);
                match &kv.value {
                    Some(v) => nested(v, out),
                    None => out.push_str("null"),
                }
            }
            out.push('}');
        }
    }
}

fn opt_f64(v: Option<f64>) -> String {
    v.map_or_else(|| "(none)".to_string(), |v| v.to_string())
}

/// Unix nanoseconds as RFC 3339 UTC with nanoseconds.
fn time(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z", sod / 3600, sod / 60 % 60, sod % 60, ns % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_per_second() {
        let s = Sampler::new(2, 3);
        let t0 = s.window.lock().expect("lock").0;
        let logged: Vec<bool> = (0..8).map(|_| s.sample_at(t0)).collect();
        assert_eq!(logged, [true, true, false, false, true, false, false, true]);
        // A new second starts a new window.
        assert!(s.sample_at(t0 + Duration::from_secs(1)));
        let none_after = Sampler::new(1, 0);
        assert!(none_after.sample_at(t0));
        assert!(!none_after.sample_at(t0));
    }

    #[test]
    fn times() {
        assert_eq!(time(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(time(1_544_712_660_000_000_001), "2018-12-13T14:51:00.000000001Z");
    }
}
