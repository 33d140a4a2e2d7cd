//! Bodies on the request path: streamed, never collected whole.
//!
//! Owns: the request body sent upstream (with the `max_body_bytes` limit enforced as it
//! streams) and the response body sent to the client (upstream stream or a short local answer),
//! whose end returns the upstream connection to its pool, ends the request's in-flight count and
//! writes the access log line.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::access_log::AccessRecord;
use super::server::ConnToken;
use super::state::Server;
use super::upstream::{self, Conn};

/// The request body went over the listener's `max_body_bytes`.
#[derive(Debug)]
pub struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body larger than max_body_bytes")
    }
}

impl std::error::Error for BodyTooLarge {}

/// A request body forwarded upstream.
#[derive(Debug)]
pub enum RequestBody {
    /// No body.
    Empty,
    /// The client's body, counted against a limit.
    Stream {
        /// The client's body.
        inner: Incoming,
        /// Bytes still allowed.
        remaining: u64,
    },
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Stream { inner, remaining } => {
                match Pin::new(inner).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            let n = data.len() as u64;
                            if n > *remaining {
                                // Failing the body makes hyper abort the upstream request, so
                                // the server never sees a complete one.
                                return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                            }
                            *remaining -= n;
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Stream { inner, .. } => inner.size_hint(),
        }
    }
}

/// The upstream side of one exchange, released when the response body ends or is dropped.
pub struct Exchange {
    /// The server that answers.
    pub server: std::sync::Arc<Server>,
    /// The connection, returned to the idle pool if the response was read to its end.
    pub conn: Option<Conn>,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.server.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Kind {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

/// A response body sent to the client.
pub struct ResponseBody {
    kind: Kind,
    exchange: Option<Exchange>,
    complete: bool,
    bytes: u64,
    log: Option<Box<AccessRecord>>,
    _conn: Option<ConnToken>,
}

impl ResponseBody {
    /// A short body answered by Ringway itself.
    pub fn full(data: impl Into<Bytes>) -> ResponseBody {
        let data = data.into();
        ResponseBody {
            kind: Kind::Full((!data.is_empty()).then_some(data)),
            exchange: None,
            complete: false,
            bytes: 0,
            log: None,
            _conn: None,
        }
    }

    /// An empty body.
    pub fn empty() -> ResponseBody {
        ResponseBody::full(Bytes::new())
    }

    /// The upstream response body of `exchange`.
    pub fn upstream(inner: Incoming, exchange: Exchange) -> ResponseBody {
        ResponseBody {
            kind: Kind::Upstream(inner),
            exchange: Some(exchange),
            complete: false,
            bytes: 0,
            log: None,
            _conn: None,
        }
    }

    /// Attaches what is needed at the end: the access log record and the connection token.
    pub fn finish_with(&mut self, log: Option<Box<AccessRecord>>, conn: ConnToken) {
        self.log = log;
        self._conn = Some(conn);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(data) => match data.take() {
                Some(d) => {
                    this.bytes += d.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(d))))
                }
                None => {
                    this.complete = true;
                    Poll::Ready(None)
                }
            },
            Kind::Upstream(inner) => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        this.bytes += d.len() as u64;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(None) => {
                    this.complete = true;
                    Poll::Ready(None)
                }
                other => other,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(d) => d.is_none(),
            Kind::Upstream(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream(inner) => inner.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let complete = self.complete || self.is_end_stream();
        if let Some(mut ex) = self.exchange.take()
            && complete
            && let Some(conn) = ex.conn.take()
        {
            upstream::release(ex.server.id, conn);
        }
        if let Some(log) = self.log.take() {
            log.write(self.bytes, complete);
        }
    }
}
