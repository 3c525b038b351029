//! Whole-batch compression for the exporters (ADR 13): gzip with libdeflate, zstd with a
//! reused context, at the level `compression_params.level` chooses.
//!
//! A batch is already in memory, so there is nothing to stream: each send compresses the whole
//! batch in one call. Compressor contexts are kept in a small pool per exporter (one per
//! concurrent send at most), so that no context is allocated per request; a batch of several
//! chunks is gathered into a reused scratch buffer first (libdeflate and zstd's one-shot API
//! take one slice), and the output is the one allocation per batch, which becomes the request
//! body.

use crate::Compression;
use bytes::Bytes;
use serde::Deserialize;
use sightline_core::{Batch, EncodingKey};
use std::sync::{Mutex, PoisonError};

/// The gRPC message header: the compressed flag and the big-endian length.
pub const GRPC_HEADER: usize = 5;

/// Default gzip level: libdeflate's level 1. On the benchmark corpus it is about 8x the
/// speed of level 6 and its output is within 1.1x of level 6's (ADR 13).
pub const DEFAULT_GZIP_LEVEL: i32 = 1;
/// Default zstd level: 1 (about 1.6x the speed of level 3 for 4% more bytes, ADR 13).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// `compression_params`, as in the collector's `configgrpc` / `confighttp`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CompressionParams {
    /// gzip: 1 (fastest) to 9 (smallest), default 1. zstd: 1 to 22 (or a negative fast level
    /// down to -7), default 1. Not allowed without compression.
    #[serde(default)]
    pub level: Option<i32>,
}

impl CompressionParams {
    /// The level in use for `compression`.
    pub fn level(&self, compression: Compression) -> i32 {
        match compression {
            Compression::Gzip => self.level.unwrap_or(DEFAULT_GZIP_LEVEL),
            Compression::Zstd => self.level.unwrap_or(DEFAULT_ZSTD_LEVEL),
            Compression::None => 0,
        }
    }

    /// Checks the level against the algorithm (keys relative to the exporter).
    pub fn validate(&self, compression: Compression, out: &mut Vec<(String, String)>) {
        let Some(level) = self.level else { return };
        let key = "compression_params.level";
        match compression {
            Compression::Gzip if !(1..=9).contains(&level) => {
                out.push((key.into(), format!("{level}: gzip levels are 1 (fastest) to 9 (smallest)")))
            }
            Compression::Zstd if !(-7..=22).contains(&level) || level == 0 => {
                out.push((key.into(), format!("{level}: zstd levels are 1 to 22, or -7 to -1 (faster)")))
            }
            Compression::None => {
                out.push((key.into(), "set without compression: choose `compression: gzip` or `zstd`".into()))
            }
            _ => {}
        }
    }
}

/// One context: the compressor of the algorithm and a scratch buffer for the gathered input.
enum Context {
    Gzip(libdeflater::Compressor),
    Zstd(Box<zstd::bulk::Compressor<'static>>),
}

/// Compresses whole batches with one algorithm and level; shared by an exporter's sends.
pub struct Compressor {
    compression: Compression,
    level: i32,
    pool: Mutex<Vec<(Context, Vec<u8>)>>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").field("compression", &self.compression).field("level", &self.level).finish()
    }
}

/// Contexts kept per exporter beyond what concurrent sends need at once.
const POOL_LIMIT: usize = 16;

impl Compressor {
    /// A compressor for `compression` at `params`' level (already validated).
    pub fn new(compression: Compression, params: CompressionParams) -> Compressor {
        Compressor { compression, level: params.level(compression), pool: Mutex::new(Vec::new()) }
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    pub fn level(&self) -> i32 {
        self.level
    }

    fn context(&self) -> std::io::Result<(Context, Vec<u8>)> {
        if let Some(c) = self.pool.lock().unwrap_or_else(PoisonError::into_inner).pop() {
            return Ok(c);
        }
        let ctx = match self.compression {
            Compression::Gzip => {
                let lvl = libdeflater::CompressionLvl::new(self.level)
                    .map_err(|_| std::io::Error::other(format!("invalid gzip level {}", self.level)))?;
                Context::Gzip(libdeflater::Compressor::new(lvl))
            }
            Compression::Zstd => Context::Zstd(Box::new(zstd::bulk::Compressor::new(self.level)?)),
            Compression::None => return Err(std::io::Error::other("no compression configured")),
        };
        Ok((ctx, Vec::new()))
    }

    /// Compresses the concatenation of `chunks` (`size` bytes in all) into `out`, after
    /// `out`'s current content (e.g. a gRPC message header reserved by the caller).
    pub fn compress_into<'a>(
        &self,
        chunks: impl Iterator<Item = &'a [u8]>,
        size: usize,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let (mut ctx, mut scratch) = self.context()?;
        // One chunk (a batch of one request, a JSON body) is compressed where it is; several
        // are gathered into the scratch buffer first.
        let mut chunks = chunks;
        let first = chunks.next().unwrap_or(&[]);
        let input: &[u8] = match chunks.next() {
            None => first,
            Some(second) => {
                scratch.clear();
                scratch.reserve(size);
                scratch.extend_from_slice(first);
                scratch.extend_from_slice(second);
                for c in chunks {
                    scratch.extend_from_slice(c);
                }
                &scratch
            }
        };
        let start = out.len();
        let result = match &mut ctx {
            Context::Gzip(c) => {
                out.resize(start + c.gzip_compress_bound(input.len()), 0);
                c.gzip_compress(input, &mut out[start..]).map_err(|e| std::io::Error::other(format!("gzip: {e:?}")))
            }
            Context::Zstd(c) => {
                out.resize(start + zstd::zstd_safe::compress_bound(input.len()), 0);
                c.compress_to_buffer(input, &mut out[start..])
            }
        };
        match result {
            Ok(n) => out.truncate(start + n),
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
        // Keep the scratch buffer for the next batch unless it is far larger than usual.
        if scratch.capacity() > (64 << 20) {
            scratch = Vec::new();
        }
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_LIMIT {
            pool.push((ctx, scratch));
        }
        Ok(())
    }

    /// A batch's compressed request as a gRPC message (the compressed flag, the big-endian
    /// length, then the compressed batch), computed once per fan-out: every exporter that
    /// compresses the same batch with the same algorithm and level gets these bytes
    /// ([`Batch::encode_shared`]). `otlp` sends them as they are; `otlphttp` sends
    /// `[GRPC_HEADER..]` of them.
    pub fn compress_batch_shared(&self, batch: &Batch) -> std::io::Result<Bytes> {
        let key = EncodingKey { name: self.compression.as_str(), param: self.level };
        batch.encode_shared(key, |batch| {
            let mut out = Vec::with_capacity(GRPC_HEADER + batch.bytes / 4 + 64);
            out.extend_from_slice(&[1, 0, 0, 0, 0]);
            self.compress_into(batch.chunks().map(|c| &c[..]), batch.bytes, &mut out)?;
            let len = u32::try_from(out.len() - GRPC_HEADER)
                .map_err(|_| std::io::Error::other(format!("compressed batch of {} bytes is too large", out.len())))?;
            out[1..GRPC_HEADER].copy_from_slice(&len.to_be_bytes());
            Ok(Bytes::from(out))
        })
    }

    /// The compressed concatenation of `chunks`.
    pub fn compress<'a>(&self, chunks: impl Iterator<Item = &'a [u8]>, size: usize) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.compress_into(chunks, size, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn round_trips_at_every_level() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let chunks = || data.chunks(7_000);
        for level in 1..=9 {
            let c = Compressor::new(Compression::Gzip, CompressionParams { level: Some(level) });
            for _ in 0..2 {
                // The second round uses the pooled context.
                let gz = c.compress(chunks(), data.len()).expect("gzip");
                let mut back = Vec::new();
                flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).expect("gunzip");
                assert!(back == data, "gzip level {level}");
            }
        }
        for level in [-7, -1, 1, 3, 19] {
            let c = Compressor::new(Compression::Zstd, CompressionParams { level: Some(level) });
            let mut out = vec![1, 2, 3];
            c.compress_into(chunks(), data.len(), &mut out).expect("zstd");
            assert_eq!(&out[..3], [1, 2, 3], "the prefix is kept");
            assert!(zstd::decode_all(&out[3..]).expect("unzstd") == data, "zstd level {level}");
        }
        // One chunk is compressed in place; no chunk at all is a valid empty stream.
        let c = Compressor::new(Compression::Gzip, CompressionParams::default());
        let gz = c.compress(std::iter::once(&data[..]), data.len()).expect("gzip");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).expect("gunzip");
        assert!(back == data, "one chunk");
        let gz = c.compress(std::iter::empty(), 0).expect("gzip");
        back.clear();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).expect("gunzip");
        assert!(back.is_empty());
        assert_eq!(c.level(), DEFAULT_GZIP_LEVEL);
    }

    #[test]
    fn validate_checks_levels_per_algorithm() {
        let check = |c, level| {
            let mut out = Vec::new();
            CompressionParams { level: Some(level) }.validate(c, &mut out);
            out.into_iter().map(|(k, m)| format!("{k}: {m}")).collect::<Vec<_>>()
        };
        assert!(check(Compression::Gzip, 1).is_empty());
        assert!(check(Compression::Gzip, 9).is_empty());
        assert!(check(Compression::Gzip, 0)[0].contains("gzip levels are 1"));
        assert!(check(Compression::Gzip, 10)[0].contains("gzip levels are 1"));
        assert!(check(Compression::Zstd, 22).is_empty());
        assert!(check(Compression::Zstd, -7).is_empty());
        assert!(check(Compression::Zstd, 0)[0].contains("zstd levels"));
        assert!(check(Compression::Zstd, 23)[0].contains("zstd levels"));
        assert!(check(Compression::None, 1)[0].contains("without compression"));
        let mut out = Vec::new();
        CompressionParams::default().validate(Compression::None, &mut out);
        assert!(out.is_empty());
    }
}
