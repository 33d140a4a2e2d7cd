//! Request heads from clients over HTTP/1.x: where a head ends in the bytes read so far, and
//! the one place that decides whether a head is acceptable and how its body is framed
//! (RFC 9112 sections 2 to 7, as a proxy must enforce them).
//!
//! Must not touch: sockets, timers, the request path. Every function works on bytes already
//! read, so the rules are unit-, property- and fuzz-tested without I/O.
//!
//! The rules, their statuses, and the choices made where the RFCs leave one are listed in
//! docs/request-heads.md.

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri, Version};

mod fields;

use fields::FieldRules;

/// The most header lines a request head may have; more is a 431.
pub const MAX_HEADERS: usize = 100;

/// The most bytes of empty lines taken before a request line (RFC 9112 2.2 asks a server to
/// ignore at least one). Bounding them keeps [`find_head_end`] linear: while a buffer starts
/// with empty lines, each call looks at all of them.
pub const MAX_LEADING_EMPTY_LINES: usize = 64;

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
    /// The header fields as received (names lower-cased by `http`), `Host` included; a
    /// `Content-Length` sent as a list or on several lines is kept once, as its one number, so
    /// that it is forwarded unambiguously (RFC 9110 8.6).
    pub headers: HeaderMap,
    /// How the body that follows the head is delimited.
    pub body: RequestBodyFraming,
    /// The client lets the connection carry another request after this one (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for `100 Continue` before sending its body
    /// (HTTP/1.1 with a body only: there is nothing to wait for otherwise).
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` field: the client asks to switch protocols.
    pub upgrade: bool,
}

/// Why a head is refused, and the status to answer with (the connection is then closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 405, 414, 417, 431 or 501.
    pub status: StatusCode,
    /// For the debug log: what was wrong.
    pub reason: &'static str,
}

impl Refusal {
    /// A 400 Bad Request for `reason`.
    pub const fn bad(reason: &'static str) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            reason,
        }
    }
}

/// Where the head stands in the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadEnd {
    /// The head is the first `n` bytes (its empty line included).
    Complete(usize),
    /// No end yet, and the head may still grow.
    Partial,
    /// No end within `max_header_bytes`: refused (414 while the request line itself has not
    /// ended, 431 after). Also a 400 for more than [`MAX_LEADING_EMPTY_LINES`] bytes of empty
    /// lines before the request line.
    TooLarge(Refusal),
}

/// Finds the end of the head in `buf`. `scanned` is how many bytes of `buf` an earlier call
/// already searched (0 the first time): only the new bytes (and the three before them) are
/// searched again, so a head that arrives one byte at a time costs linear work.
pub fn find_head_end(buf: &[u8], scanned: usize, max_header_bytes: usize) -> HeadEnd {
    let Some(start) = request_line_start(buf) else {
        // With a limit this small, a client reading byte by byte would reach it first.
        return HeadEnd::TooLarge(if max_header_bytes > MAX_LEADING_EMPTY_LINES {
            Refusal::bad("too many empty lines before the request line")
        } else {
            too_large(buf, buf.len(), max_header_bytes)
        });
    };
    // An empty line ends the head only after the request line has begun; the ending that
    // completes in the new bytes begins at most two bytes before them ("\n\r\n").
    let from = scanned.min(buf.len()).saturating_sub(3).max(start);
    match empty_line_end(buf, from) {
        Some(end) if end <= max_header_bytes => HeadEnd::Complete(end),
        Some(_) => HeadEnd::TooLarge(too_large(buf, start, max_header_bytes)),
        // A head that has filled the limit without its end can only be longer.
        None if !buf.is_empty() && buf.len() >= max_header_bytes => {
            HeadEnd::TooLarge(too_large(buf, start, max_header_bytes))
        }
        None => HeadEnd::Partial,
    }
}

/// Where the request line begins: after any empty lines (CR and LF bytes) that precede it, or
/// `buf.len()` if there is nothing else yet; `None` past [`MAX_LEADING_EMPTY_LINES`] of them.
fn request_line_start(buf: &[u8]) -> Option<usize> {
    match buf.first() {
        Some(b'\r' | b'\n') => {}
        _ => return Some(0),
    }
    let lead = &buf[..buf.len().min(MAX_LEADING_EMPTY_LINES + 1)];
    match lead.iter().position(|b| !matches!(b, b'\r' | b'\n')) {
        Some(start) => Some(start),
        None if lead.len() > MAX_LEADING_EMPTY_LINES => None,
        None => Some(buf.len()),
    }
}

/// The end of the first empty line whose preceding line feed is at or after `from`: a line feed
/// followed by another, or by CR LF (bare LF line endings are accepted, as httparse does).
fn empty_line_end(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memchr_iter(b'\n', buf.get(from..)?).find_map(|at| {
        let lf = from + at;
        match buf.get(lf + 1..)? {
            [b'\n', ..] => Some(lf + 2),
            [b'\r', b'\n', ..] => Some(lf + 3),
            _ => None,
        }
    })
}

/// The refusal of a head over the limit: 414 if the request line has not ended within it.
fn too_large(buf: &[u8], start: usize, max_header_bytes: usize) -> Refusal {
    let limit = buf.len().min(max_header_bytes);
    let line_ended = start < limit && memchr::memchr(b'\n', &buf[start..limit]).is_some();
    if line_ended {
        Refusal {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            reason: "request head over max_header_bytes",
        }
    } else {
        Refusal {
            status: StatusCode::URI_TOO_LONG,
            reason: "request line over max_header_bytes",
        }
    }
}

/// Parses and checks a complete head (exactly the bytes [`find_head_end`] delimited). Header
/// values are slices of `head`, not copies.
pub fn parse_request_head(head: Bytes) -> Result<RequestHead, Refusal> {
    // The line array is left uninitialised: zeroing 100 lines would cost more than the parse.
    let mut lines = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(&head, &mut lines) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        Ok(httparse::Status::Complete(_)) => return Err(Refusal::bad("bytes after the head's end")),
        Ok(httparse::Status::Partial) => return Err(Refusal::bad("incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                reason: "more than 100 header lines",
            });
        }
        Err(e) => return Err(Refusal::bad(syntax_error(e))),
    }
    // Anything but HTTP/1.0 and HTTP/1.1 is refused by httparse (a version error, 400 as hyper
    // answers it).
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(Refusal::bad("unsupported HTTP version")),
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| Refusal::bad("invalid method"))?;
    if method == Method::CONNECT {
        return Err(Refusal {
            status: StatusCode::METHOD_NOT_ALLOWED,
            reason: "CONNECT: a reverse proxy does not tunnel",
        });
    }
    let uri = parse_target(&head, req.path.unwrap_or_default(), &method)?;
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let mut rules = FieldRules::default();
    for line in req.headers.iter() {
        let name =
            HeaderName::from_bytes(line.name.as_bytes()).map_err(|_| Refusal::bad("invalid header name"))?;
        if let Some(value) = rules.field(&name, head.slice_ref(line.value))? {
            let value =
                HeaderValue::from_maybe_shared(value).map_err(|_| Refusal::bad("invalid header value"))?;
            headers.append(name, value);
        }
    }
    let decided = rules.decide(version)?;
    Ok(RequestHead {
        method,
        uri,
        version,
        headers,
        body: decided.body,
        keep_alive: decided.keep_alive,
        expect_continue: decided.expect_continue,
        upgrade: decided.upgrade,
    })
}

/// What httparse found wrong, for the debug log.
fn syntax_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid byte in a header name (or obs-fold)",
        httparse::Error::HeaderValue => "invalid byte in a header value (bare CR, NUL, control)",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Token => "malformed request line",
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::Status | httparse::Error::TooManyHeaders => "malformed request head",
    }
}

/// `http` refuses a URI from this length on (its limit is `u16::MAX - 1` bytes).
const URI_MAX_LEN: usize = u16::MAX as usize;

/// The request target as a `Uri` sharing the head's bytes: origin form (`/...`), absolute form
/// (`http://` or `https://` with an authority and no userinfo), or `*` with OPTIONS (RFC 9112
/// 3.2). Authority form is only for CONNECT, refused before this.
fn parse_target(head: &Bytes, target: &str, method: &Method) -> Result<Uri, Refusal> {
    let t = target.as_bytes();
    if t.len() >= URI_MAX_LEN {
        return Err(Refusal {
            status: StatusCode::URI_TOO_LONG,
            reason: "request target too long",
        });
    }
    let absolute = if t.first() == Some(&b'/') {
        false
    } else if t == b"*" {
        if *method != Method::OPTIONS {
            return Err(Refusal::bad("asterisk target without OPTIONS"));
        }
        false
    } else if starts_with_ignore_case(t, b"http://") || starts_with_ignore_case(t, b"https://") {
        true
    } else {
        return Err(Refusal::bad("request target in no accepted form"));
    };
    let uri =
        Uri::from_maybe_shared(head.slice_ref(t)).map_err(|_| Refusal::bad("invalid request target"))?;
    if absolute {
        // Userinfo is an error in an http(s) URI (RFC 9110 4.2.4), and forwarded as the host it
        // would leak the credentials to the server.
        match uri.authority() {
            Some(a) if authority_is_host_and_port(a.as_str()) => {}
            _ => return Err(Refusal::bad("invalid authority in an absolute-form target")),
        }
    }
    Ok(uri)
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// An authority `http` accepted is `host[:port]` only: no userinfo, a port of digits alone
/// (`http` does not look at the port's text).
fn authority_is_host_and_port(a: &str) -> bool {
    if a.is_empty() || a.contains('@') {
        return false;
    }
    // The port follows the last colon after an IPv6 literal's closing bracket.
    let host_end = a.rfind(']').map_or(0, |i| i + 1);
    match a[host_end..].rfind(':') {
        Some(colon) => a[host_end + colon + 1..].bytes().all(|b| b.is_ascii_digit()),
        None => true,
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
