//! Wire plans (ADR 21): the statements and conditions production configs use most, run
//! straight on a span's or log record's bytes, one pass per item and nothing allocated per
//! item. A plan covers comparisons of the item's attributes (one literal key), `name`, `kind`,
//! `status.code`, `severity_number` and `severity_text` with literals, joined with `and`, `or`
//! and `not`; and the editors `set(attributes["k"], literal | attributes["j"])` and
//! `delete_key(attributes, "k")`, each with its `where`. Anything else has no plan and runs on
//! the general evaluator ([`Statement`], [`Condition`]); the two agree on every item (the
//! property tests below and the fuzz target `ottl_plan` check it), pdata's semantics included:
//! `Map.Get` finds a key's first occurrence, a set key keeps its place or goes last, a deleted
//! key takes the last one's place, a nil value or a missing source sets an empty value.

use crate::compile::{Binder, Cond, Getter, KeyG};
use crate::context::{Ctx, F};
use crate::slot::{R, V, key_value, lookup_in, next_field, same, wire_val};
use crate::value::{Val, compare};
use crate::{Condition, Statement, ast};
use prost::Message as _;
use sightline_core::wire::{self, WireType};
use smallvec::SmallVec;
use std::borrow::Cow;

/// The item type a plan runs on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Span,
    Log,
}

impl Kind {
    pub fn of(ctx: Ctx) -> Option<Kind> {
        match ctx {
            Ctx::Span => Some(Kind::Span),
            Ctx::Log => Some(Kind::Log),
            _ => None,
        }
    }

    fn attrs_field(self) -> u32 {
        match self {
            Kind::Span => 9,
            Kind::Log => 6,
        }
    }

    fn attrs_path(self) -> F {
        match self {
            Kind::Span => F::SpanAttrs,
            Kind::Log => F::LogAttrs,
        }
    }
}

/// A value a plan reads.
#[derive(Debug)]
enum Get {
    Lit(Val<'static>),
    /// An attribute of the item, by key.
    Attr(Box<[u8]>),
    Name,
    SpanKind,
    StatusCode,
    SevNum,
    SevText,
}

#[derive(Debug)]
enum PCond {
    Or(Vec<PCond>),
    And(Vec<PCond>),
    Not(Box<PCond>),
    Cmp(Get, &'static str, Get),
    /// `attributes[key] == "lit"` (or `!=`, `eq` false), the form of most filter conditions:
    /// resolved when the plan is built so that each item costs a lookup and a byte compare.
    AttrStr {
        key: Box<[u8]>,
        lit: Box<str>,
        eq: bool,
    },
    Const(bool),
}

impl PCond {
    fn reads_scalars(&self) -> bool {
        match self {
            PCond::Or(v) | PCond::And(v) => v.iter().any(PCond::reads_scalars),
            PCond::Not(c) => c.reads_scalars(),
            PCond::Cmp(a, _, b) => [a, b].iter().any(|g| !matches!(g, Get::Lit(_) | Get::Attr(_))),
            PCond::AttrStr { .. } | PCond::Const(_) => false,
        }
    }
}

fn scalar_lit(v: &Val<'static>) -> bool {
    matches!(v, Val::Nil | Val::Bool(_) | Val::Int(_) | Val::Float(_) | Val::Str(_) | Val::Bytes(_))
}

fn get_of(g: &Getter, kind: Kind) -> Option<Get> {
    Some(match g {
        Getter::Lit(v) if scalar_lit(v) => Get::Lit(v.clone()),
        Getter::Path(p) => match (p.f, &p.keys[..], kind) {
            (f, [KeyG::Str(k)], _) if f == kind.attrs_path() => Get::Attr(k.as_bytes().into()),
            (F::SpanName, [], Kind::Span) => Get::Name,
            (F::SpanKind, [], Kind::Span) => Get::SpanKind,
            (F::SpanStatusCode, [], Kind::Span) => Get::StatusCode,
            (F::LogSevNum, [], Kind::Log) => Get::SevNum,
            (F::LogSevText, [], Kind::Log) => Get::SevText,
            _ => return None,
        },
        _ => return None,
    })
}

fn cond_of(c: &Cond, kind: Kind) -> Option<PCond> {
    Some(match c {
        Cond::Or(v) => PCond::Or(v.iter().map(|c| cond_of(c, kind)).collect::<Option<_>>()?),
        Cond::And(v) => PCond::And(v.iter().map(|c| cond_of(c, kind)).collect::<Option<_>>()?),
        Cond::Not(c) => PCond::Not(Box::new(cond_of(c, kind)?)),
        Cond::Cmp(a, op, b) => match (get_of(a, kind)?, *op, get_of(b, kind)?) {
            (Get::Attr(key), op @ ("==" | "!="), Get::Lit(Val::Str(lit)))
            | (Get::Lit(Val::Str(lit)), op @ ("==" | "!="), Get::Attr(key)) => {
                PCond::AttrStr { key, lit: lit.as_ref().into(), eq: op == "==" }
            }
            (a, op, b) => PCond::Cmp(a, op, b),
        },
        Cond::Const(b) => PCond::Const(*b),
        Cond::Conv(_) => return None,
    })
}

/// What `set` writes.
#[derive(Debug)]
enum SetV {
    /// An encoded `AnyValue` of the plan's table.
    Lit(u16),
    /// A copy of another attribute of the item (an empty value when it has none).
    Copy(Box<[u8]>),
}

#[derive(Debug)]
enum Op {
    Set { key: u16, value: SetV },
    Delete { key: u16 },
}

#[derive(Debug)]
struct Step {
    op: Op,
    cond: Option<PCond>,
}

#[derive(Debug, Default)]
struct Group {
    /// ORed; none means every item.
    conds: Vec<PCond>,
    steps: Vec<Step>,
}

/// A compiled plan: the groups of statements of a `transform` (or none) and the conditions of
/// a `filter` (or none), for one item type.
#[derive(Debug)]
pub struct Plan {
    kind: Kind,
    keys: Vec<Box<[u8]>>,
    /// Encoded `AnyValue`s.
    values: Vec<Vec<u8>>,
    groups: Vec<Group>,
    drop: Vec<PCond>,
    /// Whether a filter condition reads a scalar field.
    scalars: bool,
}

/// The empty `AnyValue`'s index in every plan's table.
const EMPTY: u16 = 0;

impl Plan {
    fn new(kind: Kind) -> Plan {
        Plan { kind, keys: Vec::new(), values: vec![Vec::new()], groups: Vec::new(), drop: Vec::new(), scalars: false }
    }

    /// A filter's conditions (any true drops the item) as a plan; `None` when one of them has
    /// none.
    pub fn filter(ctx: Ctx, conds: &[Condition]) -> Option<Plan> {
        let kind = Kind::of(ctx)?;
        let mut p = Plan::new(kind);
        p.drop = conds.iter().map(|c| cond_of(&c.cond, kind)).collect::<Option<_>>()?;
        p.scalars = p.drop.iter().any(PCond::reads_scalars);
        Some(p)
    }

    /// Adds a transform group (its `conditions` ORed, then its statements in order); false
    /// (and the plan unusable) when one of them has no plan.
    pub fn add_group(&mut self, conds: &[Condition], statements: &[Statement]) -> bool {
        let Some(conds) = conds.iter().map(|c| cond_of(&c.cond, self.kind)).collect::<Option<Vec<_>>>() else {
            return false;
        };
        let mut steps = Vec::with_capacity(statements.len());
        for s in statements {
            let Some(op) = self.op_of(&s.ast.editor) else { return false };
            let cond = match &s.cond {
                Some(c) => match cond_of(c, self.kind) {
                    Some(c) => Some(c),
                    None => return false,
                },
                None => None,
            };
            steps.push(Step { op, cond });
        }
        self.groups.push(Group { conds, steps });
        true
    }

    /// An empty transform plan for statements of `ctx`.
    pub fn transform(ctx: Ctx) -> Option<Plan> {
        Kind::of(ctx).map(Plan::new)
    }

    fn key(&mut self, k: &str) -> Option<u16> {
        let i = match self.keys.iter().position(|x| &**x == k.as_bytes()) {
            Some(i) => i,
            None => {
                self.keys.push(k.as_bytes().into());
                self.keys.len() - 1
            }
        };
        u16::try_from(i).ok()
    }

    /// The editor's plan, bound as the general binder binds it (positional arguments only).
    fn op_of(&mut self, call: &ast::Call) -> Option<Op> {
        if !call.keys.is_empty() || call.args.iter().any(|a| a.name.is_some()) {
            return None;
        }
        let b = Binder::new(match self.kind {
            Kind::Span => Ctx::Span,
            Kind::Log => Ctx::Log,
        });
        let attrs = self.kind.attrs_path();
        match (call.name.as_str(), &call.args[..]) {
            ("set", [target, value]) => {
                let ast::Expr::Path(tp) = &target.value else { return None };
                let t = b.path(tp).ok()?;
                let (true, [KeyG::Str(k)]) = (t.f == attrs, &t.keys[..]) else { return None };
                let value = match b.getter(&value.value).ok()? {
                    Getter::Lit(Val::Nil) => SetV::Lit(EMPTY),
                    Getter::Lit(v) if scalar_lit(&v) => {
                        self.values.push(v.to_any()?.encode_to_vec());
                        SetV::Lit(u16::try_from(self.values.len() - 1).ok()?)
                    }
                    Getter::Path(p) => match (p.f == attrs, &p.keys[..]) {
                        (true, [KeyG::Str(from)]) => SetV::Copy(from.as_bytes().into()),
                        _ => return None,
                    },
                    _ => return None,
                };
                Some(Op::Set { key: self.key(k)?, value })
            }
            ("delete_key", [target, key]) => {
                let ast::Expr::Path(tp) = &target.value else { return None };
                let t = b.path(tp).ok()?;
                let ast::Expr::Str(k) = &key.value else { return None };
                if t.f != attrs || !t.keys.is_empty() {
                    return None;
                }
                Some(Op::Delete { key: self.key(k)? })
            }
            _ => None,
        }
    }

    /// Whether the filter's conditions drop the item.
    pub fn drops(&self, raw: &[u8]) -> bool {
        // Nothing is edited: attributes are looked up in the bytes (keys only, up to the
        // first match), and the scalars scanned only when a condition reads one.
        let mut item = Item::light(raw);
        if self.scalars {
            item.read_scalars(self.kind);
        }
        self.drop.iter().any(|c| self.eval(c, &item))
    }

    /// Runs the statements on the item; when they change it, appends the new item to `out`
    /// (its message, no tag or length) and returns true.
    pub fn transform_item(&self, raw: &[u8], out: &mut Vec<u8>) -> bool {
        self.transform_into(raw, || out)
    }

    /// [`Plan::transform_item`], the buffer asked for only when the item changes.
    pub fn transform_into<'o>(&self, raw: &[u8], out: impl FnOnce() -> &'o mut Vec<u8>) -> bool {
        let mut item = Item::light(raw);
        item.scan(self.kind);
        for g in &self.groups {
            if !g.conds.is_empty() && !g.conds.iter().any(|c| self.eval(c, &item)) {
                continue;
            }
            for s in &g.steps {
                if s.cond.as_ref().is_some_and(|c| !self.eval(c, &item)) {
                    continue;
                }
                self.apply(&s.op, &mut item);
            }
        }
        if !item.changed {
            return false;
        }
        self.write(&item, out());
        true
    }

    fn apply(&self, op: &Op, item: &mut Item) {
        match op {
            Op::Set { key, value } => {
                let v = match value {
                    SetV::Lit(i) => Src::Plan(*i),
                    SetV::Copy(from) => match item.find(self, from) {
                        Some(i) => item.entries[i].value,
                        None => Src::Plan(EMPTY),
                    },
                };
                let k = &self.keys[*key as usize];
                match item.find(self, k) {
                    Some(i) => {
                        item.entries[i].value = v;
                        item.entries[i].field = None;
                    }
                    None => item.entries.push(Entry { key: Src::Plan(*key), value: v, field: None }),
                }
                item.changed = true;
            }
            Op::Delete { key } => {
                if let Some(i) = item.find(self, &self.keys[*key as usize]) {
                    item.entries.swap_remove(i);
                    item.changed = true;
                }
            }
        }
    }

    fn bytes<'a>(&'a self, item: &Item<'a>, s: Src, key: bool) -> &'a [u8] {
        match s {
            Src::Raw(r) => &item.raw[r.0 as usize..r.1 as usize],
            Src::Plan(i) if key => &self.keys[i as usize],
            Src::Plan(i) => &self.values[i as usize],
        }
    }

    fn read<'a>(&'a self, g: &'a Get, item: &Item<'a>) -> Val<'a> {
        match g {
            Get::Lit(v) => match v {
                Val::Str(s) => Val::Str(Cow::Borrowed(s)),
                Val::Bytes(b) => Val::Bytes(Cow::Borrowed(b)),
                v => v.clone(),
            },
            Get::Attr(k) => self.attr(k, item),
            Get::Name | Get::SevText => Val::Str(Cow::Borrowed(
                std::str::from_utf8(&item.raw[item.text.0 as usize..item.text.1 as usize]).unwrap_or(""),
            )),
            Get::SpanKind | Get::SevNum => Val::Int(item.kind.into()),
            Get::StatusCode => Val::Int(item.status.into()),
        }
    }

    fn attr<'b>(&'b self, k: &[u8], item: &Item<'b>) -> Val<'b> {
        match item.value_of(self, k) {
            Some(v) => wire::AnyValue::parse(self.bytes(item, v, false)).map_or(Val::Nil, wire_val),
            None => Val::Nil,
        }
    }

    fn eval(&self, c: &PCond, item: &Item) -> bool {
        match c {
            PCond::Or(v) => v.iter().any(|c| self.eval(c, item)),
            PCond::And(v) => v.iter().all(|c| self.eval(c, item)),
            PCond::Not(c) => !self.eval(c, item),
            PCond::Const(b) => *b,
            PCond::AttrStr { key, lit, eq } => {
                // A string attribute against a string literal: its bytes compared, not
                // validated (equal bytes are the literal's, valid UTF-8; unequal ones give
                // the same answer as a value that does not decode, nil).
                let same_value = match item.value_of(self, key) {
                    Some(v) => match only_string(self.bytes(item, v, false)) {
                        Some(s) => same(s, lit.as_bytes()),
                        None => {
                            let op = if *eq { "==" } else { "!=" };
                            return compare(&self.attr(key, item), &Val::Str(Cow::Borrowed(lit)), op);
                        }
                    },
                    None => false,
                };
                same_value == *eq
            }
            PCond::Cmp(a, op, b) => compare(&self.read(a, item), &self.read(b, item), op),
        }
    }

    fn write(&self, item: &Item, out: &mut Vec<u8>) {
        let raw = item.raw;
        let field = self.kind.attrs_field();
        let put = |out: &mut Vec<u8>, e: &Entry| match e.field {
            Some(f) => out.extend_from_slice(&raw[f.0 as usize..f.1 as usize]),
            None => {
                let (k, v) = (self.bytes(item, e.key, true), self.bytes(item, e.value, false));
                let len = wire::len_field_size(1, k.len()) + wire::len_field_size(2, v.len());
                wire::put_tag(out, field, WireType::Len);
                wire::put_varint(out, len as u64);
                wire::put_len_field(out, 1, k);
                wire::put_len_field(out, 2, v);
            }
        };
        match item.run {
            Some(run) if item.contiguous => {
                // Unchanged attributes still in their place are copied with the bytes before
                // them, as few ranges as possible.
                let mut pending: R = (0, run.0);
                for e in &item.entries {
                    match e.field {
                        Some(f) if f.0 == pending.1 => pending.1 = f.1,
                        _ => {
                            out.extend_from_slice(&raw[pending.0 as usize..pending.1 as usize]);
                            pending = (pending.1, pending.1);
                            match e.field {
                                Some(f) => pending = f,
                                None => put(out, e),
                            }
                        }
                    }
                }
                if pending.1 == run.1 {
                    out.extend_from_slice(&raw[pending.0 as usize..]);
                } else {
                    out.extend_from_slice(&raw[pending.0 as usize..pending.1 as usize]);
                    out.extend_from_slice(&raw[run.1 as usize..]);
                }
            }
            _ => {
                // No attributes or several runs: the other fields in order, the attributes
                // before the first field numbered after them.
                let (mut pos, mut written) = (0, false);
                loop {
                    let start = pos;
                    let Some((number, _)) = next_field(raw, &mut pos, 0) else { break };
                    if !written && number >= field {
                        item.entries.iter().for_each(|e| put(out, e));
                        written = true;
                    }
                    if number != field {
                        out.extend_from_slice(&raw[start..pos]);
                    }
                }
                if !written {
                    item.entries.iter().for_each(|e| put(out, e));
                }
            }
        }
    }
}

/// The bytes of an `AnyValue` that is exactly one `string_value` field.
#[inline(always)]
fn only_string(b: &[u8]) -> Option<&[u8]> {
    match b {
        [0x0a, len, rest @ ..] if *len < 0x80 => (rest.len() == usize::from(*len)).then_some(rest),
        _ => only_string_long(b),
    }
}

/// [`only_string`] of a string of 128 bytes or more (or of another value).
fn only_string_long(b: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = b.split_first()?;
    if tag != 0x0a {
        return None;
    }
    let mut pos = 0;
    let len = wire::read_varint(rest, &mut pos).ok()?;
    (rest.len() - pos == usize::try_from(len).ok()?).then(|| &rest[pos..])
}

/// Bytes of the item or of the plan's tables.
#[derive(Clone, Copy, Debug)]
enum Src {
    Raw(R),
    Plan(u16),
}

/// One attribute of the item as the statements leave it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    key: Src,
    value: Src,
    /// The whole field as received, while the attribute is unchanged.
    field: Option<R>,
}

/// One item, scanned once: its attributes (edited in place) and the scalars a plan reads.
struct Item<'a> {
    raw: &'a [u8],
    entries: SmallVec<[Entry; 16]>,
    /// The span's `name` or the log record's `severity_text`.
    text: R,
    /// The span's `kind` or the log record's `severity_number`.
    kind: i32,
    status: i32,
    /// From the first attribute field's start to the last one's end.
    run: Option<R>,
    contiguous: bool,
    changed: bool,
    /// Attributes are not in `entries` but looked up in the bytes (nothing is edited).
    light: bool,
}

impl<'a> Item<'a> {
    // `Item` is large (its entries are inline): it is built in its caller's frame by `light`
    // and filled there in place; a constructor that filled a local and returned it copied
    // 640 bytes per item.

    /// An item whose attributes are looked up in the bytes, its scalars not read yet.
    #[inline(always)]
    fn light(raw: &'a [u8]) -> Item<'a> {
        Item {
            raw,
            entries: SmallVec::new(),
            text: (0, 0),
            kind: 0,
            status: 0,
            run: None,
            contiguous: true,
            changed: false,
            light: true,
        }
    }

    /// As the slot's scan: malformed bytes end it (the receiver checked the item's framing),
    /// the last occurrence of a scalar field wins. The attributes go to `entries`.
    fn scan(&mut self, kind: Kind) {
        self.light = false;
        let raw = self.raw;
        let field = kind.attrs_field();
        let (mut pos, mut after_run) = (0, false);
        loop {
            let start = pos as u32;
            let Some((number, v)) = next_field(raw, &mut pos, 0) else { break };
            if number == field {
                let V::Len(kv) = v else { continue };
                if after_run {
                    self.contiguous = false;
                }
                let (key, value) = key_value(raw, kv);
                let end = pos as u32;
                self.run = Some(self.run.map_or((start, end), |r| (r.0, end)));
                self.entries.push(Entry { key: Src::Raw(key), value: Src::Raw(value), field: Some((start, end)) });
                continue;
            }
            after_run |= !self.entries.is_empty();
            self.note(kind, number, v);
        }
    }

    /// The scalars only (attribute fields skipped).
    fn read_scalars(&mut self, kind: Kind) {
        let raw = self.raw;
        let mut pos = 0;
        while let Some((number, v)) = next_field(raw, &mut pos, 0) {
            self.note(kind, number, v);
        }
    }

    fn note(&mut self, kind: Kind, number: u32, v: V) {
        match (kind, number, v) {
            (Kind::Span, 5, V::Len(r)) | (Kind::Log, 3, V::Len(r)) => self.text = r,
            (Kind::Span, 6, V::Varint(k)) | (Kind::Log, 2, V::Varint(k)) => self.kind = k as i32,
            (Kind::Span, 15, V::Len(r)) => {
                let (body, mut p) = (&self.raw[r.0 as usize..r.1 as usize], 0);
                while let Some((n, x)) = next_field(body, &mut p, r.0) {
                    if let (3, V::Varint(c)) = (n, x) {
                        self.status = c as i32;
                    }
                }
            }
            _ => {}
        }
    }

    /// The first attribute `key` (pdata's `Map.Get`).
    fn find(&self, plan: &Plan, key: &[u8]) -> Option<usize> {
        self.entries.iter().position(|e| same(plan.bytes(self, e.key, true), key))
    }

    /// The value of the first attribute `key`.
    fn value_of(&self, plan: &Plan, key: &[u8]) -> Option<Src> {
        if !self.light {
            return self.find(plan, key).map(|i| self.entries[i].value);
        }
        lookup_in(self.raw, plan.kind.attrs_field(), key).map(Src::Raw)
    }
}

#[cfg(test)]
mod tests;
