//! `header_extraction`: Kafka headers as resource attributes `kafka.header.<name>` on every
//! resource of a message (set, replacing a value already there), as the collector's receiver.
//! Off by default; when on, the message is decoded and encoded again.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sightline_core::Signal;

fn set(resource: &mut Option<Resource>, headers: &[(String, String)]) {
    let r = resource.get_or_insert_with(Resource::default);
    for (name, value) in headers {
        let key = format!("kafka.header.{name}");
        let v = Some(AnyValue { value: Some(any_value::Value::StringValue(value.clone())) });
        match r.attributes.iter_mut().find(|a| a.key == key) {
            Some(a) => a.value = v,
            None => r.attributes.push(KeyValue { key, value: v, ..Default::default() }),
        }
    }
}

pub(crate) fn add_to_resources(signal: Signal, proto: &[u8], headers: &[(String, String)]) -> Result<Vec<u8>, String> {
    let bad = |e: prost::DecodeError| format!("invalid OTLP protobuf: {e}");
    Ok(match signal {
        Signal::Traces => {
            let mut r = ExportTraceServiceRequest::decode(proto).map_err(bad)?;
            r.resource_spans.iter_mut().for_each(|x| set(&mut x.resource, headers));
            r.encode_to_vec()
        }
        Signal::Metrics => {
            let mut r = ExportMetricsServiceRequest::decode(proto).map_err(bad)?;
            r.resource_metrics.iter_mut().for_each(|x| set(&mut x.resource, headers));
            r.encode_to_vec()
        }
        Signal::Logs => {
            let mut r = ExportLogsServiceRequest::decode(proto).map_err(bad)?;
            r.resource_logs.iter_mut().for_each(|x| set(&mut x.resource, headers));
            r.encode_to_vec()
        }
    })
}
