//! Credentials read from files: `headers_from_files` and `auth.bearer_token_file` of the `otlp`
//! and `otlphttp` exporters.
//!
//! The files are read when the exporter is built (a missing or invalid file stops the start,
//! naming the option and the file). After that a background task re-reads them every
//! [`RECHECK`] (with tokio's file I/O, off the send path) and swaps in the new values, so that
//! a rotated secret (a Kubernetes secret mount, a token written by an agent) is used without a
//! restart. The send path only loads the current values (an atomic pointer load: no lock, no
//! I/O). A file that becomes unreadable or invalid keeps the previous value; the failure is
//! logged once (not every second) and counted in
//! `sightline_exporter_credential_reload_errors_total`; a new value that is taken is counted in
//! `sightline_exporter_credential_reloads_total`. Values are never logged or put into errors,
//! and are marked sensitive (not indexed by HPACK, hidden from `Debug`).

use crate::BuildError;
use arc_swap::ArcSwap;
use serde::Deserialize;
use sightline_core::{Counter, Registry};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often the files are checked for a new content.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

/// `auth` of the `otlp` and `otlphttp` exporters.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterAuth {
    /// File holding a bearer token, sent as `Authorization: Bearer <token>` (required;
    /// surrounding whitespace is ignored). Re-read when it changes.
    pub bearer_token_file: PathBuf,
}

struct Entry {
    /// Lowercase header (metadata) name.
    name: String,
    /// The option the value comes from, for messages.
    key: String,
    path: PathBuf,
    /// `Bearer ` for `bearer_token_file`.
    prefix: &'static str,
}

/// Header values from files, with their current values. Clones share the values (and the one
/// reload task).
#[derive(Clone)]
pub(crate) struct FileHeaders {
    /// Lowercase header names, in the order of the values.
    names: Vec<String>,
    values: Arc<ArcSwap<Vec<String>>>,
}

impl std::fmt::Debug for FileHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileHeaders").field("names", &self.names).finish_non_exhaustive()
    }
}

/// Checks without I/O (keys relative to the exporter).
pub(crate) fn validate(
    from_files: &BTreeMap<String, PathBuf>,
    auth: Option<&ExporterAuth>,
    headers: &BTreeMap<String, String>,
    out: &mut Vec<(String, String)>,
) {
    for (name, path) in from_files {
        let key = format!("headers_from_files.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            out.push((key, "not a valid header name".into()));
        } else if path.as_os_str().is_empty() {
            out.push((key, "must not be empty".into()));
        } else if headers.keys().any(|h| h.eq_ignore_ascii_case(name)) {
            out.push((key, "also set in `headers`; set it in one place".into()));
        } else if auth.is_some() && name.eq_ignore_ascii_case("authorization") {
            out.push((key, "conflicts with auth.bearer_token_file".into()));
        }
    }
    if let Some(a) = auth {
        if a.bearer_token_file.as_os_str().is_empty() {
            out.push(("auth.bearer_token_file".into(), "must not be empty".into()));
        }
        if headers.keys().any(|h| h.eq_ignore_ascii_case("authorization")) {
            out.push(("auth.bearer_token_file".into(), "conflicts with headers.Authorization".into()));
        }
    }
}

fn check_value(e: &Entry, text: &str) -> Result<String, String> {
    let v = text.trim();
    if v.is_empty() {
        return Err(format!("{}: the file is empty", e.path.display()));
    }
    // Never quote the value: it is a secret.
    if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(format!("{}: not a valid header value (visible ASCII on one line only)", e.path.display()));
    }
    Ok(format!("{}{v}", e.prefix))
}

fn read_value(e: &Entry) -> Result<String, String> {
    let text = std::fs::read_to_string(&e.path).map_err(|err| format!("{}: {err}", e.path.display()))?;
    check_value(e, &text)
}

async fn read_value_async(e: &Entry) -> Result<String, String> {
    let text = tokio::fs::read_to_string(&e.path).await.map_err(|err| format!("{}: {err}", e.path.display()))?;
    check_value(e, &text)
}

struct ReloadCounters {
    reloads: Counter,
    errors: Counter,
}

impl FileHeaders {
    /// Reads the files and starts the task that re-reads them (when called inside a tokio
    /// runtime; without one the values stay as read); `None` when no header comes from a file.
    pub(crate) fn new(
        exporter: &str,
        from_files: &BTreeMap<String, PathBuf>,
        auth: Option<&ExporterAuth>,
        registry: &Registry,
    ) -> Result<Option<FileHeaders>, BuildError> {
        let mut entries: Vec<Entry> = from_files
            .iter()
            .map(|(name, path)| Entry {
                name: name.to_ascii_lowercase(),
                key: format!("headers_from_files.{name}"),
                path: path.clone(),
                prefix: "",
            })
            .collect();
        if let Some(a) = auth {
            entries.push(Entry {
                name: "authorization".into(),
                key: "auth.bearer_token_file".into(),
                path: a.bearer_token_file.clone(),
                prefix: "Bearer ",
            });
        }
        if entries.is_empty() {
            return Ok(None);
        }
        let values = entries
            .iter()
            .map(|e| read_value(e).map_err(|m| BuildError::invalid(e.key.clone(), m)))
            .collect::<Result<Vec<_>, _>>()?;
        let names = entries.iter().map(|e| e.name.clone()).collect();
        let values = Arc::new(ArcSwap::from_pointee(values));
        let counters = ReloadCounters {
            reloads: registry.counter(
                "sightline_exporter_credential_reloads_total",
                "Credential files (headers_from_files, auth.bearer_token_file) whose changed content was taken into use.",
                &[("exporter", exporter)],
            ),
            errors: registry.counter(
                "sightline_exporter_credential_reload_errors_total",
                "Credential files that became unreadable or invalid (the previous value stays in use); counted once per failure, not per check.",
                &[("exporter", exporter)],
            ),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(reload(entries, Arc::downgrade(&values), counters));
            }
            Err(_) => tracing::debug!(exporter, "no runtime: credential files are not re-read"),
        }
        Ok(Some(FileHeaders { names, values }))
    }

    /// The current (name, value) pairs: the values swapped in by the reload task.
    pub(crate) fn current(&self) -> impl Iterator<Item = (&str, String)> + '_ {
        let values = self.values.load_full();
        self.names.iter().map(String::as_str).zip((0..self.names.len()).map(move |i| values[i].clone()))
    }
}

/// Re-reads the files every [`RECHECK`] until the exporter is dropped.
async fn reload(entries: Vec<Entry>, values: std::sync::Weak<ArcSwap<Vec<String>>>, counters: ReloadCounters) {
    let mut tick = tokio::time::interval(RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // The failure last logged for each file, so a broken file is reported once.
    let mut failing: Vec<Option<String>> = vec![None; entries.len()];
    loop {
        tick.tick().await;
        let Some(values) = values.upgrade() else { return };
        let mut next: Option<Vec<String>> = None;
        for (i, e) in entries.iter().enumerate() {
            match read_value_async(e).await {
                Ok(new) => {
                    if failing[i].take().is_some() {
                        tracing::info!(option = %e.key, file = %e.path.display(), "credential file readable again");
                    }
                    if new != values.load()[i] {
                        next.get_or_insert_with(|| values.load().as_ref().clone())[i] = new;
                        counters.reloads.inc();
                        tracing::info!(option = %e.key, file = %e.path.display(), "credential file changed; using the new value");
                    }
                }
                Err(m) => {
                    if failing[i].as_deref() != Some(m.as_str()) {
                        counters.errors.inc();
                        tracing::warn!(option = %e.key, error = %m, "cannot re-read a credential file; the previous value stays in use");
                        failing[i] = Some(m);
                    }
                }
            }
        }
        if let Some(next) = next {
            values.store(Arc::new(next));
        }
    }
}
