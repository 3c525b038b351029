//! Backstage `catalog-info.yaml` support: `Component`, `Group` and `System` entities.
//!
//! Backstage files carry many fields Sightline does not use, so unlike the native format
//! unknown keys are ignored, and so are documents of other kinds.

use std::collections::HashMap;
use std::path::{Component as PathPart, Path, PathBuf};
use std::sync::Arc;

use globset::GlobBuilder;

use crate::catalog::{Assignment, Team};
use crate::error::{CatalogError, ErrorKind, Location};
use crate::yaml::Node;

/// Annotation overriding the `service.name` of a component (default: `metadata.name`).
pub const ANNOTATION_SERVICE_NAME: &str = "sightline.dev/service-name";
/// Annotation giving a component's criticality.
pub const ANNOTATION_CRITICALITY: &str = "sightline.dev/criticality";
/// Annotation giving a group's contact (preferred over `slack.com/channel` and e-mail).
pub const ANNOTATION_CONTACT: &str = "sightline.dev/contact";
/// Annotation giving a group's cost centre.
pub const ANNOTATION_COST_CENTER: &str = "sightline.dev/cost-center";

const SLACK_CHANNEL: &str = "slack.com/channel";
const PAGERDUTY_SERVICE: &str = "pagerduty.com/service-id";
const GITHUB_SLUG: &str = "github.com/project-slug";
const SOURCE_LOCATION: &str = "backstage.io/source-location";
/// Annotation linking a component to the Kubernetes objects labelled with the same value
/// (the Backstage Kubernetes plugin's; default: the component's name).
pub const ANNOTATION_KUBERNETES_ID: &str = "backstage.io/kubernetes-id";

/// A Backstage `Group`: one team.
pub(crate) struct Group {
    pub name: String,
    contact: Option<String>,
    oncall: Option<String>,
    cost_center: Option<String>,
}

impl Group {
    pub fn to_team(&self) -> Team {
        Team {
            name: Arc::from(self.name.as_str()),
            contact: self.contact.as_deref().map(Arc::from),
            oncall: self.oncall.as_deref().map(Arc::from),
            cost_center: self.cost_center.as_deref().map(Arc::from),
        }
    }
}

/// A Backstage `Component` with its owner resolved to a team name.
pub(crate) struct Component {
    pub service: String,
    pub owner: String,
    system: Option<String>,
    repository: Option<String>,
    criticality: Option<String>,
    /// `backstage.io/kubernetes-id` (default: `metadata.name`).
    pub kubernetes_id: String,
    /// Where `metadata.name` is.
    pub loc: Location,
}

impl Component {
    pub fn assignment(&self) -> Assignment<'_> {
        Assignment {
            team: &self.owner,
            system: self.system.as_deref(),
            repository: self.repository.as_deref(),
            criticality: self.criticality.as_deref(),
        }
    }
}

/// Everything read from all Backstage files.
#[derive(Default)]
pub(crate) struct Entities {
    pub groups: Vec<(Group, Location)>,
    /// Components; `owner` is `None` when it must come from the component's system.
    components: Vec<(Component, Option<String>, Location)>,
    /// System name -> owner team.
    systems: HashMap<String, String>,
}

impl Entities {
    /// Fills in the owner of components without `spec.owner` from their `System`.
    pub fn resolve_owners(&mut self, errors: &mut Vec<CatalogError>) -> Vec<Component> {
        let mut out = Vec::new();
        for (mut comp, owner, doc_loc) in std::mem::take(&mut self.components) {
            let owner = owner.or_else(|| comp.system.as_ref().and_then(|s| self.systems.get(s)).cloned());
            match owner {
                Some(owner) => {
                    comp.owner = owner;
                    out.push(comp);
                }
                None => errors.push(CatalogError::at(
                    &doc_loc,
                    ErrorKind::Invalid(format!(
                        "Backstage component \"{}\": no `spec.owner` (and no owned `spec.system`)",
                        comp.service
                    )),
                )),
            }
        }
        out
    }
}

/// The entity name of a Backstage entity reference: `group:default/payments`,
/// `group:payments`, `default/payments` and `payments` are all `payments`.
pub fn entity_ref_name(reference: &str) -> &str {
    let r = reference.trim();
    let r = match r.split_once(':') {
        Some((kind, rest)) if !kind.contains('/') => rest,
        _ => r,
    };
    r.rsplit_once('/').map_or(r, |(_, name)| name)
}

/// Parses every document of one Backstage file into `out`.
pub(crate) fn parse(file: &Arc<Path>, docs: &[Node], out: &mut Entities, errors: &mut Vec<CatalogError>) {
    let loc = |line: usize| Location { file: Arc::clone(file), line };
    for doc in docs {
        let Some(kind) = doc.get("kind").and_then(Node::as_str) else {
            continue;
        };
        let kind = kind.to_ascii_lowercase();
        if !matches!(kind.as_str(), "component" | "group" | "system") {
            continue;
        }
        let Some(name) = doc.path(&["metadata", "name"]).and_then(Node::as_str) else {
            errors.push(CatalogError::at(
                &loc(doc.line),
                ErrorKind::Invalid(format!("Backstage {kind} without `metadata.name`")),
            ));
            continue;
        };
        let name_loc = loc(doc.path(&["metadata", "name"]).map_or(doc.line, |n| n.line));
        let annotation = |key: &str| {
            doc.path(&["metadata", "annotations", key]).and_then(Node::as_str).map(str::trim).filter(|v| !v.is_empty())
        };
        let spec = |key: &str| doc.path(&["spec", key]).and_then(Node::as_str).map(str::trim).filter(|v| !v.is_empty());
        match kind.as_str() {
            "group" => {
                let contact = annotation(ANNOTATION_CONTACT).or_else(|| annotation(SLACK_CHANNEL)).or_else(|| {
                    doc.path(&["spec", "profile", "email"])
                        .and_then(Node::as_str)
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                });
                let group = Group {
                    name: name.to_owned(),
                    contact: contact.map(str::to_owned),
                    oncall: annotation(PAGERDUTY_SERVICE).map(|id| format!("pagerduty:{id}")),
                    cost_center: annotation(ANNOTATION_COST_CENTER).map(str::to_owned),
                };
                out.groups.push((group, name_loc));
            }
            "system" => {
                if let Some(owner) = spec("owner") {
                    out.systems.insert(name.to_owned(), entity_ref_name(owner).to_owned());
                }
            }
            _ => {
                let repository = annotation(GITHUB_SLUG)
                    .map(|slug| format!("github.com/{slug}"))
                    .or_else(|| annotation(SOURCE_LOCATION).map(|s| s.strip_prefix("url:").unwrap_or(s).to_owned()));
                let service = annotation(ANNOTATION_SERVICE_NAME).unwrap_or(name);
                let comp = Component {
                    service: service.to_owned(),
                    owner: String::new(),
                    system: spec("system").map(|s| entity_ref_name(s).to_owned()),
                    repository,
                    criticality: annotation(ANNOTATION_CRITICALITY).map(str::to_owned),
                    kubernetes_id: annotation(ANNOTATION_KUBERNETES_ID).unwrap_or(name).to_owned(),
                    loc: name_loc,
                };
                let owner = spec("owner").map(|o| entity_ref_name(o).to_owned());
                out.components.push((comp, owner, loc(doc.line)));
            }
        }
    }
}

/// Expands the configured Backstage entries (files, directories, globs) into files, in
/// order, without duplicates. A glob that matches nothing is not an error (logged).
pub(crate) fn files(entries: &[String], errors: &mut Vec<CatalogError>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let mut found = Vec::new();
        if is_glob(entry) {
            let glob = match GlobBuilder::new(entry).literal_separator(true).build() {
                Ok(g) => g.compile_matcher(),
                Err(e) => {
                    errors.push(CatalogError::new(
                        entry,
                        None,
                        ErrorKind::Invalid(format!("bad Backstage glob: {}", e.kind())),
                    ));
                    continue;
                }
            };
            let base = glob_base(entry);
            // `*.yaml` walks `.`, whose entries are `./x.yaml`: match them as `x.yaml`.
            let implicit_dot = base == Path::new(".") && !entry.starts_with("./");
            walk(&base, &mut |p| {
                let p = if implicit_dot { p.strip_prefix(".").unwrap_or(p) } else { p };
                if glob.is_match(p) {
                    found.push(p.to_path_buf());
                }
            });
            if found.is_empty() {
                tracing::warn!(glob = %entry, "Backstage glob matches no file");
            }
        } else {
            let path = PathBuf::from(entry);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => walk(&path, &mut |p| {
                    if p.file_name().is_some_and(|n| n == "catalog-info.yaml" || n == "catalog-info.yml") {
                        found.push(p.to_path_buf());
                    }
                }),
                Ok(_) => found.push(path),
                Err(e) => {
                    errors.push(CatalogError::new(path, None, ErrorKind::Io(e.to_string())));
                    continue;
                }
            }
        }
        found.sort();
        for p in found {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

pub(crate) fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// The directory to start walking from: the leading components without glob syntax.
pub(crate) fn glob_base(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    let path = Path::new(pattern);
    let parts: Vec<PathPart<'_>> = path.components().collect();
    // The last component is a file-name pattern even without glob syntax.
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        if part.as_os_str().to_str().is_some_and(is_glob) {
            break;
        }
        base.push(part);
    }
    if base.as_os_str().is_empty() {
        base.push(".");
    }
    base
}

/// Calls `f` for every file under `dir` (recursively). Hidden directories and symlinked
/// directories are not entered (no loops, no Kubernetes `..data` duplicates); symlinked
/// files are reported.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let hidden = entry.file_name().to_str().is_some_and(|n| n.starts_with('.'));
        if file_type.is_dir() {
            if !hidden {
                walk(&path, f);
            }
        } else if path.is_file() {
            f(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_refs() {
        for r in
            ["group:default/payments", "group:payments", "default/payments", "payments", " Group:default/payments "]
        {
            assert_eq!(entity_ref_name(r), "payments", "{r}");
        }
        assert_eq!(entity_ref_name("user:default/jdoe"), "jdoe");
    }

    #[test]
    fn glob_bases() {
        assert_eq!(glob_base("repos/*/catalog-info.yaml"), Path::new("repos"));
        assert_eq!(glob_base("a/b/**/x.yaml"), Path::new("a/b"));
        assert_eq!(glob_base("*.yaml"), Path::new("."));
        assert_eq!(glob_base("/abs/dir/*.yaml"), Path::new("/abs/dir"));
    }
}
