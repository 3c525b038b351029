//! Bounded decompression: output is produced in chunks and refused as soon as it passes the
//! limit or the memory budget, so a compression bomb costs at most the limit, never its full
//! expanded size.

use sightline_core::MemoryPermit;
use std::io::Read;

/// A supported `Content-Encoding` / `grpc-encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
    /// HTTP `deflate` (zlib; raw deflate is accepted too).
    Deflate,
    /// Snappy, block or framed format.
    Snappy,
}

impl Encoding {
    pub fn parse(s: &str) -> Option<Encoding> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Some(Encoding::Identity),
            "gzip" | "x-gzip" => Some(Encoding::Gzip),
            "zstd" => Some(Encoding::Zstd),
            "deflate" => Some(Encoding::Deflate),
            "snappy" | "x-snappy-framed" => Some(Encoding::Snappy),
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecompressError {
    /// The decompressed size would pass `limit`.
    TooLarge { limit: usize },
    /// The memory budget cannot hold the decompressed data now.
    OverBudget,
    /// Corrupt input.
    Corrupt(String),
}

const CHUNK: usize = 64 * 1024;

/// The largest expansion a gzip body's trailer is believed for sizing the output up front
/// (OTLP requests compress 4-15x; a larger claim grows the buffer as output is produced).
const GZIP_HINT_RATIO: usize = 32;

/// The largest zstd window accepted: 2^24 = 16 MiB (zstd's level 19 uses 8 MiB; only the
/// "ultra" levels and `--long` go past it).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Decompresses `input`, holding the output's size against `permit` (grown as output is
/// produced) and refusing output past `limit` bytes.
///
/// The output buffer is the only copy: decoders read `input` in place (no intermediate read
/// buffer), and write into a buffer sized from the size the stream declares (gzip's ISIZE
/// trailer, zstd's frame content size) when it declares one, clamped to `limit + 1`, so a
/// typical request is decoded into one allocation that is never grown.
pub fn decompress(
    enc: Encoding,
    input: &[u8],
    limit: usize,
    permit: &mut MemoryPermit,
) -> Result<Vec<u8>, DecompressError> {
    match enc {
        Encoding::Identity => Ok(input.to_vec()),
        Encoding::Gzip => {
            // ISIZE: the last member's uncompressed size mod 2^32; a hint only (a body of
            // several members, or a lying trailer, still decodes, growing the buffer). Trusted
            // up to GZIP_HINT_RATIO times the body, so that a few bytes with a forged trailer
            // cannot make the receiver zero a buffer of `limit` bytes up front.
            let hint = input.len().checked_sub(4).filter(|_| input.starts_with(&[0x1f, 0x8b])).and_then(|at| {
                let b = [input[at], input[at + 1], input[at + 2], input[at + 3]];
                let isize = u32::from_le_bytes(b) as usize;
                (isize <= input.len().saturating_mul(GZIP_HINT_RATIO)).then_some(isize)
            });
            read_bounded(flate2::bufread::MultiGzDecoder::new(input), hint, limit, permit)
        }
        Encoding::Zstd => zstd_decompress(input, limit, permit),
        Encoding::Deflate => {
            // zlib-wrapped per RFC 9110; some clients send raw deflate.
            if input.len() >= 2 && (u16::from(input[0]) << 8 | u16::from(input[1])) % 31 == 0 && input[0] & 0x0f == 8 {
                read_bounded(flate2::bufread::ZlibDecoder::new(input), None, limit, permit)
            } else {
                read_bounded(flate2::bufread::DeflateDecoder::new(input), None, limit, permit)
            }
        }
        Encoding::Snappy => {
            const FRAMED: &[u8] = b"\xff\x06\x00\x00sNaPpY";
            if input.is_empty() {
                // What a frame encoder writes for an empty request: not even the stream
                // identifier (found by fuzzing; see the test below).
                Ok(Vec::new())
            } else if input.starts_with(FRAMED) {
                read_bounded(snap::read::FrameDecoder::new(input), None, limit, permit)
            } else {
                let n = snap::raw::decompress_len(input).map_err(|e| DecompressError::Corrupt(e.to_string()))?;
                if n > limit {
                    return Err(DecompressError::TooLarge { limit });
                }
                if !permit.try_grow(n) {
                    return Err(DecompressError::OverBudget);
                }
                snap::raw::Decoder::new().decompress_vec(input).map_err(|e| DecompressError::Corrupt(e.to_string()))
            }
        }
    }
}

thread_local! {
    /// One zstd decompression context per receiving thread, reused by every request.
    static ZSTD_DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn zstd_decompress(input: &[u8], limit: usize, permit: &mut MemoryPermit) -> Result<Vec<u8>, DecompressError> {
    // A frame that declares its size (SDKs compress whole messages, and declare it): decoded in
    // one call into a buffer of exactly that size, with this thread's reused context. No
    // window is allocated in this mode: the output is the window, and it is budgeted.
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(input) {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > limit {
            return Err(DecompressError::TooLarge { limit });
        }
        let held = permit.bytes();
        if !permit.try_grow(size) {
            return Err(DecompressError::OverBudget);
        }
        let mut out = Vec::with_capacity(size);
        let done = ZSTD_DCTX.with(|cell| {
            let mut slot = cell.borrow_mut();
            let dctx = match &mut *slot {
                Some(d) => d,
                None => {
                    slot.insert(zstd::bulk::Decompressor::new().map_err(|e| DecompressError::Corrupt(e.to_string()))?)
                }
            };
            Ok::<_, DecompressError>(dctx.decompress_to_buffer(input, &mut out))
        })?;
        match done {
            Ok(_) => return Ok(out),
            // Several frames whose total passes the first one's size: decode as a stream,
            // giving back what was held for the one-call buffer first.
            Err(e) if e.to_string().contains("too small") => {
                drop(out);
                permit.shrink_to(held);
            }
            Err(e) => return Err(DecompressError::Corrupt(e.to_string())),
        }
    }
    let mut d = zstd::stream::read::Decoder::with_buffer(input).map_err(|e| DecompressError::Corrupt(e.to_string()))?;
    // The streaming decoder allocates a window of the size the frame declares (up to 128 MiB
    // by default), outside the memory budget; cap it. Telemetry SDKs compress with levels
    // whose window is 2-8 MiB.
    d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| DecompressError::Corrupt(e.to_string()))?;
    read_bounded(d, None, limit, permit).map_err(|e| match e {
        DecompressError::Corrupt(m) if m.contains("too much memory") => DecompressError::Corrupt(format!(
            "zstd frame needs a window over {} MiB ({m}); compress with a smaller window",
            (1usize << ZSTD_WINDOW_LOG_MAX) >> 20
        )),
        e => e,
    })
}

/// Reads `r` to its end into one buffer, first sized `hint` (clamped to `limit + 1`, enough
/// to detect "too large") when given, then doubled; each growth is held against the budget
/// before it is allocated, and each byte of the buffer is zeroed once.
fn read_bounded(
    mut r: impl Read,
    hint: Option<usize>,
    limit: usize,
    permit: &mut MemoryPermit,
) -> Result<Vec<u8>, DecompressError> {
    let mut out: Vec<u8> = Vec::new();
    // `out[..filled]` is output; `out[filled..]` is zeroed room for the next read.
    let mut filled = 0usize;
    // One byte past the hint: room for the read that finds the end, without growing.
    let mut first = hint.map(|h| h.saturating_add(1).min(limit + 1));
    loop {
        if filled == out.len() {
            let room_to_limit = (limit + 1).saturating_sub(out.len()).max(1);
            let grow = first.take().unwrap_or_else(|| out.len().max(CHUNK)).min(room_to_limit);
            if !permit.try_grow(grow) {
                return Err(DecompressError::OverBudget);
            }
            out.reserve_exact(grow);
            out.resize(out.len() + grow, 0);
        }
        match r.read(&mut out[filled..]) {
            Ok(0) => {
                out.truncate(filled);
                return Ok(out);
            }
            Ok(n) => filled += n,
            Err(e) => return Err(DecompressError::Corrupt(e.to_string())),
        }
        if filled > limit {
            return Err(DecompressError::TooLarge { limit });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_core::MemoryBudget;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn all_encodings_round_trip() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let budget = MemoryBudget::new(10 << 20);
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zl.write_all(&data).unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&data).unwrap();
        let mut framed = snap::write::FrameEncoder::new(Vec::new());
        framed.write_all(&data).unwrap();
        let cases = [
            (Encoding::Gzip, gzip(&data)),
            (Encoding::Zstd, zstd::encode_all(&data[..], 3).unwrap()),
            (Encoding::Deflate, zl.finish().unwrap()),
            (Encoding::Deflate, raw.finish().unwrap()),
            (Encoding::Snappy, snap::raw::Encoder::new().compress_vec(&data).unwrap()),
            (Encoding::Snappy, framed.into_inner().unwrap()),
        ];
        for (enc, input) in cases {
            let mut p = budget.try_acquire(input.len()).unwrap();
            let out = decompress(enc, &input, 1 << 20, &mut p).unwrap();
            assert_eq!(out, data, "{enc:?}");
        }
        assert_eq!(budget.in_use(), 0);
    }

    /// A gzip bomb (100 MiB of zeros in ~100 KiB) is refused at the limit without allocating
    /// its expanded size.
    #[test]
    fn bomb_is_refused_at_the_limit() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..100 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        let budget = MemoryBudget::new(64 << 20);
        let mut p = budget.try_acquire(bomb.len()).unwrap();
        let err = decompress(Encoding::Gzip, &bomb, 4 << 20, &mut p).unwrap_err();
        assert_eq!(err, DecompressError::TooLarge { limit: 4 << 20 });
        assert!(p.bytes() < 10 << 20, "held {} bytes", p.bytes());
        // With a budget smaller than the limit, the budget refuses first.
        let small = MemoryBudget::new(1 << 20);
        let mut p = small.try_acquire(bomb.len().min(1 << 19)).unwrap();
        assert_eq!(decompress(Encoding::Gzip, &bomb, 4 << 20, &mut p).unwrap_err(), DecompressError::OverBudget);
    }

    /// Fuzzing regression (fuzz target `decompress`, round trip): `snap`'s frame encoder
    /// writes nothing at all for an empty request (no stream identifier), and that empty body
    /// was refused as corrupt snappy. gzip, zstd and deflate encoders always write a header,
    /// so an empty body stays an error there.
    #[test]
    fn empty_snappy_body_is_an_empty_request() {
        let budget = MemoryBudget::new(1 << 20);
        let mut framed = snap::write::FrameEncoder::new(Vec::new());
        framed.write_all(b"").unwrap();
        let framed = framed.into_inner().unwrap();
        assert!(framed.is_empty());
        let mut p = budget.try_acquire(1).unwrap();
        assert_eq!(decompress(Encoding::Snappy, &framed, 1 << 20, &mut p), Ok(Vec::new()));
        for enc in [Encoding::Gzip, Encoding::Zstd, Encoding::Deflate] {
            assert!(matches!(decompress(enc, b"", 1 << 20, &mut p), Err(DecompressError::Corrupt(_))), "{enc:?}");
        }
    }

    /// A zstd frame that declares a window over 16 MiB is refused (the decoder would allocate
    /// it outside the budget), with a message that says so; 16 MiB itself is accepted.
    #[test]
    fn zstd_window_is_capped() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let frame = |window_log: u32| {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            e.window_log(window_log).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let budget = MemoryBudget::new(10 << 20);
        let mut p = budget.try_acquire(1).unwrap();
        assert_eq!(decompress(Encoding::Zstd, &frame(ZSTD_WINDOW_LOG_MAX), 1 << 20, &mut p).unwrap(), data);
        let err = decompress(Encoding::Zstd, &frame(ZSTD_WINDOW_LOG_MAX + 2), 1 << 20, &mut p).unwrap_err();
        match err {
            DecompressError::Corrupt(m) => assert!(m.contains("window over 16 MiB"), "{m}"),
            e => panic!("{e:?}"),
        }
    }

    /// The output is sized from the stream's declared size: one allocation, never grown (the
    /// budget is grown once, by the declared size and the byte that finds the end).
    #[test]
    fn declared_size_is_one_allocation() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 ^ (i / 7) as u8).collect();
        let budget = MemoryBudget::new(10 << 20);
        let gz = gzip(&data);
        let mut p = budget.try_acquire(gz.len()).unwrap();
        let out = decompress(Encoding::Gzip, &gz, 1 << 20, &mut p).unwrap();
        assert_eq!(out, data);
        assert_eq!(out.capacity(), data.len() + 1);
        assert_eq!(p.bytes(), gz.len() + data.len() + 1);
        let zs = zstd::bulk::compress(&data, 3).unwrap();
        let mut p = budget.try_acquire(zs.len()).unwrap();
        let out = decompress(Encoding::Zstd, &zs, 1 << 20, &mut p).unwrap();
        assert_eq!(out, data);
        assert_eq!(p.bytes(), zs.len() + data.len());
    }

    /// What the declared sizes do not cover still decodes in full: gzip members after the
    /// first, a trailer that lies, zstd frames after the first.
    #[test]
    fn several_members_frames_and_forged_sizes_decode_in_full() {
        let a: Vec<u8> = (0..100_000u32).map(|i| (i % 13) as u8).collect();
        let b: Vec<u8> = (0..70_000u32).map(|i| (i % 17) as u8).collect();
        let whole: Vec<u8> = [a.clone(), b.clone()].concat();
        let budget = MemoryBudget::new(10 << 20);
        let members = [gzip(&a), gzip(&b)].concat();
        let mut p = budget.try_acquire(1).unwrap();
        assert_eq!(decompress(Encoding::Gzip, &members, 1 << 20, &mut p).unwrap(), whole);
        // A trailer claiming a size near `limit` (believed only up to 32x the body), and one
        // claiming 1 byte: both decode (the CRC check happens in the decoder; the ISIZE check
        // refuses the forged one as corrupt, as before).
        for claim in [1u32, 1 << 20] {
            let mut forged = gzip(&a);
            let n = forged.len();
            forged[n - 4..].copy_from_slice(&claim.to_le_bytes());
            let mut p = budget.try_acquire(1).unwrap();
            assert!(matches!(decompress(Encoding::Gzip, &forged, 1 << 20, &mut p), Err(DecompressError::Corrupt(_))));
            assert!(p.bytes() < 600 << 10, "held {}", p.bytes());
        }
        let frames = [zstd::bulk::compress(&a, 3).unwrap(), zstd::bulk::compress(&b, 3).unwrap()].concat();
        let mut p = budget.try_acquire(1).unwrap();
        assert_eq!(decompress(Encoding::Zstd, &frames, 1 << 20, &mut p).unwrap(), whole);
        // The one-call buffer sized for the first frame was given back before the stream
        // decode grew its own (64 + 64 + 128 KiB for 170,000 bytes).
        assert_eq!(p.bytes(), 1 + (256 << 10));
    }

    /// A zstd frame that declares more than the limit is refused before anything is allocated.
    #[test]
    fn zstd_declared_size_over_the_limit_is_refused_up_front() {
        let zeros = vec![0u8; 8 << 20];
        let bomb = zstd::bulk::compress(&zeros, 3).unwrap();
        assert!(bomb.len() < 4096);
        let budget = MemoryBudget::new(64 << 20);
        let mut p = budget.try_acquire(bomb.len()).unwrap();
        assert_eq!(
            decompress(Encoding::Zstd, &bomb, 4 << 20, &mut p).unwrap_err(),
            DecompressError::TooLarge { limit: 4 << 20 }
        );
        assert_eq!(p.bytes(), bomb.len());
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let budget = MemoryBudget::new(1 << 20);
        for enc in [Encoding::Gzip, Encoding::Zstd, Encoding::Deflate, Encoding::Snappy] {
            let mut p = budget.try_acquire(1).unwrap();
            assert!(
                matches!(decompress(enc, b"not compressed at all", 1 << 20, &mut p), Err(DecompressError::Corrupt(_))),
                "{enc:?}"
            );
        }
    }
}
