//! Attribute actions, as the collector contrib's `attraction` package (shared by its
//! `resource` and `attributes` processors): `insert`, `update`, `upsert`, `delete`, `hash`,
//! `extract` and `convert`, with `value`, `default_value`, `from_attribute`, `from_context`,
//! `pattern` and `converted_type`, checked when the configuration is validated and applied in
//! order to one attribute list.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use regex::Regex;
use serde::Deserialize;
use sightline_core::ClientInfo;
use sightline_ottl::slot::{Lazy, Slot};

/// One entry of `attributes` (resource processor) or `actions` (attributes processor).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub default_value: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub pattern: String,
    #[serde(default)]
    pub from_attribute: String,
    #[serde(default)]
    pub from_context: String,
    #[serde(default)]
    pub converted_type: String,
    #[serde(default)]
    pub action: String,
}

#[derive(Clone, Debug)]
enum Op {
    Insert(Source),
    Update(Source),
    Upsert(Source),
    Delete(Option<Regex>),
    Hash(Option<Regex>),
    Extract(Regex, Vec<String>),
    Convert(Target),
}

#[derive(Clone, Debug)]
struct Source {
    value: Option<Value>,
    from_attribute: String,
    from_context: Option<ContextKey>,
    default: Option<Value>,
}

/// What `from_context` reads from the request's `client.Info`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ContextKey {
    /// `client.address`: the peer's IP address.
    Address,
    /// `metadata.<key>`, or a key without a prefix: a request header (gRPC metadata), with
    /// `include_metadata: true` on the receiver's protocol.
    Metadata(String),
}

/// Where a processor sits in its pipeline, for `from_context`: the collector's `batch`
/// processor hands on only the metadata named in its `metadata_keys`, and no client address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    #[default]
    BeforeBatch,
    AfterBatch {
        metadata_keys: Vec<String>,
    },
}

impl Placement {
    /// The placement after one more `batch` processor with `keys`.
    pub fn then_batch(self, keys: &[String]) -> Placement {
        let keep = |k: &String| keys.iter().any(|x| x.eq_ignore_ascii_case(k));
        match self {
            Placement::BeforeBatch => Placement::AfterBatch { metadata_keys: keys.to_vec() },
            Placement::AfterBatch { metadata_keys } => {
                Placement::AfterBatch { metadata_keys: metadata_keys.into_iter().filter(keep).collect() }
            }
        }
    }
}

/// The request context an action sees: who sent the request, as the processor's place in the
/// pipeline lets it see.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub client: Option<&'a ClientInfo>,
    pub placement: &'a Placement,
}

impl Request<'_> {
    /// No request context (a processor applied outside a pipeline, e.g. in tests).
    pub const NONE: Request<'static> = Request { client: None, placement: &Placement::BeforeBatch };

    /// The collector's `getAttributeValueFromContext`: values joined with `;`, `None` when
    /// there is none. Without a client address (after `batch`) `client.address` is empty.
    fn lookup(&self, key: &ContextKey) -> Option<String> {
        let client = self.client;
        match (key, self.placement) {
            (ContextKey::Address, Placement::AfterBatch { .. }) => Some(String::new()),
            (ContextKey::Address, Placement::BeforeBatch) => {
                Some(client.and_then(|c| c.addr).map(|a| a.to_canonical().to_string()).unwrap_or_default())
            }
            (ContextKey::Metadata(k), placement) => {
                if let Placement::AfterBatch { metadata_keys } = placement
                    && !metadata_keys.iter().any(|m| m.eq_ignore_ascii_case(k))
                {
                    return None;
                }
                let vals: Vec<&str> = client?.metadata(k).collect();
                if vals.is_empty() { None } else { Some(vals.join(";")) }
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Str,
    Int,
    Double,
}

#[derive(Clone, Debug)]
struct Action {
    key: String,
    op: Op,
}

/// Validated actions, applied in order.
#[derive(Clone, Debug, Default)]
pub struct Actions {
    actions: Vec<Action>,
}

impl Actions {
    /// Checks every action as the collector does; each error is keyed by `{index}.{field}`
    /// relative to the list.
    pub fn new(configs: &[ActionConfig]) -> Result<Actions, Vec<(String, String)>> {
        let mut errs = Vec::new();
        let mut actions = Vec::new();
        for (i, a) in configs.iter().enumerate() {
            match Action::new(a) {
                Ok(x) => actions.push(x),
                Err((field, msg)) => errs.push((format!("{i}.{field}"), msg)),
            }
        }
        if errs.is_empty() { Ok(Actions { actions }) } else { Err(errs) }
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Applies the actions to a span or log record kept encoded ([`Slot`]): deletes by key and
    /// inserts, updates and upserts of a literal value are recorded as attribute edits (no
    /// decoding); any other action decodes the item first; an item none of whose keys an
    /// action needs is left as it is.
    pub fn apply_slot<T: Lazy>(&self, slot: &mut Slot<T>, req: Request) {
        let literal = |src: &Source| src.value.is_some();
        let simple = self.actions.iter().all(|a| match &a.op {
            Op::Delete(None) => true,
            Op::Insert(s) | Op::Update(s) | Op::Upsert(s) => literal(s),
            _ => false,
        });
        if simple {
            for a in &self.actions {
                let key = a.key.as_str();
                let value = |s: &Source| AnyValue { value: s.value.clone() };
                match &a.op {
                    Op::Delete(_) => slot.delete_attr(key),
                    Op::Insert(s) if !slot.has_attr(key) => slot.set_attr(key, value(s)),
                    Op::Update(s) if slot.has_attr(key) => slot.set_attr(key, value(s)),
                    Op::Upsert(s) => slot.set_attr(key, value(s)),
                    _ => {}
                }
            }
            return;
        }
        // Key-bound actions on keys the item does not have change nothing.
        let may_change = self.actions.iter().any(|a| match &a.op {
            Op::Delete(None) | Op::Hash(None) | Op::Extract(..) | Op::Convert(_) | Op::Update(_) => {
                slot.has_attr(&a.key)
            }
            _ => true,
        });
        if may_change {
            self.apply(slot.get_mut().attrs_mut(), req);
        }
    }

    /// Applies the actions, in order, to `attrs`.
    pub fn apply(&self, attrs: &mut Vec<KeyValue>, req: Request) {
        for a in &self.actions {
            a.apply(attrs, req);
        }
    }

    /// Whether an action reads the request context (its result is not a function of the
    /// attributes alone).
    pub fn uses_context(&self) -> bool {
        self.actions.iter().any(|a| match &a.op {
            Op::Insert(s) | Op::Update(s) | Op::Upsert(s) => s.from_context.is_some(),
            _ => false,
        })
    }
}

fn find(attrs: &[KeyValue], key: &str) -> Option<usize> {
    attrs.iter().position(|kv| kv.key == key)
}

pub(crate) fn value_of(kv: &KeyValue) -> Option<&Value> {
    kv.value.as_ref().and_then(|v| v.value.as_ref())
}

fn put(attrs: &mut Vec<KeyValue>, key: &str, v: Value) {
    let any = Some(AnyValue { value: Some(v) });
    match find(attrs, key) {
        Some(i) => attrs[i].value = any,
        None => attrs.push(KeyValue { key: key.to_string(), value: any, ..Default::default() }),
    }
}

impl Action {
    fn new(a: &ActionConfig) -> Result<Action, (String, String)> {
        let action = a.action.to_ascii_lowercase();
        let key = a.key.clone();
        let sources = usize::from(a.value.is_some())
            + usize::from(!a.from_attribute.is_empty())
            + usize::from(!a.from_context.is_empty());
        let no_pattern = || -> Result<(), (String, String)> {
            if a.pattern.is_empty() {
                Ok(())
            } else {
                Err(("pattern".into(), format!("action {action:?} does not use pattern")))
            }
        };
        let no_conversion = || -> Result<(), (String, String)> {
            if a.converted_type.is_empty() {
                Ok(())
            } else {
                Err(("converted_type".into(), format!("action {action:?} does not use converted_type")))
            }
        };
        let by_pattern = matches!(action.as_str(), "delete" | "hash");
        if by_pattern && key.is_empty() && a.pattern.is_empty() {
            return Err(("key".into(), format!("action {action:?} needs key or pattern (or both)")));
        }
        if !by_pattern && key.is_empty() {
            return Err(("key".into(), "is required".into()));
        }
        let op = match action.as_str() {
            "insert" | "update" | "upsert" => {
                if sources == 0 && a.default_value.is_none() {
                    return Err((
                        "value".into(),
                        format!("action {action:?} needs one of value, from_attribute, from_context or default_value"),
                    ));
                }
                if sources > 1 {
                    return Err(("value".into(), "set only one of value, from_attribute and from_context".into()));
                }
                no_pattern()?;
                no_conversion()?;
                let from_context = match a.from_context.as_str() {
                    "" => None,
                    "client.address" => Some(ContextKey::Address),
                    k if k.starts_with("auth.") => {
                        return Err((
                            "from_context".into(),
                            format!(
                                "{k:?}: auth.* is not supported by Sightline (its bearer-token authentication \
                                 has no attributes); use client.address or metadata.<key>"
                            ),
                        ));
                    }
                    k => Some(ContextKey::Metadata(k.strip_prefix("metadata.").unwrap_or(k).to_string())),
                };
                let value =
                    a.value.as_ref().map(|v| yaml_value(v).map_err(|m| ("value".to_string(), m))).transpose()?;
                let default = a
                    .default_value
                    .as_ref()
                    .map(|v| yaml_value(v).map_err(|m| ("default_value".to_string(), m)))
                    .transpose()?;
                let src = Source { value, from_attribute: a.from_attribute.clone(), from_context, default };
                match action.as_str() {
                    "insert" => Op::Insert(src),
                    "update" => Op::Update(src),
                    _ => Op::Upsert(src),
                }
            }
            "delete" | "hash" => {
                if a.value.is_some() || !a.from_attribute.is_empty() {
                    return Err(("value".into(), format!("action {action:?} does not use value or from_attribute")));
                }
                no_conversion()?;
                let re = if a.pattern.is_empty() { None } else { Some(compile(&a.pattern)?) };
                if action == "delete" { Op::Delete(re) } else { Op::Hash(re) }
            }
            "extract" => {
                if sources > 0 {
                    return Err(("value".into(), "action \"extract\" does not use a value source".into()));
                }
                if a.pattern.is_empty() {
                    return Err(("pattern".into(), "is required for action \"extract\"".into()));
                }
                no_conversion()?;
                let re = compile(&a.pattern)?;
                let names: Vec<Option<&str>> = re.capture_names().skip(1).collect();
                if names.is_empty() {
                    return Err(("pattern".into(), "has no named capture groups ((?P<name>...))".into()));
                }
                if names.iter().any(Option::is_none) {
                    return Err(("pattern".into(), "has an unnamed capture group; name every group".into()));
                }
                let names = names.into_iter().map(|n| n.unwrap_or_default().to_string()).collect();
                Op::Extract(re, names)
            }
            "convert" => {
                if sources > 0 || !a.pattern.is_empty() {
                    return Err(("value".into(), "action \"convert\" does not use value sources or pattern".into()));
                }
                Op::Convert(match a.converted_type.as_str() {
                    "string" => Target::Str,
                    "int" => Target::Int,
                    "double" => Target::Double,
                    "" => return Err(("converted_type".into(), "is required for action \"convert\"".into())),
                    other => {
                        return Err(("converted_type".into(), format!("{other:?}: use string, int or double")));
                    }
                })
            }
            "" => {
                return Err((
                    "action".into(),
                    "is required: insert, update, upsert, delete, hash, extract or convert".into(),
                ));
            }
            other => {
                return Err((
                    "action".into(),
                    format!(
                        "unsupported action {other:?}: use insert, update, upsert, delete, hash, extract or convert"
                    ),
                ));
            }
        };
        Ok(Action { key, op })
    }

    fn apply(&self, attrs: &mut Vec<KeyValue>, req: Request) {
        let key = self.key.as_str();
        match &self.op {
            Op::Delete(re) => {
                // pdata's Map.Remove moves the last attribute into the removed one's place
                // (found by the differential test against the collector); RemoveIf keeps
                // the order.
                if let Some(i) = find(attrs, key) {
                    attrs.swap_remove(i);
                }
                if let Some(re) = re {
                    attrs.retain(|kv| !re.is_match(&kv.key));
                }
            }
            Op::Insert(src) => {
                if find(attrs, key).is_none()
                    && let Some(v) = src.get(attrs, req)
                {
                    put(attrs, key, v);
                }
            }
            Op::Update(src) => {
                if let Some(i) = find(attrs, key)
                    && let Some(v) = src.get(attrs, req)
                {
                    attrs[i].value = Some(AnyValue { value: Some(v) });
                }
            }
            Op::Upsert(src) => {
                if let Some(v) = src.get(attrs, req) {
                    put(attrs, key, v);
                }
            }
            Op::Hash(re) => {
                if let Some(i) = find(attrs, key) {
                    hash(&mut attrs[i]);
                }
                if let Some(re) = re {
                    for kv in attrs.iter_mut().filter(|kv| re.is_match(&kv.key)) {
                        hash(kv);
                    }
                }
            }
            Op::Extract(re, names) => {
                let Some(Value::StringValue(s)) = find(attrs, key).and_then(|i| value_of(&attrs[i])) else { return };
                let Some(caps) = re.captures(s) else { return };
                let found: Vec<(String, String)> = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.clone(), caps.get(i + 1).map_or("", |m| m.as_str()).to_string()))
                    .collect();
                for (n, v) in found {
                    put(attrs, &n, Value::StringValue(v));
                }
            }
            Op::Convert(t) => {
                if let Some(i) = find(attrs, key) {
                    convert(&mut attrs[i], *t);
                }
            }
        }
    }
}

impl Source {
    /// The collector's `getSourceAttributeValue`: the value, else the context's, else the
    /// attribute's, else the default.
    fn get(&self, attrs: &[KeyValue], req: Request) -> Option<Value> {
        if let Some(v) = &self.value {
            return Some(v.clone());
        }
        if let Some(v) = self.from_context.as_ref().and_then(|k| req.lookup(k)) {
            return Some(Value::StringValue(v));
        }
        if !self.from_attribute.is_empty()
            && let Some(v) = find(attrs, &self.from_attribute).map(|i| value_of(&attrs[i]).cloned())
        {
            // An attribute whose value is empty copies as empty.
            return Some(v.unwrap_or(Value::StringValue(String::new())));
        }
        self.default.clone()
    }
}

/// Compiles a pattern, refusing what Go's `regexp` (the collector's) refuses and Rust's
/// `regex` would accept: capture group names of other than word characters (`(?P<a.b>...)`).
/// Both implement RE2 syntax otherwise.
fn compile(pattern: &str) -> Result<Regex, (String, String)> {
    let re = Regex::new(pattern).map_err(|e| ("pattern".to_string(), format!("invalid pattern {pattern:?}: {e}")))?;
    if let Some(bad) = re.capture_names().flatten().find(|n| !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err((
            "pattern".to_string(),
            format!(
                "invalid pattern {pattern:?}: group name {bad:?} may hold only letters, digits and _ (as in the collector)"
            ),
        ));
    }
    Ok(re)
}

/// A YAML value as an attribute value, as pdata's `Value.FromRaw` takes it.
pub(crate) fn yaml_value(v: &serde_yaml_ng::Value) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match v {
        Y::Null => return Err("must not be null".into()),
        Y::Bool(b) => Value::BoolValue(*b),
        Y::Number(n) => match n.as_i64() {
            Some(i) => Value::IntValue(i),
            None => Value::DoubleValue(n.as_f64().ok_or("is not a number Sightline can represent")?),
        },
        Y::String(s) => Value::StringValue(s.clone()),
        Y::Sequence(items) => Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|x| yaml_value(x).map(|v| AnyValue { value: Some(v) }))
                .collect::<Result<_, _>>()?,
        }),
        Y::Mapping(m) => Value::KvlistValue(KeyValueList {
            values: m
                .iter()
                .map(|(k, x)| {
                    let key = k.as_str().ok_or("map keys must be strings")?.to_string();
                    Ok(KeyValue { key, value: Some(AnyValue { value: Some(yaml_value(x)?) }), ..Default::default() })
                })
                .collect::<Result<_, String>>()?,
        }),
        Y::Tagged(t) => yaml_value(&t.value)?,
    })
}

/// SHA-256 of the value's bytes, hex: strings as UTF-8, booleans as one byte, integers and
/// doubles as 8 little-endian bytes; any other type becomes the empty string (as the
/// collector's hash action).
fn hash(kv: &mut KeyValue) {
    let bytes: Option<Vec<u8>> = match value_of(kv) {
        Some(Value::StringValue(s)) => Some(s.as_bytes().to_vec()),
        Some(Value::BoolValue(b)) => Some(vec![u8::from(*b)]),
        Some(Value::IntValue(i)) => Some(i.to_le_bytes().to_vec()),
        Some(Value::DoubleValue(d)) => Some(d.to_bits().to_le_bytes().to_vec()),
        _ => None,
    };
    let s = match bytes {
        Some(b) => {
            let digest = ring::digest::digest(&ring::digest::SHA256, &b);
            digest.as_ref().iter().map(|x| format!("{x:02x}")).collect()
        }
        None => String::new(),
    };
    kv.value = Some(AnyValue { value: Some(Value::StringValue(s)) });
}

fn convert(kv: &mut KeyValue, t: Target) {
    let Some(v) = value_of(kv) else { return };
    let new = match (t, v) {
        (Target::Str, Value::StringValue(_)) => return,
        (Target::Str, v) => Value::StringValue(as_string(v)),
        (Target::Int, Value::DoubleValue(d)) => Value::IntValue(*d as i64),
        (Target::Int, Value::BoolValue(b)) => Value::IntValue(i64::from(*b)),
        (Target::Int, Value::StringValue(s)) => match s.parse::<i64>() {
            Ok(n) => Value::IntValue(n),
            Err(_) => return,
        },
        (Target::Double, Value::IntValue(i)) => Value::DoubleValue(*i as f64),
        (Target::Double, Value::BoolValue(b)) => Value::DoubleValue(if *b { 1.0 } else { 0.0 }),
        (Target::Double, Value::StringValue(s)) => match s.parse::<f64>() {
            Ok(n) => Value::DoubleValue(n),
            Err(_) => return,
        },
        _ => return,
    };
    kv.value = Some(AnyValue { value: Some(new) });
}

/// pdata's `Value.AsString`: strings as they are, booleans `true`/`false`, integers in
/// decimal, doubles as JSON numbers, bytes in base64, lists and maps as JSON.
pub fn as_string(v: &Value) -> String {
    match v {
        Value::StringValue(s) => s.clone(),
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => json_number(*d),
        Value::BytesValue(b) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(b)
        }
        Value::ArrayValue(_) | Value::KvlistValue(_) => raw_json(v).to_string(),
        // An index into a profiles dictionary: no string without the dictionary.
        Value::StringValueStrindex(_) => String::new(),
    }
}

fn raw_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::StringValue(s) => J::String(s.clone()),
        Value::BoolValue(b) => J::Bool(*b),
        Value::IntValue(i) => J::from(*i),
        Value::DoubleValue(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Value::BytesValue(b) => {
            use base64::Engine as _;
            J::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Value::ArrayValue(a) => J::Array(a.values.iter().map(|x| x.value.as_ref().map_or(J::Null, raw_json)).collect()),
        Value::KvlistValue(m) => {
            J::Object(m.values.iter().map(|kv| (kv.key.clone(), value_of(kv).map_or(J::Null, raw_json))).collect())
        }
        Value::StringValueStrindex(_) => J::Null,
    }
}

/// A double as Go's encoding/json writes it (ES6 number-to-string), and `NaN`, `Infinity` or
/// `-Infinity` for one that is not finite (what pdata's `AsString` returns then).
pub fn json_number(d: f64) -> String {
    if !d.is_finite() {
        return sightline_core::text::non_finite(d).to_string();
    }
    sightline_core::text::json_number(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn s(x: &str) -> Value {
        Value::StringValue(x.into())
    }

    fn actions(yaml: &str) -> Actions {
        let cfgs: Vec<ActionConfig> = serde_yaml_ng::from_str(yaml).expect("yaml");
        Actions::new(&cfgs).expect("valid")
    }

    fn errors(yaml: &str) -> Vec<(String, String)> {
        let cfgs: Vec<ActionConfig> = serde_yaml_ng::from_str(yaml).expect("yaml");
        Actions::new(&cfgs).expect_err("invalid")
    }

    #[test]
    fn insert_update_upsert_delete() {
        let a = actions(
            r#"
- { key: a, value: new, action: insert }
- { key: b, value: 7, action: insert }
- { key: c, value: 1.5, action: update }
- { key: d, value: true, action: upsert }
- { key: e, from_attribute: a, action: upsert }
- { key: x, action: delete }
- { pattern: '^tmp\.', action: delete }
- { key: f, from_attribute: missing, default_value: dflt, action: insert }
"#,
        );
        let mut attrs = vec![kv("a", s("old")), kv("x", s("gone")), kv("tmp.1", s("")), kv("tmp.2", s(""))];
        a.apply(&mut attrs, Request::NONE);
        let got: Vec<(String, Option<Value>)> =
            attrs.iter().map(|kv| (kv.key.clone(), value_of(kv).cloned())).collect();
        assert_eq!(
            got,
            // Deleting `x` by key moved the last attribute (`e`) into its place, as pdata does.
            vec![
                ("a".into(), Some(s("old"))),
                ("e".into(), Some(s("old"))),
                ("b".into(), Some(Value::IntValue(7))),
                ("d".into(), Some(Value::BoolValue(true))),
                ("f".into(), Some(s("dflt"))),
            ]
        );
    }

    #[test]
    fn from_context_reads_the_request_as_the_collector_does() {
        let a = actions(
            r#"
- { key: tenant, from_context: metadata.x-tenant, action: upsert }
- { key: bare, from_context: X-Tenant, action: upsert }
- { key: addr, from_context: client.address, action: insert }
- { key: dflt, from_context: metadata.nope, default_value: d, action: insert }
"#,
        );
        let client = ClientInfo {
            addr: Some("::ffff:127.0.0.1".parse().expect("an address")),
            metadata: vec![
                ("x-tenant".into(), "a".into()),
                ("other".into(), "o".into()),
                ("x-tenant".into(), "b".into()),
            ],
        };
        let run = |placement: &Placement| {
            let mut attrs = vec![kv("src", s("from-attr"))];
            a.apply(&mut attrs, Request { client: Some(&client), placement });
            attrs.iter().map(|kv| (kv.key.clone(), value_of(kv).cloned())).collect::<Vec<_>>()
        };
        let before = run(&Placement::BeforeBatch);
        assert_eq!(
            before,
            vec![
                ("src".into(), Some(s("from-attr"))),
                ("tenant".into(), Some(s("a;b"))),
                ("bare".into(), Some(s("a;b"))),
                ("addr".into(), Some(s("127.0.0.1"))),
                ("dflt".into(), Some(s("d"))),
            ]
        );
        // After `batch` with metadata_keys [X-Tenant]: that key survives, the address does not.
        let after = run(&Placement::BeforeBatch.then_batch(&["X-Tenant".into()]));
        assert_eq!(after[1], ("tenant".into(), Some(s("a;b"))));
        assert_eq!(after[3], ("addr".into(), Some(s(""))), "no address after batch");
        // After a plain `batch`: no metadata either.
        let after = run(&Placement::BeforeBatch.then_batch(&[]));
        assert_eq!(after.iter().find(|(k, _)| k == "tenant"), None);
        assert_eq!(after.iter().find(|(k, _)| k == "addr").map(|x| x.1.clone()), Some(Some(s(""))));
    }

    #[test]
    fn hash_extract_convert() {
        let a = actions(
            r#"
- { key: user, action: hash }
- { key: n, action: hash }
- { key: url, pattern: '^(?P<scheme>\w+)://(?P<host>[^/]+)', action: extract }
- { key: port, converted_type: int, action: convert }
- { key: ratio, converted_type: double, action: convert }
- { key: big, converted_type: string, action: convert }
- { key: bad, converted_type: int, action: convert }
"#,
        );
        let mut attrs = vec![
            kv("user", s("alice")),
            kv("n", Value::IntValue(1)),
            kv("url", s("https://example.com/x")),
            kv("port", s("8080")),
            kv("ratio", Value::IntValue(3)),
            kv("big", Value::DoubleValue(1e21)),
            kv("bad", s("12a")),
        ];
        a.apply(&mut attrs, Request::NONE);
        let get = |k: &str| value_of(&attrs[find(&attrs, k).expect(k)]).cloned();
        // sha256("alice")
        assert_eq!(get("user"), Some(s("2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90")));
        // sha256 of 1 as 8 little-endian bytes
        assert_eq!(get("n"), Some(s("7c9fa136d4413fa6173637e883b6998d32e1d675f88cddff9dcbcf331820f4b8")));
        assert_eq!(get("scheme"), Some(s("https")));
        assert_eq!(get("host"), Some(s("example.com")));
        assert_eq!(get("port"), Some(Value::IntValue(8080)));
        assert_eq!(get("ratio"), Some(Value::DoubleValue(3.0)));
        assert_eq!(get("big"), Some(s("1e+21")));
        assert_eq!(get("bad"), Some(s("12a")), "a string that is not a number is left as it is");
    }

    #[test]
    fn json_numbers_as_go_writes_them() {
        for (d, want) in [
            (1.5, "1.5"),
            (100.0, "100"),
            (1e21, "1e+21"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (-2.5e-8, "-2.5e-8"),
            (123456789.125, "123456789.125"),
        ] {
            assert_eq!(json_number(d), want, "{d}");
        }
    }

    #[test]
    fn invalid_actions_are_explained() {
        let e = errors("- { key: a, action: insert }");
        assert_eq!(e[0].0, "0.value");
        let e = errors("- { key: a, value: x, from_attribute: b, action: upsert }");
        assert!(e[0].1.contains("only one"), "{e:?}");
        let e = errors("- { key: a, action: extract, pattern: '(\\w+)' }");
        assert!(e[0].1.contains("named"), "{e:?}");
        let e = errors("- { key: a, action: convert, converted_type: bool }");
        assert_eq!(e[0].0, "0.converted_type");
        let e = errors("- { action: delete }");
        assert_eq!(e[0].0, "0.key");
        let e = errors("- { key: a, action: rename }");
        assert!(e[0].1.contains("unsupported action"), "{e:?}");
        let e = errors("- { key: a, action: extract, pattern: '(?P<a.b>\\w+)' }");
        assert!(e[0].1.contains("group name"), "{e:?}");
        let e = errors("- { key: a, from_context: auth.subject, action: insert }");
        assert_eq!(e[0].0, "0.from_context");
        actions("- { key: a, from_context: metadata.x, action: insert }");
        let e = errors("- { key: a, from_context: metadata.x, from_attribute: b, action: insert }");
        assert!(e[0].1.contains("only one"), "one value source, as the collector: {e:?}");
    }
}
