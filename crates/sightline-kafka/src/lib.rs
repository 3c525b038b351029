//! Kafka for Sightline (ADR 24): the `kafka` exporter, compatible with the collector contrib's
//! `kafkaexporter` (its options, topics, encodings, message keys and partitioner), over
//! librdkafka built from source and linked statically.

pub mod config;
pub mod exporter;
pub mod partition;

pub use config::KafkaExporterConfig;
pub use exporter::KafkaExporter;
