//! ClickHouse's native compressed-block framing, what the HTTP interface reads with
//! `decompress=1`: each block is a 16-byte checksum (CityHash128 v1.0.2 of the rest of the
//! block, low half first, each half little-endian), a method byte (0x82 LZ4, 0x90 ZSTD), the
//! block's size without the checksum (u32 LE, the 9-byte header included), the size of the
//! data it holds (u32 LE), then the compressed data (a raw LZ4 block, or one zstd frame).

/// Data per block: ClickHouse's own writers use 1 MiB (`max_compress_block_size`).
pub const BLOCK_SIZE: usize = 1 << 20;

const HEADER: usize = 9;
const CHECKSUM: usize = 16;

/// The compression method of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Lz4,
    /// ZSTD at this level.
    Zstd(i32),
}

impl Method {
    fn byte(self) -> u8 {
        match self {
            Method::Lz4 => 0x82,
            Method::Zstd(_) => 0x90,
        }
    }
}

/// Appends `data` to `out` as compressed blocks of at most [`BLOCK_SIZE`] bytes of data each.
pub fn compress_into(method: Method, data: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    for chunk in data.chunks(BLOCK_SIZE) {
        let start = out.len();
        out.resize(start + CHECKSUM + HEADER, 0);
        let written = match method {
            Method::Lz4 => {
                let max = lz4::block::compress_bound(chunk.len())?;
                out.resize(start + CHECKSUM + HEADER + max, 0);
                // A raw block (no size prefix) at the default level, as ClickHouse writes.
                lz4::block::compress_to_buffer(chunk, None, false, &mut out[start + CHECKSUM + HEADER..])?
            }
            Method::Zstd(level) => {
                let before = out.len();
                let mut tail = std::mem::take(out);
                let res = zstd::stream::copy_encode(chunk, &mut tail, level);
                *out = tail;
                res?;
                out.len() - before
            }
        };
        out.truncate(start + CHECKSUM + HEADER + written);
        let compressed = u32::try_from(HEADER + written).map_err(|_| std::io::Error::other("block too large"))?;
        let raw = u32::try_from(chunk.len()).map_err(|_| std::io::Error::other("block too large"))?;
        let h = &mut out[start + CHECKSUM..start + CHECKSUM + HEADER];
        h[0] = method.byte();
        h[1..5].copy_from_slice(&compressed.to_le_bytes());
        h[5..9].copy_from_slice(&raw.to_le_bytes());
        let sum = checksum(&out[start + CHECKSUM..]);
        out[start..start + CHECKSUM].copy_from_slice(&sum);
    }
    Ok(())
}

/// CityHash128 v1.0.2 of `b`, as ClickHouse writes it: the low 64 bits then the high 64
/// bits, each little-endian. (`cityhash_102_128` returns the halves swapped.)
pub fn checksum(b: &[u8]) -> [u8; 16] {
    cityhash_rs::cityhash_102_128(b).rotate_right(64).to_le_bytes()
}

/// Reads blocks back (tests and fuzzing): the data, or what is wrong with the framing.
pub fn decompress(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < CHECKSUM + HEADER {
            return Err("truncated block header".into());
        }
        let size = u32::from_le_bytes([b[17], b[18], b[19], b[20]]) as usize;
        let raw = u32::from_le_bytes([b[21], b[22], b[23], b[24]]) as usize;
        if size < HEADER || b.len() < CHECKSUM + size {
            return Err("truncated block".into());
        }
        if checksum(&b[CHECKSUM..CHECKSUM + size]) != b[..CHECKSUM] {
            return Err("checksum mismatch".into());
        }
        let payload = &b[CHECKSUM + HEADER..CHECKSUM + size];
        match b[16] {
            0x82 => {
                let start = out.len();
                out.resize(start + raw, 0);
                let n = lz4_flex::block::decompress_into(payload, &mut out[start..]).map_err(|e| e.to_string())?;
                if n != raw {
                    return Err("lz4 block shorter than its header says".into());
                }
            }
            0x90 => out.extend(zstd::stream::decode_all(payload).map_err(|e| e.to_string())?),
            0x02 => out.extend_from_slice(payload),
            m => return Err(format!("unknown method 0x{m:02x}")),
        }
        b = &b[CHECKSUM + size..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    #[test]
    fn known_answers_of_clickhouse_framing() {
        // The input and block of clickhouse-rs's compression test (a RowBinary row), also
        // produced by ClickHouse's own tools.
        let data = hex("010002ffffffff000101017306537472696e6703616263");
        let mut out = Vec::new();
        compress_into(Method::Lz4, &data, &mut out).expect("compress");
        let want =
            "f505deebe19e3b6ce11f41d74242245c 82 22000000 17000000 f008 010002ffffffff000101017306537472696e6703616263";
        assert_eq!(out, hex(&want.replace(' ', "")));
        let mut hello = Vec::new();
        compress_into(Method::Lz4, b"hello", &mut hello).expect("compress");
        assert_eq!(hello, hex("af275049b207be89c341c7641de55441820f000000050000005068656c6c6f"));
    }

    #[test]
    fn large_bodies_round_trip_in_several_blocks() {
        let data: Vec<u8> = (0..(BLOCK_SIZE * 2 + 12_345)).map(|i| (i % 251) as u8 ^ (i / 7919) as u8).collect();
        for m in [Method::Lz4, Method::Zstd(1)] {
            let mut out = Vec::new();
            compress_into(m, &data, &mut out).expect("compress");
            assert_eq!(decompress(&out).expect("decompress"), data, "{m:?}");
        }
        let mut out = Vec::new();
        compress_into(Method::Lz4, &data, &mut out).expect("compress");
        out[40] ^= 1;
        assert_eq!(decompress(&out).unwrap_err(), "checksum mismatch");
    }
}
