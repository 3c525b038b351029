//! Allocation-free reading and writing of the protobuf wire format, and the OTLP-specific walks
//! built on it: [`inspect`] validates a request's framing and counts its items, and
//! [`rewrite_resources`] replaces every `Resource` of a request while copying everything else
//! (scopes, spans, log records, data points) through as opaque bytes.
//!
//! Nothing here decodes a span, a log record or a data point into a struct. Errors carry a path
//! (`resource_spans[2].scope_spans[0].spans[7]`) so that a client learns what was wrong; the
//! path is only built on the error path.

use crate::Signal;
use std::fmt;

/// A protobuf wire type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireType {
    Varint = 0,
    I64 = 1,
    Len = 2,
    I32 = 5,
}

/// One field's value as it sits on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    I64(u64),
    Len(&'a [u8]),
    I32(u32),
}

/// One field: its number, its value and the raw bytes of the whole field (tag included), so
/// that a field can be copied through untouched.
#[derive(Clone, Copy, Debug)]
pub struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
    pub raw: &'a [u8],
}

/// What was wrong with the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireErrorKind {
    Truncated,
    VarintTooLong,
    InvalidWireType(u8),
    InvalidFieldNumber,
    /// A field that must be length-delimited (a message or string) had another wire type.
    UnexpectedWireType {
        field: u32,
    },
    /// An id field had the wrong length.
    InvalidIdLength {
        name: &'static str,
        expected: usize,
        got: usize,
    },
    InvalidUtf8,
    TooDeep,
}

impl fmt::Display for WireErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireErrorKind::Truncated => f.write_str("truncated message (a length or varint runs past the end)"),
            WireErrorKind::VarintTooLong => f.write_str("varint longer than 10 bytes"),
            WireErrorKind::InvalidWireType(t) => write!(f, "invalid wire type {t}"),
            WireErrorKind::InvalidFieldNumber => f.write_str("invalid field number 0"),
            WireErrorKind::UnexpectedWireType { field } => {
                write!(f, "field {field} must be length-delimited (a message or string)")
            }
            WireErrorKind::InvalidIdLength { name, expected, got } => {
                write!(f, "{name} must be {expected} bytes (or empty), got {got}")
            }
            WireErrorKind::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            WireErrorKind::TooDeep => f.write_str("value nested too deeply"),
        }
    }
}

/// A wire error with the path of the element it was found in. Boxed, so that the `Result`s
/// of the hot walk stay small; it is only allocated on the error path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    inner: Box<ErrorInner>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ErrorInner {
    kind: WireErrorKind,
    /// Path segments, outermost first: (`resource_spans`, 2), (`scope_spans`, 0), ...
    path: Vec<(&'static str, usize)>,
}

impl WireError {
    #[cold]
    pub fn new(kind: WireErrorKind) -> Self {
        WireError { inner: Box::new(ErrorInner { kind, path: Vec::new() }) }
    }

    pub fn kind(&self) -> &WireErrorKind {
        &self.inner.kind
    }

    /// Prefixes a path segment (called while unwinding, innermost first).
    #[cold]
    pub fn at(mut self, name: &'static str, index: usize) -> Self {
        self.inner.path.insert(0, (name, index));
        self
    }

    /// The path as text, e.g. `resource_spans[2].scope_spans[0]`.
    pub fn path(&self) -> String {
        let mut s = String::new();
        for (i, (name, idx)) in self.inner.path.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            s.push_str(name);
            s.push('[');
            s.push_str(&idx.to_string());
            s.push(']');
        }
        s
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inner.path.is_empty() {
            write!(f, "invalid protobuf: {}", self.inner.kind)
        } else {
            write!(f, "invalid protobuf at {}: {}", self.path(), self.inner.kind)
        }
    }
}

impl std::error::Error for WireError {}

/// Reads a varint at `*pos`, advancing it.
#[inline]
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    if let Some(&b) = buf.get(*pos)
        && b < 0x80
    {
        *pos += 1;
        return Ok(u64::from(b));
    }
    read_varint_long(buf, pos)
}

/// [`read_varint`] past its one-byte fast path (kept out of line so that path inlines).
#[inline(never)]
fn read_varint_long(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut result: u64 = 0;
    let mut shift = 0u32;
    loop {
        let Some(&b) = buf.get(*pos) else {
            return Err(WireError::new(WireErrorKind::Truncated));
        };
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err(WireError::new(WireErrorKind::VarintTooLong));
        }
        result |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(result);
        }
        shift += 7;
        if shift > 63 {
            return Err(WireError::new(WireErrorKind::VarintTooLong));
        }
    }
}

/// Iterates over the fields of one message.
#[derive(Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    /// The offset in the message just past the last field read (where the next one starts):
    /// a length-delimited field's bytes `b` end here, so they are at `position() - b.len()`.
    pub fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    fn read_field(&mut self) -> Result<Field<'a>, WireError> {
        let start = self.pos;
        let key = read_varint(self.buf, &mut self.pos)?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(WireError::new(WireErrorKind::InvalidFieldNumber));
        }
        let value = match (key & 7) as u8 {
            0 => Value::Varint(read_varint(self.buf, &mut self.pos)?),
            1 => {
                let end = self.pos.checked_add(8).filter(|&e| e <= self.buf.len());
                let end = end.ok_or_else(|| WireError::new(WireErrorKind::Truncated))?;
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[self.pos..end]);
                self.pos = end;
                Value::I64(u64::from_le_bytes(b))
            }
            2 => {
                let len = read_varint(self.buf, &mut self.pos)?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| self.pos.checked_add(l))
                    .filter(|&e| e <= self.buf.len())
                    .ok_or_else(|| WireError::new(WireErrorKind::Truncated))?;
                let v = &self.buf[self.pos..end];
                self.pos = end;
                Value::Len(v)
            }
            5 => {
                let end = self.pos.checked_add(4).filter(|&e| e <= self.buf.len());
                let end = end.ok_or_else(|| WireError::new(WireErrorKind::Truncated))?;
                let mut b = [0u8; 4];
                b.copy_from_slice(&self.buf[self.pos..end]);
                self.pos = end;
                Value::I32(u32::from_le_bytes(b))
            }
            t => return Err(WireError::new(WireErrorKind::InvalidWireType(t))),
        };
        Ok(Field { number: number as u32, value, raw: &self.buf[start..self.pos] })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let r = self.read_field();
        if r.is_err() {
            // Stop after the first error.
            self.pos = self.buf.len();
        }
        Some(r)
    }
}

/// Returns the bytes of a length-delimited field, or an error naming the field.
#[inline]
pub fn expect_len<'a>(field: &Field<'a>) -> Result<&'a [u8], WireError> {
    match field.value {
        Value::Len(b) => Ok(b),
        _ => Err(WireError::new(WireErrorKind::UnexpectedWireType { field: field.number })),
    }
}

/// Validates that every field of `buf` is well formed, without looking inside.
#[inline]
pub fn check_fields(buf: &[u8]) -> Result<(), WireError> {
    for f in Fields::new(buf) {
        f?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writing

#[inline]
pub fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub fn put_tag(out: &mut Vec<u8>, field: u32, wt: WireType) {
    put_varint(out, (u64::from(field) << 3) | wt as u64);
}

/// The encoded size of a length-delimited field with `len` bytes of content.
#[inline]
pub fn len_field_size(field: u32, len: usize) -> usize {
    varint_len(u64::from(field) << 3) + varint_len(len as u64) + len
}

#[inline]
pub fn put_len_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, WireType::Len);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends one `KeyValue` with a string value as field `field` of the enclosing message
/// (field 1 = `Resource.attributes`).
pub fn put_string_attribute(out: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    let any_len = len_field_size(1, value.len());
    let kv_len = len_field_size(1, key.len()) + len_field_size(2, any_len);
    put_tag(out, field, WireType::Len);
    put_varint(out, kv_len as u64);
    put_len_field(out, 1, key.as_bytes());
    put_tag(out, 2, WireType::Len);
    put_varint(out, any_len as u64);
    put_len_field(out, 1, value.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// OTLP structure

/// An `AnyValue` as it sits on the wire (nested values stay encoded).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AnyValue<'a> {
    Empty,
    String(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// An encoded `ArrayValue`.
    Array(&'a [u8]),
    /// An encoded `KeyValueList`.
    KvList(&'a [u8]),
}

impl<'a> AnyValue<'a> {
    /// Every string in it (a string value the sender set twice included) must be UTF-8.
    pub fn parse(buf: &'a [u8]) -> Result<AnyValue<'a>, WireError> {
        Ok(match parse_any::<&str>(buf)? {
            Val::Str(s) => AnyValue::String(s),
            Val::Other(v) => v,
        })
    }

    /// The value as a string when it is a string.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            AnyValue::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One attribute of a `Resource` (or any message whose field `n` holds `KeyValue`s).
#[derive(Clone, Copy, Debug)]
pub struct Attribute<'a> {
    pub key: &'a str,
    pub value: AnyValue<'a>,
    /// The whole encoded field (tag, length and `KeyValue`), to copy it through.
    pub raw: &'a [u8],
}

/// Iterates over the `KeyValue`s in field `field` of `msg` (e.g. `Resource.attributes` = 1).
pub fn attributes(msg: &[u8], field: u32) -> impl Iterator<Item = Result<Attribute<'_>, WireError>> {
    Fields::new(msg).filter_map(move |f| match f {
        Err(e) => Some(Err(e)),
        Ok(f) if f.number != field => None,
        Ok(f) => Some(parse_key_value(&f)),
    })
}

fn parse_key_value<'a>(f: &Field<'a>) -> Result<Attribute<'a>, WireError> {
    let (key, value) = key_value(expect_len(f)?)?;
    Ok(Attribute { key, value, raw: f.raw })
}

/// The key and value of one encoded `KeyValue` message (the bytes inside its field). Every
/// key and string in it (one the sender set twice included) must be UTF-8.
pub fn key_value(kv: &[u8]) -> Result<(&str, AnyValue<'_>), WireError> {
    let (key, value) = key_value_as::<&str>(kv)?;
    Ok((
        key,
        match value {
            Val::Str(s) => AnyValue::String(s),
            Val::Other(v) => v,
        },
    ))
}

/// [`key_value`] without checking that the key and strings are UTF-8: for writers that copy
/// their bytes as they are (ClickHouse `String`s are bytes).
pub fn key_value_raw(kv: &[u8]) -> Result<(&[u8], RawValue<'_>), WireError> {
    key_value_as::<&[u8]>(kv)
}

/// The text of a string field: checked as UTF-8 (`&str`) or taken as it is (`&[u8]`).
trait Text<'a>: Sized + Copy {
    fn read(b: &'a [u8]) -> Result<Self, WireError>;
}

impl<'a> Text<'a> for &'a str {
    #[inline]
    fn read(b: &'a [u8]) -> Result<Self, WireError> {
        std::str::from_utf8(b).map_err(|_| WireError::new(WireErrorKind::InvalidUtf8))
    }
}

impl<'a> Text<'a> for &'a [u8] {
    #[inline]
    fn read(b: &'a [u8]) -> Result<Self, WireError> {
        Ok(b)
    }
}

/// An `AnyValue` whose string, if it is one, is read as `S`.
#[derive(Clone, Copy, Debug)]
pub enum Val<'a, S> {
    /// A `string_value`.
    Str(S),
    /// Any other value (`Empty` when none is set).
    Other(AnyValue<'a>),
}

/// An `AnyValue` whose string, if it is one, has not been checked for UTF-8.
pub type RawValue<'a> = Val<'a, &'a [u8]>;

#[inline]
fn parse_any<'a, S: Text<'a>>(buf: &'a [u8]) -> Result<Val<'a, S>, WireError> {
    let mut v = Val::Other(AnyValue::Empty);
    for f in Fields::new(buf) {
        let f = f?;
        v = match (f.number, f.value) {
            (1, Value::Len(b)) => Val::Str(S::read(b)?),
            (2, Value::Varint(b)) => Val::Other(AnyValue::Bool(b != 0)),
            (3, Value::Varint(i)) => Val::Other(AnyValue::Int(i as i64)),
            (4, Value::I64(d)) => Val::Other(AnyValue::Double(f64::from_bits(d))),
            (5, Value::Len(b)) => Val::Other(AnyValue::Array(b)),
            (6, Value::Len(b)) => Val::Other(AnyValue::KvList(b)),
            (7, Value::Len(b)) => Val::Other(AnyValue::Bytes(b)),
            (1 | 5 | 6 | 7, _) => {
                return Err(WireError::new(WireErrorKind::UnexpectedWireType { field: f.number }));
            }
            _ => v,
        };
    }
    Ok(v)
}

#[inline]
fn key_value_as<'a, S: Text<'a>>(kv: &'a [u8]) -> Result<(S, Val<'a, S>), WireError> {
    // What every SDK writes: the key (field 1), then the value (field 2), each with a one-byte
    // length, filling the message exactly. Read that layout directly; anything else (repeated
    // or unknown fields, longer lengths) takes the field walk.
    if let [0x0a, kl, rest @ ..] = kv
        && *kl < 0x80
        && let Some((key, rest)) = rest.split_at_checked(usize::from(*kl))
        && let [0x12, vl, value @ ..] = rest
        && *vl < 0x80
        && usize::from(*vl) == value.len()
    {
        // The key first: the walk reads (and refuses) it before the value.
        let key = S::read(key)?;
        let value = match value {
            [0x0a, sl, s @ ..] if *sl < 0x80 && usize::from(*sl) == s.len() => Val::Str(S::read(s)?),
            _ => parse_any::<S>(value)?,
        };
        return Ok((key, value));
    }
    key_value_fields(kv)
}

/// [`key_value_as`] field by field, whatever the layout.
fn key_value_fields<'a, S: Text<'a>>(kv: &'a [u8]) -> Result<(S, Val<'a, S>), WireError> {
    let mut key = S::read(&[])?;
    let mut value = Val::Other(AnyValue::Empty);
    for g in Fields::new(kv) {
        let g = g?;
        match g.number {
            1 => key = S::read(expect_len(&g)?)?,
            // A repeated message field merges (protobuf semantics): a later `AnyValue` that
            // sets no value keeps the earlier one, as every other decoder reads it.
            2 => match parse_any::<S>(expect_len(&g)?)? {
                Val::Other(AnyValue::Empty) => {}
                v => value = v,
            },
            _ => {}
        }
    }
    Ok((key, value))
}

/// The names of the levels of a request of each signal.
struct Shape {
    resource_list: &'static str,
    scope_list: &'static str,
    item_list: &'static str,
}

fn shape(signal: Signal) -> Shape {
    match signal {
        Signal::Traces => Shape { resource_list: "resource_spans", scope_list: "scope_spans", item_list: "spans" },
        Signal::Metrics => {
            Shape { resource_list: "resource_metrics", scope_list: "scope_metrics", item_list: "metrics" }
        }
        Signal::Logs => Shape { resource_list: "resource_logs", scope_list: "scope_logs", item_list: "log_records" },
    }
}

/// What [`inspect`] found in a request whose framing is valid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Valid spans, metric data points or log records.
    pub items: u64,
    /// `Resource*` entries.
    pub resources: u64,
    /// Items (spans, metrics, log records) that are invalid on their own (bad id length,
    /// broken fields): the caller drops them with [`retain_items`] and reports a partial success.
    pub invalid_items: u64,
    /// The first invalid item's error, with its path.
    pub first_invalid: Option<WireError>,
}

/// Validates the framing of an OTLP export request down to each item's own fields, and counts
/// its items (spans, data points, log records) and resources. Ids (`trace_id`, `span_id`) must
/// have their proper length. Field values below the item's first level are not looked at.
///
/// Allocation-free when every item is valid.
pub fn inspect(signal: Signal, buf: &[u8]) -> Result<Summary, WireError> {
    if let Some((items, resources)) = inspect_fast(signal, buf, None) {
        return Ok(Summary { items, resources, invalid_items: 0, first_invalid: None });
    }
    inspect_detailed(signal, buf)
}

/// [`inspect`], which also writes to `entries` the items of each `Resource*` entry in order
/// (what [`count_items`] counts), when the request has more than one entry and no invalid
/// item; otherwise `entries` is left empty. The receivers' check: the counts go with the
/// payload (`Payload::with_entry_items`) so that per-resource accounting does not walk the
/// items again.
pub fn inspect_entries(signal: Signal, buf: &[u8], entries: &mut Vec<u64>) -> Result<Summary, WireError> {
    entries.clear();
    if let Some((items, resources)) = inspect_fast(signal, buf, Some(entries)) {
        return Ok(Summary { items, resources, invalid_items: 0, first_invalid: None });
    }
    entries.clear();
    inspect_detailed(signal, buf)
}

/// The skim of a whole request: `Some((items, resources))` exactly when [`inspect_detailed`]
/// would find the request valid with no invalid item. With `entries`, each entry's items are
/// pushed to it once there are two entries (one entry alone pushes nothing).
fn inspect_fast(signal: Signal, buf: &[u8], mut entries: Option<&mut Vec<u64>>) -> Option<(u64, u64)> {
    let (mut items, mut resources) = (0u64, 0u64);
    let mut first = 0u64;
    let mut p = 0;
    while p < buf.len() {
        let (f, wt, rx) = skim_field(buf, &mut p)?;
        if f != 1 {
            continue;
        }
        if wt != 2 {
            return None;
        }
        resources += 1;
        let before = items;
        let mut q = 0;
        while q < rx.len() {
            let (g, w, v) = skim_field(rx, &mut q)?;
            match g {
                1 if w != 2 || !skim_resource(v) => return None,
                2 => {
                    if w != 2 {
                        return None;
                    }
                    let mut r = 0;
                    while r < v.len() {
                        let (h, w2, x) = skim_field(v, &mut r)?;
                        match h {
                            1 if w2 != 2 || !skim(x) => return None,
                            2 if w2 != 2 => return None,
                            2 => items += skim_item(signal, x)?,
                            _ => {}
                        }
                    }
                }
                3 => {
                    if w != 2 {
                        return None;
                    }
                    if !utf8_ok(v) {
                        return None;
                    }
                }
                _ => {}
            }
        }
        if let Some(e) = entries.as_deref_mut() {
            let n = items - before;
            match resources {
                1 => first = n,
                2 => e.extend([first, n]),
                _ => e.push(n),
            }
        }
    }
    Some((items, resources))
}

/// The walk that finds precisely what is wrong, and which items are invalid.
#[cold]
fn inspect_detailed(signal: Signal, buf: &[u8]) -> Result<Summary, WireError> {
    let sh = shape(signal);
    let mut sum = Summary::default();
    let mut ri = 0usize;
    for f in Fields::new(buf) {
        let f = f?;
        if f.number != 1 {
            continue;
        }
        let rx = expect_len(&f).map_err(|e| e.at(sh.resource_list, ri))?;
        let had_invalid = sum.first_invalid.is_some();
        inspect_resource_x(signal, &sh, rx, &mut sum).map_err(|e| e.at(sh.resource_list, ri))?;
        if !had_invalid {
            sum.first_invalid = sum.first_invalid.take().map(|e| e.at(sh.resource_list, ri));
        }
        sum.resources += 1;
        ri += 1;
    }
    Ok(sum)
}

fn inspect_resource_x(signal: Signal, sh: &Shape, rx: &[u8], sum: &mut Summary) -> Result<(), WireError> {
    let mut si = 0usize;
    for f in Fields::new(rx) {
        let f = f?;
        match f.number {
            1 => {
                let r = expect_len(&f)?;
                for a in attributes(r, 1) {
                    a.map_err(|e| e.at("resource", 0))?;
                }
            }
            2 => {
                let sx = expect_len(&f).map_err(|e| e.at(sh.scope_list, si))?;
                let had_invalid = sum.first_invalid.is_some();
                inspect_scope_x(signal, sh, sx, sum).map_err(|e| e.at(sh.scope_list, si))?;
                if !had_invalid {
                    sum.first_invalid = sum.first_invalid.take().map(|e| e.at(sh.scope_list, si));
                }
                si += 1;
            }
            3 => {
                let s = expect_len(&f)?;
                std::str::from_utf8(s).map_err(|_| WireError::new(WireErrorKind::InvalidUtf8))?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn inspect_scope_x(signal: Signal, sh: &Shape, sx: &[u8], sum: &mut Summary) -> Result<(), WireError> {
    let mut ii = 0usize;
    for f in Fields::new(sx) {
        let f = f?;
        match f.number {
            1 => check_fields(expect_len(&f)?).map_err(|e| e.at("scope", 0))?,
            2 => {
                let item = expect_len(&f).map_err(|e| e.at(sh.item_list, ii))?;
                match inspect_item(signal, item) {
                    Ok(n) => sum.items += n,
                    Err(e) => {
                        sum.invalid_items += 1;
                        if sum.first_invalid.is_none() {
                            // Paths are completed by the callers' `at` only on the error path;
                            // here the item path is recorded relative to its scope.
                            sum.first_invalid = Some(e.at(sh.item_list, ii));
                        }
                    }
                }
                ii += 1;
            }
            _ => {}
        }
    }
    Ok(())
}

#[inline]
fn check_id(f: &Field<'_>, name: &'static str, expected: usize) -> Result<(), WireError> {
    let b = expect_len(f)?;
    if !b.is_empty() && b.len() != expected {
        return Err(WireError::new(WireErrorKind::InvalidIdLength { name, expected, got: b.len() }));
    }
    Ok(())
}

/// Validates one span / metric / log record and returns how many items it counts for. The
/// fast skim decides for valid items; only an invalid item is walked again with [`Fields`] to
/// say precisely what is wrong.
#[inline]
fn inspect_item(signal: Signal, item: &[u8]) -> Result<u64, WireError> {
    if let Some(n) = skim_item(signal, item) {
        return Ok(n);
    }
    inspect_item_detailed(signal, item)
}

// The skim: the same checks as `inspect_item_detailed`, as tight loops over the bytes that
// build no `Field`s and no errors (about a third of the receive path's CPU went to building
// them). `None` means "invalid somewhere"; the detailed walk then finds out where.

/// Reads a varint at `p`: one- and two-byte varints (tags, most lengths) inline.
#[inline(always)]
fn varint_at(buf: &[u8], p: usize) -> Option<(u64, usize)> {
    let b0 = *buf.get(p)?;
    if b0 < 0x80 {
        return Some((u64::from(b0), p + 1));
    }
    let b1 = *buf.get(p + 1)?;
    if b1 < 0x80 {
        return Some((u64::from(b0 & 0x7f) | (u64::from(b1) << 7), p + 2));
    }
    let mut pos = p;
    read_varint(buf, &mut pos).ok().map(|v| (v, pos))
}

/// One field on the wire at `p`, which moves past it: (field number, wire type, the value's
/// bytes for LEN fields, empty for the others). `None` for malformed bytes (`p` unmoved). The
/// reader of every hot walk that needs no [`Field`] or error detail.
#[inline(always)]
pub fn skim_field<'a>(buf: &'a [u8], p: &mut usize) -> Option<(u64, u8, &'a [u8])> {
    let (tag, q) = varint_at(buf, *p)?;
    let field = tag >> 3;
    if field == 0 || field > u64::from(u32::MAX >> 3) {
        return None;
    }
    let wt = (tag & 7) as u8;
    let (value, end): (&[u8], usize) = match wt {
        0 => {
            let (_, r) = varint_at(buf, q)?;
            (&[], r)
        }
        1 => (&[], q.checked_add(8).filter(|&e| e <= buf.len())?),
        2 => {
            let (len, r) = varint_at(buf, q)?;
            let end = usize::try_from(len).ok().and_then(|l| r.checked_add(l)).filter(|&e| e <= buf.len())?;
            (&buf[r..end], end)
        }
        5 => (&[], q.checked_add(4).filter(|&e| e <= buf.len())?),
        _ => return None,
    };
    *p = end;
    Some((field, wt, value))
}

/// Every field well formed.
#[inline]
fn skim(buf: &[u8]) -> bool {
    skim_each(buf, |_, _, _| true)
}

/// Every field of `buf` well formed and accepted by `ok(field, wire type, LEN value)`.
#[inline(always)]
fn skim_each(buf: &[u8], mut ok: impl FnMut(u64, u8, &[u8]) -> bool) -> bool {
    let mut p = 0;
    while p < buf.len() {
        match skim_field(buf, &mut p) {
            Some((field, wt, value)) if ok(field, wt, value) => {}
            _ => return false,
        }
    }
    true
}

/// Whether `b` is UTF-8. ASCII (nearly every key and most values) is decided inline, eight
/// bytes at a time; the rest goes to the standard library's check. The skim checks every
/// resource attribute's key and string value of every request (a call to `from_utf8` each was
/// about 6% of the Kafka exporter's CPU).
#[inline(always)]
pub fn utf8_ok(b: &[u8]) -> bool {
    let (words, rest) = b.as_chunks::<8>();
    let mut acc = 0u64;
    for w in words {
        acc |= u64::from_ne_bytes(*w);
    }
    for &x in rest {
        acc |= u64::from(x);
    }
    acc & 0x8080_8080_8080_8080 == 0 || std::str::from_utf8(b).is_ok()
}

/// A `Resource` as [`attributes`] reads it: every field well formed, and each attribute
/// (field 1) a `KeyValue` whose key is UTF-8 and whose value an `AnyValue` that
/// [`AnyValue::parse`] accepts. The same checks without building `Field`s or `Attribute`s
/// (resource validation was about a tenth of the receive path's CPU).
#[inline]
fn skim_resource(resource: &[u8]) -> bool {
    skim_each(resource, |field, wt, kv| field != 1 || (wt == 2 && skim_key_value(kv)))
}

#[inline]
fn skim_key_value(kv: &[u8]) -> bool {
    skim_each(kv, |field, wt, v| match field {
        1 => wt == 2 && utf8_ok(v),
        2 => wt == 2 && skim_any_value(v),
        _ => true,
    })
}

#[inline]
fn skim_any_value(v: &[u8]) -> bool {
    skim_each(v, |field, wt, x| match field {
        1 => wt == 2 && utf8_ok(x),
        5..=7 => wt == 2,
        _ => true,
    })
}

#[inline]
fn skim_item(signal: Signal, item: &[u8]) -> Option<u64> {
    match signal {
        // trace_id (16 bytes), span_id and parent_span_id (8); a log record's trace_id and
        // span_id.
        Signal::Traces => {
            let ids = span_ids_prefix(item);
            skim_ids(item, span_head(item, ids).map_or(ids, |h| h.end), 1, [2, 4]).then_some(1)
        }
        Signal::Logs => skim_ids(item, 0, 9, [10, 10]).then_some(1),
        Signal::Metrics => {
            let mut points = 0u64;
            let mut p = 0;
            while p < item.len() {
                let (field, wt, data) = skim_field(item, &mut p)?;
                if matches!(field, 5 | 7 | 9 | 10 | 11) {
                    if wt != 2 {
                        return None;
                    }
                    let mut q = 0;
                    while q < data.len() {
                        let (f, w, point) = skim_field(data, &mut q)?;
                        if f == 1 {
                            if w != 2 || !skim(point) {
                                return None;
                            }
                            points += 1;
                        }
                    }
                }
            }
            Some(points)
        }
    }
}

/// [`skim`] of a span or log record: every field well formed, the id fields (`long`: 16 bytes,
/// `short`: 8) LEN and empty or of their length. Fields 1-15 (one-byte tags: every field of
/// a span or log record but a span's `flags`) are read inline without going through
/// [`skim_field`]; the skim of every item of every request is the receive path's largest
/// cost of its own. The walk starts at `from`, the end of fields already known to be well
/// formed and of their proper length (a span's ids and head, [`span_ids_prefix`] and
/// [`span_head`]).
#[inline(always)]
fn skim_ids(item: &[u8], from: usize, long: u64, short: [u64; 2]) -> bool {
    let mut p = from;
    while p < item.len() {
        let tag = item[p];
        if tag >= 0x80 {
            // A field numbered 16 or more.
            match skim_field(item, &mut p) {
                Some((field, wt, v))
                    if !(field == long || short.contains(&field))
                        || (wt == 2 && id_len_ok(field, v.len() as u64, long)) => {}
                _ => return false,
            }
            continue;
        }
        let field = u64::from(tag >> 3);
        if field == 0 {
            return false;
        }
        let is_id = field == long || field == short[0] || field == short[1];
        p = match tag & 7 {
            2 => {
                let Some((len, r)) = varint_at(item, p + 1) else { return false };
                let Some(end) = usize::try_from(len).ok().and_then(|l| r.checked_add(l)).filter(|&e| e <= item.len())
                else {
                    return false;
                };
                if is_id && !id_len_ok(field, len, long) {
                    return false;
                }
                end
            }
            _ if is_id => return false,
            0 => match varint_at(item, p + 1) {
                Some((_, r)) => r,
                None => return false,
            },
            1 if p + 9 <= item.len() => p + 9,
            5 if p + 5 <= item.len() => p + 5,
            _ => return false,
        };
    }
    true
}

/// How many leading bytes of an encoded `Span` are its ids in the layout every SDK writes:
/// `trace_id` (tag, length 16, 16 bytes), then `span_id` (tag, length 8, 8 bytes), then
/// `parent_span_id` (the same) when it comes next; 0 when the span does not begin so.
///
/// Eight bytes compared at fixed places: walking the same fields one by one is a chain of
/// dependent loads (each field's place is read from the one before), and these fields are a
/// quarter of a small span's. The receive check and the wire plans start after them.
#[inline(always)]
pub fn span_ids_prefix(span: &[u8]) -> usize {
    match span {
        [0x0a, 16, ids @ ..] if ids.get(16..18) == Some(&[0x12, 8][..]) => match ids.get(26..28) {
            Some(&[0x22, 8]) if ids.len() >= 36 => 38,
            _ if ids.len() >= 26 => 28,
            _ => 0,
        },
        _ => 0,
    }
}

/// A span's `name`, `kind`, `start_time_unix_nano` and `end_time_unix_nano` in the layout
/// every SDK writes, after its ids ([`span_ids_prefix`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanHead {
    /// The name's bytes, as offsets in the span.
    pub name: (usize, usize),
    pub kind: u8,
    /// Where the four fields end.
    pub end: usize,
}

/// The four fields after a span's ids at `p` ([`span_ids_prefix`]) when they are as every
/// SDK writes them: `name` with a one-byte length, `kind` as a one-byte varint, then the two
/// times as fixed64. `None` otherwise (the walk then reads them one by one).
///
/// The fields are checked at places computed from the name's length alone: one dependent
/// load instead of four fields read in turn.
#[inline(always)]
pub fn span_head(span: &[u8], p: usize) -> Option<SpanHead> {
    let (&tag, &n) = (span.get(p)?, span.get(p + 1)?);
    if tag != 0x2a || n >= 0x80 {
        return None;
    }
    let q = p + 2 + usize::from(n);
    // [0x30, kind] [0x39, 8 bytes] [0x41, 8 bytes]
    match span.get(q..q + 20)? {
        &[0x30, kind, 0x39, _, _, _, _, _, _, _, _, 0x41, ..] if kind < 0x80 => {
            Some(SpanHead { name: (p + 2, q), kind, end: q + 20 })
        }
        _ => None,
    }
}

/// An id's length: empty, or 16 bytes for the `long` field (trace id), 8 for the others.
#[inline(always)]
fn id_len_ok(field: u64, len: u64, long: u64) -> bool {
    len == 0 || len == if field == long { 16 } else { 8 }
}

/// A `sint32` read as a varint, decoded (zigzag).
pub fn zigzag32(n: u64) -> i32 {
    let n = n as u32;
    ((n >> 1) as i32) ^ -((n & 1) as i32)
}

/// The items of one encoded `ScopeX` message (the bytes inside its field): what is left out
/// when the scope cannot be read.
pub fn scope_items(signal: Signal, scope: &[u8]) -> u64 {
    let mut entry = Vec::with_capacity(scope.len() + 8);
    put_len_field(&mut entry, 2, scope);
    count_items(signal, &entry)
}

/// The items (spans, metric data points, log records) of one `Resource*` entry whose framing
/// [`inspect`] accepted: field headers are read, item bodies skipped (for metrics, each
/// metric's data is read down to its points' headers). Malformed bytes end the count.
pub fn count_items(signal: Signal, entry: &[u8]) -> u64 {
    let mut n = 0u64;
    let mut p = 0;
    while let Some((f, wt, scope)) = skim_field(entry, &mut p) {
        if f != 2 || wt != 2 {
            continue;
        }
        let mut q = 0;
        while let Some((g, w, item)) = skim_field(scope, &mut q) {
            if g != 2 || w != 2 {
                continue;
            }
            n += if signal == Signal::Metrics { metric_points(item) } else { 1 };
        }
    }
    n
}

/// The data points of one encoded `Metric` (its data's `data_points` fields), read from the
/// field headers. Malformed bytes end the count.
pub fn metric_points(metric: &[u8]) -> u64 {
    let mut n = 0u64;
    let mut r = 0;
    while let Some((h, w2, data)) = skim_field(metric, &mut r) {
        // gauge = 5, sum = 7, histogram = 9, exponential_histogram = 10, summary = 11.
        if !matches!(h, 5 | 7 | 9 | 10 | 11) || w2 != 2 {
            continue;
        }
        let mut t = 0;
        while let Some((k, _, _)) = skim_field(data, &mut t) {
            n += u64::from(k == 1);
        }
    }
    n
}

#[cold]
fn inspect_item_detailed(signal: Signal, item: &[u8]) -> Result<u64, WireError> {
    match signal {
        Signal::Traces => {
            for f in Fields::new(item) {
                let f = f?;
                match f.number {
                    1 => check_id(&f, "trace_id", 16)?,
                    2 => check_id(&f, "span_id", 8)?,
                    4 => check_id(&f, "parent_span_id", 8)?,
                    _ => {}
                }
            }
            Ok(1)
        }
        Signal::Logs => {
            for f in Fields::new(item) {
                let f = f?;
                match f.number {
                    9 => check_id(&f, "trace_id", 16)?,
                    10 => check_id(&f, "span_id", 8)?,
                    _ => {}
                }
            }
            Ok(1)
        }
        Signal::Metrics => {
            let mut points = 0u64;
            for f in Fields::new(item) {
                let f = f?;
                // gauge = 5, sum = 7, histogram = 9, exponential_histogram = 10, summary = 11;
                // in each, data_points = 1.
                if matches!(f.number, 5 | 7 | 9 | 10 | 11) {
                    let data = expect_len(&f)?;
                    for g in Fields::new(data) {
                        let g = g?;
                        if g.number == 1 {
                            check_fields(expect_len(&g)?).map_err(|e| e.at("data_points", points as usize))?;
                            points += 1;
                        }
                    }
                }
            }
            Ok(points)
        }
    }
}

/// Replaces resources while copying everything else through; see [`rewrite_resources`].
pub trait ResourceEditor {
    /// Given the encoded `Resource` of one `Resource*` entry (empty when it has none) and the
    /// whole encoded entry (resource, scopes and items; see [`count_items`]), returns the
    /// encoded replacement resource.
    fn edit(&mut self, resource: &[u8], entry: &[u8]) -> &[u8];
}

/// The `Resource` of one `Resource*` entry (field 1 of `entry`; empty when it has none), and
/// the bytes its field takes in the entry, tags included. Protobuf merges repeated occurrences
/// of a message field, which is the concatenation of their encodings: when there are several,
/// they are concatenated in `scratch`.
pub fn entry_resource<'a>(entry: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<(&'a [u8], usize), WireError> {
    let mut first: &[u8] = &[];
    let mut fields = 0usize;
    let mut total = 0usize;
    for g in Fields::new(entry) {
        let g = g?;
        if g.number == 1 {
            let b = expect_len(&g)?;
            fields += 1;
            total += g.raw.len();
            if fields == 1 {
                first = b;
            } else {
                if fields == 2 {
                    scratch.clear();
                    scratch.extend_from_slice(first);
                }
                scratch.extend_from_slice(b);
            }
        }
    }
    Ok((if fields > 1 { &scratch[..] } else { first }, total))
}

/// Writes `buf` (an OTLP export request of any signal) to `out` with every `Resource` replaced
/// by what `editor` returns for it. Scope and item bytes are copied, never decoded. The request
/// must have passed [`inspect`]. `out` is reserved once for the whole request.
pub fn rewrite_resources(buf: &[u8], out: &mut Vec<u8>, editor: &mut dyn ResourceEditor) -> Result<(), WireError> {
    out.reserve(buf.len() + buf.len() / 8 + 256);
    let mut scratch: Vec<u8> = Vec::new();
    for f in Fields::new(buf) {
        let f = f?;
        let Value::Len(rx) = f.value else {
            out.extend_from_slice(f.raw);
            continue;
        };
        if f.number != 1 {
            out.extend_from_slice(f.raw);
            continue;
        }
        let (old, old_resource_total) = entry_resource(rx, &mut scratch)?;
        let new_resource = editor.edit(old, rx);
        let new_len = rx.len() - old_resource_total + len_field_size(1, new_resource.len());
        put_tag(out, 1, WireType::Len);
        put_varint(out, new_len as u64);
        put_len_field(out, 1, new_resource);
        for g in Fields::new(rx) {
            let g = g?;
            if g.number != 1 {
                out.extend_from_slice(g.raw);
            }
        }
    }
    Ok(())
}

/// Removes the items for which `keep` returns false, with their now-empty scopes and
/// resources kept (an empty scope is still valid OTLP). Returns how many items were removed.
/// Used for partial success; allocates, so it is only for the rare request that needs it.
pub fn retain_items(buf: &[u8], keep: &mut dyn FnMut(&[u8]) -> bool) -> Result<(Vec<u8>, u64), WireError> {
    let mut out = Vec::with_capacity(buf.len());
    let mut removed = 0u64;
    for f in Fields::new(buf) {
        let f = f?;
        if f.number != 1 {
            out.extend_from_slice(f.raw);
            continue;
        }
        let rx = expect_len(&f)?;
        let mut new_rx = Vec::with_capacity(rx.len());
        for g in Fields::new(rx) {
            let g = g?;
            if g.number != 2 {
                new_rx.extend_from_slice(g.raw);
                continue;
            }
            let sx = expect_len(&g)?;
            let mut new_sx = Vec::with_capacity(sx.len());
            for h in Fields::new(sx) {
                let h = h?;
                if h.number == 2 && !keep(expect_len(&h)?) {
                    removed += 1;
                    continue;
                }
                new_sx.extend_from_slice(h.raw);
            }
            put_len_field(&mut new_rx, 2, &new_sx);
        }
        put_len_field(&mut out, 1, &new_rx);
    }
    Ok((out, removed))
}

/// Whether one item is valid on its own (used with [`retain_items`] to drop invalid items).
pub fn item_is_valid(signal: Signal, item: &[u8]) -> bool {
    inspect_item(signal, item).is_ok()
}

/// The two halves of [`inspect`] and of the per-item check, for the fuzz targets in `fuzz/`
/// that check they agree. Not part of the API: only built with the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use super::{Signal, Summary, WireError};

    /// The skim of a whole request (`Some((items, resources))` when valid with no invalid item).
    pub fn inspect_fast(signal: Signal, buf: &[u8]) -> Option<(u64, u64)> {
        super::inspect_fast(signal, buf, None)
    }

    /// The detailed walk of a whole request.
    pub fn inspect_detailed(signal: Signal, buf: &[u8]) -> Result<Summary, WireError> {
        super::inspect_detailed(signal, buf)
    }

    /// The skim of one item (span, metric, log record).
    pub fn skim_item(signal: Signal, item: &[u8]) -> Option<u64> {
        super::skim_item(signal, item)
    }

    /// The detailed check of one item.
    pub fn inspect_item_detailed(signal: Signal, item: &[u8]) -> Result<u64, WireError> {
        super::inspect_item_detailed(signal, item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue as PAny, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, NumberDataPoint, Sum, metric, number_data_point};
    use opentelemetry_proto::tonic::trace::v1::{Span, span};
    use prost::Message;

    #[test]
    fn utf8_ok_is_the_standard_check() {
        let samples: [&[u8]; 6] =
            [b"service.name", "héllo wörld, ünïcode".as_bytes(), b"", b"\xff", b"abc\xc3", "日本".as_bytes()];
        for s in samples {
            // Every length and offset, so that each byte is in the word part and the tail.
            for a in 0..s.len() {
                for b in a..=s.len() {
                    let padded: Vec<u8> = b"0123456789abcdef".iter().chain(&s[a..b]).copied().collect();
                    for x in [&s[a..b], &padded[..]] {
                        assert_eq!(utf8_ok(x), std::str::from_utf8(x).is_ok(), "{x:02x?}");
                    }
                }
            }
        }
        // A high byte at each position of a long ASCII string.
        for i in 0..40 {
            let mut v = vec![b'a'; 40];
            v[i] = 0x80;
            assert!(!utf8_ok(&v), "{i}");
        }
    }

    /// The one-layout fast path of `key_value_raw` reads what the general path reads, on
    /// SDK-shaped pairs and on every truncation and one-byte change of them.
    #[test]
    fn key_value_fast_path_reads_what_the_field_walk_reads() {
        use prost::Message as _;
        let values = [
            any_value::Value::StringValue("GET".into()),
            any_value::Value::StringValue("x".repeat(200)),
            any_value::Value::StringValue(String::new()),
            any_value::Value::IntValue(-7),
            any_value::Value::DoubleValue(1.5),
            any_value::Value::BoolValue(true),
            any_value::Value::BytesValue(vec![0, 1, 2]),
        ];
        let mut seen = 0;
        for key in ["k", "http.request.method", &"long.key".repeat(20)] {
            for v in &values {
                let kv =
                    KeyValue { key: key.into(), value: Some(PAny { value: Some(v.clone()) }), ..Default::default() }
                        .encode_to_vec();
                let mut cases = vec![kv.clone()];
                cases.extend((0..kv.len()).map(|n| kv[..n].to_vec()));
                for at in 0..kv.len() {
                    for b in [0x00, 0x0a, 0x12, 0x7f, 0x80, 0xff] {
                        let mut c = kv.clone();
                        c[at] = b;
                        cases.push(c);
                    }
                }
                for c in &cases {
                    let fast = format!("{:?}", key_value_raw(c));
                    let walk = format!("{:?}", key_value_fields::<&[u8]>(c));
                    assert_eq!(fast, walk, "{c:02x?}");
                    let fast = format!("{:?}", key_value_as::<&str>(c));
                    let walk = format!("{:?}", key_value_fields::<&str>(c));
                    assert_eq!(fast, walk, "{c:02x?}");
                    seen += 1;
                }
            }
        }
        assert!(seen > 1000);
    }

    /// A string the sender set twice must be UTF-8 both times for the checked readers, as
    /// the admission skim requires: the skim and the detailed walk agree on it (the
    /// `wire_inspect` fuzz target's invariant), and only the unchecked reader takes it.
    #[test]
    fn a_string_set_twice_is_checked_both_times() {
        let mut value = Vec::new();
        put_len_field(&mut value, 1, &[0xff]);
        value.extend([0x18, 0x07]); // int_value 7 after it
        let mut kv = Vec::new();
        put_len_field(&mut kv, 1, b"k");
        put_len_field(&mut kv, 2, &value);
        assert!(key_value(&kv).is_err());
        assert!(matches!(key_value_raw(&kv), Ok((b"k", Val::Other(AnyValue::Int(7))))));
        // The same for a key set twice.
        let mut kv2 = Vec::new();
        put_len_field(&mut kv2, 1, &[0xfe]);
        put_len_field(&mut kv2, 1, b"k");
        assert!(key_value(&kv2).is_err());
        for kv in [kv, kv2] {
            let mut resource = Vec::new();
            put_len_field(&mut resource, 1, &kv);
            let mut rs = Vec::new();
            put_len_field(&mut rs, 1, &resource);
            let mut req = Vec::new();
            put_len_field(&mut req, 1, &rs);
            assert_eq!(inspect_fast(Signal::Traces, &req, None), None);
            assert!(inspect_detailed(Signal::Traces, &req).is_err());
        }
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(PAny { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    /// Fuzzing regression (fuzz target `ownership_rewrite`): a `KeyValue` whose `value` field
    /// occurs twice, the second one empty. Protobuf merges the two, so prost (and every
    /// backend) reads `service.name = checkout`, but the wire reader took the last occurrence
    /// alone and saw no value: the ownership processor then resolved the resource as unowned.
    #[test]
    fn repeated_attribute_value_merges_like_protobuf() {
        use opentelemetry_proto::tonic::resource::v1::Resource;
        let mut kv_bytes = Vec::new();
        put_len_field(&mut kv_bytes, 1, b"service.name");
        let mut any = Vec::new();
        put_len_field(&mut any, 1, b"checkout");
        put_len_field(&mut kv_bytes, 2, &any);
        put_len_field(&mut kv_bytes, 2, b"");
        let mut resource = Vec::new();
        put_len_field(&mut resource, 1, &kv_bytes);
        let reference = Resource::decode(&resource[..]).unwrap();
        assert_eq!(
            reference.attributes[0].value,
            Some(PAny { value: Some(any_value::Value::StringValue("checkout".into())) })
        );
        let a: Vec<_> = attributes(&resource, 1).collect::<Result<_, _>>().unwrap();
        assert_eq!((a[0].key, a[0].value.as_str()), ("service.name", Some("checkout")));
        // A later value that sets something still replaces the earlier one, as in prost.
        let mut int = Vec::new();
        put_tag(&mut int, 3, WireType::Varint);
        put_varint(&mut int, 7);
        put_len_field(&mut kv_bytes, 2, &int);
        let mut resource = Vec::new();
        put_len_field(&mut resource, 1, &kv_bytes);
        let a: Vec<_> = attributes(&resource, 1).collect::<Result<_, _>>().unwrap();
        assert_eq!(a[0].value, AnyValue::Int(7));
        assert_eq!(
            Resource::decode(&resource[..]).unwrap().attributes[0].value,
            Some(PAny { value: Some(any_value::Value::IntValue(7)) })
        );
    }

    /// The skim and the detailed walk agree on every input: valid or not, and the count.
    #[test]
    fn skim_agrees_with_the_detailed_walk() {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            name: "GET /checkout".into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_100_000_000,
            attributes: vec![kv("http.route", "/checkout"), kv("http.method", "GET")],
            events: vec![span::Event { name: "e".into(), ..Default::default() }],
            // Field 16: a two-byte tag, the inline skim's other path.
            flags: 0x101,
            ..Default::default()
        }
        .encode_to_vec();
        let log = LogRecord {
            time_unix_nano: 5,
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            flags: 1,
            body: Some(PAny { value: Some(any_value::Value::StringValue("hello".into())) }),
            ..Default::default()
        }
        .encode_to_vec();
        let dp = NumberDataPoint { value: Some(number_data_point::Value::AsInt(3)), ..Default::default() };
        let metric = Metric {
            name: "m".into(),
            data: Some(metric::Data::Sum(Sum { data_points: vec![dp.clone(); 3], ..Default::default() })),
            ..Default::default()
        }
        .encode_to_vec();
        let gauge = Metric {
            name: "g".into(),
            data: Some(metric::Data::Gauge(Gauge { data_points: vec![dp] })),
            ..Default::default()
        }
        .encode_to_vec();
        // The ids' prefix (`span_ids_prefix`) of a root span (no parent) and of one whose
        // `trace_state` comes between its ids.
        let root = Span { parent_span_id: vec![], ..Span::decode(&span[..]).unwrap() }.encode_to_vec();
        let state = Span { trace_state: "k=v".into(), ..Span::decode(&span[..]).unwrap() }.encode_to_vec();
        assert_eq!([&span, &root, &state].map(|s| span_ids_prefix(s)), [38, 28, 28]);
        // Its head after the ids: the name (13 bytes), the kind, the two times.
        assert_eq!(span_head(&span, 38), Some(SpanHead { name: (40, 53), kind: 2, end: 73 }));
        assert_eq!(&span[40..53], b"GET /checkout");
        assert_eq!(span_head(&state, 28), None, "trace_state comes first");
        assert_eq!(span_head(&span, 37), None);
        let cases = [
            (Signal::Traces, span),
            (Signal::Traces, root),
            (Signal::Traces, state),
            (Signal::Logs, log),
            (Signal::Metrics, metric),
            (Signal::Metrics, gauge),
        ];
        let mut x: u64 = 0x243f6a8885a308d3;
        let mut invalid = 0;
        for (signal, item) in cases {
            assert!(skim_item(signal, &item).is_some());
            assert_eq!(skim_item(signal, &item).map(Ok), Some(inspect_item_detailed(signal, &item).map_err(|_| ())));
            for _ in 0..50_000 {
                let mut buf = item.clone();
                for _ in 0..1 + (x % 3) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x as usize) % buf.len();
                    buf[i] = (x >> 40) as u8;
                }
                if x.is_multiple_of(7) {
                    buf.truncate((x as usize >> 8) % buf.len());
                }
                let fast = skim_item(signal, &buf);
                let slow = inspect_item_detailed(signal, &buf).ok();
                assert_eq!(fast, slow, "{signal:?} {buf:?}");
                invalid += usize::from(fast.is_none());
            }
        }
        assert!(invalid > 10_000, "the mutations do reach invalid inputs ({invalid})");
    }

    /// The same agreement for whole requests: the fast path answers exactly when the detailed
    /// walk finds a valid request without invalid items, with the same counts.
    #[test]
    fn fast_inspect_agrees_with_the_detailed_walk() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
        let span = Span { trace_id: vec![1; 16], span_id: vec![2; 8], name: "x".into(), ..Default::default() };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource { attributes: vec![kv("service.name", "a")], ..Default::default() }),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span.clone(); 3],
                        schema_url: "s".into(),
                        ..Default::default()
                    }],
                    schema_url: "u".into(),
                };
                2
            ],
        }
        .encode_to_vec();
        let mut x: u64 = 0x13198a2e03707344;
        let mut fast_some = 0;
        for _ in 0..100_000 {
            let mut buf = req.clone();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % buf.len();
            buf[i] = (x >> 40) as u8;
            let mut entries = vec![7];
            let fast = inspect_entries(Signal::Traces, &buf, &mut entries)
                .ok()
                .filter(|s| s.invalid_items == 0)
                .map(|s| (s.items, s.resources));
            assert_eq!(fast, inspect_fast(Signal::Traces, &buf, None));
            let slow = inspect_detailed(Signal::Traces, &buf);
            match (&fast, &slow) {
                (Some((items, res)), Ok(s)) => {
                    assert_eq!((s.items, s.resources, s.invalid_items), (*items, *res, 0));
                    // Each entry's items, as the accounting would count them.
                    let counted: Vec<u64> = Fields::new(&buf)
                        .map(|f| f.unwrap())
                        .filter(|f| f.number == 1)
                        .map(|f| count_items(Signal::Traces, expect_len(&f).unwrap()))
                        .collect();
                    let want = if counted.len() > 1 { counted } else { Vec::new() };
                    assert_eq!(entries, want, "{buf:?}");
                    fast_some += 1;
                }
                (None, Ok(s)) => assert!(s.invalid_items > 0, "{buf:?}"),
                (None, Err(_)) => {}
                (Some(_), Err(e)) => panic!("fast accepted what the detailed walk refuses: {e} {buf:?}"),
            }
        }
        assert!(fast_some > 1000);
    }
}
