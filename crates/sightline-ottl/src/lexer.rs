//! Tokens of OTTL, as the collector's lexer defines them (`pkg/ottl/grammar.go`): bytes
//! `0x..`, floats, ints, double-quoted strings with backslash escapes, the keywords `nil`,
//! `not`, `and`, `or`, `true`, `false` (whole words), comparison and math operators, `=`,
//! brackets and punctuation, and identifiers. Each token keeps its byte offset.

use crate::Error;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Bytes(Vec<u8>),
    Float(f64),
    Int(i64),
    Str(String),
    Nil,
    Not,
    Or,
    And,
    Bool(bool),
    /// `==`, `!=`, `>=`, `<=`, `>`, `<`.
    Cmp(&'static str),
    /// `+`, `-`, `*`, `/`.
    Math(char),
    Equal,
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Colon,
    Comma,
    Dot,
    /// An identifier: `[A-Za-z][A-Za-z0-9_]*` (`where` included).
    Ident(String),
    Eof,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Bytes(_) => "a bytes literal".into(),
            Tok::Float(f) => format!("{f}"),
            Tok::Int(i) => format!("{i}"),
            Tok::Str(_) => "a string".into(),
            Tok::Nil => "nil".into(),
            Tok::Not => "not".into(),
            Tok::Or => "or".into(),
            Tok::And => "and".into(),
            Tok::Bool(b) => b.to_string(),
            Tok::Cmp(c) => (*c).into(),
            Tok::Math(c) => c.to_string(),
            Tok::Equal => "=".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::LBrace => "{".into(),
            Tok::RBrace => "}".into(),
            Tok::LBracket => "[".into(),
            Tok::RBracket => "]".into(),
            Tok::Colon => ":".into(),
            Tok::Comma => ",".into(),
            Tok::Dot => ".".into(),
            Tok::Ident(s) => s.clone(),
            Tok::Eof => "the end of the statement".into(),
        }
    }
}

pub fn lex(src: &str) -> Result<Vec<(Tok, usize)>, Error> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let tok = if c == b'0' && b.get(i + 1) == Some(&b'x') && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit) {
            i += 2;
            let s = i;
            while i < b.len() && b[i].is_ascii_hexdigit() {
                i += 1;
            }
            let hex = &src[s..i];
            if !hex.len().is_multiple_of(2) {
                return Err(Error::at(start, format!("bytes literal 0x{hex} has an odd number of hex digits")));
            }
            Tok::Bytes((0..hex.len()).step_by(2).map(|k| u8::from_str_radix(&hex[k..k + 2], 16).unwrap_or(0)).collect())
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let mut float = false;
            if i < b.len() && b[i] == b'.' {
                float = true;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if float && i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                let mut j = i + 1;
                if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    while j < b.len() && b[j].is_ascii_digit() {
                        j += 1;
                    }
                    i = j;
                }
            }
            let text = &src[start..i];
            if float {
                let f: f64 = text.parse().map_err(|_| Error::at(start, format!("invalid number {text}")))?;
                if !f.is_finite() {
                    return Err(Error::at(start, format!("number {text} is out of range")));
                }
                Tok::Float(f)
            } else {
                Tok::Int(text.parse().map_err(|_| Error::at(start, format!("integer {text} is out of range")))?)
            }
        } else if c == b'"' {
            i += 1;
            let mut s = String::new();
            loop {
                let Some(ch) = src[i..].chars().next() else {
                    return Err(Error::at(start, "unterminated string".into()));
                };
                i += ch.len_utf8();
                match ch {
                    '"' => break,
                    '\\' => {
                        let Some(e) = src[i..].chars().next() else {
                            return Err(Error::at(start, "unterminated string".into()));
                        };
                        i += e.len_utf8();
                        match e {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            'a' => s.push('\u{7}'),
                            'b' => s.push('\u{8}'),
                            'f' => s.push('\u{c}'),
                            'v' => s.push('\u{b}'),
                            '\\' => s.push('\\'),
                            '"' => s.push('"'),
                            'x' | 'u' | 'U' => {
                                let n = match e {
                                    'x' => 2,
                                    'u' => 4,
                                    _ => 8,
                                };
                                let hex = src.get(i..i + n).filter(|h| h.bytes().all(|d| d.is_ascii_hexdigit()));
                                let cp = hex.and_then(|h| u32::from_str_radix(h, 16).ok());
                                let ch = cp.and_then(|c| if e == 'x' && c > 0x7f { None } else { char::from_u32(c) });
                                let Some(ch) = ch else {
                                    return Err(Error::at(i - 2, format!("invalid escape \\{e} in string")));
                                };
                                s.push(ch);
                                i += n;
                            }
                            // Go's strconv.Unquote refuses any other escape: a regex in a
                            // statement writes `\\.` for a literal dot.
                            other => {
                                return Err(Error::at(
                                    i - 1 - other.len_utf8(),
                                    format!("invalid escape \\{other} in string (write \\\\{other} for a backslash)"),
                                ));
                            }
                        }
                    }
                    ch => s.push(ch),
                }
            }
            Tok::Str(s)
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            match &src[start..i] {
                "nil" => Tok::Nil,
                "not" => Tok::Not,
                "or" => Tok::Or,
                "and" => Tok::And,
                "true" => Tok::Bool(true),
                "false" => Tok::Bool(false),
                w if w.starts_with('_') => return Err(Error::at(start, format!("unexpected {w:?}"))),
                w => Tok::Ident(w.to_string()),
            }
        } else {
            let two = b.get(i + 1).copied();
            i += 1;
            match (c, two) {
                (b'=', Some(b'=')) => {
                    i += 1;
                    Tok::Cmp("==")
                }
                (b'!', Some(b'=')) => {
                    i += 1;
                    Tok::Cmp("!=")
                }
                (b'>', Some(b'=')) => {
                    i += 1;
                    Tok::Cmp(">=")
                }
                (b'<', Some(b'=')) => {
                    i += 1;
                    Tok::Cmp("<=")
                }
                (b'>', _) => Tok::Cmp(">"),
                (b'<', _) => Tok::Cmp("<"),
                (b'=', _) => Tok::Equal,
                (b'+', _) => Tok::Math('+'),
                (b'-', _) => Tok::Math('-'),
                (b'*', _) => Tok::Math('*'),
                (b'/', _) => Tok::Math('/'),
                (b'(', _) => Tok::LParen,
                (b')', _) => Tok::RParen,
                (b'{', _) => Tok::LBrace,
                (b'}', _) => Tok::RBrace,
                (b'[', _) => Tok::LBracket,
                (b']', _) => Tok::RBracket,
                (b':', _) => Tok::Colon,
                (b',', _) => Tok::Comma,
                (b'.', _) => Tok::Dot,
                _ => {
                    let ch = src[start..].chars().next().unwrap_or('?');
                    return Err(Error::at(start, format!("unexpected character {ch:?}")));
                }
            }
        };
        out.push((tok, start));
    }
    out.push((Tok::Eof, src.len()));
    Ok(out)
}
