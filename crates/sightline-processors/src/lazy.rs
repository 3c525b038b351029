//! Trace and log requests as a tree whose spans and log records stay encoded
//! ([`Slot`](sightline_ottl::slot::Slot)) until a processor needs one decoded (ADR 15).
//! Resources and scopes are decoded (a few per request) when the processor reads them
//! ([`Heads::Decode`]), else copied through as bytes, as are the items untouched by the
//! processors when the request is encoded again.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use sightline_core::pipeline::ProcessError;
use sightline_core::wire::{self, Fields, Value as W, WireType};
use sightline_ottl::slot::{Lazy, Slot};

/// Whether a processor reads resources and scopes (decoded) or not (kept as bytes; their
/// `resource` and `scope` are then `None`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Heads {
    Decode,
    Keep,
}

pub struct LazyScope<T: Lazy> {
    pub scope: Option<InstrumentationScope>,
    /// The scope field as received, when not decoded.
    raw: Option<Bytes>,
    pub items: Vec<Slot<T>>,
    /// Other fields (`schema_url`), copied through.
    other: Vec<Bytes>,
}

pub struct LazyResource<T: Lazy> {
    pub resource: Option<Resource>,
    raw: Option<Bytes>,
    pub scopes: Vec<LazyScope<T>>,
    other: Vec<Bytes>,
}

pub struct LazyRequest<T: Lazy> {
    pub resources: Vec<LazyResource<T>>,
}

pub(crate) fn bad(e: impl std::fmt::Display) -> ProcessError {
    ProcessError::Invalid(format!("cannot decode the request: {e}"))
}

pub(crate) fn len<'a>(f: &wire::Field<'a>) -> Result<&'a [u8], ProcessError> {
    match f.value {
        W::Len(b) => Ok(b),
        _ => Err(bad(format!("field {} is not length-delimited", f.number))),
    }
}

impl<T: Lazy> LazyRequest<T> {
    /// Resource list field 1, scope list field 2, items field 2 (the same numbers for
    /// `ResourceSpans`/`ScopeSpans` and `ResourceLogs`/`ScopeLogs`).
    pub fn parse(buf: &Bytes, heads: Heads) -> Result<LazyRequest<T>, ProcessError> {
        let mut resources = Vec::new();
        for f in Fields::new(buf) {
            let f = f.map_err(bad)?;
            if f.number != 1 {
                continue;
            }
            let rbuf = len(&f)?;
            let mut r = LazyResource { resource: None, raw: None, scopes: Vec::new(), other: Vec::new() };
            for g in Fields::new(rbuf) {
                let g = g.map_err(bad)?;
                match g.number {
                    1 if heads == Heads::Keep && r.raw.is_none() => r.raw = Some(buf.slice_ref(g.raw)),
                    1 if heads == Heads::Keep => r.other.push(buf.slice_ref(g.raw)),
                    1 => r.resource = Some(Resource::decode(len(&g)?).map_err(bad)?),
                    2 => {
                        let sbuf = len(&g)?;
                        // Slots are a few hundred bytes (the scan is inline): sized once.
                        let n = Fields::new(sbuf).filter(|h| h.as_ref().is_ok_and(|h| h.number == 2)).count();
                        let mut s =
                            LazyScope { scope: None, raw: None, items: Vec::with_capacity(n), other: Vec::new() };
                        for h in Fields::new(sbuf) {
                            let h = h.map_err(bad)?;
                            match h.number {
                                1 if heads == Heads::Keep && s.raw.is_none() => s.raw = Some(buf.slice_ref(h.raw)),
                                1 if heads == Heads::Keep => s.other.push(buf.slice_ref(h.raw)),
                                1 => s.scope = Some(InstrumentationScope::decode(len(&h)?).map_err(bad)?),
                                2 => s.items.push(Slot::new(buf.slice_ref(len(&h)?))),
                                _ => s.other.push(buf.slice_ref(h.raw)),
                            }
                        }
                        r.scopes.push(s);
                    }
                    _ => r.other.push(buf.slice_ref(g.raw)),
                }
            }
            resources.push(r);
        }
        Ok(LazyRequest { resources })
    }

    /// An error when an item that had to be decoded was malformed: the request is refused
    /// (HTTP 400) instead of an emptied item being sent on.
    pub fn check(&self) -> Result<(), ProcessError> {
        let bad = self.resources.iter().flat_map(|r| &r.scopes).flat_map(|s| &s.items).position(|i| i.undecodable());
        match bad {
            Some(i) => {
                Err(ProcessError::Invalid(format!("item {i} of the request is malformed: it cannot be decoded")))
            }
            None => Ok(()),
        }
    }

    /// Items not dropped.
    pub fn items(&self) -> u64 {
        self.resources.iter().flat_map(|r| &r.scopes).flat_map(|s| &s.items).filter(|i| !i.dropped).count() as u64
    }

    /// Removes dropped items, then scopes and resources left empty (as the collector's
    /// processors do).
    pub fn prune(&mut self) {
        for r in &mut self.resources {
            for s in &mut r.scopes {
                s.items.retain(|i| !i.dropped);
            }
            r.scopes.retain(|s| !s.items.is_empty());
        }
        self.resources.retain(|r| !r.scopes.is_empty());
    }

    pub fn encode(&self) -> Vec<u8> {
        // Lengths first, bottom up (each item's once), then one pass writing.
        let mut item_lens = Vec::new();
        let mut scope_lens = Vec::new();
        let mut resource_lens = Vec::with_capacity(self.resources.len());
        for r in &self.resources {
            let mut rlen = r.resource.as_ref().map_or(0, |x| wire::len_field_size(1, x.encoded_len()))
                + r.raw.as_ref().map_or(0, Bytes::len)
                + r.other.iter().map(Bytes::len).sum::<usize>();
            for s in &r.scopes {
                let mut slen = s.scope.as_ref().map_or(0, |x| wire::len_field_size(1, x.encoded_len()))
                    + s.raw.as_ref().map_or(0, Bytes::len)
                    + s.other.iter().map(Bytes::len).sum::<usize>();
                for i in s.items.iter().filter(|i| !i.dropped) {
                    let n = i.encoded_len();
                    item_lens.push(n);
                    slen += wire::len_field_size(2, n);
                }
                scope_lens.push(slen);
                rlen += wire::len_field_size(2, slen);
            }
            resource_lens.push(rlen);
        }
        let total: usize = resource_lens.iter().map(|n| wire::len_field_size(1, *n)).sum();
        let mut out = Vec::with_capacity(total);
        let (mut si, mut ii) = (0, 0);
        for (r, rlen) in self.resources.iter().zip(resource_lens) {
            wire::put_tag(&mut out, 1, WireType::Len);
            wire::put_varint(&mut out, rlen as u64);
            if let Some(res) = &r.resource {
                wire::put_tag(&mut out, 1, WireType::Len);
                wire::put_varint(&mut out, res.encoded_len() as u64);
                res.encode(&mut out).expect("a Vec grows");
            }
            if let Some(raw) = &r.raw {
                out.extend_from_slice(raw);
            }
            for s in &r.scopes {
                wire::put_tag(&mut out, 2, WireType::Len);
                wire::put_varint(&mut out, scope_lens[si] as u64);
                si += 1;
                if let Some(sc) = &s.scope {
                    wire::put_tag(&mut out, 1, WireType::Len);
                    wire::put_varint(&mut out, sc.encoded_len() as u64);
                    sc.encode(&mut out).expect("a Vec grows");
                }
                if let Some(raw) = &s.raw {
                    out.extend_from_slice(raw);
                }
                for i in s.items.iter().filter(|i| !i.dropped) {
                    i.encode_field_len(2, item_lens[ii], &mut out);
                    ii += 1;
                }
                for o in &s.other {
                    out.extend_from_slice(o);
                }
            }
            for o in &r.other {
                out.extend_from_slice(o);
            }
        }
        debug_assert_eq!(out.len(), total);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn request(spans: Vec<Span>) -> Bytes {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource::default()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope { name: "lib".into(), ..Default::default() }),
                    spans,
                    schema_url: "s".into(),
                }],
                schema_url: "r".into(),
            }],
        };
        Bytes::from(req.encode_to_vec())
    }

    #[test]
    fn untouched_items_round_trip_and_drops_prune() {
        let spans: Vec<Span> =
            (0..3u8).map(|i| Span { name: format!("s{i}"), span_id: vec![i; 8], ..Default::default() }).collect();
        let bytes = request(spans.clone());
        let kept: LazyRequest<Span> = LazyRequest::parse(&bytes, Heads::Keep).unwrap();
        assert!(kept.resources[0].resource.is_none() && kept.resources[0].scopes[0].scope.is_none());
        assert_eq!(kept.encode(), bytes[..], "resources and scopes kept as bytes: the same request");
        let mut req: LazyRequest<Span> = LazyRequest::parse(&bytes, Heads::Decode).unwrap();
        assert!(req.resources[0].resource.is_some());
        let back = ExportTraceServiceRequest::decode(&req.encode()[..]).unwrap();
        assert_eq!(back, ExportTraceServiceRequest::decode(&bytes[..]).unwrap());
        req.resources[0].scopes[0].items[1].dropped = true;
        req.prune();
        assert_eq!(req.items(), 2);
        let back = ExportTraceServiceRequest::decode(&req.encode()[..]).unwrap();
        let names: Vec<_> = back.resource_spans[0].scope_spans[0].spans.iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, ["s0", "s2"]);
        assert_eq!(back.resource_spans[0].schema_url, "r");
        assert_eq!(back.resource_spans[0].scope_spans[0].schema_url, "s");
        for i in &mut req.resources[0].scopes[0].items {
            i.dropped = true;
        }
        req.prune();
        assert!(req.encode().is_empty(), "nothing left, nothing to send");
    }

    #[test]
    fn a_malformed_item_that_must_be_decoded_refuses_the_request() {
        // A span whose attribute value is a truncated message: framing is valid at the span's
        // level (the receiver's check), but prost cannot decode it.
        let mut span = Span { name: "x".into(), ..Default::default() }.encode_to_vec();
        span.extend_from_slice(&[0x4a, 0x04, 0x12, 0x02, 0x0a, 0x05]);
        let req = {
            let mut scope = Vec::new();
            wire::put_len_field(&mut scope, 2, &span);
            let mut rs = Vec::new();
            wire::put_len_field(&mut rs, 2, &scope);
            let mut out = Vec::new();
            wire::put_len_field(&mut out, 1, &rs);
            Bytes::from(out)
        };
        let mut lazy: LazyRequest<Span> = LazyRequest::parse(&req, Heads::Decode).unwrap();
        assert!(lazy.check().is_ok(), "nothing decoded yet");
        let _ = lazy.resources[0].scopes[0].items[0].get_mut();
        assert!(lazy.check().is_err());
    }
}
