//! A generated ownership catalog: `teams` teams, `services` services spread over them, and two
//! rules per team (a glob on `service.name`, a regex on `k8s.namespace.name`), written as one
//! YAML file per team into a temporary directory and loaded with
//! [`CatalogHandle::new`](sightline_ownership::CatalogHandle::new), as a deployment would.

use crate::requests::Identity;
use sightline_core::{Registry, Signal};
use sightline_ownership::{CatalogConfig, CatalogHandle};
use sightline_processors::ownership::{AttributeNames, OwnershipConfig, OwnershipProcessor};
use std::fmt::Write as _;
use std::sync::Arc;

const DOMAINS: &[&str] = &[
    "payments",
    "search",
    "identity",
    "catalog",
    "inventory",
    "shipping",
    "billing",
    "fraud",
    "growth",
    "ads",
    "messaging",
    "notify",
    "storage",
    "pricing",
    "checkout",
    "reviews",
    "media",
    "maps",
    "ledger",
    "support",
];
const FLAVOURS: &[&str] = &["core", "edge"];
const COMPONENTS: &[&str] = &[
    "api",
    "worker",
    "gateway",
    "scheduler",
    "indexer",
    "ingest",
    "web",
    "cron",
    "consumer",
    "producer",
    "cache",
    "proxy",
    "sync",
];
const CRITICALITY: &[&str] = &["critical", "high", "medium", "low"];

/// Team names: `payments-core`, `payments-edge`, `search-core`, ...
pub fn team_names(teams: usize) -> Vec<String> {
    (0..teams).map(|i| format!("{}-{}", DOMAINS[i / 2 % DOMAINS.len()], FLAVOURS[i % 2])).collect()
}

/// Service names, round robin over the teams: `(service, team index)`.
pub fn service_names(teams: usize, services: usize) -> Vec<(String, usize)> {
    let names = team_names(teams);
    (0..services)
        .map(|i| {
            let t = i % teams;
            let c = i / teams;
            let component = COMPONENTS[c % COMPONENTS.len()];
            let name = if c < COMPONENTS.len() {
                format!("{}-{component}", names[t])
            } else {
                format!("{}-{component}-{}", names[t], c / COMPONENTS.len())
            };
            (name, t)
        })
        .collect()
}

/// How the catalog resolves a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// An exact service entry (`owner.source = service`).
    Service,
    /// Not a listed service, matched by its team's `service.name` glob rule.
    Rule,
    /// Nothing matches: the default team, after every rule was tried.
    Default,
}

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::Service, Resolution::Rule, Resolution::Default];

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Service => "service",
            Resolution::Rule => "rule",
            Resolution::Default => "default",
        }
    }
}

/// The identity of resource `r` resolved by `kind`.
pub fn identity(teams: usize, services: usize, kind: Resolution, r: usize) -> Identity {
    let team = team_names(teams);
    match kind {
        Resolution::Service => {
            let svc = service_names(teams, services);
            let (name, t) = &svc[(r * 97 + 13) % svc.len()];
            Identity { service: name.clone(), namespace: format!("{}-prod", team[*t]) }
        }
        Resolution::Rule => {
            let t = (r * 7 + 3) % teams;
            Identity { service: format!("{}-canary-{r}", team[t]), namespace: format!("{}-prod", team[t]) }
        }
        Resolution::Default => Identity { service: format!("legacy-batch-{r}"), namespace: "default".into() },
    }
}

/// The identities of `n` resources, cycling through the three resolution paths: three exact
/// service entries, one service matched by its team's `service.name` glob rule, one service
/// that nothing matches (the default team, after every rule was tried).
pub fn identities(teams: usize, services: usize, n: usize) -> Vec<Identity> {
    (0..n)
        .map(|r| {
            let kind = match r % 5 {
                0..=2 => Resolution::Service,
                3 => Resolution::Rule,
                _ => Resolution::Default,
            };
            identity(teams, services, kind, r)
        })
        .collect()
}

/// The YAML catalog file of team `t`.
fn team_file(t: usize, team: &str, services: &[(String, usize)]) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "# Ownership catalog of the {team} team (generated for the micro-benchmarks).");
    let _ = writeln!(y, "teams:");
    let _ = writeln!(y, "  - name: {team}");
    let _ = writeln!(y, "    contact: \"#{team}\"");
    let _ = writeln!(y, "    oncall: \"pagerduty:P{t:05}\"");
    let _ = writeln!(y, "    cost_center: \"CC-{}\"", 100 + t);
    let _ = writeln!(y, "services:");
    let domain = team.split('-').next().unwrap_or(team);
    for (i, (name, _)) in services.iter().filter(|(_, owner)| *owner == t).enumerate() {
        let _ = writeln!(y, "  - name: {name}");
        let _ = writeln!(y, "    team: {team}");
        let _ = writeln!(y, "    system: {domain}-platform");
        let _ = writeln!(y, "    repository: github.com/acme/{name}");
        let _ = writeln!(y, "    criticality: {}", CRITICALITY[(t + i) % CRITICALITY.len()]);
    }
    let _ = writeln!(y, "rules:");
    let _ = writeln!(y, "  - match: {{ service.name: \"{team}-*\" }}");
    let _ = writeln!(y, "    team: {team}");
    let _ = writeln!(y, "    system: {domain}-platform");
    let _ = writeln!(y, "  - match: {{ k8s.namespace.name: \"regex:{team}-(staging|dev|sandbox)\" }}");
    let _ = writeln!(y, "    team: {team}");
    y
}

/// A catalog on disk and its loaded handle. The directory is removed on drop.
pub struct CatalogFixture {
    pub dir: tempfile::TempDir,
    pub handle: Arc<CatalogHandle>,
    pub teams: usize,
    pub services: usize,
}

impl CatalogFixture {
    /// Writes and loads a catalog of `teams` teams and `services` services.
    pub fn new(teams: usize, services: usize) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let svc = service_names(teams, services);
        for (t, team) in team_names(teams).iter().enumerate() {
            std::fs::write(dir.path().join(format!("{team}.yaml")), team_file(t, team, &svc)).expect("write catalog");
        }
        let cfg = CatalogConfig { catalog: vec![dir.path().to_path_buf()], ..CatalogConfig::default() };
        let handle = CatalogHandle::new(cfg).unwrap_or_else(|errors| {
            let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!("generated catalog is invalid:\n{}", msgs.join("\n"))
        });
        let cat = handle.current();
        assert_eq!(cat.service_count(), services, "every generated service is loaded");
        assert_eq!(cat.rule_count(), 2 * teams, "every generated rule is loaded");
        drop(cat);
        CatalogFixture { dir, handle: Arc::new(handle), teams, services }
    }

    /// The standard benchmark catalog: 40 teams, 500 services, 80 rules.
    pub fn standard() -> Self {
        CatalogFixture::new(40, 500)
    }

    /// Identities of `n` resources named after this catalog (see [`identities`]).
    pub fn identities(&self, n: usize) -> Vec<Identity> {
        identities(self.teams, self.services, n)
    }

    /// Identities of `n` resources all resolved by `kind`.
    pub fn identities_of(&self, kind: Resolution, n: usize) -> Vec<Identity> {
        (0..n).map(|r| identity(self.teams, self.services, kind, r)).collect()
    }

    /// The `ownership` processor over this catalog, with the default attribute names and the
    /// default cache size (16384 distinct resources per thread).
    pub fn processor(&self, signal: Signal, registry: &Registry) -> OwnershipProcessor {
        self.processor_with(signal, registry, false)
    }

    /// [`Self::processor`] with `metrics_datapoint_attributes` set as given.
    pub fn processor_with(&self, signal: Signal, registry: &Registry, datapoints: bool) -> OwnershipProcessor {
        let cfg = OwnershipConfig {
            catalog: vec![self.dir.path().to_path_buf()],
            backstage: vec![],
            default_team: "unowned".into(),
            attributes: AttributeNames::default(),
            watch: false,
            cache_size: 16384,
            metrics_datapoint_attributes: datapoints,
            kubernetes: Default::default(),
        };
        OwnershipProcessor::new("ownership", signal, &cfg, self.handle.clone(), registry)
    }
}

/// `payloads` requests of [`crate::requests::ITEMS`] items of `signal` over
/// [`crate::requests::RESOURCES`] resources, enriched by the ownership processor (so
/// `owner.team` is there, as an exporter sees them in production): the batch of the exporter
/// encoding benchmarks.
pub fn enriched_batch(signal: Signal, size: crate::requests::Size, payloads: usize) -> Vec<bytes::Bytes> {
    use sightline_core::Processor as _;
    let fixture = CatalogFixture::standard();
    let ids = fixture.identities(crate::requests::RESOURCES);
    let ownership = fixture.processor(signal, &Registry::new());
    (0..payloads)
        .map(|k| {
            let raw = crate::requests::encoded(signal, &ids, crate::requests::ITEMS, size, 1000 + k as u64);
            let p = sightline_core::Payload::new(signal, bytes::Bytes::from(raw), crate::requests::ITEMS as u64, None);
            ownership.process(p).expect("enriched").bytes().clone()
        })
        .collect()
}
