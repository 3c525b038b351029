//! Reloading: direct `reload()`, the file watcher, and resolution during reloads.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sightline_ownership::{
    CatalogHandle, OnReload, ReloadOutcome, ReloadTrigger, WatchError, WatchOptions, spawn_watcher,
};

const V1: &str =
    "teams:\n  - name: payments\n    contact: \"#payments\"\nservices:\n  - name: checkout\n    team: payments\n";
const V2: &str = "teams:\n  - name: payments\n    contact: \"#payments-v2\"\n  - name: search\nservices:\n  - name: checkout\n    team: search\n";
const INVALID: &str = "teams:\n  - name: payments\nservices:\n  - name: checkout\n    team: paymnts\n";

fn team_of(handle: &CatalogHandle, service: &str) -> String {
    resolve(&handle.current(), &[("service.name", service)]).team.to_string()
}

#[test]
fn reload_replaces_the_catalog_and_bumps_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "c.yaml", V1);
    let handle = CatalogHandle::new(native(&[&file])).unwrap();
    assert_eq!(handle.generation(), 0);
    assert_eq!(team_of(&handle, "checkout"), "payments");

    write(dir.path(), "c.yaml", V2);
    handle.reload().unwrap();
    assert_eq!(handle.generation(), 1);
    assert_eq!(team_of(&handle, "checkout"), "search");

    // reload() always replaces; reload_if_changed() does not when nothing changed.
    handle.reload().unwrap();
    assert_eq!(handle.generation(), 2);
    assert!(!handle.reload_if_changed().unwrap());
    assert_eq!(handle.generation(), 2);
    write(dir.path(), "c.yaml", V1);
    assert!(handle.reload_if_changed().unwrap());
    assert_eq!(handle.generation(), 3);
}

#[test]
fn invalid_reload_keeps_the_previous_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "c.yaml", V1);
    let handle = CatalogHandle::new(native(&[&file])).unwrap();
    let before = handle.snapshot();

    write(dir.path(), "c.yaml", INVALID);
    let errors = handle.reload().unwrap_err();
    assert_eq!(
        messages(&errors),
        [format!("{}:5: service \"checkout\": unknown team \"paymnts\" (did you mean \"payments\"?)", file.display())]
    );
    assert_eq!(handle.generation(), 0);
    assert!(Arc::ptr_eq(&before, &handle.snapshot()));
    assert_eq!(team_of(&handle, "checkout"), "payments");

    std::fs::remove_file(&file).unwrap();
    assert!(handle.reload().is_err());
    assert_eq!(team_of(&handle, "checkout"), "payments");
}

#[test]
fn resolving_continues_while_another_thread_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "c.yaml", V1);
    let handle = Arc::new(CatalogHandle::new(native(&[&file])).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let resolved = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (handle, stop, resolved) = (handle.clone(), stop.clone(), resolved.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let team = team_of(&handle, "checkout");
                assert!(team == "payments" || team == "search", "{team}");
                resolved.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for i in 0..50 {
        write(dir.path(), "c.yaml", if i % 2 == 0 { V2 } else { V1 });
        handle.reload().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert_eq!(handle.generation(), 50);
    assert!(resolved.load(Ordering::Relaxed) > 0);
}

/// Polls `cond` every 20 ms for at most 5 s.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn recorder() -> (OnReload, Arc<Mutex<Vec<ReloadOutcome>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let on_reload: OnReload = Arc::new(move |o| sink.lock().unwrap().push(o));
    (on_reload, seen)
}

fn no_sighup() -> WatchOptions {
    WatchOptions { debounce: Duration::from_millis(50), sighup: false }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_reloads_on_file_change_and_keeps_previous_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "payments.yaml", V1);
    let handle = Arc::new(CatalogHandle::new(native(&[dir.path()])).unwrap());
    let (on_reload, seen) = recorder();
    let watcher = spawn_watcher(handle.clone(), no_sighup(), on_reload).unwrap();
    assert_eq!(watcher.watched().len(), 1);

    // A new version of the file.
    write(dir.path(), "payments.yaml", V2);
    wait_for("reload after change", || handle.generation() >= 1).await;
    assert_eq!(team_of(&handle, "checkout"), "search");
    let generation = handle.generation();
    let reloaded = seen.lock().unwrap().iter().any(|o| {
        matches!(o, ReloadOutcome::Reloaded { trigger: ReloadTrigger::FileChange, generation: g, services: 1, rules: 0 } if *g >= 1)
    });
    assert!(reloaded, "{:?}", seen.lock().unwrap());

    // An invalid version: reported, previous catalog kept.
    write(dir.path(), "payments.yaml", INVALID);
    wait_for("failed reload", || seen.lock().unwrap().iter().any(|o| matches!(o, ReloadOutcome::Failed { .. }))).await;
    let failed = seen
        .lock()
        .unwrap()
        .iter()
        .find_map(|o| match o {
            ReloadOutcome::Failed { errors, .. } => Some(messages(errors)),
            _ => None,
        })
        .unwrap();
    assert!(failed[0].starts_with(&format!("{}:5: ", file.display())), "{failed:?}");
    assert_eq!(handle.generation(), generation);
    assert_eq!(team_of(&handle, "checkout"), "search");

    // A new file in the directory (e.g. a new team onboarding) is picked up too.
    write(dir.path(), "payments.yaml", V2);
    write(dir.path(), "search.yaml", "services:\n  - name: indexer\n    team: search\n");
    wait_for("new file", || team_of(&handle, "indexer") == "search").await;

    // Dropping the watcher stops it (let in-flight events settle first, and a reload that
    // was already running on the blocking pool finish).
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(watcher);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let generation = handle.generation();
    write(dir.path(), "payments.yaml", V1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handle.generation(), generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_replace_by_rename_of_a_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "catalog.yaml", V1);
    let handle = Arc::new(CatalogHandle::new(native(&[&file])).unwrap());
    let (on_reload, _seen) = recorder();
    let _watcher = spawn_watcher(handle.clone(), no_sighup(), on_reload).unwrap();

    // Editors and Kubernetes replace files by renaming a new one over them.
    let tmp = write(dir.path(), ".catalog.yaml.tmp", V2);
    std::fs::rename(&tmp, &file).unwrap();
    wait_for("reload after rename", || team_of(&handle, "checkout") == "search").await;
    assert!(handle.generation() >= 1);
}

#[test]
fn watcher_needs_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "c.yaml", V1);
    let handle = Arc::new(CatalogHandle::new(native(&[&file])).unwrap());
    let (on_reload, _) = recorder();
    assert!(matches!(spawn_watcher(handle, no_sighup(), on_reload), Err(WatchError::NoRuntime)));
}
