//! glibc malloc tuning at start-up (ADR 14).
//!
//! A request of 500 spans is about 123 KiB on the wire and the ownership processor writes it
//! anew, slightly larger: right at glibc's 128 KiB mmap threshold. With glibc's defaults such
//! buffers are mapped and unmapped, or carved from an arena's top and trimmed back to the
//! kernel, request after request, and every reuse of that memory page-faults again: about 30
//! page faults per request at an agent's working rate (`compare.py --rate`). Raising both
//! thresholds keeps freed request buffers in the arenas for the next request.
//!
//! The thresholds bound what is kept: a buffer above `MMAP_THRESHOLD` is still mapped on its
//! own and returned when freed, and an arena keeps at most `TRIM_THRESHOLD` of free memory at
//! its top. Live data stays bounded by the memory budget as before.
//!
//! An operator who sets `GLIBC_TUNABLES` (for example `glibc.malloc.trim_threshold`) keeps
//! glibc's reading of it: Sightline then changes nothing.

/// Allocations of this size and larger get their own mapping (glibc's default: 128 KiB,
/// adjusted upwards at run time; an explicit value turns that adjustment off). Above the
/// requests an SDK sends by default (512 spans, well under 1 MiB); a request near the
/// receivers' 4 MiB default limit is mapped on its own, as before.
pub const MMAP_THRESHOLD: usize = 4 << 20;

/// Free memory at the top of an arena past this size is returned to the kernel (glibc's
/// default: 128 KiB, adjusted with the mmap threshold).
pub const TRIM_THRESHOLD: usize = 8 << 20;

/// What [`tune`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Tuning {
    /// Both thresholds are set.
    Applied,
    /// `GLIBC_TUNABLES` is set: the operator's settings stand.
    LeftToGlibcTunables,
    /// glibc refused a value (it answers 0).
    Refused,
    /// Not glibc (musl, another OS): nothing to tune.
    #[cfg_attr(all(target_os = "linux", target_env = "gnu"), allow(dead_code))]
    NotGlibc,
}

/// Sets the thresholds. Called once, first thing in `main`, before any thread is started.
pub fn tune() -> Tuning {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return Tuning::LeftToGlibcTunables;
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> Tuning {
    // Both values fit a C int: 4 MiB and 8 MiB.
    let mmap = libc::c_int::try_from(MMAP_THRESHOLD).unwrap_or(libc::c_int::MAX);
    let trim = libc::c_int::try_from(TRIM_THRESHOLD).unwrap_or(libc::c_int::MAX);
    // SAFETY: `mallopt` takes two integers by value and dereferences no pointer of ours; glibc
    // changes its parameters under its own arena lock and allows the call at any time
    // ("Malloc Tunable Parameters" in the glibc manual). M_MMAP_THRESHOLD accepts values up to
    // 32 MiB on 64-bit targets (HEAP_MAX_SIZE / 2) and M_TRIM_THRESHOLD any non-negative
    // value; a value glibc does not accept is answered with 0, which is reported, not
    // assumed away. The test `tune_sets_both_thresholds` calls it.
    let ok =
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1 };
    if ok { Tuning::Applied } else { Tuning::Refused }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> Tuning {
    Tuning::NotGlibc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc accepts both values (a refused value would leave the per-request page faults;
    /// `tests/regression.rs` counts those on the running binary).
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn tune_sets_both_thresholds() {
        if std::env::var_os("GLIBC_TUNABLES").is_some() {
            assert_eq!(tune(), Tuning::LeftToGlibcTunables);
        } else {
            assert_eq!(tune(), Tuning::Applied);
        }
        assert_eq!(set_thresholds(), Tuning::Applied);
    }
}
