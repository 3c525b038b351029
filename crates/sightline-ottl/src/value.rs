//! Values of OTTL expressions, their comparison (the collector's `compare.go` rules) and the
//! conversions its getters apply (`StringLikeGetter`, `IntLikeGetter`, ...).

use opentelemetry_proto::tonic::common::v1::any_value::Value as Pv;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use std::borrow::Cow;

#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    Map(Cow<'a, [KeyValue]>),
    List(Cow<'a, [AnyValue]>),
    /// Unix nanoseconds.
    Time(i64),
    /// Nanoseconds.
    Duration(i64),
}

impl<'a> Val<'a> {
    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::Nil => Val::Nil,
            Val::Bool(b) => Val::Bool(b),
            Val::Int(i) => Val::Int(i),
            Val::Float(f) => Val::Float(f),
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::Bytes(b) => Val::Bytes(Cow::Owned(b.into_owned())),
            Val::Map(m) => Val::Map(Cow::Owned(m.into_owned())),
            Val::List(l) => Val::List(Cow::Owned(l.into_owned())),
            Val::Time(t) => Val::Time(t),
            Val::Duration(d) => Val::Duration(d),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "double",
            Val::Str(_) => "string",
            Val::Bytes(_) => "bytes",
            Val::Map(_) => "map",
            Val::List(_) => "list",
            Val::Time(_) => "time",
            Val::Duration(_) => "duration",
        }
    }

    /// An attribute value as an OTTL value (borrowed).
    pub fn from_any(v: Option<&'a AnyValue>) -> Val<'a> {
        match v.and_then(|v| v.value.as_ref()) {
            None => Val::Nil,
            Some(Pv::StringValue(s)) => Val::Str(Cow::Borrowed(s)),
            Some(Pv::BoolValue(b)) => Val::Bool(*b),
            Some(Pv::IntValue(i)) => Val::Int(*i),
            Some(Pv::DoubleValue(d)) => Val::Float(*d),
            Some(Pv::BytesValue(b)) => Val::Bytes(Cow::Borrowed(b)),
            Some(Pv::ArrayValue(a)) => Val::List(Cow::Borrowed(&a.values)),
            Some(Pv::KvlistValue(m)) => Val::Map(Cow::Borrowed(&m.values)),
            Some(Pv::StringValueStrindex(_)) => Val::Nil,
        }
    }

    /// As an attribute value (pdata's `Value.FromRaw` of the collector's Go value); `None` for
    /// nil, time and duration, which no attribute holds.
    pub fn to_any(&self) -> Option<AnyValue> {
        let v = match self {
            Val::Nil | Val::Time(_) | Val::Duration(_) => return None,
            Val::Bool(b) => Pv::BoolValue(*b),
            Val::Int(i) => Pv::IntValue(*i),
            Val::Float(f) => Pv::DoubleValue(*f),
            Val::Str(s) => Pv::StringValue(s.to_string()),
            Val::Bytes(b) => Pv::BytesValue(b.to_vec()),
            Val::Map(m) => Pv::KvlistValue(KeyValueList { values: m.to_vec() }),
            Val::List(l) => Pv::ArrayValue(ArrayValue { values: l.to_vec() }),
        };
        Some(AnyValue { value: Some(v) })
    }

    /// [`Val::to_any`], moving an owned string, bytes, map or list instead of copying it.
    pub fn into_any(self) -> Option<AnyValue> {
        let v = match self {
            Val::Nil | Val::Time(_) | Val::Duration(_) => return None,
            Val::Bool(b) => Pv::BoolValue(b),
            Val::Int(i) => Pv::IntValue(i),
            Val::Float(f) => Pv::DoubleValue(f),
            Val::Str(s) => Pv::StringValue(s.into_owned()),
            Val::Bytes(b) => Pv::BytesValue(b.into_owned()),
            Val::Map(m) => Pv::KvlistValue(KeyValueList { values: m.into_owned() }),
            Val::List(l) => Pv::ArrayValue(ArrayValue { values: l.into_owned() }),
        };
        Some(AnyValue { value: Some(v) })
    }

    pub fn str(s: impl Into<String>) -> Val<'static> {
        Val::Str(Cow::Owned(s.into()))
    }
}

/// The collector's `compare`: nil equals only nil; numbers compare across int and double;
/// other types compare only with their own type (a mismatch is false, except for `!=`).
pub fn compare(a: &Val, b: &Val, op: &str) -> bool {
    use std::cmp::Ordering;
    let invalid = op == "!=";
    let ord = |o: Ordering| match op {
        "==" => o == Ordering::Equal,
        "!=" => o != Ordering::Equal,
        "<" => o == Ordering::Less,
        "<=" => o != Ordering::Greater,
        ">" => o == Ordering::Greater,
        ">=" => o != Ordering::Less,
        _ => false,
    };
    let fl = |x: f64, y: f64| match op {
        "==" => x == y,
        "!=" => x != y,
        "<" => x < y,
        "<=" => x <= y,
        ">" => x > y,
        ">=" => x >= y,
        _ => false,
    };
    match (a, b) {
        (Val::Nil, Val::Nil) => matches!(op, "==" | "<=" | ">="),
        (Val::Nil, _) | (_, Val::Nil) => op == "!=",
        (Val::Bool(x), Val::Bool(y)) => ord(x.cmp(y)),
        (Val::Int(x), Val::Int(y)) => ord(x.cmp(y)),
        (Val::Int(x), Val::Float(y)) => fl(*x as f64, *y),
        (Val::Float(x), Val::Int(y)) => fl(*x, *y as f64),
        (Val::Float(x), Val::Float(y)) => fl(*x, *y),
        (Val::Str(x), Val::Str(y)) => ord(x.as_bytes().cmp(y.as_bytes())),
        (Val::Bytes(x), Val::Bytes(y)) => ord(x.cmp(y)),
        (Val::Time(x), Val::Time(y)) | (Val::Duration(x), Val::Duration(y)) => ord(x.cmp(y)),
        (Val::Map(x), Val::Map(y)) => match op {
            "==" => maps_equal(x, y),
            "!=" => !maps_equal(x, y),
            _ => false,
        },
        (Val::List(x), Val::List(y)) => match op {
            "==" => x == y,
            "!=" => x != y,
            _ => false,
        },
        _ => invalid,
    }
}

fn maps_equal(a: &[KeyValue], b: &[KeyValue]) -> bool {
    a.len() == b.len() && a.iter().all(|kv| b.iter().any(|o| o.key == kv.key && o.value == kv.value))
}

/// pdata's `Value.AsString` and the `StringLikeGetter`: strings as they are, bytes in hex,
/// maps and lists as JSON, numbers and booleans in their text form.
pub fn string_like(v: &Val) -> Option<String> {
    Some(match v {
        Val::Nil => return None,
        Val::Str(s) => s.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => json_number(*f),
        Val::Bytes(b) => hex(b),
        Val::Map(_) | Val::List(_) => to_json(v).to_string(),
        Val::Time(t) => t.to_string(),
        Val::Duration(d) => d.to_string(),
    })
}

pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

/// A double as Go's encoding/json writes it (`NaN`, `+Inf`, `-Inf` for the others).
pub fn json_number(d: f64) -> String {
    if d.is_finite() { sightline_core::text::json_number(d) } else { sightline_core::text::go_special(d).into() }
}

pub fn to_json(v: &Val) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Val::Nil => J::Null,
        Val::Bool(b) => J::Bool(*b),
        Val::Int(i) => J::from(*i),
        Val::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Val::Str(s) => J::String(s.to_string()),
        Val::Bytes(b) => {
            use base64::Engine as _;
            J::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Val::Map(m) => {
            J::Object(m.iter().map(|kv| (kv.key.clone(), to_json(&Val::from_any(kv.value.as_ref())))).collect())
        }
        Val::List(l) => J::Array(l.iter().map(|x| to_json(&Val::from_any(Some(x)))).collect()),
        Val::Time(t) | Val::Duration(t) => J::from(*t),
    }
}

/// `body.string`: pdata's `AsString` of a non-string body.
pub fn string_like_body(v: &Val) -> String {
    string_like(v).unwrap_or_default()
}

/// JSON read straight into an attribute value, keeping the order of object keys (as the
/// collector's `ParseJSON`; a repeated key keeps its first place and takes the last value).
pub struct JsonAny(pub AnyValue);

impl<'de> serde::Deserialize<'de> for JsonAny {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<JsonAny, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonAny;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<JsonAny, E> {
                Ok(JsonAny(AnyValue { value: None }))
            }
            fn visit_bool<E>(self, b: bool) -> Result<JsonAny, E> {
                Ok(JsonAny(AnyValue { value: Some(Pv::BoolValue(b)) }))
            }
            fn visit_i64<E>(self, i: i64) -> Result<JsonAny, E> {
                Ok(JsonAny(AnyValue { value: Some(Pv::DoubleValue(i as f64)) }))
            }
            fn visit_u64<E>(self, i: u64) -> Result<JsonAny, E> {
                Ok(JsonAny(AnyValue { value: Some(Pv::DoubleValue(i as f64)) }))
            }
            fn visit_f64<E>(self, f: f64) -> Result<JsonAny, E> {
                Ok(JsonAny(AnyValue { value: Some(Pv::DoubleValue(f)) }))
            }
            fn visit_str<E>(self, s: &str) -> Result<JsonAny, E> {
                Ok(JsonAny(AnyValue { value: Some(Pv::StringValue(s.to_string())) }))
            }
            fn visit_string<E>(self, s: String) -> Result<JsonAny, E> {
                Ok(JsonAny(AnyValue { value: Some(Pv::StringValue(s)) }))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<JsonAny, A::Error> {
                let mut values = Vec::new();
                while let Some(JsonAny(v)) = a.next_element()? {
                    values.push(v);
                }
                Ok(JsonAny(AnyValue { value: Some(Pv::ArrayValue(ArrayValue { values })) }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<JsonAny, A::Error> {
                let mut values: Vec<KeyValue> = Vec::new();
                while let Some((key, JsonAny(v))) = a.next_entry::<String, JsonAny>()? {
                    match values.iter_mut().find(|kv| kv.key == key) {
                        Some(kv) => kv.value = Some(v),
                        None => values.push(KeyValue { key, value: Some(v), ..Default::default() }),
                    }
                }
                Ok(JsonAny(AnyValue { value: Some(Pv::KvlistValue(KeyValueList { values })) }))
            }
        }
        d.deserialize_any(V)
    }
}
