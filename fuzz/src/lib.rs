//! Helpers shared by the fuzz targets in `fuzz_targets/` and the seed-corpus generator in
//! `examples/gen_corpus.rs`: how a target's input picks a signal, and the prost view of a
//! request that the oracles compare against.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use sightline_core::Signal;

/// The first byte of an input picks the signal (`byte % 3`: traces, metrics, logs); the rest
/// is the payload. `None` for an empty input.
pub fn split_signal(data: &[u8]) -> Option<(Signal, &[u8])> {
    let (&first, rest) = data.split_first()?;
    Some((Signal::ALL[usize::from(first % 3)], rest))
}

/// The byte that [`split_signal`] reads as `signal`.
pub fn signal_byte(signal: Signal) -> u8 {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

/// The same signal in the JSON codec's own enum.
pub fn json_signal(signal: Signal) -> sightline_otlp_json::Signal {
    match signal {
        Signal::Traces => sightline_otlp_json::Signal::Traces,
        Signal::Metrics => sightline_otlp_json::Signal::Metrics,
        Signal::Logs => sightline_otlp_json::Signal::Logs,
    }
}

/// An `Export*ServiceRequest` as decoded by prost, the reference decoder.
pub trait Request: prost::Message + Default + Sized {
    /// The `resource` of every `Resource*` entry, in order.
    fn resources_mut(&mut self) -> Vec<&mut Option<Resource>>;
}

impl Request for ExportTraceServiceRequest {
    fn resources_mut(&mut self) -> Vec<&mut Option<Resource>> {
        self.resource_spans.iter_mut().map(|r| &mut r.resource).collect()
    }
}

impl Request for ExportMetricsServiceRequest {
    fn resources_mut(&mut self) -> Vec<&mut Option<Resource>> {
        self.resource_metrics.iter_mut().map(|r| &mut r.resource).collect()
    }
}

impl Request for ExportLogsServiceRequest {
    fn resources_mut(&mut self) -> Vec<&mut Option<Resource>> {
        self.resource_logs.iter_mut().map(|r| &mut r.resource).collect()
    }
}

/// Whether prost decodes `buf` as the request of `signal`.
pub fn prost_decodes(signal: Signal, buf: &[u8]) -> bool {
    use prost::Message;
    match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(buf).is_ok(),
        Signal::Metrics => ExportMetricsServiceRequest::decode(buf).is_ok(),
        Signal::Logs => ExportLogsServiceRequest::decode(buf).is_ok(),
    }
}

/// prost's decoding of `buf` re-encoded (canonical bytes: unknown fields dropped, repeated
/// message fields merged), or `None` when prost refuses it. With `fill_resources`, an absent
/// `resource` is read as an empty one (what a rewrite of the resources always writes).
pub fn prost_canonical(signal: Signal, buf: &[u8], fill_resources: bool) -> Option<Vec<u8>> {
    fn canon<R: Request>(buf: &[u8], fill: bool) -> Option<Vec<u8>> {
        let mut m = R::decode(buf).ok()?;
        if fill {
            for r in m.resources_mut() {
                r.get_or_insert_with(Resource::default);
            }
        }
        Some(m.encode_to_vec())
    }
    match signal {
        Signal::Traces => canon::<ExportTraceServiceRequest>(buf, fill_resources),
        Signal::Metrics => canon::<ExportMetricsServiceRequest>(buf, fill_resources),
        Signal::Logs => canon::<ExportLogsServiceRequest>(buf, fill_resources),
    }
}
