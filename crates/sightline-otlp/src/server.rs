//! The listeners, the gRPC and HTTP handlers, and the transport-independent ingest path.

use crate::auth::{AuthCounters, AuthFailure, Authenticator};
use crate::decompress::{DecompressError, Encoding, decompress};
use crate::status::{self, Code, Refusal};
use crate::tls::{TlsCounters, TlsListener};
use crate::{GrpcConfig, HttpConfig, OtlpReceiverConfig, json_signal};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use sightline_core::ingest::{self, ReceiverCounters};
use sightline_core::{BoundTeam, ClientInfo, MemoryBudget, MemoryPermit, Payload, ProcessError, Registry, Signal};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The pipelines a receiver feeds, per signal (empty = the signal is not served).
pub use sightline_core::ingest::Consumers;

/// A started receiver.
pub struct Running {
    /// The bound addresses: (transport, address).
    pub addrs: Vec<(&'static str, SocketAddr)>,
    pub tasks: Vec<JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Transport {
    Grpc = 0,
    Http = 1,
}

struct Shared {
    consumers: Consumers,
    budget: MemoryBudget,
    /// [signal][transport]
    metrics: Vec<Vec<ReceiverCounters>>,
    stopping: Arc<AtomicBool>,
    grpc_limit: usize,
    http_limit: usize,
    /// Bearer-token authentication, per transport.
    grpc_auth: Option<Authenticator>,
    http_auth: Option<Authenticator>,
    /// `include_metadata`, per transport.
    grpc_metadata: bool,
    http_metadata: bool,
}

/// The peer address of a connection, in each of its requests' extensions.
#[derive(Clone, Copy)]
struct Peer(std::net::IpAddr);

const OVERLOAD_RETRY: Duration = Duration::from_secs(1);

/// JSON bodies larger than this are converted on the blocking pool.
const JSON_INLINE_LIMIT: usize = 64 * 1024;

/// Binds the configured listeners and starts serving. Returns once the sockets are bound (so
/// the caller can report readiness); serving stops when `shutdown` is cancelled, after
/// in-flight requests finish.
pub async fn start(
    id: &str,
    cfg: &OtlpReceiverConfig,
    consumers: Consumers,
    budget: MemoryBudget,
    registry: &Registry,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let metrics = Signal::ALL
        .iter()
        .map(|s| ["grpc", "http"].iter().map(|t| ReceiverCounters::new(registry, id, t, *s)).collect())
        .collect();
    let stopping = Arc::new(AtomicBool::new(false));
    let grpc_cfg = cfg.protocols.grpc.as_ref();
    let http_cfg = cfg.protocols.http.as_ref();
    let invalid = |key: String, m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{key}: {m}"));
    let authenticator = |t: &'static str, a: Option<&crate::AuthConfig>| -> std::io::Result<Option<Authenticator>> {
        let Some(a) = a else { return Ok(None) };
        let c = |name: &str, help: &str, extra: Option<(&str, &str)>| {
            let mut labels = vec![("receiver", id), ("transport", t)];
            labels.extend(extra);
            registry.counter(name, help, &labels)
        };
        let refused = "Requests refused by authentication, by reason (missing_token, invalid_token, team_mismatch).";
        let counters = AuthCounters {
            refused_missing: c("sightline_auth_refused_requests_total", refused, Some(("reason", "missing_token"))),
            refused_invalid: c("sightline_auth_refused_requests_total", refused, Some(("reason", "invalid_token"))),
            refused_mismatch: c("sightline_auth_refused_requests_total", refused, Some(("reason", "team_mismatch"))),
            reloads: c(
                "sightline_auth_tokens_reloads_total",
                "Tokens file reloads that replaced the tokens in use.",
                None,
            ),
            reload_errors: c(
                "sightline_auth_tokens_reload_errors_total",
                "Tokens file reloads refused because the new file is invalid (the previous tokens stay in use).",
                None,
            ),
        };
        Authenticator::start(id, t, a, counters, shutdown.clone())
            .map(Some)
            .map_err(|m| invalid(format!("protocols.{t}.auth.tokens_file"), m))
    };
    let shared = Arc::new(Shared {
        consumers,
        budget,
        metrics,
        stopping: stopping.clone(),
        grpc_limit: grpc_cfg.map_or(0, |g| (g.max_recv_msg_size_mib as usize) << 20),
        http_limit: http_cfg.map_or(0, |h| h.max_request_body_size),
        grpc_auth: authenticator("grpc", grpc_cfg.and_then(|g| g.auth.as_ref()))?,
        http_auth: authenticator("http", http_cfg.and_then(|h| h.auth.as_ref()))?,
        grpc_metadata: grpc_cfg.is_some_and(|g| g.include_metadata),
        http_metadata: http_cfg.is_some_and(|h| h.include_metadata),
    });
    let tls_listener = |t: &'static str,
                        tls: Option<&crate::ServerTlsConfig>|
     -> std::io::Result<Option<TlsListener>> {
        let Some(tls) = tls else { return Ok(None) };
        let c = |name: &str, help: &str| registry.counter(name, help, &[("receiver", id), ("transport", t)]);
        let counters = TlsCounters {
            reloads: c("sightline_receiver_tls_reloads_total", "TLS certificate reloads that replaced the one in use."),
            reload_errors: c(
                "sightline_receiver_tls_reload_errors_total",
                "TLS certificate reloads refused because the new files are invalid (the previous ones stay in use).",
            ),
            handshake_errors: c(
                "sightline_receiver_tls_handshake_errors_total",
                "Connections closed because the TLS handshake failed (plain text, no or an untrusted client certificate).",
            ),
        };
        // gRPC needs HTTP/2; the HTTP endpoint serves both.
        let alpn: &'static [&'static [u8]] = if t == "grpc" { &[b"h2"] } else { &[b"h2", b"http/1.1"] };
        TlsListener::start(id, t, tls, alpn, counters, shutdown.clone())
            .map(Some)
            .map_err(|e| invalid(format!("protocols.{t}.tls.{}", e.key), e.message))
    };
    let mut running = Running { addrs: Vec::new(), tasks: Vec::new() };
    if let Some(g) = grpc_cfg {
        let tls = tls_listener("grpc", g.tls.as_ref())?;
        let l = bind(&g.endpoint).await?;
        running.addrs.push(("grpc", l.local_addr()?));
        let router = grpc_router(shared.clone());
        running.tasks.push(tokio::spawn(serve(l, router, Some(g.clone()), tls, shutdown.clone(), stopping.clone())));
    }
    if let Some(h) = http_cfg {
        let tls = tls_listener("http", h.tls.as_ref())?;
        let l = bind(&h.endpoint).await?;
        running.addrs.push(("http", l.local_addr()?));
        let router = http_router(shared.clone(), h);
        running.tasks.push(tokio::spawn(serve(l, router, None, tls, shutdown.clone(), stopping.clone())));
    }
    Ok(running)
}

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn bind(endpoint: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(endpoint)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {endpoint}: {e}")))
}

async fn serve(
    listener: TcpListener,
    router: Router,
    grpc: Option<GrpcConfig>,
    tls: Option<TlsListener>,
    shutdown: CancellationToken,
    stopping: Arc<AtomicBool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if let Some(g) = &grpc {
        builder
            .http2()
            .max_concurrent_streams(g.max_concurrent_streams)
            // Flow-control windows sized by the connection's measured bandwidth-delay product
            // (as gRPC-Go does), not fixed: h2 buffers a stream's data before the handler
            // reads it, outside the memory budget, so fixed large windows let every busy
            // connection park megabytes of request bodies that are about to be refused.
            .adaptive_window(true)
            .max_frame_size(1 << 20);
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let svc = TowerToHyperService::new(router.clone().layer(axum::Extension(Peer(peer.ip()))));
                match &tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    Some(tls) => {
                        // The handshake runs on the connection's own task, so that a slow or
                        // silent client does not hold up the accept loop.
                        let acceptor = tls.acceptor();
                        let failed = tls.handshake_errors.clone();
                        let builder = builder.clone();
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    failed.inc();
                                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    failed.inc();
                                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                            let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                            let _ = watcher.watch(conn).await;
                        });
                    }
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
    stopping.store(true, Ordering::Relaxed);
    drop(listener);
    // Let in-flight requests finish (bounded: clients' own timeouts end idle ones).
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

// ---------------------------------------------------------------------------------------------
// Ingest: the same for both transports.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Proto,
    Json,
}

/// The outcome of one accepted request: rejected items and their reason (partial success).
struct Accepted {
    rejected: u64,
    message: String,
}

impl Shared {
    fn auth(&self, t: Transport) -> Option<&Authenticator> {
        match t {
            Transport::Grpc => self.grpc_auth.as_ref(),
            Transport::Http => self.http_auth.as_ref(),
        }
    }

    /// Authenticates a request (before its body is read): the ownership binding, or the
    /// refusal. Without `auth` every request passes, unbound.
    /// Who sent a request: the peer's address, and its headers with `include_metadata`.
    fn client(&self, t: Transport, parts: &http::request::Parts) -> Arc<ClientInfo> {
        let include = match t {
            Transport::Grpc => self.grpc_metadata,
            Transport::Http => self.http_metadata,
        };
        let metadata = if include {
            let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
            parts.headers.iter().map(|(k, v)| (k.as_str().to_string(), text(v))).collect()
        } else {
            Vec::new()
        };
        Arc::new(ClientInfo { addr: parts.extensions.get::<Peer>().map(|p| p.0), metadata })
    }

    fn authenticate(&self, t: Transport, headers: &HeaderMap) -> Result<Option<BoundTeam>, (AuthFailure, Refusal)> {
        match self.auth(t) {
            Some(a) => a.check(headers),
            None => Ok(None),
        }
    }

    async fn ingest(
        &self,
        signal: Signal,
        transport: Transport,
        data: Bytes,
        mut permit: MemoryPermit,
        format: Format,
        // Who sent it: the team it authenticated as, and the client (for `from_context`).
        (bound, client): (Option<BoundTeam>, Arc<ClientInfo>),
    ) -> Result<Accepted, Refusal> {
        let m = &self.metrics[signal as usize][transport as usize];
        let proto = match format {
            Format::Proto => data,
            Format::Json => {
                // JSON costs microseconds per item: a large document is converted on the
                // blocking pool so that it does not hold a runtime worker (and the protobuf
                // requests queued behind it).
                let convert = move |data: Bytes| {
                    let r = sightline_otlp_json::json_to_protobuf(json_signal(signal), &data);
                    (r, data)
                };
                let (r, data) = if data.len() > JSON_INLINE_LIMIT {
                    tokio::task::spawn_blocking(move || convert(data))
                        .await
                        .map_err(|e| Refusal::invalid(format!("OTLP/JSON conversion failed: {e}")))?
                } else {
                    convert(data)
                };
                let v = r.map_err(|e| Refusal::invalid(format!("invalid OTLP/JSON: {e}")))?;
                drop(data);
                if !permit.try_grow(v.len().saturating_sub(permit.bytes())) {
                    return Err(Refusal::overloaded("memory limit reached; retry later", OVERLOAD_RETRY));
                }
                Bytes::from(v)
            }
        };
        let v = ingest::validate(signal, proto).map_err(Refusal::invalid)?;
        let (proto, items, rejected, message) = (v.proto, v.items, v.rejected, v.message);
        permit.shrink_to(proto.len());
        let pipelines = self.consumers.get(signal);
        let payload = Payload::new(signal, proto, items, Some(permit))
            .with_sender(bound, Some(client))
            .with_entry_items(v.entry_items);
        let (queued, dropped, refused, why) = match ingest::dispatch(pipelines, payload).await {
            Ok(d) => (d.queued, d.dropped, d.rejected.min(items), d.message),
            Err(e) => {
                m.refused.add(items);
                return Err(match e {
                    ProcessError::Retryable { message, retry_after_secs } => {
                        Refusal::overloaded(message, Duration::from_secs(retry_after_secs.max(1)))
                    }
                    ProcessError::PermissionDenied { message } => {
                        if let Some(a) = self.auth(transport) {
                            a.refused_mismatch.inc();
                        }
                        Refusal::permission_denied(message)
                    }
                    ProcessError::Refused { message } | ProcessError::Invalid(message) => Refusal::invalid(message),
                    ProcessError::Unavailable { message, retry_after_secs } => {
                        Refusal::unavailable(message, Duration::from_secs(retry_after_secs.max(1)))
                    }
                });
            }
        };
        if queued == 0 && dropped > 0 {
            // Every destination was full: nothing was accepted, so the client must retry.
            m.refused.add(items);
            return Err(Refusal::unavailable("all exporter queues are full; retry later", OVERLOAD_RETRY));
        }
        m.accepted.add(items - refused);
        m.refused.add(refused);
        let message = match (message.is_empty(), why.is_empty()) {
            (_, true) => message,
            (true, false) => why,
            (false, false) => format!("{message}; {why}"),
        };
        Ok(Accepted { rejected: rejected + refused, message })
    }

    /// Reads a request body with a size limit, holding its bytes against the budget before
    /// buffering them.
    async fn read_body(
        &self,
        headers: &HeaderMap,
        body: &mut RequestBody,
        limit: BodyLimit,
    ) -> Result<(Bytes, MemoryPermit), Refusal> {
        let (shown, option, limit) = (limit.max, limit.option, limit.max + limit.framing);
        let too_large =
            |what: String| Refusal::too_large(format!("{what} exceeds the limit of {shown} bytes ({option})"));
        if self.stopping.load(Ordering::Relaxed) {
            return Err(Refusal::unavailable("shutting down", OVERLOAD_RETRY));
        }
        let declared =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
        if let Some(n) = declared
            && n > limit
        {
            return Err(too_large(format!("request body of {n} bytes")));
        }
        let initial = declared.unwrap_or(0);
        let Some(mut permit) = self.budget.try_acquire(initial) else {
            return Err(Refusal::overloaded("memory limit reached; retry later", OVERLOAD_RETRY));
        };
        // A body that arrives in one chunk is kept as it is (no copy); only a body in several
        // chunks is assembled into one buffer.
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        let mut total = 0usize;
        while let Some(frame) = body.body.frame().await {
            let frame = frame.map_err(|e| Refusal::invalid(format!("reading request body: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            if data.is_empty() {
                continue;
            }
            total += data.len();
            if total > limit {
                return Err(too_large("request body".into()));
            }
            if total > permit.bytes() {
                let want = total.max(permit.bytes() * 2).min(limit) - permit.bytes();
                if !permit.try_grow(want) {
                    return Err(Refusal::overloaded("memory limit reached; retry later", OVERLOAD_RETRY));
                }
            }
            if buf.is_empty() && first.is_none() {
                first = Some(data);
            } else {
                if let Some(f) = first.take() {
                    buf.reserve(initial.max(total));
                    buf.extend_from_slice(&f);
                }
                buf.extend_from_slice(&data);
            }
        }
        body.complete = true;
        Ok((first.unwrap_or_else(|| buf.freeze()), permit))
    }
}

/// The size limit of a request body: `max` bytes of content plus `framing` (gRPC's 5-byte
/// message header), set by `option`.
#[derive(Clone, Copy)]
struct BodyLimit {
    max: usize,
    framing: usize,
    option: &'static str,
}

/// A request body and whether it was read to its end.
struct RequestBody {
    body: Body,
    complete: bool,
}

/// The most bytes of a refused HTTP/1 request body read and discarded so that the client can
/// read the answer (at least this much; as much as the body limit when that is larger).
const DRAIN_LIMIT: usize = 64 << 20;
/// How long a refused HTTP/1 request body is drained at most.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl RequestBody {
    /// Reads and discards what is left of a refused HTTP/1 body, up to `max` bytes and
    /// [`DRAIN_TIMEOUT`], holding nothing and taking nothing from the memory budget.
    ///
    /// Why: an HTTP/1 client that writes its whole body before reading (Python's `urllib`,
    /// many SDKs) gets a connection reset instead of the answer when the server closes with
    /// unread data (the kernel answers the unread bytes with RST), and typically retries the
    /// same request for ever. A body declared larger than `max` is not drained: the client is
    /// not waited for, and may see the reset. A client that sent `Expect: 100-continue` has not
    /// sent the body (hyper sends the `100 Continue` only when the body is read), so its
    /// body is left alone and it reads the answer at once.
    async fn drain(&mut self, headers: &HeaderMap, max: usize) {
        let expects_continue = headers
            .get(header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        let declared =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
        if self.complete || expects_continue || declared.is_some_and(|n| n > max) {
            return;
        }
        let body = &mut self.body;
        let discard = async {
            let mut seen = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    seen += data.len();
                    if seen > max {
                        return false;
                    }
                }
            }
            true
        };
        if let Ok(true) = tokio::time::timeout(DRAIN_TIMEOUT, discard).await {
            self.complete = true;
        }
    }
}

fn decompress_refusal(e: DecompressError) -> Refusal {
    match e {
        DecompressError::TooLarge { limit } => {
            Refusal::too_large(format!("decompressed request exceeds the limit of {limit} bytes"))
        }
        DecompressError::OverBudget => Refusal::overloaded("memory limit reached; retry later", OVERLOAD_RETRY),
        DecompressError::Corrupt(m) => Refusal::invalid(format!("cannot decompress request: {m}")),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

fn http_router(shared: Arc<Shared>, cfg: &HttpConfig) -> Router {
    let route = |sig: Signal| post(move |State(s): State<Arc<Shared>>, req: Request| http_export(s, sig, req));
    Router::new()
        .route(&cfg.traces_url_path, route(Signal::Traces))
        .route(&cfg.metrics_url_path, route(Signal::Metrics))
        .route(&cfg.logs_url_path, route(Signal::Logs))
        .with_state(shared)
}

/// An HTTP export. A refusal that comes before the body was read to its end (too large,
/// unauthenticated, unsupported media type, ...) drains the rest of an HTTP/1 body first and
/// closes the connection, so that the client reads the answer rather than a reset (see
/// [`RequestBody::drain`]). HTTP/2 needs neither: the request body is held until the answer is
/// sent ([`hold_request`]), then the stream is reset on its own and the connection lives on.
async fn http_export(shared: Arc<Shared>, signal: Signal, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut body = RequestBody { body, complete: false };
    let mut resp = http_answer(&shared, signal, &parts, &mut body).await;
    if body.complete {
        return resp;
    }
    if parts.version >= http::Version::HTTP_2 {
        return hold_request(resp, body.body);
    }
    body.drain(&parts.headers, shared.http_limit.max(DRAIN_LIMIT)).await;
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn http_answer(
    shared: &Shared,
    signal: Signal,
    parts: &http::request::Parts,
    body: &mut RequestBody,
) -> Response {
    let ctype = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let known = match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Format::Proto),
        "application/json" => Some(Format::Json),
        _ => None,
    };
    // Authentication comes first: an unauthenticated client learns nothing else.
    let bound = match shared.authenticate(Transport::Http, &parts.headers) {
        Ok(b) => b,
        Err((why, r)) => {
            let mut resp = http_error(known.unwrap_or(Format::Json), &r);
            let challenge = match why {
                AuthFailure::Missing => "Bearer",
                AuthFailure::Invalid => "Bearer error=\"invalid_token\"",
            };
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            return resp;
        }
    };
    let format = match known {
        Some(f) => f,
        None => {
            let r = Refusal::unsupported_media(format!(
                "unsupported Content-Type {ctype:?}: use application/x-protobuf or application/json"
            ));
            return http_error(Format::Json, &r);
        }
    };
    if shared.consumers.get(signal).is_empty() {
        let r = Refusal {
            code: Code::Unimplemented,
            http_status: 404,
            message: format!("no {signal} pipeline uses this receiver"),
            retry_after: None,
        };
        return http_error(format, &r);
    }
    let enc_header = parts.headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(enc) = Encoding::parse(enc_header) else {
        let r = Refusal::invalid(format!(
            "unsupported Content-Encoding {enc_header:?}: use gzip, zstd, deflate, snappy or none"
        ));
        return http_error(format, &r);
    };
    let limit = shared.http_limit;
    let result = async {
        let max = BodyLimit { max: limit, framing: 0, option: "protocols.http.max_request_body_size" };
        let (body, mut permit) = shared.read_body(&parts.headers, body, max).await?;
        let data = if enc == Encoding::Identity {
            body
        } else {
            let out = decompress(enc, &body, limit, &mut permit).map_err(decompress_refusal)?;
            drop(body);
            Bytes::from(out)
        };
        shared
            .ingest(signal, Transport::Http, data, permit, format, (bound, shared.client(Transport::Http, parts)))
            .await
    }
    .await;
    match result {
        Ok(a) => {
            let (ct, body) = match format {
                Format::Proto => ("application/x-protobuf", status::export_response_proto(a.rejected, &a.message)),
                Format::Json => ("application/json", status::export_response_json(signal, a.rejected, &a.message)),
            };
            ([(header::CONTENT_TYPE, ct)], body).into_response()
        }
        Err(r) => http_error(format, &r),
    }
}

fn http_error(format: Format, r: &Refusal) -> Response {
    let (ct, body) = match format {
        Format::Proto => ("application/x-protobuf", status::rpc_status_proto(r.code, &r.message, r.retry_after)),
        Format::Json => ("application/json", status::rpc_status_json(r.code, &r.message, r.retry_after)),
    };
    let mut resp = (StatusCode::from_u16(r.http_status).unwrap_or(StatusCode::BAD_REQUEST), body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if let Some(d) = r.retry_after {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

// ---------------------------------------------------------------------------------------------
// gRPC (unary, over HTTP/2)

fn grpc_router(shared: Arc<Shared>) -> Router {
    let route = |sig: Signal| post(move |State(s): State<Arc<Shared>>, req: Request| grpc_export(s, sig, req));
    Router::new()
        .route(Signal::Traces.grpc_path(), route(Signal::Traces))
        .route(Signal::Metrics.grpc_path(), route(Signal::Metrics))
        .route(Signal::Logs.grpc_path(), route(Signal::Logs))
        .fallback(|req: Request| async move {
            grpc_status_response(Code::Unimplemented, &format!("unknown method {}", req.uri().path()), None)
        })
        .with_state(shared)
}

async fn grpc_export(shared: Arc<Shared>, signal: Signal, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctype = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ctype.starts_with("application/grpc") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("unsupported content-type {ctype:?} for gRPC"))
            .into_response();
    }
    let bound = match shared.authenticate(Transport::Grpc, &parts.headers) {
        Ok(b) => b,
        Err((_, r)) => return grpc_status_response(r.code, &r.message, None),
    };
    if shared.consumers.get(signal).is_empty() {
        return grpc_status_response(Code::Unimplemented, &format!("no {signal} pipeline uses this receiver"), None);
    }
    let enc_header = parts.headers.get("grpc-encoding").and_then(|v| v.to_str().ok()).unwrap_or("identity");
    let enc = match Encoding::parse(enc_header) {
        Some(e @ (Encoding::Identity | Encoding::Gzip | Encoding::Zstd | Encoding::Deflate | Encoding::Snappy)) => e,
        None => {
            let mut r =
                grpc_status_response(Code::Unimplemented, &format!("unsupported grpc-encoding {enc_header:?}"), None);
            r.headers_mut().insert("grpc-accept-encoding", HeaderValue::from_static("gzip,zstd,identity"));
            return r;
        }
    };
    let limit = shared.grpc_limit;
    let mut body = RequestBody { body, complete: false };
    let result = async {
        let max = BodyLimit { max: limit, framing: 5, option: "protocols.grpc.max_recv_msg_size_mib" };
        let (body, mut permit) = shared.read_body(&parts.headers, &mut body, max).await?;
        if body.len() < 5 {
            return Err(Refusal::invalid("gRPC message frame is shorter than its 5-byte header"));
        }
        let compressed = body[0];
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        if body.len() != 5 + len {
            return Err(Refusal::invalid(format!(
                "gRPC frame declares {len} bytes but the request carries {}; a unary call has exactly one message",
                body.len() - 5
            )));
        }
        let data = match compressed {
            0 => body.slice(5..),
            1 if enc != Encoding::Identity => {
                let out = decompress(enc, &body[5..], limit, &mut permit).map_err(decompress_refusal)?;
                drop(body);
                Bytes::from(out)
            }
            1 => return Err(Refusal::invalid("compressed gRPC message without a grpc-encoding")),
            f => return Err(Refusal::invalid(format!("invalid gRPC compressed flag {f}"))),
        };
        shared
            .ingest(
                signal,
                Transport::Grpc,
                data,
                permit,
                Format::Proto,
                (bound, shared.client(Transport::Grpc, &parts)),
            )
            .await
    }
    .await;
    match result {
        Ok(a) => {
            let msg = status::export_response_proto(a.rejected, &a.message);
            let mut frame = BytesMut::with_capacity(5 + msg.len());
            frame.extend_from_slice(&[0]);
            frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            frame.extend_from_slice(&msg);
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let mut resp = Response::new(Body::new(GrpcBody { data: Some(frame.freeze()), trailers: Some(trailers) }));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            resp
        }
        Err(r) => {
            let resp = grpc_status_response(r.code, &r.message, r.retry_after);
            if body.complete {
                return resp;
            }
            // The client is still sending (a message over the limit): the request's stream
            // must outlive the answer. Dropped first, it is reset (CANCEL) before the status
            // is written, and a client such as gRPC C-core then never sees the status and
            // waits for its deadline. Held by the response body, it is released once the
            // status is sent, and the stream ends normally.
            hold_request(resp, body.body)
        }
    }
}

/// `resp` with a body that keeps the unread request body alive until the response body is
/// dropped, after it was sent (HTTP/2: the request stream then ends after the answer, not
/// reset before it).
fn hold_request(resp: Response, request: Body) -> Response {
    let (parts, inner) = resp.into_parts();
    Response::from_parts(parts, Body::new(HoldRequest { inner, _request: request }))
}

/// The response body, and the request body held until the response is sent.
struct HoldRequest {
    inner: Body,
    _request: Body,
}

impl http_body::Body for HoldRequest {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A "Trailers-Only" gRPC response: the status travels in the only HEADERS frame.
fn grpc_status_response(code: Code, message: &str, retry_after: Option<Duration>) -> Response {
    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from((code as i32) as u32));
    if let Ok(v) = HeaderValue::from_str(&status::grpc_message(message)) {
        h.insert("grpc-message", v);
    }
    if retry_after.is_some() {
        let details = status::rpc_status_proto(code, message, retry_after);
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(details);
        if let Ok(v) = HeaderValue::from_str(&b64) {
            h.insert("grpc-status-details-bin", v);
        }
    }
    resp
}

/// One data frame, then trailers.
struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}
