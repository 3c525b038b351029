//! Finding, reading, parsing and validating catalog sources into a [`Catalog`].

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::GlobBuilder;
use regex::Regex;
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use crate::backstage;
use crate::catalog::{Assignment, Builder, Catalog, DEFAULT_TEAM, Matcher, Team};
use crate::error::{CatalogError, ErrorKind, Location, closest};
use crate::yaml::{self, Kind, Node};

/// Where the catalog comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogConfig {
    /// Native catalog files or directories (every `*.yaml`/`*.yml` file directly inside a
    /// directory is loaded, in file-name order). Loaded in the order given.
    pub catalog: Vec<PathBuf>,
    /// Backstage `catalog-info.yaml` files, glob patterns (`repos/*/catalog-info.yaml`,
    /// `backstage/**/*.yaml`), or directories (searched recursively for
    /// `catalog-info.yaml`/`catalog-info.yml`).
    pub backstage: Vec<String>,
    /// The team of resources that nothing matches (`"unowned"` when empty).
    pub default_team: String,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig { catalog: Vec::new(), backstage: Vec::new(), default_team: DEFAULT_TEAM.to_owned() }
    }
}

/// Loads and validates the catalog described by `cfg`.
///
/// Every problem found is returned (not just the first), sorted by file and line.
pub fn load(cfg: &CatalogConfig) -> Result<Catalog, Vec<CatalogError>> {
    load_inner(cfg, &mut Vec::new(), &[])
}

/// What `sightline catalog lint` reports: the errors [`load`] refuses the catalog for, and
/// warnings (teams without contact or on-call, rules that never apply or match no known
/// service, Backstage owners that are not teams), each sorted by file and line.
#[derive(Debug, Default)]
pub struct Lint {
    pub errors: Vec<CatalogError>,
    pub warnings: Vec<CatalogError>,
}

/// Lints the catalog described by `cfg`. `known_services` (e.g. the services the platform
/// has seen) are what a rule's `service.name` pattern is checked against, with the catalog's
/// own service entries; when empty, that check is skipped.
pub fn lint(cfg: &CatalogConfig, known_services: &[String]) -> Lint {
    let mut warnings = Vec::new();
    let errors = load_inner(cfg, &mut warnings, known_services).err().unwrap_or_default();
    warnings.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Lint { errors, warnings }
}

fn load_inner(
    cfg: &CatalogConfig,
    warnings: &mut Vec<CatalogError>,
    known_services: &[String],
) -> Result<Catalog, Vec<CatalogError>> {
    let mut errors = Vec::new();
    let mut hasher = DefaultHasher::new();
    cfg.default_team.hash(&mut hasher);
    let mut files = Vec::new();

    // Read every source; a file that cannot be read or parsed adds an error and nothing else.
    let mut unparsed = false;
    let mut native = Vec::new();
    for path in native_files(&cfg.catalog, &mut errors) {
        let Some(docs) = read_yaml(&path, &mut hasher, &mut errors) else {
            unparsed = true;
            continue;
        };
        let file: Arc<Path> = Arc::from(path.as_path());
        files.push(path);
        native.push(parse_native(&file, &docs, &mut errors));
    }
    let mut bs = backstage::Entities::default();
    for path in backstage::files(&cfg.backstage, &mut errors) {
        let Some(docs) = read_yaml(&path, &mut hasher, &mut errors) else {
            unparsed = true;
            continue;
        };
        let file: Arc<Path> = Arc::from(path.as_path());
        files.push(path);
        backstage::parse(&file, &docs, &mut bs, &mut errors);
    }
    let components = bs.resolve_owners(&mut errors);

    let mut builder = Builder::new(&cfg.default_team);

    // Teams: native first (duplicates are errors), then Backstage groups not defined natively.
    let mut team_locs: HashMap<String, Location> = HashMap::new();
    // Names of every team entry, even those whose entry has other errors, so that one bad
    // field does not cascade into "unknown team" errors everywhere.
    let mut known_teams: BTreeSet<String> = BTreeSet::new();
    for file in &native {
        known_teams.extend(file.team_names.iter().cloned());
        for (team, loc) in &file.teams {
            if let Some(first) = team_locs.get(&team.name) {
                errors.push(CatalogError::at(
                    loc,
                    ErrorKind::DuplicateTeam { name: team.name.clone(), first: first.clone() },
                ));
                continue;
            }
            team_locs.insert(team.name.clone(), loc.clone());
            let t = team.to_team();
            missing_fields(&t, loc, warnings);
            builder.add_team(t);
        }
    }
    let mut group_locs: HashMap<String, Location> = HashMap::new();
    for (group, loc) in &bs.groups {
        known_teams.insert(group.name.clone());
        if let Some(first) = group_locs.get(&group.name) {
            errors.push(CatalogError::at(
                loc,
                ErrorKind::DuplicateTeam { name: group.name.clone(), first: first.clone() },
            ));
            continue;
        }
        group_locs.insert(group.name.clone(), loc.clone());
        if team_locs.contains_key(&group.name) {
            tracing::debug!(team = %group.name, at = %loc, "native team entry wins over Backstage group");
            continue;
        }
        let t = group.to_team();
        missing_fields(&t, loc, warnings);
        builder.add_team(t);
    }

    // Unknown teams are only checked when the catalog defines teams at all, and only when
    // every file could be read (a broken file would otherwise produce misleading errors).
    let check_teams = !known_teams.is_empty() && !unparsed;
    let check_team = |entity: &str, team: &str, loc: &Location, errors: &mut Vec<CatalogError>| {
        if check_teams && !known_teams.contains(team) {
            errors.push(CatalogError::at(
                loc,
                ErrorKind::UnknownTeam {
                    entity: entity.to_owned(),
                    team: team.to_owned(),
                    suggestion: closest(team, known_teams.iter().map(String::as_str)),
                },
            ));
        }
    };

    // Services: native entries (duplicates are errors), then Backstage components.
    let service_source: Arc<str> = Arc::from("service");
    let mut service_locs: HashMap<String, Location> = HashMap::new();
    for file in &native {
        for svc in &file.services {
            let def = &svc.def;
            check_team(&format!("service \"{}\"", def.name), &def.team, &svc.team_loc, &mut errors);
            if let Some(first) = service_locs.get(&def.name) {
                errors.push(CatalogError::at(
                    &svc.loc,
                    ErrorKind::DuplicateService { name: def.name.clone(), first: first.clone() },
                ));
                continue;
            }
            service_locs.insert(def.name.clone(), svc.loc.clone());
            builder.add_service(&def.name, &def.assignment(), &service_source);
        }
    }
    let backstage_source: Arc<str> = Arc::from("backstage");
    let mut component_locs: HashMap<String, Location> = HashMap::new();
    for comp in &components {
        if let Some(first) = component_locs.get(&comp.service) {
            errors.push(CatalogError::at(
                &comp.loc,
                ErrorKind::DuplicateService { name: comp.service.clone(), first: first.clone() },
            ));
            continue;
        }
        component_locs.insert(comp.service.clone(), comp.loc.clone());
        if service_locs.contains_key(&comp.service) {
            tracing::debug!(service = %comp.service, at = %comp.loc, "native service entry wins over Backstage component");
            continue;
        }
        if check_teams && !known_teams.contains(&comp.owner) {
            tracing::warn!(
                component = %comp.service,
                owner = %comp.owner,
                at = %comp.loc,
                "Backstage component owner is not a known team or group"
            );
            warnings.push(CatalogError::at(
                &comp.loc,
                ErrorKind::UnknownOwner { component: comp.service.clone(), owner: comp.owner.clone() },
            ));
        }
        builder.add_service(&comp.service, &comp.assignment(), &backstage_source);
    }
    // Every component, by its Kubernetes id (processors.ownership.kubernetes.backstage_kubernetes_id).
    let k8s_source: Arc<str> = Arc::from("k8s:backstage");
    for comp in &components {
        builder.add_kubernetes_id(&comp.kubernetes_id, &comp.assignment(), &k8s_source);
    }

    // Rules, in order; each compiled rule kept for the lint's checks.
    let mut compiled: Vec<Compiled> = Vec::new();
    let mut index = 0usize;
    for file in &native {
        for rule in &file.rules {
            index += 1;
            let entity = format!("rule {index}");
            check_team(&entity, &rule.def.team, &rule.team_loc, &mut errors);
            if rule.def.matchers.0.is_empty() {
                errors.push(CatalogError::at(&rule.match_loc, ErrorKind::EmptyMatch { entity }));
                continue;
            }
            let mut matchers = Vec::new();
            for ((key, pattern), line) in rule.def.matchers.0.iter().zip(&rule.value_lines) {
                match compile_matcher(&entity, key, pattern) {
                    Ok(m) => matchers.push((Box::from(key.as_str()), m)),
                    Err(kind) => errors.push(CatalogError::new(rule.match_loc.file.to_path_buf(), Some(*line), kind)),
                }
            }
            if matchers.len() == rule.def.matchers.0.len() {
                let kept = rule
                    .def
                    .matchers
                    .0
                    .iter()
                    .zip(&matchers)
                    .map(|((k, p), (_, m))| (k.as_str(), p.as_str(), m.clone()));
                compiled.push((entity, &rule.match_loc, kept.collect()));
                builder.add_rule(matchers, &rule.def.assignment());
            }
        }
    }
    let services: Vec<(&str, &Location)> = service_locs
        .iter()
        .chain(component_locs.iter().filter(|(name, _)| !service_locs.contains_key(*name)))
        .map(|(name, loc)| (name.as_str(), loc))
        .collect();
    lint_rules(&compiled, &services, known_services, warnings);

    if !errors.is_empty() {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(errors);
    }
    builder.finish_keys();
    let mut catalog = builder.catalog;
    catalog.files = files;
    catalog.fingerprint = hasher.finish();
    Ok(catalog)
}

/// Lint: a team without a contact or on-call entry.
fn missing_fields(t: &Team, loc: &Location, warnings: &mut Vec<CatalogError>) {
    for (missing, v) in [("contact", &t.contact), ("oncall", &t.oncall)] {
        if v.is_none() {
            warnings.push(CatalogError::at(loc, ErrorKind::MissingTeamField { team: t.name.to_string(), missing }));
        }
    }
}

/// A rule as the lint checks it: its name, where its `match` is, and each key with its
/// pattern as written and compiled.
type Compiled<'a> = (String, &'a Location, Vec<(&'a str, &'a str, Matcher)>);

/// A pattern that is compared as written (no `regex:`, no glob syntax).
fn is_exact(pattern: &str) -> bool {
    !pattern.starts_with("regex:") && !pattern.contains(['*', '?', '[', '{', '\\'])
}

/// Whether the matcher of `pattern` matches every value `other` matches. Sound, not complete:
/// true only when that is certain (the same pattern, a match-anything pattern, or `other`
/// an exact value the matcher matches).
fn covers(pattern: &str, m: &Matcher, other: &str) -> bool {
    pattern == other || matches!(pattern, "*" | "**" | "regex:.*") || (is_exact(other) && m.matches(other))
}

/// Lint: rules that never apply (an earlier rule covers them, or their exact `service.name`
/// has its own entry), and rules whose `service.name` pattern matches no known service.
fn lint_rules(rules: &[Compiled], services: &[(&str, &Location)], known: &[String], warnings: &mut Vec<CatalogError>) {
    for (j, (entity, loc, mj)) in rules.iter().enumerate() {
        let by_rule = rules[..j]
            .iter()
            .find(|(_, _, mi)| mi.iter().all(|(ki, pi, m)| mj.iter().any(|(kj, pj, _)| ki == kj && covers(pi, m, pj))));
        let service = mj.iter().find(|(k, _, _)| *k == crate::catalog::SERVICE_NAME).map(|(_, p, m)| (*p, m));
        let by_service =
            service.filter(|(p, _)| is_exact(p)).and_then(|(p, _)| services.iter().find(|(name, _)| *name == p));
        let shadow = match (by_rule, by_service) {
            (Some((e, at, _)), _) => Some((e.clone(), (*at).clone())),
            (None, Some((name, at))) => Some((format!("service \"{name}\""), (*at).clone())),
            (None, None) => None,
        };
        if let Some((by, at)) = shadow {
            warnings.push(CatalogError::at(loc, ErrorKind::ShadowedRule { entity: entity.clone(), by, at }));
            continue;
        }
        if let Some((p, m)) = service
            && !known.is_empty()
            && !known.iter().map(String::as_str).chain(services.iter().map(|(n, _)| *n)).any(|n| m.matches(n))
        {
            warnings.push(CatalogError::at(
                loc,
                ErrorKind::RuleMatchesNothing { entity: entity.clone(), pattern: p.to_string(), known: known.len() },
            ));
        }
    }
}

/// Reads and parses one YAML file, hashing its path and content.
/// The fingerprint [`load`] would give the catalog, from the sources' paths and bytes alone
/// (no parsing): a file event that changed no source is told apart without parsing again and
/// without logging the load's warnings again. `None` when a source cannot be listed or read.
pub(crate) fn source_fingerprint(cfg: &CatalogConfig) -> Option<u64> {
    let mut errors = Vec::new();
    let mut hasher = DefaultHasher::new();
    cfg.default_team.hash(&mut hasher);
    let files =
        native_files(&cfg.catalog, &mut errors).into_iter().chain(backstage::files(&cfg.backstage, &mut errors));
    for path in files.collect::<Vec<_>>() {
        let text = std::fs::read_to_string(&path).ok()?;
        path.hash(&mut hasher);
        text.hash(&mut hasher);
    }
    errors.is_empty().then(|| hasher.finish())
}

fn read_yaml(path: &Path, hasher: &mut DefaultHasher, errors: &mut Vec<CatalogError>) -> Option<Vec<Node>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            errors.push(CatalogError::new(path, None, ErrorKind::Io(e.to_string())));
            return None;
        }
    };
    path.hash(hasher);
    text.hash(hasher);
    match yaml::parse_documents(&text) {
        Ok(docs) => Some(docs),
        Err(e) => {
            errors.push(CatalogError::new(path, e.line, ErrorKind::Syntax(e.message)));
            None
        }
    }
}

/// Expands the native catalog paths into files, in load order.
fn native_files(paths: &[PathBuf], errors: &mut Vec<CatalogError>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in paths {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                errors.push(CatalogError::new(path, None, ErrorKind::Io(e.to_string())));
                continue;
            }
        };
        if !meta.is_dir() {
            out.push(path.clone());
            continue;
        }
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push(CatalogError::new(path, None, ErrorKind::Io(e.to_string())));
                continue;
            }
        };
        let mut found: Vec<PathBuf> =
            entries.filter_map(Result::ok).map(|entry| entry.path()).filter(|p| is_yaml_file(p)).collect();
        found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        out.extend(found);
    }
    out
}

/// A visible regular file (or symlink to one) named `*.yaml` or `*.yml`: what a catalog
/// directory loads.
pub fn is_yaml_file(path: &Path) -> bool {
    let visible = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.starts_with('.'));
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    visible && yaml && path.is_file()
}

// ---------------------------------------------------------------------------------------
// Native catalog files.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamDef {
    name: String,
    contact: Option<String>,
    oncall: Option<String>,
    cost_center: Option<String>,
}

impl TeamDef {
    fn to_team(&self) -> Team {
        Team {
            name: Arc::from(self.name.as_str()),
            contact: self.contact.as_deref().map(Arc::from),
            oncall: self.oncall.as_deref().map(Arc::from),
            cost_center: self.cost_center.as_deref().map(Arc::from),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceDef {
    name: String,
    team: String,
    system: Option<String>,
    repository: Option<String>,
    criticality: Option<String>,
}

impl ServiceDef {
    fn assignment(&self) -> Assignment<'_> {
        Assignment {
            team: &self.team,
            system: self.system.as_deref(),
            repository: self.repository.as_deref(),
            criticality: self.criticality.as_deref(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    #[serde(rename = "match")]
    matchers: MatchDef,
    team: String,
    system: Option<String>,
    repository: Option<String>,
    criticality: Option<String>,
}

impl RuleDef {
    fn assignment(&self) -> Assignment<'_> {
        Assignment {
            team: &self.team,
            system: self.system.as_deref(),
            repository: self.repository.as_deref(),
            criticality: self.criticality.as_deref(),
        }
    }
}

/// `match:` — attribute key to pattern, in order, keys unique.
#[derive(Debug, Default)]
struct MatchDef(Vec<(String, String)>);

impl<'de> Deserialize<'de> for MatchDef {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MatchDef;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of attribute keys to patterns")
            }
            fn visit_unit<E: de::Error>(self) -> Result<MatchDef, E> {
                Ok(MatchDef::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MatchDef, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if out.iter().any(|(key, _)| *key == k) {
                        return Err(de::Error::custom(format!("duplicate match key `{k}`")));
                    }
                    out.push((k, v));
                }
                Ok(MatchDef(out))
            }
        }
        d.deserialize_map(V)
    }
}

struct ServiceEntry {
    def: ServiceDef,
    loc: Location,
    team_loc: Location,
}

struct RuleEntry {
    def: RuleDef,
    team_loc: Location,
    match_loc: Location,
    /// Line of each match value, parallel to `def.matchers`.
    value_lines: Vec<usize>,
}

#[derive(Default)]
struct NativeFile {
    teams: Vec<(TeamDef, Location)>,
    /// Every `name` of a team entry, including entries with errors.
    team_names: Vec<String>,
    services: Vec<ServiceEntry>,
    rules: Vec<RuleEntry>,
}

const SECTIONS: [&str; 3] = ["teams", "services", "rules"];

fn parse_native(file: &Arc<Path>, docs: &[Node], errors: &mut Vec<CatalogError>) -> NativeFile {
    let mut out = NativeFile::default();
    let loc = |line: usize| Location { file: Arc::clone(file), line };
    let err = |line: usize, kind: ErrorKind| CatalogError::at(&loc(line), kind);
    for doc in docs {
        if doc.is_null() {
            continue;
        }
        let Some(entries) = doc.entries() else {
            errors.push(err(
                doc.line,
                ErrorKind::Schema(format!(
                    "expected a mapping with `teams`, `services` and/or `rules`, found a {}",
                    doc.type_name()
                )),
            ));
            continue;
        };
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in entries {
            let Some(section) = key.as_str().filter(|k| SECTIONS.contains(k)) else {
                let name = key.as_str().unwrap_or("?");
                let hint = closest(name, SECTIONS.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                errors.push(err(
                    key.line,
                    ErrorKind::Schema(format!(
                        "unknown field `{name}`, expected one of `teams`, `services`, `rules`{hint}"
                    )),
                ));
                continue;
            };
            if seen.contains(&section) {
                errors.push(err(key.line, ErrorKind::Schema(format!("duplicate field `{section}`"))));
                continue;
            }
            seen.push(section);
            let items: &[Node] = match &value.kind {
                Kind::Seq(items) => items,
                _ if value.is_null() => &[],
                _ => {
                    errors.push(err(
                        value.line,
                        ErrorKind::Schema(format!("`{section}` must be a list, found a {}", value.type_name())),
                    ));
                    continue;
                }
            };
            for (i, item) in items.iter().enumerate() {
                let entity = entity_name(section, i, item);
                let schema_err =
                    |e: yaml::DeError| err(e.line.unwrap_or(item.line), ErrorKind::Schema(format!("{entity}: {e}")));
                let empty = |field: &str| {
                    err(item.line_of(field), ErrorKind::Invalid(format!("{entity}: `{field}` must not be empty")))
                };
                match section {
                    "teams" => {
                        if let Some(name) = item.get("name").and_then(Node::as_str) {
                            out.team_names.push(name.to_owned());
                        }
                        match yaml::from_node::<TeamDef>(item) {
                            Ok(def) if def.name.is_empty() => errors.push(empty("name")),
                            Ok(def) => out.teams.push((def, loc(item.line))),
                            Err(e) => errors.push(schema_err(e)),
                        }
                    }
                    "services" => match yaml::from_node::<ServiceDef>(item) {
                        Ok(def) if def.name.is_empty() => errors.push(empty("name")),
                        Ok(def) if def.team.is_empty() => errors.push(empty("team")),
                        Ok(def) => out.services.push(ServiceEntry {
                            def,
                            loc: loc(item.line),
                            team_loc: loc(item.line_of("team")),
                        }),
                        Err(e) => errors.push(schema_err(e)),
                    },
                    _ => match yaml::from_node::<RuleDef>(item) {
                        Ok(def) if def.team.is_empty() => errors.push(empty("team")),
                        Ok(def) => {
                            let match_node = item.get("match");
                            let value_lines = def
                                .matchers
                                .0
                                .iter()
                                .map(|(k, _)| match_node.map_or(item.line, |m| m.line_of(k)))
                                .collect();
                            out.rules.push(RuleEntry {
                                def,
                                team_loc: loc(item.line_of("team")),
                                match_loc: loc(item.line_of("match")),
                                value_lines,
                            });
                        }
                        Err(e) => errors.push(schema_err(e)),
                    },
                }
            }
        }
    }
    out
}

/// `team "payments"`, `service "checkout"`, `rules[2]` (0-based position in the file).
fn entity_name(section: &str, index: usize, item: &Node) -> String {
    let singular = &section[..section.len() - 1];
    let name = item.get("name").and_then(Node::as_str).filter(|n| !n.is_empty());
    match (section, name) {
        ("rules", _) | (_, None) => format!("{section}[{index}]"),
        (_, Some(name)) => format!("{singular} \"{name}\""),
    }
}

/// Compiles one `key: pattern` of a rule: `regex:<re>` (full match), a glob when the
/// pattern has glob syntax (`* ? [ { \`), else an exact comparison.
fn compile_matcher(entity: &str, key: &str, pattern: &str) -> Result<Matcher, ErrorKind> {
    if let Some(re) = pattern.strip_prefix("regex:") {
        return Regex::new(&format!("^(?:{re})$")).map(Matcher::Regex).map_err(|e| ErrorKind::BadRegex {
            entity: entity.to_owned(),
            key: key.to_owned(),
            pattern: re.to_owned(),
            reason: regex_reason(&e),
        });
    }
    if !pattern.contains(['*', '?', '[', '{', '\\']) {
        return Ok(Matcher::Exact(Box::from(pattern)));
    }
    GlobBuilder::new(pattern).literal_separator(false).build().map(|g| Matcher::Glob(g.compile_matcher())).map_err(
        |e| ErrorKind::BadGlob {
            entity: entity.to_owned(),
            key: key.to_owned(),
            pattern: pattern.to_owned(),
            reason: e.kind().to_string(),
        },
    )
}

/// The one-line reason of a regex error (its `Display` is a multi-line diagram).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines().find_map(|l| l.strip_prefix("error: ")).map_or_else(|| text.replace('\n', " "), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_kinds() {
        assert!(matches!(compile_matcher("r", "k", "pay").unwrap(), Matcher::Exact(_)));
        assert!(matches!(compile_matcher("r", "k", "pay-*").unwrap(), Matcher::Glob(_)));
        assert!(matches!(compile_matcher("r", "k", "regex:pay-.*").unwrap(), Matcher::Regex(_)));
        let err = compile_matcher("rule 1", "k", "regex:(").unwrap_err();
        assert!(err.to_string().contains("unclosed group"), "{err}");
        let err = compile_matcher("rule 1", "k", "[abc").unwrap_err();
        assert!(err.to_string().contains("bad glob"), "{err}");
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use super::*;

    #[test]
    fn the_source_fingerprint_is_the_loaded_catalogs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("catalog")).unwrap();
        std::fs::write(
            dir.path().join("catalog/a.yaml"),
            "teams: [{ name: payments }]\nservices: [{ name: checkout, team: payments }]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("catalog-info.yaml"),
            "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: { name: cart }\nspec: { owner: payments }\n",
        )
        .unwrap();
        let cfg = CatalogConfig {
            catalog: vec![dir.path().join("catalog")],
            backstage: vec![dir.path().join("catalog-info.yaml").display().to_string()],
            default_team: "unowned".into(),
        };
        let loaded = load(&cfg).unwrap();
        assert_eq!(source_fingerprint(&cfg), Some(loaded.fingerprint()));
        // Another file beside the sources changes nothing; a source's bytes do.
        std::fs::write(dir.path().join("traces.jsonl"), "{}\n").unwrap();
        assert_eq!(source_fingerprint(&cfg), Some(loaded.fingerprint()));
        std::fs::write(dir.path().join("catalog/a.yaml"), "teams: [{ name: payments }]\n").unwrap();
        assert_ne!(source_fingerprint(&cfg), Some(loaded.fingerprint()));
    }
}
