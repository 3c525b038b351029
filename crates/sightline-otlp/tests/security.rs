//! The `otlp` receiver's security over real loopback sockets, with certificates generated here
//! (rcgen): TLS and mutual TLS on gRPC (tonic's TLS client) and HTTP (hyper over rustls),
//! certificate and tokens-file reloads, bearer-token authentication with its status codes, the
//! authenticated team reaching the pipeline, and tokens never appearing in logs, metrics or
//! responses.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use sightline_core::{
    Batch, BoundTeam, DriverConfig, MemoryBudget, Payload, Pipeline, ProcessError, Processor, Registry, SendFuture,
    Sender, Signal, TeamMismatch,
};
use sightline_otlp::{Consumers, OtlpReceiverConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

// ---------------------------------------------------------------------------------------------
// Certificates

/// A test certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        Ca { issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("CA") }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for `localhost`/`127.0.0.1` (server) or a client certificate, as
    /// (certificate PEM, key PEM).
    fn leaf(&self, client: bool) -> (String, String) {
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        p.extended_key_usages =
            vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sightline-otlp-sec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Writes a file atomically (write + rename), as a secret mount or a deploy tool would.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

// ---------------------------------------------------------------------------------------------
// Receiver harness

/// Records each payload's bytes and authenticated team.
#[derive(Default)]
struct Capture(Mutex<Vec<Bytes>>);
impl Sender for Capture {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        self.0.lock().expect("lock").push(batch.to_bytes());
        Box::pin(async { Ok(()) })
    }
}

/// A processor that records the team the receiver bound the payload to.
#[derive(Default)]
struct Teams(Mutex<Vec<Option<BoundTeam>>>);
impl Processor for Teams {
    fn process(&self, payload: Payload) -> Result<Payload, ProcessError> {
        self.0.lock().expect("lock").push(payload.bound_team().cloned());
        Ok(payload)
    }
}

struct Harness {
    grpc: SocketAddr,
    http: SocketAddr,
    capture: Arc<Capture>,
    teams: Arc<Teams>,
    registry: Registry,
    _stop: tokio_util::sync::DropGuard,
}

impl Harness {
    /// `protocols` is the YAML of both protocols' extra settings (indented for `grpc:` and
    /// `http:` bodies).
    async fn start(grpc_extra: &str, http_extra: &str) -> Harness {
        let yaml = format!(
            "protocols:\n  grpc:\n    endpoint: 127.0.0.1:0\n{grpc_extra}  http:\n    endpoint: 127.0.0.1:0\n{http_extra}"
        );
        let cfg: OtlpReceiverConfig = serde_yaml_ng::from_str(&yaml).expect("config");
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        assert!(cfg.check_files().is_empty(), "{:?}", cfg.check_files());
        let registry = Registry::new();
        let capture = Arc::new(Capture::default());
        let teams = Arc::new(Teams::default());
        let mut dcfg =
            DriverConfig { queue: Default::default(), retry: Default::default(), timeout: Duration::from_secs(5) };
        dcfg.queue.batch.enabled = false;
        let d = sightline_core::driver::spawn("capture", Signal::Traces, dcfg, capture.clone(), &registry);
        let p = Pipeline {
            id: "traces".into(),
            signal: Signal::Traces,
            processors: vec![teams.clone()],
            exporters: vec![d.handle.clone()],
        };
        let consumers = Consumers { traces: vec![Arc::new(p)], ..Default::default() };
        let stop = CancellationToken::new();
        let running =
            sightline_otlp::start("otlp", &cfg, consumers, MemoryBudget::new(64 << 20), &registry, stop.clone())
                .await
                .expect("start");
        let addr = |t| running.addrs.iter().find(|(n, _)| *n == t).expect("addr").1;
        Harness { grpc: addr("grpc"), http: addr("http"), capture, teams, registry, _stop: stop.drop_guard() }
    }

    fn count(&self, name: &str, transport: &str, extra: Option<(&str, &str)>) -> i64 {
        let mut labels = vec![("receiver", "otlp"), ("transport", transport)];
        labels.extend(extra);
        self.registry.value(name, &labels).unwrap_or(0)
    }
}

fn traces() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: "s".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// A rustls client configuration trusting `ca_pem`, with an optional client certificate.
fn rustls_client(ca_pem: &str, identity: Option<&(String, String)>) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().expect("pem");
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
            b.with_client_auth_cert(certs, key).expect("client cert")
        }
        None => b.with_no_client_auth(),
    }
}

/// POSTs a trace request over HTTPS (a new connection each time), returning the status,
/// headers and body, or the connection error as text.
async fn https_post(
    addr: SocketAddr,
    tls: rustls::ClientConfig,
    headers: &[(&str, &str)],
) -> Result<(u16, http::HeaderMap, String), String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https);
    post_with(&client, &format!("https://localhost:{}/v1/traces", addr.port()), headers).await
}

async fn post_with<C>(
    client: &Client<C, Full<Bytes>>,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, http::HeaderMap, String), String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut req = http::Request::post(url).header("content-type", "application/x-protobuf");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(traces().encode_to_vec()))).expect("request");
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, h, String::from_utf8_lossy(&body).into_owned()))
}

/// A tonic channel to the gRPC port over TLS.
async fn grpc_tls(addr: SocketAddr, ca_pem: &str, identity: Option<&(String, String)>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name("localhost");
    if let Some((c, k)) = identity {
        tls = tls.identity(Identity::from_pem(c, k));
    }
    Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("uri")
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn grpc_export(ch: Channel, token: Option<&str>) -> Result<(), tonic::Status> {
    let mut req = tonic::Request::new(traces());
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("metadata"));
    }
    TraceServiceClient::new(ch).export(req).await.map(|_| ())
}

fn tls_yaml(dir: &Path, name: &str, client_ca: bool, reload: &str) -> String {
    let mut s = format!(
        "    tls:\n      cert_file: {d}/{name}.pem\n      key_file: {d}/{name}-key.pem\n      reload_interval: {reload}\n",
        d = dir.display()
    );
    if client_ca {
        s.push_str(&format!("      client_ca_file: {}/client-ca.pem\n", dir.display()));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// TLS

/// TLS on both transports: a client that trusts the CA succeeds over gRPC and HTTP/1.1 + h2; a
/// plain-text client is refused on both ports and the failed handshakes are counted.
#[tokio::test]
async fn tls_handshake_and_plain_text_refused() {
    let dir = temp_dir("tls");
    let ca = Ca::new("server CA");
    let (cert, key) = ca.leaf(false);
    std::fs::write(dir.join("server.pem"), &cert).expect("write");
    std::fs::write(dir.join("server-key.pem"), &key).expect("write");
    let t = tls_yaml(&dir, "server", false, "0s");
    let h = Harness::start(&t, &t).await;

    let ch = grpc_tls(h.grpc, &ca.pem(), None).await.expect("TLS channel");
    grpc_export(ch, None).await.expect("export over TLS");
    let (st, _, _) = https_post(h.http, rustls_client(&ca.pem(), None), &[]).await.expect("HTTPS");
    assert_eq!(st, 200);
    assert_eq!(wait_len(&h, 2).await, 2);

    // Plain text to the TLS ports.
    let plain = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let r = post_with(&plain, &format!("http://{}/v1/traces", h.http), &[]).await;
    assert!(r.is_err(), "plain HTTP to a TLS port must fail: {r:?}");
    let r = match Channel::from_shared(format!("http://{}", h.grpc)).expect("uri").connect().await {
        Ok(ch) => grpc_export(ch, None).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(r.is_err(), "plain gRPC to a TLS port must fail");
    // A client that does not trust the server's CA fails too.
    let other = Ca::new("other CA");
    assert!(https_post(h.http, rustls_client(&other.pem(), None), &[]).await.is_err());
    let hs = |t| h.count("sightline_receiver_tls_handshake_errors_total", t, None);
    assert!(wait(|| hs("http") >= 2 && hs("grpc") >= 1).await, "handshake errors counted");
    h.registry.assert_compliant();
    let _ = std::fs::remove_dir_all(dir);
}

/// Mutual TLS: with `client_ca_file`, a client certificate signed by that CA is required;
/// none, or one from another CA, fails the handshake (gRPC and HTTP).
#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_ca() {
    let dir = temp_dir("mtls");
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let (cert, key) = server_ca.leaf(false);
    std::fs::write(dir.join("server.pem"), &cert).expect("write");
    std::fs::write(dir.join("server-key.pem"), &key).expect("write");
    std::fs::write(dir.join("client-ca.pem"), client_ca.pem()).expect("write");
    let t = tls_yaml(&dir, "server", true, "0s");
    let h = Harness::start(&t, &t).await;
    let good = client_ca.leaf(true);
    let rogue = Ca::new("client CA").leaf(true); // same name, another key

    let ch = grpc_tls(h.grpc, &server_ca.pem(), Some(&good)).await.expect("mTLS channel");
    grpc_export(ch, None).await.expect("valid client certificate");
    let (st, _, _) = https_post(h.http, rustls_client(&server_ca.pem(), Some(&good)), &[]).await.expect("HTTPS");
    assert_eq!(st, 200);

    for id in [None, Some(&rogue)] {
        let r = match grpc_tls(h.grpc, &server_ca.pem(), id).await {
            Ok(ch) => grpc_export(ch, None).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        assert!(r.is_err(), "gRPC without a valid client certificate must fail ({})", id.is_some());
        let r = https_post(h.http, rustls_client(&server_ca.pem(), id), &[]).await;
        assert!(r.is_err(), "HTTPS without a valid client certificate must fail: {r:?}");
    }
    assert_eq!(wait_len(&h, 2).await, 2, "only the two requests with a valid certificate arrive");
    let _ = std::fs::remove_dir_all(dir);
}

/// Replacing the certificate and key files: new connections get the new certificate (a
/// client trusting only the new CA succeeds, one trusting only the old CA now fails); a
/// broken replacement keeps the certificate in use and is counted.
#[tokio::test]
async fn certificate_reload() {
    let dir = temp_dir("reload");
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let (cert, key) = old_ca.leaf(false);
    std::fs::write(dir.join("server.pem"), &cert).expect("write");
    std::fs::write(dir.join("server-key.pem"), &key).expect("write");
    let t = tls_yaml(&dir, "server", false, "50ms");
    let h = Harness::start(&t, &t).await;
    assert_eq!(https_post(h.http, rustls_client(&old_ca.pem(), None), &[]).await.expect("old").0, 200);

    // A broken key first: the old certificate stays.
    write(&dir.join("server-key.pem"), "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
    assert!(wait(|| h.count("sightline_receiver_tls_reload_errors_total", "http", None) >= 1).await);
    assert_eq!(https_post(h.http, rustls_client(&old_ca.pem(), None), &[]).await.expect("still old").0, 200);

    let (cert, key) = new_ca.leaf(false);
    write(&dir.join("server.pem"), &cert);
    write(&dir.join("server-key.pem"), &key);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if https_post(h.http, rustls_client(&new_ca.pem(), None), &[]).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(https_post(h.http, rustls_client(&old_ca.pem(), None), &[]).await.is_err(), "old CA no longer works");
    let ch = grpc_tls(h.grpc, &new_ca.pem(), None).await.expect("gRPC with the new certificate");
    grpc_export(ch, None).await.expect("export");
    assert!(h.count("sightline_receiver_tls_reloads_total", "grpc", None) >= 1);
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Bearer tokens

const TOKENS: &str =
    "tokens:\n  - team: payments\n    token: pay-Secret-1111\n  - team: search\n    token: \"4242424242\"\n";

fn auth_yaml(dir: &Path, extra: &str) -> String {
    format!("    auth:\n      tokens_file: {}/tokens.yaml\n      reload_interval: 50ms\n{extra}", dir.display())
}

/// No token or a wrong one: HTTP 401 with `WWW-Authenticate: Bearer`, gRPC UNAUTHENTICATED;
/// counted by reason; nothing reaches the pipeline. A valid token passes, and with
/// `bind_ownership_to_token` its team travels with the payload.
#[tokio::test]
async fn bearer_tokens_are_required() {
    let dir = temp_dir("auth");
    std::fs::write(dir.join("tokens.yaml"), TOKENS).expect("write");
    let grpc = auth_yaml(&dir, "      bind_ownership_to_token: true\n      on_team_mismatch: reattribute\n");
    let h = Harness::start(&grpc, &auth_yaml(&dir, "")).await;
    let plain = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url = format!("http://{}/v1/traces", h.http);

    let (st, hd, body) = post_with(&plain, &url, &[]).await.expect("response");
    assert_eq!(st, 401, "{body}");
    assert_eq!(hd["www-authenticate"], "Bearer");
    let (st, hd, _) = post_with(&plain, &url, &[("authorization", "Bearer wrong-token")]).await.expect("response");
    assert_eq!(st, 401);
    assert!(hd["www-authenticate"].to_str().expect("ascii").contains("invalid_token"));
    let (st, _, _) = post_with(&plain, &url, &[("authorization", "Basic cGF5OnNlY3JldA==")]).await.expect("resp");
    assert_eq!(st, 401);
    let (st, _, _) = post_with(&plain, &url, &[("authorization", "Bearer pay-Secret-1111")]).await.expect("resp");
    assert_eq!(st, 200);

    let ch = Channel::from_shared(format!("http://{}", h.grpc)).expect("uri").connect().await.expect("channel");
    let e = grpc_export(ch.clone(), None).await.expect_err("no token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = grpc_export(ch.clone(), Some("pay-Secret-111")).await.expect_err("wrong token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    grpc_export(ch.clone(), Some("4242424242")).await.expect("valid token");

    assert_eq!(wait_len(&h, 2).await, 2, "only the two authenticated requests arrive");
    let teams = h.teams.0.lock().expect("lock").clone();
    assert_eq!(teams.len(), 2);
    assert!(teams.contains(&None), "HTTP does not bind: {teams:?}");
    assert!(
        teams.contains(&Some(BoundTeam { team: "search".into(), on_mismatch: TeamMismatch::Reattribute })),
        "{teams:?}"
    );
    let refused = |t, r| h.count("sightline_auth_refused_requests_total", t, Some(("reason", r)));
    assert_eq!(refused("http", "missing_token"), 2);
    assert_eq!(refused("http", "invalid_token"), 1);
    assert_eq!(refused("grpc", "missing_token"), 1);
    assert_eq!(refused("grpc", "invalid_token"), 1);
    h.registry.assert_compliant();
    let _ = std::fs::remove_dir_all(dir);
}

/// The tokens file reloads: a new token works and a removed one stops working; a broken file
/// keeps the previous tokens (counted). No token, valid or not, appears in the logs (captured
/// at debug level), in `/metrics` or in a response.
#[tokio::test]
async fn tokens_reload_and_never_leak() {
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = {
        let logs = logs.clone();
        move || LogWriter(logs.clone())
    };
    let subscriber = tracing_subscriber::fmt().with_max_level(tracing::Level::DEBUG).with_writer(writer).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = temp_dir("tokens");
    std::fs::write(dir.join("tokens.yaml"), TOKENS).expect("write");
    let a = auth_yaml(&dir, "");
    let h = Harness::start(&a, &a).await;
    let plain = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url = format!("http://{}/v1/traces", h.http);
    let post = |token: &'static str| {
        let (plain, url) = (plain.clone(), url.clone());
        async move {
            let auth = format!("Bearer {token}");
            post_with(&plain, &url, &[("authorization", &auth)]).await.expect("response")
        }
    };
    let mut bodies = String::new();
    let (st, _, b) = post("not-A-token-7777").await;
    assert_eq!(st, 401);
    bodies.push_str(&b);

    // A broken file (with a secret in it): the old tokens stay, the error is counted.
    write(&dir.join("tokens.yaml"), "tokens:\n  - {team: x, token: broken-Secret-5555, extra: 1}\n");
    assert!(wait(|| h.count("sightline_auth_tokens_reload_errors_total", "http", None) >= 1).await);
    assert_eq!(post("pay-Secret-1111").await.0, 200);

    // Rotation: a new token for payments, the old one removed.
    write(&dir.join("tokens.yaml"), "tokens:\n  - team: payments\n    token: rotated-Secret-9999\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    while post("rotated-Secret-9999").await.0 != 200 {
        assert!(Instant::now() < deadline, "the new token was never accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (st, _, b) = post("pay-Secret-1111").await;
    assert_eq!(st, 401, "a removed token is refused");
    bodies.push_str(&b);
    let e = grpc_export(
        Channel::from_shared(format!("http://{}", h.grpc)).expect("uri").connect().await.expect("channel"),
        Some("4242424242"),
    )
    .await
    .expect_err("removed");
    bodies.push_str(e.message());
    assert!(h.count("sightline_auth_tokens_reloads_total", "grpc", None) >= 1);

    let logs = String::from_utf8_lossy(&logs.lock().expect("lock")).into_owned();
    assert!(logs.contains("tokens file reload failed"), "the reload error is logged:\n{logs}");
    assert!(logs.contains("tokens entry 1: unknown key \"extra\""), "and says what is wrong:\n{logs}");
    let metrics = h.registry.render();
    for secret in ["pay-Secret", "4242424242", "not-A-token", "broken-Secret", "rotated-Secret"] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
        assert!(!bodies.contains(secret), "{secret} in a response: {bodies}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A missing or invalid tokens file stops the receiver from starting, naming the option.
#[tokio::test]
async fn bad_tokens_file_fails_start() {
    let dir = temp_dir("badtokens");
    std::fs::write(
        dir.join("tokens.yaml"),
        "tokens:\n  - {team: a, token: tok-Secret-3333}\n  - {team: b, token: tok-Secret-3333}\n",
    )
    .expect("write");
    let yaml = format!(
        "protocols:\n  http:\n    endpoint: 127.0.0.1:0\n    auth:\n      tokens_file: {}/tokens.yaml\n",
        dir.display()
    );
    let cfg: OtlpReceiverConfig = serde_yaml_ng::from_str(&yaml).expect("config");
    let errs = cfg.check_files();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "protocols.http.auth.tokens_file");
    assert!(errs[0].1.contains("entries 1 and 2 have the same token") && !errs[0].1.contains("Secret"), "{errs:?}");
    let consumers = Consumers::default();
    let r = sightline_otlp::start(
        "otlp",
        &cfg,
        consumers,
        MemoryBudget::new(1 << 20),
        &Registry::new(),
        CancellationToken::new(),
    )
    .await;
    let e = r.err().expect("start refused");
    assert!(e.to_string().starts_with("protocols.http.auth.tokens_file: "), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Polls `f` (bounded: 20 s), returning whether it became true.
async fn wait(f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Waits (bounded) until `n` requests were captured; returns how many were.
async fn wait_len(h: &Harness, n: usize) -> usize {
    wait(|| h.capture.0.lock().expect("lock").len() >= n).await;
    // Give a request that should not have arrived a chance to show up.
    tokio::time::sleep(Duration::from_millis(50)).await;
    h.capture.0.lock().expect("lock").len()
}
