//! Securing the receiver, end to end: the real binary with TLS, mutual TLS and bearer tokens
//! bound to ownership, the Rust SDK (`opentelemetry-otlp` over tonic with rustls) and tonic's
//! generated client as clients, a real OTLP/gRPC backend; and Sightline's own `otlp` exporter
//! (client certificate, CA, bearer token from a file) talking to a receiver that requires
//! them. Certificates are generated here (rcgen).

mod common;

use common::*;
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        Ca(CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("CA"))
    }

    /// Writes `<name>.pem` and `<name>-key.pem` for localhost/127.0.0.1.
    fn leaf(&self, dir: &Path, name: &str, client: bool) -> (String, String) {
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        p.extended_key_usages =
            vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.0).expect("sign");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).expect("write");
        (cert.pem(), key.serialize_pem())
    }
}

const TOKENS: &str =
    "tokens:\n  - team: payments\n    token: pay-e2e-Secret-1\n  - team: search\n    token: search-e2e-Secret-2\n";

fn config(sink_port: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
        tls:
          cert_file: {{dir}}/server.pem
          key_file: {{dir}}/server-key.pem
          client_ca_file: {{dir}}/client-ca.pem
          min_version: 1.2
        auth:
          tokens_file: {{dir}}/tokens.yaml
          bind_ownership_to_token: true
      http:
        endpoint: 127.0.0.1:{{http}}
        tls:
          cert_file: {{dir}}/server.pem
          key_file: {{dir}}/server-key.pem
        auth:
          tokens_file: {{dir}}/tokens.yaml
          bind_ownership_to_token: true
          on_team_mismatch: reattribute
processors:
  ownership:
    catalog: ["{{dir}}/catalog"]
exporters:
  otlp/backend:
    endpoint: 127.0.0.1:{sink_port}
    tls:
      insecure: true
    sending_queue:
      batch:
        flush_timeout: 20ms
service:
  telemetry:
    logs:
      level: debug
    metrics:
      address: 127.0.0.1:{{admin}}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [ownership]
      exporters: [otlp/backend]
"#
    )
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn request(service: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: "op".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// (service.name, owner.team, owner.source) of every resource the backend received.
fn owners(sink: &Sink) -> Vec<(String, String, String)> {
    sink.traces
        .lock()
        .expect("lock")
        .iter()
        .flat_map(|r| &r.resource_spans)
        .map(|rs| {
            let a = &rs.resource.as_ref().expect("resource").attributes;
            let g = |k| attr(a, k).unwrap_or_default();
            (g("service.name"), g("owner.team"), g("owner.source"))
        })
        .collect()
}

/// The golden path of a secured gateway: the SDK over mutual TLS with its team's token; a
/// token for `search` sending the `checkout` service (catalog: `payments`) is refused with
/// PERMISSION_DENIED naming the service and both teams on gRPC (reject), and re-attributed on
/// HTTP (reattribute); an unknown service goes to the token's team; no token or no client
/// certificate gets nothing through; the tokens never appear in the process's logs or metrics.
#[test]
fn sdk_over_mtls_with_token_bound_to_ownership() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let (sink, sink_port) = Sink::start(&rt);
    let dir = catalog_dir();
    let d = dir.path();
    std::fs::write(d.join("tokens.yaml"), TOKENS).expect("write");
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    server_ca.leaf(d, "server", false);
    std::fs::write(d.join("client-ca.pem"), client_ca.0.pem()).expect("write");
    let (ccert, ckey) = client_ca.leaf(d, "client", true);
    let mut sl = Sightline::start(d, &config(sink_port));
    let _guard = rt.enter();

    let tls = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(server_ca.0.pem()))
            .identity(Identity::from_pem(&ccert, &ckey))
            .domain_name("localhost")
    };
    let metadata = |token: &str| {
        let mut m = tonic::metadata::MetadataMap::new();
        m.insert("authorization", format!("Bearer {token}").parse().expect("metadata"));
        m
    };

    // The Rust SDK, token of `search`, a service the catalog gives to `search` by rule and one
    // it does not know.
    for service in ["search-api", "brand-new-svc"] {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("https://localhost:{}", sl.grpc))
            .with_tls_config(tls())
            .with_metadata(metadata("search-e2e-Secret-2"))
            .build()
            .expect("exporter");
        let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service).build())
            .with_simple_exporter(exporter)
            .build();
        tp.tracer("e2e").in_span("op", |_| {});
        tp.force_flush().expect("flush");
    }
    assert!(wait_until(20, || owners(&sink).len() >= 2), "{}", sl.stderr());
    let got = owners(&sink);
    assert!(got.contains(&("search-api".into(), "search".into(), "rule:1".into())), "{got:?}");
    assert!(got.contains(&("brand-new-svc".into(), "search".into(), "token".into())), "{got:?}");

    // gRPC (reject): `search` sending `checkout` is PERMISSION_DENIED; no token is
    // UNAUTHENTICATED; no client certificate fails the connection.
    let endpoint = || tonic::transport::Channel::from_shared(format!("https://localhost:{}", sl.grpc)).expect("uri");
    let status = rt.block_on(async {
        let ch = endpoint().tls_config(tls()).expect("tls").connect().await.expect("connect");
        let mut req = tonic::Request::new(request("checkout"));
        *req.metadata_mut() = metadata("search-e2e-Secret-2");
        let denied = TraceServiceClient::new(ch.clone()).export(req).await.expect_err("denied");
        let anonymous = TraceServiceClient::new(ch).export(request("checkout")).await.expect_err("no token");
        let no_cert = async {
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(server_ca.0.pem()))
                .domain_name("localhost");
            let ch = endpoint().tls_config(tls).expect("tls").connect().await.map_err(|e| e.to_string())?;
            TraceServiceClient::new(ch).export(request("checkout")).await.map_err(|e| e.to_string())
        }
        .await;
        (denied, anonymous, no_cert.is_err())
    });
    let (denied, anonymous, no_cert_failed) = status;
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let m = denied.message();
    assert!(m.contains("\"checkout\"") && m.contains("\"payments\"") && m.contains("\"search\""), "{m}");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    assert!(no_cert_failed, "mutual TLS: a client without a certificate must be refused");

    // HTTP (reattribute), with the SDK's HTTP exporter over TLS... (the blocking reqwest client
    // has no custom-CA option here), so with hyper over rustls.
    let https = {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(server_ca.0.pem().as_bytes()) {
            roots.add(c.expect("pem")).expect("root");
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(cfg).https_only().enable_http1().build()
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Full<bytes::Bytes>>(https);
    let post = |token: &str| {
        use prost::Message as _;
        let req = http::Request::post(format!("https://localhost:{}/v1/traces", sl.http))
            .header("content-type", "application/x-protobuf")
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(request("checkout").encode_to_vec())))
            .expect("request");
        rt.block_on(client.request(req)).expect("response").status().as_u16()
    };
    assert_eq!(post("pay-e2e-Secret-1"), 200, "payments sending its own service");
    assert_eq!(post("search-e2e-Secret-2"), 200, "re-attributed");
    assert_eq!(post("nope"), 401);
    assert!(wait_until(20, || owners(&sink).len() >= 4));
    let got = owners(&sink);
    assert!(got.contains(&("checkout".into(), "payments".into(), "service".into())), "{got:?}");
    assert!(got.contains(&("checkout".into(), "search".into(), "token".into())), "{got:?}");
    assert_eq!(got.len(), 4, "nothing refused arrived: {got:?}");

    let metric = |sl: &mut Sightline, s: &str| sl.metric(s).unwrap_or(0.0);
    let refused = r#"sightline_auth_refused_requests_total{receiver="otlp",transport="grpc",reason="team_mismatch"}"#;
    assert_eq!(metric(&mut sl, refused), 1.0);
    let reattributed = r#"sightline_ownership_team_mismatch_resources_total{processor="ownership",signal="traces",team="search",catalog_team="payments",action="reattributed"}"#;
    assert_eq!(metric(&mut sl, reattributed), 1.0);
    let (_, metrics) = sl.get("/metrics").expect("metrics");
    let logs = sl.stderr();
    for secret in ["e2e-Secret", "nope"] {
        assert!(!metrics.contains(secret), "{secret} in /metrics");
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}

/// Longer than the exporter's credential re-check period (1 s), so a broken file is seen twice.
const RECHECK_WAIT: Duration = Duration::from_millis(1200);

/// Sightline's own `otlp` exporter with a client certificate, a custom CA and a bearer token
/// read from a file, sending to a receiver that requires all three; rotating the token (the
/// receiver's tokens file and the exporter's token file) is picked up by both without a
/// restart. Without the client certificate the send fails.
#[test]
fn exporter_mtls_and_token_file() {
    use sightline_core::{Batch, MemoryBudget, Payload, Pipeline, Registry, Signal};
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    server_ca.leaf(d, "server", false);
    client_ca.leaf(d, "client", true);
    std::fs::write(d.join("server-ca.pem"), server_ca.0.pem()).expect("write");
    std::fs::write(d.join("client-ca.pem"), client_ca.0.pem()).expect("write");
    std::fs::write(d.join("tokens.yaml"), TOKENS).expect("write");
    std::fs::write(d.join("token"), "pay-e2e-Secret-1\n").expect("write");

    let _guard = rt.enter();
    let yaml = format!(
        "protocols:\n  grpc:\n    endpoint: 127.0.0.1:0\n    tls: {{cert_file: {d}/server.pem, key_file: {d}/server-key.pem, client_ca_file: {d}/client-ca.pem}}\n    auth: {{tokens_file: {d}/tokens.yaml, reload_interval: 50ms}}\n",
        d = d.display()
    );
    let cfg: sightline_otlp::OtlpReceiverConfig = serde_yaml_ng::from_str(&yaml).expect("receiver config");
    let registry = Registry::new();
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    struct Count(Arc<std::sync::atomic::AtomicUsize>);
    impl sightline_core::Processor for Count {
        fn process(&self, p: Payload) -> Result<Payload, sightline_core::ProcessError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(p)
        }
    }
    let pipeline = Pipeline {
        id: "traces".into(),
        signal: Signal::Traces,
        processors: vec![Arc::new(Count(received.clone()))],
        exporters: vec![],
    };
    let consumers = sightline_otlp::Consumers { traces: vec![Arc::new(pipeline)], ..Default::default() };
    let stop = tokio_util::sync::CancellationToken::new();
    let running = rt
        .block_on(sightline_otlp::start("otlp", &cfg, consumers, MemoryBudget::new(16 << 20), &registry, stop.clone()))
        .expect("receiver");
    let addr = running.addrs[0].1;

    let exporter_yaml = format!(
        "endpoint: https://localhost:{port}\ntls: {{ca_file: {d}/server-ca.pem, cert_file: {d}/client.pem, key_file: {d}/client-key.pem}}\nauth: {{bearer_token_file: {d}/token}}\n",
        port = addr.port(),
        d = d.display()
    );
    let ecfg: sightline_exporters::OtlpConfig = serde_yaml_ng::from_str(&exporter_yaml).expect("exporter config");
    assert!(ecfg.validate().is_empty(), "{:?}", ecfg.validate());
    assert!(!format!("{ecfg:?}").contains("Secret"), "the config's Debug holds a path, not the token");
    let exporter_registry = Registry::new();
    let (sender, _) =
        sightline_exporters::build_otlp("otlp/gw", Signal::Traces, &ecfg, &exporter_registry).expect("build");
    let batch = {
        use prost::Message as _;
        let mut b = Batch::new(Signal::Traces);
        b.push(Payload::new(Signal::Traces, request("checkout").encode_to_vec().into(), 1, None));
        b
    };
    rt.block_on(sender.send(&batch)).expect("mTLS + token from file");
    assert_eq!(received.load(std::sync::atomic::Ordering::Relaxed), 1);

    // Rotation: the receiver accepts only the new token, the exporter's file gets it.
    std::fs::write(d.join("tokens.yaml"), "tokens:\n  - {team: payments, token: rotated-e2e-Secret-3}\n")
        .expect("write");
    let refused = wait_until(20, || rt.block_on(sender.send(&batch)).is_err());
    assert!(refused, "the receiver never dropped the old token");
    let e = rt.block_on(sender.send(&batch)).expect_err("old token");
    assert!(e.message.contains("UNAUTHENTICATED") && !e.retryable, "{e:?}");
    std::fs::write(d.join("token"), "rotated-e2e-Secret-3\n").expect("write");
    let ok = wait_until(20, || rt.block_on(sender.send(&batch)).is_ok());
    assert!(ok, "the exporter never picked up the rotated token");
    let text = exporter_registry.render();
    assert!(text.contains("sightline_exporter_credential_reloads_total{exporter=\"otlp/gw\"} 1\n"), "{text}");
    assert!(text.contains("sightline_exporter_credential_reload_errors_total{exporter=\"otlp/gw\"} 0\n"), "{text}");
    // A token file that turns empty keeps the previous token in use, and is counted once.
    std::fs::write(d.join("token"), "").expect("write");
    let counted = wait_until(20, || {
        exporter_registry
            .render()
            .contains("sightline_exporter_credential_reload_errors_total{exporter=\"otlp/gw\"} 1\n")
    });
    assert!(counted, "{}", exporter_registry.render());
    std::thread::sleep(crate::RECHECK_WAIT);
    rt.block_on(sender.send(&batch)).expect("the previous token stays in use");
    let text = exporter_registry.render();
    assert!(text.contains("sightline_exporter_credential_reload_errors_total{exporter=\"otlp/gw\"} 1\n"), "{text}");
    assert!(!text.contains("Secret"), "{text}");
    std::fs::write(d.join("token"), "rotated-e2e-Secret-3\n").expect("write");
    let err = {
        let mut c = ecfg.clone();
        c.tls.cert_file = None;
        c.tls.key_file = None;
        let (s, _) =
            sightline_exporters::build_otlp("otlp/nocert", Signal::Traces, &c, &sightline_core::Registry::new())
                .expect("build");
        rt.block_on(s.send(&batch)).expect_err("no client certificate")
    };
    assert!(!err.message.contains("Secret"), "{}", err.message);
    stop.cancel();
    drop(running);
    std::thread::sleep(Duration::from_millis(10));
}
