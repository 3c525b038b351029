//! The encoder's allocation claim: once warm (its buffers grown by a first batch), encoding a
//! batch allocates a few times per request, never per log record. A counting global
//! allocator measures it.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as V};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use sightline_loki::{Encoder, LokiConfig, Plan};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds
// `GlobalAlloc`'s contract, and returns its result unchanged; every block handed out comes
// from `System`, so every block given back was allocated by it. The only other work is a
// relaxed atomic add, which neither allocates, blocks nor panics. (Test-only, as in
// benches/micro/tests/allocations.rs.)
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; `ptr` came from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn s(k: &str, v: &str) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(V::StringValue(v.into())) }), ..Default::default() }
}

/// `records` log records over 5 resources (services), with attributes, ids and a severity.
fn request(records: usize, seed: u64) -> Vec<u8> {
    let resource_logs = (0..5)
        .map(|r| ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    s("service.name", &format!("svc-{r}")),
                    s("owner.team", &format!("team-{}", r % 3)),
                    s("deployment.environment.name", "prod"),
                    s("k8s.pod.name", &format!("svc-{r}-abc")),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: (0..records / 5)
                    .map(|i| LogRecord {
                        time_unix_nano: seed * 1_000_000 + (i as u64 * 7919) % 1000,
                        severity_number: [9, 13, 17][i % 3],
                        body: Some(AnyValue { value: Some(V::StringValue(format!("request {i} done"))) }),
                        attributes: vec![s("http.route", "/api/orders"), s("user.id", &format!("u{i}"))],
                        trace_id: vec![7; 16],
                        span_id: vec![9; 8],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }.encode_to_vec()
}

/// Allocations of one protobuf + JSON encode of `reqs` on a warm encoder.
fn allocations(plan: &Plan, enc: &mut Encoder, out: &mut Vec<u8>, reqs: &[Vec<u8>]) -> u64 {
    let before = ALLOCS.load(Ordering::Relaxed);
    enc.reset();
    out.clear();
    for r in reqs {
        enc.add_request(plan, r, 1).expect("valid");
    }
    enc.encode_protobuf(out);
    out.clear();
    enc.encode_json(out);
    ALLOCS.load(Ordering::Relaxed) - before
}

/// 2,000 records in 4 requests: the warm encode allocates a bounded number of times per
/// request (the per-request lookup tables), however many records there are.
#[test]
fn warm_encoder_allocates_per_request_not_per_record() {
    let plan = Plan::new(&LokiConfig::new("http://127.0.0.1:1/loki/api/v1/push"));
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    let reqs: Vec<Vec<u8>> = (0..4).map(|k| request(500, k)).collect();
    // Warm up twice: buffers reach their size.
    allocations(&plan, &mut enc, &mut out, &reqs);
    allocations(&plan, &mut enc, &mut out, &reqs);
    let n = allocations(&plan, &mut enc, &mut out, &reqs);
    eprintln!("warm encode of 2,000 records: {n} allocations");
    assert!(n <= 6 * 4, "{n} allocations for 2,000 records in 4 requests");
    assert_eq!(enc.entries(), 2000);
    assert_eq!(enc.streams(), 15);
}
