//! A small YAML document tree that remembers the line of every node, built from
//! `yaml-rust2` parser events, plus a `serde` deserializer over that tree whose errors
//! carry the line of the offending node (unknown key, wrong type, missing field, ...).

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One YAML node with its 1-based source line.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// `plain` is true for unquoted, untagged scalars (only those can be null/bool/number).
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, plain: true }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The scalar text of a non-null scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } if !self.is_null() => Some(value),
            _ => None,
        }
    }

    pub fn entries(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The key node and value node of `key` in a mapping.
    pub fn get_entry(&self, key: &str) -> Option<&(Node, Node)> {
        self.entries()?.iter().find(|(k, _)| k.as_str() == Some(key))
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.get_entry(key).map(|(_, v)| v)
    }

    /// Follows a path of mapping keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    /// The line of `key` in this mapping, or of this node when the key is absent.
    pub fn line_of(&self, key: &str) -> usize {
        self.get_entry(key).map_or(self.line, |(k, _)| k.line)
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar { .. } if self.is_null() => "null",
            Kind::Scalar { .. } => "scalar",
            Kind::Seq(_) => "sequence",
            Kind::Map(_) => "mapping",
        }
    }
}

/// A YAML syntax error.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub line: Option<usize>,
    pub message: String,
}

/// Parses every document of a YAML stream.
pub(crate) fn parse_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    // The parser asserts a few internal invariants; a panic on hostile input must never take
    // the caller (e.g. the reload task) down, so it is reported as a syntax error instead.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        parser.load(&mut builder, true).map(|()| builder)
    }));
    match outcome {
        Ok(Ok(builder)) if builder.alias_overflow => Err(SyntaxError {
            line: None,
            message: format!("aliases expand to more than {MAX_ALIAS_NODES} nodes (recursive anchors?)"),
        }),
        Ok(Ok(builder)) => Ok(builder.docs),
        Ok(Err(e)) => Err(SyntaxError { line: Some(e.marker().line()), message: e.info().to_owned() }),
        Err(_) => Err(SyntaxError { line: None, message: "the YAML parser failed on this input".to_owned() }),
    }
}

enum Frame {
    Seq { line: usize, anchor: usize, items: Vec<Node> },
    Map { line: usize, anchor: usize, entries: Vec<(Node, Node)>, key: Option<Node> },
}

/// Bound on the nodes that alias expansion may copy ("billion laughs").
const MAX_ALIAS_NODES: usize = 100_000;

#[derive(Default)]
struct Builder {
    docs: Vec<Node>,
    stack: Vec<Frame>,
    /// Anchored nodes with their size in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    alias_nodes: usize,
    alias_overflow: bool,
}

impl Node {
    fn size(&self) -> usize {
        match &self.kind {
            Kind::Scalar { .. } => 1,
            Kind::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Kind::Map(entries) => 1 + entries.iter().map(|(k, v)| k.size() + v.size()).sum::<usize>(),
        }
    }
}

impl Builder {
    fn insert(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let size = node.size();
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    let mut node = node;
                    // An empty value (`key:`) is marked at the *next* token; report it at
                    // its key instead.
                    if node.is_null() {
                        node.line = k.line;
                    }
                    entries.push((k, node));
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain && tag.is_none();
                self.insert(Node { line, kind: Kind::Scalar { value, plain } }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq { line, anchor, items: Vec::new() }),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map { line, anchor, entries: Vec::new(), key: None })
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { line, anchor, items }) => self.insert(Node { line, kind: Kind::Seq(items) }, anchor),
                Some(Frame::Map { line, anchor, entries, .. }) => {
                    self.insert(Node { line, kind: Kind::Map(entries) }, anchor)
                }
                None => {}
            },
            Event::Alias(id) => {
                let null = Node { line, kind: Kind::Scalar { value: String::new(), plain: true } };
                let node = match self.anchors.get(&id) {
                    Some((node, size)) if self.alias_nodes + size <= MAX_ALIAS_NODES => {
                        self.alias_nodes += size;
                        node.clone()
                    }
                    Some(_) => {
                        self.alias_overflow = true;
                        null
                    }
                    None => null,
                };
                self.insert(node, 0);
            }
            Event::DocumentStart => self.anchors.clear(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// A deserialization error, with the line of the node that caused it.
#[derive(Debug)]
pub(crate) struct DeError {
    pub line: Option<usize>,
    pub message: String,
}

impl DeError {
    fn at(mut self, line: usize) -> Self {
        self.line.get_or_insert(line);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { line: None, message: msg.to_string() }
    }
}

/// Deserializes a `T` from a node; errors carry the line of the innermost offending node.
pub(crate) fn from_node<'de, T: de::Deserialize<'de>>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node))
}

struct NodeDe<'n>(&'n Node);

impl NodeDe<'_> {
    fn with_line<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.at(self.0.line))
    }
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let node = self.0;
        let r = match &node.kind {
            Kind::Scalar { value, plain: true } => {
                if node.is_null() {
                    visitor.visit_unit()
                } else if let Ok(b) = value.parse::<bool>() {
                    visitor.visit_bool(b)
                } else if let Ok(i) = value.parse::<i64>() {
                    visitor.visit_i64(i)
                } else if let Ok(u) = value.parse::<u64>() {
                    visitor.visit_u64(u)
                } else if let Ok(f) = value.parse::<f64>() {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_str(value)
                }
            }
            Kind::Scalar { value, plain: false } => visitor.visit_str(value),
            Kind::Seq(items) => visitor.visit_seq(Seq { iter: items.iter() }),
            Kind::Map(entries) => visitor.visit_map(Map { iter: entries.iter(), value: None }),
        };
        self.with_line(r)
    }

    /// Any non-null scalar is accepted as a string (`cost_center: 42` is "42").
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.kind {
            Kind::Scalar { value, .. } if !self.0.is_null() => {
                let r = visitor.visit_str(value);
                self.with_line(r)
            }
            Kind::Scalar { .. } => {
                Err(<DeError as de::Error>::invalid_type(Unexpected::Other("null"), &visitor).at(self.0.line))
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = if self.0.is_null() { visitor.visit_none() } else { visitor.visit_some(NodeDe(self.0)) };
        self.with_line(r)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        let r = visitor.visit_newtype_struct(NodeDe(self.0));
        self.with_line(r)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0.as_str() {
            Some(s) => {
                let r = visitor.visit_enum(s.into_deserializer());
                self.with_line(r)
            }
            None => {
                Err(<DeError as de::Error>::custom(format!("invalid type: {}, expected a string", self.0.type_name()))
                    .at(self.0.line))
            }
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct
    }
}

struct Seq<'n> {
    iter: std::slice::Iter<'n, Node>,
}

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.iter.next() {
            Some(node) => seed.deserialize(NodeDe(node)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct Map<'n> {
    iter: std::slice::Iter<'n, (Node, Node)>,
    value: Option<&'n Node>,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(NodeDe(k)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(v) => seed.deserialize(NodeDe(v)),
            None => Err(<DeError as de::Error>::custom("mapping value requested before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based_and_point_at_entries() {
        let docs = parse_documents("a: 1\nlist:\n  - name: x\n    team: y\n  - name: z\n").unwrap();
        assert_eq!(docs.len(), 1);
        let list = docs[0].get("list").unwrap();
        let Kind::Seq(items) = &list.kind else { panic!("not a seq") };
        assert_eq!(items[0].line, 3);
        assert_eq!(items[0].line_of("team"), 4);
        let docs = parse_documents("a:\n\nb: 1\n").unwrap();
        assert_eq!(docs[0].get("a").unwrap().line, 1);
        assert_eq!(items[1].line, 5);
    }

    #[test]
    fn empty_values_are_null() {
        let docs = parse_documents("a:\nb: ~\nc: ''\n").unwrap();
        assert!(docs[0].get("a").unwrap().is_null());
        assert!(docs[0].get("b").unwrap().is_null());
        assert!(!docs[0].get("c").unwrap().is_null());
    }

    #[test]
    fn aliases_resolve() {
        let docs = parse_documents("a: &x {k: v}\nb: *x\n").unwrap();
        assert_eq!(docs[0].path(&["b", "k"]).unwrap().as_str(), Some("v"));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = format!("*a{}", i - 1);
            let list = [prev.as_str(); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{list}]\n"));
        }
        let err = parse_documents(&text).unwrap_err();
        assert!(err.message.contains("aliases expand"), "{}", err.message);
    }

    #[test]
    fn syntax_error_has_line() {
        let err = parse_documents("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.line.is_some());
    }
}
