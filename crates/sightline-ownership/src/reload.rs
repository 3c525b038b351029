//! Sharing the current catalog and replacing it without stopping resolution: file watch
//! (debounced) and SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::backstage::{glob_base, is_glob};
use crate::catalog::Catalog;
use crate::error::{CatalogError, ErrorKind};
use crate::load::{CatalogConfig, load};

/// The current catalog, swappable at run time.
///
/// Readers call [`CatalogHandle::current`] (lock-free, wait-free in practice); a reload
/// builds the new catalog on its own thread and swaps it in atomically, so resolution on
/// other threads is never blocked.
pub struct CatalogHandle {
    config: CatalogConfig,
    current: ArcSwap<Catalog>,
    generation: AtomicU64,
    /// Serialises reloads (never taken by readers) so an older load cannot overwrite a
    /// newer one.
    reload_lock: Mutex<()>,
}

impl std::fmt::Debug for CatalogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogHandle")
            .field("config", &self.config)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl CatalogHandle {
    /// Loads the catalog described by `config`.
    pub fn new(config: CatalogConfig) -> Result<CatalogHandle, Vec<CatalogError>> {
        let catalog = load(&config)?;
        Ok(CatalogHandle::with_catalog(config, catalog))
    }

    /// A handle whose first catalog is already loaded; reloads read `config`.
    pub fn with_catalog(config: CatalogConfig, catalog: Catalog) -> CatalogHandle {
        CatalogHandle {
            config,
            current: ArcSwap::from_pointee(catalog),
            generation: AtomicU64::new(0),
            reload_lock: Mutex::new(()),
        }
    }

    /// The configuration reloads read.
    pub fn config(&self) -> &CatalogConfig {
        &self.config
    }

    /// The current catalog (cheap, lock-free; keep the guard short-lived).
    pub fn current(&self) -> Guard<Arc<Catalog>> {
        self.current.load()
    }

    /// The current catalog as an owned `Arc` (for holding across awaits).
    pub fn snapshot(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    /// Incremented after every successful reload, *after* the new catalog is visible: a
    /// caller that reads the generation, then resolves, and drops its cache when the
    /// generation changed never keeps results of an older catalog.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reloads from the configured sources. On success the new catalog replaces the current
    /// one and the generation increments; on error the current catalog is kept.
    pub fn reload(&self) -> Result<(), Vec<CatalogError>> {
        self.reload_inner(true).map(|_| ())
    }

    /// Like [`CatalogHandle::reload`], but keeps the current catalog (and generation) when
    /// the sources are byte-for-byte unchanged. Returns whether the catalog was replaced.
    pub fn reload_if_changed(&self) -> Result<bool, Vec<CatalogError>> {
        self.reload_inner(false)
    }

    fn reload_inner(&self, force: bool) -> Result<bool, Vec<CatalogError>> {
        let _serial = self.reload_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !force && crate::load::source_fingerprint(&self.config) == Some(self.current.load().fingerprint()) {
            return Ok(false); // e.g. another file changed in a watched directory
        }
        let catalog = load(&self.config)?;
        if !force && catalog.fingerprint() == self.current.load().fingerprint() {
            return Ok(false);
        }
        self.current.store(Arc::new(catalog));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }
}

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadTrigger {
    /// A watched file or directory changed.
    FileChange,
    /// The process received SIGHUP.
    Signal,
}

/// The result of one watcher-driven reload, handed to the `on_reload` callback.
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// The new catalog is in use.
    Reloaded {
        /// What started the reload.
        trigger: ReloadTrigger,
        /// The new generation.
        generation: u64,
        /// Exact service entries in the new catalog.
        services: usize,
        /// Rules in the new catalog.
        rules: usize,
    },
    /// A file event arrived but no source changed; nothing was replaced.
    Unchanged {
        /// What started the reload.
        trigger: ReloadTrigger,
    },
    /// The sources are invalid; the previous catalog is still in use.
    Failed {
        /// What started the reload.
        trigger: ReloadTrigger,
        /// Every problem found.
        errors: Vec<CatalogError>,
    },
}

/// Observer of reloads (e.g. to count reloads and errors).
pub type OnReload = Arc<dyn Fn(ReloadOutcome) + Send + Sync>;

/// Options of [`spawn_watcher`].
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Quiet time after the last file event before reloading (editors write in bursts).
    pub debounce: Duration,
    /// Also reload on SIGHUP (Unix). Installing the handler replaces SIGHUP's default
    /// action (terminate) for the whole process.
    pub sighup: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions { debounce: Duration::from_millis(200), sighup: true }
    }
}

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// `spawn_watcher` must be called from within a Tokio runtime.
    #[error("the catalog watcher needs a Tokio runtime")]
    NoRuntime,
    /// The file watcher could not be created.
    #[error("cannot create the file watcher: {0}")]
    Notify(#[from] notify::Error),
    /// The SIGHUP handler could not be installed.
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(#[from] std::io::Error),
}

/// Longest a burst of file events can delay a reload (unless `debounce * 10` is longer).
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

/// A running watcher; dropping it stops watching.
pub struct CatalogWatcher {
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
    watched: Vec<PathBuf>,
}

impl CatalogWatcher {
    /// The directories being watched.
    pub fn watched(&self) -> &[PathBuf] {
        &self.watched
    }

    /// Stops watching (same as dropping).
    pub fn stop(self) {}
}

impl Drop for CatalogWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches the catalog's files and directories (and SIGHUP if enabled) and reloads `handle`
/// after changes. Each reload runs on Tokio's blocking pool; failures keep the previous
/// catalog and are logged (`tracing::error!`, one event per problem). Every attempt is
/// reported to `on_reload`.
///
/// File events only replace the catalog when a source's content changed (see
/// [`CatalogHandle::reload_if_changed`]); SIGHUP always reloads. Must be called within a
/// Tokio runtime.
pub fn spawn_watcher(
    handle: Arc<CatalogHandle>,
    opts: WatchOptions,
    on_reload: OnReload,
) -> Result<CatalogWatcher, WatchError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| WatchError::NoRuntime)?;
    let changed = Arc::new(Notify::new());
    let notifier = Arc::clone(&changed);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(event) if is_change(&event.kind) => notifier.notify_one(),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "catalog file watcher error"),
    })?;
    let mut watched = Vec::new();
    for (dir, mode) in watch_roots(handle.config()) {
        match watcher.watch(&dir, mode) {
            Ok(()) => watched.push(dir),
            Err(e) => tracing::warn!(
                path = %dir.display(),
                error = %e,
                "cannot watch catalog path; changes there need SIGHUP"
            ),
        }
    }

    #[cfg(unix)]
    let mut hup = if opts.sighup {
        let _guard = runtime.enter();
        Some(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?)
    } else {
        None
    };

    let task = runtime.spawn(async move {
        loop {
            #[cfg(unix)]
            let trigger = tokio::select! {
                () = changed.notified() => ReloadTrigger::FileChange,
                Some(()) = next_signal(&mut hup) => ReloadTrigger::Signal,
            };
            #[cfg(not(unix))]
            let trigger = {
                changed.notified().await;
                ReloadTrigger::FileChange
            };
            if trigger == ReloadTrigger::FileChange {
                // Debounce: wait until the files have been quiet for `debounce`, but not
                // forever when something keeps writing next to a catalog file.
                let cap = tokio::time::Instant::now() + (opts.debounce * 10).max(MAX_DEBOUNCE);
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(opts.debounce) => break,
                        () = tokio::time::sleep_until(cap) => break,
                        () = changed.notified() => {}
                    }
                }
            }
            let h = Arc::clone(&handle);
            let result = tokio::task::spawn_blocking(move || match trigger {
                ReloadTrigger::Signal => h.reload().map(|()| true),
                ReloadTrigger::FileChange => h.reload_if_changed(),
            })
            .await;
            let outcome = match result {
                Ok(Ok(true)) => {
                    let catalog = handle.current();
                    ReloadOutcome::Reloaded {
                        trigger,
                        generation: handle.generation(),
                        services: catalog.service_count(),
                        rules: catalog.rule_count(),
                    }
                }
                Ok(Ok(false)) => ReloadOutcome::Unchanged { trigger },
                Ok(Err(errors)) => ReloadOutcome::Failed { trigger, errors },
                Err(e) => ReloadOutcome::Failed {
                    trigger,
                    errors: vec![CatalogError::new(
                        "<catalog reload>",
                        None,
                        ErrorKind::Invalid(format!("reload task failed: {e}")),
                    )],
                },
            };
            log_outcome(&outcome);
            on_reload(outcome);
        }
    });
    Ok(CatalogWatcher { _watcher: watcher, task, watched })
}

#[cfg(unix)]
async fn next_signal(sig: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match sig {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

fn log_outcome(outcome: &ReloadOutcome) {
    match outcome {
        ReloadOutcome::Reloaded { trigger, generation, services, rules } => {
            tracing::info!(?trigger, generation, services, rules, "ownership catalog reloaded")
        }
        ReloadOutcome::Unchanged { trigger } => {
            tracing::debug!(?trigger, "ownership catalog unchanged")
        }
        ReloadOutcome::Failed { trigger, errors } => {
            for e in errors {
                tracing::error!(?trigger, error = %e, "invalid ownership catalog");
            }
            tracing::warn!(
                ?trigger,
                errors = errors.len(),
                "ownership catalog reload failed; keeping the previous catalog"
            );
        }
    }
}

/// File events that may change content. Opening or reading a file (which a reload itself
/// does) is not a change.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The directories to watch. Files are watched through their directory, so that editors'
/// and Kubernetes' replace-by-rename updates are seen.
fn watch_roots(cfg: &CatalogConfig) -> Vec<(PathBuf, RecursiveMode)> {
    let mut roots: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    let parent = |p: &Path| match p.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    for path in &cfg.catalog {
        let dir = if path.is_dir() { path.clone() } else { parent(path) };
        roots.push((dir, RecursiveMode::NonRecursive));
    }
    for entry in &cfg.backstage {
        let path = Path::new(entry);
        if is_glob(entry) {
            roots.push((glob_base(entry), RecursiveMode::Recursive));
        } else if path.is_dir() {
            roots.push((path.to_path_buf(), RecursiveMode::Recursive));
        } else {
            roots.push((parent(path), RecursiveMode::NonRecursive));
        }
    }
    let mut out: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    for (dir, mode) in roots {
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        match out.iter_mut().find(|(d, _)| *d == dir) {
            Some(existing) => {
                if mode == RecursiveMode::Recursive {
                    existing.1 = mode;
                }
            }
            None => out.push((dir, mode)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_events_are_not_changes() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(notify::event::AccessMode::Any))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(is_change(&EventKind::Modify(notify::event::ModifyKind::Any)));
    }

    #[test]
    fn roots_are_deduplicated() {
        let cfg = CatalogConfig {
            catalog: vec![PathBuf::from("x/a.yaml"), PathBuf::from("x/b.yaml")],
            backstage: vec!["x/**/catalog-info.yaml".into()],
            default_team: String::new(),
        };
        let roots = watch_roots(&cfg);
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].1, RecursiveMode::Recursive);
        assert!(roots[0].0.is_absolute());
    }
}
