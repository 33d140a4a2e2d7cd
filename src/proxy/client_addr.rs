//! The real client's address behind trusted HTTP proxies (`trusted_proxies`, nginx's
//! `set_real_ip_from` with `real_ip_recursive on`).
//!
//! Owns: which entry of `X-Forwarded-For` (or, without it, `Forwarded`) names the client.
//! Must not touch: the headers themselves (what is forwarded to servers is `headers.rs`'s), I/O.
//!
//! The walk goes from the right (the entry the nearest proxy added) to the left, past every
//! trusted address; the first untrusted one is the client. When every entry is trusted, the
//! left-most is. An entry that is not an address (garbage, `unknown`, an obfuscated RFC 7239
//! identifier) stops the walk: the client is then the last address reached, which is the
//! right-most trusted one the walk passed (or the peer, if the right-most entry is already
//! unusable), as nginx's realip module does; nothing left of a broken entry is believed.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::{self, HeaderName};

use super::proxy_protocol::contains;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client a request is from: `peer` itself, unless `peer` is in `trusted`, in which case
/// the right-most untrusted entry of `X-Forwarded-For` (or `Forwarded`).
pub fn real_client(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    if !contains(trusted, peer) {
        return peer;
    }
    if headers.contains_key(&X_FORWARDED_FOR) {
        // Several lines are one list, in order (RFC 9110 5.3); walked from its end without
        // collecting it.
        let entries = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .rev()
            .flat_map(|v| v.as_bytes().rsplit(|&b| b == b','));
        return walk(peer, entries.map(xff_entry), trusted);
    }
    if headers.contains_key(header::FORWARDED) {
        let mut nodes = Vec::new();
        for v in headers.get_all(header::FORWARDED) {
            forwarded_for(v.as_bytes(), &mut nodes);
        }
        return walk(peer, nodes.into_iter().rev(), trusted);
    }
    peer
}

/// Walks `entries` from the right (`None` = not an address) past trusted addresses.
fn walk(peer: IpAddr, entries: impl Iterator<Item = Option<IpAddr>>, trusted: &[ipnet::IpNet]) -> IpAddr {
    let mut client = peer;
    for entry in entries {
        let Some(ip) = entry else { break };
        client = ip;
        if !contains(trusted, ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, with or without a port (`192.0.2.1:80`,
/// `[2001:db8::1]:80`, `"[2001:db8::1]"` as some proxies write it).
fn xff_entry(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?.trim();
    let s = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s);
    node(s)
}

/// A node: an IP address, bracketed IPv6, or either with a port.
fn node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    // `SocketAddr` takes `1.2.3.4:80` and `[::1]:80`; RFC 7239 also allows an obfuscated
    // port (`:_abc`), which only the address part matters for.
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let (host, port) = s.rsplit_once(':')?;
    if !port.starts_with('_') {
        return None;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Appends the `for=` node of each element of one `Forwarded` field value (RFC 7239 4), in
/// order; `None` for an element without a usable one.
fn forwarded_for(value: &[u8], out: &mut Vec<Option<IpAddr>>) {
    let Ok(value) = std::str::from_utf8(value) else {
        out.push(None);
        return;
    };
    for element in split_unquoted(value, b',') {
        if element.trim().is_empty() {
            continue;
        }
        let mut found = None;
        for pair in split_unquoted(element, b';') {
            let Some((name, v)) = pair.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("for") {
                found = Some(unquote(v.trim()).and_then(|v| node(&v)));
                break;
            }
        }
        out.push(found.flatten());
    }
}

/// `s` split at each `sep` outside a quoted string.
fn split_unquoted(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut cuts = Vec::new();
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            cuts.push(&s[start..i]);
            start = i + 1;
        }
    }
    cuts.push(&s[start..]);
    cuts.into_iter()
}

/// A token or a quoted string's content (RFC 9110 5.6.4); `None` if a quote is unbalanced.
fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else {
        return (!v.contains('"')).then(|| v.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn with(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_static(v));
        }
        h
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn right_most_untrusted_entry() {
        let t = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        let h = with("x-forwarded-for", &["203.0.113.9, 10.0.0.2"]);
        assert_eq!(real_client(LOCAL, &h, &t), ip("203.0.113.9"));
        let h = with("x-forwarded-for", &["198.51.100.1, 203.0.113.9, 10.0.0.2"]);
        assert_eq!(
            real_client(LOCAL, &h, &t),
            ip("203.0.113.9"),
            "a spoofed left part is ignored"
        );
        let h = with("x-forwarded-for", &["198.51.100.1", "203.0.113.9,10.0.0.2"]);
        assert_eq!(
            real_client(LOCAL, &h, &t),
            ip("203.0.113.9"),
            "lines are one list"
        );
        let h = with("x-forwarded-for", &["10.0.0.3, 10.0.0.2"]);
        assert_eq!(
            real_client(LOCAL, &h, &t),
            ip("10.0.0.3"),
            "all trusted: the left-most"
        );
        assert_eq!(
            real_client(LOCAL, &HeaderMap::new(), &t),
            LOCAL,
            "no header: the peer"
        );
    }

    #[test]
    fn untrusted_peer_is_never_believed() {
        let t = nets(&["10.0.0.0/8"]);
        let h = with("x-forwarded-for", &["203.0.113.9"]);
        assert_eq!(real_client(LOCAL, &h, &t), LOCAL);
        assert_eq!(real_client(LOCAL, &h, &[]), LOCAL);
    }

    #[test]
    fn malformed_entries_stop_the_walk() {
        let t = nets(&["127.0.0.0/8", "10.0.0.0/8"]);
        let h = with("x-forwarded-for", &["203.0.113.9, garbage, 10.0.0.2"]);
        assert_eq!(
            real_client(LOCAL, &h, &t),
            ip("10.0.0.2"),
            "the last address reached"
        );
        let h = with("x-forwarded-for", &["203.0.113.9, unknown"]);
        assert_eq!(real_client(LOCAL, &h, &t), LOCAL);
        let h = with("x-forwarded-for", &["203.0.113.9, "]);
        assert_eq!(real_client(LOCAL, &h, &t), LOCAL, "an empty entry is malformed");
    }

    #[test]
    fn entries_with_ports_and_brackets() {
        let t = nets(&["127.0.0.0/8"]);
        for (v, want) in [
            ("203.0.113.9:4711", "203.0.113.9"),
            ("[2001:db8::17]:4711", "2001:db8::17"),
            ("[2001:db8::17]", "2001:db8::17"),
            ("2001:db8::17", "2001:db8::17"),
            ("\"[2001:db8::17]:80\"", "2001:db8::17"),
        ] {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
            assert_eq!(real_client(LOCAL, &h, &t), ip(want), "{v}");
        }
    }

    #[test]
    fn forwarded_header_per_rfc_7239() {
        let t = nets(&["127.0.0.0/8", "10.0.0.0/8", "2001:db8:ffff::/48"]);
        let h = with(
            "forwarded",
            &["for=192.0.2.60;proto=http;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\""],
        );
        assert_eq!(real_client(LOCAL, &h, &t), ip("2001:db8:cafe::17"));
        let h = with("forwarded", &["for=192.0.2.60", "for=10.0.0.2;proto=https"]);
        assert_eq!(real_client(LOCAL, &h, &t), ip("192.0.2.60"));
        let h = with("forwarded", &["for=192.0.2.60, for=\"[2001:db8:ffff::1]\""]);
        assert_eq!(real_client(LOCAL, &h, &t), ip("192.0.2.60"));
        let h = with("forwarded", &["for=192.0.2.60, for=_hidden, for=10.0.0.2"]);
        assert_eq!(
            real_client(LOCAL, &h, &t),
            ip("10.0.0.2"),
            "an obfuscated node stops the walk"
        );
        let h = with("forwarded", &["for=192.0.2.60, proto=https"]);
        assert_eq!(
            real_client(LOCAL, &h, &t),
            LOCAL,
            "an element without for= stops it too"
        );
        let h = with("forwarded", &["for=\"192.0.2.60:_port\""]);
        assert_eq!(real_client(LOCAL, &h, &t), ip("192.0.2.60"));
        let h = with("forwarded", &["for=\"x,y\";by=1, for=192.0.2.61"]);
        assert_eq!(
            real_client(LOCAL, &h, &t),
            ip("192.0.2.61"),
            "commas in quotes do not split"
        );
        let h = with("forwarded", &["for=\"[2001:db8::1]"]);
        assert_eq!(real_client(LOCAL, &h, &t), LOCAL, "an unbalanced quote");
        let mut both = with("forwarded", &["for=192.0.2.60"]);
        both.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
        assert_eq!(
            real_client(LOCAL, &both, &t),
            ip("198.51.100.7"),
            "X-Forwarded-For first"
        );
    }

    #[test]
    fn mapped_peer_counts_as_ipv4() {
        let t = nets(&["127.0.0.1/32"]);
        let h = with("x-forwarded-for", &["203.0.113.9"]);
        assert_eq!(real_client(ip("::ffff:127.0.0.1"), &h, &t), ip("203.0.113.9"));
    }

    proptest! {
        /// Whatever the headers say, an untrusted peer is the client.
        #[test]
        fn untrusted_peer_wins(
            peer in any::<[u8; 4]>(),
            xff in "[0-9a-f.:, \\[\\]\"]{0,80}",
            fwd in "[a-zA-Z0-9=;,.:\"\\[\\] _]{0,80}",
        ) {
            let peer = IpAddr::from(peer);
            let t = nets(&["10.0.0.0/8", "2001:db8::/32"]);
            prop_assume!(!contains(&t, peer));
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&xff) {
                h.insert("x-forwarded-for", v);
            }
            if let Ok(v) = HeaderValue::from_str(&fwd) {
                h.insert("forwarded", v);
            }
            prop_assert_eq!(real_client(peer, &h, &t), peer);
        }

        /// From a trusted peer, the answer is the peer or an address the header holds, and
        /// never one left of an untrusted entry.
        #[test]
        fn trusted_peer_gets_right_most_untrusted(
            chain in proptest::collection::vec((any::<bool>(), any::<u8>()), 0..8),
        ) {
            let t = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
            let ips: Vec<IpAddr> = chain
                .iter()
                .map(|&(inside, n)| if inside { IpAddr::from([10, 0, 0, n]) } else { IpAddr::from([192, 0, 2, n]) })
                .collect();
            let text = ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            let mut h = HeaderMap::new();
            if !ips.is_empty() {
                h.insert("x-forwarded-for", HeaderValue::from_str(&text).unwrap());
            }
            let want = ips
                .iter()
                .rev()
                .find(|ip| !contains(&t, **ip))
                .or(ips.first())
                .copied()
                .unwrap_or(LOCAL);
            prop_assert_eq!(real_client(LOCAL, &h, &t), want);
        }
    }
}
