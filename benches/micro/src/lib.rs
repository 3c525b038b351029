//! Fixtures for Sightline's micro-benchmarks (`benches/hot_path.rs`) and the allocation test
//! (`tests/allocations.rs`):
//!
//! - [`requests`]: realistic OTLP export requests built with the `opentelemetry-proto` prost
//!   types (traces, logs, metrics; a small and a large item size), deterministic for a seed;
//! - [`catalog`]: a generated ownership catalog (one YAML file per team, in the format of
//!   `config/catalog/payments.yaml`) loaded through [`sightline_ownership::CatalogHandle`],
//!   and the `ownership` processor over it.
//!
//! The request's resources are named after the catalog, so that enrichment takes each of its
//! three resolution paths: an exact service entry, a rule, and the default team.

pub mod catalog;
pub mod requests;

/// A small deterministic PRNG (SplitMix64): the fixtures must be the same on every run.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `n` random bytes (ids).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// `n` lowercase hex digits.
    pub fn hex(&mut self, n: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        (0..n).map(|_| DIGITS[self.below(16) as usize] as char).collect()
    }
}
