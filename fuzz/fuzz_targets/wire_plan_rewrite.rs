//! The request rewrite of the wire plans (`sightline_processors::wire_plan`, ADR 21): the
//! `filter` and `transform` processors, with statements and conditions that have wire plans,
//! on any trace or log request that passes `inspect` (as the receiver hands it over). Input:
//! one byte for the signal (metrics are skipped: they have no wire plan), then the request.
//!
//! Oracles:
//! - nothing panics, and neither processor fails on a request that passed `inspect`;
//! - each output passes `inspect`, with the item count the processor reports;
//! - the transform's output has the input's resources, scopes and their other fields, and its
//!   items are the input's, each as `Plan::transform_item` writes it (or as received when the
//!   plan leaves it unchanged);
//! - the filter's output items are the input's items that the plan does not drop, in order,
//!   as received.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sightline_core::{Payload, Processor, Registry, Signal, wire};
use sightline_fuzz::split_signal;
use sightline_ottl::plan::Plan;
use sightline_ottl::{Condition, Ctx, Statement};
use sightline_processors::filter::{FilterConfig, FilterProcessor};
use sightline_processors::transform::{TransformConfig, TransformProcessor};
use std::sync::LazyLock;

const STATEMENTS: &[&str] = &[
    r#"set(attributes["a"], "x")"#,
    r#"delete_key(attributes, "http.route")"#,
    r#"set(attributes["b"], attributes["service.name"]) where attributes["a"] != nil"#,
    r#"set(attributes["http.route"], nil) where attributes["b"] == "x""#,
];
const SPAN_CONDITIONS: &[&str] = &[r#"attributes["http.route"] == "/healthz""#, r#"name == "n" or kind == 2"#];
const LOG_CONDITIONS: &[&str] = &[r#"attributes["a"] == "x""#, r#"severity_number > 12"#];

struct Setup {
    filter: FilterProcessor,
    transform: TransformProcessor,
    drop: Plan,
    plan: Plan,
}

fn setup(signal: Signal) -> Setup {
    let (ctx, key, conds, section) = match signal {
        Signal::Traces => (Ctx::Span, "trace_statements", SPAN_CONDITIONS, "traces: { span: "),
        _ => (Ctx::Log, "log_statements", LOG_CONDITIONS, "logs: { log_record: "),
    };
    let quoted = |v: &[&str]| v.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
    let tcfg: TransformConfig = serde_yaml_ng::from_str(&format!(
        "error_mode: ignore\n{key}: [{{ context: {}, statements: [{}] }}]",
        if signal == Signal::Traces { "span" } else { "log" },
        quoted(STATEMENTS)
    ))
    .expect("transform config");
    let fcfg: FilterConfig = serde_yaml_ng::from_str(&format!("error_mode: ignore\n{section}[{}] }}", quoted(conds)))
        .expect("filter config");
    let registry = Registry::new();
    let statements: Vec<Statement> = STATEMENTS.iter().map(|s| Statement::parse(s, ctx).expect("parses")).collect();
    let conditions: Vec<Condition> = conds.iter().map(|c| Condition::parse(c, ctx).expect("parses")).collect();
    let mut plan = Plan::transform(ctx).expect("an item context");
    assert!(plan.add_group(&[], &statements));
    Setup {
        filter: FilterProcessor::new("filter", &fcfg, signal, &registry).expect("filter"),
        transform: TransformProcessor::new("transform", &tcfg, signal).expect("transform"),
        drop: Plan::filter(ctx, &conditions).expect("plans"),
        plan,
    }
}

static TRACES: LazyLock<Setup> = LazyLock::new(|| setup(Signal::Traces));
static LOGS: LazyLock<Setup> = LazyLock::new(|| setup(Signal::Logs));

/// The request's items, and everything else of it (resources and scopes without their
/// scopes and items), in order.
fn parts(buf: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut items, mut rest) = (Vec::new(), Vec::new());
    for f in wire::Fields::new(buf) {
        let f = f.expect("framing checked");
        let wire::Value::Len(r) = f.value else {
            rest.push(f.raw.to_vec());
            continue;
        };
        if f.number != 1 {
            rest.push(f.raw.to_vec());
            continue;
        }
        rest.push(b"resource".to_vec());
        for g in wire::Fields::new(r) {
            let g = g.expect("framing checked");
            match (g.number, g.value) {
                (2, wire::Value::Len(s)) => {
                    rest.push(b"scope".to_vec());
                    for h in wire::Fields::new(s) {
                        let h = h.expect("framing checked");
                        match (h.number, h.value) {
                            (2, wire::Value::Len(item)) => items.push(item.to_vec()),
                            _ => rest.push(h.raw.to_vec()),
                        }
                    }
                }
                _ => rest.push(g.raw.to_vec()),
            }
        }
    }
    (items, rest)
}

fuzz_target!(|data: &[u8]| {
    let Some((signal, body)) = split_signal(data) else { return };
    let setup = match signal {
        Signal::Traces => &*TRACES,
        Signal::Logs => &*LOGS,
        Signal::Metrics => return,
    };
    let Ok(sum) = wire::inspect(signal, body) else { return };
    if sum.invalid_items > 0 {
        return;
    }
    let bytes = Bytes::copy_from_slice(body);
    let (items, rest) = parts(body);

    let out = setup.transform.process(Payload::new(signal, bytes.clone(), sum.items, None)).expect("transforms");
    let check = wire::inspect(signal, out.bytes()).expect("the transform's output is valid");
    assert_eq!((check.items, check.invalid_items), (out.items(), 0));
    let (got, got_rest) = parts(out.bytes());
    assert_eq!(got_rest, rest, "resources and scopes unchanged");
    let want: Vec<Vec<u8>> = items
        .iter()
        .map(|i| {
            let mut o = Vec::new();
            if setup.plan.transform_item(i, &mut o) { o } else { i.clone() }
        })
        .collect();
    assert_eq!(got, want, "items as the plan writes them");

    let out = setup.filter.process(Payload::new(signal, bytes, sum.items, None)).expect("filters");
    let check = wire::inspect(signal, out.bytes()).expect("the filter's output is valid");
    assert_eq!((check.items, check.invalid_items), (out.items(), 0));
    let want: Vec<Vec<u8>> = items.into_iter().filter(|i| !setup.drop.drops(i)).collect();
    assert_eq!(parts(out.bytes()).0, want, "the items the plan keeps");
});
