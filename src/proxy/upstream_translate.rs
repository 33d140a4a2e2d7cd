//! Header translation between HTTP/1.1 and HTTP/2 on the way to a server (RFC 9113 8.2 and 8.3).
//!
//! Owns: joining HTTP/2 cookie fields for an HTTP/1.1 server, the request headers and URI an
//! HTTP/2 server gets (`:authority` from Host, no connection-specific fields, `TE: trailers`
//! only), and the trailer fields of an HTTP/1.1 chunked response kept for an HTTP/2 client. Pure
//! functions over header maps and bytes: no I/O. Must not touch: the forwarding headers'
//! values (`headers.rs`) or the hop-by-hop rules shared with HTTP/1.1.

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, Uri};

/// Joins several `cookie` fields into one, separated by "; ", as an HTTP/1.1 server expects
/// (RFC 9113 8.2.3: HTTP/2 clients may split cookies into one field per pair).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let mut joined = Vec::with_capacity(256);
    for v in headers.get_all(header::COOKIE) {
        if v.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    // The parts are valid values and "; " is too, so the join is one.
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// Whether the request's `TE` asks for trailers (the one `TE` an HTTP/2 request may carry).
pub fn te_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Makes the headers of a request (its hop-by-hop fields already removed) fit for an HTTP/2
/// server: `Host` goes (it becomes `:authority`), `TE: trailers` stays if it was asked for, the
/// forwarding headers `set` replace any of the same names.
pub fn for_h2(headers: &mut HeaderMap, te_trailers: bool, set: &[(&'static HeaderName, HeaderValue)]) {
    headers.remove(header::HOST);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    for (name, value) in set {
        headers.insert(*name, value.clone());
    }
}

/// The absolute URI of a request to an HTTP/2 server: its scheme (`https` over TLS), the
/// authority the client named (or `fallback`, the server's address), and the target.
pub fn h2_uri(
    tls: bool,
    authority: Option<&HeaderValue>,
    fallback: &str,
    target: &str,
) -> Result<Uri, http::Error> {
    let authority = authority
        .and_then(|a| Authority::try_from(a.as_bytes()).ok())
        .map_or_else(|| Authority::try_from(fallback), Ok)?;
    let target = if target.is_empty() { "/" } else { target };
    Uri::builder()
        .scheme(if tls { Scheme::HTTPS } else { Scheme::HTTP })
        .authority(authority)
        .path_and_query(PathAndQuery::try_from(target)?)
        .build()
}

/// What the start of a chunked body's trailer section holds.
#[derive(Debug, PartialEq, Eq)]
pub enum TrailerSection {
    /// No fields (the section is just its empty line), or bytes the decoder will refuse.
    None,
    /// Not all of it has been read yet.
    Incomplete,
    /// The fields to pass on as trailers.
    Fields(HeaderMap),
}

/// The most trailer fields kept.
const MAX_TRAILER_FIELDS: usize = 32;
/// The largest trailer section read whole (the decoder refuses more than 16 KiB anyway).
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Reads the trailer section at the front of `buf` (after a chunked body's last chunk) without
/// consuming it. Fields that must not be trailers (framing, routing, hop-by-hop: RFC 9110
/// 6.5.1) are left out.
pub fn trailer_section(buf: &[u8]) -> TrailerSection {
    if buf.starts_with(b"\r\n") || buf.starts_with(b"\n") {
        return TrailerSection::None;
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    match httparse::parse_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete((_, parsed))) => {
            let mut map = HeaderMap::new();
            for f in parsed {
                let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(f.name.as_bytes()),
                    HeaderValue::from_bytes(f.value),
                ) else {
                    continue;
                };
                if super::headers::is_hop_by_hop(&name)
                    || name == header::CONTENT_LENGTH
                    || name == header::HOST
                    || name == header::CONTENT_TYPE
                    || name == header::CONTENT_ENCODING
                {
                    continue;
                }
                map.append(name, value);
            }
            if map.is_empty() {
                TrailerSection::None
            } else {
                TrailerSection::Fields(map)
            }
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_TRAILER_BYTES => TrailerSection::Incomplete,
        // Too many fields, too long or malformed: the decoder decides (skip or refuse).
        _ => TrailerSection::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn split_cookies_are_joined_with_semicolons() {
        let mut h = map(&[
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("cookie", "c=3"),
            ("x", "y"),
        ]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2; c=3");
        let mut one = map(&[("cookie", "a=1; b=2")]);
        join_cookies(&mut one);
        assert_eq!(one["cookie"], "a=1; b=2");
    }

    #[test]
    fn te_trailers_is_found_among_codings() {
        assert!(te_trailers(&map(&[("te", "trailers")])));
        assert!(te_trailers(&map(&[("te", "gzip, Trailers;q=1")])));
        assert!(!te_trailers(&map(&[("te", "gzip")])));
        assert!(!te_trailers(&map(&[])));
    }

    #[test]
    fn h2_headers_drop_host_and_keep_only_te_trailers() {
        let mut h = map(&[("host", "example.com"), ("accept", "*/*")]);
        static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
        for_h2(&mut h, true, &[(&XFF, HeaderValue::from_static("192.0.2.1"))]);
        assert!(h.get("host").is_none());
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");
        let mut h = map(&[("accept", "*/*")]);
        for_h2(&mut h, false, &[]);
        assert!(h.get("te").is_none());
    }

    #[test]
    fn the_uri_takes_the_clients_authority() {
        let host = HeaderValue::from_static("api.example.com:8080");
        let u = h2_uri(false, Some(&host), "10.0.0.1:80", "/a?b=c").unwrap();
        assert_eq!(u.to_string(), "http://api.example.com:8080/a?b=c");
        let u = h2_uri(true, None, "10.0.0.1:443", "").unwrap();
        assert_eq!(u.to_string(), "https://10.0.0.1:443/");
    }

    #[test]
    fn trailer_sections_are_read_whole() {
        assert_eq!(trailer_section(b"\r\n"), TrailerSection::None);
        assert_eq!(trailer_section(b""), TrailerSection::Incomplete);
        assert_eq!(
            trailer_section(b"x-checksum: abc\r\n"),
            TrailerSection::Incomplete
        );
        let TrailerSection::Fields(t) =
            trailer_section(b"x-checksum: abc\r\ncontent-length: 9\r\ngrpc-status: 0\r\n\r\nnext")
        else {
            panic!("fields expected");
        };
        assert_eq!(t["x-checksum"], "abc");
        assert_eq!(t["grpc-status"], "0");
        assert!(t.get("content-length").is_none(), "framing is not a trailer");
        assert_eq!(trailer_section(b"bad line\r\n\r\n"), TrailerSection::None);
    }

    proptest! {
        #[test]
        fn joined_cookies_keep_every_pair_in_order(pairs in proptest::collection::vec("[a-z]{1,5}=[a-z0-9]{0,5}", 1..6)) {
            let mut h = HeaderMap::new();
            for p in &pairs {
                h.append(header::COOKIE, HeaderValue::from_str(p).unwrap());
            }
            join_cookies(&mut h);
            prop_assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
            prop_assert_eq!(h[header::COOKIE].to_str().unwrap(), pairs.join("; "));
        }
    }
}
