//! Running OTTL over decoded requests: the items of each context, visited in order, with a
//! fresh `cache` map per item (as the collector's transform contexts), and `error_mode`.

use crate::lazy::LazyRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde::Deserialize;
use sightline_ottl::{Ctx, Item, Target};

/// `error_mode`: what an evaluation error does.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ErrorMode {
    /// Log it and go on (the statement or condition is skipped or counts as false).
    Ignore,
    /// Go on without logging.
    Silent,
    /// Fail the request (the collector's default).
    #[default]
    Propagate,
}

impl ErrorMode {
    /// `Err` to stop, `Ok` to go on.
    pub fn handle(self, component: &str, what: &str, err: String) -> Result<(), String> {
        match self {
            ErrorMode::Propagate => Err(format!("{component}: {what}: {err}")),
            ErrorMode::Ignore => {
                tracing::warn!(processor = component, statement = what, error = %err, "failed to execute (error_mode: ignore)");
                Ok(())
            }
            ErrorMode::Silent => Ok(()),
        }
    }
}

type Visit<'f> = &'f mut dyn FnMut(&mut Target) -> Result<(), String>;

pub fn traces(req: &mut LazyRequest<Span>, ctx: Ctx, f: Visit) -> Result<(), String> {
    for rs in &mut req.resources {
        if ctx == Ctx::Resource {
            let (mut scope, mut cache) = (None, Vec::new());
            f(&mut Target { resource: &mut rs.resource, scope: &mut scope, item: Item::None, cache: &mut cache })?;
            continue;
        }
        for ss in &mut rs.scopes {
            if ctx == Ctx::Scope {
                let mut cache = Vec::new();
                f(&mut Target {
                    resource: &mut rs.resource,
                    scope: &mut ss.scope,
                    item: Item::None,
                    cache: &mut cache,
                })?;
                continue;
            }
            for slot in &mut ss.items {
                if ctx == Ctx::SpanEvent {
                    if !slot.has_events() {
                        continue;
                    }
                    for i in 0..slot.decoded().events.len() {
                        let mut cache = Vec::new();
                        let item = Item::Event(&mut *slot, i);
                        f(&mut Target { resource: &mut rs.resource, scope: &mut ss.scope, item, cache: &mut cache })?;
                    }
                    continue;
                }
                let mut cache = Vec::new();
                let item = Item::Span(slot);
                f(&mut Target { resource: &mut rs.resource, scope: &mut ss.scope, item, cache: &mut cache })?;
            }
        }
    }
    Ok(())
}

pub fn logs(req: &mut LazyRequest<LogRecord>, ctx: Ctx, f: Visit) -> Result<(), String> {
    for rl in &mut req.resources {
        if ctx == Ctx::Resource {
            let (mut scope, mut cache) = (None, Vec::new());
            f(&mut Target { resource: &mut rl.resource, scope: &mut scope, item: Item::None, cache: &mut cache })?;
            continue;
        }
        for sl in &mut rl.scopes {
            if ctx == Ctx::Scope {
                let mut cache = Vec::new();
                f(&mut Target {
                    resource: &mut rl.resource,
                    scope: &mut sl.scope,
                    item: Item::None,
                    cache: &mut cache,
                })?;
                continue;
            }
            for slot in &mut sl.items {
                let mut cache = Vec::new();
                let item = Item::Log(slot);
                f(&mut Target { resource: &mut rl.resource, scope: &mut sl.scope, item, cache: &mut cache })?;
            }
        }
    }
    Ok(())
}

pub fn metrics(req: &mut ExportMetricsServiceRequest, ctx: Ctx, f: Visit) -> Result<(), String> {
    for rm in &mut req.resource_metrics {
        if ctx == Ctx::Resource {
            let (mut scope, mut cache) = (None, Vec::new());
            f(&mut Target { resource: &mut rm.resource, scope: &mut scope, item: Item::None, cache: &mut cache })?;
            continue;
        }
        for sm in &mut rm.scope_metrics {
            if ctx == Ctx::Scope {
                let mut cache = Vec::new();
                f(&mut Target {
                    resource: &mut rm.resource,
                    scope: &mut sm.scope,
                    item: Item::None,
                    cache: &mut cache,
                })?;
                continue;
            }
            for m in &mut sm.metrics {
                if ctx == Ctx::DataPoint {
                    for i in 0..crate::items::point_count(m) as usize {
                        let mut cache = Vec::new();
                        let item = Item::Point(&mut *m, i);
                        f(&mut Target { resource: &mut rm.resource, scope: &mut sm.scope, item, cache: &mut cache })?;
                    }
                    continue;
                }
                let mut cache = Vec::new();
                let item = Item::Metric(m);
                f(&mut Target { resource: &mut rm.resource, scope: &mut sm.scope, item, cache: &mut cache })?;
            }
        }
    }
    Ok(())
}

/// A config error for a statement or condition: the message, column and statement.
pub fn render(key: &str, src: &str, e: &sightline_ottl::Error) -> (String, String) {
    (key.to_string(), e.render(src))
}
