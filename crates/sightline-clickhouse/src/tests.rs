//! The sender's exchange with ClickHouse's HTTP interface. The server here is a stand-in
//! that records requests and answers `DESCRIBE TABLE`: ClickHouse itself is exercised by the
//! end-to-end tests (`tests/python/test_clickhouse.py`, chDB's engine behind a loopback HTTP
//! endpoint), since no ClickHouse server can be installed on the test machines.

use super::*;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::collections::HashMap;

/// One request: its URL parameters, headers and body.
type Request = (HashMap<String, String>, HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

async fn handler(
    State(seen): State<Seen>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let q: HashMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    seen.0.lock().expect("lock").push((q.clone(), headers, body.to_vec()));
    let text = String::from_utf8_lossy(&body);
    if text.starts_with("SELECT version()") {
        return (StatusCode::OK, HeaderMap::new(), b"26.9.2.1\n".to_vec());
    }
    if text.starts_with("DESCRIBE") && text.contains("missing_table") {
        let mut h = HeaderMap::new();
        h.insert("x-clickhouse-exception-code", HeaderValue::from_static("60"));
        return (StatusCode::NOT_FOUND, h, b"Code: 60. DB::Exception: Table x.missing_table does not exist.".to_vec());
    }
    if text.starts_with("DESCRIBE") {
        return (
            StatusCode::OK,
            HeaderMap::new(),
            b"Timestamp\tDateTime64(9)\nOwnerTeam\tLowCardinality(String)\n".to_vec(),
        );
    }
    if q.get("query").is_some_and(|q| q.contains("bad_table")) {
        let mut h = HeaderMap::new();
        h.insert("x-clickhouse-exception-code", HeaderValue::from_static("60"));
        return (StatusCode::NOT_FOUND, h, b"Code: 60. DB::Exception: Table x.bad_table does not exist.".to_vec());
    }
    (StatusCode::OK, HeaderMap::new(), Vec::new())
}

async fn server() -> (String, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new().route("/", post(handler)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/?max_insert_threads=2"), seen)
}

fn batch() -> Batch {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: "a".into(),
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut b = Batch::new(Signal::Traces);
    b.push(sightline_core::Payload::new(Signal::Traces, Bytes::from(req.encode_to_vec()), 1, None));
    b
}

#[tokio::test]
async fn first_send_creates_the_schema_then_inserts_compressed_rows() {
    let (endpoint, seen) = server().await;
    let mut cfg = ClickHouseConfig::new(endpoint);
    cfg.database = "otel".into();
    cfg.username = "writer".into();
    cfg.password = "s3cret".into();
    let registry = Registry::new();
    let (sender, _) = build_clickhouse("clickhouse", Signal::Traces, &cfg, &registry).expect("build");
    sender.send(&batch()).await.expect("first send");
    sender.send(&batch()).await.expect("second send");
    let seen = seen.0.lock().expect("lock");
    let statements: Vec<String> = seen.iter().map(|(_, _, b)| String::from_utf8_lossy(b).into_owned()).collect();
    assert!(statements[0].starts_with("SELECT version()"), "the DDL depends on the server's version");
    assert!(statements[1].starts_with("CREATE DATABASE IF NOT EXISTS `otel`"), "{}", statements[1]);
    assert!(statements[2].starts_with("CREATE TABLE IF NOT EXISTS `otel`.`otel_traces`"));
    assert!(statements[4].starts_with("CREATE MATERIALIZED VIEW IF NOT EXISTS `otel`.`otel_traces_trace_id_ts_mv`"));
    assert!(statements[5].starts_with("DESCRIBE TABLE `otel`.`otel_traces`"));
    let inserts: Vec<_> = seen.iter().filter(|(q, _, _)| q.contains_key("query")).collect();
    assert_eq!(inserts.len(), 2, "the schema is made once");
    let (q, h, body) = inserts[0];
    assert!(q["query"].starts_with("INSERT INTO `otel`.`otel_traces` (Timestamp, TraceId"), "{}", q["query"]);
    assert!(
        q["query"].contains("ServiceName, OwnerTeam, ResourceAttributes") && q["query"].ends_with("FORMAT RowBinary")
    );
    assert_eq!(
        (q["decompress"].as_str(), q["async_insert"].as_str(), q["max_insert_threads"].as_str()),
        ("1", "1", "2")
    );
    assert_eq!(h["x-clickhouse-user"], "writer");
    assert_eq!(h["x-clickhouse-key"], "s3cret");
    let rows = block::decompress(body).expect("native compressed blocks");
    let mut enc = Encoder::default();
    let shape = TableShape { owner_team: true, ..Default::default() };
    enc.add_traces(&batch().chunks().next().expect("chunk")[..], &shape, "owner.team").expect("encode");
    assert_eq!(rows, enc.rows);
}

#[tokio::test]
async fn a_table_that_does_not_exist_is_a_permanent_error_naming_it() {
    let (endpoint, _) = server().await;
    let mut cfg = ClickHouseConfig::new(endpoint);
    cfg.create_schema = false;
    cfg.traces_table_name = "missing_table".into();
    let (sender, _) = build_clickhouse("clickhouse", Signal::Traces, &cfg, &Registry::new()).expect("build");
    let e = sender.send(&batch()).await.expect_err("refused");
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.contains("missing_table does not exist"), "{}", e.message);
}

#[tokio::test]
async fn a_table_gone_since_the_first_send_is_read_again_and_the_batch_retried() {
    // The table was there when it was read (DESCRIBE answers), then an insert finds it gone:
    // the batch is retryable and the next send reads (and, with create_schema, creates) the
    // tables again.
    let (endpoint, seen) = server().await;
    let mut cfg = ClickHouseConfig::new(endpoint);
    cfg.traces_table_name = "bad_table".into();
    let (sender, _) = build_clickhouse("clickhouse", Signal::Traces, &cfg, &Registry::new()).expect("build");
    let e = sender.send(&batch()).await.expect_err("refused");
    assert!(e.retryable, "{e:?}");
    assert!(e.message.contains("bad_table does not exist"), "{}", e.message);
    let _ = sender.send(&batch()).await;
    let seen = seen.0.lock().expect("lock");
    let count = |prefix: &str| seen.iter().filter(|(_, _, b)| b.starts_with(prefix.as_bytes())).count();
    assert_eq!(count("DESCRIBE TABLE"), 2, "read again after the table was found gone");
    assert_eq!(count("CREATE TABLE IF NOT EXISTS `default`.`bad_table`"), 2, "and created again");
}

#[test]
fn errors_are_classified_by_clickhouse_code_then_status() {
    let h = HeaderMap::new();
    let e = clickhouse_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &h,
        b"Code: 33. DB::Exception: Cannot read all data",
        "INSERT",
    )
    .0;
    assert!(!e.retryable, "bad data is not retried even on a 500");
    let e =
        clickhouse_error(StatusCode::INTERNAL_SERVER_ERROR, &h, b"Code: 241. DB::Exception: Memory limit", "INSERT").0;
    assert!(e.retryable);
    let e = clickhouse_error(StatusCode::SERVICE_UNAVAILABLE, &h, b"", "INSERT").0;
    assert!(e.retryable);
    let e = clickhouse_error(StatusCode::FORBIDDEN, &h, b"Code: 516. DB::Exception: Authentication failed", "INSERT").0;
    assert!(!e.retryable && e.message.contains("Authentication failed"));
}
