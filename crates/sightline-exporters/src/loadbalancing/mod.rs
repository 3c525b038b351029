//! The `loadbalancing` exporter, shaped like the collector's `loadbalancingexporter`: agents
//! spread data across a pool of gateways so that every span of a trace (or every point of a
//! service) reaches the same gateway, for tail sampling and span metrics there.
//!
//! What differs from the collector, on purpose (ADR 22):
//! - **One queue, before routing.** Batches wait in the exporter's own queue (the core driver's)
//!   and are split between backends when they are sent, on the ring of that moment: data queued
//!   while a gateway leaves goes to the gateway that owns it now, never to a closed exporter.
//! - **Only what failed is retried.** A backend that fails has its part of the batch sent to the
//!   next ring member at once; what still fails is handed back to the driver as the part left
//!   to retry ([`SendError::with_remaining`]), re-routed at the next attempt. What a backend
//!   accepted is never sent again.
//! - **Removed endpoints are drained**: a send in flight keeps its backend's channel open until it
//!   ends; the channel closes when the last send lets go of it.
//!
//! The ring is the collector's ([`ring`]), so a mixed fleet agrees on the owner of each key.

pub mod identity;
pub mod ring;
pub mod split;

use crate::otlp::parse_endpoint;
use crate::{BuildError, OtlpConfig, OtlpExporter};
use arc_swap::ArcSwap;
use bytes::Bytes;
use ring::Ring;
use serde::Deserialize;
use sightline_core::driver::{SendError, SendFuture};
use sightline_core::telemetry::{Counter, Gauge};
use sightline_core::wire::{self, Fields};
use sightline_core::{Batch, DriverConfig, Payload, QueueConfig, Registry, RetryConfig, Sender, Signal};
use split::Split;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// `routing_key`: what decides the backend.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum RoutingKey {
    /// Spans and log records by trace id (the default for traces).
    #[serde(rename = "traceID")]
    TraceId,
    /// Whole resources by `service.name` (the default for metrics and logs).
    #[serde(rename = "service")]
    Service,
    /// Metrics by metric name.
    #[serde(rename = "metric")]
    Metric,
    /// Whole resources by the collector's resource identity (logs, metrics).
    #[serde(rename = "resource")]
    Resource,
    /// Metric data points by the collector's stream identity (metrics).
    #[serde(rename = "streamID")]
    StreamId,
    /// Accepted by the collector; refused here (not built yet).
    #[serde(rename = "attributes")]
    Attributes,
}

impl RoutingKey {
    fn name(self) -> &'static str {
        match self {
            RoutingKey::TraceId => "traceID",
            RoutingKey::Service => "service",
            RoutingKey::Metric => "metric",
            RoutingKey::Resource => "resource",
            RoutingKey::StreamId => "streamID",
            RoutingKey::Attributes => "attributes",
        }
    }

    /// The key used for `signal` when `routing_key` is not set (the collector's defaults).
    pub fn default_for(signal: Signal) -> RoutingKey {
        match signal {
            Signal::Traces => RoutingKey::TraceId,
            Signal::Metrics | Signal::Logs => RoutingKey::Service,
        }
    }

    /// The keys Sightline routes `signal` by.
    fn supported(signal: Signal) -> &'static [RoutingKey] {
        match signal {
            Signal::Traces => &[RoutingKey::TraceId, RoutingKey::Service],
            Signal::Logs => &[RoutingKey::TraceId, RoutingKey::Service, RoutingKey::Resource],
            Signal::Metrics => &[RoutingKey::Service, RoutingKey::Resource, RoutingKey::Metric, RoutingKey::StreamId],
        }
    }
}

/// `protocol`: how to reach each backend.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolConfig {
    /// The `otlp` exporter's options, used for every backend (its `endpoint` is the resolved
    /// backend's and is ignored here, as in the collector).
    pub otlp: OtlpConfig,
}

/// `resolver.static`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticResolver {
    /// The backends, `host[:port]` (port 4317 when none is given).
    pub hostnames: Vec<String>,
}

/// A port written as a number or a string (the collector's field is a string).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Port {
    Number(u16),
    Text(String),
}

impl Port {
    fn value(&self) -> Result<u16, String> {
        match self {
            Port::Number(n) => Ok(*n),
            Port::Text(s) => s.trim().parse().map_err(|_| format!("{s:?} is not a port number")),
        }
    }
}

/// `resolver.dns`: the backends are the addresses a name resolves to (a Kubernetes headless
/// Service), looked up again every `interval`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsResolver {
    /// The name to resolve (required).
    pub hostname: String,
    /// The backends' port (default 4317).
    #[serde(default)]
    pub port: Option<Port>,
    /// How often to resolve again (default 5s).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// The deadline of one lookup (default 1s).
    #[serde(default = "default_dns_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_dns_timeout() -> Duration {
    Duration::from_secs(1)
}

/// `resolver`: exactly one of `static` or `dns`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    #[serde(default, rename = "static")]
    pub static_: Option<StaticResolver>,
    #[serde(default)]
    pub dns: Option<DnsResolver>,
    /// The collector's Kubernetes resolver: refused (use `dns` with a headless Service).
    #[serde(default)]
    pub k8s: Option<serde::de::IgnoredAny>,
    /// The collector's AWS Cloud Map resolver: refused.
    #[serde(default)]
    pub aws_cloud_map: Option<serde::de::IgnoredAny>,
}

/// The `loadbalancing` exporter's options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancingConfig {
    /// `traceID`, `service` or `metric` (default: `traceID` for traces, `service` for metrics
    /// and logs, as in the collector).
    #[serde(default)]
    pub routing_key: Option<RoutingKey>,
    /// The collector's `routing_attributes` (for `routing_key: attributes`): refused.
    #[serde(default)]
    pub routing_attributes: Option<serde::de::IgnoredAny>,
    pub protocol: ProtocolConfig,
    pub resolver: ResolverConfig,
    /// The deadline of one send to all backends (default: twice `protocol.otlp.timeout`, for a
    /// failed part's second backend).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// The exporter's queue, in front of the routing (default: `protocol.otlp.sending_queue`,
    /// whose default is the core `sending_queue`'s).
    #[serde(default)]
    pub sending_queue: Option<QueueConfig>,
    /// Retries of what the backends did not take (default: `protocol.otlp.retry_on_failure`).
    #[serde(default)]
    pub retry_on_failure: Option<RetryConfig>,
}

/// The port the collector adds to a backend without one.
const DEFAULT_PORT: u16 = 4317;

/// The exporter endpoint of a ring member: the name as given, with port 4317 when it has none.
fn backend_endpoint(name: &str) -> String {
    let has_port = match name.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => name.contains(':'),
    };
    if has_port { name.to_string() } else { format!("{name}:{DEFAULT_PORT}") }
}

impl LoadBalancingConfig {
    /// The `otlp` options of one backend.
    fn backend_config(&self, endpoint: &str) -> OtlpConfig {
        let mut c = self.protocol.otlp.clone();
        c.endpoint = backend_endpoint(endpoint);
        c
    }

    /// Checks serde cannot express (no I/O): `(key relative to the exporter, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut otlp = self.protocol.otlp.clone();
        otlp.endpoint = format!("placeholder:{DEFAULT_PORT}");
        for (k, m) in otlp.validate() {
            out.push((format!("protocol.otlp.{k}"), m));
        }
        if self.sending_queue.is_some() && self.protocol.otlp.sending_queue != QueueConfig::default() {
            out.push((
                "protocol.otlp.sending_queue".into(),
                "set here and at the exporter's top level: Sightline has one queue, before routing (ADR 22); keep one"
                    .into(),
            ));
        }
        if self.retry_on_failure.is_some() && self.protocol.otlp.retry_on_failure != RetryConfig::default() {
            out.push((
                "protocol.otlp.retry_on_failure".into(),
                "set here and at the exporter's top level: Sightline retries once, after routing (ADR 22); keep one"
                    .into(),
            ));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            out.push(("timeout".into(), "must be greater than 0".into()));
        }
        if let Some(q) = &self.sending_queue {
            out.extend(q.validate());
        }
        let r = &self.resolver;
        if r.k8s.is_some() {
            out.push((
                "resolver.k8s".into(),
                "the Kubernetes resolver is not supported; use resolver.dns with the gateways' headless Service (the Helm chart's gatewayLoadBalancing preset does)".into(),
            ));
        }
        if r.aws_cloud_map.is_some() {
            out.push(("resolver.aws_cloud_map".into(), "not supported; supported are static and dns".into()));
        }
        match (&r.static_, &r.dns) {
            (Some(_), Some(_)) => out.push(("resolver".into(), "only one resolver should be specified".into())),
            (None, None) if r.k8s.is_none() && r.aws_cloud_map.is_none() => {
                out.push(("resolver".into(), "no resolvers specified for the exporter: use static or dns".into()))
            }
            _ => {}
        }
        if let Some(s) = &r.static_ {
            if s.hostnames.is_empty() {
                out.push(("resolver.static.hostnames".into(), "no endpoints specified for the static resolver".into()));
            }
            for (i, h) in s.hostnames.iter().enumerate() {
                if let Err(m) = parse_endpoint(&backend_endpoint(h), self.protocol.otlp.tls.insecure) {
                    out.push((format!("resolver.static.hostnames[{i}]"), m));
                }
            }
        }
        if let Some(d) = &r.dns {
            if d.hostname.trim().is_empty() {
                out.push(("resolver.dns.hostname".into(), "no hostname specified to resolve the backends".into()));
            }
            if let Some(Err(m)) = d.port.as_ref().map(Port::value) {
                out.push(("resolver.dns.port".into(), m));
            }
            if d.interval.is_zero() {
                out.push(("resolver.dns.interval".into(), "must be greater than 0".into()));
            }
            if d.timeout.is_zero() {
                out.push(("resolver.dns.timeout".into(), "must be greater than 0".into()));
            }
        }
        if self.routing_attributes.is_some() {
            out.push((
                "routing_attributes".into(),
                "routing by attributes is not supported yet; use routing_key traceID, service, resource or metric"
                    .into(),
            ));
        }
        if let Some(k @ RoutingKey::Attributes) = self.routing_key {
            out.push((
                "routing_key".into(),
                format!(
                    "{:?} is not supported yet; supported are traceID and service (traces), traceID, service and resource (logs), service, resource, metric and streamID (metrics)",
                    k.name()
                ),
            ));
        }
        out
    }

    /// The checks that depend on the signal of a pipeline using the exporter.
    pub fn validate_for(&self, signal: Signal) -> Result<(), (String, String)> {
        let key = self.routing_key.unwrap_or(RoutingKey::default_for(signal));
        if key == RoutingKey::Attributes {
            return Ok(()); // reported by validate()
        }
        if RoutingKey::supported(signal).contains(&key) {
            return Ok(());
        }
        let names: Vec<&str> = RoutingKey::supported(signal).iter().map(|k| k.name()).collect();
        Err((
            "routing_key".into(),
            format!("unsupported routing_key {:?} for {}; use {}", key.name(), signal.as_str(), names.join(" or ")),
        ))
    }

    fn driver_config(&self) -> DriverConfig {
        let o = &self.protocol.otlp;
        DriverConfig {
            queue: self.sending_queue.clone().unwrap_or_else(|| o.sending_queue.clone()),
            retry: self.retry_on_failure.clone().unwrap_or_else(|| o.retry_on_failure.clone()),
            timeout: self.timeout.unwrap_or(o.timeout * ROUNDS as u32),
        }
    }
}

/// Rounds of one send: the owners, then the next ring member of what failed.
const ROUNDS: usize = 2;

/// One backend: its `otlp` exporter and a sender per signal over its channel.
struct Backend {
    endpoint: String,
    senders: [Arc<dyn Sender>; 3],
    ok: Counter,
    failed: Counter,
}

impl Backend {
    fn sender(&self, signal: Signal) -> &Arc<dyn Sender> {
        &self.senders[signal as usize]
    }
}

/// The ring and its backends, replaced whole when the resolver's answer changes.
struct State {
    ring: Ring,
    /// In the ring's endpoint order.
    backends: Vec<Arc<Backend>>,
}

struct Shared {
    id: Arc<str>,
    cfg: LoadBalancingConfig,
    registry: Registry,
    state: ArcSwap<State>,
    resolver: &'static str,
    num_backends: Gauge,
    backend_updates: Counter,
    resolutions_ok: Counter,
    resolutions_failed: Counter,
}

impl Shared {
    /// A new state for `endpoints`, reusing the backends still in it. A backend that leaves is
    /// dropped here; sends in flight hold it (and its channel) until they end.
    fn update(&self, mut endpoints: Vec<String>) -> Result<bool, BuildError> {
        endpoints.sort();
        endpoints.dedup();
        let current = self.state.load();
        if current.ring.endpoints() == endpoints.as_slice() && !current.backends.is_empty() {
            return Ok(false);
        }
        let old: HashMap<&str, &Arc<Backend>> = current.backends.iter().map(|b| (b.endpoint.as_str(), b)).collect();
        let ring = Ring::new(&endpoints);
        let mut backends = Vec::with_capacity(endpoints.len());
        for e in ring.endpoints() {
            let b = match old.get(e.as_str()) {
                Some(b) => Arc::clone(b),
                None => Arc::new(self.backend(e)?),
            };
            backends.push(b);
        }
        self.num_backends.set(backends.len() as i64);
        self.backend_updates.inc();
        tracing::info!(exporter = %self.id, backends = ?endpoints, "load-balancing ring updated");
        self.state.store(Arc::new(State { ring, backends }));
        Ok(true)
    }

    fn backend(&self, endpoint: &str) -> Result<Backend, BuildError> {
        let cfg = self.cfg.backend_config(endpoint);
        let e = OtlpExporter::new(&self.id, &cfg, &self.registry)?;
        let outcome = |success: &str| {
            self.registry.counter(
                "otelcol_loadbalancer_backend_outcome",
                "Sends to each backend of a loadbalancing exporter, by outcome.",
                &[("exporter", &self.id), ("endpoint", endpoint), ("success", success)],
            )
        };
        Ok(Backend {
            endpoint: endpoint.to_string(),
            senders: Signal::ALL.map(|s| e.sender(s)),
            ok: outcome("true"),
            failed: outcome("false"),
        })
    }
}

/// A `loadbalancing` exporter: the ring, the backends and the resolver, shared by the signals
/// that list it; each signal gets its own [`Sender`] (and driver).
pub struct LoadBalancingExporter {
    shared: Arc<Shared>,
    driver: DriverConfig,
}

impl LoadBalancingExporter {
    /// Must be called from within a Tokio runtime (the backends' channels and the DNS
    /// resolver's task are started here). A static resolver's ring is built at once; a DNS
    /// resolver's at its first answer (sends fail, and are retried, until then).
    pub fn new(id: &str, cfg: &LoadBalancingConfig, registry: &Registry) -> Result<LoadBalancingExporter, BuildError> {
        BuildError::from_findings(cfg.validate())?;
        tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let resolver = if cfg.resolver.dns.is_some() { "dns" } else { "static" };
        let labels = [("exporter", id), ("resolver", resolver)];
        let shared = Arc::new(Shared {
            id: Arc::from(id),
            cfg: cfg.clone(),
            registry: registry.clone(),
            state: ArcSwap::from_pointee(State { ring: Ring::new(&[]), backends: Vec::new() }),
            resolver,
            num_backends: registry.gauge(
                "otelcol_loadbalancer_num_backends",
                "Backends in a loadbalancing exporter's ring.",
                &labels,
            ),
            backend_updates: registry.counter(
                "otelcol_loadbalancer_num_backend_updates",
                "Changes of a loadbalancing exporter's set of backends.",
                &labels,
            ),
            resolutions_ok: registry.counter(
                "otelcol_loadbalancer_num_resolutions",
                "Resolutions of a loadbalancing exporter's backends, by outcome.",
                &[("exporter", id), ("resolver", resolver), ("success", "true")],
            ),
            resolutions_failed: registry.counter(
                "otelcol_loadbalancer_num_resolutions",
                "Resolutions of a loadbalancing exporter's backends, by outcome.",
                &[("exporter", id), ("resolver", resolver), ("success", "false")],
            ),
        });
        if let Some(s) = &cfg.resolver.static_ {
            shared.update(s.hostnames.clone()).map_err(under_protocol)?;
            shared.resolutions_ok.inc();
        }
        if let Some(d) = &cfg.resolver.dns {
            tokio::spawn(resolve_dns(Arc::downgrade(&shared), d.clone()));
        }
        Ok(LoadBalancingExporter { driver: cfg.driver_config(), shared })
    }

    /// The sender of `signal`'s batches.
    pub fn sender(&self, signal: Signal) -> Arc<dyn Sender> {
        let key = self.shared.cfg.routing_key.unwrap_or(RoutingKey::default_for(signal));
        Arc::new(LbSender { shared: self.shared.clone(), signal, key })
    }

    /// The driver options (`timeout`, `sending_queue`, `retry_on_failure`).
    pub fn driver_config(&self) -> DriverConfig {
        self.driver.clone()
    }

    /// The current ring's endpoints (sorted).
    pub fn endpoints(&self) -> Vec<String> {
        self.shared.state.load().ring.endpoints().to_vec()
    }
}

/// A backend's `otlp` build error, named by its option under `protocol.otlp`.
fn under_protocol(e: BuildError) -> BuildError {
    match e {
        BuildError::Invalid { key, message } => BuildError::Invalid { key: format!("protocol.otlp.{key}"), message },
        BuildError::Io { key, path, source } => BuildError::Io { key: format!("protocol.otlp.{key}"), path, source },
        other => other,
    }
}

/// The DNS resolver: resolves at once, then every `interval`, until the exporter is gone. A
/// failed lookup keeps the previous backends; an answer with no address empties the ring.
async fn resolve_dns(shared: Weak<Shared>, cfg: DnsResolver) {
    let port = cfg.port.as_ref().and_then(|p| p.value().ok());
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let lookup = tokio::net::lookup_host((cfg.hostname.as_str(), port.unwrap_or(DEFAULT_PORT)));
        match tokio::time::timeout(cfg.timeout, lookup).await {
            Ok(Ok(addrs)) => {
                shared.resolutions_ok.inc();
                let endpoints: Vec<String> = addrs.map(|a| ring_name(a.ip(), port)).collect();
                if let Err(e) = shared.update(endpoints) {
                    tracing::warn!(exporter = %shared.id, error = %e, "cannot use the resolved backends");
                }
            }
            Ok(Err(e)) => {
                shared.resolutions_failed.inc();
                tracing::warn!(exporter = %shared.id, hostname = %cfg.hostname, error = %e, "failed to resolve; keeping the previous backends");
            }
            Err(_) => {
                shared.resolutions_failed.inc();
                tracing::warn!(exporter = %shared.id, hostname = %cfg.hostname, timeout = ?cfg.timeout, "DNS lookup timed out; keeping the previous backends");
            }
        }
    }
}

/// A resolved address as the collector names it on the ring: `ip` or `[ipv6]`, with `:port`
/// only when the config sets a port.
fn ring_name(ip: std::net::IpAddr, port: Option<u16>) -> String {
    let host = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

struct LbSender {
    shared: Arc<Shared>,
    signal: Signal,
    key: RoutingKey,
}

/// The ring position of an item or resource entry, by routing key.
fn item_position(signal: Signal, key: RoutingKey, item: &[u8]) -> u32 {
    match (signal, key) {
        // Spans: the 16 raw bytes of the trace id (16 zero bytes when absent, as pdata's).
        (Signal::Traces, _) => match find_bytes(item, 1) {
            Some(id) if id.len() == 16 => ring::position(id),
            _ => ring::position(&[0u8; 16]),
        },
        // Log records: the trace id as 32 lowercase hex digits; a record without one goes to
        // a random backend, as in the collector.
        (Signal::Logs, _) => match find_bytes(item, 9) {
            Some(id) if id.len() == 16 && id.iter().any(|&b| b != 0) => {
                let mut hex = [0u8; 32];
                for (i, b) in id.iter().enumerate() {
                    hex[2 * i] = HEX[(b >> 4) as usize];
                    hex[2 * i + 1] = HEX[(b & 15) as usize];
                }
                ring::position(&hex)
            }
            _ => rand::random::<u32>() % ring::POSITIONS,
        },
        // Metrics by name.
        (Signal::Metrics, _) => ring::position(find_bytes(item, 1).unwrap_or_default()),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The first occurrence of length-delimited field `field` of a message.
fn find_bytes(msg: &[u8], field: u32) -> Option<&[u8]> {
    Fields::new(msg).map_while(Result::ok).find(|f| f.number == field).and_then(|f| wire::expect_len(&f).ok())
}

/// The ring position of a resource by service: the collector keys spans by the attribute
/// routing form `service.name=<value>|`, logs and metrics by the bare value.
fn service_position(signal: Signal, service: &[u8]) -> u32 {
    match signal {
        Signal::Traces => ring::position_of_parts(&[b"service.name=", service, b"|"]),
        Signal::Metrics | Signal::Logs => ring::position(service),
    }
}

/// The `service.name` of a resource entry (empty when it has none).
fn service_name(entry: &[u8]) -> &[u8] {
    let Some(resource) = find_bytes(entry, 1) else { return &[] };
    for a in wire::attributes(resource, 1).map_while(Result::ok) {
        if a.key == "service.name" {
            return a.value.as_str().map(str::as_bytes).unwrap_or_default();
        }
    }
    &[]
}

impl LbSender {
    /// Splits `payloads` between the backends of `state`, skipping `excluded` ones.
    fn route(&self, state: &State, payloads: &[Payload], excluded: &[bool]) -> Vec<Batch> {
        let n = state.backends.len();
        let mut per: Vec<Batch> = (0..n).map(|_| Batch::new(self.signal)).collect();
        let (signal, key) = (self.signal, self.key);
        let dest = |pos: u32| state.ring.lookup_position_excluding(pos, excluded).unwrap_or(0);
        let count = |item: &[u8]| -> u64 { if signal == Signal::Metrics { wire::metric_points(item) } else { 1 } };
        // Scratch for the resource and stream identities, reused across the batch.
        let mut scratch = Vec::new();
        for p in payloads {
            let res = match key {
                RoutingKey::Service => split::by_resource(
                    p.bytes(),
                    &mut |entry| dest(service_position(signal, service_name(entry))),
                    &|entry| wire::count_items(signal, entry),
                ),
                RoutingKey::Resource => split::by_resource(
                    p.bytes(),
                    &mut |entry| {
                        dest(identity::resource_position(find_bytes(entry, 1).unwrap_or_default(), &mut scratch))
                    },
                    &|entry| wire::count_items(signal, entry),
                ),
                RoutingKey::StreamId => {
                    // The metric's part of the identity, computed once per metric.
                    let mut last: Option<(usize, identity::Fnv, u8)> = None;
                    split::by_point(p.bytes(), &mut |resource, scope, metric, point| {
                        let (h, ty) = match last {
                            Some((at, h, ty)) if at == metric.as_ptr() as usize => (h, ty),
                            _ => {
                                let h = identity::metric_identity(resource, scope, metric, &mut scratch);
                                let ty = identity::metric_type(metric);
                                last = Some((metric.as_ptr() as usize, h, ty));
                                (h, ty)
                            }
                        };
                        dest(identity::stream_position(h, ty, point, &mut scratch))
                    })
                }
                _ => split::by_item(p.bytes(), &mut |item| dest(item_position(signal, key, item)), &count),
            };
            match res {
                Ok(Split::Empty) => {}
                Ok(Split::One(d)) => per[d].push(p.clone()),
                Ok(Split::Many(parts)) => {
                    for part in parts {
                        per[part.dest].push(Payload::new(signal, Bytes::from(part.bytes), part.items, None));
                    }
                }
                // The receiver checked the framing; a request that still cannot be read goes
                // whole to the first backend rather than being lost.
                Err(e) => {
                    tracing::warn!(exporter = %self.shared.id, error = %e, "cannot split a request; sent unsplit");
                    per[dest(0)].push(p.clone());
                }
            }
        }
        per
    }
}

impl Sender for LbSender {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        Box::pin(async move {
            let state = self.shared.state.load_full();
            if state.backends.is_empty() {
                return Err(SendError::retryable(format!(
                    "no backends: the {} resolver has found no endpoint yet",
                    self.shared.resolver
                )));
            }
            let timeout = self.shared.cfg.protocol.otlp.timeout;
            let mut excluded = vec![false; state.backends.len()];
            let mut pending: Vec<Payload> = batch.payloads.clone();
            // Parts a backend refused for good: not sent to another.
            let mut refused = Batch::new(self.signal);
            let mut last: Option<SendError> = None;
            for _ in 0..ROUNDS {
                let per = self.route(&state, &pending, &excluded);
                pending.clear();
                let sends = per.iter().enumerate().filter(|(_, b)| !b.payloads.is_empty()).map(|(d, b)| {
                    let backend = &state.backends[d];
                    async move {
                        let res = match tokio::time::timeout(timeout, backend.sender(self.signal).send(b)).await {
                            Ok(r) => r,
                            Err(_) => Err(SendError::retryable(format!("timed out after {timeout:?}"))),
                        };
                        (d, res)
                    }
                });
                for (d, res) in futures_util::future::join_all(sends).await {
                    let backend = &state.backends[d];
                    let e = match res {
                        Ok(()) => {
                            backend.ok.inc();
                            continue;
                        }
                        Err(e) => e,
                    };
                    backend.failed.inc();
                    // A backend that took part of its share hands back the rest.
                    let left =
                        e.remaining.as_ref().map(|r| r.0.payloads.clone()).unwrap_or_else(|| per[d].payloads.clone());
                    tracing::debug!(exporter = %self.shared.id, endpoint = %backend.endpoint, error = %e.message, "backend send failed");
                    if e.retryable {
                        excluded[d] = true;
                        pending.extend(left);
                    } else {
                        left.into_iter().for_each(|p| refused.push(p));
                    }
                    last = Some(SendError {
                        message: format!("{}: {}", backend.endpoint, e.message),
                        remaining: None,
                        ..e
                    });
                }
                if pending.is_empty() || excluded.iter().all(|&x| x) {
                    break;
                }
            }
            let Some(last) = last else { return Ok(()) };
            if !pending.is_empty() {
                // What a backend refused for good rides along: the next attempt sends it again,
                // is refused again, and the driver then counts it as failed, exactly.
                let mut rest = refused;
                pending.into_iter().for_each(|p| rest.push(p));
                return Err(SendError { retryable: true, ..last }.with_remaining(rest));
            }
            if refused.items > 0 {
                return Err(SendError { retryable: false, ..last }.with_remaining(refused));
            }
            Ok(())
        })
    }
}
