//! The corpus generator and the matching catalog.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sightline_bench_tools::{CorpusConfig, Signal, SpanSize, catalog_yaml, corpus, org, read_stamp};
use sightline_core::wire;
use std::collections::{BTreeMap, BTreeSet, HashMap};

fn cfg(signal: Signal, span_size: SpanSize, requests: usize) -> CorpusConfig {
    CorpusConfig { signal, span_size, requests, ..Default::default() }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

/// Per request: the decoded resources and the item count prost sees.
fn decode(signal: Signal, bytes: &[u8]) -> (Vec<Resource>, u64) {
    match signal {
        Signal::Traces => {
            let r = ExportTraceServiceRequest::decode(bytes).expect("decodes");
            let items = r.resource_spans.iter().flat_map(|x| &x.scope_spans).map(|s| s.spans.len() as u64).sum();
            (r.resource_spans.into_iter().map(|x| x.resource.expect("resource")).collect(), items)
        }
        Signal::Logs => {
            let r = ExportLogsServiceRequest::decode(bytes).expect("decodes");
            let items = r.resource_logs.iter().flat_map(|x| &x.scope_logs).map(|s| s.log_records.len() as u64).sum();
            (r.resource_logs.into_iter().map(|x| x.resource.expect("resource")).collect(), items)
        }
        Signal::Metrics => {
            let r = ExportMetricsServiceRequest::decode(bytes).expect("decodes");
            let mut kinds = BTreeSet::new();
            let items = r
                .resource_metrics
                .iter()
                .flat_map(|x| &x.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|m| match m.data.as_ref().expect("data") {
                    metric::Data::Gauge(g) => {
                        kinds.insert("gauge");
                        g.data_points.len() as u64
                    }
                    metric::Data::Sum(s) => {
                        kinds.insert(if s.is_monotonic { "monotonic sum" } else { "sum" });
                        s.data_points.len() as u64
                    }
                    metric::Data::Histogram(h) => {
                        kinds.insert("histogram");
                        h.data_points.len() as u64
                    }
                    _ => panic!("unexpected metric type"),
                })
                .sum();
            assert!(kinds.len() >= 3, "a request mixes metric types: {kinds:?}");
            (r.resource_metrics.into_iter().map(|x| x.resource.expect("resource")).collect(), items)
        }
    }
}

#[test]
fn requests_decode_and_counts_match_inspect() {
    for signal in Signal::ALL {
        for size in [SpanSize::Small, SpanSize::Large] {
            let c = corpus(&cfg(signal, size, 12));
            assert_eq!(c.requests.len(), 12);
            for r in &c.requests {
                let summary = wire::inspect(signal, &r.bytes).expect("valid OTLP");
                assert_eq!(summary.invalid_items, 0);
                assert_eq!(summary.items, r.items, "{signal} {size:?}");
                assert_eq!(r.items, 500, "items_per_request");
                assert_eq!(summary.resources, r.resources);
                let (resources, items) = decode(signal, &r.bytes);
                assert_eq!(items, r.items, "prost and inspect agree ({signal})");
                assert!(resources.len() >= 4, "several resources per request");
                for res in &resources {
                    for key in [
                        "service.name",
                        "service.namespace",
                        "service.instance.id",
                        "k8s.namespace.name",
                        "host.name",
                        "telemetry.sdk.name",
                        "telemetry.sdk.language",
                        "telemetry.sdk.version",
                    ] {
                        assert!(attr(&res.attributes, key).is_some(), "resource has {key}");
                    }
                }
            }
            println!("{}", c.summary());
        }
    }
}

#[test]
fn spans_are_varied() {
    let c = corpus(&cfg(Signal::Traces, SpanSize::Small, 10));
    let mut span_ids = BTreeSet::new();
    let mut trace_ids = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let mut errors = 0;
    let mut with_events = 0;
    let mut spans = 0;
    let mut scopes = 0;
    for r in &c.requests {
        let req = ExportTraceServiceRequest::decode(r.bytes.clone()).expect("decodes");
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                scopes += 1;
                for s in &ss.spans {
                    spans += 1;
                    assert_eq!(s.trace_id.len(), 16);
                    assert_eq!(s.span_id.len(), 8);
                    assert!(s.end_time_unix_nano > s.start_time_unix_nano);
                    span_ids.insert(s.span_id.clone());
                    trace_ids.insert(s.trace_id.clone());
                    names.insert(s.name.clone());
                    kinds.insert(s.kind);
                    errors += usize::from(s.status.as_ref().is_some_and(|st| st.code == 2));
                    with_events += usize::from(!s.events.is_empty());
                }
            }
        }
    }
    assert_eq!(span_ids.len(), spans, "span ids are distinct");
    assert!(trace_ids.len() > spans / 5, "traces of a few spans each");
    assert!(names.len() > 50, "varied span names: {}", names.len());
    assert_eq!(kinds.len(), 5, "all span kinds");
    assert!(errors > 0 && errors < spans / 10, "a few error spans: {errors}");
    assert!(with_events > 0, "events on some spans");
    assert!(scopes > c.requests.len() * 4, "several scopes per request");
    assert_eq!(
        corpus(&cfg(Signal::Traces, SpanSize::Small, 3)).requests[2].bytes.len(),
        corpus(&cfg(Signal::Traces, SpanSize::Small, 3)).requests[2].bytes.len(),
        "deterministic for a seed"
    );
}

#[test]
fn span_sizes_are_near_their_targets() {
    for (size, target) in [(SpanSize::Small, 250.0), (SpanSize::Large, 1700.0)] {
        let c = corpus(&cfg(Signal::Traces, size, 30));
        let avg = c.avg_item_bytes();
        println!("{size:?}: {avg:.1} B per span ({:.1} B span messages alone)", c.avg_item_message_bytes());
        assert!((avg - target).abs() <= target * 0.2, "{size:?}: {avg:.1} B per span, target {target}");
        assert!((c.avg_item_message_bytes() - target).abs() <= target * 0.2);
    }
}

#[test]
fn read_stamp_finds_what_was_patched() {
    let when = sightline_bench_tools::unix_nanos() + 86_400_000_000_123;
    for signal in Signal::ALL {
        let c = corpus(&cfg(signal, SpanSize::Small, 3));
        for r in &c.requests {
            let original = read_stamp(signal, &r.bytes).expect("generated requests carry a timestamp");
            assert!(original < when);
            // In place, as the load generator does, also behind a gRPC frame header.
            for base in [0usize, 5] {
                let mut buf = vec![0u8; base];
                buf.extend_from_slice(&r.bytes);
                r.patch(&mut buf, base, when);
                assert_eq!(read_stamp(signal, &buf[base..]), Some(when), "{signal}");
                assert_eq!(buf.len(), r.bytes.len() + base, "patching does not change the size");
            }
            let mut buf = r.bytes.to_vec();
            r.patch(&mut buf, 0, when);
            // The value prost sees is the stamp, on the first item.
            match signal {
                Signal::Traces => {
                    let req = ExportTraceServiceRequest::decode(&buf[..]).expect("decodes");
                    let s = &req.resource_spans[0].scope_spans[0].spans[0];
                    assert_eq!(s.start_time_unix_nano, when);
                    assert_eq!(s.end_time_unix_nano, when + r.stamp_span_nanos, "the stamped span keeps its duration");
                    assert!(r.stamp_span_nanos > 0);
                }
                Signal::Logs => {
                    let req = ExportLogsServiceRequest::decode(&buf[..]).expect("decodes");
                    assert_eq!(req.resource_logs[0].scope_logs[0].log_records[0].time_unix_nano, when);
                }
                Signal::Metrics => {
                    let req = ExportMetricsServiceRequest::decode(&buf[..]).expect("decodes");
                    let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
                    let t = match m.data.as_ref().expect("data") {
                        metric::Data::Gauge(g) => g.data_points[0].time_unix_nano,
                        metric::Data::Sum(s) => s.data_points[0].time_unix_nano,
                        metric::Data::Histogram(h) => h.data_points[0].time_unix_nano,
                        _ => unreachable!(),
                    };
                    assert_eq!(t, when);
                }
            }
            // A re-encoded request (what the collector does) keeps the stamp.
            let reencoded = match signal {
                Signal::Traces => ExportTraceServiceRequest::decode(&buf[..]).unwrap().encode_to_vec(),
                Signal::Logs => ExportLogsServiceRequest::decode(&buf[..]).unwrap().encode_to_vec(),
                Signal::Metrics => ExportMetricsServiceRequest::decode(&buf[..]).unwrap().encode_to_vec(),
            };
            assert_eq!(read_stamp(signal, &reencoded), Some(when));
            // Zero means "not stamped".
            r.patch(&mut buf, 0, 0);
            assert_eq!(read_stamp(signal, &buf), None);
        }
    }
    assert_eq!(read_stamp(Signal::Traces, b""), None);
    assert_eq!(read_stamp(Signal::Traces, b"\x0a\x05garbage"), None);
}

#[test]
fn every_service_and_team_is_in_the_default_corpus() {
    // The default corpus shape (200 requests), with fewer items per request to stay fast.
    let c = corpus(&CorpusConfig { items_per_request: 20, ..Default::default() });
    let o = org(500, 40);
    let team_of: HashMap<&str, &str> =
        o.services.iter().map(|s| (s.name.as_str(), o.teams[s.team].name.as_str())).collect();
    let mut services = BTreeSet::new();
    let mut teams = BTreeSet::new();
    let mut instances = BTreeSet::new();
    for r in &c.requests {
        let (resources, _) = decode(Signal::Traces, &r.bytes);
        for res in resources {
            let name = attr(&res.attributes, "service.name").expect("service.name").to_string();
            teams.insert(team_of[name.as_str()]);
            instances.insert(attr(&res.attributes, "service.instance.id").expect("id").to_string());
            services.insert(name);
        }
    }
    assert_eq!(services.len(), 500, "500 distinct services");
    assert_eq!(teams.len(), 40, "40 teams");
    assert!(instances.len() > 500, "several instances per service");
    assert_eq!(c.distinct_resources, instances.len());
    for name in ["checkout", "frontend", "cartservice"] {
        assert!(services.contains(name));
    }
    assert!(services.iter().any(|s| s.starts_with("pay-")), "generated names like pay-api-17");
}

#[test]
fn catalog_parses_and_resolves_every_service_to_its_team() {
    let cfg = CorpusConfig::default();
    let yaml = catalog_yaml(&cfg);
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).expect("valid YAML");
    let teams = doc["teams"].as_sequence().expect("teams");
    assert_eq!(teams.len(), 40);
    let listed: BTreeSet<&str> =
        doc["services"].as_sequence().expect("services").iter().map(|s| s["name"].as_str().expect("name")).collect();
    assert!(doc["rules"].as_sequence().expect("rules").len() >= 4);

    // Load it with Sightline's own catalog loader and resolve every service.
    let dir = std::env::temp_dir().join(format!("sightline-bench-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bench.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let catalog =
        sightline_ownership::load(&sightline_ownership::CatalogConfig { catalog: vec![file], ..Default::default() })
            .unwrap_or_else(|e| panic!("the catalog loads: {e:?}"));
    std::fs::remove_dir_all(&dir).ok();
    let o = org(cfg.services, cfg.teams);
    let mut sources: BTreeMap<String, usize> = BTreeMap::new();
    for (i, s) in o.services.iter().enumerate() {
        for res in o.resources_of(i) {
            let own = catalog.resolve(&|k| attr(&res.attributes, k));
            assert_eq!(&*own.team, o.teams[s.team].name.as_str(), "service {}", s.name);
            assert!(!own.is_default());
            assert!(own.contact.is_some() && own.oncall.is_some());
            let source = own.source.to_string();
            if source == "service" {
                assert!(listed.contains(s.name.as_str()));
            }
            *sources.entry(source).or_default() += 1;
        }
    }
    println!("resolved by: {sources:?}");
    assert!(sources["service"] > 1000, "most services are exact entries");
    assert!(sources.keys().filter(|k| k.starts_with("rule:")).count() >= 4, "every kind of rule is used");
}
