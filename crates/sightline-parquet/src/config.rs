//! `exporters.parquet`: where the store lives, how files are compressed, rotated and bounded,
//! and which attributes get columns of their own. Defaults live in one place: the `default_*`
//! functions and [`ParquetConfig::new`].

use serde::Deserialize;
use sightline_core::{QueueConfig, RetryConfig};
use sightline_exporters::{default_timeout, validate_common};
use std::path::PathBuf;
use std::time::Duration;

/// `compression`: the codec of every column chunk.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// ZSTD at `compression_level` (default).
    #[default]
    Zstd,
    Snappy,
    /// LZ4 (Parquet's `LZ4_RAW`).
    Lz4,
    /// Gzip at `compression_level`.
    Gzip,
    None,
}

/// `rotation`: when an open file is completed (footer written, renamed into the store).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// Complete a file once this many mebibytes have been written to it (default 64).
    pub max_megabytes: u64,
    /// Complete a file this long after it was opened (default 1m); files are also completed
    /// when the hour changes, so each file holds rows written within one `hour=` partition.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation { max_megabytes: 64, max_age: Duration::from_secs(60) }
    }
}

/// `attribute_columns`: attributes that get a column of their own (text, null when absent)
/// besides staying in the item's attribute map. The column is named after the key with every
/// character other than a letter, digit or `_` replaced by `_` (`http.route` → `http_route`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AttributeColumns {
    /// Span attributes promoted in the `spans` table.
    pub spans: Vec<String>,
    /// Log record attributes promoted in the `logs` table.
    pub logs: Vec<String>,
}

impl Default for AttributeColumns {
    fn default() -> Self {
        let spans = ["http.request.method", "http.route", "http.response.status_code", "rpc.method", "db.system.name"];
        AttributeColumns { spans: spans.map(String::from).to_vec(), logs: vec!["exception.type".into()] }
    }
}

/// `exporters.parquet`: traces, metrics and logs as Parquet files in a local store, one table
/// per kind of item, partitioned `<table>/date=YYYY-MM-DD/hour=HH/owner_team=<team>/`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// The store's root directory (default `./data/parquet`); created when missing.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// `zstd` (default), `snappy`, `lz4`, `gzip` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Level of `zstd` (1-22) or `gzip` (0-9); default 3.
    #[serde(default = "default_level")]
    pub compression_level: i32,
    /// When files are completed.
    #[serde(default)]
    pub rotation: Rotation,
    /// Flush a row group to its file once it holds this many mebibytes in memory (default 8):
    /// with `max_open_files`, the bound on what the store keeps in memory.
    #[serde(default = "default_row_group_megabytes")]
    pub row_group_megabytes: u64,
    /// At most this many files open at once (default 64); opening one more completes the
    /// oldest.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// The resource attribute whose value fills `owner_team` and its partition (default
    /// `owner.team`).
    #[serde(default = "default_owner_attribute")]
    pub owner_team_attribute: String,
    /// Attributes with columns of their own.
    #[serde(default)]
    pub attribute_columns: AttributeColumns,
    /// Deadline of one write (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The queue in front of the exporter (default: see the core `sending_queue` options).
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Retries of retryable failures (default: see the core `retry_on_failure` options).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

fn default_path() -> PathBuf {
    PathBuf::from("./data/parquet")
}

fn default_level() -> i32 {
    3
}

fn default_row_group_megabytes() -> u64 {
    8
}

fn default_max_open_files() -> usize {
    64
}

fn default_owner_attribute() -> String {
    "owner.team".into()
}

/// The column name of a promoted attribute.
pub fn column_name(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

impl ParquetConfig {
    /// The defaults, writing under `path`.
    pub fn new(path: impl Into<PathBuf>) -> ParquetConfig {
        ParquetConfig {
            path: path.into(),
            compression: Compression::default(),
            compression_level: default_level(),
            rotation: Rotation::default(),
            row_group_megabytes: default_row_group_megabytes(),
            max_open_files: default_max_open_files(),
            owner_team_attribute: default_owner_attribute(),
            attribute_columns: AttributeColumns::default(),
            timeout: default_timeout(),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }

    /// The checks serde cannot express, as `(key, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.path.as_os_str().is_empty() {
            out.push(("path".into(), "must not be empty".into()));
        }
        match self.compression {
            Compression::Zstd if !(1..=22).contains(&self.compression_level) => {
                out.push(("compression_level".into(), "zstd levels are 1 to 22".into()));
            }
            Compression::Gzip if !(0..=9).contains(&self.compression_level) => {
                out.push(("compression_level".into(), "gzip levels are 0 to 9".into()));
            }
            _ => {}
        }
        if self.rotation.max_megabytes == 0 {
            out.push(("rotation.max_megabytes".into(), "must be at least 1".into()));
        }
        if self.rotation.max_age < Duration::from_secs(1) {
            out.push(("rotation.max_age".into(), "must be at least 1s".into()));
        }
        if self.row_group_megabytes == 0 {
            out.push(("row_group_megabytes".into(), "must be at least 1".into()));
        }
        for (key, list) in [
            ("attribute_columns.spans", &self.attribute_columns.spans),
            ("attribute_columns.logs", &self.attribute_columns.logs),
        ] {
            if list.len() > 64 {
                out.push((key.into(), "at most 64 attributes".into()));
            }
        }
        if self.max_open_files == 0 {
            out.push(("max_open_files".into(), "must be at least 1".into()));
        }
        for (key, list, fixed) in [
            ("attribute_columns.spans", &self.attribute_columns.spans, crate::tables::SPAN_COLUMNS),
            ("attribute_columns.logs", &self.attribute_columns.logs, crate::tables::LOG_COLUMNS),
        ] {
            let mut seen: Vec<String> = Vec::new();
            for attr in list {
                let col = column_name(attr);
                if attr.is_empty() {
                    out.push((key.into(), "an attribute key must not be empty".into()));
                } else if fixed.contains(&col.as_str()) {
                    out.push((key.into(), format!("{attr:?} would be column {col:?}, which the table already has")));
                } else if let Some(other) = list.iter().find(|o| seen.contains(&col) && column_name(o) == col) {
                    out.push((key.into(), format!("{attr:?} and {other:?} would both be column {col:?}")));
                }
                seen.push(col);
            }
        }
        validate_common(self.timeout, &self.sending_queue, &self.retry_on_failure, &mut out);
        out
    }
}
