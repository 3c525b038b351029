//! The syntax tree of OTTL statements and conditions, and its printer: printing a tree and
//! parsing the text again gives the same tree (the fuzz target checks it).

use std::fmt::{self, Display, Formatter, Write as _};

/// `editor(args) [where condition]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub editor: Call,
    pub condition: Option<BoolExpr>,
}

/// An editor or converter invocation; `keys` index a converter's result (`Split(x, ",")[0]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub name: String,
    pub args: Vec<Arg>,
    pub keys: Vec<Key>,
    pub pos: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<String>,
    pub value: Expr,
    pub pos: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// An upper-case symbol: an enum (`SPAN_KIND_SERVER`) or a function name as an argument.
    Enum(String, usize),
    /// A function name passed as an argument (`replace_pattern(..., SHA256)`), mixed case.
    FuncName(String, usize),
    Path(Path),
    Call(Call),
    List(Vec<Expr>),
    Map(Vec<(String, Expr)>),
    Math(Box<Expr>, char, Box<Expr>),
    Neg(Box<Expr>),
    /// A parenthesised math expression.
    Group(Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    pub fields: Vec<Field>,
    pub pos: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub keys: Vec<Key>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Key {
    Str(String),
    Int(i64),
    Expr(Expr),
}

#[derive(Clone, Debug, PartialEq)]
pub enum BoolExpr {
    Or(Vec<BoolExpr>),
    And(Vec<BoolExpr>),
    Not(Box<BoolExpr>),
    Cmp(Expr, &'static str, Expr),
    Const(bool),
    Call(Call),
    Group(Box<BoolExpr>),
}

pub fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as a token the lexer reads back as the same float (always with a `.`).
pub fn float_literal(f: f64) -> String {
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((m, e)) if !m.contains('.') => format!("{m}.0e{e}"),
        _ => s,
    }
}

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.editor)?;
        if let Some(c) = &self.condition {
            write!(f, " where {c}")?;
        }
        Ok(())
    }
}

impl Display for Call {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if let Some(n) = &a.name {
                write!(f, "{n} = ")?;
            }
            write!(f, "{}", a.value)?;
        }
        f.write_str(")")?;
        for k in &self.keys {
            write!(f, "{k}")?;
        }
        Ok(())
    }
}

impl Display for Key {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Key::Str(s) => {
                let mut q = String::new();
                quote(s, &mut q);
                write!(f, "[{q}]")
            }
            Key::Int(i) => write!(f, "[{i}]"),
            Key::Expr(e) => write!(f, "[{e}]"),
        }
    }
}

impl Display for Path {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, fl) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&fl.name)?;
            for k in &fl.keys {
                write!(f, "{k}")?;
            }
        }
        Ok(())
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Nil => f.write_str("nil"),
            Expr::Bool(b) => write!(f, "{b}"),
            Expr::Int(i) => write!(f, "{i}"),
            Expr::Float(x) => f.write_str(&float_literal(*x)),
            Expr::Str(s) => {
                let mut q = String::new();
                quote(s, &mut q);
                f.write_str(&q)
            }
            Expr::Bytes(b) => {
                f.write_str("0x")?;
                b.iter().try_for_each(|x| write!(f, "{x:02x}"))
            }
            Expr::Enum(s, _) | Expr::FuncName(s, _) => f.write_str(s),
            Expr::Path(p) => write!(f, "{p}"),
            Expr::Call(c) => write!(f, "{c}"),
            Expr::List(items) => {
                f.write_str("[")?;
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
            Expr::Map(items) => {
                f.write_str("{")?;
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    let mut q = String::new();
                    quote(k, &mut q);
                    write!(f, "{q}: {v}")?;
                }
                f.write_str("}")
            }
            Expr::Math(a, op, b) => write!(f, "{a} {op} {b}"),
            Expr::Neg(a) => write!(f, "-{a}"),
            Expr::Group(a) => write!(f, "({a})"),
        }
    }
}

impl Display for BoolExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            BoolExpr::Or(v) => {
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    write!(f, "{x}")?;
                }
                Ok(())
            }
            BoolExpr::And(v) => {
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    write!(f, "{x}")?;
                }
                Ok(())
            }
            BoolExpr::Not(x) => write!(f, "not {x}"),
            BoolExpr::Cmp(a, op, b) => write!(f, "{a} {op} {b}"),
            BoolExpr::Const(b) => write!(f, "{b}"),
            BoolExpr::Call(c) => write!(f, "{c}"),
            BoolExpr::Group(x) => write!(f, "({x})"),
        }
    }
}

/// Trees compared without source offsets (a printed tree has other offsets than its source).
pub trait Unplaced {
    fn unplaced(&self) -> Self;
}

impl Unplaced for Statement {
    fn unplaced(&self) -> Self {
        Statement { editor: self.editor.unplaced(), condition: self.condition.as_ref().map(Unplaced::unplaced) }
    }
}

impl Unplaced for Call {
    fn unplaced(&self) -> Self {
        Call {
            name: self.name.clone(),
            args: self.args.iter().map(|a| Arg { name: a.name.clone(), value: a.value.unplaced(), pos: 0 }).collect(),
            keys: self.keys.iter().map(Unplaced::unplaced).collect(),
            pos: 0,
        }
    }
}

impl Unplaced for Key {
    fn unplaced(&self) -> Self {
        match self {
            Key::Expr(e) => Key::Expr(e.unplaced()),
            k => k.clone(),
        }
    }
}

impl Unplaced for Expr {
    fn unplaced(&self) -> Self {
        match self {
            Expr::Enum(s, _) => Expr::Enum(s.clone(), 0),
            Expr::FuncName(s, _) => Expr::FuncName(s.clone(), 0),
            Expr::Path(p) => Expr::Path(Path {
                fields: p
                    .fields
                    .iter()
                    .map(|f| Field { name: f.name.clone(), keys: f.keys.iter().map(Unplaced::unplaced).collect() })
                    .collect(),
                pos: 0,
            }),
            Expr::Call(c) => Expr::Call(c.unplaced()),
            Expr::List(v) => Expr::List(v.iter().map(Unplaced::unplaced).collect()),
            Expr::Map(v) => Expr::Map(v.iter().map(|(k, x)| (k.clone(), x.unplaced())).collect()),
            Expr::Math(a, op, b) => Expr::Math(Box::new(a.unplaced()), *op, Box::new(b.unplaced())),
            Expr::Neg(a) => Expr::Neg(Box::new(a.unplaced())),
            Expr::Group(a) => Expr::Group(Box::new(a.unplaced())),
            e => e.clone(),
        }
    }
}

impl Unplaced for BoolExpr {
    fn unplaced(&self) -> Self {
        match self {
            BoolExpr::Or(v) => BoolExpr::Or(v.iter().map(Unplaced::unplaced).collect()),
            BoolExpr::And(v) => BoolExpr::And(v.iter().map(Unplaced::unplaced).collect()),
            BoolExpr::Not(x) => BoolExpr::Not(Box::new(x.unplaced())),
            BoolExpr::Cmp(a, op, b) => BoolExpr::Cmp(a.unplaced(), op, b.unplaced()),
            BoolExpr::Const(b) => BoolExpr::Const(*b),
            BoolExpr::Call(c) => BoolExpr::Call(c.unplaced()),
            BoolExpr::Group(x) => BoolExpr::Group(Box::new(x.unplaced())),
        }
    }
}
