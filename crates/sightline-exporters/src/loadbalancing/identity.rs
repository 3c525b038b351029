//! The collector's identities of resources and metric streams, the keys of `routing_key:
//! resource` and `streamID`:
//! - `resource/<hex>`: `<hex>` is FNV-1a 64 of the 16-byte hash of the resource's attributes
//!   (`pdatautil.MapHash`: keys sorted, each written as `0xf4 key` then its value tagged by
//!   type, hashed with xxHash64 twice: the bytes, then the bytes and `0xf3`; an empty map
//!   hashes to 16 zero bytes).
//! - `stream/<hex>`: FNV-1a 64 continued over the resource's 16 bytes, the scope's name,
//!   version and attributes' 16 bytes, the metric's name, unit, type, monotonicity and
//!   temporality, and the data point's attributes' 16 bytes.
//!
//! Read from the wire, so nothing is decoded.

use sightline_core::wire::{self, AnyValue};
use smallvec::SmallVec;
use std::hash::Hasher as _;

const KEY: u8 = 0xf4;
const EMPTY: u8 = 0xf5;
const BYTES: u8 = 0xf6;
const STR: u8 = 0xf7;
const TRUE: u8 = 0xf8;
const FALSE: u8 = 0xf9;
const INT: u8 = 0xfa;
const DOUBLE: u8 = 0xfb;
const MAP: u8 = 0xfc;
const MAP_END: u8 = 0xfd;
const SLICE: u8 = 0xfe;
const SLICE_END: u8 = 0xff;
const EXTRA: u8 = 0xf3;

/// How deep nested maps and arrays are followed (the receiver limits nesting far below).
const MAX_DEPTH: usize = 64;

/// The ring position of a resource's key (`Resource` message bytes; empty when the entry has
/// none); `buf` is scratch.
pub fn resource_position(resource: &[u8], buf: &mut Vec<u8>) -> u32 {
    let h = Fnv::new().write(&map_hash(resource, 1, buf)).sum();
    let mut key = [0u8; KEY_MAX];
    super::ring::position(hex_key(b"resource/", h, &mut key))
}

/// The longest key: `resource/` and 16 hex digits.
const KEY_MAX: usize = 9 + 16;

/// `prefix` then `h` in lowercase hex without leading zeros (Go's `%x`), in `out`.
fn hex_key<'a>(prefix: &[u8], h: u64, out: &'a mut [u8; KEY_MAX]) -> &'a [u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out[..prefix.len()].copy_from_slice(prefix);
    let digits = (16 - h.leading_zeros() as usize / 4).max(1);
    for i in 0..digits {
        out[prefix.len() + i] = HEX[((h >> (4 * (digits - 1 - i))) & 15) as usize];
    }
    &out[..prefix.len() + digits]
}

/// `pdatautil.MapHash` of the `KeyValue`s in field `field` of `msg`; `buf` is scratch.
pub fn map_hash(msg: &[u8], field: u32, buf: &mut Vec<u8>) -> [u8; 16] {
    hash_with(msg, field, buf, Style::PdataUtil)
}

/// pdata's `xhash.MapHash` (collector v0.165; the `kafka` exporter's message key for
/// `partition_*_by_resource_attributes`): as [`map_hash`], but keys, strings and bytes carry
/// their length as a uvarint, and a repeated key is written with each of its values.
pub fn xhash_map_hash(msg: &[u8], field: u32, buf: &mut Vec<u8>) -> [u8; 16] {
    hash_with(msg, field, buf, Style::XHash)
}

/// The two encodings the collector hashes maps with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `pdatautil.MapHash` (the loadbalancing exporter, v0.161).
    PdataUtil,
    /// `xhash.MapHash` (pdata/xpdata v0.165).
    XHash,
}

fn hash_with(msg: &[u8], field: u32, buf: &mut Vec<u8>, style: Style) -> [u8; 16] {
    buf.clear();
    if !write_map(msg, field, buf, 0, style) {
        return [0; 16];
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&xxhash_rust::xxh64::xxh64(buf, 0).to_le_bytes());
    buf.push(EXTRA);
    out[8..].copy_from_slice(&xxhash_rust::xxh64::xxh64(buf, 0).to_le_bytes());
    out
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8], style: Style) {
    if style == Style::XHash {
        wire::put_varint(buf, b.len() as u64);
    }
    buf.extend_from_slice(b);
}

/// Writes the map's entries with their keys sorted; false when it has none. A key that appears
/// twice is written twice: with its first value (pdatautil, as pdata's `Map.Get`), or with
/// each of its values (xhash, as `Map.All`).
fn write_map(msg: &[u8], field: u32, buf: &mut Vec<u8>, depth: usize, style: Style) -> bool {
    // On the stack for up to 16 attributes: no allocation per data point.
    let mut entries: SmallVec<[(&str, AnyValue<'_>); 16]> =
        wire::attributes(msg, field).map_while(Result::ok).map(|a| (a.key, a.value)).collect();
    if entries.is_empty() {
        return false;
    }
    // Stable: a repeated key keeps its first value first.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut previous: Option<(&str, AnyValue<'_>)> = None;
    for &(k, v) in &entries {
        let v = match previous {
            Some((pk, pv)) if pk == k && style == Style::PdataUtil => pv,
            _ => v,
        };
        previous = Some((k, v));
        buf.push(KEY);
        put_bytes(buf, k.as_bytes(), style);
        write_value(v, buf, depth, style);
    }
    true
}

fn write_value(v: AnyValue<'_>, buf: &mut Vec<u8>, depth: usize, style: Style) {
    match v {
        AnyValue::String(s) => {
            buf.push(STR);
            put_bytes(buf, s.as_bytes(), style);
        }
        AnyValue::Bool(b) => buf.push(if b { TRUE } else { FALSE }),
        AnyValue::Int(i) => {
            buf.push(INT);
            buf.extend_from_slice(&i.to_le_bytes());
        }
        AnyValue::Double(d) => {
            buf.push(DOUBLE);
            buf.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        AnyValue::Bytes(b) => {
            buf.push(BYTES);
            put_bytes(buf, b, style);
        }
        AnyValue::KvList(list) => {
            buf.push(MAP);
            if depth < MAX_DEPTH {
                write_map(list, 1, buf, depth + 1, style);
            }
            buf.push(MAP_END);
        }
        AnyValue::Array(arr) => {
            buf.push(SLICE);
            if depth < MAX_DEPTH {
                for f in wire::Fields::new(arr).map_while(Result::ok) {
                    if let (1, wire::Value::Len(v)) = (f.number, f.value) {
                        write_value(AnyValue::parse(v).unwrap_or(AnyValue::Empty), buf, depth + 1, style);
                    }
                }
            }
            buf.push(SLICE_END);
        }
        AnyValue::Empty => buf.push(EMPTY),
    }
}

/// FNV-1a 64 (Go's `hash/fnv` `New64a`, the `fnv` crate's) as a copyable running state, fed
/// piece by piece as Go's `hash.Hash64` is: a metric's state is reused for each of its points.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(fnv::FnvHasher::default().finish())
    }
    pub fn write(self, data: &[u8]) -> Fnv {
        let mut h = fnv::FnvHasher::with_key(self.0);
        h.write(data);
        Fnv(h.finish())
    }
    pub fn sum(self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv::new()
    }
}

/// A metric's stream identity up to its data points: the resource, scope and metric parts.
/// `resource` and `scope` are the `Resource` and `InstrumentationScope` messages (empty when
/// absent), `metric` the `Metric`.
pub fn metric_identity(resource: &[u8], scope: &[u8], metric: &[u8], buf: &mut Vec<u8>) -> Fnv {
    let mut h = Fnv::new().write(&map_hash(resource, 1, buf));
    h = h.write(text(scope, 1)).write(text(scope, 2)).write(&map_hash(scope, 3, buf));
    h = h.write(text(metric, 1)).write(text(metric, 3));
    let (ty, mono, temporality) = metric_kind(metric);
    h.write(&[ty, mono, temporality])
}

/// pdata's metric type (gauge 1, sum 2, histogram 3, exponential histogram 4, summary 5),
/// monotonicity (histograms are monotonic) and aggregation temporality.
fn metric_kind(metric: &[u8]) -> (u8, u8, u8) {
    let mut kind = (0, 0, 0);
    for f in wire::Fields::new(metric).map_while(Result::ok) {
        let (ty, data) = match (f.number, f.value) {
            (5, wire::Value::Len(d)) => (1, d),
            (7, wire::Value::Len(d)) => (2, d),
            (9, wire::Value::Len(d)) => (3, d),
            (10, wire::Value::Len(d)) => (4, d),
            (11, wire::Value::Len(d)) => (5, d),
            _ => continue,
        };
        let (mut mono, mut temporality) = (u8::from(ty == 3 || ty == 4), 0u8);
        if matches!(ty, 2..=4) {
            for g in wire::Fields::new(data).map_while(Result::ok) {
                match (g.number, g.value) {
                    (2, wire::Value::Varint(t)) => temporality = t as u8,
                    (3, wire::Value::Varint(m)) if ty == 2 => mono = u8::from(m != 0),
                    _ => {}
                }
            }
        }
        kind = (ty, mono, temporality);
    }
    kind
}

/// The field of a data point's attributes in a metric of pdata type `ty`.
pub fn point_attributes_field(ty: u8) -> u32 {
    match ty {
        3 => 9, // HistogramDataPoint
        4 => 1, // ExponentialHistogramDataPoint
        _ => 7, // NumberDataPoint, SummaryDataPoint
    }
}

/// The bytes of the last length-delimited field `n` of `msg` (a string), or empty.
fn text(msg: &[u8], n: u32) -> &[u8] {
    wire::Fields::new(msg)
        .map_while(Result::ok)
        .filter(|f| f.number == n)
        .last()
        .and_then(|f| match f.value {
            wire::Value::Len(b) => Some(b),
            _ => None,
        })
        .unwrap_or_default()
}

/// The ring position of one data point's key, `stream/<hex>`.
pub fn stream_position(metric: Fnv, ty: u8, point: &[u8], buf: &mut Vec<u8>) -> u32 {
    let h = metric.write(&map_hash(point, point_attributes_field(ty), buf)).sum();
    let mut key = [0u8; KEY_MAX];
    super::ring::position(hex_key(b"stream/", h, &mut key))
}

/// The pdata type of a metric (0 when it has no data).
pub fn metric_type(metric: &[u8]) -> u8 {
    metric_kind(metric).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue as Av, KeyValue, KeyValueList, any_value::Value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(Av { value: Some(v) }), ..Default::default() }
    }

    fn fnv1a64(data: &[u8]) -> u64 {
        Fnv::new().write(data).sum()
    }

    /// The resource's key as text.
    fn key(attrs: Vec<KeyValue>) -> String {
        let resource = Resource { attributes: attrs, ..Default::default() }.encode_to_vec();
        let h = fnv1a64(&map_hash(&resource, 1, &mut Vec::new()));
        let mut out = [0u8; KEY_MAX];
        String::from_utf8(hex_key(b"resource/", h, &mut out).to_vec()).unwrap()
    }

    #[test]
    fn fnv_and_hex_are_go_s() {
        // Go: fnv.New64a() of "" and "a"; fmt.Sprintf("%x") of 0, 0xa and a full word.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"ab"), Fnv::new().write(b"a").write(b"b").sum(), "fed in pieces");
        let mut out = [0u8; KEY_MAX];
        for (h, text) in [(0u64, "resource/0"), (0xa, "resource/a"), (u64::MAX, "resource/ffffffffffffffff")] {
            assert_eq!(hex_key(b"resource/", h, &mut out), text.as_bytes());
        }
        assert_eq!(hex_key(b"stream/", 0x0123_4567_89ab_cdef, &mut out), b"stream/123456789abcdef");
    }

    #[test]
    fn the_order_of_attributes_does_not_matter_and_values_do() {
        let a = vec![kv("service.name", Value::StringValue("a".into())), kv("n", Value::IntValue(1))];
        let b = vec![kv("n", Value::IntValue(1)), kv("service.name", Value::StringValue("a".into()))];
        assert_eq!(key(a.clone()), key(b));
        assert_ne!(key(a), key(vec![kv("service.name", Value::StringValue("a".into())), kv("n", Value::IntValue(2))]));
        // A nested map and a string of the same text differ.
        let nested = Value::KvlistValue(KeyValueList { values: vec![kv("x", Value::BoolValue(true))] });
        assert_ne!(key(vec![kv("m", nested)]), key(vec![kv("m", Value::StringValue("x".into()))]));
        // No attributes: FNV-1a of 16 zero bytes.
        assert_eq!(key(vec![]), format!("resource/{:x}", fnv1a64(&[0; 16])));
    }
}
