//! Credentials read from files: `headers_from_files` and `auth.bearer_token_file` of the `otlp`
//! and `otlphttp` exporters.
//!
//! The files are read when the exporter is built (a missing or invalid file stops the start,
//! naming the option and the file) and re-read, at most once per [`RECHECK`], on the send path
//! when their content changed, so that a rotated secret (a Kubernetes secret mount, a token
//! written by an agent) is used without a restart. A file that becomes unreadable or invalid
//! keeps the previous value and logs a warning naming the file. Values are never logged or
//! put into errors, and are marked sensitive (not indexed by HPACK, hidden from `Debug`).

use crate::BuildError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

struct State {
    checked: Instant,
    values: Vec<String>,
}

/// Header values from files, with their current values.
pub(crate) struct FileHeaders {
    entries: Vec<Entry>,
    state: Mutex<State>,
}

impl std::fmt::Debug for FileHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        f.debug_struct("FileHeaders").field("names", &names).finish_non_exhaustive()
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

fn read_value(e: &Entry) -> Result<String, String> {
    let text = std::fs::read_to_string(&e.path).map_err(|err| format!("{}: {err}", e.path.display()))?;
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

impl FileHeaders {
    /// Reads the files; `None` when no header comes from a file.
    pub(crate) fn new(
        from_files: &BTreeMap<String, PathBuf>,
        auth: Option<&ExporterAuth>,
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
        Ok(Some(FileHeaders { entries, state: Mutex::new(State { checked: Instant::now(), values }) }))
    }

    /// The current (name, value) pairs, re-reading the files first when the last check is
    /// older than [`RECHECK`].
    pub(crate) fn current(&self) -> Vec<(&str, String)> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.checked.elapsed() >= RECHECK {
            st.checked = Instant::now();
            for (e, v) in self.entries.iter().zip(st.values.iter_mut()) {
                match read_value(e) {
                    Ok(new) if new != *v => {
                        *v = new;
                        tracing::info!(option = %e.key, file = %e.path.display(), "credential file changed; using the new value");
                    }
                    Ok(_) => {}
                    Err(m) => {
                        tracing::warn!(option = %e.key, error = %m, "cannot re-read a credential file; the previous value stays in use")
                    }
                }
            }
        }
        self.entries.iter().map(|e| e.name.as_str()).zip(st.values.iter().cloned()).collect()
    }
}
