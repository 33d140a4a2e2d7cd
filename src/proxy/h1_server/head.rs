//! Request heads from clients over HTTP/1.x: where a head ends in the bytes read so far, and
//! the one place that decides whether a head is acceptable and how its body is framed
//! (RFC 9112 sections 2 to 7, as a proxy must enforce them).
//!
//! Must not touch: sockets, timers, the request path. Every function works on bytes already
//! read, so the rules are unit-, property- and fuzz-tested without I/O.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, Version};

/// How a request's body is delimited on the client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBodyFraming {
    /// No body.
    None,
    /// `Content-Length: n` (n > 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head the framing rules accept.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target (origin, absolute or asterisk form).
    pub uri: Uri,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The header fields as received (names lower-cased by `http`), `Host` included.
    pub headers: HeaderMap,
    /// How the body that follows the head is delimited.
    pub body: RequestBodyFraming,
    /// The client lets the connection carry another request after this one (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` field: the client asks to switch protocols.
    pub upgrade: bool,
}

/// Why a head is refused, and the status to answer with (the connection is then closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 414, 431, 417, 501 or 505.
    pub status: StatusCode,
    /// For the debug log: what was wrong.
    pub reason: &'static str,
}

/// Where the head stands in the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadEnd {
    /// The head is the first `n` bytes (its empty line included).
    Complete(usize),
    /// No end yet, and the head may still grow.
    Partial,
    /// No end within `max_header_bytes`: refused (414 while the request line itself has not
    /// ended, 431 after).
    TooLarge(Refusal),
}

/// Finds the end of the head in `buf`. `scanned` is how many bytes of `buf` an earlier call
/// already searched (0 the first time): only the new bytes (and the three before them) are
/// searched again, so a head that arrives one byte at a time costs linear work.
pub fn find_head_end(buf: &[u8], scanned: usize, max_header_bytes: usize) -> HeadEnd {
    let _ = (buf, scanned, max_header_bytes);
    todo!("issue 14: head.rs")
}

/// Parses and checks a complete head (exactly the bytes [`find_head_end`] delimited). Header
/// values are slices of `head`, not copies.
pub fn parse_request_head(head: Bytes) -> Result<RequestHead, Refusal> {
    let _ = head;
    todo!("issue 14: head.rs")
}
