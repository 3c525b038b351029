//! Every validation error, with its file and line.

mod common;

use common::*;
use sightline_ownership::{CatalogConfig, ErrorKind, load};

#[test]
fn unknown_team_in_service_with_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "payments.yaml",
        "teams:\n  - name: payments\nservices:\n  - name: checkout\n    system: storefront\n    team: paymnts\n",
    );
    let errors = load_err(&native(&[&file]));
    assert_eq!(
        errors,
        [format!("{}:6: service \"checkout\": unknown team \"paymnts\" (did you mean \"payments\"?)", file.display())]
    );
}

#[test]
fn unknown_team_in_rule_without_close_match() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "search.yaml",
        "teams:\n  - name: search\nrules:\n  - match: { service.name: \"a*\" }\n    team: search\n  - match:\n      service.name: \"b*\"\n    team: identity\n",
    );
    let errors = load_err(&native(&[&file]));
    assert_eq!(errors, [format!("{}:8: rule 2: unknown team \"identity\"", file.display())]);
}

#[test]
fn teams_defined_in_another_file_or_backstage_count() {
    let dir = tempfile::tempdir().unwrap();
    let groups = write(dir.path(), "backstage/catalog-info.yaml", "kind: Group\nmetadata:\n  name: search\n");
    let teams = write(dir.path(), "catalog/a.yaml", "teams:\n  - name: payments\n");
    write(
        dir.path(),
        "catalog/b.yaml",
        "services:\n  - name: checkout\n    team: payments\n  - name: indexer\n    team: search\n  - name: login\n    team: identity\n",
    );
    let cfg = CatalogConfig {
        catalog: vec![teams.parent().unwrap().to_path_buf()],
        backstage: vec![groups.display().to_string()],
        ..CatalogConfig::default()
    };
    let errors = load_err(&cfg);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].ends_with("b.yaml:7: service \"login\": unknown team \"identity\""), "{errors:?}");
}

#[test]
fn duplicate_service_across_files_names_both_locations() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.yaml", "services:\n  - name: billing\n    team: x\n  - name: checkout\n    team: x\n");
    let b = write(
        dir.path(),
        "b.yaml",
        "# search team\nservices:\n  - name: indexer\n    team: y\n  - name: checkout\n    team: y\n",
    );
    let errors = load_err(&native(&[dir.path()]));
    assert_eq!(
        errors,
        [format!("{}:5: duplicate service \"checkout\" (first defined at {}:4)", b.display(), a.display())]
    );
}

#[test]
fn duplicate_team() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "t.yaml",
        "teams:\n  - name: payments\n  - name: search\n  - name: payments\n    contact: x\n",
    );
    let errors = load_err(&native(&[&file]));
    assert_eq!(errors, [format!("{f}:4: duplicate team \"payments\" (first defined at {f}:2)", f = file.display())]);
}

#[test]
fn bad_glob_and_bad_regex_point_at_the_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "r.yaml",
        "rules:\n  - match:\n      service.name: \"pay-[abc\"\n    team: payments\n  - match:\n      k8s.namespace.name: ok\n      service.name: \"regex:pay-(eu|us\"\n    team: payments\n",
    );
    let errors = load_err(&native(&[&file]));
    assert_eq!(errors.len(), 2, "{errors:?}");
    let f = file.display();
    assert!(errors[0].starts_with(&format!("{f}:3: rule 1: bad glob \"pay-[abc\" for `service.name`: ")), "{errors:?}");
    assert_eq!(errors[1], format!("{f}:7: rule 2: bad regex \"pay-(eu|us\" for `service.name`: unclosed group"));
}

#[test]
fn empty_match() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "r.yaml", "rules:\n  - match: {}\n    team: a\n  - team: b\n    match:\n");
    let errors = load_err(&native(&[&file]));
    let f = file.display();
    assert_eq!(
        errors,
        [
            format!("{f}:2: rule 1: empty match (a rule needs at least one attribute to match)"),
            format!("{f}:5: rule 2: empty match (a rule needs at least one attribute to match)"),
        ]
    );
}

#[test]
fn yaml_syntax_error_has_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "broken.yaml",
        "teams:\n  - name: payments\nservices:\n  - name: \"checkout\n    team: payments\n",
    );
    let errors = load(&native(&[&file])).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(matches!(errors[0].kind, ErrorKind::Syntax(_)));
    assert_eq!(errors[0].file, file);
    assert!(errors[0].line.is_some());
    let msg = errors[0].to_string();
    assert!(msg.starts_with(&format!("{}:", file.display())) && msg.contains("YAML syntax error"), "{msg}");

    let file = write(dir.path(), "broken2.yaml", "services:\n  - name: a\n    team: b\n   bad: indent\n");
    let errors = load_err(&native(&[&file]));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with(&format!("{}:4: YAML syntax error: ", file.display())), "{errors:?}");
}

#[test]
fn unknown_keys_are_errors_at_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "k.yaml",
        "teams:\n  - name: payments\n    contakt: \"#payments\"\nservice:\n  - name: checkout\n    team: payments\nrules:\n  - match: { service.name: a }\n    team: payments\n    owner: x\n",
    );
    let errors = load_err(&native(&[&file]));
    let f = file.display();
    assert_eq!(
        errors,
        [
            format!(
                "{f}:3: team \"payments\": unknown field `contakt`, expected one of `name`, `contact`, `oncall`, `cost_center`"
            ),
            format!(
                "{f}:4: unknown field `service`, expected one of `teams`, `services`, `rules` (did you mean `services`?)"
            ),
            format!(
                "{f}:10: rules[0]: unknown field `owner`, expected one of `match`, `team`, `system`, `repository`, `criticality`"
            ),
        ]
    );
}

#[test]
fn wrong_types_and_missing_fields() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "t.yaml",
        "services:\n  - name: checkout\n    system: storefront\n  - name: search\n    team: [a, b]\n  - just-a-string\nrules: {}\n",
    );
    let errors = load_err(&native(&[&file]));
    let f = file.display();
    assert_eq!(
        errors,
        [
            format!("{f}:2: service \"checkout\": missing field `team`"),
            format!("{f}:5: service \"search\": invalid type: sequence, expected a string"),
            format!("{f}:6: services[2]: invalid type: string \"just-a-string\", expected struct ServiceDef"),
            format!("{f}:7: `rules` must be a list, found a mapping"),
        ]
    );
}

#[test]
fn null_value_is_reported_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "t.yaml", "services:\n  - name: a\n    team:\n\n    system: x\n");
    let errors = load_err(&native(&[&file]));
    assert_eq!(errors, [format!("{}:3: service \"a\": invalid type: null, expected a string", file.display())]);
}

#[test]
fn empty_names_and_teams() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "t.yaml", "teams:\n  - name: \"\"\nservices:\n  - name: a\n    team: \"\"\n");
    let errors = load_err(&native(&[&file]));
    let f = file.display();
    assert_eq!(
        errors,
        [
            format!("{f}:2: teams[0]: `name` must not be empty"),
            format!("{f}:5: service \"a\": `team` must not be empty"),
        ]
    );
}

#[test]
fn top_level_must_be_a_mapping_and_sections_unique() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "t.yaml", "rules: []\nrules: []\n---\n- a\n- b\n");
    let errors = load_err(&native(&[&file]));
    let f = file.display();
    assert_eq!(
        errors,
        [
            format!("{f}:2: duplicate field `rules`"),
            format!("{f}:4: expected a mapping with `teams`, `services` and/or `rules`, found a sequence"),
        ]
    );
}

#[test]
fn all_errors_of_all_files_are_returned_in_order() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        "teams:\n  - name: payments\n  - name: search\nservices:\n  - name: checkout\n    team: paymnts\n",
    );
    write(
        dir.path(),
        "b.yaml",
        "services:\n  - name: checkout\n    team: search\nrules:\n  - match: { service.name: \"regex:(\" }\n    team: serch\n  - match: {}\n    team: search\n",
    );
    let errors = load(&native(&[dir.path()])).unwrap_err();
    let got: Vec<(String, Option<usize>)> =
        errors.iter().map(|e| (e.file.file_name().unwrap().to_string_lossy().into_owned(), e.line)).collect();
    let expect = |f: &str, l: usize| (f.to_owned(), Some(l));
    assert_eq!(
        got,
        [
            expect("a.yaml", 6), // unknown team paymnts
            expect("b.yaml", 2), // duplicate checkout
            expect("b.yaml", 5), // bad regex
            expect("b.yaml", 6), // unknown team serch
            expect("b.yaml", 7), // empty match
        ],
        "{:#?}",
        messages(&errors)
    );
    assert!(matches!(&errors[3].kind, ErrorKind::UnknownTeam { suggestion: Some(s), .. } if s == "search"));
}

#[test]
fn unreadable_sources() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let errors = load_err(&native(&[&missing]));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with(&format!("{}: cannot read: ", missing.display())), "{errors:?}");
    let cfg = CatalogConfig {
        backstage: vec![dir.path().join("nope.yaml").display().to_string()],
        ..CatalogConfig::default()
    };
    assert_eq!(load_err(&cfg).len(), 1);
}

#[test]
fn broken_file_does_not_cascade_into_unknown_team_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", "teams:\n  - name: payments\n  bad\n");
    write(dir.path(), "b.yaml", "teams:\n  - name: search\n    contakt: x\nservices:\n  - name: x\n    team: search\n");
    write(dir.path(), "c.yaml", "services:\n  - name: checkout\n    team: payments\n");
    let errors = load_err(&native(&[dir.path()]));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("a.yaml:"), "{errors:?}");
    assert!(errors[1].contains("b.yaml:3: team \"search\": unknown field `contakt`"));
}

#[test]
fn backstage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a/catalog-info.yaml",
        "kind: Component\nmetadata:\n  name: checkout\nspec:\n  owner: payments\n",
    );
    let b = write(
        dir.path(),
        "b/catalog-info.yaml",
        "kind: Group\nmetadata:\n  name: payments\n---\nkind: Component\nmetadata:\n  name: checkout\nspec:\n  owner: group:payments\n---\nkind: Component\nmetadata:\n  name: orphan\nspec:\n  type: service\n---\nkind: Component\nmetadata: {}\n",
    );
    let cfg = CatalogConfig {
        backstage: vec![format!("{}/*/catalog-info.yaml", dir.path().display())],
        ..CatalogConfig::default()
    };
    let errors = load_err(&cfg);
    assert_eq!(
        errors,
        [
            format!("{}:7: duplicate service \"checkout\" (first defined at {}:3)", b.display(), a.display()),
            format!("{}:11: Backstage component \"orphan\": no `spec.owner` (and no owned `spec.system`)", b.display()),
            format!("{}:17: Backstage component without `metadata.name`", b.display()),
        ]
    );
}
