//! The evaluation contexts (`resource`, `scope`, `span`, `spanevent`, `log`, `metric`,
//! `datapoint`), their paths, and reading and writing those paths on OTLP items.

use crate::slot::Slot;
use crate::value::{Val, hex};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Pv;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use std::borrow::Cow;

/// An OTTL context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ctx {
    Resource,
    Scope,
    Span,
    SpanEvent,
    Log,
    Metric,
    DataPoint,
}

impl Ctx {
    pub fn parse(s: &str) -> Option<Ctx> {
        Some(match s {
            "resource" => Ctx::Resource,
            "scope" | "instrumentation_scope" => Ctx::Scope,
            "span" => Ctx::Span,
            "spanevent" => Ctx::SpanEvent,
            "log" => Ctx::Log,
            "metric" => Ctx::Metric,
            "datapoint" => Ctx::DataPoint,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Ctx::Resource => "resource",
            Ctx::Scope => "scope",
            Ctx::Span => "span",
            Ctx::SpanEvent => "spanevent",
            Ctx::Log => "log",
            Ctx::Metric => "metric",
            Ctx::DataPoint => "datapoint",
        }
    }

    /// The contexts whose paths a statement of this context may use.
    pub fn reachable(self) -> &'static [Ctx] {
        match self {
            Ctx::Resource => &[Ctx::Resource],
            Ctx::Scope => &[Ctx::Scope, Ctx::Resource],
            Ctx::Span => &[Ctx::Span, Ctx::Scope, Ctx::Resource],
            Ctx::SpanEvent => &[Ctx::SpanEvent, Ctx::Span, Ctx::Scope, Ctx::Resource],
            Ctx::Log => &[Ctx::Log, Ctx::Scope, Ctx::Resource],
            Ctx::Metric => &[Ctx::Metric, Ctx::Scope, Ctx::Resource],
            Ctx::DataPoint => &[Ctx::DataPoint, Ctx::Metric, Ctx::Scope, Ctx::Resource],
        }
    }
}

/// A field a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F {
    Cache,
    ResAttrs,
    ResDropped,
    ScopeName,
    ScopeVersion,
    ScopeAttrs,
    ScopeDropped,
    SpanTraceId,
    SpanTraceIdStr,
    SpanId,
    SpanIdStr,
    SpanParentId,
    SpanParentIdStr,
    SpanTraceState,
    SpanName,
    SpanKind,
    SpanKindStr,
    SpanAttrs,
    SpanDropped,
    SpanStart,
    SpanEnd,
    SpanStartTime,
    SpanEndTime,
    SpanStatusCode,
    SpanStatusMessage,
    SpanDroppedEvents,
    SpanDroppedLinks,
    SpanFlags,
    EvName,
    EvTimeNano,
    EvTime,
    EvAttrs,
    EvDropped,
    LogTimeNano,
    LogObservedNano,
    LogTime,
    LogObserved,
    LogSevNum,
    LogSevText,
    LogBody,
    LogBodyStr,
    LogAttrs,
    LogDropped,
    LogFlags,
    LogTraceId,
    LogTraceIdStr,
    LogSpanId,
    LogSpanIdStr,
    LogEventName,
    MName,
    MDescription,
    MUnit,
    MType,
    MTemporality,
    MMonotonic,
    DpAttrs,
    DpStartNano,
    DpTimeNano,
    DpStart,
    DpTime,
    DpValueDouble,
    DpValueInt,
    DpFlags,
    DpCount,
    DpSum,
}

/// The paths of each context, by their name after the context prefix.
pub fn fields(ctx: Ctx) -> &'static [(&'static str, F)] {
    match ctx {
        Ctx::Resource => &[("attributes", F::ResAttrs), ("dropped_attributes_count", F::ResDropped)],
        Ctx::Scope => &[
            ("name", F::ScopeName),
            ("version", F::ScopeVersion),
            ("attributes", F::ScopeAttrs),
            ("dropped_attributes_count", F::ScopeDropped),
        ],
        Ctx::Span => &[
            ("trace_id", F::SpanTraceId),
            ("trace_id.string", F::SpanTraceIdStr),
            ("span_id", F::SpanId),
            ("span_id.string", F::SpanIdStr),
            ("parent_span_id", F::SpanParentId),
            ("parent_span_id.string", F::SpanParentIdStr),
            ("trace_state", F::SpanTraceState),
            ("name", F::SpanName),
            ("kind", F::SpanKind),
            ("kind.string", F::SpanKindStr),
            ("attributes", F::SpanAttrs),
            ("dropped_attributes_count", F::SpanDropped),
            ("start_time_unix_nano", F::SpanStart),
            ("end_time_unix_nano", F::SpanEnd),
            ("start_time", F::SpanStartTime),
            ("end_time", F::SpanEndTime),
            ("status.code", F::SpanStatusCode),
            ("status.message", F::SpanStatusMessage),
            ("dropped_events_count", F::SpanDroppedEvents),
            ("dropped_links_count", F::SpanDroppedLinks),
            ("flags", F::SpanFlags),
        ],
        Ctx::SpanEvent => &[
            ("name", F::EvName),
            ("time_unix_nano", F::EvTimeNano),
            ("time", F::EvTime),
            ("attributes", F::EvAttrs),
            ("dropped_attributes_count", F::EvDropped),
        ],
        Ctx::Log => &[
            ("time_unix_nano", F::LogTimeNano),
            ("observed_time_unix_nano", F::LogObservedNano),
            ("time", F::LogTime),
            ("observed_time", F::LogObserved),
            ("severity_number", F::LogSevNum),
            ("severity_text", F::LogSevText),
            ("body", F::LogBody),
            ("body.string", F::LogBodyStr),
            ("attributes", F::LogAttrs),
            ("dropped_attributes_count", F::LogDropped),
            ("flags", F::LogFlags),
            ("trace_id", F::LogTraceId),
            ("trace_id.string", F::LogTraceIdStr),
            ("span_id", F::LogSpanId),
            ("span_id.string", F::LogSpanIdStr),
            ("event_name", F::LogEventName),
        ],
        Ctx::Metric => &[
            ("name", F::MName),
            ("description", F::MDescription),
            ("unit", F::MUnit),
            ("type", F::MType),
            ("aggregation_temporality", F::MTemporality),
            ("is_monotonic", F::MMonotonic),
        ],
        Ctx::DataPoint => &[
            ("attributes", F::DpAttrs),
            ("start_time_unix_nano", F::DpStartNano),
            ("time_unix_nano", F::DpTimeNano),
            ("start_time", F::DpStart),
            ("time", F::DpTime),
            ("value_double", F::DpValueDouble),
            ("value_int", F::DpValueInt),
            ("flags", F::DpFlags),
            ("count", F::DpCount),
            ("sum", F::DpSum),
        ],
    }
}

impl F {
    /// Fields that hold a map or a value that may be indexed with `[...]`.
    pub fn indexable(self) -> bool {
        matches!(
            self,
            F::Cache
                | F::ResAttrs
                | F::ScopeAttrs
                | F::SpanAttrs
                | F::EvAttrs
                | F::LogAttrs
                | F::LogBody
                | F::DpAttrs
                | F::SpanTraceState
        )
    }

    /// Fields that are a map (attributes, the cache).
    pub fn is_map(self) -> bool {
        matches!(self, F::Cache | F::ResAttrs | F::ScopeAttrs | F::SpanAttrs | F::EvAttrs | F::LogAttrs | F::DpAttrs)
    }
}

/// The item a statement runs on, with its resource and scope. Spans and log records are
/// [`Slot`]s: read on the wire, decoded only when needed.
pub enum Item<'a> {
    None,
    Span(&'a mut Slot<Span>),
    /// A span and the index of one of its events.
    Event(&'a mut Slot<Span>, usize),
    Log(&'a mut Slot<LogRecord>),
    Metric(&'a mut Metric),
    /// A metric and the index of one of its data points.
    Point(&'a mut Metric, usize),
}

pub struct Target<'a> {
    pub resource: &'a mut Option<Resource>,
    pub scope: &'a mut Option<InstrumentationScope>,
    pub item: Item<'a>,
    pub cache: &'a mut Vec<KeyValue>,
}

const EMPTY: &[KeyValue] = &[];

fn attrs<'a>(v: &'a [KeyValue]) -> Val<'a> {
    Val::Map(Cow::Borrowed(v))
}

fn id_val(b: &[u8]) -> Val<'_> {
    Val::Bytes(Cow::Borrowed(b))
}

/// An id in hex, as pdata's fixed-size ids: an absent id is all zeros.
fn id_str(b: &[u8], n: usize) -> Val<'static> {
    if b.is_empty() { Val::str("0".repeat(n * 2)) } else { Val::str(hex(b)) }
}

fn u64_val(v: u64) -> Val<'static> {
    Val::Int(v as i64)
}

pub const SPAN_KINDS: [&str; 6] = ["Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"];

/// A data point's common fields, whatever its kind.
enum PointRef<'a> {
    Number(&'a opentelemetry_proto::tonic::metrics::v1::NumberDataPoint),
    Histogram(&'a opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint),
    Exp(&'a opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint),
    Summary(&'a opentelemetry_proto::tonic::metrics::v1::SummaryDataPoint),
}

fn point(m: &Metric, i: usize) -> Option<PointRef<'_>> {
    Some(match &m.data {
        Some(metric::Data::Gauge(g)) => PointRef::Number(g.data_points.get(i)?),
        Some(metric::Data::Sum(s)) => PointRef::Number(s.data_points.get(i)?),
        Some(metric::Data::Histogram(h)) => PointRef::Histogram(h.data_points.get(i)?),
        Some(metric::Data::ExponentialHistogram(h)) => PointRef::Exp(h.data_points.get(i)?),
        Some(metric::Data::Summary(s)) => PointRef::Summary(s.data_points.get(i)?),
        None => return None,
    })
}

fn point_attrs_mut(m: &mut Metric, i: usize) -> Option<&mut Vec<KeyValue>> {
    Some(match &mut m.data {
        Some(metric::Data::Gauge(g)) => &mut g.data_points.get_mut(i)?.attributes,
        Some(metric::Data::Sum(s)) => &mut s.data_points.get_mut(i)?.attributes,
        Some(metric::Data::Histogram(h)) => &mut h.data_points.get_mut(i)?.attributes,
        Some(metric::Data::ExponentialHistogram(h)) => &mut h.data_points.get_mut(i)?.attributes,
        Some(metric::Data::Summary(s)) => &mut s.data_points.get_mut(i)?.attributes,
        None => return None,
    })
}

pub fn metric_type(m: &Metric) -> i64 {
    match &m.data {
        None => 0,
        Some(metric::Data::Gauge(_)) => 1,
        Some(metric::Data::Sum(_)) => 2,
        Some(metric::Data::Histogram(_)) => 3,
        Some(metric::Data::ExponentialHistogram(_)) => 4,
        Some(metric::Data::Summary(_)) => 5,
    }
}

impl Target<'_> {
    fn span(&self) -> Option<&Slot<Span>> {
        match &self.item {
            Item::Span(s) | Item::Event(s, _) => Some(s),
            _ => None,
        }
    }

    /// One attribute of the item (span or log record) without decoding it; `None` when `f` is
    /// not the item's attributes.
    pub fn item_attr(&self, f: F, key: &str) -> Option<Val<'_>> {
        match (&self.item, f) {
            (Item::Span(s), F::SpanAttrs) | (Item::Event(s, _), F::SpanAttrs) => Some(s.attr(key)),
            (Item::Log(l), F::LogAttrs) => Some(l.attr(key)),
            _ => None,
        }
    }

    /// Whether `f` is the attributes of this target's span or log record (a [`Slot`]).
    pub fn is_item_attrs(&self, f: F) -> bool {
        matches!((&self.item, f), (Item::Span(_) | Item::Event(..), F::SpanAttrs) | (Item::Log(_), F::LogAttrs))
    }

    /// Sets one attribute of the item without decoding it; false when `f` is not the item's
    /// attributes (the caller takes the general path).
    pub fn set_item_attr(&mut self, f: F, key: &str, v: AnyValue) -> bool {
        match (&mut self.item, f) {
            (Item::Span(s), F::SpanAttrs) | (Item::Event(s, _), F::SpanAttrs) => s.set_attr(key, v),
            (Item::Log(l), F::LogAttrs) => l.set_attr(key, v),
            _ => return false,
        }
        true
    }

    /// [`Target::set_item_attr`] with a key and value shared with the statement.
    pub fn set_item_attr_shared(&mut self, f: F, key: &std::sync::Arc<str>, v: &std::sync::Arc<AnyValue>) -> bool {
        match (&mut self.item, f) {
            (Item::Span(s), F::SpanAttrs) | (Item::Event(s, _), F::SpanAttrs) => s.set_attr_shared(key, v),
            (Item::Log(l), F::LogAttrs) => l.set_attr_shared(key, v),
            _ => return false,
        }
        true
    }

    /// `set(attributes["key"], attributes["from"])` on the item's own attributes without
    /// decoding the value; false when the fast path does not apply.
    pub fn copy_item_attr(
        &mut self,
        f: F,
        key: &std::sync::Arc<str>,
        from: &str,
        nil: &std::sync::Arc<AnyValue>,
    ) -> bool {
        match (&mut self.item, f) {
            (Item::Span(s), F::SpanAttrs) | (Item::Event(s, _), F::SpanAttrs) => s.copy_attr(key, from, nil),
            (Item::Log(l), F::LogAttrs) => l.copy_attr(key, from, nil),
            _ => false,
        }
    }

    /// [`Target::delete_item_attr`] with a key shared with the statement.
    pub fn delete_item_attr_shared(&mut self, f: F, key: &std::sync::Arc<str>) -> bool {
        match (&mut self.item, f) {
            (Item::Span(s), F::SpanAttrs) | (Item::Event(s, _), F::SpanAttrs) => s.delete_attr_shared(key),
            (Item::Log(l), F::LogAttrs) => l.delete_attr_shared(key),
            _ => return false,
        }
        true
    }

    /// Deletes one attribute of the item without decoding it (see [`Target::set_item_attr`]).
    pub fn delete_item_attr(&mut self, f: F, key: &str) -> bool {
        match (&mut self.item, f) {
            (Item::Span(s), F::SpanAttrs) | (Item::Event(s, _), F::SpanAttrs) => s.delete_attr(key),
            (Item::Log(l), F::LogAttrs) => l.delete_attr(key),
            _ => return false,
        }
        true
    }
    fn metric(&self) -> Option<&Metric> {
        match &self.item {
            Item::Metric(m) | Item::Point(m, _) => Some(m),
            _ => None,
        }
    }

    /// Reads a field (before any `[...]` keys).
    pub fn get(&self, f: F) -> Val<'_> {
        let scope = self.scope.as_ref();
        match f {
            F::Cache => attrs(self.cache),
            F::ResAttrs => attrs(self.resource.as_ref().map_or(EMPTY, |r| &r.attributes)),
            F::ResDropped => Val::Int(self.resource.as_ref().map_or(0, |r| r.dropped_attributes_count).into()),
            F::ScopeName => Val::Str(Cow::Borrowed(scope.map_or("", |s| &s.name))),
            F::ScopeVersion => Val::Str(Cow::Borrowed(scope.map_or("", |s| &s.version))),
            F::ScopeAttrs => attrs(scope.map_or(EMPTY, |s| &s.attributes)),
            F::ScopeDropped => Val::Int(scope.map_or(0, |s| s.dropped_attributes_count).into()),
            _ => self.get_item(f).unwrap_or(Val::Nil),
        }
    }

    fn get_item(&self, f: F) -> Option<Val<'_>> {
        if let Some(slot) = self.span() {
            if f == F::SpanKind {
                return Some(Val::Int(slot.kind().into()));
            }
            let s = slot.view();
            let v = match f {
                F::SpanTraceId => id_val(s.trace_id),
                F::SpanTraceIdStr => id_str(s.trace_id, 16),
                F::SpanId => id_val(s.span_id),
                F::SpanIdStr => id_str(s.span_id, 8),
                F::SpanParentId => id_val(s.parent_span_id),
                F::SpanParentIdStr => id_str(s.parent_span_id, 8),
                F::SpanTraceState => Val::Str(Cow::Borrowed(s.trace_state)),
                F::SpanName => Val::Str(Cow::Borrowed(s.name)),
                F::SpanKind => Val::Int(s.kind.into()),
                F::SpanKindStr => {
                    Val::str(usize::try_from(s.kind).ok().and_then(|k| SPAN_KINDS.get(k)).copied().unwrap_or(""))
                }
                F::SpanAttrs => attrs(&slot.decoded().attributes),
                F::SpanDropped => Val::Int(s.dropped_attributes_count.into()),
                F::SpanStart => u64_val(s.start),
                F::SpanEnd => u64_val(s.end),
                F::SpanStartTime => Val::Time(s.start as i64),
                F::SpanEndTime => Val::Time(s.end as i64),
                F::SpanStatusCode => Val::Int(s.status_code.into()),
                F::SpanStatusMessage => Val::Str(Cow::Borrowed(s.status_message)),
                F::SpanDroppedEvents => Val::Int(s.dropped_events_count.into()),
                F::SpanDroppedLinks => Val::Int(s.dropped_links_count.into()),
                F::SpanFlags => Val::Int(s.flags.into()),
                _ => Val::Nil,
            };
            if v != Val::Nil {
                return Some(v);
            }
            if let Item::Event(slot, i) = &self.item {
                let e = slot.decoded().events.get(*i)?;
                return Some(match f {
                    F::EvName => Val::Str(Cow::Borrowed(&e.name)),
                    F::EvTimeNano => u64_val(e.time_unix_nano),
                    F::EvTime => Val::Time(e.time_unix_nano as i64),
                    F::EvAttrs => attrs(&e.attributes),
                    F::EvDropped => Val::Int(e.dropped_attributes_count.into()),
                    _ => Val::Nil,
                });
            }
            return None;
        }
        if let Item::Log(slot) = &self.item {
            let l = slot.view();
            return Some(match f {
                F::LogTimeNano => u64_val(l.time),
                F::LogObservedNano => u64_val(l.observed),
                F::LogTime => Val::Time(l.time as i64),
                F::LogObserved => Val::Time(l.observed as i64),
                F::LogSevNum => Val::Int(l.severity_number.into()),
                F::LogSevText => Val::Str(Cow::Borrowed(l.severity_text)),
                F::LogBody => l.body.unwrap_or(Val::Nil),
                F::LogBodyStr => match l.body.unwrap_or(Val::Nil) {
                    Val::Nil => Val::str(""),
                    Val::Str(s) => Val::Str(s),
                    v => Val::str(crate::value::string_like_body(&v)),
                },
                F::LogAttrs => attrs(&slot.decoded().attributes),
                F::LogDropped => Val::Int(l.dropped_attributes_count.into()),
                F::LogFlags => Val::Int(l.flags.into()),
                F::LogTraceId => id_val(l.trace_id),
                F::LogTraceIdStr => id_str(l.trace_id, 16),
                F::LogSpanId => id_val(l.span_id),
                F::LogSpanIdStr => id_str(l.span_id, 8),
                F::LogEventName => Val::Str(Cow::Borrowed(l.event_name)),
                _ => Val::Nil,
            });
        }
        let m = self.metric()?;
        let v = match f {
            F::MName => Val::Str(Cow::Borrowed(&m.name)),
            F::MDescription => Val::Str(Cow::Borrowed(&m.description)),
            F::MUnit => Val::Str(Cow::Borrowed(&m.unit)),
            F::MType => Val::Int(metric_type(m)),
            F::MTemporality => Val::Int(match &m.data {
                Some(metric::Data::Sum(s)) => s.aggregation_temporality.into(),
                Some(metric::Data::Histogram(h)) => h.aggregation_temporality.into(),
                Some(metric::Data::ExponentialHistogram(h)) => h.aggregation_temporality.into(),
                _ => 0,
            }),
            F::MMonotonic => Val::Bool(matches!(&m.data, Some(metric::Data::Sum(s)) if s.is_monotonic)),
            _ => Val::Nil,
        };
        if v != Val::Nil {
            return Some(v);
        }
        let Item::Point(m, i) = &self.item else { return None };
        let p = point(m, *i)?;
        let (a, start, time, flags) = match &p {
            PointRef::Number(p) => (&p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags),
            PointRef::Histogram(p) => (&p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags),
            PointRef::Exp(p) => (&p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags),
            PointRef::Summary(p) => (&p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags),
        };
        Some(match f {
            F::DpAttrs => attrs(a),
            F::DpStartNano => u64_val(start),
            F::DpTimeNano => u64_val(time),
            F::DpStart => Val::Time(start as i64),
            F::DpTime => Val::Time(time as i64),
            F::DpFlags => Val::Int(flags.into()),
            F::DpValueDouble => match &p {
                PointRef::Number(n) => match n.value {
                    Some(number_data_point::Value::AsDouble(d)) => Val::Float(d),
                    _ => Val::Float(0.0),
                },
                _ => Val::Nil,
            },
            F::DpValueInt => match &p {
                PointRef::Number(n) => match n.value {
                    Some(number_data_point::Value::AsInt(i)) => Val::Int(i),
                    _ => Val::Int(0),
                },
                _ => Val::Nil,
            },
            F::DpCount => match &p {
                PointRef::Histogram(h) => u64_val(h.count),
                PointRef::Exp(h) => u64_val(h.count),
                PointRef::Summary(s) => u64_val(s.count),
                _ => Val::Nil,
            },
            F::DpSum => match &p {
                PointRef::Histogram(h) => Val::Float(h.sum.unwrap_or(0.0)),
                PointRef::Exp(h) => Val::Float(h.sum.unwrap_or(0.0)),
                PointRef::Summary(s) => Val::Float(s.sum),
                _ => Val::Nil,
            },
            _ => Val::Nil,
        })
    }

    /// The attribute list a map field names, for editing (created when absent).
    pub fn map_mut(&mut self, f: F) -> Option<&mut Vec<KeyValue>> {
        Some(match f {
            F::Cache => self.cache,
            F::ResAttrs => &mut self.resource.get_or_insert_with(Default::default).attributes,
            F::ScopeAttrs => &mut self.scope.get_or_insert_with(Default::default).attributes,
            F::SpanAttrs => match &mut self.item {
                Item::Span(s) | Item::Event(s, _) => &mut s.get_mut().attributes,
                _ => return None,
            },
            F::EvAttrs => match &mut self.item {
                Item::Event(s, i) => &mut s.get_mut().events.get_mut(*i)?.attributes,
                _ => return None,
            },
            F::LogAttrs => match &mut self.item {
                Item::Log(l) => &mut l.get_mut().attributes,
                _ => return None,
            },
            F::DpAttrs => match &mut self.item {
                Item::Point(m, i) => point_attrs_mut(m, *i)?,
                _ => return None,
            },
            _ => return None,
        })
    }

    /// The log body, for editing with keys.
    pub fn body_mut(&mut self) -> Option<&mut Option<AnyValue>> {
        match &mut self.item {
            Item::Log(l) => Some(&mut l.get_mut().body),
            _ => None,
        }
    }

    /// Writes a field. A value of the wrong type for a typed field is ignored, as in the
    /// collector's setters.
    pub fn set(&mut self, f: F, v: Val<'static>) -> Result<(), String> {
        if f.is_map() {
            if let Val::Map(m) = v
                && let Some(target) = self.map_mut(f)
            {
                *target = m.into_owned();
            }
            return Ok(());
        }
        let as_u32 = |v: &Val| match v {
            Val::Int(i) => u32::try_from(*i).ok(),
            _ => None,
        };
        let as_i32 = |v: &Val| match v {
            Val::Int(i) => i32::try_from(*i).ok(),
            _ => None,
        };
        let as_u64 = |v: &Val| match v {
            Val::Int(i) => Some(*i as u64),
            _ => None,
        };
        let as_time = |v: &Val| match v {
            Val::Time(t) => Some(*t as u64),
            _ => None,
        };
        let as_str = |v: &Val| match v {
            Val::Str(s) => Some(s.to_string()),
            _ => None,
        };
        let as_id = |v: &Val, n: usize| match v {
            Val::Bytes(b) if b.len() == n => Some(b.to_vec()),
            _ => None,
        };
        let as_hex_id = |v: &Val, n: usize| match v {
            Val::Str(s) => decode_hex(s).filter(|b| b.len() == n),
            _ => None,
        };
        match f {
            F::ResDropped => {
                if let Some(x) = as_u32(&v) {
                    self.resource.get_or_insert_with(Default::default).dropped_attributes_count = x;
                }
                return Ok(());
            }
            F::ScopeName | F::ScopeVersion | F::ScopeDropped => {
                let s = self.scope.get_or_insert_with(Default::default);
                match f {
                    F::ScopeName => s.name = as_str(&v).unwrap_or_else(|| s.name.clone()),
                    F::ScopeVersion => s.version = as_str(&v).unwrap_or_else(|| s.version.clone()),
                    _ => s.dropped_attributes_count = as_u32(&v).unwrap_or(s.dropped_attributes_count),
                }
                return Ok(());
            }
            _ => {}
        }
        match &mut self.item {
            Item::Span(s) | Item::Event(s, _)
                if !matches!(f, F::EvName | F::EvTimeNano | F::EvTime | F::EvAttrs | F::EvDropped) =>
            {
                let s: &mut Span = s.get_mut();
                match f {
                    F::SpanTraceId => set_opt(&mut s.trace_id, as_id(&v, 16)),
                    F::SpanTraceIdStr => set_opt(&mut s.trace_id, as_hex_id(&v, 16)),
                    F::SpanId => set_opt(&mut s.span_id, as_id(&v, 8)),
                    F::SpanIdStr => set_opt(&mut s.span_id, as_hex_id(&v, 8)),
                    F::SpanParentId => set_opt(&mut s.parent_span_id, as_id(&v, 8)),
                    F::SpanParentIdStr => set_opt(&mut s.parent_span_id, as_hex_id(&v, 8)),
                    F::SpanTraceState => set_opt(&mut s.trace_state, as_str(&v)),
                    F::SpanName => set_opt(&mut s.name, as_str(&v)),
                    F::SpanKind => set_opt(&mut s.kind, as_i32(&v)),
                    F::SpanKindStr => {
                        if let Val::Str(k) = &v
                            && let Some(i) = SPAN_KINDS.iter().position(|x| x == k)
                        {
                            s.kind = i as i32;
                        }
                    }
                    F::SpanDropped => set_opt(&mut s.dropped_attributes_count, as_u32(&v)),
                    F::SpanStart => set_opt(&mut s.start_time_unix_nano, as_u64(&v)),
                    F::SpanEnd => set_opt(&mut s.end_time_unix_nano, as_u64(&v)),
                    F::SpanStartTime => set_opt(&mut s.start_time_unix_nano, as_time(&v)),
                    F::SpanEndTime => set_opt(&mut s.end_time_unix_nano, as_time(&v)),
                    F::SpanStatusCode => {
                        if let Some(c) = as_i32(&v) {
                            s.status.get_or_insert_with(Status::default).code = c;
                        }
                    }
                    F::SpanStatusMessage => {
                        if let Some(m) = as_str(&v) {
                            s.status.get_or_insert_with(Status::default).message = m;
                        }
                    }
                    F::SpanDroppedEvents => set_opt(&mut s.dropped_events_count, as_u32(&v)),
                    F::SpanDroppedLinks => set_opt(&mut s.dropped_links_count, as_u32(&v)),
                    F::SpanFlags => set_opt(&mut s.flags, as_u32(&v)),
                    _ => return Err(format!("{f:?} cannot be set here")),
                }
            }
            Item::Event(s, i) => {
                let Some(e) = s.get_mut().events.get_mut(*i) else { return Ok(()) };
                match f {
                    F::EvName => set_opt(&mut e.name, as_str(&v)),
                    F::EvTimeNano => set_opt(&mut e.time_unix_nano, as_u64(&v)),
                    F::EvTime => set_opt(&mut e.time_unix_nano, as_time(&v)),
                    F::EvDropped => set_opt(&mut e.dropped_attributes_count, as_u32(&v)),
                    _ => return Err(format!("{f:?} cannot be set here")),
                }
            }
            Item::Log(l) => {
                let l = l.get_mut();
                match f {
                    F::LogTimeNano => set_opt(&mut l.time_unix_nano, as_u64(&v)),
                    F::LogObservedNano => set_opt(&mut l.observed_time_unix_nano, as_u64(&v)),
                    F::LogTime => set_opt(&mut l.time_unix_nano, as_time(&v)),
                    F::LogObserved => set_opt(&mut l.observed_time_unix_nano, as_time(&v)),
                    F::LogSevNum => set_opt(&mut l.severity_number, as_i32(&v)),
                    F::LogSevText => set_opt(&mut l.severity_text, as_str(&v)),
                    F::LogBody => {
                        if v == Val::Nil {
                            l.body = Some(AnyValue { value: None });
                        } else if let Some(a) = v.to_any() {
                            l.body = Some(a);
                        }
                    }
                    F::LogBodyStr => {
                        if let Some(s) = as_str(&v) {
                            l.body = Some(AnyValue { value: Some(Pv::StringValue(s)) });
                        }
                    }
                    F::LogDropped => set_opt(&mut l.dropped_attributes_count, as_u32(&v)),
                    F::LogFlags => set_opt(&mut l.flags, as_u32(&v)),
                    F::LogTraceId => set_opt(&mut l.trace_id, as_id(&v, 16)),
                    F::LogTraceIdStr => set_opt(&mut l.trace_id, as_hex_id(&v, 16)),
                    F::LogSpanId => set_opt(&mut l.span_id, as_id(&v, 8)),
                    F::LogSpanIdStr => set_opt(&mut l.span_id, as_hex_id(&v, 8)),
                    F::LogEventName => set_opt(&mut l.event_name, as_str(&v)),
                    _ => return Err(format!("{f:?} cannot be set here")),
                }
            }
            Item::Metric(m) | Item::Point(m, _)
                if matches!(f, F::MName | F::MDescription | F::MUnit | F::MType | F::MTemporality | F::MMonotonic) =>
            {
                match f {
                    F::MName => set_opt(&mut m.name, as_str(&v)),
                    F::MDescription => set_opt(&mut m.description, as_str(&v)),
                    F::MUnit => set_opt(&mut m.unit, as_str(&v)),
                    F::MTemporality => {
                        if let Some(t) = as_i32(&v) {
                            match &mut m.data {
                                Some(metric::Data::Sum(s)) => s.aggregation_temporality = t,
                                Some(metric::Data::Histogram(h)) => h.aggregation_temporality = t,
                                Some(metric::Data::ExponentialHistogram(h)) => h.aggregation_temporality = t,
                                _ => {}
                            }
                        }
                    }
                    F::MMonotonic => {
                        if let (Val::Bool(b), Some(metric::Data::Sum(s))) = (&v, &mut m.data) {
                            s.is_monotonic = *b;
                        }
                    }
                    _ => return Err("metric.type cannot be set (use the convert_* functions)".into()),
                }
            }
            Item::Point(m, i) => {
                let i = *i;
                set_point(m, i, f, &v);
            }
            _ => return Err(format!("{f:?} is not available in this context")),
        }
        Ok(())
    }
}

fn set_opt<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

fn set_point(m: &mut Metric, i: usize, f: F, v: &Val) {
    macro_rules! common {
        ($p:expr) => {{
            let p = $p;
            match (f, v) {
                (F::DpStartNano, Val::Int(x)) | (F::DpStart, Val::Time(x)) => p.start_time_unix_nano = *x as u64,
                (F::DpTimeNano, Val::Int(x)) | (F::DpTime, Val::Time(x)) => p.time_unix_nano = *x as u64,
                (F::DpFlags, Val::Int(x)) => p.flags = *x as u32,
                _ => {}
            }
        }};
    }
    match &mut m.data {
        Some(
            metric::Data::Gauge(opentelemetry_proto::tonic::metrics::v1::Gauge { data_points: pts })
            | metric::Data::Sum(opentelemetry_proto::tonic::metrics::v1::Sum { data_points: pts, .. }),
        ) => {
            let Some(p) = pts.get_mut(i) else { return };
            match (f, v) {
                (F::DpValueDouble, Val::Float(d)) => p.value = Some(number_data_point::Value::AsDouble(*d)),
                (F::DpValueInt, Val::Int(x)) => p.value = Some(number_data_point::Value::AsInt(*x)),
                _ => common!(p),
            }
        }
        Some(metric::Data::Histogram(h)) => {
            let Some(p) = h.data_points.get_mut(i) else { return };
            match (f, v) {
                (F::DpCount, Val::Int(x)) => p.count = *x as u64,
                (F::DpSum, Val::Float(d)) => p.sum = Some(*d),
                _ => common!(p),
            }
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            let Some(p) = h.data_points.get_mut(i) else { return };
            match (f, v) {
                (F::DpCount, Val::Int(x)) => p.count = *x as u64,
                (F::DpSum, Val::Float(d)) => p.sum = Some(*d),
                _ => common!(p),
            }
        }
        Some(metric::Data::Summary(s)) => {
            let Some(p) = s.data_points.get_mut(i) else { return };
            match (f, v) {
                (F::DpCount, Val::Int(x)) => p.count = *x as u64,
                (F::DpSum, Val::Float(d)) => p.sum = *d,
                _ => common!(p),
            }
        }
        None => {}
    }
}

pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

/// A map value of an `AnyValue` for editing (None when it is not a map).
pub fn any_map_mut(v: &mut AnyValue) -> Option<&mut Vec<KeyValue>> {
    match &mut v.value {
        Some(Pv::KvlistValue(KeyValueList { values })) => Some(values),
        _ => None,
    }
}
