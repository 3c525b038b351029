//! The store on disk: one open Parquet file per table, hour and owner team, each written
//! under a hidden temporary name and renamed into its partition once complete.
//!
//! Layout: `<root>/signal=<table>/date=YYYY-MM-DD/hour=HH/owner_team=<team>/part-<ms>-<pid>-<seq>.parquet`,
//! the hour (UTC) being the one the file was opened in. A resource without an owner goes to
//! `owner_team=__HIVE_DEFAULT_PARTITION__` (null to Hive-style readers) and has a null
//! `owner_team` column. Team names are percent-encoded where they hold anything other than
//! letters, digits, `.`, `-` and `_`.
//!
//! Crash safety: a file is written as `.part-….parquet.tmp` (a name that Parquet readers'
//! globs and dataset discovery skip), its data synced, then renamed to its final name, so a
//! completed file is never partial and a partial one is never in the store. A kill -9 loses
//! the rows of the files still open (at most `rotation.max_age` of them, as a memory queue
//! loses its contents); the temporary files it leaves behind are removed at the next start.
//!
//! Memory: each open file buffers one row group (flushed at `row_group_megabytes`), and at
//! most `max_open_files` are open.

use crate::config::{Compression, ParquetConfig};
use crate::tables::Table;
use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Which file a row goes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    table: Table,
    team: Option<String>,
    /// Hours since the epoch (UTC).
    hour: u64,
}

struct Open {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    opened: Instant,
}

/// What a completed file holds (for the exporter's counters and the tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed {
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

pub struct Store {
    root: PathBuf,
    props: WriterProperties,
    max_bytes: u64,
    max_age: Duration,
    row_group_bytes: usize,
    max_open: usize,
    open: HashMap<Key, Open>,
    seq: u64,
    /// Files completed since [`Store::take_completed`] last ran.
    completed: Vec<Completed>,
}

impl Store {
    /// Creates the root and removes the temporary files an earlier run left behind.
    pub fn open(cfg: &ParquetConfig) -> io::Result<Store> {
        std::fs::create_dir_all(&cfg.path)?;
        let removed = remove_temporaries(&cfg.path)?;
        if removed > 0 {
            tracing::warn!(
                path = %cfg.path.display(),
                files = removed,
                "parquet: removed incomplete files of an earlier run (their rows were never acknowledged as stored)"
            );
        }
        let compression = match cfg.compression {
            Compression::Zstd => parquet::basic::Compression::ZSTD(
                ZstdLevel::try_new(cfg.compression_level).map_err(|e| io::Error::other(e.to_string()))?,
            ),
            Compression::Gzip => parquet::basic::Compression::GZIP(
                GzipLevel::try_new(cfg.compression_level as u32).map_err(|e| io::Error::other(e.to_string()))?,
            ),
            Compression::Snappy => parquet::basic::Compression::SNAPPY,
            Compression::Lz4 => parquet::basic::Compression::LZ4_RAW,
            Compression::None => parquet::basic::Compression::UNCOMPRESSED,
        };
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_created_by(format!("sightline version {}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Store {
            root: cfg.path.clone(),
            props,
            max_bytes: cfg.rotation.max_megabytes << 20,
            max_age: cfg.rotation.max_age,
            row_group_bytes: (cfg.row_group_megabytes << 20) as usize,
            max_open: cfg.max_open_files,
            open: HashMap::new(),
            seq: 0,
            completed: Vec::new(),
        })
    }

    /// Appends `rows` to the open file of `table` and `team` for the current hour (opening it
    /// when there is none).
    pub fn write(&mut self, table: Table, team: Option<&str>, rows: &RecordBatch) -> io::Result<()> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let key = Key { table, team: team.map(str::to_string), hour: now.as_secs() / 3600 };
        if !self.open.contains_key(&key) {
            while self.open.len() >= self.max_open {
                let Some(oldest) = self.open.iter().min_by_key(|(_, o)| o.opened).map(|(k, _)| k.clone()) else {
                    break;
                };
                self.complete(&oldest)?;
            }
            let file = self.create(&key, now, rows)?;
            self.open.insert(key.clone(), file);
        }
        let Some(o) = self.open.get_mut(&key) else { return Err(io::Error::other("the open file vanished")) };
        let res = o
            .writer
            .write(rows)
            .and_then(|()| if o.writer.in_progress_size() >= self.row_group_bytes { o.writer.flush() } else { Ok(()) });
        if let Err(e) = res {
            // A writer that failed is not written again: its file is completed as far as it
            // goes, or removed.
            self.abandon(&key);
            return Err(io::Error::other(format!("writing {}: {e}", table.name())));
        }
        if o.writer.bytes_written() as u64 >= self.max_bytes {
            self.complete(&key)?;
        }
        Ok(())
    }

    fn create(&mut self, key: &Key, now: Duration, rows: &RecordBatch) -> io::Result<Open> {
        let secs = now.as_secs();
        let (date, hour) = civil(secs);
        let dir = self
            .root
            .join(format!("signal={}", key.table.name()))
            .join(format!("date={date}"))
            .join(format!("hour={hour:02}"));
        let dir = dir.join(format!("owner_team={}", team_dir(key.team.as_deref())));
        std::fs::create_dir_all(&dir)?;
        self.seq += 1;
        let name = format!("part-{}-{}-{}.parquet", now.as_millis(), std::process::id(), self.seq);
        let tmp = dir.join(format!(".{name}.tmp"));
        let file = File::create(&tmp)?;
        let writer = ArrowWriter::try_new(file, rows.schema(), Some(self.props.clone()))
            .map_err(|e| io::Error::other(format!("creating {}: {e}", tmp.display())))?;
        Ok(Open { writer, tmp, path: dir.join(name), opened: Instant::now() })
    }

    /// Completes the files that are older than `max_age` or from a past hour.
    pub fn rotate(&mut self) -> io::Result<()> {
        let hour = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 3600;
        let due: Vec<Key> = self
            .open
            .iter()
            .filter(|(k, o)| k.hour != hour || o.opened.elapsed() >= self.max_age)
            .map(|(k, _)| k.clone())
            .collect();
        let mut first_err = None;
        for k in due {
            if let Err(e) = self.complete(&k) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Completes every open file.
    pub fn close_all(&mut self) -> io::Result<()> {
        let keys: Vec<Key> = self.open.keys().cloned().collect();
        let mut first_err = None;
        for k in keys {
            if let Err(e) = self.complete(&k) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Writes the footer, syncs the data and renames the file into the store.
    fn complete(&mut self, key: &Key) -> io::Result<()> {
        let Some(mut o) = self.open.remove(key) else { return Ok(()) };
        let meta = match o.writer.finish() {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&o.tmp);
                return Err(io::Error::other(format!("completing {}: {e}", o.path.display())));
            }
        };
        o.writer.inner().sync_data()?;
        let bytes = o.writer.bytes_written() as u64;
        drop(o.writer);
        std::fs::rename(&o.tmp, &o.path)?;
        let rows = meta.file_metadata().num_rows() as u64;
        self.completed.push(Completed { path: o.path, rows, bytes });
        Ok(())
    }

    /// Completes a file whose writer failed as far as it goes, or removes it.
    fn abandon(&mut self, key: &Key) {
        let Some(mut o) = self.open.remove(key) else { return };
        if o.writer.finish().is_err() {
            let _ = std::fs::remove_file(&o.tmp);
        } else if let Err(e) = std::fs::rename(&o.tmp, &o.path) {
            tracing::warn!(path = %o.tmp.display(), error = %e, "parquet: cannot move a completed file into the store");
        }
    }

    /// The files completed since the last call.
    pub fn take_completed(&mut self) -> Vec<Completed> {
        std::mem::take(&mut self.completed)
    }

    /// How many files are open.
    pub fn open_files(&self) -> usize {
        self.open.len()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.close_all() {
            tracing::error!(path = %self.root.display(), error = %e, "parquet: completing the open files failed");
        }
    }
}

/// The partition directory name of a team.
pub fn team_dir(team: Option<&str>) -> String {
    let Some(team) = team else { return "__HIVE_DEFAULT_PARTITION__".into() };
    let mut out = String::with_capacity(team.len());
    for b in team.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.starts_with('.') {
        // A leading dot would hide the directory from readers.
        out.replace_range(..1, "%2E");
    }
    out
}

/// `(YYYY-MM-DD, hour)` of a Unix time (UTC), by the civil-from-days algorithm.
pub fn civil(secs: u64) -> (String, u64) {
    let days = (secs / 86_400) as i64;
    let hour = secs % 86_400 / 3600;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (format!("{y:04}-{m:02}-{d:02}"), hour)
}

/// Removes `.*.parquet.tmp` files under `root`; returns how many.
fn remove_temporaries(root: &Path) -> io::Result<u64> {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let ty = entry.file_type()?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if ty.is_dir() {
                dirs.push(entry.path());
            } else if ty.is_file() && name.starts_with('.') && name.ends_with(".parquet.tmp") {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}
