//! Path normalisation: the one spelling of a request path that routes are matched on, that
//! servers are sent and that static files are mapped from.
//!
//! Owns: the rules of RFC 3986 §6.2.2 as Ringway applies them to a request path: percent-encoded
//! unreserved characters decoded, the hex of the other percent-encodings upper-cased, dot
//! segments removed (§5.2.4, after decoding, so `%2e%2e` is `..`), repeated slashes merged; a
//! `..` above the root and a malformed percent-encoding are errors (the request is answered
//! 400). An encoded slash (`%2F`) stays encoded and is not a segment separator.
//! Must not touch: the query (kept as received), routes, sockets. Pure and
//! allocation-free for a path that is already normal: that is nearly every request.

use std::borrow::Cow;
use std::fmt;

/// Why a path cannot be normalised; the request is answered 400. A path with both faults is
/// `BadPercent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `..` segment would climb above the root (`/../x`, `/a/%2e%2e/..`).
    AboveRoot,
    /// A `%` not followed by two hex digits (`%zz`, `%4`).
    BadPercent,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::AboveRoot => "a `..` segment climbs above the root",
            PathError::BadPercent => "a `%` is not followed by two hex digits",
        })
    }
}

/// The normal form of a request path (without its query), borrowed when it already is one.
///
/// A path that does not start with `/` (`*` of `OPTIONS *`, the empty path of `CONNECT`) is
/// returned as it is: it names no resource on a server's tree.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if !path.starts_with('/') || !suspicious(bytes) || is_normal(bytes)? {
        return Ok(Cow::Borrowed(path));
    }
    rewrite(path).map(Cow::Owned)
}

/// RFC 3986 unreserved characters: decoding them never changes what a path means.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// The byte of the percent-encoding whose two hex digits start `digits`.
fn percent_byte(digits: &[u8]) -> Result<u8, PathError> {
    match digits {
        [hi, lo, ..] => match (hex_value(*hi), hex_value(*lo)) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err(PathError::BadPercent),
        },
        _ => Err(PathError::BadPercent),
    }
}

/// Whether a path may not be normal: it has a `%`, or a slash followed by a slash or a dot.
///
/// The price of the common request, so it has no branch per byte and the compiler vectorises
/// it; `/.well-known/` is suspicious but normal, and [`is_normal`] then looks closer.
fn suspicious(b: &[u8]) -> bool {
    let Some((&last, _)) = b.split_last() else {
        return false;
    };
    let pairs = b.iter().zip(&b[1..]);
    let hit = pairs.fold(false, |hit, (&x, &y)| {
        hit | (x == b'%') | ((x == b'/') & ((y == b'/') | (y == b'.')))
    });
    hit | (last == b'%')
}

/// Whether a path (starting with `/`) is already normal, in one pass over its bytes.
///
/// It is not normal when it has an empty, `.` or `..` segment (other than the empty one after
/// a trailing slash), or a percent-encoding of an unreserved character or in lower-case hex.
fn is_normal(b: &[u8]) -> Result<bool, PathError> {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let digits = &b[i + 1..];
                let byte = percent_byte(digits)?;
                if is_unreserved(byte) || digits[..2].iter().any(u8::is_ascii_lowercase) {
                    return Ok(false);
                }
                i += 3;
            }
            b'/' => {
                // The segment after this slash: empty (`//`), `.` or `..`. An empty one at the
                // end is the trailing slash of a directory, which stays.
                if matches!(
                    &b[i + 1..],
                    [b'/', ..] | [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..]
                ) {
                    return Ok(false);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(true)
}

/// Appends `segment` with its percent-encodings in normal form.
fn decode_into(segment: &str, out: &mut String) -> Result<(), PathError> {
    let mut rest = segment;
    while let Some(at) = memchr::memchr(b'%', rest.as_bytes()) {
        out.push_str(&rest[..at]);
        let digits = &rest.as_bytes()[at + 1..];
        let byte = percent_byte(digits)?;
        if is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(digits[0].to_ascii_uppercase()));
            out.push(char::from(digits[1].to_ascii_uppercase()));
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(())
}

/// The normal form of a path that is not normal, built segment by segment (§5.2.4): a segment
/// is written, then looked at once decoded; `.` and empty segments are taken back, `..` takes
/// back the segment before it too.
fn rewrite(path: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    // Whether the path ends in a directory: a trailing `/`, `/.` or `/..` keeps its slash.
    let mut directory = false;
    let mut above_root = false;
    for segment in path[1..].split('/') {
        let start = out.len();
        out.push('/');
        decode_into(segment, &mut out)?;
        match &out[start + 1..] {
            "" | "." => {
                out.truncate(start);
                directory = true;
            }
            ".." => {
                out.truncate(start);
                // A decoded segment holds no `/` (`%2F` stays encoded), so the last `/` of the
                // output starts the segment that `..` takes back.
                match out.rfind('/') {
                    Some(parent) => out.truncate(parent),
                    // Read on: a malformed encoding further on is the error to report.
                    None => above_root = true,
                }
                directory = true;
            }
            _ => directory = false,
        }
    }
    if above_root {
        return Err(PathError::AboveRoot);
    }
    if out.is_empty() || directory {
        out.push('/');
    }
    Ok(out)
}

/// `uri` with `path` (its normal path) in place of its path; the query stays as received, and
/// the scheme and authority of an absolute or HTTP/2 target stay too.
pub fn with_path(uri: &http::Uri, path: &str) -> Option<http::Uri> {
    let target = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(target).ok()?);
    http::Uri::from_parts(parts).ok()
}

/// Whether a normal path holds an encoded slash (`%2F`; normal form has upper-case hex).
pub fn has_encoded_slash(normal: &str) -> bool {
    memchr::memmem::find(normal.as_bytes(), b"%2F").is_some()
}

#[cfg(test)]
mod tests;
