//! OTLP requests, read on the wire, into the store's Arrow builders ([`crate::tables`]).
//!
//! Nothing is decoded into structs: each span, log record or data point is read once into a
//! view of borrowed slices and appended column by column. Arrow builders cannot take a row
//! back, so an item is checked whole (every nested attribute, event and link) before its
//! first value is appended; an item that fails the check is left out and counted
//! (`malformed`), and the columns of every table stay aligned. What a resource or a scope
//! contributes to each row (ownership, resource attributes, scope name and version) is read
//! once per resource or scope.
//!
//! Rows are grouped by owner team as they are appended ([`Run`]), so the store can write each
//! team's rows to its own partition from slices of one record batch.

use crate::tables::{Builders, Kind, MapB, Promoted, Table, put_ts};
use arrow_array::builder::{Float64Builder, ListBuilder, UInt64Builder};
use sightline_core::Signal;
use sightline_core::wire::{self, AnyValue, Fields, Value, WireError, WireErrorKind, expect_len};

/// Consecutive rows of one table that belong to one team.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Index into [`Encoder::teams`].
    pub team: usize,
    pub rows: usize,
}

/// What one encode appended and left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Spans, log records and data points appended (events and links not counted).
    pub items: u64,
    /// Items left out because a field inside them could not be read.
    pub malformed: u64,
}

/// The builders of one batch and the walk's scratch state; reused from one batch to the next.
pub struct Encoder {
    pub builders: Builders,
    /// Owner teams seen in this batch (`None`: the resource has no owner attribute).
    pub teams: Vec<Option<String>>,
    /// By [`Table::ALL`] order.
    pub runs: [Vec<Run>; 9],
    pub stats: Stats,
    res: Resource,
    scope_name: String,
    scope_version: String,
    text: String,
    /// Where the current span's events and links are in it (read once, appended after).
    events: Vec<(usize, usize)>,
    links: Vec<(usize, usize)>,
}

/// The current resource, read once.
#[derive(Default)]
struct Resource {
    service: Option<String>,
    team: usize,
    /// Attribute keys and values as text, `kv` ranges into it.
    text: String,
    kv: Vec<(u32, u32, u32)>,
}

impl Encoder {
    /// An encoder for tables with these promoted span and log attributes.
    pub fn new(span_columns: &[String], log_columns: &[String]) -> Encoder {
        Encoder {
            builders: Builders::new(span_columns, log_columns),
            teams: Vec::new(),
            runs: Default::default(),
            stats: Stats::default(),
            res: Resource::default(),
            scope_name: String::new(),
            scope_version: String::new(),
            text: String::new(),
            events: Vec::new(),
            links: Vec::new(),
        }
    }

    /// Forgets the teams and runs of the last batch (the builders are emptied by finishing
    /// them).
    pub fn reset(&mut self) {
        self.teams.clear();
        for r in &mut self.runs {
            r.clear();
        }
        self.stats = Stats::default();
    }

    fn row(&mut self, table: Table) {
        let runs = &mut self.runs[table as usize];
        match runs.last_mut() {
            Some(r) if r.team == self.res.team => r.rows += 1,
            _ => runs.push(Run { team: self.res.team, rows: 1 }),
        }
    }

    /// Appends one `Export*ServiceRequest` of `signal`.
    pub fn add(&mut self, signal: Signal, req: &[u8], owner_key: &str) -> Result<(), WireError> {
        for rx in Fields::new(req) {
            let rx = rx?;
            if rx.number != 1 {
                continue;
            }
            let rx = expect_len(&rx)?;
            if self.resource(rx, owner_key).is_err() {
                self.stats.malformed += wire::count_items(signal, rx);
                continue;
            }
            for sx in Fields::new(rx) {
                let sx = sx?;
                if sx.number != 2 {
                    continue;
                }
                let sx = expect_len(&sx)?;
                if self.scope(sx).is_err() {
                    self.stats.malformed += wire::scope_items(signal, sx);
                    continue;
                }
                for f in Fields::new(sx) {
                    let f = f?;
                    if f.number != 2 {
                        continue;
                    }
                    let item = expect_len(&f)?;
                    let res = match signal {
                        Signal::Traces => self.span(item).map(|()| 1),
                        Signal::Logs => self.log(item).map(|()| 1),
                        Signal::Metrics => self.metric(item),
                    };
                    match res {
                        Ok(n) => self.stats.items += n,
                        Err(_) if signal == Signal::Metrics => self.stats.malformed += wire::metric_points(item).max(1),
                        Err(_) => self.stats.malformed += 1,
                    }
                }
            }
        }
        Ok(())
    }

    fn resource(&mut self, rx: &[u8], owner_key: &str) -> Result<(), WireError> {
        let mut resource: &[u8] = &[];
        for f in Fields::new(rx) {
            let f = f?;
            if f.number == 1 {
                resource = expect_len(&f)?;
            }
        }
        let r = &mut self.res;
        r.text.clear();
        r.kv.clear();
        r.service = None;
        let mut team: Option<String> = None;
        for a in wire::attributes(resource, 1) {
            let a = a?;
            let k0 = r.text.len() as u32;
            r.text.push_str(a.key);
            let v0 = r.text.len() as u32;
            sightline_core::text::push_as_string(&mut r.text, &a.value);
            let v1 = r.text.len() as u32;
            r.kv.push((k0, v0, v1));
            let value = &r.text[v0 as usize..v1 as usize];
            if a.key == "service.name" {
                r.service = Some(value.to_string());
            } else if !owner_key.is_empty() && a.key == owner_key && !value.is_empty() {
                team = Some(value.to_string());
            }
        }
        r.team = match self.teams.iter().position(|t| *t == team) {
            Some(i) => i,
            None => {
                self.teams.push(team);
                self.teams.len() - 1
            }
        };
        Ok(())
    }

    fn scope(&mut self, sx: &[u8]) -> Result<(), WireError> {
        let mut scope: &[u8] = &[];
        for f in Fields::new(sx) {
            let f = f?;
            if f.number == 1 {
                scope = expect_len(&f)?;
            }
        }
        let (mut name, mut version) = ("", "");
        for f in Fields::new(scope) {
            let f = f?;
            match f.number {
                1 => name = utf8(expect_len(&f)?)?,
                2 => version = utf8(expect_len(&f)?)?,
                _ => {}
            }
        }
        self.scope_name.clear();
        self.scope_name.push_str(name);
        self.scope_version.clear();
        self.scope_version.push_str(version);
        Ok(())
    }

    fn span(&mut self, span: &[u8]) -> Result<(), WireError> {
        let mut v = SpanView::default();
        self.events.clear();
        self.links.clear();
        let mut it = Fields::new(span);
        while let Some(f) = it.next() {
            let f = f?;
            match (f.number, f.value) {
                (1, Value::Len(b)) => v.trace_id = b,
                (2, Value::Len(b)) => v.span_id = b,
                (3, Value::Len(b)) => v.trace_state = utf8(b)?,
                (4, Value::Len(b)) => v.parent = b,
                (5, Value::Len(b)) => v.name = utf8(b)?,
                (6, Value::Varint(k)) => v.kind = k,
                (7, Value::I64(t)) => v.start = t,
                (8, Value::I64(t)) => v.end = t,
                (9, Value::Len(b)) => check_kv(b)?,
                (11, Value::Len(b)) => {
                    check_child(b, &[(2, Check::Text), (3, Check::Kv)])?;
                    self.events.push((it.position() - b.len(), it.position()));
                }
                (13, Value::Len(b)) => {
                    check_child(b, &[(3, Check::Text), (4, Check::Kv)])?;
                    self.links.push((it.position() - b.len(), it.position()));
                }
                (15, Value::Len(b)) => v.status = b,
                (1..=5 | 9 | 11 | 13 | 15, _) | (7 | 8, Value::Varint(_) | Value::Len(_) | Value::I32(_)) => {
                    return Err(WireError::new(WireErrorKind::UnexpectedWireType { field: f.number }));
                }
                _ => {}
            }
        }
        let (mut code, mut message) = (0u64, "");
        for f in Fields::new(v.status) {
            let f = f?;
            match (f.number, f.value) {
                (2, Value::Len(b)) => message = utf8(b)?,
                (3, Value::Varint(c)) => code = c,
                _ => {}
            }
        }
        // Checked: from here on nothing fails.
        let mut hex = [0u8; 64];
        let s = &mut self.builders.spans;
        put_ts(&mut s.start_time, v.start);
        put_ts(&mut s.end_time, v.end);
        s.duration_ns.append_value(v.end.wrapping_sub(v.start) as i64);
        s.trace_id.append_option(hex_id(v.trace_id, &mut hex));
        s.span_id.append_option(hex_id(v.span_id, &mut hex));
        s.parent_span_id.append_option(hex_id(v.parent, &mut hex));
        s.trace_state.append_option(non_empty(v.trace_state));
        s.name.append_value(v.name);
        s.kind.append_value(sightline_core::text::span_kind(v.kind));
        s.status_code.append_value(sightline_core::text::status_code(code));
        s.status_message.append_option(non_empty(message));
        s.event_count.append_value(self.events.len() as u32);
        s.link_count.append_value(self.links.len() as u32);
        put_map(&mut s.attributes, Some(&mut s.promoted), &mut self.text, span, 9);
        self.owner_of(Table::Spans);
        self.row(Table::Spans);
        for i in 0..self.events.len() {
            let e = &span[self.events[i].0..self.events[i].1];
            let ev = &mut self.builders.events;
            put_ts(&mut ev.time, fixed64_field(e, 1));
            ev.trace_id.append_option(hex_id(v.trace_id, &mut hex));
            ev.span_id.append_option(hex_id(v.span_id, &mut hex));
            ev.span_name.append_value(v.name);
            ev.name.append_value(text_field(e, 2));
            put_map(&mut ev.attributes, None, &mut self.text, e, 3);
            self.owner_of(Table::SpanEvents);
            self.row(Table::SpanEvents);
        }
        for i in 0..self.links.len() {
            let l = &span[self.links[i].0..self.links[i].1];
            let lk = &mut self.builders.links;
            lk.trace_id.append_option(hex_id(v.trace_id, &mut hex));
            lk.span_id.append_option(hex_id(v.span_id, &mut hex));
            lk.linked_trace_id.append_option(hex_id(bytes_field(l, 1), &mut hex));
            lk.linked_span_id.append_option(hex_id(bytes_field(l, 2), &mut hex));
            lk.linked_trace_state.append_option(non_empty(text_field(l, 3)));
            put_map(&mut lk.attributes, None, &mut self.text, l, 4);
            self.owner_of(Table::SpanLinks);
            self.row(Table::SpanLinks);
        }
        Ok(())
    }

    /// Appends the ownership columns of one row of `table`.
    fn owner_of(&mut self, table: Table) {
        let b = &mut self.builders;
        let o = match table {
            Table::Spans => &mut b.spans.owner,
            Table::SpanEvents => &mut b.events.owner,
            Table::SpanLinks => &mut b.links.owner,
            Table::Logs => &mut b.logs.owner,
            _ => &mut b.points[table as usize - Table::Gauge as usize].owner,
        };
        o.service_name.append_option(self.res.service.as_deref());
        o.owner_team.append_option(self.teams[self.res.team].as_deref());
        for &(k, v, e) in &self.res.kv {
            o.resource_attributes.keys().append_value(&self.res.text[k as usize..v as usize]);
            o.resource_attributes.values().append_value(&self.res.text[v as usize..e as usize]);
        }
        end_map(&mut o.resource_attributes);
        o.scope_name.append_value(&self.scope_name);
        o.scope_version.append_value(&self.scope_version);
    }

    fn log(&mut self, rec: &[u8]) -> Result<(), WireError> {
        let mut v = LogView::default();
        for f in Fields::new(rec) {
            let f = f?;
            match (f.number, f.value) {
                (1, Value::I64(t)) => v.time = t,
                (11, Value::I64(t)) => v.observed = t,
                (6, Value::Len(b)) => check_kv(b)?,
                (2, Value::Varint(n)) => v.severity = n as i32,
                (3, Value::Len(b)) => v.severity_text = utf8(b)?,
                (5, Value::Len(b)) => v.body = Some(AnyValue::parse(b)?),
                (8, Value::I32(fl)) => v.flags = fl,
                (9, Value::Len(b)) => v.trace_id = b,
                (10, Value::Len(b)) => v.span_id = b,
                (12, Value::Len(b)) => v.event_name = utf8(b)?,
                (3 | 5 | 6 | 9 | 10 | 12, _) => {
                    return Err(WireError::new(WireErrorKind::UnexpectedWireType { field: f.number }));
                }
                _ => {}
            }
        }
        let mut hex = [0u8; 64];
        let l = &mut self.builders.logs;
        put_ts(&mut l.time, v.time);
        put_ts(&mut l.observed_time, v.observed);
        l.trace_id.append_option(hex_id(v.trace_id, &mut hex));
        l.span_id.append_option(hex_id(v.span_id, &mut hex));
        l.flags.append_value(v.flags);
        l.severity_text.append_option(non_empty(v.severity_text));
        l.severity_number.append_value(v.severity);
        match v.body {
            None => l.body.append_null(),
            Some(AnyValue::String(s)) => l.body.append_value(s),
            Some(b) => {
                self.text.clear();
                sightline_core::text::push_as_string(&mut self.text, &b);
                l.body.append_value(&self.text);
            }
        }
        l.event_name.append_option(non_empty(v.event_name));
        put_map(&mut l.attributes, Some(&mut l.promoted), &mut self.text, rec, 6);
        self.owner_of(Table::Logs);
        self.row(Table::Logs);
        Ok(())
    }

    /// Appends a metric's points; returns how many.
    fn metric(&mut self, metric: &[u8]) -> Result<u64, WireError> {
        let (mut name, mut description, mut unit) = ("", "", "");
        let mut data: Option<(Table, &[u8])> = None;
        for f in Fields::new(metric) {
            let f = f?;
            match (f.number, f.value) {
                (1, Value::Len(b)) => name = utf8(b)?,
                (2, Value::Len(b)) => description = utf8(b)?,
                (3, Value::Len(b)) => unit = utf8(b)?,
                (5, Value::Len(b)) => data = Some((Table::Gauge, b)),
                (7, Value::Len(b)) => data = Some((Table::Sum, b)),
                (9, Value::Len(b)) => data = Some((Table::Histogram, b)),
                (10, Value::Len(b)) => data = Some((Table::ExponentialHistogram, b)),
                (11, Value::Len(b)) => data = Some((Table::Summary, b)),
                (1..=3 | 5 | 7 | 9..=11, _) => {
                    return Err(WireError::new(WireErrorKind::UnexpectedWireType { field: f.number }));
                }
                _ => {}
            }
        }
        let Some((table, data)) = data else { return Ok(0) };
        let (mut temporality, mut monotonic) = (0u64, false);
        for f in Fields::new(data) {
            let f = f?;
            match (f.number, f.value) {
                (2, Value::Varint(t)) => temporality = t,
                (3, Value::Varint(m)) => monotonic = m != 0,
                _ => {}
            }
        }
        let mut n = 0;
        for f in Fields::new(data) {
            let f = f?;
            if f.number != 1 {
                continue;
            }
            let point = expect_len(&f)?;
            let Ok(v) = PointView::read(table, point) else {
                self.stats.malformed += 1;
                continue;
            };
            let p = &mut self.builders.points[table as usize - Table::Gauge as usize];
            put_ts(&mut p.start_time, v.start);
            put_ts(&mut p.time, v.time);
            p.metric_name.append_value(name);
            p.description.append_option(non_empty(description));
            p.unit.append_option(non_empty(unit));
            put_map(&mut p.attributes, None, &mut self.text, point, v.attrs_field);
            p.flags.append_value(v.flags);
            let temporality = sightline_core::text::temporality(temporality);
            match &mut p.kind {
                Kind::Number { value, temporality: t } => {
                    value.append_value(v.value);
                    if let Some((t, m)) = t {
                        t.append_value(temporality);
                        m.append_value(monotonic);
                    }
                }
                Kind::Histogram { stats, bucket_counts, explicit_bounds, temporality: t } => {
                    stats.count.append_value(v.count);
                    stats.sum.append_option(v.sum);
                    stats.min.append_option(v.min);
                    stats.max.append_option(v.max);
                    put_fixed64s(bucket_counts, point, 6, u64::from_le_bytes);
                    put_f64s(explicit_bounds, point, 7);
                    t.append_value(temporality);
                }
                Kind::ExponentialHistogram {
                    stats,
                    scale,
                    zero_count,
                    zero_threshold,
                    positive_offset,
                    positive_bucket_counts,
                    negative_offset,
                    negative_bucket_counts,
                    temporality: t,
                } => {
                    stats.count.append_value(v.count);
                    stats.sum.append_option(v.sum);
                    stats.min.append_option(v.min);
                    stats.max.append_option(v.max);
                    scale.append_value(v.scale);
                    zero_count.append_value(v.zero_count);
                    zero_threshold.append_value(v.zero_threshold);
                    positive_offset.append_value(exp_buckets(positive_bucket_counts, v.positive));
                    negative_offset.append_value(exp_buckets(negative_bucket_counts, v.negative));
                    t.append_value(temporality);
                }
                Kind::Summary { count, sum, quantiles, quantile_values } => {
                    count.append_value(v.count);
                    sum.append_value(v.sum.unwrap_or(0.0));
                    for (field, list) in [(1, &mut *quantiles), (2, &mut *quantile_values)] {
                        for q in Fields::new(point).flatten().filter(|f| f.number == 6) {
                            if let Value::Len(q) = q.value {
                                list.values().append_value(f64::from_bits(fixed64_field(q, field)));
                            }
                        }
                        list.append(true);
                    }
                }
            }
            self.owner_of(table);
            self.row(table);
            n += 1;
        }
        Ok(n)
    }
}

#[derive(Default)]
struct SpanView<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    trace_state: &'a str,
    parent: &'a [u8],
    name: &'a str,
    kind: u64,
    start: u64,
    end: u64,
    status: &'a [u8],
}

#[derive(Default)]
struct LogView<'a> {
    time: u64,
    observed: u64,
    severity: i32,
    severity_text: &'a str,
    body: Option<AnyValue<'a>>,
    flags: u32,
    trace_id: &'a [u8],
    span_id: &'a [u8],
    event_name: &'a str,
}

/// A data point's fields, checked (every nested value readable).
#[derive(Default)]
struct PointView<'a> {
    start: u64,
    time: u64,
    value: f64,
    flags: u32,
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    scale: i32,
    zero_count: u64,
    zero_threshold: f64,
    positive: &'a [u8],
    negative: &'a [u8],
    attrs_field: u32,
}

impl<'a> PointView<'a> {
    fn read(table: Table, point: &'a [u8]) -> Result<PointView<'a>, WireError> {
        let mut v = PointView::default();
        let (attrs_field, flags_field) = match table {
            Table::Gauge | Table::Sum => (7, 8),
            Table::Histogram => (9, 10),
            Table::ExponentialHistogram => (1, 10),
            _ => (7, 8),
        };
        v.attrs_field = attrs_field;
        let bad = |n| Err(WireError::new(WireErrorKind::UnexpectedWireType { field: n }));
        for f in Fields::new(point) {
            let f = f?;
            let histo = matches!(table, Table::Histogram | Table::ExponentialHistogram | Table::Summary);
            match (table, f.number, f.value) {
                (_, 2, Value::I64(t)) => v.start = t,
                (_, 3, Value::I64(t)) => v.time = t,
                (_, n, Value::Len(b)) if n == attrs_field => check_kv(b)?,
                (_, n, Value::Varint(x)) if n == flags_field => v.flags = x as u32,
                (Table::Gauge | Table::Sum, 4, Value::I64(d)) => v.value = f64::from_bits(d),
                (Table::Gauge | Table::Sum, 6, Value::I64(i)) => v.value = i as i64 as f64,
                (_, 4, Value::I64(c)) if histo => v.count = c,
                (_, 5, Value::I64(s)) if histo => v.sum = Some(f64::from_bits(s)),
                (Table::Histogram, 6 | 7, Value::Len(b)) if b.len() % 8 != 0 => return bad(f.number),
                (Table::Histogram, 11, Value::I64(m)) | (Table::ExponentialHistogram, 12, Value::I64(m)) => {
                    v.min = Some(f64::from_bits(m));
                }
                (Table::Histogram, 12, Value::I64(m)) | (Table::ExponentialHistogram, 13, Value::I64(m)) => {
                    v.max = Some(f64::from_bits(m));
                }
                (Table::ExponentialHistogram, 6, Value::Varint(s)) => v.scale = wire::zigzag32(s),
                (Table::ExponentialHistogram, 7, Value::I64(z)) => v.zero_count = z,
                (Table::ExponentialHistogram, 8, Value::Len(b)) => v.positive = check_buckets(b)?,
                (Table::ExponentialHistogram, 9, Value::Len(b)) => v.negative = check_buckets(b)?,
                (Table::ExponentialHistogram, 14, Value::I64(z)) => v.zero_threshold = f64::from_bits(z),
                (Table::Summary, 6, Value::Len(b)) => wire::check_fields(b)?,
                (_, n, _) if n == attrs_field => return bad(n),
                _ => {}
            }
        }
        Ok(v)
    }
}

/// What [`check_child`] checks in a field.
#[derive(Clone, Copy)]
enum Check {
    Text,
    Kv,
}

/// Checks a nested message (an event or a link): its framing, the text fields and the
/// attributes named in `fields`.
fn check_child(msg: &[u8], fields: &[(u32, Check)]) -> Result<(), WireError> {
    for f in Fields::new(msg) {
        let f = f?;
        let Some(&(_, check)) = fields.iter().find(|(n, _)| *n == f.number) else { continue };
        let b = expect_len(&f)?;
        match check {
            Check::Text => {
                utf8(b)?;
            }
            Check::Kv => check_kv(b)?,
        }
    }
    Ok(())
}

/// Checks one encoded `KeyValue`.
fn check_kv(kv: &[u8]) -> Result<(), WireError> {
    wire::key_value(kv).map(|_| ())
}

/// Checks an exponential histogram's `Buckets` (its counts must be readable varints).
fn check_buckets(b: &[u8]) -> Result<&[u8], WireError> {
    for f in Fields::new(b) {
        let f = f?;
        if let (2, Value::Len(packed)) = (f.number, f.value) {
            let mut pos = 0;
            while pos < packed.len() {
                wire::read_varint(packed, &mut pos)?;
            }
        }
    }
    Ok(b)
}

fn utf8(b: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(b).map_err(|_| WireError::new(WireErrorKind::InvalidUtf8))
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Closes a map row (the keys and values appended match, so this cannot fail).
fn end_map(m: &mut MapB) {
    if m.append(true).is_err() {
        debug_assert!(false, "map keys and values differ in length");
    }
}

/// The attributes in field `field` of a checked message into `map`, and the promoted ones
/// (the first of each key) into their columns.
fn put_map(map: &mut MapB, mut promoted: Option<&mut Promoted>, text: &mut String, msg: &[u8], field: u32) {
    let mut found = 0u64;
    for a in wire::attributes(msg, field).flatten() {
        map.keys().append_value(a.key);
        let value = match a.value {
            AnyValue::String(s) => s,
            v => {
                text.clear();
                sightline_core::text::push_as_string(text, &v);
                text.as_str()
            }
        };
        map.values().append_value(value);
        if let Some(p) = promoted.as_deref_mut()
            && let Some(i) = p.keys.iter().position(|k| k == a.key)
            && found & (1 << i) == 0
        {
            p.cols[i].append_value(value);
            found |= 1 << i;
        }
    }
    end_map(map);
    if let Some(p) = promoted {
        for (i, c) in p.cols.iter_mut().enumerate() {
            if found & (1 << i) == 0 {
                c.append_null();
            }
        }
    }
}

/// The 8-byte values of a repeated fixed64 field (packed or not) as one list row.
fn put_fixed64s(list: &mut ListBuilder<UInt64Builder>, msg: &[u8], field: u32, conv: fn([u8; 8]) -> u64) {
    for f in Fields::new(msg).flatten().filter(|f| f.number == field) {
        match f.value {
            Value::Len(b) => {
                for c in b.chunks_exact(8) {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    list.values().append_value(conv(a));
                }
            }
            Value::I64(x) => list.values().append_value(x),
            _ => {}
        }
    }
    list.append(true);
}

/// The doubles of a repeated double field (packed or not) as one list row.
fn put_f64s(list: &mut ListBuilder<Float64Builder>, msg: &[u8], field: u32) {
    for f in Fields::new(msg).flatten().filter(|f| f.number == field) {
        match f.value {
            Value::Len(b) => {
                for c in b.chunks_exact(8) {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    list.values().append_value(f64::from_le_bytes(a));
                }
            }
            Value::I64(x) => list.values().append_value(f64::from_bits(x)),
            _ => {}
        }
    }
    list.append(true);
}

/// A checked `Buckets` message's counts as one list row; returns its offset.
fn exp_buckets(list: &mut ListBuilder<UInt64Builder>, buckets: &[u8]) -> i32 {
    let mut offset = 0;
    for f in Fields::new(buckets).flatten() {
        match (f.number, f.value) {
            (1, Value::Varint(o)) => offset = wire::zigzag32(o),
            (2, Value::Len(b)) => {
                let mut pos = 0;
                while let Ok(c) = wire::read_varint(b, &mut pos) {
                    list.values().append_value(c);
                    if pos >= b.len() {
                        break;
                    }
                }
            }
            (2, Value::Varint(c)) => list.values().append_value(c),
            _ => {}
        }
    }
    list.append(true);
    offset
}

/// The fixed64 field `field` of a checked message, or 0.
fn fixed64_field(msg: &[u8], field: u32) -> u64 {
    let mut v = 0;
    for f in Fields::new(msg).flatten() {
        if let Value::I64(x) = f.value
            && f.number == field
        {
            v = x;
        }
    }
    v
}

/// The bytes of length-delimited field `field` of a checked message, or empty.
fn bytes_field(msg: &[u8], field: u32) -> &[u8] {
    let mut v: &[u8] = &[];
    for f in Fields::new(msg).flatten() {
        if let Value::Len(b) = f.value
            && f.number == field
        {
            v = b;
        }
    }
    v
}

/// The text of length-delimited field `field` of a checked message, or empty.
fn text_field(msg: &[u8], field: u32) -> &str {
    std::str::from_utf8(bytes_field(msg, field)).unwrap_or_default()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// An id in lowercase hex, or `None` when absent or all zeros (ids longer than 32 bytes are
/// cut there).
fn hex_id<'b>(id: &[u8], buf: &'b mut [u8; 64]) -> Option<&'b str> {
    if id.iter().all(|&b| b == 0) {
        return None;
    }
    let id = &id[..id.len().min(32)];
    for (i, &b) in id.iter().enumerate() {
        buf[2 * i] = HEX[(b >> 4) as usize];
        buf[2 * i + 1] = HEX[(b & 15) as usize];
    }
    std::str::from_utf8(&buf[..2 * id.len()]).ok()
}

#[cfg(test)]
mod tests;
