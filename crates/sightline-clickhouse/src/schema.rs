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
        }
    }

    fn owner_column(&self) -> &'static str {
        if self.owner { "    OwnerTeam LowCardinality(String) CODEC(ZSTD(1)),\n" } else { "" }
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
pub fn create_statements(cfg: &ClickHouseConfig, signals: &[Signal]) -> Vec<String> {
    let c = Ctx::new(cfg);
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
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
{owner}    ResourceAttributes {ATTR_MAP} CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes {ATTR_MAP} CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes {ATTR_MAP}
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes {ATTR_MAP}
    ) CODEC(ZSTD(1)),
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
    TraceId String CODEC(ZSTD(1)),
    Start DateTime CODEC(Delta, ZSTD(1)),
    End DateTime CODEC(Delta, ZSTD(1)),
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

fn logs_table(c: &Ctx<'_>, name: &str) -> String {
    let materialized: String = MATERIALIZED_LOG_KEYS
        .iter()
        .map(|k| {
            format!(
                "    `__otel_materialized_{k}` LowCardinality(String) MATERIALIZED ResourceAttributes['{k}'] CODEC(ZSTD(1)),\n"
            )
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {table}{cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
{owner}    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {ATTR_MAP} CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes {ATTR_MAP} CODEC(ZSTD(1)),
    LogAttributes {ATTR_MAP} CODEC(ZSTD(1)),
    EventName String CODEC(ZSTD(1)),
{materialized}    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
{maps}    INDEX idx_lower_body lower(Body) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {engine}
PARTITION BY toDate(Timestamp)
ORDER BY (toStartOfFiveMinutes(Timestamp), {okey}ServiceName, Timestamp)
{ttl}
{SETTINGS}",
        table = qualified(c.db, name),
        cluster = c.cluster,
        owner = c.owner_column(),
        engine = c.engine,
        okey = c.owner_key(),
        ttl = ttl_clause(c.ttl, "toDateTime(Timestamp)"),
        maps = map_indexes(&[
            ("res_attr", "ResourceAttributes"),
            ("scope_attr", "ScopeAttributes"),
            ("log_attr", "LogAttributes")
        ]),
    )
}

const EXEMPLARS: &str = "    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime64(9),
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),\n";

fn metrics_table(c: &Ctx<'_>, name: &str, kind: MetricKind) -> String {
    let specific = match kind {
        MetricKind::Gauge => {
            format!("    Value Float64 CODEC(ZSTD(1)),\n    Flags UInt32 CODEC(ZSTD(1)),\n{EXEMPLARS}")
        }
        MetricKind::Sum => format!(
            "    Value Float64 CODEC(ZSTD(1)),\n    Flags UInt32 CODEC(ZSTD(1)),\n{EXEMPLARS}    AggregationTemporality Int32 CODEC(ZSTD(1)),\n    IsMonotonic Boolean CODEC(Delta, ZSTD(1)),\n"
        ),
        MetricKind::Histogram => format!(
            "    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    BucketCounts Array(UInt64) CODEC(ZSTD(1)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),
{EXEMPLARS}    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),\n"
        ),
        MetricKind::ExponentialHistogram => format!(
            "    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    Scale Int32 CODEC(ZSTD(1)),
    ZeroCount UInt64 CODEC(ZSTD(1)),
    PositiveOffset Int32 CODEC(ZSTD(1)),
    PositiveBucketCounts Array(UInt64) CODEC(ZSTD(1)),
    NegativeOffset Int32 CODEC(ZSTD(1)),
    NegativeBucketCounts Array(UInt64) CODEC(ZSTD(1)),
{EXEMPLARS}    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),\n"
        ),
        MetricKind::Summary => "    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    ValueAtQuantiles Nested (
        Quantile Float64,
        Value Float64
    ) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),\n"
            .to_string(),
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {table}{cluster} (
    ResourceAttributes {ATTR_MAP} CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes {ATTR_MAP} CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
{owner}    MetricName String CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes {ATTR_MAP} CODEC(ZSTD(1)),
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
{specific}{maps}) ENGINE = {engine}
{ttl}
PARTITION BY toDate(TimeUnix)
ORDER BY ({okey}ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
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
        ])
        .trim_end_matches(",\n")
        .to_string()
            + "\n",
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
        let plain = create_statements(&cfg, &Signal::ALL);
        assert_eq!(plain.len(), 9, "no CREATE DATABASE for default");
        assert!(plain[0].contains("`default`.`otel_traces`") && plain[0].contains("OwnerTeam LowCardinality"));
        assert!(plain[0].contains("ORDER BY (OwnerTeam, ServiceName, SpanName"));
        assert!(plain[2].contains("TO `default`.`otel_traces_trace_id_ts`"));
        cfg.database = "otel".into();
        cfg.cluster_name = "c1".into();
        cfg.ttl = Duration::from_secs(48 * 3600);
        cfg.owner_team_attribute.clear();
        cfg.table_engine.name = "ReplicatedMergeTree".into();
        let s = create_statements(&cfg, &Signal::ALL);
        assert_eq!(s[0], "CREATE DATABASE IF NOT EXISTS `otel` ON CLUSTER `c1`");
        assert!(s[1].contains("`otel`.`otel_traces` ON CLUSTER `c1`"));
        assert!(s[1].contains("ENGINE = ReplicatedMergeTree()"));
        assert!(s[1].contains("TTL toDateTime(Timestamp) + toIntervalDay(2)"));
        assert!(!s[1].contains("OwnerTeam"), "no ownership column when the attribute is empty");
        assert!(s.iter().any(|x| x.contains("`otel`.`otel_metrics_exponential_histogram`")));
    }

    #[test]
    fn describe_tells_the_optional_columns() {
        let d = "Timestamp\tDateTime64(9)\t\t\t\tCODEC(Delta(8), ZSTD(1))\t\nEventName\tString\t\t\t\t\t\n";
        let want = TableShape { owner_team: false, event_name: true, seconds: false, unsupported: None };
        assert_eq!(TableShape::from_describe(d), want);
        let m = "OwnerTeam\tLowCardinality(String)\nTimeUnix\tDateTime\n";
        let want = TableShape { owner_team: true, event_name: false, seconds: true, unsupported: None };
        assert_eq!(TableShape::from_describe(m), want);
        let j = TableShape::from_describe("LogAttributes\tJSON\n");
        assert!(j.unsupported.is_some_and(|m| m.contains("LogAttributes is JSON")));
    }
}
