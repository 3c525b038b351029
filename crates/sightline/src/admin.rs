//! The admin server (`service.telemetry.metrics.address`, default 127.0.0.1:8888):
//! `/metrics` (Prometheus text), `/healthz`, `/readyz` (ready once every receiver listens), and
//! the governance view: `/status` (a page) and `/status.json` (the same data), with per team
//! and signal the items and bytes received (showback), ownership coverage, the services nobody
//! owns, policy findings and modes, series limits' top offenders, the catalogs' health and the
//! exporters' queues — the platform measured as a product.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use sightline_core::telemetry::escape_label_value;
use sightline_core::{Governance, MemoryBudget, Registry};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Unowned services listed on the status page and exported as gauges.
const TOP_UNOWNED: usize = 20;
const SIGNALS: [&str; 3] = ["traces", "metrics", "logs"];

/// What the admin server reads.
#[derive(Clone)]
pub struct Sources {
    pub registry: Registry,
    pub budget: MemoryBudget,
    pub send_budget: MemoryBudget,
    pub ready: Arc<AtomicBool>,
    pub governance: Arc<Governance>,
}

pub async fn start(addr: &str, s: Sources, shutdown: CancellationToken) -> anyhow::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("service.telemetry.metrics.address: cannot listen on {addr}: {e}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        "admin server listening (/metrics, /healthz, /readyz, /status, /status.json)"
    );
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/status.json", get(status_json))
        .with_state(s);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
    }))
}

async fn readyz(State(s): State<Sources>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(s): State<Sources>) -> impl IntoResponse {
    let mut text = s.registry.render();
    text.push_str(
        "# HELP sightline_memory_budget_used_bytes Bytes held against the in-flight budget: by admitted payloads, and by exporters' send copies.\n",
    );
    text.push_str("# TYPE sightline_memory_budget_used_bytes gauge\n");
    text.push_str(&format!("sightline_memory_budget_used_bytes{{part=\"admission\"}} {}\n", s.budget.in_use()));
    text.push_str(&format!("sightline_memory_budget_used_bytes{{part=\"send\"}} {}\n", s.send_budget.in_use()));
    let cov = coverage(&s.registry);
    if !cov.is_empty() {
        text.push_str("# HELP sightline_ownership_coverage_ratio Share of the resources received since start that a catalog entry or rule matched.\n");
        text.push_str("# TYPE sightline_ownership_coverage_ratio gauge\n");
        for (signal, (total, unowned)) in &cov {
            let _ =
                writeln!(text, "sightline_ownership_coverage_ratio{{signal=\"{signal}\"}} {}", ratio(*total, *unowned));
        }
    }
    let g = &s.governance;
    text.push_str("# HELP sightline_ownership_unowned_services Distinct services seen that nothing in the catalog owns (bounded; the rest count as one).\n");
    text.push_str("# TYPE sightline_ownership_unowned_services gauge\n");
    let _ = writeln!(text, "sightline_ownership_unowned_services {}", g.unowned_count());
    let top = g.top_unowned(TOP_UNOWNED);
    if !top.is_empty() {
        let _ = writeln!(
            text,
            "# HELP sightline_ownership_unowned_service_items Items received since start from the {TOP_UNOWNED} unowned services with the most, by service and SDK language."
        );
        text.push_str("# TYPE sightline_ownership_unowned_service_items gauge\n");
        for u in &top {
            let _ = writeln!(
                text,
                "sightline_ownership_unowned_service_items{{service=\"{}\",language=\"{}\"}} {}",
                escape_label_value(&u.service),
                escape_label_value(&u.language),
                u.items()
            );
        }
    }
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

fn label(l: &[(String, String)], k: &str) -> String {
    l.iter().find(|(lk, _)| lk == k).map(|(_, v)| v.clone()).unwrap_or_default()
}

/// Resources received and unowned, per signal, since start.
fn coverage(r: &Registry) -> BTreeMap<String, (i64, i64)> {
    let mut by: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (l, v) in r.series("sightline_ownership_resources_total") {
        by.entry(label(&l, "signal")).or_default().0 += v;
    }
    for (l, v) in r.series("sightline_ownership_unowned_resources_total") {
        by.entry(label(&l, "signal")).or_default().1 += v;
    }
    by
}

fn ratio(total: i64, unowned: i64) -> f64 {
    if total > 0 { (total - unowned) as f64 / total as f64 } else { 1.0 }
}

fn rfc3339(secs: u64) -> String {
    if secs == 0 {
        return String::new();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Everything the status page shows, as JSON (`/status.json`).
pub fn snapshot(s: &Sources) -> Value {
    let r = &s.registry;
    let g = &s.governance;
    // team -> signal -> [items, bytes, resources]
    let mut teams: BTreeMap<String, BTreeMap<String, [i64; 3]>> = BTreeMap::new();
    for (i, name) in ["sightline_team_received_items_total", "sightline_team_received_bytes_total"].iter().enumerate() {
        for (l, v) in r.series(name) {
            teams.entry(label(&l, "team")).or_default().entry(label(&l, "signal")).or_default()[i] += v;
        }
    }
    for (l, v) in r.series("sightline_ownership_resources_total") {
        teams.entry(label(&l, "team")).or_default().entry(label(&l, "signal")).or_default()[2] += v;
    }
    let findings: Vec<(Vec<(String, String)>, i64)> = r.series("sightline_policy_findings_total");
    for (l, _) in &findings {
        teams.entry(label(l, "team")).or_default();
    }
    let policies = g.policies();
    let team_rows: Vec<Value> = teams
        .iter()
        .map(|(team, by_signal)| {
            let signals: serde_json::Map<String, Value> = SIGNALS
                .iter()
                .filter_map(|sig| {
                    by_signal
                        .get(*sig)
                        .map(|c| (sig.to_string(), json!({"items": c[0], "bytes": c[1], "resources": c[2]})))
                })
                .collect();
            let mut by_action: BTreeMap<String, i64> = BTreeMap::new();
            for (l, v) in findings.iter().filter(|(l, _)| label(l, "team") == *team) {
                *by_action.entry(label(l, "action")).or_default() += v;
            }
            let modes: Vec<Value> = policies
                .iter()
                .map(|p| {
                    let mode = p.teams.iter().find(|(t, _)| t == team).map_or(p.default, |(_, m)| m);
                    json!({"policy": p.policy, "signal": p.signal, "mode": mode})
                })
                .collect();
            json!({
                "team": team,
                "items": by_signal.values().map(|c| c[0]).sum::<i64>(),
                "bytes": by_signal.values().map(|c| c[1]).sum::<i64>(),
                "signals": signals,
                "findings": by_action,
                "policy_modes": modes,
            })
        })
        .collect();
    let cov = coverage(r);
    let (total, unowned) = cov.values().fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1));
    let by_signal: serde_json::Map<String, Value> = cov
        .iter()
        .map(|(sig, (t, u))| (sig.clone(), json!({"resources": t, "unowned": u, "ratio": ratio(*t, *u)})))
        .collect();
    let unowned_rows: Vec<Value> = g
        .top_unowned(TOP_UNOWNED)
        .iter()
        .map(|u| {
            json!({
                "service": &*u.service,
                "language": &*u.language,
                "items": u.items(),
                "bytes": u.bytes(),
                "first_seen": rfc3339(u.first_seen),
                "last_seen": rfc3339(u.last_seen()),
            })
        })
        .collect();
    let mut finding_rows: Vec<Value> = findings
        .iter()
        .map(|(l, v)| {
            json!({
                "policy": label(l, "policy"), "rule": label(l, "rule"), "team": label(l, "team"),
                "signal": label(l, "signal"), "action": label(l, "action"), "count": v,
            })
        })
        .collect();
    finding_rows.sort_by_key(|v| std::cmp::Reverse(v["count"].as_i64().unwrap_or(0)));
    let tops = r.series("sightline_policy_series_top_attribute_values");
    let mut series_rows: Vec<Value> = r
        .series("sightline_policy_series")
        .iter()
        .map(|(l, v)| {
            let key = |x: &[(String, String)]| (label(x, "policy"), label(x, "team"), label(x, "metric"));
            let top = tops.iter().find(|(t, _)| key(t) == key(l));
            json!({
                "policy": label(l, "policy"), "team": label(l, "team"), "metric": label(l, "metric"), "series": v,
                "top_attribute": top.map(|(t, _)| label(t, "attribute")),
                "top_attribute_values": top.map(|(_, n)| *n),
            })
        })
        .collect();
    series_rows.sort_by_key(|v| std::cmp::Reverse(v["series"].as_i64().unwrap_or(0)));
    let catalogs: Vec<Value> = g
        .catalogs()
        .iter()
        .map(|(id, c)| {
            json!({
                "processor": id, "ok": c.ok, "last_reload": rfc3339(c.last_reload), "errors": c.errors,
                "teams": c.teams, "services": c.services, "rules": c.rules,
            })
        })
        .collect();
    let caps = r.series("otelcol_exporter_queue_capacity");
    let exporters: Vec<Value> = r
        .series("otelcol_exporter_queue_size")
        .iter()
        .map(|(l, v)| {
            let cap = caps.iter().find(|(cl, _)| cl == l).map_or(0, |(_, c)| *c);
            json!({"exporter": label(l, "exporter"), "signal": label(l, "data_type"), "queue": v, "capacity": cap})
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ready": s.ready.load(Ordering::Relaxed),
        "memory": {
            "used_bytes": s.budget.in_use() + s.send_budget.in_use(),
            "limit_bytes": s.budget.limit() + s.send_budget.limit(),
        },
        "coverage": {"resources": total, "unowned": unowned, "ratio": ratio(total, unowned), "by_signal": by_signal},
        "teams": team_rows,
        "unowned_services": {"tracked": g.unowned_count(), "top": unowned_rows},
        "policy_findings": finding_rows,
        "series": series_rows,
        "catalogs": catalogs,
        "exporters": exporters,
    })
}

async fn status_json(State(s): State<Sources>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], snapshot(&s).to_string())
}

fn h(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A JSON value as table text.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => h(s),
        Value::Null => String::new(),
        Value::Number(n) => n.to_string(),
        other => h(&other.to_string()),
    }
}

fn table(out: &mut String, id: &str, heads: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let _ = write!(out, "<table id={id}><tr>");
    for x in heads {
        let _ = write!(out, "<th>{x}</th>");
    }
    out.push_str("</tr>");
    let mut any = false;
    for r in rows {
        any = true;
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{c}</td>");
        }
        out.push_str("</tr>");
    }
    if !any {
        let _ = write!(out, "<tr><td colspan={}>none</td></tr>", heads.len());
    }
    out.push_str("</table>");
}

fn mib(v: &Value) -> String {
    format!("{:.1}", v.as_f64().unwrap_or(0.0) / 1048576.0)
}

/// The status page: the snapshot as tables.
fn page(v: &Value) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html><head><meta charset=utf-8><title>Sightline status</title>\
         <style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin-bottom:1.5em}}\
         td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}th{{background:#f4f4f4}}\
         td:first-child,th:first-child{{text-align:left}}.bad{{color:#b00}}.ok{{color:#070}}</style>\
         </head><body><h1>Sightline {}</h1><p>{}; memory budget {} of {} MiB in use.</p>",
        cell(&v["version"]),
        if v["ready"].as_bool() == Some(true) { "ready" } else { "not ready" },
        mib(&v["memory"]["used_bytes"]),
        mib(&v["memory"]["limit_bytes"]),
    );
    let cov = &v["coverage"];
    let _ = write!(
        o,
        "<h2>Ownership coverage: <span id=coverage>{:.1}%</span></h2><p>{} of {} resources matched a catalog entry or rule.</p>",
        cov["ratio"].as_f64().unwrap_or(1.0) * 100.0,
        cov["resources"].as_i64().unwrap_or(0) - cov["unowned"].as_i64().unwrap_or(0),
        cov["resources"],
    );
    let by = cov["by_signal"].as_object().cloned().unwrap_or_default();
    table(
        &mut o,
        "coverage_by_signal",
        &["signal", "resources", "unowned", "coverage"],
        by.iter().map(|(sig, c)| {
            vec![
                h(sig),
                cell(&c["resources"]),
                cell(&c["unowned"]),
                format!("{:.1}%", c["ratio"].as_f64().unwrap_or(1.0) * 100.0),
            ]
        }),
    );
    o.push_str("<h2>Teams</h2>");
    let teams = v["teams"].as_array().cloned().unwrap_or_default();
    let mut heads = vec!["team".to_string()];
    for s in SIGNALS {
        heads.push(format!("{s} items"));
        heads.push(format!("{s} bytes"));
    }
    heads.extend(["findings".into(), "policy mode".into()]);
    let head_refs: Vec<&str> = heads.iter().map(String::as_str).collect();
    table(
        &mut o,
        "teams",
        &head_refs,
        teams.iter().map(|t| {
            let mut row = vec![cell(&t["team"])];
            for s in SIGNALS {
                row.push(cell(&t["signals"][s]["items"]));
                row.push(cell(&t["signals"][s]["bytes"]));
            }
            let f = t["findings"].as_object().cloned().unwrap_or_default();
            row.push(f.iter().map(|(a, n)| format!("{} {n}", h(a))).collect::<Vec<_>>().join(", "));
            let modes = t["policy_modes"].as_array().cloned().unwrap_or_default();
            let mut seen: Vec<String> = modes.iter().map(|m| cell(&m["mode"])).collect();
            seen.dedup();
            row.push(seen.join(", "));
            row
        }),
    );
    let un = &v["unowned_services"];
    let _ = write!(o, "<h2>Unowned services ({} seen)</h2>", un["tracked"]);
    table(
        &mut o,
        "unowned",
        &["service", "SDK language", "items", "bytes", "first seen", "last seen"],
        un["top"].as_array().cloned().unwrap_or_default().iter().map(|u| {
            ["service", "language", "items", "bytes", "first_seen", "last_seen"].iter().map(|k| cell(&u[*k])).collect()
        }),
    );
    o.push_str("<h2>Policy findings</h2>");
    table(
        &mut o,
        "findings",
        &["policy", "rule", "team", "signal", "action", "count"],
        v["policy_findings"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|f| ["policy", "rule", "team", "signal", "action", "count"].iter().map(|k| cell(&f[*k])).collect()),
    );
    o.push_str("<h2>Series limits: top offenders</h2>");
    table(
        &mut o,
        "series",
        &["policy", "team", "metric", "series", "top attribute", "its values"],
        v["series"].as_array().cloned().unwrap_or_default().iter().map(|f| {
            ["policy", "team", "metric", "series", "top_attribute", "top_attribute_values"]
                .iter()
                .map(|k| cell(&f[*k]))
                .collect()
        }),
    );
    o.push_str("<h2>Catalog</h2>");
    table(
        &mut o,
        "catalog",
        &["processor", "state", "last reload", "teams", "services", "rules", "errors"],
        v["catalogs"].as_array().cloned().unwrap_or_default().iter().map(|c| {
            let ok = c["ok"].as_bool() == Some(true);
            let errors: Vec<String> = c["errors"].as_array().cloned().unwrap_or_default().iter().map(cell).collect();
            vec![
                cell(&c["processor"]),
                if ok { "<span class=ok>ok</span>".into() } else { "<span class=bad>reload failed</span>".into() },
                cell(&c["last_reload"]),
                cell(&c["teams"]),
                cell(&c["services"]),
                cell(&c["rules"]),
                errors.join("<br>"),
            ]
        }),
    );
    o.push_str("<h2>Exporters</h2>");
    table(
        &mut o,
        "exporters",
        &["exporter", "signal", "queue", "capacity"],
        v["exporters"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| ["exporter", "signal", "queue", "capacity"].iter().map(|k| cell(&e[*k])).collect()),
    );
    o.push_str("<p><a href=/status.json>/status.json</a> · <a href=/metrics>/metrics</a></p></body></html>\n");
    o
}

async fn status(State(s): State<Sources>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page(&snapshot(&s)))
}
