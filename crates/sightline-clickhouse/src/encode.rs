//! OTLP requests, read on the wire, to ClickHouse `RowBinary` rows in the collector's column
//! order ([`traces_columns`], [`logs_columns`], [`metrics_columns`]).
//!
//! Nothing is decoded into structs: each span, log record or data point is read once into a
//! view of borrowed slices, then written column by column. What a resource or a scope
//! contributes to every row (its attribute map, `ServiceName`, `OwnerTeam`, the scope's name
//! and version) is encoded once per resource or scope and copied into each row. Buffers keep
//! their capacity from one batch to the next: after warm-up a batch costs no allocation per
//! row. A row whose fields cannot be read is left out whole and counted (`malformed`).
//!
//! Attribute values are written as the collector writes them (pdata's `AsString`, see
//! [`sightline_core::text`]); ids are lowercase hex, or empty when absent or all zeros (the
//! exemplars' ids are hex even when zero, as the collector writes them).

use crate::config::MetricKind;
use crate::schema::TableShape;
use sightline_core::Signal;
use sightline_core::wire::{self, AnyValue, Fields, RawValue, Value, WireError, WireErrorKind, expect_len, put_varint};

/// Buffers larger than this are released after a batch instead of kept for the next one.
const KEEP_CAPACITY: usize = 16 << 20;

/// The columns of the traces table, in insert order (`OwnerTeam` when the table has it).
pub fn traces_columns(shape: &TableShape) -> String {
    let owner = if shape.owner_team { "OwnerTeam, " } else { "" };
    format!(
        "Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName, {owner}\
         ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, StatusMessage, \
         `Events.Timestamp`, `Events.Name`, `Events.Attributes`, \
         `Links.TraceId`, `Links.SpanId`, `Links.TraceState`, `Links.Attributes`"
    )
}

/// The columns of the logs table, in insert order.
pub fn logs_columns(shape: &TableShape) -> String {
    let owner = if shape.owner_team { "OwnerTeam, " } else { "" };
    let event = if shape.event_name { ", EventName" } else { "" };
    format!(
        "Timestamp, TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, ServiceName, {owner}Body, \
         ResourceSchemaUrl, ResourceAttributes, ScopeSchemaUrl, ScopeName, ScopeVersion, ScopeAttributes, \
         LogAttributes{event}"
    )
}

const EXEMPLAR_COLUMNS: &str = "`Exemplars.FilteredAttributes`, `Exemplars.TimeUnix`, `Exemplars.Value`, \
     `Exemplars.SpanId`, `Exemplars.TraceId`";

/// The columns of a metrics table, in insert order.
pub fn metrics_columns(kind: MetricKind, shape: &TableShape) -> String {
    let owner = if shape.owner_team { "OwnerTeam, " } else { "" };
    let specific = match kind {
        MetricKind::Gauge => format!("Value, Flags, {EXEMPLAR_COLUMNS}"),
        MetricKind::Sum => format!("Value, Flags, {EXEMPLAR_COLUMNS}, AggregationTemporality, IsMonotonic"),
        MetricKind::Histogram => format!(
            "Count, Sum, BucketCounts, ExplicitBounds, {EXEMPLAR_COLUMNS}, Flags, Min, Max, AggregationTemporality"
        ),
        MetricKind::ExponentialHistogram => format!(
            "Count, Sum, Scale, ZeroCount, PositiveOffset, PositiveBucketCounts, NegativeOffset, \
             NegativeBucketCounts, {EXEMPLAR_COLUMNS}, Flags, Min, Max, AggregationTemporality"
        ),
        MetricKind::Summary => "Count, Sum, `ValueAtQuantiles.Quantile`, `ValueAtQuantiles.Value`, Flags".into(),
    };
    format!(
        "ResourceAttributes, ResourceSchemaUrl, ScopeName, ScopeVersion, ScopeAttributes, ScopeDroppedAttrCount, \
         ScopeSchemaUrl, ServiceName, {owner}MetricName, MetricDescription, MetricUnit, Attributes, \
         StartTimeUnix, TimeUnix, {specific}"
    )
}

/// What one encode wrote and skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rows written.
    pub rows: u64,
    /// Items left out because a field inside them could not be read.
    pub malformed: u64,
}

/// The shapes of the tables one exporter writes.
#[derive(Clone, Debug, Default)]
pub struct Shapes {
    pub traces: TableShape,
    pub logs: TableShape,
    /// By [`MetricKind::ALL`] order.
    pub metrics: [TableShape; 5],
}

/// Reusable buffers: the rows of one batch (per metrics table for metrics) and the scratch
/// space of the walk.
#[derive(Default)]
pub struct Encoder {
    /// Traces or logs rows.
    pub rows: Vec<u8>,
    /// Metrics rows, by [`MetricKind::ALL`] order.
    pub metric_rows: [Vec<u8>; 5],
    /// Rows in `metric_rows`, by kind.
    pub metric_counts: [u64; 5],
    pub stats: Stats,
    /// The current resource's columns (see [`Resource`]).
    res: Resource,
    /// The current scope's columns.
    scope: Vec<u8>,
    /// The current metric's prefix (resource, scope and metric columns).
    prefix: Vec<u8>,
    /// Attribute values as text.
    text: String,
    /// The current span's events and links, read once.
    events: Vec<Child>,
    links: Vec<Child>,
}

/// A span event or a link, read once while its span is read (ranges into the span).
#[derive(Clone, Copy, Default)]
struct Child {
    /// The event's `time_unix_nano`.
    time: u64,
    /// The event's name or the link's trace state.
    text: (usize, usize),
    /// The link's trace id and span id.
    trace_id: (usize, usize),
    span_id: (usize, usize),
    /// The message itself.
    msg: (usize, usize),
    /// Its attribute fields (an event's field 3, a link's field 4).
    attrs: u64,
}

impl Child {
    /// Reads the event (`event`) or link at `at..at + len` of `span`.
    fn read(span: &[u8], at: usize, len: usize, event: bool) -> Result<Child, WireError> {
        let mut c = Child { msg: (at, at + len), ..Child::default() };
        let mut it = Fields::new(&span[at..at + len]);
        while let Some(f) = it.next() {
            let f = f?;
            let end = at + it.position();
            let range = |b: &[u8]| (end - b.len(), end);
            match (event, f.number, f.value) {
                (true, 1, Value::I64(t)) => c.time = t,
                (true, 2, Value::Len(b)) | (false, 3, Value::Len(b)) => c.text = range(b),
                (false, 1, Value::Len(b)) => c.trace_id = range(b),
                (false, 2, Value::Len(b)) => c.span_id = range(b),
                (true, 3, _) | (false, 4, _) => c.attrs += 1,
                (true, 2, _) | (false, 1..=3, _) => {
                    return Err(WireError::new(WireErrorKind::UnexpectedWireType { field: f.number }));
                }
                _ => {}
            }
        }
        Ok(c)
    }
}

fn at(span: &[u8], r: (usize, usize)) -> &[u8] {
    &span[r.0..r.1]
}

/// One `Nested` column (an Array in RowBinary): the count, then each child's value.
fn nested(out: &mut Vec<u8>, children: &[Child], mut put: impl FnMut(&mut Vec<u8>, &Child)) {
    put_varint(out, children.len() as u64);
    for c in children {
        put(out, c);
    }
}

/// The children's attributes (their field `field`) as a `Nested` column of maps.
fn nested_maps(
    out: &mut Vec<u8>,
    text: &mut String,
    span: &[u8],
    children: &[Child],
    field: u32,
) -> Result<(), WireError> {
    put_varint(out, children.len() as u64);
    children.iter().try_for_each(|c| put_map_n(out, text, at(span, c.msg), field, c.attrs))
}

#[derive(Default)]
struct Resource {
    /// `ResourceAttributes`, encoded.
    attrs: Vec<u8>,
    /// `ServiceName`, encoded.
    service: Vec<u8>,
    /// `OwnerTeam`, encoded.
    owner: Vec<u8>,
    /// `ResourceSchemaUrl`, encoded.
    schema_url: Vec<u8>,
}

impl Encoder {
    /// Empties the buffers for the next batch, keeping their capacity (up to a bound).
    pub fn reset(&mut self) {
        for b in std::iter::once(&mut self.rows).chain(self.metric_rows.iter_mut()) {
            b.clear();
            if b.capacity() > KEEP_CAPACITY {
                b.shrink_to(KEEP_CAPACITY);
            }
        }
        self.metric_counts = [0; 5];
        self.stats = Stats::default();
    }

    /// Appends a `ExportTraceServiceRequest`'s spans to `rows`.
    pub fn add_traces(&mut self, req: &[u8], shape: &TableShape, owner_key: &str) -> Result<(), WireError> {
        for rs in Fields::new(req) {
            let rs = rs?;
            if rs.number != 1 {
                continue;
            }
            let rs = expect_len(&rs)?;
            if self.resource(rs, owner_key).is_err() {
                self.stats.malformed += wire::count_items(Signal::Traces, rs);
                continue;
            }
            for ss in Fields::new(rs) {
                let ss = ss?;
                if ss.number != 2 {
                    continue;
                }
                let ss = expect_len(&ss)?;
                if self.trace_scope(ss).is_err() {
                    self.stats.malformed += wire::scope_items(Signal::Traces, ss);
                    continue;
                }
                for f in Fields::new(ss) {
                    let f = f?;
                    if f.number != 2 {
                        continue;
                    }
                    let span = expect_len(&f)?;
                    let mark = self.rows.len();
                    match self.span(span, shape) {
                        Ok(()) => self.stats.rows += 1,
                        Err(_) => {
                            self.rows.truncate(mark);
                            self.stats.malformed += 1;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The scope columns of traces (`ScopeName`, `ScopeVersion`) into `self.scope`.
    fn trace_scope(&mut self, ss: &[u8]) -> Result<(), WireError> {
        let mut scope: &[u8] = &[];
        for f in Fields::new(ss) {
            let f = f?;
            if f.number == 1 {
                scope = expect_len(&f)?;
            }
        }
        let (name, version) = scope_name_version(scope)?;
        self.scope.clear();
        put_bytes(&mut self.scope, name);
        put_bytes(&mut self.scope, version);
        Ok(())
    }

    /// Reads a `ResourceX` message's resource into `self.res`.
    fn resource(&mut self, rx: &[u8], owner_key: &str) -> Result<(), WireError> {
        let mut resource: &[u8] = &[];
        let mut schema_url: &[u8] = &[];
        for f in Fields::new(rx) {
            let f = f?;
            match f.number {
                1 => resource = expect_len(&f)?,
                3 => schema_url = expect_len(&f)?,
                _ => {}
            }
        }
        let r = &mut self.res;
        r.attrs.clear();
        put_map(&mut r.attrs, &mut self.text, resource, 1)?;
        r.service.clear();
        r.owner.clear();
        let mut service = RawValue::Other(AnyValue::Empty);
        let mut owner = RawValue::Other(AnyValue::Empty);
        for f in Fields::new(resource) {
            let f = f?;
            if f.number != 1 {
                continue;
            }
            let (key, value) = wire::key_value_raw(expect_len(&f)?)?;
            if key == b"service.name" {
                service = value;
            } else if !owner_key.is_empty() && key == owner_key.as_bytes() {
                owner = value;
            }
        }
        put_raw(&mut r.service, &mut self.text, &service);
        put_raw(&mut r.owner, &mut self.text, &owner);
        r.schema_url.clear();
        put_bytes(&mut r.schema_url, schema_url);
        Ok(())
    }

    fn span(&mut self, span: &[u8], shape: &TableShape) -> Result<(), WireError> {
        let mut v = SpanView::default();
        self.events.clear();
        self.links.clear();
        let mut it = Fields::new(span);
        while let Some(f) = it.next() {
            let f = f?;
            match (f.number, f.value) {
                (1, Value::Len(b)) => v.trace_id = b,
                (2, Value::Len(b)) => v.span_id = b,
                (3, Value::Len(b)) => v.trace_state = b,
                (4, Value::Len(b)) => v.parent = b,
                (5, Value::Len(b)) => v.name = b,
                (6, Value::Varint(k)) => v.kind = k,
                (7, Value::I64(t)) => v.start = t,
                (8, Value::I64(t)) => v.end = t,
                (9, _) => v.attrs += 1,
                (11, Value::Len(b)) => self.events.push(Child::read(span, it.position() - b.len(), b.len(), true)?),
                (13, Value::Len(b)) => self.links.push(Child::read(span, it.position() - b.len(), b.len(), false)?),
                (15, Value::Len(b)) => v.status = b,
                (1..=5 | 11 | 13 | 15, _) | (7 | 8, Value::Varint(_) | Value::Len(_) | Value::I32(_)) => {
                    return Err(WireError::new(WireErrorKind::UnexpectedWireType { field: f.number }));
                }
                _ => {}
            }
        }
        let (mut code, mut message): (u64, &[u8]) = (0, &[]);
        for f in Fields::new(v.status) {
            let f = f?;
            match (f.number, f.value) {
                (2, Value::Len(b)) => message = b,
                (3, Value::Varint(c)) => code = c,
                _ => {}
            }
        }
        let out = &mut self.rows;
        out.extend_from_slice(&(v.start as i64).to_le_bytes());
        put_hex_id(out, v.trace_id);
        put_hex_id(out, v.span_id);
        put_hex_id(out, v.parent);
        put_bytes(out, v.trace_state);
        put_bytes(out, v.name);
        put_bytes(out, sightline_core::text::span_kind(v.kind).as_bytes());
        out.extend_from_slice(&self.res.service);
        if shape.owner_team {
            out.extend_from_slice(&self.res.owner);
        }
        out.extend_from_slice(&self.res.attrs);
        out.extend_from_slice(&self.scope);
        put_map_n(out, &mut self.text, span, 9, v.attrs)?;
        out.extend_from_slice(&v.end.wrapping_sub(v.start).to_le_bytes());
        put_bytes(out, sightline_core::text::status_code(code).as_bytes());
        put_bytes(out, message);
        // Events: Timestamp, Name, Attributes (event fields 1, 2, 3).
        let (events, links, text) = (&self.events, &self.links, &mut self.text);
        nested(out, events, |out, e| out.extend_from_slice(&(e.time as i64).to_le_bytes()));
        nested(out, events, |out, e| put_bytes(out, at(span, e.text)));
        nested_maps(out, text, span, events, 3)?;
        // Links: TraceId, SpanId, TraceState, Attributes (link fields 1, 2, 3, 4).
        nested(out, links, |out, l| put_hex_id(out, at(span, l.trace_id)));
        nested(out, links, |out, l| put_hex_id(out, at(span, l.span_id)));
        nested(out, links, |out, l| put_bytes(out, at(span, l.text)));
        nested_maps(out, text, span, links, 4)?;
        Ok(())
    }

    /// Appends a `ExportLogsServiceRequest`'s log records to `rows`.
    pub fn add_logs(&mut self, req: &[u8], shape: &TableShape, owner_key: &str) -> Result<(), WireError> {
        for rl in Fields::new(req) {
            let rl = rl?;
            if rl.number != 1 {
                continue;
            }
            let rl = expect_len(&rl)?;
            if self.resource(rl, owner_key).is_err() {
                self.stats.malformed += wire::count_items(Signal::Logs, rl);
                continue;
            }
            for sl in Fields::new(rl) {
                let sl = sl?;
                if sl.number != 2 {
                    continue;
                }
                let sl = expect_len(&sl)?;
                if self.scope_columns(sl).is_err() {
                    self.stats.malformed += wire::scope_items(Signal::Logs, sl);
                    continue;
                }
                for f in Fields::new(sl) {
                    let f = f?;
                    if f.number != 2 {
                        continue;
                    }
                    let rec = expect_len(&f)?;
                    let mark = self.rows.len();
                    match self.log(rec, shape) {
                        Ok(()) => self.stats.rows += 1,
                        Err(_) => {
                            self.rows.truncate(mark);
                            self.stats.malformed += 1;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The scope columns of logs and metrics: `ScopeSchemaUrl`, `ScopeName`, `ScopeVersion`,
    /// `ScopeAttributes` into `self.scope` (in that order), and the dropped attribute count.
    fn scope_columns(&mut self, sx: &[u8]) -> Result<u32, WireError> {
        let (mut scope, mut url): (&[u8], &[u8]) = (&[], &[]);
        for f in Fields::new(sx) {
            let f = f?;
            match f.number {
                1 => scope = expect_len(&f)?,
                3 => url = expect_len(&f)?,
                _ => {}
            }
        }
        let (name, version) = scope_name_version(scope)?;
        let mut dropped = 0u32;
        for f in Fields::new(scope) {
            let f = f?;
            if let (4, Value::Varint(d)) = (f.number, f.value) {
                dropped = d as u32;
            }
        }
        self.scope.clear();
        put_bytes(&mut self.scope, url);
        put_bytes(&mut self.scope, name);
        put_bytes(&mut self.scope, version);
        put_map(&mut self.scope, &mut self.text, scope, 3)?;
        Ok(dropped)
    }

    fn log(&mut self, rec: &[u8], shape: &TableShape) -> Result<(), WireError> {
        let mut v = LogView::default();
        for f in Fields::new(rec) {
            let f = f?;
            match (f.number, f.value) {
                (1, Value::I64(t)) => v.time = t,
                (11, Value::I64(t)) => v.observed = t,
                (6, _) => v.attrs += 1,
                (2, Value::Varint(n)) => v.severity = n,
                (3, Value::Len(b)) => v.severity_text = b,
                (5, Value::Len(b)) => v.body = Some(AnyValue::parse(b)?),
                (8, Value::I32(fl)) => v.flags = fl,
                (9, Value::Len(b)) => v.trace_id = b,
                (10, Value::Len(b)) => v.span_id = b,
                (12, Value::Len(b)) => v.event_name = b,
                (3 | 5 | 9 | 10 | 12, _) => {
                    return Err(WireError::new(WireErrorKind::UnexpectedWireType { field: f.number }));
                }
                _ => {}
            }
        }
        let out = &mut self.rows;
        let ts = if v.time != 0 { v.time } else { v.observed };
        out.extend_from_slice(&(ts as i64).to_le_bytes());
        put_hex_id(out, v.trace_id);
        put_hex_id(out, v.span_id);
        out.push(v.flags as u8);
        put_bytes(out, v.severity_text);
        out.push(v.severity as u8);
        out.extend_from_slice(&self.res.service);
        if shape.owner_team {
            out.extend_from_slice(&self.res.owner);
        }
        put_any(out, &mut self.text, v.body.as_ref());
        out.extend_from_slice(&self.res.schema_url);
        out.extend_from_slice(&self.res.attrs);
        out.extend_from_slice(&self.scope);
        put_map_n(out, &mut self.text, rec, 6, v.attrs)?;
        if shape.event_name {
            put_bytes(out, v.event_name);
        }
        Ok(())
    }

    /// Appends a `ExportMetricsServiceRequest`'s data points to `metric_rows`, each to the
    /// table of its metric's type.
    pub fn add_metrics(&mut self, req: &[u8], shapes: &[TableShape; 5], owner_key: &str) -> Result<(), WireError> {
        for rm in Fields::new(req) {
            let rm = rm?;
            if rm.number != 1 {
                continue;
            }
            let rm = expect_len(&rm)?;
            if self.resource(rm, owner_key).is_err() {
                self.stats.malformed += wire::count_items(Signal::Metrics, rm);
                continue;
            }
            for sm in Fields::new(rm) {
                let sm = sm?;
                if sm.number != 2 {
                    continue;
                }
                let sm = expect_len(&sm)?;
                let Ok(dropped) = self.scope_columns(sm) else {
                    self.stats.malformed += wire::scope_items(Signal::Metrics, sm);
                    continue;
                };
                for f in Fields::new(sm) {
                    let f = f?;
                    if f.number != 2 {
                        continue;
                    }
                    let metric = expect_len(&f)?;
                    if self.metric(metric, dropped, shapes).is_err() {
                        self.stats.malformed += wire::metric_points(metric).max(1);
                    }
                }
            }
        }
        Ok(())
    }

    fn metric(&mut self, metric: &[u8], scope_dropped: u32, shapes: &[TableShape; 5]) -> Result<(), WireError> {
        let (mut name, mut description, mut unit): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
        let mut data: Option<(MetricKind, &[u8])> = None;
        for f in Fields::new(metric) {
            let f = f?;
            match (f.number, f.value) {
                (1, Value::Len(b)) => name = b,
                (2, Value::Len(b)) => description = b,
                (3, Value::Len(b)) => unit = b,
                (5, Value::Len(b)) => data = Some((MetricKind::Gauge, b)),
                (7, Value::Len(b)) => data = Some((MetricKind::Sum, b)),
                (9, Value::Len(b)) => data = Some((MetricKind::Histogram, b)),
                (10, Value::Len(b)) => data = Some((MetricKind::ExponentialHistogram, b)),
                (11, Value::Len(b)) => data = Some((MetricKind::Summary, b)),
                (1..=3 | 5 | 7 | 9..=11, _) => {
                    return Err(WireError::new(WireErrorKind::UnexpectedWireType { field: f.number }));
                }
                _ => {}
            }
        }
        let Some((kind, data)) = data else { return Ok(()) };
        let k = kind as usize;
        let shape = &shapes[k];
        // The columns every point of this metric shares, from ResourceAttributes to MetricUnit.
        let p = &mut self.prefix;
        p.clear();
        p.extend_from_slice(&self.res.attrs);
        p.extend_from_slice(&self.res.schema_url);
        // self.scope holds ScopeSchemaUrl, ScopeName, ScopeVersion, ScopeAttributes: the
        // metrics tables want name, version, attributes, dropped count, then the schema URL.
        let url_len = encoded_string_len(&self.scope)?;
        p.extend_from_slice(&self.scope[url_len..]);
        p.extend_from_slice(&scope_dropped.to_le_bytes());
        p.extend_from_slice(&self.scope[..url_len]);
        p.extend_from_slice(&self.res.service);
        if shape.owner_team {
            p.extend_from_slice(&self.res.owner);
        }
        put_bytes(p, name);
        put_bytes(p, description);
        put_bytes(p, unit);
        let (mut temporality, mut monotonic) = (0u64, false);
        for f in Fields::new(data) {
            let f = f?;
            match (f.number, f.value) {
                (2, Value::Varint(t)) => temporality = t,
                (3, Value::Varint(m)) if kind == MetricKind::Sum => monotonic = m != 0,
                _ => {}
            }
        }
        for f in Fields::new(data) {
            let f = f?;
            if f.number != 1 {
                continue;
            }
            let point = expect_len(&f)?;
            let out = &mut self.metric_rows[k];
            let mark = out.len();
            let res =
                point_row(out, &self.prefix, &mut self.text, kind, point, shape.seconds, temporality as i32, monotonic);
            match res {
                Ok(()) => {
                    self.metric_counts[k] += 1;
                    self.stats.rows += 1;
                }
                Err(_) => {
                    out.truncate(mark);
                    self.stats.malformed += 1;
                }
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct SpanView<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    trace_state: &'a [u8],
    parent: &'a [u8],
    name: &'a [u8],
    kind: u64,
    start: u64,
    end: u64,
    /// Attribute fields (field 9), counted while reading the span.
    attrs: u64,
    status: &'a [u8],
}

#[derive(Default)]
struct LogView<'a> {
    time: u64,
    /// Attribute fields (field 6), counted while reading the record.
    attrs: u64,
    observed: u64,
    severity: u64,
    severity_text: &'a [u8],
    body: Option<AnyValue<'a>>,
    flags: u32,
    trace_id: &'a [u8],
    span_id: &'a [u8],
    event_name: &'a [u8],
}

/// The data point fields of every type (the field numbers differ by type).
#[derive(Default)]
struct PointView<'a> {
    start: u64,
    /// Attribute fields, counted while reading the point.
    attrs: u64,
    time: u64,
    value: f64,
    flags: u32,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    scale: i32,
    zero_count: u64,
    positive: &'a [u8],
    negative: &'a [u8],
    exemplars: u64,
    attrs_field: u32,
    exemplar_field: u32,
}

#[allow(clippy::too_many_arguments)]
fn point_row(
    out: &mut Vec<u8>,
    prefix: &[u8],
    text: &mut String,
    kind: MetricKind,
    point: &[u8],
    seconds: bool,
    temporality: i32,
    monotonic: bool,
) -> Result<(), WireError> {
    let mut v = PointView::default();
    let (attrs_field, exemplar_field, flags_field) = match kind {
        MetricKind::Gauge | MetricKind::Sum => (7, 5, 8),
        MetricKind::Histogram => (9, 8, 10),
        MetricKind::ExponentialHistogram => (1, 11, 10),
        MetricKind::Summary => (7, 0, 8),
    };
    v.attrs_field = attrs_field;
    v.exemplar_field = exemplar_field;
    let (mut bounds, mut counts, mut quantiles) = (0u64, 0u64, 0u64);
    for f in Fields::new(point) {
        let f = f?;
        match (kind, f.number, f.value) {
            (_, 2, Value::I64(t)) => v.start = t,
            (_, 3, Value::I64(t)) => v.time = t,
            (_, n, _) if n == attrs_field => v.attrs += 1,
            (_, n, Value::Varint(x)) if n == flags_field => v.flags = x as u32,
            (_, n, Value::Len(_)) if n == exemplar_field && n != 0 => v.exemplars += 1,
            (MetricKind::Gauge | MetricKind::Sum, 4, Value::I64(d)) => v.value = f64::from_bits(d),
            (MetricKind::Gauge | MetricKind::Sum, 6, Value::I64(i)) => v.value = i as i64 as f64,
            (MetricKind::Histogram | MetricKind::ExponentialHistogram | MetricKind::Summary, 4, Value::I64(c)) => {
                v.count = c;
            }
            (MetricKind::Histogram | MetricKind::ExponentialHistogram | MetricKind::Summary, 5, Value::I64(s)) => {
                v.sum = f64::from_bits(s);
            }
            (MetricKind::Histogram, 6, Value::Len(b)) => counts += (b.len() / 8) as u64,
            (MetricKind::Histogram, 6, Value::I64(_)) => counts += 1,
            (MetricKind::Histogram, 7, Value::Len(b)) => bounds += (b.len() / 8) as u64,
            (MetricKind::Histogram, 7, Value::I64(_)) => bounds += 1,
            (MetricKind::Histogram, 11, Value::I64(m)) | (MetricKind::ExponentialHistogram, 12, Value::I64(m)) => {
                v.min = f64::from_bits(m);
            }
            (MetricKind::Histogram, 12, Value::I64(m)) | (MetricKind::ExponentialHistogram, 13, Value::I64(m)) => {
                v.max = f64::from_bits(m);
            }
            (MetricKind::ExponentialHistogram, 6, Value::Varint(s)) => v.scale = wire::zigzag32(s),
            (MetricKind::ExponentialHistogram, 7, Value::I64(z)) => v.zero_count = z,
            (MetricKind::ExponentialHistogram, 8, Value::Len(b)) => v.positive = b,
            (MetricKind::ExponentialHistogram, 9, Value::Len(b)) => v.negative = b,
            (MetricKind::Summary, 6, Value::Len(_)) => quantiles += 1,
            _ => {}
        }
    }
    out.extend_from_slice(prefix);
    put_map_n(out, text, point, v.attrs_field, v.attrs)?;
    put_time(out, v.start, seconds);
    put_time(out, v.time, seconds);
    match kind {
        MetricKind::Gauge | MetricKind::Sum => {
            out.extend_from_slice(&v.value.to_le_bytes());
            out.extend_from_slice(&v.flags.to_le_bytes());
            exemplars(out, text, point, &v, seconds)?;
            if kind == MetricKind::Sum {
                out.extend_from_slice(&temporality.to_le_bytes());
                out.push(u8::from(monotonic));
            }
        }
        MetricKind::Histogram => {
            out.extend_from_slice(&v.count.to_le_bytes());
            out.extend_from_slice(&v.sum.to_le_bytes());
            put_varint(out, counts);
            put_fixed64s(out, point, 6)?;
            put_varint(out, bounds);
            put_fixed64s(out, point, 7)?;
            exemplars(out, text, point, &v, seconds)?;
            out.extend_from_slice(&v.flags.to_le_bytes());
            out.extend_from_slice(&v.min.to_le_bytes());
            out.extend_from_slice(&v.max.to_le_bytes());
            out.extend_from_slice(&temporality.to_le_bytes());
        }
        MetricKind::ExponentialHistogram => {
            out.extend_from_slice(&v.count.to_le_bytes());
            out.extend_from_slice(&v.sum.to_le_bytes());
            out.extend_from_slice(&v.scale.to_le_bytes());
            out.extend_from_slice(&v.zero_count.to_le_bytes());
            exp_buckets(out, v.positive)?;
            exp_buckets(out, v.negative)?;
            exemplars(out, text, point, &v, seconds)?;
            out.extend_from_slice(&v.flags.to_le_bytes());
            out.extend_from_slice(&v.min.to_le_bytes());
            out.extend_from_slice(&v.max.to_le_bytes());
            out.extend_from_slice(&temporality.to_le_bytes());
        }
        MetricKind::Summary => {
            out.extend_from_slice(&v.count.to_le_bytes());
            out.extend_from_slice(&v.sum.to_le_bytes());
            for field in [1, 2] {
                put_varint(out, quantiles);
                for q in children(point, 6, quantiles) {
                    out.extend_from_slice(&f64::from_bits(fixed64_field(q?, field)?).to_le_bytes());
                }
            }
            out.extend_from_slice(&v.flags.to_le_bytes());
        }
    }
    Ok(())
}

/// The five `Exemplars.*` columns: FilteredAttributes, TimeUnix, Value, SpanId, TraceId.
fn exemplars(
    out: &mut Vec<u8>,
    text: &mut String,
    point: &[u8],
    v: &PointView<'_>,
    seconds: bool,
) -> Result<(), WireError> {
    let (n, field) = (v.exemplars, v.exemplar_field);
    put_varint(out, n);
    for e in children(point, field, n) {
        put_map(out, text, e?, 7)?;
    }
    put_varint(out, n);
    for e in children(point, field, n) {
        put_time(out, fixed64_field(e?, 2)?, seconds);
    }
    put_varint(out, n);
    for e in children(point, field, n) {
        let mut value = 0.0;
        for f in Fields::new(e?) {
            let f = f?;
            match (f.number, f.value) {
                (3, Value::I64(x)) => value = f64::from_bits(x),
                (6, Value::I64(x)) => value = x as i64 as f64,
                _ => {}
            }
        }
        out.extend_from_slice(&value.to_le_bytes());
    }
    put_varint(out, n);
    for e in children(point, field, n) {
        put_hex_full(out, len_field(e?, 4)?, 8);
    }
    put_varint(out, n);
    for e in children(point, field, n) {
        put_hex_full(out, len_field(e?, 5)?, 16);
    }
    Ok(())
}

/// An exponential histogram's `Buckets` (offset = 1, bucket_counts = 2): the offset (Int32)
/// and the counts (Array(UInt64)).
fn exp_buckets(out: &mut Vec<u8>, buckets: &[u8]) -> Result<(), WireError> {
    let mut offset = 0i32;
    let mut n = 0u64;
    for f in Fields::new(buckets) {
        let f = f?;
        match (f.number, f.value) {
            (1, Value::Varint(o)) => offset = wire::zigzag32(o),
            (2, Value::Len(b)) => {
                let mut pos = 0;
                while pos < b.len() {
                    wire::read_varint(b, &mut pos)?;
                    n += 1;
                }
            }
            (2, Value::Varint(_)) => n += 1,
            _ => {}
        }
    }
    out.extend_from_slice(&offset.to_le_bytes());
    put_varint(out, n);
    for f in Fields::new(buckets) {
        let f = f?;
        match (f.number, f.value) {
            (2, Value::Len(b)) => {
                let mut pos = 0;
                while pos < b.len() {
                    out.extend_from_slice(&wire::read_varint(b, &mut pos)?.to_le_bytes());
                }
            }
            (2, Value::Varint(c)) => out.extend_from_slice(&c.to_le_bytes()),
            _ => {}
        }
    }
    Ok(())
}

/// The 8-byte values of repeated field `field` (packed or not), as they are (UInt64 and
/// Float64 are both 8 little-endian bytes on both sides).
fn put_fixed64s(out: &mut Vec<u8>, msg: &[u8], field: u32) -> Result<(), WireError> {
    for f in Fields::new(msg) {
        let f = f?;
        if f.number != field {
            continue;
        }
        match f.value {
            Value::Len(b) => out.extend_from_slice(&b[..b.len() / 8 * 8]),
            Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            _ => {}
        }
    }
    Ok(())
}

fn put_time(out: &mut Vec<u8>, ns: u64, seconds: bool) {
    if seconds {
        out.extend_from_slice(&((ns / 1_000_000_000) as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(ns as i64).to_le_bytes());
    }
}

/// The first `n` length-delimited fields `field` of `msg`.
fn children(msg: &[u8], field: u32, n: u64) -> impl Iterator<Item = Result<&[u8], WireError>> {
    // `n` (counted by the caller) skips the walk when there are none.
    let msg = if n == 0 { &[][..] } else { msg };
    Fields::new(msg)
        .filter(move |f| f.as_ref().map_or(true, |f| f.number == field))
        .map(|f| f.and_then(|f| expect_len(&f)))
}

/// The bytes of the length-delimited field `field` of `msg` (the last one), or empty.
fn len_field(msg: &[u8], field: u32) -> Result<&[u8], WireError> {
    let mut v: &[u8] = &[];
    for f in Fields::new(msg) {
        let f = f?;
        if f.number == field {
            v = expect_len(&f)?;
        }
    }
    Ok(v)
}

/// The fixed64 field `field` of `msg`, or 0.
fn fixed64_field(msg: &[u8], field: u32) -> Result<u64, WireError> {
    let mut v = 0;
    for f in Fields::new(msg) {
        let f = f?;
        if let (n, Value::I64(x)) = (f.number, f.value)
            && n == field
        {
            v = x;
        }
    }
    Ok(v)
}

/// An `InstrumentationScope`'s name and version.
fn scope_name_version(scope: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let (mut name, mut version): (&[u8], &[u8]) = (&[], &[]);
    for f in Fields::new(scope) {
        let f = f?;
        match f.number {
            1 => name = expect_len(&f)?,
            2 => version = expect_len(&f)?,
            _ => {}
        }
    }
    Ok((name, version))
}

/// The length of the first encoded String of `b` (its varint and bytes).
fn encoded_string_len(b: &[u8]) -> Result<usize, WireError> {
    let mut pos = 0;
    let n = wire::read_varint(b, &mut pos)? as usize;
    pos.checked_add(n).filter(|&e| e <= b.len()).ok_or_else(|| WireError::new(WireErrorKind::Truncated))
}

/// A RowBinary String.
#[inline]
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// pdata's `AsString` of an optional value, as a RowBinary String.
fn put_any(out: &mut Vec<u8>, text: &mut String, v: Option<&AnyValue<'_>>) {
    match v {
        None | Some(AnyValue::Empty) => out.push(0),
        Some(AnyValue::String(s)) => put_bytes(out, s.as_bytes()),
        Some(v) => {
            text.clear();
            sightline_core::text::push_as_string(text, v);
            put_bytes(out, text.as_bytes());
        }
    }
}

/// [`put_any`] of a value whose string bytes are copied unchecked.
fn put_raw(out: &mut Vec<u8>, text: &mut String, v: &RawValue<'_>) {
    match v {
        RawValue::Str(b) => put_bytes(out, b),
        RawValue::Other(v) => put_any(out, text, Some(v)),
    }
}

/// The `KeyValue`s in field `field` of `msg` as a RowBinary `Map(String, String)`.
fn put_map(out: &mut Vec<u8>, text: &mut String, msg: &[u8], field: u32) -> Result<(), WireError> {
    let n = Fields::new(msg).filter(|f| f.as_ref().map_or(true, |f| f.number == field)).count();
    put_map_n(out, text, msg, field, n as u64)
}

/// [`put_map`] when the caller counted the fields `field` of `msg` (`n`) while reading it: the
/// pairs go straight into the row. A field that is not a readable `KeyValue` fails the row, so
/// the count is right in every row that is kept.
fn put_map_n(out: &mut Vec<u8>, text: &mut String, msg: &[u8], field: u32, n: u64) -> Result<(), WireError> {
    put_varint(out, n);
    // Keys and string values are copied as they are, without a UTF-8 check: a ClickHouse
    // `String` holds bytes, and the collector does not check them either.
    for f in Fields::new(msg) {
        let f = f?;
        if f.number != field {
            continue;
        }
        let (key, value) = wire::key_value_raw(expect_len(&f)?)?;
        put_bytes(out, key);
        put_raw(out, text, &value);
    }
    Ok(())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A span or trace id in lowercase hex, or the empty string when it is absent or all zeros
/// (the collector's `TraceID.String()` convention).
fn put_hex_id(out: &mut Vec<u8>, id: &[u8]) {
    if id.iter().all(|&b| b == 0) {
        out.push(0);
        return;
    }
    put_hex(out, id);
}

/// An exemplar's id in lowercase hex, zeros included (`hex.EncodeToString` of the id array):
/// an absent id is `width` zero bytes.
fn put_hex_full(out: &mut Vec<u8>, id: &[u8], width: usize) {
    if id.is_empty() {
        put_varint(out, (width * 2) as u64);
        out.resize(out.len() + width * 2, b'0');
        return;
    }
    put_hex(out, id);
}

fn put_hex(out: &mut Vec<u8>, id: &[u8]) {
    put_varint(out, (id.len() * 2) as u64);
    for &b in id {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

#[cfg(test)]
mod tests;
