//! The request body as the request path sees it, whichever side read the request: Ringway's own
//! HTTP/1.1 connection (`h1_server`) or its HTTP/2 one (`h2_server`).
//!
//! Must not touch: where the body goes (upstream.rs, upstream_h2.rs).

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::h2_server::H2RequestBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// An error reading a client's body (the client went away, or broke its framing).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Where an HTTP/1.1 connection's request body comes from: the connection itself, shared with
/// the driver that writes the response (both on the connection's own task).
///
/// Every call names the request (`generation`) the body belongs to: a body that outlives its
/// request (kept by an HTTP/2 server's stream, say) must not read the next request's bytes.
pub(super) trait BodySource {
    /// The next piece of the body, `None` at its end.
    fn poll_body(&self, generation: u32, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>>;
    /// Whether the body has been read to its end.
    fn body_done(&self, generation: u32) -> bool;
    /// Bytes of body still to come, when known.
    fn body_remaining(&self, generation: u32) -> Option<u64>;
}

/// A request body read by Ringway's own HTTP/1.1 connection.
pub struct H1Body {
    source: Rc<dyn BodySource>,
    generation: u32,
}

impl H1Body {
    pub(super) fn new(source: Rc<dyn BodySource>, generation: u32) -> H1Body {
        H1Body { source, generation }
    }
}

/// A client's request body.
pub enum RequestBody {
    /// No body.
    Empty,
    /// Read by Ringway's own HTTP/1.1 connection.
    H1(H1Body),
    /// An HTTP/2 stream's data.
    H2(H2RequestBody),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::H1(b) => b
                .source
                .poll_body(b.generation, cx)
                .map(|d| d.map(|d| d.map(Frame::data))),
            RequestBody::H2(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::H1(b) => b.source.body_done(b.generation),
            RequestBody::H2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::H1(b) => match b.source.body_remaining(b.generation) {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            RequestBody::H2(body) => body.size_hint(),
        }
    }
}
