//! The platform's guardrails (issue 12). This crate holds what does not depend on the
//! pipeline: the validated detectors of sensitive values ([`detect`]) and the redaction of every
//! string of an OTLP request ([`redact`]).

pub mod detect;
pub mod limits;
pub mod redact;

pub use detect::{Detectors, Kind, Match};
