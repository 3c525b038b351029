//! The latency stamp: the first item of every request (the first span's
//! `start_time_unix_nano`, the first log record's `time_unix_nano`, the first data point's
//! `time_unix_nano`, all `fixed64`) carries the time it was sent, in UNIX nanoseconds.
//!
//! The load generator overwrites those 8 bytes in place right before sending; the sink finds
//! them again by walking the wire format. The stamp survives Sightline (which copies items
//! byte for byte) and the OpenTelemetry Collector (which re-encodes but keeps values), as long
//! as the stamped request's items come first in what is forwarded.

use sightline_core::Signal;
use sightline_core::wire::{Fields, Value};

/// Where the stamp of a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StampOffsets {
    /// Offset of the 8 little-endian value bytes of the first item's timestamp.
    pub stamp: usize,
    /// Traces only: offset of the first span's `end_time_unix_nano` value bytes, so that the
    /// stamped span keeps its duration.
    pub end: Option<usize>,
}

/// Finds the stamp of the first item of an OTLP export request (`None` when the request has
/// no item, when the first item has no such timestamp, or when the bytes are not valid).
pub fn stamp_offsets(signal: Signal, buf: &[u8]) -> Option<StampOffsets> {
    let base = buf.as_ptr() as usize;
    // Resource* (1) -> Scope* (2) -> items (2).
    for f in Fields::new(buf) {
        let f = f.ok()?;
        let (1, Value::Len(rx)) = (f.number, f.value) else { continue };
        for g in Fields::new(rx) {
            let g = g.ok()?;
            let (2, Value::Len(sx)) = (g.number, g.value) else { continue };
            for h in Fields::new(sx) {
                let h = h.ok()?;
                let (2, Value::Len(item)) = (h.number, h.value) else { continue };
                match signal {
                    Signal::Traces => return span_stamp(base, item),
                    Signal::Logs => return fixed64_field(base, item, 1).map(|stamp| StampOffsets { stamp, end: None }),
                    Signal::Metrics => {
                        // A metric may have no data point: the first data point is the item.
                        if let Some(stamp) = metric_stamp(base, item) {
                            return Some(StampOffsets { stamp, end: None });
                        }
                    }
                }
            }
        }
    }
    None
}

/// Offset (relative to `base`) of the value bytes of the last `fixed64` field `number`.
fn fixed64_field(base: usize, msg: &[u8], number: u32) -> Option<usize> {
    let mut at = None;
    for f in Fields::new(msg) {
        let f = f.ok()?;
        if f.number == number && matches!(f.value, Value::I64(_)) {
            at = Some(f.raw.as_ptr() as usize + f.raw.len() - 8 - base);
        }
    }
    at
}

fn span_stamp(base: usize, span: &[u8]) -> Option<StampOffsets> {
    let mut stamp = None;
    let mut end = None;
    for f in Fields::new(span) {
        let f = f.ok()?;
        if matches!(f.value, Value::I64(_)) {
            let at = f.raw.as_ptr() as usize + f.raw.len() - 8 - base;
            match f.number {
                7 => stamp = Some(at),
                8 => end = Some(at),
                _ => {}
            }
        }
    }
    stamp.map(|stamp| StampOffsets { stamp, end })
}

fn metric_stamp(base: usize, metric: &[u8]) -> Option<usize> {
    for f in Fields::new(metric) {
        let f = f.ok()?;
        // gauge = 5, sum = 7, histogram = 9, exponential_histogram = 10, summary = 11; in each,
        // data_points = 1, and in every data point type time_unix_nano = 3.
        let (5 | 7 | 9 | 10 | 11, Value::Len(data)) = (f.number, f.value) else { continue };
        for g in Fields::new(data) {
            let g = g.ok()?;
            if let (1, Value::Len(dp)) = (g.number, g.value) {
                return fixed64_field(base, dp, 3);
            }
        }
    }
    None
}

/// Reads the stamp of a request: the first item's timestamp in UNIX nanoseconds. `None` when
/// it has none, or when it is 0 (the load generator zeroes the stamp of requests it cannot
/// patch, i.e. pre-compressed ones, so that a sink does not mistake them for stamped).
pub fn read_stamp(signal: Signal, buf: &[u8]) -> Option<u64> {
    let at = stamp_offsets(signal, buf)?.stamp;
    let v = u64::from_le_bytes(buf.get(at..at + 8)?.try_into().ok()?);
    (v != 0).then_some(v)
}

/// Writes `nanos` as the 8 little-endian bytes at `at`.
#[inline]
pub fn write_stamp(buf: &mut [u8], at: usize, nanos: u64) {
    buf[at..at + 8].copy_from_slice(&nanos.to_le_bytes());
}
