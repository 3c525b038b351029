//! Self-telemetry: a small registry of counters and gauges rendered as Prometheus text.
//!
//! Handles are created when a component is built and are plain atomics afterwards, so counting
//! on the hot path is one relaxed atomic add: no map lookup, no lock. The registry's lock is
//! only taken to create a series and to render `/metrics`.
//!
//! Naming rules (checked by [`check_metric_name`], which every component's tests call through
//! [`Registry::assert_compliant`]):
//! - collector-compatible metrics are exactly what the OpenTelemetry Collector (v0.165) serves
//!   on its Prometheus endpoint, so existing collector dashboards work unchanged:
//!   `otelcol_receiver_accepted_spans`, `otelcol_exporter_sent_log_records`, ... — its counters
//!   carry no `_total` suffix (checked against the real collector);
//! - Sightline's own metrics start with `sightline_`, and their counters end in `_total` (the
//!   Prometheus convention);
//! - lower snake case, no double underscore;
//! - a unit, when there is one, is a base unit suffix before `_total`: `_bytes`, `_seconds`;
//! - label values are bounded: component ids, signal names, catalog team names, reasons from a
//!   fixed list. Never a client-chosen string.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// A counter that is not registered anywhere (for tests and optional wiring).
    pub fn detached() -> Self {
        Counter::default()
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn detached() -> Self {
        Gauge::default()
    }
    #[inline]
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    #[inline]
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

#[derive(Debug)]
enum Cell {
    Counter(Counter),
    Gauge(Gauge),
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: Kind,
    series: Vec<(Vec<(String, String)>, Cell)>,
}

/// A label value escaped for the Prometheus text format (backslash, double quote, newline).
pub fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The process's metrics.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    families: Arc<Mutex<Vec<Family>>>,
}

/// Why a metric name breaks the rules above.
pub fn check_metric_name(name: &str, kind: Kind) -> Result<(), String> {
    if !(name.starts_with("otelcol_") || name.starts_with("sightline_")) {
        return Err(format!("{name}: must start with otelcol_ or sightline_"));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(format!("{name}: must be lower snake case"));
    }
    if name.contains("__") || name.ends_with('_') {
        return Err(format!("{name}: no empty name segments"));
    }
    let collector = name.starts_with("otelcol_");
    match kind {
        Kind::Counter if collector && name.ends_with("_total") => {
            Err(format!("{name}: the collector's counters have no _total suffix"))
        }
        Kind::Counter if !collector && !name.ends_with("_total") => {
            Err(format!("{name}: a sightline_ counter must end in _total"))
        }
        Kind::Gauge if name.ends_with("_total") => Err(format!("{name}: only counters end in _total")),
        _ => Ok(()),
    }
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    fn cell(&self, name: &str, help: &str, kind: Kind, labels: &[(&str, &str)]) -> Cell {
        debug_assert!(check_metric_name(name, kind).is_ok(), "{:?}", check_metric_name(name, kind));
        let mut fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let idx = match fams.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                fams.push(Family { name: name.to_string(), help: help.to_string(), kind, series: Vec::new() });
                fams.len() - 1
            }
        };
        let fam = &mut fams[idx];
        let labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if let Some((_, c)) = fam.series.iter().find(|(l, _)| *l == labels) {
            return match c {
                Cell::Counter(c) => Cell::Counter(c.clone()),
                Cell::Gauge(g) => Cell::Gauge(g.clone()),
            };
        }
        let c = match kind {
            Kind::Counter => Cell::Counter(Counter::default()),
            Kind::Gauge => Cell::Gauge(Gauge::default()),
        };
        let ret = match &c {
            Cell::Counter(c) => Cell::Counter(c.clone()),
            Cell::Gauge(g) => Cell::Gauge(g.clone()),
        };
        fam.series.push((labels, c));
        ret
    }

    /// The counter `name{labels}`, created on first use; the same labels give the same counter.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.cell(name, help, Kind::Counter, labels) {
            Cell::Counter(c) => c,
            Cell::Gauge(_) => Counter::detached(),
        }
    }

    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.cell(name, help, Kind::Gauge, labels) {
            Cell::Gauge(g) => g,
            Cell::Counter(_) => Gauge::detached(),
        }
    }

    /// Removes the series `name{labels}` (the labels exactly), e.g. a gauge of a bounded set
    /// whose members change.
    pub fn remove(&self, name: &str, labels: &[(&str, &str)]) {
        let mut fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = fams.iter_mut().find(|f| f.name == name) {
            f.series.retain(|(l, _)| {
                !(l.len() == labels.len() && l.iter().zip(labels).all(|((lk, lv), (k, v))| lk == k && lv == v))
            });
        }
    }

    /// The value of one series, for tests and the status page.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<i64> {
        let fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let fam = fams.iter().find(|f| f.name == name)?;
        let (_, c) = fam.series.iter().find(|(l, _)| {
            l.len() == labels.len() && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })?;
        Some(match c {
            Cell::Counter(c) => c.get() as i64,
            Cell::Gauge(g) => g.get(),
        })
    }

    /// Every series of a family: (labels, value).
    pub fn series(&self, name: &str) -> Vec<(Vec<(String, String)>, i64)> {
        let fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        fams.iter()
            .filter(|f| f.name == name)
            .flat_map(|f| f.series.iter())
            .map(|(l, c)| {
                let v = match c {
                    Cell::Counter(c) => c.get() as i64,
                    Cell::Gauge(g) => g.get(),
                };
                (l.clone(), v)
            })
            .collect()
    }

    /// Sum of a family over all its series.
    pub fn sum(&self, name: &str) -> i64 {
        let fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        fams.iter().filter(|f| f.name == name).flat_map(|f| f.series.iter()).fold(0, |acc, (_, c)| {
            acc + match c {
                Cell::Counter(c) => c.get() as i64,
                Cell::Gauge(g) => g.get(),
            }
        })
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(4096);
        for f in fams.iter() {
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help.replace('\\', "\\\\").replace('\n', "\\n"));
            let _ = writeln!(out, "# TYPE {} {}", f.name, kind);
            for (labels, c) in &f.series {
                out.push_str(&f.name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label_value(v));
                    }
                    out.push('}');
                }
                let v = match c {
                    Cell::Counter(c) => c.get() as i64,
                    Cell::Gauge(g) => g.get(),
                };
                let _ = writeln!(out, " {v}");
            }
        }
        out
    }

    /// Panics with every metric whose name breaks the naming rules; components' tests call it
    /// after exercising the component.
    pub fn assert_compliant(&self) {
        let fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let errs: Vec<String> = fams.iter().filter_map(|f| check_metric_name(&f.name, f.kind).err()).collect();
        assert!(errs.is_empty(), "metric naming rules broken: {errs:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_dedupe() {
        let r = Registry::new();
        let a = r.counter("otelcol_receiver_accepted_spans", "Spans accepted.", &[("receiver", "otlp")]);
        let b = r.counter("otelcol_receiver_accepted_spans", "Spans accepted.", &[("receiver", "otlp")]);
        a.add(3);
        b.add(2);
        let g = r.gauge("otelcol_exporter_queue_size", "Queue size.", &[("exporter", "otlp/x\"y")]);
        g.set(7);
        let text = r.render();
        assert!(text.contains("otelcol_receiver_accepted_spans{receiver=\"otlp\"} 5\n"), "{text}");
        assert!(text.contains("# TYPE otelcol_exporter_queue_size gauge"));
        assert!(text.contains("exporter=\"otlp/x\\\"y\""));
        r.assert_compliant();
    }

    #[test]
    fn naming_rules() {
        assert!(check_metric_name("otelcol_exporter_sent_spans", Kind::Counter).is_ok());
        assert!(check_metric_name("otelcol_exporter_sent_spans_total", Kind::Counter).is_err());
        assert!(check_metric_name("sightline_catalog_reloads_total", Kind::Counter).is_ok());
        assert!(check_metric_name("sightline_catalog_reloads", Kind::Counter).is_err());
        assert!(check_metric_name("sightline_queue_total", Kind::Gauge).is_err());
        assert!(check_metric_name("vector_events", Kind::Gauge).is_err());
        assert!(check_metric_name("sightline_Bad", Kind::Gauge).is_err());
    }
}
