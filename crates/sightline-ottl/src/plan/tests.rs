use super::*;
use crate::slot::Slot;
use crate::{Item, Target};
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Pv;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};

/// The statements and conditions the property tests draw from: every form a plan covers,
/// over a few keys so that sets, copies, deletes and lookups meet.
const SPAN_STATEMENTS: &[&str] = &[
    r#"set(attributes["a"], "x")"#,
    r#"set(attributes["b"], 7)"#,
    r#"set(attributes["c"], attributes["a"])"#,
    r#"set(attributes["a"], attributes["zz"])"#,
    r#"set(attributes["d"], nil)"#,
    r#"set(attributes["b"], true) where name == "GET /healthz""#,
    r#"set(span.attributes["e"], 1.5) where span.kind == SPAN_KIND_SERVER"#,
    r#"delete_key(attributes, "a")"#,
    r#"delete_key(attributes, "b") where attributes["a"] != "x""#,
    r#"set(attributes["http.server.route"], attributes["http.route"]) where kind == SPAN_KIND_SERVER and status.code != 2"#,
];

const SPAN_CONDITIONS: &[&str] = &[
    r#"attributes["a"] == "x""#,
    r#""x" != attributes["a"]"#,
    r#"attributes["b"] == 7"#,
    r#"attributes["b"] > 3"#,
    r#"attributes["e"] == 1.5"#,
    r#"attributes["zz"] == nil"#,
    r#"name == "GET /healthz" or kind == 3"#,
    // A literal first: the orderings swap.
    r#"2 <= kind and status.code < 2"#,
    r#"3 != span.kind or 1 > status.code"#,
    r#"not (attributes["a"] == "y" and status.code == 1)"#,
    r#"span.attributes["http.route"] == "/healthz""#,
    // A string of more than 127 bytes: its length takes two bytes on the wire.
    r#"attributes["a"] != "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL""#,
    "true",
];

const LOG_STATEMENTS: &[&str] = &[
    r#"set(attributes["a"], "x")"#,
    r#"set(log.attributes["c"], attributes["a"]) where severity_number >= 9"#,
    r#"delete_key(attributes, "b") where severity_text == "ERROR""#,
    r#"set(attributes["b"], 2) where attributes["a"] == "y""#,
];

const LOG_CONDITIONS: &[&str] = &[
    r#"attributes["a"] == "x""#,
    r#"severity_text == "ERROR" and attributes["b"] != 2"#,
    r#"severity_number < 9 or attributes["c"] == nil"#,
    r#"9 > severity_number or 17 == severity_number"#,
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn value(r: &mut Rng) -> Option<AnyValue> {
    Some(AnyValue {
        value: match r.below(9) {
            0 => None,
            1 => Some(Pv::StringValue("x".into())),
            2 => Some(Pv::StringValue("y".into())),
            3 => Some(Pv::IntValue(r.below(10) as i64)),
            4 => Some(Pv::BoolValue(true)),
            5 => Some(Pv::DoubleValue(1.5)),
            6 => Some(Pv::StringValue("/healthz".into())),
            7 => Some(Pv::StringValue("L".repeat(130))),
            _ => Some(Pv::BytesValue(vec![1, 2])),
        },
    })
    .filter(|_| r.below(10) != 0)
}

fn attrs(r: &mut Rng) -> Vec<KeyValue> {
    const KEYS: &[&str] = &["a", "b", "c", "d", "e", "http.route", "other"];
    (0..r.below(7))
        .map(|_| KeyValue { key: KEYS[r.below(KEYS.len())].into(), value: value(r), ..Default::default() })
        .collect()
}

fn span(r: &mut Rng) -> Vec<u8> {
    let s = Span {
        name: ["GET /healthz", "work", ""][r.below(3)].into(),
        kind: r.below(6) as i32,
        // The ids as SDKs write them (the scan starts after them), with or without a
        // parent, or none.
        trace_id: if r.below(5) == 0 { vec![] } else { vec![1; 16] },
        span_id: vec![2; 8],
        parent_span_id: if r.below(2) == 0 { vec![3; 8] } else { vec![] },
        // Both times set: the head as SDKs write it (`wire::span_head`), when the name and
        // the kind are not empty.
        start_time_unix_nano: 5,
        end_time_unix_nano: 9,
        attributes: attrs(r),
        status: (r.below(2) == 0).then(|| Status { code: r.below(3) as i32, message: String::new() }),
        ..Default::default()
    };
    let mut b = s.encode_to_vec();
    // Now and then an attribute after a later field (not one run), a name that is not UTF-8,
    // or an attribute in a layout the scan's fast path does not take: no value, or the
    // value before the key.
    match r.below(8) {
        0 => wire::put_len_field(
            &mut b,
            9,
            &KeyValue { key: "a".into(), value: value(r), ..Default::default() }.encode_to_vec(),
        ),
        1 => wire::put_len_field(&mut b, 5, &[0xff, 0xfe]),
        2 => wire::put_len_field(
            &mut b,
            9,
            &KeyValue { key: "b".into(), value: None, ..Default::default() }.encode_to_vec(),
        ),
        3 => {
            let mut kv = Vec::new();
            wire::put_len_field(&mut kv, 2, &value(r).unwrap_or_default().encode_to_vec());
            wire::put_len_field(&mut kv, 1, b"a");
            wire::put_len_field(&mut b, 9, &kv);
        }
        _ => {}
    }
    b
}

fn log(r: &mut Rng) -> Vec<u8> {
    LogRecord {
        time_unix_nano: 3,
        severity_number: [1, 9, 17][r.below(3)],
        severity_text: ["ERROR", "INFO", ""][r.below(3)].into(),
        attributes: attrs(r),
        ..Default::default()
    }
    .encode_to_vec()
}

/// The general evaluator's result (as the processors run it): whether a condition drops the
/// item, and the item after the statements.
fn general<T: crate::slot::Lazy + PartialEq + std::fmt::Debug>(
    raw: &[u8],
    ctx: Ctx,
    statements: &[Statement],
    conds: &[Condition],
    wrap: fn(&mut Slot<T>) -> Item<'_>,
) -> (bool, Vec<u8>, bool) {
    let (mut res, mut scope, mut cache) = (None, None, Vec::new());
    let _ = ctx;
    let mut slot = Slot::<T>::new(Bytes::copy_from_slice(raw));
    let mut t = Target { resource: &mut res, scope: &mut scope, item: wrap(&mut slot), cache: &mut cache };
    let drops = conds.iter().any(|c| c.eval(&t).expect("no errors in these forms"));
    for s in statements {
        s.execute(&mut t).expect("no errors in these forms");
    }
    let mut out = Vec::new();
    slot.encode_field(1, &mut out);
    let mut p = 1;
    let _len = wire::read_varint(&out, &mut p).unwrap();
    // A name that is not UTF-8 does not decode: then the bytes are compared (none when the
    // slot had to decode the item and could not).
    (drops, out.split_off(p), slot.undecodable())
}

fn check<T: crate::slot::Lazy + PartialEq + std::fmt::Debug>(
    ctx: Ctx,
    stmts: &[&str],
    conds: &[&str],
    item: fn(&mut Rng) -> Vec<u8>,
    wrap: fn(&mut Slot<T>) -> Item<'_>,
) {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut changed, mut dropped) = (0, 0);
    for round in 0..4000 {
        let st: Vec<Statement> =
            (0..1 + r.below(4)).map(|_| Statement::parse(stmts[r.below(stmts.len())], ctx).unwrap()).collect();
        let cd: Vec<Condition> =
            (0..1 + r.below(2)).map(|_| Condition::parse(conds[r.below(conds.len())], ctx).unwrap()).collect();
        let mut plan = Plan::transform(ctx).unwrap();
        // Every other round, more keys than a plan indexes: `find` searches.
        if round % 2 == 1 {
            for i in 0..=INDEXED {
                assert!(plan.key(&format!("pad{i}")).is_some());
            }
        }
        assert!(plan.add_group(&[], &st), "a plan for {st:?}");
        assert_eq!(plan.indexed(), round % 2 == 0);
        let filter = Plan::filter(ctx, &cd).unwrap_or_else(|| panic!("a plan for {cd:?}"));
        let raw = item(&mut r);
        let (drops, want, undecodable) = general::<T>(&raw, ctx, &st, &cd, wrap);
        assert_eq!(filter.drops(&raw), drops, "round {round}: {cd:?} on {:?}", T::decode(&raw[..]));
        let mut out = Vec::new();
        if plan.transform_item(&raw, &mut out) {
            changed += 1;
        } else {
            out = raw.clone();
        }
        match (T::decode(&out[..]), T::decode(&want[..])) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "round {round}: {st:?} on {:?}", T::decode(&raw[..])),
            _ if undecodable => {}
            _ => assert_eq!(out, want, "round {round}: {st:?}"),
        }
        dropped += usize::from(drops);
    }
    assert!(changed > 1000 && dropped > 500 && dropped < 3500, "the draws exercise both outcomes: {changed} {dropped}");
}

#[test]
fn plans_agree_with_the_evaluator_on_random_spans() {
    check::<Span>(Ctx::Span, SPAN_STATEMENTS, SPAN_CONDITIONS, span, |s| Item::Span(s));
}

#[test]
fn plans_agree_with_the_evaluator_on_random_log_records() {
    check::<LogRecord>(Ctx::Log, LOG_STATEMENTS, LOG_CONDITIONS, log, |s| Item::Log(s));
}

#[test]
fn forms_outside_the_plans_fall_back() {
    for c in
        [r#"IsMatch(attributes["a"], "x.*")"#, r#"resource.attributes["a"] == "x""#, r#"attributes["a"]["b"] == 1"#]
    {
        assert!(Plan::filter(Ctx::Span, &[Condition::parse(c, Ctx::Span).unwrap()]).is_none(), "{c}");
    }
    for s in [
        r#"set(attributes["a"], Concat(["x", "y"], ""))"#,
        r#"set(name, "x")"#,
        r#"keep_keys(attributes, ["a"])"#,
        r#"set(attributes["a"], [1, 2])"#,
    ] {
        let mut p = Plan::transform(Ctx::Span).unwrap();
        assert!(!p.add_group(&[], &[Statement::parse(s, Ctx::Span).unwrap()]), "{s}");
    }
    assert!(Plan::filter(Ctx::Resource, &[]).is_none(), "item contexts only");
}

#[test]
fn only_string_reads_an_any_value_that_is_one_string() {
    let long = "L".repeat(130);
    let encoded = |v: Pv| AnyValue { value: Some(v) }.encode_to_vec();
    assert_eq!(only_string(&encoded(Pv::StringValue("x".into()))), Some(&b"x"[..]));
    assert_eq!(only_string(&encoded(Pv::StringValue(long.clone()))), Some(long.as_bytes()));
    assert_eq!(only_string(&encoded(Pv::StringValue(String::new()))), Some(&b""[..]));
    assert_eq!(only_string(&encoded(Pv::IntValue(3))), None);
    // A second field after the string, a string cut short, nothing at all.
    assert_eq!(only_string(&[0x0a, 1, b'x', 0x10, 1]), None);
    let mut two = encoded(Pv::StringValue(long.clone()));
    two.extend_from_slice(&[0x10, 1]);
    assert_eq!(only_string(&two), None);
    assert_eq!(only_string(&[0x0a, 5, b'x']), None);
    assert_eq!(only_string(&[]), None);
}

#[test]
fn items_with_hundreds_of_attributes_agree_with_the_evaluator() {
    // Around the index's byte limit (255 entries): the plan's keys first, then other keys,
    // so that a removal moves an entry from past the limit into a plan key's place.
    let statements = [
        r#"delete_key(attributes, "a")"#,
        r#"set(attributes["c"], attributes["b"])"#,
        r#"delete_key(attributes, "b")"#,
        r#"set(attributes["d"], "new")"#,
        r#"set(attributes["a"], 1)"#,
    ];
    let st: Vec<Statement> = statements.iter().map(|s| Statement::parse(s, Ctx::Span).unwrap()).collect();
    let mut plan = Plan::transform(Ctx::Span).unwrap();
    assert!(plan.add_group(&[], &st));
    assert!(plan.indexed());
    let s = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(Pv::StringValue(v.into())) }),
        ..Default::default()
    };
    for n in [250, 253, 254, 255, 256, 257, 300] {
        let mut attributes = vec![s("a", "x"), s("b", "y"), s("c", "z")];
        attributes.extend((attributes.len()..n).map(|i| s(&format!("k{i}"), "v")));
        let raw = Span { name: "n".into(), attributes, ..Default::default() }.encode_to_vec();
        let (_, want, _) = general::<Span>(&raw, Ctx::Span, &st, &[], |s| Item::Span(s));
        let mut out = Vec::new();
        assert!(plan.transform_item(&raw, &mut out));
        assert_eq!(Span::decode(&out[..]).unwrap(), Span::decode(&want[..]).unwrap(), "{n} attributes");
    }
}
