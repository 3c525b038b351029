//! The unit of data on the hot path: one validated OTLP export request, as protobuf bytes.

use crate::{MemoryPermit, Signal};
use bytes::Bytes;
use std::sync::{Arc, Mutex, PoisonError, Weak};

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
    /// Who sent the request (the collector's `client.Info`), for `from_context`.
    client: Option<Arc<ClientInfo>>,
    /// Items a processor removed and refused (a partial success for the client).
    rejected: Option<Rejected>,
    /// Encodings of batches that start with this payload (see [`Batch::encode_shared`]).
    shared: Mutex<Vec<SharedEncoding>>,
    /// Told when every exporter has taken responsibility for the data (see [`Completion`]).
    completion: Option<Arc<Completion>>,
    /// Items of each `Resource*` entry of `bytes`, when the receiver counted them (see
    /// [`Payload::with_entry_items`]); empty when not known.
    entry_items: Box<[u64]>,
}

/// Tells a receiver that acknowledges its source only once the data is safe (the `kafka`
/// receiver commits an offset) when every exporter of every pipeline has taken
/// responsibility for a payload: a memory-queue exporter delivered it, a disk queue holds it.
/// Each exporter the payload is handed to is one [`Completion::expect`]ed outcome, reported
/// with [`Completion::finish`]; the receiver holds one more until it has dispatched, so the
/// answer cannot come before every exporter has been counted. The answer is `true` when every
/// outcome was a success; `false` as soon as one failed, or when the payload is dropped with
/// outcomes still missing (an exporter shut down with it queued).
#[derive(Debug)]
pub struct Completion {
    pending: std::sync::atomic::AtomicUsize,
    ok: std::sync::atomic::AtomicBool,
    tx: Mutex<Option<tokio::sync::oneshot::Sender<bool>>>,
}

impl Completion {
    /// A completion with the receiver's own outcome pending, and where its answer arrives.
    pub fn new() -> (Arc<Completion>, tokio::sync::oneshot::Receiver<bool>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let c = Completion {
            pending: std::sync::atomic::AtomicUsize::new(1),
            ok: std::sync::atomic::AtomicBool::new(true),
            tx: Mutex::new(Some(tx)),
        };
        (Arc::new(c), rx)
    }

    /// One more outcome to wait for.
    pub fn expect(&self) {
        self.pending.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// One outcome; the last one sends the answer.
    pub fn finish(&self, ok: bool) {
        use std::sync::atomic::Ordering;
        if !ok {
            self.ok.store(false, Ordering::Release);
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.answer(self.ok.load(Ordering::Acquire));
        }
    }

    fn answer(&self, ok: bool) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = tx.send(ok);
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // Outcomes still missing: the data was dropped somewhere without being sent.
        self.answer(false);
    }
}

/// One encoding of a batch: the batch is this payload followed by `rest`. `rest` holds weak
/// references: they keep the payloads' addresses from being reused (so a pointer comparison
/// is an identity test) without keeping their data or memory permits alive, and without
/// reference cycles between payloads.
#[derive(Debug)]
struct SharedEncoding {
    key: EncodingKey,
    rest: Vec<Weak<Inner>>,
    value: Arc<Mutex<Option<Bytes>>>,
}

/// What a shared encoding is: an encoding's name and its parameter (for example a compression
/// algorithm and level). Exporters that ask with the same key get the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodingKey {
    pub name: &'static str,
    pub param: i32,
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

/// Items of a request a processor refused while accepting the rest: the receiver answers
/// with a partial success (`rejected_spans` ... and the message).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub items: u64,
    pub message: String,
}

/// Who sent a request, as the receiver saw it (the collector's `client.Info`): the peer's
/// address, and the request's headers (HTTP) or metadata (gRPC) when the receiver's protocol
/// has `include_metadata: true`.
#[derive(Debug, Default, Clone)]
pub struct ClientInfo {
    pub addr: Option<std::net::IpAddr>,
    /// Header names lowercased, in the order received; a name may repeat.
    pub metadata: Vec<(String, String)>,
}

impl ClientInfo {
    /// The values of one metadata key (case-insensitive), in order.
    pub fn metadata<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.metadata.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }
}

impl Payload {
    pub fn new(signal: Signal, bytes: Bytes, items: u64, permit: Option<MemoryPermit>) -> Self {
        Payload {
            inner: Arc::new(Inner {
                signal,
                bytes,
                items,
                permit,
                bound_team: None,
                client: None,
                rejected: None,
                shared: Mutex::new(Vec::new()),
                completion: None,
                entry_items: Box::default(),
            }),
        }
    }

    /// The same payload with the items of each of its `Resource*` entries, in order, as
    /// [`crate::wire::count_items`] counts them: the receiver's call, from its check
    /// ([`crate::ingest::Validated::entry_items`]). They stay with these bytes only: new bytes
    /// ([`Payload::with_bytes`]) have none.
    pub fn with_entry_items(self, entry_items: Vec<u64>) -> Payload {
        if entry_items.is_empty() {
            return self;
        }
        self.with_context(|i| i.entry_items = entry_items.into_boxed_slice())
    }

    /// The items of each `Resource*` entry, in order, when known (see
    /// [`Payload::with_entry_items`]); empty otherwise.
    pub fn entry_items(&self) -> &[u64] {
        &self.inner.entry_items
    }

    /// The same payload, reporting to `completion` (see [`Completion`]); the receiver's call.
    pub fn with_completion(self, completion: Arc<Completion>) -> Payload {
        self.with_context(|i| i.completion = Some(completion))
    }

    /// Where this payload's exporters report, when its receiver waits for them.
    pub fn completion(&self) -> Option<&Arc<Completion>> {
        self.inner.completion.as_ref()
    }

    /// The payload with `edit` applied to its request context. Call before the payload is
    /// shared; a shared payload is copied (reference counts only).
    fn with_context(mut self, edit: impl FnOnce(&mut Inner)) -> Payload {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            edit(inner);
            return self;
        }
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                signal: shared.signal,
                bytes: shared.bytes.clone(),
                items: shared.items,
                permit: None,
                bound_team: shared.bound_team.clone(),
                client: shared.client.clone(),
                rejected: shared.rejected.clone(),
                shared: Mutex::new(Vec::new()),
                completion: shared.completion.clone(),
                entry_items: shared.entry_items.clone(),
            },
        };
        edit(&mut inner);
        Payload { inner: Arc::new(inner) }
    }

    /// The same payload bound to an authenticated team (see [`BoundTeam`]).
    pub fn with_bound_team(self, bound: Option<BoundTeam>) -> Payload {
        self.with_context(|i| i.bound_team = bound)
    }

    /// The same payload with who sent it: the authenticated team (see
    /// [`Payload::with_bound_team`]) and the client (see [`ClientInfo`]); the receiver's call.
    pub fn with_sender(self, bound: Option<BoundTeam>, client: Option<Arc<ClientInfo>>) -> Payload {
        self.with_context(|i| {
            i.bound_team = bound;
            i.client = client;
        })
    }

    /// Who sent the request, when the receiver recorded it.
    pub fn client(&self) -> Option<&ClientInfo> {
        self.inner.client.as_deref()
    }

    /// The same payload with `items` more refused (a processor removed them), and why.
    pub fn with_rejected(self, items: u64, message: String) -> Payload {
        self.with_context(|i| {
            let r = i.rejected.get_or_insert_with(Rejected::default);
            r.items += items;
            if r.message.is_empty() {
                r.message = message;
            } else {
                r.message = format!("{}; {message}", r.message);
            }
        })
    }

    /// What processors refused of this request, if anything.
    pub fn rejected(&self) -> Option<&Rejected> {
        self.inner.rejected.as_ref()
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
        let (permit, bound_team, client, rejected, completion) = match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => (
                inner.permit.take(),
                inner.bound_team.take(),
                inner.client.take(),
                inner.rejected.take(),
                inner.completion.take(),
            ),
            // Shared (the receiver feeds several pipelines): the original keeps its permit
            // until the receiver lets go of it, so the new bytes need their own.
            Err(shared) => (
                shared.permit.as_ref().and_then(|p| p.try_sibling(bytes.len())),
                shared.bound_team.clone(),
                shared.client.clone(),
                shared.rejected.clone(),
                shared.completion.clone(),
            ),
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
        Payload {
            inner: Arc::new(Inner {
                signal,
                bytes,
                items,
                permit,
                bound_team,
                client,
                rejected,
                shared: Mutex::new(Vec::new()),
                completion,
                entry_items: Box::default(),
            }),
        }
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

    /// An encoding of the whole batch (its compressed request, say), computed once for every
    /// exporter of a fan-out that asks with the same `key` for a batch of the same payloads in
    /// the same order, the way the payloads themselves are shared. The first caller runs
    /// `encode`; a caller that comes while it runs waits for its result instead of encoding
    /// the same bytes again. A failed encoding is not kept (the next caller tries again).
    ///
    /// The result is kept with the batch's first payload and freed with it, when the last
    /// exporter lets go. When no other exporter holds the first payload any more, nobody can
    /// ask again, and `encode` runs without keeping anything.
    pub fn encode_shared<E>(
        &self,
        key: EncodingKey,
        encode: impl FnOnce(&Batch) -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        let Some(first) = self.payloads.first() else { return encode(self) };
        // This batch holds one reference; any other is another exporter's queue or batch.
        if Arc::strong_count(&first.inner) < 2 {
            return encode(self);
        }
        let rest = &self.payloads[1..];
        let value = {
            let mut list = first.inner.shared.lock().unwrap_or_else(PoisonError::into_inner);
            let found = list.iter().find(|e| {
                e.key == key
                    && e.rest.len() == rest.len()
                    && e.rest.iter().zip(rest).all(|(w, p)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&p.inner)))
            });
            match found {
                Some(e) => Arc::clone(&e.value),
                None => {
                    let value = Arc::new(Mutex::new(None));
                    list.push(SharedEncoding {
                        key,
                        rest: rest.iter().map(|p| Arc::downgrade(&p.inner)).collect(),
                        value: Arc::clone(&value),
                    });
                    value
                }
            }
        };
        // Held while encoding: a second exporter waits here for the first one's bytes.
        let mut slot = value.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = &*slot {
            return Ok(b.clone());
        }
        let b = encode(self)?;
        *slot = Some(b.clone());
        Ok(b)
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

    fn batch_of(payloads: &[&Payload]) -> Batch {
        let mut b = Batch::new(Signal::Traces);
        for p in payloads {
            b.push((*p).clone());
        }
        b
    }

    /// A fan-out's exporters encode a batch of the same payloads once per key; another key,
    /// other payloads or another order are encoded on their own; a batch nobody else holds is
    /// not kept.
    #[test]
    fn shared_encoding_is_computed_once_per_key_and_payloads() {
        let p0 = Payload::new(Signal::Traces, Bytes::from_static(b"a"), 1, None);
        let p1 = Payload::new(Signal::Traces, Bytes::from_static(b"b"), 1, None);
        let gzip1 = EncodingKey { name: "gzip", param: 1 };
        let zstd1 = EncodingKey { name: "zstd", param: 1 };
        let calls = std::cell::Cell::new(0);
        let encode = |b: &Batch| {
            calls.set(calls.get() + 1);
            Ok::<_, ()>(b.to_bytes())
        };
        // Three exporters, each with its own batch of [p0, p1].
        let batches: Vec<Batch> = (0..3).map(|_| batch_of(&[&p0, &p1])).collect();
        for b in &batches {
            assert_eq!(b.encode_shared(gzip1, encode).unwrap(), Bytes::from_static(b"ab"));
        }
        assert_eq!(calls.get(), 1, "one encoding for three exporters");
        batches[0].encode_shared(zstd1, encode).unwrap();
        assert_eq!(calls.get(), 2, "another key is another encoding");
        batch_of(&[&p0]).encode_shared(gzip1, encode).unwrap();
        assert_eq!(calls.get(), 3, "another set of payloads");
        assert_eq!(batch_of(&[&p1, &p0]).encode_shared(gzip1, encode).unwrap(), Bytes::from_static(b"ba"));
        assert_eq!(calls.get(), 4, "another order");
        // A failure is not kept.
        let b = batch_of(&[&p1]);
        assert_eq!(b.encode_shared(gzip1, |_| Err::<Bytes, _>("boom")), Err("boom"));
        assert_eq!(b.encode_shared(gzip1, encode).unwrap(), Bytes::from_static(b"b"));
        drop((batches, b));
        // Held by this batch only: encoded, nothing kept.
        let lone = Payload::new(Signal::Traces, Bytes::from_static(b"z"), 1, None);
        let only = Batch { payloads: vec![lone], ..Batch::new(Signal::Traces) };
        only.encode_shared(gzip1, encode).unwrap();
        assert!(only.payloads[0].inner.shared.lock().unwrap().is_empty());
    }

    /// A kept encoding holds later payloads weakly: their memory is released when their last
    /// exporter lets go, even while the first payload (which keeps the encoding) lives on.
    #[test]
    fn shared_encoding_does_not_keep_later_payloads_alive() {
        let budget = MemoryBudget::new(1 << 20);
        let p0 = Payload::new(Signal::Traces, Bytes::from(vec![1u8; 100]), 1, budget.try_acquire(100));
        let p1 = Payload::new(Signal::Traces, Bytes::from(vec![2u8; 1000]), 1, budget.try_acquire(1000));
        let key = EncodingKey { name: "gzip", param: 1 };
        let b = batch_of(&[&p0, &p1]);
        b.encode_shared(key, |b| Ok::<_, ()>(b.to_bytes())).unwrap();
        drop(b);
        drop(p1);
        assert_eq!(budget.in_use(), 100, "p1's permit is released");
        drop(p0);
        assert_eq!(budget.in_use(), 0);
    }

    /// Two threads asking at once: one encodes, the other waits for its bytes.
    #[test]
    fn concurrent_askers_share_one_encoding() {
        let p0 = Payload::new(Signal::Traces, Bytes::from_static(b"x"), 1, None);
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let key = EncodingKey { name: "gzip", param: 6 };
        let batches: Vec<Batch> = (0..4).map(|_| batch_of(&[&p0])).collect();
        std::thread::scope(|s| {
            for b in &batches {
                s.spawn(|| {
                    b.encode_shared(key, |b| {
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        Ok::<_, ()>(b.to_bytes())
                    })
                    .unwrap()
                });
            }
        });
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

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

    #[test]
    fn entry_counts_stay_with_their_bytes_only() {
        let p = Payload::new(Signal::Traces, Bytes::from_static(b"ab"), 5, None).with_entry_items(vec![2, 3]);
        assert_eq!(p.entry_items(), [2, 3]);
        // Shared, then given a context: the copy keeps them (same bytes).
        let shared = p.clone();
        let q = p.with_bound_team(None);
        assert_eq!((q.entry_items(), shared.entry_items()), (&[2, 3][..], &[2, 3][..]));
        // A processor's new bytes: counts unknown.
        assert!(q.with_bytes(Bytes::from_static(b"abc"), 5).entry_items().is_empty());
    }
}
