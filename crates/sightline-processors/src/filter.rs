//! `processors.filter`, as the collector contrib's `filterprocessor` with OTTL conditions:
//! `traces.resource` / `traces.span` / `traces.spanevent`, `metrics.resource` /
//! `metrics.metric` / `metrics.datapoint`, `logs.resource` / `logs.log_record`, and the newer
//! `trace_conditions` / `metric_conditions` / `log_conditions` (flat conditions whose context
//! is inferred from their paths, or groups with `context`, `conditions` and `error_mode`, run
//! one after the other; the scope context too). An item is dropped when any of its context's
//! conditions is true; a metric left without data points, and scopes and resources left
//! without items, are removed as in the collector. Dropped items are counted in
//! `otelcol_processor_filter_{spans,datapoints,logs}_filtered`.
//!
//! The legacy `spans`/`metrics`/`logs` `include`/`exclude` matching is refused with a message
//! naming the OTTL form to use.

use crate::items::{Request, point_count};
use crate::lazy::Heads;
use crate::ottl_run::{self, ErrorMode};
use crate::wire_plan::{self, Fate};
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use sightline_core::pipeline::{After, ProcessError, Processor, ResourceStage};
use sightline_core::{Counter, Payload, Registry, Signal};
use sightline_ottl::plan::Plan;
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
    pub trace_conditions: Vec<ConditionsEntry>,
    #[serde(default)]
    pub metric_conditions: Vec<ConditionsEntry>,
    #[serde(default)]
    pub log_conditions: Vec<ConditionsEntry>,
}

/// One entry of `trace_conditions` (and the metric and log ones): a condition (the flat form)
/// or a group.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ConditionsEntry {
    Flat(String),
    Group(ConditionsGroup),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionsGroup {
    /// The context of every condition; inferred per condition from its paths when absent.
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub conditions: Vec<String>,
    /// Overrides the processor's `error_mode` for this group.
    #[serde(default)]
    pub error_mode: Option<ErrorMode>,
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

/// One pass over a request: the conditions of each context and the error mode.
#[derive(Default)]
struct Compiled {
    resource: Vec<Condition>,
    scope: Vec<Condition>,
    item: Vec<Condition>,
    sub: Vec<Condition>,
    mode: ErrorMode,
}

impl Compiled {
    fn all(&self) -> impl Iterator<Item = &Condition> {
        self.resource.iter().chain(&self.scope).chain(&self.item).chain(&self.sub)
    }

    fn is_empty(&self) -> bool {
        self.all().next().is_none()
    }

    /// The list a condition of context `ctx` goes to.
    fn of(&mut self, ctx: Ctx) -> &mut Vec<Condition> {
        match ctx {
            Ctx::Resource => &mut self.resource,
            Ctx::Scope => &mut self.scope,
            Ctx::SpanEvent | Ctx::DataPoint => &mut self.sub,
            Ctx::Span | Ctx::Metric | Ctx::Log => &mut self.item,
        }
    }
}

/// Whether a condition of any pass reads resources or scopes (else they stay encoded).
fn heads(passes: &[Compiled]) -> Heads {
    if passes.iter().flat_map(Compiled::all).any(Condition::needs_heads) { Heads::Decode } else { Heads::Keep }
}

/// The contexts of a signal's `*_conditions`.
fn contexts(signal: Signal) -> &'static [Ctx] {
    match signal {
        Signal::Traces => &[Ctx::Resource, Ctx::Scope, Ctx::Span, Ctx::SpanEvent],
        Signal::Metrics => &[Ctx::Resource, Ctx::Scope, Ctx::Metric, Ctx::DataPoint],
        Signal::Logs => &[Ctx::Resource, Ctx::Scope, Ctx::Log],
    }
}

impl FilterConfig {
    fn conditions(&self, signal: Signal) -> (&'static str, &[ConditionsEntry]) {
        match signal {
            Signal::Traces => ("trace_conditions", &self.trace_conditions),
            Signal::Metrics => ("metric_conditions", &self.metric_conditions),
            Signal::Logs => ("log_conditions", &self.log_conditions),
        }
    }

    /// Whether the signal's older per-context keys are used.
    fn has_context_keys(&self, signal: Signal) -> bool {
        match signal {
            Signal::Traces => {
                !(self.traces.resource.is_empty() && self.traces.span.is_empty() && self.traces.spanevent.is_empty())
            }
            Signal::Metrics => {
                !(self.metrics.resource.is_empty()
                    && self.metrics.metric.is_empty()
                    && self.metrics.datapoint.is_empty())
            }
            Signal::Logs => !(self.logs.resource.is_empty() && self.logs.log_record.is_empty()),
        }
    }

    /// The passes for `signal`: the per-context keys as one pass, or one pass per group of
    /// the signal's `*_conditions`.
    fn compile(&self, signal: Signal) -> Result<Vec<Compiled>, Vec<(String, String)>> {
        let mut errs = Vec::new();
        let (key, entries) = self.conditions(signal);
        if !entries.is_empty() {
            if self.has_context_keys(signal) {
                let old = match signal {
                    Signal::Traces => "traces.resource, traces.span, traces.spanevent",
                    Signal::Metrics => "metrics.resource, metrics.metric, metrics.datapoint",
                    Signal::Logs => "logs.resource, logs.log_record",
                };
                return Err(vec![(key.into(), format!("cannot be used together with {old}"))]);
            }
            return self.compile_groups(key, entries, signal);
        }
        let mut c = Compiled { mode: self.error_mode, ..Default::default() };
        match signal {
            Signal::Traces => {
                c.resource = compile("traces.resource", &self.traces.resource, Ctx::Resource, &mut errs);
                c.item = compile("traces.span", &self.traces.span, Ctx::Span, &mut errs);
                c.sub = compile("traces.spanevent", &self.traces.spanevent, Ctx::SpanEvent, &mut errs);
            }
            Signal::Metrics => {
                c.resource = compile("metrics.resource", &self.metrics.resource, Ctx::Resource, &mut errs);
                c.item = compile("metrics.metric", &self.metrics.metric, Ctx::Metric, &mut errs);
                c.sub = compile("metrics.datapoint", &self.metrics.datapoint, Ctx::DataPoint, &mut errs);
            }
            Signal::Logs => {
                c.resource = compile("logs.resource", &self.logs.resource, Ctx::Resource, &mut errs);
                c.item = compile("logs.log_record", &self.logs.log_record, Ctx::Log, &mut errs);
            }
        }
        if errs.is_empty() { Ok(vec![c]) } else { Err(errs) }
    }

    /// `*_conditions`: consecutive flat conditions are one group, as in the collector, and the
    /// two forms cannot be mixed.
    fn compile_groups(
        &self,
        key: &str,
        entries: &[ConditionsEntry],
        signal: Signal,
    ) -> Result<Vec<Compiled>, Vec<(String, String)>> {
        let flat: Vec<String> = entries
            .iter()
            .filter_map(|e| match e {
                ConditionsEntry::Flat(s) => Some(s.clone()),
                ConditionsEntry::Group(_) => None,
            })
            .collect();
        if !flat.is_empty() && flat.len() != entries.len() {
            return Err(vec![(
                key.to_string(),
                "configuring multiple configuration styles is not supported, please use only Basic configuration (conditions) or only Advanced configuration (context, conditions)".to_string(),
            )]);
        }
        let groups: Vec<(String, ConditionsGroup)> = if flat.is_empty() {
            entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| match e {
                    ConditionsEntry::Group(g) => Some((format!("{key}.{i}"), g.clone())),
                    ConditionsEntry::Flat(_) => None,
                })
                .collect()
        } else {
            vec![(key.to_string(), ConditionsGroup { conditions: flat, ..Default::default() })]
        };
        let allowed = contexts(signal);
        let names = || allowed.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
        let mut errs = Vec::new();
        let mut passes = Vec::new();
        for (base, g) in groups {
            let mut c = Compiled { mode: g.error_mode.unwrap_or(self.error_mode), ..Default::default() };
            let explicit = match &g.context {
                None => None,
                Some(name) => match Ctx::parse(&name.to_lowercase()).filter(|c| allowed.contains(c)) {
                    Some(ctx) => Some(ctx),
                    None => {
                        errs.push((
                            format!("{base}.context"),
                            format!("unknown context {name:?}; use one of {}", names()),
                        ));
                        continue;
                    }
                },
            };
            if g.conditions.is_empty() {
                errs.push((format!("{base}.conditions"), "at least one condition is required".into()));
            }
            for (i, s) in g.conditions.iter().enumerate() {
                let at = if g.context.is_some() || base.contains('.') {
                    format!("{base}.conditions.{i}")
                } else {
                    format!("{base}.{i}")
                };
                if s.trim().is_empty() {
                    errs.push((at, "condition cannot be empty".into()));
                    continue;
                }
                let ctx = match explicit {
                    Some(ctx) => ctx,
                    None => match sightline_ottl::infer_context(&[s.as_str()], allowed) {
                        Ok(Some(ctx)) => ctx,
                        Ok(None) => {
                            errs.push((
                                at,
                                format!(
                                    "unable to infer the context of {s:?}: prefix its paths with one of {} (e.g. span.attributes) or use a group with context:",
                                    names()
                                ),
                            ));
                            continue;
                        }
                        Err(e) => {
                            errs.push(ottl_run::render(&at, s, &e));
                            continue;
                        }
                    },
                };
                match Condition::parse(s, ctx) {
                    Ok(cond) => c.of(ctx).push(cond),
                    Err(e) => errs.push(ottl_run::render(&at, s, &e)),
                }
            }
            passes.push(c);
        }
        if errs.is_empty() { Ok(passes) } else { Err(errs) }
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
    passes: Vec<Compiled>,
    heads: Heads,
    filtered: Counter,
    /// The passes as wire plans, when every condition has one (ADR 21).
    plans: Option<Vec<Plan>>,
}

/// Wire plans for passes of span or log record conditions only.
fn plans(passes: &[Compiled], signal: Signal) -> Option<Vec<Plan>> {
    let ctx = match signal {
        Signal::Traces => Ctx::Span,
        Signal::Logs => Ctx::Log,
        Signal::Metrics => return None,
    };
    passes
        .iter()
        .map(|c| {
            let items_only = c.resource.is_empty() && c.scope.is_empty() && c.sub.is_empty();
            if items_only { Plan::filter(ctx, &c.item) } else { None }
        })
        .collect()
}

impl FilterProcessor {
    pub fn new(id: &str, cfg: &FilterConfig, signal: Signal, registry: &Registry) -> Result<FilterProcessor, String> {
        let mut passes = cfg.compile(signal).map_err(|e| format!("{e:?}"))?;
        passes.retain(|p| !p.is_empty());
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
        let heads = heads(&passes);
        let plans = plans(&passes, signal);
        Ok(FilterProcessor { id: id.to_string(), passes, heads, filtered, plans })
    }

    /// Whether any condition holds (errors per `error_mode`: false and go on, or fail).
    fn any(&self, mode: ErrorMode, conds: &[Condition], t: &Target) -> Result<bool, String> {
        for c in conds {
            match c.eval(t) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => mode.handle(&self.id, &c.text, e)?,
            }
        }
        Ok(false)
    }

    fn filter(&self, c: &Compiled, req: &mut Request) -> Result<(), String> {
        let any = |conds: &[Condition], t: &Target| self.any(c.mode, conds, t);
        match req {
            Request::Traces(r) => {
                for rs in &mut r.resources {
                    if heads_match(&any, &c.resource, &mut rs.resource, &mut None)? {
                        rs.scopes.iter_mut().flat_map(|s| &mut s.items).for_each(|i| i.dropped = true);
                        continue;
                    }
                    for ss in &mut rs.scopes {
                        if heads_match(&any, &c.scope, &mut rs.resource, &mut ss.scope)? {
                            ss.items.iter_mut().for_each(|i| i.dropped = true);
                            continue;
                        }
                        for slot in &mut ss.items {
                            if !c.item.is_empty() {
                                let mut cache = Vec::new();
                                let t = Target {
                                    resource: &mut rs.resource,
                                    scope: &mut ss.scope,
                                    item: Item::Span(&mut *slot),
                                    cache: &mut cache,
                                };
                                if any(&c.item, &t)? {
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
                                keep.push(!any(&c.sub, &t)?);
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
                    if heads_match(&any, &c.resource, &mut rl.resource, &mut None)? {
                        rl.scopes.iter_mut().flat_map(|s| &mut s.items).for_each(|i| i.dropped = true);
                        continue;
                    }
                    if c.item.is_empty() && c.scope.is_empty() {
                        continue;
                    }
                    for sl in &mut rl.scopes {
                        if heads_match(&any, &c.scope, &mut rl.resource, &mut sl.scope)? {
                            sl.items.iter_mut().for_each(|i| i.dropped = true);
                            continue;
                        }
                        if c.item.is_empty() {
                            continue;
                        }
                        for slot in &mut sl.items {
                            let mut cache = Vec::new();
                            let t = Target {
                                resource: &mut rl.resource,
                                scope: &mut sl.scope,
                                item: Item::Log(&mut *slot),
                                cache: &mut cache,
                            };
                            if any(&c.item, &t)? {
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
                    match heads_match(&any, &c.resource, &mut rm.resource, &mut None) {
                        Ok(true) => return false,
                        Ok(false) => {}
                        Err(e) => {
                            err = Err(e);
                            return true;
                        }
                    }
                    if c.scope.is_empty() && c.item.is_empty() && c.sub.is_empty() {
                        return !rm.scope_metrics.is_empty();
                    }
                    for sm in &mut rm.scope_metrics {
                        if err.is_ok() {
                            match heads_match(&any, &c.scope, &mut rm.resource, &mut sm.scope) {
                                Ok(true) => {
                                    sm.metrics.clear();
                                    continue;
                                }
                                Ok(false) => {}
                                Err(e) => {
                                    err = Err(e);
                                    continue;
                                }
                            }
                        }
                        if c.item.is_empty() && c.sub.is_empty() {
                            continue;
                        }
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
                                match any(&c.item, &t) {
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
                                match any(&c.sub, &t) {
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

/// Evaluates a list of conditions with the pass's error mode.
type Any<'a> = dyn Fn(&[Condition], &Target) -> Result<bool, String> + 'a;

/// Whether resource- or scope-context `conds` hold (false when there are none).
fn heads_match(
    any: &Any,
    conds: &[Condition],
    resource: &mut Option<Resource>,
    scope: &mut Option<InstrumentationScope>,
) -> Result<bool, String> {
    if conds.is_empty() {
        return Ok(false);
    }
    let mut cache = Vec::new();
    any(conds, &Target { resource, scope, item: Item::None, cache: &mut cache })
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

impl FilterProcessor {
    /// The conditions as wire plans (ADR 21), with the resource edit of the processor before
    /// when given (ADR 30).
    fn run_plans(
        &self,
        plans: &[Plan],
        payload: Payload,
        prior: Option<&dyn ResourceStage>,
    ) -> Result<Payload, ProcessError> {
        let before = payload.items();
        let drop = &mut |item: &[u8], _: &mut wire_plan::Out| {
            if plans.iter().any(|p| p.drops(item)) { Fate::Drop } else { Fate::Keep }
        };
        Ok(match wire_plan::rewrite_after(&payload, true, prior, drop)? {
            None => payload,
            Some((out, kept)) => {
                self.filtered.add(before.saturating_sub(kept));
                payload.with_bytes(Bytes::from(out), kept)
            }
        })
    }
}

impl Processor for FilterProcessor {
    fn process_after(&self, payload: Payload, prior: &dyn ResourceStage) -> After {
        match &self.plans {
            Some(plans) if !self.passes.is_empty() => After::Ran(self.run_plans(plans, payload, Some(prior))),
            _ => After::Declined(payload),
        }
    }

    fn process(&self, payload: Payload) -> Result<Payload, ProcessError> {
        if self.passes.is_empty() {
            return Ok(payload);
        }
        let before = payload.items();
        if let Some(plans) = &self.plans {
            return self.run_plans(plans, payload, None);
        }
        let mut req = Request::decode(payload.signal(), payload.bytes(), self.heads)?;
        for c in &self.passes {
            self.filter(c, &mut req).map_err(|message| ProcessError::Refused { message })?;
        }
        let out = req.into_payload(payload, true)?;
        self.filtered.add(before.saturating_sub(out.items()));
        Ok(out)
    }
}
