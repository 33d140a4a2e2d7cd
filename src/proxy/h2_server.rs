//! Ringway's HTTP/2 server side of client connections (TLS with ALPN `h2`, and cleartext with
//! prior knowledge), on the h2 crate directly.
//!
//! A connection's streams are futures inside the connection's own task rather than tasks of
//! their own (hyper's way): a request costs no task spawn, no cross-task wake-up, and the
//! responses that complete together are written in the same pass over the connection. Under
//! callgrind that is 6.7 % fewer user-space instructions per request than hyper's server on the
//! same h2 crate (docs/benchmarks.md, "Ringway's own HTTP/2 server").
//!
//! Owns: the life of one HTTP/2 client connection after its prelude (handshake, accepting
//! streams, sending each answer with flow control, cancelling on the client's reset, graceful
//! stop). Must not touch: routing and forwarding (forward.rs), timeouts' bookkeeping
//! (conn_state.rs, send_timeout.rs, and `drive` in server.rs, which runs this connection).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker, ready};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;
use h2::server::{Connection, Handshake, SendResponse};
use h2::{RecvStream, SendStream};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn_state::{ConnState, TrackedStream};
use super::forward::{self, Answer, ConnCtx};
use super::request_body::{BodyError, RequestBody};
use super::send_timeout::Watched;

/// Streams a client may have open at once on one HTTP/2 connection (nginx: 128, HAProxy: 100).
pub const H2_MAX_STREAMS: u32 = 256;

/// The HTTP/2 settings of a listener's client connections, with the limits that keep one client
/// from costing the others (docs/operations.md). Windows and buffers are hyper's server defaults,
/// which Ringway used before it served HTTP/2 itself.
pub(super) fn settings(limits: &crate::config::Limits) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.initial_window_size(1024 * 1024)
        .initial_connection_window_size(1024 * 1024)
        .max_frame_size(16 * 1024)
        .max_send_buffer_size(400 * 1024)
        .max_concurrent_streams(H2_MAX_STREAMS)
        // Streams the client resets before they are served: over 20 is the rapid reset attack
        // (CVE-2023-44487), answered with GOAWAY ENHANCE_YOUR_CALM.
        .max_pending_accept_reset_streams(20)
        // Streams Ringway had to reset for the client's errors.
        .max_local_error_reset_streams(Some(1024))
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    b
}

/// One HTTP/2 client connection, as `server::drive` runs it.
pub(super) struct H2Connection<I> {
    phase: Phase<I>,
    /// The streams being answered.
    streams: FuturesUnordered<StreamTask>,
    ctx: Rc<ConnCtx>,
    /// What the h2 connection itself is polled with (`ConnWake`), made once.
    conn_waker: Waker,
    wake: Arc<ConnWake>,
    /// A graceful stop asked for before the handshake finished.
    stop_pending: bool,
}

enum Phase<I> {
    Handshaking(Handshake<TrackedStream<I>, Bytes>),
    Serving(Connection<TrackedStream<I>, Bytes>),
}

/// Passes over the connection and its streams in one poll before others get a turn.
const PASSES: usize = 4;

/// The waker of the h2 connection itself, apart from its streams' (`FuturesUnordered` gives
/// each its own): the connection is polled (its socket read, its queued frames written) only
/// when it has work, not whenever a stream's server answered.
///
/// The wake-ups that matter most come from inside the task's own poll: every response a stream
/// sends wakes the connection to write it. Those are noted and handled before the poll ends,
/// not passed on to the task, which would otherwise be polled again for nothing after every
/// answer and never let the worker wait for events.
struct ConnWake {
    /// The connection has work.
    woken: AtomicBool,
    /// The task is polling: a wake-up now is seen before the poll returns.
    polling: AtomicBool,
    task: AtomicWaker,
}

impl Wake for ConnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SeqCst on both flags, here and in the poll: each side stores one flag and then loads
        // the other, and a weaker pair may let both loads see the old values (a lost wake-up,
        // were one ever to come from another thread).
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            self.task.wake();
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> H2Connection<I> {
    /// Starts the server side of the handshake on `io` (the client's preface is read by it).
    pub(super) fn new(io: TrackedStream<I>, settings: &h2::server::Builder, ctx: Rc<ConnCtx>) -> Self {
        let wake = Arc::new(ConnWake {
            woken: AtomicBool::new(true),
            polling: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        H2Connection {
            phase: Phase::Handshaking(settings.handshake(io)),
            streams: FuturesUnordered::new(),
            ctx,
            conn_waker: Waker::from(wake.clone()),
            wake,
            stop_pending: false,
        }
    }

    /// Sends GOAWAY, finishes the streams in flight and accepts no more.
    pub(super) fn shut_down(&mut self) {
        match &mut self.phase {
            Phase::Handshaking(_) => self.stop_pending = true,
            Phase::Serving(conn) => {
                conn.graceful_shutdown();
                // The GOAWAY is written by the next poll of the connection.
                self.wake.wake_by_ref();
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Future for H2Connection<I> {
    type Output = Result<(), h2::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Phase::Handshaking(hs) = &mut this.phase {
            let mut conn = ready!(Pin::new(hs).poll(cx))?;
            if this.stop_pending {
                conn.graceful_shutdown();
            }
            this.phase = Phase::Serving(conn);
        }
        let Phase::Serving(conn) = &mut this.phase else {
            return Poll::Pending;
        };
        let wake = &*this.wake;
        wake.task.register(cx.waker());
        for _ in 0..PASSES {
            wake.polling.store(true, Ordering::SeqCst);
            if wake.woken.swap(false, Ordering::SeqCst) {
                // Accepting drives the connection: it reads the client's frames and writes
                // what the streams queued.
                let mut conn_cx = Context::from_waker(&this.conn_waker);
                loop {
                    match conn.poll_accept(&mut conn_cx) {
                        Poll::Ready(Some(Ok((req, respond)))) => {
                            this.streams.push(StreamTask::new(req, respond, &this.ctx));
                        }
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                        Poll::Ready(None) => return Poll::Ready(Ok(())),
                        Poll::Pending => break,
                    }
                }
            }
            while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx) {}
            wake.polling.store(false, Ordering::SeqCst);
            // Streams that answered woke the connection to write their frames.
            if !wake.woken.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        // More work than one poll should do (or tokio's budget for the task is spent): come
        // back after the other tasks had their turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// One stream's answer: waiting for it, then sending its body as the client's window allows.
struct StreamTask {
    respond: SendResponse<Bytes>,
    state: StreamState,
}

enum StreamState {
    /// The request path is working on the answer.
    Answering {
        answer: Answer,
        state: Arc<ConnState>,
    },
    /// The head is sent; the body goes as the client's window allows. (Not boxed: most
    /// responses get here, and the state is made once per stream anyway.)
    Sending(Sending),
    Done,
}

/// A response body on its way, with the piece that waits for window.
struct Sending {
    tx: SendStream<Bytes>,
    body: Watched,
    waiting: Option<(Bytes, bool)>,
}

impl StreamTask {
    fn new(req: Request<RecvStream>, respond: SendResponse<Bytes>, ctx: &Rc<ConnCtx>) -> StreamTask {
        let (parts, recv) = req.into_parts();
        let body = H2RequestBody::new(recv, content_length(&parts.headers));
        let answer = forward::handle(Request::from_parts(parts, RequestBody::H2(body)), ctx);
        let state = ctx.state.clone();
        StreamTask {
            respond,
            state: StreamState::Answering { answer, state },
        }
    }
}

impl Future for StreamTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                StreamState::Answering { answer, state } => {
                    let Poll::Ready(Ok(resp)) = answer.as_mut().poll(cx) else {
                        // A client that resets the stream cancels the request (and frees its
                        // upstream connection) at once.
                        if let Poll::Ready(reason) = this.respond.poll_reset(cx) {
                            tracing::debug!("HTTP/2 stream reset by the client: {reason:?}");
                            this.state = StreamState::Done;
                            return Poll::Ready(());
                        }
                        return Poll::Pending;
                    };
                    let (mut parts, body) = resp.into_parts();
                    let body = Watched::new(body, state.clone());
                    prepare_head(&mut parts.headers, &body);
                    let end = body.is_end_stream();
                    let head = Response::from_parts(parts, ());
                    match this.respond.send_response(head, end) {
                        Ok(tx) if !end => {
                            this.state = StreamState::Sending(Sending {
                                tx,
                                body,
                                waiting: None,
                            });
                        }
                        Ok(_) => {
                            this.state = StreamState::Done;
                            return Poll::Ready(());
                        }
                        Err(e) => {
                            tracing::debug!("HTTP/2 response head not sent: {e}");
                            this.respond.send_reset(h2::Reason::INTERNAL_ERROR);
                            this.state = StreamState::Done;
                            return Poll::Ready(());
                        }
                    }
                }
                StreamState::Sending(s) => {
                    let res = ready!(s.poll_send(cx));
                    if let Err(e) = res {
                        tracing::debug!("HTTP/2 response body: {e}");
                    }
                    this.state = StreamState::Done;
                    return Poll::Ready(());
                }
                StreamState::Done => return Poll::Ready(()),
            }
        }
    }
}

/// What HTTP/2 requires of a response head and what hyper's server added: no
/// connection-specific fields (RFC 9113 8.2.2), a `Date`, and the length when the body knows it.
fn prepare_head(headers: &mut HeaderMap, body: &Watched) {
    // One pass over the names: a lookup by name costs a hash each, and most heads need nothing.
    let (mut has_date, mut has_length, mut forbidden) = (false, false, false);
    for name in headers.keys() {
        has_date |= name == header::DATE;
        has_length |= name == header::CONTENT_LENGTH;
        forbidden |= super::headers::is_connection_specific(name);
    }
    if forbidden {
        super::headers::remove_connection_specific(headers);
    }
    if !has_date {
        let mut date = super::h1_server::write::date_value();
        // A new value every second: kept out of HPACK's table (`headers::mark_unrepeated`).
        date.set_sensitive(true);
        headers.insert(header::DATE, date);
    }
    if !has_length
        && !body.is_end_stream()
        && let Some(len) = body.size_hint().exact()
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
}

impl Sending {
    /// Sends the body to its end. As hyper does, a body is polled only once the stream has
    /// window for what it gave last, so a client that opens none is never sent more than one
    /// piece (`send_timeout` watches such a stream).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), h2::Error>> {
        loop {
            if let Poll::Ready(reason) = self.tx.poll_reset(cx)? {
                return Poll::Ready(Err(reason.into()));
            }
            if let Some((data, end)) = self.waiting.take() {
                while self.tx.capacity() == 0 {
                    match self.tx.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(0))) => {}
                        Poll::Ready(Some(Ok(_))) => break,
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                        Poll::Ready(None) => return Poll::Ready(Err(h2::Reason::STREAM_CLOSED.into())),
                        Poll::Pending => {
                            self.waiting = Some((data, end));
                            return Poll::Pending;
                        }
                    }
                }
                self.tx.send_data(data, end)?;
                if end {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let end = self.body.is_end_stream();
                        if data.is_empty() {
                            // Needs no window: an explicit end of stream goes at once.
                            self.tx.send_data(data, end)?;
                            if end {
                                return Poll::Ready(Ok(()));
                            }
                            continue;
                        }
                        // A claim of one byte, as hyper's: h2 raises it to what is buffered,
                        // and a stream waiting for window pins no more of the connection's.
                        self.tx.reserve_capacity(1);
                        self.waiting = Some((data, end));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.tx.reserve_capacity(0);
                            self.tx.send_trailers(trailers)?;
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
                Some(Err(e)) => {
                    // The server's body broke off: the client must not take it as whole.
                    tracing::debug!("HTTP/2 response body broke off: {e}");
                    self.tx.send_reset(h2::Reason::INTERNAL_ERROR);
                    return Poll::Ready(Ok(()));
                }
                None => {
                    self.tx.send_data(Bytes::new(), true)?;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// The value of a request's `Content-Length`, when it has exactly one valid value.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()?.trim().parse().ok()
}

/// A request body arriving on an HTTP/2 stream.
pub struct H2RequestBody {
    recv: RecvStream,
    /// Bytes still to come, when `Content-Length` told.
    remaining: Option<u64>,
    data_done: bool,
}

impl H2RequestBody {
    fn new(recv: RecvStream, length: Option<u64>) -> H2RequestBody {
        H2RequestBody {
            recv,
            remaining: length,
            data_done: false,
        }
    }
}

impl Body for H2RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // The data is taken: the client may send as much more.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(n) = self.remaining.as_mut() {
                        *n = n.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // The client ended the stream early but meant it (it has the answer it needs).
                Some(Err(e)) if matches!(e.reason(), Some(h2::Reason::NO_ERROR | h2::Reason::CANCEL)) => {
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
