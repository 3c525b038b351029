//! The downward API's `labels`/`annotations` files (sidecar mode): parsing never panics, and
//! every file it accepts, written back the way the kubelet writes it (Go's `strconv.Quote`
//! for printable text), parses to the same pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline_k8s::downward::parse;

/// The kubelet's form of one value: Go's `%q` for text without control characters.
fn quote(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(pairs) = parse(text) else { return };
    let written: String = pairs.iter().map(|(k, v)| format!("{k}={}\n", quote(v))).collect();
    // Keys with `=` or a line break cannot come from the API server; skip those inputs.
    if pairs.iter().any(|(k, _)| k.contains(['=', '\n', '\r']) || k.trim().is_empty()) {
        return;
    }
    let again = parse(&written).expect("what the kubelet writes parses");
    assert_eq!(again, pairs);
});
