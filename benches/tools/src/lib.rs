//! Sightline's benchmark tools: the OTLP load generator (`loadgen`), the counting sink
//! (`sink`), and the corpus generator both of them (and tests and micro-benchmarks) share.
//!
//! - [`corpus`] pre-generates realistic OTLP export requests (traces, logs, metrics) as
//!   protobuf bytes, with the byte offset of each request's latency stamp;
//!   [`catalog_yaml`] emits the ownership catalog that matches the corpus's services.
//! - [`read_stamp`] finds the latency stamp (the first item's timestamp) in a request, after
//!   any number of hops that copy or re-encode it.
//! - [`loadgen`] sends a corpus over OTLP/gRPC or OTLP/HTTP, closed or open loop, and reports
//!   throughput, refusals, errors and latency.
//! - [`sink`] receives OTLP (gRPC and HTTP, all signals), counts items without decoding, and
//!   records end-to-end latency from the stamps.
//!
//! Both tools are built not to be the bottleneck: everything is generated before the clock
//! starts, send and receive loops reuse their buffers, and counters are per connection or
//! atomic.

pub mod generate;
pub mod hist;
pub mod loadgen;
mod rng;
pub mod sink;
pub mod stamp;

pub use generate::{Corpus, CorpusConfig, CorpusRequest, Org, SpanSize, catalog_yaml, corpus, org};
pub use sightline_core::Signal;
pub use stamp::{StampOffsets, read_stamp, stamp_offsets, write_stamp};

/// Parses a signal name (`traces`, `metrics`, `logs`) for the command lines.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    Signal::parse(s).ok_or_else(|| format!("unknown signal {s:?}: use traces, metrics or logs"))
}

/// Parses a duration such as `10s`, `500ms` or `2m` for the command lines.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (use e.g. 10s, 500ms, 2m)"))
}

/// The current wall-clock time in UNIX nanoseconds (CLOCK_REALTIME), the unit of the stamps.
#[inline]
pub fn unix_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`
/// (Linux; `None` elsewhere). Clock ticks are taken as 1/100 s (USER_HZ on Linux).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
