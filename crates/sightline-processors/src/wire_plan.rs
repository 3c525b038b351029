//! Running [wire plans](sightline_ottl::plan) over a trace or log request (ADR 21): one walk
//! decides each item's fate (kept as received, dropped, or rewritten) and writes the new
//! request as it goes. What is unchanged is copied as received in as few copies as possible,
//! and only once something changes: a request the plan does not change is passed on as it
//! is, not copied. A rewritten item is written straight into the new request.

use crate::lazy::bad;
use bytes::Bytes;
use sightline_core::Payload;
use sightline_core::pipeline::{ProcessError, ResourceStage};
use sightline_core::wire::{self, ResourceEditor, WireType};

/// What the plan did to one item.
pub enum Fate {
    Keep,
    Drop,
    /// The new item was written to the buffer [`Out::begin`] returned.
    Rewritten,
}

/// Runs `fate` on every item (field 2 of a scope, itself field 2 of a resource, field 1 of the
/// request: the same numbers for traces and logs). `prune`: scopes left without items and
/// resources left without scopes are removed, as the collector's filter does. `resources`:
/// the edit of the processor before (ADR 30), applied as [`wire::rewrite_resources`] would
/// have: each entry's resource replaced by what the editor returns, written first in the
/// entry. Returns the new request and its item count, or `None` when nothing changed.
pub fn rewrite(
    buf: &Bytes,
    prune: bool,
    mut resources: Option<&mut dyn ResourceEditor>,
    fate: &mut dyn FnMut(&[u8], &mut Out) -> Fate,
) -> Result<Option<(Vec<u8>, u64)>, ProcessError> {
    let mut o =
        Out { buf, out: Vec::new(), started: false, from: 0, res: Open::NONE, scope: Open::NONE, item: Open::NONE };
    let edits = resources.is_some();
    let mut scratch = Vec::new();
    let mut kept = 0u64;
    let mut p = 0;
    while p < buf.len() {
        let f0 = p;
        let (number, wt, rbuf) = next(buf, &mut p)?;
        if number != 1 {
            continue;
        }
        want_len(number, wt)?;
        let rb = p - rbuf.len();
        o.res = Open::new(1, f0, rb, rbuf.len());
        if let Some(editor) = resources.as_deref_mut() {
            let (old, _) = wire::entry_resource(rbuf, &mut scratch).map_err(|e| bad(e.to_string()))?;
            let new = editor.edit(old, rbuf);
            // The entry's header, then the new resource.
            o.emit(rb);
            wire::put_len_field(&mut o.out, 1, new);
        }
        let mut scopes = 0usize;
        let mut q = 0;
        while q < rbuf.len() {
            let g0 = q;
            let (g, gw, sbuf) = next(rbuf, &mut q)?;
            if g != 2 {
                if g == 1 && edits {
                    // The received resource: replaced above.
                    o.emit(rb + g0);
                    o.from = rb + q;
                }
                continue;
            }
            want_len(g, gw)?;
            let sb = rb + q - sbuf.len();
            o.scope = Open::new(2, rb + g0, sb, sbuf.len());
            let mut items = 0u64;
            let mut r = 0;
            while r < sbuf.len() {
                let h0 = r;
                let (h, hw, item) = next(sbuf, &mut r)?;
                if h != 2 {
                    continue;
                }
                want_len(h, hw)?;
                let (start, end) = (sb + h0, sb + r);
                o.item = Open::new(2, start, end - item.len(), item.len());
                match fate(item, &mut o) {
                    Fate::Keep => {
                        if o.item.at.is_some() {
                            // Begun, then kept: the item stays as received.
                            o.out.truncate(o.item.tag_at);
                            o.from = start;
                        }
                        items += 1;
                    }
                    Fate::Drop => {
                        if o.item.at.is_some() {
                            o.out.truncate(o.item.tag_at);
                        } else {
                            o.emit(start);
                        }
                        o.from = end;
                    }
                    Fate::Rewritten => {
                        if o.item.at.is_none() {
                            return Err(bad("a plan rewrote an item without writing it"));
                        }
                        o.item.close(&mut o.out);
                        o.from = end;
                        items += 1;
                    }
                }
            }
            o.item = Open::NONE;
            kept += items;
            let send = rb + q;
            // Pruning an empty scope (even one received empty) is a change, as the collector
            // removes it too.
            if prune && items == 0 {
                o.remove(Part::Scope, send);
            } else {
                scopes += 1;
                if o.scope.at.is_some() {
                    o.emit(send);
                    o.scope.close(&mut o.out);
                }
            }
            o.scope = Open::NONE;
        }
        if prune && scopes == 0 {
            o.remove(Part::Resource, p);
        } else if o.res.at.is_some() {
            o.emit(p);
            o.res.close(&mut o.out);
        }
        o.res = Open::NONE;
    }
    if !o.started {
        return Ok(None);
    }
    o.emit(buf.len());
    Ok(Some((o.out, kept)))
}

/// [`rewrite`] of `payload`, with `prior`'s resource edit applied as it goes when given (the
/// processor before, ADR 30): its editor, then its outcome (a refusal, its counts).
pub fn rewrite_after(
    payload: &Payload,
    prune: bool,
    prior: Option<&dyn ResourceStage>,
    fate: &mut dyn FnMut(&[u8], &mut Out) -> Fate,
) -> Result<Option<(Vec<u8>, u64)>, ProcessError> {
    let Some(stage) = prior else { return rewrite(payload.bytes(), prune, None, fate) };
    let mut written = None;
    stage.with_editor(payload, &mut |editor| {
        written = rewrite(payload.bytes(), prune, Some(editor), fate)?;
        Ok(())
    })?;
    Ok(written)
}

/// The next field of `buf` at `pos`: (number, wire type, value for LEN fields). The request's
/// framing was checked by the receiver, so an error here means a processor before this one
/// broke it.
#[inline(always)]
fn next<'a>(buf: &'a [u8], pos: &mut usize) -> Result<(u64, u8, &'a [u8]), ProcessError> {
    wire::skim_field(buf, pos).ok_or_else(|| bad("a malformed field"))
}

#[inline(always)]
fn want_len(number: u64, wt: u8) -> Result<(), ProcessError> {
    if wt == 2 { Ok(()) } else { Err(bad(format!("field {number} is not length-delimited"))) }
}

/// A resource, scope or item being walked, and its header in the new request once written.
#[derive(Clone, Copy)]
struct Open {
    number: u32,
    /// In the request: where its field starts and where its message starts.
    field: usize,
    body: usize,
    /// Length bytes reserved for its header: those of its length as received.
    reserve: usize,
    /// In the new request, once its header is written: where the tag and the reserved
    /// length bytes are.
    tag_at: usize,
    at: Option<usize>,
}

impl Open {
    const NONE: Open = Open { number: 0, field: 0, body: 0, reserve: 0, tag_at: 0, at: None };

    fn new(number: u32, field: usize, body: usize, len: usize) -> Open {
        Open { number, field, body, reserve: wire::varint_len(len as u64), tag_at: 0, at: None }
    }

    fn active(&self) -> bool {
        self.number != 0
    }

    /// Writes the tag and reserves the length.
    #[inline]
    fn open(&mut self, out: &mut Vec<u8>) {
        self.tag_at = out.len();
        wire::put_tag(out, self.number, WireType::Len);
        self.at = Some(out.len());
        // Once per item: stores of a constant size, not a call to `memset` for two bytes
        // (which both `resize` and a slice of zeros of variable length become).
        match self.reserve {
            1 => out.push(0),
            2 => out.extend_from_slice(&[0; 2]),
            3 => out.extend_from_slice(&[0; 3]),
            n => out.resize(out.len() + n, 0),
        }
    }

    /// Writes the length of what follows the header. When it takes more or fewer bytes than
    /// were reserved (an item grown past 127 bytes, say), the message moves.
    #[inline]
    fn close(&self, out: &mut Vec<u8>) {
        let Some(at) = self.at else { return };
        let body = at + self.reserve;
        let len = out.len() - body;
        let need = wire::varint_len(len as u64);
        if need > self.reserve {
            out.resize(out.len() + need - self.reserve, 0);
            out.copy_within(body..body + len, at + need);
        } else if need < self.reserve {
            out.copy_within(body..body + len, at + need);
            out.truncate(at + need + len);
        }
        let mut v = len as u64;
        for b in &mut out[at..at + need] {
            *b = (v as u8 & 0x7f) | if v >= 0x80 { 0x80 } else { 0 };
            v >>= 7;
        }
    }
}

#[derive(Clone, Copy)]
enum Part {
    Resource,
    Scope,
}

/// The new request, written once something changes. Until then, and between changes, the
/// bytes walked stay pending (`from` up to the walk's position) and are copied at once.
pub struct Out<'a> {
    buf: &'a [u8],
    out: Vec<u8>,
    started: bool,
    /// The first byte of the request not yet in `out` (or skipped).
    from: usize,
    res: Open,
    scope: Open,
    item: Open,
}

impl Out<'_> {
    /// The new request up to `cursor` of the received one: what is pending copied, and the
    /// open resource and scope given headers of their own (their lengths written when they
    /// close).
    fn emit(&mut self, cursor: usize) {
        if !self.started {
            self.started = true;
            // Items usually grow a little when rewritten (an attribute added).
            self.out.reserve(self.buf.len() + self.buf.len() / 4 + 16);
        }
        for open in [&mut self.res, &mut self.scope] {
            if open.active() && open.at.is_none() {
                self.out.extend_from_slice(&self.buf[self.from..open.field]);
                open.open(&mut self.out);
                self.from = open.body;
            }
        }
        self.out.extend_from_slice(&self.buf[self.from..cursor]);
        self.from = cursor;
    }

    /// Leaves out the open scope or resource, which ends at `end` in the request.
    fn remove(&mut self, part: Part, end: usize) {
        let open = match part {
            Part::Resource => self.res,
            Part::Scope => self.scope,
        };
        if open.at.is_some() {
            self.out.truncate(open.tag_at);
        } else {
            // Its header is not written: write what comes before it (its resource's header
            // included, for a scope).
            if let Part::Resource = part {
                self.res = Open::NONE;
            }
            self.scope = Open::NONE;
            self.emit(open.field);
        }
        self.from = end;
    }

    /// The buffer to write the current item's new message to (no tag or length). A fate that
    /// calls it and returns [`Fate::Rewritten`] has written the new item there; one that
    /// returns [`Fate::Keep`] or [`Fate::Drop`] has its writes discarded.
    pub fn begin(&mut self) -> &mut Vec<u8> {
        if self.item.at.is_none() {
            self.emit(self.item.field);
            self.item.open(&mut self.out);
        }
        &mut self.out
    }
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

    fn by_name(item: &[u8], out: &mut Out) -> Fate {
        let s = Span::decode(item).unwrap();
        match s.name.as_str() {
            "drop" => Fate::Drop,
            "b" => {
                Span { name: "B".into(), ..s }.encode(out.begin()).unwrap();
                Fate::Rewritten
            }
            // Begun, then kept or dropped as received: what was written is discarded.
            "k" | "d" => {
                out.begin().extend_from_slice(b"junk");
                if s.name == "k" { Fate::Keep } else { Fate::Drop }
            }
            _ => Fate::Keep,
        }
    }

    #[test]
    fn drops_prune_and_rewrites_are_written_once() {
        let req = request();
        let (out, kept) = rewrite(&req, true, None, &mut by_name).unwrap().expect("changed");
        assert_eq!(kept, 2);
        assert_eq!(names(&out), vec![vec![vec!["a".to_string()]], vec![vec!["B".to_string()]]]);
        let back = ExportTraceServiceRequest::decode(&out[..]).unwrap();
        assert_eq!(
            (back.resource_spans[0].schema_url.as_str(), back.resource_spans[0].scope_spans[0].schema_url.as_str()),
            ("r", "s")
        );
        // Without pruning (a transform), empty scopes and resources stay.
        let (out, kept) = rewrite(&req, false, None, &mut by_name).unwrap().expect("changed");
        assert_eq!(kept, 2);
        assert_eq!(names(&out).iter().map(Vec::len).collect::<Vec<_>>(), [2, 1, 2]);
    }

    #[test]
    fn an_unchanged_request_is_not_copied() {
        let req = request();
        assert!(rewrite(&req, false, None, &mut |_, _| Fate::Keep).unwrap().is_none());
        // Pruning the originally empty scope is a change, as the collector removes it too.
        let (out, kept) = rewrite(&req, true, None, &mut |_, _| Fate::Keep).unwrap().expect("the empty scope goes");
        assert_eq!(kept, 6);
        assert_eq!(names(&out)[2].len(), 1);
    }

    /// The fate of `by_name` applied to decoded messages, pruned as `rewrite` prunes.
    fn expected(req: &ExportTraceServiceRequest, prune: bool) -> ExportTraceServiceRequest {
        let mut r = req.clone();
        for rs in &mut r.resource_spans {
            for ss in &mut rs.scope_spans {
                ss.spans.retain(|s| s.name != "drop" && s.name != "d");
                for s in &mut ss.spans {
                    match s.name.as_str() {
                        "b" => s.name = "B".into(),
                        "grow" => s.name = "g".repeat(300),
                        n if n.len() == 200 => s.name = "shrunk".into(),
                        _ => {}
                    }
                }
            }
            if prune {
                rs.scope_spans.retain(|ss| !ss.spans.is_empty());
            }
        }
        if prune {
            r.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
        }
        r
    }

    fn by_name_sized(item: &[u8], out: &mut Out) -> Fate {
        let s = Span::decode(item).unwrap();
        match s.name.as_str() {
            "grow" => {
                Span { name: "g".repeat(300), ..s }.encode(out.begin()).unwrap();
                Fate::Rewritten
            }
            n if n.len() == 200 => {
                Span { name: "shrunk".into(), ..s }.encode(out.begin()).unwrap();
                Fate::Rewritten
            }
            _ => by_name(item, out),
        }
    }

    #[test]
    fn random_requests_are_rewritten_as_the_decoded_messages_would_be() {
        // A small xorshift: the cases are the same on every run.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let long = "l".repeat(200);
        let names = ["a", "drop", "b", "k", "d", "grow", long.as_str(), "x"];
        for case in 0..3000 {
            let mut req = ExportTraceServiceRequest::default();
            for _ in 0..rand(4) {
                let mut rs = ResourceSpans { schema_url: ["", "r"][rand(2) as usize].into(), ..Default::default() };
                for _ in 0..rand(4) {
                    // Sometimes enough spans for a scope of more than 16 KiB.
                    let n = if rand(10) == 0 { 60 + rand(40) } else { rand(5) };
                    let spans = (0..n)
                        .map(|_| Span { name: names[rand(names.len() as u64) as usize].into(), ..Default::default() })
                        .collect();
                    let schema_url = ["", "s"][rand(2) as usize].into();
                    rs.scope_spans.push(ScopeSpans { spans, schema_url, ..Default::default() });
                }
                req.resource_spans.push(rs);
            }
            let buf = Bytes::from(req.encode_to_vec());
            for prune in [false, true] {
                let want = expected(&req, prune);
                let kept: usize = want.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
                match rewrite(&buf, prune, None, &mut by_name_sized).unwrap() {
                    // Exactly prost's encoding: fields in order, every length minimal.
                    Some((out, n)) => {
                        assert_eq!(out, want.encode_to_vec(), "case {case}, prune {prune}");
                        assert_eq!(n as usize, kept, "case {case}");
                    }
                    None => assert_eq!(want, req, "case {case}, prune {prune}: a change was missed"),
                }
            }
        }
    }
}
