//! The hot path does not allocate per span: a counting global allocator measures how many
//! allocations (a) `wire::inspect` and (b) `OwnershipProcessor::process` with a warm cache make
//! for requests of 10, 100 and 1000 spans (and log records, and metric points) over the same
//! five resources. The counts must be the same for every size (O(1) per request, not O(items)),
//! and `inspect` must make none at all. This asserts counts, not timings.

use bytes::Bytes;
use sightline_core::{MemoryBudget, Payload, Processor, Registry, Signal, wire};
use sightline_microbench::catalog::CatalogFixture;
use sightline_microbench::requests::{RESOURCES, Size, encoded, instance_id_offsets, write_instance_id};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Forwards every call to [`System`] and counts the calls that obtain memory (`alloc`,
/// `alloc_zeroed`, `realloc`) made by threads that switched counting on.
struct Counting;

/// Allocation calls made while a thread's `COUNTING` flag was set (one thread at a time, see
/// `MEASURING`).
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread's allocations are counted: the test harness runs other threads
    /// (and other tests) concurrently, whose allocations must not be attributed to the code
    /// under measurement. `const`-initialised with a type that needs no destructor, so on
    /// targets with native thread-local storage (Linux, macOS, Windows) it is a plain
    /// per-thread static: reading it never allocates nor registers a destructor (no recursion
    /// into the allocator).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

#[inline]
fn count() {
    // `try_with` never panics, even while the thread is being torn down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: `GlobalAlloc` requires that the methods return memory that satisfies `layout` (or
// null on failure), that `dealloc`/`realloc` are only given memory from this allocator, and
// that they do not unwind. Every method forwards its arguments unchanged to `System`, which
// upholds those requirements itself, and returns `System`'s result unchanged; since every
// block this allocator hands out comes from `System`, every block it is given back was
// allocated by `System` too. The only other thing done is a relaxed atomic add and a read of
// a `const`-initialised thread-local `Cell<bool>` without destructor: neither allocates (no
// re-entrancy), blocks or panics, and neither touches the memory being managed.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; `ptr` came from `System` (see above).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System` (see above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Serialises measurements: `ALLOCATIONS` is one counter, so only one thread may be counting
/// at a time (the harness runs the tests below in parallel).
static MEASURING: Mutex<()> = Mutex::new(());

/// Allocation calls made by `f` on this thread.
fn allocations<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(PoisonError::into_inner);
    COUNTING.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let out = std::hint::black_box(f());
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(false));
    (after - before, out)
}

const SIZES: [usize; 3] = [10, 100, 1000];

/// `(items, allocations of inspect, of process with a warm cache, of process with five new
/// resources)` for every request size.
fn measure(signal: Signal, size: Size, fixture: &CatalogFixture) -> Vec<(usize, u64, u64, u64)> {
    let ids = fixture.identities(RESOURCES);
    let registry = Registry::new();
    let processor = fixture.processor(signal, &registry);
    let budget = MemoryBudget::new(1 << 30);
    SIZES
        .iter()
        .map(|&n| {
            let buf = Bytes::from(encoded(signal, &ids, n, size, 7));
            let (inspect_allocs, summary) = allocations(|| wire::inspect(signal, &buf));
            let summary = summary.expect("valid request");
            assert_eq!(summary.resources, RESOURCES as u64);
            assert_eq!(summary.invalid_items, 0);
            let payload = || Payload::new(signal, buf.clone(), summary.items, budget.try_acquire(buf.len()));
            // Warm the per-thread cache (and the thread-local slot itself) with this request's
            // resources; every size uses the same five resources.
            for _ in 0..3 {
                processor.process(payload()).expect("enriched");
            }
            let p = payload();
            let (process_allocs, out) = allocations(|| processor.process(p));
            let out = out.expect("enriched");
            assert!(out.len() > buf.len(), "ownership attributes were added");
            // For information (not asserted): the same request with five resources never seen.
            let mut fresh = buf.to_vec();
            for (k, at) in instance_id_offsets(&fresh).into_iter().enumerate() {
                write_instance_id(&mut fresh, at, 0xc01d_0000 + k as u64);
            }
            let p = Payload::new(signal, Bytes::from(fresh), summary.items, None);
            let (cold_allocs, out) = allocations(|| processor.process(p));
            out.expect("enriched");
            (n, inspect_allocs, process_allocs, cold_allocs)
        })
        .collect()
}

fn check(signal: Signal, size: Size) {
    let fixture = CatalogFixture::standard();
    let counts = measure(signal, size, &fixture);
    for (n, inspect, process, cold) in &counts {
        println!(
            "{signal} ({}): {n:>4} items: inspect {inspect} allocations, process (warm cache) {process}, \
             process (5 new resources, not asserted) {cold}",
            size.as_str()
        );
    }
    for (n, inspect, _, _) in &counts {
        assert_eq!(*inspect, 0, "{signal}: wire::inspect allocated for {n} items");
    }
    let process: Vec<u64> = counts.iter().map(|c| c.2).collect();
    assert!(
        process.iter().all(|&c| c == process[0]),
        "{signal} ({}): OwnershipProcessor::process allocations depend on the request size: {counts:?} \
         ((items, inspect, process, cold process) for each size)",
        size.as_str()
    );
}

/// The counter sees what it should: one allocation for one `Vec`, none for arithmetic.
#[test]
fn the_counter_counts() {
    let (n, v) = allocations(|| vec![7u8; 100]);
    assert_eq!((n, v.len()), (1, 100));
    let (n, _) = allocations(|| std::hint::black_box(2u64).pow(10));
    assert_eq!(n, 0);
}

#[test]
fn traces_small_spans() {
    check(Signal::Traces, Size::Small);
}

#[test]
fn traces_large_spans() {
    check(Signal::Traces, Size::Large);
}

#[test]
fn logs() {
    check(Signal::Logs, Size::Small);
}

#[test]
fn metrics() {
    check(Signal::Metrics, Size::Small);
}

/// The exporters' compressor (ADR 13) reuses its contexts and scratch buffer: once warm, one
/// batch costs the same few allocations (the output body), whatever its size, and no
/// compressor context is created per batch (zstd's context alone is several allocations).
#[test]
fn compressor_reuses_its_contexts() {
    use sightline_exporters::{Compression, CompressionParams, Compressor};
    let fixture = CatalogFixture::standard();
    let ids = fixture.identities(RESOURCES);
    for compression in [Compression::Gzip, Compression::Zstd] {
        let c = Compressor::new(compression, CompressionParams::default());
        let mut counts = Vec::new();
        for items in [100, 1000] {
            let batch = encoded(Signal::Traces, &ids, items, Size::Small, 7);
            // Warm: the first batch of a size creates the context and grows the scratch buffer.
            let _ = c.compress(batch.chunks(4096), batch.len()).expect("compress");
            let (n, out) = allocations(|| c.compress(batch.chunks(4096), batch.len()).expect("compress"));
            assert!(!out.is_empty());
            counts.push(n);
        }
        eprintln!("{compression:?}: allocations per warm batch of 100 / 1000 spans: {counts:?}");
        assert_eq!(counts[0], counts[1], "{compression:?}: O(1) per batch");
        assert!(counts[1] <= 2, "{compression:?}: only the output body, got {}", counts[1]);
    }
}

/// `routing_key: streamID` computes a key for every data point (the collector's stream
/// identity): with the scratch buffer warm, 1,000 points of 12 attributes allocate nothing.
#[test]
fn load_balancing_stream_keys_do_not_allocate_per_point() {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, NumberDataPoint, metric::Data};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message as _;
    use sightline_exporters::loadbalancing::identity;
    let kv = |k: String, v: Value| KeyValue { key: k, value: Some(AnyValue { value: Some(v) }), ..Default::default() };
    let attrs = |i: i64| -> Vec<KeyValue> {
        (0..12)
            .map(|j| match j % 3 {
                0 => kv(format!("k{j}"), Value::StringValue(format!("v{i}"))),
                1 => kv(format!("n{j}"), Value::IntValue(i)),
                _ => kv(format!("b{j}"), Value::BoolValue(i % 2 == 0)),
            })
            .collect()
    };
    let points: Vec<Vec<u8>> =
        (0..1000).map(|i| NumberDataPoint { attributes: attrs(i), ..Default::default() }.encode_to_vec()).collect();
    let resource = Resource { attributes: attrs(7), ..Default::default() }.encode_to_vec();
    let metric = Metric {
        name: "m".into(),
        data: Some(Data::Gauge(Gauge { data_points: vec![NumberDataPoint::default()] })),
        ..Default::default()
    }
    .encode_to_vec();
    let mut scratch = Vec::with_capacity(4096);
    let h = identity::metric_identity(&resource, &[], &metric, &mut scratch);
    let ty = identity::metric_type(&metric);
    let mut positions = Vec::with_capacity(points.len());
    let (n, ()) = allocations(|| {
        for p in &points {
            positions.push(identity::stream_position(h, ty, p, &mut scratch));
        }
    });
    assert_eq!(n, 0, "{n} allocations for {} points", points.len());
    assert!(positions.iter().any(|&p| p != positions[0]), "points with other attributes are other streams");
}
