//! `file`: each batch as one line of OTLP/JSON (or one length-prefixed protobuf message),
//! as the collector's `file` exporter, with its lumberjack-style size rotation.
//!
//! Conversion and writes run on the blocking pool, never on a runtime worker; the driver
//! already runs senders on their own tasks, so the receive path never waits for the disk.
//! Concurrent sends are serialised by one lock around the file, so lines never interleave;
//! every signal and pipeline that lists the exporter writes through that one file
//! ([`FileExporter`]), so rotation happens once and no two writers share a path.
//!
//! Rotation: when the next write would take the file past `max_megabytes`, the file is
//! renamed to `<stem>-<UTC time>.<ext>` (`traces-2024-05-01T10-00-00.000.json`, the
//! collector's naming) in the same directory and a new file is started; the oldest backups
//! beyond `max_backups`, and those older than `max_days`, are deleted. A single batch larger
//! than the limit gets a file of its own rather than being refused.

use crate::{BuildError, default_timeout, driver_config, json_signal, validate_common};
use serde::Deserialize;
use sightline_core::{Batch, DriverConfig, QueueConfig, RetryConfig, SendError, SendFuture, Sender, Signal};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `format` of the file.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// One OTLP/JSON `Export*ServiceRequest` per line (default).
    #[default]
    Json,
    /// Binary protobuf, each `Export*ServiceRequest` preceded by its length as a 4-byte
    /// big-endian integer.
    Proto,
}

/// `rotation`: size-based rotation. Without this section the file grows without limit.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    /// Rotate before the file would exceed this many mebibytes (default 100).
    pub max_megabytes: u64,
    /// Delete rotated files older than this many days; 0 = keep regardless of age (default 0).
    pub max_days: u64,
    /// Keep at most this many rotated files; 0 = keep all (default 100).
    pub max_backups: u64,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig { max_megabytes: 100, max_days: 0, max_backups: 100 }
    }
}

/// `exporters.file`: writes batches to a local file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to write (required). Missing parent directories are created.
    pub path: PathBuf,
    /// `json` (default) or `proto`.
    #[serde(default)]
    pub format: FileFormat,
    /// Size rotation (default: none, no rotation). With rotation, an existing file is always
    /// appended to.
    #[serde(default)]
    pub rotation: Option<RotationConfig>,
    /// Without rotation: append to an existing file (true) or truncate it at start (default
    /// false).
    #[serde(default)]
    pub append: bool,
    /// Buffer writes and flush them at this interval (default: none, every batch is handed to
    /// the operating system as soon as it is written).
    #[serde(default, with = "humantime_serde")]
    pub flush_interval: Option<Duration>,
    /// Deadline of one write (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The queue in front of the exporter (default: see the core `sending_queue` options).
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Retries of failed writes, e.g. a full disk (default: see the core `retry_on_failure`
    /// options).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

impl FileConfig {
    /// The defaults, writing to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileConfig {
            path: path.into(),
            format: FileFormat::default(),
            rotation: None,
            append: false,
            flush_interval: None,
            timeout: default_timeout(),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }

    /// Checks serde cannot express (no I/O): `(key relative to the exporter, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.path.as_os_str().is_empty() {
            out.push(("path".into(), "required".into()));
        } else if self.path.file_name().is_none() {
            out.push(("path".into(), format!("{} does not name a file", self.path.display())));
        }
        if let Some(r) = &self.rotation
            && r.max_megabytes == 0
        {
            out.push(("rotation.max_megabytes".into(), "must be at least 1".into()));
        }
        if self.flush_interval.is_some_and(|d| d.is_zero()) {
            out.push((
                "flush_interval".into(),
                "must be greater than 0 (remove it to write every batch through)".into(),
            ));
        }
        validate_common(self.timeout, &self.sending_queue, &self.retry_on_failure, &mut out);
        out
    }
}

/// One `file` exporter: the open file, shared by every pipeline and every signal that lists
/// the exporter (as in the collector, an exporter id is one component). Each signal gets its
/// own [`Sender`] and driver (queues and batches hold one signal), and all of them write
/// through the one writer, a whole record at a time.
pub struct FileExporter {
    id: Arc<str>,
    format: FileFormat,
    out: Arc<Mutex<Output>>,
    driver: DriverConfig,
}

impl FileExporter {
    /// Creates the parent directories and opens the file (so that a path that cannot be
    /// written fails at start, not at the first batch). With `flush_interval`, must be called
    /// from within a Tokio runtime.
    pub fn open(id: &str, cfg: &FileConfig) -> Result<FileExporter, BuildError> {
        BuildError::from_findings(cfg.validate())?;
        let runtime = match cfg.flush_interval {
            Some(_) => Some(tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?),
            None => None,
        };
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BuildError::Io { key: "path".into(), path, source }
        };
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let append = cfg.append || cfg.rotation.is_some();
        let file = open(&cfg.path, append).map_err(io_err(&cfg.path))?;
        let size = file.metadata().map_err(io_err(&cfg.path))?.len();
        let out = Arc::new(Mutex::new(Output {
            path: cfg.path.clone(),
            writer: BufWriter::with_capacity(64 * 1024, file),
            size,
            buffered: cfg.flush_interval.is_some(),
            rotation: cfg.rotation.clone(),
            last_backup_ms: 0,
        }));
        if let (Some(rt), Some(every)) = (runtime, cfg.flush_interval) {
            rt.spawn(flush_periodically(Arc::downgrade(&out), every, id.to_string()));
        }
        Ok(FileExporter {
            id: Arc::from(id),
            format: cfg.format,
            out,
            driver: driver_config(cfg.timeout, &cfg.sending_queue, &cfg.retry_on_failure),
        })
    }

    /// The sender of `signal`'s records, writing to the shared file.
    pub fn sender(&self, signal: Signal) -> Arc<dyn Sender> {
        Arc::new(FileSender { id: self.id.clone(), signal, format: self.format, out: self.out.clone() })
    }

    /// The driver options (`timeout`, `sending_queue`, `retry_on_failure`).
    pub fn driver_config(&self) -> DriverConfig {
        self.driver.clone()
    }
}

/// Builds a `file` exporter used by one signal only (see [`FileExporter`] for several).
pub fn build_file(id: &str, signal: Signal, cfg: &FileConfig) -> Result<(Arc<dyn Sender>, DriverConfig), BuildError> {
    let e = FileExporter::open(id, cfg)?;
    Ok((e.sender(signal), e.driver_config()))
}

/// `path` made absolute (against the working directory) and with `.` and `..` resolved
/// without touching the file system: what two `file` exporters are compared by.
pub fn normalized_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn open(path: &Path, append: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    o.open(path)
}

/// Flushes the buffer every `every` until the sender is dropped (its `BufWriter` then
/// flushes what is left).
async fn flush_periodically(out: std::sync::Weak<Mutex<Output>>, every: Duration, id: String) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(out) = out.upgrade() else { return };
        let res = tokio::task::spawn_blocking(move || out.lock().unwrap_or_else(PoisonError::into_inner).flush()).await;
        if let Ok(Err(e)) = res {
            tracing::warn!(exporter = %id, error = %e, "file exporter: flush failed");
        }
    }
}

struct FileSender {
    id: Arc<str>,
    signal: Signal,
    format: FileFormat,
    out: Arc<Mutex<Output>>,
}

impl Sender for FileSender {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        let batch = batch.clone();
        let out = self.out.clone();
        let (format, signal, id) = (self.format, self.signal, self.id.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                // Encode before taking the lock: conversions of concurrent batches overlap.
                let record = encode(format, signal, &batch)?;
                let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
                out.write(&record).map_err(|e| SendError::retryable(format!("writing {}: {e}", out.path.display())))
            })
            .await
            .map_err(|e| SendError::retryable(format!("{id}: write task failed: {e}")))?
        })
    }
}

/// One record: a JSON line, or a length-prefixed protobuf message.
fn encode(format: FileFormat, signal: Signal, batch: &Batch) -> Result<Vec<u8>, SendError> {
    match format {
        FileFormat::Json => {
            let mut line = sightline_otlp_json::protobuf_to_json(json_signal(signal), &batch.to_bytes())
                .map_err(|e| SendError::permanent(format!("cannot convert the batch to OTLP/JSON: {e}")))?;
            line.push(b'\n');
            Ok(line)
        }
        FileFormat::Proto => {
            let len = u32::try_from(batch.bytes)
                .map_err(|_| SendError::permanent(format!("batch of {} bytes is too large for proto", batch.bytes)))?;
            let mut rec = Vec::with_capacity(4 + batch.bytes);
            rec.extend_from_slice(&len.to_be_bytes());
            for c in batch.chunks() {
                rec.extend_from_slice(c);
            }
            Ok(rec)
        }
    }
}

/// The open file and its rotation state.
struct Output {
    path: PathBuf,
    writer: BufWriter<File>,
    size: u64,
    buffered: bool,
    rotation: Option<RotationConfig>,
    /// Backups are named by millisecond; two rotations in one millisecond must not collide.
    last_backup_ms: u64,
}

impl Output {
    fn write(&mut self, record: &[u8]) -> std::io::Result<()> {
        if let Some(r) = &self.rotation {
            let max = r.max_megabytes.saturating_mul(1024 * 1024);
            if self.size > 0 && self.size + record.len() as u64 > max {
                self.rotate()?;
            }
        }
        self.writer.write_all(record)?;
        self.size += record.len() as u64;
        if !self.buffered {
            self.writer.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.writer.flush()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let ms = now.max(self.last_backup_ms + 1);
        let backup = backup_path(&self.path, ms);
        std::fs::rename(&self.path, &backup)?;
        self.last_backup_ms = ms;
        self.writer = BufWriter::with_capacity(64 * 1024, open(&self.path, false)?);
        self.size = 0;
        self.remove_old_backups(now);
        Ok(())
    }

    /// Deletes backups beyond `max_backups` and older than `max_days`. Failures are logged:
    /// they must not fail the write that triggered the rotation.
    fn remove_old_backups(&self, now_ms: u64) {
        let Some(r) = &self.rotation else { return };
        if r.max_backups == 0 && r.max_days == 0 {
            return;
        }
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (stem, ext) = stem_and_ext(&self.path);
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        let mut backups: Vec<(String, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let ts = name.strip_prefix(&stem)?.strip_prefix('-')?.strip_suffix(&ext)?;
                is_timestamp(ts).then(|| (ts.to_string(), e.path()))
            })
            .collect();
        // Fixed-width timestamps sort like the times they name: newest first.
        backups.sort_by(|a, b| b.0.cmp(&a.0));
        let cutoff = (r.max_days > 0).then(|| timestamp(now_ms.saturating_sub(r.max_days.saturating_mul(86_400_000))));
        for (i, (ts, path)) in backups.iter().enumerate() {
            let too_many = r.max_backups > 0 && i as u64 >= r.max_backups;
            let too_old = cutoff.as_ref().is_some_and(|c| ts < c);
            if (too_many || too_old)
                && let Err(e) = std::fs::remove_file(path)
            {
                tracing::warn!(path = %path.display(), error = %e, "file exporter: cannot delete an old rotated file");
            }
        }
    }
}

/// `dir/traces.json` -> (`traces`, `.json`); a name without extension -> (`name`, ``).
fn stem_and_ext(path: &Path) -> (String, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.rfind('.') {
        Some(i) if i > 0 => (name[..i].to_string(), name[i..].to_string()),
        _ => (name, String::new()),
    }
}

/// `dir/<stem>-<timestamp><ext>`.
fn backup_path(path: &Path, ms: u64) -> PathBuf {
    let (stem, ext) = stem_and_ext(path);
    path.with_file_name(format!("{stem}-{}{ext}", timestamp(ms)))
}

/// `2006-01-02T15-04-05.000` in UTC, the collector's (lumberjack's) backup time format.
fn timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}.{:03}", sod / 3600, sod / 60 % 60, sod % 60, ms % 1000)
}

fn is_timestamp(s: &str) -> bool {
    const SHAPE: &[u8] = b"0000-00-00T00-00-00.000";
    s.len() == SHAPE.len() && s.bytes().zip(SHAPE).all(|(c, &p)| if p == b'0' { c.is_ascii_digit() } else { c == p })
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), by eras of 400 years.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_and_sortable() {
        assert_eq!(timestamp(0), "1970-01-01T00-00-00.000");
        // 2024-02-29T23:59:59.123Z, a leap day.
        assert_eq!(timestamp(1_709_251_199_123), "2024-02-29T23-59-59.123");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29T00-00-00.000");
        assert!(is_timestamp(&timestamp(1_709_251_199_123)));
        assert!(!is_timestamp("2024-02-29T23-59-59"));
        assert!(timestamp(999) < timestamp(1000));
    }

    #[test]
    fn backup_names() {
        assert_eq!(
            backup_path(Path::new("/x/traces.json"), 0),
            PathBuf::from("/x/traces-1970-01-01T00-00-00.000.json")
        );
        assert_eq!(backup_path(Path::new("out"), 0), PathBuf::from("out-1970-01-01T00-00-00.000"));
        assert_eq!(stem_and_ext(Path::new(".hidden")), (".hidden".into(), String::new()));
    }

    #[test]
    fn validate_reports_keys() {
        let mut cfg = FileConfig::new("");
        cfg.rotation = Some(RotationConfig { max_megabytes: 0, ..RotationConfig::default() });
        cfg.flush_interval = Some(Duration::ZERO);
        let keys: Vec<String> = cfg.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["path", "rotation.max_megabytes", "flush_interval"]);
    }
}
