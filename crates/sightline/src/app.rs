//! Validation (parse -> decode every section -> check pipelines -> load catalogs) and the run
//! loop (build, start, wait for a signal, shut down in order).

use crate::components::{self, ExporterCfg, ExtensionCfg, ProcessorCfg, ReceiverCfg};
use crate::{admin, health_check};
use anyhow::Context as _;
use sightline_config::{ComponentId, Config, ConfigError, Kind, LogsTelemetry};
use sightline_core::{ExporterHandle, MemoryBudget, Pipeline, Processor, Registry, Signal};
use sightline_ownership::{CatalogHandle, ReloadOutcome};
use sightline_processors::ownership::OwnershipProcessor;
use sightline_processors::quota::QuotaProcessor;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const DEFAULT_CONFIG: &str = "config/sightline.yaml";

/// A configuration that passed every check, with its sections decoded.
pub struct Validated {
    pub config: Config,
    receivers: HashMap<String, ReceiverCfg>,
    processors: HashMap<String, ProcessorCfg>,
    exporters: HashMap<String, ExporterCfg>,
    extensions: HashMap<String, ExtensionCfg>,
    /// Loaded catalogs per ownership processor id.
    catalogs: HashMap<String, Arc<CatalogHandle>>,
}

/// Parses and checks a config file and the catalogs it names. Returns every error found.
pub fn validate(path: &str) -> Result<Validated, Vec<ConfigError>> {
    let config = Config::from_file(path)?;
    let mut errors = Vec::new();
    let mut receivers = HashMap::new();
    let mut processors = HashMap::new();
    let mut exporters = HashMap::new();
    for s in config.sections(Kind::Receiver) {
        match components::receiver(&config, s) {
            Ok(c) => {
                receivers.insert(s.id.to_string(), c);
            }
            Err(e) => errors.extend(e),
        }
    }
    for s in config.sections(Kind::Processor) {
        match components::processor(&config, s) {
            Ok(c) => {
                processors.insert(s.id.to_string(), c);
            }
            Err(e) => errors.extend(e),
        }
    }
    for s in config.sections(Kind::Exporter) {
        match components::exporter(&config, s) {
            Ok(c) => {
                exporters.insert(s.id.to_string(), c);
            }
            Err(e) => errors.extend(e),
        }
    }
    let mut extensions = HashMap::new();
    for s in config.sections(Kind::Extension) {
        match components::extension(&config, s) {
            Ok(c) => {
                extensions.insert(s.id.to_string(), c);
            }
            Err(e) => errors.extend(e),
        }
    }
    errors.extend(config.check_pipelines());
    errors.extend(components::shared_file_paths(&config, &exporters));
    // Receivers: their TLS and tokens files are read here so that `sightline validate` checks
    // them; a receiver that binds ownership to the token needs an ownership processor in every
    // pipeline it feeds (otherwise the authenticated team would silently go unused).
    for (id, r) in &receivers {
        match r {
            ReceiverCfg::Otlp(cfg) => {
                for (key, message) in cfg.check_files() {
                    errors.push(config.error(&format!("receivers.{id}.{key}"), message));
                }
                if cfg.binds_ownership() {
                    for (pid, p) in &config.service.pipelines {
                        let has_ownership = p
                            .processors
                            .iter()
                            .any(|n| matches!(processors.get(n.as_str()), Some(ProcessorCfg::Ownership(_))));
                        if p.receivers.contains(id) && !has_ownership {
                            errors.push(config.error(
                                &format!("service.pipelines.{pid}.processors"),
                                format!(
                                    "receiver {id} binds ownership to its tokens (auth.bind_ownership_to_token): add an ownership processor"
                                ),
                            ));
                        }
                    }
                }
            }
            ReceiverCfg::Kafka(_) => {}
        }
    }
    for (pid, p) in &config.service.pipelines {
        let signal = pid.split('/').next().unwrap_or_default();
        for e in &p.exporters {
            if let Some(ok) = exporters.get(e).and_then(components::exporter_signals)
                && !ok.contains(&signal)
            {
                errors.push(config.error(
                    &format!("service.pipelines.{pid}.exporters"),
                    format!(
                        "exporter {e:?} supports {} pipelines only; remove it from pipeline {pid:?}",
                        ok.join(", ")
                    ),
                ));
            }
        }
    }
    let t = &config.service.telemetry;
    if !matches!(t.logs.level.to_ascii_lowercase().as_str(), "debug" | "info" | "warn" | "error") {
        errors.push(
            config.error("service.telemetry.logs.level", format!("{:?}: use debug, info, warn or error", t.logs.level)),
        );
    }
    if !matches!(t.logs.encoding.as_str(), "console" | "json") {
        errors.push(
            config.error("service.telemetry.logs.encoding", format!("{:?}: use console or json", t.logs.encoding)),
        );
    }
    match t.metrics.listen_address() {
        Err((key, msg)) => errors.push(config.error(&key, msg)),
        Ok(addr) if t.metrics.level != "none" && sightline_otlp::check_endpoint(&addr).is_err() => {
            errors.push(config.error("service.telemetry.metrics.address", format!("{addr:?} is not host:port")));
        }
        Ok(_) => {}
    }
    // Checks that depend on the pipeline's signal.
    for (pid, p) in &config.service.pipelines {
        let Ok(signal) = pipeline_signal(pid) else { continue };
        for name in &p.processors {
            if let Some(cfg) = processors.get(name)
                && let Err((key, msg)) = components::processor_signal_checks(cfg, signal)
            {
                let path =
                    if key.is_empty() { format!("processors.{name}") } else { format!("processors.{name}.{key}") };
                errors.push(config.error(&path, format!("{msg} (in pipeline {pid:?})")));
            }
        }
        for name in &p.exporters {
            if let Some(cfg) = exporters.get(name)
                && let Err((key, msg)) = components::exporter_signal_checks(cfg, signal)
            {
                errors.push(config.error(&format!("exporters.{name}.{key}"), format!("{msg} (in pipeline {pid:?})")));
            }
        }
    }
    // A quota or a policy reads the team the ownership processor wrote: it must come after one.
    for (pid, p) in &config.service.pipelines {
        for (i, name) in p.processors.iter().enumerate() {
            let team_attribute = match processors.get(name) {
                Some(ProcessorCfg::Quota(q)) => Some(&q.team_attribute),
                Some(ProcessorCfg::Policy(c)) => Some(&c.team_attribute),
                _ => None,
            };
            if let Some(team_attribute) = team_attribute {
                let owned_before =
                    p.processors[..i].iter().any(|n| matches!(processors.get(n), Some(ProcessorCfg::Ownership(_))));
                if !owned_before {
                    errors.push(config.error(
                        &format!("service.pipelines.{pid}.processors"),
                        format!(
                            "{name:?} reads the team from {team_attribute:?}, which an ownership processor must set first: list an ownership processor before it"
                        ),
                    ));
                }
            }
        }
    }
    // Catalogs: loaded here so that `sightline validate` checks them too.
    let mut catalogs = HashMap::new();
    for (id, p) in &processors {
        if let ProcessorCfg::Ownership(o) = p {
            match CatalogHandle::new(o.catalog_config()) {
                Ok(h) => {
                    catalogs.insert(id.clone(), Arc::new(h));
                }
                Err(errs) => {
                    let path = format!("processors.{id}.catalog");
                    errors.extend(errs.into_iter().map(|e| config.error(&path, e.to_string())));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(Validated { config, receivers, processors, exporters, extensions, catalogs })
    } else {
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Err(errors)
    }
}

/// Logs go to stderr: colour only when stderr is a terminal and `NO_COLOR` is not set (so a
/// log file or a container's log has no escape codes); `encoding: json` writes one JSON
/// object per line with the event's fields as top-level keys. `RUST_LOG`, when set, overrides
/// `level`.
pub fn init_logging(cfg: &LogsTelemetry) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(cfg.level.to_ascii_lowercase()));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if cfg.encoding == "json" {
        let _ = b.json().flatten_event(true).with_current_span(false).with_span_list(false).try_init();
    } else {
        let _ = b.try_init();
    }
}

/// The process's memory limit: the smallest of the `memory_limiter` definitions (a
/// percentage resolved against the memory available to the process), or the default.
fn memory_limit(v: &Validated) -> anyhow::Result<sightline_processors::memory_limiter::Resolved> {
    use sightline_processors::memory_limiter::{default_config, total_memory};
    let total = std::sync::LazyLock::new(total_memory);
    let mut best: Option<sightline_processors::memory_limiter::Resolved> = None;
    for (id, p) in &v.processors {
        if let ProcessorCfg::MemoryLimiter(m) = p {
            let r = m.resolve(*total).ok_or_else(|| {
                anyhow::anyhow!("processors.{id}: limit_percentage needs the machine's memory, which cannot be read")
            })?;
            if best.is_none_or(|b| r.limit_mib < b.limit_mib) {
                best = Some(r);
            }
        }
    }
    Ok(best.unwrap_or_else(|| default_config().resolve(None).expect("limit_mib is set")))
}

/// Builds and runs everything until SIGTERM/SIGINT, then shuts down in order: receivers stop
/// accepting, in-flight requests finish, exporters flush their queues within
/// `service.shutdown_timeout`, and whatever could not be delivered is logged and counted.
pub async fn run(v: Validated) -> anyhow::Result<()> {
    let registry = Registry::new();
    let governance = Arc::new(sightline_core::Governance::default());
    let limiter = memory_limit(&v)?;
    let (limit_mib, spike_mib) = (limiter.limit_mib, limiter.spike_mib);
    // `limit_mib` bounds the process, as the collector's memory limiter does. Not available to
    // telemetry: what the process already holds before any data arrives (code, runtime,
    // catalogs) and `spike_limit_mib` of headroom for what no budget counts (HTTP/2 buffers of
    // unread request bodies, connection state, allocator slack); at least half the limit is
    // left. Of the rest, three quarters admit requests (held by payloads until the last
    // exporter is done) and one quarter bounds the senders' own copies of the batches they
    // are sending.
    let baseline = crate::admin::rss_bytes().unwrap_or(0) as usize;
    let total = (limit_mib as usize) << 20;
    let limit = total.saturating_sub(baseline + ((spike_mib as usize) << 20)).max(total / 2);
    let budget = MemoryBudget::new(limit - limit / 4);
    let send_budget = MemoryBudget::new(limit / 4);
    tracing::debug!(limit_mib, spike_mib, baseline_bytes = baseline, telemetry_bytes = limit, "memory budget");
    registry
        .gauge("sightline_memory_budget_limit_bytes", "The in-flight byte budget (memory_limiter).", &[])
        .set(budget.limit() as i64);

    // Exporters: each id is built once (one file, one channel or connection pool, one set of
    // credential watchers, whatever the number of pipelines listing it), then one driver per
    // (exporter, signal) that some pipeline uses: queues and batches hold one signal.
    let mut uses: BTreeMap<&String, Vec<Signal>> = BTreeMap::new();
    for (pid, p) in &v.config.service.pipelines {
        let signal = pipeline_signal(pid)?;
        for e in &p.exporters {
            let signals = uses.entry(e).or_default();
            if !signals.contains(&signal) {
                signals.push(signal);
            }
        }
    }
    let mut drivers = Vec::new();
    let mut handles: BTreeMap<(String, Signal), ExporterHandle> = BTreeMap::new();
    for (e, signals) in uses {
        let cfg = v.exporters.get(e).with_context(|| format!("exporter {e} not decoded"))?;
        let built =
            components::build_exporter(e, cfg, &registry).map_err(|err| anyhow::anyhow!("exporters.{e}: {err}"))?;
        for signal in signals {
            let (sender, dcfg) = built.sender(signal).map_err(|err| anyhow::anyhow!("exporters.{e}: {err}"))?;
            // Opens a disk queue (recovering its backlog) when the exporter has one.
            let d = sightline_core::driver::start(e, signal, dcfg, sender, &registry, Some(send_budget.clone()))
                .await
                .map_err(|err| anyhow::anyhow!("exporters.{e}.{err}"))?;
            handles.insert((e.clone(), signal), d.handle.clone());
            drivers.push((e.clone(), signal, d));
        }
    }

    // Catalog watchers and ownership processors.
    let mut watchers = Vec::new();
    for (id, handle) in &v.catalogs {
        let ProcessorCfg::Ownership(cfg) = &v.processors[id] else { continue };
        let ok = registry.counter(
            "sightline_catalog_reloads_total",
            "Catalog reloads that replaced the catalog in use.",
            &[("processor", id)],
        );
        let failed = registry.counter(
            "sightline_catalog_reload_errors_total",
            "Catalog reloads refused because the new catalog is invalid (the previous one stays in use).",
            &[("processor", id)],
        );
        let services = registry.gauge(
            "sightline_catalog_services",
            "Service entries in the catalog in use.",
            &[("processor", id)],
        );
        let rules = registry.gauge("sightline_catalog_rules", "Rules in the catalog in use.", &[("processor", id)]);
        let current = handle.snapshot();
        services.set(current.service_count() as i64);
        rules.set(current.rule_count() as i64);
        let health = |c: &sightline_ownership::Catalog| sightline_core::governance::CatalogHealth {
            last_reload: sightline_core::governance::unix_now(),
            ok: true,
            errors: Vec::new(),
            teams: c.teams().count(),
            services: c.service_count(),
            rules: c.rule_count(),
        };
        governance.set_catalog(id, health(&current));
        if cfg.watch {
            let pid = id.clone();
            let (g, h) = (governance.clone(), handle.clone());
            let on_reload: sightline_ownership::OnReload = Arc::new(move |o: ReloadOutcome| match o {
                ReloadOutcome::Reloaded { services: s, rules: r, generation, .. } => {
                    ok.inc();
                    services.set(s as i64);
                    rules.set(r as i64);
                    g.set_catalog(&pid, health(&h.snapshot()));
                    tracing::info!(processor = %pid, generation, services = s, rules = r, "catalog reloaded");
                }
                ReloadOutcome::Failed { errors, .. } => {
                    failed.inc();
                    g.catalog_failed(&pid, errors.iter().map(ToString::to_string).collect());
                }
                ReloadOutcome::Unchanged { .. } => {}
            });
            let w = sightline_ownership::spawn_watcher(handle.clone(), Default::default(), on_reload)
                .with_context(|| format!("processors.{id}: cannot watch the catalog"))?;
            watchers.push(w);
        }
    }

    // Kubernetes metadata, per ownership processor that enables it: one cache shared by the
    // processor's pipelines of every signal.
    let mut k8s_stores: HashMap<String, Arc<sightline_k8s::Store>> = HashMap::new();
    let mut k8s_watches = Vec::new();
    for id in v.catalogs.keys() {
        let ProcessorCfg::Ownership(cfg) = &v.processors[id] else { continue };
        let k = &cfg.kubernetes;
        if !k.enabled {
            continue;
        }
        let metrics = Some((&registry, id.as_str()));
        let store = match k.mode {
            sightline_k8s::Mode::Api => {
                let store = Arc::new(sightline_k8s::Store::new(&k.kept_keys(), k.pod_delete_grace_period, metrics));
                let w = sightline_k8s::watch::start(k, store.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("processors.{id}.kubernetes: {e}"))?;
                k8s_watches.push(w);
                store
            }
            sightline_k8s::Mode::DownwardApi => {
                let pod = sightline_k8s::downward::load(&k.downward_api, &k.kept_keys(), &|v| std::env::var(v).ok())
                    .map_err(|e| anyhow::anyhow!("processors.{id}.kubernetes: {e}"))?;
                tracing::info!(processor = %id, pod = %pod.name, namespace = %pod.namespace, "ownership from the downward API (sidecar)");
                Arc::new(sightline_k8s::Store::fixed(pod, metrics))
            }
        };
        k8s_stores.insert(id.clone(), store);
    }

    // Pipelines.
    let mut pipelines: HashMap<String, Arc<Pipeline>> = HashMap::new();
    // One quota processor per (id, signal): pipelines of a signal that list it share its buckets.
    let mut quotas: HashMap<(String, Signal), Arc<QuotaProcessor>> = HashMap::new();
    for (pid, p) in &v.config.service.pipelines {
        let signal = pipeline_signal(pid)?;
        let mut procs: Vec<Arc<dyn Processor>> = Vec::new();
        let mut placement = sightline_processors::attraction::Placement::BeforeBatch;
        for name in &p.processors {
            match &v.processors[name] {
                ProcessorCfg::Ownership(cfg) => {
                    let handle = v.catalogs[name].clone();
                    let mut o = OwnershipProcessor::new(name, signal, cfg, handle, &registry)
                        .with_governance(governance.clone());
                    if let Some(store) = k8s_stores.get(name) {
                        o = o.with_kubernetes(&cfg.kubernetes, store.clone());
                    }
                    procs.push(Arc::new(o));
                }
                ProcessorCfg::Quota(cfg) => {
                    let q = quotas
                        .entry((name.clone(), signal))
                        .or_insert_with(|| Arc::new(QuotaProcessor::new(name, signal, cfg, &registry)));
                    procs.push(q.clone());
                }
                ProcessorCfg::Resource(cfg) => {
                    let r = sightline_processors::resource::ResourceProcessor::new(cfg, placement.clone())
                        .map_err(|e| anyhow::anyhow!("processors.{name}: {e}"))?;
                    procs.push(Arc::new(r));
                }
                ProcessorCfg::Attributes(cfg) => {
                    let a = sightline_processors::attributes::AttributesProcessor::new(cfg, signal, placement.clone())
                        .map_err(|e| anyhow::anyhow!("processors.{name}: {e}"))?;
                    procs.push(Arc::new(a));
                }
                ProcessorCfg::Filter(cfg) => {
                    let f = sightline_processors::filter::FilterProcessor::new(name, cfg, signal, &registry)
                        .map_err(|e| anyhow::anyhow!("processors.{name}: {e}"))?;
                    procs.push(Arc::new(f));
                }
                ProcessorCfg::Transform(cfg) => {
                    let t = sightline_processors::transform::TransformProcessor::new(name, cfg, signal)
                        .map_err(|e| anyhow::anyhow!("processors.{name}: {e}"))?;
                    procs.push(Arc::new(t));
                }
                ProcessorCfg::ProbabilisticSampler(cfg) => {
                    procs.push(Arc::new(sightline_processors::probabilistic_sampler::ProbabilisticSampler::new(
                        name, cfg, signal, &registry,
                    )));
                }
                ProcessorCfg::Policy(cfg) => {
                    let p = sightline_processors::policy::PolicyProcessor::new(name, signal, cfg, &registry)
                        .map_err(|e| anyhow::anyhow!("processors.{name}: {e}"))?;
                    governance.add_policy(sightline_core::governance::PolicyModes {
                        policy: name.clone(),
                        signal: signal.as_str(),
                        default: cfg.mode.as_str(),
                        teams: cfg.team_modes(),
                    });
                    procs.push(Arc::new(p));
                }
                ProcessorCfg::Batch { metadata_keys } => placement = placement.then_batch(metadata_keys),
                ProcessorCfg::MemoryLimiter(_) => {}
            }
        }
        let exporters = p.exporters.iter().map(|e| handles[&(e.clone(), signal)].clone()).collect();
        pipelines.insert(pid.clone(), Arc::new(Pipeline { id: pid.clone(), signal, processors: procs, exporters }));
    }
    drop(handles);

    // Admin server.
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let admin_task = if v.config.service.telemetry.metrics.level != "none" {
        let addr = v.config.service.telemetry.metrics.listen_address().map_err(|(k, m)| anyhow::anyhow!("{k}: {m}"))?;
        Some(
            admin::start(
                &addr,
                admin::Sources {
                    registry: registry.clone(),
                    budget: budget.clone(),
                    send_budget: send_budget.clone(),
                    ready: ready.clone(),
                    governance: governance.clone(),
                },
                shutdown.clone(),
            )
            .await?,
        )
    } else {
        None
    };

    // Extensions listed in `service.extensions`, before the receivers (as in the collector);
    // defined but not listed is not started.
    let mut extension_tasks = Vec::new();
    for id in &v.config.service.extensions {
        match &v.extensions[id] {
            ExtensionCfg::HealthCheck(cfg) => {
                extension_tasks.push(health_check::start(id, cfg, ready.clone(), shutdown.clone()).await?);
            }
        }
    }

    // Receivers.
    let mut receiver_tasks = Vec::new();
    let recv_shutdown = CancellationToken::new();
    let mut ids: Vec<&String> = v.receivers.keys().collect();
    ids.sort();
    for rid in ids {
        let mut consumers = sightline_core::ingest::Consumers::default();
        for (pid, p) in &v.config.service.pipelines {
            if p.receivers.contains(rid) {
                let pl = pipelines[pid].clone();
                match pl.signal {
                    Signal::Traces => consumers.traces.push(pl),
                    Signal::Metrics => consumers.metrics.push(pl),
                    Signal::Logs => consumers.logs.push(pl),
                }
            }
        }
        if consumers.traces.is_empty() && consumers.metrics.is_empty() && consumers.logs.is_empty() {
            tracing::warn!(receiver = %rid, "receiver is not used by any pipeline; not started");
            continue;
        }
        match &v.receivers[rid] {
            ReceiverCfg::Otlp(cfg) => {
                let running =
                    sightline_otlp::start(rid, cfg, consumers, budget.clone(), &registry, recv_shutdown.clone())
                        .await
                        .with_context(|| format!("receivers.{rid}"))?;
                for (t, a) in &running.addrs {
                    tracing::info!(receiver = %rid, transport = t, address = %a, "receiver listening");
                }
                receiver_tasks.extend(running.tasks);
            }
            ReceiverCfg::Kafka(cfg) => {
                let tasks = sightline_kafka::receiver::start(
                    rid,
                    cfg,
                    consumers,
                    budget.clone(),
                    &registry,
                    recv_shutdown.clone(),
                )
                .map_err(|e| anyhow::anyhow!("receivers.{rid}: {e}"))?;
                tracing::info!(receiver = %rid, consumers = tasks.len(), "kafka receiver started");
                receiver_tasks.extend(tasks);
            }
        }
    }
    drop(pipelines);
    ready.store(true, Ordering::Relaxed);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), budget_mib = limit_mib, "sightline is ready");

    wait_for_signal().await;
    tracing::info!("shutting down: no longer accepting data");
    ready.store(false, Ordering::Relaxed);
    recv_shutdown.cancel();
    for t in receiver_tasks {
        let _ = t.await;
    }
    drop(watchers);
    drop(k8s_watches);
    // Close every exporter queue: what is queued is sent now (batch timers are not waited
    // for); anything enqueued after this is refused and counted.
    for (_, _, d) in &drivers {
        d.close.notify_one();
    }
    let deadline = tokio::time::Instant::now() + v.config.service.shutdown_timeout;
    let mut lost = 0i64;
    for (id, signal, d) in drivers {
        let pending = d.pending_items.clone();
        let abort = d.abort;
        let mut task = d.task;
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            // Out of time: pending retries give up (and are counted as send failures).
            let _ = abort.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut task).await;
            task.abort();
            let n = pending.get();
            if n > 0 {
                lost += n;
                tracing::error!(exporter = %id, %signal, items = n, "shutdown deadline passed: data not delivered");
                registry
                    .counter(
                        &format!("sightline_exporter_shutdown_dropped_{}_total", signal.item_name()),
                        "Items still queued or in flight when the shutdown deadline passed.",
                        &[("exporter", &id)],
                    )
                    .add(n as u64);
            }
        }
    }
    shutdown.cancel();
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    for t in extension_tasks {
        let _ = t.await;
    }
    if lost > 0 {
        tracing::warn!(items = lost, "stopped with undelivered data");
    } else {
        tracing::info!("stopped; every queue was flushed");
    }
    Ok(())
}

fn pipeline_signal(pid: &str) -> anyhow::Result<Signal> {
    let id = ComponentId::parse(pid).map_err(anyhow::Error::msg)?;
    Signal::parse(&id.kind).with_context(|| format!("pipeline {pid}: unknown signal"))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGTERM handler");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
