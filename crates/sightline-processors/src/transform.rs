//! `processors.transform`, as the collector contrib's `transformprocessor`: OTTL statements
//! per signal, in the collector's flat form (a list of statements whose context is inferred
//! from their paths) or grouped form (`context`, `statements`, `conditions`, `error_mode`).
//! A group's statements run in order on each item of its context; its `conditions` are ORed
//! and gate every statement of the group.

use crate::items::Request;
use crate::lazy::Heads;
use crate::ottl_run::{self, ErrorMode};
use crate::wire_plan::{self, Fate};
use bytes::Bytes;
use serde::Deserialize;
use sightline_core::pipeline::{After, ProcessError, Processor, ResourceStage};
use sightline_core::{Payload, Signal};
use sightline_ottl::plan::Plan;
use sightline_ottl::{Condition, Ctx, Statement, Target};

/// One entry of `trace_statements` / `metric_statements` / `log_statements`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum StatementsEntry {
    Flat(String),
    Group(GroupConfig),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub statements: Vec<String>,
    #[serde(default)]
    pub conditions: Vec<String>,
    #[serde(default)]
    pub error_mode: Option<ErrorMode>,
    /// The collector's shared cache across groups: not supported (refused when true).
    #[serde(default)]
    pub shared_cache: bool,
}

/// `processors.transform`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    #[serde(default)]
    pub error_mode: ErrorMode,
    #[serde(default)]
    pub trace_statements: Vec<StatementsEntry>,
    #[serde(default)]
    pub metric_statements: Vec<StatementsEntry>,
    #[serde(default)]
    pub log_statements: Vec<StatementsEntry>,
    /// The collector's `flatten_data` (logs): not supported (refused when true).
    #[serde(default)]
    pub flatten_data: bool,
}

pub struct Group {
    ctx: Ctx,
    statements: Vec<Statement>,
    conditions: Vec<Condition>,
    error_mode: ErrorMode,
}

fn contexts(signal: Signal) -> &'static [Ctx] {
    match signal {
        Signal::Traces => &[Ctx::Resource, Ctx::Scope, Ctx::Span, Ctx::SpanEvent],
        Signal::Metrics => &[Ctx::Resource, Ctx::Scope, Ctx::Metric, Ctx::DataPoint],
        Signal::Logs => &[Ctx::Resource, Ctx::Scope, Ctx::Log],
    }
}

/// Consecutive flat statements form one group, as in the collector.
fn groups(entries: &[StatementsEntry]) -> Vec<(String, GroupConfig)> {
    let mut out: Vec<(String, GroupConfig)> = Vec::new();
    let mut flat: Option<(String, GroupConfig)> = None;
    for (i, e) in entries.iter().enumerate() {
        match e {
            StatementsEntry::Flat(s) => {
                flat.get_or_insert_with(|| (i.to_string(), GroupConfig::default())).1.statements.push(s.clone())
            }
            StatementsEntry::Group(g) => {
                out.extend(flat.take());
                out.push((i.to_string(), g.clone()));
            }
        }
    }
    out.extend(flat);
    out
}

fn compile(
    key: &str,
    entries: &[StatementsEntry],
    signal: Signal,
    default_mode: ErrorMode,
) -> Result<Vec<Group>, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let mut out = Vec::new();
    let allowed = contexts(signal);
    let flat = entries.iter().any(|e| matches!(e, StatementsEntry::Flat(_)));
    if flat && entries.iter().any(|e| matches!(e, StatementsEntry::Group(_))) {
        return Err(vec![(
            key.to_string(),
            "configuring multiple configuration styles is not supported, please use only Basic configuration (statements) or only Advanced configuration (context, statements, conditions)".to_string(),
        )]);
    }
    for (idx, g) in groups(entries) {
        let base = format!("{key}.{idx}");
        if g.shared_cache {
            errs.push((
                format!("{base}.shared_cache"),
                "is not supported by Sightline (each group has its own cache per item)".into(),
            ));
        }
        if g.statements.is_empty() {
            errs.push((format!("{base}.statements"), "at least one statement is required".into()));
            continue;
        }
        let ctx = match &g.context {
            Some(c) => match Ctx::parse(&c.to_lowercase()).filter(|c| allowed.contains(c)) {
                Some(c) => c,
                None => {
                    let names: Vec<&str> = allowed.iter().map(|c| c.name()).collect();
                    errs.push((
                        format!("{base}.context"),
                        format!("unknown context {c:?} for {key}; use one of {}", names.join(", ")),
                    ));
                    continue;
                }
            },
            None => {
                let srcs: Vec<&str> = g.statements.iter().chain(&g.conditions).map(String::as_str).collect();
                match sightline_ottl::infer_context(&srcs, allowed) {
                    Ok(Some(c)) => c,
                    Ok(None) => {
                        errs.push((
                            base.clone(),
                            format!(
                                "unable to infer a context from the statements {:?}: prefix the paths with their context (e.g. span.attributes) or use the grouped form with context:",
                                g.statements
                            ),
                        ));
                        continue;
                    }
                    Err(e) => {
                        errs.push((base.clone(), e.render(srcs[0])));
                        continue;
                    }
                }
            }
        };
        let mut statements = Vec::new();
        for (i, s) in g.statements.iter().enumerate() {
            match Statement::parse(s, ctx) {
                Ok(st) => statements.push(st),
                Err(e) => errs.push(ottl_run::render(&format!("{base}.statements.{i}"), s, &e)),
            }
        }
        let mut conditions = Vec::new();
        for (i, s) in g.conditions.iter().enumerate() {
            match Condition::parse(s, ctx) {
                Ok(c) => conditions.push(c),
                Err(e) => errs.push(ottl_run::render(&format!("{base}.conditions.{i}"), s, &e)),
            }
        }
        out.push(Group { ctx, statements, conditions, error_mode: g.error_mode.unwrap_or(default_mode) });
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

impl TransformConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        if self.flatten_data {
            errs.push(("flatten_data".to_string(), "is not supported by Sightline".to_string()));
        }
        for (key, entries, signal) in self.signals() {
            if let Err(e) = compile(key, entries, signal, self.error_mode) {
                errs.extend(e);
            }
        }
        errs
    }

    fn signals(&self) -> [(&'static str, &[StatementsEntry], Signal); 3] {
        [
            ("trace_statements", &self.trace_statements, Signal::Traces),
            ("metric_statements", &self.metric_statements, Signal::Metrics),
            ("log_statements", &self.log_statements, Signal::Logs),
        ]
    }
}

pub struct TransformProcessor {
    id: String,
    groups: Vec<Group>,
    /// Whether a statement or condition reads resources or scopes (else they stay encoded).
    heads: Heads,
    /// The groups as one wire plan, when they are all of spans or of log records and every
    /// statement and condition has one (ADR 21).
    plan: Option<Plan>,
}

fn plan(groups: &[Group], signal: Signal) -> Option<Plan> {
    let ctx = match signal {
        Signal::Traces => Ctx::Span,
        Signal::Logs => Ctx::Log,
        Signal::Metrics => return None,
    };
    let mut plan = Plan::transform(ctx)?;
    for g in groups {
        if g.ctx != ctx || !plan.add_group(&g.conditions, &g.statements) {
            return None;
        }
    }
    Some(plan)
}

impl TransformProcessor {
    pub fn new(id: &str, cfg: &TransformConfig, signal: Signal) -> Result<TransformProcessor, String> {
        let (key, entries, _) = cfg.signals().into_iter().find(|(_, _, s)| *s == signal).expect("three signals");
        let groups = compile(key, entries, signal, cfg.error_mode).map_err(|e| format!("{e:?}"))?;
        let heads = groups.iter().any(|g| {
            g.statements.iter().any(Statement::needs_heads) || g.conditions.iter().any(Condition::needs_heads)
        });
        let heads = if heads { Heads::Decode } else { Heads::Keep };
        let plan = plan(&groups, signal);
        Ok(TransformProcessor { id: id.to_string(), groups, heads, plan })
    }

    fn run_group(&self, g: &Group, t: &mut Target) -> Result<(), String> {
        if !g.conditions.is_empty() {
            let mut any = false;
            for c in &g.conditions {
                match c.eval(t) {
                    Ok(true) => {
                        any = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => g.error_mode.handle(&self.id, &c.text, e)?,
                }
            }
            if !any {
                return Ok(());
            }
        }
        for s in &g.statements {
            if let Err(e) = s.execute(t) {
                g.error_mode.handle(&self.id, &s.text, e)?;
            }
        }
        Ok(())
    }
}

/// The statements as a wire plan (ADR 21), with the resource edit of the processor before
/// when given (ADR 30).
fn run_plan(plan: &Plan, payload: Payload, prior: Option<&dyn ResourceStage>) -> Result<Payload, ProcessError> {
    let run = &mut |item: &[u8], out: &mut wire_plan::Out| {
        if plan.transform_into(item, || out.begin()) { Fate::Rewritten } else { Fate::Keep }
    };
    Ok(match wire_plan::rewrite_after(&payload, false, prior, run)? {
        None => payload,
        Some((out, _)) => {
            let items = payload.items();
            payload.with_bytes(Bytes::from(out), items)
        }
    })
}

impl Processor for TransformProcessor {
    fn process_after(&self, payload: Payload, prior: &dyn ResourceStage) -> After {
        match &self.plan {
            Some(plan) if !self.groups.is_empty() => After::Ran(run_plan(plan, payload, Some(prior))),
            _ => After::Declined(payload),
        }
    }

    fn process(&self, payload: Payload) -> Result<Payload, ProcessError> {
        if self.groups.is_empty() {
            return Ok(payload);
        }
        if let Some(plan) = &self.plan {
            return run_plan(plan, payload, None);
        }
        let mut req = Request::decode(payload.signal(), payload.bytes(), self.heads)?;
        for g in &self.groups {
            let mut visit = |t: &mut Target| self.run_group(g, t);
            let r = match &mut req {
                Request::Traces(r) => ottl_run::traces(r, g.ctx, &mut visit),
                Request::Metrics(r) => ottl_run::metrics(r, g.ctx, &mut visit),
                Request::Logs(r) => ottl_run::logs(r, g.ctx, &mut visit),
            };
            r.map_err(|message| ProcessError::Refused { message })?;
        }
        req.into_payload(payload, false)
    }
}
