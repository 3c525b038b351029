//! The admin server (`service.telemetry.metrics.address`, default 127.0.0.1:8888):
//! `/metrics` (Prometheus text), `/healthz`, `/readyz` (ready once every receiver listens).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use sightline_core::{MemoryBudget, Registry};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    budget: MemoryBudget,
    ready: Arc<AtomicBool>,
}

pub async fn start(
    addr: &str,
    registry: Registry,
    budget: MemoryBudget,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("service.telemetry.metrics.address: cannot listen on {addr}: {e}"))?;
    tracing::info!(address = %listener.local_addr()?, "admin server listening (/metrics, /healthz, /readyz)");
    let state = AdminState { registry, budget, ready };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
    }))
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let mut text = s.registry.render();
    text.push_str("# HELP sightline_memory_budget_used_bytes Bytes currently held against the in-flight budget.\n");
    text.push_str("# TYPE sightline_memory_budget_used_bytes gauge\n");
    text.push_str(&format!("sightline_memory_budget_used_bytes {}\n", s.budget.in_use()));
    if let Some(rss) = rss_bytes() {
        text.push_str("# HELP otelcol_process_memory_rss Total physical memory (resident set size) in bytes.\n");
        text.push_str("# TYPE otelcol_process_memory_rss gauge\n");
        text.push_str(&format!("otelcol_process_memory_rss {rss}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
