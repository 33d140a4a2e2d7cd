//! Checks that span sections: unique names, non-conflicting addresses, routes naming pools that
//! exist. Runs on [`Facts`] gathered while parsing, so that it also sees objects that had other
//! errors (a route with a bad `path` still has its `pool` checked).

use std::collections::HashMap;
use std::net::SocketAddr;

use super::LineIndex;
use super::model::HostPattern;
use super::values;
use super::walk::Ctx;

/// What cross-section checks need, with positions (byte offsets).
#[derive(Default)]
pub(crate) struct Facts {
    /// Every `[pool.NAME]` key, valid or not.
    pub(crate) pool_names: Vec<String>,
    /// `[admin].listen` and its position if written and valid; `Some((addr, None))` when it is
    /// the default; `None` when invalid.
    pub(crate) admin_listen: Option<(SocketAddr, Option<usize>)>,
    /// One per `[[listener]]`.
    pub(crate) listeners: Vec<ListenerFact>,
    /// One per `[[route]]`.
    pub(crate) routes: Vec<RouteFact>,
}

/// Name and bind address of a listener, where valid.
pub(crate) struct ListenerFact {
    /// Name and its position.
    pub(crate) name: Option<(String, usize)>,
    /// Bind address and its position.
    pub(crate) bind: Option<(SocketAddr, usize)>,
}

/// What a route matches and which pool it names, where valid.
pub(crate) struct RouteFact {
    /// Name and its position.
    pub(crate) name: Option<(String, usize)>,
    /// Host pattern (`None`: any host, or invalid).
    pub(crate) host: Option<HostPattern>,
    /// Path prefix, if valid.
    pub(crate) path: Option<String>,
    /// Position of the `[[route]]` header.
    pub(crate) at: usize,
    /// `pool` value and its position.
    pub(crate) pool: Option<(String, usize)>,
}

/// Runs every cross-section check.
pub(crate) fn cross_check(cx: &mut Ctx, facts: &Facts, src: &str) {
    let index = LineIndex::new(src);
    let line_of = |at: usize| index.line_col(src, at).0;
    // Listener names.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (name, at) in facts.listeners.iter().filter_map(|l| l.name.as_ref()) {
        if let Some(first) = seen.get(name.as_str()) {
            cx.err(
                *at,
                format!(
                    "listener name `{name}` is already used by the listener at line {}",
                    line_of(*first)
                ),
            );
        } else {
            seen.insert(name, *at);
        }
    }

    // Bind addresses: equal, or one wildcard covering the other on the same port.
    let binds: Vec<(SocketAddr, usize)> = facts.listeners.iter().filter_map(|l| l.bind).collect();
    for (i, (a, at)) in binds.iter().enumerate() {
        if let Some((b, first)) = binds[..i].iter().find(|(b, _)| conflicts(*a, *b)) {
            cx.err(
                *at,
                format!(
                    "`bind` {a} conflicts with {b} of the listener at line {}",
                    line_of(*first)
                ),
            );
        }
    }
    match facts.admin_listen {
        Some((admin, Some(at))) => {
            if let Some((b, first)) = binds.iter().find(|(b, _)| conflicts(admin, *b)) {
                cx.err(
                    at,
                    format!(
                        "`[admin].listen` {admin} conflicts with {b} of the listener at line {}",
                        line_of(*first)
                    ),
                );
            }
        }
        // The default admin address is easy to forget: report at the listener.
        Some((admin, None)) => {
            for (b, at) in binds.iter().filter(|(b, _)| conflicts(*b, admin)) {
                cx.err(
                    *at,
                    format!(
                        "`bind` {b} conflicts with the admin interface's default address \
                         {admin}; change one of them (`[admin].listen`)"
                    ),
                );
            }
        }
        None => {}
    }

    // Route names.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (name, at) in facts.routes.iter().filter_map(|r| r.name.as_ref()) {
        if let Some(first) = seen.get(name.as_str()) {
            cx.err(
                *at,
                format!(
                    "route name `{name}` is already used by the route at line {}",
                    line_of(*first)
                ),
            );
        } else {
            seen.insert(name, *at);
        }
    }

    // Two routes with the same host and path: the second could never be chosen.
    // HostPattern is not Hash; key on its kind and text instead.
    let host_key = |h: &Option<HostPattern>| -> (u8, String) {
        match h {
            None => (0, String::new()),
            Some(HostPattern::Exact(s)) => (1, s.clone()),
            Some(HostPattern::Wildcard(s)) => (2, s.clone()),
        }
    };
    let mut matches: HashMap<((u8, String), &str), usize> = HashMap::new();
    for r in &facts.routes {
        let Some(path) = &r.path else { continue };
        if let Some(first) = matches.get(&(host_key(&r.host), path.as_str())) {
            let name = r.name.as_ref().map_or("this route", |(n, _)| n.as_str());
            cx.err(
                r.at,
                format!(
                    "route `{name}` has the same host and path as the route at line {}; \
                     it could never be chosen",
                    line_of(*first)
                ),
            );
        } else {
            matches.insert((host_key(&r.host), path), r.at);
        }
    }

    // Pools named by routes.
    let pool_names: Vec<&str> = facts.pool_names.iter().map(String::as_str).collect();
    for r in &facts.routes {
        let Some((pool, at)) = &r.pool else { continue };
        if pool_names.contains(&pool.as_str()) {
            continue;
        }
        let route = r.name.as_ref().map_or("(unnamed)", |(n, _)| n.as_str());
        let hint = values::suggest(pool, &pool_names)
            .map(|p| format!("; did you mean `{p}`?"))
            .unwrap_or_default();
        cx.err(
            *at,
            format!("route `{route}` names pool `{pool}`, which is not defined{hint}"),
        );
    }
}

/// Would binding `a` fail (or steal traffic) because `b` is bound? Port 0 never conflicts: the
/// kernel picks a free port.
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || a.port() != b.port() {
        return false;
    }
    a.ip() == b.ip() || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified()))
}
