//! The `debug` exporter at every verbosity, on every signal, with the output captured.

mod common;

use common::{batch, payload};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sightline_core::{Batch, Payload, Signal};
use sightline_exporters::{DebugConfig, Verbosity, build_debug};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Collects what the `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn take(&self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))).into_owned()
    }
}

/// Every signal's batches, including edge cases: empty requests, a span without ids or name,
/// a metric without data, multi-payload batches.
fn batches() -> Vec<Batch> {
    let bare_span = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans { scope: None, spans: vec![Span::default()], schema_url: String::new() }],
            schema_url: String::new(),
        }],
    };
    vec![
        batch([
            payload(Signal::Traces, &common::traces("checkout", 2, 1), 2),
            payload(Signal::Traces, &common::traces("payments", 1, 2), 1),
        ]),
        batch([payload(Signal::Traces, &bare_span, 1)]),
        batch([payload(Signal::Traces, &ExportTraceServiceRequest::default(), 0)]),
        batch([payload(Signal::Metrics, &common::metrics("svc"), 6)]),
        batch([payload(Signal::Metrics, &ExportMetricsServiceRequest::default(), 0)]),
        batch([payload(Signal::Logs, &common::logs("svc", 3, 4), 3)]),
        batch([payload(Signal::Logs, &ExportLogsServiceRequest::default(), 0)]),
    ]
}

/// Builds and runs at every verbosity on every batch without failing; each level prints what
/// it promises; undecodable bytes are an error, not a panic.
#[tokio::test]
async fn every_verbosity_prints_every_signal() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    for verbosity in [Verbosity::Basic, Verbosity::Normal, Verbosity::Detailed] {
        let cfg = DebugConfig { verbosity, sampling_initial: 1000, ..DebugConfig::default() };
        for b in batches() {
            let (sender, _) = build_debug("debug", b.signal, &cfg).expect("build");
            sender.send(&b).await.expect("debug never fails on valid data");
        }
        let text = out.take();
        assert!(text.contains("sightline::debug"), "{text}");
        assert!(text.contains("Traces") && text.contains("resource_spans=2") && text.contains("spans=3"), "{text}");
        assert!(text.contains("Metrics") && text.contains("metrics=6") && text.contains("data_points=6"), "{text}");
        assert!(text.contains("Logs") && text.contains("log_records=3"), "{text}");
        match verbosity {
            Verbosity::Basic => assert!(!text.contains("span-1-0"), "{text}"),
            Verbosity::Normal => {
                assert!(
                    text.contains("span-1-0 trace_id=01010101010101010101010101010101 span_id=0100010203040506"),
                    "{text}"
                );
                assert!(text.contains("service.name=checkout"), "{text}");
                assert!(!text.contains("Status code"), "{text}");
            }
            Verbosity::Detailed => {
                assert!(text.contains("Status code    : STATUS_CODE_OK"), "{text}");
                assert!(text.contains("-> service.name: Str(checkout)"), "{text}");
                assert!(text.contains("HistogramDataPoints #0"), "{text}");
                assert!(text.contains("SeverityNumber: SEVERITY_NUMBER_INFO(9)"), "{text}");
                assert!(text.contains("2023-11-14T22:13:20.000000000Z"), "{text}");
            }
        }
    }

    // Bytes that are not a valid request fail the send (counted by the driver) instead of
    // panicking, at the verbosities that decode. (Kept in this test: `tracing` caches callsite
    // interest globally, and a second test logging concurrently on another thread without the
    // capturing subscriber could make this one miss events.)
    let b = batch([Payload::new(Signal::Traces, bytes::Bytes::from_static(b"\x0a\x05\x01"), 1, None)]);
    let (basic, _) = build_debug("debug", Signal::Traces, &DebugConfig::default()).expect("build");
    basic.send(&b).await.expect("basic only counts");
    let cfg = DebugConfig { verbosity: Verbosity::Detailed, ..DebugConfig::default() };
    let (detailed, _) = build_debug("debug", Signal::Traces, &cfg).expect("build");
    assert!(!detailed.send(&b).await.expect_err("undecodable").retryable);
}

#[test]
fn config_from_yaml() {
    let cfg: DebugConfig = serde_yaml_ng::from_str("verbosity: detailed\nsampling_thereafter: 10\n").expect("valid");
    assert_eq!(cfg.verbosity, Verbosity::Detailed);
    assert_eq!((cfg.sampling_initial, cfg.sampling_thereafter), (2, 10));
    assert!(serde_yaml_ng::from_str::<DebugConfig>("verbosity: loud\n").is_err());
    assert!(serde_yaml_ng::from_str::<DebugConfig>("loglevel: debug\n").is_err());
}
