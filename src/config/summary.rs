//! The short summary `ringway check` prints after a successful validation.

use std::fmt::Write as _;

use super::model::*;

/// "OK — 2 listeners, 3 routes, 2 pools, 5 servers", a line on cluster mode when `[cluster]` is
/// set, and one line per listener, route and pool.
///
/// The file name is not part of [`Config`], so the caller prefixes it:
/// `println!("{}: {}", path.display(), summary(&config))` gives
/// `ringway.toml: OK — 2 listeners, …`.
pub fn summary(config: &Config) -> String {
    summary_at(config, None)
}

/// [`summary`], and with `now` each maintenance window's next occurrence (or the end of the one
/// in force), as `ringway check` prints it.
pub fn summary_at(config: &Config, now: Option<jiff::Timestamp>) -> String {
    let servers: usize = config.pools.iter().map(|p| p.servers.len()).sum();
    let mut out = format!(
        "OK — {}, {}, {}, {}",
        count(config.listeners.len(), "listener"),
        count(config.routes.len(), "route"),
        count(config.pools.len(), "pool"),
        count(servers, "server"),
    );
    if let Some(c) = &config.cluster {
        let _ = write!(out, "\n  {}", cluster(c));
    }
    let width = config
        .listeners
        .iter()
        .map(|l| l.name.chars().count())
        .chain(config.routes.iter().map(|r| r.name.chars().count()))
        .chain(config.pools.iter().map(|p| p.name.chars().count()))
        .max()
        .unwrap_or(0);
    for l in &config.listeners {
        let mut kind = match &l.tls {
            Some(t) => format!("https ({})", count(t.certs.len(), "certificate")),
            None => "http".to_string(),
        };
        if let Some(r) = l.redirect_https {
            let _ = write!(kind, ", redirects to https port {} ({})", r.port, r.status);
        }
        if l.proxy_protocol {
            kind.push_str(", PROXY protocol");
        }
        let _ = write!(out, "\n  listener {:width$}  {}  {kind}", l.name, l.bind);
    }
    for r in &config.routes {
        let host = match &r.host {
            Some(HostPattern::Exact(h)) => h.clone(),
            Some(HostPattern::Wildcard(s)) => format!("*{s}"),
            None => String::new(),
        };
        let action = match &r.action {
            RouteAction::Pool { pool, strip_prefix } => {
                let strip = if *strip_prefix { " (strip prefix)" } else { "" };
                format!("pool {pool}{strip}")
            }
            RouteAction::Redirect { to, status } => format!("redirect {status} {to}"),
            RouteAction::Static { dir } => format!("static {}", dir.display()),
        };
        let maint = r
            .maintenance
            .as_ref()
            .map(|m| maintenance(m, now))
            .unwrap_or_default();
        let _ = write!(
            out,
            "\n  route    {:width$}  {host}{} → {action}{maint}",
            r.name, r.path
        );
    }
    for p in &config.pools {
        let alg = match &p.balance {
            Balance::RoundRobin => "round_robin".to_string(),
            Balance::LeastRequests => "least_requests".to_string(),
            Balance::RandomTwo => "random_two".to_string(),
            Balance::ConsistentHash(h) => {
                format!(
                    "consistent_hash ({}, {} vnodes{})",
                    hash_desc(h),
                    h.vnodes,
                    bound(h)
                )
            }
            Balance::Maglev(h) => format!(
                "maglev ({}, table {}{})",
                hash_desc(h),
                h.maglev_table_size,
                bound(h)
            ),
        };
        let list = p
            .servers
            .iter()
            .map(|s| {
                let mut d = s.name.clone();
                if s.name != s.address || s.weight != 1 {
                    d.push_str(" (");
                    if s.name != s.address {
                        d.push_str(&s.address);
                        if s.weight != 1 {
                            d.push_str(", ");
                        }
                    }
                    if s.weight != 1 {
                        let _ = write!(d, "weight {}", s.weight);
                    }
                    d.push(')');
                }
                d
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut line = format!("{alg}, {}", count(p.servers.len(), "server"));
        if !list.is_empty() {
            let _ = write!(line, ": {list}");
        }
        if let Some(d) = &p.discover {
            let _ = write!(
                line,
                "; discover {} every {}",
                d.dns,
                humantime::format_duration(d.interval)
            );
        }
        let _ = write!(out, "\n  pool     {:width$}  {line}", p.name);
    }
    out
}

/// "cluster: 3 etcd endpoints, prefix /ringway/prod, name edge-1" and how it connects.
fn cluster(c: &ClusterConfig) -> String {
    let mut line = format!(
        "cluster: {}, prefix {}, name {}",
        count(c.etcd.len(), "etcd endpoint"),
        c.prefix,
        c.name.as_deref().unwrap_or("(the host name)")
    );
    if c.etcd.iter().any(|e| e.starts_with("https://")) {
        line.push_str(", TLS");
        if c.tls.as_ref().is_some_and(|t| t.client.is_some()) {
            line.push_str(" with a client certificate");
        }
    }
    if let Some(user) = &c.user {
        let _ = write!(line, ", user {user}");
    }
    let _ = write!(line, ", timeout {}", humantime::format_duration(c.timeout));
    line
}

/// A route's maintenance: on now, its windows (with the next one when the time is known), and
/// the clients that still pass (also when it is switched on through the admin API).
fn maintenance(m: &MaintenanceConfig, now: Option<jiff::Timestamp>) -> String {
    let mut out = String::new();
    if m.enabled {
        out.push_str(", IN MAINTENANCE");
    }
    if !m.windows.is_empty() {
        let list = m
            .windows
            .iter()
            .map(|w| format!("`{w}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(out, ", maintenance windows {list}");
        let schedule = crate::route::maintenance::Schedule::new(m.windows.clone());
        let utc = |t: jiff::Timestamp| t.strftime("%Y-%m-%d %H:%M UTC").to_string();
        if let Some(now) = now {
            if let Some(end) = schedule.is_in_window(now) {
                let _ = write!(out, " (in one now, until {})", utc(end));
            } else if let Some((start, _)) = schedule.next_window(now) {
                let _ = write!(out, " (next {})", utc(start));
            }
        }
    }
    if !m.allow.is_empty() {
        let list = m
            .allow
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(out, ", maintenance lets {list} through");
    }
    out
}

/// "1 route", "3 routes".
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn hash_desc(h: &HashSettings) -> String {
    let key = match &h.key {
        HashKeySpec::Path => "path".to_string(),
        HashKeySpec::Uri => "uri".to_string(),
        HashKeySpec::ClientIp => "client_ip".to_string(),
        HashKeySpec::Header(n) => format!("header:{n}"),
        HashKeySpec::Cookie(n) => format!("cookie:{n}"),
        HashKeySpec::Query(n) => format!("query:{n}"),
    };
    let f = match h.hash {
        HashFn::Xxh3 => "xxh3",
        HashFn::Sha1_28 => "sha1-28",
    };
    format!("key {key}, {f}")
}

fn bound(h: &HashSettings) -> String {
    h.bounded_load
        .map(|c| format!(", bounded_load {c}"))
        .unwrap_or_default()
}
