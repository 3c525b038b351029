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
    /// Headroom kept out of the telemetry budget, in MiB (default: 20% of `limit_mib`, as in
    /// the collector). Sightline refuses before buffering, so this is not for spikes of
    /// payload data but for the memory no budget can count: HTTP/2 buffers of request bodies
    /// not yet read, per-connection state, allocator slack.
    #[serde(default)]
    pub spike_limit_mib: Option<u64>,
    /// Accepted for collector compatibility; Sightline does not poll the heap. Ignored.
    #[serde(default, with = "humantime_serde")]
    pub check_interval: Option<std::time::Duration>,
}

impl MemoryLimiterConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        if self.limit_mib == 0 {
            return vec![("limit_mib".into(), "must be at least 1".into())];
        }
        match self.spike_limit_mib {
            Some(s) if s >= self.limit_mib => {
                vec![("spike_limit_mib".into(), format!("must be less than limit_mib ({})", self.limit_mib))]
            }
            _ => Vec::new(),
        }
    }

    /// `spike_limit_mib`, or its default: 20% of the limit.
    pub fn spike_mib(&self) -> u64 {
        self.spike_limit_mib.unwrap_or(self.limit_mib / 5)
    }
}

/// The limit and headroom when no `memory_limiter` is configured.
pub fn default_config() -> MemoryLimiterConfig {
    MemoryLimiterConfig { limit_mib: DEFAULT_LIMIT_MIB, spike_limit_mib: None, check_interval: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spike_defaults_to_a_fifth_and_must_be_below_the_limit() {
        let c = |limit_mib, spike_limit_mib| MemoryLimiterConfig { limit_mib, spike_limit_mib, check_interval: None };
        assert_eq!(c(256, None).spike_mib(), 51);
        assert_eq!(c(256, Some(10)).spike_mib(), 10);
        assert!(c(256, Some(255)).validate().is_empty());
        assert_eq!(c(256, Some(256)).validate()[0].0, "spike_limit_mib");
        assert_eq!(c(0, None).validate()[0].0, "limit_mib");
    }
}
