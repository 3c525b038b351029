//! Wire plans (ADR 21): the statements and conditions production configs use most, run
//! straight on a span's or log record's bytes, one pass per item and nothing allocated per
//! item. A plan covers comparisons of the item's attributes (one literal key), `name`, `kind`,
//! `status.code`, `severity_number` and `severity_text` with literals, joined with `and`, `or`
//! and `not`; and the editors `set(attributes["k"], literal | attributes["j"])` and
//! `delete_key(attributes, "k")`, each with its `where`. A plan knows every attribute key it
//! reads or writes, and a transform's one pass over the item notes where each of them is, so
//! that its statements find attributes without searching. Anything else has no plan and runs on
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

    /// Where a walk of an item's fields may start: after a span's ids (which no plan reads)
    /// and its head ([`wire::span_head`]: its name and kind, then given as well) in the
    /// layout every SDK writes.
    #[inline(always)]
    fn first_field(self, raw: &[u8]) -> (usize, Option<wire::SpanHead>) {
        match self {
            Kind::Span => {
                let ids = wire::span_ids_prefix(raw);
                match wire::span_head(raw, ids) {
                    Some(h) => (h.end, Some(h)),
                    None => (ids, None),
                }
            }
            Kind::Log => (0, None),
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
    /// An attribute of the item, by its key's index in the plan's table.
    Attr(u16),
    Name,
    SpanKind,
    StatusCode,
    SevNum,
    SevText,
}

impl Get {
    /// The scalar fields this value reads.
    fn reads(&self) -> Reads {
        match self {
            Get::Lit(_) | Get::Attr(_) => Reads::default(),
            Get::Name | Get::SevText => Reads { scalars: true, status: false },
            Get::SpanKind | Get::SevNum => Reads { scalars: true, status: false },
            Get::StatusCode => Reads { scalars: true, status: true },
        }
    }
}

/// What of an item's scalar fields a plan reads: any (`name`, `kind`, ...), and the span's
/// status (a message of its own).
#[derive(Clone, Copy, Debug, Default)]
struct Reads {
    scalars: bool,
    status: bool,
}

impl Reads {
    fn or(self, o: Reads) -> Reads {
        Reads { scalars: self.scalars | o.scalars, status: self.status | o.status }
    }
}

/// The orderings of an item's integer field against a literal that make a comparison true,
/// one bit each: less (1), equal (2), greater (4).
fn int_mask(op: &str, literal_first: bool) -> u8 {
    let m = match op {
        "==" => 2,
        "!=" => 5,
        "<" => 1,
        "<=" => 3,
        ">" => 4,
        ">=" => 6,
        _ => 0,
    };
    // `3 < kind` is `kind > 3`: less and greater swap.
    if literal_first { (m & 2) | ((m & 1) << 2) | ((m & 4) >> 2) } else { m }
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
        key: u16,
        /// The key's bytes, for a filter's lookup in the item's bytes.
        bytes: Box<[u8]>,
        lit: Box<str>,
        eq: bool,
    },
    /// `kind == SPAN_KIND_SERVER`, `severity_number >= 9`: an integer field (a [`Get`] that
    /// reads one) against an integer literal, the orderings that hold in `mask`
    /// ([`int_mask`]).
    Int {
        get: Get,
        lit: i64,
        mask: u8,
    },
    Const(bool),
}

impl PCond {
    fn reads(&self) -> Reads {
        match self {
            PCond::Or(v) | PCond::And(v) => v.iter().fold(Reads::default(), |r, c| r.or(c.reads())),
            PCond::Not(c) => c.reads(),
            PCond::Cmp(a, _, b) => a.reads().or(b.reads()),
            PCond::Int { get, .. } => get.reads(),
            PCond::AttrStr { .. } | PCond::Const(_) => Reads::default(),
        }
    }
}

fn scalar_lit(v: &Val<'static>) -> bool {
    matches!(v, Val::Nil | Val::Bool(_) | Val::Int(_) | Val::Float(_) | Val::Str(_) | Val::Bytes(_))
}

/// Whether `g` reads an integer field of the item.
fn int_field(g: &Get) -> bool {
    matches!(g, Get::SpanKind | Get::StatusCode | Get::SevNum)
}

/// What `set` writes.
#[derive(Debug)]
enum SetV {
    /// An encoded `AnyValue` of the plan's table.
    Lit(u16),
    /// A copy of another attribute of the item, by its key's index (an empty value when it
    /// has none).
    Copy(u16),
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
    /// Every attribute key the plan reads or writes.
    keys: Vec<Box<[u8]>>,
    /// By key length (63 for 63 bytes or more), the keys of that length: one bit per key
    /// index, for plans of at most [`INDEXED`] keys. A scan notes where each key is as it
    /// goes, so that statements find their attributes without a search.
    by_len: [u8; 64],
    /// Encoded `AnyValue`s.
    values: Vec<Vec<u8>>,
    /// The attribute fields `set(attributes[key], literal)` adds, encoded whole (tag, length,
    /// key and value) when the plan is built: (key index, value index, field).
    added: Vec<(u16, u16, Vec<u8>)>,
    groups: Vec<Group>,
    drop: Vec<PCond>,
    /// What the filter's conditions read.
    drop_reads: Reads,
    /// What the transform's conditions read.
    reads: Reads,
}

/// The most keys a plan indexes ([`Plan::by_len`]); a plan with more searches.
const INDEXED: usize = 8;

/// The empty `AnyValue`'s index in every plan's table.
const EMPTY: u16 = 0;

impl Plan {
    fn new(kind: Kind) -> Plan {
        Plan {
            kind,
            keys: Vec::new(),
            by_len: [0; 64],
            values: vec![Vec::new()],
            added: Vec::new(),
            groups: Vec::new(),
            drop: Vec::new(),
            drop_reads: Reads::default(),
            reads: Reads::default(),
        }
    }

    fn get_of(&mut self, g: &Getter) -> Option<Get> {
        let kind = self.kind;
        Some(match g {
            Getter::Lit(v) if scalar_lit(v) => Get::Lit(v.clone()),
            Getter::Path(p) => match (p.f, &p.keys[..], kind) {
                (f, [KeyG::Str(k)], _) if f == kind.attrs_path() => Get::Attr(self.key(k)?),
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

    fn cond_of(&mut self, c: &Cond) -> Option<PCond> {
        Some(match c {
            Cond::Or(v) => PCond::Or(v.iter().map(|c| self.cond_of(c)).collect::<Option<_>>()?),
            Cond::And(v) => PCond::And(v.iter().map(|c| self.cond_of(c)).collect::<Option<_>>()?),
            Cond::Not(c) => PCond::Not(Box::new(self.cond_of(c)?)),
            Cond::Cmp(a, op, b) => match (self.get_of(a)?, *op, self.get_of(b)?) {
                (Get::Attr(key), op @ ("==" | "!="), Get::Lit(Val::Str(lit)))
                | (Get::Lit(Val::Str(lit)), op @ ("==" | "!="), Get::Attr(key)) => {
                    let bytes = self.keys[usize::from(key)].clone();
                    PCond::AttrStr { key, bytes, lit: lit.as_ref().into(), eq: op == "==" }
                }
                (get, op, Get::Lit(Val::Int(lit))) if int_field(&get) => {
                    PCond::Int { get, lit, mask: int_mask(op, false) }
                }
                (Get::Lit(Val::Int(lit)), op, get) if int_field(&get) => {
                    PCond::Int { get, lit, mask: int_mask(op, true) }
                }
                (a, op, b) => PCond::Cmp(a, op, b),
            },
            Cond::Const(b) => PCond::Const(*b),
            Cond::Conv(_) => return None,
        })
    }

    /// A filter's conditions (any true drops the item) as a plan; `None` when one of them has
    /// none.
    pub fn filter(ctx: Ctx, conds: &[Condition]) -> Option<Plan> {
        let kind = Kind::of(ctx)?;
        let mut p = Plan::new(kind);
        p.drop = conds.iter().map(|c| p.cond_of(&c.cond)).collect::<Option<_>>()?;
        p.drop_reads = p.drop.iter().fold(Reads::default(), |r, c| r.or(c.reads()));
        Some(p)
    }

    /// Adds a transform group (its `conditions` ORed, then its statements in order); false
    /// (and the plan unusable) when one of them has no plan.
    pub fn add_group(&mut self, conds: &[Condition], statements: &[Statement]) -> bool {
        let Some(conds) = conds.iter().map(|c| self.cond_of(&c.cond)).collect::<Option<Vec<_>>>() else {
            return false;
        };
        let mut steps = Vec::with_capacity(statements.len());
        for s in statements {
            let Some(op) = self.op_of(&s.ast.editor) else { return false };
            let cond = match &s.cond {
                Some(c) => match self.cond_of(c) {
                    Some(c) => Some(c),
                    None => return false,
                },
                None => None,
            };
            steps.push(Step { op, cond });
        }
        let reads = conds.iter().chain(steps.iter().filter_map(|s| s.cond.as_ref()));
        self.reads = reads.fold(self.reads, |r, c| r.or(c.reads()));
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
                let i = self.keys.len() - 1;
                if i < INDEXED {
                    self.by_len[k.len().min(63)] |= 1 << i;
                }
                i
            }
        };
        u16::try_from(i).ok()
    }

    /// Whether the scan indexes the plan's keys.
    fn indexed(&self) -> bool {
        self.keys.len() <= INDEXED
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
                        (true, [KeyG::Str(from)]) => SetV::Copy(self.key(from)?),
                        _ => return None,
                    },
                    _ => return None,
                };
                let key = self.key(k)?;
                if let SetV::Lit(v) = value {
                    let mut whole = Vec::new();
                    self.encode_attr(&mut whole, &self.keys[usize::from(key)], &self.values[usize::from(v)]);
                    self.added.push((key, v, whole));
                }
                Some(Op::Set { key, value })
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
        if self.drop_reads.scalars {
            item.read_scalars(self.kind, self.drop_reads.status);
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
        item.scan(self);
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
                    SetV::Copy(from) => match item.find(self, *from) {
                        Some(i) => item.entries[i].value,
                        None => Src::Plan(EMPTY),
                    },
                };
                match item.find(self, *key) {
                    Some(i) => {
                        item.entries[i].value = v;
                        item.entries[i].field = None;
                    }
                    None => item.push(*key, v),
                }
                item.changed = true;
            }
            Op::Delete { key } => {
                if let Some(i) = item.find(self, *key) {
                    item.remove(*key, i);
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
            Get::Attr(k) => self.attr(*k, item),
            Get::Name | Get::SevText => Val::Str(Cow::Borrowed(
                std::str::from_utf8(&item.raw[item.text.0 as usize..item.text.1 as usize]).unwrap_or(""),
            )),
            Get::SpanKind | Get::SevNum => Val::Int(item.kind.into()),
            Get::StatusCode => Val::Int(item.status.into()),
        }
    }

    fn attr<'b>(&'b self, k: u16, item: &Item<'b>) -> Val<'b> {
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
            PCond::AttrStr { key, bytes, lit, eq } => {
                // A string attribute against a string literal: its bytes compared, not
                // validated (equal bytes are the literal's, valid UTF-8; unequal ones give
                // the same answer as a value that does not decode, nil).
                let at = match item.light {
                    true => lookup_in(item.raw, self.kind.first_field(item.raw).0, self.kind.attrs_field(), bytes)
                        .map(Src::Raw),
                    false => item.value_of(self, *key),
                };
                let same_value = match at {
                    Some(v) => match only_string(self.bytes(item, v, false)) {
                        Some(s) => same(s, lit.as_bytes()),
                        None => {
                            let op = if *eq { "==" } else { "!=" };
                            return compare(&self.attr(*key, item), &Val::Str(Cow::Borrowed(lit)), op);
                        }
                    },
                    None => false,
                };
                same_value == *eq
            }
            PCond::Int { get, lit, mask } => {
                let v = match get {
                    Get::StatusCode => item.status,
                    _ => item.kind,
                };
                mask & (1 << (i64::from(v).cmp(lit) as i8 + 1)) != 0
            }
            PCond::Cmp(a, op, b) => compare(&self.read(a, item), &self.read(b, item), op),
        }
    }

    /// An attribute field of the item type: tag, length, then the `KeyValue`'s key and value.
    fn encode_attr(&self, out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
        let len = wire::len_field_size(1, k.len()) + wire::len_field_size(2, v.len());
        wire::put_tag(out, self.kind.attrs_field(), WireType::Len);
        wire::put_varint(out, len as u64);
        wire::put_len_field(out, 1, k);
        wire::put_len_field(out, 2, v);
    }

    fn write(&self, item: &Item, out: &mut Vec<u8>) {
        let raw = item.raw;
        let field = self.kind.attrs_field();
        let put = |out: &mut Vec<u8>, e: &Entry| match (e.field, e.key, e.value) {
            (Some(f), _, _) => out.extend_from_slice(&raw[f.0 as usize..f.1 as usize]),
            // An attribute a `set` to a literal added: encoded when the plan was built.
            (None, Src::Plan(k), Src::Plan(v))
                if let Some((_, _, whole)) = self.added.iter().find(|a| a.0 == k && a.1 == v) =>
            {
                out.extend_from_slice(whole)
            }
            (None, _, _) => self.encode_attr(out, self.bytes(item, e.key, true), self.bytes(item, e.value, false)),
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
    /// Where in `entries` each of the plan's keys is ([`NOWHERE`] when absent), while
    /// `indexed`: the plan has at most [`INDEXED`] keys, none of them occurs twice, and there
    /// are fewer than 255 entries. Otherwise `find` searches.
    at: [u8; INDEXED],
    indexed: bool,
}

/// An absent key in [`Item::at`].
const NOWHERE: u8 = u8::MAX;

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
            at: [NOWHERE; INDEXED],
            indexed: false,
        }
    }

    /// As the slot's scan: malformed bytes end it (the receiver checked the item's framing),
    /// the last occurrence of a scalar field wins. The attributes go to `entries`.
    /// The plan's keys are noted as they pass ([`Item::at`]); the scalars are read when the
    /// plan's conditions read them.
    fn scan(&mut self, plan: &Plan) {
        self.light = false;
        self.indexed = plan.indexed();
        let (raw, kind, reads) = (self.raw, plan.kind, plan.reads);
        let field = kind.attrs_field();
        let attr_tag = (field << 3 | 2) as u8;
        let (mut pos, mut after_run) = (self.skip_head(kind), false);
        loop {
            let start = pos as u32;
            let tag = raw.get(pos).copied().unwrap_or(0);
            let kv = match raw.get(pos + 1) {
                // An attribute with a one-byte length (as every SDK writes them): its bounds
                // read here, its key and value by `key_value`.
                Some(&len) if tag == attr_tag && len < 0x80 && pos + 2 + usize::from(len) <= raw.len() => {
                    pos += 2 + usize::from(len);
                    (start + 2, pos as u32)
                }
                _ => {
                    let Some((number, v)) = next_field(raw, &mut pos, 0) else { break };
                    if number != field {
                        after_run |= !self.entries.is_empty();
                        if reads.scalars {
                            self.note(kind, number, v, reads.status);
                        }
                        continue;
                    }
                    let V::Len(kv) = v else { continue };
                    kv
                }
            };
            if after_run {
                self.contiguous = false;
            }
            let (key, value) = key_value(raw, kv);
            let end = pos as u32;
            self.run = Some(self.run.map_or((start, end), |r| (r.0, end)));
            if self.indexed {
                self.index(plan, key);
            }
            self.entries.push(Entry { key: Src::Raw(key), value: Src::Raw(value), field: Some((start, end)) });
        }
        // Every index, and the entry count, fits in a byte below `NOWHERE`.
        if self.entries.len() >= usize::from(NOWHERE) {
            self.indexed = false;
        }
    }

    /// Notes where the next entry is if its key (at `key` in the item) is one of the plan's.
    #[inline(always)]
    fn index(&mut self, plan: &Plan, key: R) {
        let k = &self.raw[key.0 as usize..key.1 as usize];
        let mut of_len = plan.by_len[k.len().min(63)];
        while of_len != 0 {
            let i = of_len.trailing_zeros() as usize;
            of_len &= of_len - 1;
            if same(k, &plan.keys[i]) {
                let n = self.entries.len();
                // A key met twice (pdata finds the first; removing it uncovers the next) or
                // too many entries for a byte: searched instead.
                if self.at[i] != NOWHERE || n >= usize::from(NOWHERE) {
                    self.indexed = false;
                }
                self.at[i] = n as u8;
                return;
            }
        }
    }

    /// Where the walk of the item's fields starts ([`Kind::first_field`]), the head's scalars
    /// noted as the walk would have (a later occurrence still wins).
    #[inline(always)]
    fn skip_head(&mut self, kind: Kind) -> usize {
        let (from, head) = kind.first_field(self.raw);
        if let Some(h) = head {
            self.text = (h.name.0 as u32, h.name.1 as u32);
            self.kind = i32::from(h.kind);
        }
        from
    }

    /// The scalars only (attribute fields skipped).
    fn read_scalars(&mut self, kind: Kind, status: bool) {
        let raw = self.raw;
        let mut pos = self.skip_head(kind);
        while let Some((number, v)) = next_field(raw, &mut pos, 0) {
            self.note(kind, number, v, status);
        }
    }

    #[inline(always)]
    fn note(&mut self, kind: Kind, number: u32, v: V, status: bool) {
        match (kind, number, v) {
            (Kind::Span, 5, V::Len(r)) | (Kind::Log, 3, V::Len(r)) => self.text = r,
            (Kind::Span, 6, V::Varint(k)) | (Kind::Log, 2, V::Varint(k)) => self.kind = k as i32,
            (Kind::Span, 15, V::Len(r)) if status => {
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

    /// The first attribute with the plan's key `key` (pdata's `Map.Get`).
    #[inline(always)]
    fn find(&self, plan: &Plan, key: u16) -> Option<usize> {
        if self.indexed {
            let i = self.at[usize::from(key)];
            return (i != NOWHERE).then_some(usize::from(i));
        }
        let key = &plan.keys[usize::from(key)];
        self.entries.iter().position(|e| same(plan.bytes(self, e.key, true), key))
    }

    /// Appends an attribute with the plan's key `key` (not in the item).
    fn push(&mut self, key: u16, value: Src) {
        let n = self.entries.len();
        if n >= usize::from(NOWHERE) {
            self.indexed = false;
        } else if self.indexed {
            self.at[usize::from(key)] = n as u8;
        }
        self.entries.push(Entry { key: Src::Plan(key), value, field: None });
    }

    /// Removes the attribute at `i`, the one with the plan's key `key`: the last one takes its
    /// place, as pdata's `Map.Remove` does.
    fn remove(&mut self, key: u16, i: usize) {
        self.entries.swap_remove(i);
        if self.indexed {
            self.at[usize::from(key)] = NOWHERE;
            // The entry that was last (an indexed item has fewer than `NOWHERE` entries).
            let last = u8::try_from(self.entries.len()).unwrap_or(NOWHERE);
            if last != NOWHERE
                && let Some(moved) = self.at.iter_mut().find(|a| **a == last)
            {
                *moved = i as u8;
            }
        }
    }

    /// The value of the first attribute with the plan's key `key`.
    fn value_of(&self, plan: &Plan, key: u16) -> Option<Src> {
        if !self.light {
            return self.find(plan, key).map(|i| self.entries[i].value);
        }
        let from = plan.kind.first_field(self.raw).0;
        lookup_in(self.raw, from, plan.kind.attrs_field(), &plan.keys[usize::from(key)]).map(Src::Raw)
    }
}

#[cfg(test)]
mod tests;
