//! Header rules of a proxy: hop-by-hop removal, forwarding headers, request ids, framing checks.
//!
//! Owns: what changes in the headers between client and server (RFC 9110 section 7.6.1,
//! RFC 9112 section 6.3) and the request-id format.
//! Must not touch: routing, balancing, I/O.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Name of the request id header.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The fixed hop-by-hop headers (RFC 9110 7.6.1 and the common non-standard ones), by bit.
fn hop_by_hop_bit(name: &HeaderName) -> u16 {
    // Dispatch on the length first: almost every header name has a length no hop-by-hop name
    // has, and this runs for every header of every request and response.
    let s = name.as_str();
    match s.len() {
        2 if s == "te" => 1 << 1,
        7 if s == "trailer" => 1 << 2,
        7 if s == "upgrade" => 1 << 4,
        10 if s == "connection" => 1,
        10 if s == "keep-alive" => 1 << 7,
        16 if s == "proxy-connection" => 1 << 8,
        17 if s == "transfer-encoding" => 1 << 3,
        18 if s == "proxy-authenticate" => 1 << 5,
        19 if s == "proxy-authorization" => 1 << 6,
        _ => 0,
    }
}

/// Whether `name` is one of the fixed hop-by-hop header names.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    hop_by_hop_bit(name) != 0
}

/// Whether `name` is kept even when a `Connection` header names it.
///
/// RFC 9110 7.6.1 makes every field `Connection` names hop-by-hop, but a sender must not name
/// fields that carry the message's framing or target, and the proxy sets some fields itself.
/// Removing those at the client's word would change what the server receives: its own address
/// as `Host` (and no `X-Forwarded-Host`), a counted body re-framed as chunked, a forwarding
/// chain cut short. Such tokens are ignored, as nginx ignores them all.
pub fn connection_cannot_remove(name: &HeaderName) -> bool {
    static KEPT: [&HeaderName; 7] = [
        &header::HOST,
        &header::CONTENT_LENGTH,
        &header::TRANSFER_ENCODING,
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_HOST,
        &X_REQUEST_ID,
    ];
    KEPT.contains(&name)
}

const CONNECTION_BIT: u16 = 1;
const UPGRADE_BIT: u16 = 1 << 4;

/// Removes hop-by-hop headers, including those the `Connection` header names.
///
/// `keep_upgrade` keeps `Connection: upgrade` and `Upgrade` for a WebSocket upgrade.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names tells which are present; most messages carry none or only
    // `Connection: keep-alive`, and a removal costs a hash lookup.
    let present = headers.keys().fold(0u16, |acc, n| acc | hop_by_hop_bit(n));
    if present == 0 {
        return;
    }
    if present & CONNECTION_BIT != 0 {
        let mut named: Vec<HeaderName> = Vec::new();
        for v in headers.get_all(header::CONNECTION) {
            let Ok(s) = v.to_str() else { continue };
            for token in s.split(',').map(str::trim) {
                // keep-alive and close are connection options, not header names to remove
                // (Keep-Alive is removed below anyway).
                if token.is_empty()
                    || token.eq_ignore_ascii_case("keep-alive")
                    || token.eq_ignore_ascii_case("close")
                    || token.eq_ignore_ascii_case("upgrade")
                {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(token.as_bytes())
                    && !connection_cannot_remove(&n)
                {
                    named.push(n);
                }
            }
        }
        for n in named {
            headers.remove(n);
        }
    }
    let fixed: [&HeaderName; 9] = [
        &header::CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
    ];
    for (bit, name) in fixed.iter().enumerate() {
        let bit = 1u16 << bit;
        if present & bit == 0 || (keep_upgrade && (bit == CONNECTION_BIT || bit == UPGRADE_BIT)) {
            continue;
        }
        headers.remove(*name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// What the proxy needs to know of a request's headers, gathered in one pass.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestFacts {
    /// Number of `Host` lines.
    pub hosts: u8,
    /// A `Transfer-Encoding` line is present.
    pub transfer_encoding: bool,
    /// The `Content-Length` value, if present and a number.
    pub content_length: Option<u64>,
    /// `Content-Length` lines disagree or do not parse.
    pub bad_content_length: bool,
    /// `Upgrade: websocket` with `Connection: upgrade`.
    pub websocket: bool,
}

impl RequestFacts {
    /// Reads the facts from `headers`.
    pub fn of(headers: &HeaderMap) -> RequestFacts {
        let mut f = RequestFacts::default();
        let mut upgrade_websocket = false;
        let mut connection_upgrade = false;
        for (name, value) in headers {
            if name == header::HOST {
                f.hosts = f.hosts.saturating_add(1);
            } else if name == header::CONTENT_LENGTH {
                let n = value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok());
                match (f.content_length, n) {
                    (_, None) => f.bad_content_length = true,
                    (None, Some(n)) => f.content_length = Some(n),
                    (Some(a), Some(b)) if a != b => f.bad_content_length = true,
                    _ => {}
                }
            } else if name == header::TRANSFER_ENCODING {
                f.transfer_encoding = true;
            } else if name == header::UPGRADE {
                upgrade_websocket |= value.as_bytes().eq_ignore_ascii_case(b"websocket");
            } else if name == header::CONNECTION {
                connection_upgrade |= value
                    .to_str()
                    .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
            }
        }
        f.websocket = upgrade_websocket && connection_upgrade;
        f
    }

    /// Why the request's framing is refused (RFC 9112: a proxy must not forward ambiguous
    /// framing), if it is.
    pub fn framing_error(&self, version: http::Version) -> Option<&'static str> {
        if version == http::Version::HTTP_11 {
            match self.hosts {
                0 => return Some("missing Host header"),
                1 => {}
                _ => return Some("more than one Host header"),
            }
        } else if self.hosts > 1 {
            return Some("more than one Host header");
        }
        if self.transfer_encoding && (self.content_length.is_some() || self.bad_content_length) {
            return Some("both Content-Length and Transfer-Encoding");
        }
        if self.bad_content_length {
            return Some("invalid or conflicting Content-Length");
        }
        None
    }
}

/// The client address as a header value, made once per connection.
pub fn ip_header_value(ip: IpAddr) -> HeaderValue {
    let mut buf = [0u8; 48];
    HeaderValue::from_bytes(format_ip(ip, &mut buf)).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The headers the proxy sets on a forwarded request, replacing any of the same names the
/// client sent: `X-Forwarded-For` (the client appended), `X-Forwarded-Proto`, `X-Request-Id` and,
/// when the request names a host, `X-Forwarded-Host`.
///
/// They are written straight into the request head rather than inserted into the header map:
/// four map insertions (and often the map's growth) cost more than the rest of the head.
pub struct Forwarding {
    fields: [(&'static HeaderName, HeaderValue); 4],
    len: usize,
}

impl Forwarding {
    /// The forwarding headers of a request with `headers`, from `client` over `proto`.
    pub fn new(
        headers: &HeaderMap,
        client: &HeaderValue,
        proto: &'static str,
        host: Option<&HeaderValue>,
        request_id: &HeaderValue,
    ) -> Forwarding {
        let mut prev = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter(|v| !v.is_empty())
            .peekable();
        let forwarded_for = if prev.peek().is_none() {
            client.clone()
        } else {
            // Several X-Forwarded-For lines are one list (RFC 9110 5.3): fold them, then append.
            let mut v = Vec::with_capacity(64);
            for line in prev {
                v.extend_from_slice(line.as_bytes());
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(client.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or_else(|_| client.clone())
        };
        let (host, len) = match host {
            Some(h) => (h.clone(), 4),
            None => (HeaderValue::from_static(""), 3),
        };
        Forwarding {
            fields: [
                (&X_FORWARDED_FOR, forwarded_for),
                (&X_FORWARDED_PROTO, HeaderValue::from_static(proto)),
                (&X_REQUEST_ID, request_id.clone()),
                (&X_FORWARDED_HOST, host),
            ],
            len,
        }
    }

    /// The headers to set, by name.
    pub fn fields(&self) -> &[(&'static HeaderName, HeaderValue)] {
        &self.fields[..self.len]
    }
}

/// Formats an IP address without allocating.
pub fn format_ip(ip: IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // 48 bytes hold the longest IPv6 text form (45 bytes).
    let _ = write!(cursor, "{ip}");
    let n = usize::try_from(cursor.position()).unwrap_or(0);
    &buf[..n]
}

/// The client's request id if it is usable (visible ASCII, 1..=200 bytes), else a new one.
///
/// The value is marked sensitive, which HTTP/2 encodes as a literal that is never indexed: an
/// id differs in every message, so entering it in the connection's HPACK table would only evict
/// the fields that do repeat (server, content-type) and make every later lookup of the name
/// compare against a chain of dead ids (about 7 % of the CPU of an HTTP/2 response). HTTP/1.1
/// ignores the mark.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut id = match headers.get(&X_REQUEST_ID) {
        Some(v) if usable_request_id(v.as_bytes()) => v.clone(),
        _ => new_request_id(),
    };
    id.set_sensitive(true);
    id
}

/// Whether HTTP/2 forbids `name` in a response (RFC 9113 8.2.2): `Connection`, `TE` and the
/// fields that mean something only on an HTTP/1.1 connection.
pub fn is_connection_specific(name: &HeaderName) -> bool {
    const FORBIDDEN: u16 = CONNECTION_BIT | 1 << 1 | 1 << 3 | UPGRADE_BIT | 1 << 7 | 1 << 8;
    hop_by_hop_bit(name) & FORBIDDEN != 0
}

/// Removes the fields HTTP/2 forbids in a response (RFC 9113 8.2.2): the connection-specific
/// ones, `TE`, and those `Connection` names (as hyper's server removed them).
pub fn remove_connection_specific(headers: &mut HeaderMap) {
    if !headers.keys().any(is_connection_specific) {
        return;
    }
    if let Some(connection) = headers.remove(header::CONNECTION)
        && let Ok(names) = connection.to_str()
    {
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            headers.remove(name);
        }
    }
    for name in [
        &header::TE,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
    ] {
        headers.remove(name);
    }
}

/// Marks the response fields whose values change from one response to the next (`Date`,
/// `Expires`, `Last-Modified`) so that HTTP/2 sends them as literals never indexed.
///
/// The h2 crate's HPACK encoder finds a field by walking, oldest first, every table entry with
/// the same name; each new `Date` (one per second) stays in the 4 KiB table until evicted, so
/// after a minute every response compared its `Date` against dozens of dead ones. HAProxy's
/// encoder keeps no table at all, sending every value as a literal; this keeps the table for the
/// fields that do repeat.
pub fn mark_unrepeated(headers: &mut HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if name == header::DATE || name == header::EXPIRES || name == header::LAST_MODIFIED {
            value.set_sensitive(true);
        }
    }
}

fn usable_request_id(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= 200 && b.iter().all(|c| c.is_ascii_graphic())
}

/// A new random request id: 32 lower-case hex digits.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    let n = fastrand::u128(..);
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((n >> (i * 4)) & 0xf) as usize];
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(&out))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changing_response_fields_are_never_indexed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::DATE,
            HeaderValue::from_static("Mon, 30 Nov 2026 17:00:00 GMT"),
        );
        h.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Mon, 30 Nov 2026 16:00:00 GMT"),
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        mark_unrepeated(&mut h);
        assert!(h[header::DATE].is_sensitive());
        assert!(h[header::LAST_MODIFIED].is_sensitive());
        assert!(!h[header::CONTENT_TYPE].is_sensitive());
        let mut asked = HeaderMap::new();
        asked.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-1"));
        assert!(request_id(&asked).is_sensitive());
        assert!(request_id(&HeaderMap::new()).is_sensitive());
    }

    #[test]
    fn http2_responses_lose_only_the_connection_specific_fields() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::TRAILER, HeaderValue::from_static("grpc-status"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        remove_connection_specific(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "trailer"]);
        let mut plain = HeaderMap::new();
        plain.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        remove_connection_specific(&mut plain);
        assert_eq!(plain.len(), 1);
    }

    #[test]
    fn removes_hop_by_hop_and_named() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn websocket_upgrade_kept() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::HOST, HeaderValue::from_static("a"));
        assert!(RequestFacts::of(&h).websocket);
        h.remove(header::HOST);
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }

    fn field<'a>(f: &'a Forwarding, name: &str) -> Option<&'a str> {
        f.fields()
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        let ip = ip_header_value("127.0.0.1".parse().unwrap());
        let rid = HeaderValue::from_static("r1");
        let f = Forwarding::new(&h, &ip, "http", Some(&HeaderValue::from_static("a.com")), &rid);
        assert_eq!(field(&f, "x-forwarded-for"), Some("10.0.0.1, 127.0.0.1"));
        assert_eq!(field(&f, "x-forwarded-proto"), Some("http"));
        assert_eq!(field(&f, "x-forwarded-host"), Some("a.com"));
        assert_eq!(field(&f, "x-request-id"), Some("r1"));
    }

    #[test]
    fn forwarded_for_folds_lines() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2, 10.0.0.3"));
        let ip = ip_header_value("127.0.0.1".parse().unwrap());
        let f = Forwarding::new(&h, &ip, "http", None, &HeaderValue::from_static("r"));
        assert_eq!(
            field(&f, "x-forwarded-for"),
            Some("10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1")
        );
        assert_eq!(
            field(&f, "x-forwarded-host"),
            None,
            "no host, no X-Forwarded-Host"
        );
    }

    #[test]
    fn request_ids() {
        let a = new_request_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_request_id());
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-1"));
        assert_eq!(request_id(&h), "abc-1");
    }

    #[test]
    fn framing() {
        let err = |h: &HeaderMap, v| RequestFacts::of(h).framing_error(v);
        let mut h = HeaderMap::new();
        assert!(err(&h, http::Version::HTTP_11).is_some());
        assert!(err(&h, http::Version::HTTP_10).is_none());
        h.insert(header::HOST, HeaderValue::from_static("a"));
        assert!(err(&h, http::Version::HTTP_11).is_none());
        h.append(header::HOST, HeaderValue::from_static("b"));
        assert!(err(&h, http::Version::HTTP_11).is_some());
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert_eq!(RequestFacts::of(&h).content_length, Some(5));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert!(err(&h, http::Version::HTTP_11).is_some());
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("6"));
        assert!(err(&h, http::Version::HTTP_11).is_some());
    }

    #[test]
    fn connection_cannot_remove_framing_target_or_forwarding() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static(
                "Host, Content-Length, x-forwarded-for, X-Forwarded-Proto, x-forwarded-host, X-Request-Id, x-gone",
            ),
        );
        h.insert(header::HOST, HeaderValue::from_static("a.example"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("b.example"));
        h.insert("x-request-id", HeaderValue::from_static("r1"));
        h.insert("x-gone", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, false);
        let mut names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "content-length",
                "host",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-request-id"
            ]
        );
        // Transfer-Encoding is hop-by-hop anyway: the proxy frames the body itself.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("transfer-encoding"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        remove_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
        assert!(connection_cannot_remove(&header::HOST));
        assert!(!connection_cannot_remove(&header::COOKIE));
    }

    #[test]
    fn keep_alive_option_is_not_a_header_name() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
    }
}
