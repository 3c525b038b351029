//! The receiver's bounded decompression (`sightline_otlp::decompress`). Input: a mode byte,
//! two bytes for the output limit (x 16, so up to ~1 MiB), one byte for the memory budget,
//! then the data.
//!
//! Mode `0..=4` decompresses the data as identity, gzip, zstd, deflate or snappy. Oracles:
//! - nothing panics, whatever the bytes;
//! - output is never larger than the limit;
//! - the permit grows by at most the limit (+1 byte, to detect "too large") and the budget is
//!   back to zero once it is dropped;
//! - the memory that Rust code allocates during the call (counted by this target's global
//!   allocator; zstd's C allocations are not seen) peaks at most at twice the limit plus a
//!   fixed allowance for decoder state, so a compression bomb costs the limit, not its
//!   expanded size.
//!
//! Mode `5..` compresses the data with a real encoder (gzip, zlib, raw deflate, zstd, snappy
//! block, snappy framed) and decompresses it: the result is the data when it fits the limit,
//! `TooLarge` when it does not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline_core::MemoryBudget;
use sightline_otlp::decompress::{DecompressError, Encoding, decompress};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts live bytes and their peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as if old and new were both live for a moment (a moving realloc).
            let now = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Decoder state that may be allocated besides the output: inflate state and window, the
/// readers' buffers, snappy's two frame buffers, zstd's input buffer.
const DECODER_ALLOWANCE: usize = 1 << 20;

const ENCODINGS: [Encoding; 5] =
    [Encoding::Identity, Encoding::Gzip, Encoding::Zstd, Encoding::Deflate, Encoding::Snappy];

fuzz_target!(|data: &[u8]| {
    let [mode, l0, l1, b, rest @ ..] = data else { return };
    let limit = usize::from(u16::from_le_bytes([*l0, *l1])) * 16;
    if usize::from(*mode) < ENCODINGS.len() {
        bounded(ENCODINGS[usize::from(*mode)], rest, limit, *b);
    } else {
        round_trip(*mode, rest, limit);
    }
});

fn bounded(enc: Encoding, input: &[u8], limit: usize, b: u8) {
    // A budget from far too small to comfortably large.
    let budget = MemoryBudget::new(input.len() + (usize::from(b) << 12));
    let Some(mut permit) = budget.try_acquire(input.len()) else { return };
    let before = permit.bytes();
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let result = decompress(enc, input, limit, &mut permit);
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let identity_copy = if enc == Encoding::Identity { input.len() } else { 0 };
    assert!(
        peak <= 2 * (limit + 1) + identity_copy + DECODER_ALLOWANCE,
        "{enc:?}: {peak} bytes allocated at the peak for a limit of {limit}"
    );
    if enc != Encoding::Identity {
        assert!(permit.bytes() - before <= limit + 1, "{enc:?}: the permit grew past the limit");
    }
    if let Ok(out) = &result
        && enc != Encoding::Identity
    {
        assert!(out.len() <= limit, "{enc:?}: {} bytes of output for a limit of {limit}", out.len());
    }
    drop(result);
    drop(permit);
    assert_eq!(budget.in_use(), 0, "the budget is released");
}

fn round_trip(mode: u8, data: &[u8], limit: usize) {
    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    macro_rules! flate {
        ($e:expr) => {{
            let mut e = $e;
            e.write_all(data).expect("in-memory write");
            e.finish().expect("in-memory write")
        }};
    }
    let (enc, compressed) = match mode % 6 {
        0 => (Encoding::Gzip, flate!(GzEncoder::new(Vec::new(), Compression::fast()))),
        1 => (Encoding::Deflate, flate!(ZlibEncoder::new(Vec::new(), Compression::fast()))),
        2 => (Encoding::Deflate, flate!(DeflateEncoder::new(Vec::new(), Compression::fast()))),
        3 => (Encoding::Zstd, zstd::encode_all(data, 1).expect("zstd encodes")),
        4 => (Encoding::Snappy, snap::raw::Encoder::new().compress_vec(data).expect("snappy encodes")),
        _ => {
            let mut w = snap::write::FrameEncoder::new(Vec::new());
            w.write_all(data).expect("snappy frames");
            (Encoding::Snappy, w.into_inner().expect("snappy frames"))
        }
    };
    let budget = MemoryBudget::new(compressed.len() + 4 * (limit + 1) + (1 << 20));
    let Some(mut permit) = budget.try_acquire(compressed.len()) else { return };
    let result = decompress(enc, &compressed, limit, &mut permit);
    if data.len() <= limit {
        assert_eq!(result.as_deref(), Ok(data), "{enc:?} (mode {mode}) round trip");
    } else {
        assert_eq!(result, Err(DecompressError::TooLarge { limit }), "{enc:?} (mode {mode}) over the limit");
    }
}
