//! The platform's guardrails (issue 12). This crate holds what does not depend on the
//! pipeline: the validated detectors of sensitive values and their redaction ([`detect`]).

pub mod detect;

pub use detect::{Detectors, Kind, Match};
