//! # sightline-ownership — the ownership catalog
//!
//! Answers "who owns this resource?" for Sightline's ownership enrichment. It owns:
//!
//! - **The catalog model**: teams (name, contact, on-call, cost centre), exact service
//!   entries (`service.name` → team, system, repository, criticality) and ordered rules
//!   that match any resource attribute by exact value, glob or `regex:` (first match wins).
//! - **Sources**: native YAML (a file, or a directory of per-team files merged in file-name
//!   order) and Backstage `catalog-info.yaml` files (`Component`, `Group`, `System`; owner
//!   references such as `group:default/payments` are normalised). Native entries win over
//!   Backstage for the same service or team.
//! - **Validation**: every problem is reported at once, each as `file:line: message`
//!   (unknown team with a did-you-mean, duplicates naming both places, bad glob or regex,
//!   empty match, YAML syntax errors, unknown keys).
//! - **Resolution**: [`Catalog::resolve`] maps a resource's attributes to an [`Ownership`]
//!   (`service` → `backstage` → `rule:<i>` → `default`).
//! - **Reload**: [`CatalogHandle`] holds the current catalog in an `ArcSwap`;
//!   [`spawn_watcher`] reloads it on file changes (debounced) and SIGHUP, keeps the
//!   previous catalog when the new one is invalid, and reports every attempt to a callback.
//!
//! What it must never do: **block the data path**. Resolution performs no I/O, takes no
//! lock and allocates nothing (every answer is prebuilt and shared as an `Arc`); loading,
//! parsing and validation happen off the data path (at start-up, or on Tokio's blocking
//! pool in the watcher), and the swap to a new catalog is atomic, so a reload never stalls a
//! thread that is resolving. Callers cache results per distinct resource and drop the cache
//! when [`CatalogHandle::generation`] changes.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sightline_ownership::{CatalogConfig, CatalogHandle, WatchOptions, spawn_watcher};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = CatalogConfig {
//!     catalog: vec!["config/catalog".into()],
//!     backstage: vec!["config/backstage/**/catalog-info.yaml".into()],
//!     ..CatalogConfig::default()
//! };
//! let handle = Arc::new(CatalogHandle::new(cfg).map_err(|errors| {
//!     errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
//! })?);
//! let _watcher = spawn_watcher(handle.clone(), WatchOptions::default(), Arc::new(|_outcome| {}))?;
//!
//! let attrs = [("service.name", "checkout")];
//! let owner = handle.current().resolve(&|key| {
//!     attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
//! });
//! println!("{} ({})", owner.team, owner.source);
//! # Ok(())
//! # }
//! ```

mod backstage;
mod catalog;
mod error;
mod load;
mod reload;
mod yaml;

pub use backstage::{
    ANNOTATION_CONTACT, ANNOTATION_COST_CENTER, ANNOTATION_CRITICALITY, ANNOTATION_SERVICE_NAME, entity_ref_name,
};
pub use catalog::{Catalog, DEFAULT_TEAM, Ownership, SERVICE_NAME, Team};
pub use error::{CatalogError, ErrorKind, Location};
pub use load::{CatalogConfig, Lint, is_yaml_file, lint, load};
pub use reload::{
    CatalogHandle, CatalogWatcher, OnReload, ReloadOutcome, ReloadTrigger, WatchError, WatchOptions, spawn_watcher,
};
