//! The store's tables: their names, columns and Arrow builders.
//!
//! Every table has the ownership columns (`service_name`, `owner_team`) and the resource and
//! scope they came from; items keep all their attributes in a `Map<String, String>` column
//! (values as the collector writes them as text, pdata's `AsString`), and the attributes named
//! in `attribute_columns` also get a text column of their own. Timestamps are
//! `Timestamp(ns, UTC)`, null when zero; ids are lowercase hex, null when absent or all zeros.

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, MapBuilder, StringBuilder,
    TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, Field, Schema, SchemaRef};
use std::sync::Arc;

/// A table of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Spans,
    SpanEvents,
    SpanLinks,
    Logs,
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

impl Table {
    pub const ALL: [Table; 9] = [
        Table::Spans,
        Table::SpanEvents,
        Table::SpanLinks,
        Table::Logs,
        Table::Gauge,
        Table::Sum,
        Table::Histogram,
        Table::ExponentialHistogram,
        Table::Summary,
    ];

    /// The value of its `signal=` partition.
    pub fn name(self) -> &'static str {
        match self {
            Table::Spans => "spans",
            Table::SpanEvents => "span_events",
            Table::SpanLinks => "span_links",
            Table::Logs => "logs",
            Table::Gauge => "metrics_gauge",
            Table::Sum => "metrics_sum",
            Table::Histogram => "metrics_histogram",
            Table::ExponentialHistogram => "metrics_exponential_histogram",
            Table::Summary => "metrics_summary",
        }
    }
}

/// The fixed columns of `spans` (the names promoted attributes may not take).
pub const SPAN_COLUMNS: &[&str] = &[
    "start_time",
    "end_time",
    "duration_ns",
    "trace_id",
    "span_id",
    "parent_span_id",
    "trace_state",
    "name",
    "kind",
    "status_code",
    "status_message",
    "service_name",
    "owner_team",
    "resource_attributes",
    "scope_name",
    "scope_version",
    "attributes",
    "event_count",
    "link_count",
];

/// The fixed columns of `logs`.
pub const LOG_COLUMNS: &[&str] = &[
    "time",
    "observed_time",
    "trace_id",
    "span_id",
    "flags",
    "severity_text",
    "severity_number",
    "body",
    "event_name",
    "service_name",
    "owner_team",
    "resource_attributes",
    "scope_name",
    "scope_version",
    "attributes",
];

pub type MapB = MapBuilder<StringBuilder, StringBuilder>;

pub fn map_builder() -> MapB {
    MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
}

fn ts() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_timezone("UTC")
}

/// A timestamp column value: null when zero.
pub fn put_ts(b: &mut TimestampNanosecondBuilder, ns: u64) {
    if ns == 0 { b.append_null() } else { b.append_value(ns as i64) }
}

/// The columns every row of every table has: who owns it and where it came from.
pub struct Owner {
    pub service_name: StringBuilder,
    pub owner_team: StringBuilder,
    pub resource_attributes: MapB,
    pub scope_name: StringBuilder,
    pub scope_version: StringBuilder,
}

impl Owner {
    fn new() -> Owner {
        Owner {
            service_name: StringBuilder::new(),
            owner_team: StringBuilder::new(),
            resource_attributes: map_builder(),
            scope_name: StringBuilder::new(),
            scope_version: StringBuilder::new(),
        }
    }

    fn finish(&mut self, cols: &mut Vec<(&'static str, ArrayRef)>) {
        cols.push(("service_name", Arc::new(self.service_name.finish())));
        cols.push(("owner_team", Arc::new(self.owner_team.finish())));
        cols.push(("resource_attributes", Arc::new(self.resource_attributes.finish())));
        cols.push(("scope_name", Arc::new(self.scope_name.finish())));
        cols.push(("scope_version", Arc::new(self.scope_version.finish())));
    }
}

/// Text columns of promoted attributes.
pub struct Promoted {
    /// The attribute keys, by column order.
    pub keys: Arc<[String]>,
    names: Vec<String>,
    pub cols: Vec<StringBuilder>,
}

impl Promoted {
    fn new(keys: &[String]) -> Promoted {
        Promoted {
            keys: keys.into(),
            names: keys.iter().map(|k| crate::config::column_name(k)).collect(),
            cols: keys.iter().map(|_| StringBuilder::new()).collect(),
        }
    }
}

pub struct Spans {
    pub start_time: TimestampNanosecondBuilder,
    pub end_time: TimestampNanosecondBuilder,
    pub duration_ns: Int64Builder,
    pub trace_id: StringBuilder,
    pub span_id: StringBuilder,
    pub parent_span_id: StringBuilder,
    pub trace_state: StringBuilder,
    pub name: StringBuilder,
    pub kind: StringBuilder,
    pub status_code: StringBuilder,
    pub status_message: StringBuilder,
    pub owner: Owner,
    pub attributes: MapB,
    pub event_count: UInt32Builder,
    pub link_count: UInt32Builder,
    pub promoted: Promoted,
}

pub struct SpanEvents {
    pub time: TimestampNanosecondBuilder,
    pub trace_id: StringBuilder,
    pub span_id: StringBuilder,
    pub span_name: StringBuilder,
    pub name: StringBuilder,
    pub owner: Owner,
    pub attributes: MapB,
}

pub struct SpanLinks {
    pub trace_id: StringBuilder,
    pub span_id: StringBuilder,
    pub linked_trace_id: StringBuilder,
    pub linked_span_id: StringBuilder,
    pub linked_trace_state: StringBuilder,
    pub owner: Owner,
    pub attributes: MapB,
}

pub struct Logs {
    pub time: TimestampNanosecondBuilder,
    pub observed_time: TimestampNanosecondBuilder,
    pub trace_id: StringBuilder,
    pub span_id: StringBuilder,
    pub flags: UInt32Builder,
    pub severity_text: StringBuilder,
    pub severity_number: Int32Builder,
    pub body: StringBuilder,
    pub event_name: StringBuilder,
    pub owner: Owner,
    pub attributes: MapB,
    pub promoted: Promoted,
}

/// The columns of every metrics table, then the type's own ([`Kind`]).
pub struct Points {
    pub start_time: TimestampNanosecondBuilder,
    pub time: TimestampNanosecondBuilder,
    pub metric_name: StringBuilder,
    pub description: StringBuilder,
    pub unit: StringBuilder,
    pub owner: Owner,
    pub attributes: MapB,
    pub flags: UInt32Builder,
    pub kind: Kind,
}

/// What one metric type adds. (One of each lives in an encoder for its whole life, so the
/// variants' sizes do not matter.)
#[allow(clippy::large_enum_variant)]
pub enum Kind {
    /// Gauge (`value`) or sum (`value`, `aggregation_temporality`, `is_monotonic`); integer
    /// points are written as doubles.
    Number { value: Float64Builder, temporality: Option<(StringBuilder, BooleanBuilder)> },
    Histogram {
        stats: Stats,
        bucket_counts: ListBuilder<UInt64Builder>,
        explicit_bounds: ListBuilder<Float64Builder>,
        temporality: StringBuilder,
    },
    ExponentialHistogram {
        stats: Stats,
        scale: Int32Builder,
        zero_count: UInt64Builder,
        zero_threshold: Float64Builder,
        positive_offset: Int32Builder,
        positive_bucket_counts: ListBuilder<UInt64Builder>,
        negative_offset: Int32Builder,
        negative_bucket_counts: ListBuilder<UInt64Builder>,
        temporality: StringBuilder,
    },
    Summary {
        count: UInt64Builder,
        sum: Float64Builder,
        quantiles: ListBuilder<Float64Builder>,
        quantile_values: ListBuilder<Float64Builder>,
    },
}

/// `count`, `sum`, `min`, `max` of histograms (`sum`, `min`, `max` null when absent).
pub struct Stats {
    pub count: UInt64Builder,
    pub sum: Float64Builder,
    pub min: Float64Builder,
    pub max: Float64Builder,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            count: UInt64Builder::new(),
            sum: Float64Builder::new(),
            min: Float64Builder::new(),
            max: Float64Builder::new(),
        }
    }

    fn finish(&mut self, cols: &mut Vec<(&'static str, ArrayRef)>) {
        cols.push(("count", Arc::new(self.count.finish())));
        cols.push(("sum", Arc::new(self.sum.finish())));
        cols.push(("min", Arc::new(self.min.finish())));
        cols.push(("max", Arc::new(self.max.finish())));
    }
}

/// The builders of every table.
pub struct Builders {
    pub spans: Spans,
    pub events: SpanEvents,
    pub links: SpanLinks,
    pub logs: Logs,
    /// By [`Table::Gauge`]..[`Table::Summary`] order.
    pub points: [Points; 5],
}

impl Builders {
    pub fn new(span_columns: &[String], log_columns: &[String]) -> Builders {
        let number = |sum: bool| Kind::Number {
            value: Float64Builder::new(),
            temporality: sum.then(|| (StringBuilder::new(), BooleanBuilder::new())),
        };
        let points = |kind: Kind| Points {
            start_time: ts(),
            time: ts(),
            metric_name: StringBuilder::new(),
            description: StringBuilder::new(),
            unit: StringBuilder::new(),
            owner: Owner::new(),
            attributes: map_builder(),
            flags: UInt32Builder::new(),
            kind,
        };
        let list_u64 = || ListBuilder::new(UInt64Builder::new());
        let list_f64 = || ListBuilder::new(Float64Builder::new());
        Builders {
            spans: Spans {
                start_time: ts(),
                end_time: ts(),
                duration_ns: Int64Builder::new(),
                trace_id: StringBuilder::new(),
                span_id: StringBuilder::new(),
                parent_span_id: StringBuilder::new(),
                trace_state: StringBuilder::new(),
                name: StringBuilder::new(),
                kind: StringBuilder::new(),
                status_code: StringBuilder::new(),
                status_message: StringBuilder::new(),
                owner: Owner::new(),
                attributes: map_builder(),
                event_count: UInt32Builder::new(),
                link_count: UInt32Builder::new(),
                promoted: Promoted::new(span_columns),
            },
            events: SpanEvents {
                time: ts(),
                trace_id: StringBuilder::new(),
                span_id: StringBuilder::new(),
                span_name: StringBuilder::new(),
                name: StringBuilder::new(),
                owner: Owner::new(),
                attributes: map_builder(),
            },
            links: SpanLinks {
                trace_id: StringBuilder::new(),
                span_id: StringBuilder::new(),
                linked_trace_id: StringBuilder::new(),
                linked_span_id: StringBuilder::new(),
                linked_trace_state: StringBuilder::new(),
                owner: Owner::new(),
                attributes: map_builder(),
            },
            logs: Logs {
                time: ts(),
                observed_time: ts(),
                trace_id: StringBuilder::new(),
                span_id: StringBuilder::new(),
                flags: UInt32Builder::new(),
                severity_text: StringBuilder::new(),
                severity_number: Int32Builder::new(),
                body: StringBuilder::new(),
                event_name: StringBuilder::new(),
                owner: Owner::new(),
                attributes: map_builder(),
                promoted: Promoted::new(log_columns),
            },
            points: [
                points(number(false)),
                points(number(true)),
                points(Kind::Histogram {
                    stats: Stats::new(),
                    bucket_counts: list_u64(),
                    explicit_bounds: list_f64(),
                    temporality: StringBuilder::new(),
                }),
                points(Kind::ExponentialHistogram {
                    stats: Stats::new(),
                    scale: Int32Builder::new(),
                    zero_count: UInt64Builder::new(),
                    zero_threshold: Float64Builder::new(),
                    positive_offset: Int32Builder::new(),
                    positive_bucket_counts: list_u64(),
                    negative_offset: Int32Builder::new(),
                    negative_bucket_counts: list_u64(),
                    temporality: StringBuilder::new(),
                }),
                points(Kind::Summary {
                    count: UInt64Builder::new(),
                    sum: Float64Builder::new(),
                    quantiles: list_f64(),
                    quantile_values: list_f64(),
                }),
            ],
        }
    }

    /// The rows built so far into `table` as a record batch; the table's builders are empty
    /// afterwards.
    pub fn finish(&mut self, table: Table) -> Result<RecordBatch, ArrowError> {
        let mut cols: Vec<(&str, ArrayRef)> = Vec::with_capacity(32);
        let mut promoted: Option<&mut Promoted> = None;
        match table {
            Table::Spans => {
                let s = &mut self.spans;
                cols.push(("start_time", Arc::new(s.start_time.finish())));
                cols.push(("end_time", Arc::new(s.end_time.finish())));
                cols.push(("duration_ns", Arc::new(s.duration_ns.finish())));
                cols.push(("trace_id", Arc::new(s.trace_id.finish())));
                cols.push(("span_id", Arc::new(s.span_id.finish())));
                cols.push(("parent_span_id", Arc::new(s.parent_span_id.finish())));
                cols.push(("trace_state", Arc::new(s.trace_state.finish())));
                cols.push(("name", Arc::new(s.name.finish())));
                cols.push(("kind", Arc::new(s.kind.finish())));
                cols.push(("status_code", Arc::new(s.status_code.finish())));
                cols.push(("status_message", Arc::new(s.status_message.finish())));
                s.owner.finish(&mut cols);
                cols.push(("attributes", Arc::new(s.attributes.finish())));
                cols.push(("event_count", Arc::new(s.event_count.finish())));
                cols.push(("link_count", Arc::new(s.link_count.finish())));
                promoted = Some(&mut s.promoted);
            }
            Table::SpanEvents => {
                let e = &mut self.events;
                cols.push(("time", Arc::new(e.time.finish())));
                cols.push(("trace_id", Arc::new(e.trace_id.finish())));
                cols.push(("span_id", Arc::new(e.span_id.finish())));
                cols.push(("span_name", Arc::new(e.span_name.finish())));
                cols.push(("name", Arc::new(e.name.finish())));
                e.owner.finish(&mut cols);
                cols.push(("attributes", Arc::new(e.attributes.finish())));
            }
            Table::SpanLinks => {
                let l = &mut self.links;
                cols.push(("trace_id", Arc::new(l.trace_id.finish())));
                cols.push(("span_id", Arc::new(l.span_id.finish())));
                cols.push(("linked_trace_id", Arc::new(l.linked_trace_id.finish())));
                cols.push(("linked_span_id", Arc::new(l.linked_span_id.finish())));
                cols.push(("linked_trace_state", Arc::new(l.linked_trace_state.finish())));
                l.owner.finish(&mut cols);
                cols.push(("attributes", Arc::new(l.attributes.finish())));
            }
            Table::Logs => {
                let l = &mut self.logs;
                cols.push(("time", Arc::new(l.time.finish())));
                cols.push(("observed_time", Arc::new(l.observed_time.finish())));
                cols.push(("trace_id", Arc::new(l.trace_id.finish())));
                cols.push(("span_id", Arc::new(l.span_id.finish())));
                cols.push(("flags", Arc::new(l.flags.finish())));
                cols.push(("severity_text", Arc::new(l.severity_text.finish())));
                cols.push(("severity_number", Arc::new(l.severity_number.finish())));
                cols.push(("body", Arc::new(l.body.finish())));
                cols.push(("event_name", Arc::new(l.event_name.finish())));
                l.owner.finish(&mut cols);
                cols.push(("attributes", Arc::new(l.attributes.finish())));
                promoted = Some(&mut l.promoted);
            }
            _ => {
                let p = &mut self.points[table as usize - Table::Gauge as usize];
                cols.push(("start_time", Arc::new(p.start_time.finish())));
                cols.push(("time", Arc::new(p.time.finish())));
                cols.push(("metric_name", Arc::new(p.metric_name.finish())));
                cols.push(("description", Arc::new(p.description.finish())));
                cols.push(("unit", Arc::new(p.unit.finish())));
                p.owner.finish(&mut cols);
                cols.push(("attributes", Arc::new(p.attributes.finish())));
                cols.push(("flags", Arc::new(p.flags.finish())));
                match &mut p.kind {
                    Kind::Number { value, temporality } => {
                        cols.push(("value", Arc::new(value.finish())));
                        if let Some((t, m)) = temporality {
                            cols.push(("aggregation_temporality", Arc::new(t.finish())));
                            cols.push(("is_monotonic", Arc::new(m.finish())));
                        }
                    }
                    Kind::Histogram { stats, bucket_counts, explicit_bounds, temporality } => {
                        stats.finish(&mut cols);
                        cols.push(("bucket_counts", Arc::new(bucket_counts.finish())));
                        cols.push(("explicit_bounds", Arc::new(explicit_bounds.finish())));
                        cols.push(("aggregation_temporality", Arc::new(temporality.finish())));
                    }
                    Kind::ExponentialHistogram {
                        stats,
                        scale,
                        zero_count,
                        zero_threshold,
                        positive_offset,
                        positive_bucket_counts,
                        negative_offset,
                        negative_bucket_counts,
                        temporality,
                    } => {
                        stats.finish(&mut cols);
                        cols.push(("scale", Arc::new(scale.finish())));
                        cols.push(("zero_count", Arc::new(zero_count.finish())));
                        cols.push(("zero_threshold", Arc::new(zero_threshold.finish())));
                        cols.push(("positive_offset", Arc::new(positive_offset.finish())));
                        cols.push(("positive_bucket_counts", Arc::new(positive_bucket_counts.finish())));
                        cols.push(("negative_offset", Arc::new(negative_offset.finish())));
                        cols.push(("negative_bucket_counts", Arc::new(negative_bucket_counts.finish())));
                        cols.push(("aggregation_temporality", Arc::new(temporality.finish())));
                    }
                    Kind::Summary { count, sum, quantiles, quantile_values } => {
                        cols.push(("count", Arc::new(count.finish())));
                        cols.push(("sum", Arc::new(sum.finish())));
                        cols.push(("quantiles", Arc::new(quantiles.finish())));
                        cols.push(("quantile_values", Arc::new(quantile_values.finish())));
                    }
                }
            }
        }
        let mut names: Vec<String> = cols.iter().map(|(n, _)| n.to_string()).collect();
        let mut arrays: Vec<ArrayRef> = cols.into_iter().map(|(_, a)| a).collect();
        if let Some(p) = promoted {
            for (name, b) in p.names.iter().zip(p.cols.iter_mut()) {
                names.push(name.clone());
                arrays.push(Arc::new(b.finish()));
            }
        }
        let fields: Vec<Field> = names
            .iter()
            .zip(&arrays)
            .map(|(n, a)| Field::new(n.as_str(), a.data_type().clone(), nullable(n)))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
    }

    /// The schema of `table` (the builders must be empty).
    pub fn schema(&mut self, table: Table) -> Result<SchemaRef, ArrowError> {
        Ok(self.finish(table)?.schema())
    }
}

/// Whether a column may hold nulls: maps, counts and the names are always there.
fn nullable(name: &str) -> bool {
    !matches!(
        name,
        "resource_attributes"
            | "attributes"
            | "event_count"
            | "link_count"
            | "duration_ns"
            | "name"
            | "kind"
            | "status_code"
            | "metric_name"
            | "flags"
    )
}
