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
    /// Every file or directory the configuration names, for the loader to check on disk.
    pub(crate) paths: Vec<PathFact>,
}

/// What a path of the configuration must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathKind {
    /// `[log] access`: a file Ringway can append to, or one it can create.
    AccessLog,
    /// `static_dir`: a directory.
    StaticDir,
    /// `[route.maintenance] page`: a readable file.
    MaintenancePage,
    /// A listener's TLS certificate chain: a readable file.
    TlsCert,
    /// A listener's TLS private key: a readable file.
    TlsKey,
    /// A pool's CA bundle for TLS to its servers: a readable PEM file of certificates.
    TlsCa,
    /// `[cluster] ca`: the CA bundle that signs etcd's certificates, a readable file.
    ClusterCa,
    /// `[cluster] cert`: the client certificate chain for etcd, a readable file.
    ClusterCert,
    /// `[cluster] key`: the client certificate's private key, a readable file.
    ClusterKey,
}

/// A path as written in the file, with the position of its key (byte offset).
pub(crate) struct PathFact {
    /// What it must be.
    pub(crate) kind: PathKind,
    /// As written.
    pub(crate) path: std::path::PathBuf,
    /// Offset of its key.
    pub(crate) at: usize,
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
    /// Name (written, or derived from host and path) and its position.
    pub(crate) name: Option<(String, usize)>,
    /// Whether `name` was written rather than derived.
    pub(crate) explicit_name: bool,
    /// Host pattern (`None`: any host, or invalid).
    pub(crate) host: Option<HostPattern>,
    /// Path prefix, if valid.
    pub(crate) path: Option<String>,
    /// Position of the `[[route]]` header.
    pub(crate) at: usize,
    /// `pool` value and its position.
    pub(crate) pool: Option<(String, usize)>,
}

impl RouteFact {
    /// "route `api`", or "this route" when it has no valid name.
    fn label(&self) -> String {
        self.name
            .as_ref()
            .map_or_else(|| "this route".to_string(), |(n, _)| format!("route `{n}`"))
    }
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

    // Route names, written or derived: they key metrics, the API and the access log.
    let mut seen: HashMap<&str, (usize, bool)> = HashMap::new();
    for r in &facts.routes {
        let Some((name, at)) = &r.name else { continue };
        match seen.get(name.as_str()) {
            // Two derived names are equal only for the same host and path, reported below.
            Some((_, false)) if !r.explicit_name => {}
            Some((first, _)) => {
                let how = if r.explicit_name {
                    ""
                } else {
                    " (the name it gets from its host and path; set `name` to tell them apart)"
                };
                cx.err(
                    *at,
                    format!(
                        "route name `{name}`{how} is already used by the route at line {}",
                        line_of(*first)
                    ),
                );
            }
            None => {
                seen.insert(name, (*at, r.explicit_name));
            }
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
            cx.err(
                r.at,
                format!(
                    "{} has the same host and path as the route at line {}; \
                     it could never be chosen",
                    r.label(),
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
        let hint = values::suggest(pool, &pool_names)
            .map(|p| format!("; did you mean `{p}`?"))
            .unwrap_or_default();
        cx.err(
            *at,
            format!("{} names pool `{pool}`, which is not defined{hint}", r.label()),
        );
    }
}

/// Would binding `a` fail (or steal traffic) because `b` is bound? Port 0 never conflicts: the
/// kernel picks a free port.
pub fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || a.port() != b.port() {
        return false;
    }
    a.ip() == b.ip() || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified()))
}
