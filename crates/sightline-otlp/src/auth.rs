//! `protocols.{grpc,http}.auth`: bearer-token authentication, each token mapped to the team
//! it was issued to, optionally binding the request's ownership to that team.
//!
//! The tokens file (YAML) is reloaded when it changes:
//!
//! ```yaml
//! tokens:
//!   - team: payments
//!     token: "s3cr3t-payments-token"
//!   - team: search
//!     token: "s3cr3t-search-token"
//! ```
//!
//! Tokens never leave this module: only their SHA-256 digests are kept, a presented token is
//! hashed and compared with every digest in constant time (`subtle`), and no error, log line,
//! metric or `Debug` output contains a token (errors name the file and the entry's position).

use crate::status::Refusal;
use arc_swap::ArcSwap;
use http::HeaderMap;
use serde::Deserialize;
use sightline_core::{BoundTeam, Counter, TeamMismatch};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq as _;
use tokio_util::sync::CancellationToken;

/// `protocols.{grpc,http}.auth`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// YAML file with the accepted tokens and their teams, `tokens: [{token, team}]`
    /// (required).
    pub tokens_file: PathBuf,
    /// Attribute every resource of an authenticated request to the token's team: the token's
    /// team wins over the catalog and over client attributes (default false). The pipelines
    /// this receiver feeds must have an `ownership` processor.
    #[serde(default)]
    pub bind_ownership_to_token: bool,
    /// With `bind_ownership_to_token`, a resource that the catalog assigns to another team:
    /// `reject` the request (default; HTTP 403, gRPC `PERMISSION_DENIED`) or `reattribute` it
    /// to the token's team.
    #[serde(default)]
    pub on_team_mismatch: TeamMismatch,
    /// How often the tokens file is checked for changes (default 10s; `0s` disables
    /// reloading).
    #[serde(default = "crate::tls::default_reload", with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl AuthConfig {
    pub(crate) fn validate(&self, prefix: &str, out: &mut Vec<(String, String)>) {
        if self.tokens_file.as_os_str().is_empty() {
            out.push((format!("{prefix}.tokens_file"), "must not be empty".into()));
        }
    }
}

type Digest = [u8; 32];

fn sha256(b: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The accepted tokens, as digests, with their teams.
pub struct Tokens {
    entries: Vec<(Digest, Arc<str>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("count", &self.entries.len()).finish_non_exhaustive()
    }
}

impl Tokens {
    /// Reads and parses a tokens file. The error names the file and what is wrong, never a
    /// token.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses `tokens: [{token, team}]`. Walks a generic YAML value rather than deserializing
    /// into a struct, so that no serde message can quote a value (a token) back.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        use serde_yaml_ng::Value;
        let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
            Some(l) => format!("not valid YAML (line {}, column {})", l.line(), l.column()),
            None => "not valid YAML".to_string(),
        })?;
        let Value::Mapping(top) = doc else {
            return Err("expected a mapping with a `tokens` list".into());
        };
        for k in top.keys() {
            if k.as_str() != Some("tokens") {
                return Err(format!("unknown top-level key {:?}; expected `tokens`", k.as_str().unwrap_or("?")));
            }
        }
        let list = match top.get("tokens") {
            Some(Value::Sequence(s)) => s,
            Some(Value::Null) | None => return Err("`tokens` is missing (a list of {token, team})".into()),
            Some(_) => return Err("`tokens` must be a list of {token, team}".into()),
        };
        let mut entries: Vec<(Digest, Arc<str>)> = Vec::with_capacity(list.len());
        for (i, e) in list.iter().enumerate() {
            let n = i + 1;
            let Value::Mapping(m) = e else {
                return Err(format!("tokens entry {n}: expected a mapping {{token, team}}"));
            };
            for k in m.keys() {
                match k.as_str() {
                    Some("token" | "team") => {}
                    other => {
                        return Err(format!(
                            "tokens entry {n}: unknown key {:?}; expected `token` and `team`",
                            other.unwrap_or("?")
                        ));
                    }
                }
            }
            let token = match m.get("token") {
                Some(Value::String(s)) => s.trim(),
                Some(_) => return Err(format!("tokens entry {n}: `token` must be a string (quote it)")),
                None => return Err(format!("tokens entry {n}: `token` is missing")),
            };
            if token.is_empty() {
                return Err(format!("tokens entry {n}: `token` must not be empty"));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("tokens entry {n}: `token` must be visible ASCII without spaces"));
            }
            let team = match m.get("team") {
                Some(Value::String(s)) if !s.trim().is_empty() => s.trim(),
                Some(_) => return Err(format!("tokens entry {n}: `team` must be a non-empty string")),
                None => return Err(format!("tokens entry {n}: `team` is missing")),
            };
            let d = sha256(token.as_bytes());
            if let Some(j) = entries.iter().position(|(e, _)| *e == d) {
                return Err(format!("tokens entries {} and {n} have the same token", j + 1));
            }
            entries.push((d, Arc::from(team)));
        }
        Ok(Tokens { entries })
    }

    /// The team of `token`, comparing its digest with every entry's in constant time.
    pub fn team_of(&self, token: &[u8]) -> Option<Arc<str>> {
        let d = sha256(token);
        let mut found = None;
        // No early exit: the time taken does not depend on which entry (if any) matched.
        for (e, team) in &self.entries {
            if bool::from(e.ct_eq(&d)) {
                found = Some(team);
            }
        }
        found.cloned()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The token in `Authorization: Bearer <token>` (HTTP header or gRPC metadata).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let v = v.trim_ascii();
    let sp = v.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = v.split_at(sp);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Why a request was refused by authentication (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that is not in the tokens file.
    Invalid,
}

/// One protocol's authenticator: the tokens in use (swapped on reload) and its policy.
pub(crate) struct Authenticator {
    tokens: Arc<ArcSwap<Tokens>>,
    bind: bool,
    on_mismatch: TeamMismatch,
    refused_missing: Counter,
    refused_invalid: Counter,
    pub refused_mismatch: Counter,
}

/// Counters of one authenticator.
pub(crate) struct AuthCounters {
    pub refused_missing: Counter,
    pub refused_invalid: Counter,
    pub refused_mismatch: Counter,
    pub reloads: Counter,
    pub reload_errors: Counter,
}

impl Authenticator {
    /// Loads the tokens file (an error stops the receiver from starting) and starts its reload
    /// poller.
    pub(crate) fn start(
        id: &str,
        transport: &'static str,
        cfg: &AuthConfig,
        counters: AuthCounters,
        shutdown: CancellationToken,
    ) -> Result<Authenticator, String> {
        let tokens = Arc::new(ArcSwap::from_pointee(Tokens::load(&cfg.tokens_file)?));
        let AuthCounters { refused_missing, refused_invalid, refused_mismatch, reloads, reload_errors } = counters;
        let swap = tokens.clone();
        let path = cfg.tokens_file.clone();
        let rid = id.to_string();
        crate::watch::spawn_poller(cfg.reload_interval, vec![path.clone()], shutdown, move || {
            match Tokens::load(&path) {
                Ok(t) => {
                    let n = t.len();
                    swap.store(Arc::new(t));
                    reloads.inc();
                    tracing::info!(receiver = %rid, transport, tokens = n, "tokens file reloaded");
                }
                Err(e) => {
                    reload_errors.inc();
                    tracing::warn!(receiver = %rid, transport, error = %e,
                        "tokens file reload failed; the previous tokens stay in use");
                }
            }
        });
        Ok(Authenticator {
            tokens,
            bind: cfg.bind_ownership_to_token,
            on_mismatch: cfg.on_team_mismatch,
            refused_missing,
            refused_invalid,
            refused_mismatch,
        })
    }

    /// Authenticates a request from its headers: the ownership binding to attach to its
    /// payload (none when binding is off), or the refusal (counted).
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<Option<BoundTeam>, (AuthFailure, Refusal)> {
        let Some(token) = bearer(headers) else {
            self.refused_missing.inc();
            return Err((
                AuthFailure::Missing,
                Refusal::unauthenticated("missing credentials: send `Authorization: Bearer <token>`"),
            ));
        };
        let Some(team) = self.tokens.load().team_of(token) else {
            self.refused_invalid.inc();
            return Err((AuthFailure::Invalid, Refusal::unauthenticated("invalid bearer token")));
        };
        Ok(self.bind.then_some(BoundTeam { team, on_mismatch: self.on_mismatch }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let t = Tokens::parse("tokens:\n  - {token: aaa, team: payments}\n  - {token: \"bbb\", team: search}\n")
            .expect("valid");
        assert_eq!(t.len(), 2);
        assert_eq!(t.team_of(b"aaa").as_deref(), Some("payments"));
        assert_eq!(t.team_of(b"bbb").as_deref(), Some("search"));
        assert_eq!(t.team_of(b"aa"), None);
        assert_eq!(t.team_of(b""), None);
        assert_eq!(format!("{t:?}"), "Tokens { count: 2, .. }");
    }

    /// Errors name the entry, never the token (even a numeric one serde would quote).
    #[test]
    fn errors_never_quote_a_token() {
        for (text, want) in [
            ("tokens:\n  - {token: 123456789, team: a}\n", "entry 1: `token` must be a string"),
            ("tokens:\n  - {token: sekrit1, team: a}\n  - {token: sekrit1, team: b}\n", "entries 1 and 2"),
            ("tokens:\n  - {token: sekrit1, tema: a}\n", "unknown key \"tema\""),
            ("tokens:\n  - {token: 'sek rit1', team: a}\n", "visible ASCII"),
            ("tokens: [ {token: \"sekrit1 }\n", "not valid YAML"),
            ("tokens:\n  - {token: sekrit1}\n", "`team` is missing"),
        ] {
            let e = Tokens::parse(text).expect_err(text);
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("sekrit") && !e.contains("123456789"), "token leaked: {e}");
        }
    }

    #[test]
    fn bearer_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer abc".parse().expect("value"));
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert("authorization", "bearer   abc ".parse().expect("value"));
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert("authorization", "Basic abc".parse().expect("value"));
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer".parse().expect("value"));
        assert_eq!(bearer(&h), None);
    }
}
