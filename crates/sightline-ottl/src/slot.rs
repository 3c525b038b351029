//! Items read on the wire and decoded only when a statement needs the whole item (ADR 15).
//!
//! A [`Slot`] holds one span's or log record's encoded bytes. Conditions read its fields
//! straight from the bytes ([`SpanView`], [`LogView`], [`Slot::attr`]): no allocation. Setting
//! or deleting one attribute records an edit; encoding then copies every other field through
//! and writes the attribute list with the edits applied (pdata's order: a set key keeps its
//! place or goes last, a deleted key takes the last one's place). Anything else (a whole-map
//! editor, a nested key, another field) decodes the item once with prost, the edits applied.

use crate::value::Val;
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use sightline_core::wire::{self, Fields, Value as W, WireType};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::sync::Arc;

/// An item type with its attributes field.
pub trait Lazy: Message + Default {
    /// The field number of `attributes`.
    const ATTRS: u32;
    fn attrs(&self) -> &Vec<KeyValue>;
    fn attrs_mut(&mut self) -> &mut Vec<KeyValue>;
}

impl Lazy for Span {
    const ATTRS: u32 = 9;
    fn attrs(&self) -> &Vec<KeyValue> {
        &self.attributes
    }
    fn attrs_mut(&mut self) -> &mut Vec<KeyValue> {
        &mut self.attributes
    }
}

impl Lazy for LogRecord {
    const ATTRS: u32 = 6;
    fn attrs(&self) -> &Vec<KeyValue> {
        &self.attributes
    }
    fn attrs_mut(&mut self) -> &mut Vec<KeyValue> {
        &mut self.attributes
    }
}

/// An attribute edit; key and value shared with the statement when they are literals.
#[derive(Debug)]
enum Edit {
    Set(Arc<str>, Arc<AnyValue>),
    Delete(Arc<str>),
}

pub struct Slot<T: Lazy> {
    raw: Bytes,
    /// Where the attributes sit in `raw` (built on first use).
    index: OnceCell<Vec<AttrAt>>,
    /// The final attribute list of an edited item (built when it is encoded).
    order: OnceCell<Vec<Src>>,
    decoded: OnceCell<T>,
    /// The bytes did not decode (a malformed nested value the receiver's checks do not reach):
    /// the processor refuses the request rather than send an emptied item.
    undecodable: std::cell::Cell<bool>,
    edits: Vec<Edit>,
    /// Dropped by a filter: not encoded.
    pub dropped: bool,
}

/// A wire `AnyValue` as an OTTL value (lists and maps decoded).
pub fn wire_val(v: wire::AnyValue<'_>) -> Val<'_> {
    match v {
        wire::AnyValue::Empty => Val::Nil,
        wire::AnyValue::String(s) => Val::Str(Cow::Borrowed(s)),
        wire::AnyValue::Bool(b) => Val::Bool(b),
        wire::AnyValue::Int(i) => Val::Int(i),
        wire::AnyValue::Double(d) => Val::Float(d),
        wire::AnyValue::Bytes(b) => Val::Bytes(Cow::Borrowed(b)),
        wire::AnyValue::Array(b) => opentelemetry_proto::tonic::common::v1::ArrayValue::decode(b)
            .map_or(Val::Nil, |a| Val::List(Cow::Owned(a.values))),
        wire::AnyValue::KvList(b) => opentelemetry_proto::tonic::common::v1::KeyValueList::decode(b)
            .map_or(Val::Nil, |m| Val::Map(Cow::Owned(m.values))),
    }
}

/// One attribute of the encoded item: offsets of its key, its `AnyValue` and the whole field.
#[derive(Clone, Copy)]
struct AttrAt {
    key: (u32, u32),
    value: (u32, u32),
    field: (u32, u32),
}

/// The attributes (field `field`) of an encoded item, found in one pass.
fn index_attrs(msg: &[u8], field: u32) -> Vec<AttrAt> {
    let base = msg.as_ptr() as usize;
    let at = |s: &[u8]| {
        let o = (s.as_ptr() as usize - base) as u32;
        (o, o + s.len() as u32)
    };
    let mut out = Vec::new();
    for f in Fields::new(msg).flatten() {
        if f.number != field {
            continue;
        }
        let W::Len(kv) = f.value else { continue };
        let (mut key, mut value) = (&kv[..0], &kv[..0]);
        for g in Fields::new(kv).flatten() {
            match (g.number, g.value) {
                (1, W::Len(b)) => key = b,
                (2, W::Len(b)) => value = b,
                _ => {}
            }
        }
        out.push(AttrAt { key: at(key), value: at(value), field: at(f.raw) });
    }
    out
}

/// pdata's `PutEmpty`-then-set: an existing key keeps its place, a new one goes last.
fn put(attrs: &mut Vec<KeyValue>, key: &str, v: AnyValue) {
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = Some(v),
        None => attrs.push(KeyValue { key: key.to_string(), value: Some(v), ..Default::default() }),
    }
}

/// pdata's `Map.Remove`: the last entry takes the removed one's place.
pub(crate) fn remove(attrs: &mut Vec<KeyValue>, key: &str) {
    if let Some(i) = attrs.iter().position(|kv| kv.key == key) {
        attrs.swap_remove(i);
    }
}

/// One attribute of the final list of an edited item: the item's own (an index entry) or an
/// edit's value.
#[derive(Clone, Copy)]
enum Src {
    Raw(usize),
    Edit(usize),
}

/// One attribute of the final list of an edited item.
enum Out<'a> {
    Raw(&'a [u8]),
    Owned(&'a str, &'a AnyValue),
}

impl Out<'_> {
    fn size(&self, field: u32) -> usize {
        match self {
            Out::Raw(raw) => raw.len(),
            Out::Owned(k, v) => wire::len_field_size(field, kv_len(k, v)),
        }
    }
}

fn kv_len(k: &str, v: &AnyValue) -> usize {
    wire::len_field_size(1, k.len()) + wire::len_field_size(2, v.encoded_len())
}

impl<T: Lazy> Slot<T> {
    pub fn new(raw: Bytes) -> Slot<T> {
        Slot {
            raw,
            index: OnceCell::new(),
            order: OnceCell::new(),
            decoded: OnceCell::new(),
            undecodable: std::cell::Cell::new(false),
            edits: Vec::new(),
            dropped: false,
        }
    }

    fn index(&self) -> &[AttrAt] {
        self.index.get_or_init(|| index_attrs(&self.raw, T::ATTRS))
    }

    fn bytes(&self, r: (u32, u32)) -> &[u8] {
        &self.raw[r.0 as usize..r.1 as usize]
    }

    /// Whether decoding the item failed (see [`Slot::decoded`]).
    pub fn undecodable(&self) -> bool {
        self.undecodable.get()
    }

    /// The item decoded (once), with the edits so far applied.
    pub fn decoded(&self) -> &T {
        self.decoded.get_or_init(|| {
            let mut t = T::decode(&self.raw[..]).unwrap_or_else(|_| {
                self.undecodable.set(true);
                T::default()
            });
            for e in &self.edits {
                match e {
                    Edit::Set(k, v) => put(t.attrs_mut(), k, AnyValue::clone(v)),
                    Edit::Delete(k) => remove(t.attrs_mut(), k),
                }
            }
            t
        })
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.decoded();
        self.edits.clear();
        self.decoded.get_mut().expect("decoded above")
    }

    /// One attribute, from the decoded item, the edits or the bytes.
    pub fn attr(&self, key: &str) -> Val<'_> {
        if let Some(t) = self.decoded.get() {
            return t.attrs().iter().find(|kv| kv.key == key).map_or(Val::Nil, |kv| Val::from_any(kv.value.as_ref()));
        }
        for e in self.edits.iter().rev() {
            match e {
                Edit::Set(k, v) if &**k == key => return Val::from_any(Some(v)),
                Edit::Delete(k) if &**k == key => return Val::Nil,
                _ => {}
            }
        }
        // The last occurrence wins, as a decoder's map would.
        let found = self.index().iter().rev().find(|a| self.bytes(a.key) == key.as_bytes());
        found.map_or(Val::Nil, |a| wire::AnyValue::parse(self.bytes(a.value)).map_or(Val::Nil, wire_val))
    }

    pub fn has_attr(&self, key: &str) -> bool {
        if let Some(t) = self.decoded.get() {
            return t.attrs().iter().any(|kv| kv.key == key);
        }
        for e in self.edits.iter().rev() {
            match e {
                Edit::Set(k, _) if &**k == key => return true,
                Edit::Delete(k) if &**k == key => return false,
                _ => {}
            }
        }
        self.index().iter().any(|a| self.bytes(a.key) == key.as_bytes())
    }

    pub fn set_attr(&mut self, key: &str, v: AnyValue) {
        self.order.take();
        match self.decoded.get_mut() {
            Some(t) => put(t.attrs_mut(), key, v),
            None => self.edits.push(Edit::Set(Arc::from(key), Arc::new(v))),
        }
    }

    /// [`Slot::set_attr`] with a key and value shared with the statement (no allocation).
    pub fn set_attr_shared(&mut self, key: &Arc<str>, v: &Arc<AnyValue>) {
        self.order.take();
        match self.decoded.get_mut() {
            Some(t) => put(t.attrs_mut(), key, AnyValue::clone(v)),
            None => self.edits.push(Edit::Set(key.clone(), v.clone())),
        }
    }

    /// [`Slot::delete_attr`] with a key shared with the statement.
    pub fn delete_attr_shared(&mut self, key: &Arc<str>) {
        self.order.take();
        match self.decoded.get_mut() {
            Some(t) => remove(t.attrs_mut(), key),
            None => {
                if self.has_attr(key) {
                    self.edits.push(Edit::Delete(key.clone()));
                }
            }
        }
    }

    pub fn delete_attr(&mut self, key: &str) {
        self.order.take();
        match self.decoded.get_mut() {
            Some(t) => remove(t.attrs_mut(), key),
            None => {
                if self.has_attr(key) {
                    self.edits.push(Edit::Delete(Arc::from(key)));
                }
            }
        }
    }

    /// The attribute list with the edits applied (computed once per encoding).
    fn order(&self) -> &[Src] {
        self.order.get_or_init(|| {
            let index = self.index();
            let key_of = |s: &Src| match *s {
                Src::Raw(i) => self.bytes(index[i].key),
                Src::Edit(i) => match &self.edits[i] {
                    Edit::Set(k, _) | Edit::Delete(k) => k.as_bytes(),
                },
            };
            let mut out: Vec<Src> = (0..index.len()).map(Src::Raw).collect();
            for (ei, e) in self.edits.iter().enumerate() {
                let k = match e {
                    Edit::Set(k, _) | Edit::Delete(k) => k.as_bytes(),
                };
                let at = out.iter().position(|o| key_of(o) == k);
                match (e, at) {
                    (Edit::Set(..), Some(i)) => out[i] = Src::Edit(ei),
                    (Edit::Set(..), None) => out.push(Src::Edit(ei)),
                    (Edit::Delete(_), Some(i)) => {
                        out.swap_remove(i);
                    }
                    (Edit::Delete(_), None) => {}
                }
            }
            out
        })
    }

    fn out(&self, s: Src) -> Out<'_> {
        match s {
            Src::Raw(i) => {
                let a = self.index()[i];
                Out::Raw(self.bytes(a.field))
            }
            Src::Edit(i) => match &self.edits[i] {
                Edit::Set(k, v) => Out::Owned(k, v),
                Edit::Delete(_) => unreachable!("a delete is never in the final list"),
            },
        }
    }

    /// The encoded size of the item's message (without its own tag and length).
    pub fn encoded_len(&self) -> usize {
        if let Some(t) = self.decoded.get() {
            return t.encoded_len();
        }
        if self.edits.is_empty() {
            return self.raw.len();
        }
        let others = self.raw.len() - self.index().iter().map(|a| (a.field.1 - a.field.0) as usize).sum::<usize>();
        others + self.order().iter().map(|o| self.out(*o).size(T::ATTRS)).sum::<usize>()
    }

    /// Appends the item as field `field` of its parent (tag, length, message).
    pub fn encode_field(&self, field: u32, out: &mut Vec<u8>) {
        self.encode_field_len(field, self.encoded_len(), out)
    }

    /// [`Slot::encode_field`] with the length already known ([`Slot::encoded_len`]).
    pub fn encode_field_len(&self, field: u32, len: usize, out: &mut Vec<u8>) {
        wire::put_tag(out, field, WireType::Len);
        wire::put_varint(out, len as u64);
        if let Some(t) = self.decoded.get() {
            t.encode(out).expect("a Vec grows");
            return;
        }
        if self.edits.is_empty() {
            out.extend_from_slice(&self.raw);
            return;
        }
        let order = self.order();
        let mut written = false;
        let write_attrs = |out: &mut Vec<u8>| {
            for o in order {
                match self.out(*o) {
                    Out::Raw(raw) => out.extend_from_slice(raw),
                    Out::Owned(k, v) => {
                        wire::put_tag(out, T::ATTRS, WireType::Len);
                        wire::put_varint(out, kv_len(k, v) as u64);
                        wire::put_len_field(out, 1, k.as_bytes());
                        wire::put_tag(out, 2, WireType::Len);
                        wire::put_varint(out, v.encoded_len() as u64);
                        v.encode(out).expect("a Vec grows");
                    }
                }
            }
        };
        // The attributes are usually one run of fields: copy around it without scanning.
        let index = self.index();
        if let (Some(first), Some(last)) = (index.first(), index.last())
            && index.windows(2).all(|w| w[0].field.1 == w[1].field.0)
        {
            out.extend_from_slice(&self.raw[..first.field.0 as usize]);
            write_attrs(out);
            out.extend_from_slice(&self.raw[last.field.1 as usize..]);
            return;
        }
        for f in Fields::new(&self.raw).flatten() {
            if f.number == T::ATTRS || (f.number > T::ATTRS && !written) {
                if !written {
                    write_attrs(out);
                    written = true;
                }
                if f.number == T::ATTRS {
                    continue;
                }
            }
            out.extend_from_slice(f.raw);
        }
        if !written {
            write_attrs(out);
        }
    }
}

fn str_of(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

/// A span's scalar fields, read from the bytes or the decoded span.
#[derive(Default)]
pub struct SpanView<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub trace_state: &'a str,
    pub name: &'a str,
    pub kind: i32,
    pub start: u64,
    pub end: u64,
    pub dropped_attributes_count: u32,
    pub dropped_events_count: u32,
    pub dropped_links_count: u32,
    pub flags: u32,
    pub status_code: i32,
    pub status_message: &'a str,
}

impl Slot<Span> {
    pub fn view(&self) -> SpanView<'_> {
        if let Some(s) = self.decoded.get() {
            return SpanView {
                trace_id: &s.trace_id,
                span_id: &s.span_id,
                parent_span_id: &s.parent_span_id,
                trace_state: &s.trace_state,
                name: &s.name,
                kind: s.kind,
                start: s.start_time_unix_nano,
                end: s.end_time_unix_nano,
                dropped_attributes_count: s.dropped_attributes_count,
                dropped_events_count: s.dropped_events_count,
                dropped_links_count: s.dropped_links_count,
                flags: s.flags,
                status_code: s.status.as_ref().map_or(0, |x| x.code),
                status_message: s.status.as_ref().map_or("", |x| &x.message),
            };
        }
        let mut v = SpanView::default();
        for f in Fields::new(&self.raw).flatten() {
            match (f.number, f.value) {
                (1, W::Len(b)) => v.trace_id = b,
                (2, W::Len(b)) => v.span_id = b,
                (3, W::Len(b)) => v.trace_state = str_of(b),
                (4, W::Len(b)) => v.parent_span_id = b,
                (5, W::Len(b)) => v.name = str_of(b),
                (6, W::Varint(k)) => v.kind = k as i32,
                (7, W::I64(t)) => v.start = t,
                (8, W::I64(t)) => v.end = t,
                (10, W::Varint(n)) => v.dropped_attributes_count = n as u32,
                (12, W::Varint(n)) => v.dropped_events_count = n as u32,
                (14, W::Varint(n)) => v.dropped_links_count = n as u32,
                (15, W::Len(b)) => {
                    for g in Fields::new(b).flatten() {
                        match (g.number, g.value) {
                            (2, W::Len(m)) => v.status_message = str_of(m),
                            (3, W::Varint(c)) => v.status_code = c as i32,
                            _ => {}
                        }
                    }
                }
                (16, W::I32(x)) => v.flags = x,
                _ => {}
            }
        }
        v
    }

    /// Whether the span has events (without decoding it).
    pub fn has_events(&self) -> bool {
        match self.decoded.get() {
            Some(s) => !s.events.is_empty(),
            None => Fields::new(&self.raw).flatten().any(|f| f.number == 11),
        }
    }
}

/// A log record's scalar fields and body, read from the bytes or the decoded record.
#[derive(Default)]
pub struct LogView<'a> {
    pub time: u64,
    pub observed: u64,
    pub severity_number: i32,
    pub severity_text: &'a str,
    pub body: Option<Val<'a>>,
    pub dropped_attributes_count: u32,
    pub flags: u32,
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub event_name: &'a str,
}

impl Slot<LogRecord> {
    pub fn view(&self) -> LogView<'_> {
        if let Some(l) = self.decoded.get() {
            return LogView {
                time: l.time_unix_nano,
                observed: l.observed_time_unix_nano,
                severity_number: l.severity_number,
                severity_text: &l.severity_text,
                body: l.body.as_ref().map(|b| Val::from_any(Some(b))),
                dropped_attributes_count: l.dropped_attributes_count,
                flags: l.flags,
                trace_id: &l.trace_id,
                span_id: &l.span_id,
                event_name: &l.event_name,
            };
        }
        let mut v = LogView::default();
        for f in Fields::new(&self.raw).flatten() {
            match (f.number, f.value) {
                (1, W::I64(t)) => v.time = t,
                (11, W::I64(t)) => v.observed = t,
                (2, W::Varint(n)) => v.severity_number = n as i32,
                (3, W::Len(b)) => v.severity_text = str_of(b),
                (5, W::Len(b)) => v.body = Some(wire::AnyValue::parse(b).map_or(Val::Nil, wire_val)),
                (7, W::Varint(n)) => v.dropped_attributes_count = n as u32,
                (8, W::I32(x)) => v.flags = x,
                (9, W::Len(b)) => v.trace_id = b,
                (10, W::Len(b)) => v.span_id = b,
                (12, W::Len(b)) => v.event_name = str_of(b),
                _ => {}
            }
        }
        v
    }
}
