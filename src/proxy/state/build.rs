//! Building a snapshot from a validated configuration: pools with their servers (kept by
//! identity from the previous snapshot), routes with their figures, and the settings this
//! version refuses.
//!
//! Owns: `Snapshot::build`. Must not touch: sockets (addresses are resolved here, once, off the
//! request path).

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use http::HeaderValue;

use super::*;
use crate::balance::{Algorithm, HashFunction, HashKey};
use crate::config::{self, Config, HostPattern, RouteAction};
use crate::route::{HostMatch, RouteKey, RouteTable};

fn algorithm_of(b: &config::Balance) -> (Algorithm, Option<(HashKey, HashFunction)>) {
    let hash_fn = |h: config::HashFn| match h {
        config::HashFn::Xxh3 => HashFunction::Xxh3,
        config::HashFn::Sha1_28 => HashFunction::Sha1_28,
    };
    let key_of = |k: &config::HashKeySpec| match k {
        config::HashKeySpec::Path => HashKey::Path,
        config::HashKeySpec::Uri => HashKey::Uri,
        config::HashKeySpec::ClientIp => HashKey::ClientIp,
        config::HashKeySpec::Header(n) => http::HeaderName::from_bytes(n.as_bytes())
            .map(HashKey::Header)
            // Validation guarantees a valid header token; a path key is the safe fallback.
            .unwrap_or(HashKey::Path),
        config::HashKeySpec::Cookie(n) => HashKey::Cookie(n.clone()),
        config::HashKeySpec::Query(n) => HashKey::Query(n.clone()),
    };
    match b {
        config::Balance::RoundRobin => (Algorithm::RoundRobin, None),
        config::Balance::LeastRequests => (Algorithm::LeastRequests, None),
        config::Balance::RandomTwo => (Algorithm::RandomTwo, None),
        config::Balance::ConsistentHash(h) => (
            Algorithm::ConsistentHash {
                vnodes: h.vnodes,
                hash: hash_fn(h.hash),
                bounded_load: h.bounded_load,
            },
            Some((key_of(&h.key), hash_fn(h.hash))),
        ),
        config::Balance::Maglev(h) => (
            Algorithm::Maglev {
                table_size: h.maglev_table_size,
                hash: hash_fn(h.hash),
                bounded_load: h.bounded_load,
            },
            Some((key_of(&h.key), hash_fn(h.hash))),
        ),
    }
}

/// Resolves `host:port` once; the first address wins (IPv4 preferred, as most stacks do).
pub fn resolve(address: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve server address `{address}`: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("server address `{address}` resolves to nothing"))
}

impl Snapshot {
    /// Builds a snapshot; servers and pools of `previous` with the same name and address are
    /// kept (with their live state and counters).
    pub fn build(config: Config, previous: Option<&Snapshot>) -> Result<Snapshot, Vec<String>> {
        let (mut errors, warnings) = unsupported(&config);
        for w in warnings {
            tracing::warn!("{w}");
        }
        let mut pools = HashMap::new();
        for p in &config.pools {
            let (algorithm, hash_key) = algorithm_of(&p.balance);
            let tls = match &p.tls {
                None => None,
                Some(t) => {
                    if !t.verify {
                        tracing::warn!(
                            "pool `{}`: tls verify = false: the servers' certificates are not checked, \
                             so anyone on the path can read and change this traffic",
                            p.name
                        );
                    }
                    match super::super::upstream_tls::TlsClient::build(&p.name, t, p.protocol) {
                        Ok(c) => Some(Arc::new(c)),
                        Err(e) => {
                            errors.push(e);
                            None
                        }
                    }
                }
            };
            let settings = PoolSettings {
                retries: p.retries.min(10),
                connect_timeout: p.connect_timeout,
                response_timeout: p.response_timeout,
                max_conns: u64::from(p.max_conns),
                hash_key,
                algorithm,
                health: p.health.clone(),
                passive: p.passive,
                slow_start: p.slow_start,
                protocol: p.protocol,
                tls,
                send_proxy: p.send_proxy,
            };
            let old_members = previous
                .and_then(|s| s.pools.get(&p.name))
                .map(|pool| pool.members.load_full());
            let old_servers: &[Arc<Server>] = old_members.as_ref().map_or(&[], |m| &m.servers);
            let first_health = if p.health.is_some() {
                Health::Checking
            } else {
                Health::Up
            };
            let mut servers = Vec::with_capacity(p.servers.len());
            for s in &p.servers {
                let kept = old_servers
                    .iter()
                    .find(|o| o.name == s.name && o.address == s.address);
                match kept {
                    Some(server) => {
                        // A weight set through the admin API outlives the reload.
                        if !server.weight_overridden.load(Ordering::Relaxed) {
                            server.set_weight(s.weight);
                        }
                        server.runtime_added.store(false, Ordering::Relaxed);
                        server.discovered.store(false, Ordering::Relaxed);
                        servers.push(server.clone());
                    }
                    None => match resolve(&s.address) {
                        Ok(addr) => servers.push(Arc::new(Server::new(
                            s.name.clone(),
                            s.address.clone(),
                            addr,
                            s.weight,
                            first_health,
                        ))),
                        Err(e) => errors.push(format!("pool `{}`: {e}", p.name)),
                    },
                }
            }
            // Servers added at run time survive a reload of a file that does not list them, and
            // so do discovered ones while the pool still discovers (its next answer decides).
            for o in old_servers {
                // A discovered server whose address the file now lists gives way to that entry.
                let discovered = o.discovered.load(Ordering::Relaxed)
                    && p.discover.is_some()
                    && !servers.iter().any(|s| s.addr == o.addr);
                if (o.runtime_added.load(Ordering::Relaxed) || discovered)
                    && !servers.iter().any(|s| s.name == o.name)
                {
                    servers.push(o.clone());
                }
            }
            for s in &servers {
                // Without checks (or passive ejection) nothing would ever bring a server back.
                if p.health.is_none() {
                    crate::health::events::set_health(
                        &p.name,
                        s,
                        Health::Up,
                        "the pool has no health checks any more",
                    );
                }
                if p.passive.is_none() {
                    crate::health::events::set_ejected(
                        &p.name,
                        s,
                        false,
                        "the pool has no passive ejection any more",
                    );
                }
            }
            if servers.is_empty() && p.discover.is_none() {
                continue;
            }
            // A discovering pool may be empty until its first answer; until then it answers 503.
            let pool = Pool {
                name: p.name.clone(),
                members: ArcSwap::from_pointee(build_members(&settings.algorithm, servers)),
                settings,
            };
            pools.insert(p.name.clone(), Arc::new(pool));
        }
        let mut keys = Vec::with_capacity(config.routes.len());
        let mut routes = Vec::with_capacity(config.routes.len());
        for r in &config.routes {
            keys.push(RouteKey {
                host: match &r.host {
                    None => HostMatch::Any,
                    Some(HostPattern::Exact(h)) => HostMatch::Exact(h.clone()),
                    Some(HostPattern::Wildcard(s)) => HostMatch::Suffix(s.clone()),
                },
                path: r.path.clone(),
            });
            let target = match &r.action {
                RouteAction::Pool { pool, strip_prefix } => match pools.get(pool) {
                    Some(p) => RouteTarget::Forward {
                        pool: p.clone(),
                        strip: strip_prefix.then(|| r.path.clone()),
                    },
                    None => {
                        errors.push(format!("route `{}`: pool `{pool}` has no servers", r.name));
                        continue;
                    }
                },
                RouteAction::Redirect { to, status } => {
                    match (HeaderValue::from_str(to), http::StatusCode::from_u16(*status)) {
                        (Ok(location), Ok(status)) => RouteTarget::Redirect { location, status },
                        _ => {
                            errors.push(format!("route `{}`: bad redirect", r.name));
                            continue;
                        }
                    }
                }
                RouteAction::Static { dir } => match super::super::static_files::Site::new(dir) {
                    Ok(site) => RouteTarget::Static { site: Arc::new(site) },
                    Err(e) => {
                        errors.push(format!(
                            "route `{}`: static_dir {} cannot be opened: {e}",
                            r.name,
                            dir.display()
                        ));
                        continue;
                    }
                },
            };
            let pool = match &r.action {
                RouteAction::Pool { pool, .. } => Some(pool.as_str()),
                _ => None,
            };
            let stats = previous
                .and_then(|s| {
                    s.routes
                        .iter()
                        .find(|o| o.name == r.name && o.stats.pool.as_deref() == pool)
                })
                .map_or_else(|| Arc::new(RouteStats::new(&r.name, pool)), |o| o.stats.clone());
            // The running route of the same name hands over its switch (see `Maintenance::build`).
            let maintenance = match &r.maintenance {
                None => None,
                Some(m) => {
                    let old = previous
                        .and_then(|s| s.routes.iter().find(|o| o.name == r.name))
                        .and_then(|o| o.maintenance.as_deref());
                    match Maintenance::build(m, old) {
                        Ok(m) => Some(Box::new(m)),
                        Err(e) => {
                            errors.push(format!("route `{}`: {e}", r.name));
                            None
                        }
                    }
                }
            };
            routes.push(Route {
                name: r.name.clone(),
                prefix: r.path.clone(),
                target,
                reject_encoded_slash: r.reject_encoded_slash,
                stats,
                maintenance,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Only a snapshot that will be used takes the servers' load reports (a refused one
        // would leave the running pools' indexes without them).
        for pool in pools.values() {
            pool.members.load().attach();
        }
        Ok(Snapshot {
            table: RouteTable::new(&keys),
            routes,
            pools,
            unrouted: previous.map_or_else(|| Arc::new(RouteStats::new("", None)), |s| s.unrouted.clone()),
            config: Arc::new(config),
        })
    }
}

/// Settings the configuration accepts whose runtime part is not built yet.
///
/// Errors are settings that would change what a client gets if ignored (a TLS listener served
/// in plaintext, a PROXY header read as a request, servers never discovered); the engine
/// refuses them. Warnings are settings whose absence only removes a safety net.
pub fn unsupported(config: &Config) -> (Vec<String>, Vec<String>) {
    // Every setting runs today (maintenance and DNS discovery, once refused here, now do); the
    // lists stay for the next setting whose runtime comes later.
    let (errors, warnings) = (Vec::new(), Vec::new());
    let _ = config;
    (errors, warnings)
}
