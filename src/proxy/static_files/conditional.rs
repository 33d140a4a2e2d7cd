//! Pure: the answer to a GET or HEAD of a file, given its validators and the request's
//! conditional and `Range` fields (RFC 9110 sections 13 and 14).
//!
//! Owns: the order in which the preconditions are evaluated (13.2.2), entity-tag comparison,
//! HTTP-date comparison at one-second precision, and the parsing of a single byte range.
//! Must not touch: the file system or the clock (the file's size and time are given).

use std::time::{SystemTime, UNIX_EPOCH};

/// What identifies one version of the file being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// Its size in bytes.
    pub len: u64,
    /// Its modification time in whole seconds since the epoch, when the file system has one.
    pub modified: Option<u64>,
    /// Its strong entity tag, quotes included (see [`entity_tag`]).
    pub etag: String,
}

impl Validators {
    /// The validators of a file of `len` bytes last modified at `modified`.
    pub fn of(len: u64, modified: Option<SystemTime>) -> Validators {
        let modified = modified
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        Validators {
            len,
            modified,
            etag: entity_tag(len, modified.unwrap_or(0)),
        }
    }
}

/// A strong entity tag from size and modification time, in nginx's form
/// `"<mtime hex>-<size hex>"`, so a file served by either has the same tag.
pub fn entity_tag(len: u64, modified_secs: u64) -> String {
    format!("\"{modified_secs:x}-{len:x}\"")
}

/// The request's fields that decide the answer, as text (a field that is not text is absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions<'a> {
    /// The method is GET (ranges apply to GET only, RFC 9110 14.2); otherwise HEAD.
    pub get: bool,
    /// `If-Match`.
    pub if_match: Option<&'a str>,
    /// `If-None-Match`.
    pub if_none_match: Option<&'a str>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'a str>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<&'a str>,
    /// `Range`, when the request has exactly one.
    pub range: Option<&'a str>,
    /// `If-Range`.
    pub if_range: Option<&'a str>,
}

/// Bytes `start ..= start + len - 1` of the file (`len` ≥ 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// Offset of the first byte.
    pub start: u64,
    /// Number of bytes.
    pub len: u64,
}

impl ByteRange {
    /// Offset of the last byte.
    pub fn last(self) -> u64 {
        self.start + self.len - 1
    }
}

/// How to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 with the whole file.
    Whole,
    /// 206 with one range of it.
    Part(ByteRange),
    /// 304: the client's copy is current.
    NotModified,
    /// 412: `If-Match` or `If-Unmodified-Since` failed.
    PreconditionFailed,
    /// 416: the one range asked for starts beyond the end.
    Unsatisfiable,
}

/// Decides the answer for a file with validators `v` (RFC 9110 13.2.2's order: `If-Match`,
/// else `If-Unmodified-Since`; then `If-None-Match`, else `If-Modified-Since`; then `Range`
/// with `If-Range`).
pub fn decide(v: &Validators, c: &Conditions<'_>) -> Answer {
    if let Some(list) = c.if_match {
        if !tag_list_matches(list, &v.etag, Comparison::Strong) {
            return Answer::PreconditionFailed;
        }
    } else if let (Some(since), Some(modified)) = (c.if_unmodified_since.and_then(http_date), v.modified)
        && modified > since
    {
        return Answer::PreconditionFailed;
    }
    if let Some(list) = c.if_none_match {
        if tag_list_matches(list, &v.etag, Comparison::Weak) {
            return Answer::NotModified;
        }
    } else if let (Some(since), Some(modified)) = (c.if_modified_since.and_then(http_date), v.modified)
        && modified <= since
    {
        return Answer::NotModified;
    }
    let Some(range) = c.range.filter(|_| c.get) else {
        return Answer::Whole;
    };
    if let Some(validator) = c.if_range
        && !if_range_matches(validator, v)
    {
        return Answer::Whole;
    }
    match parse_range(range, v.len) {
        RangeAsk::One(r) => Answer::Part(r),
        RangeAsk::Unsatisfiable => Answer::Unsatisfiable,
        RangeAsk::Ignored => Answer::Whole,
    }
}

/// What a `Range` field asks of a file of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// One satisfiable range, clipped to the file.
    One(ByteRange),
    /// One range that no byte of the file satisfies.
    Unsatisfiable,
    /// Not a single valid byte range (other unit, bad syntax, several ranges): the whole
    /// file is sent, as RFC 9110 14.2 lets a server ignore `Range`.
    Ignored,
}

/// Parses `Range` for a file of `len` bytes: `bytes=0-99`, `bytes=100-`, `bytes=-500`.
///
/// Several ranges are answered with the whole file (no `multipart/byteranges`): a client that
/// asks for several parts still gets every byte, and no cost of many small parts falls on us.
pub fn parse_range(field: &str, len: u64) -> RangeAsk {
    let Some((unit, set)) = field.split_once('=') else {
        return RangeAsk::Ignored;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeAsk::Ignored;
    }
    // A `#` list: empty elements and whitespace around the commas are allowed.
    let mut specs = set
        .split(',')
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeAsk::Ignored;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAsk::Ignored;
    };
    match (digits(first), digits(last)) {
        // bytes=-N: the last N bytes.
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || len == 0 {
                return RangeAsk::Unsatisfiable;
            }
            let n = suffix.min(len);
            RangeAsk::One(ByteRange {
                start: len - n,
                len: n,
            })
        }
        // bytes=N-: from N to the end.
        (Some(start), None) if last.is_empty() => {
            if start >= len {
                return RangeAsk::Unsatisfiable;
            }
            RangeAsk::One(ByteRange {
                start,
                len: len - start,
            })
        }
        (Some(start), Some(end)) if start <= end => {
            if start >= len {
                return RangeAsk::Unsatisfiable;
            }
            let end = end.min(len - 1);
            RangeAsk::One(ByteRange {
                start,
                len: end - start + 1,
            })
        }
        _ => RangeAsk::Ignored,
    }
}

/// A non-empty run of ASCII digits as a number (saturating: a position past `u64::MAX` is
/// past any file's end).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Seconds since the epoch of an HTTP-date (any of the three forms RFC 9110 5.6.7 accepts).
fn http_date(s: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Entity-tag comparison (RFC 9110 8.8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    /// Both tags strong and equal.
    Strong,
    /// Equal once any `W/` is set aside.
    Weak,
}

/// Whether `list` (`*` or a comma-separated list of entity tags) holds `ours` (a strong tag).
///
/// An entity tag may hold a comma inside its quotes, so the list is read tag by tag rather than
/// split on commas; a list that does not parse matches nothing from where it breaks.
fn tag_list_matches(list: &str, ours: &str, comparison: Comparison) -> bool {
    let list = list.trim_matches([' ', '\t']);
    if list == "*" {
        return true;
    }
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let Some((weak, tag, after)) = next_tag(rest) else {
            return false;
        };
        if tag == ours && (comparison == Comparison::Weak || !weak) {
            return true;
        }
        rest = after;
    }
}

/// The entity tag at the start of `s`: (weak, the tag with its quotes, what follows).
fn next_tag(s: &str) -> Option<(bool, &str, &str)> {
    let (weak, s) = match s.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let inner = s.strip_prefix('"')?;
    let close = inner.find('"')?;
    Some((weak, &s[..close + 2], &inner[close + 1..]))
}

/// Whether an `If-Range` validator names the current file: a strong entity tag equal to ours,
/// or an HTTP-date equal to its modification time (RFC 9110 13.1.5).
fn if_range_matches(validator: &str, v: &Validators) -> bool {
    let validator = validator.trim_matches([' ', '\t']);
    if validator.starts_with('"') || validator.starts_with("W/") {
        return match next_tag(validator) {
            Some((false, tag, rest)) => rest.trim().is_empty() && tag == v.etag,
            _ => false,
        };
    }
    match (http_date(validator), v.modified) {
        (Some(date), Some(modified)) => date == modified,
        _ => false,
    }
}
