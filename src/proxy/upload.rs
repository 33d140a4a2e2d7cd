//! The client's request body on its way to a server, and the lingering read of a body that
//! an answer left unread.
//!
//! Owns: the upload's limit (`max_body_bytes`), its chunked re-encoding, its pending pieces and
//! their writes to the server's stream when the exchange polls it; how long an unread body is
//! drained (nginx `lingering_time` / `lingering_timeout`).
//! Must not touch: the connection's reuse or the response (`upstream.rs`).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use super::h2_server::H2RequestBody;
use bytes::{Buf, Bytes};
use http_body::Body as _;
use tokio::io::AsyncWrite;

use super::h1;
use super::request_body::RequestBody;
use super::upstream_io::UpstreamIo;

/// Why sending the request body stopped.
#[derive(Debug)]
pub enum UploadError {
    /// The body went over the listener's `max_body_bytes`.
    TooLarge,
    /// The client's body failed (the client went away or broke its framing).
    Client(super::request_body::BodyError),
    /// Writing to the server failed.
    Server(io::Error),
}

/// The client's request body on its way to the server, counted against a limit.
pub struct Upload {
    /// `None` once dropped unfinished: the rest is then drained by [`linger`].
    body: Option<RequestBody>,
    remaining: u64,
    chunked: bool,
    /// Pieces taken from the client and not yet written to the server.
    pending: VecDeque<Bytes>,
    ended: bool,
    started: bool,
    /// Writing to the server failed: the rest of the body is not sent.
    pub(super) broken: bool,
}

impl Upload {
    /// The upload of `body`, at most `limit` bytes, chunked or as is.
    pub fn new(body: RequestBody, limit: u64, chunked: bool) -> Upload {
        Upload {
            body: Some(body),
            remaining: limit,
            chunked,
            pending: VecDeque::new(),
            ended: false,
            started: false,
            broken: false,
        }
    }

    /// Some of the client's body has been taken: the request can no longer be sent again.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Moves the body forward: takes what the client sent, writes what the server accepts.
    pub(super) fn poll(
        &mut self,
        io: &mut UpstreamIo,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            while !self.pending.is_empty() {
                let mut slices = [io::IoSlice::new(&[]); 3];
                let n = self.pending.iter().zip(slices.iter_mut()).fold(0, |n, (b, s)| {
                    *s = io::IoSlice::new(b);
                    n + 1
                });
                let written = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]))
                    .map_err(UploadError::Server)?;
                if written == 0 {
                    return Poll::Ready(Err(UploadError::Server(io::ErrorKind::WriteZero.into())));
                }
                let mut left = written;
                while left > 0 {
                    let Some(front) = self.pending.front_mut() else {
                        break;
                    };
                    if front.len() <= left {
                        left -= front.len();
                        self.pending.pop_front();
                    } else {
                        front.advance(left);
                        left = 0;
                    }
                }
            }
            if self.ended || self.body.is_none() {
                // The body is written only once TLS has sent what it held back.
                ready!(io.poll_flush_held(cx)).map_err(UploadError::Server)?;
                return Poll::Ready(Ok(()));
            }
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let frame = match Pin::new(body).poll_frame(cx) {
                Poll::Ready(f) => f,
                Poll::Pending => {
                    // Waiting for the client: what was written must not wait in TLS meanwhile.
                    if let Poll::Ready(Err(e)) = io.poll_flush_held(cx) {
                        return Poll::Ready(Err(UploadError::Server(e)));
                    }
                    return Poll::Pending;
                }
            };
            match frame {
                None => {
                    self.ended = true;
                    if self.chunked {
                        self.pending.push_back(Bytes::from_static(h1::LAST_CHUNK));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Err(UploadError::Client(e))),
                Some(Ok(frame)) => {
                    // Trailers are not forwarded.
                    let Ok(data) = frame.into_data() else { continue };
                    if data.is_empty() {
                        continue;
                    }
                    self.started = true;
                    let n = data.len() as u64;
                    if n > self.remaining {
                        return Poll::Ready(Err(UploadError::TooLarge));
                    }
                    self.remaining -= n;
                    if self.chunked {
                        self.pending.push_back(h1::chunk_size_line(data.len()));
                        self.pending.push_back(data);
                        self.pending.push_back(Bytes::from_static(b"\r\n"));
                    } else {
                        self.pending.push_back(data);
                    }
                }
            }
        }
    }

    /// Whether the whole body has been written.
    pub(super) fn is_done(&self) -> bool {
        self.ended && self.pending.is_empty()
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Answered (early, or with an error) before the client finished sending: closing now
        // with its bytes unread makes the kernel reset the connection, which can destroy the
        // answer before the client reads it. Read and discard the rest for a while instead, as
        // nginx's lingering close does.
        if !self.ended
            && let Some(RequestBody::H2(body)) = self.body.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // An HTTP/1.1 client's connection drains the rest itself (`h1_server`).
            runtime.spawn(linger(body));
        }
    }
}

/// Longest time an unfinished request body is drained after its answer (nginx `lingering_time`).
const LINGER_FOR: Duration = Duration::from_secs(30);
/// Longest wait for the next piece of it (nginx `lingering_timeout`).
const LINGER_IDLE: Duration = Duration::from_secs(5);

/// Takes pieces from `next` while `more` says so, for at most [`LINGER_FOR`] in all and
/// [`LINGER_IDLE`] for each piece: the piece it stopped at, `None` if the time ran out. The
/// lingering of a client's unread body, however it is read.
pub(super) async fn for_a_while<T>(
    mut next: impl FnMut(&mut Context<'_>) -> Poll<T>,
    more: impl Fn(&T) -> bool,
) -> Option<T> {
    let until = tokio::time::Instant::now() + LINGER_FOR;
    loop {
        let deadline = (tokio::time::Instant::now() + LINGER_IDLE).min(until);
        match tokio::time::timeout_at(deadline, poll_fn(&mut next)).await {
            Ok(piece) if more(&piece) => {}
            Ok(piece) => return Some(piece),
            Err(_) => return None,
        }
    }
}

/// Reads and discards the rest of a client's body, for a while ([`for_a_while`]).
pub(super) async fn linger(mut body: H2RequestBody) {
    for_a_while(
        |cx| Pin::new(&mut body).poll_frame(cx),
        |f| matches!(f, Some(Ok(_))),
    )
    .await;
}
