//! Sightline's core: what every component shares and nothing component-specific.
//!
//! - [`Signal`]: traces, metrics, logs, and the names derived from them.
//! - [`wire`]: allocation-free validation and counting of OTLP protobuf requests, and the
//!   wire-level rewrite of their resources (the enrichment hot path never decodes a span).
//! - [`Payload`] / [`Batch`]: one validated request as shared bytes; batches are
//!   concatenations.
//! - [`MemoryBudget`]: the global in-flight byte budget acquired at admission.
//! - [`Pipeline`] and [`Processor`]: inline processing and zero-copy fan-out.
//! - [`driver`]: the exporter driver (queue, batching, concurrency, retry, metrics) that every
//!   exporter reuses through the small [`Sender`] trait.
//! - [`serde_util`]: config helpers (list options that also take one value).
//! - [`telemetry`]: counters and gauges rendered as Prometheus text, and the naming rules.
//!
//! Nothing here does I/O on the receive path or blocks: processors run inline on the receiving
//! task, exporters run on their own tasks behind bounded queues.

pub mod budget;
mod diskq;
pub mod driver;
pub mod governance;
pub mod ingest;
pub mod payload;
pub mod pipeline;
pub mod serde_util;
pub mod signal;
pub mod telemetry;
pub mod text;
pub mod wire;

pub use budget::{MemoryBudget, MemoryPermit};
pub use driver::{
    BatchConfig, Driver, DriverConfig, Durability, Enqueued, ExporterHandle, FsyncPolicy, OnFull, QueueConfig,
    RetryConfig, SendError, SendFuture, Sender, StartError, Storage,
};
pub use governance::Governance;
pub use payload::{Batch, BoundTeam, ClientInfo, Completion, EncodingKey, Payload, Rejected, TeamMismatch};
pub use pipeline::{After, Delivered, Pipeline, ProcessError, Processor, ResourceStage};
pub use signal::Signal;
pub use telemetry::{Counter, Gauge, Registry};
