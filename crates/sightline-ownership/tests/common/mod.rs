//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sightline_ownership::{Catalog, CatalogConfig, CatalogError, Ownership, load};

/// Writes `text` to `dir/name` (creating parent directories) and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

pub fn native(paths: &[&Path]) -> CatalogConfig {
    CatalogConfig { catalog: paths.iter().map(|p| p.to_path_buf()).collect(), ..CatalogConfig::default() }
}

pub fn load_ok(cfg: &CatalogConfig) -> Catalog {
    match load(cfg) {
        Ok(c) => c,
        Err(errors) => panic!("unexpected errors:\n{}", messages(&errors).join("\n")),
    }
}

pub fn load_err(cfg: &CatalogConfig) -> Vec<String> {
    match load(cfg) {
        Ok(c) => panic!("expected errors, loaded {c:?}"),
        Err(errors) => messages(&errors),
    }
}

pub fn messages(errors: &[CatalogError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// Resolves a resource given as `(key, value)` pairs.
pub fn resolve(catalog: &Catalog, attrs: &[(&str, &str)]) -> Arc<Ownership> {
    let attrs: Vec<(String, String)> = attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    catalog.resolve(&|key| attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()))
}

pub fn s(v: &Option<Arc<str>>) -> Option<&str> {
    v.as_deref()
}
