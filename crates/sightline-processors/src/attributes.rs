//! `processors.attributes`, as the collector contrib's `attributesprocessor`: the
//! [`attraction`](crate::attraction) actions applied to every span's, log record's and data
//! point's attributes, limited by `include` / `exclude` ([`matching`](crate::matching)).
//!
//! The request is decoded to its items ([`items`](crate::items)), edited in place and
//! encoded once. The cost per item is measured in `benches/micro` and discussed in ADR 15.

use crate::attraction::{ActionConfig, Actions, Placement, Request as Context};
use crate::items::Request;
use crate::lazy::Heads;
use crate::matching::{MatchProperties, Scope, Skip};
use opentelemetry_proto::tonic::metrics::v1::metric;
use serde::Deserialize;
use sightline_core::pipeline::{ProcessError, Processor};
use sightline_core::{Payload, Signal};

/// `processors.attributes`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesConfig {
    /// The actions, in order (required, at least one).
    #[serde(default)]
    pub actions: Vec<ActionConfig>,
    #[serde(default)]
    pub include: Option<MatchProperties>,
    #[serde(default)]
    pub exclude: Option<MatchProperties>,
}

impl AttributesConfig {
    /// The actions' checks; `include` / `exclude` are checked per signal when a pipeline
    /// uses the processor ([`AttributesProcessor::new`]), as in the collector.
    pub fn validate(&self) -> Vec<(String, String)> {
        if self.actions.is_empty() {
            return vec![("actions".into(), "missing required field \"actions\"".into())];
        }
        match Actions::new(&self.actions) {
            Ok(_) => Vec::new(),
            Err(errs) => errs.into_iter().map(|(k, m)| (format!("actions.{k}"), m)).collect(),
        }
    }

    /// The `include` / `exclude` checks for a pipeline of `signal`.
    pub fn validate_for(&self, signal: Signal) -> Result<(), (String, String)> {
        Skip::new(self.include.as_ref(), self.exclude.as_ref(), signal).map(|_| ())
    }
}

pub struct AttributesProcessor {
    actions: Actions,
    skip: Skip,
    placement: Placement,
}

impl AttributesProcessor {
    /// `placement`: after a `batch` processor or not, for `from_context`.
    pub fn new(cfg: &AttributesConfig, signal: Signal, placement: Placement) -> Result<AttributesProcessor, String> {
        let actions = Actions::new(&cfg.actions).map_err(|e| format!("{e:?}"))?;
        let skip =
            Skip::new(cfg.include.as_ref(), cfg.exclude.as_ref(), signal).map_err(|(k, m)| format!("{k}: {m}"))?;
        Ok(AttributesProcessor { actions, skip, placement })
    }

    fn edit(&self, req: &mut Request, cx: Context) {
        let a = &self.actions;
        match req {
            Request::Traces(r) => {
                for rs in &mut r.resources {
                    for ss in &mut rs.scopes {
                        let scope = Scope::of(ss.scope.as_ref());
                        for slot in &mut ss.items {
                            if !self.skip.is_empty() && self.skip.span(rs.resource.as_ref(), &scope, slot.decoded()) {
                                continue;
                            }
                            a.apply_slot(slot, cx);
                        }
                    }
                }
            }
            Request::Logs(r) => {
                for rl in &mut r.resources {
                    for sl in &mut rl.scopes {
                        let scope = Scope::of(sl.scope.as_ref());
                        for slot in &mut sl.items {
                            if !self.skip.is_empty() && self.skip.log(rl.resource.as_ref(), &scope, slot.decoded()) {
                                continue;
                            }
                            a.apply_slot(slot, cx);
                        }
                    }
                }
            }
            Request::Metrics(r) => {
                for m in r.resource_metrics.iter_mut().flat_map(|r| &mut r.scope_metrics).flat_map(|s| &mut s.metrics) {
                    if self.skip.metric(&m.name) {
                        continue;
                    }
                    match &mut m.data {
                        Some(metric::Data::Gauge(g)) => {
                            g.data_points.iter_mut().for_each(|p| a.apply(&mut p.attributes, cx))
                        }
                        Some(metric::Data::Sum(s)) => {
                            s.data_points.iter_mut().for_each(|p| a.apply(&mut p.attributes, cx))
                        }
                        Some(metric::Data::Histogram(h)) => {
                            h.data_points.iter_mut().for_each(|p| a.apply(&mut p.attributes, cx))
                        }
                        Some(metric::Data::ExponentialHistogram(h)) => {
                            h.data_points.iter_mut().for_each(|p| a.apply(&mut p.attributes, cx))
                        }
                        Some(metric::Data::Summary(s)) => {
                            s.data_points.iter_mut().for_each(|p| a.apply(&mut p.attributes, cx))
                        }
                        None => {}
                    }
                }
            }
        }
    }
}

impl Processor for AttributesProcessor {
    fn process(&self, payload: Payload) -> Result<Payload, ProcessError> {
        // include/exclude read resources (services, resources) and scopes (libraries).
        let heads = if self.skip.is_empty() { Heads::Keep } else { Heads::Decode };
        let mut req = Request::decode(payload.signal(), payload.bytes(), heads)?;
        self.edit(&mut req, Context { client: payload.client(), placement: &self.placement });
        req.into_payload(payload, false)
    }
}
