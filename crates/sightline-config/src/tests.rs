use super::*;
use serde::Deserialize;

const GOOD: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:GRPC_ADDR}
      http:
processors:
  ownership:
    catalog: [config/catalog]
exporters:
  otlp/tempo:
    endpoint: ${TEMPO:-tempo:4317}
    headers:
      X-Scope-OrgID: "$${literal}"
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [ownership]
      exporters: [otlp/tempo, debug]
"#;

fn env(k: &str) -> Option<String> {
    (k == "GRPC_ADDR").then(|| "0.0.0.0:4317".to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Exp {
    endpoint: String,
    #[serde(default)]
    headers: IndexMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)]
    compression: Option<String>,
}

#[test]
fn parses_sections_and_substitutes_env() {
    let c = Config::parse(GOOD, "t.yaml", &env).unwrap();
    assert_eq!(c.receivers[0].id.to_string(), "otlp");
    assert_eq!(c.exporters[0].id, ComponentId { kind: "otlp".into(), name: Some("tempo".into()) });
    let e: Exp = c.decode(&c.exporters[0]).unwrap();
    assert_eq!(e.endpoint, "tempo:4317");
    assert_eq!(e.headers["X-Scope-OrgID"], "${literal}");
    assert!(c.check_pipelines().is_empty());
    let grpc = &c.receivers[0].value["protocols"]["grpc"]["endpoint"];
    assert_eq!(grpc.as_str(), Some("0.0.0.0:4317"));
}

#[test]
fn unknown_component_key_is_path_qualified_with_line_and_suggestion() {
    let text = GOOD.replace("    headers:", "    endpont: x\n    headers:");
    let c = Config::parse(&text, "t.yaml", &env).unwrap();
    let err = c.decode::<Exp>(&c.exporters[0]).unwrap_err();
    assert_eq!(err.path, "exporters.otlp/tempo.endpont");
    assert_eq!(err.line, Some(14));
    assert!(err.message.contains("did you mean `endpoint`?"), "{err}");
}

#[test]
fn wrong_type_names_path_and_line() {
    let text = GOOD.replace("X-Scope-OrgID: \"$${literal}\"", "X-Scope-OrgID: [1, 2]");
    let c = Config::parse(&text, "t.yaml", &env).unwrap();
    let err = c.decode::<Exp>(&c.exporters[0]).unwrap_err();
    assert_eq!(err.path, "exporters.otlp/tempo.headers.X-Scope-OrgID");
    assert_eq!(err.line, Some(15));
}

#[test]
fn unknown_top_level_key() {
    let text = format!("{GOOD}\nexporter:\n  x: 1\n");
    let errs = Config::parse(&text, "t.yaml", &env).unwrap_err();
    assert_eq!(errs[0].path, "exporter");
    assert!(errs[0].message.contains("did you mean `exporters`?"), "{}", errs[0]);
    assert_eq!(errs[0].line, Some(24));
}

#[test]
fn undefined_pipeline_component_is_an_error() {
    let text = GOOD.replace("exporters: [otlp/tempo, debug]", "exporters: [otlp/temp, debug, debug]");
    let c = Config::parse(&text, "t.yaml", &env).unwrap();
    let errs = c.check_pipelines();
    let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0].contains("\"otlp/temp\", which is not defined under `exporters` (did you mean \"otlp/tempo\"?)"),
        "{msgs:?}"
    );
    assert_eq!(errs[0].path, "service.pipelines.traces.exporters");
    assert_eq!(errs[0].line, Some(22));
    assert!(msgs[1].contains("listed twice"));
}

#[test]
fn bad_pipeline_signal_and_syntax_error() {
    let text = GOOD.replace("    traces:", "    spans:");
    let c = Config::parse(&text, "t.yaml", &env).unwrap();
    assert!(c.check_pipelines()[0].to_string().contains("unknown signal \"spans\""));
    let errs = Config::parse("service:\n  pipelines: [\n", "t.yaml", &env).unwrap_err();
    assert!(errs[0].message.starts_with("YAML syntax"), "{}", errs[0]);
}

#[test]
fn env_substitution_forms() {
    let f = |k: &str| (k == "A").then(|| "1".to_string());
    assert_eq!(substitute_env("${A} ${env:A} ${B:-d} ${env:B} $$ $x", &f).unwrap(), "1 1 d  $ $x");
    assert!(substitute_env("${A", &f).is_err());
    assert!(substitute_env("${A B}", &f).is_err());
}

#[test]
fn component_ids() {
    assert!(ComponentId::parse("otlp/").is_err());
    assert!(ComponentId::parse("/x").is_err());
    assert!(ComponentId::parse("a/b/c").is_err(), "a name may not contain another slash");
}

fn metrics_telemetry(yaml: &str) -> Result<String, (String, String)> {
    let m: MetricsTelemetry = serde_yaml_ng::from_str(yaml).expect("parses");
    m.listen_address()
}

/// `service.telemetry.metrics.readers`, the collector's current form, beside `address`.
#[test]
fn telemetry_metrics_readers_give_the_admin_address() {
    assert_eq!(metrics_telemetry("level: normal").unwrap(), "127.0.0.1:8888");
    assert_eq!(metrics_telemetry("address: 0.0.0.0:9999").unwrap(), "0.0.0.0:9999");
    let pull = "readers:\n  - pull:\n      exporter:\n        prometheus: { host: 0.0.0.0, port: 8889 }\n";
    assert_eq!(metrics_telemetry(pull).unwrap(), "0.0.0.0:8889");
    let v6 = "readers: [{pull: {exporter: {prometheus: {host: '::1', port: 8889}}}}]";
    assert_eq!(metrics_telemetry(v6).unwrap(), "[::1]:8889");
    let default_host = "readers: [{pull: {exporter: {prometheus: {port: 8889}}}}]";
    assert_eq!(metrics_telemetry(default_host).unwrap(), "localhost:8889");
    let (key, msg) = metrics_telemetry(&format!("address: 127.0.0.1:1\n{pull}")).unwrap_err();
    assert_eq!(key, "service.telemetry.metrics.address");
    assert!(msg.contains("not both"), "{msg}");
    let periodic = "readers: [{periodic: {exporter: {otlp: {protocol: grpc, endpoint: 'http://x:4317'}}}}]";
    let (key, msg) = metrics_telemetry(periodic).unwrap_err();
    assert_eq!(key, "service.telemetry.metrics.readers.0.periodic");
    assert!(msg.contains("not supported"), "{msg}");
    let two = "readers: [{pull: {exporter: {prometheus: {port: 1}}}}, {pull: {exporter: {prometheus: {port: 2}}}}]";
    assert!(metrics_telemetry(two).unwrap_err().1.contains("2 pull readers"));
    // An option of the collector's prometheus reader that Sightline does not have is refused by
    // name, not ignored.
    let err = serde_yaml_ng::from_str::<MetricsTelemetry>(
        "readers: [{pull: {exporter: {prometheus: {port: 1, without_units: true}}}}]",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("without_units"), "{err}");
}
