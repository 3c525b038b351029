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

/// The budget when no `memory_limiter` is configured.
pub const DEFAULT_LIMIT_MIB: u64 = 256;

/// `processors.memory_limiter`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimiterConfig {
    /// The process's memory, in MiB. Required, as in the collector. What the process holds at
    /// start is subtracted; the rest bounds telemetry in flight (buffered, queued or being
    /// sent).
    pub limit_mib: u64,
    /// Accepted for collector compatibility; Sightline refuses before buffering, so there is
    /// no spike to allow for. Ignored.
    #[serde(default)]
    pub spike_limit_mib: Option<u64>,
    /// Accepted for collector compatibility; Sightline does not poll the heap. Ignored.
    #[serde(default, with = "humantime_serde")]
    pub check_interval: Option<std::time::Duration>,
}

impl MemoryLimiterConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        if self.limit_mib == 0 { vec![("limit_mib".into(), "must be at least 1".into())] } else { Vec::new() }
    }
}
