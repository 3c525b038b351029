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
}

impl Payload {
    pub fn new(signal: Signal, bytes: Bytes, items: u64, permit: Option<MemoryPermit>) -> Self {
        Payload { inner: Arc::new(Inner { signal, bytes, items, permit }) }
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
        let permit = match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => inner.permit.take(),
            Err(_) => None,
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
        Payload::new(signal, bytes, items, permit)
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
