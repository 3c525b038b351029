//! The collector's `sticky_key` hashers: which partition a keyed message goes to, so that
//! Sightline and collectors writing one topic put the same key (a trace id, a resource) in the
//! same partition.

use crate::config::Hasher;

/// The partition of `key` among `n` (n > 0).
pub fn of_key(hasher: Hasher, key: &[u8], n: i32) -> i32 {
    if n <= 0 {
        return 0;
    }
    match hasher {
        Hasher::SaramaCompat => {
            // FNV-1a 32, read as a signed integer; Go's remainder keeps the dividend's sign,
            // and a negative result is negated.
            let h = fnv1a32(key) as i32;
            let p = h.wrapping_rem(n);
            if p < 0 { -p } else { p }
        }
        Hasher::Murmur2 => ((murmur2(key) & 0x7fff_ffff) as i32) % n,
    }
}

pub fn fnv1a32(key: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in key {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`, seed 0x9747b28c).
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's UtilsTest.testMurmur2 (the Java client's partitioner hash).
        let cases: [(&[u8], i32); 4] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
        ];
        for (k, want) in cases {
            assert_eq!(murmur2(k) as i32, want, "{}", String::from_utf8_lossy(k));
        }
    }

    #[test]
    fn sarama_compat_takes_the_signed_remainder() {
        // FNV-1a 32 of "" is 0x811c9dc5 = 2166136261, negative as i32 (-2128831035):
        // |-2128831035 % 3| = 0, where librdkafka's unsigned remainder gives 2166136261 % 3 = 1.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(of_key(Hasher::SaramaCompat, b"", 3), 0);
        assert_eq!(2_166_136_261u32 % 3, 1);
        for n in 1..20 {
            for k in [&b"a"[..], b"0af7651916cd43dd8448eb211c80319c", b"xyz"] {
                let p = of_key(Hasher::SaramaCompat, k, n);
                assert!((0..n).contains(&p));
                let q = of_key(Hasher::Murmur2, k, n);
                assert!((0..n).contains(&q));
            }
        }
    }
}
