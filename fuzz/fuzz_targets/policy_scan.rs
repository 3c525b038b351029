//! The policies read off the wire (`sightline_policy::scan`) against the decoded walkers: for
//! any request prost decodes (the first byte picks the signal), each resource entry, encoded
//! canonically, is read without an error and gives exactly the findings of the redaction,
//! attribute limit and naming walkers in observe mode; the walkers leave it unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use sightline_policy::Kind;
use sightline_policy::limits::Limits;
use sightline_policy::naming::Naming;
use sightline_policy::redact::{Action, Apply, Redactor};
use sightline_policy::scan::Scanner;
use std::sync::OnceLock;

struct P {
    r: Redactor,
    l: Limits,
    n: Naming,
}

fn p() -> &'static P {
    static P: OnceLock<P> = OnceLock::new();
    P.get_or_init(|| {
        let re = regex::Regex::new("^[a-z][a-z0-9_.]*$").expect("valid");
        P {
            r: Redactor::new(&Kind::ALL, &["(?i)^(password|secret)$".into()], &["^safe".into()], Action::Mask)
                .expect("valid patterns"),
            l: Limits { max_count: Some(2), max_value_length: Some(4), resources: true, data_points: true },
            n: Naming { metric_name: Some(re.clone()), attribute_key: Some(re) },
        }
    })
}

macro_rules! check {
    ($t:ty, $list:ident, $walk:ident, $rest:expr) => {{
        let Ok(req) = <$t>::decode($rest) else { return };
        let p = p();
        let sc = Scanner { redactor: Some(&p.r), limits: Some(&p.l), naming: Some(&p.n) };
        for e in &req.$list {
            let wire = sc.$walk(&e.encode_to_vec()).expect("canonical bytes are read");
            let mut x = e.clone();
            let f = p.r.$walk(&mut x, Apply::Observe).1;
            let o = p.l.$walk(&mut x, Apply::Observe).1;
            let b = p.n.$walk(&mut x, Apply::Observe).1;
            assert_eq!(&x, e, "observe changes nothing");
            assert_eq!(wire.findings, f);
            assert_eq!(wire.over, o);
            assert_eq!(wire.broken, b);
        }
    }};
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 3 {
        0 => check!(ExportTraceServiceRequest, resource_spans, resource_spans, rest),
        1 => check!(ExportLogsServiceRequest, resource_logs, resource_logs, rest),
        _ => check!(ExportMetricsServiceRequest, resource_metrics, resource_metrics, rest),
    }
});
