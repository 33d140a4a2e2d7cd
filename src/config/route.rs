//! `[[route]]`: what a route matches (host, path prefix), what it does (pool, redirect,
//! static files) and its `[route.maintenance]` table.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use super::model::*;
use super::parse::{name, redirect_status};
use super::validate::{Facts, PathFact, PathKind, RouteFact};
use super::values;
use super::walk::{Ctx, Field, Tbl};
use crate::route::maintenance::Window;

const ROUTE_KEYS: &[&str] = &[
    "name",
    "host",
    "path",
    "pool",
    "strip_prefix",
    "reject_encoded_slash",
    "redirect",
    "static_dir",
    "maintenance",
];

pub(crate) fn parse_route(cx: &mut Ctx, facts: &mut Facts, t: &Tbl<'_>) -> Option<RouteConfig> {
    t.check_keys(cx, ROUTE_KEYS);
    // `None`: written but invalid (reported); `Some(None)`: not written, derived below.
    let explicit = match t.get("name") {
        None => Some(None),
        Some(_) => name(cx, t).map(Some),
    };
    let host = match t.get("host") {
        None => Some(None),
        Some(f) => host_pattern(cx, f).map(Some),
    };
    let path = match t.get("path") {
        None => Some("/".to_string()),
        Some(f) => cx.str(f).and_then(|p| {
            if !p.starts_with('/') {
                cx.err(f.at, format!("`path` must start with \"/\", found \"{p}\""));
                None
            } else if p
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
            {
                cx.err(
                    f.at,
                    format!(
                        "`path` \"{p}\" must be a plain path prefix \
                         (no spaces, `?` or `#`)"
                    ),
                );
                None
            } else {
                normal_prefix(cx, f.at, p)
            }
        }),
    };

    // Without `name`, the route is named after what it matches, as operators read it.
    let name: Option<(String, usize, bool)> = match (&explicit, &host, &path) {
        (Some(Some((n, at))), _, _) => Some((n.clone(), *at, true)),
        (Some(None), Some(h), Some(p)) => Some((derived_name(h.as_ref(), p), t.at, false)),
        _ => None,
    };
    let label = name
        .as_ref()
        .map_or_else(|| "this route".to_string(), |(n, _, _)| format!("route `{n}`"));

    // Exactly one action.
    let present: Vec<Field<'_>> = ["pool", "redirect", "static_dir"]
        .iter()
        .filter_map(|k| t.get(k))
        .collect();
    match present.as_slice() {
        [] => cx.err(
            t.at,
            format!("{label} needs one of `pool`, `redirect` or `static_dir`"),
        ),
        [_] => {}
        [first, rest @ ..] => {
            for f in rest {
                cx.err(
                    f.key_at,
                    format!(
                        "{label} has both `{}` and `{}`; a route does exactly one of \
                         pool, redirect or static_dir",
                        first.key, f.key
                    ),
                );
            }
        }
    }
    let strip = t.get("strip_prefix");
    if let Some(f) = strip
        && t.get("pool").is_none()
    {
        cx.err(
            f.key_at,
            format!("{label}: `strip_prefix` only applies to a route with `pool`"),
        );
    }
    let strip_prefix = strip.map_or(Some(false), |f| cx.bool(f));
    let mut pool_ref = None;
    let pool = t.get("pool").and_then(|f| {
        let p = cx.nonempty_str(f)?;
        pool_ref = Some((p.to_string(), f.at));
        Some(p.to_string())
    });
    let redirect = t.get("redirect").and_then(|f| {
        let rt = cx.table(f, "`redirect`".into())?;
        parse_redirect(cx, &rt)
    });
    let static_dir = t.get("static_dir").and_then(|f| {
        let dir = PathBuf::from(cx.nonempty_str(f)?);
        facts.paths.push(PathFact {
            kind: PathKind::StaticDir,
            path: dir.clone(),
            at: f.key_at,
        });
        Some(dir)
    });
    let action = match (pool, redirect, static_dir) {
        (Some(pool), None, None) => Some(RouteAction::Pool {
            pool,
            strip_prefix: strip_prefix.unwrap_or(false),
        }),
        (None, Some((to, status)), None) => Some(RouteAction::Redirect { to, status }),
        (None, None, Some(dir)) => Some(RouteAction::Static { dir }),
        _ => None,
    };
    let reject_encoded_slash = t.get("reject_encoded_slash").map_or(Some(false), |f| cx.bool(f));
    let maintenance = match t.get("maintenance") {
        None => Some(None),
        Some(f) => cx
            .table(f, "[route.maintenance]".into())
            .and_then(|mt| parse_maintenance(cx, facts, &mt))
            .map(Some),
    };
    facts.routes.push(RouteFact {
        name: name.clone().map(|(n, at, _)| (n, at)),
        explicit_name: name.as_ref().is_some_and(|(_, _, e)| *e),
        host: host.clone().flatten(),
        path: path.clone(),
        at: t.at,
        pool: pool_ref,
    });
    Some(RouteConfig {
        name: name?.0,
        host: host?,
        path: path?,
        action: action?,
        reject_encoded_slash: reject_encoded_slash?,
        maintenance: maintenance?,
    })
}

/// A route `path` in the normal form requests are matched in (`route::normalize`): any other
/// spelling could never match, so it is an error that names the normal one.
fn normal_prefix(cx: &mut Ctx, at: usize, p: &str) -> Option<String> {
    match crate::route::normalize(p) {
        Ok(n) if n == p => Some(p.to_string()),
        Ok(n) => {
            cx.err(
                at,
                format!(
                    "`path` \"{p}\" is not in normal form; requests are matched on their \
                     normalised path, so write \"{n}\""
                ),
            );
            None
        }
        Err(e) => {
            cx.err(at, format!("`path` \"{p}\" cannot be normalised: {e}"));
            None
        }
    }
}

/// The name of a route without `name`: its host and path, `api.example.com/api/` or `/assets/`
/// (`*.example.com/` for a wildcard host).
pub fn derived_name(host: Option<&HostPattern>, path: &str) -> String {
    match host {
        None => path.to_string(),
        Some(HostPattern::Exact(h)) => format!("{h}{path}"),
        Some(HostPattern::Wildcard(suffix)) => format!("*{suffix}{path}"),
    }
}

/// A route `host`: an exact host name (or IPv4 address) or `*.suffix`, lower-cased.
fn host_pattern(cx: &mut Ctx, f: Field<'_>) -> Option<HostPattern> {
    let raw = cx.str(f)?;
    let h = raw.to_ascii_lowercase();
    let h = h.strip_suffix('.').unwrap_or(&h);
    if let Some(suffix) = h.strip_prefix("*.") {
        if values::is_dns_name(suffix, false) {
            return Some(HostPattern::Wildcard(format!(".{suffix}")));
        }
    } else if h.parse::<Ipv4Addr>().is_ok() || values::is_dns_name(h, false) {
        return Some(HostPattern::Exact(h.to_string()));
    }
    let why = if h.contains(':') {
        " (leave out the port: routes match any port)"
    } else if h == "*" {
        " (leave out `host` to match any host)"
    } else {
        ""
    };
    cx.err(
        f.at,
        format!(
            "`host` \"{raw}\" is neither a valid host name nor a wildcard like \
             \"*.example.com\"{why}"
        ),
    );
    None
}

fn parse_redirect(cx: &mut Ctx, t: &Tbl<'_>) -> Option<(String, u16)> {
    t.check_keys(cx, &["to", "status"]);
    let to = match t.get("to") {
        None => {
            cx.missing(t, "to");
            None
        }
        Some(f) => cx.str(f).and_then(|s| {
            if s.starts_with("https://") || s.starts_with("http://") || s.starts_with('/') {
                Some(s.to_string())
            } else {
                cx.err(
                    f.at,
                    format!(
                        "`to` must be an absolute URL (\"https://…\") or a path (\"/…\"), \
                         found \"{s}\""
                    ),
                );
                None
            }
        }),
    };
    let status = t.get("status").map_or(Some(301), |f| redirect_status(cx, f));
    Some((to?, status?))
}

/// Default `retry_after` of a route in maintenance.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30 * 60);

fn parse_maintenance(cx: &mut Ctx, facts: &mut Facts, t: &Tbl<'_>) -> Option<MaintenanceConfig> {
    t.check_keys(cx, &["enabled", "allow", "windows", "page", "retry_after"]);
    let enabled = t.get("enabled").map_or(Some(false), |f| cx.bool(f));
    let allow = t
        .get("allow")
        .map_or(Some(Vec::new()), |f| super::listener::networks(cx, f));
    let windows = match t.get("windows") {
        None => Some(Vec::new()),
        Some(f) => cx.array(f).and_then(|items| {
            let mut out = Vec::new();
            let mut ok = true;
            for el in items {
                match cx.str(el) {
                    Some(w) => match Window::parse(w) {
                        Ok(window) => out.push(window),
                        Err(e) => {
                            cx.err(el.at, e);
                            ok = false;
                        }
                    },
                    None => ok = false,
                }
            }
            ok.then_some(out)
        }),
    };
    let page = match t.get("page") {
        None => Some(None),
        Some(f) => cx.nonempty_str(f).map(|p| {
            facts.paths.push(PathFact {
                kind: PathKind::MaintenancePage,
                path: PathBuf::from(p),
                at: f.key_at,
            });
            Some(PathBuf::from(p))
        }),
    };
    let retry_after = t
        .get("retry_after")
        .map_or(Some(DEFAULT_RETRY_AFTER), |f| cx.duration(f, true));
    Some(MaintenanceConfig {
        enabled: enabled?,
        allow: allow?,
        windows: windows?,
        page: page?,
        retry_after: retry_after?,
    })
}
