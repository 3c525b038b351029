//! The ownership processor on real protobuf: what it writes decodes (prost) to the same spans
//! and log records with the ownership attributes added, forged `owner.*` values are replaced,
//! repeated resources hit the cache, and a catalog reload changes the result on the next
//! request.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sightline_core::{Payload, Processor, Registry, Signal};
use sightline_ownership::CatalogHandle;
use sightline_processors::ownership::{OwnershipConfig, OwnershipProcessor};
use std::sync::Arc;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn attrs(r: &Option<Resource>) -> Vec<(String, String)> {
    r.as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|a| {
            let v = match &a.value.as_ref().unwrap().value {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => format!("{other:?}"),
            };
            (a.key.clone(), v)
        })
        .collect()
}

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
    repository: github.com/acme/checkout
    criticality: high
rules:
  - match: { k8s.namespace.name: search }
    team: search
"##;

fn setup(dir: &std::path::Path) -> (OwnershipProcessor, Arc<CatalogHandle>, Registry) {
    std::fs::write(dir.join("teams.yaml"), CATALOG).unwrap();
    let cfg: OwnershipConfig = serde_yaml_like(dir);
    let handle = Arc::new(CatalogHandle::new(cfg.catalog_config()).unwrap());
    let reg = Registry::new();
    let p = OwnershipProcessor::new("ownership", Signal::Traces, &cfg, handle.clone(), &reg);
    (p, handle, reg)
}

fn serde_yaml_like(dir: &std::path::Path) -> OwnershipConfig {
    OwnershipConfig {
        catalog: vec![dir.to_path_buf()],
        backstage: vec![],
        default_team: "unowned".into(),
        attributes: Default::default(),
        watch: false,
        cache_size: 1024,
        metrics_datapoint_attributes: false,
        kubernetes: Default::default(),
    }
}

fn traces() -> ExportTraceServiceRequest {
    let rs = |attrs: Vec<KeyValue>| ResourceSpans {
        resource: Some(Resource { attributes: attrs, ..Default::default() }),
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                trace_id: vec![7; 16],
                span_id: vec![8; 8],
                name: "GET /".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        schema_url: String::new(),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            rs(vec![kv("service.name", "checkout"), kv("owner.team", "evil"), kv("owner.oncall", "me")]),
            rs(vec![kv("service.name", "indexer"), kv("k8s.namespace.name", "search")]),
            rs(vec![kv("service.name", "mystery")]),
        ],
    }
}

#[test]
fn enriches_every_resource_and_replaces_forged_ownership() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _h, reg) = setup(dir.path());
    let req = traces();
    let payload = Payload::new(Signal::Traces, Bytes::from(req.encode_to_vec()), 3, None);
    let out = p.process(payload).unwrap();
    assert_eq!(out.items(), 3);
    let got = ExportTraceServiceRequest::decode(out.bytes().as_ref()).unwrap();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        attrs(&got.resource_spans[0].resource),
        vec![
            s("service.name", "checkout"),
            s("owner.team", "payments"),
            s("owner.contact", "#payments"),
            s("owner.oncall", "pagerduty:PAY123"),
            s("owner.system", "storefront"),
            s("owner.repository", "github.com/acme/checkout"),
            s("service.criticality", "high"),
            s("owner.source", "service"),
        ]
    );
    assert_eq!(
        attrs(&got.resource_spans[1].resource),
        vec![
            s("service.name", "indexer"),
            s("k8s.namespace.name", "search"),
            s("owner.team", "search"),
            s("owner.contact", "search@acme.test"),
            s("owner.source", "rule:1"),
        ]
    );
    assert_eq!(
        attrs(&got.resource_spans[2].resource),
        vec![s("service.name", "mystery"), s("owner.team", "unowned"), s("owner.source", "default")]
    );
    for (g, o) in got.resource_spans.iter().zip(&req.resource_spans) {
        assert_eq!(g.scope_spans, o.scope_spans, "spans are copied, untouched");
    }
    assert_eq!(
        reg.value(
            "sightline_ownership_resources_total",
            &[("processor", "ownership"), ("signal", "traces"), ("team", "payments"), ("source", "service")]
        ),
        Some(1)
    );
    reg.assert_compliant();
}

#[test]
fn cache_hits_give_the_same_bytes_and_reload_invalidates() {
    let dir = tempfile::tempdir().unwrap();
    let (p, h, reg) = setup(dir.path());
    let bytes = Bytes::from(traces().encode_to_vec());
    let a = p.process(Payload::new(Signal::Traces, bytes.clone(), 3, None)).unwrap();
    let b = p.process(Payload::new(Signal::Traces, bytes.clone(), 3, None)).unwrap();
    assert_eq!(a.bytes(), b.bytes());
    let labels = [("processor", "ownership"), ("signal", "traces"), ("team", "unowned"), ("source", "default")];
    assert_eq!(reg.value("sightline_ownership_resources_total", &labels), Some(2), "counted on hits too");
    let unowned = [("processor", "ownership"), ("signal", "traces")];
    assert_eq!(reg.value("sightline_ownership_unowned_resources_total", &unowned), Some(2));

    // The team takes "mystery" over: the next request sees it.
    std::fs::write(
        dir.path().join("teams.yaml"),
        CATALOG.replace("rules:", "  - name: mystery\n    team: search\nrules:"),
    )
    .unwrap();
    h.reload().unwrap();
    let c = p.process(Payload::new(Signal::Traces, bytes, 3, None)).unwrap();
    let got = ExportTraceServiceRequest::decode(c.bytes().as_ref()).unwrap();
    assert!(attrs(&got.resource_spans[2].resource).contains(&("owner.team".to_string(), "search".to_string())));
}

#[test]
fn logs_without_a_resource_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _h, _reg) = setup(dir.path());
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: None,
            scope_logs: vec![ScopeLogs { log_records: vec![LogRecord::default()], ..Default::default() }],
            schema_url: String::new(),
        }],
    };
    let out = p.process(Payload::new(Signal::Logs, Bytes::from(req.encode_to_vec()), 1, None)).unwrap();
    let got = ExportLogsServiceRequest::decode(out.bytes().as_ref()).unwrap();
    assert_eq!(attrs(&got.resource_logs[0].resource)[0], ("owner.team".to_string(), "unowned".to_string()));
}

#[test]
fn metrics_datapoint_attributes_puts_the_team_on_every_point() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("teams.yaml"), CATALOG).unwrap();
    let handle = Arc::new(CatalogHandle::new(serde_yaml_like(dir.path()).catalog_config()).unwrap());
    let req = |service: &str| ResourceMetrics {
        resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "queue.depth".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![
                        NumberDataPoint { attributes: vec![kv("owner.team", "forged")], ..Default::default() },
                        NumberDataPoint::default(),
                    ],
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let buf = ExportMetricsServiceRequest { resource_metrics: vec![req("checkout"), req("other")] }.encode_to_vec();
    let point_teams = |on: bool| {
        let reg = Registry::new();
        let mut cfg = serde_yaml_like(dir.path());
        cfg.metrics_datapoint_attributes = on;
        let p = OwnershipProcessor::new("ownership", Signal::Metrics, &cfg, handle.clone(), &reg);
        let out = p.process(Payload::new(Signal::Metrics, Bytes::from(buf.clone()), 4, None)).unwrap();
        let got = ExportMetricsServiceRequest::decode(&out.bytes()[..]).unwrap();
        let teams: Vec<Vec<String>> = got
            .resource_metrics
            .iter()
            .flat_map(|rm| rm.scope_metrics[0].metrics[0].data.clone())
            .flat_map(|d| match d {
                metric::Data::Gauge(g) => g.data_points,
                _ => unreachable!(),
            })
            .map(|p| {
                p.attributes
                    .iter()
                    .filter(|a| a.key == "owner.team")
                    .map(|a| format!("{:?}", a.value.as_ref().unwrap().value.as_ref().unwrap()))
                    .collect()
            })
            .collect();
        (teams, reg.sum("sightline_ownership_datapoints_total"))
    };
    let (on, n) = point_teams(true);
    let s = |t: &str| vec![format!("{:?}", any_value::Value::StringValue(t.into()))];
    assert_eq!(on, vec![s("payments"), s("payments"), s("unowned"), s("unowned")]);
    assert_eq!(n, 4);
    // Off (the default): the points are untouched, the forged value stays where the client put it.
    let (off, n) = point_teams(false);
    assert_eq!(off, vec![s("forged"), vec![], s("forged"), vec![]]);
    assert_eq!(n, 0);
}

#[test]
fn items_per_team_and_unowned_services_for_the_governance_view() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("teams.yaml"), CATALOG).unwrap();
    let cfg = serde_yaml_like(dir.path());
    let handle = Arc::new(CatalogHandle::new(cfg.catalog_config()).unwrap());
    let reg = Registry::new();
    let g = Arc::new(sightline_core::Governance::new(10));
    let p = OwnershipProcessor::new("ownership", Signal::Traces, &cfg, handle, &reg).with_governance(g.clone());
    let mut req = traces();
    // Three spans for the unowned service, with its SDK's language.
    let r = &mut req.resource_spans[2];
    r.resource.as_mut().unwrap().attributes.push(kv("telemetry.sdk.language", "python"));
    let span = r.scope_spans[0].spans[0].clone();
    r.scope_spans[0].spans.extend([span.clone(), span]);
    // Once with the items of each entry counted here, once with the counts the receivers'
    // check hands over with the payload.
    for from_receiver in [false, true] {
        let bytes = Bytes::from(req.encode_to_vec());
        let payload = if from_receiver {
            let v = sightline_core::ingest::validate(Signal::Traces, bytes).unwrap();
            assert_eq!(v.entry_items, [1, 1, 3]);
            Payload::new(Signal::Traces, v.proto, v.items, None).with_entry_items(v.entry_items)
        } else {
            Payload::new(Signal::Traces, bytes, 5, None)
        };
        p.process(payload).unwrap();
    }
    let items = |team: &str, kind: &str| {
        reg.value("sightline_team_received_items_total", &[("signal", "traces"), ("team", team), ("source_kind", kind)])
    };
    assert_eq!(
        (items("payments", "service"), items("search", "rule"), items("unowned", "default")),
        (Some(2), Some(2), Some(6))
    );
    let top = g.top_unowned(5);
    assert_eq!(top.len(), 1);
    assert_eq!((&*top[0].service, &*top[0].language, top[0].items()), ("mystery", "python", 6));
    assert!(top[0].bytes() > 0 && top[0].last_seen() >= top[0].first_seen);
}
