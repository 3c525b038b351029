//! OTTL statements and conditions: parsing never panics; every accepted statement or
//! condition prints to text that parses back to the same tree; binding to a context and
//! running the result on a span and a log record never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::{Span, span::Event};
use prost::Message as _;
use sightline_ottl::ast::Unplaced;
use sightline_ottl::slot::Slot;
use sightline_ottl::{Condition, Ctx, Item, Statement, Target, parser};

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

fn run(src: &str, ctx: Ctx) {
    let attrs = vec![
        kv("http.route", Value::StringValue("/healthz".into())),
        kv("n", Value::IntValue(3)),
        kv("m", Value::KvlistValue(Default::default())),
    ];
    let span = Span {
        name: "GET /".into(),
        attributes: attrs.clone(),
        events: vec![Event { name: "e".into(), attributes: attrs.clone(), ..Default::default() }],
        ..Default::default()
    };
    let log = LogRecord { attributes: attrs, ..Default::default() };
    let mut span = Slot::<Span>::new(span.encode_to_vec().into());
    let mut log = Slot::<LogRecord>::new(log.encode_to_vec().into());
    let (mut res, mut scope, mut cache) = (None, None, Vec::new());
    let item = match ctx {
        Ctx::Span => Item::Span(&mut span),
        Ctx::SpanEvent => Item::Event(&mut span, 0),
        _ => Item::Log(&mut log),
    };
    let mut t = Target { resource: &mut res, scope: &mut scope, item, cache: &mut cache };
    if let Ok(st) = Statement::parse(src, ctx) {
        let _ = st.execute(&mut t);
    }
    if let Ok(c) = Condition::parse(src, ctx) {
        let _ = c.eval(&t);
    }
    // The edited item encodes to a message that decodes.
    let mut out = Vec::new();
    span.encode_field(1, &mut out);
    log.encode_field(1, &mut out);
    let mut buf = &out[..];
    assert!(Span::decode_length_delimited_with_tag(&mut buf));
}

/// Reads one length-delimited field (tag 1 byte) and checks it decodes.
trait DecodeField {
    fn decode_length_delimited_with_tag(buf: &mut &[u8]) -> bool;
}

impl DecodeField for Span {
    fn decode_length_delimited_with_tag(buf: &mut &[u8]) -> bool {
        let Some((_, rest)) = buf.split_first() else { return false };
        let mut rest = rest;
        let ok = Span::decode_length_delimited(&mut rest).is_ok();
        *buf = rest;
        ok && LogRecord::decode_length_delimited(&buf[1..]).is_ok()
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    if src.len() > 4096 {
        return;
    }
    if let Ok(st) = parser::parse_statement(src) {
        let printed = st.to_string();
        let again = parser::parse_statement(&printed).unwrap_or_else(|e| panic!("{printed:?} does not parse: {e:?}"));
        assert_eq!(again.unplaced(), st.unplaced(), "{printed:?}");
    }
    if let Ok(c) = parser::parse_condition(src) {
        let printed = c.to_string();
        let again = parser::parse_condition(&printed).unwrap_or_else(|e| panic!("{printed:?} does not parse: {e:?}"));
        assert_eq!(again.unplaced(), c.unplaced(), "{printed:?}");
    }
    for ctx in [Ctx::Span, Ctx::SpanEvent, Ctx::Log] {
        run(src, ctx);
    }
});
