//! A deterministic, dependency-free fuzz pass: ~10k random and mutated inputs
//! go through both conversions for every signal. Nothing may panic, and
//! whatever is accepted must convert back and forth consistently.

use sightline_otlp_json::{Signal, json_to_protobuf, protobuf_to_json};

const SIGNALS: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

const SEEDS: [(Signal, &[u8]); 3] = [
    (Signal::Traces, include_bytes!("data/traces.json")),
    (Signal::Metrics, include_bytes!("data/metrics.json")),
    (Signal::Logs, include_bytes!("data/logs.json")),
];

/// Tokens spliced into JSON inputs to reach type, range and nesting errors.
const TOKENS: &[&str] = &[
    "null",
    "true",
    "false",
    "{}",
    "[]",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "0",
    "-1",
    "1.5",
    "1e999",
    "-0",
    "18446744073709551616",
    "\"NaN\"",
    "\"Infinity\"",
    "\"-Infinity\"",
    "\"0x12\"",
    "\"\"",
    "\"zz\"",
    "\"AAEC\"",
    "\"5b8efff798038103d269b633813fc60c\"",
    "\"eee19b7ec3c1b174\"",
    "{\"arrayValue\":{\"values\":[",
    "{\"kvlistValue\":{\"values\":[",
    "{\"stringValue\":\"x\"}",
    "\"SPAN_KIND_SERVER\"",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "é",
];

/// xorshift64*: tiny, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

fn mutate(rng: &mut Rng, input: &[u8], tokens: bool) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = out.len();
        match rng.below(if tokens { 7 } else { 5 }) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                out.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(16)).min(len);
                out.drain(start..end);
            }
            4 => out.truncate(rng.below(len + 1)),
            5 | 6 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                let i = rng.below(len + 1);
                let end = if rng.below(2) == 0 { i } else { (i + rng.below(12)).min(len) };
                out.splice(i..end, token.iter().copied());
            }
            _ => {}
        }
    }
    out
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(300);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// A JSON-ish string made of random tokens (often deeply nested).
fn random_tokens(rng: &mut Rng) -> Vec<u8> {
    let mut out = b"{\"resourceSpans\":[".to_vec();
    for _ in 0..rng.below(400) {
        out.extend_from_slice(TOKENS[rng.below(TOKENS.len())].as_bytes());
    }
    out
}

/// JSON accepted by the reader must come back from protobuf unchanged.
fn check_json(signal: Signal, input: &[u8]) {
    if let Ok(proto) = json_to_protobuf(signal, input) {
        let json = match protobuf_to_json(signal, &proto) {
            Ok(json) => json,
            Err(e) => panic!(
                "{signal}: accepted JSON produced unrenderable protobuf ({e}): {}",
                String::from_utf8_lossy(input)
            ),
        };
        let again = json_to_protobuf(signal, &json);
        assert!(
            again.as_ref() == Ok(&proto),
            "{signal}: round trip changed the protobuf\n input: {}\n output: {}\n again: {:?}",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&json),
            again.map(|p| protobuf_to_json(signal, &p).map(|j| String::from_utf8_lossy(&j).into_owned()))
        );
    }
}

/// Protobuf accepted by the writer must yield JSON that is a fixed point.
fn check_proto(signal: Signal, input: &[u8]) {
    if let Ok(json) = protobuf_to_json(signal, input) {
        let proto = match json_to_protobuf(signal, &json) {
            Ok(p) => p,
            Err(e) => panic!("{signal}: rendered JSON rejected ({e}): {}", String::from_utf8_lossy(&json)),
        };
        let again = protobuf_to_json(signal, &proto);
        assert!(
            again.as_ref() == Ok(&json),
            "{signal}: JSON is not a fixed point\n first: {}\n again: {:?}",
            String::from_utf8_lossy(&json),
            again.map(|j| String::from_utf8_lossy(&j).into_owned())
        );
    }
}

#[test]
fn random_and_mutated_inputs_never_panic() {
    // Longer or different runs: SIGHTLINE_FUZZ_ITERATIONS=1000000 SIGHTLINE_FUZZ_SEED=7
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let iterations = env("SIGHTLINE_FUZZ_ITERATIONS").map_or(10_000, |n| n as usize);
    let seed = env("SIGHTLINE_FUZZ_SEED").unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(seed | 1);
    let protos: Vec<(Signal, Vec<u8>)> =
        SEEDS.iter().map(|&(signal, json)| (signal, json_to_protobuf(signal, json).expect("seed converts"))).collect();

    let mut accepted_json = 0;
    let mut accepted_proto = 0;
    for i in 0..iterations {
        let (seed_signal, seed_json) = SEEDS[i % SEEDS.len()];
        let (_, seed_proto) = &protos[i % protos.len()];
        let input = match i % 5 {
            0 => random_bytes(&mut rng),
            1 => random_tokens(&mut rng),
            2 | 3 => mutate(&mut rng, seed_json, true),
            _ => mutate(&mut rng, seed_proto, false),
        };
        for signal in SIGNALS {
            check_json(signal, &input);
            check_proto(signal, &input);
        }
        if json_to_protobuf(seed_signal, &input).is_ok() {
            accepted_json += 1;
        }
        if protobuf_to_json(seed_signal, &input).is_ok() {
            accepted_proto += 1;
        }
    }
    // The mutations must not be so destructive that nothing is ever accepted.
    assert!(accepted_json > iterations / 100, "accepted JSON: {accepted_json}");
    assert!(accepted_proto > iterations / 100, "accepted protobuf: {accepted_proto}");
}
