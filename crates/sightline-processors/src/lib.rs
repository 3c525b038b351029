//! Sightline's processors. They run inline on the receiving task, so none of them may block,
//! wait or do I/O; each takes a [`Payload`](sightline_core::Payload) and returns one.
//!
//! - [`ownership`]: stamps every resource with its owning team and the team's metadata,
//!   editing `Resource` messages at the wire level (spans, log records and points are copied
//!   through as bytes), with a per-thread cache keyed by the resource's bytes; with
//!   `metrics_datapoint_attributes` it also writes the team onto every metric data point
//!   ([`datapoints`]).
//! - [`quota`]: per-team ingest quotas (token buckets on items/s and bytes/s), after ownership.
//! - [`resource`]: the collector's `resource` processor, the [`attraction`] actions on every
//!   resource's attributes (each resource decoded alone; items copied as bytes).
//! - [`attributes`], [`filter`], [`transform`]: the collector's item-level processors (OTTL
//!   from `sightline-ottl`), on spans and log records kept encoded ([`lazy`]) and on decoded
//!   metrics ([`items`]); ADR 15. The common span and log forms run as wire plans
//!   ([`wire_plan`]; ADR 21).
//! - [`probabilistic_sampler`]: the collector's trace and log sampler, the same decision per item.
//! - [`memory_limiter`]: the collector's `memory_limiter` config; in Sightline it sets the
//!   global admission budget enforced by the receivers before a body is buffered.

pub mod attraction;
pub mod attributes;
pub mod datapoints;
pub mod filter;
pub mod items;
pub mod lazy;
pub mod matching;
pub mod memory_limiter;
pub mod ottl_run;
pub mod ownership;
pub mod policy;
pub mod probabilistic_sampler;
pub mod quota;
pub mod resource;
pub mod transform;
pub mod wire_plan;
