//! The `health_check` extension, as the collector contrib's `healthcheckextension`: an HTTP
//! endpoint that answers 200 once the pipelines run and 503 before that and during shutdown,
//! with the collector's JSON body (`status`, `upSince`, `uptime`) or the configured
//! `response_body` strings.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `extensions.health_check`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Listen address (default `localhost:13133`, as in the collector).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// The path answered (default `/`); any other path is 404.
    #[serde(default = "default_path")]
    pub path: String,
    /// Bodies to answer instead of the JSON status.
    #[serde(default)]
    pub response_body: Option<ResponseBody>,
    /// Accepted and ignored, as in the collector (its pipeline check never worked there).
    #[serde(default)]
    pub check_collector_pipeline: Option<serde_yaml_ng::Value>,
    /// The collector's opt-in to its v2 behaviour (per-component status): not supported.
    #[serde(default)]
    pub use_v2: bool,
}

/// `response_body`: the body of a healthy (200) and an unhealthy (503) answer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseBody {
    #[serde(default)]
    pub healthy: String,
    #[serde(default)]
    pub unhealthy: String,
}

fn default_endpoint() -> String {
    "localhost:13133".into()
}

fn default_path() -> String {
    "/".into()
}

impl HealthCheckConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        if let Err(e) = sightline_otlp::check_endpoint(&self.endpoint) {
            errs.push(("endpoint".into(), e));
        }
        if self.use_v2 {
            errs.push((
                "use_v2".into(),
                "the collector's v2 health check (per-component status, /status and /config) is not supported; \
                 remove use_v2 for the classic endpoint"
                    .into(),
            ));
        }
        if !self.path.starts_with('/') {
            errs.push(("path".into(), format!("{:?} must start with /", self.path)));
        }
        errs
    }
}

#[derive(Clone)]
struct Endpoint {
    ready: Arc<AtomicBool>,
    started: (SystemTime, Instant),
    body: Option<ResponseBody>,
}

/// Binds `cfg.endpoint` and serves until `shutdown`. `ready` is the admin server's readiness
/// (set once every receiver listens, cleared when shutdown starts).
pub async fn start(
    id: &str,
    cfg: &HealthCheckConfig,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(&cfg.endpoint)
        .await
        .map_err(|e| anyhow::anyhow!("extensions.{id}: cannot listen on {}: {e}", cfg.endpoint))?;
    tracing::info!(extension = %id, address = %listener.local_addr()?, path = %cfg.path, "health check listening");
    if cfg.check_collector_pipeline.is_some() {
        tracing::info!(extension = %id, "check_collector_pipeline is accepted and ignored, as in the collector");
    }
    // `upSince` is when the extension started, as in the collector.
    let state = Endpoint { ready, started: (SystemTime::now(), Instant::now()), body: cfg.response_body.clone() };
    // A path ending in `/` answers its whole subtree (`/` answers every path), as Go's
    // ServeMux patterns do in the collector.
    let app = if cfg.path == "/" {
        Router::new().fallback(answer)
    } else if cfg.path.ends_with('/') {
        let subtree = format!("{}{{*rest}}", cfg.path);
        Router::new().route(&cfg.path, get(answer)).route(&subtree, get(answer)).fallback(not_found)
    } else {
        Router::new().route(&cfg.path, get(answer)).fallback(not_found)
    };
    let app = app.with_state(state);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
    }))
}

/// Any other path: Go's `http.NotFound`, as the collector answers.
async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "404 page not found\n")
}

async fn answer(State(e): State<Endpoint>) -> axum::response::Response {
    let ready = e.ready.load(Ordering::Relaxed);
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if let Some(b) = &e.body {
        let text = if ready { b.healthy.clone() } else { b.unhealthy.clone() };
        return (code, text).into_response();
    }
    let (status, up_since, uptime) = if ready {
        let (at, started) = e.started;
        ("Server available", humantime::format_rfc3339_nanos(at).to_string(), go_duration(started.elapsed()))
    } else {
        ("Server not available", "0001-01-01T00:00:00Z".to_string(), String::new())
    };
    let body = serde_json::json!({ "status": status, "upSince": up_since, "uptime": uptime });
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// A duration as Go's `time.Duration.String` writes it (`1h2m3.5s`, `49.0132518s`, `1.5ms`),
/// the form of the collector's `uptime`.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    let frac = |v: u128, digits: u32| -> String {
        let unit = 10u128.pow(digits);
        let (whole, rest) = (v / unit, v % unit);
        if rest == 0 {
            return whole.to_string();
        }
        let s = format!("{whole}.{rest:0width$}", width = digits as usize);
        s.trim_end_matches('0').to_string()
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns, 6));
    }
    let secs = ns / 1_000_000_000;
    let (h, m) = (secs / 3600, secs / 60 % 60);
    let s = frac(ns % 60_000_000_000, 9);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_go_does() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(12), "12ns"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_nanos(2_500), "2.5µs"),
            (Duration::from_nanos(49_013_251_800), "49.0132518s"),
            (Duration::from_secs(62), "1m2s"),
            (Duration::from_millis(3_723_500), "1h2m3.5s"),
            (Duration::from_secs(3600), "1h0m0s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }
}
