//! `clickhouse`: traces, metrics and logs into ClickHouse, in the tables and columns of the
//! collector contrib `clickhouseexporter` (so Grafana's ClickHouse datasource in OpenTelemetry
//! mode, and every query written for the collector's schema, work unchanged), with Sightline's
//! `OwnerTeam` column beside `ServiceName`.
//!
//! What it owns: the schema (created at the first send when `create_schema` is on, then read
//! back with `DESCRIBE TABLE` so that tables created by a collector, with or without the
//! newer columns, are written as they are), turning a batch into `RowBinary` rows straight
//! from the OTLP wire bytes ([`encode`]), ClickHouse's compressed-block framing ([`block`]),
//! and the HTTP inserts. Queueing, batching, concurrency, retries and the `otelcol_exporter_*`
//! metrics are the core driver's job.
//!
//! ```no_run
//! # async fn example() -> Result<(), sightline_exporters::BuildError> {
//! use sightline_clickhouse::{ClickHouseConfig, build_clickhouse};
//! use sightline_core::{Registry, Signal, driver};
//!
//! let registry = Registry::new();
//! let cfg = ClickHouseConfig::new("http://clickhouse:8123");
//! let (sender, driver_cfg) = build_clickhouse("clickhouse", Signal::Traces, &cfg, &registry)?;
//! let running = driver::spawn("clickhouse", Signal::Traces, driver_cfg, sender, &registry);
//! # drop(running);
//! # Ok(())
//! # }
//! ```

pub mod block;
pub mod config;
pub mod encode;
pub mod schema;

pub use config::{ClickHouseConfig, Compress, MetricKind};
pub use encode::{Encoder, Shapes, Stats};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use http_body_util::Full;
use schema::{TableShape, qualified};
use sightline_core::{Batch, Counter, DriverConfig, Registry, SendError, SendFuture, Sender, Signal};
use sightline_exporters::http_exporter::{self, HttpClient, RESPONSE_LIMIT, body_text};
use sightline_exporters::{BuildError, Compression, Compressor, driver_config, offload};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Builds the `clickhouse` exporter's sender for one signal. No connection is made until the
/// first send, which creates the schema (when `create_schema` is on) and reads the tables'
/// columns.
pub fn build_clickhouse(
    id: &str,
    signal: Signal,
    cfg: &ClickHouseConfig,
    registry: &Registry,
) -> Result<(Arc<dyn Sender>, DriverConfig), BuildError> {
    BuildError::from_findings(cfg.validate())?;
    let endpoint = config::parse_endpoint(&cfg.endpoint).map_err(|m| BuildError::invalid("endpoint", m))?;
    let client = http_exporter::client(&cfg.tls, &endpoint)?;
    let mut headers = http_exporter::base_headers(&BTreeMap::new())?;
    if !cfg.username.is_empty() {
        let user = HeaderValue::from_str(&cfg.username).map_err(|_| BuildError::invalid("username", "not ASCII"))?;
        headers.insert(HeaderName::from_static("x-clickhouse-user"), user);
        let mut key = HeaderValue::from_str(&cfg.password).map_err(|_| BuildError::invalid("password", "not ASCII"))?;
        key.set_sensitive(true);
        headers.insert(HeaderName::from_static("x-clickhouse-key"), key);
    }
    // Settings: the endpoint's own query parameters, then connection_params (which win).
    let mut settings: BTreeMap<String, String> = endpoint
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default();
    settings.extend(cfg.connection_params.clone());
    let base = format!(
        "{}://{}{}",
        endpoint.scheme_str().unwrap_or("http"),
        endpoint.authority().map(|a| a.as_str()).unwrap_or_default(),
        if endpoint.path().is_empty() { "/" } else { endpoint.path() }
    );
    let tables: Vec<Table> = match signal {
        Signal::Traces => vec![Table { name: cfg.traces_table_name.clone(), kind: None }],
        Signal::Logs => vec![Table { name: cfg.logs_table_name.clone(), kind: None }],
        Signal::Metrics => {
            MetricKind::ALL.iter().map(|&k| Table { name: cfg.metrics_table(k), kind: Some(k) }).collect()
        }
    };
    let compress = cfg.compress;
    let gzip = (compress == Compress::Gzip).then(|| Arc::new(Compressor::new(Compression::Gzip, Default::default())));
    let sender = ClickHouseSender {
        signal,
        base,
        settings,
        client,
        headers,
        database: cfg.database.clone(),
        ddl: cfg.create_schema.then(|| Box::new(cfg.clone())),
        async_insert: cfg.async_insert,
        tables,
        owner_key: cfg.owner_team_attribute.clone().into(),
        compress,
        gzip,
        ready: ArcSwapOption::empty(),
        preparing: tokio::sync::Mutex::new(()),
        pool: Arc::new(Mutex::new(Vec::new())),
        pool_size: cfg.sending_queue.num_consumers.max(1),
        malformed: registry.counter(
            &format!("sightline_exporter_dropped_{}_total", signal.item_name()),
            &format!("{} an exporter dropped without sending them, by reason.", signal.item_name()),
            &[("exporter", id), ("reason", "malformed")],
        ),
    };
    Ok((Arc::new(sender), driver_config(cfg.timeout, &cfg.sending_queue, &cfg.retry_on_failure)))
}

struct Table {
    name: String,
    /// The metric type (metrics tables).
    kind: Option<MetricKind>,
}

/// What the first send learns: each table's insert URL and shape.
struct Ready {
    /// By `tables` order.
    inserts: Vec<Uri>,
    /// Shared with the encoding tasks (read once, at the first send).
    shapes: Arc<Shapes>,
}

struct ClickHouseSender {
    signal: Signal,
    /// `scheme://authority/path` of the endpoint.
    base: String,
    /// ClickHouse settings sent with every request.
    settings: BTreeMap<String, String>,
    client: HttpClient<Full<Bytes>>,
    headers: HeaderMap,
    database: String,
    /// With `create_schema`: the config the DDL run before the first insert is made from (it
    /// depends on the server's version, read first).
    ddl: Option<Box<ClickHouseConfig>>,
    async_insert: bool,
    tables: Vec<Table>,
    owner_key: Arc<str>,
    compress: Compress,
    gzip: Option<Arc<Compressor>>,
    /// What the first send learned; cleared when an insert finds its table or a column gone,
    /// so the next send creates (with `create_schema`) and reads the tables again.
    ready: ArcSwapOption<Ready>,
    /// Held while the tables are prepared, so that concurrent sends prepare once.
    preparing: tokio::sync::Mutex<()>,
    /// Encoders of finished sends, reused by the next ones (at most `pool_size`).
    pool: Arc<Mutex<Vec<Encoder>>>,
    pool_size: usize,
    malformed: Counter,
}

/// ClickHouse error codes that say the data or the schema is wrong: sending the same rows
/// again cannot succeed, whatever the HTTP status (ClickHouse answers many of them with 500).
const PERMANENT_CODES: [u32; 12] = [
    16,  // NO_SUCH_COLUMN_IN_TABLE
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,  // CANNOT_READ_ALL_DATA
    40,  // CHECKSUM_DOESNT_MATCH
    53,  // TYPE_MISMATCH
    60,  // UNKNOWN_TABLE
    81,  // UNKNOWN_DATABASE
    117, // INCORRECT_DATA
    128, // TOO_LARGE_ARRAY_SIZE
    131, // TOO_LARGE_STRING_SIZE
    190, // SIZES_OF_ARRAYS_DONT_MATCH
    691, // UNKNOWN_ELEMENT_OF_ENUM
];

/// The outcome of a ClickHouse error answer: the exception code (header, else the body's
/// `Code: N.`) decides when it says the data or schema is wrong; otherwise 429 and 5xx are
/// retryable and other statuses are not. Returns the error and the code, if any.
fn clickhouse_error(status: StatusCode, headers: &HeaderMap, body: &[u8], what: &str) -> (SendError, Option<u32>) {
    let text = body_text(body);
    let code = headers
        .get("x-clickhouse-exception-code")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .or_else(|| text.strip_prefix("Code: ").and_then(|r| r.split('.').next()).and_then(|c| c.parse().ok()));
    let message = format!("{what}: HTTP {status}: {}", text.trim_end());
    let err = match code {
        Some(c) if PERMANENT_CODES.contains(&c) => SendError::permanent(message),
        _ => http_exporter::status_error(status, message, headers),
    };
    (err, code)
}

/// Exception codes of an insert that say the table is not what was read at the first send:
/// the table or database is gone, or a column is (UNKNOWN_TABLE, UNKNOWN_DATABASE,
/// NO_SUCH_COLUMN_IN_TABLE, THERE_IS_NO_COLUMN).
const SCHEMA_CHANGED: [u32; 4] = [60, 81, 16, 8];

impl ClickHouseSender {
    /// A request URL with `params` and the settings.
    fn url(&self, params: &[(&str, &str)]) -> Result<Uri, SendError> {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            q.append_pair(k, v);
        }
        for (k, v) in &self.settings {
            q.append_pair(k, v);
        }
        let url = format!("{}?{}", self.base, q.finish());
        url.parse().map_err(|e| SendError::permanent(format!("cannot build the request URL: {e}")))
    }

    /// Runs one statement (its text is the body) and returns the answer's body.
    async fn query(&self, sql: &str, params: &[(&str, &str)]) -> Result<Vec<u8>, SendError> {
        let url = self.url(params)?;
        let mut req = hyper::Request::post(url)
            .body(Full::new(Bytes::copy_from_slice(sql.as_bytes())))
            .map_err(|e| SendError::permanent(format!("cannot build the request: {e}")))?;
        *req.headers_mut() = self.headers.clone();
        self.exchange(req, sql.lines().next().unwrap_or_default()).await
    }

    async fn exchange(&self, req: hyper::Request<Full<Bytes>>, what: &str) -> Result<Vec<u8>, SendError> {
        self.exchange_code(req, what).await.map_err(|(e, _)| e)
    }

    /// [`Self::exchange`], with ClickHouse's exception code of a failure.
    async fn exchange_code(
        &self,
        req: hyper::Request<Full<Bytes>>,
        what: &str,
    ) -> Result<Vec<u8>, (SendError, Option<u32>)> {
        let resp = self.client.request(req).await.map_err(|e| {
            (SendError::retryable(format!("{what}: {}: {}", self.base, sightline_exporters::error_chain(&e))), None)
        })?;
        let (parts, body) = resp.into_parts();
        let body = http_exporter::read_limited(body, RESPONSE_LIMIT).await;
        if parts.status.is_success() && !parts.headers.contains_key("x-clickhouse-exception-code") {
            return Ok(body);
        }
        Err(clickhouse_error(parts.status, &parts.headers, &body, what))
    }

    /// What [`Self::prepare`] learned, preparing first when nothing is known (again after a
    /// table changed).
    async fn ready(&self) -> Result<Arc<Ready>, SendError> {
        if let Some(r) = self.ready.load_full() {
            return Ok(r);
        }
        let _one = self.preparing.lock().await;
        if let Some(r) = self.ready.load_full() {
            return Ok(r);
        }
        let r = Arc::new(self.prepare().await?);
        self.ready.store(Some(r.clone()));
        Ok(r)
    }

    /// Creates the schema (once) and reads each table's columns.
    async fn prepare(&self) -> Result<Ready, SendError> {
        if let Some(cfg) = &self.ddl {
            let version = self.query("SELECT version() FORMAT TabSeparated", &[]).await?;
            let version = String::from_utf8_lossy(&version).trim().to_string();
            for sql in schema::create_statements(cfg, &[self.signal], &version) {
                self.query(&sql, &[]).await.inspect_err(|e| {
                    tracing::error!(error = %e.message, "clickhouse: creating the schema failed");
                })?;
            }
        }
        let mut shapes = Shapes::default();
        let mut inserts = Vec::new();
        for t in &self.tables {
            let table = qualified(&self.database, &t.name);
            let tsv = self.query(&format!("DESCRIBE TABLE {table} FORMAT TabSeparated"), &[]).await?;
            let shape = TableShape::from_describe(&String::from_utf8_lossy(&tsv));
            if let Some(why) = &shape.unsupported {
                return Err(SendError::permanent(format!("table {table}: {why}")));
            }
            let columns = match (self.signal, t.kind) {
                (Signal::Traces, _) => encode::traces_columns(&shape),
                (Signal::Logs, _) => encode::logs_columns(&shape),
                (Signal::Metrics, Some(k)) => encode::metrics_columns(k, &shape),
                (Signal::Metrics, None) => unreachable!("metrics tables have a kind"),
            };
            let query = format!("INSERT INTO {table} ({columns}) FORMAT RowBinary");
            let mut params = vec![("query", query.as_str())];
            if matches!(self.compress, Compress::Lz4 | Compress::Zstd) {
                params.push(("decompress", "1"));
            }
            if self.async_insert && !self.settings.contains_key("async_insert") {
                params.push(("async_insert", "1"));
            }
            inserts.push(self.url(&params)?);
            match (self.signal, t.kind) {
                (Signal::Traces, _) => shapes.traces = shape,
                (Signal::Logs, _) => shapes.logs = shape,
                (_, Some(k)) => shapes.metrics[k as usize] = shape,
                _ => {}
            }
        }
        tracing::info!(signal = %self.signal, tables = self.tables.len(), "clickhouse: schema ready");
        Ok(Ready { inserts, shapes: Arc::new(shapes) })
    }

    /// Encodes a batch into one body per table (empty when the table gets no rows).
    async fn encode(&self, batch: &Batch, shapes: &Arc<Shapes>) -> Result<Vec<Bytes>, SendError> {
        let mut enc = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        let chunks: Vec<Bytes> = batch.chunks().cloned().collect();
        let (signal, owner, shapes, compress, gzip) =
            (self.signal, self.owner_key.clone(), shapes.clone(), self.compress, self.gzip.clone());
        let (res, enc) = offload(batch.bytes, move || {
            let res = encode_bodies(&mut enc, signal, &chunks, &shapes, &owner, compress, gzip.as_deref());
            (res, enc)
        })
        .await
        .map_err(|e| SendError::permanent(format!("encoding task failed: {e}")))?;
        if enc.stats.malformed > 0 {
            self.malformed.add(enc.stats.malformed);
            tracing::warn!(items = enc.stats.malformed, "clickhouse: dropped items with undecodable fields");
        }
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < self.pool_size {
            pool.push(enc);
        }
        res.map_err(SendError::permanent)
    }
}

/// Encodes `chunks` (requests of `signal`) into one compressed body per table of the signal.
pub fn encode_bodies(
    enc: &mut Encoder,
    signal: Signal,
    chunks: &[Bytes],
    shapes: &Shapes,
    owner_key: &str,
    compress: Compress,
    gzip: Option<&Compressor>,
) -> Result<Vec<Bytes>, String> {
    enc.reset();
    for c in chunks {
        let r = match signal {
            Signal::Traces => enc.add_traces(c, &shapes.traces, owner_key),
            Signal::Logs => enc.add_logs(c, &shapes.logs, owner_key),
            Signal::Metrics => enc.add_metrics(c, &shapes.metrics, owner_key),
        };
        r.map_err(|e| format!("cannot read the batch: {e}"))?;
    }
    let pack = |rows: &[u8]| -> Result<Bytes, String> {
        if rows.is_empty() {
            return Ok(Bytes::new());
        }
        match (compress, gzip) {
            (Compress::Lz4 | Compress::Zstd, _) => {
                let method = if compress == Compress::Lz4 { block::Method::Lz4 } else { block::Method::Zstd(1) };
                let mut out = Vec::with_capacity(rows.len() / 3 + 64);
                block::compress_into(method, rows, &mut out).map_err(|e| format!("compression failed: {e}"))?;
                Ok(Bytes::from(out))
            }
            (Compress::Gzip, Some(c)) => c
                .compress(std::iter::once(rows), rows.len())
                .map(Bytes::from)
                .map_err(|e| format!("gzip compression failed: {e}")),
            _ => Ok(Bytes::copy_from_slice(rows)),
        }
    };
    match signal {
        Signal::Traces | Signal::Logs => Ok(vec![pack(&enc.rows)?]),
        Signal::Metrics => enc.metric_rows.iter().map(|r| pack(r)).collect(),
    }
}

impl Sender for ClickHouseSender {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        Box::pin(async move {
            let ready = self.ready().await?;
            let bodies = self.encode(batch, &ready.shapes).await?;
            // Metrics go to up to five tables, one insert each; a retry after a partial
            // failure writes the tables that had succeeded again (as the collector does).
            for (body, url) in bodies.into_iter().zip(&ready.inserts) {
                if body.is_empty() {
                    continue;
                }
                let mut req = hyper::Request::post(url.clone())
                    .body(Full::new(body))
                    .map_err(|e| SendError::permanent(format!("cannot build the request: {e}")))?;
                *req.headers_mut() = self.headers.clone();
                req.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                if self.compress == Compress::Gzip {
                    req.headers_mut().insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
                if let Err((e, code)) = self.exchange_code(req, "INSERT").await {
                    if code.is_some_and(|c| SCHEMA_CHANGED.contains(&c)) {
                        // Read the tables again (and create them, with create_schema) before
                        // the retry of this batch.
                        self.ready.store(None);
                        tracing::warn!(error = %e.message, "clickhouse: a table changed since it was read; reading the tables again");
                        return Err(SendError::retryable(e.message));
                    }
                    return Err(e);
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
