//! ADR 30: `ownership` followed by a `transform` or `filter` that runs as a wire plan is one
//! rewrite of the request. On random requests (several resource entries, entries without a
//! resource or with their resource in two fields, empty scopes, requests bound to a team that
//! the catalog contradicts), the pipeline's result must be byte for byte what the two
//! processors give one after the other, refusals included, and the counters must agree.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sightline_core::{After, BoundTeam, Payload, Pipeline, ProcessError, Processor, Registry, Signal, TeamMismatch};
use sightline_ownership::CatalogHandle;
use sightline_processors::filter::{FilterConfig, FilterProcessor};
use sightline_processors::ownership::{OwnershipConfig, OwnershipProcessor};
use sightline_processors::transform::{TransformConfig, TransformProcessor};
use std::sync::Arc;

const CATALOG: &str = r##"
teams:
  - name: payments
    contact: "#payments"
  - name: search
    contact: search@acme.test
services:
  - name: checkout
    team: payments
    system: storefront
rules:
  - match: { k8s.namespace.name: search }
    team: search
"##;

/// A small deterministic generator (xorshift64*), so a failure names its case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn resource(rng: &mut Rng) -> Resource {
    let mut attributes = vec![kv("service.name", rng.pick(&["checkout", "search-api", "billing"]))];
    if rng.chance(30) {
        attributes.push(kv("k8s.namespace.name", "search"));
    }
    if rng.chance(20) {
        attributes.push(kv("owner.team", "forged"));
    }
    Resource { attributes, ..Default::default() }
}

fn item_attributes(rng: &mut Rng) -> Vec<KeyValue> {
    let mut out = Vec::new();
    for _ in 0..rng.below(5) {
        let (k, v) = match rng.below(5) {
            0 => ("http.route", rng.pick(&["/healthz", "/api/cart"])),
            1 => ("url.path", "/api/cart/42"),
            2 => ("deployment.environment.name", "dev"),
            3 => ("drop", rng.pick(&["yes", "no"])),
            _ => ("peer.service", "db"),
        };
        out.push(kv(k, v));
    }
    out
}

/// One `Resource*` entry's bytes: the resource in one field, in two (protobuf merges them),
/// or absent, and sometimes a schema URL before it.
fn entry<M: Message>(rng: &mut Rng, body: M, res: Option<Resource>, with: impl Fn(Option<Resource>) -> M) -> Vec<u8> {
    let mut b = Vec::new();
    if rng.chance(10) {
        // schema_url (field 3 of both entry types), written first.
        with(None).encode(&mut b).unwrap();
        prost::encoding::string::encode(3, &"https://opentelemetry.io/schemas/1.30.0".to_string(), &mut b);
    }
    body.encode(&mut b).unwrap();
    if let Some(r) = res {
        if rng.chance(15) {
            // The resource's attributes split over two fields.
            let mut first = r.clone();
            let second = Resource { attributes: first.attributes.split_off(first.attributes.len() / 2), ..r };
            with(Some(first)).encode(&mut b).unwrap();
            with(Some(second)).encode(&mut b).unwrap();
        } else {
            with(Some(r)).encode(&mut b).unwrap();
        }
    }
    b
}

fn request(rng: &mut Rng, signal: Signal) -> Vec<u8> {
    let mut req = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let res = rng.chance(85).then(|| resource(rng));
        let scopes = rng.below(4) as usize;
        let bytes = match signal {
            Signal::Traces => {
                let scope_spans = (0..scopes)
                    .map(|s| ScopeSpans {
                        scope: Some(InstrumentationScope { name: format!("lib{s}"), ..Default::default() }),
                        spans: (0..rng.below(5))
                            .map(|i| Span {
                                trace_id: vec![1 + i as u8; 16],
                                span_id: vec![2 + i as u8; 8],
                                name: format!("span{i}"),
                                kind: rng.below(6) as i32,
                                attributes: item_attributes(rng),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect();
                let body = ResourceSpans { scope_spans, ..Default::default() };
                entry(rng, body, res, |resource| ResourceSpans { resource, ..Default::default() })
            }
            _ => {
                let scope_logs = (0..scopes)
                    .map(|_| ScopeLogs {
                        log_records: (0..rng.below(5))
                            .map(|_| LogRecord {
                                severity_number: rng.below(25) as i32,
                                body: Some(AnyValue { value: Some(any_value::Value::StringValue("hello".into())) }),
                                attributes: item_attributes(rng),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect();
                let body = ResourceLogs { scope_logs, ..Default::default() };
                entry(rng, body, res, |resource| ResourceLogs { resource, ..Default::default() })
            }
        };
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut req);
        prost::encoding::encode_varint(bytes.len() as u64, &mut req);
        req.extend_from_slice(&bytes);
    }
    req
}

/// The processors of one pipeline, with their own registry.
struct Set {
    ownership: Arc<OwnershipProcessor>,
    second: Arc<dyn Processor>,
    registry: Registry,
}

fn set(dir: &std::path::Path, signal: Signal, second: &str) -> Set {
    let cfg: OwnershipConfig =
        serde_yaml_ng::from_str(&format!("catalog: [\"{}\"]\nwatch: false\n", dir.display())).unwrap();
    let handle = Arc::new(CatalogHandle::new(cfg.catalog_config()).unwrap());
    let registry = Registry::new();
    let ownership = Arc::new(OwnershipProcessor::new("ownership", signal, &cfg, handle, &registry));
    let second: Arc<dyn Processor> = if second.starts_with("filter") {
        let cfg: FilterConfig = serde_yaml_ng::from_str(second.trim_start_matches("filter")).unwrap();
        Arc::new(FilterProcessor::new("filter", &cfg, signal, &registry).unwrap())
    } else {
        let cfg: TransformConfig = serde_yaml_ng::from_str(second.trim_start_matches("transform")).unwrap();
        Arc::new(TransformProcessor::new("transform", &cfg, signal).unwrap())
    };
    Set { ownership, second, registry }
}

fn outcome(r: Result<Payload, ProcessError>) -> Result<(Bytes, u64, Option<u64>), String> {
    r.map(|p| (p.bytes().clone(), p.items(), p.rejected().map(|r| r.items))).map_err(|e| format!("{e:?}"))
}

/// Each configuration: the benchmark's statements and condition (plans), a log transform and
/// filter (plans), and a statement no plan covers (the pipeline runs the two in turn).
const SECOND: &[(Signal, &str)] = &[
    (
        Signal::Traces,
        r#"transform
trace_statements:
  - 'set(span.attributes["deployment.environment.name"], "prod")'
  - 'delete_key(span.attributes, "url.path")'
  - 'set(span.attributes["http.server.route"], span.attributes["http.route"]) where span.kind == SPAN_KIND_SERVER'
"#,
    ),
    (
        Signal::Traces,
        r#"filter
traces:
  span:
    - 'attributes["http.route"] == "/healthz"'
"#,
    ),
    (
        Signal::Traces,
        r#"transform
trace_statements:
  - 'set(span.attributes["x"], Concat([span.name, "!"], ""))'
"#,
    ),
    (
        Signal::Logs,
        r#"transform
log_statements:
  - 'set(log.attributes["env"], "prod") where log.severity_number < 9'
  - 'delete_key(log.attributes, "drop")'
"#,
    ),
    (
        Signal::Logs,
        r#"filter
logs:
  log_record:
    - 'attributes["drop"] == "yes"'
"#,
    ),
];

#[test]
fn ownership_then_a_wire_plan_is_one_rewrite_with_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("teams.yaml"), CATALOG).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (case, (signal, second)) in SECOND.iter().enumerate() {
        // The same processors' configuration twice: run in turn, and as the pipeline runs them.
        let apart = set(dir.path(), *signal, second);
        let joined = set(dir.path(), *signal, second);
        let pipeline = Pipeline {
            id: "p".into(),
            signal: *signal,
            processors: vec![joined.ownership.clone(), joined.second.clone()],
            exporters: vec![],
        };
        // The plans take the edit; the statement no plan covers declines it.
        let probe = Payload::new(*signal, Bytes::new(), 0, None);
        let stage = joined.ownership.resource_stage().expect("ownership offers its edit");
        let ran = matches!(joined.second.process_after(probe, stage), After::Ran(_));
        assert_eq!(ran, !second.contains("Concat"), "case {case}");
        let (mut refused, mut changed) = (0, 0);
        for round in 0..1500 {
            let bytes = request(&mut rng, *signal);
            let v = sightline_core::ingest::validate(*signal, Bytes::from(bytes)).expect("valid request");
            let mut payload = Payload::new(*signal, v.proto.clone(), v.items, None);
            if round % 3 == 0 {
                payload = payload.with_entry_items(v.entry_items.clone());
            }
            if round % 5 == 0 {
                let team = BoundTeam { team: "payments".into(), on_mismatch: TeamMismatch::Reject };
                payload = payload.with_bound_team(Some(team));
            }
            let owned = apart.ownership.process(payload.clone());
            let owned_bytes = owned.as_ref().ok().map(|p| p.bytes().clone());
            let one_by_one = outcome(owned.and_then(|p| apart.second.process(p)));
            let together = outcome(pipeline.process(payload));
            assert_eq!(together, one_by_one, "case {case} round {round}");
            match (&one_by_one, owned_bytes) {
                (Err(_), _) => refused += 1,
                // The second processor changed what ownership wrote.
                (Ok((b, ..)), Some(o)) if *b != o => changed += 1,
                _ => {}
            }
        }
        // The draws reach both outcomes: refusals, and requests the second processor changes.
        assert!(refused > 0 && changed > 0, "case {case}: refused {refused}, changed {changed}");
        assert_eq!(joined.registry.render(), apart.registry.render(), "case {case}: counters");
    }
}
