//! The loaded, immutable catalog and its resolution logic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use globset::GlobMatcher;
use regex::Regex;

/// The attribute key that exact service entries (native and Backstage) are looked up by.
pub const SERVICE_NAME: &str = "service.name";

/// The default team of resources that nothing in the catalog matches.
pub const DEFAULT_TEAM: &str = "unowned";

/// Who owns a resource, and which part of the catalog decided it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ownership {
    /// The owning team (`owner.team`).
    pub team: Arc<str>,
    /// How to reach the team (`owner.contact`), from the team entry.
    pub contact: Option<Arc<str>>,
    /// The team's on-call reference (`owner.oncall`), from the team entry.
    pub oncall: Option<Arc<str>>,
    /// The system the service belongs to (`owner.system`).
    pub system: Option<Arc<str>>,
    /// The source repository (`owner.repository`).
    pub repository: Option<Arc<str>>,
    /// The service criticality (`service.criticality`).
    pub criticality: Option<Arc<str>>,
    /// What decided (`owner.source`): `service`, `backstage`, `rule:<i>` (1-based) or
    /// `default`.
    pub source: Arc<str>,
}

impl Ownership {
    /// True when nothing in the catalog matched (the default team was assigned).
    pub fn is_default(&self) -> bool {
        &*self.source == "default"
    }
}

/// A team entry (native `teams:` entry or Backstage `Group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// Team name.
    pub name: Arc<str>,
    /// Chat channel or e-mail.
    pub contact: Option<Arc<str>>,
    /// On-call reference, e.g. `pagerduty:PAY123`.
    pub oncall: Option<Arc<str>>,
    /// Cost centre.
    pub cost_center: Option<Arc<str>>,
}

/// How a rule compares one attribute value.
#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    Exact(Box<str>),
    Glob(GlobMatcher),
    Regex(Regex),
}

impl Matcher {
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => **s == *value,
            Matcher::Glob(g) => g.is_match(value),
            Matcher::Regex(r) => r.is_match(value),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// Every `(key, matcher)` must match.
    pub matchers: Vec<(Box<str>, Matcher)>,
    pub result: Arc<Ownership>,
}

impl Rule {
    fn matches<'a>(&self, attr: &dyn Fn(&str) -> Option<&'a str>) -> bool {
        self.matchers.iter().all(|(key, m)| attr(key).is_some_and(|v| m.matches(v)))
    }
}

/// An immutable, validated ownership catalog. Build it with [`crate::load`]; share it
/// through a [`crate::CatalogHandle`].
///
/// [`Catalog::resolve`] does no I/O, takes no lock and allocates nothing: every possible
/// answer is built at load time and handed out as an `Arc`.
pub struct Catalog {
    pub(crate) services: HashMap<Box<str>, Arc<Ownership>>,
    /// Backstage components by `backstage.io/kubernetes-id`.
    pub(crate) kubernetes_ids: HashMap<Box<str>, Arc<Ownership>>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) default: Arc<Ownership>,
    pub(crate) teams: BTreeMap<Arc<str>, Team>,
    pub(crate) team_names: Vec<Arc<str>>,
    pub(crate) match_keys: Vec<String>,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) fingerprint: u64,
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field("services", &self.services.len())
            .field("rules", &self.rules.len())
            .field("teams", &self.team_names)
            .field("default_team", &self.default.team)
            .field("match_keys", &self.match_keys)
            .field("files", &self.files)
            .finish()
    }
}

impl Catalog {
    /// A catalog with no entries: everything resolves to `default_team`.
    pub fn empty(default_team: &str) -> Catalog {
        let mut b = Builder::new(default_team);
        b.finish_keys();
        b.catalog
    }

    /// Who owns the resource whose attributes `attr` returns.
    ///
    /// Order: exact native service entry for `service.name` (`source = "service"`), exact
    /// Backstage component (`"backstage"`), the first matching rule (`"rule:<i>"`, 1-based),
    /// else the default team (`"default"`, every other field `None`).
    pub fn resolve<'a>(&self, attr: &dyn Fn(&str) -> Option<&'a str>) -> Arc<Ownership> {
        self.resolve_service(attr).unwrap_or_else(|| self.resolve_rules(attr))
    }

    /// The exact service entry (native, then Backstage) for the resource's `service.name`:
    /// the first step of [`Catalog::resolve`], which a caller with another source of owners
    /// (Kubernetes) runs before its own.
    pub fn resolve_service<'a>(&self, attr: &dyn Fn(&str) -> Option<&'a str>) -> Option<Arc<Ownership>> {
        if self.services.is_empty() {
            return None;
        }
        attr(SERVICE_NAME).and_then(|name| self.services.get(name)).map(Arc::clone)
    }

    /// The rules, then the default team: the steps of [`Catalog::resolve`] after the service
    /// entries.
    pub fn resolve_rules<'a>(&self, attr: &dyn Fn(&str) -> Option<&'a str>) -> Arc<Ownership> {
        self.rules
            .iter()
            .find(|rule| rule.matches(attr))
            .map_or_else(|| Arc::clone(&self.default), |rule| Arc::clone(&rule.result))
    }

    /// The Backstage component whose `backstage.io/kubernetes-id` annotation (or name) is
    /// `id`, as an owner with `source = "k8s:backstage"`.
    pub fn kubernetes_id(&self, id: &str) -> Option<&Arc<Ownership>> {
        self.kubernetes_ids.get(id)
    }

    /// `team` as an owner decided by `source`, with the team entry's contact and on-call when
    /// the catalog defines the team.
    pub fn team_owner(&self, team: &str, source: &str) -> Ownership {
        let entry = self.teams.get(team);
        Ownership {
            team: entry.map_or_else(|| Arc::from(team), |t| Arc::clone(&t.name)),
            contact: entry.and_then(|t| t.contact.clone()),
            oncall: entry.and_then(|t| t.oncall.clone()),
            system: None,
            repository: None,
            criticality: None,
            source: Arc::from(source),
        }
    }

    /// Every attribute key that resolution may read, `service.name` first. A caller that
    /// caches results per resource only needs these attributes in its cache key.
    pub fn match_keys(&self) -> &[String] {
        &self.match_keys
    }

    /// Every team name the catalog knows, sorted: defined teams (native and Backstage
    /// groups) and teams referenced by services, components and rules. The default team is
    /// not included unless the catalog names it.
    pub fn teams(&self) -> impl Iterator<Item = &str> {
        self.team_names.iter().map(|t| &**t)
    }

    /// The team entry of `name`, if the catalog defines one.
    pub fn team(&self, name: &str) -> Option<&Team> {
        self.teams.get(name)
    }

    /// The exact entry (native or Backstage) for a `service.name`, if any.
    pub fn service(&self, name: &str) -> Option<&Arc<Ownership>> {
        self.services.get(name)
    }

    /// Number of exact service entries (native and Backstage, after de-duplication).
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The team assigned when nothing matches.
    pub fn default_team(&self) -> &str {
        &self.default.team
    }

    /// The files this catalog was loaded from, in load order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// A hash of the configuration and of every source file's path and content; equal
    /// fingerprints mean an identical catalog.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

/// Assembles a [`Catalog`]; used by the loader after validation.
pub(crate) struct Builder {
    pub catalog: Catalog,
    referenced: BTreeSet<Arc<str>>,
}

/// The per-entry fields of a service, component or rule.
pub(crate) struct Assignment<'a> {
    pub team: &'a str,
    pub system: Option<&'a str>,
    pub repository: Option<&'a str>,
    pub criticality: Option<&'a str>,
}

impl Builder {
    pub fn new(default_team: &str) -> Builder {
        let default_team = if default_team.is_empty() { DEFAULT_TEAM } else { default_team };
        Builder {
            catalog: Catalog {
                services: HashMap::new(),
                kubernetes_ids: HashMap::new(),
                rules: Vec::new(),
                default: Arc::new(Ownership {
                    team: Arc::from(default_team),
                    contact: None,
                    oncall: None,
                    system: None,
                    repository: None,
                    criticality: None,
                    source: Arc::from("default"),
                }),
                teams: BTreeMap::new(),
                team_names: Vec::new(),
                match_keys: Vec::new(),
                files: Vec::new(),
                fingerprint: 0,
            },
            referenced: BTreeSet::new(),
        }
    }

    pub fn add_team(&mut self, team: Team) {
        self.catalog.teams.insert(Arc::clone(&team.name), team);
    }

    fn ownership(&mut self, a: &Assignment<'_>, source: Arc<str>) -> Arc<Ownership> {
        let team = self.catalog.teams.get(a.team);
        let name: Arc<str> = team.map_or_else(|| Arc::from(a.team), |t| Arc::clone(&t.name));
        self.referenced.insert(Arc::clone(&name));
        Arc::new(Ownership {
            contact: team.and_then(|t| t.contact.clone()),
            oncall: team.and_then(|t| t.oncall.clone()),
            team: name,
            system: a.system.map(Arc::from),
            repository: a.repository.map(Arc::from),
            criticality: a.criticality.map(Arc::from),
            source,
        })
    }

    pub fn add_service(&mut self, name: &str, a: &Assignment<'_>, source: &Arc<str>) {
        let own = self.ownership(a, Arc::clone(source));
        self.catalog.services.insert(Box::from(name), own);
    }

    pub fn add_kubernetes_id(&mut self, id: &str, a: &Assignment<'_>, source: &Arc<str>) {
        let own = self.ownership(a, Arc::clone(source));
        self.catalog.kubernetes_ids.entry(Box::from(id)).or_insert(own);
    }

    pub fn add_rule(&mut self, matchers: Vec<(Box<str>, Matcher)>, a: &Assignment<'_>) {
        let source: Arc<str> = Arc::from(format!("rule:{}", self.catalog.rules.len() + 1));
        let result = self.ownership(a, source);
        self.catalog.rules.push(Rule { matchers, result });
    }

    /// Computes `match_keys` and `teams()`.
    pub fn finish_keys(&mut self) {
        let c = &mut self.catalog;
        let mut keys = vec![SERVICE_NAME.to_owned()];
        for rule in &c.rules {
            for (key, _) in &rule.matchers {
                if !keys.iter().any(|k| **k == **key) {
                    keys.push(key.to_string());
                }
            }
        }
        c.match_keys = keys;
        let mut names: BTreeSet<Arc<str>> = std::mem::take(&mut self.referenced);
        names.extend(c.teams.keys().cloned());
        c.team_names = names.into_iter().collect();
    }
}
