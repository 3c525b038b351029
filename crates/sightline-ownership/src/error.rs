//! Catalog errors: every one names the file and, where known, the line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A position in a catalog source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as the configuration named it (a directory entry is the directory joined
    /// with the file name).
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One problem found while loading a catalog. Displays as `file:line: message`
/// (or `file: message` when there is no line, e.g. a file that cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl CatalogError {
    pub(crate) fn new(file: impl Into<PathBuf>, line: Option<usize>, kind: ErrorKind) -> Self {
        CatalogError { file: file.into(), line, kind }
    }

    pub(crate) fn at(loc: &Location, kind: ErrorKind) -> Self {
        CatalogError::new(loc.file.to_path_buf(), Some(loc.line), kind)
    }
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.kind),
            None => write!(f, "{}: {}", self.file.display(), self.kind),
        }
    }
}

impl std::error::Error for CatalogError {}

/// The kind of a [`CatalogError`]; its `Display` is the message part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file or directory cannot be read.
    #[error("cannot read: {0}")]
    Io(String),
    /// The file is not valid YAML.
    #[error("YAML syntax error: {0}")]
    Syntax(String),
    /// The YAML does not have the catalog's shape: unknown key, wrong type, missing field.
    #[error("{0}")]
    Schema(String),
    /// A service or rule names a team that the catalog does not define.
    #[error("{entity}: unknown team \"{team}\"{}", did_you_mean(.suggestion))]
    UnknownTeam {
        /// What references the team, e.g. `service "checkout"` or `rule 3`.
        entity: String,
        /// The team name as written.
        team: String,
        /// The closest defined team name, if one is close.
        suggestion: Option<String>,
    },
    /// The same service name is defined twice (native catalog, or twice in Backstage).
    #[error("duplicate service \"{name}\" (first defined at {first})")]
    DuplicateService {
        /// The service name.
        name: String,
        /// Where it was defined first.
        first: Location,
    },
    /// The same team is defined twice.
    #[error("duplicate team \"{name}\" (first defined at {first})")]
    DuplicateTeam {
        /// The team name.
        name: String,
        /// Where it was defined first.
        first: Location,
    },
    /// A rule's glob pattern does not compile.
    #[error("{entity}: bad glob {pattern:?} for `{key}`: {reason}")]
    BadGlob {
        /// The rule, e.g. `rule 3`.
        entity: String,
        /// The attribute key.
        key: String,
        /// The pattern as written.
        pattern: String,
        /// Why it does not compile.
        reason: String,
    },
    /// A rule's `regex:` pattern does not compile.
    #[error("{entity}: bad regex {pattern:?} for `{key}`: {reason}")]
    BadRegex {
        /// The rule, e.g. `rule 3`.
        entity: String,
        /// The attribute key.
        key: String,
        /// The pattern as written (without the `regex:` prefix).
        pattern: String,
        /// Why it does not compile.
        reason: String,
    },
    /// A rule without any attribute to match.
    #[error("{entity}: empty match (a rule needs at least one attribute to match)")]
    EmptyMatch {
        /// The rule, e.g. `rule 3`.
        entity: String,
    },
    /// Any other invalid value (empty name, Backstage component without an owner, ...).
    #[error("{0}")]
    Invalid(String),
    /// Lint warning: a team without a contact or on-call entry.
    #[error("team \"{team}\" has no {missing} (who do people ask about its telemetry?)")]
    MissingTeamField {
        team: String,
        /// `contact` or `oncall`.
        missing: &'static str,
    },
    /// Lint warning: a rule that can never apply, because an earlier rule or a service entry
    /// always wins for what it matches.
    #[error("{entity} never applies: everything it matches is matched first by {by} at {at}")]
    ShadowedRule {
        entity: String,
        /// `rule 2`, `service "checkout"`.
        by: String,
        at: Location,
    },
    /// Lint warning: a rule whose `service.name` pattern matches none of the known services.
    #[error("{entity}: `service.name` pattern {pattern:?} matches none of the {known} known services")]
    RuleMatchesNothing { entity: String, pattern: String, known: usize },
    /// Lint warning: a Backstage component owned by a group the catalog does not define.
    #[error("component \"{component}\": owner \"{owner}\" is not a team or group of the catalog")]
    UnknownOwner { component: String, owner: String },
}

impl ErrorKind {
    /// A short, stable name of the kind, for machine-readable output.
    pub fn code(&self) -> &'static str {
        match self {
            ErrorKind::Io(_) => "io",
            ErrorKind::Syntax(_) => "syntax",
            ErrorKind::Schema(_) => "schema",
            ErrorKind::UnknownTeam { .. } => "unknown-team",
            ErrorKind::DuplicateService { .. } => "duplicate-service",
            ErrorKind::DuplicateTeam { .. } => "duplicate-team",
            ErrorKind::BadGlob { .. } => "bad-glob",
            ErrorKind::BadRegex { .. } => "bad-regex",
            ErrorKind::EmptyMatch { .. } => "empty-match",
            ErrorKind::Invalid(_) => "invalid",
            ErrorKind::MissingTeamField { missing: "contact", .. } => "team-without-contact",
            ErrorKind::MissingTeamField { .. } => "team-without-oncall",
            ErrorKind::ShadowedRule { .. } => "shadowed-rule",
            ErrorKind::RuleMatchesNothing { .. } => "rule-matches-nothing",
            ErrorKind::UnknownOwner { .. } => "unknown-owner",
        }
    }
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean \"{s}\"?)"),
        None => String::new(),
    }
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub(crate) fn closest<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<String> {
    let max = (word.chars().count() / 3).max(2);
    candidates
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_forms() {
        let e = CatalogError::new(
            "catalog/payments.yaml",
            Some(12),
            ErrorKind::UnknownTeam {
                entity: "service \"checkout\"".into(),
                team: "paymnts".into(),
                suggestion: Some("payments".into()),
            },
        );
        assert_eq!(
            e.to_string(),
            "catalog/payments.yaml:12: service \"checkout\": unknown team \"paymnts\" (did you mean \"payments\"?)"
        );
        let e = CatalogError::new("x.yaml", None, ErrorKind::Io("gone".into()));
        assert_eq!(e.to_string(), "x.yaml: cannot read: gone");
    }

    #[test]
    fn closest_finds_typos_only() {
        let teams = ["payments", "search"];
        assert_eq!(closest("paymnts", teams.iter().copied()).as_deref(), Some("payments"));
        assert_eq!(closest("identity", teams.iter().copied()), None);
    }
}
