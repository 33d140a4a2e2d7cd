//! Bodies on the request path: streamed, never collected whole.
//!
//! Owns: the response body sent to the client (an HTTP/1.1 or HTTP/2 server's stream, a file
//! of a static route, or a short local answer), whose
//! end returns the upstream connection to its pool, ends the request's in-flight count, counts
//! the answer in the live figures and writes the access log line. (The request body's way
//! upstream is `upload::Upload`.)

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use super::access_log::AccessRecord;
use super::server::ConnToken;
use super::state::Server;
use super::static_files::FileStream;
use super::stats::{Observation, RouteStats, Stamp};
use super::upstream::{self, UpstreamBody};
use super::upstream_h2::H2Body;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::sync::Arc;

/// The server side of one exchange: counted in flight until the response body ends or is dropped.
pub struct Exchange {
    /// The server that answers.
    pub server: std::sync::Arc<Server>,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.server.request_ended();
    }
}

/// What the end of a request counts: once, when its response body ends or is dropped.
pub struct Tally {
    /// The route's figures (or those of requests no route matched).
    pub route: Arc<RouteStats>,
    /// The server that answered, when the body is not its stream (a response timeout).
    pub server: Option<Arc<Server>>,
    /// When the request head was received.
    pub start: Stamp,
    /// The status answered.
    pub status: u16,
}

impl Tally {
    /// Counts the answer: the route's histogram and code counters, the server's latency and
    /// 5xx count. Atomics only; returns the duration for the access log.
    fn record(self, exchange: Option<&Server>) -> std::time::Duration {
        let elapsed = self.start.until(Stamp::now());
        let observed = Observation::of(elapsed);
        let server = exchange.or(self.server.as_deref());
        self.route
            .record(server.map(|s| (s.id, s.name.as_str())), self.status, observed);
        if let Some(s) = server {
            s.latency.add(observed);
            if self.status >= 500 {
                s.responses_5xx.fetch_add(1, Ordering::Relaxed);
            }
        }
        elapsed
    }
}

enum Kind {
    Upstream(Box<UpstreamBody>),
    /// From an HTTP/2 server: data and trailers pass through.
    H2(Box<H2Body>),
    /// A static route's file, read from disk as it is sent.
    File(Box<FileStream>),
    Full(Option<Bytes>),
}

/// A response body sent to the client.
pub struct ResponseBody {
    kind: Kind,
    exchange: Option<Exchange>,
    complete: bool,
    bytes: u64,
    log: Option<Box<AccessRecord>>,
    tally: Option<Tally>,
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
            tally: None,
            _conn: None,
        }
    }

    /// An empty body.
    pub fn empty() -> ResponseBody {
        ResponseBody::full(Bytes::new())
    }

    /// The upstream response body of `exchange`.
    pub fn upstream(inner: Box<UpstreamBody>, exchange: Exchange) -> ResponseBody {
        ResponseBody {
            kind: Kind::Upstream(inner),
            exchange: Some(exchange),
            complete: false,
            bytes: 0,
            log: None,
            tally: None,
            _conn: None,
        }
    }

    /// The response body of `exchange` with an HTTP/2 server.
    pub fn h2(inner: Box<H2Body>, exchange: Exchange) -> ResponseBody {
        ResponseBody {
            kind: Kind::H2(inner),
            exchange: Some(exchange),
            complete: false,
            bytes: 0,
            log: None,
            tally: None,
            _conn: None,
        }
    }

    /// A file streamed from disk.
    pub fn file(stream: FileStream) -> ResponseBody {
        ResponseBody {
            kind: Kind::File(Box::new(stream)),
            exchange: None,
            complete: false,
            bytes: 0,
            log: None,
            tally: None,
            _conn: None,
        }
    }

    /// The file of a static route's answer, for a writer that can send it with `sendfile`;
    /// the bytes it sends that way are counted with [`ResponseBody::count_sent`].
    pub fn file_stream(&mut self) -> Option<&mut FileStream> {
        match &mut self.kind {
            Kind::File(stream) => Some(stream),
            _ => None,
        }
    }

    /// Counts `n` bytes of the body sent by other means than its frames (`sendfile`).
    pub fn count_sent(&mut self, n: u64) {
        self.bytes += n;
    }

    /// Attaches what is needed at the end: the access log record, what to count and the
    /// connection token.
    pub fn finish_with(&mut self, log: Option<Box<AccessRecord>>, tally: Tally, conn: ConnToken) {
        self.log = log;
        self.tally = Some(tally);
        self._conn = Some(conn);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::io::Error;

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
            Kind::Upstream(inner) => match inner.poll_data(cx) {
                Poll::Ready(Some(Ok(d))) => {
                    this.bytes += d.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(d))))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) if let Some(t) = inner.take_trailers() => {
                    Poll::Ready(Some(Ok(Frame::trailers(t))))
                }
                Poll::Ready(None) => {
                    this.complete = true;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
            Kind::File(stream) => match stream.poll_chunk(cx) {
                Poll::Ready(Some(Ok(d))) => {
                    this.bytes += d.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(d))))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    this.complete = true;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
            Kind::H2(inner) => match inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        this.bytes += d.len() as u64;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    this.complete = true;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(d) => d.is_none(),
            Kind::Upstream(inner) => inner.is_end_stream(),
            Kind::H2(inner) => inner.is_end_stream(),
            Kind::File(stream) => stream.remaining() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream(inner) => match inner.remaining() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            Kind::H2(inner) => inner.size_hint(),
            Kind::File(stream) => SizeHint::with_exact(stream.remaining()),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let complete = self.complete || self.is_end_stream();
        if let Some(tally) = self.tally.take() {
            let elapsed = tally.record(self.exchange.as_ref().map(|e| &*e.server));
            if let Some(log) = self.log.as_mut() {
                log.total = Some(elapsed);
            }
        }
        let kind = std::mem::replace(&mut self.kind, Kind::Full(None));
        if let Some(ex) = self.exchange.take()
            && let Kind::Upstream(inner) = kind
            && let Some((conn, private)) = inner.into_reusable()
        {
            upstream::release(ex.server.id, private, conn);
        }
        if let Some(log) = self.log.take() {
            log.write(self.bytes, complete);
        }
    }
}
