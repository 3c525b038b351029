//! Requests opened to their items, for the processors that read or write item fields
//! (`attributes`, `filter`, `transform`): traces and logs as a [`LazyRequest`] whose items stay
//! encoded until needed, metrics decoded; edited in place and encoded once; the item count is
//! recomputed when items were dropped.

use crate::lazy::{Heads, LazyRequest};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use sightline_core::pipeline::ProcessError;
use sightline_core::{Payload, Signal};

/// One decoded export request.
pub enum Request {
    Traces(LazyRequest<Span>),
    Metrics(ExportMetricsServiceRequest),
    Logs(LazyRequest<LogRecord>),
}

impl Request {
    /// `heads`: whether the processor reads resources and scopes (traces and logs; metrics are
    /// always decoded).
    pub fn decode(signal: Signal, bytes: &Bytes, heads: Heads) -> Result<Request, ProcessError> {
        let bad = |e: prost::DecodeError| ProcessError::Invalid(format!("cannot decode the request: {e}"));
        Ok(match signal {
            Signal::Traces => Request::Traces(LazyRequest::parse(bytes, heads)?),
            Signal::Metrics => Request::Metrics(ExportMetricsServiceRequest::decode(&bytes[..]).map_err(bad)?),
            Signal::Logs => Request::Logs(LazyRequest::parse(bytes, heads)?),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Traces(r) => r.encode(),
            Request::Metrics(r) => r.encode_to_vec(),
            Request::Logs(r) => r.encode(),
        }
    }

    /// Spans, data points or log records.
    pub fn items(&self) -> u64 {
        match self {
            Request::Traces(r) => r.items(),
            Request::Metrics(r) => {
                r.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics).map(point_count).sum()
            }
            Request::Logs(r) => r.items(),
        }
    }

    /// Replaces the payload's bytes with this request (the count recomputed when `dropped`);
    /// refused when an item that had to be decoded was malformed.
    pub fn into_payload(self, payload: Payload, dropped: bool) -> Result<Payload, ProcessError> {
        match &self {
            Request::Traces(r) => r.check()?,
            Request::Logs(r) => r.check()?,
            Request::Metrics(_) => {}
        }
        let items = if dropped { self.items() } else { payload.items() };
        Ok(payload.with_bytes(Bytes::from(self.encode()), items))
    }
}

/// The data points of a metric.
pub use sightline_policy::points::count as point_count;
