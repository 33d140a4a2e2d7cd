//! `send_timeout` for HTTP/2 streams: a response whose stream (or connection) flow-control
//! window stays at zero is cut, as nginx's `send_timeout` cuts a client that stops reading.
//!
//! The HTTP/2 server (`h2_server`) stops polling a response body while the client's window is closed, so a stream is
//! "waiting" from the moment its body handed a data frame until it is asked for the next one.
//! Each waiting stream is counted in the bucket of the coarse tick it began waiting in; the
//! connection's timer advances the tick and closes the connection when a bucket old enough is
//! not empty. That costs two relaxed atomic operations per data frame and no clock read. (The
//! socket itself staying full, for HTTP/1.1 and HTTP/2 alike, is `ConnState`'s `write_blocked`.)
//!
//! Must not touch: what the body carries (body.rs) or how the connection is served (server.rs).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::body::ResponseBody;
use super::conn_state::ConnState;

/// Ticks per `send_timeout`: a stalled stream is found after 1 to 1.25 times the timeout.
pub const TICKS: u32 = 4;
/// Buckets kept; more than `TICKS + 1`, so the buckets still young never alias an old one.
const RING: u32 = 8;

/// The HTTP/2 streams of one connection that wait for the client's window, by tick.
#[derive(Debug, Default)]
pub struct StreamWaits {
    tick: AtomicU32,
    waiting: [AtomicU32; RING as usize],
}

impl StreamWaits {
    fn bucket(&self, tick: u32) -> &AtomicU32 {
        &self.waiting[(tick % RING) as usize]
    }

    /// A stream begins waiting; returns the tick to end its wait with.
    fn begin_wait(&self) -> u32 {
        let tick = self.tick.load(Ordering::Relaxed);
        self.bucket(tick).fetch_add(1, Ordering::Relaxed);
        tick
    }

    fn end_wait(&self, tick: u32) {
        self.bucket(tick).fetch_sub(1, Ordering::Relaxed);
    }

    /// Moves to tick `now`; `true` if a stream has waited for at least `TICKS` ticks.
    pub fn advance(&self, now: u32) -> bool {
        self.tick.store(now, Ordering::Relaxed);
        if now < TICKS {
            return false;
        }
        let oldest = now.saturating_sub(RING - 1);
        (oldest..=now - TICKS).any(|t| self.bucket(t).load(Ordering::Relaxed) > 0)
    }
}

/// The length of one tick for `send_timeout`.
pub fn tick_length(send_timeout: Duration) -> Duration {
    (send_timeout / TICKS).max(Duration::from_millis(1))
}

/// A response body on an HTTP/2 connection, counted as waiting while the server holds its last
/// data frame back for want of window.
pub struct Watched {
    inner: ResponseBody,
    state: Arc<ConnState>,
    waiting: Option<u32>,
}

impl Watched {
    /// Watches `inner`, a response of the HTTP/2 connection whose state is `state`.
    ///
    /// A body with data to come waits from the start: it is polled only once the stream has
    /// window, so a client that opens none never lets it be polled at all.
    pub fn new(inner: ResponseBody, state: Arc<ConnState>) -> Watched {
        let waiting = match state.streams.as_deref() {
            Some(waits) if !inner.is_end_stream() => Some(waits.begin_wait()),
            _ => None,
        };
        Watched {
            inner,
            state,
            waiting,
        }
    }

    fn stop_waiting(&mut self) {
        if let (Some(tick), Some(waits)) = (self.waiting.take(), self.state.streams.as_deref()) {
            waits.end_wait(tick);
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.stop_waiting();
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        this.stop_waiting();
        let res = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &res
            && frame.is_data()
            && !this.inner.is_end_stream()
            && let Some(waits) = this.state.streams.as_deref()
        {
            this.waiting = Some(waits.begin_wait());
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_found_after_ticks_of_waiting() {
        let w = StreamWaits::default();
        w.advance(3);
        let t = w.begin_wait();
        assert_eq!(t, 3);
        for now in 3..3 + TICKS {
            assert!(!w.advance(now), "tick {now}");
        }
        assert!(w.advance(3 + TICKS));
        w.end_wait(t);
        assert!(!w.advance(3 + TICKS + 1));
    }

    #[test]
    fn streams_that_move_on_are_never_found() {
        let w = StreamWaits::default();
        for now in 0..100 {
            assert!(!w.advance(now));
            let t = w.begin_wait();
            w.end_wait(t);
        }
    }

    #[test]
    fn a_late_timer_still_finds_an_old_wait() {
        let w = StreamWaits::default();
        w.advance(10);
        let _ = w.begin_wait();
        assert!(w.advance(10 + TICKS + 2));
    }
}
