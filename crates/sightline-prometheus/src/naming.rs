//! Prometheus names from OTLP names: metric names (name + unit + type, as the OpenTelemetry
//! specification's "OTLP metric points to Prometheus" section, the collector and Prometheus'
//! own OTLP endpoint build them) and label names.
//!
//! Everything writes into a caller-owned buffer: names are built once per metric (not per
//! point) and label names once per attribute, without allocating after warm-up.

/// What the metric is, as far as its name is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// A monotonic cumulative sum: `_total`.
    Counter,
    /// An OTLP gauge: `_ratio` when the unit is `1`.
    Gauge,
    /// Anything else (non-monotonic sum, histogram, summary): unit suffix only.
    Other,
}

/// `true` for the characters a Prometheus metric name may hold (besides `_`).
#[inline]
fn metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// The Prometheus unit word for an OTLP (UCUM) unit, or the unit itself.
fn main_unit(u: &str) -> &str {
    match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// The word after `_per_` for the denominator of an `X/Y` unit.
fn per_unit(u: &str) -> &str {
    match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

/// Appends `s` with every character outside `[a-zA-Z0-9:]` replaced by `_`, runs of `_`
/// collapsed and leading/trailing `_` removed (a unit word).
fn push_clean_unit(out: &mut String, s: &str) {
    let start = out.len();
    for c in s.chars() {
        let c = if metric_char(c) { c } else { '_' };
        if c == '_' && (out.len() == start || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    while out.len() > start && out.ends_with('_') {
        out.pop();
    }
}

/// Appends the Prometheus unit of an OTLP (UCUM) unit, the way Prometheus' own OTLP endpoint
/// fills the metadata's unit: the same words as the name suffixes of [`metric_name`]
/// (`ms` -> `milliseconds`, `By/s` -> `bytes_per_second`, `{request}/s` -> `per_second`);
/// `1` and `{annotations}` give nothing.
pub fn metric_unit(out: &mut String, unit: &str) {
    let start = out.len();
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit.trim(), None),
    };
    if !main.is_empty() && !main.contains(['{', '}']) {
        push_clean_unit(out, main_unit(main));
    }
    if let Some(p) = per
        && !p.is_empty()
        && !p.contains(['{', '}'])
    {
        if out.len() > start {
            out.push('_');
        }
        out.push_str("per_");
        push_clean_unit(out, per_unit(p));
        if out.ends_with('_') {
            out.pop();
        }
    }
}

/// Reusable scratch for [`metric_name`].
#[derive(Default)]
pub struct NameScratch {
    /// Tokens of the name, as byte ranges of `text`.
    tokens: Vec<(usize, usize)>,
    text: String,
    units: String,
}

/// Writes the Prometheus name of a metric into `out` (cleared first). Returns `false` when the
/// result is not a valid name (empty or only underscores): the metric is dropped.
///
/// With `add_suffixes` (the default): the name is split into tokens at every character outside
/// `[a-zA-Z0-9:]`; the unit's word (`s` -> `seconds`, `By` -> `bytes`, unknown units as they
/// are, `{annotations}` dropped) and `per_<word>` for an `X/Y` unit are appended unless the
/// name already holds them; `total` is moved to the end of counters and `ratio` to the end of
/// gauges with unit `1`; tokens are joined with `_`. Without suffixes, invalid characters are
/// only replaced. Either way the namespace is prepended and a leading digit gets a `_`.
pub fn metric_name(
    out: &mut String,
    scratch: &mut NameScratch,
    name: &str,
    unit: &str,
    kind: NameKind,
    namespace: &str,
    add_suffixes: bool,
) -> bool {
    out.clear();
    if !add_suffixes {
        if !namespace.is_empty() {
            push_replaced(out, namespace);
            out.push('_');
        }
        push_replaced(out, name);
        if namespace.is_empty() && out.starts_with(|c: char| c.is_ascii_digit()) {
            out.insert(0, '_');
        }
        return valid(out);
    }
    let NameScratch { tokens, text, units: unit_words } = scratch;
    tokens.clear();
    text.clear();
    unit_words.clear();
    // Name tokens.
    let mut start = None;
    for (i, c) in name.char_indices() {
        match (metric_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                push_token(tokens, text, &name[s..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        push_token(tokens, text, &name[s..]);
    }
    // Unit tokens.
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit.trim(), None),
    };
    let main_start = 0;
    if !main.is_empty() && !main.contains(['{', '}']) {
        push_clean_unit(unit_words, main_unit(main));
    }
    let main_end = unit_words.len();
    if let Some(p) = per
        && !p.is_empty()
        && !p.contains(['{', '}'])
    {
        push_clean_unit(unit_words, per_unit(p));
    }
    let main_word = &unit_words[main_start..main_end];
    let per_word = &unit_words[main_end..];
    let has = |tokens: &[(usize, usize)], text: &str, w: &str| tokens.iter().any(|&(s, e)| &text[s..e] == w);
    if !main_word.is_empty() && !has(tokens, text, main_word) {
        push_token(tokens, text, main_word);
    }
    if !per_word.is_empty() && !has(tokens, text, per_word) {
        push_token(tokens, text, "per");
        push_token(tokens, text, per_word);
    }
    let suffix = match kind {
        NameKind::Counter => Some("total"),
        NameKind::Gauge if unit == "1" => Some("ratio"),
        _ => None,
    };
    if !namespace.is_empty() {
        push_clean_unit(out, namespace);
    }
    for &(s, e) in tokens.iter() {
        let t = &text[s..e];
        if Some(t) == suffix {
            continue;
        }
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(t);
    }
    if let Some(sfx) = suffix {
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(sfx);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    valid(out)
}

fn push_token(tokens: &mut Vec<(usize, usize)>, text: &mut String, t: &str) {
    let s = text.len();
    text.push_str(t);
    tokens.push((s, text.len()));
}

/// Appends `s` with characters outside `[a-zA-Z0-9:_]` replaced by `_`.
fn push_replaced(out: &mut String, s: &str) {
    for c in s.chars() {
        out.push(if metric_char(c) || c == '_' { c } else { '_' });
    }
}

fn valid(s: &str) -> bool {
    s.bytes().any(|b| b != b'_')
}

/// Appends the Prometheus label name for an attribute key: characters outside
/// `[a-zA-Z0-9_]` become `_`, and a leading digit gets `key_` in front. Returns `false` (and
/// leaves `out` as it was) when the result would be empty or only underscores: such an
/// attribute is not a label.
pub fn push_label_name(out: &mut String, key: &str) -> bool {
    let start = out.len();
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push_str("key_");
    }
    let mut any = false;
    for c in key.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            any = true;
        } else {
            out.push('_');
        }
    }
    if !any {
        out.truncate(start);
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str, unit: &str, kind: NameKind) -> String {
        let mut out = String::new();
        metric_name(&mut out, &mut NameScratch::default(), n, unit, kind, "", true);
        out
    }

    /// The collector's and Prometheus' documented examples.
    #[test]
    fn metric_names_follow_the_specification() {
        assert_eq!(name("http.server.duration", "s", NameKind::Other), "http_server_duration_seconds");
        assert_eq!(name("http.server.request.size", "By", NameKind::Other), "http_server_request_size_bytes");
        assert_eq!(name("requests", "1", NameKind::Counter), "requests_total");
        assert_eq!(name("requests.total", "{request}", NameKind::Counter), "requests_total");
        assert_eq!(name("system.cpu.utilization", "1", NameKind::Gauge), "system_cpu_utilization_ratio");
        assert_eq!(name("queue.depth", "1", NameKind::Other), "queue_depth");
        assert_eq!(name("network.io", "By/s", NameKind::Gauge), "network_io_bytes_per_second");
        assert_eq!(name("throughput", "{req}/s", NameKind::Gauge), "throughput_per_second");
        assert_eq!(name("memory.usage", "MiBy", NameKind::Gauge), "memory_usage_mebibytes");
        assert_eq!(name("latency_seconds", "s", NameKind::Other), "latency_seconds");
        assert_eq!(name("weird-name!!here", "widgets", NameKind::Counter), "weird_name_here_widgets_total");
        assert_eq!(name("2xx.count", "", NameKind::Counter), "_2xx_count_total");
        assert_eq!(name("temp", "Cel", NameKind::Gauge), "temp_celsius");
        assert_eq!(name("disk.ops", "{operation}", NameKind::Counter), "disk_ops_total");
        assert_eq!(name("x", "m/mo", NameKind::Gauge), "x_meters_per_month");
    }

    #[test]
    fn without_suffixes_and_with_namespace() {
        let mut out = String::new();
        let mut s = NameScratch::default();
        assert!(metric_name(&mut out, &mut s, "http.server.duration", "s", NameKind::Counter, "", false));
        assert_eq!(out, "http_server_duration");
        assert!(metric_name(&mut out, &mut s, "a.b", "s", NameKind::Counter, "app", true));
        assert_eq!(out, "app_a_b_seconds_total");
        assert!(metric_name(&mut out, &mut s, "a.b", "s", NameKind::Counter, "app", false));
        assert_eq!(out, "app_a_b");
        assert!(!metric_name(&mut out, &mut s, "...", "", NameKind::Other, "", true));
        assert!(!metric_name(&mut out, &mut s, "", "", NameKind::Other, "", false));
    }

    #[test]
    fn label_names_are_sanitized() {
        let l = |k: &str| {
            let mut out = String::from("x");
            let ok = push_label_name(&mut out, k);
            (ok, out[1..].to_string())
        };
        assert_eq!(l("owner.team"), (true, "owner_team".into()));
        assert_eq!(l("http.response.status_code"), (true, "http_response_status_code".into()));
        assert_eq!(l("1st"), (true, "key_1st".into()));
        assert_eq!(l("héllo"), (true, "h_llo".into()));
        assert_eq!(l("..."), (false, "".into()));
        assert_eq!(l(""), (false, "".into()));
    }

    /// The metadata unit of Remote Write 2.0 uses the same words as the name suffixes.
    #[test]
    fn metadata_units() {
        let u = |unit: &str| {
            let mut out = String::from("x");
            metric_unit(&mut out, unit);
            out[1..].to_string()
        };
        assert_eq!(u("ms"), "milliseconds");
        assert_eq!(u("By/s"), "bytes_per_second");
        assert_eq!(u("{request}/s"), "per_second");
        assert_eq!(u("{request}"), "");
        assert_eq!(u("1"), "");
        assert_eq!(u("%"), "percent");
        assert_eq!(u("m/s"), "meters_per_second");
        assert_eq!(u("widget-count"), "widget_count");
        assert_eq!(u(""), "");
        assert_eq!(u("s/_"), "seconds_per");
    }
}
