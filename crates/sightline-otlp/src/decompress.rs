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

/// The largest zstd window accepted: 2^24 = 16 MiB (zstd's level 19 uses 8 MiB; only the
/// "ultra" levels and `--long` go past it).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Decompresses `input`, holding the output's size against `permit` (grown as output is
/// produced) and refusing output past `limit` bytes.
pub fn decompress(
    enc: Encoding,
    input: &[u8],
    limit: usize,
    permit: &mut MemoryPermit,
) -> Result<Vec<u8>, DecompressError> {
    match enc {
        Encoding::Identity => Ok(input.to_vec()),
        Encoding::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), limit, permit),
        Encoding::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(input).map_err(|e| DecompressError::Corrupt(e.to_string()))?;
            // The decoder allocates a window of the size the frame declares (up to 128 MiB by
            // default), outside the memory budget; cap it. Telemetry SDKs compress with levels
            // whose window is 2-8 MiB.
            d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| DecompressError::Corrupt(e.to_string()))?;
            read_bounded(d, limit, permit).map_err(|e| match e {
                DecompressError::Corrupt(m) if m.contains("too much memory") => DecompressError::Corrupt(format!(
                    "zstd frame needs a window over {} MiB ({m}); compress with a smaller window",
                    (1usize << ZSTD_WINDOW_LOG_MAX) >> 20
                )),
                e => e,
            })
        }
        Encoding::Deflate => {
            // zlib-wrapped per RFC 9110; some clients send raw deflate.
            if input.len() >= 2 && (u16::from(input[0]) << 8 | u16::from(input[1])) % 31 == 0 && input[0] & 0x0f == 8 {
                read_bounded(flate2::read::ZlibDecoder::new(input), limit, permit)
            } else {
                read_bounded(flate2::read::DeflateDecoder::new(input), limit, permit)
            }
        }
        Encoding::Snappy => {
            const FRAMED: &[u8] = b"\xff\x06\x00\x00sNaPpY";
            if input.is_empty() {
                // What a frame encoder writes for an empty request: not even the stream
                // identifier (found by fuzzing; see the test below).
                Ok(Vec::new())
            } else if input.starts_with(FRAMED) {
                read_bounded(snap::read::FrameDecoder::new(input), limit, permit)
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

fn read_bounded(mut r: impl Read, limit: usize, permit: &mut MemoryPermit) -> Result<Vec<u8>, DecompressError> {
    let mut out: Vec<u8> = Vec::new();
    loop {
        if out.len() == out.capacity() {
            // Double, but never past one byte beyond the limit (enough to detect "too large"),
            // and hold the new room against the budget before allocating it.
            let room_to_limit = (limit + 1).saturating_sub(out.len()).max(1);
            let grow = out.capacity().max(CHUNK).min(room_to_limit);
            if !permit.try_grow(grow) {
                return Err(DecompressError::OverBudget);
            }
            out.reserve_exact(grow);
        }
        let start = out.len();
        out.resize(out.capacity(), 0);
        match r.read(&mut out[start..]) {
            Ok(0) => {
                out.truncate(start);
                return Ok(out);
            }
            Ok(n) => out.truncate(start + n),
            Err(e) => return Err(DecompressError::Corrupt(e.to_string())),
        }
        if out.len() > limit {
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
