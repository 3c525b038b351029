//! `sightline catalog lint`'s checks: the load errors plus warnings, each with file and line.

mod common;

use common::*;
use sightline_ownership::{CatalogConfig, lint};

fn warnings(cfg: &CatalogConfig, known: &[&str]) -> Vec<String> {
    let known: Vec<String> = known.iter().map(|s| s.to_string()).collect();
    let l = lint(cfg, &known);
    assert!(l.errors.is_empty(), "{:?}", messages(&l.errors));
    messages(&l.warnings)
}

#[test]
fn teams_without_contact_or_oncall() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "t.yaml",
        "teams:\n  - name: payments\n    contact: '#pay'\n    oncall: pd:1\n  - name: search\n    contact: '#search'\n  - name: ops\n",
    );
    let d = f.display();
    assert_eq!(
        warnings(&native(&[&f]), &[]),
        [
            format!("{d}:5: team \"search\" has no oncall (who do people ask about its telemetry?)"),
            format!("{d}:7: team \"ops\" has no contact (who do people ask about its telemetry?)"),
            format!("{d}:7: team \"ops\" has no oncall (who do people ask about its telemetry?)"),
        ]
    );
}

#[test]
fn shadowed_rules_and_rules_that_match_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "r.yaml",
        r#"teams:
  - { name: a, contact: x, oncall: y }
  - { name: b, contact: x, oncall: y }
services:
  - { name: checkout, team: a }
rules:
  - match: { service.name: 'pay-*' }
    team: a
  - match: { service.name: pay-api, deployment.environment.name: prod }
    team: b
  - match: { service.name: checkout }
    team: b
  - match: { service.name: 'regex:search-.*' }
    team: b
  - match: { k8s.namespace.name: '*' }
    team: a
  - match: { k8s.namespace.name: shop, service.name: 'web-*' }
    team: b
  - match: { service.name: 'pay-*', k8s.namespace.name: x }
    team: b
"#,
    );
    let d = f.display();
    let shadow = vec![
        format!("{d}:9: rule 2 never applies: everything it matches is matched first by rule 1 at {d}:7"),
        format!(
            "{d}:11: rule 3 never applies: everything it matches is matched first by service \"checkout\" at {d}:5"
        ),
        format!("{d}:17: rule 6 never applies: everything it matches is matched first by rule 5 at {d}:15"),
        format!("{d}:19: rule 7 never applies: everything it matches is matched first by rule 1 at {d}:7"),
    ];
    assert_eq!(warnings(&native(&[&f]), &[]), shadow, "without known services, no match check");
    let mut with_known = shadow.clone();
    with_known.insert(
        2,
        format!("{d}:13: rule 4: `service.name` pattern \"regex:search-.*\" matches none of the 2 known services"),
    );
    assert_eq!(warnings(&native(&[&f]), &["pay-web", "cart"]), with_known);
    assert_eq!(warnings(&native(&[&f]), &["pay-web", "search-api"]), shadow);
}

#[test]
fn errors_come_with_the_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.yaml", "teams:\n  - { name: a }\nservices:\n  - { name: checkout, team: a }\n");
    let b = write(dir.path(), "b.yaml", "services:\n  - { name: checkout, team: a }\n  - { name: cart, team: aa }\n");
    let l = lint(&native(&[&a, &b]), &[]);
    assert_eq!(
        messages(&l.errors),
        [
            format!("{}:2: duplicate service \"checkout\" (first defined at {}:4)", b.display(), a.display()),
            format!("{}:3: service \"cart\": unknown team \"aa\" (did you mean \"a\"?)", b.display()),
        ]
    );
    let codes: Vec<&str> = l.errors.iter().map(|e| e.kind.code()).collect();
    assert_eq!(codes, ["duplicate-service", "unknown-team"]);
    assert_eq!(l.warnings.len(), 2, "team a: no contact, no oncall");
}

#[test]
fn backstage_owners_that_are_not_teams() {
    let dir = tempfile::tempdir().unwrap();
    let t = write(dir.path(), "t.yaml", "teams:\n  - { name: payments, contact: x, oncall: y }\n");
    let c = write(
        dir.path(),
        "catalog-info.yaml",
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: cart\nspec:\n  owner: group:default/paymnts\n",
    );
    let cfg = CatalogConfig { catalog: vec![t], backstage: vec![c.display().to_string()], ..CatalogConfig::default() };
    assert_eq!(
        warnings(&cfg, &[]),
        [format!("{}:4: component \"cart\": owner \"paymnts\" is not a team or group of the catalog", c.display())]
    );
}
