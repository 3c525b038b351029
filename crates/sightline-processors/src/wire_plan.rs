//! Running [wire plans](sightline_ottl::plan) over a trace or log request (ADR 21): one walk
//! decides each item's fate (kept as received, dropped, or rewritten into one scratch buffer),
//! a second writes the request once, copying whatever is unchanged. A request the plan does
//! not change is passed on as it is, not copied.

use crate::lazy::{bad, len};
use bytes::Bytes;
use sightline_core::pipeline::ProcessError;
use sightline_core::wire::{self, Fields, WireType};

/// What the plan did to one item.
pub enum Fate {
    Keep,
    Drop,
    /// The new item was appended to the scratch buffer.
    Rewritten,
}

const KEEP: u32 = u32::MAX;
const DROP: u32 = u32::MAX - 1;

/// Runs `fate` on every item (field 2 of a scope, itself field 2 of a resource, field 1 of the
/// request: the same numbers for traces and logs). `prune`: scopes left without items and
/// resources left without scopes are removed, as the collector's filter does. Returns the new
/// request and its item count, or `None` when nothing changed.
pub fn rewrite(
    buf: &Bytes,
    prune: bool,
    fate: &mut dyn FnMut(&[u8], &mut Vec<u8>) -> Fate,
) -> Result<Option<(Vec<u8>, u64)>, ProcessError> {
    // The working buffers are the thread's, reused from request to request: no allocation,
    // no growth by copying, no fresh pages per request.
    let mut w = WORK.with(|w| w.take());
    w.clear();
    let r = rewrite_with(buf, prune, fate, &mut w);
    if w.scratch.capacity() <= KEEP_SCRATCH {
        WORK.with(|c| c.set(w));
    }
    r
}

/// The most scratch capacity a thread keeps between requests.
const KEEP_SCRATCH: usize = 2 << 20;

#[derive(Default)]
struct Work {
    /// The rewritten items, back to back.
    scratch: Vec<u8>,
    /// Per item: KEEP, DROP or the index of its range in `spans`.
    fates: Vec<u32>,
    spans: Vec<(u32, u32)>,
    /// Per scope and per resource: its new length, 0 when it is removed.
    scope_lens: Vec<usize>,
    resource_lens: Vec<usize>,
}

impl Work {
    fn clear(&mut self) {
        self.scratch.clear();
        self.fates.clear();
        self.spans.clear();
        self.scope_lens.clear();
        self.resource_lens.clear();
    }
}

thread_local! {
    static WORK: std::cell::Cell<Work> = std::cell::Cell::new(Work::default());
}

fn rewrite_with(
    buf: &Bytes,
    prune: bool,
    fate: &mut dyn FnMut(&[u8], &mut Vec<u8>) -> Fate,
    w: &mut Work,
) -> Result<Option<(Vec<u8>, u64)>, ProcessError> {
    let Work { scratch, fates, spans, scope_lens, resource_lens } = w;
    // Items usually grow a little when rewritten (an attribute added).
    scratch.reserve(buf.len() + buf.len() / 4);
    let (mut changed, mut kept) = (false, 0u64);
    for f in Fields::new(buf) {
        let f = f.map_err(bad)?;
        if f.number != 1 {
            continue;
        }
        let (mut rlen, mut scopes) = (0usize, 0usize);
        for g in Fields::new(len(&f)?) {
            let g = g.map_err(bad)?;
            if g.number != 2 {
                rlen += g.raw.len();
                continue;
            }
            let (mut slen, mut items) = (0usize, 0usize);
            for h in Fields::new(len(&g)?) {
                let h = h.map_err(bad)?;
                if h.number != 2 {
                    slen += h.raw.len();
                    continue;
                }
                let item = len(&h)?;
                let start = scratch.len();
                match fate(item, scratch) {
                    Fate::Keep => {
                        fates.push(KEEP);
                        slen += h.raw.len();
                        items += 1;
                    }
                    Fate::Drop => {
                        fates.push(DROP);
                        changed = true;
                    }
                    Fate::Rewritten => {
                        fates.push(spans.len() as u32);
                        spans.push((start as u32, scratch.len() as u32));
                        slen += wire::len_field_size(2, scratch.len() - start);
                        items += 1;
                        changed = true;
                    }
                }
            }
            kept += items as u64;
            if prune && items == 0 {
                scope_lens.push(0);
                changed = true;
            } else {
                scope_lens.push(slen);
                rlen += wire::len_field_size(2, slen);
                scopes += 1;
            }
        }
        if prune && scopes == 0 {
            resource_lens.push(0);
            changed = true;
        } else {
            resource_lens.push(rlen);
        }
    }
    if !changed {
        return Ok(None);
    }
    let total: usize = resource_lens.iter().filter(|n| **n > 0 || !prune).map(|n| wire::len_field_size(1, *n)).sum();
    let mut out = Vec::with_capacity(total + 16);
    let (mut ri, mut si, mut ii) = (0, 0, 0);
    for f in Fields::new(buf) {
        let f = f.map_err(bad)?;
        if f.number != 1 {
            out.extend_from_slice(f.raw);
            continue;
        }
        let rbuf = len(&f)?;
        let rlen = resource_lens[ri];
        ri += 1;
        if prune && rlen == 0 {
            // Skip its scopes and items.
            for g in Fields::new(rbuf).flatten().filter(|g| g.number == 2) {
                si += 1;
                ii += Fields::new(len(&g)?).flatten().filter(|h| h.number == 2).count();
            }
            continue;
        }
        wire::put_tag(&mut out, 1, WireType::Len);
        wire::put_varint(&mut out, rlen as u64);
        for g in Fields::new(rbuf) {
            let g = g.map_err(bad)?;
            if g.number != 2 {
                out.extend_from_slice(g.raw);
                continue;
            }
            let sbuf = len(&g)?;
            let slen = scope_lens[si];
            si += 1;
            let items = Fields::new(sbuf).flatten().filter(|h| h.number == 2);
            if prune && slen == 0 {
                ii += items.count();
                continue;
            }
            wire::put_tag(&mut out, 2, WireType::Len);
            wire::put_varint(&mut out, slen as u64);
            for h in Fields::new(sbuf) {
                let h = h.map_err(bad)?;
                if h.number != 2 {
                    out.extend_from_slice(h.raw);
                    continue;
                }
                let fate = fates[ii];
                ii += 1;
                match fate {
                    KEEP => out.extend_from_slice(h.raw),
                    DROP => {}
                    i => {
                        let (a, b) = spans[i as usize];
                        wire::put_len_field(&mut out, 2, &scratch[a as usize..b as usize]);
                    }
                }
            }
        }
    }
    debug_assert_eq!(out.len(), total);
    Ok(Some((out, kept)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message as _;

    fn request() -> Bytes {
        let scope = |names: &[&str]| ScopeSpans {
            spans: names.iter().map(|n| Span { name: n.to_string(), ..Default::default() }).collect(),
            schema_url: "s".into(),
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![scope(&["a", "drop"]), scope(&["drop"])],
                    schema_url: "r".into(),
                    ..Default::default()
                },
                ResourceSpans { scope_spans: vec![scope(&["drop", "drop"])], ..Default::default() },
                ResourceSpans { scope_spans: vec![scope(&["b"]), scope(&[])], ..Default::default() },
            ],
        };
        Bytes::from(req.encode_to_vec())
    }

    fn names(b: &[u8]) -> Vec<Vec<Vec<String>>> {
        let r = ExportTraceServiceRequest::decode(b).unwrap();
        r.resource_spans
            .iter()
            .map(|rs| rs.scope_spans.iter().map(|ss| ss.spans.iter().map(|s| s.name.clone()).collect()).collect())
            .collect()
    }

    fn by_name(item: &[u8], out: &mut Vec<u8>) -> Fate {
        let s = Span::decode(item).unwrap();
        match s.name.as_str() {
            "drop" => Fate::Drop,
            "b" => {
                Span { name: "B".into(), ..s }.encode(out).unwrap();
                Fate::Rewritten
            }
            _ => Fate::Keep,
        }
    }

    #[test]
    fn drops_prune_and_rewrites_are_written_once() {
        let req = request();
        let (out, kept) = rewrite(&req, true, &mut by_name).unwrap().expect("changed");
        assert_eq!(kept, 2);
        assert_eq!(names(&out), vec![vec![vec!["a".to_string()]], vec![vec!["B".to_string()]]]);
        let back = ExportTraceServiceRequest::decode(&out[..]).unwrap();
        assert_eq!(
            (back.resource_spans[0].schema_url.as_str(), back.resource_spans[0].scope_spans[0].schema_url.as_str()),
            ("r", "s")
        );
        // Without pruning (a transform), empty scopes and resources stay.
        let (out, kept) = rewrite(&req, false, &mut by_name).unwrap().expect("changed");
        assert_eq!(kept, 2);
        assert_eq!(names(&out).iter().map(Vec::len).collect::<Vec<_>>(), [2, 1, 2]);
    }

    #[test]
    fn an_unchanged_request_is_not_copied() {
        let req = request();
        assert!(rewrite(&req, false, &mut |_, _| Fate::Keep).unwrap().is_none());
        // Pruning the originally empty scope is a change, as the collector removes it too.
        let (out, kept) = rewrite(&req, true, &mut |_, _| Fate::Keep).unwrap().expect("the empty scope goes");
        assert_eq!(kept, 6);
        assert_eq!(names(&out)[2].len(), 1);
    }
}
