//! Splitting an OTLP export request between backends on the wire: each resource entry (routing
//! by `service` or `resource`) or each item (spans and log records by trace id, metrics by
//! name) goes to one destination, and each destination gets a request holding its share with
//! the same resources and scopes around it. Nothing is decoded: fields are copied as ranges of
//! the original bytes, scopes and resources left empty are left out, and a request that goes
//! whole to one destination is not copied at all.
//!
//! The request, resource and scope layouts are the same for the three signals
//! (`resource_*` = 1 in the request, `scope_*` = 2 in a resource entry, the items = 2 in a
//! scope), so one splitter serves traces, logs and metrics.

use sightline_core::wire::{self, Fields, WireError};

/// Where the parts of a request go.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// Nothing to send (no resource entry holds an item).
    Empty,
    /// Everything goes to this destination: the request as it is.
    One(usize),
    /// One new request per destination that gets something: (destination, bytes, items).
    Many(Vec<Part>),
}

/// One destination's share of a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    pub dest: usize,
    pub bytes: Vec<u8>,
    pub items: u64,
}

fn len_of<'a>(f: &wire::Field<'a>) -> Result<&'a [u8], WireError> {
    wire::expect_len(f)
}

/// Offset of `part` (a subslice) in `buf`.
fn offset(buf: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - buf.as_ptr() as usize
}

/// Splits by resource entry: `route` sees each entry's bytes; `count` gives an entry's items.
pub fn by_resource(
    buf: &[u8],
    route: &mut dyn FnMut(&[u8]) -> usize,
    count: &dyn Fn(&[u8]) -> u64,
) -> Result<Split, WireError> {
    // (destination, raw field range, items) per entry.
    let mut entries: Vec<(usize, usize, usize, u64)> = Vec::new();
    for f in Fields::new(buf) {
        let f = f?;
        if f.number != 1 {
            continue;
        }
        let entry = len_of(&f)?;
        let items = count(entry);
        if items == 0 {
            continue;
        }
        let start = offset(buf, f.raw);
        entries.push((route(entry), start, start + f.raw.len(), items));
    }
    Ok(assemble(buf, &entries))
}

/// Groups ranges by destination (ranges in request order within each destination).
fn assemble(buf: &[u8], entries: &[(usize, usize, usize, u64)]) -> Split {
    let Some(&(first, ..)) = entries.first() else { return Split::Empty };
    if entries.iter().all(|e| e.0 == first) {
        return Split::One(first);
    }
    let mut dests: Vec<usize> = entries.iter().map(|e| e.0).collect();
    dests.sort_unstable();
    dests.dedup();
    dests
        .into_iter()
        .map(|dest| {
            let mine = entries.iter().filter(|e| e.0 == dest);
            let size = mine.clone().map(|e| e.2 - e.1).sum();
            let mut bytes = Vec::with_capacity(size);
            let mut items = 0;
            for e in mine {
                bytes.extend_from_slice(&buf[e.1..e.2]);
                items += e.3;
            }
            Part { dest, bytes, items }
        })
        .collect::<Vec<_>>()
        .into()
}

impl From<Vec<Part>> for Split {
    fn from(parts: Vec<Part>) -> Split {
        Split::Many(parts)
    }
}

/// One resource entry or scope: its fields other than its children (copied as they are),
/// and the range of its children in the next level's list.
struct Node {
    /// Range in `others`.
    others: (u32, u32),
    /// Range of children.
    children: (u32, u32),
}

/// Splits by item: `route` sees each item's bytes (a span, a log record, a metric); `count`
/// gives an item's weight (1, or a metric's points). Items of weight 0 (a metric without
/// points) go with the first destination of their scope, or are left out when it has none.
pub fn by_item(
    buf: &[u8],
    route: &mut dyn FnMut(&[u8]) -> usize,
    count: &dyn Fn(&[u8]) -> u64,
) -> Result<Split, WireError> {
    let mut others: Vec<(usize, usize)> = Vec::new();
    let mut resources: Vec<Node> = Vec::new();
    let mut scopes: Vec<Node> = Vec::new();
    // (start, end, destination, weight) per item.
    let mut items: Vec<(usize, usize, usize, u64)> = Vec::new();
    let mut first_dest: Option<usize> = None;
    let mut single = true;
    for f in Fields::new(buf) {
        let f = f?;
        if f.number != 1 {
            continue;
        }
        let o0 = others.len() as u32;
        let s0 = scopes.len() as u32;
        let mut scope_fields: Vec<&[u8]> = Vec::new();
        for g in Fields::new(len_of(&f)?) {
            let g = g?;
            if g.number == 2 {
                scope_fields.push(len_of(&g)?);
            } else {
                others.push((offset(buf, g.raw), offset(buf, g.raw) + g.raw.len()));
            }
        }
        let o1 = others.len() as u32;
        for scope in scope_fields {
            let so0 = others.len() as u32;
            let i0 = items.len() as u32;
            for h in Fields::new(scope) {
                let h = h?;
                let start = offset(buf, h.raw);
                if h.number != 2 {
                    others.push((start, start + h.raw.len()));
                    continue;
                }
                let item = len_of(&h)?;
                let dest = route(item);
                match first_dest {
                    None => first_dest = Some(dest),
                    Some(d) if d != dest => single = false,
                    _ => {}
                }
                items.push((start, start + h.raw.len(), dest, count(item)));
            }
            scopes.push(Node { others: (so0, others.len() as u32), children: (i0, items.len() as u32) });
        }
        resources.push(Node { others: (o0, o1), children: (s0, scopes.len() as u32) });
    }
    let Some(first) = first_dest else { return Ok(Split::Empty) };
    if single {
        return Ok(Split::One(first));
    }
    let mut dests: Vec<usize> = items.iter().map(|i| i.2).collect();
    dests.sort_unstable();
    dests.dedup();
    let range_len = |r: (u32, u32)| -> usize { others[r.0 as usize..r.1 as usize].iter().map(|o| o.1 - o.0).sum() };
    let mut parts = Vec::with_capacity(dests.len());
    let mut scope_lens: Vec<usize> = vec![0; scopes.len()];
    for dest in dests {
        // Sizes first (length prefixes come before the content), then one write.
        let mut total = 0usize;
        let mut resource_lens: Vec<usize> = Vec::with_capacity(resources.len());
        let mut weight = 0u64;
        for r in &resources {
            let mut rlen = 0usize;
            let mut kept = false;
            for (si, s) in scopes[r.children.0 as usize..r.children.1 as usize].iter().enumerate() {
                let mine = items[s.children.0 as usize..s.children.1 as usize].iter().filter(|i| i.2 == dest);
                let (mut n, mut slen) = (0usize, 0usize);
                for i in mine {
                    n += 1;
                    slen += i.1 - i.0;
                    weight += i.3;
                }
                let si = r.children.0 as usize + si;
                if n == 0 {
                    scope_lens[si] = usize::MAX;
                    continue;
                }
                slen += range_len(s.others);
                scope_lens[si] = slen;
                rlen += wire::len_field_size(2, slen);
                kept = true;
            }
            if kept {
                rlen += range_len(r.others);
                total += wire::len_field_size(1, rlen);
                resource_lens.push(rlen);
            } else {
                resource_lens.push(usize::MAX);
            }
        }
        let mut out = Vec::with_capacity(total);
        for (r, &rlen) in resources.iter().zip(&resource_lens) {
            if rlen == usize::MAX {
                continue;
            }
            wire::put_tag(&mut out, 1, wire::WireType::Len);
            wire::put_varint(&mut out, rlen as u64);
            for o in &others[r.others.0 as usize..r.others.1 as usize] {
                out.extend_from_slice(&buf[o.0..o.1]);
            }
            for si in r.children.0 as usize..r.children.1 as usize {
                let slen = scope_lens[si];
                if slen == usize::MAX {
                    continue;
                }
                let s = &scopes[si];
                wire::put_tag(&mut out, 2, wire::WireType::Len);
                wire::put_varint(&mut out, slen as u64);
                for o in &others[s.others.0 as usize..s.others.1 as usize] {
                    out.extend_from_slice(&buf[o.0..o.1]);
                }
                for i in items[s.children.0 as usize..s.children.1 as usize].iter().filter(|i| i.2 == dest) {
                    out.extend_from_slice(&buf[i.0..i.1]);
                }
            }
        }
        debug_assert_eq!(out.len(), total);
        parts.push(Part { dest, bytes: out, items: weight });
    }
    Ok(Split::Many(parts))
}

/// The data fields of a `Metric` (gauge, sum, histogram, exponential histogram, summary).
fn is_metric_data(n: u32) -> bool {
    matches!(n, 5 | 7 | 9 | 10 | 11)
}

/// Calls `each` with every data point of `metric` (field 1 of its data field), in order.
fn for_each_point<'a>(metric: &'a [u8], each: &mut dyn FnMut(&'a [u8])) -> Result<(), WireError> {
    for f in Fields::new(metric) {
        let f = f?;
        if !is_metric_data(f.number) {
            continue;
        }
        for g in Fields::new(len_of(&f)?) {
            let g = g?;
            if g.number == 1 {
                each(len_of(&g)?);
            }
        }
    }
    Ok(())
}

/// Writes `metric` (the message, no tag) with only the points `keep` says, by index.
fn write_metric_subset(metric: &[u8], keep: &dyn Fn(usize) -> bool, out: &mut Vec<u8>) -> Result<(), WireError> {
    let mut index = 0usize;
    for f in Fields::new(metric) {
        let f = f?;
        if !is_metric_data(f.number) {
            out.extend_from_slice(f.raw);
            continue;
        }
        let mut inner = Vec::new();
        for g in Fields::new(len_of(&f)?) {
            let g = g?;
            if g.number == 1 {
                if keep(index) {
                    inner.extend_from_slice(g.raw);
                }
                index += 1;
            } else {
                inner.extend_from_slice(g.raw);
            }
        }
        wire::put_tag(out, f.number, wire::WireType::Len);
        wire::put_varint(out, inner.len() as u64);
        out.extend_from_slice(&inner);
    }
    Ok(())
}

fn put_len_field(out: &mut Vec<u8>, n: u32, body: &[u8]) {
    wire::put_tag(out, n, wire::WireType::Len);
    wire::put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// The message in field `n` of `msg` (the last one), or empty.
fn message(msg: &[u8], n: u32) -> Result<&[u8], WireError> {
    let mut found: &[u8] = &[];
    for f in Fields::new(msg) {
        let f = f?;
        if f.number == n {
            found = len_of(&f)?;
        }
    }
    Ok(found)
}

/// A data point's destination, from its resource, scope, metric and point messages.
pub type PointRoute<'a> = dyn FnMut(&[u8], &[u8], &[u8], &[u8]) -> usize + 'a;

/// Splits a metrics request by data point (`routing_key: streamID`): `route` sees each point
/// with its resource, scope and metric messages. A metric whose points all go to one
/// destination is copied as it is; one whose points go to several is written once per
/// destination with that destination's points (its other fields copied).
pub fn by_point(buf: &[u8], route: &mut PointRoute<'_>) -> Result<Split, WireError> {
    // The destination of every point, per metric, in request order.
    let mut per_metric: Vec<Vec<usize>> = Vec::new();
    let mut mixed = false;
    for f in Fields::new(buf) {
        let f = f?;
        if f.number != 1 {
            continue;
        }
        let entry = len_of(&f)?;
        let resource = message(entry, 1)?;
        for g in Fields::new(entry) {
            let g = g?;
            if g.number != 2 {
                continue;
            }
            let scope_entry = len_of(&g)?;
            let scope = message(scope_entry, 1)?;
            for h in Fields::new(scope_entry) {
                let h = h?;
                if h.number != 2 {
                    continue;
                }
                let metric = len_of(&h)?;
                let mut dests = Vec::new();
                for_each_point(metric, &mut |p| dests.push(route(resource, scope, metric, p)))?;
                mixed |= dests.windows(2).any(|w| w[0] != w[1]);
                per_metric.push(dests);
            }
        }
    }
    // by_item visits the metrics in the same order: each takes its destination from here.
    let metric_points = |item: &[u8]| wire::metric_points(item);
    if !mixed {
        let mut it = per_metric.into_iter();
        let mut last = 0;
        return by_item(
            buf,
            &mut |_| {
                last = it.next().and_then(|d| d.first().copied()).unwrap_or(last);
                last
            },
            &metric_points,
        );
    }
    // Some metric is shared: write the request again with such metrics once per destination.
    let mut out = Vec::with_capacity(buf.len() + buf.len() / 8);
    let mut item_dests: Vec<usize> = Vec::new();
    let mut m = 0usize;
    for f in Fields::new(buf) {
        let f = f?;
        if f.number != 1 {
            out.extend_from_slice(f.raw);
            continue;
        }
        let mut entry_out = Vec::new();
        for g in Fields::new(len_of(&f)?) {
            let g = g?;
            if g.number != 2 {
                entry_out.extend_from_slice(g.raw);
                continue;
            }
            let mut scope_out = Vec::new();
            for h in Fields::new(len_of(&g)?) {
                let h = h?;
                if h.number != 2 {
                    scope_out.extend_from_slice(h.raw);
                    continue;
                }
                let dests = &per_metric[m];
                m += 1;
                let mut distinct: Vec<usize> = Vec::new();
                for &d in dests {
                    if !distinct.contains(&d) {
                        distinct.push(d);
                    }
                }
                if distinct.len() <= 1 {
                    scope_out.extend_from_slice(h.raw);
                    item_dests.push(distinct.first().copied().unwrap_or(usize::MAX));
                    continue;
                }
                let metric = len_of(&h)?;
                for d in distinct {
                    let mut one = Vec::with_capacity(metric.len());
                    write_metric_subset(metric, &|i| dests[i] == d, &mut one)?;
                    put_len_field(&mut scope_out, 2, &one);
                    item_dests.push(d);
                }
            }
            put_len_field(&mut entry_out, 2, &scope_out);
        }
        put_len_field(&mut out, 1, &entry_out);
    }
    // Each shared metric is now one item per destination, so this never answers `One`.
    let mut it = item_dests.into_iter();
    let mut last = 0;
    by_item(
        &out,
        &mut |_| {
            last = it.next().filter(|&d| d != usize::MAX).unwrap_or(last);
            last
        },
        &metric_points,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    fn request(resources: usize, scopes: usize, spans: usize) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: (0..resources)
                .map(|r| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", &format!("svc{r}"))],
                        ..Default::default()
                    }),
                    scope_spans: (0..scopes)
                        .map(|s| ScopeSpans {
                            scope: Some(InstrumentationScope { name: format!("lib{s}"), ..Default::default() }),
                            spans: (0..spans)
                                .map(|i| Span {
                                    trace_id: vec![(r * 31 + s * 7 + i) as u8; 16],
                                    span_id: vec![i as u8 + 1; 8],
                                    name: format!("op{r}.{s}.{i}"),
                                    ..Default::default()
                                })
                                .collect(),
                            schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
        }
    }

    /// The request each destination should get, built with prost from the decoded input.
    fn expected(req: &ExportTraceServiceRequest, n: usize, dest: usize) -> ExportTraceServiceRequest {
        let mut out = req.clone();
        for r in &mut out.resource_spans {
            for s in &mut r.scope_spans {
                s.spans.retain(|sp| sp.trace_id[0] as usize % n == dest);
            }
            r.scope_spans.retain(|s| !s.spans.is_empty());
        }
        out.resource_spans.retain(|r| !r.scope_spans.is_empty());
        out
    }

    fn route_by_first_byte(n: usize) -> impl FnMut(&[u8]) -> usize {
        move |span: &[u8]| {
            let s = Span::decode(span).unwrap();
            s.trace_id[0] as usize % n
        }
    }

    #[test]
    fn items_are_split_with_their_resources_and_scopes() {
        let req = request(3, 2, 5);
        let buf = req.encode_to_vec();
        for n in [2, 3, 7] {
            let split = by_item(&buf, &mut route_by_first_byte(n), &|_| 1).unwrap();
            let Split::Many(parts) = split else { panic!("expected several parts") };
            let mut total = 0;
            for p in &parts {
                let got = ExportTraceServiceRequest::decode(&p.bytes[..]).unwrap();
                assert_eq!(got, expected(&req, n, p.dest), "n={n} dest={}", p.dest);
                assert_eq!(
                    p.items,
                    got.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len() as u64).sum::<u64>()
                );
                total += p.items;
            }
            assert_eq!(total, 30);
        }
    }

    #[test]
    fn one_destination_is_not_copied_and_empty_requests_go_nowhere() {
        let buf = request(2, 2, 3).encode_to_vec();
        assert_eq!(by_item(&buf, &mut |_| 4, &|_| 1).unwrap(), Split::One(4));
        assert_eq!(by_resource(&buf, &mut |_| 1, &|_| 1).unwrap(), Split::One(1));
        let empty = request(2, 1, 0).encode_to_vec();
        assert_eq!(by_item(&empty, &mut |_| 0, &|_| 1).unwrap(), Split::Empty);
        assert_eq!(by_item(&[], &mut |_| 0, &|_| 1).unwrap(), Split::Empty);
    }

    #[test]
    fn resources_are_routed_whole() {
        let req = request(4, 2, 2);
        let buf = req.encode_to_vec();
        let mut i = 0;
        let split = by_resource(
            &buf,
            &mut |_| {
                i += 1;
                i % 2
            },
            &|_| 4,
        )
        .unwrap();
        let Split::Many(parts) = split else { panic!() };
        assert_eq!(parts.len(), 2);
        let a = ExportTraceServiceRequest::decode(&parts[0].bytes[..]).unwrap();
        assert_eq!(a.resource_spans, vec![req.resource_spans[1].clone(), req.resource_spans[3].clone()]);
        assert_eq!(parts[0].items, 8);
    }

    #[test]
    fn malformed_bytes_are_an_error_not_a_panic() {
        let buf = request(1, 1, 3).encode_to_vec();
        for cut in 1..buf.len() {
            let _ = by_item(&buf[..cut], &mut |_| 0, &|_| 1);
            let _ = by_resource(&buf[..cut], &mut |_| 0, &|_| 1);
        }
    }

    #[test]
    fn points_of_one_metric_are_split_between_destinations() {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::{
            Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
        };
        let point = |i: i64| NumberDataPoint {
            attributes: vec![kv("i", &i.to_string())],
            value: Some(number_data_point::Value::AsInt(i)),
            ..Default::default()
        };
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource { attributes: vec![kv("service.name", "a")], ..Default::default() }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope { name: "lib".into(), ..Default::default() }),
                    metrics: vec![
                        Metric {
                            name: "shared".into(),
                            unit: "1".into(),
                            data: Some(Data::Sum(Sum {
                                data_points: (0..6).map(point).collect(),
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "alone".into(),
                            data: Some(Data::Gauge(Gauge { data_points: vec![point(4)] })),
                            ..Default::default()
                        },
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let buf = req.encode_to_vec();
        // A point's destination: its value modulo 3, read back with prost.
        let mut route = |_: &[u8], _: &[u8], _: &[u8], p: &[u8]| match NumberDataPoint::decode(p).unwrap().value {
            Some(number_data_point::Value::AsInt(i)) => i as usize % 3,
            _ => 0,
        };
        let Split::Many(parts) = by_point(&buf, &mut route).unwrap() else { panic!("split expected") };
        assert_eq!(parts.iter().map(|p| p.dest).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(parts.iter().map(|p| p.items).sum::<u64>(), 7);
        for part in &parts {
            let got = ExportMetricsServiceRequest::decode(&part.bytes[..]).unwrap();
            let ms = &got.resource_metrics[0].scope_metrics[0].metrics;
            for m in ms {
                let points: Vec<i64> = match &m.data {
                    Some(Data::Sum(s)) => {
                        assert!(s.is_monotonic && s.aggregation_temporality == 2 && m.unit == "1");
                        s.data_points
                            .iter()
                            .map(|p| {
                                p.attributes[0].value.clone().map(|_| 0).unwrap_or(0)
                                    + match p.value {
                                        Some(number_data_point::Value::AsInt(i)) => i,
                                        _ => -1,
                                    }
                            })
                            .collect()
                    }
                    Some(Data::Gauge(g)) => g
                        .data_points
                        .iter()
                        .map(|p| match p.value {
                            Some(number_data_point::Value::AsInt(i)) => i,
                            _ => -1,
                        })
                        .collect(),
                    _ => panic!("no data"),
                };
                assert!(points.iter().all(|&i| i as usize % 3 == part.dest), "{points:?} at {}", part.dest);
            }
            assert_eq!(
                part.items,
                ms.iter()
                    .map(|m| match &m.data {
                        Some(Data::Sum(s)) => s.data_points.len() as u64,
                        Some(Data::Gauge(g)) => g.data_points.len() as u64,
                        _ => 0,
                    })
                    .sum::<u64>()
            );
        }
        // One destination for everything: the request is not rewritten.
        assert_eq!(by_point(&buf, &mut |_, _, _, _| 1).unwrap(), Split::One(1));
    }
}
