//! Sightline's configuration, shaped like the OpenTelemetry Collector's.
//!
//! Loading has two stages, as in the collector and in ripgrep's `LowArgs -> HiArgs`:
//! 1. **parse** ([`Config::from_str`]): `${env:VAR}` / `${VAR}` substitution, YAML syntax, the
//!    top-level shape (`receivers`, `processors`, `exporters`, `extensions`, `service`), unknown
//!    keys rejected with a did-you-mean;
//! 2. **validate** (no I/O): each component decodes its own section with [`Config::decode`],
//!    which reports errors path-qualified (`exporters.otlp/tempo.endpoint: ...`) with the YAML
//!    line, and [`Config::check_pipelines`] checks the references between sections.
//!
//! This crate knows nothing about concrete components: the binary's registry maps component
//! types to their config structs.

mod lines;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;

pub use lines::LineIndex;

/// One configuration error, with the dotted path of the offending key and its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(l) = self.line {
            write!(f, " (line {l})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A component id: `type` or `type/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    pub kind: String,
    pub name: Option<String>,
}

impl ComponentId {
    pub fn parse(s: &str) -> Result<ComponentId, String> {
        let (kind, name) = match s.split_once('/') {
            Some((k, n)) => (k, Some(n)),
            None => (s, None),
        };
        let ok = |p: &str| !p.is_empty() && !p.chars().any(|c| c.is_whitespace() || c == '/');
        if !ok(kind) {
            return Err(format!("invalid component id {s:?}: the type must be non-empty, without spaces or '/'"));
        }
        if let Some(n) = name
            && !ok(n)
        {
            return Err(format!("invalid component id {s:?}: the name after '/' must be non-empty, without spaces"));
        }
        Ok(ComponentId { kind: kind.to_string(), name: name.map(str::to_string) })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.kind, n),
            None => f.write_str(&self.kind),
        }
    }
}

/// One component's section, not decoded yet.
#[derive(Clone, Debug)]
pub struct Section {
    pub id: ComponentId,
    /// `receivers.otlp/in`, for error messages.
    pub path: String,
    pub value: serde_yaml_ng::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Top {
    #[serde(default)]
    receivers: IndexMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    processors: IndexMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    exporters: IndexMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    extensions: IndexMap<String, serde_yaml_ng::Value>,
    service: ServiceConfig,
}

/// `service`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Extensions to start (accepted for collector compatibility; Sightline has none yet).
    #[serde(default)]
    pub extensions: Vec<String>,
    /// `traces`, `metrics`, `logs`, or `<signal>/<name>` -> the pipeline.
    pub pipelines: IndexMap<String, PipelineConfig>,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// How long shutdown waits for exporters to flush their queues (default 10s). Sightline
    /// extension.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `service.pipelines.<id>`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub receivers: Vec<String>,
    #[serde(default)]
    pub processors: Vec<String>,
    pub exporters: Vec<String>,
}

/// `service.telemetry`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub metrics: MetricsTelemetry,
    pub logs: LogsTelemetry,
}

/// `service.telemetry.metrics`: the admin server (`/metrics`, `/healthz`, `/readyz`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsTelemetry {
    /// Listen address of the admin server (default `127.0.0.1:8888`, as the collector). The
    /// collector's older form; `readers` is its current one. Not both.
    pub address: Option<String>,
    /// `level` is accepted for collector compatibility (`none` disables the admin server).
    pub level: String,
    /// The collector's metric readers: one `pull` reader with a `prometheus` exporter, whose
    /// `host` and `port` are the admin server's address.
    pub readers: Vec<MetricReader>,
}

impl Default for MetricsTelemetry {
    fn default() -> Self {
        MetricsTelemetry { address: None, level: "normal".into(), readers: Vec::new() }
    }
}

/// The admin server's address when none is configured.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:8888";

/// One entry of `service.telemetry.metrics.readers`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricReader {
    #[serde(default)]
    pub pull: Option<PullReader>,
    /// Push readers (`periodic` with an `otlp` exporter) are refused by `validate`.
    #[serde(default)]
    pub periodic: Option<serde_yaml_ng::Value>,
}

/// `readers[].pull`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullReader {
    pub exporter: PullExporter,
}

/// `readers[].pull.exporter`: only `prometheus`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullExporter {
    pub prometheus: PrometheusPull,
}

/// `readers[].pull.exporter.prometheus`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusPull {
    /// Default `localhost`, as in the collector.
    #[serde(default = "default_pull_host")]
    pub host: String,
    pub port: u16,
}

fn default_pull_host() -> String {
    "localhost".into()
}

impl MetricsTelemetry {
    /// The admin server's listen address, from `address` or the one `pull`/`prometheus`
    /// reader; otherwise an error naming the key that is wrong.
    pub fn listen_address(&self) -> Result<String, (String, String)> {
        const KEY: &str = "service.telemetry.metrics.readers";
        if self.readers.is_empty() {
            return Ok(self.address.clone().unwrap_or_else(|| DEFAULT_ADMIN_ADDRESS.into()));
        }
        if self.address.is_some() {
            return Err((
                "service.telemetry.metrics.address".into(),
                "set either address or readers, not both (readers is the collector's current form)".into(),
            ));
        }
        let mut pulls = Vec::new();
        for (i, r) in self.readers.iter().enumerate() {
            match (&r.pull, &r.periodic) {
                (Some(p), None) => pulls.push(&p.exporter.prometheus),
                (None, Some(_)) => {
                    return Err((
                        format!("{KEY}.{i}.periodic"),
                        "periodic (push) readers are not supported: Sightline's metrics are scraped from a pull \
                         reader with a prometheus exporter (readers: [{pull: {exporter: {prometheus: {host, port}}}}])"
                            .into(),
                    ));
                }
                _ => return Err((format!("{KEY}.{i}"), "a reader is either pull or periodic".into())),
            }
        }
        if pulls.len() > 1 {
            return Err((
                KEY.into(),
                format!("{} pull readers: Sightline serves its metrics on one address", pulls.len()),
            ));
        }
        let p = pulls[0];
        let host =
            if p.host.contains(':') && !p.host.starts_with('[') { format!("[{}]", p.host) } else { p.host.clone() };
        Ok(format!("{host}:{}", p.port))
    }
}

/// `service.telemetry.logs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsTelemetry {
    /// `debug`, `info` (default), `warn`, `error`.
    pub level: String,
    /// `console` (default) or `json`.
    pub encoding: String,
}

impl Default for LogsTelemetry {
    fn default() -> Self {
        LogsTelemetry { level: "info".into(), encoding: "console".into() }
    }
}

/// The component kinds of the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Receiver,
    Processor,
    Exporter,
    Extension,
}

impl Kind {
    pub fn section(self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Processor => "processors",
            Kind::Exporter => "exporters",
            Kind::Extension => "extensions",
        }
    }
}

/// A parsed configuration (stage 1).
#[derive(Clone, Debug)]
pub struct Config {
    pub file: String,
    pub receivers: Vec<Section>,
    pub processors: Vec<Section>,
    pub exporters: Vec<Section>,
    pub extensions: Vec<Section>,
    pub service: ServiceConfig,
    lines: LineIndex,
}

impl Config {
    /// Reads and parses a file.
    pub fn from_file(path: &str) -> Result<Config, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError { path: String::new(), line: None, message: format!("cannot read {path}: {e}") }]
        })?;
        Config::parse(&text, path, &|k| std::env::var(k).ok())
    }

    /// Parses text; `env` resolves `${env:VAR}` and `${VAR}`.
    pub fn parse(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<ConfigError>> {
        let text = substitute_env(text, env).map_err(|e| vec![e])?;
        let lines = LineIndex::build(&text).map_err(|(line, message)| {
            vec![ConfigError { path: String::new(), line: Some(line), message: format!("YAML syntax: {message}") }]
        })?;
        let de = serde_yaml_ng::Deserializer::from_str(&text);
        let top: Top = serde_path_to_error::deserialize(de).map_err(|e| vec![from_serde(&lines, "", e)])?;
        let mut errors = Vec::new();
        let mut sections = |kind: Kind, map: IndexMap<String, serde_yaml_ng::Value>| -> Vec<Section> {
            let mut out = Vec::new();
            for (k, v) in map {
                let path = format!("{}.{}", kind.section(), k);
                match ComponentId::parse(&k) {
                    Ok(id) => out.push(Section { id, path, value: v }),
                    Err(message) => errors.push(ConfigError { line: lines.line(&path), path, message }),
                }
            }
            out
        };
        let receivers = sections(Kind::Receiver, top.receivers);
        let processors = sections(Kind::Processor, top.processors);
        let exporters = sections(Kind::Exporter, top.exporters);
        let extensions = sections(Kind::Extension, top.extensions);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Config { file: file.to_string(), receivers, processors, exporters, extensions, service: top.service, lines })
    }

    /// The YAML line of a dotted path, when known.
    pub fn line(&self, path: &str) -> Option<usize> {
        self.lines.line(path)
    }

    /// An error at `path`, with its line.
    pub fn error(&self, path: &str, message: impl Into<String>) -> ConfigError {
        let path = path.to_string();
        ConfigError { line: self.lines.nearest(&path), path, message: message.into() }
    }

    /// Decodes a component's section into its config struct (an empty or null section gives
    /// the defaults). Errors carry the full path and line.
    pub fn decode<T: DeserializeOwned>(&self, section: &Section) -> Result<T, ConfigError> {
        let value = match &section.value {
            serde_yaml_ng::Value::Null => serde_yaml_ng::Value::Mapping(Default::default()),
            v => v.clone(),
        };
        serde_path_to_error::deserialize(value).map_err(|e| from_serde(&self.lines, &section.path, e))
    }

    /// Sections of a kind.
    pub fn sections(&self, kind: Kind) -> &[Section] {
        match kind {
            Kind::Receiver => &self.receivers,
            Kind::Processor => &self.processors,
            Kind::Exporter => &self.exporters,
            Kind::Extension => &self.extensions,
        }
    }

    /// Checks `service.pipelines`: ids are `<signal>` or `<signal>/<name>`, every referenced
    /// component is defined, each pipeline has receivers and exporters, no duplicates.
    pub fn check_pipelines(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        if self.service.pipelines.is_empty() {
            errs.push(self.error("service.pipelines", "at least one pipeline is required"));
        }
        for (pid, p) in &self.service.pipelines {
            let base = format!("service.pipelines.{pid}");
            match ComponentId::parse(pid) {
                Ok(id) if ["traces", "metrics", "logs"].contains(&id.kind.as_str()) => {}
                Ok(id) => errs.push(self.error(
                    &base,
                    format!("unknown signal {:?}: a pipeline id is traces, metrics or logs, optionally /name", id.kind),
                )),
                Err(e) => errs.push(self.error(&base, e)),
            }
            for (kind, list, key) in [
                (Kind::Receiver, &p.receivers, "receivers"),
                (Kind::Processor, &p.processors, "processors"),
                (Kind::Exporter, &p.exporters, "exporters"),
            ] {
                let path = format!("{base}.{key}");
                if list.is_empty() && kind != Kind::Processor {
                    errs.push(self.error(&path, format!("a pipeline needs at least one {}", &key[..key.len() - 1])));
                }
                let defined: Vec<String> = self.sections(kind).iter().map(|s| s.id.to_string()).collect();
                for (i, name) in list.iter().enumerate() {
                    if list[..i].contains(name) {
                        errs.push(self.error(&path, format!("{name:?} is listed twice")));
                    }
                    if !defined.contains(name) {
                        let hint = did_you_mean(name, defined.iter().map(String::as_str))
                            .map(|h| format!(" (did you mean {h:?}?)"))
                            .unwrap_or_default();
                        errs.push(self.error(
                            &path,
                            format!(
                                "refers to {} {name:?}, which is not defined under `{}`{hint}",
                                &key[..key.len() - 1],
                                kind.section()
                            ),
                        ));
                    }
                }
            }
        }
        for (i, e) in self.service.extensions.iter().enumerate() {
            if !self.extensions.iter().any(|s| s.id.to_string() == *e) {
                errs.push(self.error(&format!("service.extensions.{i}"), format!("extension {e:?} is not defined")));
            }
        }
        errs
    }
}

/// The closest candidate by edit distance, if close enough.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(s, _)| *s > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn from_serde(lines: &LineIndex, prefix: &str, e: serde_path_to_error::Error<serde_yaml_ng::Error>) -> ConfigError {
    let mut path = e.path().to_string();
    if path == "." {
        path.clear();
    }
    let inner = e.into_inner();
    let mut message = inner.to_string();
    let location_line = inner.location().map(|l| l.line());
    // serde_yaml appends " at line L column C"; the line is reported separately.
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    let mut full = match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path,
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{path}"),
    };
    // Unknown keys: name the key in the path and suggest the closest known one.
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        if !(full == field || full.ends_with(&format!(".{field}"))) {
            full = if full.is_empty() { field.to_string() } else { format!("{full}.{field}") };
        }
        message = match did_you_mean(field, candidates.iter().copied()) {
            Some(h) => format!("unknown key `{field}` (did you mean `{h}`?); valid keys: {}", candidates.join(", ")),
            None => format!("unknown key `{field}`; valid keys: {}", candidates.join(", ")),
        };
    }
    let line = lines.line(&full).or(location_line).or_else(|| lines.nearest(&full));
    ConfigError { path: full, line, message }
}

/// Expands `${env:VAR}`, `${VAR}` and `${env:VAR:-default}`; `$$` is a literal `$`. An unset
/// variable without a default expands to the empty string, as in the collector.
pub fn substitute_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut line = 1;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        line += rest[..i].matches('\n').count();
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("${") {
            let Some(end) = r.find('}') else {
                return Err(ConfigError { path: String::new(), line: Some(line), message: "unclosed `${`".into() });
            };
            let expr = &r[..end];
            let expr = expr.strip_prefix("env:").unwrap_or(expr);
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError {
                    path: String::new(),
                    line: Some(line),
                    message: format!("invalid environment variable reference `${{{}}}`", &r[..end]),
                });
            }
            match env(name) {
                Some(v) => out.push_str(&v),
                None => out.push_str(default.unwrap_or("")),
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
