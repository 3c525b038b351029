//! OTTL, the OpenTelemetry Transformation Language of the collector's `pkg/ottl`, for
//! Sightline's `filter` and `transform` processors: a lexer and recursive-descent parser of
//! its grammar ([`ast`], with a printer whose output parses back to the same tree), a binder
//! that resolves paths against a context and functions against the table in [`funcs`]
//! (arity, argument names and literal types checked, regexes compiled once), and an evaluator
//! over OTLP items decoded with `opentelemetry-proto` ([`context::Target`]).
//!
//! Errors name the column and quote the statement, with the nearest function or path name
//! when a name is unknown:
//!
//! ```text
//! undefined function "ste" (did you mean "set"?) at column 1:
//!   ste(attributes["a"], "b")
//!   ^
//! ```

pub mod ast;
pub mod compile;
pub mod context;
pub mod eval;
pub mod funcs;
pub mod lexer;
pub mod parser;
pub mod plan;
pub mod slot;
pub mod value;

pub use context::{Ctx, Item, Target};
pub use value::Val;

use compile::{Binder, Cond};

/// A parse or bind error at a byte offset of the source.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    pub pos: usize,
    pub msg: String,
}

impl Error {
    pub fn at(pos: usize, msg: String) -> Error {
        Error { pos, msg }
    }

    /// The 1-based column (in characters) of the error in `src`.
    pub fn column(&self, src: &str) -> usize {
        src.get(..self.pos.min(src.len())).map_or(1, |s| s.chars().count() + 1)
    }

    /// The message, the column, the statement and a caret under the column.
    pub fn render(&self, src: &str) -> String {
        let col = self.column(src);
        format!("{} at column {col}:\n  {src}\n  {}^", self.msg, " ".repeat(col - 1))
    }
}

/// A compiled statement: an editor and its optional `where` condition.
pub struct Statement {
    pub text: String,
    pub ast: ast::Statement,
    edit: funcs::Edit,
    cond: Option<Cond>,
    heads: bool,
}

impl std::fmt::Debug for Statement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Statement {
    pub fn parse(src: &str, ctx: Ctx) -> Result<Statement, Error> {
        let ast = parser::parse_statement(src)?;
        let b = Binder::new(ctx);
        let cond = ast.condition.as_ref().map(|c| b.condition(c)).transpose()?;
        let edit = b.editor(&ast.editor)?;
        Ok(Statement { text: src.to_string(), ast, edit, cond, heads: b.heads.get() })
    }

    /// Whether the statement reads or writes a resource or scope field (the processors
    /// decode those only when a statement does).
    pub fn needs_heads(&self) -> bool {
        self.heads
    }

    /// Runs the statement if its condition holds; `Ok(false)` when it did not.
    pub fn execute(&self, t: &mut Target) -> Result<bool, String> {
        if let Some(c) = &self.cond
            && !eval::cond(c, t)?
        {
            return Ok(false);
        }
        (self.edit)(t)?;
        Ok(true)
    }
}

/// A compiled condition.
pub struct Condition {
    pub text: String,
    pub ast: ast::BoolExpr,
    cond: Cond,
    heads: bool,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Condition {
    pub fn parse(src: &str, ctx: Ctx) -> Result<Condition, Error> {
        let ast = parser::parse_condition(src)?;
        let b = Binder::new(ctx);
        let cond = b.condition(&ast)?;
        Ok(Condition { text: src.to_string(), ast, cond, heads: b.heads.get() })
    }

    /// See [`Statement::needs_heads`].
    pub fn needs_heads(&self) -> bool {
        self.heads
    }

    pub fn eval(&self, t: &Target) -> Result<bool, String> {
        eval::cond(&self.cond, t)
    }
}

/// The context prefixes (`span.`, `resource.` ...) of every path in the statements, for
/// inferring a flat statement list's context as the collector does: the most specific
/// context named wins. `None` when no path names one.
pub fn infer_context(sources: &[&str], candidates: &[Ctx]) -> Result<Option<Ctx>, Error> {
    let mut found: Vec<Ctx> = Vec::new();
    for src in sources {
        let mut toks = lexer::lex(src)?.into_iter().peekable();
        let mut prev_dot = false;
        while let Some((t, _)) = toks.next() {
            if let lexer::Tok::Ident(name) = &t
                && !prev_dot
                && matches!(toks.peek(), Some((lexer::Tok::Dot, _)))
                && let Some(c) = Ctx::parse(name)
            {
                found.push(c);
            }
            prev_dot = matches!(t, lexer::Tok::Dot);
        }
    }
    Ok(candidates.iter().rev().find(|c| found.contains(c)).copied())
}

#[cfg(test)]
mod tests;
