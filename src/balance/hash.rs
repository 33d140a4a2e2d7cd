//! Hash functions of hashed pools and the extraction of a request's hash key.
//!
//! Owns: `xxh3` and `sha1-28` (DESIGN.md section 6) and the `hash_key` setting (`path`, `uri`,
//! `client_ip`, `header:NAME`, `cookie:NAME`, `query:NAME`): parsing it and hashing the key of one
//! request head.
//! Must not touch: member lists, rings or tables, sockets, clocks. Keys are read from the request
//! head as the caller hands it over, without allocating.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::str::FromStr;

use http::header::COOKIE;
use http::{HeaderMap, HeaderName, Uri};
use sha1::{Digest, Sha1};

/// Hash of ring points, Maglev member names and request keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashFunction {
    /// xxh3, 64 bits: the default.
    #[default]
    Xxh3,
    /// First 7 hex digits of SHA-1 read as an integer (0..=0xFFFFFFF), for published tables.
    Sha1_28,
}

impl HashFunction {
    /// Hashes `bytes`; the result never exceeds [`HashFunction::max_hash`].
    #[inline]
    pub fn hash(&self, bytes: &[u8]) -> u64 {
        match self {
            HashFunction::Xxh3 => xxhash_rust::xxh3::xxh3_64(bytes),
            HashFunction::Sha1_28 => {
                let digest = Sha1::digest(bytes);
                // Seven hex digits are the top 28 bits of the first four bytes.
                let top = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
                u64::from(top >> 4)
            }
        }
    }

    /// Parses the config spelling: `xxh3` or `sha1-28`.
    pub fn parse(s: &str) -> Result<HashFunction, String> {
        match s {
            "xxh3" => Ok(HashFunction::Xxh3),
            "sha1-28" => Ok(HashFunction::Sha1_28),
            other => Err(format!(
                "unknown hash function {other:?}: expected \"xxh3\" or \"sha1-28\""
            )),
        }
    }

    /// The config spelling of this function.
    pub fn name(&self) -> &'static str {
        match self {
            HashFunction::Xxh3 => "xxh3",
            HashFunction::Sha1_28 => "sha1-28",
        }
    }

    /// The largest value this function returns (the top of the hash space).
    pub fn max_hash(&self) -> u64 {
        match self {
            HashFunction::Xxh3 => u64::MAX,
            HashFunction::Sha1_28 => 0x0FFF_FFFF,
        }
    }

    /// Number of significant bits of the hash space (64 or 28).
    pub fn bits(&self) -> u32 {
        match self {
            HashFunction::Xxh3 => 64,
            HashFunction::Sha1_28 => 28,
        }
    }
}

impl FromStr for HashFunction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HashFunction::parse(s)
    }
}

impl fmt::Display for HashFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What part of a request a hashed pool hashes (`hash_key` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The path, without the query.
    Path,
    /// Path and query, as the client sent them.
    Uri,
    /// The client address in its usual text form (as nginx's `$remote_addr`).
    ClientIp,
    /// The first value of a request header.
    Header(HeaderName),
    /// The value of a cookie, searched in every `Cookie` header.
    Cookie(String),
    /// The raw (not percent-decoded) value of a query parameter.
    Query(String),
}

impl HashKey {
    /// Parses `path | uri | client_ip | header:NAME | cookie:NAME | query:NAME`.
    pub fn parse(s: &str) -> Result<HashKey, String> {
        match s {
            "path" => return Ok(HashKey::Path),
            "uri" => return Ok(HashKey::Uri),
            "client_ip" => return Ok(HashKey::ClientIp),
            _ => {}
        }
        let Some((kind, name)) = s.split_once(':') else {
            return Err(format!(
                "unknown hash key {s:?}: expected path, uri, client_ip, header:NAME, cookie:NAME or query:NAME"
            ));
        };
        if name.is_empty() {
            return Err(format!("hash key {s:?} needs a name after the colon"));
        }
        match kind {
            "header" => HeaderName::from_bytes(name.as_bytes())
                .map(HashKey::Header)
                .map_err(|_| format!("hash key {s:?}: {name:?} is not a valid header name")),
            "cookie" => {
                // A name that cannot appear in a Cookie header would silently never match.
                if name.bytes().all(is_cookie_name_byte) {
                    Ok(HashKey::Cookie(name.to_owned()))
                } else {
                    Err(format!("hash key {s:?}: {name:?} is not a valid cookie name"))
                }
            }
            "query" => {
                if name.contains(['&', '=', '#', ' ']) {
                    Err(format!(
                        "hash key {s:?}: {name:?} is not a valid query parameter name"
                    ))
                } else {
                    Ok(HashKey::Query(name.to_owned()))
                }
            }
            _ => Err(format!(
                "unknown hash key {s:?}: expected path, uri, client_ip, header:NAME, cookie:NAME or query:NAME"
            )),
        }
    }

    /// Hashes this key of a request, or `None` when the request lacks it.
    pub fn key_hash(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        client_ip: IpAddr,
        f: HashFunction,
    ) -> Option<u64> {
        match self {
            HashKey::Path => Some(f.hash(uri.path().as_bytes())),
            HashKey::Uri => {
                let target = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
                Some(f.hash(target.as_bytes()))
            }
            HashKey::ClientIp => {
                let mut buf = StackBuf::new();
                // An address is at most 45 characters, so the buffer never overflows.
                write!(buf, "{client_ip}").ok()?;
                Some(f.hash(buf.as_bytes()))
            }
            HashKey::Header(name) => headers.get(name).map(|v| f.hash(v.as_bytes())),
            HashKey::Cookie(name) => headers
                .get_all(COOKIE)
                .iter()
                .find_map(|v| cookie_value(v.as_bytes(), name.as_bytes()))
                .map(|v| f.hash(v)),
            HashKey::Query(name) => uri
                .query()
                .and_then(|q| query_value(q.as_bytes(), name.as_bytes()))
                .map(|v| f.hash(v)),
        }
    }
}

impl FromStr for HashKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HashKey::parse(s)
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKey::Path => f.write_str("path"),
            HashKey::Uri => f.write_str("uri"),
            HashKey::ClientIp => f.write_str("client_ip"),
            HashKey::Header(n) => write!(f, "header:{n}"),
            HashKey::Cookie(n) => write!(f, "cookie:{n}"),
            HashKey::Query(n) => write!(f, "query:{n}"),
        }
    }
}

fn is_cookie_name_byte(b: u8) -> bool {
    // RFC 6265 cookie-name is an RFC 7230 token.
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The value of cookie `name` in one `Cookie` header value.
fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim_ows(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (k, v) = (trim_ows(&pair[..eq]), &pair[eq + 1..]);
        (k == name).then(|| trim_ows(v))
    })
}

/// The raw value of parameter `name` in a query string; a bare `name` has the empty value.
fn query_value<'a>(query: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    query
        .split(|&b| b == b'&')
        .find_map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq] == name).then(|| &pair[eq + 1..]),
            None => (pair == name).then_some(&pair[pair.len()..]),
        })
}

/// A fixed buffer to format an address into without allocating.
struct StackBuf {
    buf: [u8; 64],
    len: usize,
}

impl StackBuf {
    fn new() -> StackBuf {
        StackBuf { buf: [0; 64], len: 0 }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            let name = HeaderName::from_bytes(k.as_bytes()).expect("test header name");
            map.append(name, HeaderValue::from_str(v).expect("test header value"));
        }
        map
    }

    #[test]
    fn sha1_28_matches_published_points() {
        // Points of the classic ring demonstration.
        let f = HashFunction::Sha1_28;
        assert_eq!(f.hash(b"server-a-0"), 148_456_820);
        assert_eq!(f.hash(b"server-a-4"), 23_746_828);
        assert_eq!(f.hash(b"server-b-0"), 78_860_336);
        // The empty string: SHA-1 da39a3e..., so 0xda39a3e.
        assert_eq!(f.hash(b""), 0x0da3_9a3e);
    }

    #[test]
    fn sha1_28_stays_in_its_space() {
        let f = HashFunction::Sha1_28;
        for i in 0..2000u32 {
            assert!(f.hash(&i.to_le_bytes()) <= f.max_hash());
        }
    }

    #[test]
    fn xxh3_is_the_reference_function() {
        let f = HashFunction::Xxh3;
        assert_eq!(f.hash(b"abc"), xxhash_rust::xxh3::xxh3_64(b"abc"));
        assert_ne!(f.hash(b"abc"), f.hash(b"abd"));
    }

    #[test]
    fn hash_function_parse_round_trips() {
        for f in [HashFunction::Xxh3, HashFunction::Sha1_28] {
            assert_eq!(HashFunction::parse(f.name()), Ok(f));
            assert_eq!(f.to_string().parse::<HashFunction>(), Ok(f));
        }
        assert!(HashFunction::parse("md5").is_err());
        assert!(HashFunction::parse("XXH3").is_err());
    }

    #[test]
    fn hash_key_parse_accepts_every_form() {
        assert_eq!(HashKey::parse("path"), Ok(HashKey::Path));
        assert_eq!(HashKey::parse("uri"), Ok(HashKey::Uri));
        assert_eq!(HashKey::parse("client_ip"), Ok(HashKey::ClientIp));
        assert_eq!(
            HashKey::parse("header:X-User"),
            Ok(HashKey::Header(HeaderName::from_static("x-user")))
        );
        assert_eq!(
            HashKey::parse("cookie:session"),
            Ok(HashKey::Cookie("session".into()))
        );
        assert_eq!(HashKey::parse("query:id"), Ok(HashKey::Query("id".into())));
        for k in [
            "path",
            "uri",
            "client_ip",
            "header:x-user",
            "cookie:s",
            "query:id",
        ] {
            assert_eq!(HashKey::parse(k).map(|k| k.to_string()).as_deref(), Ok(k));
        }
    }

    #[test]
    fn hash_key_parse_rejects_bad_forms() {
        for bad in [
            "",
            "paths",
            "header:",
            "header:bad name",
            "cookie:",
            "cookie:a=b",
            "cookie:a;b",
            "query:",
            "query:a&b",
            "body:x",
            "client-ip",
        ] {
            assert!(HashKey::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn path_and_uri_keys() {
        let f = HashFunction::Xxh3;
        let uri: Uri = "/a/b?x=1".parse().expect("uri");
        let h = HeaderMap::new();
        assert_eq!(HashKey::Path.key_hash(&uri, &h, IP, f), Some(f.hash(b"/a/b")));
        assert_eq!(HashKey::Uri.key_hash(&uri, &h, IP, f), Some(f.hash(b"/a/b?x=1")));
        let absolute: Uri = "http://example.com/a/b?x=1".parse().expect("uri");
        assert_eq!(
            HashKey::Uri.key_hash(&absolute, &h, IP, f),
            Some(f.hash(b"/a/b?x=1"))
        );
    }

    #[test]
    fn client_ip_key_is_the_text_form() {
        let f = HashFunction::Xxh3;
        let uri: Uri = "/".parse().expect("uri");
        let h = HeaderMap::new();
        assert_eq!(
            HashKey::ClientIp.key_hash(&uri, &h, IP, f),
            Some(f.hash(b"192.0.2.7"))
        );
        let longest = IpAddr::V6(Ipv6Addr::new(
            0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
        ));
        let text = longest.to_string();
        assert_eq!(
            HashKey::ClientIp.key_hash(&uri, &h, longest, f),
            Some(f.hash(text.as_bytes()))
        );
        let mapped = IpAddr::V6(Ipv4Addr::new(255, 255, 255, 255).to_ipv6_mapped());
        assert_eq!(
            HashKey::ClientIp.key_hash(&uri, &h, mapped, f),
            Some(f.hash(mapped.to_string().as_bytes()))
        );
    }

    #[test]
    fn header_key_uses_the_first_value() {
        let f = HashFunction::Xxh3;
        let uri: Uri = "/".parse().expect("uri");
        let key = HashKey::parse("header:x-user").expect("key");
        let h = headers(&[("x-user", "alice"), ("x-user", "bob")]);
        assert_eq!(key.key_hash(&uri, &h, IP, f), Some(f.hash(b"alice")));
        assert_eq!(key.key_hash(&uri, &HeaderMap::new(), IP, f), None);
    }

    #[test]
    fn cookie_key_searches_every_cookie_header() {
        let f = HashFunction::Xxh3;
        let uri: Uri = "/".parse().expect("uri");
        let key = HashKey::parse("cookie:sid").expect("key");
        let h = headers(&[("cookie", "a=1; b=2"), ("cookie", "x=9;  sid=abc ; y=3")]);
        assert_eq!(key.key_hash(&uri, &h, IP, f), Some(f.hash(b"abc")));
        let h = headers(&[("cookie", "sidx=1; xsid=2; sid")]);
        assert_eq!(key.key_hash(&uri, &h, IP, f), None);
        let h = headers(&[("cookie", "sid=")]);
        assert_eq!(key.key_hash(&uri, &h, IP, f), Some(f.hash(b"")));
        assert_eq!(key.key_hash(&uri, &HeaderMap::new(), IP, f), None);
    }

    #[test]
    fn query_key_reads_raw_values() {
        let f = HashFunction::Xxh3;
        let h = HeaderMap::new();
        let key = HashKey::parse("query:id").expect("key");
        let uri: Uri = "/p?a=1&id=42%20x&id=7".parse().expect("uri");
        assert_eq!(key.key_hash(&uri, &h, IP, f), Some(f.hash(b"42%20x")));
        let uri: Uri = "/p?ids=1&xid=2".parse().expect("uri");
        assert_eq!(key.key_hash(&uri, &h, IP, f), None);
        let uri: Uri = "/p?a&id".parse().expect("uri");
        assert_eq!(key.key_hash(&uri, &h, IP, f), Some(f.hash(b"")));
        let uri: Uri = "/p".parse().expect("uri");
        assert_eq!(key.key_hash(&uri, &h, IP, f), None);
    }
}
