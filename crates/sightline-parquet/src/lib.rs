//! `parquet`: traces, metrics and logs as Parquet files in a local store that DuckDB, chDB,
//! pyarrow, Spark or any Parquet reader queries as it is; one typed table per kind of item
//! (`spans`, `span_events`, `span_links`, `logs` and one per metric type), partitioned by
//! table, date, hour and owner team (see [`store`] for the layout and the crash-safety rules).
//!
//! What it owns: turning a batch into Arrow columns straight from the OTLP wire bytes
//! ([`encode`]), and the files ([`store`]). Queueing, retries and the `otelcol_exporter_*`
//! metrics are the core driver's job. Every signal and pipeline that lists one exporter writes
//! through its one store ([`ParquetExporter`]).

pub mod config;
pub mod encode;
pub mod store;
pub mod tables;

pub use config::ParquetConfig;
pub use encode::Encoder;
pub use store::Store;
pub use tables::Table;

use arrow_array::RecordBatch;
use bytes::Bytes;
use sightline_core::{Batch, Counter, DriverConfig, Registry, SendError, SendFuture, Sender, Signal};
use sightline_exporters::{BuildError, driver_config};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

/// One `parquet` exporter: the store its signals share.
pub struct ParquetExporter {
    shared: Arc<Shared>,
    driver: DriverConfig,
}

struct Shared {
    id: Arc<str>,
    store: Mutex<Store>,
    span_columns: Vec<String>,
    log_columns: Vec<String>,
    owner_key: String,
    /// Encoders of finished sends, reused by the next ones.
    pool: Mutex<Vec<Encoder>>,
    pool_size: usize,
    malformed: [Counter; 3],
}

impl ParquetExporter {
    /// Opens the store (creating its root, removing what a crash left) and starts the task that
    /// completes files by age. Must be called from within a Tokio runtime.
    pub fn open(id: &str, cfg: &ParquetConfig, registry: &Registry) -> Result<ParquetExporter, BuildError> {
        BuildError::from_findings(cfg.validate())?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let store =
            Store::open(cfg).map_err(|source| BuildError::Io { key: "path".into(), path: cfg.path.clone(), source })?;
        let counter = |s: Signal| {
            registry.counter(
                &format!("sightline_exporter_dropped_{}_total", s.item_name()),
                &format!("{} an exporter dropped without sending them, by reason.", s.item_name()),
                &[("exporter", id), ("reason", "malformed")],
            )
        };
        let shared = Arc::new(Shared {
            id: Arc::from(id),
            store: Mutex::new(store),
            span_columns: cfg.attribute_columns.spans.clone(),
            log_columns: cfg.attribute_columns.logs.clone(),
            owner_key: cfg.owner_team_attribute.clone(),
            pool: Mutex::new(Vec::new()),
            pool_size: cfg.sending_queue.num_consumers.max(1),
            malformed: [counter(Signal::Traces), counter(Signal::Metrics), counter(Signal::Logs)],
        });
        let every = (cfg.rotation.max_age / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
        runtime.spawn(rotate_periodically(Arc::downgrade(&shared), every));
        Ok(ParquetExporter { shared, driver: driver_config(cfg.timeout, &cfg.sending_queue, &cfg.retry_on_failure) })
    }

    /// The sender of `signal`, writing to the shared store.
    pub fn sender(&self, signal: Signal) -> Arc<dyn Sender> {
        Arc::new(ParquetSender { signal, shared: self.shared.clone() })
    }

    /// The driver options (`timeout`, `sending_queue`, `retry_on_failure`).
    pub fn driver_config(&self) -> DriverConfig {
        self.driver.clone()
    }
}

/// Completes files by age until the exporter is dropped (its store then completes the rest).
async fn rotate_periodically(shared: Weak<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let res = tokio::task::spawn_blocking(move || {
            let mut store = shared.store.lock().unwrap_or_else(PoisonError::into_inner);
            let res = store.rotate();
            (res, store.take_completed(), shared.id.clone())
        })
        .await;
        if let Ok((res, done, id)) = res {
            log_completed(&id, &done);
            if let Err(e) = res {
                tracing::warn!(exporter = %id, error = %e, "parquet: completing files failed");
            }
        }
    }
}

fn log_completed(id: &str, done: &[store::Completed]) {
    for c in done {
        tracing::debug!(exporter = %id, path = %c.path.display(), rows = c.rows, bytes = c.bytes, "parquet: file completed");
    }
}

struct ParquetSender {
    signal: Signal,
    shared: Arc<Shared>,
}

/// The tables a signal's items go to.
fn tables(signal: Signal) -> &'static [Table] {
    match signal {
        Signal::Traces => &[Table::Spans, Table::SpanEvents, Table::SpanLinks],
        Signal::Logs => &[Table::Logs],
        Signal::Metrics => &[Table::Gauge, Table::Sum, Table::Histogram, Table::ExponentialHistogram, Table::Summary],
    }
}

/// One table's rows of a batch.
pub struct Encoded {
    pub table: Table,
    /// Each team's rows: `(team, offset, len)`, consecutive ranges of `rows`.
    pub runs: Vec<(Option<String>, usize, usize)>,
    pub rows: RecordBatch,
}

/// Encodes `chunks` (requests of `signal`) into one record batch per table that got rows.
pub fn encode_batch(
    enc: &mut Encoder,
    signal: Signal,
    chunks: &[Bytes],
    owner_key: &str,
) -> Result<Vec<Encoded>, String> {
    enc.reset();
    let mut failed = None;
    for c in chunks {
        if let Err(e) = enc.add(signal, c, owner_key) {
            failed = Some(format!("cannot read the batch: {e}"));
            break;
        }
    }
    let mut out = Vec::new();
    for &t in tables(signal) {
        // Finished whether or not the walk failed, so the builders start the next batch empty.
        let rows = enc.builders.finish(t).map_err(|e| format!("building {}: {e}", t.name()))?;
        if rows.num_rows() == 0 {
            continue;
        }
        let mut offset = 0;
        let mut runs: Vec<(Option<String>, usize, usize)> = Vec::new();
        for r in &enc.runs[t as usize] {
            let team = &enc.teams[r.team];
            match runs.last_mut() {
                Some(last) if &last.0 == team && last.1 + last.2 == offset => last.2 += r.rows,
                _ => runs.push((team.clone(), offset, r.rows)),
            }
            offset += r.rows;
        }
        out.push(Encoded { table: t, runs, rows });
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

impl Sender for ParquetSender {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        let shared = self.shared.clone();
        let signal = self.signal;
        let chunks: Vec<Bytes> = batch.chunks().cloned().collect();
        Box::pin(async move {
            let res = tokio::task::spawn_blocking(move || {
                let pooled = shared.pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let mut enc = pooled.unwrap_or_else(|| Encoder::new(&shared.span_columns, &shared.log_columns));
                let encoded = encode_batch(&mut enc, signal, &chunks, &shared.owner_key);
                let malformed = enc.stats.malformed;
                {
                    let mut pool = shared.pool.lock().unwrap_or_else(PoisonError::into_inner);
                    if pool.len() < shared.pool_size {
                        pool.push(enc);
                    }
                }
                if malformed > 0 {
                    shared.malformed[signal as usize].add(malformed);
                    tracing::warn!(exporter = %shared.id, items = malformed, "parquet: dropped items with undecodable fields");
                }
                let encoded = encoded.map_err(SendError::permanent)?;
                let mut store = shared.store.lock().unwrap_or_else(PoisonError::into_inner);
                for Encoded { table, runs, rows } in &encoded {
                    for (team, offset, len) in runs {
                        let part = if *offset == 0 && *len == rows.num_rows() { rows.clone() } else { rows.slice(*offset, *len) };
                        store
                            .write(*table, team.as_deref(), &part)
                            .map_err(|e| SendError::retryable(format!("{}: {e}", shared.id)))?;
                    }
                }
                log_completed(&shared.id, &store.take_completed());
                Ok(())
            })
            .await;
            res.map_err(|e| SendError::retryable(format!("parquet write task failed: {e}")))?
        })
    }
}

/// Builds a `parquet` exporter used by one signal only (see [`ParquetExporter`] for several).
pub fn build_parquet(
    id: &str,
    signal: Signal,
    cfg: &ParquetConfig,
    registry: &Registry,
) -> Result<(Arc<dyn Sender>, DriverConfig), BuildError> {
    let e = ParquetExporter::open(id, cfg, registry)?;
    Ok((e.sender(signal), e.driver_config()))
}

#[cfg(test)]
mod tests;
