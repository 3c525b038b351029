//! The one entry every receiver uses (DESIGN "Receivers share one entry"): a request's OTLP
//! protobuf bytes are validated ([`validate`]: framing checked, invalid items dropped and
//! counted as a partial success), then run through every pipeline of their signal and handed
//! to the exporters ([`dispatch`]). The OTLP receiver answers its client from the result; the
//! `kafka` receiver commits its offset once the payload's [`crate::Completion`] says the data
//! is safe.

use crate::pipeline::{Delivered, Pipeline, ProcessError};
use crate::telemetry::{Counter, Registry};
use crate::{Signal, wire};
use bytes::Bytes;
use std::sync::Arc;

/// The pipelines a receiver feeds, per signal.
#[derive(Clone, Default)]
pub struct Consumers {
    pub traces: Vec<Arc<Pipeline>>,
    pub metrics: Vec<Arc<Pipeline>>,
    pub logs: Vec<Arc<Pipeline>>,
}

impl Consumers {
    pub fn get(&self, s: Signal) -> &[Arc<Pipeline>] {
        match s {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }
}

/// The collector's receiver counters for one receiver, transport and signal
/// (`otelcol_receiver_accepted_spans{receiver, transport}`, `..._refused_...`): every receiver
/// counts what it takes in under the same names.
pub struct ReceiverCounters {
    pub accepted: Counter,
    pub refused: Counter,
}

impl ReceiverCounters {
    pub fn new(registry: &Registry, receiver: &str, transport: &str, signal: Signal) -> Self {
        let items = signal.item_name();
        let labels = [("receiver", receiver), ("transport", transport)];
        ReceiverCounters {
            accepted: registry.counter(
                &format!("otelcol_receiver_accepted_{items}"),
                &format!("Number of {items} successfully pushed into the pipeline."),
                &labels,
            ),
            refused: registry.counter(
                &format!("otelcol_receiver_refused_{items}"),
                &format!("Number of {items} that could not be pushed into the pipeline."),
                &labels,
            ),
        }
    }
}

/// A request that passed [`validate`].
#[derive(Debug)]
pub struct Validated {
    /// The request, without the invalid items.
    pub proto: Bytes,
    pub items: u64,
    /// Items dropped as invalid, and why (empty when none).
    pub rejected: u64,
    pub message: String,
    /// Items of each `Resource*` entry in order, when there are several (see
    /// [`wire::inspect_entries`]); empty otherwise. For [`crate::Payload::with_entry_items`].
    pub entry_items: Vec<u64>,
}

/// Checks a request's framing and its items (UTF-8 strings, id lengths...): a malformed
/// request is refused whole (`Err` with the reason); invalid items are removed and the rest
/// kept, as a partial success.
pub fn validate(signal: Signal, proto: Bytes) -> Result<Validated, String> {
    let mut entry_items = Vec::new();
    let summary = wire::inspect_entries(signal, &proto, &mut entry_items).map_err(|e| e.to_string())?;
    if summary.invalid_items == 0 {
        return Ok(Validated { proto, items: summary.items, rejected: 0, message: String::new(), entry_items });
    }
    let (kept, removed) =
        wire::retain_items(&proto, &mut |i| wire::item_is_valid(signal, i)).map_err(|e| e.to_string())?;
    let first = summary.first_invalid.map(|e| e.to_string()).unwrap_or_default();
    if summary.items == 0 {
        return Err(format!("every item is invalid; first: {first}"));
    }
    let message = format!("{removed} invalid {} dropped; first: {first}", signal.item_name());
    // Removed metrics may have held several points: recount what remains.
    let items = wire::inspect(signal, &kept).map(|s| s.items).unwrap_or(summary.items);
    Ok(Validated { proto: Bytes::from(kept), items, rejected: removed, message, entry_items: Vec::new() })
}

/// Hands a request to the pipelines of its signal, in two phases when there are several:
/// every pipeline's processors first, then the deliveries, so that a processor's refusal in
/// one pipeline (a quota, an ownership mismatch) leaves nothing queued in another, where the
/// client's retry would duplicate it. The last pipeline gets the payload itself, not a clone:
/// a processor's output then takes over the request's memory permit instead of needing a
/// second one.
pub async fn dispatch(pipelines: &[Arc<Pipeline>], payload: crate::Payload) -> Result<Delivered, ProcessError> {
    match pipelines {
        [] => Ok(Delivered::default()),
        [one] => one.consume(payload).await,
        _ => {
            let mut processed = Vec::with_capacity(pipelines.len());
            let mut payload = Some(payload);
            for (i, p) in pipelines.iter().enumerate() {
                let this = if i + 1 == pipelines.len() { payload.take() } else { payload.clone() };
                if let Some(this) = this {
                    processed.push(p.process(this)?);
                }
            }
            let mut total = Delivered::default();
            for (p, payload) in pipelines.iter().zip(processed) {
                let d = p.deliver(payload).await?;
                total.queued += d.queued;
                total.dropped += d.dropped;
                // The same items refused by several pipelines are refused once.
                if d.rejected > total.rejected {
                    (total.rejected, total.message) = (d.rejected, d.message);
                }
            }
            Ok(total)
        }
    }
}
