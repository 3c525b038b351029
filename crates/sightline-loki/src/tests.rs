//! Unit tests: OTLP requests built with the generated OTLP types go through the encoder, and
//! the output is decoded back with prost structs written from Loki's `push.proto` (or parsed
//! as JSON), so that every assertion is about what a Loki server would read.

use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue as PbAny, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value as V,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use sightline_core::Payload;
use std::time::Duration;

// --- Loki's push.proto, as test structs ---------------------------------------------------

#[derive(Clone, PartialEq, prost::Message)]
struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StreamAdapter {
    #[prost(string, tag = "1")]
    labels: String,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    line: String,
    #[prost(message, repeated, tag = "3")]
    structured_metadata: Vec<LabelPairAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Timestamp {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

impl EntryAdapter {
    fn ns(&self) -> i64 {
        let t = self.timestamp.clone().unwrap_or_default();
        t.seconds * 1_000_000_000 + i64::from(t.nanos)
    }
    fn meta(&self, name: &str) -> Option<&str> {
        self.structured_metadata.iter().find(|p| p.name == name).map(|p| p.value.as_str())
    }
}

// --- OTLP builders ---------------------------------------------------------------------------

fn s(v: &str) -> Option<PbAny> {
    Some(PbAny { value: Some(V::StringValue(v.into())) })
}

fn kv(k: &str, v: Option<PbAny>) -> KeyValue {
    KeyValue { key: k.into(), value: v, ..Default::default() }
}

fn resource(attrs: &[(&str, &str)]) -> Option<Resource> {
    Some(Resource { attributes: attrs.iter().map(|(k, v)| kv(k, s(v))).collect(), ..Default::default() })
}

fn record(time: u64, body: &str) -> LogRecord {
    LogRecord { time_unix_nano: time, body: s(body), ..Default::default() }
}

fn request(res: &[(&str, &str)], records: Vec<LogRecord>) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(res),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "app.logger".into(),
                    version: "1.2".into(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

const CHECKOUT: &[(&str, &str)] = &[
    ("service.name", "checkout"),
    ("service.namespace", "shop"),
    ("deployment.environment", "prod"),
    ("owner.team", "payments"),
    ("owner.contact", "#payments"),
];

const NOW: i64 = 1_700_000_000_123_456_789;

fn encode_with(cfg: &LokiConfig, reqs: &[Vec<u8>]) -> (PushRequest, Stats) {
    let plan = Plan::new(cfg);
    let mut enc = Encoder::new();
    for r in reqs {
        enc.add_request(&plan, r, NOW).expect("valid request");
    }
    let mut out = Vec::new();
    enc.encode_protobuf(&mut out);
    (PushRequest::decode(&out[..]).expect("our output decodes as a PushRequest"), enc.stats)
}

fn cfg() -> LokiConfig {
    LokiConfig::new("http://127.0.0.1:1/loki/api/v1/push")
}

// --- labels ----------------------------------------------------------------------------------

/// The default label set: ownership and service identity from the resource, the level from
/// the severity text; label names sorted, as a Prometheus label set.
#[test]
fn default_labels_from_resource_and_severity() {
    let mut r = record(5, "card declined");
    r.severity_text = "WARN".into();
    let (push, stats) = encode_with(&cfg(), &[request(CHECKOUT, vec![r])]);
    assert_eq!(push.streams.len(), 1);
    assert_eq!(
        push.streams[0].labels,
        r#"{deployment_environment="prod", level="warn", owner_team="payments", service_name="checkout", service_namespace="shop"}"#
    );
    assert_eq!(stats, Stats::default());
}

/// `deployment.environment.name` wins over the older `deployment.environment`; the one not
/// used stays in the metadata.
#[test]
fn environment_prefers_the_new_attribute_name() {
    let res = [("service.name", "a"), ("deployment.environment", "old"), ("deployment.environment.name", "new")];
    let (push, _) = encode_with(&cfg(), &[request(&res, vec![record(1, "x")])]);
    assert!(push.streams[0].labels.contains(r#"deployment_environment="new""#), "{}", push.streams[0].labels);
    let e = &push.streams[0].entries[0];
    assert_eq!(e.meta("deployment_environment"), Some("old"));
    assert_eq!(e.meta("deployment_environment_name"), None);
}

/// Severity numbers map to level names when there is no text; no severity, no level label.
#[test]
fn severity_number_maps_to_level() {
    let mut cases = Vec::new();
    for (n, want) in
        [(1, "trace"), (5, "debug"), (9, "info"), (13, "warn"), (17, "error"), (21, "fatal"), (24, "fatal")]
    {
        let mut r = record(1, "x");
        r.severity_number = n;
        cases.push((request(&[("service.name", "a")], vec![r]), want));
    }
    for (req, want) in cases {
        let (push, _) = encode_with(&cfg(), &[req]);
        assert_eq!(push.streams[0].labels, format!(r#"{{level="{want}", service_name="a"}}"#));
    }
    let (push, _) = encode_with(&cfg(), &[request(&[("service.name", "a")], vec![record(1, "x")])]);
    assert_eq!(push.streams[0].labels, r#"{service_name="a"}"#);
}

/// A record's own attribute beats the resource's for a label, and is not repeated in the
/// metadata; label names from config may differ from attribute names.
#[test]
fn record_attribute_overrides_resource_for_a_label() {
    let mut r = record(1, "x");
    r.attributes = vec![kv("owner.team", s("search")), kv("http.method", s("GET"))];
    let (push, _) = encode_with(&cfg(), &[request(CHECKOUT, vec![r])]);
    let st = &push.streams[0];
    assert!(st.labels.contains(r#"owner_team="search""#), "{}", st.labels);
    let e = &st.entries[0];
    assert_eq!(e.meta("owner_team"), None);
    assert_eq!(e.meta("http_method"), Some("GET"));
}

/// Label values are escaped for the label-set syntax; non-string attributes become text.
#[test]
fn label_values_are_escaped_and_typed() {
    let mut c = cfg();
    c.labels = [("app".to_string(), Sources::One("app".into())), ("n".to_string(), Sources::One("n".into()))]
        .into_iter()
        .collect();
    let mut r = record(1, "x");
    r.attributes = vec![kv("app", s("a\"b\\c\nd")), kv("n", Some(PbAny { value: Some(V::IntValue(-42)) }))];
    let (push, _) = encode_with(&c, &[request(&[], vec![r])]);
    assert_eq!(push.streams[0].labels, r#"{app="a\"b\\c\nd", n="-42"}"#);
}

/// Loki refuses a stream without labels: a record with none of the configured attributes
/// gets `service_name="unknown_service"`.
#[test]
fn no_labels_falls_back_to_unknown_service() {
    let (push, _) = encode_with(&cfg(), &[request(&[("host.name", "h1")], vec![record(1, "x")])]);
    assert_eq!(push.streams[0].labels, r#"{service_name="unknown_service"}"#);
    assert_eq!(push.streams[0].entries[0].meta("host_name"), Some("h1"));
}

// --- line, metadata, timestamps ----------------------------------------------------------------

/// The line is the body: strings as they are, structured bodies as JSON, bytes as base64, no
/// body as an empty line.
#[test]
fn line_is_the_body() {
    let kvlist = PbAny {
        value: Some(V::KvlistValue(KeyValueList {
            values: vec![
                kv("msg", s("he said \"hi\"")),
                kv("n", Some(PbAny { value: Some(V::IntValue(3)) })),
                kv("ok", Some(PbAny { value: Some(V::BoolValue(true)) })),
                kv("d", Some(PbAny { value: Some(V::DoubleValue(1.5)) })),
                kv(
                    "list",
                    Some(PbAny {
                        value: Some(V::ArrayValue(ArrayValue {
                            values: vec![PbAny { value: Some(V::BytesValue(vec![1, 2, 3])) }, PbAny { value: None }],
                        })),
                    }),
                ),
            ],
        })),
    };
    let records = vec![
        record(1, "plain text\twith tab"),
        LogRecord { time_unix_nano: 2, body: Some(kvlist), ..Default::default() },
        LogRecord { time_unix_nano: 3, body: None, ..Default::default() },
        LogRecord {
            time_unix_nano: 4,
            body: Some(PbAny { value: Some(V::BytesValue(b"hi".to_vec())) }),
            ..Default::default()
        },
    ];
    let (push, _) = encode_with(&cfg(), &[request(&[("service.name", "a")], records)]);
    let lines: Vec<&str> = push.streams[0].entries.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(lines[0], "plain text\twith tab");
    let v: serde_json::Value = serde_json::from_str(lines[1]).expect("structured body is JSON");
    assert_eq!(v, serde_json::json!({"msg": "he said \"hi\"", "n": 3, "ok": true, "d": 1.5, "list": ["AQID", null]}));
    assert_eq!(lines[2], "");
    assert_eq!(lines[3], "aGk=");
}

/// Structured metadata, in priority order: trace and span ids in hex, the event name, the
/// record's other attributes (names sanitized), the scope, the resource's attributes that are
/// not label sources.
#[test]
fn metadata_has_attributes_ids_resource_and_scope() {
    let mut r = record(1, "x");
    r.attributes = vec![
        kv("http.status_code", Some(PbAny { value: Some(V::IntValue(500)) })),
        kv("1st", s("v")),
        kv("empty", s("")),
    ];
    r.trace_id = (1..=16).collect();
    r.span_id = (1..=8).collect();
    r.event_name = "checkout.failed".into();
    let (push, _) = encode_with(&cfg(), &[request(CHECKOUT, vec![r.clone()])]);
    let e = &push.streams[0].entries[0];
    let names: Vec<&str> = e.structured_metadata.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "trace_id",
            "span_id",
            "event_name",
            "http_status_code",
            "_1st",
            "scope_name",
            "scope_version",
            "owner_contact"
        ]
    );
    assert_eq!(e.meta("http_status_code"), Some("500"));
    assert_eq!(e.meta("trace_id"), Some("0102030405060708090a0b0c0d0e0f10"));
    assert_eq!(e.meta("span_id"), Some("0102030405060708"));
    assert_eq!(e.meta("owner_contact"), Some("#payments"));
    assert_eq!(e.meta("scope_name"), Some("app.logger"));

    // Both optional groups off: only the record's own.
    let mut c = cfg();
    c.resource_attributes_as_metadata = false;
    c.scope_as_metadata = false;
    let (push, _) = encode_with(&c, &[request(CHECKOUT, vec![r])]);
    let names: Vec<&str> = push.streams[0].entries[0].structured_metadata.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["trace_id", "span_id", "event_name", "http_status_code", "_1st"]);
}

/// Entries are grouped per stream and sorted by time within it (stable for equal times); the
/// observed time stands in for a missing time, and the encode time for neither.
#[test]
fn entries_are_ordered_per_stream() {
    let mut obs = LogRecord { observed_time_unix_nano: 25, body: s("observed"), ..Default::default() };
    obs.time_unix_nano = 0;
    let none = LogRecord { body: s("no time"), ..Default::default() };
    let mut err = record(10, "other stream");
    err.severity_number = 17;
    let records = vec![record(30, "c"), record(10, "a1"), err, record(10, "a2"), obs, none, record(20, "b")];
    let (push, _) = encode_with(
        &cfg(),
        &[
            request(&[("service.name", "a")], records),
            request(&[("service.name", "a")], vec![record(15, "later request")]),
        ],
    );
    assert_eq!(push.streams.len(), 2);
    let first: Vec<(&str, i64)> = push.streams[0].entries.iter().map(|e| (e.line.as_str(), e.ns())).collect();
    assert_eq!(
        first,
        [("a1", 10), ("a2", 10), ("later request", 15), ("b", 20), ("observed", 25), ("c", 30), ("no time", NOW)]
    );
    assert_eq!(push.streams[1].labels, r#"{level="error", service_name="a"}"#);
    assert_eq!(push.streams[1].entries.len(), 1);
}

// --- limits ------------------------------------------------------------------------------------

/// Past `max_label_count`, the lowest-priority labels (last in config order) become metadata.
#[test]
fn label_count_limit_moves_labels_to_metadata() {
    let mut c = cfg();
    c.max_label_count = 2;
    let mut r = record(1, "x");
    r.severity_text = "info".into();
    let (push, stats) = encode_with(&c, &[request(CHECKOUT, vec![r, record(2, "y")])]);
    // service_name and service_namespace are first in priority.
    assert_eq!(push.streams[0].labels, r#"{service_name="checkout", service_namespace="shop"}"#);
    let e = &push.streams[0].entries[0];
    assert_eq!(e.meta("deployment_environment"), Some("prod"));
    assert_eq!(e.meta("owner_team"), Some("payments"));
    assert_eq!(e.meta("level"), Some("info"));
    assert_eq!(stats.label_count, 2);
}

/// Long label values and lines are cut at a character boundary, and counted.
#[test]
fn value_and_line_limits_truncate_on_char_boundaries() {
    let mut c = cfg();
    c.max_label_value_length = 4;
    c.max_line_size = 5;
    let res = [("service.name", "chéckout")]; // "ché" is 4 bytes, "chéc" 5
    let (push, stats) = encode_with(&c, &[request(&res, vec![record(1, "abcdñef"), record(2, "short")])]);
    assert_eq!(push.streams[0].labels, r#"{service_name="ché"}"#);
    let lines: Vec<&str> = push.streams[0].entries.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(lines, ["abcd", "short"]);
    assert_eq!(stats, Stats { label_value_length: 2, line_size: 1, ..Stats::default() });
    // 0 = no line limit.
    c.max_line_size = 0;
    let (push, stats) = encode_with(&c, &[request(&res, vec![record(1, "añoañoaño")])]);
    assert_eq!(push.streams[0].entries[0].line, "añoañoaño");
    assert_eq!(stats.line_size, 0);
}

/// A record with `n` attributes `attr_0`.. (values `v0`..), trace and span ids.
fn wide_record(time: u64, n: usize) -> LogRecord {
    let mut r = record(time, "wide");
    r.attributes = (0..n).map(|i| kv(&format!("attr_{i}"), s(&format!("v{i}")))).collect();
    r.trace_id = vec![0xab; 16];
    r.span_id = vec![0xcd; 8];
    r
}

fn names(e: &EntryAdapter) -> Vec<&str> {
    e.structured_metadata.iter().map(|p| p.name.as_str()).collect()
}

/// Loki's measure of an entry's structured metadata: name bytes plus value bytes of every pair.
fn meta_size(e: &EntryAdapter) -> usize {
    e.structured_metadata.iter().map(|p| p.name.len() + p.value.len()).sum()
}

/// 200 attributes + ids + scope + resource (205 pairs) past Loki's default 128 entries: the
/// first 128 in priority order are kept (ids first, then the record's attributes in order;
/// scope and resource metadata are the first to go), the record is counted once as
/// `metadata_entries`, and the next record of the same scope still has its scope's and
/// resource's metadata.
#[test]
fn metadata_entries_limit_keeps_the_highest_priority_pairs() {
    let (push, stats) = encode_with(&cfg(), &[request(CHECKOUT, vec![wide_record(1, 200), wide_record(2, 3)])]);
    let entries = &push.streams[0].entries;
    let e = &entries[0];
    assert_eq!(e.structured_metadata.len(), 128);
    let mut want = vec!["trace_id".to_string(), "span_id".to_string()];
    want.extend((0..126).map(|i| format!("attr_{i}")));
    assert_eq!(names(e), want);
    assert_eq!(e.meta("trace_id"), Some("abababababababababababababababab"));
    assert_eq!(e.meta("span_id"), Some("cdcdcdcdcdcdcdcd"));
    assert_eq!(e.meta("attr_125"), Some("v125"));
    assert_eq!(e.meta("owner_contact"), None);
    assert_eq!(stats, Stats { metadata_entries: 1, ..Stats::default() });
    assert_eq!(
        names(&entries[1]),
        ["trace_id", "span_id", "attr_0", "attr_1", "attr_2", "scope_name", "scope_version", "owner_contact"]
    );

    // The same batch as JSON: the same 128 pairs.
    let plan = Plan::new(&cfg());
    let mut enc = Encoder::new();
    enc.add_request(&plan, &request(CHECKOUT, vec![wide_record(1, 200)]), NOW).expect("ok");
    let mut out = Vec::new();
    enc.encode_json(&mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    let meta = v["streams"][0]["values"][0][2].as_object().expect("metadata object");
    assert_eq!(meta.len(), 128);
    assert_eq!(meta["trace_id"], "abababababababababababababababab");
    assert_eq!(meta["attr_125"], "v125");
    assert!(!meta.contains_key("attr_126") && !meta.contains_key("owner_contact"));

    // 0 = no limit: all 205 pairs.
    let mut c = cfg();
    c.max_structured_metadata_entries = 0;
    let (push, stats) = encode_with(&c, &[request(CHECKOUT, vec![wide_record(1, 200)])]);
    assert_eq!(push.streams[0].entries[0].structured_metadata.len(), 205);
    assert_eq!(stats, Stats::default());
}

/// An attribute value larger than Loki's default 64KB of metadata: that pair is left out,
/// the pairs around it (smaller, they fit) are kept, and the record is counted once as
/// `metadata_size`.
#[test]
fn metadata_size_limit_leaves_out_what_does_not_fit() {
    let mut r = wide_record(1, 2);
    r.attributes.insert(1, kv("payload", s(&"x".repeat(70_000))));
    let (push, stats) = encode_with(&cfg(), &[request(CHECKOUT, vec![r])]);
    let e = &push.streams[0].entries[0];
    assert_eq!(names(e), ["trace_id", "span_id", "attr_0", "attr_1", "scope_name", "scope_version", "owner_contact"]);
    assert!(meta_size(e) <= 65536);
    assert_eq!(stats, Stats { metadata_size: 1, ..Stats::default() });
}

/// A small size limit: pairs are taken in priority order while they fit; the limit itself
/// is allowed (Loki refuses only a size above it); 0 = no limit.
#[test]
fn metadata_size_limit_is_loki_measure_and_inclusive() {
    let mut r = record(1, "x");
    r.trace_id = vec![1; 16]; // "trace_id" + 32 hex = 40 bytes
    r.span_id = vec![2; 8]; // "span_id" + 16 hex = 23 bytes, 63 in all
    r.attributes = vec![kv("a", s(&"1".repeat(20))), kv("b", s(&"2".repeat(20)))]; // 21 each
    let mut c = cfg();
    // 63 + 21 = 84; "b" (105) does not fit, "scope_name"+"app.logger" (104) neither,
    // "scope_version"+"1.2" (100) does, exactly; "owner_contact"+"#payments" (122) does not.
    c.max_structured_metadata_size = 100;
    let (push, stats) = encode_with(&c, &[request(CHECKOUT, vec![r.clone()])]);
    let e = &push.streams[0].entries[0];
    assert_eq!(names(e), ["trace_id", "span_id", "a", "scope_version"]);
    assert_eq!(meta_size(e), 100);
    assert_eq!(stats, Stats { metadata_size: 1, ..Stats::default() });

    // Both limits bite: "a", "b", "scope_name" do not fit in 80 bytes, "scope_version" (79)
    // does and is the 3rd pair, so "owner_contact" is past the count. One count per reason.
    c.max_structured_metadata_entries = 3;
    c.max_structured_metadata_size = 80;
    let (push, stats) = encode_with(&c, &[request(CHECKOUT, vec![r.clone()])]);
    assert_eq!(names(&push.streams[0].entries[0]), ["trace_id", "span_id", "scope_version"]);
    assert_eq!(stats, Stats { metadata_entries: 1, metadata_size: 1, ..Stats::default() });
    // Only the count bites.
    c.max_structured_metadata_entries = 2;
    c.max_structured_metadata_size = 70;
    let (push, stats) = encode_with(&c, &[request(CHECKOUT, vec![r.clone()])]);
    assert_eq!(names(&push.streams[0].entries[0]), ["trace_id", "span_id"]);
    assert_eq!(stats, Stats { metadata_entries: 1, ..Stats::default() });

    c.max_structured_metadata_entries = 0;
    c.max_structured_metadata_size = 0;
    let (push, stats) = encode_with(&c, &[request(CHECKOUT, vec![r])]);
    assert_eq!(push.streams[0].entries[0].structured_metadata.len(), 7);
    assert_eq!(stats, Stats::default());
}

// --- robustness --------------------------------------------------------------------------------

fn field(n: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![(n << 3) | 2];
    let mut len = body.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(body);
    out
}

/// A record whose attribute value is not decodable is dropped and counted; its neighbours
/// are sent. Garbage never panics.
#[test]
fn malformed_record_is_dropped_and_counted() {
    let good = record(1, "good").encode_to_vec();
    // KeyValue{key:"k", value: AnyValue{string_value as a varint}}.
    let bad_kv = [field(1, b"k"), field(2, &[0x08, 0x01])].concat();
    let bad = [field(6, &bad_kv), field(5, &field(1, b"bad"))].concat();
    let scope = [field(2, &good), field(2, &bad)].concat();
    let rl = [field(1, &field(1, &[field(1, b"service.name"), field(2, &field(1, b"a"))].concat())), field(2, &scope)]
        .concat();
    let req = field(1, &rl);
    let (push, stats) = encode_with(&cfg(), std::slice::from_ref(&req));
    assert_eq!(push.streams[0].entries.len(), 1);
    assert_eq!(push.streams[0].entries[0].line, "good");
    assert_eq!(stats.malformed, 1);

    // Truncations of the request never panic.
    let plan = Plan::new(&cfg());
    let mut enc = Encoder::new();
    for n in 0..req.len() {
        enc.reset();
        let _ = enc.add_request(&plan, &req[..n], NOW);
        let mut out = Vec::new();
        enc.encode_protobuf(&mut out);
        enc.encode_json(&mut out);
    }
}

/// The encoder keeps nothing from one batch to the next.
#[test]
fn reset_forgets_the_previous_batch() {
    let plan = Plan::new(&cfg());
    let mut enc = Encoder::new();
    enc.add_request(&plan, &request(CHECKOUT, vec![record(1, "x")]), NOW).expect("ok");
    enc.reset();
    enc.add_request(&plan, &request(&[("service.name", "b")], vec![record(2, "y")]), NOW).expect("ok");
    let mut out = Vec::new();
    enc.encode_protobuf(&mut out);
    let push = PushRequest::decode(&out[..]).expect("decode");
    assert_eq!(push.streams.len(), 1);
    assert_eq!(push.streams[0].labels, r#"{service_name="b"}"#);
    assert_eq!(push.streams[0].entries.len(), 1);
}

// --- JSON --------------------------------------------------------------------------------------

/// The JSON body is Loki's: stream labels as an object, values as [ns string, line, metadata].
#[test]
fn json_encoding() {
    let mut r = record(1_700_000_000_000_000_001, "line \"one\"");
    r.attributes = vec![kv("user.id", s("u1"))];
    let plan = Plan::new(&cfg());
    let mut enc = Encoder::new();
    enc.add_request(&plan, &request(CHECKOUT, vec![r, record(2, "two")]), NOW).expect("ok");
    let mut out = Vec::new();
    enc.encode_json(&mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    let st = &v["streams"][0];
    assert_eq!(st["stream"]["owner_team"], "payments");
    assert_eq!(st["stream"]["service_name"], "checkout");
    assert_eq!(st["values"][0][0], "2");
    assert_eq!(st["values"][1][0], "1700000000000000001");
    assert_eq!(st["values"][1][1], "line \"one\"");
    assert_eq!(st["values"][1][2]["user_id"], "u1");
    assert_eq!(st["values"][1][2]["owner_contact"], "#payments");
}

// --- the sender ---------------------------------------------------------------------------------

fn batch(reqs: &[Vec<u8>]) -> Batch {
    let mut b = Batch::new(Signal::Logs);
    for r in reqs {
        b.push(Payload::new(Signal::Logs, Bytes::from(r.clone()), 1, None));
    }
    b
}

#[derive(Clone, Debug)]
struct Seen {
    headers: HeaderMap,
    body: Bytes,
}

/// A one-route HTTP server answering every push with `status` (and `extra` headers), and
/// handing each request to the test.
async fn server(
    status: u16,
    extra: &'static [(&'static str, &'static str)],
    reply: &'static str,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/loki/api/v1/push",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Seen { headers, body });
                let mut resp = http::Response::builder().status(status);
                for (k, v) in extra {
                    resp = resp.header(*k, *v);
                }
                resp.body(axum::body::Body::from(reply)).expect("response")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/loki/api/v1/push"), rx)
}

/// A protobuf push: snappy block body, Loki's content type, the tenant header; the limited
/// records are counted with bounded reasons, and the metric names follow the rules.
#[tokio::test]
async fn sends_snappy_protobuf_with_tenant() {
    let (url, mut rx) = server(204, &[], "").await;
    let mut c = LokiConfig::new(url);
    c.tenant_id = Some("team-a".into());
    c.max_line_size = 3;
    let registry = Registry::new();
    let (sender, _) = build_loki("loki/a", Signal::Logs, &c, &registry).expect("build");
    let b = batch(&[request(CHECKOUT, vec![record(1, "hello")]), request(CHECKOUT, vec![record(2, "hi")])]);
    sender.send(&b).await.expect("sent");
    let seen = rx.recv().await.expect("a request");
    assert_eq!(seen.headers["content-type"], "application/x-protobuf");
    assert_eq!(seen.headers["x-scope-orgid"], "team-a");
    assert!(seen.headers.get("content-encoding").is_none());
    let raw = snap::raw::Decoder::new().decompress_vec(&seen.body).expect("snappy block");
    let push = PushRequest::decode(&raw[..]).expect("PushRequest");
    assert_eq!(push.streams.len(), 1);
    let lines: Vec<&str> = push.streams[0].entries.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(lines, ["hel", "hi"]);
    assert_eq!(
        registry
            .value("sightline_exporter_limited_log_records_total", &[("exporter", "loki/a"), ("reason", "line_size")]),
        Some(1)
    );
    registry.assert_compliant();
}

/// The metadata limits through the sender: a record with too many pairs and one with too
/// large a pair are each counted once under their bounded reason, and sent (trimmed) with
/// their ids; a batch of normal records leaves both counters at 0.
#[tokio::test]
async fn metadata_limits_are_counted_per_record() {
    let (url, mut rx) = server(204, &[], "").await;
    let registry = Registry::new();
    let (sender, _) = build_loki("loki/m", Signal::Logs, &LokiConfig::new(url), &registry).expect("build");
    let value = |reason: &str| {
        registry.value("sightline_exporter_limited_log_records_total", &[("exporter", "loki/m"), ("reason", reason)])
    };

    sender.send(&batch(&[request(CHECKOUT, vec![record(1, "a"), record(2, "b")])])).await.expect("sent");
    rx.recv().await.expect("a request");
    assert_eq!((value("metadata_entries"), value("metadata_size")), (Some(0), Some(0)));

    let mut huge = wide_record(4, 1);
    huge.attributes.push(kv("payload", s(&"y".repeat(100_000))));
    sender.send(&batch(&[request(CHECKOUT, vec![wide_record(3, 200), huge, record(5, "c")])])).await.expect("sent");
    let seen = rx.recv().await.expect("a request");
    let raw = snap::raw::Decoder::new().decompress_vec(&seen.body).expect("snappy block");
    let push = PushRequest::decode(&raw[..]).expect("PushRequest");
    let entries = &push.streams[0].entries;
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].structured_metadata.len(), 128);
    assert_eq!(entries[1].meta("payload"), None);
    for e in &entries[..2] {
        assert!(e.meta("trace_id").is_some() && e.meta("span_id").is_some(), "{:?}", names(e));
    }
    assert_eq!(entries[2].meta("owner_contact"), Some("#payments"));
    assert_eq!((value("metadata_entries"), value("metadata_size")), (Some(1), Some(1)));
    for reason in ["label_count", "label_value_length", "line_size"] {
        assert_eq!(value(reason), Some(0), "{reason}");
    }
    registry.assert_compliant();
}

/// JSON with gzip: the body inflates to Loki's JSON push.
#[tokio::test]
async fn sends_gzip_json() {
    use std::io::Read as _;
    let (url, mut rx) = server(204, &[], "").await;
    let mut c = LokiConfig::new(url);
    c.encoding = Encoding::Json;
    let (sender, _) = build_loki("loki", Signal::Logs, &c, &Registry::new()).expect("build");
    sender.send(&batch(&[request(CHECKOUT, vec![record(1, "hello")])])).await.expect("sent");
    let seen = rx.recv().await.expect("a request");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(seen.headers["content-encoding"], "gzip");
    let mut json = String::new();
    flate2::read::GzDecoder::new(&seen.body[..]).read_to_string(&mut json).expect("gzip");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["streams"][0]["values"][0][1], "hello");
}

/// 429 and 5xx are retryable (with the server's Retry-After); other 4xx are permanent, and
/// the backend's explanation is in the error.
#[tokio::test]
async fn status_codes_are_classified() {
    let b = batch(&[request(CHECKOUT, vec![record(1, "x")])]);
    for (status, extra, retryable, after) in [
        (429u16, &[("retry-after", "7")][..], true, Some(Duration::from_secs(7))),
        (500, &[][..], true, None),
        (503, &[("retry-after", "2")][..], true, Some(Duration::from_secs(2))),
        (400, &[][..], false, None),
        (413, &[][..], false, None),
    ] {
        let (url, _rx) = server(status, extra, "entry too far behind").await;
        let (sender, _) = build_loki("loki", Signal::Logs, &LokiConfig::new(url), &Registry::new()).expect("build");
        let e = sender.send(&b).await.expect_err("must fail");
        assert_eq!(e.retryable, retryable, "{status}");
        assert_eq!(e.retry_after, after, "{status}");
        assert!(e.message.contains("entry too far behind") && e.message.contains(&status.to_string()), "{}", e.message);
    }
}

/// Only logs pipelines: traces or metrics is a build error.
#[test]
fn logs_only() {
    for signal in [Signal::Traces, Signal::Metrics] {
        let e = build_loki("loki", signal, &cfg(), &Registry::new()).err().expect("rejected");
        assert!(e.to_string().contains("logs only"), "{e}");
    }
}
