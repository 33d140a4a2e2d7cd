//! Builds a [`Config`] from TOML text, section by section, collecting every error.
//!
//! This file reads the top level, `[admin]` and `[log]`, and hands `[[listener]]`, `[[route]]`,
//! `[pool.NAME]` and `[cluster]` to their modules. Each section parser reads its keys through
//! [`walk`](super::walk), fills defaults, and records what cross-checks need (names, addresses,
//! positions) in [`Facts`]; `validate.rs` runs those checks once the whole file has been read.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use toml_edit::Document;

use super::model::*;
use super::validate::{self, Facts, PathFact, PathKind};
use super::values;
use super::walk::{Ctx, Field, Tbl, is_str};
use super::{Vars, cluster, listener, pool, route};

/// A configuration and the paths it names.
pub(crate) type Parsed = (Config, Vec<PathFact>);

/// Parses and validates; errors are `(byte offset, message)` sorted by offset. Beside the
/// configuration, every path it names with the offset of its key (for the loader's checks).
/// `${NAME}` in addresses is looked up in `vars`.
pub(crate) fn parse(source: &str, vars: &Vars) -> Result<Parsed, Vec<(usize, String)>> {
    let doc = match Document::parse(source) {
        Ok(d) => d,
        Err(e) => {
            let at = e.span().map_or(0, |r| r.start);
            return Err(vec![(at, format!("TOML syntax error: {}", e.message()))]);
        }
    };
    let mut cx = Ctx::new(vars);
    let mut facts = Facts::default();
    let root = Tbl::new(doc.as_table(), 0, "the top level".to_string());
    let config = parse_root(&mut cx, &mut facts, &root);
    validate::cross_check(&mut cx, &facts, source);
    match config {
        Some(c) if cx.errors.is_empty() => Ok((c, facts.paths)),
        _ => {
            let mut errors = cx.errors;
            // Stable: errors at one position keep the order in which they were found.
            errors.sort_by_key(|(at, _)| *at);
            Err(errors)
        }
    }
}

const ROOT_KEYS: &[&str] = &[
    "shutdown_grace",
    "workers",
    "admin",
    "log",
    "listener",
    "route",
    "pool",
    "cluster",
];

/// `[admin].listen` when not written.
const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);

/// Most worker threads accepted; beyond this a typo is likelier than a machine that big.
const MAX_WORKERS: i64 = 1024;

fn parse_root(cx: &mut Ctx, facts: &mut Facts, root: &Tbl<'_>) -> Option<Config> {
    root.check_keys(cx, ROOT_KEYS);
    let shutdown_grace = root
        .get("shutdown_grace")
        .map_or(Some(Duration::from_secs(30)), |f| cx.duration(f, false));
    let workers = root
        .get("workers")
        .map_or(Some(Workers::Auto), |f| workers(cx, f));
    let admin = match root.get("admin") {
        None => {
            facts.admin_listen = Some((DEFAULT_ADMIN, None));
            Some(AdminConfig {
                listen: DEFAULT_ADMIN,
                token_env: "RINGWAY_ADMIN_TOKEN".to_string(),
            })
        }
        Some(f) => cx
            .table(f, "[admin]".into())
            .and_then(|t| parse_admin(cx, facts, &t)),
    };
    let log = match root.get("log") {
        None => Some(LogConfig {
            access: AccessLogTarget::Stdout,
            format: AccessLogFormat::Combined,
        }),
        Some(f) => cx.table(f, "[log]".into()).and_then(|t| parse_log(cx, facts, &t)),
    };
    let cluster = match root.get("cluster") {
        None => Some(None),
        Some(f) => cx
            .table(f, "[cluster]".into())
            .and_then(|t| cluster::parse_cluster(cx, facts, &t))
            .map(Some),
    };

    // Pools first, so that routes can be checked against every pool name, valid or not.
    let mut pools = Vec::new();
    if let Some(f) = root.get("pool")
        && let Some(all) = cx.table(f, "[pool]".into())
    {
        for name in all.keys() {
            facts.pool_names.push(name.to_string());
        }
        for name in all.keys() {
            let Some(pf) = all.get(name) else { continue };
            if !values::is_valid_name(name) {
                cx.err(
                    pf.key_at,
                    format!(
                        "pool name `{name}` must be non-empty, at most 128 characters, \
                             without `/`, spaces or control characters"
                    ),
                );
            }
            if let Some(t) = cx.table(pf, format!("[pool.{name}]")) {
                pools.push(pool::parse_pool(cx, facts, name, &t));
            }
        }
    }

    let mut listeners = Vec::new();
    match root.get("listener") {
        None => cx.err(
            0,
            "no [[listener]] is defined; Ringway needs at least one to accept connections",
        ),
        Some(f) => {
            let tables = cx.tables(f, "[[listener]]");
            if tables.as_ref().is_some_and(Vec::is_empty) {
                cx.err(f.at, "`listener` is empty; Ringway needs at least one listener");
            }
            for t in tables.unwrap_or_default() {
                listeners.push(listener::parse_listener(cx, facts, &t));
            }
        }
    }

    let mut routes = Vec::new();
    match root.get("route") {
        None => cx.err(
            0,
            "no [[route]] is defined; Ringway needs at least one to answer requests",
        ),
        Some(f) => {
            let tables = cx.tables(f, "[[route]]");
            if tables.as_ref().is_some_and(Vec::is_empty) {
                cx.err(f.at, "`route` is empty; Ringway needs at least one route");
            }
            for t in tables.unwrap_or_default() {
                routes.push(route::parse_route(cx, facts, &t));
            }
        }
    }

    Some(Config {
        shutdown_grace: shutdown_grace?,
        workers: workers?,
        admin: admin?,
        log: log?,
        listeners: listeners.into_iter().collect::<Option<_>>()?,
        routes: routes.into_iter().collect::<Option<_>>()?,
        pools: pools.into_iter().collect::<Option<_>>()?,
        cluster: cluster?,
    })
}

fn workers(cx: &mut Ctx, f: Field<'_>) -> Option<Workers> {
    if is_str(f) {
        let s = cx.str(f)?;
        if s == "auto" {
            return Some(Workers::Auto);
        }
        cx.err(
            f.at,
            format!("`workers` must be \"auto\" or a number of threads, found \"{s}\""),
        );
        return None;
    }
    let n = cx.int_in(f, 1, MAX_WORKERS)?;
    usize::try_from(n).ok().map(Workers::Fixed)
}

fn parse_admin(cx: &mut Ctx, facts: &mut Facts, t: &Tbl<'_>) -> Option<AdminConfig> {
    t.check_keys(cx, &["listen", "token_env"]);
    let listen = match t.get("listen") {
        None => {
            facts.admin_listen = Some((DEFAULT_ADMIN, None));
            Some(DEFAULT_ADMIN)
        }
        Some(f) => {
            let addr = socket_addr(cx, f);
            if let Some(a) = addr {
                facts.admin_listen = Some((a, Some(f.at)));
            }
            addr
        }
    };
    let token_env = match t.get("token_env") {
        None => Some("RINGWAY_ADMIN_TOKEN".to_string()),
        Some(f) => env_name(cx, f, "token_env"),
    };
    Some(AdminConfig {
        listen: listen?,
        token_env: token_env?,
    })
}

fn parse_log(cx: &mut Ctx, facts: &mut Facts, t: &Tbl<'_>) -> Option<LogConfig> {
    t.check_keys(cx, &["access", "format"]);
    let access = match t.get("access") {
        None => Some(AccessLogTarget::Stdout),
        Some(f) => match cx.nonempty_str(f) {
            Some("stdout") => Some(AccessLogTarget::Stdout),
            Some("off") => Some(AccessLogTarget::Off),
            Some("stderr") => {
                // Would silently create a file called "stderr" next to the config.
                cx.err(
                    f.at,
                    "`access` = \"stderr\" is not a target; write \"/dev/stderr\" \
                     to log to standard error",
                );
                None
            }
            Some(path) => {
                facts.paths.push(PathFact {
                    kind: PathKind::AccessLog,
                    path: PathBuf::from(path),
                    at: f.key_at,
                });
                Some(AccessLogTarget::File(PathBuf::from(path)))
            }
            None => None,
        },
    };
    let format = match t.get("format") {
        None => Some(AccessLogFormat::Combined),
        Some(f) => cx
            .choice(f, &["combined", "json"])
            .map(|i| [AccessLogFormat::Combined, AccessLogFormat::Json][i]),
    };
    Some(LogConfig {
        access: access?,
        format: format?,
    })
}

/// An `IP:port` address to listen on, after `${NAME}` is replaced by the variable NAME (so
/// that one published configuration serves instances that listen on different ports).
/// The value of `key`, which must name an environment variable (`token_env`, `password_env`).
pub(crate) fn env_name(cx: &mut Ctx, f: Field<'_>, key: &str) -> Option<String> {
    let s = cx.str(f)?;
    if values::is_env_name(s) {
        Some(s.to_string())
    } else {
        cx.err(
            f.at,
            format!(
                "`{key}` must name an environment variable \
                 (letters, digits, `_`; not starting with a digit), found \"{s}\""
            ),
        );
        None
    }
}

pub(crate) fn socket_addr(cx: &mut Ctx, f: Field<'_>) -> Option<SocketAddr> {
    let written = cx.str(f)?;
    let s = match values::expand_vars(written, cx.vars) {
        Ok(s) => s,
        Err(e) => {
            cx.err(f.at, format!("`{}`: {e}", f.key));
            return None;
        }
    };
    match values::listen_addr(&s) {
        Ok(a) => Some(a),
        Err(e) => {
            // The operator wrote the variable, not its value: show both.
            let from = if s == written {
                String::new()
            } else {
                format!(" (from \"{written}\")")
            };
            cx.err(f.at, format!("`{}`: {e}{from}", f.key));
            None
        }
    }
}

/// A required, valid object name (listener, route).
pub(crate) fn name(cx: &mut Ctx, t: &Tbl<'_>) -> Option<(String, usize)> {
    let Some(f) = t.get("name") else {
        cx.missing(t, "name");
        return None;
    };
    let s = cx.str(f)?;
    if !values::is_valid_name(s) {
        cx.err(
            f.at,
            format!(
                "name \"{s}\" must be non-empty, at most 128 characters, \
                 without `/`, spaces or control characters (it appears in URLs and metrics)"
            ),
        );
        return None;
    }
    Some((s.to_string(), f.at))
}

/// A redirect status: 301, 302, 303, 307 or 308.
pub(crate) fn redirect_status(cx: &mut Ctx, f: Field<'_>) -> Option<u16> {
    let n = cx.int(f)?;
    if [301, 302, 303, 307, 308].contains(&n) {
        u16::try_from(n).ok()
    } else {
        cx.err(
            f.at,
            format!("`status` must be 301, 302, 303, 307 or 308, found {n}"),
        );
        None
    }
}
