//! Export*ServiceResponse and google.rpc.Status helpers.

use sightline_otlp_json::{
    JsonErrorKind, PartialSuccess, Signal, response_from_json, response_to_json, status_to_json,
};

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).expect("UTF-8")
}

#[test]
fn full_success_is_empty_object() {
    for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        assert_eq!(text(response_to_json(signal, None)), "{}");
        assert_eq!(response_from_json(signal, b"{}"), Ok(None));
        assert_eq!(response_from_json(signal, br#"{"partialSuccess":null}"#), Ok(None));
    }
}

#[test]
fn partial_success_per_signal() {
    let ps = PartialSuccess { rejected: 42, error_message: "2 spans had \"bad\" ids".into() };
    for (signal, key) in [
        (Signal::Traces, "rejectedSpans"),
        (Signal::Metrics, "rejectedDataPoints"),
        (Signal::Logs, "rejectedLogRecords"),
    ] {
        let json = text(response_to_json(signal, Some(&ps)));
        assert_eq!(json, format!(r#"{{"partialSuccess":{{"{key}":"42","errorMessage":"2 spans had \"bad\" ids"}}}}"#));
        assert_eq!(response_from_json(signal, json.as_bytes()), Ok(Some(ps.clone())));
    }
    // A warning-only partial success (0 rejected) is kept distinct from success.
    let warn = PartialSuccess { rejected: 0, error_message: "deprecated field".into() };
    let json = response_to_json(Signal::Logs, Some(&warn));
    assert_eq!(text(json.clone()), r#"{"partialSuccess":{"errorMessage":"deprecated field"}}"#);
    assert_eq!(response_from_json(Signal::Logs, &json), Ok(Some(warn)));
}

#[test]
fn parses_lenient_responses() {
    let parsed = response_from_json(
        Signal::Metrics,
        br#"{"partial_success":{"rejected_data_points":7,"error_message":"x","future":1},"other":[]}"#,
    );
    assert_eq!(parsed, Ok(Some(PartialSuccess { rejected: 7, error_message: "x".into() })));
    // The counter of another signal is an unknown field.
    assert_eq!(
        response_from_json(Signal::Traces, br#"{"partialSuccess":{"rejectedLogRecords":"3"}}"#),
        Ok(Some(PartialSuccess::default()))
    );
    let e = response_from_json(Signal::Traces, br#"{"partialSuccess":{"rejectedSpans":"x"}}"#).expect_err("bad count");
    assert_eq!(e.kind(), JsonErrorKind::Schema);
    assert_eq!(e.to_string(), r#"partialSuccess.rejectedSpans: invalid int64 string "x""#);
}

#[test]
fn status_body() {
    assert_eq!(text(status_to_json(3, "resourceSpans[0]: bad")), r#"{"code":3,"message":"resourceSpans[0]: bad"}"#);
    assert_eq!(text(status_to_json(0, "")), "{}");
}
