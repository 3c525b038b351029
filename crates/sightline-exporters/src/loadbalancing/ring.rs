//! The consistent-hash ring of the collector's `loadbalancingexporter`, reproduced position for
//! position so that a mixed fleet (collector agents and Sightline agents in front of one gateway
//! pool) sends each trace to the same gateway.
//!
//! The ring has [`POSITIONS`] slots. Each endpoint claims [`POINTS_PER_ENDPOINT`] of them: point
//! `i` is the CRC-32 (IEEE) of the endpoint's name followed by `i` as four little-endian bytes,
//! modulo [`POSITIONS`]. Candidates are placed in the order (position, hash, endpoint); a slot
//! already taken moves the candidate to the next slot, at most [`MAX_PROBES`] times, after which
//! the point is left out. A key is looked up as the CRC-32 of its bytes modulo [`POSITIONS`]:
//! the first ring item at or after that position, wrapping around to the first.

/// Slots on the ring.
pub const POSITIONS: u32 = 131_071;
/// Points each endpoint claims.
pub const POINTS_PER_ENDPOINT: u32 = 200;
/// How many following slots a colliding point may try.
pub const MAX_PROBES: u32 = 10;

/// A ring over a set of endpoints, referred to by their index in [`Ring::endpoints`].
#[derive(Debug, Clone)]
pub struct Ring {
    /// (position, endpoint index), sorted by position; positions are unique.
    items: Vec<(u32, u32)>,
    endpoints: Vec<String>,
}

/// The ring position of a key.
pub fn position(key: &[u8]) -> u32 {
    crc32fast::hash(key) % POSITIONS
}

/// The ring position of the key made of `parts` one after the other (without building it).
pub fn position_of_parts(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize() % POSITIONS
}

impl Ring {
    /// The ring of `endpoints` (names as the resolver gives them, e.g. `10.0.0.1:4317`);
    /// duplicates are ignored. Endpoints are sorted first, so the order given does not matter.
    pub fn new(endpoints: &[String]) -> Ring {
        let mut endpoints: Vec<String> = endpoints.to_vec();
        endpoints.sort();
        endpoints.dedup();
        // (position, hash, endpoint index) for every point.
        let mut candidates: Vec<(u32, u32, u32)> = Vec::with_capacity(endpoints.len() * POINTS_PER_ENDPOINT as usize);
        for (e, name) in endpoints.iter().enumerate() {
            for i in 0..POINTS_PER_ENDPOINT {
                let mut h = crc32fast::Hasher::new();
                h.update(name.as_bytes());
                h.update(&i.to_le_bytes());
                let hash = h.finalize();
                candidates.push((hash % POSITIONS, hash, e as u32));
            }
        }
        candidates.sort_by(|a, b| {
            (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| endpoints[a.2 as usize].cmp(&endpoints[b.2 as usize]))
        });
        let mut taken = std::collections::HashSet::with_capacity(candidates.len());
        let mut items = Vec::with_capacity(candidates.len());
        for (pos, _, e) in candidates {
            for probe in 0..=MAX_PROBES {
                let p = (pos + probe) % POSITIONS;
                if taken.insert(p) {
                    items.push((p, e));
                    break;
                }
            }
        }
        items.sort_unstable();
        Ring { items, endpoints }
    }

    /// The endpoints, sorted; indices returned by lookups refer to this list.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The index of the first ring item at or after `pos` (wrapping).
    fn first_at(&self, pos: u32) -> usize {
        let i = self.items.partition_point(|&(p, _)| p < pos);
        if i == self.items.len() { 0 } else { i }
    }

    /// The endpoint that owns `key`, or `None` for an empty ring.
    pub fn lookup(&self, key: &[u8]) -> Option<usize> {
        self.lookup_position(position(key))
    }

    /// The endpoint that owns ring position `pos`.
    pub fn lookup_position(&self, pos: u32) -> Option<usize> {
        if self.items.is_empty() {
            return None;
        }
        Some(self.items[self.first_at(pos)].1 as usize)
    }

    /// The owner of `pos` among the endpoints not `excluded`: walking the ring from `pos`, the
    /// first item of an endpoint still in service (the "next ring member" a failed endpoint's
    /// data goes to). `None` when every endpoint is excluded.
    pub fn lookup_position_excluding(&self, pos: u32, excluded: &[bool]) -> Option<usize> {
        if self.items.is_empty() {
            return None;
        }
        let start = self.first_at(pos);
        let n = self.items.len();
        (0..n).map(|k| self.items[(start + k) % n].1 as usize).find(|&e| !excluded.get(e).copied().unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:4317", i + 1)).collect()
    }

    #[test]
    fn every_endpoint_gets_its_points_and_positions_are_unique() {
        let r = Ring::new(&eps(5));
        assert!(r.items.len() <= 5 * POINTS_PER_ENDPOINT as usize);
        assert!(r.items.len() >= 5 * POINTS_PER_ENDPOINT as usize - 5, "few collisions expected");
        assert!(r.items.windows(2).all(|w| w[0].0 < w[1].0));
        for e in 0..5 {
            assert!(r.items.iter().filter(|i| i.1 as usize == e).count() > 190);
        }
    }

    #[test]
    fn order_of_endpoints_does_not_matter() {
        let mut a = eps(4);
        let r1 = Ring::new(&a);
        a.reverse();
        let r2 = Ring::new(&a);
        assert_eq!(r1.items, r2.items);
        assert_eq!(r1.endpoints, r2.endpoints);
    }

    #[test]
    fn keys_spread_and_move_little_when_an_endpoint_leaves() {
        let r4 = Ring::new(&eps(4));
        let r3 = Ring::new(&eps(3));
        let mut counts = [0usize; 4];
        let mut moved = 0;
        for k in 0u64..20_000 {
            let key = k.to_le_bytes();
            let a = r4.lookup(&key).unwrap();
            counts[a] += 1;
            let b = r3.lookup(&key).unwrap();
            if r4.endpoints()[a] != r3.endpoints()[b] {
                moved += 1;
                // Only keys of the endpoint that left move.
                assert_eq!(r4.endpoints()[a], "10.0.0.4:4317");
            }
        }
        assert!(counts.iter().all(|&c| c > 2_500), "{counts:?}");
        assert_eq!(moved, counts[3]);
    }

    #[test]
    fn excluding_an_endpoint_picks_the_next_member() {
        let r = Ring::new(&eps(3));
        let mut excluded = vec![false; 3];
        for k in 0u32..2_000 {
            let pos = position(&k.to_le_bytes());
            let owner = r.lookup_position(pos).unwrap();
            excluded[owner] = true;
            let next = r.lookup_position_excluding(pos, &excluded).unwrap();
            assert_ne!(next, owner);
            excluded[owner] = false;
        }
        assert_eq!(r.lookup_position_excluding(7, &[true, true, true]), None);
        assert_eq!(Ring::new(&[]).lookup(b"x"), None);
    }

    #[test]
    fn lookup_wraps_past_the_last_item() {
        let r = Ring::new(&eps(2));
        let last = r.items.last().unwrap().0;
        assert_eq!(r.lookup_position(last + 1), Some(r.items[0].1 as usize));
    }
}
