//! SIGHUP reload. In its own test binary (process) because the handler is process-wide.
#![cfg(unix)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sightline_ownership::{CatalogHandle, OnReload, ReloadOutcome, ReloadTrigger, WatchOptions, spawn_watcher};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_forces_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "c.yaml", "services:\n  - name: checkout\n    team: payments\n");
    let handle = Arc::new(CatalogHandle::new(native(&[&file])).unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let on_reload: OnReload = Arc::new(move |o| sink.lock().unwrap().push(o));
    let opts = WatchOptions { sighup: true, ..WatchOptions::default() };
    // The handler is installed by spawn_watcher, before the signal is sent.
    let _watcher = spawn_watcher(handle.clone(), opts, on_reload).unwrap();

    // No file changed: only the signal can bump the generation (file events only replace
    // the catalog when content changed).
    // SAFETY: sends SIGHUP to this process, whose handler is installed above.
    let rc = unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    assert_eq!(rc, 0);

    let deadline = Instant::now() + Duration::from_secs(5);
    while handle.generation() == 0 {
        assert!(Instant::now() < deadline, "no reload after SIGHUP");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outcomes = seen.lock().unwrap();
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, ReloadOutcome::Reloaded { trigger: ReloadTrigger::Signal, generation: 1, .. })),
        "{outcomes:?}"
    );
}
