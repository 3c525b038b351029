//! Maps dotted paths (`exporters.otlp/tempo.endpoint`, `service.pipelines.traces.exporters.0`)
//! to the YAML line they are on, from the YAML parser's events. serde's `Value` has no spans;
//! this index is what lets every error name its line.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser};

#[derive(Clone, Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() { key.to_string() } else { format!("{base}.{key}") }
}

impl LineIndex {
    /// Indexes the first document of `text`; a syntax error is returned as (line, message).
    pub fn build(text: &str) -> Result<LineIndex, (usize, String)> {
        let mut idx = LineIndex::default();
        let mut parser = Parser::new_from_str(text);
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            let (ev, mark) = parser.next_token().map_err(|e| (e.marker().line(), e.info().to_string()))?;
            let line = mark.line();
            // The path a value starting here gets, and whether this event is a mapping key.
            let value_path = |stack: &mut Vec<Frame>| -> Option<String> {
                match stack.last_mut() {
                    None => Some(String::new()),
                    Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
                    Some(Frame::Seq { path, index }) => {
                        let p = join(path, &index.to_string());
                        *index += 1;
                        Some(p)
                    }
                }
            };
            match ev {
                Event::StreamEnd | Event::DocumentEnd => break,
                Event::Scalar(s, ..) => {
                    let is_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }));
                    if is_key {
                        if let Some(Frame::Map { path, key }) = stack.last_mut() {
                            idx.lines.entry(join(path, &s)).or_insert(line);
                            *key = Some(s);
                        }
                    } else if let Some(p) = value_path(&mut stack) {
                        idx.lines.entry(p).or_insert(line);
                    }
                }
                Event::Alias(_) => {
                    value_path(&mut stack);
                }
                Event::MappingStart(..) => {
                    let is_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }));
                    let path = if is_key { String::from("?") } else { value_path(&mut stack).unwrap_or_default() };
                    idx.lines.entry(path.clone()).or_insert(line);
                    stack.push(Frame::Map { path, key: None });
                }
                Event::SequenceStart(..) => {
                    let path = value_path(&mut stack).unwrap_or_default();
                    idx.lines.entry(path.clone()).or_insert(line);
                    stack.push(Frame::Seq { path, index: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        Ok(idx)
    }

    pub fn line(&self, path: &str) -> Option<usize> {
        self.lines.get(path).copied()
    }

    /// The line of `path`, or of its nearest ancestor that has one (an error about a key that
    /// is absent, such as a missing required field, points at its parent).
    pub fn nearest(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.line(p) {
                return Some(l);
            }
            p = p.rsplit_once('.')?.0;
        }
    }
}
