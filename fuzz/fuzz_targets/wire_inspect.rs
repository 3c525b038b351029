//! The wire walker (`sightline_core::wire`) on arbitrary bytes. Input: one byte for the signal,
//! then the request.
//!
//! Oracles:
//! - nothing panics (`inspect`, `retain_items`, `rewrite_resources`);
//! - the fast skim and the detailed walk agree, for whole requests and for every item: the
//!   skim answers exactly when the detailed walk finds no error and no invalid item, with the
//!   same counts, and `inspect` returns what they say; `inspect_entries` too, with each
//!   entry's items as `count_items` counts them;
//! - prost is the reference decoder: what prost decodes, `inspect` accepts (it may still count
//!   invalid items, e.g. ids of the wrong length, which prost does not check), except for
//!   the deprecated group wire types that Sightline refuses on purpose;
//! - after `inspect`: `retain_items` with `item_is_valid` removes exactly the invalid items
//!   and leaves a request that inspects clean with the same counts; `rewrite_resources` with
//!   an identity editor succeeds, keeps the counts, and prost reads the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline_core::Signal;
use sightline_core::wire::{self, Fields, ResourceEditor, Value, WireErrorKind, fuzzing};
use sightline_fuzz::{prost_canonical, split_signal};

fuzz_target!(|data: &[u8]| {
    if let Some((signal, buf)) = split_signal(data) {
        check(signal, buf);
    }
});

struct Identity(Vec<u8>);

impl ResourceEditor for Identity {
    fn edit(&mut self, resource: &[u8], _entry: &[u8]) -> &[u8] {
        self.0.clear();
        self.0.extend_from_slice(resource);
        &self.0
    }
}

fn check(signal: Signal, buf: &[u8]) {
    let fast = fuzzing::inspect_fast(signal, buf);
    let slow = fuzzing::inspect_detailed(signal, buf);
    let public = wire::inspect(signal, buf);
    match (&fast, &slow) {
        (Some((items, resources)), Ok(s)) => {
            assert_eq!((s.items, s.resources, s.invalid_items), (*items, *resources, 0), "fast and detailed counts");
        }
        (Some(_), Err(e)) => panic!("the skim accepted what the detailed walk refuses: {e}"),
        (None, Ok(s)) => assert!(s.invalid_items > 0, "the skim refused a request the detailed walk finds clean"),
        (None, Err(_)) => {}
    }
    assert_eq!(public, slow, "inspect returns what the detailed walk says");

    // The receivers' check: the same answer, and each entry's items as the accounting counts
    // them (when the skim accepts a request of several entries; none otherwise).
    let mut entries = Vec::new();
    assert_eq!(wire::inspect_entries(signal, buf, &mut entries), public, "inspect_entries returns what inspect says");
    let counted: Vec<u64> = Fields::new(buf)
        .map_while(Result::ok)
        .filter(|f| f.number == 1)
        .filter_map(|f| wire::expect_len(&f).ok())
        .map(|rx| wire::count_items(signal, rx))
        .collect();
    let want = if fast.is_some() && counted.len() > 1 { counted } else { Vec::new() };
    assert_eq!(entries, want, "per-entry items");

    // Every item that the framing lets us reach: the item skim agrees with its detailed check.
    for_each_item(buf, &mut |item| {
        let skim = fuzzing::skim_item(signal, item);
        let detailed = fuzzing::inspect_item_detailed(signal, item).ok();
        assert_eq!(skim, detailed, "item skim and detailed check disagree");
        assert_eq!(wire::item_is_valid(signal, item), detailed.is_some());
    });

    // prost is the reference: what it decodes, inspect accepts (groups aside).
    let canonical = prost_canonical(signal, buf, true);
    if canonical.is_some()
        && let Err(e) = &slow
    {
        assert!(
            matches!(e.kind(), WireErrorKind::InvalidWireType(3 | 4)),
            "prost decodes a request that inspect refuses: {e}"
        );
    }

    let Ok(summary) = slow else { return };

    // Partial success: drop the invalid items.
    let (kept, removed) =
        wire::retain_items(buf, &mut |i| wire::item_is_valid(signal, i)).expect("retain_items after inspect");
    assert_eq!(removed, summary.invalid_items, "retain_items removes exactly the invalid items");
    let after = wire::inspect(signal, &kept).expect("the kept request inspects");
    assert_eq!(
        (after.items, after.resources, after.invalid_items),
        (summary.items, summary.resources, 0),
        "counts after retain_items"
    );

    // The rewrite with an identity editor keeps the request.
    let mut out = Vec::new();
    wire::rewrite_resources(buf, &mut out, &mut Identity(Vec::new())).expect("rewrite_resources after inspect");
    let rewritten = wire::inspect(signal, &out).expect("the rewritten request inspects");
    assert_eq!(
        (rewritten.items, rewritten.resources, rewritten.invalid_items),
        (summary.items, summary.resources, summary.invalid_items),
        "counts after an identity rewrite"
    );
    if let Some(before) = canonical {
        assert_eq!(prost_canonical(signal, &out, true), Some(before), "prost reads the identity rewrite as the input");
    }
}

/// Calls `f` with every item (span, metric, log record) reachable through well-formed framing.
fn for_each_item(buf: &[u8], f: &mut dyn FnMut(&[u8])) {
    for rx in len_fields(buf, 1) {
        for sx in len_fields(rx, 2) {
            for item in len_fields(sx, 2) {
                f(item);
            }
        }
    }
}

/// The contents of the length-delimited fields numbered `number`, up to the first bad field.
fn len_fields(buf: &[u8], number: u32) -> impl Iterator<Item = &[u8]> {
    Fields::new(buf).map_while(Result::ok).filter_map(move |f| match f.value {
        Value::Len(b) if f.number == number => Some(b),
        _ => None,
    })
}
