//! Evaluating compiled getters and conditions on a [`Target`], and writing through paths.

use crate::compile::{Cond, Getter, KeyG, PathRef};
use crate::context::{F, Target, any_map_mut};
use crate::value::{Val, compare};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Pv;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList};
use std::borrow::Cow;

/// A `[...]` key, evaluated.
pub enum RKey {
    Str(String),
    Int(i64),
}

pub fn resolve_keys(keys: &[KeyG], t: &Target) -> Result<Vec<RKey>, String> {
    keys.iter()
        .map(|k| {
            Ok(match k {
                KeyG::Str(s) => RKey::Str(s.clone()),
                KeyG::Int(i) => RKey::Int(*i),
                KeyG::Expr(g) => match get(g, t)? {
                    Val::Str(s) => RKey::Str(s.into_owned()),
                    Val::Int(i) => RKey::Int(i),
                    v => return Err(format!("a key must be a string or an integer, got {}", v.type_name())),
                },
            })
        })
        .collect()
}

fn owned_any(v: AnyValue) -> Val<'static> {
    match v.value {
        None | Some(Pv::StringValueStrindex(_)) => Val::Nil,
        Some(Pv::StringValue(s)) => Val::Str(Cow::Owned(s)),
        Some(Pv::BoolValue(b)) => Val::Bool(b),
        Some(Pv::IntValue(i)) => Val::Int(i),
        Some(Pv::DoubleValue(d)) => Val::Float(d),
        Some(Pv::BytesValue(b)) => Val::Bytes(Cow::Owned(b)),
        Some(Pv::ArrayValue(a)) => Val::List(Cow::Owned(a.values)),
        Some(Pv::KvlistValue(m)) => Val::Map(Cow::Owned(m.values)),
    }
}

fn index_one<'a>(v: Val<'a>, k: &RKey) -> Result<Val<'a>, String> {
    Ok(match (v, k) {
        (Val::Nil, _) => Val::Nil,
        (Val::Map(Cow::Borrowed(m)), RKey::Str(s)) => {
            m.iter().find(|kv| kv.key == *s).map_or(Val::Nil, |kv| Val::from_any(kv.value.as_ref()))
        }
        (Val::Map(Cow::Owned(m)), RKey::Str(s)) => match m.into_iter().find(|kv| kv.key == *s) {
            Some(kv) => kv.value.map_or(Val::Nil, owned_any),
            None => Val::Nil,
        },
        (Val::List(l), RKey::Int(i)) => {
            let len = l.len();
            let i = usize::try_from(*i).ok().filter(|i| *i < len).ok_or_else(|| format!("index {i} out of bounds"))?;
            match l {
                Cow::Borrowed(l) => Val::from_any(Some(&l[i])),
                Cow::Owned(mut l) => owned_any(l.swap_remove(i)),
            }
        }
        (v, RKey::Str(_)) => return Err(format!("type {} does not support string indexing", v.type_name())),
        (v, RKey::Int(_)) => return Err(format!("type {} does not support int indexing", v.type_name())),
    })
}

/// Reads a path with its keys already evaluated.
pub fn read_path<'a>(t: &'a Target, p: &PathRef, keys: &[RKey]) -> Result<Val<'a>, String> {
    if let Some(RKey::Str(k)) = keys.first()
        && let Some(mut v) = t.item_attr(p.f, k)
    {
        for k in &keys[1..] {
            v = index_one(v, k)?;
        }
        return Ok(v);
    }
    let mut v = t.get(p.f);
    for k in keys {
        v = index_one(v, k)?;
    }
    Ok(v)
}

fn index<'a>(mut v: Val<'a>, keys: &[KeyG], t: &'a Target) -> Result<Val<'a>, String> {
    if keys.is_empty() {
        return Ok(v);
    }
    for k in resolve_keys(keys, t)? {
        v = index_one(v, &k)?;
    }
    Ok(v)
}

pub fn get<'a>(g: &'a Getter, t: &'a Target) -> Result<Val<'a>, String> {
    Ok(match g {
        Getter::Lit(v) => match v {
            Val::Str(s) => Val::Str(Cow::Borrowed(s)),
            Val::Bytes(b) => Val::Bytes(Cow::Borrowed(b)),
            v => v.clone(),
        },
        Getter::Path(p) => {
            // One attribute of a span or log record: read on the wire, no decoding.
            if let Some(KeyG::Str(k)) = p.keys.first()
                && let Some(v) = t.item_attr(p.f, k)
            {
                return index(v, &p.keys[1..], t);
            }
            index(t.get(p.f), &p.keys, t)?
        }
        Getter::Conv(f, keys) => index(f(t)?, keys, t)?,
        Getter::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for x in items {
                match get(x, t)?.to_any() {
                    Some(a) => out.push(a),
                    None => out.push(AnyValue { value: None }),
                }
            }
            Val::List(Cow::Owned(out))
        }
        Getter::Map(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (k, x) in items {
                out.push(KeyValue { key: k.clone(), value: get(x, t)?.to_any(), ..Default::default() });
            }
            Val::Map(Cow::Owned(out))
        }
        Getter::Math(a, op, b) => math(&get(a, t)?, *op, &get(b, t)?)?,
        Getter::Neg(a) => match get(a, t)? {
            Val::Int(i) => Val::Int(i.wrapping_neg()),
            Val::Float(f) => Val::Float(-f),
            v => return Err(format!("cannot negate a {}", v.type_name())),
        },
    })
}

fn math(a: &Val, op: char, b: &Val) -> Result<Val<'static>, String> {
    Ok(match (a, b) {
        (Val::Int(x), Val::Int(y)) => Val::Int(match op {
            '+' => x.wrapping_add(*y),
            '-' => x.wrapping_sub(*y),
            '*' => x.wrapping_mul(*y),
            _ => {
                if *y == 0 {
                    return Err("attempted to divide by 0".into());
                }
                x.wrapping_div(*y)
            }
        }),
        (Val::Float(x), Val::Float(y)) => Val::Float(match op {
            '+' => x + y,
            '-' => x - y,
            '*' => x * y,
            _ => {
                if *y == 0.0 {
                    return Err("attempted to divide by 0".into());
                }
                x / y
            }
        }),
        (Val::Time(x), Val::Time(y)) if op == '-' => Val::Duration(x - y),
        (Val::Time(x), Val::Duration(d)) if op == '+' => Val::Time(x + d),
        (Val::Time(x), Val::Duration(d)) if op == '-' => Val::Time(x - d),
        (Val::Duration(x), Val::Duration(y)) if op == '+' => Val::Duration(x + y),
        (Val::Duration(x), Val::Duration(y)) if op == '-' => Val::Duration(x - y),
        _ => return Err(format!("unsupported math operation {op} on {} and {}", a.type_name(), b.type_name())),
    })
}

pub fn cond(c: &Cond, t: &Target) -> Result<bool, String> {
    Ok(match c {
        Cond::Or(v) => {
            for x in v {
                if cond(x, t)? {
                    return Ok(true);
                }
            }
            false
        }
        Cond::And(v) => {
            for x in v {
                if !cond(x, t)? {
                    return Ok(false);
                }
            }
            true
        }
        Cond::Not(x) => !cond(x, t)?,
        Cond::Cmp(a, op, b) => compare(&get(a, t)?, &get(b, t)?, op),
        Cond::Const(b) => *b,
        Cond::Conv(g) => match get(g, t)? {
            Val::Bool(b) => b,
            v => return Err(format!("a condition must be a boolean, got {}", v.type_name())),
        },
    })
}

fn find_or_insert<'m>(m: &'m mut Vec<KeyValue>, key: &str) -> &'m mut Option<AnyValue> {
    let i = match m.iter().position(|kv| kv.key == key) {
        Some(i) => i,
        None => {
            m.push(KeyValue { key: key.to_string(), value: Some(AnyValue { value: None }), ..Default::default() });
            m.len() - 1
        }
    };
    &mut m[i].value
}

/// Where a write through keys lands: a map entry's value or a list element.
enum Slot<'v> {
    Entry(&'v mut Option<AnyValue>),
    Elem(&'v mut AnyValue),
}

impl Slot<'_> {
    fn value(&mut self) -> &mut AnyValue {
        match self {
            Slot::Entry(o) => o.get_or_insert_with(|| AnyValue { value: None }),
            Slot::Elem(v) => v,
        }
    }
}

/// Walks `keys` from a slot, creating maps for missing string keys.
fn walk<'v>(slot: Slot<'v>, keys: &[RKey]) -> Result<Slot<'v>, String> {
    let Some((k, rest)) = keys.split_first() else { return Ok(slot) };
    let v: &'v mut AnyValue = match slot {
        Slot::Entry(o) => o.get_or_insert_with(|| AnyValue { value: None }),
        Slot::Elem(v) => v,
    };
    match k {
        RKey::Str(s) => {
            if v.value.is_none() {
                v.value = Some(Pv::KvlistValue(KeyValueList::default()));
            }
            let ty = Val::from_any(Some(v)).type_name();
            let Some(Pv::KvlistValue(m)) = &mut v.value else {
                return Err(format!("type {ty} does not support string indexing"));
            };
            walk(Slot::Entry(find_or_insert(&mut m.values, s)), rest)
        }
        RKey::Int(i) => {
            let ty = Val::from_any(Some(v)).type_name();
            let Some(Pv::ArrayValue(a)) = &mut v.value else {
                return Err(format!("type {ty} does not support int indexing"));
            };
            let len = a.values.len();
            let i = usize::try_from(*i).ok().filter(|i| *i < len).ok_or_else(|| format!("index {i} out of bounds"))?;
            walk(Slot::Elem(&mut a.values[i]), rest)
        }
    }
}

/// `set`: writes `v` through the path and its keys.
pub fn set_path(t: &mut Target, p: &PathRef, keys: &[RKey], v: Val<'static>) -> Result<(), String> {
    if keys.is_empty() {
        return t.set(p.f, v);
    }
    let any = if v == Val::Nil { Some(AnyValue { value: None }) } else { v.into_any() };
    if let [RKey::Str(k)] = keys
        && t.is_item_attrs(p.f)
    {
        if let Some(a) = any {
            t.set_item_attr(p.f, k, a);
        }
        return Ok(());
    }
    let mut slot = if p.f == F::LogBody {
        let Some(body) = t.body_mut() else { return Ok(()) };
        walk(Slot::Entry(body), keys)?
    } else {
        let Some(m) = t.map_mut(p.f) else { return Ok(()) };
        let RKey::Str(first) = &keys[0] else { return Err("a map does not support int indexing".into()) };
        walk(Slot::Entry(find_or_insert(m, first)), &keys[1..])?
    };
    if let Some(a) = any {
        *slot.value() = a;
    }
    Ok(())
}

/// The map a `PMapGetSetter` argument names, for editing in place.
pub fn map_target<'t>(t: &'t mut Target, p: &PathRef, keys: &[RKey]) -> Result<&'t mut Vec<KeyValue>, String> {
    let not_map = |what: &str| format!("{}: expected a map but got {what}", p.text);
    if keys.is_empty() {
        if p.f == F::LogBody {
            let body = t.body_mut().ok_or_else(|| not_map("nil"))?;
            let b = body.as_mut().ok_or_else(|| not_map("nil"))?;
            let ty = Val::from_any(Some(b)).type_name();
            return any_map_mut(b).ok_or_else(|| not_map(ty));
        }
        return t.map_mut(p.f).ok_or_else(|| not_map("nothing"));
    }
    // Read-only walk: a missing key is an error (nil is not a map).
    let mut cur: &mut AnyValue = if p.f == F::LogBody {
        t.body_mut().and_then(|b| b.as_mut()).ok_or_else(|| not_map("nil"))?
    } else {
        let m = t.map_mut(p.f).ok_or_else(|| not_map("nothing"))?;
        let RKey::Str(first) = &keys[0] else { return Err(not_map("a map indexed by an integer")) };
        let kv = m.iter_mut().find(|kv| kv.key == *first).ok_or_else(|| not_map("nil"))?;
        kv.value.as_mut().ok_or_else(|| not_map("nil"))?
    };
    let rest = if p.f == F::LogBody { keys } else { &keys[1..] };
    for k in rest {
        let next: &mut AnyValue = match (k, &mut cur.value) {
            (RKey::Str(s), Some(Pv::KvlistValue(m))) => m
                .values
                .iter_mut()
                .find(|kv| kv.key == *s)
                .and_then(|kv| kv.value.as_mut())
                .ok_or_else(|| not_map("nil"))?,
            (RKey::Int(i), Some(Pv::ArrayValue(a))) => usize::try_from(*i)
                .ok()
                .and_then(|i| a.values.get_mut(i))
                .ok_or_else(|| format!("index {i} out of bounds"))?,
            _ => return Err(not_map("a value that cannot be indexed")),
        };
        cur = next;
    }
    let ty = Val::from_any(Some(cur)).type_name();
    any_map_mut(cur).ok_or_else(|| not_map(ty))
}
