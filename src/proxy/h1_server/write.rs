//! Response heads to HTTP/1.x clients: how the body is framed, whether the connection stays
//! open, and the bytes of the head (RFC 9112 sections 4, 6 and 9).
//!
//! Must not touch: sockets. Pure functions over the response's parts, except for the cached
//! `Date` value.

use std::cell::RefCell;
use std::time::SystemTime;

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Version};

/// How a response body is delimited on the client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body may follow (HEAD, 1xx, 204, 304), whatever the headers say.
    NoBody,
    /// `Content-Length: n`, as the response carries it or as Ringway set it.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 clients, length unknown).
    Chunked,
    /// Until the connection closes (HTTP/1.0 clients, length unknown).
    UntilClose,
}

/// What the framing of a response depends on.
#[derive(Debug, Clone, Copy)]
pub struct FramingInput {
    /// The response status.
    pub status: StatusCode,
    /// The request was `HEAD`.
    pub head_request: bool,
    /// The client's version.
    pub version: Version,
    /// The response's own `Content-Length`, if it has one that parses.
    pub content_length: Option<u64>,
    /// The body's exact length, when the body knows it (0 for an empty body).
    pub exact_length: Option<u64>,
}

/// Chooses how a response body is delimited.
pub fn response_framing(r: FramingInput) -> ResponseFraming {
    let s = r.status.as_u16();
    if r.status.is_informational() || s == 204 || s == 304 {
        return ResponseFraming::NoBody;
    }
    if r.head_request {
        return ResponseFraming::NoBody;
    }
    if let Some(n) = r.content_length.or(r.exact_length) {
        return ResponseFraming::Length(n);
    }
    if r.version == Version::HTTP_11 {
        ResponseFraming::Chunked
    } else {
        ResponseFraming::UntilClose
    }
}

/// Whether the response asks for the connection to close (`Connection: close`, as Ringway's
/// own answers to broken requests carry it).
pub fn asks_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    })
}

/// The fields Ringway writes itself, or that belong to one connection only; never copied from
/// the response (except on a `101`, whose `Connection: upgrade` the client needs).
fn is_connection_field(name: &header::HeaderName, upgrade: bool) -> bool {
    if upgrade {
        return false;
    }
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == "keep-alive"
        || name == "proxy-connection"
}

/// Writes the response head. `framing` must come from [`response_framing`] for the same
/// response; `keep_alive` says whether the connection stays open after it.
pub fn encode_response_head(
    out: &mut BytesMut,
    status: StatusCode,
    headers: &HeaderMap,
    framing: ResponseFraming,
    version: Version,
    keep_alive: bool,
) {
    let upgrade = status == StatusCode::SWITCHING_PROTOCOLS;
    out.reserve(128 + headers.len() * 48);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    let mut has_date = false;
    for (name, value) in headers {
        if is_connection_field(name, upgrade) {
            continue;
        }
        // Ringway writes the framing itself (a bodiless answer keeps the length it announces).
        if name == header::CONTENT_LENGTH && framing != ResponseFraming::NoBody {
            continue;
        }
        has_date |= name == header::DATE;
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        ResponseFraming::Length(n) => {
            let mut digits = itoa::Buffer::new();
            put_field(out, b"content-length", digits.format(n).as_bytes());
        }
        ResponseFraming::Chunked => put_field(out, b"transfer-encoding", b"chunked"),
        ResponseFraming::NoBody | ResponseFraming::UntilClose => {}
    }
    if !has_date {
        DATE.with(|d| put_field(out, b"date", d.borrow_mut().now().as_bytes()));
    }
    if !upgrade {
        if !keep_alive {
            put_field(out, b"connection", b"close");
        } else if version == Version::HTTP_10 {
            put_field(out, b"connection", b"keep-alive");
        }
    }
    out.put_slice(b"\r\n");
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// The answer Ringway writes itself to a request head it refused, before closing.
pub fn refusal_response(status: StatusCode) -> BytesMut {
    let text = match status.as_u16() {
        400 => "400 Bad Request\n",
        405 => "405 Method Not Allowed\n",
        414 => "414 URI Too Long\n",
        417 => "417 Expectation Failed\n",
        431 => "431 Request Header Fields Too Large\n",
        501 => "501 Not Implemented\n",
        505 => "505 HTTP Version Not Supported\n",
        _ => "Bad Request\n",
    };
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let mut out = BytesMut::with_capacity(256);
    encode_response_head(
        &mut out,
        status,
        &headers,
        ResponseFraming::Length(text.len() as u64),
        Version::HTTP_11,
        false,
    );
    out.put_slice(text.as_bytes());
    out
}

/// `100 Continue`, written before the first read of a body the client holds back.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The chunk-size line before `len` bytes of a chunked response body.
pub fn put_chunk_size(out: &mut BytesMut, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
    out.put_slice(b"\r\n");
}

thread_local! {
    static DATE: RefCell<CachedDate> = const { RefCell::new(CachedDate { secs: u64::MAX, text: String::new() }) };
}

/// The `Date` value for a response that has none (HTTP/2 responses; HTTP/1.1 ones are written
/// with it directly).
pub(crate) fn date_value() -> http::HeaderValue {
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        http::HeaderValue::from_str(d.now())
            .unwrap_or(http::HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
    })
}

/// The `Date` value, formatted once a second per worker thread.
struct CachedDate {
    secs: u64,
    text: String,
}

impl CachedDate {
    fn now(&mut self) -> &str {
        let now = SystemTime::now();
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs != self.secs {
            self.secs = secs;
            self.text = httpdate::fmt_http_date(now);
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(status: u16, head: bool, version: Version, cl: Option<u64>, exact: Option<u64>) -> FramingInput {
        FramingInput {
            status: StatusCode::from_u16(status).unwrap(),
            head_request: head,
            version,
            content_length: cl,
            exact_length: exact,
        }
    }

    #[test]
    fn framing_follows_rfc_9112_section_6() {
        use ResponseFraming::*;
        let v11 = Version::HTTP_11;
        assert_eq!(response_framing(input(200, false, v11, Some(5), None)), Length(5));
        assert_eq!(response_framing(input(200, false, v11, None, Some(0))), Length(0));
        assert_eq!(response_framing(input(200, false, v11, None, None)), Chunked);
        assert_eq!(
            response_framing(input(200, false, Version::HTTP_10, None, None)),
            UntilClose
        );
        assert_eq!(response_framing(input(200, true, v11, Some(5), None)), NoBody);
        for s in [100, 101, 204, 304] {
            assert_eq!(
                response_framing(input(s, false, v11, Some(5), None)),
                NoBody,
                "{s}"
            );
        }
    }

    fn head_text(
        status: u16,
        headers: &[(&str, &str)],
        framing: ResponseFraming,
        v: Version,
        ka: bool,
    ) -> String {
        let mut map = HeaderMap::new();
        for (n, val) in headers {
            map.append(
                header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(val).unwrap(),
            );
        }
        let mut out = BytesMut::new();
        encode_response_head(
            &mut out,
            StatusCode::from_u16(status).unwrap(),
            &map,
            framing,
            v,
            ka,
        );
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn head_has_one_framing_and_no_connection_fields_of_the_server() {
        let h = head_text(
            200,
            &[
                ("content-length", "7"),
                ("transfer-encoding", "chunked"),
                ("connection", "keep-alive, x-secret"),
                ("keep-alive", "timeout=5"),
                ("date", "Mon, 30 Nov 2026 08:00:00 GMT"),
                ("x-a", "1"),
            ],
            ResponseFraming::Length(7),
            Version::HTTP_11,
            true,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nDate: Mon, 30 Nov 2026 08:00:00 GMT\r\nx-a: 1\r\ncontent-length: 7\r\n\r\n"
                .replace("Date", "date")
        );
        let h = head_text(
            200,
            &[("content-length", "7")],
            ResponseFraming::Chunked,
            Version::HTTP_11,
            false,
        );
        assert!(h.contains("transfer-encoding: chunked\r\n"), "{h}");
        assert!(!h.contains("content-length"), "{h}");
        assert!(h.contains("connection: close\r\n"), "{h}");
        assert!(h.contains("date: "), "{h}");
    }

    #[test]
    fn http_10_keep_alive_is_announced_and_101_keeps_upgrade_fields() {
        let h = head_text(200, &[], ResponseFraming::Length(0), Version::HTTP_10, true);
        assert!(h.contains("connection: keep-alive\r\n"), "{h}");
        let h = head_text(
            101,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
            ResponseFraming::NoBody,
            Version::HTTP_11,
            true,
        );
        assert!(h.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{h}");
        assert!(
            h.contains("connection: upgrade\r\n") && h.contains("upgrade: websocket\r\n"),
            "{h}"
        );
    }

    #[test]
    fn head_response_keeps_its_content_length() {
        let h = head_text(
            200,
            &[("content-length", "42")],
            ResponseFraming::NoBody,
            Version::HTTP_11,
            true,
        );
        assert!(h.contains("content-length: 42\r\n"), "{h}");
    }

    #[test]
    fn chunk_sizes_are_lower_hex() {
        for (n, text) in [
            (0usize, "0\r\n"),
            (10, "a\r\n"),
            (4096, "1000\r\n"),
            (usize::MAX, "ffffffffffffffff\r\n"),
        ] {
            let mut out = BytesMut::new();
            put_chunk_size(&mut out, n);
            assert_eq!(&out[..], text.as_bytes());
        }
    }
}
