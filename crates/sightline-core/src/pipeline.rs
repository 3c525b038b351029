//! Pipelines: processors run inline on the receiving task, then the payload is fanned out to
//! every exporter of the pipeline as one shared, reference-counted buffer.

use crate::wire::ResourceEditor;
use crate::{Enqueued, ExporterHandle, Payload, Signal};
use std::sync::Arc;

/// Why a processor refused a payload. Processors that merely change data never fail; this is
/// for policies (quotas, required attributes) that refuse data on purpose.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The client may retry later (e.g. a quota).
    #[error("{message}")]
    Retryable { message: String, retry_after_secs: u64 },
    /// The data is refused for good; `rejected` items (all when equal to the payload's count).
    #[error("{message}")]
    Refused { message: String },
    /// The client is not allowed to send this data (e.g. a service of another team than the
    /// one its token belongs to): HTTP 403, gRPC `PERMISSION_DENIED`. Not retryable.
    #[error("{message}")]
    PermissionDenied { message: String },
    /// The payload was not well formed (should have been caught by validation).
    #[error("{0}")]
    Invalid(String),
    /// A durable queue of the pipeline (`durability: ack_after_persist`) could not persist
    /// the payload: the client must retry (HTTP 503, gRPC `UNAVAILABLE`).
    #[error("{message}")]
    Unavailable { message: String, retry_after_secs: u64 },
}

/// A processor: takes a payload, returns the (possibly rewritten) payload. Runs inline on the
/// receiving task, so it must not block or wait.
pub trait Processor: Send + Sync + 'static {
    fn process(&self, payload: Payload) -> Result<Payload, ProcessError>;

    /// A processor whose only change to a request is each entry's `Resource` (ownership)
    /// returns its edit here, so that the processor after it can apply it while it writes the
    /// request anyway (ADR 30): the request is then copied once instead of twice.
    fn resource_stage(&self) -> Option<&dyn ResourceStage> {
        None
    }

    /// What `prior`'s processor and then this one would return, in one rewrite of the request;
    /// or the payload back, untouched, when this processor cannot apply a resource edit as it
    /// writes (the pipeline then runs the two one after the other).
    fn process_after(&self, payload: Payload, prior: &dyn ResourceStage) -> After {
        let _ = prior;
        After::Declined(payload)
    }
}

/// What [`Processor::process_after`] did.
pub enum After {
    /// It ran, the resource edit applied.
    Ran(Result<Payload, ProcessError>),
    /// It cannot apply a resource edit: the payload, untouched.
    Declined(Payload),
}

/// The edit of a processor that changes only resources (see [`Processor::resource_stage`]).
pub trait ResourceStage {
    /// Runs `rewrite` with the editor for `payload`'s resources. `rewrite` must call the
    /// editor once for each `Resource*` entry of the request, in order, and write what it
    /// returns as the entry's resource, as [`crate::wire::rewrite_resources`] does. After it,
    /// the stage's own outcome: a refusal, and the counts it records once the request is
    /// accepted.
    fn with_editor(
        &self,
        payload: &Payload,
        rewrite: &mut dyn FnMut(&mut dyn ResourceEditor) -> Result<(), ProcessError>,
    ) -> Result<(), ProcessError>;
}

/// One `service.pipelines` entry, built.
pub struct Pipeline {
    pub id: String,
    pub signal: Signal,
    pub processors: Vec<Arc<dyn Processor>>,
    pub exporters: Vec<ExporterHandle>,
}

/// What the fan-out did with a payload.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    pub queued: usize,
    pub dropped: usize,
    /// Items the processors refused (a partial success), and why.
    pub rejected: u64,
    pub message: String,
}

impl Pipeline {
    /// Runs the processors, then hands the result to every exporter (without copying it).
    pub async fn consume(&self, payload: Payload) -> Result<Delivered, ProcessError> {
        let payload = self.process(payload)?;
        self.deliver(payload).await
    }

    /// The first phase of [`Pipeline::consume`]: runs the processors (which may refuse).
    /// A receiver feeding several pipelines runs this for all of them before delivering to
    /// any, so a refusal in one pipeline (a quota, an ownership mismatch) leaves nothing queued
    /// in another that the client's retry would duplicate.
    ///
    /// A processor that edits only resources, followed by one that rewrites the request and
    /// can apply that edit as it goes, run as one (see [`Processor::resource_stage`]).
    pub fn process(&self, mut payload: Payload) -> Result<Payload, ProcessError> {
        let mut i = 0;
        while let Some(p) = self.processors.get(i) {
            if let (Some(stage), Some(next)) = (p.resource_stage(), self.processors.get(i + 1)) {
                match next.process_after(payload, stage) {
                    After::Ran(r) => {
                        payload = r?;
                        i += 2;
                        continue;
                    }
                    After::Declined(back) => payload = back,
                }
            }
            payload = p.process(payload)?;
            i += 1;
        }
        Ok(payload)
    }

    /// The second phase: hands the processed payload to every exporter.
    pub async fn deliver(&self, payload: Payload) -> Result<Delivered, ProcessError> {
        let mut d = Delivered::default();
        if let Some(r) = payload.rejected() {
            d.rejected = r.items;
            d.message = r.message.clone();
        }
        // Nothing left (a filter dropped every item): nothing to export, as the collector's
        // processors skip the rest of the pipeline.
        if payload.is_empty() {
            return Ok(d);
        }
        let mut not_persisted: Option<&str> = None;
        // A clone is a reference-count increment: every exporter shares the same bytes.
        let completion = payload.completion().cloned();
        for e in &self.exporters {
            if let Some(c) = &completion {
                c.expect();
            }
            match e.enqueue(payload.clone()).await {
                Enqueued::Queued => {
                    d.queued += 1;
                    // A disk queue holds it now (the driver reports memory queues' sends).
                    if let Some(c) = completion.as_ref().filter(|_| e.is_disk()) {
                        c.finish(true);
                    }
                }
                Enqueued::Dropped => {
                    d.dropped += 1;
                    if let Some(c) = &completion {
                        c.finish(false);
                    }
                    if e.is_durable() {
                        not_persisted.get_or_insert(e.id());
                    }
                }
            }
        }
        // ack_after_persist: the request succeeds only if every durable queue holds it. The
        // other exporters may have queued it already: a retry duplicates it there
        // (at-least-once).
        if let Some(id) = not_persisted {
            return Err(ProcessError::Unavailable {
                message: format!("exporter {id}: the disk queue could not persist the data; retry later"),
                retry_after_secs: 1,
            });
        }
        Ok(d)
    }
}
