//! A recursive-descent parser for the grammar of the collector's `pkg/ottl` (statements and
//! conditions). Errors carry the byte offset of the token that did not fit.

use crate::Error;
use crate::ast::*;
use crate::lexer::{Tok, lex};

struct P {
    toks: Vec<(Tok, usize)>,
    i: usize,
    depth: usize,
}

/// Nesting deeper than this is refused (no stack overflow on hostile input).
const MAX_DEPTH: usize = 64;

pub fn parse_statement(src: &str) -> Result<Statement, Error> {
    let mut p = P { toks: lex(src)?, i: 0, depth: 0 };
    let pos = p.pos();
    let Tok::Ident(name) = p.peek().clone() else {
        return Err(p.unexpected("an editor (e.g. set(...))"));
    };
    if !is_lower(&name) {
        if matches!(p.peek_at(1), Tok::LParen) {
            return Err(Error::at(
                pos,
                format!("{name:?} is a converter; a statement starts with an editor (lower case, e.g. set)"),
            ));
        }
        return Err(p.unexpected("an editor (e.g. set(...))"));
    }
    p.i += 1;
    if !matches!(p.peek(), Tok::LParen) {
        return Err(p.unexpected("( after the editor's name"));
    }
    let editor = p.call(name, pos)?;
    let condition = match p.peek() {
        Tok::Ident(w) if w == "where" => {
            p.i += 1;
            Some(p.bool_expr()?)
        }
        _ => None,
    };
    p.expect_eof()?;
    Ok(Statement { editor, condition })
}

pub fn parse_condition(src: &str) -> Result<BoolExpr, Error> {
    let mut p = P { toks: lex(src)?, i: 0, depth: 0 };
    let c = p.bool_expr()?;
    p.expect_eof()?;
    Ok(c)
}

fn is_lower(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
}

fn is_enum(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_uppercase)
        && s.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

impl P {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }
    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.i + n).min(self.toks.len() - 1)].0
    }
    fn pos(&self) -> usize {
        self.toks[self.i].1
    }
    fn unexpected(&self, want: &str) -> Error {
        Error::at(self.pos(), format!("unexpected {}, expected {want}", self.peek().describe()))
    }
    fn expect(&mut self, t: Tok, want: &str) -> Result<(), Error> {
        if *self.peek() == t {
            self.i += 1;
            Ok(())
        } else {
            Err(self.unexpected(want))
        }
    }
    fn expect_eof(&self) -> Result<(), Error> {
        if matches!(self.peek(), Tok::Eof) { Ok(()) } else { Err(self.unexpected("the end of the statement")) }
    }
    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::at(self.pos(), format!("nested more than {MAX_DEPTH} levels deep")));
        }
        Ok(())
    }

    fn bool_expr(&mut self) -> Result<BoolExpr, Error> {
        self.enter()?;
        let mut terms = vec![self.and_term()?];
        while matches!(self.peek(), Tok::Or) {
            self.i += 1;
            terms.push(self.and_term()?);
        }
        self.depth -= 1;
        Ok(if terms.len() == 1 { terms.pop().expect("one") } else { BoolExpr::Or(terms) })
    }

    fn and_term(&mut self) -> Result<BoolExpr, Error> {
        let mut vals = vec![self.bool_value()?];
        while matches!(self.peek(), Tok::And) {
            self.i += 1;
            vals.push(self.bool_value()?);
        }
        Ok(if vals.len() == 1 { vals.pop().expect("one") } else { BoolExpr::And(vals) })
    }

    fn bool_value(&mut self) -> Result<BoolExpr, Error> {
        if matches!(self.peek(), Tok::Not) {
            self.i += 1;
            self.enter()?;
            let inner = self.bool_value_inner()?;
            self.depth -= 1;
            return Ok(BoolExpr::Not(Box::new(inner)));
        }
        self.bool_value_inner()
    }

    fn bool_value_inner(&mut self) -> Result<BoolExpr, Error> {
        // A comparison first (its left side may itself start with '(' or be a converter).
        let save = self.i;
        let depth = self.depth;
        let first_err = match self.value() {
            Ok(left) => {
                if let Tok::Cmp(op) = *self.peek() {
                    self.i += 1;
                    let right = self.value()?;
                    return Ok(BoolExpr::Cmp(left, op, right));
                }
                Some(self.unexpected("a comparison operator (==, !=, <, <=, >, >=)"))
            }
            Err(e) => Some(e),
        };
        self.i = save;
        self.depth = depth;
        match self.peek().clone() {
            Tok::Bool(b) => {
                self.i += 1;
                Ok(BoolExpr::Const(b))
            }
            Tok::Ident(name) if !is_lower(&name) && matches!(self.peek_at(1), Tok::LParen) => {
                let pos = self.pos();
                self.i += 1;
                Ok(BoolExpr::Call(self.call(name, pos)?))
            }
            Tok::LParen => {
                self.i += 1;
                let inner = self.bool_expr()?;
                self.expect(Tok::RParen, ")")?;
                Ok(BoolExpr::Group(Box::new(inner)))
            }
            _ => Err(first_err.unwrap_or_else(|| self.unexpected("a condition"))),
        }
    }

    fn call(&mut self, name: String, pos: usize) -> Result<Call, Error> {
        self.enter()?;
        self.expect(Tok::LParen, "(")?;
        let mut args = Vec::new();
        if !matches!(self.peek(), Tok::RParen) {
            loop {
                let apos = self.pos();
                let mut aname = None;
                if let (Tok::Ident(n), Tok::Equal) = (self.peek().clone(), self.peek_at(1)) {
                    if !is_lower(&n) {
                        return Err(Error::at(
                            apos,
                            format!("argument name {n:?} must start with a lower-case letter"),
                        ));
                    }
                    aname = Some(n);
                    self.i += 2;
                }
                let value = match self.peek().clone() {
                    Tok::Ident(n) if !is_lower(&n) && !is_enum(&n) && !matches!(self.peek_at(1), Tok::LParen) => {
                        let p = self.pos();
                        self.i += 1;
                        Expr::FuncName(n, p)
                    }
                    _ => self.value()?,
                };
                args.push(Arg { name: aname, value, pos: apos });
                match self.peek() {
                    Tok::Comma => self.i += 1,
                    Tok::RParen => break,
                    _ => return Err(self.unexpected(", or )")),
                }
            }
        }
        self.expect(Tok::RParen, ")")?;
        let keys = self.keys()?;
        self.depth -= 1;
        Ok(Call { name, args, keys, pos })
    }

    fn keys(&mut self) -> Result<Vec<Key>, Error> {
        let mut keys = Vec::new();
        while matches!(self.peek(), Tok::LBracket) {
            self.i += 1;
            let k = match (self.peek().clone(), self.peek_at(1)) {
                (Tok::Str(s), Tok::RBracket) => {
                    self.i += 1;
                    Key::Str(s)
                }
                (Tok::Int(n), Tok::RBracket) => {
                    self.i += 1;
                    Key::Int(n)
                }
                _ => match self.math()? {
                    Expr::Str(_) => return Err(self.unexpected("]")),
                    // `[+0]`: a signed literal is the index it prints as.
                    Expr::Int(n) => Key::Int(n),
                    e => Key::Expr(e),
                },
            };
            self.expect(Tok::RBracket, "]")?;
            keys.push(k);
        }
        Ok(keys)
    }

    /// `value` of the grammar.
    fn value(&mut self) -> Result<Expr, Error> {
        self.enter()?;
        let v = match self.peek().clone() {
            Tok::Nil => {
                self.i += 1;
                Expr::Nil
            }
            Tok::Bytes(b) => {
                self.i += 1;
                Expr::Bytes(b)
            }
            Tok::Str(s) => {
                self.i += 1;
                Expr::Str(s)
            }
            Tok::Bool(b) => {
                self.i += 1;
                Expr::Bool(b)
            }
            Tok::Ident(n) if is_enum(&n) && !matches!(self.peek_at(1), Tok::LParen) => {
                let p = self.pos();
                self.i += 1;
                Expr::Enum(n, p)
            }
            Tok::LBrace => self.map()?,
            Tok::LBracket => self.list()?,
            _ => self.math()?,
        };
        self.depth -= 1;
        Ok(v)
    }

    fn map(&mut self) -> Result<Expr, Error> {
        self.expect(Tok::LBrace, "{")?;
        let mut items = Vec::new();
        while !matches!(self.peek(), Tok::RBrace) {
            let Tok::Str(k) = self.peek().clone() else { return Err(self.unexpected("a string key or }")) };
            self.i += 1;
            self.expect(Tok::Colon, ":")?;
            items.push((k, self.value()?));
            if matches!(self.peek(), Tok::Comma) {
                self.i += 1;
            }
        }
        self.i += 1;
        Ok(Expr::Map(items))
    }

    fn list(&mut self) -> Result<Expr, Error> {
        self.expect(Tok::LBracket, "[")?;
        let mut items = Vec::new();
        if !matches!(self.peek(), Tok::RBracket) {
            loop {
                items.push(self.value()?);
                match self.peek() {
                    Tok::Comma => self.i += 1,
                    Tok::RBracket => break,
                    _ => return Err(self.unexpected(", or ]")),
                }
            }
        }
        self.i += 1;
        Ok(Expr::List(items))
    }

    /// Sums of products of math values (a lone literal is returned as itself).
    fn math(&mut self) -> Result<Expr, Error> {
        self.enter()?;
        let mut left = self.product()?;
        while let Tok::Math(op @ ('+' | '-')) = *self.peek() {
            self.i += 1;
            let right = self.product()?;
            left = Expr::Math(Box::new(left), op, Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn product(&mut self) -> Result<Expr, Error> {
        let mut left = self.math_value()?;
        while let Tok::Math(op @ ('*' | '/')) = *self.peek() {
            self.i += 1;
            let right = self.math_value()?;
            left = Expr::Math(Box::new(left), op, Box::new(right));
        }
        Ok(left)
    }

    fn math_value(&mut self) -> Result<Expr, Error> {
        if let Tok::Math(op @ ('+' | '-')) = *self.peek() {
            self.i += 1;
            self.enter()?;
            let inner = self.math_value()?;
            self.depth -= 1;
            return Ok(if op == '-' { Expr::Neg(Box::new(inner)) } else { inner });
        }
        match self.peek().clone() {
            Tok::LParen => {
                self.i += 1;
                let e = self.math()?;
                self.expect(Tok::RParen, ")")?;
                Ok(Expr::Group(Box::new(e)))
            }
            Tok::Int(n) => {
                self.i += 1;
                Ok(Expr::Int(n))
            }
            Tok::Float(x) => {
                self.i += 1;
                Ok(Expr::Float(x))
            }
            Tok::Ident(n) if matches!(self.peek_at(1), Tok::LParen) => {
                let pos = self.pos();
                self.i += 1;
                Ok(Expr::Call(self.call(n, pos)?))
            }
            Tok::Ident(n) if is_lower(&n) => self.path(),
            _ => Err(self.unexpected("a value (a path, a literal, a converter call or a map or list)")),
        }
    }

    fn path(&mut self) -> Result<Expr, Error> {
        let pos = self.pos();
        let mut fields = Vec::new();
        loop {
            let Tok::Ident(name) = self.peek().clone() else { return Err(self.unexpected("a path field name")) };
            if !name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_') || !is_lower(&name) {
                return Err(Error::at(self.pos(), format!("path field {name:?} must be lower case")));
            }
            self.i += 1;
            let keys = self.keys()?;
            fields.push(Field { name, keys });
            if matches!(self.peek(), Tok::Dot) {
                self.i += 1;
            } else {
                break;
            }
        }
        Ok(Expr::Path(Path { fields, pos }))
    }
}
