//! The example catalogs shipped in `config/` load and resolve as documented.

mod common;

use std::path::PathBuf;

use common::*;
use sightline_ownership::CatalogConfig;

/// A resource's attributes.
type Attrs<'a> = &'a [(&'a str, &'a str)];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn shipped_examples_load_together() {
    let root = repo_root();
    let cfg = CatalogConfig {
        catalog: vec![root.join("config/catalog")],
        backstage: vec![format!("{}/config/backstage/**/catalog-info.yaml", root.display())],
        ..CatalogConfig::default()
    };
    let catalog = load_ok(&cfg);
    let cases: &[(Attrs, &str, &str)] = &[
        (&[("service.name", "checkout")], "payments", "service"),
        (&[("service.name", "login")], "identity", "backstage"),
        (&[("service.name", "identity.token-service")], "identity", "backstage"),
        (&[("service.name", "mfa-worker")], "identity", "backstage"),
        (&[("service.name", "pay-reconciler")], "payments", "rule:1"),
        (&[("service.name", "ledger-eu")], "payments", "rule:2"),
        (&[("k8s.namespace.name", "risk-batch")], "payments-risk", "rule:3"),
        (&[("k8s.namespace.name", "search"), ("deployment.environment", "production")], "search", "rule:4"),
        (&[("k8s.namespace.name", "search")], "search", "rule:5"),
        (&[("service.name", "suggest-trainer")], "search", "rule:6"),
        (&[("service.name", "mystery")], "unowned", "default"),
    ];
    for (attrs, team, source) in cases {
        let o = resolve(&catalog, attrs);
        assert_eq!((&*o.team, &*o.source), (*team, *source), "{attrs:?}");
    }
    let login = resolve(&catalog, &[("service.name", "login")]);
    assert_eq!(s(&login.contact), Some("#identity"));
    assert_eq!(s(&login.oncall), Some("pagerduty:PIDENT9"));
    assert_eq!(s(&login.repository), Some("github.com/acme/login"));
    assert_eq!(catalog.teams().collect::<Vec<_>>(), ["identity", "payments", "payments-risk", "search"]);
}
