//! Items read on the wire and decoded only when a statement needs the whole item (ADR 15).
//!
//! A [`Slot`] holds one span's or log record's encoded bytes. The first read scans the item once
//! ([`Scan`]: the offsets of its attributes and of its scalar fields, kept inline in the slot);
//! conditions then read fields and attributes from the bytes ([`SpanView`], [`LogView`],
//! [`Slot::attr`]) with no allocation. Setting or deleting one attribute records an edit (a
//! literal shared with the statement, or a value copied from the item's own bytes); encoding
//! copies every other field through and writes the attribute list with the edits applied
//! (pdata's order: a set key keeps its place or goes last, a deleted key takes the last one's
//! place). Anything else (a whole-map editor, a nested key, another field) decodes the item once
//! with prost, the edits applied.

use crate::value::Val;
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use sightline_core::wire::{self, WireType};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::sync::Arc;

/// A byte range of the slot's bytes.
pub(crate) type R = (u32, u32);

/// An item type: its attributes field and the scalar fields its view reads.
pub trait Lazy: Message + Default {
    /// The field number of `attributes`.
    const ATTRS: u32;
    /// The offsets and values of the scalar fields, filled by the scan.
    type Head: Default;
    /// Records one top-level field other than the attributes.
    fn note(head: &mut Self::Head, raw: &[u8], number: u32, value: V);
    fn attrs(&self) -> &Vec<KeyValue>;
    fn attrs_mut(&mut self) -> &mut Vec<KeyValue>;
}

/// One field's value, as offsets into the item's bytes for length-delimited ones.
#[derive(Clone, Copy)]
pub enum V {
    Varint(u64),
    I64(u64),
    Len(R),
    I32(u32),
}

#[inline(always)]
fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *b.get(*pos)?;
    if first < 0x80 {
        *pos += 1;
        return Some(u64::from(first));
    }
    let (mut p, mut r, mut shift) = (*pos, 0u64, 0u32);
    loop {
        let c = *b.get(p)?;
        p += 1;
        r |= u64::from(c & 0x7f) << shift;
        if c < 0x80 {
            *pos = p;
            return Some(r);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// The next field of `b` at `pos` (offsets in `b`, plus `base`); `None` at the end or at
/// malformed bytes (a scan stops there: the receiver checked the item's own framing).
#[inline(always)]
pub(crate) fn next_field(b: &[u8], pos: &mut usize, base: u32) -> Option<(u32, V)> {
    if *pos >= b.len() {
        return None;
    }
    let key = varint(b, pos)?;
    let number = u32::try_from(key >> 3).ok().filter(|&n| n != 0)?;
    let v = match key & 7 {
        0 => V::Varint(varint(b, pos)?),
        1 => {
            let x: [u8; 8] = b.get(*pos..*pos + 8)?.try_into().ok()?;
            *pos += 8;
            V::I64(u64::from_le_bytes(x))
        }
        2 => {
            let len = usize::try_from(varint(b, pos)?).ok()?;
            let start = *pos;
            let end = start.checked_add(len).filter(|&e| e <= b.len())?;
            *pos = end;
            V::Len((base + start as u32, base + end as u32))
        }
        5 => {
            let x: [u8; 4] = b.get(*pos..*pos + 4)?.try_into().ok()?;
            *pos += 4;
            V::I32(u32::from_le_bytes(x))
        }
        _ => return None,
    };
    Some((number, v))
}

/// One attribute of the encoded item: offsets of its key, its `AnyValue` and the whole field.
#[derive(Clone, Copy)]
struct AttrAt {
    key: R,
    value: R,
    field: R,
}

/// What one pass over an item's bytes finds.
struct Scan<H> {
    head: H,
    attrs: SmallVec<[AttrAt; 8]>,
    /// The attributes are one run of fields (the usual layout): encoding copies around it.
    contiguous: bool,
    /// A key occurs twice: edits (which assume one occurrence per key) decode the item first,
    /// so that pdata's first-occurrence semantics hold.
    dups: bool,
}

/// The key and value ranges of the `KeyValue` at `kv` (the last of each, empty when absent).
#[inline(always)]
pub(crate) fn key_value(raw: &[u8], kv: R) -> (R, R) {
    let body = &raw[kv.0 as usize..kv.1 as usize];
    // The layout every SDK writes: the key (tag 0x0a) then the value (0x12), each with a
    // one-byte length, nothing else. Anything else takes the general walk below.
    if let [0x0a, klen, rest @ ..] = body
        && *klen < 0x80
        && let Some([0x12, vlen, value @ ..]) = rest.get(*klen as usize..)
        && *vlen < 0x80
        && value.len() == *vlen as usize
    {
        let k0 = kv.0 + 2;
        let v0 = k0 + u32::from(*klen) + 2;
        return ((k0, k0 + u32::from(*klen)), (v0, kv.1));
    }
    key_value_walk(body, kv.0)
}

/// [`key_value`]'s general case: every field of the `KeyValue` (`body`, at `base`) read.
fn key_value_walk(body: &[u8], base: u32) -> (R, R) {
    let kv = (base, base);
    let (mut key, mut value) = (kv, kv);
    let mut p = 0;
    while let Some((n, x)) = next_field(body, &mut p, kv.0) {
        match (n, x) {
            (1, V::Len(r)) => key = r,
            (2, V::Len(r)) => value = r,
            _ => {}
        }
    }
    (key, value)
}

fn scan<T: Lazy>(raw: &[u8]) -> Scan<T::Head> {
    let mut s = Scan { head: T::Head::default(), attrs: SmallVec::new(), contiguous: true, dups: false };
    let (mut pos, mut after_run) = (0, false);
    loop {
        let start = pos as u32;
        let Some((number, v)) = next_field(raw, &mut pos, 0) else { break };
        if number != T::ATTRS {
            after_run |= !s.attrs.is_empty();
            T::note(&mut s.head, raw, number, v);
            continue;
        }
        let V::Len(kv) = v else { continue };
        if after_run {
            s.contiguous = false;
        }
        let (key, value) = key_value(raw, kv);
        let k = &raw[key.0 as usize..key.1 as usize];
        s.dups |= s.attrs.iter().any(|a| &raw[a.key.0 as usize..a.key.1 as usize] == k);
        s.attrs.push(AttrAt { key, value, field: (start, pos as u32) });
    }
    s
}

/// The encoded value of the first attribute `key` of an item (pdata's `Map.Get`), found
/// without [`scan`]: only the attributes' keys are read.
fn lookup<T: Lazy>(raw: &[u8], key: &[u8]) -> Option<R> {
    lookup_in(raw, 0, T::ATTRS, key)
}

/// [`lookup`] in attributes field `field`, the walk starting at byte `from` (the end of
/// leading fields known not to be attributes: a span's ids and head, ADR 34).
pub(crate) fn lookup_in(raw: &[u8], from: usize, field: u32, key: &[u8]) -> Option<R> {
    // The tag of an attribute field when it takes one byte (0xff, no one-byte tag, when not).
    let attr_tag = if field < 16 { (field << 3 | 2) as u8 } else { 0xff };
    let mut pos = from;
    loop {
        let kv = match raw.get(pos..pos + 2) {
            // An attribute with a one-byte length (as every SDK writes them): its bounds read
            // here, as in the plans' scan.
            Some(&[tag, len]) if tag == attr_tag && len < 0x80 && pos + 2 + usize::from(len) <= raw.len() => {
                pos += 2 + usize::from(len);
                ((pos - usize::from(len)) as u32, pos as u32)
            }
            _ => match next_field(raw, &mut pos, 0)? {
                (number, V::Len(kv)) if number == field => kv,
                _ => continue,
            },
        };
        let body = &raw[kv.0 as usize..kv.1 as usize];
        // The layout every SDK writes (as in `key_value`): the key first, with a one-byte
        // length; a key that differs ends the look at this attribute there.
        if let [0x0a, klen, rest @ ..] = body
            && *klen < 0x80
            && let Some(k) = rest.get(..*klen as usize)
        {
            if !same(k, key) {
                continue;
            }
            if let Some([0x12, vlen, value @ ..]) = rest.get(*klen as usize..)
                && *vlen < 0x80
                && value.len() == *vlen as usize
            {
                return Some((kv.1 - u32::from(*vlen), kv.1));
            }
        }
        if let Some(value) = match_walk(raw, kv, key) {
            return Some(value);
        }
    }
}

/// The value of the `KeyValue` at `kv` when its key is `key`, every field read: a key that
/// differs ends the walk, the last value wins.
fn match_walk(raw: &[u8], kv: R, key: &[u8]) -> Option<R> {
    let (body, mut p) = (&raw[kv.0 as usize..kv.1 as usize], 0);
    let (mut matched, mut value) = (false, (kv.0, kv.0));
    while let Some((n, x)) = next_field(body, &mut p, kv.0) {
        match (n, x) {
            (1, V::Len(r)) => {
                matched = same(&raw[r.0 as usize..r.1 as usize], key);
                if !matched {
                    break;
                }
            }
            (2, V::Len(r)) => value = r,
            _ => {}
        }
    }
    matched.then_some(value)
}

/// `a == b`, inline for keys of up to 32 bytes (attribute keys mostly are): two or four
/// overlapping word loads a side instead of a call to `memcmp`.
#[inline(always)]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or([0; 4]));
    match n {
        0 => true,
        1..4 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        17..=32 => {
            word(a, 0) == word(b, 0)
                && word(a, 8) == word(b, 8)
                && word(a, n - 16) == word(b, n - 16)
                && word(a, n - 8) == word(b, n - 8)
        }
        _ => a == b,
    }
}

/// An attribute edit; key and value shared with the statement when they are literals.
#[derive(Debug)]
enum Edit {
    Set(Arc<str>, Arc<AnyValue>),
    /// Set to an encoded `AnyValue` of the item's own bytes (a copy of another attribute).
    SetRaw(Arc<str>, R),
    Delete(Arc<str>),
}

impl Edit {
    fn key(&self) -> &str {
        match self {
            Edit::Set(k, _) | Edit::SetRaw(k, _) | Edit::Delete(k) => k,
        }
    }
}

/// The value of an edit or of the item's bytes for one key, before the encoded attributes.
enum Found<'a> {
    Value(&'a AnyValue),
    Raw(R),
    Deleted,
}

pub struct Slot<T: Lazy> {
    raw: Bytes,
    scan: OnceCell<Scan<T::Head>>,
    decoded: OnceCell<Box<T>>,
    /// The bytes did not decode (a malformed nested value the receiver's checks do not reach):
    /// the processor refuses the request rather than send an emptied item.
    undecodable: Cell<bool>,
    /// Attribute lookups made without the scan (see [`Slot::find`]).
    lookups: Cell<u8>,
    edits: SmallVec<[Edit; 2]>,
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

/// pdata's `PutEmpty`-then-set: an existing key keeps its place, a new one goes last. The
/// attribute set is a key and a value, as the wire paths write it (the slot's encoding, wire
/// plans): a profiles dictionary index on the old `KeyValue` (`key_strindex`) is not kept.
fn put(attrs: &mut Vec<KeyValue>, key: &str, v: AnyValue) {
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => {
            kv.value = Some(v);
            kv.key_strindex = 0;
        }
        None => attrs.push(KeyValue { key: key.to_string(), value: Some(v), ..Default::default() }),
    }
}

/// pdata's `Map.Remove`: the last entry takes the removed one's place.
pub(crate) fn remove(attrs: &mut Vec<KeyValue>, key: &str) {
    if let Some(i) = attrs.iter().position(|kv| kv.key == key) {
        attrs.swap_remove(i);
    }
}

/// One attribute of the final list of an edited item: the item's own (an index into the
/// scan) or an edit's value.
#[derive(Clone, Copy)]
enum Src {
    Raw(u32),
    Edit(u32),
}

/// The final attribute list of an edited item, on the stack for up to 16 attributes.
type Order = SmallVec<[Src; 16]>;

fn kv_len(k: &str, value_len: usize) -> usize {
    wire::len_field_size(1, k.len()) + wire::len_field_size(2, value_len)
}

impl<T: Lazy> Slot<T> {
    pub fn new(raw: Bytes) -> Slot<T> {
        Slot {
            raw,
            scan: OnceCell::new(),
            decoded: OnceCell::new(),
            undecodable: Cell::new(false),
            lookups: Cell::new(0),
            edits: SmallVec::new(),
            dropped: false,
        }
    }

    fn scanned(&self) -> &Scan<T::Head> {
        self.scan.get_or_init(|| scan::<T>(&self.raw))
    }

    fn bytes(&self, r: R) -> &[u8] {
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
                    Edit::SetRaw(k, r) => {
                        let v = AnyValue::decode(self.bytes(*r)).unwrap_or_else(|_| {
                            self.undecodable.set(true);
                            AnyValue::default()
                        });
                        put(t.attrs_mut(), k, v)
                    }
                    Edit::Delete(k) => remove(t.attrs_mut(), k),
                }
            }
            Box::new(t)
        })
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.decoded();
        self.edits.clear();
        self.decoded.get_mut().expect("decoded above")
    }

    /// The latest edit of `key`, else its first occurrence in the bytes (pdata's `Map.Get`);
    /// `None` when the item does not have it.
    fn find(&self, key: &str) -> Option<Found<'_>> {
        if let Some(e) = self.edits.iter().rev().find(|e| e.key() == key) {
            return Some(match e {
                Edit::Set(_, v) => Found::Value(v),
                Edit::SetRaw(_, r) => Found::Raw(*r),
                Edit::Delete(_) => Found::Deleted,
            });
        }
        if self.scan.get().is_none() && self.lookups.get() == 0 {
            // A first lookup (often the only one, e.g. a filter's condition) reads the
            // attributes' keys without scanning the whole item.
            self.lookups.set(1);
            return lookup::<T>(&self.raw, key.as_bytes()).map(Found::Raw);
        }
        let a = self.scanned().attrs.iter().find(|a| self.bytes(a.key) == key.as_bytes())?;
        Some(Found::Raw(a.value))
    }

    /// One attribute, from the decoded item, the edits or the bytes.
    pub fn attr(&self, key: &str) -> Val<'_> {
        if let Some(t) = self.decoded.get() {
            return t.attrs().iter().find(|kv| kv.key == key).map_or(Val::Nil, |kv| Val::from_any(kv.value.as_ref()));
        }
        match self.find(key) {
            Some(Found::Value(v)) => Val::from_any(Some(v)),
            Some(Found::Raw(r)) => wire::AnyValue::parse(self.bytes(r)).map_or(Val::Nil, wire_val),
            Some(Found::Deleted) | None => Val::Nil,
        }
    }

    pub fn has_attr(&self, key: &str) -> bool {
        if let Some(t) = self.decoded.get() {
            return t.attrs().iter().any(|kv| kv.key == key);
        }
        matches!(self.find(key), Some(Found::Value(_) | Found::Raw(_)))
    }

    /// Decodes the item before an edit when its bytes have a key twice (see [`Scan::dups`]).
    fn settle(&mut self) {
        if self.decoded.get().is_none() && self.scanned().dups {
            self.get_mut();
        }
    }

    pub fn set_attr(&mut self, key: &str, v: AnyValue) {
        self.settle();
        match self.decoded.get_mut() {
            Some(t) => put(t.attrs_mut(), key, v),
            None => self.edits.push(Edit::Set(Arc::from(key), Arc::new(v))),
        }
    }

    /// [`Slot::set_attr`] with a key and value shared with the statement (no allocation).
    pub fn set_attr_shared(&mut self, key: &Arc<str>, v: &Arc<AnyValue>) {
        self.settle();
        match self.decoded.get_mut() {
            Some(t) => put(t.attrs_mut(), key, AnyValue::clone(v)),
            None => self.edits.push(Edit::Set(key.clone(), v.clone())),
        }
    }

    /// Sets `key` to a copy of attribute `from` (an empty value when there is none, as `set`
    /// passes nil on); the value is not decoded. False once the item is decoded (the caller
    /// takes the general path).
    pub fn copy_attr(&mut self, key: &Arc<str>, from: &str, nil: &Arc<AnyValue>) -> bool {
        self.settle();
        if self.decoded.get().is_some() {
            return false;
        }
        let e = match self.find(from) {
            // The value of an earlier edit: shared.
            Some(Found::Value(_)) => {
                let v = self.edits.iter().rev().find_map(|e| match e {
                    Edit::Set(k, x) if &**k == from => Some(x.clone()),
                    _ => None,
                });
                Edit::Set(key.clone(), v.unwrap_or_else(|| nil.clone()))
            }
            Some(Found::Raw(r)) => Edit::SetRaw(key.clone(), r),
            Some(Found::Deleted) | None => Edit::Set(key.clone(), nil.clone()),
        };
        self.edits.push(e);
        true
    }

    /// [`Slot::delete_attr`] with a key shared with the statement.
    pub fn delete_attr_shared(&mut self, key: &Arc<str>) {
        self.settle();
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
        self.settle();
        match self.decoded.get_mut() {
            Some(t) => remove(t.attrs_mut(), key),
            None => {
                if self.has_attr(key) {
                    self.edits.push(Edit::Delete(Arc::from(key)));
                }
            }
        }
    }

    /// The attribute list with the edits applied, into `out` (on the caller's stack).
    fn order(&self, out: &mut Order) {
        let attrs = &self.scanned().attrs;
        let key_of = |s: &Src| match *s {
            Src::Raw(i) => self.bytes(attrs[i as usize].key),
            Src::Edit(i) => self.edits[i as usize].key().as_bytes(),
        };
        out.clear();
        out.extend((0..attrs.len() as u32).map(Src::Raw));
        for (ei, e) in self.edits.iter().enumerate() {
            let at = out.iter().position(|o| key_of(o) == e.key().as_bytes());
            match (e, at) {
                (Edit::Delete(_), Some(i)) => {
                    out.swap_remove(i);
                }
                (Edit::Delete(_), None) => {}
                (_, Some(i)) => out[i] = Src::Edit(ei as u32),
                (_, None) => out.push(Src::Edit(ei as u32)),
            }
        }
    }

    /// The encoded size of one attribute of the final list, as field `T::ATTRS`.
    fn out_size(&self, s: Src) -> usize {
        match s {
            Src::Raw(i) => {
                let f = self.scanned().attrs[i as usize].field;
                (f.1 - f.0) as usize
            }
            Src::Edit(i) => match &self.edits[i as usize] {
                Edit::Set(k, v) => wire::len_field_size(T::ATTRS, kv_len(k, v.encoded_len())),
                Edit::SetRaw(k, r) => wire::len_field_size(T::ATTRS, kv_len(k, (r.1 - r.0) as usize)),
                Edit::Delete(_) => 0,
            },
        }
    }

    fn write_attr(&self, s: Src, out: &mut Vec<u8>) {
        let (k, len, value): (&str, usize, Option<&AnyValue>) = match s {
            Src::Raw(i) => {
                out.extend_from_slice(self.bytes(self.scanned().attrs[i as usize].field));
                return;
            }
            Src::Edit(i) => match &self.edits[i as usize] {
                Edit::Set(k, v) => (k, v.encoded_len(), Some(v)),
                Edit::SetRaw(k, r) => (k, (r.1 - r.0) as usize, None),
                Edit::Delete(_) => return,
            },
        };
        wire::put_tag(out, T::ATTRS, WireType::Len);
        wire::put_varint(out, kv_len(k, len) as u64);
        wire::put_len_field(out, 1, k.as_bytes());
        wire::put_tag(out, 2, WireType::Len);
        wire::put_varint(out, len as u64);
        match (value, s) {
            (Some(v), _) => v.encode(out).expect("a Vec grows"),
            (None, Src::Edit(i)) => {
                if let Edit::SetRaw(_, r) = &self.edits[i as usize] {
                    out.extend_from_slice(self.bytes(*r));
                }
            }
            (None, Src::Raw(_)) => {}
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
        let attrs = &self.scanned().attrs;
        let own: usize = attrs.iter().map(|a| (a.field.1 - a.field.0) as usize).sum();
        let mut order = Order::new();
        self.order(&mut order);
        self.raw.len() - own + order.iter().map(|o| self.out_size(*o)).sum::<usize>()
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
        let mut order = Order::new();
        self.order(&mut order);
        let s = self.scanned();
        // The attributes are usually one run of fields: the bytes around it and the item's own
        // attributes still in their place are copied as few ranges as possible.
        match (s.attrs.first(), s.attrs.last()) {
            (Some(first), Some(last)) if s.contiguous => {
                let flush = |out: &mut Vec<u8>, r: R| out.extend_from_slice(self.bytes(r));
                let mut pending: R = (0, first.field.0);
                for o in &order {
                    match *o {
                        Src::Raw(i) => {
                            let f = s.attrs[i as usize].field;
                            if f.0 == pending.1 {
                                pending.1 = f.1;
                            } else {
                                flush(out, pending);
                                pending = f;
                            }
                        }
                        Src::Edit(_) => {
                            flush(out, pending);
                            pending = (pending.1, pending.1);
                            self.write_attr(*o, out);
                        }
                    }
                }
                let rest: R = (last.field.1, self.raw.len() as u32);
                if rest.0 == pending.1 {
                    flush(out, (pending.0, rest.1));
                } else {
                    flush(out, pending);
                    flush(out, rest);
                }
            }
            _ => {
                // No attributes, or several runs: the other fields in order, the attributes
                // where the first one was (or before the first later field).
                let (mut pos, mut written) = (0, false);
                loop {
                    let start = pos;
                    let Some((number, _)) = next_field(&self.raw, &mut pos, 0) else { break };
                    if !written && number >= T::ATTRS {
                        order.iter().for_each(|o| self.write_attr(*o, out));
                        written = true;
                    }
                    if number != T::ATTRS {
                        out.extend_from_slice(&self.raw[start..pos]);
                    }
                }
                if !written {
                    order.iter().for_each(|o| self.write_attr(*o, out));
                }
            }
        }
    }
}

fn str_of(raw: &[u8], r: R) -> &str {
    std::str::from_utf8(&raw[r.0 as usize..r.1 as usize]).unwrap_or("")
}

fn range(raw: &[u8], r: R) -> &[u8] {
    &raw[r.0 as usize..r.1 as usize]
}

/// A span's scalar fields as the scan finds them.
#[derive(Default)]
pub struct SpanHead {
    trace_id: R,
    span_id: R,
    trace_state: R,
    parent_span_id: R,
    name: R,
    kind: i32,
    start: u64,
    end: u64,
    dropped_attributes_count: u32,
    dropped_events_count: u32,
    dropped_links_count: u32,
    flags: u32,
    status_code: i32,
    status_message: R,
    has_events: bool,
}

impl Lazy for Span {
    const ATTRS: u32 = 9;
    type Head = SpanHead;
    fn note(h: &mut SpanHead, raw: &[u8], number: u32, v: V) {
        match (number, v) {
            (1, V::Len(r)) => h.trace_id = r,
            (2, V::Len(r)) => h.span_id = r,
            (3, V::Len(r)) => h.trace_state = r,
            (4, V::Len(r)) => h.parent_span_id = r,
            (5, V::Len(r)) => h.name = r,
            (6, V::Varint(k)) => h.kind = k as i32,
            (7, V::I64(t)) => h.start = t,
            (8, V::I64(t)) => h.end = t,
            (10, V::Varint(n)) => h.dropped_attributes_count = n as u32,
            (11, V::Len(_)) => h.has_events = true,
            (12, V::Varint(n)) => h.dropped_events_count = n as u32,
            (14, V::Varint(n)) => h.dropped_links_count = n as u32,
            (15, V::Len(r)) => {
                let (body, mut p) = (range(raw, r), 0);
                while let Some((n, x)) = next_field(body, &mut p, r.0) {
                    match (n, x) {
                        (2, V::Len(m)) => h.status_message = m,
                        (3, V::Varint(c)) => h.status_code = c as i32,
                        _ => {}
                    }
                }
            }
            (16, V::I32(x)) => h.flags = x,
            _ => {}
        }
    }
    fn attrs(&self) -> &Vec<KeyValue> {
        &self.attributes
    }
    fn attrs_mut(&mut self) -> &mut Vec<KeyValue> {
        &mut self.attributes
    }
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
        let (h, raw) = (&self.scanned().head, &self.raw[..]);
        SpanView {
            trace_id: range(raw, h.trace_id),
            span_id: range(raw, h.span_id),
            parent_span_id: range(raw, h.parent_span_id),
            trace_state: str_of(raw, h.trace_state),
            name: str_of(raw, h.name),
            kind: h.kind,
            start: h.start,
            end: h.end,
            dropped_attributes_count: h.dropped_attributes_count,
            dropped_events_count: h.dropped_events_count,
            dropped_links_count: h.dropped_links_count,
            flags: h.flags,
            status_code: h.status_code,
            status_message: str_of(raw, h.status_message),
        }
    }

    /// The span's kind (without the view's other fields).
    pub fn kind(&self) -> i32 {
        match self.decoded.get() {
            Some(s) => s.kind,
            None => self.scanned().head.kind,
        }
    }

    /// Whether the span has events (without decoding it).
    pub fn has_events(&self) -> bool {
        match self.decoded.get() {
            Some(s) => !s.events.is_empty(),
            None => self.scanned().head.has_events,
        }
    }
}

/// A log record's scalar fields as the scan finds them.
#[derive(Default)]
pub struct LogHead {
    time: u64,
    observed: u64,
    severity_number: i32,
    severity_text: R,
    body: Option<R>,
    dropped_attributes_count: u32,
    flags: u32,
    trace_id: R,
    span_id: R,
    event_name: R,
}

impl Lazy for LogRecord {
    const ATTRS: u32 = 6;
    type Head = LogHead;
    fn note(h: &mut LogHead, _raw: &[u8], number: u32, v: V) {
        match (number, v) {
            (1, V::I64(t)) => h.time = t,
            (11, V::I64(t)) => h.observed = t,
            (2, V::Varint(n)) => h.severity_number = n as i32,
            (3, V::Len(r)) => h.severity_text = r,
            (5, V::Len(r)) => h.body = Some(r),
            (7, V::Varint(n)) => h.dropped_attributes_count = n as u32,
            (8, V::I32(x)) => h.flags = x,
            (9, V::Len(r)) => h.trace_id = r,
            (10, V::Len(r)) => h.span_id = r,
            (12, V::Len(r)) => h.event_name = r,
            _ => {}
        }
    }
    fn attrs(&self) -> &Vec<KeyValue> {
        &self.attributes
    }
    fn attrs_mut(&mut self) -> &mut Vec<KeyValue> {
        &mut self.attributes
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
        let (h, raw) = (&self.scanned().head, &self.raw[..]);
        LogView {
            time: h.time,
            observed: h.observed,
            severity_number: h.severity_number,
            severity_text: str_of(raw, h.severity_text),
            body: h.body.map(|r| wire::AnyValue::parse(range(raw, r)).map_or(Val::Nil, wire_val)),
            dropped_attributes_count: h.dropped_attributes_count,
            flags: h.flags,
            trace_id: range(raw, h.trace_id),
            span_id: range(raw, h.span_id),
            event_name: str_of(raw, h.event_name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Pv;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(Pv::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    #[test]
    fn key_value_fast_path_agrees_with_the_walk() {
        let long = "k".repeat(200);
        let mut cases: Vec<Vec<u8>> = vec![
            kv("a", "b").encode_to_vec(),
            kv("", "").encode_to_vec(),
            kv(&long, "v").encode_to_vec(),
            kv("k", &long).encode_to_vec(),
            KeyValue { key: "only".into(), value: None, ..Default::default() }.encode_to_vec(),
            KeyValue {
                key: String::new(),
                value: Some(AnyValue { value: Some(Pv::IntValue(300)) }),
                ..Default::default()
            }
            .encode_to_vec(),
            // Value first, key repeated, an unknown field, a truncated value.
            vec![0x12, 0x02, 0x08, 0x01, 0x0a, 0x01, b'x'],
            vec![0x0a, 0x01, b'x', 0x12, 0x00, 0x0a, 0x01, b'y'],
            vec![0x0a, 0x01, b'x', 0x12, 0x00, 0x18, 0x05],
            vec![0x0a, 0x01, b'x', 0x12, 0x05, 0x08],
            vec![0x0a, 0x05, b'x'],
            vec![],
        ];
        // Every prefix of a normal attribute too.
        let full = kv("http.route", "/api").encode_to_vec();
        cases.extend((0..full.len()).map(|n| full[..n].to_vec()));
        for body in cases {
            // At an offset, as inside an item.
            let mut raw = vec![0xff; 7];
            raw.extend_from_slice(&body);
            let r = (7, raw.len() as u32);
            assert_eq!(key_value(&raw, r), key_value_walk(&body, 7), "{body:02x?}");
        }
    }

    #[test]
    fn same_is_slice_equality() {
        let base: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..base.len() {
            let a = &base[..n];
            assert!(same(a, a));
            assert!(!same(a, &base[..n + 1]), "lengths differ: {n}");
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 0x20;
                assert!(!same(a, &b), "byte {i} of {n} differs");
            }
        }
    }

    /// `lookup_in` without its fast path: every field of each `KeyValue` read.
    fn lookup_walk(raw: &[u8], field: u32, key: &[u8]) -> Option<R> {
        let mut pos = 0;
        while let Some((number, v)) = next_field(raw, &mut pos, 0) {
            if let (true, V::Len(kv)) = (number == field, v)
                && let Some(value) = match_walk(raw, kv, key)
            {
                return Some(value);
            }
        }
        None
    }

    #[test]
    fn lookup_fast_path_finds_what_the_walk_finds() {
        let long = "k".repeat(200);
        let mut bodies: Vec<Vec<u8>> = vec![
            kv("a", "b").encode_to_vec(),
            kv("", "").encode_to_vec(),
            kv(&long, "v").encode_to_vec(),
            kv("a", &long).encode_to_vec(),
            KeyValue { key: "a".into(), value: None, ..Default::default() }.encode_to_vec(),
            vec![0x12, 0x02, 0x08, 0x01, 0x0a, 0x01, b'a'],
            vec![0x0a, 0x01, b'a', 0x12, 0x00, 0x0a, 0x01, b'y'],
            vec![0x0a, 0x01, b'a', 0x12, 0x00, 0x18, 0x05],
            vec![0x0a, 0x01, b'a', 0x12, 0x05, 0x08],
            vec![0x0a, 0x01, b'a', 0x0a, 0x01, b'b', 0x12, 0x00],
            vec![0x0a, 0x05, b'a'],
            vec![],
        ];
        let full = kv("a", "/api").encode_to_vec();
        bodies.extend((0..full.len()).map(|n| full[..n].to_vec()));
        // A span's ids as SDKs write them, with a parent and without, then its head (name,
        // kind, times) or not; and none of them. The walk starts after them.
        let ids = |parent: bool, head: bool| {
            let s = Span { trace_id: vec![9; 16], span_id: vec![8; 8], ..Default::default() };
            let s = Span { parent_span_id: if parent { vec![7; 8] } else { vec![] }, ..s };
            let h = Span { name: "GET /".into(), kind: 2, start_time_unix_nano: 1, end_time_unix_nano: 2, ..s.clone() };
            if head { h } else { s }.encode_to_vec()
        };
        for prefix in [ids(true, true), ids(false, true), ids(true, false), ids(false, false), vec![]] {
            for first in &bodies {
                for second in &bodies {
                    // A span: its ids, its name, two attributes, its kind.
                    let mut raw = prefix.clone();
                    raw.extend_from_slice(&[0x2a, 0x01, b'n']);
                    wire::put_len_field(&mut raw, 9, first);
                    wire::put_len_field(&mut raw, 9, second);
                    raw.extend_from_slice(&[0x30, 0x02]);
                    let at = wire::span_ids_prefix(&raw);
                    let from = wire::span_head(&raw, at).map_or(at, |h| h.end);
                    assert_eq!(from, prefix.len());
                    for key in [&b"a"[..], b"", long.as_bytes(), b"b", b"zz"] {
                        assert_eq!(
                            lookup_in(&raw, from, 9, key),
                            lookup_walk(&raw, 9, key),
                            "{first:02x?} {second:02x?} {key:?}"
                        );
                    }
                }
            }
        }
    }

    fn encoded(slot: &Slot<Span>) -> Span {
        let mut out = Vec::new();
        slot.encode_field(1, &mut out);
        assert_eq!(out.len(), wire::len_field_size(1, slot.encoded_len()));
        Span::decode_length_delimited(&out[1..]).expect("the slot encodes a span")
    }

    fn keys(s: &Span) -> Vec<(String, String)> {
        s.attributes
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Pv::StringValue(s)) => s.clone(),
                    None => "<empty>".into(),
                    Some(o) => format!("{o:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    fn edit(slot: &mut Slot<Span>) {
        let nil = Arc::new(AnyValue { value: None });
        assert!(slot.copy_attr(&Arc::from("x"), "b", &nil));
        assert!(slot.copy_attr(&Arc::from("a"), "c", &nil));
        slot.delete_attr("b");
        assert!(slot.copy_attr(&Arc::from("y"), "b", &nil), "b is deleted: y gets an empty value");
        assert!(slot.copy_attr(&Arc::from("z"), "x", &nil), "a copy of a copy");
    }

    #[test]
    fn copies_stay_encoded_and_agree_with_the_decoded_path() {
        let span = Span {
            name: "n".into(),
            kind: 2,
            attributes: vec![kv("a", "1"), kv("b", "2"), kv("c", "3")],
            ..Default::default()
        };
        let mut slot = Slot::<Span>::new(Bytes::from(span.encode_to_vec()));
        edit(&mut slot);
        // pdata: [a b c] -> x=b: [a b c x] -> a=c: [a(3) b c x] -> remove b: [a x c] -> y, z last.
        let want = [("a", "3"), ("x", "2"), ("c", "3"), ("y", "<empty>"), ("z", "2")];
        let want: Vec<(String, String)> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let got = encoded(&slot);
        assert_eq!(keys(&got), want);
        assert_eq!((got.name.as_str(), got.kind), ("n", 2));
        // The same edits, then the item decoded: the same attributes.
        assert_eq!(keys(slot.decoded()), want);
        assert_eq!(keys(&encoded(&slot)), want);
    }

    #[test]
    fn attributes_split_by_other_fields_are_written_in_one_run() {
        // name, attribute a, kind, attribute b: not one run.
        let mut raw = Vec::new();
        wire::put_len_field(&mut raw, 5, b"n");
        wire::put_len_field(&mut raw, 9, &kv("a", "1").encode_to_vec());
        wire::put_tag(&mut raw, 6, WireType::Varint);
        wire::put_varint(&mut raw, 3);
        wire::put_len_field(&mut raw, 9, &kv("b", "2").encode_to_vec());
        let mut slot = Slot::<Span>::new(Bytes::from(raw));
        assert_eq!(slot.kind(), 3);
        slot.set_attr("c", AnyValue { value: Some(Pv::StringValue("9".into())) });
        slot.delete_attr("a");
        let got = encoded(&slot);
        // [a b] -> [a b c] -> removing a moves the last entry (c) to its place.
        assert_eq!(keys(&got), [("c".to_string(), "9".to_string()), ("b".into(), "2".into())]);
        assert_eq!((got.name.as_str(), got.kind), ("n", 3));
    }

    #[test]
    fn the_first_of_a_duplicated_key_wins_with_or_without_the_scan() {
        // pdata's Map.Get (the collector's filter and transform; test_diff_processors.py
        // `test_duplicate_keys_first_occurrence_wins`).
        let span = Span { attributes: vec![kv("k", "first"), kv("o", "x"), kv("k", "last")], ..Default::default() };
        let slot = Slot::<Span>::new(Bytes::from(span.encode_to_vec()));
        assert!(slot.scan.get().is_none());
        assert_eq!(slot.attr("k"), Val::str("first"), "the first lookup reads the keys only");
        assert!(slot.scan.get().is_none());
        assert_eq!(slot.attr("k"), Val::str("first"), "the second one scans");
        assert!(slot.scan.get().is_some());
        assert_eq!(slot.attr("missing"), Val::Nil);
    }
}
