//! `processors.memory_limiter`: sets the process-wide in-flight byte budget.
//!
//! Unlike the collector, where the memory limiter samples the heap periodically and refuses
//! data once it is already over the limit, Sightline holds every request's bytes against the
//! budget *before* buffering them and releases them when the last exporter is done with the
//! payload; an exhausted budget refuses the request at once with a retryable code (HTTP 429 +
//! `Retry-After`, gRPC `RESOURCE_EXHAUSTED` + `RetryInfo`). Listing the processor in a pipeline
//! is accepted (and does nothing more); defining it is what sets the budget. With several
//! definitions the smallest limit wins; without any, the budget is [`DEFAULT_LIMIT_MIB`].

use serde::Deserialize;
use std::path::Path;

/// The budget when no `memory_limiter` is configured.
pub const DEFAULT_LIMIT_MIB: u64 = 256;

/// `processors.memory_limiter`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimiterConfig {
    /// The process's memory, in MiB. This or `limit_percentage` is required, as in the
    /// collector; when both are set, `limit_mib` wins (as in the collector). What the process
    /// holds at start is subtracted; the rest bounds telemetry in flight (buffered, queued or
    /// being sent).
    #[serde(default)]
    pub limit_mib: Option<u64>,
    /// Headroom kept out of the telemetry budget, in MiB (default: 20% of the limit, as in
    /// the collector). Sightline refuses before buffering, so this is not for spikes of
    /// payload data but for the memory no budget can count: HTTP/2 buffers of request bodies
    /// not yet read, per-connection state, allocator slack.
    #[serde(default)]
    pub spike_limit_mib: Option<u64>,
    /// The limit as a percentage (1-100) of the memory available to the process: its cgroup's
    /// memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`, the smallest on the path to
    /// the root), or the machine's memory when no cgroup limits it.
    #[serde(default)]
    pub limit_percentage: Option<u32>,
    /// With `limit_percentage`: the headroom as a percentage of the same memory (default: 20%
    /// of the limit). Must be below `limit_percentage`.
    #[serde(default)]
    pub spike_limit_percentage: Option<u32>,
    /// Accepted for collector compatibility; Sightline does not poll the heap. Ignored.
    #[serde(default, with = "humantime_serde")]
    pub check_interval: Option<std::time::Duration>,
}

/// The limit and headroom a configuration comes to on this machine, in MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub limit_mib: u64,
    pub spike_mib: u64,
}

impl MemoryLimiterConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        match (self.limit_mib, self.limit_percentage) {
            (Some(0), _) => errs.push(("limit_mib".into(), "must be at least 1".into())),
            (None, None) => errs.push(("limit_mib".into(), "limit_mib or limit_percentage is required".into())),
            _ => {}
        }
        if let Some(v) = self.limit_percentage
            && !(1..=100).contains(&v)
        {
            errs.push(("limit_percentage".into(), format!("must be between 1 and 100 (got {v})")));
        }
        if let Some(v) = self.spike_limit_percentage
            && v > 100
        {
            errs.push(("spike_limit_percentage".into(), format!("must be between 0 and 100 (got {v})")));
        }
        if let (Some(limit), Some(spike)) = (self.limit_mib, self.spike_limit_mib)
            && limit > 0
            && spike >= limit
        {
            errs.push(("spike_limit_mib".into(), format!("must be less than limit_mib ({limit})")));
        }
        if let (Some(limit), Some(spike)) = (self.limit_percentage, self.spike_limit_percentage)
            && spike >= limit
        {
            errs.push(("spike_limit_percentage".into(), format!("must be less than limit_percentage ({limit})")));
        }
        if self.limit_mib.is_some() && self.limit_percentage.is_none() && self.spike_limit_percentage.is_some() {
            errs.push((
                "spike_limit_percentage".into(),
                "applies to limit_percentage; with limit_mib, set spike_limit_mib".into(),
            ));
        }
        errs
    }

    /// The limit and headroom in MiB, given the memory available to the process (see
    /// [`total_memory`]; needed only for `limit_percentage`). `None` when the configuration
    /// asks for a percentage and the memory is not known.
    pub fn resolve(&self, total_bytes: Option<u64>) -> Option<Resolved> {
        if let Some(limit_mib) = self.limit_mib {
            return Some(Resolved { limit_mib, spike_mib: self.spike_limit_mib.unwrap_or(limit_mib / 5) });
        }
        let total = total_bytes?;
        let mib_of = |pct: u32| u64::try_from((u128::from(total) * u128::from(pct) / 100) >> 20).unwrap_or(u64::MAX);
        let limit_mib = mib_of(self.limit_percentage?);
        let spike_mib = match self.spike_limit_percentage {
            Some(s) => mib_of(s),
            None => limit_mib / 5,
        };
        Some(Resolved { limit_mib: limit_mib.max(1), spike_mib })
    }
}

/// The limit and headroom when no `memory_limiter` is configured.
pub fn default_config() -> MemoryLimiterConfig {
    MemoryLimiterConfig { limit_mib: Some(DEFAULT_LIMIT_MIB), ..Default::default() }
}

/// The memory available to this process, in bytes: the smallest cgroup memory limit on its
/// cgroup's path (v2 or v1), or the machine's memory (`MemTotal`) when that is smaller or no
/// cgroup sets one. `None` when neither can be read.
pub fn total_memory() -> Option<u64> {
    total_memory_under(Path::new("/"))
}

/// [`total_memory`] with `/proc` and `/sys/fs/cgroup` read under `root` (tests).
pub fn total_memory_under(root: &Path) -> Option<u64> {
    let machine = std::fs::read_to_string(root.join("proc/meminfo")).ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
    });
    let cgroup = cgroup_limit(root);
    match (machine, cgroup) {
        (Some(m), Some(c)) => Some(m.min(c)),
        (m, c) => m.or(c),
    }
}

/// Limits at or above this are "no limit" (cgroup v1 reports a page-rounded i64::MAX).
const NO_LIMIT: u64 = 1 << 62;

fn cgroup_limit(root: &Path) -> Option<u64> {
    let own = std::fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
    let mut best: Option<u64> = None;
    let mut consider = |dir: &Path, file: &str, path: &str| {
        // The cgroup's own directory and each parent up to the mount's root; in a container
        // whose cgroup namespace hides the path, the mount's root is the cgroup itself.
        let mut rel = Path::new(path.trim_start_matches('/'));
        loop {
            if let Ok(v) = std::fs::read_to_string(dir.join(rel).join(file))
                && let Ok(n) = v.trim().parse::<u64>()
                && n < NO_LIMIT
            {
                best = Some(best.map_or(n, |b| b.min(n)));
            }
            match rel.parent() {
                Some(p) => rel = p,
                None => break,
            }
        }
    };
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if id == "0" && controllers.is_empty() {
            consider(&root.join("sys/fs/cgroup"), "memory.max", path);
        } else if controllers.split(',').any(|c| c == "memory") {
            consider(&root.join("sys/fs/cgroup/memory"), "memory.limit_in_bytes", path);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spike_defaults_to_a_fifth_and_must_be_below_the_limit() {
        let c = |limit_mib, spike_limit_mib| MemoryLimiterConfig {
            limit_mib: Some(limit_mib),
            spike_limit_mib,
            ..Default::default()
        };
        assert_eq!(c(256, None).resolve(None), Some(Resolved { limit_mib: 256, spike_mib: 51 }));
        assert_eq!(c(256, Some(10)).resolve(None).unwrap().spike_mib, 10);
        assert!(c(256, Some(255)).validate().is_empty());
        assert_eq!(c(256, Some(256)).validate()[0].0, "spike_limit_mib");
        assert_eq!(c(0, None).validate()[0].0, "limit_mib");
    }

    /// The collector's `limit_percentage` / `spike_limit_percentage`, of the memory available.
    #[test]
    fn percentages_of_the_available_memory() {
        let c = |limit, spike| MemoryLimiterConfig {
            limit_percentage: limit,
            spike_limit_percentage: spike,
            ..Default::default()
        };
        let gib4 = Some(4u64 << 30);
        assert_eq!(c(Some(80), Some(25)).resolve(gib4), Some(Resolved { limit_mib: 3276, spike_mib: 1024 }));
        assert_eq!(c(Some(50), None).resolve(gib4), Some(Resolved { limit_mib: 2048, spike_mib: 409 }));
        assert_eq!(c(Some(80), None).resolve(None), None);
        assert!(c(Some(80), Some(25)).validate().is_empty());
        let keys = |cfg: MemoryLimiterConfig| cfg.validate().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(c(None, None)), ["limit_mib"]);
        assert_eq!(keys(c(Some(0), None)), ["limit_percentage"]);
        assert_eq!(keys(c(Some(101), None)), ["limit_percentage"]);
        assert_eq!(keys(c(Some(50), Some(50))), ["spike_limit_percentage"]);
        assert_eq!(keys(c(Some(50), Some(120))), ["spike_limit_percentage", "spike_limit_percentage"]);
        // Both forms: limit_mib wins, as in the collector.
        let both = MemoryLimiterConfig { limit_mib: Some(100), limit_percentage: Some(80), ..Default::default() };
        assert_eq!(both.resolve(gib4), Some(Resolved { limit_mib: 100, spike_mib: 20 }));
        let mixed =
            MemoryLimiterConfig { limit_mib: Some(100), spike_limit_percentage: Some(10), ..Default::default() };
        assert_eq!(keys(mixed), ["spike_limit_percentage"]);
    }

    fn fake_root(cgroup: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = root.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("proc/meminfo", "MemTotal:       16384000 kB\nMemFree:        1000 kB\n");
        write("proc/self/cgroup", cgroup);
        for (rel, text) in files {
            write(rel, text);
        }
        root
    }

    #[test]
    fn available_memory_is_the_smallest_cgroup_limit_or_the_machine() {
        let machine = 16_384_000u64 * 1024;
        // cgroup v2, limited on a parent.
        let r = fake_root(
            "0::/kubepods/pod1/c1\n",
            &[
                ("sys/fs/cgroup/kubepods/pod1/c1/memory.max", "max\n"),
                ("sys/fs/cgroup/kubepods/pod1/memory.max", "536870912\n"),
            ],
        );
        assert_eq!(total_memory_under(r.path()), Some(512 << 20));
        // cgroup v2 with no limit anywhere: the machine.
        let r = fake_root("0::/user.slice\n", &[("sys/fs/cgroup/user.slice/memory.max", "max\n")]);
        assert_eq!(total_memory_under(r.path()), Some(machine));
        // cgroup v1; the path hidden by a cgroup namespace: the mount's root is read.
        let r = fake_root(
            "4:memory:/process_api/abc\n0::/\n",
            &[("sys/fs/cgroup/memory/memory.limit_in_bytes", "1073741824\n")],
        );
        assert_eq!(total_memory_under(r.path()), Some(1 << 30));
        // v1 "no limit" (a page-rounded i64::MAX), and a limit above the machine's memory.
        let r = fake_root("4:memory:/\n", &[("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")]);
        assert_eq!(total_memory_under(r.path()), Some(machine));
        let r = fake_root("0::/\n", &[("sys/fs/cgroup/memory.max", "99999999999999\n")]);
        assert_eq!(total_memory_under(r.path()), Some(machine));
        assert!(total_memory().is_some(), "this machine's memory is readable");
    }
}
