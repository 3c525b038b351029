//! `processors.filter`, as the collector contrib's `filterprocessor` with OTTL conditions:
//! `traces.resource` / `traces.span` / `traces.spanevent`, `metrics.resource` /
//! `metrics.metric` / `metrics.datapoint`, `logs.resource` / `logs.log_record`. An item is
//! dropped when any of its context's conditions is true; a metric left without data points,
//! and scopes and resources left without items, are removed as in the collector. Dropped
//! items are counted in `otelcol_processor_filter_{spans,datapoints,logs}_filtered`.
//!
//! The legacy `spans`/`metrics`/`logs` `include`/`exclude` matching and the `*_conditions`
//! forms are refused with a message naming the OTTL form to use.

use crate::items::{Request, point_count};
use crate::lazy::Heads;
use crate::ottl_run::{self, ErrorMode};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use serde::Deserialize;
use sightline_core::pipeline::{ProcessError, Processor};
use sightline_core::{Counter, Payload, Registry, Signal};
use sightline_ottl::{Condition, Ctx, Item, Target};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceFilters {
    #[serde(default)]
    pub resource: Vec<String>,
    #[serde(default)]
    pub span: Vec<String>,
    #[serde(default)]
    pub spanevent: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricFilters {
    #[serde(default)]
    pub resource: Vec<String>,
    #[serde(default)]
    pub metric: Vec<String>,
    #[serde(default)]
    pub datapoint: Vec<String>,
    #[serde(default)]
    pub include: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub exclude: Option<serde_yaml_ng::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFilters {
    #[serde(default)]
    pub resource: Vec<String>,
    #[serde(default)]
    pub log_record: Vec<String>,
    #[serde(default)]
    pub include: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub exclude: Option<serde_yaml_ng::Value>,
}

/// `processors.filter`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    #[serde(default)]
    pub error_mode: ErrorMode,
    #[serde(default)]
    pub traces: TraceFilters,
    #[serde(default)]
    pub metrics: MetricFilters,
    #[serde(default)]
    pub logs: LogFilters,
    #[serde(default)]
    pub spans: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub trace_conditions: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub metric_conditions: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub log_conditions: Option<serde_yaml_ng::Value>,
}

fn compile(key: &str, srcs: &[String], ctx: Ctx, errs: &mut Vec<(String, String)>) -> Vec<Condition> {
    let mut out = Vec::new();
    for (i, s) in srcs.iter().enumerate() {
        if s.trim().is_empty() {
            errs.push((format!("{key}.{i}"), "condition cannot be empty".into()));
            continue;
        }
        match Condition::parse(s, ctx) {
            Ok(c) => out.push(c),
            Err(e) => errs.push(ottl_run::render(&format!("{key}.{i}"), s, &e)),
        }
    }
    out
}

struct Compiled {
    resource: Vec<Condition>,
    item: Vec<Condition>,
    sub: Vec<Condition>,
}

impl Compiled {
    /// Whether a condition reads resources or scopes (else they stay encoded).
    fn heads(&self) -> Heads {
        let all = || self.resource.iter().chain(&self.item).chain(&self.sub);
        if all().any(Condition::needs_heads) { Heads::Decode } else { Heads::Keep }
    }
}

impl FilterConfig {
    fn compile(&self, signal: Signal) -> Result<Compiled, Vec<(String, String)>> {
        let mut errs = Vec::new();
        let c = match signal {
            Signal::Traces => Compiled {
                resource: compile("traces.resource", &self.traces.resource, Ctx::Resource, &mut errs),
                item: compile("traces.span", &self.traces.span, Ctx::Span, &mut errs),
                sub: compile("traces.spanevent", &self.traces.spanevent, Ctx::SpanEvent, &mut errs),
            },
            Signal::Metrics => Compiled {
                resource: compile("metrics.resource", &self.metrics.resource, Ctx::Resource, &mut errs),
                item: compile("metrics.metric", &self.metrics.metric, Ctx::Metric, &mut errs),
                sub: compile("metrics.datapoint", &self.metrics.datapoint, Ctx::DataPoint, &mut errs),
            },
            Signal::Logs => Compiled {
                resource: compile("logs.resource", &self.logs.resource, Ctx::Resource, &mut errs),
                item: compile("logs.log_record", &self.logs.log_record, Ctx::Log, &mut errs),
                sub: Vec::new(),
            },
        };
        if errs.is_empty() { Ok(c) } else { Err(errs) }
    }

    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let legacy = "the legacy include/exclude matching is not supported by Sightline; write OTTL conditions (e.g. traces.span: ['attributes[\"http.route\"] == \"/healthz\"'])";
        for (k, v) in [
            ("spans", &self.spans),
            ("metrics.include", &self.metrics.include),
            ("metrics.exclude", &self.metrics.exclude),
            ("logs.include", &self.logs.include),
            ("logs.exclude", &self.logs.exclude),
        ] {
            if v.is_some() {
                errs.push((k.to_string(), legacy.to_string()));
            }
        }
        for (k, v) in [
            ("trace_conditions", &self.trace_conditions),
            ("metric_conditions", &self.metric_conditions),
            ("log_conditions", &self.log_conditions),
        ] {
            if v.is_some() {
                errs.push((
                    k.to_string(),
                    "is not supported by Sightline yet; use traces/metrics/logs with their context keys".to_string(),
                ));
            }
        }
        for s in [Signal::Traces, Signal::Metrics, Signal::Logs] {
            if let Err(e) = self.compile(s) {
                errs.extend(e);
            }
        }
        errs
    }
}

pub struct FilterProcessor {
    id: String,
    mode: ErrorMode,
    c: Compiled,
    filtered: Counter,
}

impl FilterProcessor {
    pub fn new(id: &str, cfg: &FilterConfig, signal: Signal, registry: &Registry) -> Result<FilterProcessor, String> {
        let c = cfg.compile(signal).map_err(|e| format!("{e:?}"))?;
        let (name, help) = match signal {
            Signal::Traces => {
                ("otelcol_processor_filter_spans_filtered", "Number of spans dropped by the filter processor")
            }
            Signal::Metrics => (
                "otelcol_processor_filter_datapoints_filtered",
                "Number of metric data points dropped by the filter processor",
            ),
            Signal::Logs => {
                ("otelcol_processor_filter_logs_filtered", "Number of logs dropped by the filter processor")
            }
        };
        let filtered = registry.counter(name, help, &[("processor", id)]);
        Ok(FilterProcessor { id: id.to_string(), mode: cfg.error_mode, c, filtered })
    }

    /// Whether any condition holds (errors per `error_mode`: false and go on, or fail).
    fn any(&self, conds: &[Condition], t: &Target) -> Result<bool, String> {
        for c in conds {
            match c.eval(t) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => self.mode.handle(&self.id, &c.text, e)?,
            }
        }
        Ok(false)
    }

    fn filter(&self, req: &mut Request) -> Result<(), String> {
        let c = &self.c;
        match req {
            Request::Traces(r) => {
                for rs in &mut r.resources {
                    if !c.resource.is_empty() {
                        let (mut none, mut cache) = (None, Vec::new());
                        let t = Target {
                            resource: &mut rs.resource,
                            scope: &mut none,
                            item: Item::None,
                            cache: &mut cache,
                        };
                        if self.any(&c.resource, &t)? {
                            rs.scopes.iter_mut().flat_map(|s| &mut s.items).for_each(|i| i.dropped = true);
                            continue;
                        }
                    }
                    for ss in &mut rs.scopes {
                        for slot in &mut ss.items {
                            if !c.item.is_empty() {
                                let mut cache = Vec::new();
                                let t = Target {
                                    resource: &mut rs.resource,
                                    scope: &mut ss.scope,
                                    item: Item::Span(&mut *slot),
                                    cache: &mut cache,
                                };
                                if self.any(&c.item, &t)? {
                                    slot.dropped = true;
                                    continue;
                                }
                            }
                            if c.sub.is_empty() || !slot.has_events() {
                                continue;
                            }
                            let n = slot.decoded().events.len();
                            let mut keep = Vec::with_capacity(n);
                            for i in 0..n {
                                let mut cache = Vec::new();
                                let t = Target {
                                    resource: &mut rs.resource,
                                    scope: &mut ss.scope,
                                    item: Item::Event(&mut *slot, i),
                                    cache: &mut cache,
                                };
                                keep.push(!self.any(&c.sub, &t)?);
                            }
                            if keep.iter().any(|k| !k) {
                                let mut k = keep.into_iter();
                                slot.get_mut().events.retain(|_| k.next().unwrap_or(true));
                            }
                        }
                    }
                }
                r.prune();
                Ok(())
            }
            Request::Logs(r) => {
                for rl in &mut r.resources {
                    if !c.resource.is_empty() {
                        let (mut none, mut cache) = (None, Vec::new());
                        let t = Target {
                            resource: &mut rl.resource,
                            scope: &mut none,
                            item: Item::None,
                            cache: &mut cache,
                        };
                        if self.any(&c.resource, &t)? {
                            rl.scopes.iter_mut().flat_map(|s| &mut s.items).for_each(|i| i.dropped = true);
                            continue;
                        }
                    }
                    if c.item.is_empty() {
                        continue;
                    }
                    for sl in &mut rl.scopes {
                        for slot in &mut sl.items {
                            let mut cache = Vec::new();
                            let t = Target {
                                resource: &mut rl.resource,
                                scope: &mut sl.scope,
                                item: Item::Log(&mut *slot),
                                cache: &mut cache,
                            };
                            if self.any(&c.item, &t)? {
                                slot.dropped = true;
                            }
                        }
                    }
                }
                r.prune();
                Ok(())
            }
            Request::Metrics(r) => {
                let mut err = Ok(());
                r.resource_metrics.retain_mut(|rm| {
                    if err.is_err() {
                        return true;
                    }
                    let (mut none, mut cache) = (None, Vec::new());
                    if !c.resource.is_empty() {
                        let t = Target {
                            resource: &mut rm.resource,
                            scope: &mut none,
                            item: Item::None,
                            cache: &mut cache,
                        };
                        match self.any(&c.resource, &t) {
                            Ok(true) => return false,
                            Ok(false) => {}
                            Err(e) => {
                                err = Err(e);
                                return true;
                            }
                        }
                    }
                    if c.item.is_empty() && c.sub.is_empty() {
                        return !rm.scope_metrics.is_empty();
                    }
                    for sm in &mut rm.scope_metrics {
                        sm.metrics.retain_mut(|m| {
                            if err.is_err() {
                                return true;
                            }
                            let mut cache = Vec::new();
                            if !c.item.is_empty() {
                                let t = Target {
                                    resource: &mut rm.resource,
                                    scope: &mut sm.scope,
                                    item: Item::Metric(m),
                                    cache: &mut cache,
                                };
                                match self.any(&c.item, &t) {
                                    Ok(true) => return false,
                                    Ok(false) => {}
                                    Err(e) => {
                                        err = Err(e);
                                        return true;
                                    }
                                }
                            }
                            if c.sub.is_empty() {
                                return true;
                            }
                            let n = point_count(m) as usize;
                            let mut keep = Vec::with_capacity(n);
                            for i in 0..n {
                                let mut cache = Vec::new();
                                let t = Target {
                                    resource: &mut rm.resource,
                                    scope: &mut sm.scope,
                                    item: Item::Point(m, i),
                                    cache: &mut cache,
                                };
                                match self.any(&c.sub, &t) {
                                    Ok(d) => keep.push(!d),
                                    Err(e) => {
                                        err = Err(e);
                                        keep.push(true);
                                    }
                                }
                            }
                            retain_points(m, &keep);
                            point_count(m) > 0
                        });
                    }
                    rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
                    !rm.scope_metrics.is_empty()
                });
                err
            }
        }
    }
}

fn retain_points(m: &mut Metric, keep: &[bool]) {
    macro_rules! keep {
        ($v:expr) => {{
            let mut k = keep.iter();
            $v.retain(|_| *k.next().unwrap_or(&true));
        }};
    }
    match &mut m.data {
        Some(metric::Data::Gauge(g)) => keep!(g.data_points),
        Some(metric::Data::Sum(s)) => keep!(s.data_points),
        Some(metric::Data::Histogram(h)) => keep!(h.data_points),
        Some(metric::Data::ExponentialHistogram(h)) => keep!(h.data_points),
        Some(metric::Data::Summary(s)) => keep!(s.data_points),
        None => {}
    }
}

impl Processor for FilterProcessor {
    fn process(&self, payload: Payload) -> Result<Payload, ProcessError> {
        if self.c.resource.is_empty() && self.c.item.is_empty() && self.c.sub.is_empty() {
            return Ok(payload);
        }
        let mut req = Request::decode(payload.signal(), payload.bytes(), self.c.heads())?;
        let before = payload.items();
        self.filter(&mut req).map_err(|message| ProcessError::Refused { message })?;
        let out = req.into_payload(payload, true)?;
        self.filtered.add(before.saturating_sub(out.items()));
        Ok(out)
    }
}
