//! The sensitive-data detectors of `sightline-policy`: finding and masking never panic, and
//! for any UTF-8 input the matches are sorted, do not overlap, lie on character boundaries, and
//! masking changes exactly the matched characters (each to `*`), the rest left as it was.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline_policy::detect::{Detectors, Kind, mask};
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static D: OnceLock<Detectors> = OnceLock::new();
    let d = D.get_or_init(|| Detectors::new(&Kind::ALL));
    let s = String::from_utf8_lossy(data);
    let mut found = Vec::new();
    d.find(&s, &mut found);
    let mut end = 0;
    for m in &found {
        assert!(m.start >= end && m.start < m.end && m.end <= s.len(), "{found:?}");
        assert!(s.is_char_boundary(m.start) && s.is_char_boundary(m.end));
        end = m.end;
    }
    let masked = mask(&s, &found);
    let mut at = 0;
    let mut out = masked.as_str();
    for m in &found {
        let before = &s[at..m.start];
        assert!(out.starts_with(before));
        out = &out[before.len()..];
        let n = s[m.start..m.end].chars().count();
        assert!(out.as_bytes().iter().take(n).all(|c| *c == b'*'));
        out = &out[n..];
        at = m.end;
    }
    assert_eq!(out, &s[at..]);
});
