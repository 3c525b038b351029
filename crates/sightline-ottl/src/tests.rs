use super::*;
use ast::Unplaced;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Pv;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

fn kv(k: &str, v: Pv) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

fn s(v: &str) -> Pv {
    Pv::StringValue(v.into())
}

fn span() -> Span {
    Span {
        name: "GET /healthz".into(),
        kind: 2,
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        attributes: vec![
            kv("http.route", s("/healthz")),
            kv("http.status_code", Pv::IntValue(200)),
            kv("secret", s("hunter2")),
            kv("tmp.a", s("x")),
            kv("tmp.b", s("y")),
        ],
        ..Default::default()
    }
}

/// Runs a statement on the span as the processors do (a slot over its bytes), then reads the
/// span back from the slot's encoding.
fn run(stmt: &str, sp: &mut Span, res: &mut Option<Resource>) -> Result<bool, String> {
    let st = Statement::parse(stmt, Ctx::Span).map_err(|e| e.render(stmt))?;
    let mut scope: Option<InstrumentationScope> = None;
    let mut cache = Vec::new();
    let mut slot = slot::Slot::<Span>::new(bytes::Bytes::from(sp.encode_to_vec()));
    let mut t = Target { resource: res, scope: &mut scope, item: Item::Span(&mut slot), cache: &mut cache };
    let r = st.execute(&mut t);
    let mut out = Vec::new();
    slot.encode_field(1, &mut out);
    *sp = Span::decode_length_delimited(&out[1..]).expect("the slot encodes a span");
    r
}

fn attr<'a>(sp: &'a Span, k: &str) -> Option<&'a Pv> {
    sp.attributes.iter().find(|kv| kv.key == k).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn cond(c: &str, sp: &mut Span) -> bool {
    let cd = Condition::parse(c, Ctx::Span).map_err(|e| e.render(c)).expect("parses");
    let mut res = None;
    let mut scope = None;
    let mut cache = Vec::new();
    let mut slot = slot::Slot::<Span>::new(bytes::Bytes::from(sp.encode_to_vec()));
    let t = Target { resource: &mut res, scope: &mut scope, item: Item::Span(&mut slot), cache: &mut cache };
    cd.eval(&t).expect("evaluates")
}

#[test]
fn conditions_compare_like_the_collector() {
    let mut sp = span();
    assert!(cond(r#"attributes["http.route"] == "/healthz""#, &mut sp));
    assert!(cond(r#"span.attributes["http.route"] != "/x" and kind == SPAN_KIND_SERVER"#, &mut sp));
    assert!(cond(r#"attributes["http.status_code"] >= 200.0 and attributes["http.status_code"] < 300"#, &mut sp));
    assert!(!cond(r#"attributes["missing"] == "x""#, &mut sp));
    assert!(cond(r#"attributes["missing"] == nil"#, &mut sp));
    assert!(cond(r#"attributes["http.status_code"] != "200""#, &mut sp), "int vs string is unequal");
    assert!(!cond(r#"attributes["http.status_code"] > "1""#, &mut sp), "int vs string never orders");
    assert!(cond(r#"not (name == "x" or IsMatch(name, "^POST"))"#, &mut sp));
    assert!(cond(r#"IsMatch(name, "health") and Len(attributes) == 5"#, &mut sp));
    assert!(cond(r#"Concat([name, kind], "|") == "GET /healthz|2""#, &mut sp));
    assert!(cond(r#"Split(name, " ")[1] == "/healthz""#, &mut sp));
    assert!(cond(r#"trace_id.string == "01010101010101010101010101010101""#, &mut sp));
    assert!(cond(r#"1 + 2 * 3 == 7 and (1 + 2) * 3 == 9"#, &mut sp));
}

#[test]
fn editors_edit_in_place() {
    let mut sp = span();
    let mut res = None;
    assert!(run(r#"set(attributes["env"], "prod") where name == "GET /healthz""#, &mut sp, &mut res).unwrap());
    assert_eq!(attr(&sp, "env"), Some(&s("prod")));
    assert!(!run(r#"set(attributes["env"], "dev") where name == "nope""#, &mut sp, &mut res).unwrap());
    run(r#"delete_key(attributes, "secret")"#, &mut sp, &mut res).unwrap();
    assert_eq!(attr(&sp, "secret"), None);
    run(r#"delete_matching_keys(attributes, "^tmp\\.")"#, &mut sp, &mut res).unwrap();
    assert_eq!(attr(&sp, "tmp.a"), None);
    run(r#"set(resource.attributes["team"], "payments")"#, &mut sp, &mut res).unwrap();
    assert_eq!(res.as_ref().unwrap().attributes[0].key, "team");
    run(r#"set(attributes["nested"]["a"], 1)"#, &mut sp, &mut res).unwrap();
    run(r#"set(attributes["copy"], attributes["nested"]["a"])"#, &mut sp, &mut res).unwrap();
    assert_eq!(attr(&sp, "copy"), Some(&Pv::IntValue(1)));
    run(r#"replace_pattern(name, "^GET (.*)$", "$1", SHA256, "sha:%s")"#, &mut sp, &mut res).unwrap();
    assert!(sp.name.starts_with("sha:") && sp.name.len() == 68, "{}", sp.name);
    run(r#"keep_keys(attributes, ["http.route"])"#, &mut sp, &mut res).unwrap();
    assert_eq!(sp.attributes.len(), 1);
    run(r#"set(name, 5)"#, &mut sp, &mut res).unwrap();
    assert!(sp.name.starts_with("sha:"), "a wrong type leaves a typed field alone");
    // A runtime type error is an error (the processor's error_mode decides).
    assert!(run(r#"set(attributes["x"], Int("12a"))"#, &mut sp, &mut res).is_err());
}

#[test]
fn errors_point_at_the_column_and_suggest() {
    let e = Statement::parse(r#"ste(attributes["a"], "b")"#, Ctx::Span).unwrap_err();
    assert!(e.msg.contains("did you mean \"set\""), "{}", e.msg);
    assert_eq!(e.column("ste("), 1);
    let src = r#"set(atributes["a"], "b")"#;
    let e = Statement::parse(src, Ctx::Span).unwrap_err();
    assert!(e.msg.contains("did you mean \"attributes\""), "{}", e.msg);
    assert_eq!(e.column(src), 5);
    let src = r#"set(attributes["a"], "b") where name = "x""#;
    let e = Statement::parse(src, Ctx::Span).unwrap_err();
    assert_eq!(e.column(src), 38, "{}", e.render(src));
    let e = Statement::parse(r#"delete_key(name, "a")"#, Ctx::Span).unwrap_err();
    assert!(e.msg.contains("must be a map"), "{}", e.msg);
    let e = Statement::parse(r#"set(log.body, "a")"#, Ctx::Span).unwrap_err();
    assert!(e.msg.contains("cannot reach the log context"), "{}", e.msg);
    let e = Statement::parse(r#"limit(attributes, 1, ["a", "b"])"#, Ctx::Span).unwrap_err();
    assert!(e.msg.contains("cannot be less than"), "{}", e.msg);
    let e = Statement::parse(r#"set(attributes["a"], "\q")"#, Ctx::Span).unwrap_err();
    assert!(e.msg.contains("invalid escape"), "{}", e.msg);
}

#[test]
fn printing_round_trips() {
    for src in [
        r#"set(attributes["a"]["b"], Concat(["x", 1, 2.5, true, nil, 0x0102], "-")) where not (kind == SPAN_KIND_SERVER or name != "x") and -1 < 2"#,
        r#"replace_all_patterns(attributes, "value", "(\\d+)", "<$1>", function = SHA256, replacement_format = "%s!")"#,
        r#"merge_maps(attributes, {"a": {"b": [1, 2]}, "c": "d"}, "upsert")"#,
        r#"set(attributes["x"], (1 + 2) * -3 / 4.0e-3)"#,
        // Found by the fuzzer: `[+0]` printed as `[0]`, which parsed as another key.
        r#"set(attributes["x"], Split(name, " ")[+0])"#,
        r#"set(attributes["x"], Split(name, " ")[-1 + 2])"#,
    ] {
        let a = parser::parse_statement(src).unwrap();
        let printed = a.to_string();
        assert_eq!(parser::parse_statement(&printed).unwrap().unplaced(), a.unplaced(), "{printed}");
    }
}

#[test]
fn enums_and_context_inference() {
    assert_eq!(funcs::enum_value("SEVERITY_NUMBER_INFO"), Some(9));
    assert_eq!(funcs::enum_value("SEVERITY_NUMBER_WARN4"), Some(16));
    assert_eq!(funcs::enum_value("METRIC_DATA_TYPE_SUM"), Some(2));
    let all = [Ctx::Resource, Ctx::Scope, Ctx::Span, Ctx::SpanEvent];
    assert_eq!(infer_context(&[r#"set(resource.attributes["a"], span.name)"#], &all).unwrap(), Some(Ctx::Span));
    assert_eq!(infer_context(&[r#"set(resource.attributes["a"], "x")"#], &all).unwrap(), Some(Ctx::Resource));
    assert_eq!(infer_context(&[r#"set(attributes["a"], "x")"#], &all).unwrap(), None);
}

#[test]
fn attribute_edits_on_the_wire_keep_pdata_order() {
    // Delete moves the last attribute into the deleted one's place; set keeps a key's place.
    let mut sp = span();
    let mut res = None;
    run(r#"delete_key(attributes, "http.status_code")"#, &mut sp, &mut res).unwrap();
    run(r#"set(attributes["http.route"], "/x")"#, &mut sp, &mut res).unwrap();
    run(r#"set(attributes["new"], 1)"#, &mut sp, &mut res).unwrap();
    let keys: Vec<&str> = sp.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["http.route", "tmp.b", "secret", "tmp.a", "new"]);
    assert_eq!(attr(&sp, "http.route"), Some(&s("/x")));
    assert_eq!(sp.name, "GET /healthz", "other fields are copied through");
    assert_eq!(sp.trace_id, vec![1; 16]);
}
