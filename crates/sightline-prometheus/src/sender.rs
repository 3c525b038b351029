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
//!
//! Remote Write 2.0 (`protobuf_message: io.prometheus.write.v2.Request`) differs only in the
//! encoding ([`Translator::encode_v2`]), the headers, and two answers: a 2xx whose
//! `X-Prometheus-Remote-Write-{Samples,Histograms}-Written` headers report fewer than were
//! sent is a partial write (logged once per batch attempt, the difference counted as
//! `rejected_by_backend`); a 2xx without those headers, and 415, mean the backend
//! does not take 2.0 (permanent, with a message naming the option that switches back; there is
//! no automatic fallback, see ADR 0009).

use crate::translate::{DropReason, ProtobufMessage, Translator};
use crate::{PrometheusRemoteWriteConfig, translate::Options};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use http_body_util::Full;
use sightline_core::{Batch, Counter, Payload, Registry, SendError, SendFuture, Sender};
use sightline_exporters::BuildError;
use sightline_exporters::http_exporter::{self, HttpClient};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Batches up to this size are translated inline; larger ones on the blocking pool.
const INLINE_LIMIT: usize = 128 * 1024;

/// The `Content-Type` of a Remote Write 2.0 request.
pub const CONTENT_TYPE_V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
/// Response headers of a Remote Write 2.0 receiver: what it wrote.
pub const SAMPLES_WRITTEN: &str = "x-prometheus-remote-write-samples-written";
pub const HISTOGRAMS_WRITTEN: &str = "x-prometheus-remote-write-histograms-written";

pub struct RemoteWriteSender {
    id: Arc<str>,
    url: Uri,
    client: HttpClient<Full<Bytes>>,
    headers: HeaderMap,
    shards: usize,
    max_samples: usize,
    request_timeout: Duration,
    message: ProtobufMessage,
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
    requests: Vec<Request>,
    next: usize,
}

/// One compressed request and what it carries (counted for 2.0's written headers).
#[derive(Clone)]
struct Request {
    body: Bytes,
    samples: u32,
    histograms: u32,
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
    /// Samples + histograms of 2xx answers, and how many of them the backend said it did not
    /// write (2.0 only).
    delivered: u64,
    not_written: u64,
}

/// A 2.0 receiver's written headers (absent or unreadable: `None`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Written {
    samples: Option<u64>,
    histograms: Option<u64>,
}

impl Written {
    fn from_headers(h: &HeaderMap) -> Self {
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
        Written { samples: get(SAMPLES_WRITTEN), histograms: get(HISTOGRAMS_WRITTEN) }
    }

    /// How many of what `req` carried the backend reports it did not write.
    fn shortfall(&self, req: &Request) -> u64 {
        let short = |written: Option<u64>, sent: u32| written.map_or(0, |w| u64::from(sent).saturating_sub(w));
        short(self.samples, req.samples) + short(self.histograms, req.histograms)
    }
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
        let message = cfg.protobuf_message();
        let (content_type, version) = match message {
            ProtobufMessage::V1 => ("application/x-protobuf", "0.1.0"),
            ProtobufMessage::V2 => (CONTENT_TYPE_V2, "2.0.0"),
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(HeaderName::from_static("x-prometheus-remote-write-version"), HeaderValue::from_static(version));
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
            message,
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
        let (shards, max, message) = (self.shards, self.max_samples, self.message);
        let id = self.id.clone();
        let b = batch.clone();
        let work = move || encode_batch(t, z, &b, shards, max, message, &id);
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
            let res = self.post(req.body.clone()).await.and_then(|w| self.confirmed(w, &req));
            match res {
                Err(e) if e.retryable => {
                    out.retryable = Some(e);
                    break;
                }
                Err(e) => {
                    tracing::warn!(exporter = %self.id, shard, error = %e.message, "remote write request rejected; not retried");
                    out.permanent.get_or_insert(e.message);
                }
                Ok(written) => {
                    out.delivered += u64::from(req.samples) + u64::from(req.histograms);
                    out.not_written += written.shortfall(&req);
                }
            }
            if let Some(q) = lock(&self.pending).as_mut().and_then(|p| p.shards.get_mut(shard)) {
                q.next += 1;
            }
        }
        out
    }

    /// A 2.0 answer must carry the written headers (the spec requires them): a 2xx without
    /// them, for a request that carried data, comes from a receiver that read the body as 1.0
    /// and found nothing in it (the 2.0 fields are unknown to 1.0), so the data is lost. As
    /// Prometheus' own sender, that is a failure, not a success; it is permanent (resending
    /// would be lost the same way) and says which option to change.
    fn confirmed(&self, w: Written, req: &Request) -> Result<Written, SendError> {
        let unconfirmed = w.samples.is_none() && w.histograms.is_none();
        if self.message == ProtobufMessage::V1
            || !unconfirmed
            || u64::from(req.samples) + u64::from(req.histograms) == 0
        {
            return Ok(w);
        }
        Err(SendError::permanent(format!(
            "POST {}: 2xx without X-Prometheus-Remote-Write-Samples-Written/-Histograms-Written headers: the \
             backend likely accepts only Remote Write 1.0 and ignored the 2.0 body ({} samples, {} histograms); \
             set `protobuf_message: {}`",
            self.url,
            req.samples,
            req.histograms,
            ProtobufMessage::V1.as_str(),
        )))
    }

    async fn post(&self, body: Bytes) -> Result<Written, SendError> {
        match tokio::time::timeout(self.request_timeout, self.post_inner(body)).await {
            Ok(r) => r,
            Err(_) => {
                Err(SendError::retryable(format!("POST {}: timed out after {:?}", self.url, self.request_timeout)))
            }
        }
    }

    /// 429 and 5xx are retryable (with the server's `Retry-After`); anything else is permanent.
    async fn post_inner(&self, body: Bytes) -> Result<Written, SendError> {
        let answer = http_exporter::post(&self.client, &self.url, &self.headers, body).await;
        match (self.message, answer) {
            (ProtobufMessage::V1, Ok(_)) => Ok(Written::default()),
            (ProtobufMessage::V2, Ok(headers)) => Ok(Written::from_headers(&headers)),
            // `http_exporter::post`'s message starts with the status ("HTTP 415 Unsupported ...").
            (ProtobufMessage::V2, Err(mut e))
                if e.message.starts_with(&format!("HTTP {} ", StatusCode::UNSUPPORTED_MEDIA_TYPE)) =>
            {
                e.message = format!(
                    "{}: the backend does not accept Remote Write 2.0 ({}); set `protobuf_message: {}` to send \
                     Remote Write 1.0 instead",
                    e.message,
                    ProtobufMessage::V2.as_str(),
                    ProtobufMessage::V1.as_str(),
                );
                Err(e)
            }
            (_, Err(e)) => Err(e),
        }
    }
}

/// Translation and encoding of one batch (CPU only; runs inline or on the blocking pool).
fn encode_batch(
    mut t: Box<Translator>,
    mut z: Vec<u8>,
    batch: &Batch,
    shards: usize,
    max: usize,
    message: ProtobufMessage,
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
    let mut push = |shard: usize, req: &[u8], samples: u32, histograms: u32| {
        let need = snap::raw::max_compress_len(req.len());
        if z.len() < need {
            z.resize(need, 0);
        }
        match enc.compress(req, &mut z) {
            Ok(n) => {
                let body = Bytes::copy_from_slice(&z[..n]);
                queues[shard].requests.push(Request { body, samples, histograms });
            }
            Err(e) => tracing::error!(exporter = %id, error = %e, "dropping a remote write request: snappy failed"),
        }
    };
    match message {
        ProtobufMessage::V1 => t.encode(shards, max, |shard, req| push(shard, req, 0, 0)),
        ProtobufMessage::V2 => t.encode_v2(shards, max, push),
    }
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
            let (delivered, not_written): (u64, u64) =
                outcomes.iter().fold((0, 0), |(d, n), o| (d + o.delivered, n + o.not_written));
            if not_written > 0 {
                tracing::warn!(
                    exporter = %self.id,
                    sent = delivered,
                    not_written,
                    "the backend answered 2xx but reports fewer samples/histograms written than sent; counted as dropped (rejected_by_backend)"
                );
                self.drops[DropReason::RejectedByBackend as usize].add(not_written);
            }
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
