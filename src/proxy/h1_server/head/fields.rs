//! The header fields that decide how a request is framed and what it asks of its connection
//! (`Host`, `Content-Length`, `Transfer-Encoding`, `Expect`, `Connection`, `Upgrade`), gathered
//! during the one pass over the head's lines and judged at its end.
//!
//! Must not touch: the request line and the header map (head.rs owns both).

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{StatusCode, Version};

use super::{Refusal, RequestBodyFraming};

/// What the fields said so far.
#[derive(Debug, Default)]
pub(super) struct FieldRules {
    /// `Host` lines.
    hosts: u8,
    /// The one value every `Content-Length` element agreed on.
    length: Option<u64>,
    /// That value is in the header map.
    length_kept: bool,
    /// A `Transfer-Encoding` line was seen.
    transfer_encoding: bool,
    /// `chunked` codings across all `Transfer-Encoding` lines.
    chunked: u8,
    /// The last coding so far is `chunked`.
    chunked_last: bool,
    /// A coding other than `chunked`.
    other_coding: bool,
    /// An empty element in a `Transfer-Encoding` list.
    empty_coding: bool,
    /// `Expect: 100-continue`.
    continue_expected: bool,
    /// An expectation other than `100-continue`.
    other_expectation: bool,
    /// `Connection` tokens.
    close: bool,
    keep_alive: bool,
    upgrade_token: bool,
    /// A non-empty `Upgrade` field.
    upgrade_field: bool,
}

/// What the fields decide for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Decided {
    pub(super) body: RequestBodyFraming,
    pub(super) keep_alive: bool,
    pub(super) expect_continue: bool,
    pub(super) upgrade: bool,
}

impl FieldRules {
    /// Takes one header line into account; `Ok(Some(value))` is what goes into the header map
    /// (`None`: nothing, for a `Content-Length` already there).
    pub(super) fn field(&mut self, name: &HeaderName, value: Bytes) -> Result<Option<Bytes>, Refusal> {
        // Standard names compare as small integers; most fields match none of these.
        if name == header::HOST {
            self.hosts += 1;
            if self.hosts > 1 {
                return Err(Refusal::bad("more than one Host"));
            }
            if !is_valid_host(&value) {
                return Err(Refusal::bad("invalid Host"));
            }
        } else if name == header::CONTENT_LENGTH {
            return self.content_length(value);
        } else if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            for coding in list(&value) {
                let chunked = coding.eq_ignore_ascii_case(b"chunked");
                self.chunked = self.chunked.saturating_add(u8::from(chunked));
                self.empty_coding |= coding.is_empty();
                self.other_coding |= !chunked && !coding.is_empty();
                self.chunked_last = chunked;
            }
        } else if name == header::EXPECT {
            // Empty list elements are allowed and mean nothing (RFC 9110 5.6.1).
            for expectation in list(&value).filter(|e| !e.is_empty()) {
                if expectation.eq_ignore_ascii_case(b"100-continue") {
                    self.continue_expected = true;
                } else {
                    self.other_expectation = true;
                }
            }
        } else if name == header::CONNECTION {
            for token in list(&value) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                self.upgrade_token |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name == header::UPGRADE {
            self.upgrade_field |= !value.is_empty();
        }
        Ok(Some(value))
    }

    /// Every element of every `Content-Length` line must be the same plain number; the map gets
    /// it once, as the first element's digits (a slice of the head).
    fn content_length(&mut self, value: Bytes) -> Result<Option<Bytes>, Refusal> {
        let mut first: Option<&[u8]> = None;
        for element in list(&value) {
            let n = digits(element).ok_or(Refusal::bad("invalid Content-Length"))?;
            if self.length.is_some_and(|m| m != n) {
                return Err(Refusal::bad("conflicting Content-Length"));
            }
            self.length = Some(n);
            first.get_or_insert(element);
        }
        // `list` yields at least one element, so `first` is set.
        let Some(first) = first else { return Ok(None) };
        if self.length_kept {
            return Ok(None);
        }
        self.length_kept = true;
        if first.len() == value.len() {
            return Ok(Some(value));
        }
        Ok(Some(value.slice_ref(first)))
    }

    /// Judges the head once all its fields are seen (RFC 9112 3.2, 6.1, 6.3, 9.3; RFC 9110
    /// 10.1.1). Every framing error is a 400; a coding it cannot decode is a 501 and an
    /// unknown expectation a 417, once the framing itself is sound.
    pub(super) fn decide(self, version: Version) -> Result<Decided, Refusal> {
        let http11 = version == Version::HTTP_11;
        if http11 && self.hosts == 0 {
            return Err(Refusal::bad("missing Host"));
        }
        let body = if self.transfer_encoding {
            if self.length.is_some() {
                return Err(Refusal::bad("both Content-Length and Transfer-Encoding"));
            }
            if !http11 {
                return Err(Refusal::bad("Transfer-Encoding in HTTP/1.0"));
            }
            if self.empty_coding || self.chunked != 1 || !self.chunked_last {
                return Err(Refusal::bad("chunked is not the one and final transfer coding"));
            }
            if self.other_coding {
                return Err(Refusal {
                    status: StatusCode::NOT_IMPLEMENTED,
                    reason: "transfer coding other than chunked",
                });
            }
            RequestBodyFraming::Chunked
        } else {
            match self.length {
                None | Some(0) => RequestBodyFraming::None,
                Some(n) => RequestBodyFraming::Length(n),
            }
        };
        if self.other_expectation {
            return Err(Refusal {
                status: StatusCode::EXPECTATION_FAILED,
                reason: "expectation other than 100-continue",
            });
        }
        Ok(Decided {
            body,
            keep_alive: !self.close && (http11 || self.keep_alive),
            expect_continue: http11 && self.continue_expected && body != RequestBodyFraming::None,
            upgrade: http11 && self.upgrade_token && self.upgrade_field,
        })
    }
}

/// The elements of a comma-separated field value, optional whitespace trimmed (empty elements
/// included: each rule decides what they mean).
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// A plain decimal number that fits u64 (leading zeros allowed; no sign, no space inside).
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Whether `value` is a valid `Host` field value: `host [":" port]` of RFC 3986 3.2.2, with no
/// userinfo (RFC 9112 3.2). Checked byte by byte: building an `http::uri::Authority` only to
/// validate cost about 600 instructions per request.
pub(super) fn is_valid_host(value: &[u8]) -> bool {
    let (host, rest) = match value.first() {
        None => return false,
        Some(b'[') => match memchr::memchr(b']', value) {
            // An IPv6 literal (or IPvFuture): hex digits, colons and dots, at least one colon.
            Some(end) => {
                let inside = &value[1..end];
                let ok = inside.contains(&b':')
                    && inside
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
                if !ok {
                    return false;
                }
                (&value[..=end], &value[end + 1..])
            }
            None => return false,
        },
        Some(_) => match memchr::memchr(b':', value) {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &value[value.len()..]),
        },
    };
    let host_ok = host.first() == Some(&b'[') || is_reg_name(host);
    let port_ok = match rest.split_first() {
        None => true,
        Some((b':', port)) => port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_ok && port_ok
}

/// A non-empty `reg-name` of unreserved and sub-delims characters. Percent-encodings are valid
/// in RFC 3986 but refused, as `http` refuses them: no client needs them in a host name, and a
/// server behind could decode them into another name than the one routed.
fn is_reg_name(host: &[u8]) -> bool {
    !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b))
}
