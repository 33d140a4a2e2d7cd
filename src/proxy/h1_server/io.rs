//! One HTTP/1.x client connection's socket and read buffer, shared by the connection's driver
//! (heads in, responses out) and the request body being read (on the same task, so the cell is
//! never borrowed twice: every borrow lasts one poll).
//!
//! Must not touch: what a head means (head.rs), what the response says (write.rs).

use std::any::Any;
use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::Upgraded;
use super::head::{RequestBodyFraming, RequestHead};
use crate::proxy::conn_state::TrackedStream;
use crate::proxy::h1::{BodyDecoder, Chunk, Step};
use crate::proxy::request_body::{BodyError, BodySource, H1Body};
use crate::proxy::static_files::FileStream;

/// Bytes read at a time from a socket with nothing buffered: on the stack, so that a connection
/// waiting for its next request holds no buffer.
const STACK_READ: usize = 1024;
/// Room made in the buffer before reading a body.
const BODY_READ: usize = 16 * 1024;

/// Where the connection stands once a response has been written.
pub(super) enum Wire {
    /// The request was read to its end: the next one may follow.
    Clean,
    /// The client may still be sending a body nobody read.
    BodyUnread,
    /// The body's framing broke: nothing more can be read as a request.
    Broken,
    /// The client waits for a `100 Continue` it will not get: its body may never come.
    AwaitsContinue,
}

/// The connection's socket, its read buffer and the framing of the request body being read.
pub(super) struct Io<S> {
    /// `None` once a tunnel took the connection.
    stream: Option<TrackedStream<S>>,
    /// Bytes read and not yet used: empty (and without capacity) between requests.
    pub(super) buf: BytesMut,
    body: BodyDecoder,
    /// Counts requests, so that a body that outlives its request cannot read the next one.
    generation: u32,
    /// `Some(n)`: the client waits for `100 Continue`, of which `n` bytes were written.
    continue_written: Option<usize>,
    /// Reading the body failed: the framing is lost.
    body_failed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io<S> {
    pub(super) fn new(stream: TrackedStream<S>) -> Io<S> {
        Io {
            stream: Some(stream),
            buf: BytesMut::new(),
            body: BodyDecoder::Done,
            generation: 0,
            continue_written: None,
            body_failed: false,
        }
    }

    fn stream(&mut self) -> io::Result<Pin<&mut TrackedStream<S>>> {
        match self.stream.as_mut() {
            Some(s) => Ok(Pin::new(s)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Starts reading `head`'s body; the generation its body reads under.
    pub(super) fn begin_request(&mut self, head: &RequestHead) -> Option<u32> {
        self.body = match head.body {
            RequestBodyFraming::None => BodyDecoder::Done,
            RequestBodyFraming::Length(n) => BodyDecoder::Length(n),
            RequestBodyFraming::Chunked => BodyDecoder::Chunked(Chunk::Size),
        };
        self.body_failed = false;
        self.continue_written = (head.expect_continue && !self.body.is_done()).then_some(0);
        Some(self.generation)
    }

    /// Where the request body stands now that the response has been written.
    pub(super) fn wire(&self) -> Wire {
        if self.body_failed {
            Wire::Broken
        } else if self.body.is_done() {
            Wire::Clean
        } else if self.continue_written == Some(0) {
            Wire::AwaitsContinue
        } else {
            Wire::BodyUnread
        }
    }

    /// Ends the request whose response was written; a buffer with nothing left in it is freed.
    pub(super) fn end_request(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.continue_written = None;
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// The connection for a tunnel, with what the client sent after its head.
    pub(super) fn take_upgraded(&mut self) -> Option<Upgraded> {
        let stream = self.stream.take()?;
        Some(Upgraded {
            io: Box::new(stream),
            read: self.buf.split().freeze(),
        })
    }

    /// Reads more of a head. With nothing buffered (between requests), the bytes land on the
    /// stack first and a buffer of `start` bytes is taken only once some arrived; a graceful stop
    /// then ends the connection instead of waiting. `Ok(0)`: closed.
    pub(super) fn poll_read_head(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
        start: usize,
        draining: &std::cell::Cell<bool>,
    ) -> Poll<io::Result<usize>> {
        if self.buf.is_empty() {
            if draining.get() {
                return Poll::Ready(Ok(0));
            }
            let mut stack = [MaybeUninit::<u8>::uninit(); STACK_READ];
            let mut read = ReadBuf::uninit(&mut stack);
            ready!(self.stream()?.poll_read(cx, &mut read))?;
            let got = read.filled();
            if got.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let mut buf = BytesMut::with_capacity(start.max(got.len()));
            buf.extend_from_slice(got);
            self.buf = buf;
            return Poll::Ready(Ok(got.len()));
        }
        if self.buf.len() == self.buf.capacity() {
            // Doubling: a head grows to `max_header_bytes` in a few steps.
            let grow = self.buf.capacity().clamp(start, max.max(start));
            self.buf.reserve(grow);
        }
        let Io { stream, buf, .. } = self;
        let Some(stream) = stream.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf)
    }

    /// Writes `data[*at..]`, all of it.
    pub(super) fn poll_write_all(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
        at: &mut usize,
    ) -> Poll<io::Result<()>> {
        while *at < data.len() {
            let n = ready!(self.stream()?.poll_write(cx, &data[*at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *at += n;
        }
        Poll::Ready(Ok(()))
    }

    /// The client's socket when it is plain TCP: not TLS (whose records Ringway must encrypt)
    /// and not a stream with bytes put back in front (`prefixed.rs`). Only such a socket can
    /// take a file with `sendfile`.
    pub(super) fn plain_tcp(&self) -> Option<&TcpStream> {
        let stream = self.stream.as_ref()?;
        (&stream.inner as &dyn Any).downcast_ref::<TcpStream>()
    }

    /// Corks a plain TCP socket (`TCP_CORK`, nginx's `tcp_nopush`) while a file is sent with
    /// `sendfile`, so that the head and the file leave in full segments, and uncorks it after.
    pub(super) fn cork(&self, on: bool) {
        if let Some(tcp) = self.plain_tcp() {
            // Only a matter of segment sizes: a socket that refuses still sends everything.
            let _ = socket2::SockRef::from(tcp).set_tcp_cork(on);
        }
    }

    /// Sends the next piece of `file` with `sendfile` once the socket can take it: the bytes
    /// sent, `Ok(0)` when the rest must go through the body's frames (not plain TCP, or not in
    /// the page cache, or done). A socket that stays full counts for `send_timeout`.
    pub(super) fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        file: &mut FileStream,
    ) -> Poll<io::Result<usize>> {
        let Some(stream) = self.stream.as_ref() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let Some(tcp) = (&stream.inner as &dyn Any).downcast_ref::<TcpStream>() else {
            return Poll::Ready(Ok(0));
        };
        loop {
            let ready = tcp.poll_write_ready(cx);
            stream.state.note_write(&ready);
            ready!(ready)?;
            match tcp.try_io(Interest::WRITABLE, || file.send_to(tcp.as_fd())) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
    }

    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream()?.poll_flush(cx)
    }

    pub(super) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream()?.poll_shutdown(cx)
    }

    /// Reads and throws away what arrives; `Ok(0)` at the client's close.
    pub(super) fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buf = BytesMut::new();
        let mut stack = [MaybeUninit::<u8>::uninit(); STACK_READ];
        let mut read = ReadBuf::uninit(&mut stack);
        ready!(self.stream()?.poll_read(cx, &mut read))?;
        Poll::Ready(Ok(read.filled().len()))
    }

    /// The next piece of the request body, read by its framing.
    pub(super) fn poll_body_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        loop {
            match self.body.step(&mut self.buf) {
                Ok(Step::Data(d)) => return Poll::Ready(Some(Ok(d))),
                Ok(Step::Done) => return Poll::Ready(None),
                Ok(Step::NeedMore) => {}
                Err(e) => {
                    self.body_failed = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            // The client holds its body back until told to send it.
            if let Some(mut at) = self.continue_written {
                let res = self.poll_write_all(cx, super::write::CONTINUE, &mut at);
                self.continue_written = Some(at);
                ready!(res)?;
                ready!(self.poll_flush(cx))?;
                self.continue_written = None;
            }
            if self.buf.capacity() - self.buf.len() < STACK_READ {
                let want = self.body.remaining().map_or(BODY_READ, |n| {
                    usize::try_from(n)
                        .unwrap_or(BODY_READ)
                        .clamp(STACK_READ, BODY_READ)
                });
                self.buf.reserve(want);
            }
            let Io { stream, buf, .. } = self;
            let Some(stream) = stream.as_mut() else {
                return Poll::Ready(Some(Err("the connection was taken over".into())));
            };
            let n = match ready!(tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf)) {
                Ok(n) => n,
                Err(e) => {
                    self.body_failed = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            };
            if n == 0 {
                self.body_failed = true;
                return Poll::Ready(Some(Err("the client closed before the end of its body".into())));
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> BodySource for RefCell<Io<S>> {
    fn poll_body(&self, generation: u32, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        let mut io = self.borrow_mut();
        if io.generation != generation {
            return Poll::Ready(Some(Err("the request's exchange has ended".into())));
        }
        let res = io.poll_body_data(cx);
        if matches!(res, Poll::Ready(Some(Err(_)))) {
            io.body_failed = true;
        }
        res.map(|r| r.map(|r| r.map_err(|e| e as BodyError)))
    }

    fn body_done(&self, generation: u32) -> bool {
        let io = self.borrow();
        io.generation != generation || io.body.is_done()
    }

    fn body_remaining(&self, generation: u32) -> Option<u64> {
        let io = self.borrow();
        if io.generation != generation {
            return Some(0);
        }
        io.body.remaining()
    }
}

/// The body of a request read from `conn`, for generation `generation` of its requests.
pub(super) fn client_body<S>(conn: &Rc<RefCell<Io<S>>>, generation: u32) -> H1Body
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    H1Body::new(conn.clone(), generation)
}
