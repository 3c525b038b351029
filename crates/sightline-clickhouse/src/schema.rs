//! The tables: the DDL the exporter runs when `create_schema` is on (the collector contrib
//! `clickhouseexporter`'s schema, plus Sightline's `OwnerTeam` column), and what a `DESCRIBE
//! TABLE` of an existing table tells the encoder (which optional columns exist, and whether
//! the metric times are `DateTime64(9)` or `DateTime`).

use crate::config::{ClickHouseConfig, MetricKind};
use sightline_core::Signal;
use std::time::Duration;

/// A quoted `db`.`table` name.
pub fn qualified(db: &str, table: &str) -> String {
    format!("`{db}`.`{table}`")
}

/// The `TTL` clause of a table for `ttl` on `field` (empty when `ttl` is 0): the largest of
/// days, hours, minutes and seconds that divides it, as the collector writes it.
pub fn ttl_clause(ttl: Duration, field: &str) -> String {
    let s = ttl.as_secs();
    if s == 0 {
        return String::new();
    }
    let (n, unit) = if s.is_multiple_of(86_400) {
        (s / 86_400, "Day")
    } else if s.is_multiple_of(3_600) {
        (s / 3_600, "Hour")
    } else if s.is_multiple_of(60) {
        (s / 60, "Minute")
    } else {
        (s, "Second")
    };
    format!("TTL {field} + toInterval{unit}({n})")
}

struct Ctx<'a> {
    db: &'a str,
    cluster: String,
    engine: String,
    ttl: Duration,
    /// Sightline's ownership column, if configured.
    owner: bool,
    /// The server has text indexes (the logs table uses them, as the collector's does).
    text_index: bool,
}

impl<'a> Ctx<'a> {
    fn new(cfg: &'a ClickHouseConfig) -> Self {
        Ctx {
            db: &cfg.database,
            cluster: if cfg.cluster_name.is_empty() {
                String::new()
            } else {
                format!(" ON CLUSTER `{}`", cfg.cluster_name)
            },
            engine: format!("{}({})", cfg.table_engine.name, cfg.table_engine.params),
            ttl: cfg.ttl,
            owner: !cfg.owner_team_attribute.is_empty(),
            text_index: false,
        }
    }

    fn owner_column(&self) -> &'static str {
        if self.owner { "    OwnerTeam LowCardinality(String) CODEC(ZSTD(3)),\n" } else { "" }
    }

    fn owner_key(&self) -> &'static str {
        if self.owner { "OwnerTeam, " } else { "" }
    }
}

const SETTINGS: &str = "SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1";

/// The statements `create_schema` runs for `signals`, in order: the database (unless
/// `default`), then per signal its tables: the traces table, its trace-id lookup table and the
/// view that fills it; the five metrics tables; the logs table. Each is `IF NOT EXISTS`: an
/// existing table is never changed.
pub fn create_statements(cfg: &ClickHouseConfig, signals: &[Signal], server_version: &str) -> Vec<String> {
    let mut c = Ctx::new(cfg);
    c.text_index = has_text_index(server_version);
    let mut out = Vec::new();
    if cfg.database != "default" {
        out.push(format!("CREATE DATABASE IF NOT EXISTS `{}`{}", c.db, c.cluster));
    }
    for signal in signals {
        match signal {
            Signal::Traces => {
                out.push(traces_table(&c, &cfg.traces_table_name));
                out.push(trace_id_ts_table(&c, &cfg.traces_table_name));
                out.push(trace_id_ts_view(&c, &cfg.traces_table_name));
            }
            Signal::Metrics => {
                for kind in MetricKind::ALL {
                    out.push(metrics_table(&c, &cfg.metrics_table(kind), kind));
                }
            }
            Signal::Logs => out.push(logs_table(&c, &cfg.logs_table_name)),
        }
    }
    out
}

const ATTR_MAP: &str = "Map(LowCardinality(String), String)";

/// The collector's bloom-filter indexes on the keys and values of attribute maps, e.g.
/// `("res", "ResourceAttributes")` -> `idx_res_attr_key`, `idx_res_attr_value`.
fn map_indexes(maps: &[(&str, &str)]) -> String {
    maps.iter()
        .map(|(short, col)| {
            format!(
                "    INDEX idx_{short}_key mapKeys({col}) TYPE bloom_filter(0.01) GRANULARITY 1,\n    INDEX idx_{short}_value mapValues({col}) TYPE bloom_filter(0.01) GRANULARITY 1,\n"
            )
        })
        .collect()
}

fn traces_table(c: &Ctx<'_>, name: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table}{cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(3)),
    TraceId String CODEC(ZSTD(3)),
    SpanId String CODEC(ZSTD(3)),
    ParentSpanId String CODEC(ZSTD(3)),
    TraceState String CODEC(ZSTD(3)),
    SpanName LowCardinality(String) CODEC(ZSTD(3)),
    SpanKind LowCardinality(String) CODEC(ZSTD(3)),
    ServiceName LowCardinality(String) CODEC(ZSTD(3)),
{owner}    ResourceAttributes {ATTR_MAP} CODEC(ZSTD(3)),
    ScopeName String CODEC(ZSTD(3)),
    ScopeVersion String CODEC(ZSTD(3)),
    SpanAttributes {ATTR_MAP} CODEC(ZSTD(3)),
    Duration UInt64 CODEC(ZSTD(3)),
    StatusCode LowCardinality(String) CODEC(ZSTD(3)),
    StatusMessage String CODEC(ZSTD(3)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes {ATTR_MAP}
    ) CODEC(ZSTD(3)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes {ATTR_MAP}
    ) CODEC(ZSTD(3)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
{maps}    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = {engine}
PARTITION BY toDate(Timestamp)
ORDER BY ({okey}ServiceName, SpanName, toDateTime(Timestamp))
{ttl}
{SETTINGS}",
        table = qualified(c.db, name),
        cluster = c.cluster,
        owner = c.owner_column(),
        engine = c.engine,
        okey = c.owner_key(),
        ttl = ttl_clause(c.ttl, "toDateTime(Timestamp)"),
        maps = map_indexes(&[("res_attr", "ResourceAttributes"), ("span_attr", "SpanAttributes")]),
    )
}

fn trace_id_ts_table(c: &Ctx<'_>, traces: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table}{cluster} (
    TraceId String CODEC(ZSTD(3)),
    Start DateTime CODEC(Delta, ZSTD(3)),
    End DateTime CODEC(Delta, ZSTD(3)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = {engine}
PARTITION BY toDate(Start)
ORDER BY (TraceId, Start)
{ttl}
{SETTINGS}",
        table = qualified(c.db, &format!("{traces}_trace_id_ts")),
        cluster = c.cluster,
        engine = c.engine,
        ttl = ttl_clause(c.ttl, "toDateTime(Start)"),
    )
}

fn trace_id_ts_view(c: &Ctx<'_>, traces: &str) -> String {
    format!(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {view}{cluster}
TO {target}
AS SELECT
    TraceId,
    min(Timestamp) as Start,
    max(Timestamp) as End
FROM {source}
WHERE TraceId != ''
GROUP BY TraceId",
        view = qualified(c.db, &format!("{traces}_trace_id_ts_mv")),
        cluster = c.cluster,
        target = qualified(c.db, &format!("{traces}_trace_id_ts")),
        source = qualified(c.db, traces),
    )
}

/// The resource attributes the collector's logs table keeps as their own columns.
const MATERIALIZED_LOG_KEYS: [&str; 8] = [
    "k8s.cluster.name",
    "k8s.container.name",
    "k8s.deployment.name",
    "k8s.namespace.name",
    "k8s.node.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "deployment.environment.name",
];

/// The logs table's indexes: ClickHouse's text indexes from 26.2 on (what the collector
/// creates on such a server), bloom filters before.
fn logs_indexes(text_index: bool) -> String {
    let maps = [("res_attr", "ResourceAttributes"), ("scope_attr", "ScopeAttributes"), ("log_attr", "LogAttributes")];
    if text_index {
        let mut out = String::from("    INDEX idx_trace_id TraceId TYPE text(tokenizer = 'array'),\n");
        for (short, col) in maps {
            out += &format!(
                "    INDEX idx_{short}_key mapKeys({col}) TYPE text(tokenizer = 'array'),\n    INDEX idx_{short}_value mapValues({col}) TYPE text(tokenizer = 'array'),\n"
            );
        }
        out + "    INDEX idx_lower_body lower(Body) TYPE text(tokenizer = 'splitByNonAlpha')\n"
    } else {
        format!(
            "    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,\n{}    INDEX idx_lower_body lower(Body) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8,\n    INDEX idx_event_name EventName TYPE bloom_filter(0.01) GRANULARITY 1\n",
            map_indexes(&maps)
        )
    }
}

/// Whether a server of `version` (`SELECT version()`, e.g. `26.9.2.1`) has text indexes
/// (26.2 and later).
pub fn has_text_index(version: &str) -> bool {
    let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (26, 2)
}

fn logs_table(c: &Ctx<'_>, name: &str) -> String {
    let materialized: String = MATERIALIZED_LOG_KEYS
        .iter()
        .map(|k| {
            format!(
                "    `__otel_materialized_{k}` LowCardinality(String) MATERIALIZED ResourceAttributes['{k}'] CODEC(ZSTD(3)),\n"
            )
        })
        .collect();
    let owner = if c.owner {
        "    `OwnerTeam` LowCardinality(String) COMMENT 'Team that owns the service (Sightline)' CODEC(ZSTD(3)),\n"
    } else {
        ""
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {table}{cluster} (
    `Timestamp` DateTime64(9) COMMENT 'Event timestamp with nanosecond precision' CODEC(Delta(8), ZSTD(3)),
    `TraceId` String COMMENT 'W3C trace identifier' CODEC(ZSTD(3)),
    `SpanId` String COMMENT 'W3C span identifier' CODEC(ZSTD(3)),
    `TraceFlags` UInt8 COMMENT 'W3C trace flags',
    `SeverityText` LowCardinality(String) COMMENT 'Log severity as text' CODEC(ZSTD(3)),
    `SeverityNumber` UInt8 COMMENT 'Log severity as number (1-24)',
    `ServiceName` LowCardinality(String) COMMENT 'Service that emitted the log' CODEC(ZSTD(3)),
{owner}    `Body` String COMMENT 'Log message body' CODEC(ZSTD(3)),
    `ResourceSchemaUrl` LowCardinality(String) COMMENT 'Schema URL for the resource' CODEC(ZSTD(3)),
    `ResourceAttributes` {ATTR_MAP} COMMENT 'Resource attributes as key-value pairs' CODEC(ZSTD(3)),
    `ScopeSchemaUrl` LowCardinality(String) COMMENT 'Schema URL for the instrumentation scope' CODEC(ZSTD(3)),
    `ScopeName` String COMMENT 'Instrumentation scope name' CODEC(ZSTD(3)),
    `ScopeVersion` LowCardinality(String) COMMENT 'Instrumentation scope version' CODEC(ZSTD(3)),
    `ScopeAttributes` {ATTR_MAP} COMMENT 'Instrumentation scope attributes' CODEC(ZSTD(3)),
    `LogAttributes` {ATTR_MAP} COMMENT 'Log record attributes' CODEC(ZSTD(3)),
    `EventName` String COMMENT 'Event name for log records representing events' CODEC(ZSTD(3)),
{materialized}{indexes}) ENGINE = {engine}
PARTITION BY toDate(Timestamp)
ORDER BY (toStartOfFiveMinutes(Timestamp), {okey}ServiceName, Timestamp)
{ttl}
{SETTINGS}",
        table = qualified(c.db, name),
        cluster = c.cluster,
        engine = c.engine,
        okey = c.owner_key(),
        ttl = ttl_clause(c.ttl, "toDateTime(Timestamp)"),
        indexes = logs_indexes(c.text_index),
    )
}

const EXEMPLARS: &str = "    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime,
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(3)),\n";

fn metrics_table(c: &Ctx<'_>, name: &str, kind: MetricKind) -> String {
    let specific = match kind {
        MetricKind::Gauge => {
            format!("    Value Float64 CODEC(ZSTD(3)),\n    Flags UInt32 CODEC(ZSTD(3)),\n{EXEMPLARS}")
        }
        MetricKind::Sum => format!(
            "    Value Float64 CODEC(ZSTD(3)),\n    Flags UInt32 CODEC(ZSTD(3)),\n{EXEMPLARS}    AggregationTemporality Int32 CODEC(ZSTD(3)),\n    IsMonotonic Boolean CODEC(Delta, ZSTD(3)),\n"
        ),
        MetricKind::Histogram => format!(
            "    Count UInt64 CODEC(Delta, ZSTD(3)),
    Sum Float64 CODEC(ZSTD(3)),
    BucketCounts Array(UInt64) CODEC(ZSTD(3)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(3)),
{EXEMPLARS}    Flags UInt32 CODEC(ZSTD(3)),
    Min Float64 CODEC(ZSTD(3)),
    Max Float64 CODEC(ZSTD(3)),
    AggregationTemporality Int32 CODEC(ZSTD(3)),\n"
        ),
        MetricKind::ExponentialHistogram => format!(
            "    Count UInt64 CODEC(Delta, ZSTD(3)),
    Sum Float64 CODEC(ZSTD(3)),
    Scale Int32 CODEC(ZSTD(3)),
    ZeroCount UInt64 CODEC(ZSTD(3)),
    PositiveOffset Int32 CODEC(ZSTD(3)),
    PositiveBucketCounts Array(UInt64) CODEC(ZSTD(3)),
    NegativeOffset Int32 CODEC(ZSTD(3)),
    NegativeBucketCounts Array(UInt64) CODEC(ZSTD(3)),
{EXEMPLARS}    Flags UInt32 CODEC(ZSTD(3)),
    Min Float64 CODEC(ZSTD(3)),
    Max Float64 CODEC(ZSTD(3)),
    AggregationTemporality Int32 CODEC(ZSTD(3)),\n"
        ),
        MetricKind::Summary => "    Count UInt64 CODEC(Delta, ZSTD(3)),
    Sum Float64 CODEC(ZSTD(3)),
    ValueAtQuantiles Nested (
        Quantile Float64,
        Value Float64
    ) CODEC(ZSTD(3)),
    Flags UInt32 CODEC(ZSTD(3)),\n"
            .to_string(),
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {table}{cluster} (
    ResourceAttributes {ATTR_MAP} CODEC(ZSTD(3)),
    ResourceSchemaUrl String CODEC(ZSTD(3)),
    ScopeName String CODEC(ZSTD(3)),
    ScopeVersion String CODEC(ZSTD(3)),
    ScopeAttributes {ATTR_MAP} CODEC(ZSTD(3)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(3)),
    ScopeSchemaUrl String CODEC(ZSTD(3)),
    ServiceName LowCardinality(String) CODEC(ZSTD(3)),
{owner}    MetricName LowCardinality(String) CODEC(ZSTD(3)),
    MetricDescription String CODEC(ZSTD(3)),
    MetricUnit String CODEC(ZSTD(3)),
    Attributes {ATTR_MAP} CODEC(ZSTD(3)),
    StartTimeUnix DateTime CODEC(Delta, ZSTD(3)),
    TimeUnix DateTime CODEC(Delta, ZSTD(3)),
{specific}{maps}) ENGINE = {engine}
{ttl}
PARTITION BY toDate(TimeUnix)
ORDER BY ({okey}ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix)
{SETTINGS}",
        table = qualified(c.db, name),
        cluster = c.cluster,
        owner = c.owner_column(),
        engine = c.engine,
        okey = c.owner_key(),
        ttl = ttl_clause(c.ttl, "toDateTime(TimeUnix)"),
        maps = map_indexes(&[
            ("res_attr", "ResourceAttributes"),
            ("scope_attr", "ScopeAttributes"),
            ("attr", "Attributes")
        ]) + "    INDEX idx_time_minmax TimeUnix TYPE minmax GRANULARITY 1\n",
    )
}

/// What the encoder needs to know of an existing table, from `DESCRIBE TABLE`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableShape {
    /// The table has Sightline's `OwnerTeam` column.
    pub owner_team: bool,
    /// The logs table has `EventName` (tables made by collectors before v0.128 do not).
    pub event_name: bool,
    /// The metric times are `DateTime` (seconds), as in the collector's newer metrics tables,
    /// instead of `DateTime64(9)`.
    pub seconds: bool,
    /// Why the table cannot be written (an attribute column that is not a map, as the
    /// collector's `json: true` tables have), naming the column.
    pub unsupported: Option<String>,
}

impl TableShape {
    /// Reads the output of `DESCRIBE TABLE ... FORMAT TabSeparated` (name, type, ... per line).
    pub fn from_describe(tsv: &str) -> TableShape {
        let mut s = TableShape::default();
        for line in tsv.lines() {
            let mut cols = line.split('\t');
            let (Some(name), Some(ty)) = (cols.next(), cols.next()) else { continue };
            match name {
                "OwnerTeam" => s.owner_team = true,
                "EventName" => s.event_name = true,
                "TimeUnix" => s.seconds = ty.starts_with("DateTime") && !ty.starts_with("DateTime64"),
                "ResourceAttributes" | "ScopeAttributes" | "SpanAttributes" | "LogAttributes" | "Attributes"
                    if !ty.starts_with("Map(") =>
                {
                    s.unsupported = Some(format!(
                        "column {name} is {ty}; Sightline writes attributes as Map(LowCardinality(String), String) (the collector's json: true tables are not supported)"
                    ));
                }
                _ => {}
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_uses_the_largest_unit_that_divides() {
        assert_eq!(ttl_clause(Duration::ZERO, "x"), "");
        assert_eq!(ttl_clause(Duration::from_secs(72 * 3600), "x"), "TTL x + toIntervalDay(3)");
        assert_eq!(ttl_clause(Duration::from_secs(36 * 3600), "x"), "TTL x + toIntervalHour(36)");
        assert_eq!(ttl_clause(Duration::from_secs(90 * 60), "x"), "TTL x + toIntervalMinute(90)");
        assert_eq!(ttl_clause(Duration::from_secs(61), "x"), "TTL x + toIntervalSecond(61)");
    }

    #[test]
    fn statements_follow_the_config() {
        let mut cfg = ClickHouseConfig::new("http://h:8123");
        let plain = create_statements(&cfg, &Signal::ALL, "25.8.1.1");
        assert_eq!(plain.len(), 9, "no CREATE DATABASE for default");
        assert!(plain[0].contains("`default`.`otel_traces`") && plain[0].contains("OwnerTeam LowCardinality"));
        assert!(plain[0].contains("ORDER BY (OwnerTeam, ServiceName, SpanName"));
        assert!(plain[2].contains("TO `default`.`otel_traces_trace_id_ts`"));
        let logs = plain.last().expect("logs table");
        assert!(logs.contains("idx_lower_body lower(Body) TYPE tokenbf_v1"), "bloom filters before 26.2");
        let newer = create_statements(&cfg, &[Signal::Logs], "26.9.2.1");
        assert!(newer[0].contains("idx_lower_body lower(Body) TYPE text(tokenizer = 'splitByNonAlpha')"));
        assert!(!newer[0].contains("bloom_filter"), "text indexes from 26.2 on, as the collector creates them");
        assert!(
            has_text_index("26.2.1") && !has_text_index("26.1.9.1") && has_text_index("27.0") && !has_text_index("")
        );
        cfg.database = "otel".into();
        cfg.cluster_name = "c1".into();
        cfg.ttl = Duration::from_secs(48 * 3600);
        cfg.owner_team_attribute.clear();
        cfg.table_engine.name = "ReplicatedMergeTree".into();
        let s = create_statements(&cfg, &Signal::ALL, "26.9.2.1");
        assert_eq!(s[0], "CREATE DATABASE IF NOT EXISTS `otel` ON CLUSTER `c1`");
        assert!(s[1].contains("`otel`.`otel_traces` ON CLUSTER `c1`"));
        assert!(s[1].contains("ENGINE = ReplicatedMergeTree()"));
        assert!(s[1].contains("TTL toDateTime(Timestamp) + toIntervalDay(2)"));
        assert!(!s[1].contains("OwnerTeam"), "no ownership column when the attribute is empty");
        assert!(s.iter().any(|x| x.contains("`otel`.`otel_metrics_exponential_histogram`")));
    }

    #[test]
    fn describe_tells_the_optional_columns() {
        let d = "Timestamp\tDateTime64(9)\t\t\t\tCODEC(Delta(8), ZSTD(3))\t\nEventName\tString\t\t\t\t\t\n";
        let want = TableShape { owner_team: false, event_name: true, seconds: false, unsupported: None };
        assert_eq!(TableShape::from_describe(d), want);
        let m = "OwnerTeam\tLowCardinality(String)\nTimeUnix\tDateTime\n";
        let want = TableShape { owner_team: true, event_name: false, seconds: true, unsupported: None };
        assert_eq!(TableShape::from_describe(m), want);
        let j = TableShape::from_describe("LogAttributes\tJSON\n");
        assert!(j.unsupported.is_some_and(|m| m.contains("LogAttributes is JSON")));
    }
}
