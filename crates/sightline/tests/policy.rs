//! The `policy` processor with the Rust SDK (`opentelemetry-otlp`) as the client and a real
//! OTLP/gRPC server as the backend: one team enforces redaction, another observes; valid
//! secrets are masked, look-alikes left alone, and the findings counted per team.

mod common;

use common::*;
use opentelemetry::KeyValue;
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;

const CARD: &str = "5555 5555 5555 4444";
const NOT_A_CARD: &str = "5555 5555 5555 4445";

fn config(sink_port: u16) -> String {
    let sections = format!(
        r#"processors:
  ownership:
    catalog: ["{{dir}}/catalog"]
  policy:
    teams:
      payments: {{ mode: enforce }}
exporters:
  otlp/backend:
    endpoint: 127.0.0.1:{sink_port}
    tls:
      insecure: true
    sending_queue:
      batch:
        flush_timeout: 50ms
"#
    );
    let pipelines = r#"    traces:
      receivers: [otlp]
      processors: [ownership, policy]
      exporters: [otlp/backend]
    logs:
      receivers: [otlp]
      processors: [ownership, policy]
      exporters: [otlp/backend]
"#;
    otlp_config(&sections, pipelines)
}

#[test]
fn rust_sdk_secrets_masked_for_the_enforcing_team_only() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (sink, sink_port) = Sink::start(&rt);
    let dir = catalog_dir();
    let mut sl = Sightline::start(dir.path(), &config(sink_port));
    let _guard = rt.enter();
    for service in ["checkout", "search-api"] {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://127.0.0.1:{}", sl.grpc))
            .build()
            .unwrap();
        let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(service).build())
            .with_batch_exporter(exporter)
            .build();
        let mut span = tp.tracer("policy").start("charge");
        span.set_attribute(KeyValue::new("payment.card", format!("card {CARD}")));
        span.set_attribute(KeyValue::new("lookalike", NOT_A_CARD));
        span.add_event("mail", vec![KeyValue::new("to", "carol@example.net")]);
        span.end();
        tp.force_flush().unwrap();
        let _ = tp.shutdown();

        let lp = sdk_logger_provider(sl.http, service);
        let logger = lp.logger("policy");
        let mut rec = logger.create_log_record();
        rec.set_body("key AKIAIOSFODNN7EXAMPLE leaked".into());
        logger.emit(rec);
        lp.force_flush().unwrap();
        let _ = lp.shutdown();
    }
    assert!(wait_until(20, || sink.span_count() >= 2), "spans did not arrive:\n{}", sl.stderr());
    assert!(wait_until(20, || sink.logs.lock().unwrap().len() >= 2), "logs did not arrive:\n{}", sl.stderr());

    for r in sink.traces.lock().unwrap().iter().flat_map(|r| &r.resource_spans) {
        let team = attr(&r.resource.as_ref().unwrap().attributes, "owner.team").unwrap();
        let span = &r.scope_spans[0].spans[0];
        let (card, mail) = (attr(&span.attributes, "payment.card"), attr(&span.events[0].attributes, "to"));
        if team == "payments" {
            assert_eq!(card.as_deref(), Some(format!("card {}", "*".repeat(CARD.len())).as_str()));
            assert_eq!(mail.as_deref(), Some("*****************"));
        } else {
            assert_eq!(team, "search");
            assert_eq!(card.as_deref(), Some(format!("card {CARD}").as_str()), "observe changes nothing");
        }
        assert_eq!(attr(&span.attributes, "lookalike").as_deref(), Some(NOT_A_CARD));
    }
    for r in sink.logs.lock().unwrap().iter().flat_map(|r| &r.resource_logs) {
        let team = attr(&r.resource.as_ref().unwrap().attributes, "owner.team").unwrap();
        let body = match r.scope_logs[0].log_records[0].body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => s.clone(),
            other => format!("{other:?}"),
        };
        let want =
            if team == "payments" { "key ******************** leaked" } else { "key AKIAIOSFODNN7EXAMPLE leaked" };
        assert_eq!(body, want, "{team}");
    }
    let n = |sl: &mut Sightline, signal: &str, rule: &str, team: &str, action: &str| {
        sl.metric(&format!(
            "sightline_policy_findings_total{{policy=\"policy\",rule=\"{rule}\",team=\"{team}\",signal=\"{signal}\",action=\"{action}\"}}"
        ))
    };
    assert_eq!(n(&mut sl, "traces", "credit_card", "payments", "masked"), Some(1.0));
    assert_eq!(n(&mut sl, "traces", "email", "payments", "masked"), Some(1.0));
    assert_eq!(n(&mut sl, "traces", "credit_card", "search", "observed"), Some(1.0));
    assert_eq!(n(&mut sl, "logs", "aws_access_key", "payments", "masked"), Some(1.0));
    assert_eq!(n(&mut sl, "logs", "aws_access_key", "search", "observed"), Some(1.0));
    assert!(sl.terminate().is_some_and(|s| s.success()), "clean exit on SIGTERM:\n{}", sl.stderr());
}
