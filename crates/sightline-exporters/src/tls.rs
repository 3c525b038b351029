//! `tls`, shared by the network exporters, and the one rustls client configuration built from
//! it. Both exporters use the same code (rustls with the ring provider, via hyper-rustls), so
//! that `insecure_skip_verify` and `server_name_override`, which tonic's own TLS settings
//! cannot express, behave the same for gRPC and HTTP.

use crate::BuildError;
use hyper_rustls::{ConfigBuilderExt as _, FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `tls`: how to secure the connection, as in the collector's `configtls` client settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Send plain text instead of TLS (default false). Only read by the `otlp` exporter, for an
    /// endpoint without a scheme: `http://` is always plain text and `https://` always TLS.
    pub insecure: bool,
    /// PEM file with the CA certificates that verify the server (default: none, the system's
    /// trusted roots are used).
    pub ca_file: Option<PathBuf>,
    /// PEM file with the client certificate chain, for mutual TLS (default: none). Needs
    /// `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the client certificate's private key (default: none). Needs `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate, without verifying its chain or name (default false).
    /// Encrypts but does not authenticate: for tests only.
    pub insecure_skip_verify: bool,
    /// The name the server certificate is verified against, and sent as SNI (default: none,
    /// the endpoint's host).
    pub server_name_override: Option<String>,
}

impl TlsConfig {
    /// Checks that need no I/O; keys are relative to the exporter (`tls.key_file`).
    pub fn validate(&self, out: &mut Vec<(String, String)>) {
        let empty = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str().is_empty());
        for (key, p) in
            [("tls.ca_file", &self.ca_file), ("tls.cert_file", &self.cert_file), ("tls.key_file", &self.key_file)]
        {
            if empty(p) {
                out.push((key.into(), "must not be empty (remove the key to use the default)".into()));
            }
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => out.push(("tls.key_file".into(), "required when tls.cert_file is set".into())),
            (None, Some(_)) => out.push(("tls.cert_file".into(), "required when tls.key_file is set".into())),
            _ => {}
        }
        if let Some(name) = &self.server_name_override
            && ServerName::try_from(name.as_str()).is_err()
        {
            out.push(("tls.server_name_override".into(), format!("{name:?} is not a valid DNS name or IP address")));
        }
    }

    /// The rustls client configuration (reads the certificate files). ALPN is set by the
    /// connector.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, BuildError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| BuildError::invalid("tls", format!("TLS setup failed: {e}")))?;
        let builder = if self.insecure_skip_verify {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        } else if let Some(ca) = &self.ca_file {
            let pem = read("tls.ca_file", ca)?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| BuildError::invalid("tls.ca_file", format!("{}: {e}", ca.display())))?;
                roots.add(cert).map_err(|e| {
                    BuildError::invalid("tls.ca_file", format!("{}: bad certificate: {e}", ca.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(BuildError::invalid("tls.ca_file", format!("{}: no PEM certificate found", ca.display())));
            }
            builder.with_root_certificates(roots)
        } else {
            builder.with_native_roots().map_err(|e| {
                BuildError::invalid("tls.ca_file", format!("no usable system CA certificates ({e}); set tls.ca_file"))
            })?
        };
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let cert_pem = read("tls.cert_file", cert)?;
                let certs = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| BuildError::invalid("tls.cert_file", format!("{}: {e}", cert.display())))?;
                if certs.is_empty() {
                    return Err(BuildError::invalid(
                        "tls.cert_file",
                        format!("{}: no PEM certificate found", cert.display()),
                    ));
                }
                let key_pem = read("tls.key_file", key)?;
                let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| BuildError::invalid("tls.key_file", format!("{}: {e}", key.display())))?;
                builder
                    .with_client_auth_cert(certs, key_der)
                    .map_err(|e| BuildError::invalid("tls.key_file", format!("client certificate rejected: {e}")))
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }

    /// An HTTPS connector (plain `http://` URIs pass through) offering HTTP/2, and HTTP/1.1
    /// when `http1`. Without `tls_needed` (a plain-text endpoint) the certificate files and the
    /// system roots are not read at all.
    pub fn connector(&self, tls_needed: bool, http1: bool) -> Result<HttpsConnector<HttpConnector>, BuildError> {
        self.connector_over(tls_needed, http1, http_connector())
    }

    /// [`TlsConfig::connector`] over the given TCP connector ([`http_connector`]'s settings
    /// and a connect timeout, say).
    pub(crate) fn connector_over(
        &self,
        tls_needed: bool,
        http1: bool,
        http: HttpConnector,
    ) -> Result<HttpsConnector<HttpConnector>, BuildError> {
        let config = if tls_needed {
            self.client_config()?
        } else {
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| BuildError::invalid("tls", format!("TLS setup failed: {e}")))?
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http();
        let builder = match &self.server_name_override {
            Some(name) => {
                let name = ServerName::try_from(name.clone())
                    .map_err(|e| BuildError::invalid("tls.server_name_override", e.to_string()))?;
                builder.with_server_name_resolver(FixedServerNameResolver::new(name))
            }
            None => builder,
        };
        let builder = if http1 { builder.enable_all_versions() } else { builder.enable_http2() };
        Ok(builder.wrap_connector(http))
    }
}

/// The TCP connector under TLS.
pub(crate) fn http_connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::Io { key: key.into(), path: path.to_path_buf(), source })
}

/// `insecure_skip_verify`: any certificate is accepted; handshake signatures are still checked
/// so that the connection is at least consistent with the presented certificate.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
