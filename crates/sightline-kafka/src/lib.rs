//! Kafka for Sightline (ADR 24): the `kafka` exporter, compatible with the collector contrib's
//! `kafkaexporter` (its options, topics, encodings, message keys and partitioner), and the
//! `kafka` receiver, at least once end to end; over
//! librdkafka built from source and linked statically.

pub mod config;
pub mod exporter;
mod headers;
pub mod partition;
pub mod receiver;
mod topics;

pub use config::KafkaExporterConfig;
pub use exporter::KafkaExporter;
pub use receiver::KafkaReceiverConfig;
