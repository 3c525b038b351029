//! Resolution order, rules, directory merge and Backstage sources, on real files.

mod common;

use common::*;
use sightline_ownership::{CatalogConfig, DEFAULT_TEAM, entity_ref_name};

const PAYMENTS: &str = r##"teams:
  - name: payments
    contact: "#payments"
    oncall: "pagerduty:PAY123"
    cost_center: "CC-42"
  - name: search
    contact: search@acme.example
services:
  - name: checkout
    team: payments
    system: storefront
    repository: github.com/acme/checkout
    criticality: high
rules:
  - match: { service.name: "pay-*" }
    team: payments
  - match: { k8s.namespace.name: search, deployment.environment: prod }
    team: search
    system: search-platform
    criticality: medium
  - match: { service.name: "regex:ledger-(eu|us)" }
    team: payments
    repository: github.com/acme/ledger
  - match: { k8s.namespace.name: "*" }
    team: search
"##;

#[test]
fn exact_service_entry_wins_and_takes_team_contact() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "payments.yaml", PAYMENTS);
    let catalog = load_ok(&native(&[&file]));
    // Even though a later rule (`k8s.namespace.name: "*"`) would match too.
    let o = resolve(&catalog, &[("service.name", "checkout"), ("k8s.namespace.name", "shop")]);
    assert_eq!(&*o.team, "payments");
    assert_eq!(s(&o.contact), Some("#payments"));
    assert_eq!(s(&o.oncall), Some("pagerduty:PAY123"));
    assert_eq!(s(&o.system), Some("storefront"));
    assert_eq!(s(&o.repository), Some("github.com/acme/checkout"));
    assert_eq!(s(&o.criticality), Some("high"));
    assert_eq!(&*o.source, "service");
    assert!(!o.is_default());
    assert_eq!(catalog.team("payments").and_then(|t| t.cost_center.as_deref()), Some("CC-42"));
}

#[test]
fn glob_rule_matches_and_reports_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "payments.yaml", PAYMENTS);
    let catalog = load_ok(&native(&[&file]));
    let o = resolve(&catalog, &[("service.name", "pay-gateway")]);
    assert_eq!(&*o.team, "payments");
    assert_eq!(&*o.source, "rule:1");
    assert_eq!(s(&o.contact), Some("#payments"));
    assert_eq!(s(&o.oncall), Some("pagerduty:PAY123"));
    assert_eq!(o.system, None);
    // A glob is anchored: `pay-*` does not match `xpay-gateway`.
    let o = resolve(&catalog, &[("service.name", "xpay-gateway")]);
    assert_eq!(&*o.source, "default");
}

#[test]
fn multi_key_rule_needs_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "payments.yaml", PAYMENTS);
    let catalog = load_ok(&native(&[&file]));
    let o = resolve(&catalog, &[("k8s.namespace.name", "search"), ("deployment.environment", "prod")]);
    assert_eq!(&*o.source, "rule:2");
    assert_eq!(&*o.team, "search");
    assert_eq!(s(&o.contact), Some("search@acme.example"));
    assert_eq!(s(&o.system), Some("search-platform"));
    assert_eq!(s(&o.criticality), Some("medium"));
    // Only one of the two keys: rule 2 does not match, rule 4 (`*`) does.
    let o = resolve(&catalog, &[("k8s.namespace.name", "search"), ("deployment.environment", "dev")]);
    assert_eq!(&*o.source, "rule:4");
}

#[test]
fn regex_rule_is_a_full_match() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "payments.yaml", PAYMENTS);
    let catalog = load_ok(&native(&[&file]));
    let o = resolve(&catalog, &[("service.name", "ledger-eu")]);
    assert_eq!(&*o.source, "rule:3");
    assert_eq!(s(&o.repository), Some("github.com/acme/ledger"));
    for name in ["ledger-eu-2", "old-ledger-us", "ledger-asia"] {
        let o = resolve(&catalog, &[("service.name", name)]);
        assert_eq!(&*o.source, "default", "{name}");
    }
}

#[test]
fn missing_attribute_never_matches_even_a_star_glob() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "payments.yaml", PAYMENTS);
    let catalog = load_ok(&native(&[&file]));
    let o = resolve(&catalog, &[("service.name", "unknown-svc")]);
    assert_eq!(&*o.source, "default");
    let o = resolve(&catalog, &[("k8s.namespace.name", "")]);
    assert_eq!(&*o.source, "rule:4", "`*` matches the empty value");
}

#[test]
fn default_team_is_configurable_and_has_no_details() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "payments.yaml", PAYMENTS);
    let mut cfg = native(&[&file]);
    let o = resolve(&load_ok(&cfg), &[]);
    assert_eq!(&*o.team, DEFAULT_TEAM);
    assert_eq!(&*o.source, "default");
    assert!(o.is_default());
    assert_eq!((&o.contact, &o.oncall, &o.system, &o.repository, &o.criticality), (&None, &None, &None, &None, &None));
    // Even when the default team is a catalog team, the default carries no details.
    cfg.default_team = "payments".into();
    let o = resolve(&load_ok(&cfg), &[("service.name", "nobody")]);
    assert_eq!(&*o.team, "payments");
    assert_eq!(o.contact, None);
    assert_eq!(&*o.source, "default");
    // Empty means the built-in default.
    cfg.default_team = String::new();
    assert_eq!(load_ok(&cfg).default_team(), "unowned");
}

#[test]
fn match_keys_and_teams() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "payments.yaml", PAYMENTS);
    let catalog = load_ok(&native(&[&file]));
    assert_eq!(catalog.match_keys(), ["service.name", "k8s.namespace.name", "deployment.environment"]);
    assert_eq!(catalog.teams().collect::<Vec<_>>(), ["payments", "search"]);
    assert_eq!(catalog.service_count(), 1);
    assert_eq!(catalog.rule_count(), 4);
    assert_eq!(catalog.files(), [file]);
}

#[test]
fn empty_catalog_resolves_everything_to_default() {
    let catalog = load_ok(&CatalogConfig::default());
    let o = resolve(&catalog, &[("service.name", "checkout")]);
    assert_eq!(&*o.source, "default");
    assert_eq!(catalog.match_keys(), ["service.name"]);
    assert_eq!(catalog.teams().count(), 0);
}

#[test]
fn empty_files_and_documents_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", "");
    write(dir.path(), "b.yaml", "---\n# nothing yet\n");
    write(dir.path(), "c.yaml", "teams:\nservices: []\nrules:\n");
    let catalog = load_ok(&native(&[dir.path()]));
    assert_eq!(catalog.service_count(), 0);
    assert_eq!(catalog.files().len(), 3);
}

#[test]
fn directory_merge_orders_rules_by_file_name_then_position() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "b-search.yml",
        "teams:\n  - name: search\nrules:\n  - match: { service.name: \"*\" }\n    team: search\n",
    );
    write(
        dir.path(),
        "a-payments.yaml",
        "teams:\n  - name: payments\nservices:\n  - name: checkout\n    team: payments\nrules:\n  - match: { service.name: \"pay-*\" }\n    team: payments\n  - match: { service.name: \"billing\" }\n    team: payments\n",
    );
    // Not catalog files: wrong extension, hidden, subdirectory.
    write(dir.path(), "README.md", "not yaml: [");
    write(dir.path(), ".#a-payments.yaml", "not yaml: [");
    write(dir.path(), "sub/c.yaml", "not yaml: [");
    let catalog = load_ok(&native(&[dir.path()]));
    assert_eq!(&*resolve(&catalog, &[("service.name", "pay-x")]).source, "rule:1");
    assert_eq!(&*resolve(&catalog, &[("service.name", "billing")]).source, "rule:2");
    let o = resolve(&catalog, &[("service.name", "anything")]);
    assert_eq!((&*o.team, &*o.source), ("search", "rule:3"));
    // A service in one file may use a team defined in another.
    assert_eq!(&*resolve(&catalog, &[("service.name", "checkout")]).source, "service");
    assert_eq!(catalog.files(), [dir.path().join("a-payments.yaml"), dir.path().join("b-search.yml")]);
}

#[test]
fn several_catalog_paths_load_in_the_order_given() {
    let dir = tempfile::tempdir().unwrap();
    let z = write(dir.path(), "z.yaml", "rules:\n  - match: { service.name: \"*\" }\n    team: zeta\n");
    let d = write(dir.path(), "teams/a.yaml", "rules:\n  - match: { service.name: \"*\" }\n    team: alpha\n");
    let catalog = load_ok(&native(&[&z, d.parent().unwrap()]));
    let o = resolve(&catalog, &[("service.name", "x")]);
    assert_eq!((&*o.team, &*o.source), ("zeta", "rule:1"));
}

#[test]
fn any_team_name_is_accepted_when_no_teams_are_defined() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "c.yaml", "services:\n  - name: checkout\n    team: whoever\n");
    let catalog = load_ok(&native(&[&file]));
    let o = resolve(&catalog, &[("service.name", "checkout")]);
    assert_eq!(&*o.team, "whoever");
    assert_eq!(o.contact, None);
    assert_eq!(catalog.teams().collect::<Vec<_>>(), ["whoever"]);
}

#[test]
fn scalars_of_any_type_are_strings() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "c.yaml",
        "teams:\n  - name: '42'\n    cost_center: 4200\nrules:\n  - match: { http.port: 8080 }\n    team: 42\n",
    );
    let catalog = load_ok(&native(&[&file]));
    let o = resolve(&catalog, &[("http.port", "8080")]);
    assert_eq!(&*o.team, "42");
    assert_eq!(catalog.team("42").and_then(|t| t.cost_center.as_deref()), Some("4200"));
}

#[test]
fn yaml_anchors_are_supported() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "c.yaml",
        "services:\n  - &svc { name: a, team: t, system: s }\nrules:\n  - match: { service.name: \"b*\" }\n    team: t\n",
    );
    let catalog = load_ok(&native(&[&file]));
    assert_eq!(s(&resolve(&catalog, &[("service.name", "a")]).system), Some("s"));
}

const BACKSTAGE: &str = r##"apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: payments
  annotations:
    pagerduty.com/service-id: PAY123
    slack.com/channel: "#payments"
spec:
  type: team
  profile:
    email: payments@acme.example
  children: []
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: search
spec:
  type: team
  profile:
    email: search@acme.example
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: identity
  annotations:
    sightline.dev/contact: "#identity-help"
    slack.com/channel: "#identity"
    sightline.dev/cost-center: CC-7
spec:
  type: team
  children: []
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: checkout
  annotations:
    github.com/project-slug: acme/checkout
    sightline.dev/criticality: high
spec:
  type: service
  lifecycle: production
  owner: group:default/payments
  system: system:default/storefront
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: refunds
  annotations:
    backstage.io/source-location: url:https://github.com/acme/refunds/tree/main/
spec:
  type: service
  owner: group:payments
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: indexer
spec:
  owner: default/search
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: query-api
spec:
  owner: search
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: login
  annotations:
    sightline.dev/service-name: identity.login
spec:
  owner: user:default/jdoe
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: sso
spec:
  system: identity-platform
---
apiVersion: backstage.io/v1alpha1
kind: System
metadata:
  name: identity-platform
spec:
  owner: group:default/identity
---
apiVersion: backstage.io/v1alpha1
kind: API
metadata:
  name: checkout-api
spec:
  owner: nobody
  definition: "openapi: 3.0.0"
---
apiVersion: backstage.io/v1alpha1
kind: Location
spec:
  targets: ["./other.yaml"]
"##;

fn backstage_cfg(dir: &std::path::Path) -> CatalogConfig {
    write(dir, "repos/shop/catalog-info.yaml", BACKSTAGE);
    CatalogConfig {
        backstage: vec![format!("{}/repos/*/catalog-info.yaml", dir.display())],
        ..CatalogConfig::default()
    }
}

#[test]
fn backstage_component_with_group() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = load_ok(&backstage_cfg(dir.path()));
    let o = resolve(&catalog, &[("service.name", "checkout")]);
    assert_eq!(&*o.team, "payments");
    assert_eq!(&*o.source, "backstage");
    assert_eq!(s(&o.contact), Some("#payments"), "annotation beats e-mail");
    assert_eq!(s(&o.oncall), Some("pagerduty:PAY123"));
    assert_eq!(s(&o.system), Some("storefront"));
    assert_eq!(s(&o.repository), Some("github.com/acme/checkout"));
    assert_eq!(s(&o.criticality), Some("high"));

    let o = resolve(&catalog, &[("service.name", "refunds")]);
    assert_eq!(s(&o.repository), Some("https://github.com/acme/refunds/tree/main/"));
    assert_eq!(o.criticality, None);

    let o = resolve(&catalog, &[("service.name", "indexer")]);
    assert_eq!(s(&o.contact), Some("search@acme.example"));
    assert_eq!(o.oncall, None);

    let identity = catalog.team("identity").unwrap();
    assert_eq!(identity.contact.as_deref(), Some("#identity-help"));
    assert_eq!(identity.cost_center.as_deref(), Some("CC-7"));
}

#[test]
fn backstage_owner_reference_forms() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = load_ok(&backstage_cfg(dir.path()));
    for (service, team) in [
        ("checkout", "payments"),   // group:default/payments
        ("refunds", "payments"),    // group:payments
        ("indexer", "search"),      // default/search
        ("query-api", "search"),    // search
        ("identity.login", "jdoe"), // user:default/jdoe, service name from annotation
        ("sso", "identity"),        // from its System's owner
    ] {
        let o = resolve(&catalog, &[("service.name", service)]);
        assert_eq!((&*o.team, &*o.source), (team, "backstage"), "{service}");
    }
    // The API entity is ignored; `login` is known by its annotation only.
    for ignored in ["checkout-api", "login"] {
        assert_eq!(&*resolve(&catalog, &[("service.name", ignored)]).source, "default");
    }
    assert_eq!(entity_ref_name("group:default/payments"), "payments");
    assert_eq!(catalog.service_count(), 6);
    assert_eq!(catalog.teams().collect::<Vec<_>>(), ["identity", "jdoe", "payments", "search"]);
}

#[test]
fn native_entries_win_over_backstage() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = backstage_cfg(dir.path());
    let file = write(
        dir.path(),
        "catalog/payments.yaml",
        "teams:\n  - name: payments\n    contact: \"#pay-native\"\nservices:\n  - name: checkout\n    team: payments\n    system: native-system\nrules:\n  - match: { service.name: \"*\" }\n    team: payments\n",
    );
    cfg.catalog = vec![file];
    let catalog = load_ok(&cfg);
    let o = resolve(&catalog, &[("service.name", "checkout")]);
    assert_eq!(&*o.source, "service");
    assert_eq!(s(&o.system), Some("native-system"));
    assert_eq!(s(&o.contact), Some("#pay-native"), "native team wins too");
    assert_eq!(o.oncall, None);
    // Backstage components beat rules.
    let o = resolve(&catalog, &[("service.name", "refunds")]);
    assert_eq!(&*o.source, "backstage");
    assert_eq!(s(&o.contact), Some("#pay-native"));
    // Native services may use Backstage groups as their team.
    let o = resolve(&catalog, &[("service.name", "other")]);
    assert_eq!(&*o.source, "rule:1");
}

#[test]
fn backstage_files_directories_and_globs() {
    let dir = tempfile::tempdir().unwrap();
    let a = "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: a\nspec:\n  owner: team-a\n";
    let b = "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: b\nspec:\n  owner: team-b\n";
    let file_a = write(dir.path(), "one/catalog-info.yaml", a);
    write(dir.path(), "tree/x/y/catalog-info.yml", b);
    write(dir.path(), "tree/.git/catalog-info.yaml", "not: [valid");
    write(dir.path(), "tree/x/other.yaml", "not: [valid");
    let cfg = CatalogConfig {
        backstage: vec![
            file_a.display().to_string(),
            dir.path().join("tree").display().to_string(),
            // Matches nothing: not an error.
            format!("{}/nowhere/*.yaml", dir.path().display()),
        ],
        ..CatalogConfig::default()
    };
    let catalog = load_ok(&cfg);
    assert_eq!(&*resolve(&catalog, &[("service.name", "a")]).team, "team-a");
    assert_eq!(&*resolve(&catalog, &[("service.name", "b")]).team, "team-b");
    assert_eq!(catalog.files().len(), 2);

    // A recursive glob; the same file named twice is loaded once.
    let cfg = CatalogConfig {
        backstage: vec![format!("{}/**/catalog-info.*", dir.path().display()), file_a.display().to_string()],
        ..CatalogConfig::default()
    };
    let catalog = load_ok(&cfg);
    assert_eq!(catalog.service_count(), 2);
    assert_eq!(catalog.files().len(), 2);
}
