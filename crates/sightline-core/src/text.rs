//! Attribute values as text, the way the collector writes them (pdata's `Value.AsString`), for
//! the exporters whose backends store every attribute value as a string (ClickHouse maps,
//! Prometheus labels): strings as they are, integers in decimal, doubles as Go's
//! `encoding/json` writes them, booleans `true`/`false`, bytes in standard base64, and lists
//! and maps as the JSON Go's `encoding/json` makes of them without HTML escaping (object keys
//! sorted), as pdata 1.67 and later (collector v0.161+) write them. Read straight from the
//! wire ([`AnyValue`]); nothing is decoded into structs.

use crate::wire::{self, AnyValue, Fields, Value};
use std::fmt::Write as _;

/// Nesting depth past which a value is written as `null` (a bound on recursion for hostile
/// input; real attributes are a few levels deep).
const MAX_DEPTH: u32 = 32;

/// Appends pdata's `AsString` of `v` to `out`. An empty value is the empty string; a double
/// that is not finite is `NaN`, `Infinity` or `-Infinity` ([`non_finite`]), as the collector
/// writes it.
pub fn push_as_string(out: &mut String, v: &AnyValue<'_>) {
    match v {
        AnyValue::Empty => {}
        AnyValue::String(s) => out.push_str(s),
        AnyValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        AnyValue::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
        AnyValue::Double(d) if !d.is_finite() => out.push_str(non_finite(*d)),
        AnyValue::Double(d) => push_json_number(out, *d),
        AnyValue::Bytes(b) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode_string(b, out);
        }
        AnyValue::Array(_) | AnyValue::KvList(_) => {
            let mark = out.len();
            if push_json(out, v, 0).is_err() {
                // `json.Marshal` fails on a non-finite double anywhere inside: pdata then
                // writes nothing.
                out.truncate(mark);
            }
        }
    }
}

/// pdata's `SpanKind.String()`: `Internal`, `Server`, `Client`, `Producer`, `Consumer`, else
/// `Unspecified`.
pub fn span_kind(k: u64) -> &'static str {
    match k {
        1 => "Internal",
        2 => "Server",
        3 => "Client",
        4 => "Producer",
        5 => "Consumer",
        _ => "Unspecified",
    }
}

/// pdata's `StatusCode.String()`: `Ok`, `Error`, else `Unset`.
pub fn status_code(c: u64) -> &'static str {
    match c {
        1 => "Ok",
        2 => "Error",
        _ => "Unset",
    }
}

/// pdata's `AggregationTemporality.String()`: `Delta`, `Cumulative`, else `Unspecified`.
pub fn temporality(t: u64) -> &'static str {
    match t {
        1 => "Delta",
        2 => "Cumulative",
        _ => "Unspecified",
    }
}

/// pdata's `AsString` of a double that is not finite: `NaN`, `Infinity` or `-Infinity`.
pub fn non_finite(d: f64) -> &'static str {
    if d.is_nan() {
        "NaN"
    } else if d > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// `+Inf`, `-Inf` or `NaN`, as Go's `strconv.FormatFloat(f, 'g', -1, 64)` writes them.
pub fn go_special(d: f64) -> &'static str {
    if d.is_nan() {
        "NaN"
    } else if d > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

/// A finite double as Go's `encoding/json` writes it (the ES6 number-to-string rules): plain
/// notation with the shortest round-trip digits, exponent notation below 1e-6 and from 1e21,
/// the exponent without a leading zero and with an explicit `+`.
pub fn push_json_number(out: &mut String, d: f64) {
    let abs = d.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust's `{:e}` is the shortest round-trip mantissa and an unpadded exponent
        // (1e-7, 1.5e21): only Go's `+` on positive exponents differs.
        let mark = out.len();
        let _ = write!(out, "{d:e}");
        if let Some(e) = out[mark..].find('e')
            && !out[mark + e + 1..].starts_with('-')
        {
            out.insert(mark + e + 1, '+');
        }
        return;
    }
    let _ = write!(out, "{d}");
}

/// [`push_json_number`] into a new string.
pub fn json_number(d: f64) -> String {
    let mut s = String::new();
    push_json_number(&mut s, d);
    s
}

struct NotFinite;

fn push_json(out: &mut String, v: &AnyValue<'_>, depth: u32) -> Result<(), NotFinite> {
    if depth > MAX_DEPTH {
        out.push_str("null");
        return Ok(());
    }
    match v {
        AnyValue::Empty => out.push_str("null"),
        AnyValue::String(s) => push_json_string(out, s),
        AnyValue::Bool(_) | AnyValue::Int(_) => push_as_string(out, v),
        AnyValue::Double(d) if !d.is_finite() => return Err(NotFinite),
        AnyValue::Double(d) => push_json_number(out, *d),
        AnyValue::Bytes(_) => {
            out.push('"');
            push_as_string(out, v);
            out.push('"');
        }
        AnyValue::Array(a) => {
            out.push('[');
            let mut first = true;
            for f in Fields::new(a).flatten() {
                if let (1, Value::Len(b)) = (f.number, f.value) {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    match AnyValue::parse(b) {
                        Ok(x) => push_json(out, &x, depth + 1)?,
                        Err(_) => out.push_str("null"),
                    }
                }
            }
            out.push(']');
        }
        AnyValue::KvList(kv) => {
            // Go marshals a map with its keys sorted; a repeated key keeps its last value (the
            // map pdata's `AsRaw` builds).
            let mut pairs: Vec<wire::Attribute<'_>> = wire::attributes(kv, 1).flatten().collect();
            pairs.sort_by(|a, b| a.key.cmp(b.key));
            out.push('{');
            let mut first = true;
            for (i, a) in pairs.iter().enumerate() {
                if pairs.get(i + 1).is_some_and(|n| n.key == a.key) {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                push_json_string(out, a.key);
                out.push(':');
                push_json(out, &a.value, depth + 1)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A JSON string as Go's `encoding/json` writes it with HTML escaping off (pdata's
/// `AsString`): `<`, `>` and `&` as they are, U+2028 and U+2029 escaped (Go always does).
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\u{0}'..='\u{1f}' | '\u{2028}' | '\u{2029}' => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::put_len_field;

    fn any(field: u32, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut inner = Vec::new();
        f(&mut inner);
        let mut out = Vec::new();
        put_len_field(&mut out, field, &inner);
        out
    }

    fn string_any(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        put_len_field(&mut v, 1, s.as_bytes());
        v
    }

    fn kv(key: &str, value: &[u8]) -> Vec<u8> {
        let mut kv = Vec::new();
        put_len_field(&mut kv, 1, key.as_bytes());
        put_len_field(&mut kv, 2, value);
        kv
    }

    fn text(v: &AnyValue<'_>) -> String {
        let mut s = String::new();
        push_as_string(&mut s, v);
        s
    }

    #[test]
    fn scalars_as_pdata_writes_them() {
        assert_eq!(text(&AnyValue::Empty), "");
        assert_eq!(text(&AnyValue::String("a<b")), "a<b");
        assert_eq!(text(&AnyValue::Bool(true)), "true");
        assert_eq!(text(&AnyValue::Int(-42)), "-42");
        assert_eq!(text(&AnyValue::Bytes(&[0, 1, 2, 255])), "AAEC/w==");
        assert_eq!(text(&AnyValue::Double(f64::NAN)), "NaN");
        assert_eq!(text(&AnyValue::Double(f64::INFINITY)), "Infinity");
        assert_eq!(text(&AnyValue::Double(f64::NEG_INFINITY)), "-Infinity");
    }

    #[test]
    fn json_numbers_as_go_writes_them() {
        for (d, want) in [
            (1.5, "1.5"),
            (100.0, "100"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (-2.5e-8, "-2.5e-8"),
            (123456789.125, "123456789.125"),
            (1e20, "100000000000000000000"),
        ] {
            assert_eq!(json_number(d), want, "{d}");
        }
    }

    #[test]
    fn lists_and_maps_as_go_marshals_them() {
        // {"z": [1, "x<y", true, 2.5, null, bytes], "a": {"k": "v"}, "z": "last"}
        let mut list = Vec::new();
        let mut int = Vec::new();
        wire::put_tag(&mut int, 3, wire::WireType::Varint);
        wire::put_varint(&mut int, 1);
        put_len_field(&mut list, 1, &int);
        put_len_field(&mut list, 1, &string_any("x<y"));
        let mut b = Vec::new();
        wire::put_tag(&mut b, 2, wire::WireType::Varint);
        wire::put_varint(&mut b, 1);
        put_len_field(&mut list, 1, &b);
        let mut d = Vec::new();
        wire::put_tag(&mut d, 4, wire::WireType::I64);
        d.extend_from_slice(&2.5f64.to_bits().to_le_bytes());
        put_len_field(&mut list, 1, &d);
        put_len_field(&mut list, 1, &[]);
        put_len_field(&mut list, 1, &any(7, |v| v.extend_from_slice(b"hi")));
        let list_any = any(5, |v| v.extend_from_slice(&list));
        let mut inner = Vec::new();
        put_len_field(&mut inner, 1, &kv("k", &string_any("v")));
        let map_any = any(6, |v| v.extend_from_slice(&inner));
        let mut kvs = Vec::new();
        put_len_field(&mut kvs, 1, &kv("z", &list_any));
        put_len_field(&mut kvs, 1, &kv("a", &map_any));
        put_len_field(&mut kvs, 1, &kv("z", &string_any("last")));
        assert_eq!(text(&AnyValue::KvList(&kvs)), r#"{"a":{"k":"v"},"z":"last"}"#);
        assert_eq!(text(&AnyValue::Array(&list)), r#"[1,"x<y",true,2.5,null,"aGk="]"#);
    }

    #[test]
    fn a_non_finite_double_inside_a_list_gives_nothing() {
        let mut d = Vec::new();
        wire::put_tag(&mut d, 4, wire::WireType::I64);
        d.extend_from_slice(&f64::INFINITY.to_bits().to_le_bytes());
        let mut list = Vec::new();
        put_len_field(&mut list, 1, &d);
        assert_eq!(text(&AnyValue::Array(&list)), "");
    }

    #[test]
    fn json_strings_escape_like_go_without_html_escaping() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"b\\c\n\u{1}\u{8}\u{c}<>&\u{2028}é");
        assert_eq!(s, r#""a\"b\\c\n\u0001\b\f<>&\u2028é""#);
    }
}
