//! The platform's guardrails (issue 12). This crate holds what does not depend on the
//! pipeline: the validated detectors of sensitive values ([`detect`]) and the redaction of every
//! string of an OTLP request ([`redact`]), the SDK's attribute limits ([`limits`]), series
//! limits in bounded memory ([`series`]) and naming rules ([`naming`]).

pub mod detect;
pub mod limits;
pub mod naming;
pub mod points;
pub mod redact;
pub mod scan;
pub mod series;

pub use detect::{Detectors, Kind, Match};

use opentelemetry_proto::tonic::resource::v1::Resource;
use redact::Apply;

/// Runs `f` on each resource entry of a request (`list`, e.g. `resource_spans`) in the mode
/// `apply` gives its resource; `on` gets the resource as it was and what `f` found. Whether
/// anything changed. For tests and tools: the `policy` processor runs its policies per resource
/// itself.
pub fn each<R, T>(
    list: &mut [R],
    resource: impl Fn(&R) -> Option<&Resource>,
    apply: impl Fn(Option<&Resource>) -> Apply,
    mut f: impl FnMut(&mut R, Apply) -> (bool, T),
    mut on: impl FnMut(Option<&Resource>, &T),
) -> bool {
    let mut changed = false;
    for r in list {
        let before = resource(r).cloned();
        let (c, t) = f(r, apply(before.as_ref()));
        on(before.as_ref(), &t);
        changed |= c;
    }
    changed
}
