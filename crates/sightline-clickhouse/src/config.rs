//! `exporters.clickhouse`: the collector contrib `clickhouseexporter`'s options, their defaults
//! (one place: the `default_*` functions and [`ClickHouseConfig::new`]) and the checks serde
//! cannot express.

use http::Uri;
use serde::Deserialize;
use sightline_core::{QueueConfig, RetryConfig};
use sightline_exporters::{TlsConfig, default_timeout, validate_common};
use std::collections::BTreeMap;
use std::time::Duration;

/// `compress`: how insert bodies are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compress {
    /// ClickHouse's native compressed blocks with LZ4 (`decompress=1`), the collector's
    /// default.
    #[default]
    Lz4,
    /// ClickHouse's native compressed blocks with ZSTD (`decompress=1`).
    Zstd,
    /// `Content-Encoding: gzip`.
    Gzip,
    /// Uncompressed.
    None,
}

impl<'de> Deserialize<'de> for Compress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The collector reads `compress` as a string where `true` and the empty string mean
        // lz4 and `false` means none.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Compress::Lz4),
            Raw::Bool(false) => Ok(Compress::None),
            Raw::Str(s) => match s.to_ascii_lowercase().as_str() {
                "" | "lz4" | "true" => Ok(Compress::Lz4),
                "zstd" => Ok(Compress::Zstd),
                "gzip" => Ok(Compress::Gzip),
                "none" | "false" => Ok(Compress::None),
                "deflate" | "br" => Err(serde::de::Error::custom(format!(
                    "compress: {s} is not supported by Sightline; use lz4 (default), zstd, gzip or none"
                ))),
                _ => Err(serde::de::Error::custom(format!(
                    "unknown compress {s:?}; use lz4 (default), zstd, gzip or none"
                ))),
            },
        }
    }
}

/// `table_engine`: the engine of the tables the exporter creates.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TableEngine {
    /// The engine's name (default `MergeTree`), e.g. `ReplicatedMergeTree`.
    #[serde(default = "default_engine")]
    pub name: String,
    /// Its parameters, written between the parentheses as they are (default none), e.g.
    /// `'/clickhouse/tables/{shard}/otel', '{replica}'`.
    #[serde(default)]
    pub params: String,
}

impl Default for TableEngine {
    fn default() -> Self {
        TableEngine { name: default_engine(), params: String::new() }
    }
}

fn default_engine() -> String {
    "MergeTree".into()
}

/// One table's settings in `metrics_tables`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TableName {
    /// The table's name (default: the collector's, see [`MetricsTables`]).
    #[serde(default)]
    pub name: String,
}

/// `metrics_tables`: one table per metric type.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsTables {
    /// Default `otel_metrics_gauge`.
    #[serde(default)]
    pub gauge: TableName,
    /// Default `otel_metrics_sum`.
    #[serde(default)]
    pub sum: TableName,
    /// Default `otel_metrics_summary`.
    #[serde(default)]
    pub summary: TableName,
    /// Default `otel_metrics_histogram`.
    #[serde(default)]
    pub histogram: TableName,
    /// Default `otel_metrics_exponential_histogram`.
    #[serde(default)]
    pub exponential_histogram: TableName,
}

/// `exporters.clickhouse`: traces, metrics and logs into ClickHouse tables with the collector's
/// schema, over ClickHouse's HTTP interface.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// ClickHouse's HTTP interface, `http://host:8123` or `https://host:8443` (required). Query
    /// parameters are sent with every request as ClickHouse settings. The native protocol
    /// (`tcp://`, `clickhouse://`) is not supported.
    pub endpoint: String,
    /// The database of the tables (default `default`); created when `create_schema` is on and
    /// it is not `default`.
    #[serde(default = "default_database")]
    pub database: String,
    /// Sent as `X-ClickHouse-User` (default: none, ClickHouse's `default` user).
    #[serde(default)]
    pub username: String,
    /// Sent as `X-ClickHouse-Key` (default: none).
    #[serde(default)]
    pub password: String,
    /// ClickHouse settings sent with every request as URL parameters (default none), e.g.
    /// `max_insert_block_size: "100000"`; they win over the endpoint's own parameters.
    #[serde(default)]
    pub connection_params: BTreeMap<String, String>,
    /// Create the database, tables and views at start if they do not exist (default true).
    #[serde(default = "default_true")]
    pub create_schema: bool,
    /// Rows older than this are dropped by ClickHouse (a `TTL` clause on created tables);
    /// 0 (default) keeps rows forever.
    #[serde(default, with = "humantime_serde")]
    pub ttl: Duration,
    /// Default `otel_traces` (and `<name>_trace_id_ts`, `<name>_trace_id_ts_mv`).
    #[serde(default = "default_traces_table")]
    pub traces_table_name: String,
    /// Default `otel_logs`.
    #[serde(default = "default_logs_table")]
    pub logs_table_name: String,
    /// Deprecated in the collector: the prefix of the metrics tables (`<name>_gauge`, ...)
    /// when `metrics_tables` sets none.
    #[serde(default)]
    pub metrics_table_name: Option<String>,
    /// The metrics tables' names.
    #[serde(default)]
    pub metrics_tables: MetricsTables,
    /// Adds `ON CLUSTER <name>` to every DDL statement (default none).
    #[serde(default)]
    pub cluster_name: String,
    /// The engine of the created tables (default `MergeTree()`).
    #[serde(default)]
    pub table_engine: TableEngine,
    /// Send inserts with `async_insert=1` (default true), so that ClickHouse batches many
    /// small inserts into one part.
    #[serde(default = "default_true")]
    pub async_insert: bool,
    /// `lz4` (default), `zstd`, `gzip` or `none`.
    #[serde(default)]
    pub compress: Compress,
    /// Sightline's ownership columns: the resource attribute whose value fills `OwnerTeam`, a
    /// column Sightline adds to every table it creates, next to `ServiceName` and first in the
    /// sort key (default `owner.team`). Empty: tables are created exactly as the collector
    /// creates them. Tables without the column (created by the collector) are written without
    /// it either way.
    #[serde(default = "default_owner_attribute")]
    pub owner_team_attribute: String,
    /// The collector's JSON-typed attribute columns: not supported (refused when true).
    #[serde(default)]
    pub json: bool,
    /// TLS settings for `https://` endpoints (default: the system's roots).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Deadline of one send attempt, connection included (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The queue in front of the exporter (default: see the core `sending_queue` options).
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Retries of retryable failures (default: see the core `retry_on_failure` options).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

fn default_true() -> bool {
    true
}

fn default_database() -> String {
    "default".into()
}

fn default_traces_table() -> String {
    "otel_traces".into()
}

fn default_logs_table() -> String {
    "otel_logs".into()
}

fn default_owner_attribute() -> String {
    "owner.team".into()
}

/// The metric types, each with its own table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

impl MetricKind {
    pub const ALL: [MetricKind; 5] = [
        MetricKind::Gauge,
        MetricKind::Sum,
        MetricKind::Histogram,
        MetricKind::ExponentialHistogram,
        MetricKind::Summary,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Sum => "sum",
            MetricKind::Histogram => "histogram",
            MetricKind::ExponentialHistogram => "exponential_histogram",
            MetricKind::Summary => "summary",
        }
    }
}

impl ClickHouseConfig {
    /// The defaults, writing to `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        ClickHouseConfig {
            endpoint: endpoint.into(),
            database: default_database(),
            username: String::new(),
            password: String::new(),
            connection_params: BTreeMap::new(),
            create_schema: true,
            ttl: Duration::ZERO,
            traces_table_name: default_traces_table(),
            logs_table_name: default_logs_table(),
            metrics_table_name: None,
            metrics_tables: MetricsTables::default(),
            cluster_name: String::new(),
            table_engine: TableEngine::default(),
            async_insert: true,
            compress: Compress::default(),
            owner_team_attribute: default_owner_attribute(),
            json: false,
            tls: TlsConfig::default(),
            timeout: default_timeout(),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }

    /// The table of a metric type: `metrics_tables.<kind>.name`, else `<metrics_table_name>_<kind>`,
    /// else `otel_metrics_<kind>`.
    pub fn metrics_table(&self, kind: MetricKind) -> String {
        let t = match kind {
            MetricKind::Gauge => &self.metrics_tables.gauge,
            MetricKind::Sum => &self.metrics_tables.sum,
            MetricKind::Histogram => &self.metrics_tables.histogram,
            MetricKind::ExponentialHistogram => &self.metrics_tables.exponential_histogram,
            MetricKind::Summary => &self.metrics_tables.summary,
        };
        if !t.name.is_empty() {
            return t.name.clone();
        }
        let prefix = self.metrics_table_name.as_deref().filter(|p| !p.is_empty()).unwrap_or("otel_metrics");
        format!("{prefix}_{}", kind.suffix())
    }

    /// Checks serde cannot express (no I/O): `(key relative to the exporter, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Err(m) = parse_endpoint(&self.endpoint) {
            out.push(("endpoint".into(), m));
        }
        let mut names = vec![("database", &self.database), ("traces_table_name", &self.traces_table_name)];
        names.push(("logs_table_name", &self.logs_table_name));
        for (key, name) in names {
            if let Err(m) = check_identifier(name) {
                out.push((key.into(), m));
            }
        }
        for kind in MetricKind::ALL {
            if let Err(m) = check_identifier(&self.metrics_table(kind)) {
                out.push((format!("metrics_tables.{}.name", kind.suffix()), m));
            }
        }
        if !self.cluster_name.is_empty()
            && let Err(m) = check_identifier(&self.cluster_name)
        {
            out.push(("cluster_name".into(), m));
        }
        if self.table_engine.name.is_empty()
            || !self.table_engine.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            out.push((
                "table_engine.name".into(),
                "must be an engine name such as MergeTree or ReplicatedMergeTree".into(),
            ));
        }
        if self.json {
            out.push((
                "json".into(),
                "JSON-typed attribute columns are not supported by Sightline: remove json (attributes are Map(LowCardinality(String), String) columns)".into(),
            ));
        }
        if self.ttl.subsec_nanos() != 0 {
            out.push(("ttl".into(), "must be a whole number of seconds".into()));
        }
        for k in self.connection_params.keys() {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.push((format!("connection_params.{k}"), "not a ClickHouse setting name".into()));
            }
            if RESERVED_PARAMS.contains(&k.as_str()) {
                out.push((format!("connection_params.{k}"), "set by the exporter itself; remove it".into()));
            }
        }
        if !self.username.is_empty() && http::HeaderValue::from_str(&self.username).is_err() {
            out.push(("username".into(), "must be visible ASCII (it is sent as a header)".into()));
        }
        if http::HeaderValue::from_str(&self.password).is_err() {
            out.push(("password".into(), "must be visible ASCII (it is sent as a header)".into()));
        }
        self.tls.validate(&mut out);
        validate_common(self.timeout, &self.sending_queue, &self.retry_on_failure, &mut out);
        out
    }
}

/// URL parameters the exporter sets itself.
const RESERVED_PARAMS: [&str; 6] = ["query", "database", "decompress", "compress", "user", "password"];

/// Parses `endpoint`: `http://` or `https://`, a host, no user info; the native protocol's
/// schemes get their own message.
pub fn parse_endpoint(s: &str) -> Result<Uri, String> {
    if let Some((scheme, _)) = s.split_once("://")
        && matches!(scheme, "tcp" | "clickhouse")
    {
        return Err(format!(
            "{s}: Sightline talks to ClickHouse over its HTTP interface, not the native protocol: use http://HOST:8123 (or https://HOST:8443)"
        ));
    }
    sightline_exporters::http_exporter::parse_url(s)
        .map_err(|m| m.replace("use headers for credentials", "put the credentials in username and password"))
}

/// Database, table and cluster names: written into statements between backquotes, so any
/// name without a backquote, a backslash or a control character is safe.
fn check_identifier(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().any(|c| c == '`' || c == '\\' || c.is_control()) {
        return Err(format!("{s:?}: a name must not hold a backquote, a backslash or a control character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ClickHouseConfig, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn collector_config_loads_with_its_defaults() {
        let c = parse(
            "endpoint: http://ch:8123?dial_timeout=10s\ndatabase: otel\nttl: 72h\ncompress: lz4\n\
             metrics_tables: { gauge: { name: g } }\ntable_engine: { name: ReplicatedMergeTree }\n\
             sending_queue: { queue_size: 100 }\nretry_on_failure: { enabled: true }\ntimeout: 10s\n",
        )
        .expect("loads");
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.metrics_table(MetricKind::Gauge), "g");
        assert_eq!(c.metrics_table(MetricKind::Sum), "otel_metrics_sum");
        assert_eq!(c.traces_table_name, "otel_traces");
        assert!(c.create_schema && c.async_insert);
        assert_eq!(c.ttl, Duration::from_secs(72 * 3600));
        let d = parse("endpoint: http://ch:8123").expect("loads");
        assert_eq!((d.database.as_str(), d.compress), ("default", Compress::Lz4));
        let p = parse("endpoint: http://ch:8123\nmetrics_table_name: m").expect("loads");
        assert_eq!(p.metrics_table(MetricKind::ExponentialHistogram), "m_exponential_histogram");
    }

    #[test]
    fn compress_reads_the_collector_forms() {
        for (v, want) in
            [("true", Compress::Lz4), ("false", Compress::None), ("zstd", Compress::Zstd), ("''", Compress::Lz4)]
        {
            assert_eq!(parse(&format!("endpoint: http://h:8123\ncompress: {v}")).expect(v).compress, want);
        }
        let e = parse("endpoint: http://h:8123\ncompress: br").expect_err("br");
        assert!(e.contains("not supported"), "{e}");
    }

    #[test]
    fn mistakes_are_named() {
        let c = parse("endpoint: tcp://ch:9000\njson: true\ndatabase: 'a`b'\nconnection_params: { query: x }")
            .expect("loads");
        let keys: Vec<String> = c.validate().into_iter().map(|(k, m)| format!("{k}: {m}")).collect();
        assert!(keys.iter().any(|k| k.starts_with("endpoint:") && k.contains("HTTP interface")), "{keys:?}");
        assert!(keys.iter().any(|k| k.starts_with("json:")), "{keys:?}");
        assert!(keys.iter().any(|k| k.starts_with("database:")), "{keys:?}");
        assert!(keys.iter().any(|k| k.starts_with("connection_params.query:")), "{keys:?}");
        assert!(parse("endpoint: http://h:8123\nunknown: 1").is_err());
        let c = parse("endpoint: http://u:p@h:8123").expect("loads");
        assert!(c.validate()[0].1.contains("username and password"));
    }
}
