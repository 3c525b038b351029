//! The component registry: which `type` names exist for each kind, and how each decodes and
//! checks its own section. Adding a component is one arm here plus its own crate or module.

use sightline_config::{Config, ConfigError, Kind, Section, did_you_mean};
use sightline_core::{DriverConfig, Registry, Sender, Signal};
use sightline_exporters as exp;
use sightline_otlp::OtlpReceiverConfig;
use sightline_processors::memory_limiter::MemoryLimiterConfig;
use sightline_processors::ownership::OwnershipConfig;
use sightline_processors::quota::QuotaConfig;
use std::collections::HashMap;
use std::sync::Arc;

pub const RECEIVERS: &[&str] = &["otlp", "kafka"];
pub const PROCESSORS: &[&str] = &[
    "ownership",
    "quota",
    "memory_limiter",
    "batch",
    "resource",
    "attributes",
    "filter",
    "transform",
    "probabilistic_sampler",
    "policy",
];
pub const EXPORTERS: &[&str] = &[
    "otlp",
    "otlphttp",
    "file",
    "debug",
    "prometheusremotewrite",
    "loki",
    "loadbalancing",
    "kafka",
    "clickhouse",
    "parquet",
];
pub const EXTENSIONS: &[&str] = &["health_check"];

pub enum ExtensionCfg {
    HealthCheck(Box<crate::health_check::HealthCheckConfig>),
}

pub enum ReceiverCfg {
    Otlp(Box<OtlpReceiverConfig>),
    Kafka(Box<sightline_kafka::KafkaReceiverConfig>),
}

pub enum ProcessorCfg {
    Ownership(Box<OwnershipConfig>),
    Quota(Box<QuotaConfig>),
    MemoryLimiter(MemoryLimiterConfig),
    Resource(Box<sightline_processors::resource::ResourceConfig>),
    Attributes(Box<sightline_processors::attributes::AttributesConfig>),
    Filter(Box<sightline_processors::filter::FilterConfig>),
    Transform(Box<sightline_processors::transform::TransformConfig>),
    ProbabilisticSampler(Box<sightline_processors::probabilistic_sampler::ProbabilisticSamplerConfig>),
    Policy(Box<sightline_processors::policy::PolicyConfig>),
    /// The collector's `batch` processor, accepted so collector configs load unchanged:
    /// Sightline batches in each exporter (`sending_queue.batch`), so in a pipeline it does
    /// nothing to the data. As in the collector, the processors after it see only the request
    /// metadata named in its `metadata_keys` (for `from_context`).
    Batch {
        metadata_keys: Vec<String>,
    },
}

pub enum ExporterCfg {
    Kafka(Box<sightline_kafka::KafkaExporterConfig>),
    Otlp(Box<exp::OtlpConfig>),
    OtlpHttp(Box<exp::OtlpHttpConfig>),
    File(Box<exp::FileConfig>),
    Debug(Box<exp::DebugConfig>),
    PrometheusRemoteWrite(Box<sightline_prometheus::PrometheusRemoteWriteConfig>),
    Loki(Box<sightline_loki::LokiConfig>),
    LoadBalancing(Box<exp::LoadBalancingConfig>),
    ClickHouse(Box<sightline_clickhouse::ClickHouseConfig>),
    Parquet(Box<sightline_parquet::ParquetConfig>),
}

/// The collector's `batch` processor options (accepted, documented as no-ops).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct BatchProcessorConfig {
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    send_batch_size: Option<u64>,
    #[serde(default)]
    send_batch_max_size: Option<u64>,
    #[serde(default)]
    metadata_keys: Option<Vec<String>>,
    #[serde(default)]
    metadata_cardinality_limit: Option<u64>,
}

fn unknown(cfg: &Config, kind: Kind, s: &Section, known: &[&str]) -> Vec<ConfigError> {
    let hint =
        did_you_mean(&s.id.kind, known.iter().copied()).map(|h| format!(" (did you mean {h:?}?)")).unwrap_or_default();
    let what = &kind.section()[..kind.section().len() - 1];
    vec![cfg.error(&s.path, format!("unknown {what} type {:?}{hint}; available: {}", s.id.kind, known.join(", ")))]
}

/// Decodes a section and runs the component's own checks, with every error path-qualified.
fn decode<T: serde::de::DeserializeOwned>(
    cfg: &Config,
    s: &Section,
    checks: impl Fn(&T) -> Vec<(String, String)>,
) -> Result<T, Vec<ConfigError>> {
    let v: T = cfg.decode(s).map_err(|e| vec![e])?;
    let errs: Vec<ConfigError> =
        checks(&v).into_iter().map(|(rel, msg)| cfg.error(&format!("{}.{rel}", s.path), msg)).collect();
    if errs.is_empty() { Ok(v) } else { Err(errs) }
}

pub fn receiver(cfg: &Config, s: &Section) -> Result<ReceiverCfg, Vec<ConfigError>> {
    match s.id.kind.as_str() {
        "otlp" => decode(cfg, s, OtlpReceiverConfig::validate).map(|c| ReceiverCfg::Otlp(Box::new(c))),
        "kafka" => {
            decode(cfg, s, sightline_kafka::KafkaReceiverConfig::validate).map(|c| ReceiverCfg::Kafka(Box::new(c)))
        }
        _ => Err(unknown(cfg, Kind::Receiver, s, RECEIVERS)),
    }
}

pub fn processor(cfg: &Config, s: &Section) -> Result<ProcessorCfg, Vec<ConfigError>> {
    match s.id.kind.as_str() {
        "ownership" => decode(cfg, s, OwnershipConfig::validate).map(|c| ProcessorCfg::Ownership(Box::new(c))),
        "quota" => decode(cfg, s, QuotaConfig::validate).map(|c| ProcessorCfg::Quota(Box::new(c))),
        "memory_limiter" => decode(cfg, s, MemoryLimiterConfig::validate).map(ProcessorCfg::MemoryLimiter),
        "batch" => decode(cfg, s, |_: &BatchProcessorConfig| Vec::new())
            .map(|b| ProcessorCfg::Batch { metadata_keys: b.metadata_keys.unwrap_or_default() }),
        "resource" => decode(cfg, s, sightline_processors::resource::ResourceConfig::validate)
            .map(|c| ProcessorCfg::Resource(Box::new(c))),
        "attributes" => decode(cfg, s, sightline_processors::attributes::AttributesConfig::validate)
            .map(|c| ProcessorCfg::Attributes(Box::new(c))),
        "filter" => decode(cfg, s, sightline_processors::filter::FilterConfig::validate)
            .map(|c| ProcessorCfg::Filter(Box::new(c))),
        "transform" => decode(cfg, s, sightline_processors::transform::TransformConfig::validate)
            .map(|c| ProcessorCfg::Transform(Box::new(c))),
        "probabilistic_sampler" => {
            decode(cfg, s, sightline_processors::probabilistic_sampler::ProbabilisticSamplerConfig::validate)
                .map(|c| ProcessorCfg::ProbabilisticSampler(Box::new(c)))
        }
        "policy" => decode(cfg, s, sightline_processors::policy::PolicyConfig::validate)
            .map(|c| ProcessorCfg::Policy(Box::new(c))),
        _ => Err(unknown(cfg, Kind::Processor, s, PROCESSORS)),
    }
}

/// A processor's checks that depend on the signal of the pipeline using it (the collector
/// runs them when it builds the pipeline); errors are relative to the processor's section.
pub fn processor_signal_checks(p: &ProcessorCfg, signal: Signal) -> Result<(), (String, String)> {
    match p {
        ProcessorCfg::Attributes(c) => c.validate_for(signal),
        ProcessorCfg::ProbabilisticSampler(c) => c.validate_for(signal),
        _ => Ok(()),
    }
}

pub fn exporter(cfg: &Config, s: &Section) -> Result<ExporterCfg, Vec<ConfigError>> {
    match s.id.kind.as_str() {
        "otlp" => decode(cfg, s, exp::OtlpConfig::validate).map(|c| ExporterCfg::Otlp(Box::new(c))),
        "otlphttp" => decode(cfg, s, exp::OtlpHttpConfig::validate).map(|c| ExporterCfg::OtlpHttp(Box::new(c))),
        "file" => decode(cfg, s, exp::FileConfig::validate).map(|c| ExporterCfg::File(Box::new(c))),
        "debug" => decode(cfg, s, exp::DebugConfig::validate).map(|c| ExporterCfg::Debug(Box::new(c))),
        "prometheusremotewrite" => decode(cfg, s, sightline_prometheus::PrometheusRemoteWriteConfig::validate)
            .map(|c| ExporterCfg::PrometheusRemoteWrite(Box::new(c))),
        "loki" => decode(cfg, s, sightline_loki::LokiConfig::validate).map(|c| ExporterCfg::Loki(Box::new(c))),
        "loadbalancing" => {
            decode(cfg, s, exp::LoadBalancingConfig::validate).map(|c| ExporterCfg::LoadBalancing(Box::new(c)))
        }
        "kafka" => {
            decode(cfg, s, sightline_kafka::KafkaExporterConfig::validate).map(|c| ExporterCfg::Kafka(Box::new(c)))
        }
        "clickhouse" => decode(cfg, s, sightline_clickhouse::ClickHouseConfig::validate)
            .map(|c| ExporterCfg::ClickHouse(Box::new(c))),
        "parquet" => {
            decode(cfg, s, sightline_parquet::ParquetConfig::validate).map(|c| ExporterCfg::Parquet(Box::new(c)))
        }
        _ => Err(unknown(cfg, Kind::Exporter, s, EXPORTERS)),
    }
}

pub fn extension(cfg: &Config, s: &Section) -> Result<ExtensionCfg, Vec<ConfigError>> {
    match s.id.kind.as_str() {
        "health_check" => decode(cfg, s, crate::health_check::HealthCheckConfig::validate)
            .map(|c| ExtensionCfg::HealthCheck(Box::new(c))),
        _ => Err(unknown(cfg, Kind::Extension, s, EXTENSIONS)),
    }
}

/// An exporter's checks that depend on the signal of a pipeline using it; errors are relative
/// to the exporter's section.
pub fn exporter_signal_checks(e: &ExporterCfg, signal: Signal) -> Result<(), (String, String)> {
    match e {
        ExporterCfg::LoadBalancing(c) => c.validate_for(signal),
        _ => Ok(()),
    }
}

/// The signals an exporter handles, when not all three: a pipeline of another signal that
/// lists it is a config error naming both.
pub fn exporter_signals(cfg: &ExporterCfg) -> Option<&'static [&'static str]> {
    match cfg {
        ExporterCfg::PrometheusRemoteWrite(_) => Some(&["metrics"]),
        ExporterCfg::Loki(_) => Some(&["logs"]),
        _ => None,
    }
}

/// An exporter built once per id, handing each signal that uses it a sender (and its driver
/// options) over what the signals share: the `file` exporter's open file, the `otlp`
/// exporter's channel, the `otlphttp` exporter's connection pool, credential watchers.
pub enum BuiltExporter {
    Otlp(Box<exp::OtlpExporter>),
    OtlpHttp(Box<exp::OtlpHttpExporter>),
    File(Box<exp::FileExporter>),
    LoadBalancing(Box<exp::LoadBalancingExporter>),
    Kafka(Box<sightline_kafka::KafkaExporter>),
    Parquet(Box<sightline_parquet::ParquetExporter>),
    /// Exporters with nothing to share between signals (one signal only, or stateless).
    PerSignal(SignalBuilder),
}

/// Builds one signal's sender and driver options.
pub type SignalBuilder = Box<dyn Fn(Signal) -> Result<(Arc<dyn Sender>, DriverConfig), exp::BuildError> + Send + Sync>;

impl BuiltExporter {
    pub fn sender(&self, signal: Signal) -> Result<(Arc<dyn Sender>, DriverConfig), exp::BuildError> {
        match self {
            BuiltExporter::Otlp(e) => Ok((e.sender(signal), e.driver_config())),
            BuiltExporter::OtlpHttp(e) => Ok((e.sender(signal)?, e.driver_config())),
            BuiltExporter::File(e) => Ok((e.sender(signal), e.driver_config())),
            BuiltExporter::LoadBalancing(e) => Ok((e.sender(signal), e.driver_config())),
            BuiltExporter::Kafka(e) => Ok((e.sender(signal), e.driver_config())),
            BuiltExporter::Parquet(e) => Ok((e.sender(signal), e.driver_config())),
            BuiltExporter::PerSignal(f) => f(signal),
        }
    }
}

/// Builds an exporter (once per id). Must be called from within the Tokio runtime.
pub fn build_exporter(id: &str, cfg: &ExporterCfg, registry: &Registry) -> Result<BuiltExporter, exp::BuildError> {
    let (id, registry) = (id.to_string(), registry.clone());
    Ok(match cfg {
        ExporterCfg::Otlp(c) => BuiltExporter::Otlp(Box::new(exp::OtlpExporter::new(&id, c, &registry)?)),
        ExporterCfg::OtlpHttp(c) => BuiltExporter::OtlpHttp(Box::new(exp::OtlpHttpExporter::new(&id, c, &registry)?)),
        ExporterCfg::File(c) => BuiltExporter::File(Box::new(exp::FileExporter::open(&id, c)?)),
        ExporterCfg::LoadBalancing(c) => {
            BuiltExporter::LoadBalancing(Box::new(exp::LoadBalancingExporter::new(&id, c, &registry)?))
        }
        ExporterCfg::Kafka(c) => {
            BuiltExporter::Kafka(Box::new(sightline_kafka::KafkaExporter::new(&id, c, &registry)?))
        }
        ExporterCfg::Parquet(c) => {
            BuiltExporter::Parquet(Box::new(sightline_parquet::ParquetExporter::open(&id, c, &registry)?))
        }
        ExporterCfg::Debug(c) => {
            let c = c.clone();
            BuiltExporter::PerSignal(Box::new(move |s| exp::build_debug(&id, s, &c)))
        }
        ExporterCfg::PrometheusRemoteWrite(c) => {
            let c = c.clone();
            BuiltExporter::PerSignal(Box::new(move |s| {
                sightline_prometheus::build_prometheusremotewrite(&id, s, &c, &registry)
            }))
        }
        ExporterCfg::Loki(c) => {
            let c = c.clone();
            BuiltExporter::PerSignal(Box::new(move |s| sightline_loki::build_loki(&id, s, &c, &registry)))
        }
        ExporterCfg::ClickHouse(c) => {
            let c = c.clone();
            BuiltExporter::PerSignal(Box::new(move |s| sightline_clickhouse::build_clickhouse(&id, s, &c, &registry)))
        }
    })
}

/// Two `file` exporters writing one file would interleave their writes and rotate each
/// other's file: an error naming both (paths compared made absolute, `.` and `..` resolved).
pub fn shared_file_paths(cfg: &Config, exporters: &HashMap<String, ExporterCfg>) -> Vec<ConfigError> {
    let mut files: Vec<(&String, std::path::PathBuf)> = exporters
        .iter()
        .filter_map(|(id, e)| match e {
            ExporterCfg::File(f) => Some((id, exp::file::normalized_path(&f.path))),
            ExporterCfg::Parquet(p) => Some((id, exp::file::normalized_path(&p.path))),
            _ => None,
        })
        .collect();
    files.sort();
    let mut errors = Vec::new();
    for (i, (id, path)) in files.iter().enumerate() {
        if let Some((first, _)) = files[..i].iter().find(|(_, p)| p == path) {
            errors.push(cfg.error(
                &format!("exporters.{id}.path"),
                format!(
                    "{} is also the path of exporter {first:?}: two file or parquet exporters cannot write one path (list one exporter in several pipelines instead)",
                    path.display()
                ),
            ));
        }
    }
    errors
}
