//! Route matching: which route answers a request, from its host and path.
//!
//! Owns: the route table, built once per configuration snapshot, and the pure match of
//! (host, path) to a route index; the rewriting of a path by `strip_prefix`; maintenance
//! windows ([`maintenance`]: given a clock reading, whether a route is in one).
//! Must not touch: sockets, pools, clocks. The caller turns the route index into an action.
//!
//! Matching order: routes whose host is exactly the request's host first, then wildcard hosts
//! (`*.example.com`, the longest suffix first), then routes without a host. Within one host class
//! the longest matching path prefix wins; a class with no matching prefix falls through to the
//! next. Prefixes are plain string prefixes, as nginx's prefix locations are, compared with the
//! normal form of the request path (`normalize`): the caller normalises once and matches that.

pub mod normalize;

pub use normalize::{PathError, normalize};

pub mod maintenance;

/// How a route's host is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Any host.
    Any,
    /// This host exactly (lower-case, no port).
    Exact(String),
    /// Any host ending in this suffix, which starts with a dot (`.example.com`).
    Suffix(String),
}

/// One route as the table sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteKey {
    /// Host to match.
    pub host: HostMatch,
    /// Path prefix, starting with `/`.
    pub path: String,
}

/// A route table: the routes of one configuration, indexed for matching.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Exact-host routes, grouped by host; each group sorted by prefix length, longest first.
    exact: Vec<(String, Vec<(String, usize)>)>,
    /// Wildcard routes, grouped by suffix, longest suffix first.
    wildcard: Vec<(String, Vec<(String, usize)>)>,
    /// Host-less routes, longest prefix first.
    any: Vec<(String, usize)>,
}

fn insert_grouped(groups: &mut Vec<(String, Vec<(String, usize)>)>, key: &str, path: &str, i: usize) {
    match groups.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => v.push((path.to_owned(), i)),
        None => groups.push((key.to_owned(), vec![(path.to_owned(), i)])),
    }
}

fn sort_longest_first(v: &mut [(String, usize)]) {
    // Stable: among equal prefixes (rejected by validation anyway) the earlier route wins.
    v.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
}

fn longest_prefix(routes: &[(String, usize)], path: &str) -> Option<usize> {
    routes
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        .map(|&(_, i)| i)
}

impl RouteTable {
    /// Builds the table; route indices are positions in `routes`.
    pub fn new(routes: &[RouteKey]) -> RouteTable {
        let mut table = RouteTable::default();
        for (i, r) in routes.iter().enumerate() {
            match &r.host {
                HostMatch::Any => table.any.push((r.path.clone(), i)),
                HostMatch::Exact(h) => insert_grouped(&mut table.exact, h, &r.path, i),
                HostMatch::Suffix(s) => insert_grouped(&mut table.wildcard, s, &r.path, i),
            }
        }
        for (_, v) in table.exact.iter_mut().chain(table.wildcard.iter_mut()) {
            sort_longest_first(v);
        }
        sort_longest_first(&mut table.any);
        table.wildcard.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        table
    }

    /// The route for a request: `host` without port (any case), `path` without query.
    pub fn find(&self, host: &str, path: &str) -> Option<usize> {
        if !host.is_empty() {
            for (h, routes) in &self.exact {
                if h.eq_ignore_ascii_case(host) {
                    if let Some(i) = longest_prefix(routes, path) {
                        return Some(i);
                    }
                    break;
                }
            }
            for (suffix, routes) in &self.wildcard {
                if ends_with_ignore_case(host, suffix)
                    && host.len() > suffix.len()
                    && let Some(i) = longest_prefix(routes, path)
                {
                    return Some(i);
                }
            }
        }
        longest_prefix(&self.any, path)
    }
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len() && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// The host of a `Host` header value or URI authority: lower-case rules apply at match time,
/// the port and IPv6 brackets' port are removed.
pub fn host_without_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port → v6 literal with brackets kept, as written in config.
        return match rest.find(']') {
            Some(end) => &authority[..end + 2],
            None => authority,
        };
    }
    match authority.rfind(':') {
        Some(i) if authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &authority[..i],
        _ => authority,
    }
}

/// The path forwarded after removing a route's prefix; never empty (at least `/`).
pub fn strip_prefix<'a>(path: &'a str, prefix: &str) -> std::borrow::Cow<'a, str> {
    let rest = path.strip_prefix(prefix).unwrap_or(path);
    if rest.starts_with('/') {
        std::borrow::Cow::Borrowed(rest)
    } else {
        std::borrow::Cow::Owned(format!("/{rest}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: HostMatch, path: &str) -> RouteKey {
        RouteKey {
            host,
            path: path.to_owned(),
        }
    }

    fn table() -> RouteTable {
        RouteTable::new(&[
            key(HostMatch::Any, "/"),                                     // 0
            key(HostMatch::Any, "/api/"),                                 // 1
            key(HostMatch::Exact("api.example.com".into()), "/"),         // 2
            key(HostMatch::Exact("api.example.com".into()), "/v2/"),      // 3
            key(HostMatch::Suffix(".example.com".into()), "/"),           // 4
            key(HostMatch::Suffix(".eu.example.com".into()), "/static/"), // 5
            key(HostMatch::Exact("shop.example.com".into()), "/cart/"),   // 6
        ])
    }

    #[test]
    fn exact_host_beats_wildcard_and_any() {
        let t = table();
        assert_eq!(t.find("api.example.com", "/v2/users"), Some(3));
        assert_eq!(t.find("API.Example.COM", "/x"), Some(2));
        assert_eq!(t.find("www.example.com", "/api/x"), Some(4));
        assert_eq!(t.find("other.org", "/api/x"), Some(1));
        assert_eq!(t.find("other.org", "/apix"), Some(0));
    }

    #[test]
    fn longest_wildcard_suffix_first_and_fall_through() {
        let t = table();
        assert_eq!(t.find("a.eu.example.com", "/static/x"), Some(5));
        assert_eq!(t.find("a.eu.example.com", "/other"), Some(4));
        // The bare domain is not matched by "*.example.com".
        assert_eq!(t.find("example.com", "/"), Some(0));
        // An exact host with no matching prefix falls through to the wildcard class.
        assert_eq!(t.find("shop.example.com", "/home"), Some(4));
        assert_eq!(t.find("shop.example.com", "/cart/1"), Some(6));
    }

    #[test]
    fn no_route() {
        let t = RouteTable::new(&[key(HostMatch::Any, "/api/")]);
        assert_eq!(t.find("x", "/"), None);
        assert_eq!(t.find("", "/api/"), Some(0));
    }

    #[test]
    fn hosts_and_prefixes() {
        assert_eq!(host_without_port("a.com:8080"), "a.com");
        assert_eq!(host_without_port("a.com"), "a.com");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        assert_eq!(strip_prefix("/api/users", "/api/"), "/users");
        assert_eq!(strip_prefix("/api/", "/api/"), "/");
        assert_eq!(strip_prefix("/api", "/api"), "/");
        assert_eq!(strip_prefix("/apix", "/api"), "/x");
    }
}
