//! Upstream connections: opened on demand, kept alive, reused per server and per worker, and the
//! HTTP/1.1 exchange on them.
//!
//! Owns: the idle-connection pool of each worker thread (no lock: a worker runs on one thread and
//! owns its pool), the opening of new connections with the pool's connect timeout, and the I/O of
//! one exchange: writing the request head and body, reading the response head and body.
//! Connections of a `send_proxy` pool carry one client's address in their PROXY header, so they
//! are private: pooled under (server, client address and port) and reused only for that client,
//! as HAProxy does with `send-proxy` (its connections are then private to the session).
//! Must not touch: balancing or retries; the caller decides which server and whether to retry.
//!
//! The exchange runs inside the client connection's task, driven by the request and then by the
//! response body as the client side asks for it: no second task, no channel between the two
//! sides. The message rules (framing, keep-alive, chunked coding) are in `h1.rs`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use tokio::io::AsyncWrite;

use super::h1::{self, BodyDecoder, BodyFraming, Chunk, ResponseError, ResponseHead, Step};
pub use super::upload::{Upload, UploadError};
pub use super::upstream_io::{ConnectError, Dial, UpstreamIo};
use super::upstream_translate::{TrailerSection, trailer_section};

/// An upstream connection: the socket, the bytes read but not yet used, and the response timer.
///
/// The timer lives as long as the connection and is reset for each request: tokio extends a
/// later deadline in place, so a request costs no timer-wheel insertion and removal.
pub struct Conn {
    /// The stream: TCP, or TLS over TCP.
    pub io: UpstreamIo,
    /// Bytes read from the socket and not yet consumed.
    pub buf: BytesMut,
    /// Fires when the current request's response head is late.
    pub timer: Pin<Box<tokio::time::Sleep>>,
}

impl Conn {
    /// The connection is idle, holds no unread bytes, and the server has not closed it (as far
    /// as the last readiness event tells, so without a system call in the common case).
    fn is_reusable(&mut self) -> bool {
        self.buf.is_empty() && self.io.is_idle_open()
    }

    /// Reads more bytes into `buf`; `Ok(0)` at the end of the stream.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // Large enough for a typical response head and body in one read, and grown rather than
        // moved when a body streams through.
        if self.buf.capacity() - self.buf.len() < 2048 {
            self.buf.reserve(16 * 1024);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

/// Idle connections kept per server and worker; more are closed when released.
const MAX_IDLE_PER_SERVER: usize = 1024;

/// How often each worker closes the pooled connections nobody has used for a while.
pub const IDLE_SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Sweeps a pooled connection survives unused: with a sweep every 30 s, an idle connection is
/// closed after 60 to 90 s, like nginx's upstream `keepalive_timeout` of 60 s.
const IDLE_SWEEPS_KEPT: u64 = 2;

/// Server ids are small sequential integers: hashing them again would only cost time.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Idle connections per key (a server id, or a server id and a client address), each with the
/// sweep count at which it went idle.
///
/// Time is counted in sweeps rather than read from the clock, so returning a connection costs
/// no clock read.
struct IdlePool<K, T, S = BuildHasherDefault<IdHasher>> {
    sweeps: u64,
    lists: HashMap<K, Vec<(u64, T)>, S>,
}

impl<K: Hash + Eq, T, S: BuildHasher + Default> IdlePool<K, T, S> {
    fn new() -> IdlePool<K, T, S> {
        IdlePool {
            sweeps: 0,
            lists: HashMap::default(),
        }
    }

    /// The most recently returned item for `id` that is `usable`; unusable ones are dropped.
    fn take(&mut self, id: K, mut usable: impl FnMut(&mut T) -> bool) -> Option<T> {
        let list = self.lists.get_mut(&id)?;
        while let Some((_, mut item)) = list.pop() {
            if usable(&mut item) {
                return Some(item);
            }
        }
        None
    }

    /// Keeps `item` for `id`, unless `id` already has as many as allowed.
    fn put(&mut self, id: K, item: T) {
        let list = self.lists.entry(id).or_default();
        if list.len() < MAX_IDLE_PER_SERVER {
            list.push((self.sweeps, item));
        }
    }

    /// Counts a sweep and drops the items idle for more than [`IDLE_SWEEPS_KEPT`] sweeps.
    fn sweep(&mut self) {
        self.sweeps += 1;
        let oldest_kept = self.sweeps.saturating_sub(IDLE_SWEEPS_KEPT);
        self.lists.retain(|_, list| {
            // Oldest first: items are pushed and popped at the end.
            let stale = list.partition_point(|(since, _)| *since < oldest_kept);
            list.drain(..stale);
            !list.is_empty()
        });
    }

    #[cfg(test)]
    fn len(&self, id: K) -> usize {
        self.lists.get(&id).map_or(0, Vec::len)
    }
}

thread_local! {
    static IDLE: RefCell<IdlePool<u64, Conn>> = RefCell::new(IdlePool::new());
    /// Connections that carry a client's address (PROXY header), by server and client.
    static PRIVATE: RefCell<IdlePool<(u64, SocketAddr), Conn, RandomState>> = RefCell::new(IdlePool::new());
}

/// Takes an idle connection to server `id` that is still open, if any; `private`: one opened for
/// that client only.
pub fn checkout(id: u64, private: Option<SocketAddr>) -> Option<Conn> {
    match private {
        None => IDLE.with(|idle| idle.borrow_mut().take(id, Conn::is_reusable)),
        Some(client) => PRIVATE.with(|idle| idle.borrow_mut().take((id, client), Conn::is_reusable)),
    }
}

/// Returns a connection whose last exchange ended cleanly.
pub fn release(id: u64, private: Option<SocketAddr>, conn: Conn) {
    match private {
        None => IDLE.with(|idle| idle.borrow_mut().put(id, conn)),
        Some(client) => PRIVATE.with(|idle| idle.borrow_mut().put((id, client), conn)),
    }
}

/// Closes this worker's pooled connections that have not been used for a while; called every
/// [`IDLE_SWEEP_EVERY`].
pub fn sweep_idle() {
    IDLE.with(|idle| idle.borrow_mut().sweep());
    PRIVATE.with(|idle| idle.borrow_mut().sweep());
    super::upstream_h2::sweep_idle();
}

/// Opens a new connection to a server.
pub async fn connect(dial: &Dial<'_>) -> Result<Conn, ConnectError> {
    let io = super::upstream_io::open(dial).await?;
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
    Ok(Conn {
        io,
        buf: BytesMut::new(),
        timer: Box::pin(tokio::time::sleep_until(far)),
    })
}

/// Why an exchange failed before the response head arrived.
#[derive(Debug)]
pub enum SendError {
    /// Nothing of the request was written: it may go to any server.
    Unsent(io::Error),
    /// The connection closed or broke before any byte of a response.
    NoResponse(io::Error),
    /// The connection broke in the middle of the response head.
    Broken(io::Error),
    /// The response was not valid HTTP/1.1.
    Response(ResponseError),
    /// The client's body went over `max_body_bytes`.
    BodyTooLarge,
    /// The client's body failed.
    Client(super::request_body::BodyError),
    /// The response head did not arrive within the response timeout.
    Timeout,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Unsent(e) => write!(f, "request not sent: {e}"),
            SendError::NoResponse(e) => write!(f, "no response: {e}"),
            SendError::Broken(e) => write!(f, "response broken off: {e}"),
            SendError::Response(e) => e.fmt(f),
            SendError::BodyTooLarge => f.write_str("request body larger than max_body_bytes"),
            SendError::Client(e) => write!(f, "client body: {e}"),
            SendError::Timeout => f.write_str("response timed out"),
        }
    }
}

/// Writes a request and reads its response head, sending the body (if any) meanwhile; gives up
/// when the connection's timer fires.
///
/// The body is sent while the response is awaited, not before it, because a server may answer
/// early or stream its answer while the request still arrives. An upload that has not finished
/// when the head arrives is left in `upload` for the response body to finish.
pub async fn send(
    conn: &mut Conn,
    head: &[u8],
    upload: &mut Option<Upload>,
    head_request: bool,
) -> Result<ResponseHead, SendError> {
    let mut written = 0;
    let mut got_bytes = false;
    let result = poll_fn(|cx| {
        if conn.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(SendError::Timeout));
        }
        while written < head.len() {
            match ready!(Pin::new(&mut conn.io).poll_write(cx, &head[written..])) {
                Ok(0) => return Poll::Ready(Err(SendError::NoResponse(io::ErrorKind::WriteZero.into()))),
                Ok(n) => written += n,
                Err(e) if written == 0 => return Poll::Ready(Err(SendError::Unsent(e))),
                Err(e) => return Poll::Ready(Err(SendError::NoResponse(e))),
            }
        }
        // Not awaited: a server may answer before it reads all of the request.
        if let Poll::Ready(Err(e)) = conn.io.poll_flush_held(cx) {
            return Poll::Ready(Err(SendError::NoResponse(e)));
        }
        if let Some(u) = upload.as_mut()
            && !u.is_done()
            && !u.broken
        {
            match u.poll(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(UploadError::TooLarge)) => return Poll::Ready(Err(SendError::BodyTooLarge)),
                Poll::Ready(Err(UploadError::Client(e))) => return Poll::Ready(Err(SendError::Client(e))),
                // The server stopped reading; it may still have answered, so read on.
                Poll::Ready(Err(UploadError::Server(e))) => {
                    tracing::debug!("request body not fully sent: {e}");
                    u.broken = true;
                }
                Poll::Pending => {}
            }
        }
        loop {
            match h1::parse_response_head(&mut conn.buf, head_request) {
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(SendError::Response(e))),
            }
            match ready!(conn.poll_read_more(cx)) {
                Ok(0) if !got_bytes => {
                    return Poll::Ready(Err(SendError::NoResponse(io::ErrorKind::UnexpectedEof.into())));
                }
                Ok(0) => return Poll::Ready(Err(SendError::Broken(io::ErrorKind::UnexpectedEof.into()))),
                Ok(_) => got_bytes = true,
                Err(e) if !got_bytes => return Poll::Ready(Err(SendError::NoResponse(e))),
                Err(e) => return Poll::Ready(Err(SendError::Broken(e))),
            }
        }
    })
    .await;
    // A broken upload stays: it keeps the connection out of the pool afterwards.
    if upload.as_ref().is_some_and(Upload::is_done) {
        *upload = None;
    }
    result
}

/// A response body read from the server as the client side asks for it.
pub struct UpstreamBody {
    conn: Conn,
    /// The client a private connection belongs to (`send_proxy` pools).
    private: Option<SocketAddr>,
    decoder: BodyDecoder,
    upload: Option<Upload>,
    keep_alive: bool,
    failed: bool,
    /// The trailer fields of a chunked body, once read, until handed on.
    trailers: Option<Box<http::HeaderMap>>,
}

/// Whether the decoder's next step reaches a chunked body's last chunk: `Some(Some(at))` when
/// its trailer section starts at `buf[at..]`, `Some(None)` when more bytes must be read to know,
/// `None` otherwise (most calls: a look at one byte).
fn trailers_at(decoder: BodyDecoder, buf: &[u8]) -> Option<Option<usize>> {
    let start = match decoder {
        BodyDecoder::Chunked(Chunk::Trailers(0)) => return Some(Some(0)),
        BodyDecoder::Chunked(Chunk::Size) => 0,
        BodyDecoder::Chunked(Chunk::DataEnd) if buf.starts_with(b"\r\n") => 2,
        _ => return None,
    };
    // The last chunk's size is zero: "0", or more zeros.
    if buf.get(start) != Some(&b'0') {
        return None;
    }
    match httparse::parse_chunk_size(&buf[start..]) {
        Ok(httparse::Status::Complete((used, 0))) => Some(Some(start + used)),
        Ok(httparse::Status::Complete(_)) | Err(_) => None,
        Ok(httparse::Status::Partial) => Some(None),
    }
}

impl UpstreamBody {
    /// The body, delimited by `framing`, of a response whose head was just read from `conn`.
    pub fn new(
        conn: Conn,
        private: Option<SocketAddr>,
        framing: BodyFraming,
        keep_alive: bool,
        upload: Option<Upload>,
    ) -> UpstreamBody {
        UpstreamBody {
            conn,
            private,
            decoder: BodyDecoder::new(framing),
            trailers: None,
            upload,
            keep_alive,
            failed: false,
        }
    }

    /// The next piece of the body, `None` at its end.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        if let Some(u) = self.upload.as_mut()
            && !u.is_done()
            && !u.broken
        {
            match u.poll(&mut self.conn.io, cx) {
                Poll::Ready(Ok(())) | Poll::Pending => {}
                // The client's body broke or grew too large after the response began: the
                // server holds an incomplete request, so the response cannot be trusted to end.
                Poll::Ready(Err(UploadError::TooLarge | UploadError::Client(_))) => {
                    self.failed = true;
                    return Poll::Ready(Some(Err(io::Error::other("request body failed"))));
                }
                Poll::Ready(Err(UploadError::Server(e))) => {
                    tracing::debug!("request body not fully sent: {e}");
                    u.broken = true;
                }
            }
        }
        loop {
            // The decoder skips trailer fields line by line; they are read here first, whole,
            // so that an HTTP/2 client gets them (the message rules stay in h1.rs).
            let mut need_more = false;
            if let Some(at) = trailers_at(self.decoder, &self.conn.buf) {
                match at.map(|at| trailer_section(&self.conn.buf[at..])) {
                    Some(TrailerSection::Fields(t)) => self.trailers = Some(Box::new(t)),
                    Some(TrailerSection::Incomplete) | None => need_more = true,
                    Some(TrailerSection::None) => {}
                }
            }
            match if need_more {
                Ok(Step::NeedMore)
            } else {
                self.decoder.step(&mut self.conn.buf)
            } {
                Ok(Step::Data(d)) => return Poll::Ready(Some(Ok(d))),
                Ok(Step::Done) => return Poll::Ready(None),
                Ok(Step::NeedMore) => {}
                Err(e) => {
                    self.failed = true;
                    return Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, e))));
                }
            }
            match ready!(self.conn.poll_read_more(cx)) {
                Ok(0) if self.decoder == BodyDecoder::UntilClose => {
                    self.decoder = BodyDecoder::Done;
                    self.keep_alive = false;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.failed = true;
                    return Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into())));
                }
                Ok(_) => {}
                Err(e) => {
                    self.failed = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    /// The body has been read to its end and its trailers, if any, handed on.
    pub fn is_end_stream(&self) -> bool {
        self.decoder.is_done() && self.trailers.is_none()
    }

    /// The trailer fields of the body, once it has ended.
    pub fn take_trailers(&mut self) -> Option<http::HeaderMap> {
        if !self.decoder.is_done() {
            return None;
        }
        self.trailers.take().map(|t| *t)
    }

    /// Bytes of body left, when known.
    pub fn remaining(&self) -> Option<u64> {
        self.decoder.remaining()
    }

    /// The connection and the client it is private to, if the exchange ended cleanly and it
    /// can carry another request.
    pub fn into_reusable(self) -> Option<(Conn, Option<SocketAddr>)> {
        let end = h1::ExchangeEnd {
            body_done: self.decoder.is_done(),
            head_allows: self.keep_alive,
            failed: self.failed,
            request_sent: self.upload.as_ref().is_none_or(Upload::is_done),
            leftover: !self.conn.buf.is_empty(),
        };
        h1::reusable_after_exchange(end).then_some((self.conn, self.private))
    }

    /// The connection and what was read of it beyond the head, for a protocol switch.
    pub fn into_conn(self) -> Conn {
        self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_most_recent_usable_item() {
        let mut pool: IdlePool<u64, i32> = IdlePool::new();
        pool.put(1, 10);
        pool.put(1, 11);
        pool.put(1, 12);
        pool.put(2, 20);
        assert_eq!(pool.take(1, |n| *n != 12), Some(11), "12 is unusable and dropped");
        assert_eq!(pool.len(1), 1);
        assert_eq!(pool.take(2, |_| true), Some(20));
        assert_eq!(pool.take(2, |_| true), None);
        assert_eq!(pool.take(3, |_| true), None);
    }

    #[test]
    fn idle_items_expire_after_two_sweeps() {
        let mut pool: IdlePool<u64, &str> = IdlePool::new();
        pool.put(1, "old");
        pool.sweep();
        pool.put(1, "newer");
        pool.sweep();
        assert_eq!(
            pool.len(1),
            2,
            "nothing has been idle for more than two sweeps yet"
        );
        pool.sweep();
        assert_eq!(pool.len(1), 1, "the first item went idle three sweeps ago");
        assert_eq!(pool.take(1, |_| true), Some("newer"));
        pool.put(1, "again");
        pool.sweep();
        pool.sweep();
        pool.sweep();
        assert_eq!(pool.len(1), 0);
        assert!(pool.lists.is_empty(), "empty lists are removed");
    }

    #[test]
    fn the_last_chunk_is_found_before_the_decoder_passes_it() {
        let size = BodyDecoder::Chunked(Chunk::Size);
        let end = BodyDecoder::Chunked(Chunk::DataEnd);
        assert_eq!(trailers_at(size, b"0\r\nx: 1\r\n\r\n"), Some(Some(3)));
        assert_eq!(trailers_at(size, b"000;ext=1\r\n\r\n"), Some(Some(11)));
        assert_eq!(trailers_at(end, b"\r\n0\r\n\r\n"), Some(Some(5)));
        assert_eq!(trailers_at(size, b"0"), Some(None), "more must be read to know");
        assert_eq!(trailers_at(size, b"0a\r\n"), None, "a chunk of ten bytes");
        assert_eq!(trailers_at(size, b"5\r\nhello"), None);
        assert_eq!(trailers_at(BodyDecoder::Length(5), b"0\r\n"), None);
        assert_eq!(
            trailers_at(BodyDecoder::Chunked(Chunk::Trailers(0)), b""),
            Some(Some(0))
        );
    }

    #[test]
    fn private_items_are_kept_per_server_and_client() {
        let mut pool: IdlePool<(u64, SocketAddr), &str, RandomState> = IdlePool::new();
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:5001".parse().unwrap();
        pool.put((1, a), "for a");
        assert_eq!(pool.take((1, b), |_| true), None, "another client gets nothing");
        assert_eq!(pool.take((2, a), |_| true), None, "nor another server");
        assert_eq!(pool.take((1, a), |_| true), Some("for a"));
    }

    #[test]
    fn keeps_at_most_the_limit_per_server() {
        let mut pool: IdlePool<u64, usize> = IdlePool::new();
        for i in 0..MAX_IDLE_PER_SERVER + 10 {
            pool.put(7, i);
        }
        assert_eq!(pool.len(7), MAX_IDLE_PER_SERVER);
    }
}
