//! The function table: the editors and converters of the collector's `ottlfuncs` that
//! Sightline implements, with their parameter names (as named arguments take them), types
//! and semantics.

use crate::compile::{ArgV, Getter, PathRef};
use crate::context::{Ctx, Item, Target};
use crate::eval::{get, map_target, read_path, resolve_keys, set_path};
use crate::value::{Val, hex, string_like};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Pv;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use regex::Regex;
use std::borrow::Cow;
use std::sync::Arc;

pub type Conv = Box<dyn Fn(&Target) -> Result<Val<'static>, String> + Send + Sync>;
pub type Edit = Box<dyn Fn(&mut Target) -> Result<(), String> + Send + Sync>;
pub type HashFn = fn(&str) -> String;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Editor,
    Converter,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ty {
    /// A path to write.
    Setter,
    /// A path to read and write.
    GetSetter,
    /// A path to a map, edited in place.
    MapTarget,
    /// A regular expression (compiled once when it is a literal).
    Regex,
    StrLit,
    IntLit,
    BoolLit,
    StrList,
    /// A list literal of values, or one getter giving a list.
    GetterList,
    /// A hash function's name.
    Func,
    Str,
    Int,
    Map,
    Time,
    Any,
    StrLike,
    IntLike,
    FloatLike,
    BytesLike,
}

pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    pub optional: bool,
}

const fn p(name: &'static str, ty: Ty) -> Param {
    Param { name, ty, optional: false }
}
const fn o(name: &'static str, ty: Ty) -> Param {
    Param { name, ty, optional: true }
}

type BuildConv = fn(Vec<ArgV>, Ctx) -> Result<Conv, String>;
type BuildEdit = fn(Vec<ArgV>) -> Result<Edit, String>;

pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub params: &'static [Param],
    pub returns_bool: bool,
    /// The only context the function works in.
    pub only: Option<Ctx>,
    pub build_conv: Option<BuildConv>,
    pub build_edit: Option<BuildEdit>,
}

const fn editor(name: &'static str, params: &'static [Param], b: BuildEdit) -> Def {
    Def { name, kind: Kind::Editor, params, returns_bool: false, only: None, build_conv: None, build_edit: Some(b) }
}
const fn conv(name: &'static str, params: &'static [Param], returns_bool: bool, b: BuildConv) -> Def {
    Def { name, kind: Kind::Converter, params, returns_bool, only: None, build_conv: Some(b), build_edit: None }
}

const REPLACE: &[Param] = &[
    p("target", Ty::GetSetter),
    p("regex_pattern", Ty::Regex),
    p("replacement", Ty::Str),
    o("function", Ty::Func),
    o("replacement_format", Ty::Str),
];
const REPLACE_ALL: &[Param] = &[
    p("target", Ty::MapTarget),
    p("mode", Ty::StrLit),
    p("regex_pattern", Ty::Regex),
    p("replacement", Ty::Str),
    o("function", Ty::Func),
    o("replacement_format", Ty::Str),
];
const MATCH: &[Param] = &[
    p("target", Ty::GetSetter),
    p("pattern", Ty::StrLit),
    p("replacement", Ty::Str),
    o("function", Ty::Func),
    o("replacement_format", Ty::Str),
];
const MATCH_ALL: &[Param] = &[
    p("target", Ty::MapTarget),
    p("pattern", Ty::StrLit),
    p("replacement", Ty::Str),
    o("function", Ty::Func),
    o("replacement_format", Ty::Str),
];
const ONE_STR: &[Param] = &[p("target", Ty::Str)];
const ONE_ANY: &[Param] = &[p("target", Ty::Any)];

pub static FUNCTIONS: &[Def] = &[
    editor("set", &[p("target", Ty::Setter), p("value", Ty::Any)], build_set),
    editor("delete_key", &[p("target", Ty::MapTarget), p("key", Ty::Str)], build_delete_key),
    editor("delete_matching_keys", &[p("target", Ty::MapTarget), p("pattern", Ty::Regex)], build_delete_matching),
    editor("keep_keys", &[p("target", Ty::MapTarget), p("keys", Ty::StrList)], build_keep_keys),
    editor("keep_matching_keys", &[p("target", Ty::MapTarget), p("pattern", Ty::Regex)], build_keep_matching),
    editor(
        "truncate_all",
        &[
            p("target", Ty::MapTarget),
            p("limit", Ty::IntLit),
            o("utf8_safe", Ty::BoolLit),
            o("truncation_marker", Ty::StrLit),
        ],
        build_truncate_all,
    ),
    editor(
        "limit",
        &[p("target", Ty::MapTarget), p("limit", Ty::IntLit), p("priority_keys", Ty::StrList)],
        build_limit,
    ),
    editor("replace_pattern", REPLACE, build_replace_pattern),
    editor("replace_all_patterns", REPLACE_ALL, build_replace_all_patterns),
    editor("replace_match", MATCH, build_replace_match),
    editor("replace_all_matches", MATCH_ALL, build_replace_all_matches),
    editor(
        "merge_maps",
        &[p("target", Ty::MapTarget), p("source", Ty::Map), p("strategy", Ty::StrLit)],
        build_merge_maps,
    ),
    editor(
        "flatten",
        &[
            p("target", Ty::MapTarget),
            o("prefix", Ty::StrLit),
            o("depth", Ty::IntLit),
            o("resolve_conflicts", Ty::BoolLit),
        ],
        build_flatten,
    ),
    conv("Concat", &[p("vals", Ty::GetterList), p("delimiter", Ty::Str)], false, build_concat),
    conv("IsMatch", &[p("target", Ty::StrLike), p("pattern", Ty::Regex)], true, build_is_match),
    conv("IsString", ONE_ANY, true, |a, _| is_type(a, |v| matches!(v, Val::Str(_)))),
    conv("IsInt", ONE_ANY, true, |a, _| is_type(a, |v| matches!(v, Val::Int(_)))),
    conv("IsDouble", ONE_ANY, true, |a, _| is_type(a, |v| matches!(v, Val::Float(_)))),
    conv("IsBool", ONE_ANY, true, |a, _| is_type(a, |v| matches!(v, Val::Bool(_)))),
    conv("IsMap", ONE_ANY, true, |a, _| is_type(a, |v| matches!(v, Val::Map(_)))),
    conv("IsList", ONE_ANY, true, |a, _| is_type(a, |v| matches!(v, Val::List(_)))),
    conv("Int", &[p("target", Ty::IntLike)], false, build_int),
    conv("Double", &[p("target", Ty::FloatLike)], false, build_double),
    conv("String", &[p("target", Ty::StrLike)], false, build_string),
    conv("SHA256", ONE_STR, false, |a, _| build_hash(a, sha256)),
    conv("SHA1", ONE_STR, false, |a, _| build_hash(a, sha1)),
    conv("SHA512", ONE_STR, false, |a, _| build_hash(a, sha512)),
    conv("MD5", ONE_STR, false, |_, _| Err("MD5 is not supported by Sightline (use SHA256)".into())),
    conv("Split", &[p("target", Ty::Str), p("delimiter", Ty::Str)], false, build_split),
    conv(
        "Substring",
        &[p("target", Ty::Str), p("start", Ty::Int), p("length", Ty::Int), o("utf8_safe", Ty::BoolLit)],
        false,
        build_substring,
    ),
    conv("ToLowerCase", ONE_STR, false, |a, _| build_str_map(a, |s| s.to_lowercase())),
    conv("ToUpperCase", ONE_STR, false, |a, _| build_str_map(a, |s| s.to_uppercase())),
    conv("Len", ONE_ANY, false, build_len),
    conv("ParseJSON", ONE_STR, false, build_parse_json),
    conv("TraceID", &[p("bytes", Ty::BytesLike)], false, |a, _| build_id(a, 16, "TraceID")),
    conv("SpanID", &[p("bytes", Ty::BytesLike)], false, |a, _| build_id(a, 8, "SpanID")),
    conv("Now", &[], false, build_now),
    conv("UnixNano", &[p("time", Ty::Time)], false, |a, _| build_unix(a, 1)),
    conv("UnixMicro", &[p("time", Ty::Time)], false, |a, _| build_unix(a, 1_000)),
    conv("UnixMilli", &[p("time", Ty::Time)], false, |a, _| build_unix(a, 1_000_000)),
    conv("UnixSeconds", &[p("time", Ty::Time)], false, |a, _| build_unix(a, 1_000_000_000)),
    conv("HasPrefix", &[p("target", Ty::Str), p("prefix", Ty::Str)], true, |a, _| build_affix(a, true)),
    conv("HasSuffix", &[p("target", Ty::Str), p("suffix", Ty::Str)], true, |a, _| build_affix(a, false)),
    Def {
        name: "IsRootSpan",
        kind: Kind::Converter,
        params: &[],
        returns_bool: true,
        only: Some(Ctx::Span),
        build_conv: Some(build_is_root_span),
        build_edit: None,
    },
];

pub fn lookup(name: &str) -> Option<&'static Def> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

pub const ENUM_NAMES: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
    "STATUS_CODE_UNSET",
    "STATUS_CODE_OK",
    "STATUS_CODE_ERROR",
    "METRIC_DATA_TYPE_NONE",
    "METRIC_DATA_TYPE_GAUGE",
    "METRIC_DATA_TYPE_SUM",
    "METRIC_DATA_TYPE_HISTOGRAM",
    "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM",
    "METRIC_DATA_TYPE_SUMMARY",
    "AGGREGATION_TEMPORALITY_UNSPECIFIED",
    "AGGREGATION_TEMPORALITY_DELTA",
    "AGGREGATION_TEMPORALITY_CUMULATIVE",
    "FLAG_NONE",
    "FLAG_NO_RECORDED_VALUE",
    "SEVERITY_NUMBER_UNSPECIFIED",
    "SEVERITY_NUMBER_TRACE",
    "SEVERITY_NUMBER_DEBUG",
    "SEVERITY_NUMBER_INFO",
    "SEVERITY_NUMBER_WARN",
    "SEVERITY_NUMBER_ERROR",
    "SEVERITY_NUMBER_FATAL",
];

pub fn enum_value(name: &str) -> Option<i64> {
    let group = |base: &str, names: &[&str]| names.iter().position(|n| *n == base).map(|i| i as i64);
    if let Some(k) = name.strip_prefix("SPAN_KIND_") {
        return group(k, &["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"]);
    }
    if let Some(k) = name.strip_prefix("STATUS_CODE_") {
        return group(k, &["UNSET", "OK", "ERROR"]);
    }
    if let Some(k) = name.strip_prefix("METRIC_DATA_TYPE_") {
        return group(k, &["NONE", "GAUGE", "SUM", "HISTOGRAM", "EXPONENTIAL_HISTOGRAM", "SUMMARY"]);
    }
    if let Some(k) = name.strip_prefix("AGGREGATION_TEMPORALITY_") {
        return group(k, &["UNSPECIFIED", "DELTA", "CUMULATIVE"]);
    }
    match name {
        "FLAG_NONE" => return Some(0),
        "FLAG_NO_RECORDED_VALUE" => return Some(1),
        "SEVERITY_NUMBER_UNSPECIFIED" => return Some(0),
        _ => {}
    }
    let k = name.strip_prefix("SEVERITY_NUMBER_")?;
    let (level, n) = match k.find(|c: char| c.is_ascii_digit()) {
        Some(i) => (&k[..i], k[i..].parse::<i64>().ok().filter(|n| (2..=4).contains(n))?),
        None => (k, 1),
    };
    let base = group(level, &["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"])?;
    Some(base * 4 + n)
}

pub fn hash_fn(name: &str) -> Option<HashFn> {
    Some(match name {
        "SHA256" => sha256,
        "SHA1" => sha1,
        "SHA512" => sha512,
        _ => return None,
    })
}

fn digest(alg: &'static ring::digest::Algorithm, s: &str) -> String {
    hex(ring::digest::digest(alg, s.as_bytes()).as_ref())
}
fn sha256(s: &str) -> String {
    digest(&ring::digest::SHA256, s)
}
fn sha1(s: &str) -> String {
    digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s)
}
fn sha512(s: &str) -> String {
    digest(&ring::digest::SHA512, s)
}

// ---- argument helpers ----

fn take(a: &mut [ArgV], i: usize) -> ArgV {
    std::mem::replace(&mut a[i], ArgV::None)
}
fn getter(a: &mut [ArgV], i: usize) -> Getter {
    match take(a, i) {
        ArgV::Get(g) => g,
        _ => Getter::Lit(Val::Nil),
    }
}
fn path(a: &mut [ArgV], i: usize) -> PathRef {
    match take(a, i) {
        ArgV::Path(p) => p,
        _ => unreachable!("the binder gives a path for a path parameter"),
    }
}
fn opt_getter(a: &mut [ArgV], i: usize) -> Option<Getter> {
    match take(a, i) {
        ArgV::Get(g) => Some(g),
        _ => None,
    }
}

/// A regex argument: compiled once, or compiled per evaluation from a getter.
enum Re {
    Fixed(Regex),
    Dynamic(Getter),
}

fn regex(a: &mut [ArgV], i: usize) -> Re {
    match take(a, i) {
        ArgV::Regex(Ok(r)) => Re::Fixed(r),
        ArgV::Regex(Err(g)) => Re::Dynamic(g),
        _ => unreachable!("the binder gives a regex"),
    }
}

impl Re {
    fn get(&self, t: &Target) -> Result<Cow<'_, Regex>, String> {
        match self {
            Re::Fixed(r) => Ok(Cow::Borrowed(r)),
            Re::Dynamic(g) => {
                let s = str_of(g, t)?;
                Regex::new(&s).map(Cow::Owned).map_err(|e| format!("invalid regular expression {s:?}: {e}"))
            }
        }
    }
}

/// A `StringGetter`: a string, else a type error.
pub fn str_of<'a>(g: &'a Getter, t: &'a Target) -> Result<Cow<'a, str>, String> {
    match get(g, t)? {
        Val::Str(s) => Ok(s),
        v => Err(format!("expected string but got {}", v.type_name())),
    }
}

fn int_of(g: &Getter, t: &Target) -> Result<i64, String> {
    match get(g, t)? {
        Val::Int(i) => Ok(i),
        v => Err(format!("expected int64 but got {}", v.type_name())),
    }
}

fn map_of<'a>(g: &'a Getter, t: &'a Target) -> Result<Cow<'a, [KeyValue]>, String> {
    match get(g, t)? {
        Val::Map(m) => Ok(m),
        v => Err(format!("expected pcommon.Map but got {}", v.type_name())),
    }
}

fn str_val(s: String) -> Val<'static> {
    Val::Str(Cow::Owned(s))
}

// ---- editors ----

fn build_set(mut a: Vec<ArgV>) -> Result<Edit, String> {
    let target = path(&mut a, 0);
    let value = getter(&mut a, 1);
    // One literal attribute key, and a literal value: shared with every item's edit.
    let shared_key: Option<Arc<str>> = match &target.keys[..] {
        [crate::compile::KeyG::Str(k)] => Some(Arc::from(k.as_str())),
        _ => None,
    };
    let shared_value: Option<Arc<AnyValue>> = match &value {
        Getter::Lit(Val::Nil) => Some(Arc::new(AnyValue { value: None })),
        Getter::Lit(v) => v.to_any().map(Arc::new),
        _ => None,
    };
    // A copy of another attribute of the same item: the value stays encoded.
    let copy_from: Option<(crate::context::F, String)> = match &value {
        Getter::Path(p) if shared_key.is_some() => match &p.keys[..] {
            [crate::compile::KeyG::Str(k)] if p.f == target.f => Some((p.f, k.clone())),
            _ => None,
        },
        _ => None,
    };
    let nil = Arc::new(AnyValue { value: None });
    Ok(Box::new(move |t| {
        if let (Some(k), Some(v)) = (&shared_key, &shared_value)
            && t.set_item_attr_shared(target.f, k, v)
        {
            return Ok(());
        }
        if let (Some(k), Some((f, from))) = (&shared_key, &copy_from)
            && t.copy_item_attr(*f, k, from, &nil)
        {
            return Ok(());
        }
        // nil is passed on (the collector's `ottl.set.allowNil` gate, on by default since
        // v0.158): an attribute becomes an empty value, a typed field is left alone.
        let v = get(&value, t)?.into_owned();
        // One literal key of a span's or log record's attributes: an edit, nothing resolved.
        if let [crate::compile::KeyG::Str(k)] = &target.keys[..]
            && t.is_item_attrs(target.f)
        {
            let any = if v == Val::Nil { Some(AnyValue { value: None }) } else { v.into_any() };
            if let Some(a) = any {
                t.set_item_attr(target.f, k, a);
            }
            return Ok(());
        }
        let keys = resolve_keys(&target.keys, t)?;
        set_path(t, &target, &keys, v)
    }))
}

fn with_map(t: &mut Target, p: &PathRef, f: impl FnOnce(&mut Vec<KeyValue>)) -> Result<(), String> {
    let keys = resolve_keys(&p.keys, t)?;
    let m = map_target(t, p, &keys)?;
    f(m);
    Ok(())
}

fn build_delete_key(mut a: Vec<ArgV>) -> Result<Edit, String> {
    let target = path(&mut a, 0);
    let key = getter(&mut a, 1);
    let shared_key: Option<Arc<str>> = match &key {
        Getter::Lit(Val::Str(k)) if target.keys.is_empty() => Some(Arc::from(&**k)),
        _ => None,
    };
    Ok(Box::new(move |t| {
        if let Some(k) = &shared_key
            && t.delete_item_attr_shared(target.f, k)
        {
            return Ok(());
        }
        let k = str_of(&key, t)?.into_owned();
        if target.keys.is_empty() && t.delete_item_attr(target.f, &k) {
            return Ok(());
        }
        with_map(t, &target, |m| crate::slot::remove(m, &k))
    }))
}

fn build_delete_matching(mut a: Vec<ArgV>) -> Result<Edit, String> {
    let target = path(&mut a, 0);
    let re = regex(&mut a, 1);
    Ok(Box::new(move |t| {
        let r = re.get(t)?.into_owned();
        with_map(t, &target, |m| m.retain(|kv| !r.is_match(&kv.key)))
    }))
}

fn build_keep_matching(mut a: Vec<ArgV>) -> Result<Edit, String> {
    let target = path(&mut a, 0);
    let re = regex(&mut a, 1);
    Ok(Box::new(move |t| {
        let r = re.get(t)?.into_owned();
        with_map(t, &target, |m| m.retain(|kv| r.is_match(&kv.key)))
    }))
}

fn build_keep_keys(mut a: Vec<ArgV>) -> Result<Edit, String> {
    let target = path(&mut a, 0);
    let ArgV::StrList(keys) = take(&mut a, 1) else { unreachable!() };
    Ok(Box::new(move |t| with_map(t, &target, |m| m.retain(|kv| keys.contains(&kv.key)))))
}

fn build_truncate_all(mut a: Vec<ArgV>) -> Result<Edit, String> {
    let target = path(&mut a, 0);
    let ArgV::Int(limit) = take(&mut a, 1) else { unreachable!() };
    if limit < 0 {
        return Err(format!("invalid limit for truncate_all function, {limit} cannot be negative"));
    }
    if let ArgV::Bool(false) = take(&mut a, 2) {
        return Err("utf8_safe = false is not supported: Sightline's strings are always valid UTF-8, so a cut always falls on a character boundary".into());
    }
    let marker = match take(&mut a, 3) {
        ArgV::Str(s) => s,
        _ => String::new(),
    };
    if marker.len() as i64 > limit {
        return Err(format!(
            "invalid truncation marker for truncate_all function, length of marker {} cannot be greater than limit {limit}",
            marker.len()
        ));
    }
    let limit = limit as usize;
    Ok(Box::new(move |t| {
        with_map(t, &target, |m| {
            for kv in m.iter_mut() {
                if let Some(AnyValue { value: Some(Pv::StringValue(s)) }) = &mut kv.value
                    && s.len() > limit
                {
                    let mut at = limit - marker.len();
                    while at > 0 && !s.is_char_boundary(at) {
                        at -= 1;
                    }
                    s.truncate(at);
                    s.push_str(&marker);
                }
            }
        })
    }))
}

fn build_limit(mut a: Vec<ArgV>) -> Result<Edit, String> {
    let target = path(&mut a, 0);
    let ArgV::Int(limit) = take(&mut a, 1) else { unreachable!() };
    let ArgV::StrList(priority) = take(&mut a, 2) else { unreachable!() };
    if limit < 0 {
        return Err(format!("invalid limit for limit function, {limit} cannot be negative"));
    }
    if (limit as usize) < priority.len() {
        return Err(format!(
            "invalid limit for limit function, {limit} cannot be less than number of priority attributes {}",
            priority.len()
        ));
    }
    let limit = limit as usize;
    Ok(Box::new(move |t| {
        with_map(t, &target, |m| {
            if m.len() <= limit {
                return;
            }
            let mut count = priority.iter().filter(|k| m.iter().any(|kv| &kv.key == *k)).count();
            m.retain(|kv| {
                if priority.contains(&kv.key) {
                    return true;
                }
                if count < limit {
                    count += 1;
                    return true;
                }
                false
            });
        })
    }))
}

/// The `function` / `replacement_format` of the replace editors.
struct Hashing {
    f: HashFn,
    format: Option<Getter>,
}

fn hashing(a: &mut [ArgV], fi: usize, fmti: usize) -> Option<Hashing> {
    let f = match take(a, fi) {
        ArgV::Func(f) => f,
        _ => return None,
    };
    Some(Hashing { f, format: opt_getter(a, fmti) })
}

impl Hashing {
    fn apply(&self, s: &str, t: &Target) -> Result<String, String> {
        let h = (self.f)(s);
        match &self.format {
            None => Ok(h),
            Some(g) => {
                let fmt = str_of(g, t)?;
                if fmt.matches("%s").count() != 1 || fmt.replace("%s", "").contains('%') {
                    return Err(
                        "replacementFormat must be format string containing a single %s and no other format specifiers"
                            .into(),
                    );
                }
                Ok(fmt.replacen("%s", &h, 1))
            }
        }
    }
}

fn replace_with(r: &Regex, s: &str, replacement: &str, h: Option<&Hashing>, t: &Target) -> Result<String, String> {
    let Some(h) = h else { return Ok(r.replace_all(s, replacement).into_owned()) };
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for caps in r.captures_iter(s) {
        let m = caps.get(0).expect("group 0");
        let mut expanded = String::new();
        caps.expand(replacement, &mut expanded);
        out.push_str(&s[last..m.start()]);
        out.push_str(&h.apply(&expanded, t)?);
        last = m.end();
    }
    out.push_str(&s[last..]);
    Ok(out)
}

fn build_replace_pattern(mut a: Vec<ArgV>) -> Result<Edit, String> {
    let target = path(&mut a, 0);
    let re = regex(&mut a, 1);
    let replacement = getter(&mut a, 2);
    let h = hashing(&mut a, 3, 4);
    Ok(Box::new(move |t| {
        let keys = resolve_keys(&target.keys, t)?;
        let new = {
            let cur = read_path(t, &target, &keys)?;
            let Val::Str(s) = cur else { return Ok(()) };
            let repl = str_of(&replacement, t)?;
            let r = re.get(t)?;
            if !r.is_match(&s) {
                return Ok(());
            }
            replace_with(&r, &s, &repl, h.as_ref(), t)?
        };
        set_path(t, &target, &keys, str_val(new))
    }))
}

fn build_replace_all_patterns(mut a: Vec<ArgV>) -> Result<Edit, String> {
    let target = path(&mut a, 0);
    let ArgV::Str(mode) = take(&mut a, 1) else { unreachable!() };
    let by_key = match mode.as_str() {
        "key" => true,
        "value" => false,
        m => return Err(format!("invalid mode {m}, must be either 'key' or 'value'")),
    };
    let re = regex(&mut a, 2);
    let replacement = getter(&mut a, 3);
    let h = hashing(&mut a, 4, 5);
    Ok(Box::new(move |t| {
        let repl = str_of(&replacement, t)?.into_owned();
        let r = re.get(t)?.into_owned();
        // The hash function's format is read before the map is borrowed for writing.
        let hashed = |s: &str, t: &Target| replace_with(&r, s, &repl, h.as_ref(), t);
        let keys = resolve_keys(&target.keys, t)?;
        // Compute the replacements with the target readable, then write them.
        let snapshot: Vec<KeyValue> = map_target(t, &target, &keys)?.clone();
        let mut out: Vec<KeyValue> = Vec::with_capacity(snapshot.len());
        for kv in snapshot {
            if by_key {
                if !r.is_match(&kv.key) {
                    put(&mut out, kv);
                    continue;
                }
                match hashed(&kv.key, t) {
                    Ok(k) => put(&mut out, KeyValue { key: k, ..kv }),
                    Err(_) if h.is_some() => continue,
                    Err(e) => return Err(e),
                }
            } else {
                let mut kv = kv;
                if let Some(AnyValue { value: Some(Pv::StringValue(s)) }) = &mut kv.value
                    && r.is_match(s)
                {
                    match hashed(s, t) {
                        Ok(n) => *s = n,
                        Err(_) if h.is_some() => {}
                        Err(e) => return Err(e),
                    }
                }
                out.push(kv);
            }
        }
        *map_target(t, &target, &keys)? = out;
        Ok(())
    }))
}

/// pdata's `PutEmpty` on a map being built: an existing key keeps its place.
fn put(m: &mut Vec<KeyValue>, kv: KeyValue) {
    match m.iter_mut().find(|x| x.key == kv.key) {
        Some(x) => x.value = kv.value,
        None => m.push(kv),
    }
}

/// A glob (gobwas/glob without separators) as an anchored regex.
fn glob(p: &str) -> Result<Regex, String> {
    let mut re = String::from("^(?s:");
    let mut chars = p.chars().peekable();
    let mut in_alt = 0;
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '\\' => match chars.next() {
                Some(n) => re.push_str(&regex::escape(&n.to_string())),
                None => return Err("glob ends with an escape".into()),
            },
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                loop {
                    match chars.next() {
                        Some(']') => break,
                        Some('\\') => re.push_str("\\\\"),
                        Some('[') => re.push_str("\\["),
                        Some(ch) => re.push(ch),
                        None => return Err("unclosed [ in glob".into()),
                    }
                }
                re.push(']');
            }
            '{' => {
                in_alt += 1;
                re.push_str("(?:");
            }
            ',' if in_alt > 0 => re.push('|'),
            '}' if in_alt > 0 => {
                in_alt -= 1;
                re.push(')');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    if in_alt > 0 {
        return Err("unclosed { in glob".into());
    }
    re.push_str(")$");
    Regex::new(&re).map_err(|e| e.to_string())
}

fn match_replacement(replacement: &Getter, h: Option<&Hashing>, t: &Target) -> Result<String, String> {
    let r = str_of(replacement, t)?.into_owned();
    match h {
        None => Ok(r),
        Some(h) => h.apply(&r, t),
    }
}

fn build_replace_match(mut a: Vec<ArgV>) -> Result<Edit, String> {
    let target = path(&mut a, 0);
    let ArgV::Str(pattern) = take(&mut a, 1) else { unreachable!() };
    let g = glob(&pattern).map_err(|e| format!("the pattern supplied to replace_match is not a valid pattern: {e}"))?;
    let replacement = getter(&mut a, 2);
    let h = hashing(&mut a, 3, 4);
    Ok(Box::new(move |t| {
        let keys = resolve_keys(&target.keys, t)?;
        let cur = read_path(t, &target, &keys)?;
        let Val::Str(s) = cur else { return Ok(()) };
        if !g.is_match(&s) {
            return Ok(());
        }
        let new = match_replacement(&replacement, h.as_ref(), t)?;
        set_path(t, &target, &keys, str_val(new))
    }))
}

fn build_replace_all_matches(mut a: Vec<ArgV>) -> Result<Edit, String> {
    let target = path(&mut a, 0);
    let ArgV::Str(pattern) = take(&mut a, 1) else { unreachable!() };
    let g = glob(&pattern)
        .map_err(|e| format!("the pattern supplied to replace_all_matches is not a valid pattern: {e}"))?;
    let replacement = getter(&mut a, 2);
    let h = hashing(&mut a, 3, 4);
    Ok(Box::new(move |t| {
        let new = match_replacement(&replacement, h.as_ref(), t)?;
        with_map(t, &target, |m| {
            for kv in m.iter_mut() {
                if let Some(AnyValue { value: Some(Pv::StringValue(s)) }) = &mut kv.value
                    && g.is_match(s)
                {
                    *s = new.clone();
                }
            }
        })
    }))
}

fn build_merge_maps(mut a: Vec<ArgV>) -> Result<Edit, String> {
    let target = path(&mut a, 0);
    let source = getter(&mut a, 1);
    let ArgV::Str(strategy) = take(&mut a, 2) else { unreachable!() };
    let mode = match strategy.as_str() {
        "insert" => 0,
        "update" => 1,
        "upsert" => 2,
        s => return Err(format!("{s} is not a valid strategy: use insert, update or upsert")),
    };
    Ok(Box::new(move |t| {
        let src = map_of(&source, t)?.into_owned();
        with_map(t, &target, |m| {
            for kv in src {
                let at = m.iter().position(|x| x.key == kv.key);
                match (mode, at) {
                    (0, None) | (2, None) => m.push(kv),
                    (1, Some(i)) | (2, Some(i)) => m[i].value = kv.value,
                    _ => {}
                }
            }
        })
    }))
}

struct Flat {
    out: Vec<KeyValue>,
    max_depth: i64,
    resolve: bool,
    existing: std::collections::HashMap<String, usize>,
}

impl Flat {
    fn map(&mut self, m: &[KeyValue], prefix: &str, depth: i64) {
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}.") };
        for kv in m {
            let v = kv.value.clone().unwrap_or_default();
            self.value(&kv.key, v, depth, &prefix);
        }
    }
    fn slice(&mut self, s: &[AnyValue], prefix: &str, depth: i64) {
        for (i, v) in s.iter().enumerate() {
            self.value(&i.to_string(), v.clone(), depth + 1, prefix);
        }
    }
    fn value(&mut self, k: &str, v: AnyValue, depth: i64, prefix: &str) {
        match v.value {
            Some(Pv::KvlistValue(m)) if depth < self.max_depth => {
                self.map(&m.values, &format!("{prefix}{k}"), depth + 1)
            }
            Some(Pv::ArrayValue(a)) if depth < self.max_depth => {
                for (i, item) in a.values.into_iter().enumerate() {
                    let key = format!("{prefix}{k}");
                    match item.value {
                        Some(Pv::KvlistValue(m)) if depth + 1 < self.max_depth => {
                            self.map(&m.values, &format!("{key}.{i}"), depth + 2)
                        }
                        Some(Pv::ArrayValue(s)) if depth + 1 < self.max_depth => {
                            self.slice(&s.values, &format!("{key}.{i}"), depth + 2)
                        }
                        _ => {
                            if self.resolve {
                                self.conflict(key, item);
                            } else {
                                put(
                                    &mut self.out,
                                    KeyValue { key: format!("{key}.{i}"), value: Some(item), ..Default::default() },
                                );
                            }
                        }
                    }
                }
            }
            other => {
                let key = format!("{prefix}{k}");
                let item = AnyValue { value: other };
                if self.resolve {
                    self.conflict(key, item);
                } else {
                    put(&mut self.out, KeyValue { key, value: Some(item), ..Default::default() });
                }
            }
        }
    }
    fn conflict(&mut self, key: String, v: AnyValue) {
        if self.out.iter().any(|x| x.key == key) {
            let n = self.existing.entry(key.clone()).or_insert(0);
            let new_key = format!("{key}.{n}");
            *n += 1;
            put(&mut self.out, KeyValue { key: new_key, value: Some(v), ..Default::default() });
        } else {
            self.out.push(KeyValue { key, value: Some(v), ..Default::default() });
        }
    }
}

fn build_flatten(mut a: Vec<ArgV>) -> Result<Edit, String> {
    let target = path(&mut a, 0);
    let prefix = match take(&mut a, 1) {
        ArgV::Str(s) => s,
        _ => String::new(),
    };
    let max_depth = match take(&mut a, 2) {
        ArgV::Int(d) if d < 1 => {
            return Err(format!("invalid depth '{d}' for flatten function, must be greater than 0"));
        }
        ArgV::Int(d) => d,
        _ => i64::MAX,
    };
    let resolve = matches!(take(&mut a, 3), ArgV::Bool(true));
    Ok(Box::new(move |t| {
        with_map(t, &target, |m| {
            let mut f = Flat { out: Vec::new(), max_depth, resolve, existing: Default::default() };
            f.map(m, &prefix, 0);
            *m = f.out;
        })
    }))
}

// ---- converters ----

fn build_concat(mut a: Vec<ArgV>, _: Ctx) -> Result<Conv, String> {
    let vals = take(&mut a, 0);
    let delimiter = getter(&mut a, 1);
    Ok(Box::new(move |t| {
        let d = str_of(&delimiter, t)?.into_owned();
        let mut parts: Vec<String> = Vec::new();
        match &vals {
            ArgV::List(items) => {
                for g in items {
                    parts.push(string_like(&get(g, t)?).unwrap_or_else(|| "<nil>".into()));
                }
            }
            ArgV::Get(g) => match get(g, t)? {
                Val::List(l) => {
                    for x in l.iter() {
                        parts.push(string_like(&Val::from_any(Some(x))).unwrap_or_else(|| "<nil>".into()));
                    }
                }
                v => return Err(format!("Concat: expected a list but got {}", v.type_name())),
            },
            _ => {}
        }
        Ok(str_val(parts.join(&d)))
    }))
}

fn build_is_match(mut a: Vec<ArgV>, _: Ctx) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    let re = regex(&mut a, 1);
    Ok(Box::new(move |t| {
        let r = re.get(t)?;
        Ok(Val::Bool(match string_like(&get(&target, t)?) {
            Some(s) => r.is_match(&s),
            None => false,
        }))
    }))
}

fn is_type(mut a: Vec<ArgV>, f: fn(&Val) -> bool) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    Ok(Box::new(move |t| Ok(Val::Bool(f(&get(&target, t)?)))))
}

fn build_int(mut a: Vec<ArgV>, _: Ctx) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    Ok(Box::new(move |t| {
        Ok(match get(&target, t)? {
            Val::Nil => Val::Nil,
            Val::Int(i) => Val::Int(i),
            Val::Float(f) => Val::Int(f as i64),
            Val::Bool(b) => Val::Int(i64::from(b)),
            Val::Str(s) => Val::Int(s.parse::<i64>().map_err(|e| format!("strconv.ParseInt: parsing {s:?}: {e}"))?),
            v => return Err(format!("unsupported type: {}", v.type_name())),
        })
    }))
}

fn build_double(mut a: Vec<ArgV>, _: Ctx) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    Ok(Box::new(move |t| {
        Ok(match get(&target, t)? {
            Val::Nil => Val::Nil,
            Val::Int(i) => Val::Float(i as f64),
            Val::Float(f) => Val::Float(f),
            Val::Bool(b) => Val::Float(if b { 1.0 } else { 0.0 }),
            Val::Str(s) => Val::Float(s.parse::<f64>().map_err(|e| format!("strconv.ParseFloat: parsing {s:?}: {e}"))?),
            v => return Err(format!("unsupported type: {}", v.type_name())),
        })
    }))
}

fn build_string(mut a: Vec<ArgV>, _: Ctx) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    Ok(Box::new(move |t| Ok(string_like(&get(&target, t)?).map_or(Val::Nil, str_val))))
}

fn build_hash(mut a: Vec<ArgV>, f: HashFn) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    Ok(Box::new(move |t| Ok(str_val(f(&str_of(&target, t)?)))))
}

fn build_split(mut a: Vec<ArgV>, _: Ctx) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    let delimiter = getter(&mut a, 1);
    Ok(Box::new(move |t| {
        let s = str_of(&target, t)?;
        let d = str_of(&delimiter, t)?;
        let parts: Vec<AnyValue> = if d.is_empty() {
            s.chars().map(|c| AnyValue { value: Some(Pv::StringValue(c.to_string())) }).collect()
        } else {
            s.split(&*d).map(|p| AnyValue { value: Some(Pv::StringValue(p.to_string())) }).collect()
        };
        Ok(Val::List(Cow::Owned(parts)))
    }))
}

fn build_substring(mut a: Vec<ArgV>, _: Ctx) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    let start = getter(&mut a, 1);
    let length = getter(&mut a, 2);
    if let ArgV::Bool(false) = take(&mut a, 3) {
        return Err("utf8_safe = false is not supported: Sightline's strings are always valid UTF-8".into());
    }
    Ok(Box::new(move |t| {
        let st = int_of(&start, t)?;
        if st < 0 {
            return Err(format!("invalid start for substring function, {st} cannot be negative"));
        }
        let len = int_of(&length, t)?;
        if len <= 0 {
            return Err(format!("invalid length for substring function, {len} cannot be negative or zero"));
        }
        let s = str_of(&target, t)?;
        if st > s.len() as i64 || len > s.len() as i64 - st {
            return Err(format!(
                "invalid range for substring function, start({st})+length({len}) cannot be greater than the length of target string({})",
                s.len()
            ));
        }
        let mut b = st as usize;
        let mut e = (st + len) as usize;
        while b < s.len() && !s.is_char_boundary(b) {
            b += 1;
        }
        while b < e && e < s.len() && !s.is_char_boundary(e) {
            e -= 1;
        }
        if e < b {
            e = b;
        }
        Ok(str_val(s[b..e].to_string()))
    }))
}

fn build_str_map(mut a: Vec<ArgV>, f: fn(&str) -> String) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    Ok(Box::new(move |t| Ok(str_val(f(&str_of(&target, t)?)))))
}

fn build_len(mut a: Vec<ArgV>, _: Ctx) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    Ok(Box::new(move |t| {
        Ok(Val::Int(match get(&target, t)? {
            Val::Str(s) => s.len() as i64,
            Val::List(l) => l.len() as i64,
            Val::Map(m) => m.len() as i64,
            v => return Err(format!("Len: unsupported target type {}", v.type_name())),
        }))
    }))
}

fn build_parse_json(mut a: Vec<ArgV>, _: Ctx) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    Ok(Box::new(move |t| {
        let s = str_of(&target, t)?;
        let j: crate::value::JsonAny = serde_json::from_str(&s).map_err(|e| format!("ParseJSON: {e}"))?;
        Ok(match j.0.value {
            Some(Pv::KvlistValue(m)) => Val::Map(Cow::Owned(m.values)),
            Some(Pv::ArrayValue(l)) => Val::List(Cow::Owned(l.values)),
            _ => return Err("ParseJSON: the JSON must be an object or an array".into()),
        })
    }))
}

fn build_id(mut a: Vec<ArgV>, n: usize, name: &'static str) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    Ok(Box::new(move |t| match get(&target, t)? {
        Val::Bytes(b) if b.len() == n => Ok(Val::Bytes(Cow::Owned(b.into_owned()))),
        Val::Bytes(b) => Err(format!("{name}: expected {n} bytes, got {}", b.len())),
        v => Err(format!("{name}: expected bytes but got {}", v.type_name())),
    }))
}

fn build_now(_: Vec<ArgV>, _: Ctx) -> Result<Conv, String> {
    Ok(Box::new(|_| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        Ok(Val::Time(now))
    }))
}

fn build_unix(mut a: Vec<ArgV>, div: i64) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    Ok(Box::new(move |t| match get(&target, t)? {
        Val::Time(ns) => Ok(Val::Int(ns.div_euclid(div))),
        v => Err(format!("expected time but got {}", v.type_name())),
    }))
}

fn build_affix(mut a: Vec<ArgV>, prefix: bool) -> Result<Conv, String> {
    let target = getter(&mut a, 0);
    let affix = getter(&mut a, 1);
    Ok(Box::new(move |t| {
        let s = str_of(&target, t)?;
        let x = str_of(&affix, t)?;
        Ok(Val::Bool(if prefix { s.starts_with(&*x) } else { s.ends_with(&*x) }))
    }))
}

fn build_is_root_span(_: Vec<ArgV>, _: Ctx) -> Result<Conv, String> {
    Ok(Box::new(|t| {
        Ok(Val::Bool(match &t.item {
            Item::Span(s) => {
                let p = s.view().parent_span_id;
                p.is_empty() || p.iter().all(|b| *b == 0)
            }
            _ => false,
        }))
    }))
}
