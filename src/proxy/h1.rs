//! The HTTP/1.1 messages Ringway exchanges with servers: request heads out, response heads and
//! body framing in.
//!
//! Owns: writing a request head, reading a response head (parsed by `httparse`), deciding how the
//! response body is delimited and whether the connection can be reused (RFC 9112 sections 6 and
//! 9.3), and decoding chunked bodies.
//! Must not touch: sockets, timers, pools. Every function here works on bytes already read, so
//! the rules are tested without I/O; `upstream.rs` does the reading and writing.

use std::mem::MaybeUninit;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use super::headers;

/// The largest response head accepted; a bigger one is a 502, like nginx's "upstream sent too
/// big header".
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The most header lines a response head may have.
const MAX_HEADERS: usize = 100;

/// How a request body is delimited on the wire to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no framing header.
    None,
    /// No body, but the method expects one: `Content-Length: 0` is sent.
    Zero,
    /// The body is sent as is; the request keeps its `Content-Length`.
    Length,
    /// The body is sent chunked (a chunked HTTP/1.1 body, or HTTP/2 data without a length).
    Chunked,
}

impl RequestFraming {
    /// The framing for a request: `has_body` says whether any body bytes may follow.
    pub fn of(method: &Method, headers: &HeaderMap, has_body: bool) -> RequestFraming {
        if headers.contains_key(header::CONTENT_LENGTH) {
            return RequestFraming::Length;
        }
        if has_body {
            return RequestFraming::Chunked;
        }
        // A bodiless POST without any framing is read by some servers as "body until close".
        if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            RequestFraming::Zero
        } else {
            RequestFraming::None
        }
    }
}

/// Writes a request head: request line in origin form, the headers, the headers in `set` (in
/// place of any of the same names in `headers`), and the framing header.
pub fn encode_request_head(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    set: &[(&HeaderName, HeaderValue)],
    framing: RequestFraming,
) -> Bytes {
    let line = |(n, v): (&HeaderName, &HeaderValue)| n.as_str().len() + v.len() + 4;
    let size: usize = headers.iter().map(line).sum::<usize>()
        + set.iter().map(|(n, v)| line((n, v))).sum::<usize>()
        + method.as_str().len()
        + target.len()
        + 64;
    let mut out = BytesMut::with_capacity(size);
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.put_slice(b" HTTP/1.1\r\n");
    let fields = headers
        .iter()
        .filter(|(name, _)| !set.iter().any(|(n, _)| *n == *name))
        .chain(set.iter().map(|(n, v)| (*n, v)));
    for (name, value) in fields {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    match framing {
        RequestFraming::None | RequestFraming::Length => {}
        RequestFraming::Zero => out.put_slice(b"content-length: 0\r\n"),
        RequestFraming::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// The status code.
    pub status: StatusCode,
    /// The header fields to forward: as received, without the hop-by-hop ones (a protocol
    /// switch keeps `Upgrade`, with `Connection: upgrade`).
    pub headers: HeaderMap,
    /// How the body that follows is delimited.
    pub framing: BodyFraming,
    /// The connection may carry another request once this response is read to its end.
    pub keep_alive: bool,
}

/// Why a response could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// The head is not valid HTTP/1.x.
    Malformed,
    /// The head is larger than [`MAX_HEAD_BYTES`] or has too many lines.
    TooLarge,
    /// `Content-Length` is invalid or its values disagree.
    BadLength,
    /// A chunked body is malformed.
    BadChunk,
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResponseError::Malformed => "malformed response head",
            ResponseError::TooLarge => "response head too large",
            ResponseError::BadLength => "invalid Content-Length in response",
            ResponseError::BadChunk => "malformed chunked response body",
        })
    }
}

impl std::error::Error for ResponseError {}

/// Parses a response head from the front of `buf`, removing it; `Ok(None)` if more bytes are
/// needed. Interim (1xx) responses other than 101 are skipped.
pub fn parse_response_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<ResponseHead>, ResponseError> {
    loop {
        // Header positions, so the head can be cut from `buf` once httparse lets go of it. The
        // line array is left uninitialised: zeroing it would cost more than the parse.
        let (len, code, minor, spans) = {
            let mut lines = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut []);
            let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut parsed,
                buf,
                &mut lines,
            ) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => {
                    return if buf.len() > MAX_HEAD_BYTES {
                        Err(ResponseError::TooLarge)
                    } else {
                        Ok(None)
                    };
                }
                Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
                Err(_) => return Err(ResponseError::Malformed),
            };
            let base = buf.as_ptr() as usize;
            let spans: Vec<[usize; 4]> = parsed
                .headers
                .iter()
                .map(|line| {
                    let name = line.name.as_ptr() as usize - base;
                    let value = line.value.as_ptr() as usize - base;
                    [name, name + line.name.len(), value, value + line.value.len()]
                })
                .collect();
            (len, parsed.code.unwrap_or(0), parsed.version, spans)
        };
        if len > MAX_HEAD_BYTES {
            return Err(ResponseError::TooLarge);
        }
        let status = StatusCode::from_u16(code).map_err(|_| ResponseError::Malformed)?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            buf.advance(len);
            continue;
        }
        let version = if minor == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        // Header values are slices of the head's bytes, not copies.
        let head = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(spans.len());
        let mut facts = HeadFacts {
            http10: version == Version::HTTP_10,
            ..HeadFacts::default()
        };
        let mut length: Option<u64> = None;
        let mut bad_length = false;
        let mut chunked = None;
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        let mut connection_named = Vec::new();
        for &[ns, ne, vs, ve] in &spans {
            let name = HeaderName::from_bytes(&head[ns..ne]).map_err(|_| ResponseError::Malformed)?;
            let value =
                HeaderValue::from_maybe_shared(head.slice(vs..ve)).map_err(|_| ResponseError::Malformed)?;
            if name == header::CONTENT_LENGTH {
                match (parse_length(value.as_bytes()), length) {
                    (None, _) => bad_length = true,
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(m)) if n != m => bad_length = true,
                    _ => {}
                }
            } else if name == header::TRANSFER_ENCODING {
                // Only the last coding decides whether the body is chunked.
                chunked = Some(last_token_is(value.as_bytes(), b"chunked"));
            } else if name == header::CONNECTION {
                for token in value.as_bytes().split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        facts.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        facts.keep_alive = true;
                    } else if !token.is_empty()
                        && !token.eq_ignore_ascii_case(b"upgrade")
                        && let Ok(named) = HeaderName::from_bytes(token)
                        && !headers::connection_cannot_remove(&named)
                    {
                        connection_named.push(named);
                    }
                }
            }
            // Hop-by-hop fields end here rather than going into the map to be taken out again
            // (a protocol switch keeps its `Connection` and `Upgrade`).
            if headers::is_hop_by_hop(&name)
                && !(switching && (name == header::CONNECTION || name == header::UPGRADE))
            {
                continue;
            }
            headers.append(name, value);
        }
        // Fields the `Connection` header names are hop-by-hop too (RFC 9110 7.6.1).
        for named in connection_named {
            headers.remove(named);
        }
        if switching {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        let no_body = head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        facts.transfer_encoding = chunked.is_some();
        facts.content_length = length.is_some() || bad_length;
        facts.nonzero_length = bad_length || length.is_some_and(|n| n > 0);
        let framing = if no_body {
            BodyFraming::Empty
        } else if let Some(chunked) = chunked {
            // Transfer-Encoding overrides Content-Length (RFC 9112 6.3), and the length must not
            // reach the client.
            if facts.content_length {
                headers.remove(header::CONTENT_LENGTH);
            }
            if chunked {
                BodyFraming::Chunked
            } else {
                BodyFraming::UntilClose
            }
        } else if bad_length {
            return Err(ResponseError::BadLength);
        } else if let Some(n) = length {
            BodyFraming::Length(n)
        } else {
            BodyFraming::UntilClose
        };
        let keep_alive = reusable_after_head(status, head_request, facts, framing);
        return Ok(Some(ResponseHead {
            status,
            headers,
            framing,
            keep_alive,
        }));
    }
}

/// What a response head says that bears on its connection's reuse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadFacts {
    /// The status line says HTTP/1.0.
    pub http10: bool,
    /// `Connection: close`.
    pub close: bool,
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// A `Transfer-Encoding` line is present.
    pub transfer_encoding: bool,
    /// A `Content-Length` line is present (valid or not).
    pub content_length: bool,
    /// `Content-Length` announces a body (or is invalid).
    pub nonzero_length: bool,
}

/// Whether the connection may carry another request once this response has been read to its
/// end (RFC 9112 9.3 and 9.6 persistence, 6.1 and 6.3 framing). Each rule is in the table of
/// docs/upstream.md.
pub fn reusable_after_head(
    status: StatusCode,
    head_request: bool,
    f: HeadFacts,
    framing: BodyFraming,
) -> bool {
    // 9.6: the server will close after this response.
    if f.close {
        return false;
    }
    // 9.3: HTTP/1.0 persists only with `Connection: keep-alive`.
    if f.http10 && !f.keep_alive {
        return false;
    }
    // 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing whatever else it
    // says; it is read (the transfer coding decides its end) and the connection closed after.
    if f.http10 && f.transfer_encoding {
        return false;
    }
    // 6.3 (3): both Transfer-Encoding and Content-Length may be smuggling or splitting; the
    // length is dropped and the connection closed after.
    if f.transfer_encoding && f.content_length {
        return false;
    }
    // 6.3 (8): a body delimited by the close.
    if framing == BodyFraming::UntilClose {
        return false;
    }
    // 6.3 (1): a 204 has no content whatever its head says; one that announces a body anyway
    // (RFC 9110 8.6 forbids Content-Length there) may well send it, where the next response
    // would be read. A HEAD or 304 response legitimately announces the length of what a GET or
    // 200 would carry, so only bytes actually sent spoil those (checked at the end).
    if status == StatusCode::NO_CONTENT && !head_request && (f.transfer_encoding || f.nonzero_length) {
        return false;
    }
    true
}

/// How an exchange with a server ended, for the reuse decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeEnd {
    /// The response body was read to its end.
    pub body_done: bool,
    /// The response head allowed reuse ([`reusable_after_head`]).
    pub head_allows: bool,
    /// Reading the response failed (malformed body, I/O error, the client's body broke).
    pub failed: bool,
    /// The whole request, body included, was written.
    pub request_sent: bool,
    /// Bytes arrived beyond the end of the response.
    pub leftover: bool,
}

/// Whether a connection goes back to the idle pool after an exchange (RFC 9112 9.3, 9.6).
pub fn reusable_after_exchange(e: ExchangeEnd) -> bool {
    // A response the client stopped reading is not drained: closing costs one connection,
    // draining could cost a whole body's transfer. A request not fully sent leaves the server
    // waiting for the rest, which the next request would become. Bytes after the response
    // are an answer to nothing (a server pipelining, or a body on a HEAD/204/304).
    e.body_done && e.head_allows && !e.failed && e.request_sent && !e.leftover
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter()
        .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

fn last_token_is(v: &[u8], token: &[u8]) -> bool {
    v.rsplit(|&b| b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Longest chunk-size line (its CR LF included) or trailer section (its final empty line
/// included) accepted, whether it arrives whole or a byte at a time.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// The length of the chunk-size line at the front of `buf` and the size it gives; `None` while
/// the line is incomplete.
///
/// httparse reads the line, but leniently where a proxy must not be: it takes a line without
/// digits (`\r\n` or `;ext\r\n`) as size 0, which would end the body, and lets a bare LF through
/// in an extension, which a peer in front of us may read as the line's end (and the chunk's
/// data as starting there). Both are refused, as hyper refuses them.
fn read_chunk_size_line(buf: &[u8]) -> Result<Option<(usize, u64)>, ResponseError> {
    match buf.first() {
        None => return Ok(None),
        Some(b) if !b.is_ascii_hexdigit() => return Err(ResponseError::BadChunk),
        Some(_) => {}
    }
    match httparse::parse_chunk_size(buf) {
        Ok(httparse::Status::Complete((used, size))) => {
            // The line ends in CR LF (httparse insists): any other LF in it is bare.
            if used > MAX_CHUNK_LINE || memchr::memchr(b'\n', &buf[..used - 1]).is_some() {
                return Err(ResponseError::BadChunk);
            }
            Ok(Some((used, size)))
        }
        // Incomplete: the line will be longer than what is here, and any LF so far is bare.
        Ok(httparse::Status::Partial)
            if buf.len() < MAX_CHUNK_LINE && memchr::memchr(b'\n', buf).is_none() =>
        {
            Ok(None)
        }
        _ => Err(ResponseError::BadChunk),
    }
}

/// What the body decoder found in the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes, ready to forward.
    Data(Bytes),
    /// More bytes must be read first.
    NeedMore,
    /// The body ended; no bytes of it remain unread.
    Done,
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// This many bytes of chunk data remain.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Reading the trailer section; this many bytes of it seen.
    Trailers(usize),
}

/// Takes a response body out of the bytes read from the connection, chunk by chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyDecoder {
    /// This many bytes remain.
    Length(u64),
    /// Chunked, at this point of the coding.
    Chunked(Chunk),
    /// Until the server closes.
    UntilClose,
    /// Nothing more.
    Done,
}

impl BodyDecoder {
    /// The decoder for a body delimited by `framing`.
    pub fn new(framing: BodyFraming) -> BodyDecoder {
        match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => BodyDecoder::Done,
            BodyFraming::Length(n) => BodyDecoder::Length(n),
            BodyFraming::Chunked => BodyDecoder::Chunked(Chunk::Size),
            BodyFraming::UntilClose => BodyDecoder::UntilClose,
        }
    }

    /// The body has been read to its end.
    pub fn is_done(&self) -> bool {
        *self == BodyDecoder::Done
    }

    /// Bytes of body left, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            BodyDecoder::Length(n) => Some(*n),
            BodyDecoder::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next piece of body from the front of `buf`.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ResponseError> {
        loop {
            match *self {
                BodyDecoder::Done => return Ok(Step::Done),
                BodyDecoder::Length(n) => {
                    let Some((data, left)) = take_up_to(buf, n) else {
                        return Ok(Step::NeedMore);
                    };
                    *self = if left == 0 {
                        BodyDecoder::Done
                    } else {
                        BodyDecoder::Length(left)
                    };
                    return Ok(Step::Data(data));
                }
                BodyDecoder::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                BodyDecoder::Chunked(state) => match state {
                    Chunk::Size => {
                        let Some((used, size)) = read_chunk_size_line(buf)? else {
                            return Ok(Step::NeedMore);
                        };
                        buf.advance(used);
                        *self = BodyDecoder::Chunked(if size == 0 {
                            Chunk::Trailers(0)
                        } else {
                            Chunk::Data(size)
                        });
                    }
                    Chunk::Data(n) => {
                        let Some((data, left)) = take_up_to(buf, n) else {
                            return Ok(Step::NeedMore);
                        };
                        *self = BodyDecoder::Chunked(if left == 0 {
                            Chunk::DataEnd
                        } else {
                            Chunk::Data(left)
                        });
                        return Ok(Step::Data(data));
                    }
                    Chunk::DataEnd => {
                        if buf.len() < 2 {
                            return Ok(Step::NeedMore);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(ResponseError::BadChunk);
                        }
                        buf.advance(2);
                        *self = BodyDecoder::Chunked(Chunk::Size);
                    }
                    Chunk::Trailers(seen) => {
                        // Trailer fields are dropped: hop-by-hop framing, and few clients of a
                        // proxy expect them. The section ends at an empty line. Every line must
                        // end in CR LF and hold no other CR or LF: where a peer in front of us
                        // reads lines differently, the body would end elsewhere for it, and the
                        // bytes after it would be another request to one of us only.
                        let Some(end) = memchr::memchr(b'\n', buf) else {
                            // The line is at least one byte longer than what is here.
                            if seen + buf.len() >= MAX_TRAILERS {
                                return Err(ResponseError::BadChunk);
                            }
                            return Ok(Step::NeedMore);
                        };
                        let line = &buf[..end];
                        if line.last() != Some(&b'\r') || memchr::memchr(b'\r', &line[..end - 1]).is_some() {
                            return Err(ResponseError::BadChunk);
                        }
                        let seen = seen + end + 1;
                        if seen > MAX_TRAILERS {
                            return Err(ResponseError::BadChunk);
                        }
                        buf.advance(end + 1);
                        *self = if end == 1 {
                            BodyDecoder::Done
                        } else {
                            BodyDecoder::Chunked(Chunk::Trailers(seen))
                        };
                    }
                },
            }
        }
    }
}

/// Up to `n` bytes from the front of `buf` and how many of the `n` are still to come; `None` if
/// `buf` is empty.
fn take_up_to(buf: &mut BytesMut, n: u64) -> Option<(Bytes, u64)> {
    if buf.is_empty() {
        return None;
    }
    let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
    Some((buf.split_to(take).freeze(), n - take as u64))
}

/// The chunk-size line written before `len` bytes of a chunked request body.
pub fn chunk_size_line(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

/// The end of a chunked request body: the last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests;
