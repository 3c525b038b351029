//! The error type and the lazily rendered JSON path used to locate problems.

use std::fmt;

/// What went wrong, broadly; [`JsonError::message`] has the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JsonErrorKind {
    /// The input is not well-formed JSON (or not a single JSON value).
    Syntax,
    /// Well-formed JSON whose shape or values do not match the OTLP schema:
    /// wrong JSON type, bad hex or base64, a number out of range, an unknown
    /// enum name, two members of one `oneof`, ...
    Schema,
    /// Nesting deeper than [`crate::MAX_JSON_DEPTH`] JSON levels or
    /// [`crate::MAX_ANY_VALUE_DEPTH`] `AnyValue` levels.
    TooDeep,
    /// The protobuf input could not be decoded.
    Protobuf,
}

/// An OTLP/JSON conversion error.
///
/// `Display` renders `path: message`, where `path` is a JSON path such as
/// `resourceSpans[0].scopeSpans[1].spans[3].traceId` (keys as they were
/// spelled in the input). Errors that concern the whole document have an empty
/// path and display only the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    kind: JsonErrorKind,
    path: String,
    message: String,
}

impl JsonError {
    pub(crate) fn new(kind: JsonErrorKind, path: &Path<'_>, message: impl Into<String>) -> Self {
        JsonError { kind, path: path.render(), message: message.into() }
    }

    pub(crate) fn schema(path: &Path<'_>, message: impl Into<String>) -> Self {
        Self::new(JsonErrorKind::Schema, path, message)
    }

    /// The broad category of the error.
    pub fn kind(&self) -> JsonErrorKind {
        self.kind
    }

    /// The JSON path of the offending value; empty for whole-document errors.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The problem, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

impl std::error::Error for JsonError {}

/// A JSON path kept as a stack-allocated linked list, so that walking a
/// document costs nothing; it is turned into a string only when an error is
/// reported.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    pub(crate) fn field(&'a self, name: &'a str) -> Path<'a> {
        Path::Field(self, name)
    }

    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path::Index(self, index)
    }

    pub(crate) fn render(&self) -> String {
        let mut segments = Vec::new();
        let mut cur = self;
        loop {
            match cur {
                Path::Root => break,
                Path::Field(parent, _) | Path::Index(parent, _) => {
                    segments.push(cur);
                    cur = parent;
                }
            }
        }
        let mut out = String::new();
        for seg in segments.iter().rev() {
            match seg {
                Path::Field(_, name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Path::Index(_, i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
                Path::Root => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_paths() {
        let root = Path::Root;
        assert_eq!(root.render(), "");
        let a = root.field("resourceSpans");
        let b = a.index(0);
        let c = b.field("scopeSpans");
        let d = c.index(1);
        let e = d.field("traceId");
        assert_eq!(e.render(), "resourceSpans[0].scopeSpans[1].traceId");
        let err = JsonError::schema(&e, "boom");
        assert_eq!(err.to_string(), "resourceSpans[0].scopeSpans[1].traceId: boom");
        let whole = JsonError::new(JsonErrorKind::Syntax, &root, "invalid JSON");
        assert_eq!(whole.to_string(), "invalid JSON");
    }
}
