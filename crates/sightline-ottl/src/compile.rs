//! Binding a parsed statement or condition to a context: paths to fields, function names to
//! the function table, arguments to parameters (with their types checked where they are
//! literals), regular expressions compiled once. The result is evaluated by [`crate::eval`].

use crate::Error;
use crate::ast::{self, BoolExpr, Call, Expr, Key};
use crate::context::{Ctx, F, fields};
use crate::funcs::{self, Kind, Param, Ty};
use crate::value::Val;
use regex::Regex;
use std::borrow::Cow;

pub enum Getter {
    Lit(Val<'static>),
    Path(PathRef),
    Conv(Box<funcs::Conv>, Vec<KeyG>),
    List(Vec<Getter>),
    Map(Vec<(String, Getter)>),
    Math(Box<Getter>, char, Box<Getter>),
    Neg(Box<Getter>),
}

pub struct PathRef {
    pub f: F,
    pub keys: Vec<KeyG>,
    /// The path as written, for messages.
    pub text: String,
}

pub enum KeyG {
    Str(String),
    Int(i64),
    Expr(Getter),
}

pub enum Cond {
    Or(Vec<Cond>),
    And(Vec<Cond>),
    Not(Box<Cond>),
    Cmp(Getter, &'static str, Getter),
    Const(bool),
    Conv(Getter),
}

/// A compiled argument.
pub enum ArgV {
    Get(Getter),
    Path(PathRef),
    Regex(Result<Regex, Getter>),
    Str(String),
    Int(i64),
    Bool(bool),
    Func(funcs::HashFn),
    List(Vec<Getter>),
    StrList(Vec<String>),
    None,
}

pub struct Binder {
    pub ctx: Ctx,
    /// Set when a path reads or writes the resource or the scope.
    pub heads: std::cell::Cell<bool>,
}

fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    // Nearest by edits (a transposition counts as one), then by Jaro-Winkler similarity.
    let limit = (name.chars().count() / 3).max(2);
    let mut best: Option<(usize, f64, &str)> = None;
    for c in candidates {
        let d = strsim::osa_distance(&name.to_lowercase(), &c.to_lowercase());
        let j = strsim::jaro_winkler(name, c);
        if d > limit && j < 0.85 {
            continue;
        }
        if best.is_none_or(|(bd, bj, _)| d < bd || (d == bd && j > bj)) {
            best = Some((d, j, c));
        }
    }
    best.map(|(_, _, c)| format!(" (did you mean {c:?}?)")).unwrap_or_default()
}

/// The static type of a field, for checking literals and editor targets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum St {
    Map,
    Str,
    Int,
    Float,
    Bool,
    Bytes,
    Time,
    Any,
}

pub fn field_type(f: F) -> St {
    use F::*;
    match f {
        Cache | ResAttrs | ScopeAttrs | SpanAttrs | EvAttrs | LogAttrs | DpAttrs => St::Map,
        ScopeName | ScopeVersion | SpanTraceIdStr | SpanIdStr | SpanParentIdStr | SpanTraceState | SpanName
        | SpanKindStr | SpanStatusMessage | EvName | LogSevText | LogBodyStr | LogTraceIdStr | LogSpanIdStr
        | LogEventName | MName | MDescription | MUnit => St::Str,
        SpanTraceId | SpanId | SpanParentId | LogTraceId | LogSpanId => St::Bytes,
        SpanStartTime | SpanEndTime | EvTime | LogTime | LogObserved | DpStart | DpTime => St::Time,
        DpValueDouble | DpSum => St::Float,
        MMonotonic => St::Bool,
        LogBody => St::Any,
        _ => St::Int,
    }
}

impl Binder {
    pub fn new(ctx: Ctx) -> Binder {
        Binder { ctx, heads: std::cell::Cell::new(false) }
    }

    pub fn path(&self, p: &ast::Path) -> Result<PathRef, Error> {
        let text = p.to_string();
        let mut fs = &p.fields[..];
        // `cache` in any context.
        if fs.len() == 1 && fs[0].name == "cache" {
            return Ok(PathRef { f: F::Cache, keys: self.keys(&fs[0].keys)?, text });
        }
        let mut ctx = self.ctx;
        if fs.len() > 1
            && fs[0].keys.is_empty()
            && let Some(c) = Ctx::parse(&fs[0].name)
        {
            if !self.ctx.reachable().contains(&c) {
                return Err(Error::at(
                    p.pos,
                    format!(
                        "path {text:?}: the {} context cannot reach the {} context (it reaches {})",
                        self.ctx.name(),
                        c.name(),
                        self.ctx.reachable().iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            ctx = c;
            fs = &fs[1..];
        }
        for f in &fs[..fs.len() - 1] {
            if !f.keys.is_empty() {
                return Err(Error::at(p.pos, format!("path {text:?}: only the last field may be indexed")));
            }
        }
        let name: Vec<&str> = fs.iter().map(|f| f.name.as_str()).collect();
        let name = name.join(".");
        let Some(&(_, f)) = fields(ctx).iter().find(|(n, _)| *n == name) else {
            let mut all: Vec<String> = fields(ctx).iter().map(|(n, _)| n.to_string()).collect();
            if ctx == self.ctx {
                for c in self.ctx.reachable().iter().skip(1) {
                    all.extend(fields(*c).iter().map(|(n, _)| format!("{}.{n}", c.name())));
                }
            }
            return Err(Error::at(
                p.pos,
                format!(
                    "path {text:?} is not a field of the {} context{}",
                    ctx.name(),
                    suggest(&name, all.iter().map(String::as_str))
                ),
            ));
        };
        let last = &fs[fs.len() - 1];
        if !last.keys.is_empty() && !f.indexable() {
            return Err(Error::at(p.pos, format!("path {text:?}: {name} cannot be indexed")));
        }
        if f == F::SpanTraceState && !last.keys.is_empty() {
            return Err(Error::at(p.pos, format!("path {text:?}: trace_state keys are not supported by Sightline")));
        }
        if matches!(ctx, Ctx::Resource | Ctx::Scope) {
            self.heads.set(true);
        }
        Ok(PathRef { f, keys: self.keys(&last.keys)?, text })
    }

    fn keys(&self, keys: &[Key]) -> Result<Vec<KeyG>, Error> {
        keys.iter()
            .map(|k| {
                Ok(match k {
                    Key::Str(s) => KeyG::Str(s.clone()),
                    Key::Int(i) => KeyG::Int(*i),
                    Key::Expr(e) => KeyG::Expr(self.getter(e)?),
                })
            })
            .collect()
    }

    pub fn getter(&self, e: &Expr) -> Result<Getter, Error> {
        Ok(match e {
            Expr::Nil => Getter::Lit(Val::Nil),
            Expr::Bool(b) => Getter::Lit(Val::Bool(*b)),
            Expr::Int(i) => Getter::Lit(Val::Int(*i)),
            Expr::Float(f) => Getter::Lit(Val::Float(*f)),
            Expr::Str(s) => Getter::Lit(Val::Str(Cow::Owned(s.clone()))),
            Expr::Bytes(b) => Getter::Lit(Val::Bytes(Cow::Owned(b.clone()))),
            Expr::Enum(name, pos) => Getter::Lit(Val::Int(funcs::enum_value(name).ok_or_else(|| {
                Error::at(
                    *pos,
                    format!("unknown enum symbol {name:?}{}", suggest(name, funcs::ENUM_NAMES.iter().copied())),
                )
            })?)),
            Expr::FuncName(name, pos) => {
                return Err(Error::at(
                    *pos,
                    format!("{name} is a function name, not a value (did you mean {name}(...)?)"),
                ));
            }
            Expr::Path(p) => Getter::Path(self.path(p)?),
            Expr::Call(c) => {
                let conv = self.converter(c)?;
                Getter::Conv(Box::new(conv), self.keys(&c.keys)?)
            }
            Expr::List(items) => Getter::List(items.iter().map(|x| self.getter(x)).collect::<Result<_, _>>()?),
            Expr::Map(items) => {
                Getter::Map(items.iter().map(|(k, v)| Ok((k.clone(), self.getter(v)?))).collect::<Result<_, Error>>()?)
            }
            Expr::Math(a, op, b) => Getter::Math(Box::new(self.getter(a)?), *op, Box::new(self.getter(b)?)),
            Expr::Neg(a) => match self.getter(a)? {
                Getter::Lit(Val::Int(i)) => Getter::Lit(Val::Int(i.wrapping_neg())),
                Getter::Lit(Val::Float(f)) => Getter::Lit(Val::Float(-f)),
                g => Getter::Neg(Box::new(g)),
            },
            Expr::Group(a) => self.getter(a)?,
        })
    }

    pub fn condition(&self, c: &BoolExpr) -> Result<Cond, Error> {
        Ok(match c {
            BoolExpr::Or(v) => Cond::Or(v.iter().map(|x| self.condition(x)).collect::<Result<_, _>>()?),
            BoolExpr::And(v) => Cond::And(v.iter().map(|x| self.condition(x)).collect::<Result<_, _>>()?),
            BoolExpr::Not(x) => Cond::Not(Box::new(self.condition(x)?)),
            BoolExpr::Cmp(a, op, b) => Cond::Cmp(self.getter(a)?, op, self.getter(b)?),
            BoolExpr::Const(b) => Cond::Const(*b),
            BoolExpr::Call(call) => {
                let f = funcs::lookup(&call.name);
                if let Some(f) = f
                    && !f.returns_bool
                {
                    return Err(Error::at(
                        call.pos,
                        format!(
                            "{} does not return a boolean; a condition needs one (e.g. IsMatch, IsString, or a comparison)",
                            call.name
                        ),
                    ));
                }
                Cond::Conv(self.getter(&Expr::Call(call.clone()))?)
            }
            BoolExpr::Group(x) => self.condition(x)?,
        })
    }

    fn converter(&self, c: &Call) -> Result<funcs::Conv, Error> {
        let def = self.function(c, Kind::Converter)?;
        let args = self.args(c, def.params)?;
        (def.build_conv.expect("converter"))(args, self.ctx).map_err(|m| Error::at(c.pos, format!("{}: {m}", c.name)))
    }

    pub fn editor(&self, c: &Call) -> Result<funcs::Edit, Error> {
        let def = self.function(c, Kind::Editor)?;
        if !c.keys.is_empty() {
            return Err(Error::at(c.pos, format!("{}: an editor's result cannot be indexed", c.name)));
        }
        let args = self.args(c, def.params)?;
        (def.build_edit.expect("editor"))(args).map_err(|m| Error::at(c.pos, format!("{}: {m}", c.name)))
    }

    fn function(&self, c: &Call, kind: Kind) -> Result<&'static funcs::Def, Error> {
        let names = funcs::FUNCTIONS.iter().filter(|f| f.kind == kind).map(|f| f.name);
        match funcs::lookup(&c.name) {
            Some(f) if f.kind == kind => {
                if let Some(only) = f.only
                    && only != self.ctx
                {
                    return Err(Error::at(
                        c.pos,
                        format!("{} is available in the {} context only", c.name, only.name()),
                    ));
                }
                Ok(f)
            }
            Some(_) if kind == Kind::Editor => {
                Err(Error::at(c.pos, format!("{} is a converter, not an editor", c.name)))
            }
            Some(_) => Err(Error::at(c.pos, format!("{} is an editor; it cannot be used as a value", c.name))),
            None => Err(Error::at(
                c.pos,
                format!(
                    "undefined function {:?}{}",
                    c.name,
                    suggest(&c.name, names.chain(funcs::FUNCTIONS.iter().map(|f| f.name)))
                ),
            )),
        }
    }

    fn args(&self, c: &Call, params: &'static [Param]) -> Result<Vec<ArgV>, Error> {
        let mut slots: Vec<Option<&ast::Arg>> = vec![None; params.len()];
        let mut named = false;
        for (i, a) in c.args.iter().enumerate() {
            match &a.name {
                None => {
                    if named {
                        return Err(Error::at(a.pos, "positional arguments must come before named ones".into()));
                    }
                    if i >= params.len() {
                        return Err(Error::at(a.pos, arity(c, params)));
                    }
                    slots[i] = Some(a);
                }
                Some(n) => {
                    named = true;
                    let Some(j) = params.iter().position(|p| p.name == n) else {
                        return Err(Error::at(
                            a.pos,
                            format!(
                                "{} has no argument named {n:?}{}",
                                c.name,
                                suggest(n, params.iter().map(|p| p.name))
                            ),
                        ));
                    };
                    if slots[j].is_some() {
                        return Err(Error::at(a.pos, format!("argument {n:?} is given twice")));
                    }
                    slots[j] = Some(a);
                }
            }
        }
        let mut out = Vec::with_capacity(params.len());
        for (p, slot) in params.iter().zip(slots) {
            let Some(a) = slot else {
                if p.optional {
                    out.push(ArgV::None);
                    continue;
                }
                return Err(Error::at(c.pos, arity(c, params)));
            };
            out.push(self.arg(c, p, &a.value, a.pos)?);
        }
        Ok(out)
    }

    fn arg(&self, c: &Call, p: &Param, e: &Expr, pos: usize) -> Result<ArgV, Error> {
        let bad = |want: &str| Error::at(pos, format!("{}: argument {:?} must be {want}, got {e}", c.name, p.name));
        Ok(match p.ty {
            Ty::Setter | Ty::GetSetter | Ty::MapTarget => {
                let Expr::Path(path) = e else { return Err(bad("a path (e.g. attributes or attributes[\"key\"])")) };
                let r = self.path(path)?;
                if p.ty == Ty::MapTarget && r.keys.is_empty() && !matches!(field_type(r.f), St::Map | St::Any) {
                    return Err(bad("a map (e.g. attributes)"));
                }
                ArgV::Path(r)
            }
            Ty::Regex => match e {
                Expr::Str(s) => ArgV::Regex(Ok(Regex::new(s)
                    .map_err(|err| Error::at(pos, format!("{}: invalid regular expression {s:?}: {err}", c.name)))?)),
                _ => ArgV::Regex(Err(self.typed(e, St::Str, &bad)?)),
            },
            Ty::StrLit => match e {
                Expr::Str(s) => ArgV::Str(s.clone()),
                _ => return Err(bad("a string literal")),
            },
            Ty::IntLit => match e {
                Expr::Int(i) => ArgV::Int(*i),
                Expr::Neg(x) if matches!(**x, Expr::Int(_)) => {
                    let Expr::Int(i) = **x else { unreachable!() };
                    ArgV::Int(-i)
                }
                _ => return Err(bad("an integer literal")),
            },
            Ty::BoolLit => match e {
                Expr::Bool(b) => ArgV::Bool(*b),
                _ => return Err(bad("true or false")),
            },
            Ty::StrList => match e {
                Expr::List(items) => ArgV::StrList(
                    items
                        .iter()
                        .map(|x| match x {
                            Expr::Str(s) => Ok(s.clone()),
                            _ => Err(bad("a list of string literals")),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(bad("a list of string literals")),
            },
            Ty::GetterList => match e {
                Expr::List(items) => ArgV::List(items.iter().map(|x| self.getter(x)).collect::<Result<_, _>>()?),
                other => ArgV::Get(self.getter(other)?),
            },
            Ty::Func => match e {
                Expr::Enum(n, _) | Expr::FuncName(n, _) => ArgV::Func(
                    funcs::hash_fn(n).ok_or_else(|| bad("a hash function name (SHA256, SHA1, SHA512, MD5)"))?,
                ),
                _ => return Err(bad("a function name (e.g. SHA256)")),
            },
            Ty::Str => ArgV::Get(self.typed(e, St::Str, &bad)?),
            Ty::Int => ArgV::Get(self.typed(e, St::Int, &bad)?),
            Ty::Map => ArgV::Get(self.typed(e, St::Map, &bad)?),
            Ty::Time => ArgV::Get(self.typed(e, St::Time, &bad)?),
            Ty::Any | Ty::StrLike | Ty::IntLike | Ty::FloatLike | Ty::BytesLike => ArgV::Get(self.getter(e)?),
        })
    }

    /// A getter whose literal or path must have type `want`.
    fn typed(&self, e: &Expr, want: St, bad: &dyn Fn(&str) -> Error) -> Result<Getter, Error> {
        let g = self.getter(e)?;
        let got = match &g {
            Getter::Lit(v) => Some(match v {
                Val::Str(_) => St::Str,
                Val::Int(_) => St::Int,
                Val::Float(_) => St::Float,
                Val::Bool(_) => St::Bool,
                Val::Bytes(_) => St::Bytes,
                Val::Nil => St::Any,
                _ => St::Any,
            }),
            Getter::Path(p) if p.keys.is_empty() => Some(field_type(p.f)),
            Getter::Map(_) => Some(St::Map),
            Getter::List(_) => Some(St::Any),
            _ => None,
        };
        if let Some(got) = got
            && got != want
            && got != St::Any
        {
            let w = match want {
                St::Str => "a string",
                St::Int => "an integer",
                St::Map => "a map",
                St::Time => "a time",
                _ => "of another type",
            };
            return Err(bad(w));
        }
        Ok(g)
    }
}

fn arity(c: &Call, params: &[Param]) -> String {
    let min = params.iter().filter(|p| !p.optional).count();
    let sig: Vec<String> =
        params.iter().map(|p| if p.optional { format!("[{}]", p.name) } else { p.name.to_string() }).collect();
    let n = if min == params.len() { format!("{min}") } else { format!("{min} to {}", params.len()) };
    format!("{} takes {n} arguments ({}({})), got {}", c.name, c.name, sig.join(", "), c.args.len())
}
