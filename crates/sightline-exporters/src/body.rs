//! A request body whose data is a chain of buffers: the gRPC message header and the batch's
//! payloads, sent as they are. The body hands h2 the whole chain as one piece of data, so h2
//! cuts it into DATA frames and writes each frame with one vectored write (its 9-byte frame
//! header and up to 63 of the chain's buffers): nothing is copied into a frame buffer first,
//! and there are no more writes than for one contiguous buffer (ADR 33). A body that yielded
//! each buffer as its own piece of data would cost a write per buffer.

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Buffers read in order as one; empty buffers are never kept.
#[derive(Debug, Default)]
pub(crate) struct ChainBuf {
    chunks: VecDeque<Bytes>,
    remaining: usize,
}

impl ChainBuf {
    pub(crate) fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let chunks: VecDeque<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let remaining = chunks.iter().map(Bytes::len).sum();
        ChainBuf { chunks, remaining }
    }
}

impl Buf for ChainBuf {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| &c[..])
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, c) in dst.iter_mut().zip(&self.chunks) {
            *slot = IoSlice::new(c);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of a ChainBuf ({cnt} > {})", self.remaining);
        self.remaining -= cnt;
        while cnt > 0 {
            let Some(front) = self.chunks.front_mut() else { return };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.chunks.pop_front();
        }
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        // Within the first buffer (h2 asks for small frames this way): a slice of it, no copy.
        match self.chunks.front_mut() {
            Some(front) if len < front.len() => {
                self.remaining -= len;
                front.split_to(len)
            }
            Some(front) if len == front.len() => {
                self.remaining -= len;
                self.chunks.pop_front().unwrap_or_default()
            }
            _ => {
                assert!(len <= self.remaining, "copy_to_bytes past the end of a ChainBuf");
                let mut out = bytes::BytesMut::with_capacity(len);
                let mut want = len;
                while want > 0 {
                    let c = self.chunk();
                    let take = c.len().min(want);
                    out.extend_from_slice(&c[..take]);
                    self.advance(take);
                    want -= take;
                }
                out.freeze()
            }
        }
    }
}

/// A request body of one piece of data, a [`ChainBuf`]; its exact size hint gives hyper the
/// `Content-Length`.
#[derive(Debug, Default)]
pub(crate) struct ChainBody {
    data: Option<ChainBuf>,
    len: u64,
}

impl ChainBody {
    pub(crate) fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let data = ChainBuf::new(chunks);
        let len = data.remaining() as u64;
        ChainBody { data: (len > 0).then_some(data), len }
    }
}

impl Body for ChainBody {
    type Data = ChainBuf;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<ChainBuf>, Infallible>>> {
        Poll::Ready(self.data.take().map(|d| {
            self.len = 0;
            Ok(Frame::data(d))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> ChainBuf {
        ChainBuf::new([Bytes::from_static(b"ab"), Bytes::new(), Bytes::from_static(b"cde"), Bytes::from_static(b"f")])
    }

    #[test]
    fn reads_as_the_concatenation() {
        let mut b = chain();
        assert_eq!(b.remaining(), 6);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(b.chunks_vectored(&mut slices), 3, "the empty buffer is dropped");
        assert_eq!(b.chunks_vectored(&mut slices[..2]), 2, "no more than the slots given");
        b.advance(3);
        assert_eq!(b.chunk(), b"de");
        assert_eq!(b.remaining(), 3);
        assert_eq!(b.copy_to_bytes(1), Bytes::from_static(b"d"));
        assert_eq!(b.copy_to_bytes(2), Bytes::from_static(b"ef"), "across buffers");
        assert_eq!(b.remaining(), 0);
        assert!(b.chunk().is_empty());
        let mut b = chain();
        assert_eq!(b.copy_to_bytes(2), Bytes::from_static(b"ab"), "a whole buffer");
        b.advance(4);
        assert_eq!(b.remaining(), 0);
    }

    #[test]
    fn take_keeps_the_vectored_chunks() {
        // h2 sends a DATA frame as `Take` of the data: its vectored chunks must stay whole
        // buffers up to the frame's limit, or each frame would be written in many writes.
        let b = chain().take(4);
        let mut slices = [IoSlice::new(&[]); 8];
        let n = b.chunks_vectored(&mut slices);
        let got: Vec<&[u8]> = slices[..n].iter().map(|s| &s[..]).collect();
        assert_eq!(got, [&b"ab"[..], &b"cd"[..]]);
    }

    #[tokio::test]
    async fn one_frame_with_the_exact_length() {
        use http_body_util::BodyExt as _;
        let mut body = ChainBody::new([Bytes::from_static(b"\0\0\0\0\x03"), Bytes::from_static(b"xyz")]);
        assert_eq!(body.size_hint().exact(), Some(8));
        let frame = body.frame().await.expect("a frame").expect("infallible");
        let mut data = frame.into_data().expect("data");
        assert_eq!(data.copy_to_bytes(8), Bytes::from_static(b"\0\0\0\0\x03xyz"));
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
        assert!(ChainBody::new([Bytes::new()]).is_end_stream());
    }
}
