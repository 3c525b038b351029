//! The collector's resource identity, the key of `routing_key: resource`: the string
//! `resource/<hex>`, where `<hex>` is FNV-1a 64 of the 16-byte hash of the resource's
//! attributes (`pdatautil.MapHash`: keys sorted, each written as `0xf4 key` then its value
//! tagged by type, hashed with xxHash64 twice: the bytes, then the bytes and `0xf3`; an empty
//! map hashes to 16 zero bytes). Read from the wire, so no resource is decoded.

use sightline_core::wire::{self, AnyValue};

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

/// The routing key of a resource (`Resource` message bytes; empty when the entry has none).
pub fn resource_key(resource: &[u8]) -> String {
    let mut buf = Vec::with_capacity(256);
    let h = map_hash(resource, &mut buf);
    format!("resource/{:x}", fnv1a64(&h))
}

/// `pdatautil.MapHash` of the `KeyValue`s in field 1 of `msg`.
fn map_hash(msg: &[u8], buf: &mut Vec<u8>) -> [u8; 16] {
    buf.clear();
    if !write_map(msg, buf, 0) {
        return [0; 16];
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&xxhash_rust::xxh64::xxh64(buf, 0).to_le_bytes());
    buf.push(EXTRA);
    out[8..].copy_from_slice(&xxhash_rust::xxh64::xxh64(buf, 0).to_le_bytes());
    out
}

/// Writes the map's entries with their keys sorted; false when it has none. A key that appears
/// twice is written twice with its first value (as pdata's `Map.All` and `Map.Get` do).
fn write_map(msg: &[u8], buf: &mut Vec<u8>, depth: usize) -> bool {
    let entries: Vec<(&str, AnyValue<'_>)> =
        wire::attributes(msg, 1).map_while(Result::ok).map(|a| (a.key, a.value)).collect();
    if entries.is_empty() {
        return false;
    }
    let mut keys: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
    keys.sort_unstable();
    for k in keys {
        let v = entries.iter().find(|(key, _)| *key == k).map_or(AnyValue::Empty, |(_, v)| *v);
        buf.push(KEY);
        buf.extend_from_slice(k.as_bytes());
        write_value(v, buf, depth);
    }
    true
}

fn write_value(v: AnyValue<'_>, buf: &mut Vec<u8>, depth: usize) {
    match v {
        AnyValue::String(s) => {
            buf.push(STR);
            buf.extend_from_slice(s.as_bytes());
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
            buf.extend_from_slice(b);
        }
        AnyValue::KvList(list) => {
            buf.push(MAP);
            if depth < MAX_DEPTH {
                write_map(list, buf, depth + 1);
            }
            buf.push(MAP_END);
        }
        AnyValue::Array(arr) => {
            buf.push(SLICE);
            if depth < MAX_DEPTH {
                for f in wire::Fields::new(arr).map_while(Result::ok) {
                    if let (1, wire::Value::Len(v)) = (f.number, f.value) {
                        write_value(AnyValue::parse(v).unwrap_or(AnyValue::Empty), buf, depth + 1);
                    }
                }
            }
            buf.push(SLICE_END);
        }
        AnyValue::Empty => buf.push(EMPTY),
    }
}

/// FNV-1a, 64 bits (Go's `hash/fnv` `New64a`).
fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
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

    fn key(attrs: Vec<KeyValue>) -> String {
        resource_key(&Resource { attributes: attrs, ..Default::default() }.encode_to_vec())
    }

    #[test]
    fn fnv_is_go_s() {
        // Go: fnv.New64a() of "" and "a".
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
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
