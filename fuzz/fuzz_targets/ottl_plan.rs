//! Wire plans (sightline_ottl::plan) on arbitrary items that pass the receiver's check: never a
//! panic, and the same result as the general evaluator over a slot (the same drop decision,
//! the same item after the statements) whenever that item decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use sightline_core::Signal;
use sightline_core::wire;
use sightline_ottl::plan::Plan;
use sightline_ottl::slot::{Lazy, Slot};
use sightline_ottl::{Condition, Ctx, Item, Statement, Target};

const STATEMENTS: &[&str] = &[
    r#"set(attributes["a"], "x")"#,
    r#"set(attributes["b"], attributes["a"]) where attributes["c"] != nil"#,
    r#"delete_key(attributes, "a")"#,
    r#"set(attributes["c"], 3) where attributes["b"] == "x" or attributes["a"] > 2"#,
    r#"delete_key(attributes, "c") where not (attributes["b"] == true)"#,
    r#"set(attributes["a"], nil)"#,
];

/// The statement of pick bit 6: a condition on an integer field, with the literal first.
const SPAN_STATEMENT: &str = r#"set(attributes["d"], attributes["a"]) where 2 <= kind or status.code == 2"#;
const LOG_STATEMENT: &str = r#"delete_key(attributes, "b") where 9 > severity_number"#;

const SPAN_CONDITIONS: &[&str] =
    &[r#"attributes["a"] == "x""#, r#"name == "n" and kind != 2"#, r#"status.code == 1 or attributes["b"] < 1.5"#];
const LOG_CONDITIONS: &[&str] =
    &[r#"attributes["a"] == "x""#, r#"severity_text == "E" and severity_number > 8"#, r#"attributes["b"] != 2"#];

fn check<T: Lazy + PartialEq + std::fmt::Debug>(
    ctx: Ctx,
    pick: u8,
    raw: &[u8],
    (statement, conds): (&str, &[&str]),
    wrap: fn(&mut Slot<T>) -> Item<'_>,
) {
    let st: Vec<Statement> = STATEMENTS
        .iter()
        .chain([&statement])
        .enumerate()
        .filter(|(i, _)| pick & (1 << i) != 0)
        .map(|(_, s)| Statement::parse(s, ctx).expect("parses"))
        .collect();
    let cd: Vec<Condition> = conds.iter().map(|c| Condition::parse(c, ctx).expect("parses")).collect();
    let mut plan = Plan::transform(ctx).expect("an item context");
    assert!(plan.add_group(&[], &st));
    let filter = Plan::filter(ctx, &cd).expect("plans");

    let mut slot = Slot::<T>::new(bytes::Bytes::copy_from_slice(raw));
    let (mut res, mut scope, mut cache) = (None, None, Vec::new());
    let mut t = Target { resource: &mut res, scope: &mut scope, item: wrap(&mut slot), cache: &mut cache };
    let drops = cd.iter().any(|c| c.eval(&t).unwrap_or(false));
    for s in &st {
        let _ = s.execute(&mut t);
    }
    let mut want = Vec::new();
    slot.encode_field(1, &mut want);
    let mut p = 1;
    wire::read_varint(&want, &mut p).expect("a length");
    assert_eq!(filter.drops(raw), drops, "drop decision");
    let mut out = Vec::new();
    if !plan.transform_item(raw, &mut out) {
        out = raw.to_vec();
    }
    if slot.undecodable() {
        return;
    }
    match (T::decode(&out[..]), T::decode(&want[p..])) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the item after the statements"),
        (a, b) => assert_eq!(a.is_ok(), b.is_ok(), "both decode or neither"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, raw)) = data.split_first() else { return };
    if pick & 0x80 == 0 {
        if wire::item_is_valid(Signal::Traces, raw) {
            check::<Span>(Ctx::Span, pick, raw, (SPAN_STATEMENT, SPAN_CONDITIONS), |s| Item::Span(s));
        }
    } else if wire::item_is_valid(Signal::Logs, raw) {
        check::<LogRecord>(Ctx::Log, pick, raw, (LOG_STATEMENT, LOG_CONDITIONS), |s| Item::Log(s));
    }
});
