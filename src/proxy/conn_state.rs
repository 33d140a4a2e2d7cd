//! The state of one client connection that its timeouts read: when a request head began, when
//! the connection went idle, whether the client stopped reading (`send_timeout`), and the
//! stream wrapper that notes these as bytes move.
//!
//! Must not touch: serving requests (server.rs, forward.rs).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::config::Limits;

/// Liveness of one client connection, read by its header and idle timeouts.
///
/// Atomics rather than cells because hyper's upgrade support needs a `Send` socket; they are
/// only ever touched from the connection's own worker thread, so they are uncontended.
#[derive(Debug)]
pub struct ConnState {
    opened: Instant,
    in_flight: AtomicU32,
    /// Milliseconds since `opened` + 1 when a request head began to arrive; 0 = none.
    head_started: AtomicU64,
    /// Milliseconds since `opened` when the last response ended.
    idle_since: AtomicU64,
    /// Milliseconds since `opened` + 1 when a write to the client first found its socket full;
    /// 0 = the last write went through. `send_timeout` runs from it.
    write_blocked: AtomicU64,
    /// HTTP/2 only: the response streams waiting for the client's flow-control window.
    pub(super) streams: Option<Box<super::send_timeout::StreamWaits>>,
}

/// Marks one request of a connection as in flight until dropped (with its response body).
#[derive(Debug)]
pub struct ConnToken(Arc<ConnState>);

impl ConnState {
    pub(super) fn new(h2: bool) -> ConnState {
        ConnState {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            head_started: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            streams: h2.then(Box::default),
        }
    }

    /// When the connection opened.
    pub(super) fn opened(&self) -> Instant {
        self.opened
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request arrived: it is in flight until the token drops.
    pub fn begin(self: &Arc<Self>) -> ConnToken {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
        ConnToken(self.clone())
    }

    fn note_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0 && self.head_started.load(Ordering::Relaxed) == 0 {
            self.head_started.store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    /// Notes whether a write to the client went through or found the socket full.
    pub(super) fn note_write<T>(&self, res: &Poll<T>) {
        let blocked = self.write_blocked.load(Ordering::Relaxed);
        match (res.is_pending(), blocked) {
            (true, 0) => self.write_blocked.store(self.now_ms() + 1, Ordering::Relaxed),
            (false, b) if b != 0 => self.write_blocked.store(0, Ordering::Relaxed),
            _ => {}
        }
    }

    /// When the connection must close if nothing changes, given the limits.
    pub(super) fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let blocked = match self.write_blocked.load(Ordering::Relaxed) {
            0 => None,
            b => Some(self.opened + Duration::from_millis(b - 1) + limits.send_timeout),
        };
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return blocked;
        }
        let quiet = match self.head_started.load(Ordering::Relaxed) {
            0 => {
                self.opened
                    + Duration::from_millis(self.idle_since.load(Ordering::Relaxed))
                    + limits.idle_timeout
            }
            started => self.opened + Duration::from_millis(started - 1) + limits.header_timeout,
        };
        Some(blocked.map_or(quiet, |b| b.min(quiet)))
    }

    /// Whether the socket has stayed full for `send_timeout` by `now`.
    pub(super) fn send_timed_out(&self, limits: &Limits, now: Instant) -> bool {
        match self.write_blocked.load(Ordering::Relaxed) {
            0 => false,
            b => self.opened + Duration::from_millis(b - 1) + limits.send_timeout <= now,
        }
    }
}

impl Drop for ConnToken {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle_since.store(self.0.now_ms(), Ordering::Relaxed);
        }
    }
}

/// A client stream (TCP or TLS) that notes when a request head starts arriving on an idle
/// connection.
pub(super) struct TrackedStream<S> {
    pub(super) inner: S,
    pub(super) state: Arc<ConnState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.note_read();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.state.note_write(&res);
        res
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.state.note_write(&res);
        res
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // A TLS stream writes its buffered records here; a full socket shows up here too.
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_flush(cx);
        this.state.note_write(&res);
        res
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
