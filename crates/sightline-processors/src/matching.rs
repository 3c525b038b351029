//! `include` / `exclude` of the collector contrib's `attributes` processor (its
//! `filterconfig.MatchProperties`), with the collector's rules: `match_type` `strict`
//! (equality) or `regexp` (unanchored RE2 search); within one list any entry matches, across
//! properties all must match; `attributes` and `resources` need every listed key, with the
//! listed value when one is given (`strict`: same type and value; `regexp`: the string form of
//! a string, bool, int or double). An item is skipped when `include` does not match it or
//! `exclude` does. As in the collector, metrics match on `metric_names` only (a `resources`
//! list is accepted there and has no effect).

use crate::attraction::{as_string, value_of, yaml_value};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use regex::Regex;
use serde::Deserialize;
use sightline_core::Signal;

/// One `include` or `exclude` block.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchProperties {
    #[serde(default)]
    pub match_type: String,
    /// The collector's regexp cache options: accepted, no effect (Sightline compiles once).
    #[serde(default)]
    pub regexp: Option<RegexpCache>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub span_names: Vec<String>,
    #[serde(default)]
    pub span_kinds: Vec<String>,
    #[serde(default)]
    pub log_bodies: Vec<String>,
    #[serde(default)]
    pub log_severity_texts: Vec<String>,
    #[serde(default)]
    pub log_severity_number: Option<SeverityNumber>,
    #[serde(default)]
    pub metric_names: Vec<String>,
    #[serde(default)]
    pub attributes: Vec<AttributeMatch>,
    #[serde(default)]
    pub resources: Vec<AttributeMatch>,
    #[serde(default)]
    pub libraries: Vec<LibraryMatch>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexpCache {
    #[serde(default)]
    pub cacheenabled: bool,
    #[serde(default)]
    pub cachemaxnumentries: usize,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityNumber {
    #[serde(default)]
    pub min: i32,
    #[serde(default)]
    pub match_undefined: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMatch {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: Option<serde_yaml_ng::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryMatch {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

const SPAN_KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];

/// Strings matched exactly or by regexp search.
#[derive(Clone, Debug)]
enum StringSet {
    Strict(Vec<String>),
    Regexp(Vec<Regex>),
}

impl StringSet {
    fn new(items: &[String], regexp: bool) -> Result<Option<StringSet>, String> {
        if items.is_empty() {
            return Ok(None);
        }
        if !regexp {
            return Ok(Some(StringSet::Strict(items.to_vec())));
        }
        let res = items
            .iter()
            .map(|p| Regex::new(p).map_err(|e| format!("error parsing regexp {p:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Some(StringSet::Regexp(res)))
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            StringSet::Strict(v) => v.iter().any(|x| x == s),
            StringSet::Regexp(v) => v.iter().any(|r| r.is_match(s)),
        }
    }
}

#[derive(Clone, Debug)]
enum ValueMatch {
    Any,
    Equal(Value),
    Regexp(StringSet),
}

#[derive(Clone, Debug)]
struct AttrMatcher {
    key: String,
    value: ValueMatch,
}

fn attr_matchers(list: &[AttributeMatch], regexp: bool) -> Result<Vec<AttrMatcher>, String> {
    list.iter()
        .map(|a| {
            if a.key.is_empty() {
                return Err("can't have empty key in the list of attributes".to_string());
            }
            let value = match &a.value {
                None | Some(serde_yaml_ng::Value::Null) => ValueMatch::Any,
                Some(v) => {
                    let v = yaml_value(v).map_err(|e| format!("{}: value {e}", a.key))?;
                    if regexp {
                        let Value::StringValue(s) = v else {
                            return Err(format!("match_type=regexp for {:?} only supports Str", a.key));
                        };
                        ValueMatch::Regexp(StringSet::new(&[s], true)?.expect("one pattern"))
                    } else {
                        ValueMatch::Equal(v)
                    }
                }
            };
            Ok(AttrMatcher { key: a.key.clone(), value })
        })
        .collect()
}

fn attrs_match(ms: &[AttrMatcher], attrs: &[KeyValue]) -> bool {
    if ms.is_empty() {
        return true;
    }
    ms.iter().all(|m| {
        let Some(kv) = attrs.iter().find(|kv| kv.key == m.key) else { return false };
        let v = value_of(kv);
        match &m.value {
            ValueMatch::Any => true,
            ValueMatch::Equal(want) => v == Some(want),
            ValueMatch::Regexp(set) => match v {
                Some(Value::StringValue(s)) => set.matches(s),
                Some(Value::BoolValue(b)) => set.matches(if *b { "true" } else { "false" }),
                Some(Value::IntValue(i)) => set.matches(&i.to_string()),
                Some(Value::DoubleValue(d)) => set.matches(&format!("{d}")),
                _ => false,
            },
        }
    })
}

/// One compiled `include` or `exclude`.
#[derive(Clone, Debug)]
struct Matcher {
    services: Option<StringSet>,
    span_names: Option<StringSet>,
    span_kinds: Option<StringSet>,
    log_bodies: Option<StringSet>,
    severity_texts: Option<StringSet>,
    severity_number: Option<SeverityNumber>,
    metric_names: Option<StringSet>,
    libraries: Vec<(StringSet, Option<StringSet>)>,
    attributes: Vec<AttrMatcher>,
    resources: Vec<AttrMatcher>,
}

impl Matcher {
    fn new(mp: &MatchProperties, signal: Signal) -> Result<Matcher, String> {
        validate_for(mp, signal)?;
        let regexp = match mp.match_type.as_str() {
            "regexp" => true,
            "strict" => false,
            other => {
                return Err(format!("unrecognized match_type: '{other}', valid types are: [regexp strict]"));
            }
        };
        if signal == Signal::Traces
            && !regexp
            && let Some(k) = mp.span_kinds.iter().find(|k| !SPAN_KINDS.contains(&k.as_str()))
        {
            return Err(format!(
                "span_kinds string must match one of the standard span kinds when match_type=strict: {k:?} is not one of {SPAN_KINDS:?}"
            ));
        }
        let libraries = mp
            .libraries
            .iter()
            .map(|l| {
                let name = StringSet::new(std::slice::from_ref(&l.name), regexp)?.expect("one");
                let version = match &l.version {
                    Some(v) => StringSet::new(std::slice::from_ref(v), regexp)?,
                    None => None,
                };
                Ok((name, version))
            })
            .collect::<Result<_, String>>()?;
        Ok(Matcher {
            services: StringSet::new(&mp.services, regexp)?,
            span_names: StringSet::new(&mp.span_names, regexp)?,
            span_kinds: StringSet::new(&mp.span_kinds, regexp)?,
            log_bodies: StringSet::new(&mp.log_bodies, regexp)?,
            severity_texts: StringSet::new(&mp.log_severity_texts, regexp)?,
            severity_number: mp.log_severity_number.clone(),
            metric_names: StringSet::new(&mp.metric_names, regexp)?,
            libraries,
            attributes: attr_matchers(&mp.attributes, regexp)?,
            resources: attr_matchers(&mp.resources, regexp)?,
        })
    }

    fn common(&self, attrs: &[KeyValue], resource: &[KeyValue], scope: &Scope) -> bool {
        for (name, version) in &self.libraries {
            if !name.matches(scope.name) {
                return false;
            }
            if let Some(v) = version
                && !v.matches(scope.version)
            {
                return false;
            }
        }
        if !self.resources.is_empty() && !attrs_match(&self.resources, resource) {
            return false;
        }
        attrs_match(&self.attributes, attrs)
    }

    fn span(&self, resource: &[KeyValue], scope: &Scope, span: &Span) -> bool {
        if let Some(s) = &self.services {
            let name = resource
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(value_of)
                .map_or_else(|| "<nil-service-name>".to_string(), as_string);
            if !s.matches(&name) {
                return false;
            }
        }
        if let Some(s) = &self.span_names
            && !s.matches(&span.name)
        {
            return false;
        }
        if let Some(s) = &self.span_kinds {
            let kind = usize::try_from(span.kind).ok().and_then(|k| SPAN_KINDS.get(k)).copied().unwrap_or("");
            if !s.matches(kind) {
                return false;
            }
        }
        self.common(&span.attributes, resource, scope)
    }

    fn log(&self, resource: &[KeyValue], scope: &Scope, log: &LogRecord) -> bool {
        if let Some(s) = &self.log_bodies {
            let body = log.body.as_ref().and_then(|b| b.value.as_ref()).map(as_string).unwrap_or_default();
            if !s.matches(&body) {
                return false;
            }
        }
        if let Some(s) = &self.severity_texts
            && !s.matches(&log.severity_text)
        {
            return false;
        }
        if let Some(n) = &self.severity_number {
            let ok = if log.severity_number == 0 { n.match_undefined } else { log.severity_number >= n.min };
            if !ok {
                return false;
            }
        }
        self.common(&log.attributes, resource, scope)
    }
}

fn validate_for(mp: &MatchProperties, signal: Signal) -> Result<(), String> {
    match signal {
        Signal::Traces => {
            if !mp.log_bodies.is_empty() {
                return Err("log_bodies should not be specified for trace spans".into());
            }
            if !mp.log_severity_texts.is_empty() {
                return Err("log_severity_texts should not be specified for trace spans".into());
            }
            if mp.log_severity_number.is_some() {
                return Err("log_severity_number should not be specified for trace spans".into());
            }
            if !mp.metric_names.is_empty() {
                return Err("metric_names should not be specified for trace spans".into());
            }
            if mp.services.is_empty()
                && mp.span_names.is_empty()
                && mp.attributes.is_empty()
                && mp.libraries.is_empty()
                && mp.resources.is_empty()
                && mp.span_kinds.is_empty()
            {
                return Err(r#"at least one of "services", "span_names", "span_kinds", "attributes", "libraries" or "resources" field must be specified"#.into());
            }
        }
        Signal::Logs => {
            if !mp.span_names.is_empty()
                || !mp.services.is_empty()
                || !mp.span_kinds.is_empty()
                || !mp.metric_names.is_empty()
            {
                return Err("services, span_names, span_kinds and metric_names are not valid for log records".into());
            }
            if mp.attributes.is_empty()
                && mp.libraries.is_empty()
                && mp.resources.is_empty()
                && mp.log_bodies.is_empty()
                && mp.log_severity_texts.is_empty()
                && mp.log_severity_number.is_none()
            {
                return Err(r#"at least one of "attributes", "libraries", "resources", "log_bodies", "log_severity_texts" or "log_severity_number" field must be specified"#.into());
            }
        }
        Signal::Metrics => {
            if !mp.log_bodies.is_empty()
                || !mp.log_severity_texts.is_empty()
                || !mp.span_names.is_empty()
                || !mp.services.is_empty()
                || !mp.span_kinds.is_empty()
                || !mp.attributes.is_empty()
                || !mp.libraries.is_empty()
                || mp.log_severity_number.is_some()
            {
                return Err(r#""span_names", "span_kinds", "log_bodies", "log_severity_texts", "log_severity_number", "services", "attributes" and "libraries" are not valid for metrics"#.into());
            }
            if mp.metric_names.is_empty() && mp.resources.is_empty() {
                return Err(r#"at least one of "metric_names" or "resources" field must be specified"#.into());
            }
        }
    }
    Ok(())
}

/// The instrumentation scope's name and version ("" when absent).
pub struct Scope<'a> {
    pub name: &'a str,
    pub version: &'a str,
}

impl<'a> Scope<'a> {
    pub fn of(s: Option<&'a InstrumentationScope>) -> Scope<'a> {
        s.map_or(Scope { name: "", version: "" }, |s| Scope { name: &s.name, version: &s.version })
    }
}

/// `include` and `exclude` compiled for one signal.
#[derive(Clone, Debug, Default)]
pub struct Skip {
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

impl Skip {
    /// Errors are keyed by `include` / `exclude`.
    pub fn new(
        include: Option<&MatchProperties>,
        exclude: Option<&MatchProperties>,
        signal: Signal,
    ) -> Result<Skip, (String, String)> {
        let build = |mp: Option<&MatchProperties>, key: &str| {
            mp.map(|m| Matcher::new(m, signal)).transpose().map_err(|e| (key.to_string(), e))
        };
        Ok(Skip { include: build(include, "include")?, exclude: build(exclude, "exclude")? })
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    pub fn span(&self, resource: Option<&Resource>, scope: &Scope, span: &Span) -> bool {
        let r = resource.map_or(&[][..], |r| &r.attributes);
        self.include.as_ref().is_some_and(|m| !m.span(r, scope, span))
            || self.exclude.as_ref().is_some_and(|m| m.span(r, scope, span))
    }

    pub fn log(&self, resource: Option<&Resource>, scope: &Scope, log: &LogRecord) -> bool {
        let r = resource.map_or(&[][..], |r| &r.attributes);
        self.include.as_ref().is_some_and(|m| !m.log(r, scope, log))
            || self.exclude.as_ref().is_some_and(|m| m.log(r, scope, log))
    }

    /// Metrics match on their name only (as the collector's legacy metric filter).
    pub fn metric(&self, name: &str) -> bool {
        let by_name = |m: &Matcher| m.metric_names.as_ref().map(|s| s.matches(name));
        self.include.as_ref().and_then(by_name).is_some_and(|m| !m)
            || self.exclude.as_ref().and_then(by_name).unwrap_or(false)
    }
}
