//! The admin server (`service.telemetry.metrics.address`, default 127.0.0.1:8888):
//! `/metrics` (Prometheus text), `/healthz`, `/readyz` (ready once every receiver listens), and
//! `/status`, a page with ownership coverage, volume per team and exporter queues.

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
    send_budget: MemoryBudget,
    ready: Arc<AtomicBool>,
}

pub async fn start(
    addr: &str,
    registry: Registry,
    budget: MemoryBudget,
    send_budget: MemoryBudget,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("service.telemetry.metrics.address: cannot listen on {addr}: {e}"))?;
    tracing::info!(address = %listener.local_addr()?, "admin server listening (/metrics, /healthz, /readyz, /status)");
    let state = AdminState { registry, budget, send_budget, ready };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
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
    text.push_str(
        "# HELP sightline_memory_budget_used_bytes Bytes held against the in-flight budget: by admitted payloads, and by exporters' send copies.\n",
    );
    text.push_str("# TYPE sightline_memory_budget_used_bytes gauge\n");
    text.push_str(&format!("sightline_memory_budget_used_bytes{{part=\"admission\"}} {}\n", s.budget.in_use()));
    text.push_str(&format!("sightline_memory_budget_used_bytes{{part=\"send\"}} {}\n", s.send_budget.in_use()));
    if let Some(rss) = rss_bytes() {
        text.push_str("# HELP otelcol_process_memory_rss Total physical memory (resident set size) in bytes.\n");
        text.push_str("# TYPE otelcol_process_memory_rss gauge\n");
        text.push_str(&format!("otelcol_process_memory_rss {rss}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

/// The process's resident set size, from `/proc/self/statm` (Linux).
pub(crate) fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The status page: ownership coverage and volume per team, and each exporter's state — the
/// platform measured as a product.
async fn status(State(s): State<AdminState>) -> impl IntoResponse {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;
    let label =
        |l: &[(String, String)], k: &str| l.iter().find(|(lk, _)| lk == k).map(|(_, v)| v.clone()).unwrap_or_default();
    // team -> (resources, bytes)
    let mut teams: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (l, v) in s.registry.series("sightline_ownership_resources_total") {
        teams.entry(label(&l, "team")).or_default().0 += v;
    }
    for (l, v) in s.registry.series("sightline_team_received_bytes_total") {
        teams.entry(label(&l, "team")).or_default().1 += v;
    }
    let total: i64 = teams.values().map(|t| t.0).sum();
    let unowned = s.registry.sum("sightline_ownership_unowned_resources_total");
    let coverage = if total > 0 { 100.0 * (total - unowned) as f64 / total as f64 } else { 100.0 };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=utf-8><title>Sightline status</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child{{text-align:left}}</style>\
         </head><body><h1>Sightline {}</h1><p>{}; memory budget {:.1} of {:.0} MiB in use.</p>\
         <h2>Ownership coverage: {:.1}%</h2><p>{} of {} resources matched a catalog entry or rule.</p>\
         <table><tr><th>team</th><th>resources</th><th>bytes received</th></tr>",
        env!("CARGO_PKG_VERSION"),
        if s.ready.load(Ordering::Relaxed) { "ready" } else { "not ready" },
        (s.budget.in_use() + s.send_budget.in_use()) as f64 / 1048576.0,
        (s.budget.limit() + s.send_budget.limit()) as f64 / 1048576.0,
        coverage,
        total - unowned,
        total,
    );
    for (team, (res, bytes)) in &teams {
        let _ = write!(h, "<tr><td>{}</td><td>{res}</td><td>{bytes}</td></tr>", html_escape(team));
    }
    h.push_str(
        "</table><h2>Exporters</h2><table><tr><th>exporter</th><th>signal</th><th>queue</th><th>capacity</th></tr>",
    );
    let caps = s.registry.series("otelcol_exporter_queue_capacity");
    for (l, v) in s.registry.series("otelcol_exporter_queue_size") {
        let cap = caps.iter().find(|(cl, _)| *cl == l).map_or(0, |(_, c)| *c);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{v}</td><td>{cap}</td></tr>",
            html_escape(&label(&l, "exporter")),
            html_escape(&label(&l, "data_type"))
        );
    }
    h.push_str("</table><p><a href=/metrics>/metrics</a></p></body></html>\n");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], h)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
