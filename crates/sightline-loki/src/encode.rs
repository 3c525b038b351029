//! OTLP logs, read on the wire, to Loki streams: the [`Plan`] (what the config asks for,
//! compiled once) and the [`Encoder`] (reusable buffers, one batch at a time).
//!
//! A batch is walked request by request with [`sightline_core::wire::Fields`]; nothing is
//! decoded into structs. Every string an entry needs (line, metadata names and values) is
//! appended to one arena and referred to by offsets, streams are found by the hash of their
//! label string, and all buffers keep their capacity from one batch to the next: after warm-up
//! a batch costs no allocation per record (a new stream costs a few bytes in the arenas).

use crate::config::{LokiConfig, SEVERITY_SOURCE};
use base64::Engine as _;
use sightline_core::wire::{self, AnyValue, Fields, Value, WireError, expect_len};
use std::collections::HashMap;
use std::io::Write as _;

/// The label used when a record has none of the configured labels: Loki rejects a stream
/// without labels, and its own OTLP ingestion uses the same fallback.
pub const FALLBACK_LABEL: (&str, &str) = ("service_name", "unknown_service");

/// Nesting depth past which structured values are written as `null`.
const MAX_DEPTH: usize = 32;

/// Buffers larger than this are released after a batch instead of kept for the next one.
const KEEP_CAPACITY: usize = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    /// An attribute key, by index into [`Plan::keys`].
    Key(usize),
    /// The log level from the severity.
    Severity,
}

#[derive(Debug)]
struct LabelPlan {
    name: Box<str>,
    sources: Box<[Src]>,
}

/// The configuration as the encoder uses it.
#[derive(Debug)]
pub struct Plan {
    /// Distinct attribute keys that are label sources.
    keys: Vec<Box<str>>,
    /// In configuration (priority) order.
    labels: Vec<LabelPlan>,
    /// Label indices sorted by name: the order of the label string.
    by_name: Vec<usize>,
    resource_metadata: bool,
    scope_metadata: bool,
    max_label_count: usize,
    max_label_value_length: usize,
    max_line_size: usize,
    /// 0 = no limit.
    max_metadata_entries: usize,
    /// 0 = no limit.
    max_metadata_size: usize,
}

impl Plan {
    pub fn new(cfg: &LokiConfig) -> Plan {
        let mut keys: Vec<Box<str>> = Vec::new();
        let mut labels = Vec::new();
        for (name, sources) in &cfg.labels {
            let sources = sources
                .as_slice()
                .iter()
                .map(|s| {
                    if s == SEVERITY_SOURCE {
                        return Src::Severity;
                    }
                    match keys.iter().position(|k| **k == **s) {
                        Some(i) => Src::Key(i),
                        None => {
                            keys.push(s.as_str().into());
                            Src::Key(keys.len() - 1)
                        }
                    }
                })
                .collect();
            labels.push(LabelPlan { name: name.as_str().into(), sources });
        }
        let mut by_name: Vec<usize> = (0..labels.len()).collect();
        by_name.sort_by(|&a, &b| labels[a].name.cmp(&labels[b].name));
        Plan {
            keys,
            labels,
            by_name,
            resource_metadata: cfg.resource_attributes_as_metadata,
            scope_metadata: cfg.scope_as_metadata,
            max_label_count: cfg.max_label_count.max(1),
            max_label_value_length: cfg.max_label_value_length.max(1),
            max_line_size: cfg.max_line_size,
            max_metadata_entries: cfg.max_structured_metadata_entries,
            max_metadata_size: cfg.max_structured_metadata_size,
        }
    }

    #[inline]
    fn key_index(&self, key: &[u8]) -> Option<usize> {
        self.keys.iter().position(|k| k.as_bytes() == key)
    }
}

/// What an encode changed or dropped, for the exporter's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records with labels moved to structured metadata past `max_label_count`.
    pub label_count: u64,
    /// Records with a label value truncated to `max_label_value_length`.
    pub label_value_length: u64,
    /// Records whose line was truncated to `max_line_size`.
    pub line_size: u64,
    /// Records with structured-metadata pairs left out past `max_structured_metadata_entries`.
    pub metadata_entries: u64,
    /// Records with structured-metadata pairs left out to fit `max_structured_metadata_size`.
    pub metadata_size: u64,
    /// Records dropped because a field inside them could not be decoded.
    pub malformed: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    #[inline]
    fn len(self) -> usize {
        self.end - self.start
    }
}

#[derive(Clone, Copy, Debug)]
struct Pair {
    name: Span,
    value: Span,
}

impl Pair {
    /// The pair's size as Loki counts it against `max_structured_metadata_size`: name bytes
    /// plus value bytes.
    #[inline]
    fn size(self) -> usize {
        self.name.len() + self.value.len()
    }
}

/// What a record inherits from its scope and its resource: their metadata pairs (ranges of
/// `metas`), the same already encoded as protobuf (ranges of `shared`), and the pairs' total
/// size (as [`Pair::size`]), all computed once per scope/resource.
#[derive(Clone, Copy, Debug, Default)]
struct Inherited {
    /// Scope, resource.
    meta: [Span; 2],
    /// Scope, resource.
    shared: [Span; 2],
    size: usize,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    stream: u32,
    seq: u32,
    ts: i64,
    /// In `arena`.
    line: Span,
    /// Ranges of `metas`: the record's own, its scope's and its resource's.
    meta: [Span; 3],
    /// The scope's and the resource's metadata already encoded as protobuf fields, in
    /// `shared` (written once per scope/resource, copied as one slice per entry).
    shared: [Span; 2],
}

#[derive(Clone, Copy, Debug)]
struct Stream {
    /// The label string in `label_arena`.
    labels: Span,
    /// Range of `label_pairs` (name and unescaped value, for JSON).
    pairs: Span,
    /// The next stream with the same hash, or `u32::MAX`.
    next: u32,
}

/// Reusable encoding state. Feed it requests with [`Encoder::add_request`], then take the body
/// with [`Encoder::encode_protobuf`] or [`Encoder::encode_json`]; [`Encoder::reset`] starts
/// the next batch.
#[derive(Debug, Default)]
pub struct Encoder {
    arena: Vec<u8>,
    metas: Vec<Pair>,
    shared: Vec<u8>,
    entries: Vec<Entry>,
    label_arena: Vec<u8>,
    label_pairs: Vec<Pair>,
    streams: Vec<Stream>,
    by_hash: HashMap<u64, u32>,
    label_buf: Vec<u8>,
    val_buf: Vec<u8>,
    val_spans: Vec<Option<Span>>,
    selected: Vec<(u32, Span)>,
    sizes: Vec<usize>,
    pub stats: Stats,
}

/// Per-request lookups: the label-source values found on the resource and on the record.
struct Walk<'a> {
    res_vals: Vec<Option<AnyValue<'a>>>,
    res_used: Vec<bool>,
    rec_vals: Vec<Option<AnyValue<'a>>>,
    rec_used: Vec<bool>,
    /// The current record's attributes (key, encoded value), read once.
    rec_attrs: Vec<(&'a [u8], &'a [u8])>,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder::default()
    }

    /// Forgets the previous batch, keeping the buffers (up to a bound).
    pub fn reset(&mut self) {
        fn clear<T>(v: &mut Vec<T>) {
            v.clear();
            if v.capacity() * std::mem::size_of::<T>() > KEEP_CAPACITY {
                v.shrink_to(KEEP_CAPACITY / std::mem::size_of::<T>().max(1));
            }
        }
        clear(&mut self.arena);
        clear(&mut self.metas);
        clear(&mut self.shared);
        clear(&mut self.entries);
        clear(&mut self.label_arena);
        clear(&mut self.label_pairs);
        clear(&mut self.streams);
        clear(&mut self.sizes);
        self.by_hash.clear();
        self.stats = Stats::default();
    }

    /// Streams in the current batch.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Entries in the current batch.
    pub fn entries(&self) -> usize {
        self.entries.len()
    }

    /// Adds the log records of one `ExportLogsServiceRequest`. `now_ns` stamps records that
    /// have neither a time nor an observed time. A record with an undecodable field is
    /// dropped and counted in `stats.malformed`; an error above the records (resource, scope)
    /// fails the whole request.
    pub fn add_request(&mut self, plan: &Plan, req: &[u8], now_ns: i64) -> Result<(), WireError> {
        let n = plan.keys.len();
        let mut walk = Walk {
            res_vals: vec![None; n],
            res_used: vec![false; n],
            rec_vals: vec![None; n],
            rec_used: vec![false; n],
            rec_attrs: Vec::new(),
        };
        if self.val_spans.len() != plan.labels.len() {
            self.val_spans.resize(plan.labels.len(), None);
        }
        for f in Fields::new(req) {
            let f = f?;
            if f.number == 1 {
                self.add_resource_logs(plan, &mut walk, expect_len(&f)?, now_ns)?;
            }
        }
        Ok(())
    }

    fn add_resource_logs<'a>(
        &mut self,
        plan: &Plan,
        walk: &mut Walk<'a>,
        rl: &'a [u8],
        now_ns: i64,
    ) -> Result<(), WireError> {
        let mut resource: &[u8] = &[];
        for f in Fields::new(rl) {
            let f = f?;
            if f.number == 1 {
                resource = expect_len(&f)?;
            }
        }
        walk.res_vals.fill(None);
        walk.res_used.fill(false);
        for a in wire::attributes(resource, 1) {
            let a = a?;
            if let Some(k) = plan.key_index(a.key.as_bytes())
                && walk.res_vals[k].is_none()
                && !is_empty(&a.value)
            {
                walk.res_vals[k] = Some(a.value);
            }
        }
        // The resource attribute that gives each label its value is not repeated as metadata.
        for l in &plan.labels {
            for s in &l.sources {
                if let Src::Key(k) = *s
                    && walk.res_vals[k].is_some()
                {
                    walk.res_used[k] = true;
                    break;
                }
            }
        }
        let res_start = self.metas.len();
        if plan.resource_metadata {
            for a in wire::attributes(resource, 1) {
                let a = a?;
                if plan.key_index(a.key.as_bytes()).is_some_and(|k| walk.res_used[k]) {
                    continue;
                }
                self.push_meta(a.key, &a.value)?;
            }
        }
        let res_meta = Span { start: res_start, end: self.metas.len() };
        let res = Inherited {
            meta: [Span::default(), res_meta],
            shared: [Span::default(), self.pre_encode(res_meta)],
            size: self.meta_size(res_meta),
        };
        for f in Fields::new(rl) {
            let f = f?;
            if f.number == 2 {
                self.add_scope_logs(plan, walk, expect_len(&f)?, res, now_ns)?;
            }
        }
        Ok(())
    }

    fn add_scope_logs<'a>(
        &mut self,
        plan: &Plan,
        walk: &mut Walk<'a>,
        sl: &'a [u8],
        res: Inherited,
        now_ns: i64,
    ) -> Result<(), WireError> {
        let scope_start = self.metas.len();
        if plan.scope_metadata {
            for f in Fields::new(sl) {
                let f = f?;
                if f.number == 1 {
                    for g in Fields::new(expect_len(&f)?) {
                        let g = g?;
                        let name = match g.number {
                            1 => "scope_name",
                            2 => "scope_version",
                            _ => continue,
                        };
                        let v = expect_len(&g)?;
                        if !v.is_empty() {
                            let v = std::str::from_utf8(v).map_err(|_| utf8_error())?;
                            self.push_meta_str(name, v);
                        }
                    }
                }
            }
        }
        let scope_meta = Span { start: scope_start, end: self.metas.len() };
        let inherited = Inherited {
            meta: [scope_meta, res.meta[1]],
            shared: [self.pre_encode(scope_meta), res.shared[1]],
            size: res.size + self.meta_size(scope_meta),
        };
        for f in Fields::new(sl) {
            let f = f?;
            if f.number == 2 {
                let rec = expect_len(&f)?;
                let (arena, metas, vals) = (self.arena.len(), self.metas.len(), self.val_buf.len());
                if self.add_record(plan, walk, rec, &inherited, now_ns).is_err() {
                    self.arena.truncate(arena);
                    self.metas.truncate(metas);
                    self.val_buf.truncate(vals);
                    self.stats.malformed += 1;
                }
            }
        }
        Ok(())
    }

    fn add_record<'a>(
        &mut self,
        plan: &Plan,
        walk: &mut Walk<'a>,
        rec: &'a [u8],
        inherited: &Inherited,
        now_ns: i64,
    ) -> Result<(), WireError> {
        let (mut time, mut observed, mut sev_num) = (0u64, 0u64, 0u64);
        let (mut sev_text, mut event_name): (&[u8], &[u8]) = (&[], &[]);
        let (mut body, mut trace_id, mut span_id): (Option<&[u8]>, &[u8], &[u8]) = (None, &[], &[]);
        walk.rec_vals.fill(None);
        walk.rec_used.fill(false);
        walk.rec_attrs.clear();
        for f in Fields::new(rec) {
            let f = f?;
            match (f.number, f.value) {
                (1, Value::I64(v)) => time = v,
                (11, Value::I64(v)) => observed = v,
                (2, Value::Varint(v)) => sev_num = v,
                (3, Value::Len(b)) => sev_text = b,
                (5, Value::Len(b)) => body = Some(b),
                (6, Value::Len(kv)) => {
                    let (key, value) = key_value(kv)?;
                    walk.rec_attrs.push((key, value));
                    if let Some(k) = plan.key_index(key)
                        && walk.rec_vals[k].is_none()
                    {
                        let v = AnyValue::parse(value)?;
                        if !is_empty(&v) {
                            walk.rec_vals[k] = Some(v);
                        }
                    }
                }
                (9, Value::Len(b)) => trace_id = b,
                (10, Value::Len(b)) => span_id = b,
                (12, Value::Len(b)) => event_name = b,
                _ => {}
            }
        }
        let sev_text = std::str::from_utf8(sev_text).map_err(|_| utf8_error())?;

        // Label values, in configuration order, into `val_buf`.
        self.val_buf.clear();
        let mut value_truncated = false;
        for (i, l) in plan.labels.iter().enumerate() {
            self.val_spans[i] = None;
            for s in &l.sources {
                let start = self.val_buf.len();
                match *s {
                    Src::Key(k) => {
                        if let Some(v) = walk.rec_vals[k] {
                            walk.rec_used[k] = true;
                            write_text(&mut self.val_buf, &v, 0)?;
                        } else if let Some(v) = walk.res_vals[k] {
                            write_text(&mut self.val_buf, &v, 0)?;
                        }
                    }
                    Src::Severity => write_level(&mut self.val_buf, sev_text, sev_num),
                }
                if self.val_buf.len() > start {
                    if self.val_buf.len() - start > plan.max_label_value_length {
                        let end = char_floor(&self.val_buf[start..], plan.max_label_value_length);
                        self.val_buf.truncate(start + end);
                        value_truncated = true;
                    }
                    self.val_spans[i] = Some(Span { start, end: self.val_buf.len() });
                    break;
                }
            }
        }
        if value_truncated {
            self.stats.label_value_length += 1;
        }

        // The record's metadata, written in priority order (see `limit_metadata`): its ids and
        // event name, the labels past `max_label_count`, then its other attributes.
        let rec_start = self.metas.len();
        if !trace_id.is_empty() {
            self.push_meta_hex("trace_id", trace_id);
        }
        if !span_id.is_empty() {
            self.push_meta_hex("span_id", span_id);
        }
        if !event_name.is_empty() {
            let e = std::str::from_utf8(event_name).map_err(|_| utf8_error())?;
            self.push_meta_str("event_name", e);
        }

        // Labels past the limit (in priority order) become structured metadata.
        let mut present = 0;
        let mut overflow = false;
        for (i, l) in plan.labels.iter().enumerate() {
            let Some(v) = self.val_spans[i] else { continue };
            present += 1;
            if present > plan.max_label_count {
                overflow = true;
                self.val_spans[i] = None;
                let name = self.push_arena(l.name.as_bytes());
                let value = self.push_arena_from_val(v);
                self.metas.push(Pair { name, value });
            }
        }
        if overflow {
            self.stats.label_count += 1;
        }

        // The record's other attributes.
        for &(key, value) in &walk.rec_attrs {
            if plan.key_index(key).is_some_and(|k| walk.rec_used[k]) {
                continue;
            }
            let key = std::str::from_utf8(key).map_err(|_| utf8_error())?;
            self.push_meta(key, &AnyValue::parse(value)?)?;
        }
        let rec_meta = Span { start: rec_start, end: self.metas.len() };
        let mut meta = [rec_meta, inherited.meta[0], inherited.meta[1]];
        let mut shared = inherited.shared;
        if let Some(kept) = self.limit_metadata(plan, rec_meta, inherited) {
            meta = [kept, Span::default(), Span::default()];
            shared = [Span::default(); 2];
        }

        // The line.
        let start = self.arena.len();
        if let Some(b) = body {
            write_text(&mut self.arena, &AnyValue::parse(b)?, 0)?;
        }
        if plan.max_line_size > 0 && self.arena.len() - start > plan.max_line_size {
            let end = char_floor(&self.arena[start..], plan.max_line_size);
            self.arena.truncate(start + end);
            self.stats.line_size += 1;
        }
        let line = Span { start, end: self.arena.len() };

        let ts = match if time != 0 { time } else { observed } {
            0 => now_ns,
            t => i64::try_from(t).unwrap_or(i64::MAX),
        };
        let stream = self.stream_for(plan);
        let seq = self.entries.len() as u32;
        self.entries.push(Entry { stream, seq, ts, line, meta, shared });
        Ok(())
    }

    /// The total size of the pairs `metas`, as Loki counts it.
    fn meta_size(&self, metas: Span) -> usize {
        self.metas[metas.start..metas.end].iter().map(|p| p.size()).sum()
    }

    /// Applies `max_structured_metadata_entries` and `max_structured_metadata_size` to one
    /// entry: its own pairs `rec` (the last ones in `metas`) followed by its scope's and its
    /// resource's. Loki checks both per entry, as the pair count and the sum of name and value
    /// lengths, and refuses an entry past either with a 400 for the push; so pairs are left out
    /// here instead.
    ///
    /// Pairs are taken in the order they are written, which is their priority: trace_id,
    /// span_id, event_name, labels past `max_label_count`, the record's attributes, scope_name
    /// and scope_version, the resource's attributes. Once the count limit is reached the rest
    /// are left out; a pair that would take the size past its limit is left out, and smaller
    /// pairs after it may still fit. A higher-priority pair is never dropped to make room.
    ///
    /// `None` when everything fits (the common case: the inherited pairs stay shared).
    /// Otherwise the kept pairs, in order, are the record's new own range (at the end of
    /// `metas`: the record's kept pairs compacted in place, then copies of the inherited
    /// ones), and the record is counted once per reason in `stats`. No allocation beyond
    /// `metas`' amortized growth.
    fn limit_metadata(&mut self, plan: &Plan, rec: Span, inherited: &Inherited) -> Option<Span> {
        let (max_n, max_size) = (plan.max_metadata_entries, plan.max_metadata_size);
        let n = rec.len() + inherited.meta[0].len() + inherited.meta[1].len();
        let over_n = max_n != 0 && n > max_n;
        let over_size = max_size != 0 && self.meta_size(rec) + inherited.size > max_size;
        if !over_n && !over_size {
            return None;
        }
        let (max_n, max_size) =
            (if max_n == 0 { usize::MAX } else { max_n }, if max_size == 0 { usize::MAX } else { max_size });
        let (mut kept, mut size) = (0usize, 0usize);
        let (mut dropped_n, mut dropped_size) = (false, false);
        let mut keep = |p: Pair| -> bool {
            if kept >= max_n {
                dropped_n = true;
                false
            } else if p.size() > max_size - size {
                dropped_size = true;
                false
            } else {
                kept += 1;
                size += p.size();
                true
            }
        };
        let mut w = rec.start;
        for i in rec.start..rec.end {
            let p = self.metas[i];
            if keep(p) {
                self.metas[w] = p;
                w += 1;
            }
        }
        self.metas.truncate(w);
        for m in inherited.meta {
            for i in m.start..m.end {
                let p = self.metas[i];
                if keep(p) {
                    self.metas.push(p);
                }
            }
        }
        if dropped_n {
            self.stats.metadata_entries += 1;
        }
        if dropped_size {
            self.stats.metadata_size += 1;
        }
        Some(Span { start: rec.start, end: self.metas.len() })
    }

    /// The index of the stream with the labels in `val_spans`, created when new.
    fn stream_for(&mut self, plan: &Plan) -> u32 {
        self.selected.clear();
        for &i in &plan.by_name {
            if let Some(v) = self.val_spans[i] {
                self.selected.push((i as u32, v));
            }
        }
        if self.selected.is_empty() {
            let start = self.val_buf.len();
            self.val_buf.extend_from_slice(FALLBACK_LABEL.1.as_bytes());
            self.selected.push((u32::MAX, Span { start, end: self.val_buf.len() }));
        }
        let name_of = |i: u32| -> &str { if i == u32::MAX { FALLBACK_LABEL.0 } else { &plan.labels[i as usize].name } };
        self.label_buf.clear();
        self.label_buf.push(b'{');
        for (n, &(i, v)) in self.selected.iter().enumerate() {
            if n > 0 {
                self.label_buf.extend_from_slice(b", ");
            }
            self.label_buf.extend_from_slice(name_of(i).as_bytes());
            self.label_buf.extend_from_slice(b"=\"");
            escape_label_value(&mut self.label_buf, &self.val_buf[v.start..v.end]);
            self.label_buf.push(b'"');
        }
        self.label_buf.push(b'}');
        let h = xxhash_rust::xxh3::xxh3_64(&self.label_buf);
        let head = self.by_hash.get(&h).copied();
        let mut cur = head.unwrap_or(u32::MAX);
        while cur != u32::MAX {
            let s = self.streams[cur as usize];
            if self.label_arena[s.labels.start..s.labels.end] == self.label_buf[..] {
                return cur;
            }
            cur = s.next;
        }
        let start = self.label_arena.len();
        self.label_arena.extend_from_slice(&self.label_buf);
        let labels = Span { start, end: self.label_arena.len() };
        let pairs_start = self.label_pairs.len();
        for &(i, v) in &self.selected {
            let start = self.label_arena.len();
            self.label_arena.extend_from_slice(name_of(i).as_bytes());
            let name = Span { start, end: self.label_arena.len() };
            self.label_arena.extend_from_slice(&self.val_buf[v.start..v.end]);
            self.label_pairs.push(Pair { name, value: Span { start: name.end, end: self.label_arena.len() } });
        }
        let pairs = Span { start: pairs_start, end: self.label_pairs.len() };
        let idx = self.streams.len() as u32;
        self.streams.push(Stream { labels, pairs, next: head.unwrap_or(u32::MAX) });
        self.by_hash.insert(h, idx);
        idx
    }

    /// The metadata pairs `metas` as `EntryAdapter.structuredMetadata` fields, in `shared`.
    fn pre_encode(&mut self, metas: Span) -> Span {
        let start = self.shared.len();
        for p in &self.metas[metas.start..metas.end] {
            write_pair(&mut self.shared, &self.arena, p);
        }
        Span { start, end: self.shared.len() }
    }

    fn push_arena(&mut self, b: &[u8]) -> Span {
        let start = self.arena.len();
        self.arena.extend_from_slice(b);
        Span { start, end: self.arena.len() }
    }

    fn push_arena_from_val(&mut self, v: Span) -> Span {
        let start = self.arena.len();
        self.arena.extend_from_slice(&self.val_buf[v.start..v.end]);
        Span { start, end: self.arena.len() }
    }

    /// An attribute as structured metadata: its key as a label name, its value as text.
    /// Empty values are left out.
    fn push_meta(&mut self, key: &str, value: &AnyValue<'_>) -> Result<(), WireError> {
        let start = self.arena.len();
        sanitize_name(&mut self.arena, key);
        let name = Span { start, end: self.arena.len() };
        write_text(&mut self.arena, value, 0)?;
        if self.arena.len() == name.end || name.len() == 0 {
            self.arena.truncate(start);
            return Ok(());
        }
        self.metas.push(Pair { name, value: Span { start: name.end, end: self.arena.len() } });
        Ok(())
    }

    fn push_meta_str(&mut self, name: &str, value: &str) {
        let name = self.push_arena(name.as_bytes());
        let value = self.push_arena(value.as_bytes());
        self.metas.push(Pair { name, value });
    }

    fn push_meta_hex(&mut self, name: &str, id: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let name = self.push_arena(name.as_bytes());
        let start = self.arena.len();
        for &b in id {
            self.arena.push(HEX[usize::from(b >> 4)]);
            self.arena.push(HEX[usize::from(b & 15)]);
        }
        self.metas.push(Pair { name, value: Span { start, end: self.arena.len() } });
    }

    /// Orders entries: grouped by stream (in order of first appearance), by timestamp within a
    /// stream, arrival order among equal timestamps.
    fn sort(&mut self) {
        self.entries.sort_unstable_by_key(|e| (e.stream, e.ts, e.seq));
    }

    /// The batch as a `logproto.PushRequest` (uncompressed), appended to `out`.
    pub fn encode_protobuf(&mut self, out: &mut Vec<u8>) {
        self.sort();
        self.sizes.clear();
        for e in &self.entries {
            let mut n = message_len(timestamp_len(e.ts));
            if e.line.len() > 0 {
                n += message_len(e.line.len());
            }
            for p in &self.metas[e.meta[0].start..e.meta[0].end] {
                n += message_len(pair_len(p));
            }
            n += e.shared[0].len() + e.shared[1].len();
            self.sizes.push(n);
        }
        out.reserve(self.sizes.iter().sum::<usize>() + self.label_arena.len() + 16 * self.streams.len());
        let mut i = 0;
        while i < self.entries.len() {
            let sid = self.entries[i].stream;
            let mut j = i;
            let mut entries_len = 0;
            while j < self.entries.len() && self.entries[j].stream == sid {
                entries_len += message_len(self.sizes[j]);
                j += 1;
            }
            let s = self.streams[sid as usize];
            put_tag_len(out, 1, message_len(s.labels.len()) + entries_len);
            put_tag_len(out, 1, s.labels.len());
            out.extend_from_slice(&self.label_arena[s.labels.start..s.labels.end]);
            for k in i..j {
                let e = self.entries[k];
                put_tag_len(out, 2, self.sizes[k]);
                put_tag_len(out, 1, timestamp_len(e.ts));
                let (secs, nanos) = split_ts(e.ts);
                if secs != 0 {
                    out.push(0x08);
                    put_varint(out, secs as u64);
                }
                if nanos != 0 {
                    out.push(0x10);
                    put_varint(out, nanos as u64);
                }
                if e.line.len() > 0 {
                    put_tag_len(out, 2, e.line.len());
                    out.extend_from_slice(&self.arena[e.line.start..e.line.end]);
                }
                for p in &self.metas[e.meta[0].start..e.meta[0].end] {
                    write_pair(out, &self.arena, p);
                }
                for sh in e.shared {
                    out.extend_from_slice(&self.shared[sh.start..sh.end]);
                }
            }
            i = j;
        }
    }

    /// The batch as Loki's JSON push body, appended to `out`.
    pub fn encode_json(&mut self, out: &mut Vec<u8>) {
        self.sort();
        out.extend_from_slice(b"{\"streams\":[");
        let mut i = 0;
        while i < self.entries.len() {
            let sid = self.entries[i].stream;
            let s = self.streams[sid as usize];
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"stream\":{");
            for (n, p) in self.label_pairs[s.pairs.start..s.pairs.end].iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                json_str(out, &self.label_arena[p.name.start..p.name.end]);
                out.push(b':');
                json_str(out, &self.label_arena[p.value.start..p.value.end]);
            }
            out.extend_from_slice(b"},\"values\":[");
            let mut first = true;
            while i < self.entries.len() && self.entries[i].stream == sid {
                let e = self.entries[i];
                if !first {
                    out.push(b',');
                }
                first = false;
                let _ = write!(out, "[\"{}\",", e.ts);
                json_str(out, &self.arena[e.line.start..e.line.end]);
                if e.meta.iter().any(|m| m.len() > 0) {
                    out.extend_from_slice(b",{");
                    let mut n = 0;
                    for m in e.meta {
                        for p in &self.metas[m.start..m.end] {
                            if n > 0 {
                                out.push(b',');
                            }
                            n += 1;
                            json_str(out, &self.arena[p.name.start..p.name.end]);
                            out.push(b':');
                            json_str(out, &self.arena[p.value.start..p.value.end]);
                        }
                    }
                    out.push(b'}');
                }
                out.push(b']');
                i += 1;
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
    }
}

fn utf8_error() -> WireError {
    WireError::new(wire::WireErrorKind::InvalidUtf8)
}

fn is_empty(v: &AnyValue<'_>) -> bool {
    match v {
        AnyValue::Empty => true,
        AnyValue::String(s) => s.is_empty(),
        _ => false,
    }
}

/// A `KeyValue`'s key bytes and encoded `AnyValue`.
#[inline]
fn key_value(kv: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    for g in Fields::new(kv) {
        let g = g?;
        match g.number {
            1 => key = expect_len(&g)?,
            2 => value = expect_len(&g)?,
            _ => {}
        }
    }
    Ok((key, value))
}

/// The log level: the severity text in lower case, or the severity number's range name.
fn write_level(out: &mut Vec<u8>, text: &str, number: u64) {
    if !text.is_empty() {
        out.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
        return;
    }
    let level: &[u8] = match number {
        1..=4 => b"trace",
        5..=8 => b"debug",
        9..=12 => b"info",
        13..=16 => b"warn",
        17..=20 => b"error",
        21..=24 => b"fatal",
        _ => b"",
    };
    out.extend_from_slice(level);
}

/// The largest `n <= limit` that ends `s` on a character boundary (`s` is UTF-8).
fn char_floor(s: &[u8], limit: usize) -> usize {
    let mut n = limit.min(s.len());
    while n > 0 && n < s.len() && (s[n] & 0xC0) == 0x80 {
        n -= 1;
    }
    n
}

/// An attribute key as a label name: characters other than ASCII letters, digits and `_`
/// become `_`, and a leading digit gets a `_` prefix (`service.instance.id` ->
/// `service_instance_id`), as Loki's OTLP ingestion names structured metadata.
pub fn sanitize_name(out: &mut Vec<u8>, key: &str) {
    if key.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        out.push(b'_');
    }
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c as u8);
        } else {
            out.push(b'_');
        }
    }
}

/// A value inside a label string's quotes: `\`, `"` and line breaks escaped (what both the
/// Prometheus label syntax and Go's string unquoting, used by Loki's parser, accept).
fn escape_label_value(out: &mut Vec<u8>, v: &[u8]) {
    for &b in v {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
}

/// A JSON string (the input is UTF-8).
fn json_str(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut from = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[from..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        } else {
            out.extend_from_slice(esc);
        }
        from = i + 1;
    }
    out.extend_from_slice(&s[from..]);
    out.push(b'"');
}

/// A value as text: strings as they are, scalars in their usual form, bytes in base64,
/// arrays and maps as JSON.
fn write_text(out: &mut Vec<u8>, v: &AnyValue<'_>, depth: usize) -> Result<(), WireError> {
    match *v {
        AnyValue::Empty => {}
        AnyValue::String(s) => out.extend_from_slice(s.as_bytes()),
        AnyValue::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        AnyValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        AnyValue::Double(d) => write_double(out, d),
        AnyValue::Bytes(b) => write_base64(out, b),
        AnyValue::Array(_) | AnyValue::KvList(_) => write_json(out, v, depth)?,
    }
    Ok(())
}

/// Standard base64 with padding, appended without an intermediate string.
fn write_base64(out: &mut Vec<u8>, b: &[u8]) {
    let Some(n) = base64::encoded_len(b.len(), true) else { return };
    let start = out.len();
    out.resize(start + n, 0);
    let written = base64::engine::general_purpose::STANDARD.encode_slice(b, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

fn write_double(out: &mut Vec<u8>, d: f64) {
    if d.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if d.is_infinite() {
        out.extend_from_slice(if d > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else {
        let _ = write!(out, "{d}");
    }
}

/// A value as JSON: maps as objects, arrays as arrays, bytes as base64 strings, non-finite
/// doubles as strings.
fn write_json(out: &mut Vec<u8>, v: &AnyValue<'_>, depth: usize) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        out.extend_from_slice(b"null");
        return Ok(());
    }
    match *v {
        AnyValue::Empty => out.extend_from_slice(b"null"),
        AnyValue::String(s) => json_str(out, s.as_bytes()),
        AnyValue::Bool(_) | AnyValue::Int(_) => write_text(out, v, depth)?,
        AnyValue::Double(d) if d.is_finite() => write_double(out, d),
        AnyValue::Double(d) => {
            out.push(b'"');
            write_double(out, d);
            out.push(b'"');
        }
        AnyValue::Bytes(b) => {
            out.push(b'"');
            write_base64(out, b);
            out.push(b'"');
        }
        AnyValue::Array(a) => {
            out.push(b'[');
            let mut n = 0;
            for f in Fields::new(a) {
                let f = f?;
                if f.number == 1 {
                    if n > 0 {
                        out.push(b',');
                    }
                    n += 1;
                    write_json(out, &AnyValue::parse(expect_len(&f)?)?, depth + 1)?;
                }
            }
            out.push(b']');
        }
        AnyValue::KvList(l) => {
            out.push(b'{');
            let mut n = 0;
            for f in Fields::new(l) {
                let f = f?;
                if f.number == 1 {
                    let (key, value) = key_value(expect_len(&f)?)?;
                    std::str::from_utf8(key).map_err(|_| utf8_error())?;
                    if n > 0 {
                        out.push(b',');
                    }
                    n += 1;
                    json_str(out, key);
                    out.push(b':');
                    write_json(out, &AnyValue::parse(value)?, depth + 1)?;
                }
            }
            out.push(b'}');
        }
    }
    Ok(())
}

// --- protobuf writing -------------------------------------------------------------------------

#[inline]
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A length-delimited field with a one-byte tag (field numbers below 16): tag + length + body.
#[inline]
fn message_len(body: usize) -> usize {
    1 + varint_len(body as u64) + body
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn put_tag_len(out: &mut Vec<u8>, field: u8, len: usize) {
    out.push((field << 3) | 2);
    put_varint(out, len as u64);
}

#[inline]
fn split_ts(ts: i64) -> (i64, i32) {
    (ts.div_euclid(1_000_000_000), ts.rem_euclid(1_000_000_000) as i32)
}

/// `google.protobuf.Timestamp{seconds, nanos}`.
#[inline]
fn timestamp_len(ts: i64) -> usize {
    let (secs, nanos) = split_ts(ts);
    let mut n = 0;
    if secs != 0 {
        n += 1 + varint_len(secs as u64);
    }
    if nanos != 0 {
        n += 1 + varint_len(nanos as u64);
    }
    n
}

/// One `structuredMetadata` field (`LabelPairAdapter{name, value}`).
#[inline]
fn write_pair(out: &mut Vec<u8>, arena: &[u8], p: &Pair) {
    put_tag_len(out, 3, pair_len(p));
    if p.name.len() > 0 {
        put_tag_len(out, 1, p.name.len());
        out.extend_from_slice(&arena[p.name.start..p.name.end]);
    }
    if p.value.len() > 0 {
        put_tag_len(out, 2, p.value.len());
        out.extend_from_slice(&arena[p.value.start..p.value.end]);
    }
}

#[inline]
fn pair_len(p: &Pair) -> usize {
    let mut n = 0;
    if p.name.len() > 0 {
        n += message_len(p.name.len());
    }
    if p.value.len() > 0 {
        n += message_len(p.value.len());
    }
    n
}
