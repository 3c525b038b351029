//! `protocols.{grpc,http}.tls`: TLS and mutual TLS on the receiver's listeners (rustls with the
//! ring provider, as the exporters), with the certificate, key and client CA reloaded when
//! their files change.
//!
//! The listener holds the current `ServerConfig` behind an atomic pointer: each accepted
//! connection handshakes with the configuration in use at that moment, so a reload affects new
//! connections only (established ones keep their session). A reload that fails (unreadable
//! file, a key that does not match the certificate, no certificate in the CA file) keeps the
//! previous configuration, logs the error and counts it.

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Deserializer};
use sightline_core::Counter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `protocols.{grpc,http}.tls`: the collector's `configtls` server settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM file with the server certificate chain, leaf first (required).
    pub cert_file: PathBuf,
    /// PEM file with the server certificate's private key (PKCS#8, PKCS#1 or SEC1; required).
    pub key_file: PathBuf,
    /// PEM file with the CA certificates that client certificates must chain to (default:
    /// none). When set, a client must present a valid certificate (mutual TLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Lowest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// How often the files are checked for changes; changed files are loaded for new
    /// connections (default 10s; `0s` disables reloading).
    #[serde(default = "default_reload", with = "humantime_serde")]
    pub reload_interval: Duration,
}

pub(crate) fn default_reload() -> Duration {
    Duration::from_secs(10)
}

/// `min_version`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `min_version: 1.2` without quotes is a YAML float: accept both spellings.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            F(f64),
        }
        let v = match Raw::deserialize(d)? {
            Raw::S(s) => s,
            Raw::F(f) => format!("{f}"),
        };
        match v.as_str() {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            other => {
                Err(serde::de::Error::custom(format!("unsupported TLS version {other:?}: use \"1.2\" or \"1.3\"")))
            }
        }
    }
}

impl ServerTlsConfig {
    /// Checks without I/O; `prefix` is the key of this section (`protocols.grpc.tls`).
    pub(crate) fn validate(&self, prefix: &str, out: &mut Vec<(String, String)>) {
        for (k, p) in [("cert_file", Some(&self.cert_file)), ("key_file", Some(&self.key_file))]
            .into_iter()
            .chain([("client_ca_file", self.client_ca_file.as_ref())])
        {
            if p.is_some_and(|p| p.as_os_str().is_empty()) {
                out.push((format!("{prefix}.{k}"), "must not be empty".into()));
            }
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.cert_file.clone(), self.key_file.clone()];
        v.extend(self.client_ca_file.clone());
        v
    }
}

/// A TLS configuration error: the option (relative to the `tls` section) and what is wrong.
#[derive(Clone, Debug)]
pub struct TlsError {
    pub key: &'static str,
    pub message: String,
}

fn err(key: &'static str, path: &Path, m: impl std::fmt::Display) -> TlsError {
    TlsError { key, message: format!("{}: {m}", path.display()) }
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| err(key, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| err(key, path, e))?;
    if certs.is_empty() {
        return Err(err(key, path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// Reads the files and builds the rustls server configuration, offering `alpn`.
pub fn load(cfg: &ServerTlsConfig, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError { key: "min_version", message: format!("TLS setup failed: {e}") })?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs("client_ca_file", ca)? {
                roots.add(c).map_err(|e| err("client_ca_file", ca, format!("bad CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| err("client_ca_file", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let chain = certs("cert_file", &cfg.cert_file)?;
    let key_pem = std::fs::read(&cfg.key_file).map_err(|e| err("key_file", &cfg.key_file, e))?;
    // The error of a key that does not parse says where, never what the key holds.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| err("key_file", &cfg.key_file, e))?;
    let mut sc = builder
        .with_single_cert(chain, key)
        .map_err(|e| err("key_file", &cfg.key_file, format!("does not match cert_file or is unusable: {e}")))?;
    sc.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(sc)
}

/// The TLS side of one listener: the configuration in use, swapped on reload.
pub(crate) struct TlsListener {
    current: Arc<ArcSwap<ServerConfig>>,
    /// Failed handshakes (plain text on a TLS port, no or an untrusted client certificate).
    pub handshake_errors: Counter,
}

/// Counters of one listener's TLS reloads.
pub(crate) struct TlsCounters {
    pub reloads: Counter,
    pub reload_errors: Counter,
    pub handshake_errors: Counter,
}

impl TlsListener {
    /// Loads the configuration (an error stops the receiver from starting) and starts its
    /// reload poller.
    pub(crate) fn start(
        id: &str,
        transport: &'static str,
        cfg: &ServerTlsConfig,
        alpn: &'static [&'static [u8]],
        counters: TlsCounters,
        shutdown: CancellationToken,
    ) -> Result<TlsListener, TlsError> {
        let current = Arc::new(ArcSwap::from_pointee(load(cfg, alpn)?));
        let swap = current.clone();
        let c = cfg.clone();
        let rid = id.to_string();
        let TlsCounters { reloads, reload_errors, handshake_errors } = counters;
        crate::watch::spawn_poller(cfg.reload_interval, cfg.files(), shutdown, move || match load(&c, alpn) {
            Ok(sc) => {
                swap.store(Arc::new(sc));
                reloads.inc();
                tracing::info!(receiver = %rid, transport, "TLS certificate reloaded");
            }
            Err(e) => {
                reload_errors.inc();
                tracing::warn!(receiver = %rid, transport, key = e.key, error = %e.message,
                    "TLS reload failed; the previous certificate stays in use");
            }
        });
        Ok(TlsListener { current, handshake_errors })
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }
}
