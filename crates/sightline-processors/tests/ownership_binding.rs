//! The ownership processor with a payload bound to an authenticated team
//! (`auth.bind_ownership_to_token` on the receiver): the token's team wins over the catalog and
//! over client attributes; a service the catalog gives to another team is refused
//! (`PermissionDenied`, naming the service and both teams) or re-attributed; a service the
//! catalog does not know goes to the token's team; unbound payloads are unchanged.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sightline_core::{BoundTeam, Payload, ProcessError, Processor, Registry, Signal, TeamMismatch};
use sightline_ownership::CatalogHandle;
use sightline_processors::ownership::{OwnershipConfig, OwnershipProcessor};
use std::sync::Arc;

const CATALOG: &str = r##"
teams:
  - name: payments
    contact: "#payments"
    oncall: "pagerduty:PAY123"
  - name: search
    contact: search@acme.test
services:
  - name: checkout
    team: payments
    system: storefront
  - name: indexer
    team: search
"##;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn request(services: &[&str]) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: services
            .iter()
            .map(|s| ResourceSpans {
                resource: Some(Resource {
                    // A client trying to claim the resource for a team of its choosing.
                    attributes: vec![kv("service.name", s), kv("owner.team", "forged")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span { trace_id: vec![1; 16], span_id: vec![2; 8], ..Default::default() }],
                    ..Default::default()
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// (service.name, owner.team, owner.source) per resource.
fn owners(bytes: &[u8]) -> Vec<(String, String, String)> {
    let r = ExportTraceServiceRequest::decode(bytes).expect("decodes");
    r.resource_spans
        .iter()
        .map(|rs| {
            let a = &rs.resource.as_ref().expect("resource").attributes;
            let get = |k: &str| {
                let v: Vec<_> = a.iter().filter(|x| x.key == k).collect();
                assert!(v.len() <= 1, "{k} written twice");
                match v.first().and_then(|x| x.value.as_ref()).and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    _ => String::new(),
                }
            };
            (get("service.name"), get("owner.team"), get("owner.source"))
        })
        .collect()
}

fn setup(name: &str) -> (OwnershipProcessor, Registry, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("sightline-binding-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("teams.yaml"), CATALOG).expect("write");
    let yaml = format!("catalog: [{}]\nwatch: false\n", dir.display());
    let cfg: OwnershipConfig = serde_yaml_ng::from_str(&yaml).expect("config");
    let handle = Arc::new(CatalogHandle::new(cfg.catalog_config()).expect("catalog"));
    let reg = Registry::new();
    (OwnershipProcessor::new("ownership", Signal::Traces, &cfg, handle, &reg), reg, dir)
}

fn payload(services: &[&str], team: Option<(&str, TeamMismatch)>) -> Payload {
    let b = request(services);
    Payload::new(Signal::Traces, Bytes::from(b), services.len() as u64, None)
        .with_bound_team(team.map(|(t, m)| BoundTeam { team: t.into(), on_mismatch: m }))
}

fn mismatches(reg: &Registry, team: &str, catalog_team: &str, action: &str) -> i64 {
    reg.value(
        "sightline_ownership_team_mismatch_resources_total",
        &[
            ("processor", "ownership"),
            ("signal", "traces"),
            ("team", team),
            ("catalog_team", catalog_team),
            ("action", action),
        ],
    )
    .unwrap_or(0)
}

/// Reject (the default): a request naming another team's service is refused as a whole with
/// a message that names the service and both teams; its resources are not counted as
/// received. The token's own services and unknown services pass, attributed to its team.
#[test]
fn mismatch_is_rejected() {
    let (p, reg, dir) = setup("reject");
    let bound = Some(("search", TeamMismatch::Reject));
    // Twice: the second time from the cache.
    for _ in 0..2 {
        let e = p.process(payload(&["indexer", "checkout"], bound)).expect_err("refused");
        let ProcessError::PermissionDenied { message } = e else { panic!("wrong error: {e:?}") };
        assert!(
            message.contains("\"checkout\"") && message.contains("\"payments\"") && message.contains("\"search\""),
            "{message}"
        );
    }
    assert_eq!(mismatches(&reg, "search", "payments", "rejected"), 2);
    assert_eq!(reg.sum("sightline_ownership_resources_total"), 0, "refused requests are not counted as enriched");

    for _ in 0..2 {
        let out = p.process(payload(&["indexer", "brand-new"], bound)).expect("accepted");
        assert_eq!(
            owners(out.bytes()),
            [
                ("indexer".into(), "search".into(), "service".into()),
                ("brand-new".into(), "search".into(), "token".into())
            ]
        );
    }
    let resources = |team, source| {
        reg.value(
            "sightline_ownership_resources_total",
            &[("processor", "ownership"), ("signal", "traces"), ("team", team), ("source", source)],
        )
        .unwrap_or(0)
    };
    assert_eq!(resources("search", "service"), 2);
    assert_eq!(resources("search", "token"), 2);
    assert_eq!(reg.sum("sightline_ownership_unowned_resources_total"), 0);
    reg.assert_compliant();
    let _ = std::fs::remove_dir_all(dir);
}

/// Reattribute: another team's service is accepted under the token's team (with that team's
/// contact), counted as a mismatch; forged `owner.team` never survives.
#[test]
fn mismatch_is_reattributed() {
    let (p, reg, dir) = setup("reattribute");
    for _ in 0..2 {
        let out = p.process(payload(&["checkout"], Some(("search", TeamMismatch::Reattribute)))).expect("ok");
        assert_eq!(owners(out.bytes()), [("checkout".into(), "search".into(), "token".into())]);
        let r = ExportTraceServiceRequest::decode(out.bytes().as_ref()).expect("decode");
        let a = &r.resource_spans[0].resource.as_ref().expect("resource").attributes;
        assert!(a.iter().any(|x| x.key == "owner.contact"
            && matches!(x.value.as_ref().and_then(|v| v.value.as_ref()), Some(any_value::Value::StringValue(s)) if s == "search@acme.test")));
        assert!(!a.iter().any(|x| x.key == "owner.system"), "the other team's system is not kept");
    }
    assert_eq!(mismatches(&reg, "search", "payments", "reattributed"), 2);
    // The same resources from another team's token, then unbound: each gets its own answer.
    let out = p.process(payload(&["checkout"], Some(("payments", TeamMismatch::Reattribute)))).expect("ok");
    assert_eq!(owners(out.bytes()), [("checkout".into(), "payments".into(), "service".into())]);
    let out = p.process(payload(&["checkout", "brand-new"], None)).expect("ok");
    assert_eq!(
        owners(out.bytes()),
        [
            ("checkout".into(), "payments".into(), "service".into()),
            ("brand-new".into(), "unowned".into(), "default".into())
        ]
    );
    let _ = std::fs::remove_dir_all(dir);
}
