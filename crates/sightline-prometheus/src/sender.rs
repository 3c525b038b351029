//! The HTTP side: one batch is translated once, encoded into per-shard `WriteRequest`s
//! (snappy block format), and the shards are sent concurrently, each shard's requests one
//! after the other so that every series' samples arrive in order.
//!
//! Retries are the driver's (it honours `Retry-After`), but a retry must not resend what was
//! delivered: Prometheus refuses a sample older than the series' latest one ("out of order"),
//! which would turn a retry into a permanent failure. The sender therefore keeps the encoded
//! requests of the batch in flight and how far each shard got; when the driver retries the
//! same batch, only what is left is sent (the batch is recognised by holding its first
//! payload, so no other batch can be mistaken for it). Outcomes: 2xx is success; 429 and 5xx
//! are retryable (with `Retry-After`); any other status is permanent for that request, which
//! is skipped (the shard goes on with its next request) and reported, with the backend's
//! message, as the batch's permanent error.

use crate::translate::{DropReason, Translator};
use crate::{PrometheusRemoteWriteConfig, translate::Options};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use http_body_util::Full;
use sightline_core::{Batch, Counter, Payload, Registry, SendError, SendFuture, Sender};
use sightline_exporters::BuildError;
use sightline_exporters::http_exporter::{self, HttpClient};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Batches up to this size are translated inline; larger ones on the blocking pool.
const INLINE_LIMIT: usize = 128 * 1024;

pub struct RemoteWriteSender {
    id: Arc<str>,
    url: Uri,
    client: HttpClient<Full<Bytes>>,
    headers: HeaderMap,
    shards: usize,
    max_samples: usize,
    request_timeout: Duration,
    opts: Options,
    /// Reused between batches (taken out while a batch is translated).
    translator: Mutex<Option<Box<Translator>>>,
    /// Snappy output scratch, reused between batches like the translator: a fresh buffer per
    /// request would be zeroed and page-faulted in every time (requests are megabytes).
    zbuf: Mutex<Vec<u8>>,
    pending: Mutex<Option<Pending>>,
    drops: Vec<Counter>,
}

/// The batch being sent: its requests per shard and each shard's progress.
struct Pending {
    /// Held so that its allocation identifies the batch.
    first: Payload,
    payloads: usize,
    bytes: usize,
    shards: Vec<ShardQueue>,
}

#[derive(Default)]
struct ShardQueue {
    requests: Vec<Bytes>,
    next: usize,
}

impl Pending {
    fn is_for(&self, batch: &Batch) -> bool {
        batch.payloads.len() == self.payloads
            && batch.bytes == self.bytes
            && batch.payloads.first().is_some_and(|p| p.bytes().as_ptr() == self.first.bytes().as_ptr())
    }
}

/// How one shard's run ended.
#[derive(Default)]
struct ShardOutcome {
    retryable: Option<SendError>,
    permanent: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RemoteWriteSender {
    pub(crate) fn new(
        id: &str,
        url: Uri,
        cfg: &PrometheusRemoteWriteConfig,
        shards: usize,
        registry: &Registry,
    ) -> Result<Self, BuildError> {
        let client = http_exporter::client(&cfg.tls, &url)?;
        let mut headers = http_exporter::base_headers(&cfg.headers)?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(HeaderName::from_static("x-prometheus-remote-write-version"), HeaderValue::from_static("0.1.0"));
        let drops = DropReason::ALL
            .iter()
            .map(|r| {
                registry.counter(
                    "sightline_exporter_dropped_points_total",
                    "Metric data points an exporter could not translate for its backend, by reason.",
                    &[("exporter", id), ("reason", r.as_str())],
                )
            })
            .collect();
        Ok(RemoteWriteSender {
            id: Arc::from(id),
            url,
            client,
            headers,
            shards,
            max_samples: cfg.max_samples_per_send.max(1),
            request_timeout: cfg.timeout,
            opts: cfg.options(),
            translator: Mutex::new(None),
            zbuf: Mutex::new(Vec::new()),
            pending: Mutex::new(None),
            drops,
        })
    }

    /// Translates and encodes a batch into per-shard compressed requests.
    async fn prepare(&self, batch: &Batch) -> Result<Vec<ShardQueue>, SendError> {
        let t = lock(&self.translator).take().unwrap_or_else(|| Box::new(Translator::new(self.opts.clone())));
        let z = std::mem::take(&mut *lock(&self.zbuf));
        let (shards, max) = (self.shards, self.max_samples);
        let id = self.id.clone();
        let b = batch.clone();
        let work = move || encode_batch(t, z, &b, shards, max, &id);
        let (t, z, queues) = if batch.bytes < INLINE_LIMIT {
            work()
        } else {
            tokio::task::spawn_blocking(work)
                .await
                .map_err(|e| SendError::permanent(format!("translation task failed: {e}")))?
        };
        for (c, n) in self.drops.iter().zip(t.drops()) {
            if *n > 0 {
                c.add(*n);
            }
        }
        *lock(&self.translator) = Some(t);
        *lock(&self.zbuf) = z;
        Ok(queues)
    }

    /// Sends one shard's remaining requests in order.
    async fn run_shard(&self, shard: usize) -> ShardOutcome {
        let mut out = ShardOutcome::default();
        loop {
            let req = {
                let p = lock(&self.pending);
                let Some(q) = p.as_ref().and_then(|p| p.shards.get(shard)) else { break };
                match q.requests.get(q.next) {
                    Some(r) => r.clone(),
                    None => break,
                }
            };
            let res = self.post(req).await;
            match res {
                Err(e) if e.retryable => {
                    out.retryable = Some(e);
                    break;
                }
                Err(e) => {
                    tracing::warn!(exporter = %self.id, shard, error = %e.message, "remote write request rejected; not retried");
                    out.permanent.get_or_insert(e.message);
                }
                Ok(()) => {}
            }
            if let Some(q) = lock(&self.pending).as_mut().and_then(|p| p.shards.get_mut(shard)) {
                q.next += 1;
            }
        }
        out
    }

    async fn post(&self, body: Bytes) -> Result<(), SendError> {
        match tokio::time::timeout(self.request_timeout, self.post_inner(body)).await {
            Ok(r) => r,
            Err(_) => {
                Err(SendError::retryable(format!("POST {}: timed out after {:?}", self.url, self.request_timeout)))
            }
        }
    }

    /// 429 and 5xx are retryable (with the server's `Retry-After`); anything else is permanent.
    async fn post_inner(&self, body: Bytes) -> Result<(), SendError> {
        http_exporter::post(&self.client, &self.url, &self.headers, body).await
    }
}

/// Translation and encoding of one batch (CPU only; runs inline or on the blocking pool).
fn encode_batch(
    mut t: Box<Translator>,
    mut z: Vec<u8>,
    batch: &Batch,
    shards: usize,
    max: usize,
    id: &str,
) -> (Box<Translator>, Vec<u8>, Vec<ShardQueue>) {
    t.reset();
    for chunk in batch.chunks() {
        if let Err(e) = t.add_request(chunk) {
            // The receiver validated the request, so this is not expected; what was read
            // before the error is sent.
            tracing::warn!(exporter = %id, error = %e, "cannot read part of a metrics request");
        }
    }
    let mut queues: Vec<ShardQueue> = (0..shards).map(|_| ShardQueue::default()).collect();
    let mut enc = snap::raw::Encoder::new();
    t.encode(shards, max, |shard, req| {
        let need = snap::raw::max_compress_len(req.len());
        if z.len() < need {
            z.resize(need, 0);
        }
        match enc.compress(req, &mut z) {
            Ok(n) => queues[shard].requests.push(Bytes::copy_from_slice(&z[..n])),
            Err(e) => tracing::error!(exporter = %id, error = %e, "dropping a remote write request: snappy failed"),
        }
    });
    if z.len() > 64 << 20 {
        // A one-off huge request: do not keep its buffer.
        z = Vec::new();
    }
    (t, z, queues)
}

impl Sender for RemoteWriteSender {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        Box::pin(async move {
            let resume = lock(&self.pending).as_ref().is_some_and(|p| p.is_for(batch));
            if !resume {
                *lock(&self.pending) = None;
                let Some(first) = batch.payloads.first().cloned() else { return Ok(()) };
                let shards = self.prepare(batch).await?;
                *lock(&self.pending) =
                    Some(Pending { first, payloads: batch.payloads.len(), bytes: batch.bytes, shards });
            }
            let outcomes = futures_util::future::join_all((0..self.shards).map(|s| self.run_shard(s))).await;
            let mut retry: Option<SendError> = None;
            let mut permanent = None;
            for o in outcomes {
                if let Some(e) = o.retryable {
                    retry = Some(match retry {
                        None => e,
                        // The longest delay any shard was asked for.
                        Some(prev) => {
                            let after = prev.retry_after.max(e.retry_after);
                            prev.with_retry_after(after)
                        }
                    });
                }
                if permanent.is_none() {
                    permanent = o.permanent;
                }
            }
            if let Some(e) = retry {
                return Err(e);
            }
            *lock(&self.pending) = None;
            match permanent {
                Some(m) => Err(SendError::permanent(m)),
                None => Ok(()),
            }
        })
    }
}
