//! `exporters.loki`: the configuration, its defaults (one place: the `default_*` functions and
//! [`LokiConfig::new`]) and the checks serde cannot express.

use http::Uri;
use indexmap::IndexMap;
use serde::Deserialize;
use sightline_core::{QueueConfig, RetryConfig};
use sightline_exporters::{TlsConfig, default_timeout, validate_common, validate_headers};
use std::collections::BTreeMap;
use std::time::Duration;

/// `encoding` of the push request.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `logproto.PushRequest` protobuf, snappy block compressed, `application/x-protobuf`
    /// (default; what Promtail and the collector's loki exporter send).
    #[default]
    Protobuf,
    /// `{"streams":[{"stream":{..},"values":[["<ns>","<line>",{..}]]}]}`, `application/json`.
    Json,
}

/// `compression` of the push request.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Snappy block format, no `Content-Encoding` header: the Loki protobuf convention. The
    /// only (and default) choice with `encoding: protobuf`.
    Snappy,
    /// gzip, `Content-Encoding: gzip` (default with `encoding: json`).
    Gzip,
    /// No compression (`encoding: json` only).
    None,
}

/// One label source: a string or a list of strings in the config.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Sources {
    One(String),
    Many(Vec<String>),
}

impl Sources {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Sources::One(s) => std::slice::from_ref(s),
            Sources::Many(v) => v,
        }
    }
}

/// The special label source for the log level.
pub const SEVERITY_SOURCE: &str = "@severity";

/// `exporters.loki`: logs to the Loki push API.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// The push URL, used as is, `http://` or `https://` (required), e.g.
    /// `http://loki:3100/loki/api/v1/push` or VictoriaLogs'
    /// `http://victorialogs:9428/insert/loki/api/v1/push`.
    pub endpoint: String,
    /// `protobuf` (default) or `json`.
    #[serde(default)]
    pub encoding: Encoding,
    /// `snappy` (protobuf; the default and only choice there), `gzip` (json; default) or
    /// `none` (json).
    #[serde(default)]
    pub compression: Option<Compression>,
    /// `level` of gzip (`encoding: json`): 1 (default, fastest) to 9. Not allowed with snappy
    /// or none.
    #[serde(default)]
    pub compression_params: sightline_exporters::CompressionParams,
    /// Sent as `X-Scope-OrgID` (default: none, no tenant header).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// HTTP headers sent with every request, e.g. `Authorization` (default: none).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TLS settings for `https://` URLs (default: the system's roots).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Stream labels, in priority order: label name -> attribute keys tried in order, each
    /// first on the log record, then on its resource; `@severity` is the log level (default:
    /// see [`default_labels`]). Replaces the default set when given.
    #[serde(default = "default_labels")]
    pub labels: IndexMap<String, Sources>,
    /// Copy the resource attributes that are not label sources into each entry's structured
    /// metadata (default true, as Loki's own OTLP ingestion does).
    #[serde(default = "default_true")]
    pub resource_attributes_as_metadata: bool,
    /// Add `scope_name` / `scope_version` to each entry's structured metadata (default true).
    #[serde(default = "default_true")]
    pub scope_as_metadata: bool,
    /// At most this many labels per stream (default 15, Loki's `max_label_names_per_series`).
    /// Labels past it, in `labels` order, go to structured metadata instead.
    #[serde(default = "default_max_label_count")]
    pub max_label_count: usize,
    /// Label values longer than this many bytes are truncated (at a character boundary)
    /// (default 2048, Loki's `max_label_value_length`).
    #[serde(default = "default_max_label_value_length")]
    pub max_label_value_length: usize,
    /// Log lines longer than this many bytes are truncated (at a character boundary); 0 = no
    /// limit (default 262144, Loki's `max_line_size` of 256KB).
    #[serde(default = "default_max_line_size")]
    pub max_line_size: usize,
    /// At most this many structured-metadata pairs per entry; 0 = no limit (default 128,
    /// Loki's `max_structured_metadata_entries_count`). The lowest-priority pairs are left out.
    #[serde(default = "default_max_structured_metadata_entries")]
    pub max_structured_metadata_entries: usize,
    /// At most this many bytes of structured metadata per entry, counted as Loki counts them
    /// (the sum of every pair's name and value lengths); 0 = no limit (default 65536, Loki's
    /// `max_structured_metadata_size` of 64KB). Pairs that do not fit are left out.
    #[serde(default = "default_max_structured_metadata_size")]
    pub max_structured_metadata_size: usize,
    /// Deadline of one send attempt, connection included (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The queue in front of the exporter (default: see the core `sending_queue` options).
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Retries of retryable failures (5xx, 429, timeouts, connection errors) (default: see the
    /// core `retry_on_failure` options).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

fn default_true() -> bool {
    true
}

/// Loki's default `max_label_names_per_series`.
pub fn default_max_label_count() -> usize {
    15
}

/// Loki's default `max_label_value_length`.
pub fn default_max_label_value_length() -> usize {
    2048
}

/// Loki's default `max_line_size` (256KB).
pub fn default_max_line_size() -> usize {
    256 * 1024
}

/// Loki's default `max_structured_metadata_entries_count`.
pub fn default_max_structured_metadata_entries() -> usize {
    128
}

/// Loki's default `max_structured_metadata_size` (64KB).
pub fn default_max_structured_metadata_size() -> usize {
    64 * 1024
}

/// The default stream labels: `service_name`, `service_namespace`, `deployment_environment`,
/// `owner_team` and `level`.
pub fn default_labels() -> IndexMap<String, Sources> {
    let mut m = IndexMap::new();
    m.insert("service_name".to_string(), Sources::One("service.name".into()));
    m.insert("service_namespace".to_string(), Sources::One("service.namespace".into()));
    m.insert(
        "deployment_environment".to_string(),
        Sources::Many(vec!["deployment.environment.name".into(), "deployment.environment".into()]),
    );
    m.insert("owner_team".to_string(), Sources::One("owner.team".into()));
    m.insert("level".to_string(), Sources::One(SEVERITY_SOURCE.into()));
    m
}

/// Loki's `max_label_name_length`.
const MAX_LABEL_NAME_LENGTH: usize = 1024;

impl LokiConfig {
    /// The defaults, pushing to `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        LokiConfig {
            endpoint: endpoint.into(),
            encoding: Encoding::default(),
            compression: None,
            compression_params: Default::default(),
            tenant_id: None,
            headers: BTreeMap::new(),
            tls: TlsConfig::default(),
            labels: default_labels(),
            resource_attributes_as_metadata: true,
            scope_as_metadata: true,
            max_label_count: default_max_label_count(),
            max_label_value_length: default_max_label_value_length(),
            max_line_size: default_max_line_size(),
            max_structured_metadata_entries: default_max_structured_metadata_entries(),
            max_structured_metadata_size: default_max_structured_metadata_size(),
            timeout: default_timeout(),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }

    /// The compression in effect (the default depends on the encoding).
    pub fn effective_compression(&self) -> Compression {
        match (self.compression, self.encoding) {
            (Some(c), _) => c,
            (None, Encoding::Protobuf) => Compression::Snappy,
            (None, Encoding::Json) => Compression::Gzip,
        }
    }

    /// Checks serde cannot express (no I/O): `(key relative to the exporter, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Err(m) = parse_url(&self.endpoint) {
            out.push(("endpoint".into(), m));
        }
        match (self.encoding, self.effective_compression()) {
            (Encoding::Protobuf, Compression::Snappy) | (Encoding::Json, Compression::Gzip | Compression::None) => {}
            (Encoding::Protobuf, _) => out
                .push(("compression".into(), "the Loki protobuf push is always snappy: use snappy or omit it".into())),
            (Encoding::Json, _) => out.push(("compression".into(), "use gzip or none with encoding: json".into())),
        }
        if self.compression_params.level.is_some() {
            match self.effective_compression() {
                Compression::Gzip => self.compression_params.validate(sightline_exporters::Compression::Gzip, &mut out),
                other => out.push((
                    "compression_params.level".into(),
                    format!("only gzip (encoding: json) has levels, not {other:?}").to_lowercase(),
                )),
            }
        }
        if let Some(t) = &self.tenant_id {
            if t.is_empty() {
                out.push(("tenant_id".into(), "must not be empty (remove the key for no tenant)".into()));
            } else if http::HeaderValue::from_str(t).is_err() {
                out.push(("tenant_id".into(), "not a valid header value (visible ASCII only)".into()));
            }
            if self.headers.keys().any(|k| k.eq_ignore_ascii_case("x-scope-orgid")) {
                out.push(("tenant_id".into(), "conflicts with headers.X-Scope-OrgID: set only one".into()));
            }
        }
        validate_headers(&self.headers, &mut out);
        self.tls.validate(&mut out);
        if self.labels.is_empty() {
            out.push(("labels".into(), "at least one label is required (Loki rejects streams without labels)".into()));
        }
        for (name, sources) in &self.labels {
            let key = format!("labels.{name}");
            if let Err(m) = check_label_name(name) {
                out.push((key.clone(), m));
            }
            if sources.as_slice().is_empty() {
                out.push((key.clone(), "needs at least one source attribute".into()));
            }
            for s in sources.as_slice() {
                if s.is_empty() {
                    out.push((key.clone(), "a source attribute key must not be empty".into()));
                } else if s.starts_with('@') && s != SEVERITY_SOURCE {
                    out.push((key.clone(), format!("unknown special source {s:?}; the only one is {SEVERITY_SOURCE}")));
                }
            }
        }
        if self.max_label_count == 0 {
            out.push(("max_label_count".into(), "must be at least 1".into()));
        }
        if self.max_label_value_length == 0 {
            out.push(("max_label_value_length".into(), "must be at least 1".into()));
        }
        validate_common(self.timeout, &self.sending_queue, &self.retry_on_failure, &mut out);
        out
    }
}

/// A Prometheus label name, `[a-zA-Z_][a-zA-Z0-9_]*`, not reserved (`__` prefix), at most
/// Loki's 1024 bytes.
fn check_label_name(name: &str) -> Result<(), String> {
    let valid =
        name.bytes().enumerate().all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if name.is_empty() || !valid {
        return Err(format!(
            "{name:?} is not a valid label name: use letters, digits and _, not starting with a digit"
        ));
    }
    if name.starts_with("__") {
        return Err(format!("{name:?}: names starting with __ are reserved"));
    }
    if name.len() > MAX_LABEL_NAME_LENGTH {
        return Err(format!("longer than {MAX_LABEL_NAME_LENGTH} bytes"));
    }
    Ok(())
}

/// The push URL: `http://` or `https://` with a host, no user info, and a path (Loki has no
/// default one to append).
pub(crate) fn parse_url(s: &str) -> Result<Uri, String> {
    if s.trim().is_empty() {
        return Err("required: the push URL, e.g. http://loki:3100/loki/api/v1/push".into());
    }
    let uri = sightline_exporters::http_exporter::parse_url(s)?;
    if uri.path() == "/" || uri.path().is_empty() {
        return Err(format!(
            "{s:?} has no path: give the full push URL, e.g. {}/loki/api/v1/push",
            s.trim_end_matches('/')
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(c: &LokiConfig) -> Vec<String> {
        c.validate().into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = LokiConfig::new("http://127.0.0.1:3100/loki/api/v1/push");
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.effective_compression(), Compression::Snappy);
        assert_eq!(c.max_label_count, 15);
        assert_eq!(c.max_label_value_length, 2048);
        assert_eq!(c.max_structured_metadata_entries, 128);
        assert_eq!(c.max_structured_metadata_size, 65536);
        assert_eq!(
            c.labels.keys().map(String::as_str).collect::<Vec<_>>(),
            ["service_name", "service_namespace", "deployment_environment", "owner_team", "level"]
        );
    }

    #[test]
    fn yaml_decodes_with_defaults_and_rejects_unknown_keys() {
        let c: LokiConfig = serde_yaml_ng::from_str(
            "endpoint: http://vl:9428/insert/loki/api/v1/push\nencoding: json\nlabels: { app: service.name, env: [a, b] }\n",
        )
        .expect("decode");
        assert_eq!(c.effective_compression(), Compression::Gzip);
        assert_eq!(c.labels["app"], Sources::One("service.name".into()));
        assert_eq!(c.labels["env"].as_slice(), ["a", "b"]);
        assert!(c.validate().is_empty());
        assert!(serde_yaml_ng::from_str::<LokiConfig>("endpoint: http://x/p\nlabel: {}\n").is_err());
    }

    /// `compression_params.level` applies to gzip only (JSON bodies), 1 to 9.
    #[test]
    fn compression_level_is_for_gzip_only() {
        let errs = |yaml: &str| -> Vec<String> {
            let c: LokiConfig = serde_yaml_ng::from_str(yaml).expect("decode");
            c.validate().into_iter().map(|(k, m)| format!("{k}: {m}")).collect()
        };
        assert!(
            errs(
                "endpoint: http://x/p
encoding: json
compression_params: { level: 6 }
"
            )
            .is_empty()
        );
        let e = errs(
            "endpoint: http://x/p
encoding: json
compression_params: { level: 10 }
",
        );
        assert!(e[0].starts_with("compression_params.level: 10: gzip levels"), "{e:?}");
        let e = errs(
            "endpoint: http://x/p
compression_params: { level: 3 }
",
        );
        assert!(e[0].contains("only gzip"), "{e:?}");
    }

    /// The structured-metadata limits are non-negative integers; 0 (no limit) is accepted.
    #[test]
    fn metadata_limits_decode_as_non_negative_integers() {
        let c: LokiConfig = serde_yaml_ng::from_str(
            "endpoint: http://x/p\nmax_structured_metadata_entries: 0\nmax_structured_metadata_size: 1024\n",
        )
        .expect("decode");
        assert_eq!((c.max_structured_metadata_entries, c.max_structured_metadata_size), (0, 1024));
        assert!(c.validate().is_empty());
        for bad in [
            "max_structured_metadata_entries: -1",
            "max_structured_metadata_size: -5",
            "max_structured_metadata_size: 1.5",
            "max_structured_metadata_entries: lots",
        ] {
            let yaml = format!("endpoint: http://x/p\n{bad}\n");
            assert!(serde_yaml_ng::from_str::<LokiConfig>(&yaml).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn validate_reports_keys() {
        let mut c = LokiConfig::new("loki:3100");
        c.compression = Some(Compression::Gzip);
        c.tenant_id = Some("a".into());
        c.headers.insert("x-scope-orgid".into(), "b".into());
        c.labels.insert("1bad".into(), Sources::One("x".into()));
        c.labels.insert("lvl".into(), Sources::One("@sev".into()));
        c.max_label_count = 0;
        assert_eq!(keys(&c), ["endpoint", "compression", "tenant_id", "labels.1bad", "labels.lvl", "max_label_count"]);
        assert_eq!(keys(&LokiConfig::new("http://loki:3100")), ["endpoint"]);
        let mut c = LokiConfig::new("http://loki:3100/loki/api/v1/push");
        c.labels.clear();
        assert_eq!(keys(&c), ["labels"]);
    }
}
