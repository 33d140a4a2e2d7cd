//! What Ringway's fuzz targets share: cutting an input into the reads a connection might see,
//! the invariants an accepted request head must hold, and a strict reading of a chunked body
//! that the decoder's answers are checked against (docs/fuzzing.md).
//!
//! Must not touch: anything of Ringway but its public parsing API.

use http::header::{self, HeaderValue};
use ringway::proxy::h1_server::head::{HeadEnd, RequestBodyFraming, RequestHead, find_head_end};
use ringway::proxy::{h1, headers};

/// Where to cut `data` into reads (the end of each piece, the last being `data.len()`). The
/// cuts come from a hash of the input, so a run is repeatable and any mutation moves them.
/// Mostly short reads; at most about 256 of them, so that long inputs stay quick (a decoder
/// may look at what it holds again on each read).
pub fn cuts(data: &[u8]) -> Vec<usize> {
    let mut h = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    let floor = data.len() / 256;
    let mut ends = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        let step = if h & 0x100 == 0 {
            h % 8 + 1
        } else {
            (h >> 9) % 512 + 1
        };
        pos = pos.saturating_add((step as usize).max(floor)).min(data.len());
        ends.push(pos);
    }
    ends
}

/// One read per byte.
pub fn every_byte(data: &[u8]) -> Vec<usize> {
    (1..=data.len()).collect()
}

/// Feeds `data` to [`find_head_end`] in the reads `ends` gives, as the connection does, and
/// returns the first answer that is not `Partial`.
pub fn feed_head(data: &[u8], ends: &[usize], max: usize) -> HeadEnd {
    let mut scanned = 0;
    for &end in ends {
        let got = find_head_end(&data[..end], scanned, max);
        if got != HeadEnd::Partial {
            return got;
        }
        scanned = end;
    }
    find_head_end(data, scanned, max)
}

/// The invariants of a head `parse_request_head` accepted.
pub fn check_accepted(head: &RequestHead) {
    use http::{Method, Version};
    assert!(head.version == Version::HTTP_11 || head.version == Version::HTTP_10);
    assert_ne!(head.method, Method::CONNECT);
    let hosts = head.headers.get_all(header::HOST).iter().count();
    assert!(hosts == 1 || (hosts == 0 && head.version == Version::HTTP_10));
    // Origin form, absolute http(s) form without userinfo, or OPTIONS *.
    if let Some(a) = head.uri.authority() {
        assert!(!a.as_str().contains('@'));
        assert!(matches!(head.uri.scheme_str(), Some("http" | "https")));
    } else if head.uri == "*" {
        assert_eq!(head.method, Method::OPTIONS);
    } else {
        assert!(head.uri.path().starts_with('/'));
    }
    let lengths: Vec<&HeaderValue> = head.headers.get_all(header::CONTENT_LENGTH).iter().collect();
    let te = head.headers.contains_key(header::TRANSFER_ENCODING);
    match head.body {
        RequestBodyFraming::None => {
            assert!(!te);
            assert!(lengths.len() <= 1 && lengths.iter().all(|v| number(v.as_bytes()) == Some(0)));
        }
        RequestBodyFraming::Length(n) => {
            assert!(n > 0 && !te);
            assert_eq!(lengths.len(), 1);
            assert_eq!(number(lengths[0].as_bytes()), Some(n));
        }
        RequestBodyFraming::Chunked => {
            assert!(te && lengths.is_empty());
            assert_eq!(head.version, Version::HTTP_11);
        }
    }
    assert!(!head.upgrade || head.version == Version::HTTP_11);
    assert!(!head.expect_continue || head.body != RequestBodyFraming::None);
    check_forwarded_framing(head);
}

/// The head forward.rs writes for `head` (forwarding fields left out) has one unambiguous
/// framing that says what the client's did, and at most one Host.
pub fn check_forwarded_framing(head: &RequestHead) {
    let mut fields = head.headers.clone();
    if let Some(a) = head.uri.authority() {
        let host = HeaderValue::from_str(a.as_str()).expect("an authority is a header value");
        fields.insert(header::HOST, host);
    }
    headers::remove_hop_by_hop(&mut fields, head.upgrade);
    let has_body = head.body != RequestBodyFraming::None;
    let framing = h1::RequestFraming::of(&head.method, &fields, has_body);
    let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let out = h1::encode_request_head(&head.method, target, &fields, &[], framing);
    let mut lines = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut lines);
    assert_eq!(parsed.parse(&out), Ok(httparse::Status::Complete(out.len())));
    let named = |n: &str| -> Vec<&[u8]> {
        parsed
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(n))
            .map(|h| h.value)
            .collect()
    };
    let lengths = named("content-length");
    let codings = named("transfer-encoding");
    assert!(named("host").len() <= 1);
    match head.body {
        RequestBodyFraming::None => {
            assert!(codings.is_empty());
            assert!(lengths.len() <= 1 && lengths.iter().all(|v| number(v) == Some(0)));
        }
        RequestBodyFraming::Length(n) => {
            assert!(codings.is_empty());
            assert_eq!(lengths.len(), 1);
            assert_eq!(number(lengths[0]), Some(n));
        }
        RequestBodyFraming::Chunked => {
            assert!(lengths.is_empty());
            assert_eq!(codings, [&b"chunked"[..]]);
        }
    }
}

fn number(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The longest chunk-size line (CRLF included) and trailer section `h1::BodyDecoder` takes;
/// the same numbers as its private limits.
pub const MAX_CHUNK_LINE: usize = 4096;
pub const MAX_TRAILERS: usize = 16 * 1024;

/// A strict reading of a chunked body at the front of `input` (RFC 9112 7.1): its data and its
/// length, or `None` if it is malformed, over a limit, or incomplete. Every line ends in CR LF
/// and holds no other CR or LF; a chunk size has 1 to 16 hex digits, then optional blanks and
/// an extension after `;`.
pub fn strict_chunked(input: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let (line, next) = line(input, at)?;
        if next - at > MAX_CHUNK_LINE {
            return None;
        }
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 16 {
            return None;
        }
        let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()?;
        let rest = &line[digits..];
        let blanks = rest.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
        if rest.get(blanks).is_some_and(|&b| b != b';') {
            return None;
        }
        at = next;
        if size == 0 {
            break;
        }
        let end = at.checked_add(usize::try_from(size).ok()?)?;
        if input.get(end..end.checked_add(2)?)? != b"\r\n" {
            return None;
        }
        body.extend_from_slice(&input[at..end]);
        at = end + 2;
    }
    let start = at;
    loop {
        let (line, next) = line(input, at)?;
        if next - start > MAX_TRAILERS {
            return None;
        }
        at = next;
        if line.is_empty() {
            return Some((body, at));
        }
    }
}

/// The line starting at `at` (without its CR LF) and where the next begins; `None` if it has
/// no CR LF yet or holds a bare CR or LF.
fn line(input: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = input.get(at..)?;
    let cr = rest.windows(2).position(|w| w == b"\r\n")?;
    let line = &rest[..cr];
    if line.iter().any(|&b| b == b'\r' || b == b'\n') {
        return None;
    }
    Some((line, at + cr + 2))
}
