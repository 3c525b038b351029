//! The `otlp` receiver: OTLP over gRPC (`:4317`) and HTTP (`:4318`), protobuf and JSON,
//! gzip/zstd (and deflate/snappy on HTTP), size limits, and admission against the global
//! memory budget — everything a request meets before it becomes a [`Payload`].
//!
//! The receive path, per request: acquire budget for the body *before* buffering it, read it
//! with a size limit, decompress with a bound, turn JSON into protobuf (once), validate and
//! count with one wire walk ([`sightline_core::wire::inspect`]), drop invalid items as a
//! partial success, then run each pipeline inline (processors, then the zero-copy fan-out).
//! It never decodes a span and never waits on an exporter (unless an exporter is configured
//! with `block_on_overflow`).
//!
//! gRPC is served by hand over hyper's HTTP/2 (unary calls only, which is all OTLP uses): this
//! keeps the request as raw bytes, lets the budget be acquired before the message is buffered,
//! and bounds decompression — none of which a generated tonic service allows.
//!
//! Security, per protocol (`protocols.grpc` / `protocols.http`; every option is documented on
//! [`ServerTlsConfig`] and [`AuthConfig`] and in `docs/configuration.md`):
//! - [`tls`]: TLS and mutual TLS (`cert_file`, `key_file`, `client_ca_file`, `min_version`,
//!   `reload_interval`), reloaded when the files change;
//! - [`auth`]: bearer tokens from a tokens file (`tokens_file`, `reload_interval`), each
//!   mapped to a team, checked before the body is read (401 / `UNAUTHENTICATED`). With
//!   `bind_ownership_to_token` the team travels with the payload
//!   ([`sightline_core::BoundTeam`]) and the `ownership` processor enforces it
//!   (`on_team_mismatch`: `reject` = 403 / `PERMISSION_DENIED`, or `reattribute`).
//!
//! ```yaml
//! protocols:
//!   grpc:
//!     tls: { cert_file: server.pem, key_file: server-key.pem, client_ca_file: ca.pem }
//!     auth: { tokens_file: tokens.yaml, bind_ownership_to_token: true }
//! ```

pub mod auth;
pub mod decompress;
pub mod status;
pub mod tls;

mod server;
mod watch;

use serde::{Deserialize, Deserializer};
use sightline_core::Signal;

pub use auth::AuthConfig;
pub use server::{Consumers, Running, start};
pub use tls::{ServerTlsConfig, TlsVersion};

fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// `receivers.otlp`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// The protocols to serve; at least one. A protocol key with no value (`grpc:`) enables it
    /// with its defaults.
    pub protocols: Protocols,
}

/// `receivers.otlp.protocols`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    /// OTLP/gRPC.
    #[serde(default, deserialize_with = "null_as_default")]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP.
    #[serde(default, deserialize_with = "null_as_default")]
    pub http: Option<HttpConfig>,
}

/// `receivers.otlp.protocols.grpc`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Listen address (default `localhost:4317`).
    pub endpoint: String,
    /// Largest message accepted, compressed and after decompression, in MiB (default 4).
    pub max_recv_msg_size_mib: u64,
    /// Concurrent streams per HTTP/2 connection (default 100).
    pub max_concurrent_streams: u32,
    /// Serve TLS (and require client certificates with `client_ca_file`) instead of plain
    /// text (default: none, plain text).
    pub tls: Option<ServerTlsConfig>,
    /// Require a bearer token from a tokens file (default: none, no authentication).
    pub auth: Option<AuthConfig>,
    /// Pass the request's gRPC metadata on to processors (`from_context: metadata.<key>`), as
    /// the collector's option of the same name (default false).
    pub include_metadata: bool,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "localhost:4317".into(),
            max_recv_msg_size_mib: 4,
            max_concurrent_streams: 100,
            tls: None,
            auth: None,
            include_metadata: false,
        }
    }
}

/// `receivers.otlp.protocols.http`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address (default `localhost:4318`).
    pub endpoint: String,
    /// Largest request body accepted, compressed and after decompression, in bytes
    /// (default 20971520 = 20 MiB).
    pub max_request_body_size: usize,
    /// Path for traces (default `/v1/traces`).
    pub traces_url_path: String,
    /// Path for metrics (default `/v1/metrics`).
    pub metrics_url_path: String,
    /// Path for logs (default `/v1/logs`).
    pub logs_url_path: String,
    /// Serve TLS (and require client certificates with `client_ca_file`) instead of plain
    /// text (default: none, plain text).
    pub tls: Option<ServerTlsConfig>,
    /// Require a bearer token from a tokens file (default: none, no authentication).
    pub auth: Option<AuthConfig>,
    /// Pass the request's headers on to processors (`from_context: metadata.<key>`), as the
    /// collector's option of the same name (default false).
    pub include_metadata: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "localhost:4318".into(),
            max_request_body_size: 20 << 20,
            traces_url_path: "/v1/traces".into(),
            metrics_url_path: "/v1/metrics".into(),
            logs_url_path: "/v1/logs".into(),
            tls: None,
            auth: None,
            include_metadata: false,
        }
    }
}

impl OtlpReceiverConfig {
    /// Checks serde cannot express: (key path relative to the receiver, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        if self.protocols.grpc.is_none() && self.protocols.http.is_none() {
            errs.push(("protocols".into(), "at least one protocol (grpc or http) must be enabled".into()));
        }
        if let Some(g) = &self.protocols.grpc {
            if let Err(e) = check_endpoint(&g.endpoint) {
                errs.push(("protocols.grpc.endpoint".into(), e));
            }
            if g.max_recv_msg_size_mib == 0 {
                errs.push(("protocols.grpc.max_recv_msg_size_mib".into(), "must be at least 1".into()));
            }
            if let Some(t) = &g.tls {
                t.validate("protocols.grpc.tls", &mut errs);
            }
            if let Some(a) = &g.auth {
                a.validate("protocols.grpc.auth", &mut errs);
            }
        }
        if let Some(h) = &self.protocols.http {
            if let Err(e) = check_endpoint(&h.endpoint) {
                errs.push(("protocols.http.endpoint".into(), e));
            }
            if h.max_request_body_size == 0 {
                errs.push(("protocols.http.max_request_body_size".into(), "must be at least 1".into()));
            }
            for (k, p) in [
                ("traces_url_path", &h.traces_url_path),
                ("metrics_url_path", &h.metrics_url_path),
                ("logs_url_path", &h.logs_url_path),
            ] {
                if !p.starts_with('/') {
                    errs.push((format!("protocols.http.{k}"), format!("{p:?} must start with '/'")));
                }
            }
            if let Some(t) = &h.tls {
                t.validate("protocols.http.tls", &mut errs);
            }
            if let Some(a) = &h.auth {
                a.validate("protocols.http.auth", &mut errs);
            }
        }
        errs
    }

    /// Reads the files the configuration names (TLS certificates and keys, tokens files) and
    /// checks them, as `start` would: (key path relative to the receiver, message). Messages
    /// name files and entries, never a token.
    pub fn check_files(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let mut check = |proto: &str, tls: &Option<ServerTlsConfig>, auth: &Option<AuthConfig>| {
            if let Some(t) = tls
                && let Err(e) = tls::load(t, &[])
            {
                errs.push((format!("protocols.{proto}.tls.{}", e.key), e.message));
            }
            if let Some(a) = auth
                && let Err(e) = auth::Tokens::load(&a.tokens_file)
            {
                errs.push((format!("protocols.{proto}.auth.tokens_file"), e));
            }
        };
        if let Some(g) = &self.protocols.grpc {
            check("grpc", &g.tls, &g.auth);
        }
        if let Some(h) = &self.protocols.http {
            check("http", &h.tls, &h.auth);
        }
        errs
    }

    /// Whether any protocol binds ownership to the authenticated team (the pipelines it feeds
    /// then need an `ownership` processor).
    pub fn binds_ownership(&self) -> bool {
        let g = self.protocols.grpc.as_ref().and_then(|g| g.auth.as_ref());
        let h = self.protocols.http.as_ref().and_then(|h| h.auth.as_ref());
        g.into_iter().chain(h).any(|a| a.bind_ownership_to_token)
    }
}

/// A listen address is `host:port` (a name, an IPv4 address or a bracketed IPv6 address).
pub fn check_endpoint(ep: &str) -> Result<(), String> {
    let Some((host, port)) = ep.rsplit_once(':') else {
        return Err(format!("{ep:?} is not host:port"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("{ep:?}: port {port:?} is not a number from 0 to 65535"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("{ep:?}: an IPv6 address must be in brackets, e.g. [::1]:4317"));
    }
    Ok(())
}

/// The JSON codec's own signal enum.
pub(crate) fn json_signal(s: Signal) -> sightline_otlp_json::Signal {
    match s {
        Signal::Traces => sightline_otlp_json::Signal::Traces,
        Signal::Metrics => sightline_otlp_json::Signal::Metrics,
        Signal::Logs => sightline_otlp_json::Signal::Logs,
    }
}
