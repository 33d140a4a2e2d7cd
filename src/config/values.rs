//! Scalar value syntax: sizes, durations, addresses, host names, hash keys, health `expect`
//! lists and "did you mean" suggestions.
//!
//! Every function here is pure and returns `Err(message)` in the words an operator reads; the
//! caller attaches the position. Nothing here resolves names or looks at the clock.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::model::{ExpectStatus, HashKeySpec, StatusMatch};

/// Parses a humantime duration ("250ms", "30s", "1h 30m").
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration \"{s}\" ({e}); write e.g. \"250ms\", \"30s\", \"2h\""))
}

/// Parses a byte size: "512", "10KB" (10 × 1000), "64KiB" (64 × 1024), up to TB / TiB.
pub(crate) fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let bad = || {
        format!(
            "invalid size \"{s}\"; write a whole number of bytes with an optional unit, \
             e.g. \"512\", \"64KiB\", \"100MiB\", \"10KB\""
        )
    };
    if num.is_empty() {
        return Err(bad());
    }
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size \"{s}\" is too large"))
}

/// Parses an `IP:port` socket address to listen on (`[v6]:port` for IPv6).
/// A network in CIDR form (`10.0.0.0/8`), or one address (`192.0.2.7`, `::1`).
pub(crate) fn network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        if n.trunc() != n {
            return Err(format!(
                "network \"{s}\" has host bits set; did you mean \"{}\"?",
                n.trunc()
            ));
        }
        return Ok(n);
    }
    if let Ok(a) = s.parse::<std::net::IpAddr>() {
        return Ok(ipnet::IpNet::from(a));
    }
    Err(format!(
        "invalid network \"{s}\": expected an address or CIDR such as \"10.0.0.0/8\""
    ))
}

pub(crate) fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!(
            "invalid address \"{s}\"; write IP:port, e.g. \"0.0.0.0:8080\" or \"[::]:8080\" \
             (host names are not resolved here)"
        )
    })
}

/// Checks an upstream `host:port`: the host is an IPv4 literal, `[IPv6]` or a DNS name.
pub(crate) fn host_port(s: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((ip, port)) = rest.split_once("]:") else {
            return Err(format!(
                "invalid address \"{s}\"; an IPv6 address is written \"[::1]:8080\""
            ));
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid address \"{s}\": `{ip}` is not an IPv6 address"));
        }
        (None, port)
    } else {
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!(
                "address \"{s}\" has no port; write host:port, e.g. \"{s}:80\""
            ));
        };
        if host.contains(':') {
            return Err(format!(
                "invalid address \"{s}\"; write an IPv6 address in brackets, e.g. \"[::1]:8080\""
            ));
        }
        (Some(host), port)
    };
    match port.parse::<u16>() {
        Ok(p) if p >= 1 => {}
        _ => {
            return Err(format!(
                "invalid address \"{s}\": port `{port}` is not a number in 1..=65535"
            ));
        }
    }
    if let Some(host) = host
        && host.parse::<Ipv4Addr>().is_err()
        && !is_dns_name(host, true)
    {
        return Err(format!(
            "invalid address \"{s}\": `{host}` is neither an IP address nor a valid DNS name"
        ));
    }
    Ok(())
}

/// Is `s` a DNS name made of valid labels (letters, digits, inner hyphens; `_` if allowed)?
///
/// Underscores are allowed for upstreams because container runtimes hand out names like
/// `my_app`; route hosts stay strict because they are matched against `Host` headers.
pub(crate) fn is_dns_name(s: &str, allow_underscore: bool) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels_ok = s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || (allow_underscore && c == '_'))
    });
    // An all-digit last label means a mistyped IPv4 address such as "10.0.0.256".
    let last_numeric = s
        .rsplit('.')
        .next()
        .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
    labels_ok && !last_numeric
}

/// Parses a `hash_key` value.
pub(crate) fn hash_key(s: &str) -> Result<HashKeySpec, String> {
    match s {
        "path" => return Ok(HashKeySpec::Path),
        "uri" => return Ok(HashKeySpec::Uri),
        "client_ip" => return Ok(HashKeySpec::ClientIp),
        _ => {}
    }
    let valid = "path | uri | client_ip | header:NAME | cookie:NAME | query:NAME";
    let Some((kind, name)) = s.split_once(':') else {
        let hint = suggest(s, &["path", "uri", "client_ip", "header", "cookie", "query"])
            .map(|k| format!("; did you mean `{k}`?"))
            .unwrap_or_default();
        return Err(format!("invalid hash_key \"{s}\"; expected {valid}{hint}"));
    };
    if name.is_empty() {
        return Err(format!("hash_key \"{s}\" needs a name after `{kind}:`"));
    }
    match kind {
        "header" => {
            if name.chars().all(is_tchar) {
                Ok(HashKeySpec::Header(name.to_ascii_lowercase()))
            } else {
                Err(format!("hash_key \"{s}\": `{name}` is not a valid header name"))
            }
        }
        "cookie" => {
            if name.chars().all(is_tchar) {
                Ok(HashKeySpec::Cookie(name.to_string()))
            } else {
                Err(format!("hash_key \"{s}\": `{name}` is not a valid cookie name"))
            }
        }
        "query" => {
            if name
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && !"&=#".contains(c))
            {
                Ok(HashKeySpec::Query(name.to_string()))
            } else {
                Err(format!(
                    "hash_key \"{s}\": `{name}` is not a valid query parameter name"
                ))
            }
        }
        _ => {
            let hint = suggest(kind, &["header", "cookie", "query"])
                .map(|k| format!("; did you mean `{k}:{name}`?"))
                .unwrap_or_default();
            Err(format!("invalid hash_key \"{s}\"; expected {valid}{hint}"))
        }
    }
}

/// RFC 9110 `tchar`: the characters allowed in header field names and cookie names.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Is `n` prime? (Trial division: table sizes are at most 2^24.)
pub(crate) fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// Parses a health `expect` string: "2xx", "200", or a comma list of those ("200,301",
/// "2xx,304").
pub(crate) fn expect_list(s: &str) -> Result<ExpectStatus, String> {
    let bad = || {
        format!(
            "invalid expect \"{s}\"; write a status class (\"2xx\"), a code (\"200\"), \
             a comma list of those (\"200,301\") or an array of codes ([200, 204])"
        )
    };
    let mut items = Vec::new();
    for part in s.split(',') {
        items.push(status_match(part.trim()).ok_or_else(bad)?);
    }
    ExpectStatus::new(items).ok_or_else(bad)
}

/// One `expect` item: a class "2xx" (1xx..5xx) or a code "200" (100..=599).
pub(crate) fn status_match(p: &str) -> Option<StatusMatch> {
    match p.as_bytes() {
        [d @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => Some(StatusMatch::Class(d - b'0')),
        [b'1'..=b'5', _, _] => p.parse().ok().map(StatusMatch::Code),
        _ => None,
    }
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The closest candidate within edit distance 2 (and less than half the word), if any.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // Very long inputs are garbage, not typos; skip the quadratic distance.
    if word.len() > 256 {
        return None;
    }
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, c), *c))
        .filter(|(d, c)| *d <= 2 && *d * 2 < lower.chars().count().max(c.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Is `s` usable as a name in admin URLs and metric labels (no `/`, whitespace or control)?
pub(crate) fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && !s.chars().any(|c| c == '/' || c.is_whitespace() || c.is_control())
}

/// Whether `s` can name an environment variable: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_env_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every `${NAME}` in `s` with the value `vars` gives for NAME, once (a value holding
/// `${` is not expanded again); a `$` not followed by `{` stays as it is.
///
/// Errors: `${` without `}`, an empty or malformed name, and the variables that are not set
/// (all of them, in one message).
pub(crate) fn expand_vars(s: &str, vars: &super::Vars) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut unset: Vec<&str> = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("`${{` without a closing `}}` in \"{s}\""));
        };
        let name = &after[..end];
        if name.is_empty() {
            return Err(format!("`${{}}` in \"{s}\" names no variable; write `${{NAME}}`"));
        }
        if !is_env_name(name) {
            return Err(format!(
                "`${{{name}}}` in \"{s}\": a variable name is letters, digits and `_`, \
                 not starting with a digit"
            ));
        }
        match vars(name) {
            Some(v) => out.push_str(&v),
            None if unset.contains(&name) => {}
            None => unset.push(name),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    match unset.as_slice() {
        [] => Ok(out),
        [one] => Err(format!(
            "environment variable {one} is not set (`${{{one}}}` in \"{s}\")"
        )),
        many => Err(format!(
            "environment variables {} are not set (in \"{s}\")",
            many.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size("512"), Ok(512));
        assert_eq!(size("10KB"), Ok(10_000));
        assert_eq!(size("64KiB"), Ok(65_536));
        assert_eq!(size("100MiB"), Ok(100 << 20));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("1 GiB"), Ok(1 << 30));
        assert!(size("1.5MiB").is_err());
        assert!(size("MiB").is_err());
        assert!(size("10 parsecs").is_err());
        assert!(size("99999999999TiB").is_err());
        assert!(size("-1").is_err());
    }

    #[test]
    fn host_ports() {
        for ok in [
            "127.0.0.1:9001",
            "[::1]:80",
            "cache-a:11211",
            "api.internal:8000",
            "my_app:80",
            "a.b.c.:1",
        ] {
            assert_eq!(host_port(ok), Ok(()), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "::1:80",
            "[::g]:80",
            "-a:80",
            "a..b:80",
            "10.0.0.256:80",
            ":80",
            "a b:80",
        ] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hash_keys() {
        assert_eq!(hash_key("path"), Ok(HashKeySpec::Path));
        assert_eq!(hash_key("uri"), Ok(HashKeySpec::Uri));
        assert_eq!(hash_key("client_ip"), Ok(HashKeySpec::ClientIp));
        assert_eq!(
            hash_key("header:X-User"),
            Ok(HashKeySpec::Header("x-user".into()))
        );
        assert_eq!(hash_key("cookie:sid"), Ok(HashKeySpec::Cookie("sid".into())));
        assert_eq!(hash_key("query:u"), Ok(HashKeySpec::Query("u".into())));
        assert!(hash_key("header:").is_err());
        assert!(hash_key("header:a b").is_err());
        assert!(hash_key("host").is_err());
        assert!(
            hash_key("heder:x")
                .unwrap_err()
                .contains("did you mean `header:x`?")
        );
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537));
        assert!(is_prime(1021));
        assert!(!is_prime(65536));
        assert!(!is_prime(1));
    }

    #[test]
    fn expects() {
        for (ok, shown) in [
            ("2xx", "2xx"),
            ("200", "200"),
            ("200,301", "200,301"),
            ("2xx, 304", "2xx,304"),
            ("5XX", "5xx"),
        ] {
            assert_eq!(
                expect_list(ok).map(|e| e.to_string()),
                Ok(shown.to_string()),
                "{ok}"
            );
        }
        let e = expect_list("2xx,304").unwrap();
        assert!(e.matches(200) && e.matches(299) && e.matches(304));
        assert!(!e.matches(301) && !e.matches(500) && !e.matches(199));
        for bad in ["", "2x", "600", "abc", "200,", "0xx", "1e2", "+20", "2 0"] {
            assert!(expect_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("stirp_prefix", "strip_prefix"), 1);
        assert_eq!(suggest("balanse", &["balance", "servers"]), Some("balance"));
        assert_eq!(suggest("x", &["tls", "key"]), None);
        assert_eq!(suggest("round-robin", &["round_robin"]), Some("round_robin"));
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("api.example.com", false));
        assert!(!is_dns_name("my_app", false));
        assert!(is_dns_name("my_app", true));
        assert!(!is_dns_name(&"a".repeat(64), false));
        assert!(!is_dns_name("1.2.3", false));
    }
}
