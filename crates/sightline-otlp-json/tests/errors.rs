//! Error cases: each names the problem with a JSON path.

use sightline_otlp_json::{
    JsonErrorKind, MAX_ANY_VALUE_DEPTH, MAX_JSON_DEPTH, Signal, json_to_protobuf, protobuf_to_json,
};

fn err(signal: Signal, json: &str) -> sightline_otlp_json::JsonError {
    match json_to_protobuf(signal, json.as_bytes()) {
        Ok(_) => panic!("expected an error for {json}"),
        Err(e) => e,
    }
}

fn span_err(span: &str) -> String {
    let json =
        format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{}}]}},{{"spans":[{{}},{{}},{{}},{span}]}}]}}]}}"#);
    err(Signal::Traces, &json).to_string()
}

const SPAN: &str = "resourceSpans[0].scopeSpans[1].spans[3]";

#[test]
fn bad_hex_ids() {
    assert_eq!(
        span_err(r#"{"traceId":"5b8efff798038103d269b633813fc60"}"#),
        format!("{SPAN}.traceId: invalid hex (expected 32 hex digits, got 31)")
    );
    assert_eq!(
        span_err(r#"{"spanId":"eee19b7ec3c1b17400"}"#),
        format!("{SPAN}.spanId: invalid hex (expected 16 hex digits, got 18)")
    );
    assert_eq!(
        span_err(r#"{"parentSpanId":"eee19b7ec3c1b17g"}"#),
        format!("{SPAN}.parentSpanId: invalid hex (non-hex character 'g' at position 15)")
    );
    // Base64 is not accepted for ids.
    assert_eq!(
        span_err(r#"{"traceId":"W47/95gDgQPSabYzgT/GDA=="}"#),
        format!("{SPAN}.traceId: invalid hex (non-hex character 'W' at position 0)")
    );
    assert_eq!(span_err(r#"{"spanId":12}"#), format!("{SPAN}.spanId: expected a hex string, got number"));
    // Links, log records and exemplars are checked too.
    assert_eq!(
        span_err(r#"{"links":[{},{"traceId":"00"}]}"#),
        format!("{SPAN}.links[1].traceId: invalid hex (expected 32 hex digits, got 2)")
    );
    assert_eq!(
        err(Signal::Logs, r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"spanId":"abc"}]}]}]}"#).to_string(),
        "resourceLogs[0].scopeLogs[0].logRecords[0].spanId: invalid hex (expected 16 hex digits, got 3)"
    );
    assert_eq!(
        err(
            Signal::Metrics,
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"histogram":{"dataPoints":[{"exemplars":[{"trace_id":"xyz"}]}]}}]}]}]}"#
        )
        .to_string(),
        "resourceMetrics[0].scopeMetrics[0].metrics[0].histogram.dataPoints[0].exemplars[0].trace_id: invalid hex (non-hex character 'x' at position 0)"
    );
}

#[test]
fn bad_base64() {
    let e = err(
        Signal::Logs,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"bytesValue":"not base64!"}}]}]}]}"#,
    );
    assert_eq!(e.kind(), JsonErrorKind::Schema);
    assert_eq!(e.path(), "resourceLogs[0].scopeLogs[0].logRecords[0].body.bytesValue");
    assert!(e.message().starts_with("invalid base64 ("), "{e}");
}

#[test]
fn wrong_json_types() {
    let logs = |record: &str| {
        err(Signal::Logs, &format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{record}]}}]}}]}}"#)).to_string()
    };
    const REC: &str = "resourceLogs[0].scopeLogs[0].logRecords[0]";
    assert_eq!(
        logs(r#"{"body":{"intValue":{}}}"#),
        format!("{REC}.body.intValue: expected a string or number for int64, got object")
    );
    assert_eq!(
        logs(r#"{"timeUnixNano":true}"#),
        format!("{REC}.timeUnixNano: expected a string or number for fixed64, got boolean")
    );
    assert_eq!(logs(r#"{"severityText":5}"#), format!("{REC}.severityText: expected a string, got number"));
    assert_eq!(
        logs(r#"{"body":{"boolValue":"true"}}"#),
        format!("{REC}.body.boolValue: expected a boolean, got string")
    );
    assert_eq!(
        logs(r#"{"body":{"doubleValue":[]}}"#),
        format!("{REC}.body.doubleValue: expected a number or string for double, got array")
    );
    assert_eq!(
        logs(r#"{"body":{"doubleValue":"fast"}}"#),
        format!(
            "{REC}.body.doubleValue: invalid double string \"fast\" (expected a number, \"NaN\", \"Infinity\" or \"-Infinity\")"
        )
    );
    assert_eq!(logs(r#"{"body":"hello"}"#), format!("{REC}.body: expected an object for AnyValue, got string"));
    assert_eq!(logs(r#"{"attributes":{"key":"a"}}"#), format!("{REC}.attributes: expected an array, got object"));
    assert_eq!(
        logs(r#"{"attributes":[null]}"#),
        format!("{REC}.attributes[0]: expected an object for KeyValue, got null")
    );
    assert_eq!(
        logs(r#"{"severityNumber":"LOUD"}"#),
        format!("{REC}.severityNumber: unknown SeverityNumber value \"LOUD\"")
    );
    assert_eq!(
        logs(r#"{"severityNumber":[9]}"#),
        format!("{REC}.severityNumber: expected an integer or string for enum SeverityNumber, got array")
    );
    assert_eq!(
        logs(r#"{"body":{"intValue":"12abc"}}"#),
        format!("{REC}.body.intValue: invalid int64 string \"12abc\"")
    );
    assert_eq!(
        logs(r#"{"body":{"intValue":1.5}}"#),
        format!("{REC}.body.intValue: expected an integer for int64, got 1.5")
    );
    // (Which member is named first depends on the JSON map's iteration order.)
    let oneof = logs(r#"{"body":{"stringValue":"a","intValue":"1"}}"#);
    assert!(
        oneof.starts_with(&format!("{REC}.body: more than one member of oneof AnyValue.value is set (")),
        "{oneof}"
    );
    let metric_err =
        err(Signal::Metrics, r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{},"sum":{}}]}]}]}"#);
    assert!(
        metric_err
            .to_string()
            .starts_with("resourceMetrics[0].scopeMetrics[0].metrics[0]: more than one member of oneof Metric.data"),
        "{metric_err}"
    );
    let dp_err = err(
        Signal::Metrics,
        r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":[{"asInt":"1","as_double":2}]}}]}]}]}"#,
    );
    assert!(dp_err.message().contains("NumberDataPoint.value"), "{dp_err}");
}

#[test]
fn numbers_out_of_range() {
    assert_eq!(
        span_err(r#"{"startTimeUnixNano":"18446744073709551616"}"#),
        format!("{SPAN}.startTimeUnixNano: number 18446744073709551616 out of range for fixed64")
    );
    assert_eq!(
        span_err(r#"{"startTimeUnixNano":-1}"#),
        format!("{SPAN}.startTimeUnixNano: number -1 out of range for fixed64")
    );
    assert_eq!(
        span_err(r#"{"endTimeUnixNano":1e30}"#),
        format!("{SPAN}.endTimeUnixNano: number 1e+30 out of range for fixed64")
    );
    assert_eq!(
        span_err(r#"{"droppedAttributesCount":4294967296}"#),
        format!("{SPAN}.droppedAttributesCount: number 4294967296 out of range for uint32")
    );
    assert_eq!(span_err(r#"{"kind":2147483648}"#), format!("{SPAN}.kind: number 2147483648 out of range for SpanKind"));
    assert_eq!(
        span_err(r#"{"attributes":[{"key":"k","value":{"intValue":"9223372036854775808"}}]}"#),
        format!("{SPAN}.attributes[0].value.intValue: number 9223372036854775808 out of range for int64")
    );
    assert_eq!(
        span_err(r#"{"attributes":[{"key":"k","value":{"intValue":"99999999999999999999999999999999999999999"}}]}"#),
        format!(
            "{SPAN}.attributes[0].value.intValue: number \"99999999999999999999999999999999999999999\" out of range for int64"
        )
    );
    // Integer literals beyond u64 parse as floats; above 2^53 they are not exact.
    assert_eq!(
        span_err(r#"{"startTimeUnixNano":36893488147419103232}"#),
        format!("{SPAN}.startTimeUnixNano: number 3.6893488147419103e+19 out of range for fixed64")
    );
    let e = err(
        Signal::Metrics,
        r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"exponentialHistogram":{"dataPoints":[{"scale":"-2147483649"}]}}]}]}]}"#,
    );
    assert_eq!(e.message(), "number -2147483649 out of range for sint32");
    assert_eq!(e.path(), "resourceMetrics[0].scopeMetrics[0].metrics[0].exponentialHistogram.dataPoints[0].scale");
    let e = err(
        Signal::Metrics,
        r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"histogram":{"dataPoints":[{"bucketCounts":["1","-2"]}]}}]}]}]}"#,
    );
    assert_eq!(
        e.to_string(),
        "resourceMetrics[0].scopeMetrics[0].metrics[0].histogram.dataPoints[0].bucketCounts[1]: number -2 out of range for fixed64"
    );
}

#[test]
fn not_json() {
    for (input, prefix) in [
        ("", "invalid JSON: EOF while parsing a value"),
        ("{", "invalid JSON: EOF while parsing an object"),
        ("{\"resourceSpans\":[}", "invalid JSON: "),
        ("{} {}", "invalid JSON: trailing characters"),
        ("\u{feff}{}", "invalid JSON: "),
        ("nul", "invalid JSON: "),
    ] {
        let e = err(Signal::Traces, input);
        assert_eq!(e.kind(), JsonErrorKind::Syntax, "{input:?}");
        assert!(e.to_string().starts_with(prefix), "{input:?}: {e}");
        assert_eq!(e.path(), "");
    }
    let e = match json_to_protobuf(Signal::Logs, &[b'{', b'"', 0xff, b'"', b':', b'1', b'}']) {
        Ok(_) => panic!("invalid UTF-8 accepted"),
        Err(e) => e,
    };
    assert_eq!(e.kind(), JsonErrorKind::Syntax);

    for input in ["[]", "null", "1", "\"x\""] {
        let e = err(Signal::Metrics, input);
        assert_eq!(e.kind(), JsonErrorKind::Schema);
        assert!(e.to_string().starts_with("expected an object for ExportMetricsServiceRequest, got "), "{e}");
    }
    // Valid JSON, wrong shape deeper down.
    assert_eq!(
        err(Signal::Traces, r#"{"resourceSpans":{}}"#).to_string(),
        "resourceSpans: expected an array, got object"
    );
}

fn nested_array_value(levels: usize) -> String {
    let mut v = String::from(r#"{"stringValue":"leaf"}"#);
    for _ in 1..levels {
        v = format!(r#"{{"arrayValue":{{"values":[{v}]}}}}"#);
    }
    v
}

fn nested_kvlist_value(levels: usize) -> String {
    let mut v = String::from(r#"{"intValue":"1"}"#);
    for _ in 1..levels {
        v = format!(r#"{{"kvlistValue":{{"values":[{{"key":"k","value":{v}}}]}}}}"#);
    }
    v
}

fn log_with_body(body: &str) -> String {
    format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{body}}}]}}]}}]}}"#)
}

/// The deepest OTLP placement of an AnyValue: an exemplar's filtered attribute.
fn exemplar_attribute(value: &str) -> String {
    format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"exponentialHistogram":{{"dataPoints":[{{"exemplars":[{{"filteredAttributes":[{{"key":"a","value":{value}}}]}}]}}]}}}}]}}]}}]}}"#
    )
}

#[test]
fn any_value_depth_limit() {
    // At the limit: accepted, and the protobuf produced is decodable again
    // (prost's recursion limit) for the deepest placement and both kinds.
    for value in [nested_array_value(MAX_ANY_VALUE_DEPTH), nested_kvlist_value(MAX_ANY_VALUE_DEPTH)] {
        let proto = json_to_protobuf(Signal::Logs, log_with_body(&value).as_bytes()).expect("at the limit");
        protobuf_to_json(Signal::Logs, &proto).expect("decodable");
        let proto = json_to_protobuf(Signal::Metrics, exemplar_attribute(&value).as_bytes()).expect("at the limit");
        let json = protobuf_to_json(Signal::Metrics, &proto).expect("decodable");
        assert_eq!(json_to_protobuf(Signal::Metrics, &json).ok(), Some(proto), "round trip at the limit");
    }
    // One more level: a clear error naming the offending value.
    let e = err(Signal::Logs, &log_with_body(&nested_array_value(MAX_ANY_VALUE_DEPTH + 1)));
    assert_eq!(e.kind(), JsonErrorKind::TooDeep);
    assert_eq!(e.message(), format!("AnyValue nesting exceeds {MAX_ANY_VALUE_DEPTH} levels"));
    let expected_path = format!(
        "resourceLogs[0].scopeLogs[0].logRecords[0].body{}",
        ".arrayValue.values[0]".repeat(MAX_ANY_VALUE_DEPTH)
    );
    assert_eq!(e.path(), expected_path);
    let e = err(Signal::Metrics, &exemplar_attribute(&nested_kvlist_value(MAX_ANY_VALUE_DEPTH + 1)));
    assert_eq!(e.kind(), JsonErrorKind::TooDeep);
    assert!(e.path().ends_with(".kvlistValue.values[0].value"), "{e}");
}

#[test]
fn json_depth_limit() {
    // Arbitrary deep JSON, even in an ignored field, is rejected up front
    // rather than overflowing the stack.
    for depth in [MAX_JSON_DEPTH + 1, 100_000, 1_000_000] {
        let json = format!(r#"{{"unknown":{}}}"#, "[".repeat(depth));
        let e = err(Signal::Traces, &json);
        assert_eq!(e.kind(), JsonErrorKind::TooDeep);
        assert!(e.to_string().starts_with(&format!("JSON nesting exceeds {MAX_JSON_DEPTH} levels")), "{e}");
    }
    // Exactly at the limit, in an ignored field: fine.
    let inner = "[".repeat(MAX_JSON_DEPTH - 1) + &"]".repeat(MAX_JSON_DEPTH - 1);
    let json = format!(r#"{{"unknown":{inner}}}"#);
    assert_eq!(json_to_protobuf(Signal::Traces, json.as_bytes()).ok(), Some(vec![]));
    // Deep AnyValues far past the AnyValue limit hit the JSON limit first.
    let e = err(Signal::Logs, &log_with_body(&nested_array_value(10_000)));
    assert_eq!(e.kind(), JsonErrorKind::TooDeep);
}
