//! Reloading small files (certificates, keys, tokens files) when their content changes.
//!
//! Polling, not file-system events: the files are a few kilobytes, Kubernetes replaces mounted
//! secrets by swapping a symlink (which inotify on the file itself does not see), and a
//! content comparison is immune to coarse or unchanged modification times. A file that cannot
//! be read counts as a change (its error is then reported by the reload), so a file that
//! disappears and comes back is picked up.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A fingerprint of the files' contents (never the contents themselves: a tokens file must not
/// be kept in memory longer than it takes to parse it).
pub(crate) fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for f in files {
        match std::fs::read(f) {
            Ok(bytes) => {
                0u8.hash(&mut h);
                bytes.hash(&mut h);
            }
            Err(e) => {
                1u8.hash(&mut h);
                e.kind().hash(&mut h);
            }
        }
    }
    h.finish()
}

/// Every `interval`, re-reads `files` and calls `reload` when their content differs from what
/// it was at the last check (the first check compares with the content at spawn time, i.e.
/// what was just loaded). Stops with `shutdown`. An interval of zero disables reloading.
pub(crate) fn spawn_poller(
    interval: Duration,
    files: Vec<PathBuf>,
    shutdown: CancellationToken,
    mut reload: impl FnMut() + Send + 'static,
) -> Option<JoinHandle<()>> {
    if interval.is_zero() {
        return None;
    }
    let mut last = fingerprint(&files);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            // Reading a few small files: the blocking pool keeps a slow disk off the runtime.
            let f = files.clone();
            let Ok(now) = tokio::task::spawn_blocking(move || fingerprint(&f)).await else { continue };
            if now != last {
                last = now;
                reload();
            }
        }
    }))
}
