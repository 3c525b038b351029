//! `sightline catalog lint`: the ownership catalog checked the way the agent loads it, for
//! teams' own CI. Errors are what the agent would refuse the catalog for; warnings are what
//! it would accept but is probably wrong (a team nobody can reach, a rule that never applies).
//! Exit 0 when there is no error, 1 when there is one, 2 on a usage error.

use sightline_ownership::{CatalogConfig, CatalogError, Lint};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `file:line: error: message`, then a summary.
    Text,
    /// One JSON document: the counts and every finding.
    Json,
    /// GitHub Actions workflow commands (`::error file=..,line=..::message`).
    Github,
}

/// Whether a YAML file is a Backstage descriptor (`apiVersion: backstage.io/...`).
fn is_backstage(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| {
        t.lines().any(|l| {
            l.trim_start_matches("---")
                .trim()
                .strip_prefix("apiVersion:")
                .is_some_and(|v| v.trim().trim_matches(['"', '\'']).starts_with("backstage.io/"))
        })
    })
}

fn is_catalog_info(path: &Path) -> bool {
    matches!(path.file_name().and_then(|n| n.to_str()), Some("catalog-info.yaml" | "catalog-info.yml"))
}

/// The catalog the given paths make: a file is a native catalog file or a Backstage
/// descriptor (by its `apiVersion`); a directory contributes its YAML files (native or
/// Backstage, as the agent loads a catalog directory) and every `catalog-info.yaml` below it.
/// A path that does not exist is kept, so that the loader reports it.
pub fn catalog_of(paths: &[PathBuf], default_team: &str) -> CatalogConfig {
    let mut cfg = CatalogConfig { default_team: default_team.to_string(), ..CatalogConfig::default() };
    let add = |p: PathBuf, cfg: &mut CatalogConfig| {
        if is_backstage(&p) {
            cfg.backstage.push(p.display().to_string());
        } else {
            cfg.catalog.push(p);
        }
    };
    for path in paths {
        if !path.is_dir() {
            add(path.clone(), &mut cfg);
            continue;
        }
        let mut direct: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|d| {
                d.filter_map(Result::ok).map(|e| e.path()).filter(|p| sightline_ownership::is_yaml_file(p)).collect()
            })
            .unwrap_or_default();
        direct.sort();
        for p in direct {
            add(p, &mut cfg);
        }
        let mut stack: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect())
            .unwrap_or_default();
        let mut nested = Vec::new();
        while let Some(dir) = stack.pop() {
            if dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
                continue;
            }
            for e in std::fs::read_dir(&dir).into_iter().flatten().filter_map(Result::ok) {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if is_catalog_info(&p) {
                    nested.push(p);
                }
            }
        }
        nested.sort();
        cfg.backstage.extend(nested.into_iter().map(|p| p.display().to_string()));
    }
    cfg
}

/// The catalogs of a Sightline configuration's `ownership` processors.
pub fn catalogs_of_config(path: &str) -> Result<Vec<(String, CatalogConfig)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    if let Some(procs) = doc.get("processors").and_then(|p| p.as_mapping()) {
        for (k, v) in procs {
            let Some(name) = k.as_str() else { continue };
            if name.split('/').next() != Some("ownership") {
                continue;
            }
            let c: sightline_processors::ownership::OwnershipConfig =
                serde_yaml_ng::from_value(v.clone()).map_err(|e| format!("{path}: processors.{name}: {e}"))?;
            out.push((name.to_string(), c.catalog_config()));
        }
    }
    if out.is_empty() {
        return Err(format!("{path}: no ownership processor, so no catalog to lint"));
    }
    Ok(out)
}

/// Escapes a GitHub workflow command's message (`%`, CR, LF) or property (also `:` and `,`).
fn gh_escape(s: &str, property: bool) -> String {
    let mut out = s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

fn json_escape(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The report of one lint, in `format`.
pub fn render(lint: &Lint, format: Format) -> String {
    let all = lint.errors.iter().map(|e| ("error", e)).chain(lint.warnings.iter().map(|w| ("warning", w)));
    let mut out = String::new();
    match format {
        Format::Text => {
            for (sev, e) in all {
                let _ = match e.line {
                    Some(l) => writeln!(out, "{}:{l}: {sev}: {} [{}]", e.file.display(), e.kind, e.kind.code()),
                    None => writeln!(out, "{}: {sev}: {} [{}]", e.file.display(), e.kind, e.kind.code()),
                };
            }
            let _ = writeln!(out, "{} error(s), {} warning(s)", lint.errors.len(), lint.warnings.len());
        }
        Format::Github => {
            for (sev, e) in all {
                let file = gh_escape(&e.file.display().to_string(), true);
                let line = e.line.map(|l| format!(",line={l}")).unwrap_or_default();
                let title = gh_escape(&format!("catalog lint: {}", e.kind.code()), true);
                let _ =
                    writeln!(out, "::{sev} file={file}{line},title={title}::{}", gh_escape(&e.kind.to_string(), false));
            }
        }
        Format::Json => {
            let items: Vec<String> = all
                .map(|(sev, e): (&str, &CatalogError)| {
                    format!(
                        "{{\"severity\":\"{sev}\",\"code\":\"{}\",\"file\":{},\"line\":{},\"message\":{}}}",
                        e.kind.code(),
                        json_escape(&e.file.display().to_string()),
                        e.line.map_or("null".to_string(), |l| l.to_string()),
                        json_escape(&e.kind.to_string())
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "{{\"errors\":{},\"warnings\":{},\"findings\":[{}]}}",
                lint.errors.len(),
                lint.warnings.len(),
                items.join(",")
            );
        }
    }
    out
}

/// Reads `--services FILE`: one service name per line (blank lines and `#` comments skipped).
fn read_services(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--services {}: cannot read: {e}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect())
}

pub fn run(
    paths: &[PathBuf],
    config: Option<&str>,
    services: Option<&Path>,
    default_team: &str,
    format: Format,
) -> ExitCode {
    let usage = |m: &str| {
        eprintln!("sightline catalog lint: {m}");
        eprintln!(
            "usage: sightline catalog lint [PATHS...] [--config FILE] [--services FILE] [--format text|json|github]"
        );
        ExitCode::from(2)
    };
    let catalogs = match (paths.is_empty(), config) {
        (true, None) => return usage("give catalog paths, or --config to lint the catalogs a configuration names"),
        (false, Some(_)) => return usage("give catalog paths or --config, not both"),
        (false, None) => vec![("catalog".to_string(), catalog_of(paths, default_team))],
        (true, Some(c)) => match catalogs_of_config(c) {
            Ok(v) => v,
            Err(m) => return usage(&m),
        },
    };
    let known = match services.map(read_services).transpose() {
        Ok(k) => k.unwrap_or_default(),
        Err(m) => return usage(&m),
    };
    let mut all = Lint::default();
    for (_, cfg) in &catalogs {
        let l = sightline_ownership::lint(cfg, &known);
        all.errors.extend(l.errors);
        all.warnings.extend(l.warnings);
    }
    print!("{}", render(&all, format));
    if all.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn paths_are_sorted_into_native_and_backstage() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        write(d, "teams.yaml", "teams: []\n");
        write(d, "group.yaml", "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata: { name: a }\n");
        write(d, "repos/cart/catalog-info.yaml", "apiVersion: backstage.io/v1alpha1\nkind: Component\n");
        write(d, "repos/cart/other.yaml", "teams: []\n");
        let c = catalog_of(&[d.to_path_buf()], "unowned");
        assert_eq!(c.catalog, [d.join("teams.yaml")]);
        assert_eq!(
            c.backstage,
            [d.join("group.yaml").display().to_string(), d.join("repos/cart/catalog-info.yaml").display().to_string()]
        );
    }

    #[test]
    fn github_annotations_are_escaped() {
        let lint = Lint {
            errors: vec![],
            warnings: sightline_ownership::lint(
                &CatalogConfig { catalog: vec!["/nonexistent,dir:x".into()], ..CatalogConfig::default() },
                &[],
            )
            .errors,
        };
        let out = render(&lint, Format::Github);
        assert!(
            out.starts_with("::warning file=/nonexistent%2Cdir%3Ax,title=catalog lint%3A io::cannot read"),
            "{out}"
        );
        let json = render(&lint, Format::Json);
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["warnings"], 1);
        assert_eq!(v["findings"][0]["code"], "io");
        assert_eq!(v["findings"][0]["line"], serde_json::Value::Null);
    }
}
