//! OTLP metrics (protobuf, walked on the wire) to Prometheus series, and the series to
//! remote-write `WriteRequest`s (1.0) or `io.prometheus.write.v2.Request`s (2.0, which adds
//! each series' metadata and writes its labels as refs into a per-request symbol table).
//!
//! One [`Translator`] is reused for every batch: its buffers (label scratch, series keys, the
//! series index, samples, native histograms) are cleared, not freed, so that a warm translator
//! does not allocate per data point. A series is identified by its encoded `Label` fields
//! (sorted by name): the bytes are the key of the series index and are copied as they are into
//! every `TimeSeries` that carries the series. A key is encoded straight onto the end of the
//! key store and taken back when the series already exists (most series of a batch are new).
//! The `le` texts of a histogram's bounds are formatted once and reused while the following
//! points have the same bounds (they almost always do).
//!
//! Label precedence, lowest first (a higher level replaces a label of the same name):
//! `external_labels` < resource attributes copied by `resource_to_telemetry_conversion` <
//! data point attributes < `promote_resource_attributes` (so that a data point cannot forge
//! `owner_team`) < `job`/`instance` < `otel_scope_name`/`otel_scope_version` < `le`/`quantile`
//! < `__name__`. Within one level, attributes whose sanitized names collide are joined with `;`
//! in the order of their original keys.

use crate::naming::{self, NameKind, NameScratch};
use sightline_core::wire::{
    self, AnyValue, Fields, Value, WireError, WireErrorKind, WireType, put_tag, put_varint, varint_len,
};
use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};

/// Prometheus' staleness marker: a NaN with this bit pattern ends a series.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
const FLAG_NO_RECORDED_VALUE: u64 = 1;
/// Zero bucket width used when an exponential histogram does not set one (as the collector).
const DEFAULT_ZERO_THRESHOLD: f64 = 1e-128;

/// Why data points were not translated: the `reason` label of
/// `sightline_exporter_dropped_points_total` (a fixed list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A sum, histogram or exponential histogram with delta temporality.
    DeltaTemporality,
    /// A sum, histogram or exponential histogram without a temporality.
    UnspecifiedTemporality,
    /// An exponential histogram while `send_native_histograms` is false.
    NativeHistogramsDisabled,
    /// An exponential histogram with a scale below -4 (no native histogram schema).
    UnsupportedScale,
    /// The metric's name translates to nothing (empty or only invalid characters).
    InvalidName,
    /// The metric or data point could not be read (malformed protobuf).
    Malformed,
    /// Not newer than the previous sample of the same series in the batch: Prometheus would
    /// refuse it, and the whole request with it.
    OutOfOrder,
    /// Remote Write 2.0 only: the backend answered 2xx but its
    /// `X-Prometheus-Remote-Write-{Samples,Histograms}-Written` headers report fewer than were
    /// sent. Counted in samples and native histograms (not OTLP points: the backend does not
    /// say which were refused).
    RejectedByBackend,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::DeltaTemporality,
        DropReason::UnspecifiedTemporality,
        DropReason::NativeHistogramsDisabled,
        DropReason::UnsupportedScale,
        DropReason::InvalidName,
        DropReason::Malformed,
        DropReason::OutOfOrder,
        DropReason::RejectedByBackend,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::DeltaTemporality => "delta_temporality",
            DropReason::UnspecifiedTemporality => "unspecified_temporality",
            DropReason::NativeHistogramsDisabled => "native_histograms_disabled",
            DropReason::UnsupportedScale => "unsupported_scale",
            DropReason::InvalidName => "invalid_name",
            DropReason::Malformed => "malformed",
            DropReason::OutOfOrder => "out_of_order",
            DropReason::RejectedByBackend => "rejected_by_backend",
        }
    }
}

/// The remote-write message: the config's `protobuf_message` (the collector's option name and
/// values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProtobufMessage {
    /// Remote Write 1.0: `prometheus.WriteRequest`.
    #[default]
    V1,
    /// Remote Write 2.0: `io.prometheus.write.v2.Request` (symbol table, metadata per series).
    V2,
}

impl ProtobufMessage {
    /// The accepted config values, in [`ProtobufMessage::parse`] order.
    pub const NAMES: [&'static str; 2] = ["prometheus.WriteRequest", "io.prometheus.write.v2.Request"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "prometheus.WriteRequest" => Some(ProtobufMessage::V1),
            "io.prometheus.write.v2.Request" => Some(ProtobufMessage::V2),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProtobufMessage::V1 => Self::NAMES[0],
            ProtobufMessage::V2 => Self::NAMES[1],
        }
    }
}

/// `Metadata.MetricType` of Remote Write 2.0.
pub mod metric_type {
    pub const UNSPECIFIED: u8 = 0;
    pub const COUNTER: u8 = 1;
    pub const GAUGE: u8 = 2;
    pub const HISTOGRAM: u8 = 3;
    pub const SUMMARY: u8 = 5;
}

/// `help` of the `target_info` series (Prometheus' OTLP endpoint sets the same).
const TARGET_INFO_HELP: &str = "Target metadata";

/// What the translation does, from the exporter's config.
#[derive(Clone, Debug)]
pub struct Options {
    /// Which message [`Translator`] is used for; with 2.0 it also keeps each metric's type,
    /// unit and description for the series' metadata.
    pub protobuf_message: ProtobufMessage,
    pub namespace: String,
    pub add_metric_suffixes: bool,
    pub send_native_histograms: bool,
    pub resource_to_telemetry: bool,
    pub target_info: bool,
    /// Resource attribute keys (as sent) that become labels of every series.
    pub promote: Vec<String>,
    /// Sanitized names and values.
    pub external_labels: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            protobuf_message: ProtobufMessage::V1,
            namespace: String::new(),
            add_metric_suffixes: true,
            send_native_histograms: false,
            resource_to_telemetry: false,
            target_info: true,
            promote: vec!["owner.team".into(), "owner.system".into(), "owner.source".into()],
            external_labels: Vec::new(),
        }
    }
}

/// Label precedence levels (see the module docs).
const P_EXTERNAL: u8 = 0;
const P_RESOURCE: u8 = 1;
const P_POINT: u8 = 2;
const P_PROMOTED: u8 = 3;
const P_JOB: u8 = 4;
const P_SCOPE: u8 = 5;

/// One candidate label: byte ranges into the translator's label buffer.
#[derive(Clone, Copy, Debug)]
struct Cand {
    name: (u32, u32),
    value: (u32, u32),
    /// The original key, to order colliding names.
    orig: (u32, u32),
    prio: u8,
}

/// A label after precedence and collisions: ranges into the label buffer.
#[derive(Clone, Copy, Debug)]
struct Lbl {
    name: (u32, u32),
    value: (u32, u32),
}

#[derive(Clone, Copy, Debug)]
struct Series {
    key_start: u32,
    key_len: u32,
    hash: u64,
    /// The latest timestamp of the series in this batch.
    last_ts: i64,
    /// Its metric's entry in `metas` ([`NO_META`] with Remote Write 1.0).
    meta: u32,
}

const NO_META: u32 = u32::MAX;

/// A metric's metadata for Remote Write 2.0: ranges into `meta_text`.
#[derive(Clone, Copy, Debug)]
struct Meta {
    typ: u8,
    unit: (u32, u32),
    help: (u32, u32),
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    series: u32,
    ts: i64,
    value: f64,
}

#[derive(Clone, Copy, Debug)]
struct Hist {
    series: u32,
    start: u32,
    len: u32,
}

/// The keys of the series index are already hashes.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Reused state of the translation of one batch and its encoding.
pub struct Translator {
    opts: Options,
    /// Label text: resource level, then scope level, then the current data point.
    buf: String,
    base: Vec<Cand>,
    work: Vec<Cand>,
    labels: Vec<Lbl>,
    /// Encoded labels before / after `le` of the current histogram's bucket series.
    kpre: Vec<u8>,
    ksuf: Vec<u8>,
    name: String,
    name_scratch: NameScratch,
    /// `quantile` values.
    le: String,
    /// The bounds (bits) whose `le` texts are in `le_text`, each ending at `le_ends[i]`.
    le_bits: Vec<u64>,
    le_text: String,
    le_ends: Vec<u32>,
    series: Vec<Series>,
    keys: Vec<u8>,
    index: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    samples: Vec<Sample>,
    hists: Vec<Hist>,
    hist_buf: Vec<u8>,
    // Data point scratch.
    u64s: Vec<u64>,
    f64s: Vec<f64>,
    neg: Vec<u64>,
    // Encoding scratch.
    offs: Vec<u32>,
    order: Vec<u32>,
    hoffs: Vec<u32>,
    horder: Vec<u32>,
    shard_series: Vec<Vec<u32>>,
    req: Vec<u8>,
    // Remote Write 2.0 state: metadata of this batch's metrics, the series being created
    // takes `cur_meta`; the symbol table and encoding scratch of one request.
    metas: Vec<Meta>,
    meta_text: String,
    cur_meta: u32,
    target_meta: u32,
    symbols: Symbols,
    refs: Vec<u32>,
    ts_buf: Vec<u8>,
    drops: [u64; DropReason::ALL.len()],
    points: u64,
}

/// Resource-level facts gathered before its metrics are walked.
struct ResourceCtx<'a> {
    resource: Option<&'a [u8]>,
    max_ts: i64,
    any: bool,
}

impl Translator {
    pub fn new(opts: Options) -> Self {
        Translator {
            opts,
            buf: String::new(),
            base: Vec::new(),
            work: Vec::new(),
            labels: Vec::new(),
            kpre: Vec::new(),
            ksuf: Vec::new(),
            name: String::new(),
            name_scratch: NameScratch::default(),
            le: String::new(),
            le_bits: Vec::new(),
            le_text: String::new(),
            le_ends: Vec::new(),
            series: Vec::new(),
            keys: Vec::new(),
            index: HashMap::default(),
            samples: Vec::new(),
            hists: Vec::new(),
            hist_buf: Vec::new(),
            u64s: Vec::new(),
            f64s: Vec::new(),
            neg: Vec::new(),
            offs: Vec::new(),
            order: Vec::new(),
            hoffs: Vec::new(),
            horder: Vec::new(),
            shard_series: Vec::new(),
            req: Vec::new(),
            metas: Vec::new(),
            meta_text: String::new(),
            cur_meta: NO_META,
            target_meta: NO_META,
            symbols: Symbols::default(),
            refs: Vec::new(),
            ts_buf: Vec::new(),
            drops: [0; DropReason::ALL.len()],
            points: 0,
        }
    }

    /// Forgets the previous batch (keeps the buffers).
    pub fn reset(&mut self) {
        self.series.clear();
        self.keys.clear();
        self.index.clear();
        self.samples.clear();
        self.hists.clear();
        self.hist_buf.clear();
        self.metas.clear();
        self.meta_text.clear();
        self.cur_meta = NO_META;
        self.target_meta = NO_META;
        self.drops = [0; DropReason::ALL.len()];
        self.points = 0;
    }

    /// Points dropped per reason since the last reset, in [`DropReason::ALL`] order.
    pub fn drops(&self) -> &[u64; DropReason::ALL.len()] {
        &self.drops
    }

    /// Distinct series since the last reset.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Samples and native histograms since the last reset.
    pub fn sample_count(&self) -> usize {
        self.samples.len() + self.hists.len()
    }

    fn drop_points(&mut self, reason: DropReason, n: u64) {
        self.drops[reason as usize] += n;
    }

    /// Translates one `ExportMetricsServiceRequest` into the current batch. A malformed
    /// request (which the receiver has already refused, so never in practice) stops at the
    /// first error; what was translated before it stays.
    pub fn add_request(&mut self, req: &[u8]) -> Result<(), WireError> {
        for f in Fields::new(req) {
            let f = f?;
            if f.number == 1 {
                self.resource_metrics(wire::expect_len(&f)?)?;
            }
        }
        Ok(())
    }

    fn resource_metrics(&mut self, rm: &[u8]) -> Result<(), WireError> {
        let mut resource = None;
        for f in Fields::new(rm) {
            let f = f?;
            if f.number == 1 {
                resource = Some(wire::expect_len(&f)?);
            }
        }
        self.resource_labels(resource)?;
        let res_buf = self.buf.len();
        let res_base = self.base.len();
        let mut ctx = ResourceCtx { resource, max_ts: i64::MIN, any: false };
        for f in Fields::new(rm) {
            let f = f?;
            if f.number == 2 {
                self.buf.truncate(res_buf);
                self.base.truncate(res_base);
                self.scope_metrics(wire::expect_len(&f)?, &mut ctx)?;
            }
        }
        if self.opts.target_info && ctx.any {
            self.target_info(&ctx)?;
        }
        Ok(())
    }

    /// Appends a candidate label whose name is sanitized from `key`.
    fn push_attr(&mut self, key: &str, value: &AnyValue<'_>, prio: u8) {
        let orig_s = self.buf.len() as u32;
        self.buf.push_str(key);
        let name_s = self.buf.len() as u32;
        if !naming::push_label_name(&mut self.buf, key) {
            self.buf.truncate(orig_s as usize);
            return;
        }
        let val_s = self.buf.len() as u32;
        sightline_core::text::push_as_string(&mut self.buf, value);
        let end = self.buf.len() as u32;
        self.work_or_base(prio).push(Cand { name: (name_s, val_s), value: (val_s, end), orig: (orig_s, name_s), prio });
    }

    /// Appends a candidate label whose name is already valid.
    fn push_raw(&mut self, name: &str, value: &str, prio: u8) {
        let name_s = self.buf.len() as u32;
        self.buf.push_str(name);
        let val_s = self.buf.len() as u32;
        self.buf.push_str(value);
        let end = self.buf.len() as u32;
        self.work_or_base(prio).push(Cand { name: (name_s, val_s), value: (val_s, end), orig: (name_s, val_s), prio });
    }

    fn work_or_base(&mut self, prio: u8) -> &mut Vec<Cand> {
        if prio == P_POINT { &mut self.work } else { &mut self.base }
    }

    /// The resource-level labels: external labels, copied resource attributes, promoted
    /// attributes, `job` and `instance`.
    fn resource_labels(&mut self, resource: Option<&[u8]>) -> Result<(), WireError> {
        self.buf.clear();
        self.base.clear();
        self.push_external();
        let Some(res) = resource else { return Ok(()) };
        let (mut name, mut ns, mut inst) = (None, None, None);
        for a in wire::attributes(res, 1) {
            let a = a?;
            match a.key {
                "service.name" => name = Some(a.value),
                "service.namespace" => ns = Some(a.value),
                "service.instance.id" => inst = Some(a.value),
                _ => {}
            }
            if self.opts.resource_to_telemetry {
                self.push_attr(a.key, &a.value, P_RESOURCE);
            }
            if self.opts.promote.iter().any(|p| p == a.key) {
                self.push_attr(a.key, &a.value, P_PROMOTED);
            }
        }
        self.push_job_instance(name, ns, inst);
        Ok(())
    }

    /// `job` = `service.namespace/service.name` (or `service.name`), `instance` =
    /// `service.instance.id`, into `base`.
    fn push_job_instance(&mut self, name: Option<AnyValue<'_>>, ns: Option<AnyValue<'_>>, inst: Option<AnyValue<'_>>) {
        if let Some(n) = name {
            let s = self.buf.len() as u32;
            self.buf.push_str("job");
            let v = self.buf.len() as u32;
            if let Some(ns) = ns {
                sightline_core::text::push_as_string(&mut self.buf, &ns);
                if self.buf.len() as u32 > v {
                    self.buf.push('/');
                }
            }
            sightline_core::text::push_as_string(&mut self.buf, &n);
            let e = self.buf.len() as u32;
            self.base.push(Cand { name: (s, v), value: (v, e), orig: (s, v), prio: P_JOB });
        }
        if let Some(i) = inst {
            let s = self.buf.len() as u32;
            self.buf.push_str("instance");
            let v = self.buf.len() as u32;
            sightline_core::text::push_as_string(&mut self.buf, &i);
            let e = self.buf.len() as u32;
            self.base.push(Cand { name: (s, v), value: (v, e), orig: (s, v), prio: P_JOB });
        }
    }

    fn scope_metrics(&mut self, sm: &[u8], ctx: &mut ResourceCtx<'_>) -> Result<(), WireError> {
        for f in Fields::new(sm) {
            let f = f?;
            if f.number == 1 {
                for g in Fields::new(wire::expect_len(&f)?) {
                    let g = g?;
                    match (g.number, g.value) {
                        (1, Value::Len(b)) if !b.is_empty() => {
                            self.push_raw("otel_scope_name", utf8(b)?, P_SCOPE);
                        }
                        (2, Value::Len(b)) if !b.is_empty() => {
                            self.push_raw("otel_scope_version", utf8(b)?, P_SCOPE);
                        }
                        _ => {}
                    }
                }
            }
        }
        let scope_buf = self.buf.len();
        for f in Fields::new(sm) {
            let f = f?;
            if f.number == 2 {
                self.buf.truncate(scope_buf);
                let m = wire::expect_len(&f)?;
                if self.metric(m, ctx).is_err() {
                    let n = count_points(m);
                    self.drop_points(DropReason::Malformed, n);
                }
            }
        }
        Ok(())
    }

    fn metric(&mut self, m: &[u8], ctx: &mut ResourceCtx<'_>) -> Result<(), WireError> {
        let (mut name, mut unit, mut help) = ("", "", "");
        let mut data = None;
        for f in Fields::new(m) {
            let f = f?;
            match (f.number, f.value) {
                (1, Value::Len(b)) => name = utf8(b)?,
                (2, Value::Len(b)) => help = utf8(b)?,
                (3, Value::Len(b)) => unit = utf8(b)?,
                (5 | 7 | 9 | 10 | 11, Value::Len(b)) => data = Some((f.number, b)),
                _ => {}
            }
        }
        let Some((kind, data)) = data else { return Ok(()) };
        // Temporality and monotonicity.
        let (mut temporality, mut monotonic) = (0u64, false);
        for f in Fields::new(data) {
            let f = f?;
            match (f.number, f.value) {
                (2, Value::Varint(t)) if kind != 5 && kind != 11 => temporality = t,
                (3, Value::Varint(b)) if kind == 7 => monotonic = b != 0,
                _ => {}
            }
        }
        let points = || Fields::new(data).filter(|f| matches!(f, Ok(f) if f.number == 1)).count() as u64;
        if kind == 7 || kind == 9 || kind == 10 {
            match temporality {
                2 => {}
                1 => {
                    let n = points();
                    self.drop_points(DropReason::DeltaTemporality, n);
                    return Ok(());
                }
                _ => {
                    let n = points();
                    self.drop_points(DropReason::UnspecifiedTemporality, n);
                    return Ok(());
                }
            }
        }
        if kind == 10 && !self.opts.send_native_histograms {
            let n = points();
            self.drop_points(DropReason::NativeHistogramsDisabled, n);
            return Ok(());
        }
        let name_kind = match kind {
            5 => NameKind::Gauge,
            7 if monotonic => NameKind::Counter,
            _ => NameKind::Other,
        };
        let mut out = std::mem::take(&mut self.name);
        let ok = naming::metric_name(
            &mut out,
            &mut self.name_scratch,
            name,
            unit,
            name_kind,
            &self.opts.namespace,
            self.opts.add_metric_suffixes,
        );
        let res = if ok {
            if self.opts.protobuf_message == ProtobufMessage::V2 {
                // The type Prometheus' own OTLP endpoint gives (classic histogram component
                // series included): every series of the metric shares it.
                let typ = match kind {
                    5 => metric_type::GAUGE,
                    7 if monotonic => metric_type::COUNTER,
                    7 => metric_type::GAUGE,
                    9 | 10 => metric_type::HISTOGRAM,
                    11 => metric_type::SUMMARY,
                    _ => metric_type::UNSPECIFIED,
                };
                self.cur_meta = self.push_meta(typ, unit, help, true);
            }
            self.points_of(kind, data, &out, ctx)
        } else {
            let n = points();
            self.drop_points(DropReason::InvalidName, n);
            Ok(())
        };
        self.name = out;
        res
    }

    fn points_of(&mut self, kind: u32, data: &[u8], name: &str, ctx: &mut ResourceCtx<'_>) -> Result<(), WireError> {
        let scope_buf = self.buf.len();
        for f in Fields::new(data) {
            let f = f?;
            if f.number != 1 {
                continue;
            }
            let dp = wire::expect_len(&f)?;
            self.buf.truncate(scope_buf);
            let r = match kind {
                5 | 7 => self.number_point(dp, name, ctx),
                9 => self.histogram_point(dp, name, ctx),
                10 => self.exp_histogram_point(dp, name, ctx),
                _ => self.summary_point(dp, name, ctx),
            };
            if r.is_err() {
                self.drop_points(DropReason::Malformed, 1);
            }
        }
        Ok(())
    }

    /// Collects the point's attributes (field `field`) and resolves precedence into
    /// `self.labels`.
    fn point_labels(&mut self, dp: &[u8], field: u32) -> Result<(), WireError> {
        self.work.clear();
        for a in wire::attributes(dp, field) {
            let a = a?;
            self.push_attr(a.key, &a.value, P_POINT);
        }
        self.resolve_labels();
        Ok(())
    }

    /// `work` (the point level) plus `base` (every other level) to `labels`: sorted by name,
    /// the highest precedence kept, same-level collisions joined with `;`.
    fn resolve_labels(&mut self) {
        self.work.extend_from_slice(&self.base);
        let Translator { buf, work, labels, .. } = self;
        work.sort_unstable_by(|a, c| {
            let (b, r) = (buf.as_str(), sl);
            r(b, a.name).cmp(r(b, c.name)).then(c.prio.cmp(&a.prio)).then(r(b, a.orig).cmp(r(b, c.orig)))
        });
        labels.clear();
        let mut i = 0;
        while i < work.len() {
            let first = work[i];
            let mut j = i + 1;
            while j < work.len() && sl(buf, work[j].name) == sl(buf, first.name) {
                j += 1;
            }
            // work[i] has the highest precedence; same-level collisions are joined.
            let same = (i + 1..j).take_while(|&k| work[k].prio == first.prio).count();
            if same == 0 {
                labels.push(Lbl { name: first.name, value: first.value });
            } else {
                // Rare (sanitized names that collide): the copy may allocate.
                let s = buf.len() as u32;
                for (n, c) in work[i..=i + same].iter().enumerate() {
                    if n > 0 {
                        buf.push(';');
                    }
                    let text = sl(buf, c.value).to_owned();
                    buf.push_str(&text);
                }
                labels.push(Lbl { name: first.name, value: (s, buf.len() as u32) });
            }
            i = j;
        }
    }

    /// The series `name+suffix{labels, extra}`; created on first use.
    fn series_for(&mut self, name: &str, suffix: &str, extra: Option<(&str, &str)>) -> u32 {
        // The key is encoded onto the end of the key store; taken back if the series exists.
        let start = self.keys.len();
        self.encode_key(name, suffix, extra);
        self.intern(start)
    }

    /// Prepares [`Translator::bucket_series`] for the series `name+suffix{labels, le}`: their
    /// keys differ only in the value of `le`, so the encoded labels before and after it are
    /// kept (in `kpre` / `ksuf`) and each bucket's key is three copies instead of an encoding.
    fn prepare_buckets(&mut self, name: &str, suffix: &str) {
        let start = self.keys.len();
        let (a, b) = self.encode_key(name, suffix, Some(("le", "")));
        self.kpre.clear();
        self.kpre.extend_from_slice(&self.keys[start..a]);
        self.ksuf.clear();
        self.ksuf.extend_from_slice(&self.keys[b..]);
        self.keys.truncate(start);
    }

    /// The bucket series with this `le` (after [`Translator::prepare_buckets`]).
    fn bucket_series(&mut self, le: &str) -> u32 {
        let start = self.keys.len();
        self.keys.extend_from_slice(&self.kpre);
        put_label(&mut self.keys, "le", le, "");
        self.keys.extend_from_slice(&self.ksuf);
        self.intern(start)
    }

    /// Appends the encoded labels of `name+suffix{labels, extra}` to `keys`; returns where the
    /// `extra` label's field starts and ends (`(end, end)` without one).
    fn encode_key(&mut self, name: &str, suffix: &str, extra: Option<(&str, &str)>) -> (usize, usize) {
        let Translator { buf, labels, keys, .. } = self;
        let key = keys;
        let mut extra_at = None;
        let b = buf.as_str();
        let s = |x: (u32, u32)| &b[x.0 as usize..x.1 as usize];
        // The specials, in name order: "__name__" < "le" / "quantile".
        let mut specials: [(&str, &str, &str); 2] = [("__name__", name, suffix), ("", "", "")];
        let mut n_special = 1;
        if let Some((en, ev)) = extra {
            specials[1] = (en, ev, "");
            n_special = 2;
            if en < "__name__" {
                specials.swap(0, 1);
            }
        }
        let extra_name = extra.map(|e| e.0);
        let mut put_special = |key: &mut Vec<u8>, (sn, v1, v2): (&str, &str, &str)| {
            let at = key.len();
            put_label(key, sn, v1, v2);
            if Some(sn) == extra_name {
                extra_at = Some((at, key.len()));
            }
        };
        let mut next = 0;
        for l in labels.iter() {
            let ln = s(l.name);
            while next < n_special && specials[next].0 <= ln {
                put_special(key, specials[next]);
                next += 1;
            }
            if specials[..n_special].iter().any(|sp| sp.0 == ln) || l.value.0 == l.value.1 {
                continue;
            }
            put_label(key, ln, s(l.value), "");
        }
        while next < n_special {
            put_special(key, specials[next]);
            next += 1;
        }
        extra_at.unwrap_or((key.len(), key.len()))
    }

    /// The series whose key was just encoded at `keys[start..]`: an existing one (and the key
    /// is taken back) or a new one.
    fn intern(&mut self, start: usize) -> u32 {
        let hash = xxhash_rust::xxh3::xxh3_64(&self.keys[start..]);
        let mut probe = hash;
        loop {
            match self.index.entry(probe) {
                MapEntry::Occupied(e) => {
                    let idx = *e.get();
                    let sr = self.series[idx as usize];
                    if self.keys[sr.key_start as usize..(sr.key_start + sr.key_len) as usize] == self.keys[start..] {
                        self.keys.truncate(start);
                        return idx;
                    }
                    probe = probe.wrapping_add(0x9e37_79b9_7f4a_7c15);
                }
                MapEntry::Vacant(v) => {
                    let idx = self.series.len() as u32;
                    let key_len = (self.keys.len() - start) as u32;
                    let meta = self.cur_meta;
                    self.series.push(Series { key_start: start as u32, key_len, hash, last_ts: i64::MIN, meta });
                    v.insert(idx);
                    return idx;
                }
            }
        }
    }

    /// Adds a sample unless it is not newer than the series' previous one in this batch.
    fn sample(&mut self, series: u32, ts: i64, value: f64) -> bool {
        if !self.advance(series, ts) {
            return false;
        }
        self.samples.push(Sample { series, ts, value });
        true
    }

    fn advance(&mut self, series: u32, ts: i64) -> bool {
        let s = &mut self.series[series as usize];
        if ts <= s.last_ts {
            return false;
        }
        s.last_ts = ts;
        true
    }

    /// Counts a point whose samples were refused by [`Translator::sample`].
    fn count_order(&mut self, ok: bool) {
        if !ok {
            self.drop_points(DropReason::OutOfOrder, 1);
        }
    }

    fn number_point(&mut self, dp: &[u8], name: &str, ctx: &mut ResourceCtx<'_>) -> Result<(), WireError> {
        let (mut t, mut v, mut flags) = (0u64, 0f64, 0u64);
        for f in Fields::new(dp) {
            let f = f?;
            match (f.number, f.value) {
                (3, Value::I64(x)) => t = x,
                (4, Value::I64(x)) => v = f64::from_bits(x),
                (6, Value::I64(x)) => v = x as i64 as f64,
                (8, Value::Varint(x)) => flags = x,
                _ => {}
            }
        }
        self.point_labels(dp, 7)?;
        let ts = ms(t);
        ctx.seen(ts);
        if flags & FLAG_NO_RECORDED_VALUE != 0 {
            v = f64::from_bits(STALE_NAN);
        }
        let s = self.series_for(name, "", None);
        let ok = self.sample(s, ts, v);
        self.count_order(ok);
        self.points += 1;
        Ok(())
    }

    fn histogram_point(&mut self, dp: &[u8], name: &str, ctx: &mut ResourceCtx<'_>) -> Result<(), WireError> {
        let (mut t, mut count, mut sum, mut flags) = (0u64, 0u64, None, 0u64);
        self.u64s.clear();
        self.f64s.clear();
        for f in Fields::new(dp) {
            let f = f?;
            match (f.number, f.value) {
                (3, Value::I64(x)) => t = x,
                (4, Value::I64(x)) => count = x,
                (5, Value::I64(x)) => sum = Some(f64::from_bits(x)),
                (6, Value::I64(x)) => self.u64s.push(x),
                (6, Value::Len(b)) => read_fixed64s(b, &mut self.u64s, |x| x)?,
                (7, Value::I64(x)) => self.f64s.push(f64::from_bits(x)),
                (7, Value::Len(b)) => read_fixed64s(b, &mut self.f64s, f64::from_bits)?,
                (10, Value::Varint(x)) => flags = x,
                _ => {}
            }
        }
        self.point_labels(dp, 9)?;
        let ts = ms(t);
        ctx.seen(ts);
        let stale = flags & FLAG_NO_RECORDED_VALUE != 0;
        let val = |v: f64| if stale { f64::from_bits(STALE_NAN) } else { v };
        let mut ok = self.sum_and_count(name, ts, stale, sum, count);
        let mut cumulative = 0u64;
        self.format_bounds();
        self.prepare_buckets(name, "_bucket");
        let (le_text, le_ends) = (std::mem::take(&mut self.le_text), std::mem::take(&mut self.le_ends));
        let mut from = 0usize;
        for (i, &end) in le_ends.iter().enumerate() {
            cumulative = cumulative.saturating_add(self.u64s.get(i).copied().unwrap_or(0));
            let le = &le_text[from..end as usize];
            from = end as usize;
            let s = self.bucket_series(le);
            ok &= self.sample(s, ts, val(cumulative as f64));
        }
        (self.le_text, self.le_ends) = (le_text, le_ends);
        let s = self.bucket_series("+Inf");
        ok &= self.sample(s, ts, val(count as f64));
        self.count_order(ok);
        self.points += 1;
        Ok(())
    }

    /// The `_sum` (when the point has one, or it is stale) and `_count` samples of a histogram
    /// or summary point. These suffixes belong to the Prometheus data model, not to the
    /// unit/type suffixes: they are added with or without `add_metric_suffixes`. Returns
    /// whether both samples were in order.
    fn sum_and_count(&mut self, name: &str, ts: i64, stale: bool, sum: Option<f64>, count: u64) -> bool {
        let val = |v: f64| if stale { f64::from_bits(STALE_NAN) } else { v };
        let mut ok = true;
        if let Some(sum) = sum.or(if stale { Some(0.0) } else { None }) {
            let s = self.series_for(name, "_sum", None);
            ok &= self.sample(s, ts, val(sum));
        }
        let s = self.series_for(name, "_count", None);
        ok & self.sample(s, ts, val(count as f64))
    }

    /// Formats the `le` texts of the point's bounds (`f64s`) unless the previous point had
    /// the same bounds.
    fn format_bounds(&mut self) {
        let same = self.le_bits.len() == self.f64s.len()
            && self.le_bits.iter().zip(&self.f64s).all(|(&b, &f)| b == f.to_bits());
        if same {
            return;
        }
        self.le_bits.clear();
        self.le_text.clear();
        self.le_ends.clear();
        for &f in &self.f64s {
            self.le_bits.push(f.to_bits());
            push_float(&mut self.le_text, f);
            self.le_ends.push(self.le_text.len() as u32);
        }
    }

    fn summary_point(&mut self, dp: &[u8], name: &str, ctx: &mut ResourceCtx<'_>) -> Result<(), WireError> {
        let (mut t, mut count, mut sum, mut flags) = (0u64, 0u64, 0f64, 0u64);
        self.f64s.clear();
        for f in Fields::new(dp) {
            let f = f?;
            match (f.number, f.value) {
                (3, Value::I64(x)) => t = x,
                (4, Value::I64(x)) => count = x,
                (5, Value::I64(x)) => sum = f64::from_bits(x),
                (6, Value::Len(q)) => {
                    let (mut quantile, mut value) = (0f64, 0f64);
                    for g in Fields::new(q) {
                        let g = g?;
                        match (g.number, g.value) {
                            (1, Value::I64(x)) => quantile = f64::from_bits(x),
                            (2, Value::I64(x)) => value = f64::from_bits(x),
                            _ => {}
                        }
                    }
                    self.f64s.push(quantile);
                    self.f64s.push(value);
                }
                (8, Value::Varint(x)) => flags = x,
                _ => {}
            }
        }
        self.point_labels(dp, 7)?;
        let ts = ms(t);
        ctx.seen(ts);
        let stale = flags & FLAG_NO_RECORDED_VALUE != 0;
        let val = |v: f64| if stale { f64::from_bits(STALE_NAN) } else { v };
        let mut ok = self.sum_and_count(name, ts, stale, Some(sum), count);
        let mut q = std::mem::take(&mut self.le);
        for i in (0..self.f64s.len()).step_by(2) {
            q.clear();
            push_float(&mut q, self.f64s[i]);
            let v = self.f64s[i + 1];
            let s = self.series_for(name, "", Some(("quantile", &q)));
            ok &= self.sample(s, ts, val(v));
        }
        self.le = q;
        self.count_order(ok);
        self.points += 1;
        Ok(())
    }

    fn exp_histogram_point(&mut self, dp: &[u8], name: &str, ctx: &mut ResourceCtx<'_>) -> Result<(), WireError> {
        let (mut t, mut count, mut sum, mut flags) = (0u64, 0u64, None, 0u64);
        let (mut scale, mut zero_count, mut zero_threshold) = (0i32, 0u64, 0f64);
        let (mut pos_off, mut neg_off) = (0i32, 0i32);
        self.u64s.clear();
        self.neg.clear();
        for f in Fields::new(dp) {
            let f = f?;
            match (f.number, f.value) {
                (3, Value::I64(x)) => t = x,
                (4, Value::I64(x)) => count = x,
                (5, Value::I64(x)) => sum = Some(f64::from_bits(x)),
                (6, Value::Varint(x)) => scale = zigzag32(x),
                (7, Value::I64(x)) => zero_count = x,
                (8, Value::Len(b)) => pos_off = read_buckets(b, &mut self.u64s)?,
                (9, Value::Len(b)) => neg_off = read_buckets(b, &mut self.neg)?,
                (10, Value::Varint(x)) => flags = x,
                (14, Value::I64(x)) => zero_threshold = f64::from_bits(x),
                _ => {}
            }
        }
        if scale < -4 {
            self.drop_points(DropReason::UnsupportedScale, 1);
            return Ok(());
        }
        self.point_labels(dp, 1)?;
        let ts = ms(t);
        ctx.seen(ts);
        let stale = flags & FLAG_NO_RECORDED_VALUE != 0;
        let series = self.series_for(name, "", None);
        if !self.advance(series, ts) {
            self.drop_points(DropReason::OutOfOrder, 1);
            return Ok(());
        }
        // Scales above 8 are merged down to schema 8, the finest native histograms have.
        let schema = scale.min(8);
        let shift = (scale - schema) as u32;
        let start = self.hist_buf.len() as u32;
        let h = &mut self.hist_buf;
        put_tag(h, 1, WireType::Varint);
        put_varint(h, if stale { 0 } else { count });
        if stale {
            put_tag(h, 3, WireType::I64);
            h.extend_from_slice(&STALE_NAN.to_le_bytes());
        } else if let Some(s) = sum {
            put_tag(h, 3, WireType::I64);
            h.extend_from_slice(&s.to_le_bytes());
        }
        put_tag(h, 4, WireType::Varint);
        put_varint(h, zigzag_enc(i64::from(schema)));
        put_tag(h, 5, WireType::I64);
        let zt = if zero_threshold > 0.0 { zero_threshold } else { DEFAULT_ZERO_THRESHOLD };
        h.extend_from_slice(&zt.to_le_bytes());
        put_tag(h, 6, WireType::Varint);
        put_varint(h, if stale { 0 } else { zero_count });
        if !stale {
            downscale(&mut self.neg, &mut neg_off, shift);
            put_buckets(h, 8, 9, neg_off, &self.neg);
            downscale(&mut self.u64s, &mut pos_off, shift);
            put_buckets(h, 11, 12, pos_off, &self.u64s);
        }
        put_tag(h, 15, WireType::Varint);
        put_varint(h, ts as u64);
        let len = self.hist_buf.len() as u32 - start;
        self.hists.push(Hist { series, start, len });
        self.points += 1;
        Ok(())
    }

    /// Records a metric's metadata; returns its index. `unit` is the OTLP unit, translated
    /// when `translate_unit` (else taken as it is).
    fn push_meta(&mut self, typ: u8, unit: &str, help: &str, translate_unit: bool) -> u32 {
        let us = self.meta_text.len() as u32;
        if translate_unit {
            naming::metric_unit(&mut self.meta_text, unit);
        } else {
            self.meta_text.push_str(unit);
        }
        let hs = self.meta_text.len() as u32;
        self.meta_text.push_str(help);
        let he = self.meta_text.len() as u32;
        self.metas.push(Meta { typ, unit: (us, hs), help: (hs, he) });
        (self.metas.len() - 1) as u32
    }

    fn push_external(&mut self) {
        let ext = std::mem::take(&mut self.opts.external_labels);
        for (n, v) in &ext {
            self.push_raw(n, v, P_EXTERNAL);
        }
        self.opts.external_labels = ext;
    }

    /// `target_info{job, instance, <other resource attributes>} 1` at the resource's latest
    /// timestamp, when the resource has attributes besides the three identifying ones.
    fn target_info(&mut self, ctx: &ResourceCtx<'_>) -> Result<(), WireError> {
        let Some(res) = ctx.resource else { return Ok(()) };
        self.buf.clear();
        self.base.clear();
        self.work.clear();
        self.push_external();
        let (mut name, mut ns, mut inst, mut other) = (None, None, None, 0);
        for a in wire::attributes(res, 1) {
            let a = a?;
            match a.key {
                "service.name" => name = Some(a.value),
                "service.namespace" => ns = Some(a.value),
                "service.instance.id" => inst = Some(a.value),
                _ => {
                    other += 1;
                    self.push_attr(a.key, &a.value, P_POINT);
                }
            }
        }
        if other == 0 {
            return Ok(());
        }
        self.push_job_instance(name, ns, inst);
        self.resolve_labels();
        if self.opts.protobuf_message == ProtobufMessage::V2 {
            if self.target_meta == NO_META {
                self.target_meta = self.push_meta(metric_type::GAUGE, "", TARGET_INFO_HELP, false);
            }
            self.cur_meta = self.target_meta;
        }
        let s = self.series_for("target_info", "", None);
        // The same resource twice in a batch: one sample at its latest time is enough.
        let _ = self.sample(s, ctx.max_ts, 1.0);
        Ok(())
    }
}

impl ResourceCtx<'_> {
    fn seen(&mut self, ts: i64) {
        self.any = true;
        self.max_ts = self.max_ts.max(ts);
    }
}

fn sl(buf: &str, x: (u32, u32)) -> &str {
    &buf[x.0 as usize..x.1 as usize]
}

#[inline]
fn ms(t_nanos: u64) -> i64 {
    (t_nanos / 1_000_000) as i64
}

fn utf8(b: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(b).map_err(|_| WireError::new(WireErrorKind::InvalidUtf8))
}

#[inline]
fn zigzag32(x: u64) -> i32 {
    let x = x as u32;
    ((x >> 1) as i32) ^ -((x & 1) as i32)
}

#[inline]
fn zigzag_enc(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn read_fixed64s<T>(b: &[u8], out: &mut Vec<T>, conv: impl Fn(u64) -> T) -> Result<(), WireError> {
    if !b.len().is_multiple_of(8) {
        return Err(WireError::new(WireErrorKind::Truncated));
    }
    for c in b.chunks_exact(8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        out.push(conv(u64::from_le_bytes(a)));
    }
    Ok(())
}

/// `ExponentialHistogramDataPoint.Buckets`: returns the offset, appends the counts.
fn read_buckets(b: &[u8], out: &mut Vec<u64>) -> Result<i32, WireError> {
    let mut offset = 0;
    for f in Fields::new(b) {
        let f = f?;
        match (f.number, f.value) {
            (1, Value::Varint(x)) => offset = zigzag32(x),
            (2, Value::Varint(x)) => out.push(x),
            (2, Value::Len(p)) => {
                let mut pos = 0;
                while pos < p.len() {
                    out.push(wire::read_varint(p, &mut pos)?);
                }
            }
            _ => {}
        }
    }
    Ok(offset)
}

/// Merges buckets `2^shift` at a time (a lower scale), in place.
fn downscale(counts: &mut Vec<u64>, offset: &mut i32, shift: u32) {
    if shift == 0 || counts.is_empty() {
        return;
    }
    let new_off = *offset >> shift;
    let mut w = 0usize;
    for i in 0..counts.len() {
        let idx = ((*offset as i64 + i as i64) >> shift) - new_off as i64;
        let idx = idx as usize;
        let c = counts[i];
        if idx >= w {
            counts[idx] = c;
            w = idx + 1;
        } else {
            counts[idx] += c;
        }
    }
    counts.truncate(w);
    *offset = new_off;
}

/// One span for the buckets (OTLP index i is Prometheus index i+1) and their deltas.
fn put_buckets(h: &mut Vec<u8>, span_field: u32, delta_field: u32, offset: i32, counts: &[u64]) {
    if counts.is_empty() {
        return;
    }
    let off = zigzag_enc(i64::from(offset) + 1);
    let span_len = 1 + varint_len(off) + 1 + varint_len(counts.len() as u64);
    put_tag(h, span_field, WireType::Len);
    put_varint(h, span_len as u64);
    put_tag(h, 1, WireType::Varint);
    put_varint(h, off);
    put_tag(h, 2, WireType::Varint);
    put_varint(h, counts.len() as u64);
    let mut prev = 0i64;
    let mut len = 0;
    for &c in counts {
        len += varint_len(zigzag_enc(c as i64 - prev));
        prev = c as i64;
    }
    put_tag(h, delta_field, WireType::Len);
    put_varint(h, len as u64);
    prev = 0;
    for &c in counts {
        put_varint(h, zigzag_enc(c as i64 - prev));
        prev = c as i64;
    }
}

/// Appends a `Label{name, value: v1+v2}` field (field 1 of `TimeSeries`).
fn put_label(out: &mut Vec<u8>, name: &str, v1: &str, v2: &str) {
    let vlen = v1.len() + v2.len();
    let len = 1 + varint_len(name.len() as u64) + name.len() + 1 + varint_len(vlen as u64) + vlen;
    put_tag(out, 1, WireType::Len);
    put_varint(out, len as u64);
    put_tag(out, 1, WireType::Len);
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    put_tag(out, 2, WireType::Len);
    put_varint(out, vlen as u64);
    out.extend_from_slice(v1.as_bytes());
    out.extend_from_slice(v2.as_bytes());
}

/// A float as Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest exact decimal, no
/// exponent, `+Inf`/`-Inf`/`NaN`.
pub(crate) fn push_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{f}");
    }
}

/// Data points of a metric whose encoding is broken somewhere inside (best effort).
fn count_points(m: &[u8]) -> u64 {
    let mut n = 0;
    for f in Fields::new(m).flatten() {
        if let (5 | 7 | 9 | 10 | 11, Value::Len(d)) = (f.number, f.value) {
            n += Fields::new(d).flatten().filter(|g| g.number == 1).count() as u64;
        }
    }
    n.max(1)
}

impl Translator {
    /// The shard (`0..shards`) of a series: its label hash, so that a series always goes to
    /// the same shard and its samples stay in order.
    pub fn shard_of(hash: u64, shards: usize) -> usize {
        // The high bits: the low ones also choose the index's buckets.
        ((hash >> 32) % shards.max(1) as u64) as usize
    }

    /// Encodes the batch as `WriteRequest`s: the series are split into `shards` by their
    /// label hash; each shard's series go, in first-seen order, into requests of at most
    /// `max_samples` samples + histograms (a long series is split across consecutive
    /// requests). `emit(shard, request)` is called for each encoded (uncompressed) request, in
    /// order within a shard.
    pub fn encode(&mut self, shards: usize, max_samples: usize, mut emit: impl FnMut(usize, &[u8])) {
        let shards = shards.max(1);
        let max = max_samples.max(1);
        self.group_by_shard(shards);
        let Translator {
            series, keys, samples, hists, hist_buf, offs, order, hoffs, horder, shard_series, req, ..
        } = self;
        for (shard, list) in shard_series.iter().take(shards).enumerate() {
            req.clear();
            let mut in_req = 0usize;
            for &si in list {
                let sr = series[si as usize];
                let key = &keys[sr.key_start as usize..(sr.key_start + sr.key_len) as usize];
                let ss = &order[offs[si as usize] as usize..offs[si as usize + 1] as usize];
                let hs = &horder[hoffs[si as usize] as usize..hoffs[si as usize + 1] as usize];
                let (mut a, mut b) = (0, 0);
                while a < ss.len() || b < hs.len() {
                    if in_req == max {
                        emit(shard, req);
                        req.clear();
                        in_req = 0;
                    }
                    let room = max - in_req;
                    let ta = room.min(ss.len() - a);
                    let tb = (room - ta).min(hs.len() - b);
                    put_timeseries(
                        req,
                        key,
                        ss[a..a + ta].iter().map(|&k| &samples[k as usize]),
                        hs[b..b + tb].iter().map(|&k| {
                            let h = hists[k as usize];
                            &hist_buf[h.start as usize..(h.start + h.len) as usize]
                        }),
                    );
                    a += ta;
                    b += tb;
                    in_req += ta + tb;
                }
            }
            if in_req > 0 {
                emit(shard, req);
            }
        }
    }
}

impl Translator {
    /// Groups samples and histograms by series and series by shard (both encodings).
    fn group_by_shard(&mut self, shards: usize) {
        let n = self.series.len();
        group(&self.samples, |s| s.series, n, &mut self.offs, &mut self.order);
        group(&self.hists, |h| h.series, n, &mut self.hoffs, &mut self.horder);
        if self.shard_series.len() < shards {
            self.shard_series.resize_with(shards, Vec::new);
        }
        for l in &mut self.shard_series {
            l.clear();
        }
        for (i, s) in self.series.iter().enumerate() {
            self.shard_series[Self::shard_of(s.hash, shards)].push(i as u32);
        }
    }

    /// [`Translator::encode`] for Remote Write 2.0: the same sharding, order and splitting,
    /// encoded as `io.prometheus.write.v2.Request`s. Each request has its own symbol table
    /// (`symbols[0]` is `""`), each `TimeSeries` its `labels_refs` (sorted by name, as the
    /// 1.0 labels), its samples or its native histograms (never both in one message: a series
    /// with both is sent as two), and its metric's metadata. `emit(shard, request, samples,
    /// histograms)` is called for each encoded (uncompressed) request, in order within a
    /// shard, with the number of float samples and native histograms it carries.
    pub fn encode_v2(&mut self, shards: usize, max_samples: usize, mut emit: impl FnMut(usize, &[u8], u32, u32)) {
        let shards = shards.max(1);
        let max = max_samples.max(1);
        self.group_by_shard(shards);
        let Translator {
            series,
            keys,
            samples,
            hists,
            hist_buf,
            offs,
            order,
            hoffs,
            horder,
            shard_series,
            req,
            metas,
            meta_text,
            symbols,
            refs,
            ts_buf,
            ..
        } = self;
        let mut flush = |shard: usize, symbols: &mut Symbols, ts_buf: &mut Vec<u8>, counts: (u32, u32)| {
            req.clear();
            symbols.write(req);
            req.extend_from_slice(ts_buf);
            emit(shard, req, counts.0, counts.1);
            symbols.clear();
            ts_buf.clear();
        };
        for (shard, list) in shard_series.iter().take(shards).enumerate() {
            symbols.clear();
            ts_buf.clear();
            let (mut in_req, mut counts) = (0usize, (0u32, 0u32));
            for &si in list {
                let sr = series[si as usize];
                let key = &keys[sr.key_start as usize..(sr.key_start + sr.key_len) as usize];
                let meta = metas.get(sr.meta as usize).copied();
                let ss = &order[offs[si as usize] as usize..offs[si as usize + 1] as usize];
                let hs = &horder[hoffs[si as usize] as usize..hoffs[si as usize + 1] as usize];
                let (mut a, mut b) = (0, 0);
                while a < ss.len() || b < hs.len() {
                    if in_req == max {
                        flush(shard, symbols, ts_buf, counts);
                        (in_req, counts) = (0, (0, 0));
                    }
                    let room = max - in_req;
                    let ta = room.min(ss.len() - a);
                    let tb = (room - ta).min(hs.len() - b);
                    // The series' symbols, in this request's table.
                    refs.clear();
                    for (name, value) in key_labels(key) {
                        refs.push(symbols.intern(name));
                        refs.push(symbols.intern(value));
                    }
                    let md = meta.map(|m| {
                        let text = meta_text.as_bytes();
                        let help = symbols.intern(&text[m.help.0 as usize..m.help.1 as usize]);
                        let unit = symbols.intern(&text[m.unit.0 as usize..m.unit.1 as usize]);
                        (m.typ, help, unit)
                    });
                    if ta > 0 {
                        let it = ss[a..a + ta].iter().map(|&k| &samples[k as usize]);
                        put_timeseries_v2(ts_buf, refs, md, it, std::iter::empty());
                    }
                    if tb > 0 {
                        let it = hs[b..b + tb].iter().map(|&k| {
                            let h = hists[k as usize];
                            &hist_buf[h.start as usize..(h.start + h.len) as usize]
                        });
                        put_timeseries_v2(ts_buf, refs, md, std::iter::empty(), it);
                    }
                    a += ta;
                    b += tb;
                    in_req += ta + tb;
                    counts.0 += ta as u32;
                    counts.1 += tb as u32;
                }
            }
            if in_req > 0 {
                flush(shard, symbols, ts_buf, counts);
            }
        }
    }
}

/// The `(name, value)` pairs of an encoded series key (the 1.0 `Label` fields the
/// translator wrote itself; anything unreadable ends the walk).
fn key_labels(key: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    Fields::new(key).map_while(Result::ok).filter_map(|f| {
        let Value::Len(label) = f.value else { return None };
        let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
        for g in Fields::new(label).map_while(Result::ok) {
            match (g.number, g.value) {
                (1, Value::Len(b)) => name = b,
                (2, Value::Len(b)) => value = b,
                _ => {}
            }
        }
        Some((name, value))
    })
}

/// The symbol table of one Remote Write 2.0 request: every string once, `""` first. The
/// buffers and the index are cleared, not freed, between requests.
#[derive(Default)]
struct Symbols {
    text: Vec<u8>,
    ranges: Vec<(u32, u32)>,
    index: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
}

impl Symbols {
    /// Empties the table down to `symbols[0] = ""`.
    fn clear(&mut self) {
        self.text.clear();
        self.ranges.clear();
        self.index.clear();
        self.intern(b"");
    }

    /// The index of `s`, added if new.
    fn intern(&mut self, s: &[u8]) -> u32 {
        let mut probe = xxhash_rust::xxh3::xxh3_64(s);
        loop {
            match self.index.entry(probe) {
                MapEntry::Occupied(e) => {
                    let i = *e.get();
                    let (a, b) = self.ranges[i as usize];
                    if &self.text[a as usize..b as usize] == s {
                        return i;
                    }
                    probe = probe.wrapping_add(0x9e37_79b9_7f4a_7c15);
                }
                MapEntry::Vacant(v) => {
                    let i = self.ranges.len() as u32;
                    let a = self.text.len() as u32;
                    self.text.extend_from_slice(s);
                    self.ranges.push((a, self.text.len() as u32));
                    v.insert(i);
                    return i;
                }
            }
        }
    }

    /// Appends the table as `Request.symbols` (field 4) entries.
    fn write(&self, out: &mut Vec<u8>) {
        for &(a, b) in &self.ranges {
            put_tag(out, 4, WireType::Len);
            put_varint(out, u64::from(b - a));
            out.extend_from_slice(&self.text[a as usize..b as usize]);
        }
    }
}

/// Appends one v2 `TimeSeries` (field 5 of `Request`): `labels_refs` (packed), samples
/// (field 2, the same `Sample` encoding as 1.0), native histograms (field 3, the same
/// `Histogram` field numbers as 1.0) and `metadata` `(type, help_ref, unit_ref)` (field 5;
/// zero values are left out, as proto3 does).
fn put_timeseries_v2<'a>(
    out: &mut Vec<u8>,
    refs: &[u32],
    meta: Option<(u8, u32, u32)>,
    samples: impl Iterator<Item = &'a Sample> + Clone,
    hists: impl Iterator<Item = &'a [u8]> + Clone,
) {
    let refs_len: usize = refs.iter().map(|&r| varint_len(u64::from(r))).sum();
    let mut len = 0;
    if !refs.is_empty() {
        len += 1 + varint_len(refs_len as u64) + refs_len;
    }
    for s in samples.clone() {
        let l = sample_len(s);
        len += 1 + varint_len(l as u64) + l;
    }
    for h in hists.clone() {
        len += 1 + varint_len(h.len() as u64) + h.len();
    }
    let meta_len = meta.map_or(0, |(typ, help, unit)| {
        let f = |tag_len: usize, v: u64| if v == 0 { 0 } else { tag_len + varint_len(v) };
        f(1, u64::from(typ)) + f(1, u64::from(help)) + f(1, u64::from(unit))
    });
    if meta_len > 0 {
        len += 1 + varint_len(meta_len as u64) + meta_len;
    }
    put_tag(out, 5, WireType::Len);
    put_varint(out, len as u64);
    if !refs.is_empty() {
        put_tag(out, 1, WireType::Len);
        put_varint(out, refs_len as u64);
        for &r in refs {
            put_varint(out, u64::from(r));
        }
    }
    for s in samples {
        put_sample(out, s);
    }
    for h in hists {
        put_tag(out, 3, WireType::Len);
        put_varint(out, h.len() as u64);
        out.extend_from_slice(h);
    }
    if let Some((typ, help, unit)) = meta
        && meta_len > 0
    {
        put_tag(out, 5, WireType::Len);
        put_varint(out, meta_len as u64);
        for (field, v) in [(1, u64::from(typ)), (3, u64::from(help)), (4, u64::from(unit))] {
            if v != 0 {
                put_tag(out, field, WireType::Varint);
                put_varint(out, v);
            }
        }
    }
}

/// Groups item indices by series, keeping their order: `order[offs[s]..offs[s+1]]` are the
/// indices of series `s`'s items (a stable counting sort).
fn group<T>(items: &[T], series: impl Fn(&T) -> u32, n: usize, offs: &mut Vec<u32>, order: &mut Vec<u32>) {
    offs.clear();
    offs.resize(n + 1, 0);
    for it in items {
        offs[series(it) as usize + 1] += 1;
    }
    for i in 0..n {
        offs[i + 1] += offs[i];
    }
    order.clear();
    order.resize(items.len(), 0);
    // Use offs[s] as the write cursor, then shift back.
    for (k, it) in items.iter().enumerate() {
        let s = series(it) as usize;
        order[offs[s] as usize] = k as u32;
        offs[s] += 1;
    }
    for i in (1..=n).rev() {
        offs[i] = offs[i - 1];
    }
    offs[0] = 0;
}

#[inline]
fn sample_len(s: &Sample) -> usize {
    // value (tag + 8 bytes) + timestamp (tag + varint)
    9 + 1 + varint_len(s.ts as u64)
}

/// A `Sample` (field 2 of the time series in both 1.0 and 2.0): value = 1, timestamp = 2.
fn put_sample(out: &mut Vec<u8>, s: &Sample) {
    put_tag(out, 2, WireType::Len);
    put_varint(out, sample_len(s) as u64);
    put_tag(out, 1, WireType::I64);
    out.extend_from_slice(&s.value.to_bits().to_le_bytes());
    put_tag(out, 2, WireType::Varint);
    put_varint(out, s.ts as u64);
}

/// Appends one `TimeSeries` (field 1 of `WriteRequest`).
fn put_timeseries<'a>(
    out: &mut Vec<u8>,
    key: &[u8],
    samples: impl Iterator<Item = &'a Sample> + Clone,
    hists: impl Iterator<Item = &'a [u8]> + Clone,
) {
    let mut len = key.len();
    for s in samples.clone() {
        let l = sample_len(s);
        len += 1 + varint_len(l as u64) + l;
    }
    for h in hists.clone() {
        len += 1 + varint_len(h.len() as u64) + h.len();
    }
    put_tag(out, 1, WireType::Len);
    put_varint(out, len as u64);
    out.extend_from_slice(key);
    for s in samples {
        put_sample(out, s);
    }
    for h in hists {
        put_tag(out, 4, WireType::Len);
        put_varint(out, h.len() as u64);
        out.extend_from_slice(h);
    }
}
