//! The unit of data on the hot path: one validated OTLP export request, as protobuf bytes.

use crate::{MemoryPermit, Signal};
use bytes::Bytes;
use std::sync::Arc;

/// One validated OTLP export request (`Export*ServiceRequest` protobuf bytes) with its item
/// count and the memory it holds against the budget. Cloning is a reference-count increment:
/// the fan-out hands the same payload to every exporter, and the budget is released when the
/// last clone is dropped.
#[derive(Clone, Debug)]
pub struct Payload {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    signal: Signal,
    bytes: Bytes,
    items: u64,
    permit: Option<MemoryPermit>,
    bound_team: Option<BoundTeam>,
}

/// Request context set by a receiver that authenticated the client as a team and binds
/// ownership to it (`auth.bind_ownership_to_token`): the `ownership` processor then attributes
/// the request's resources to this team, whatever the catalog or the client says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundTeam {
    /// The authenticated team.
    pub team: Arc<str>,
    /// What to do with a resource the catalog assigns to another team.
    pub on_mismatch: TeamMismatch,
}

/// `auth.on_team_mismatch`: a resource of an authenticated request that the catalog assigns
/// to another team.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeamMismatch {
    /// Refuse the whole request (HTTP 403, gRPC `PERMISSION_DENIED`). The default.
    #[default]
    Reject,
    /// Accept it, attributed to the authenticated team.
    Reattribute,
}

impl Payload {
    pub fn new(signal: Signal, bytes: Bytes, items: u64, permit: Option<MemoryPermit>) -> Self {
        Payload { inner: Arc::new(Inner { signal, bytes, items, permit, bound_team: None }) }
    }

    /// The same payload bound to an authenticated team (see [`BoundTeam`]). Call before the
    /// payload is shared; a shared payload is copied (reference counts only).
    pub fn with_bound_team(self, bound: Option<BoundTeam>) -> Payload {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.bound_team = bound;
                Payload { inner: Arc::new(inner) }
            }
            Err(shared) => Payload {
                inner: Arc::new(Inner {
                    signal: shared.signal,
                    bytes: shared.bytes.clone(),
                    items: shared.items,
                    permit: None,
                    bound_team: bound,
                }),
            },
        }
    }

    /// The team the request was authenticated as, when the receiver binds ownership to it.
    pub fn bound_team(&self) -> Option<&BoundTeam> {
        self.inner.bound_team.as_ref()
    }

    pub fn signal(&self) -> Signal {
        self.inner.signal
    }

    /// The encoded request.
    pub fn bytes(&self) -> &Bytes {
        &self.inner.bytes
    }

    /// Spans, data points or log records.
    pub fn items(&self) -> u64 {
        self.inner.items
    }

    pub fn len(&self) -> usize {
        self.inner.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.bytes.is_empty()
    }

    /// The same request with new bytes (a processor's output). The memory permit moves to the
    /// new payload and is resized to the new length when the budget allows; processors run
    /// before the fan-out, so the payload is not shared yet and nothing is copied.
    pub fn with_bytes(self, bytes: Bytes, items: u64) -> Payload {
        let signal = self.signal();
        let (permit, bound_team) = match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => (inner.permit.take(), inner.bound_team.take()),
            // Shared (the receiver feeds several pipelines): the original keeps its permit
            // until the receiver lets go of it, so the new bytes need their own.
            Err(shared) => (shared.permit.as_ref().and_then(|p| p.try_sibling(bytes.len())), shared.bound_team.clone()),
        };
        let permit = permit.map(|mut p| {
            let held = p.bytes();
            if bytes.len() > held {
                // Best effort: a processor's growth is small (a few attributes per resource);
                // if the budget is exhausted right now the payload keeps what it holds.
                let _ = p.try_grow(bytes.len() - held);
            } else {
                p.shrink_to(bytes.len());
            }
            p
        });
        Payload { inner: Arc::new(Inner { signal, bytes, items, permit, bound_team }) }
    }
}

/// Payloads merged by an exporter's batcher. Protobuf concatenation of two
/// `Export*ServiceRequest` encodings is the request with both lists of resources, so a batch is
/// sent as its payloads' bytes one after the other, without decoding or re-encoding.
#[derive(Clone, Debug)]
pub struct Batch {
    pub signal: Signal,
    pub payloads: Vec<Payload>,
    pub items: u64,
    pub bytes: usize,
}

impl Batch {
    pub fn new(signal: Signal) -> Self {
        Batch { signal, payloads: Vec::new(), items: 0, bytes: 0 }
    }

    pub fn push(&mut self, p: Payload) {
        self.items += p.items();
        self.bytes += p.len();
        self.payloads.push(p);
    }

    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
    }

    /// The encodings in order; their concatenation is the batch's request.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.payloads.iter().map(|p| p.bytes())
    }

    /// The whole request in one buffer: free for a single payload, one copy otherwise.
    pub fn to_bytes(&self) -> Bytes {
        if self.payloads.len() == 1 {
            return self.payloads[0].bytes().clone();
        }
        let mut v = Vec::with_capacity(self.bytes);
        for c in self.chunks() {
            v.extend_from_slice(c);
        }
        Bytes::from(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBudget;

    /// A processor's output stays held against the budget until the last exporter drops it:
    /// moved (one pipeline) it takes over the request's permit, resized; shared (the receiver
    /// keeps the original for other pipelines) it gets a permit of its own.
    #[test]
    fn processor_output_keeps_the_budget_held() {
        let budget = MemoryBudget::new(1000);
        let p = Payload::new(Signal::Traces, Bytes::from(vec![0; 100]), 1, budget.try_acquire(100));
        assert_eq!(budget.in_use(), 100);
        let out = p.with_bytes(Bytes::from(vec![0; 120]), 1);
        assert_eq!(budget.in_use(), 120, "moved: the permit is resized to the new length");
        drop(out);
        assert_eq!(budget.in_use(), 0);

        let original = Payload::new(Signal::Traces, Bytes::from(vec![0; 100]), 1, budget.try_acquire(100));
        let out = original.clone().with_bytes(Bytes::from(vec![0; 150]), 1);
        assert_eq!(budget.in_use(), 250, "shared: the output holds its own bytes");
        drop(original);
        assert_eq!(budget.in_use(), 150, "queued output still counted after the receiver lets go");
        drop(out);
        assert_eq!(budget.in_use(), 0);
    }
}
