//! `[pool.NAME]`: servers, discovery, algorithm and its hash settings, timeouts, health checks,
//! passive ejection and slow start.

use std::collections::HashMap;
use std::time::Duration;

use toml_edit::{Item, Value};

use super::model::*;
use super::validate::{Facts, PathFact, PathKind};
use super::values;
use super::walk::{Ctx, Field, Node, Tbl, is_str, is_table};

const POOL_KEYS: &[&str] = &[
    "balance",
    "servers",
    "discover",
    "retries",
    "timeouts",
    "max_conns",
    "health",
    "passive",
    "slow_start",
    "protocol",
    "tls",
    "send_proxy",
    "hash_key",
    "vnodes",
    "hash",
    "bounded_load",
    "maglev_table_size",
];

const BALANCES: &[&str] = &[
    "round_robin",
    "least_requests",
    "random_two",
    "consistent_hash",
    "maglev",
];

/// Most points a consistent-hash ring may hold (vnodes × total weight).
const MAX_RING_POINTS: u64 = crate::balance::ring::MAX_POINTS;
/// Smallest Maglev table size (a prime).
const MIN_MAGLEV: u32 = 1021;
/// Largest Maglev table size.
const MAX_MAGLEV: u32 = 1 << 24;

pub(crate) fn parse_pool(cx: &mut Ctx, facts: &mut Facts, pool: &str, t: &Tbl<'_>) -> Option<PoolConfig> {
    t.check_keys(cx, POOL_KEYS);
    let balance_idx = t.get("balance").map_or(Some(0), |f| cx.choice(f, BALANCES));
    let hashed = matches!(balance_idx, Some(3 | 4));
    let maglev = balance_idx == Some(4);

    // Hash keys on a pool that cannot use them are mistakes, not no-ops.
    if balance_idx.is_some() {
        for key in ["hash_key", "vnodes", "hash", "bounded_load", "maglev_table_size"] {
            let Some(f) = t.get(key) else { continue };
            if !hashed {
                cx.err(
                    f.key_at,
                    format!(
                        "`{key}` only applies to hashed pools \
                         (balance = \"consistent_hash\" or \"maglev\")"
                    ),
                );
            } else if maglev && key == "vnodes" {
                cx.err(
                    f.key_at,
                    "`vnodes` only applies to consistent_hash pools; maglev sizes its table \
                     with `maglev_table_size`",
                );
            } else if !maglev && key == "maglev_table_size" {
                cx.err(f.key_at, "`maglev_table_size` only applies to maglev pools");
            }
        }
    }
    let key = t.get("hash_key").map_or(Some(HashKeySpec::Path), |f| {
        let s = cx.str(f)?;
        values::hash_key(s).map_err(|e| cx.err(f.at, e)).ok()
    });
    let vnodes = t.get("vnodes").map_or(Some(160), |f| cx.u32_in(f, 1, 10_000));
    let hash = t.get("hash").map_or(Some(HashFn::Xxh3), |f| {
        cx.choice(f, &["xxh3", "sha1-28"])
            .map(|i| [HashFn::Xxh3, HashFn::Sha1_28][i])
    });
    let bounded_load = match t.get("bounded_load") {
        None => Some(None),
        Some(f) => cx.number(f).and_then(|c| {
            if c.is_finite() && c > 1.0 {
                Some(Some(c))
            } else {
                cx.err(
                    f.at,
                    format!("`bounded_load` must be greater than 1 (e.g. 1.25), found {c}"),
                );
                None
            }
        }),
    };
    let table_size = t.get("maglev_table_size").map_or(Some(65537), |f| {
        let n = cx.u32_in(f, MIN_MAGLEV, MAX_MAGLEV)?;
        if values::is_prime(u64::from(n)) {
            Some(n)
        } else {
            cx.err(
                f.at,
                format!("`maglev_table_size` must be a prime number (e.g. 65537), found {n}"),
            );
            None
        }
    });

    let servers = match t.get("servers") {
        None => Some(Vec::new()),
        Some(f) => parse_servers(cx, pool, f),
    };
    let discover = match t.get("discover") {
        None => Some(None),
        Some(f) => cx
            .table(f, format!("`discover` of [pool.{pool}]"))
            .and_then(|dt| super::discover::parse_discover(cx, &dt))
            .map(Some),
    };
    if t.get("discover").is_none() && servers.as_ref().is_some_and(Vec::is_empty) {
        let at = t.get("servers").map_or(t.at, |f| f.at);
        cx.err(
            at,
            format!("pool `{pool}` has no servers and no `discover`; it could never answer"),
        );
    }
    let retries = t.get("retries").map_or(Some(2), |f| cx.u32_in(f, 0, 10));
    let (connect_timeout, response_timeout) = match t.get("timeouts") {
        None => (Some(Duration::from_secs(3)), Some(Duration::from_secs(60))),
        Some(f) => match cx.table(f, format!("`timeouts` of [pool.{pool}]")) {
            None => (None, None),
            Some(tt) => {
                tt.check_keys(cx, &["connect", "response"]);
                (
                    tt.get("connect")
                        .map_or(Some(Duration::from_secs(3)), |f| cx.duration(f, true)),
                    tt.get("response")
                        .map_or(Some(Duration::from_secs(60)), |f| cx.duration(f, true)),
                )
            }
        },
    };
    let max_conns = t.get("max_conns").map_or(Some(0), |f| cx.u32_in(f, 0, u32::MAX));
    let health = match t.get("health") {
        None => Some(None),
        Some(f) => cx
            .table(f, format!("`health` of [pool.{pool}]"))
            .and_then(|ht| parse_health(cx, &ht))
            .map(Some),
    };
    let passive = match t.get("passive") {
        None => Some(None),
        Some(f) => cx
            .table(f, format!("`passive` of [pool.{pool}]"))
            .and_then(|pt| parse_passive(cx, &pt))
            .map(Some),
    };

    let slow_start = match t.get("slow_start") {
        None => Some(None),
        // "0s" turns it off, as HAProxy's `slowstart 0` does.
        Some(f) => cx.duration(f, false).map(|d| (!d.is_zero()).then_some(d)),
    };
    if hashed && let Some(f) = t.get("slow_start") {
        cx.err(
            f.key_at,
            "`slow_start` does not apply to hashed pools (consistent_hash, maglev): a server's \
             share of keys does not follow a ramped weight, and ramping would move keys back and \
             forth; it applies to round_robin, least_requests and random_two",
        );
    }

    // Size limits of the hashed structures, checked on the static servers.
    if let (Some(list), Some(v)) = (&servers, vnodes) {
        let total_weight: u64 = list.iter().map(|s| u64::from(s.weight)).sum();
        let points = u64::from(v) * total_weight;
        if hashed && !maglev && points > MAX_RING_POINTS {
            let at = t.get("vnodes").map_or(t.at, |f| f.at);
            cx.err(
                at,
                format!(
                    "pool `{pool}` would put {points} points on its ring (vnodes {v} × total \
                     weight {total_weight}); the limit is {MAX_RING_POINTS}"
                ),
            );
        }
    }
    if let (true, Some(list), Some(m)) = (maglev, &servers, table_size)
        && list.len() as u64 >= u64::from(m)
    {
        let at = t.get("maglev_table_size").map_or(t.at, |f| f.at);
        cx.err(
            at,
            format!(
                "pool `{pool}` has {} servers but a maglev table of {m} entries; \
                     the table must be much larger than the server count",
                list.len()
            ),
        );
    }

    let protocol = t.get("protocol").map_or(Some(UpstreamProtocol::Http1), |f| {
        cx.choice(f, &["http1", "h2", "h2c"]).map(|i| {
            [
                UpstreamProtocol::Http1,
                UpstreamProtocol::H2,
                UpstreamProtocol::H2c,
            ][i]
        })
    });
    let tls = match t.get("tls") {
        None => Some(None),
        Some(f) => parse_upstream_tls(cx, facts, pool, f),
    };
    match (protocol, &tls, t.get("protocol")) {
        (Some(UpstreamProtocol::H2), Some(None), Some(f)) => cx.err(
            f.at,
            format!(
                "pool `{pool}`: `protocol = \"h2\"` is HTTP/2 over TLS and needs `tls`; \
                 use \"h2c\" for cleartext HTTP/2"
            ),
        ),
        (Some(UpstreamProtocol::H2c), Some(Some(_)), Some(f)) => cx.err(
            f.at,
            format!(
                "pool `{pool}`: `protocol = \"h2c\"` is cleartext HTTP/2 and cannot go with `tls`; \
                 use \"h2\""
            ),
        ),
        _ => {}
    }
    let send_proxy = match t.get("send_proxy") {
        None => Some(None),
        Some(f) => cx
            .choice(f, &["v1", "v2"])
            .map(|i| Some([ProxyVersion::V1, ProxyVersion::V2][i])),
    };

    let settings = || -> Option<HashSettings> {
        Some(HashSettings {
            key: key.clone()?,
            vnodes: vnodes?,
            hash: hash?,
            bounded_load: bounded_load?,
            maglev_table_size: table_size?,
        })
    };
    let balance = match balance_idx? {
        0 => Balance::RoundRobin,
        1 => Balance::LeastRequests,
        2 => Balance::RandomTwo,
        3 => Balance::ConsistentHash(settings()?),
        _ => Balance::Maglev(settings()?),
    };
    Some(PoolConfig {
        name: pool.to_string(),
        balance,
        servers: servers?,
        discover: discover?,
        retries: retries?,
        connect_timeout: connect_timeout?,
        response_timeout: response_timeout?,
        max_conns: max_conns?,
        health: health?,
        passive: passive?,
        slow_start: slow_start?,
        protocol: protocol?,
        tls: tls?,
        send_proxy: send_proxy?,
    })
}

/// `servers = ["host:port", { address, weight, name }, …]` (or `[[pool.NAME.servers]]`).
fn parse_servers(cx: &mut Ctx, pool: &str, f: Field<'_>) -> Option<Vec<ServerConfig>> {
    let elements: Vec<(Field<'_>, Option<Tbl<'_>>)> = if matches!(f.node, Node::Item(Item::ArrayOfTables(_)))
    {
        cx.tables(f, &format!("a server of [pool.{pool}]"))?
            .into_iter()
            .map(|t| (Field { at: t.at, ..f }, Some(t)))
            .collect()
    } else {
        cx.array(f)?
            .into_iter()
            .map(|el| {
                let t = if is_table(el) {
                    cx.table(el, format!("a server of [pool.{pool}]"))
                } else {
                    None
                };
                (el, t)
            })
            .collect()
    };
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (el, table) in elements {
        let server = match table {
            Some(st) => parse_server_table(cx, &st),
            None if is_str(el) => cx
                .str(el)
                .and_then(|addr| check_address(cx, el, addr))
                .map(|a| (a.clone(), 1, a, el.at)),
            None => {
                cx.err(
                    el.at,
                    format!(
                        "`servers`: expected \"host:port\" or {{ address = \"host:port\", \
                         weight = N, name = \"…\" }}, found {}",
                        el.node.found()
                    ),
                );
                None
            }
        };
        let Some((address, weight, name, name_at)) = server else {
            ok = false;
            continue;
        };
        if seen.insert(name.clone(), name_at).is_some() {
            cx.err(
                name_at,
                format!(
                    "pool `{pool}` has two servers named `{name}` (a server's name defaults \
                     to its address; set `name` to tell them apart)"
                ),
            );
            ok = false;
        }
        out.push(ServerConfig {
            address,
            weight,
            name,
        });
    }
    ok.then_some(out)
}

/// Checks an upstream `host:port` and returns it as written.
fn check_address(cx: &mut Ctx, f: Field<'_>, addr: &str) -> Option<String> {
    match values::host_port(addr) {
        Ok(()) => Some(addr.to_string()),
        Err(e) => {
            cx.err(f.at, e);
            None
        }
    }
}

/// `{ address, weight, name }` → (address, weight, name, position of the name).
fn parse_server_table(cx: &mut Ctx, t: &Tbl<'_>) -> Option<(String, u32, String, usize)> {
    t.check_keys(cx, &["address", "weight", "name"]);
    let address = match t.get("address") {
        None => {
            cx.missing(t, "address");
            None
        }
        Some(f) => cx.str(f).and_then(|a| check_address(cx, f, a).map(|a| (a, f.at))),
    };
    let weight = t.get("weight").map_or(Some(1), |f| cx.u32_in(f, 1, 256));
    let name = match t.get("name") {
        None => None,
        Some(f) => cx.str(f).and_then(|n| {
            if values::is_valid_name(n) {
                Some((n.to_string(), f.at))
            } else {
                cx.err(
                    f.at,
                    format!(
                        "server name \"{n}\" must be non-empty, at most 128 characters, \
                         without `/`, spaces or control characters"
                    ),
                );
                None
            }
        }),
    };
    let (address, address_at) = address?;
    let (name, name_at) = match (t.get("name"), name) {
        (None, _) => (address.clone(), address_at),
        (Some(_), Some(n)) => n,
        (Some(_), None) => return None,
    };
    Some((address, weight?, name, name_at))
}

fn parse_health(cx: &mut Ctx, t: &Tbl<'_>) -> Option<HealthConfig> {
    t.check_keys(cx, &["path", "interval", "timeout", "rise", "fall", "expect"]);
    let path = match t.get("path") {
        None => Some("/healthz".to_string()),
        Some(f) => cx.str(f).and_then(|p| {
            if p.starts_with('/') && !p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                Some(p.to_string())
            } else {
                cx.err(
                    f.at,
                    format!("health `path` must start with \"/\" and contain no spaces, found \"{p}\""),
                );
                None
            }
        }),
    };
    let interval = t
        .get("interval")
        .map_or(Some(Duration::from_secs(2)), |f| cx.duration(f, true));
    let timeout = t
        .get("timeout")
        .map_or(Some(Duration::from_secs(1)), |f| cx.duration(f, true));
    if let (Some(i), Some(to)) = (interval, timeout)
        && to > i
    {
        let at = t.get("timeout").or(t.get("interval")).map_or(t.at, |f| f.at);
        cx.err(
            at,
            format!(
                "health `timeout` ({}) is longer than its `interval` ({}); \
                     checks would overlap",
                humantime::format_duration(to),
                humantime::format_duration(i)
            ),
        );
    }
    let rise = t.get("rise").map_or(Some(2), |f| cx.u32_in(f, 1, 1000));
    let fall = t.get("fall").map_or(Some(3), |f| cx.u32_in(f, 1, 1000));
    let expect = match t.get("expect") {
        None => Some(ExpectStatus::default()),
        Some(f) => parse_expect(cx, f),
    };
    Some(HealthConfig {
        path: path?,
        interval: interval?,
        timeout: timeout?,
        rise: rise?,
        fall: fall?,
        expect: expect?,
    })
}

/// `expect`: a string ("2xx", "200,204"), one code (`204`) or an array of codes and classes
/// (`[200, 204]`, `["2xx", 304]`).
fn parse_expect(cx: &mut Ctx, f: Field<'_>) -> Option<ExpectStatus> {
    let code = |cx: &mut Ctx, el: Field<'_>, i: i64| match u16::try_from(i) {
        Ok(c) if (100..=599).contains(&c) => Some(StatusMatch::Code(c)),
        _ => {
            cx.err(
                el.at,
                format!("`expect`: {i} is not an HTTP status code (100 to 599)"),
            );
            None
        }
    };
    match f.node.value() {
        // A bare number is the natural way to write one code.
        Some(Value::Integer(i)) => code(cx, f, *i.value()).and_then(|m| ExpectStatus::new(vec![m])),
        Some(Value::Array(_)) => {
            let elements = cx.array(f)?;
            if elements.is_empty() {
                cx.err(f.at, "`expect` must list at least one status, e.g. [200, 204]");
                return None;
            }
            let mut items = Some(Vec::with_capacity(elements.len()));
            for el in elements {
                let item = match el.node.value() {
                    Some(Value::Integer(i)) => code(cx, el, *i.value()),
                    Some(Value::String(s)) => {
                        let m = values::status_match(s.value().trim());
                        if m.is_none() {
                            cx.err(
                                el.at,
                                format!(
                                    "`expect`: \"{}\" is neither a status code (200) nor a \
                                     class (\"2xx\")",
                                    s.value()
                                ),
                            );
                        }
                        m
                    }
                    _ => {
                        cx.err(
                            el.at,
                            format!(
                                "`expect`: expected a status code or class, found {}",
                                el.node.found()
                            ),
                        );
                        None
                    }
                };
                match (item, items.as_mut()) {
                    (Some(m), Some(list)) => list.push(m),
                    _ => items = None,
                }
            }
            items.and_then(ExpectStatus::new)
        }
        Some(Value::String(s)) => values::expect_list(s.value()).map_err(|e| cx.err(f.at, e)).ok(),
        _ => {
            cx.err(
                f.at,
                format!(
                    "`expect`: expected a status class (\"2xx\"), a code (200) or an array of \
                     codes ([200, 204]), found {}",
                    f.node.found()
                ),
            );
            None
        }
    }
}

fn parse_passive(cx: &mut Ctx, t: &Tbl<'_>) -> Option<PassiveConfig> {
    t.check_keys(cx, &["failures", "eject"]);
    let failures = t.get("failures").map_or(Some(5), |f| cx.u32_in(f, 1, 1000));
    let eject = t
        .get("eject")
        .map_or(Some(Duration::from_secs(30)), |f| cx.duration(f, true));
    Some(PassiveConfig {
        failures: failures?,
        eject: eject?,
    })
}

/// `tls = true | false` or `tls = { ca, server_name, verify }` on a pool.
fn parse_upstream_tls(
    cx: &mut Ctx,
    facts: &mut Facts,
    pool: &str,
    f: Field<'_>,
) -> Option<Option<UpstreamTls>> {
    if !is_table(f) {
        return cx.bool(f).map(|on| {
            on.then_some(UpstreamTls {
                ca: None,
                server_name: None,
                verify: true,
            })
        });
    }
    let tt = cx.table(f, format!("`tls` of [pool.{pool}]"))?;
    tt.check_keys(cx, &["ca", "server_name", "verify"]);
    let ca = match tt.get("ca") {
        None => Some(None),
        Some(cf) => cx.nonempty_str(cf).map(|p| {
            facts.paths.push(PathFact {
                kind: PathKind::TlsCa,
                path: std::path::PathBuf::from(p),
                at: cf.key_at,
            });
            Some(std::path::PathBuf::from(p))
        }),
    };
    let server_name = match tt.get("server_name") {
        None => Some(None),
        Some(nf) => cx.nonempty_str(nf).and_then(|n| {
            if values::is_dns_name(n, false) || n.parse::<std::net::IpAddr>().is_ok() {
                Some(Some(n.to_ascii_lowercase()))
            } else {
                cx.err(
                    nf.at,
                    format!("`server_name` \"{n}\" is not a DNS name or IP address"),
                );
                None
            }
        }),
    };
    let verify = tt.get("verify").map_or(Some(true), |vf| cx.bool(vf));
    if verify == Some(false)
        && let Some(cf) = tt.get("ca")
    {
        cx.err(
            cf.key_at,
            "`ca` has no use with `verify = false`: the certificates would not be checked",
        );
    }
    Some(Some(UpstreamTls {
        ca: ca?,
        server_name: server_name?,
        verify: verify?,
    }))
}
