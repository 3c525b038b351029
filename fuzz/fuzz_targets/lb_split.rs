//! The `loadbalancing` exporter's wire splitter (`sightline_exporters::loadbalancing::split`) on
//! arbitrary requests that pass the receiver's check. Input: one byte for the signal, then the
//! request.
//!
//! Oracles: nothing panics; every part is a request the receiver's check accepts; the parts
//! hold the request's items exactly (the sum of their counts, by item, by resource and, for
//! metrics, by data point); a part
//! that prost cannot decode comes only from a request prost cannot decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use sightline_core::Signal;
use sightline_core::wire;
use sightline_exporters::loadbalancing::split::{self, Split};
use sightline_fuzz::split_signal;

fuzz_target!(|data: &[u8]| {
    if let Some((signal, buf)) = split_signal(data) {
        check(signal, buf);
    }
});

fn decodes(signal: Signal, buf: &[u8]) -> bool {
    match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(buf).is_ok(),
        Signal::Metrics => ExportMetricsServiceRequest::decode(buf).is_ok(),
        Signal::Logs => ExportLogsServiceRequest::decode(buf).is_ok(),
    }
}

fn check(signal: Signal, buf: &[u8]) {
    let Ok(summary) = wire::inspect(signal, buf) else { return };
    if summary.invalid_items > 0 {
        return; // the receiver removes them first
    }
    let prost_ok = decodes(signal, buf);
    let verify = |res: Result<Split, wire::WireError>| {
        let Ok(split) = res else { panic!("a request the receiver accepted could not be split") };
        match split {
            Split::Empty => assert_eq!(summary.items, 0),
            Split::One(_) => {}
            Split::Many(parts) => {
                let mut total = 0;
                for p in &parts {
                    let s = wire::inspect(signal, &p.bytes).expect("a part passes the receiver's check");
                    assert_eq!(s.invalid_items, 0);
                    total += s.items;
                    if prost_ok {
                        assert!(decodes(signal, &p.bytes), "prost reads the request but not a part");
                    }
                }
                assert_eq!(total, summary.items, "the parts hold the request's items");
            }
        }
    };
    let mut n = 0usize;
    verify(split::by_item(
        buf,
        &mut |item| {
            n += 1;
            (item.len() + n) % 3
        },
        &|_| 1,
    ));
    let mut m = 0usize;
    verify(split::by_resource(
        buf,
        &mut |entry| {
            m += 1;
            (entry.len() ^ m) % 2
        },
        &|entry| wire::count_items(signal, entry),
    ));
    if signal == Signal::Metrics {
        // By data point (streamID): points of one metric to several destinations.
        let mut k = 0usize;
        verify(split::by_point(buf, &mut |_, _, _, point| {
            k += 1;
            (point.len() + k) % 3
        }));
    }
}
