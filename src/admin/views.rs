//! The JSON views of the live state: status, listeners, routes, pools, servers (the contract in
//! docs/api.md).
//!
//! Owns: turning the snapshot, the server atomics and the sampler's figures into plain JSON a
//! script can use. Must not touch: any state (it only reads).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Value, json};

use super::sampler::{Figures, Sampler};
use crate::config::{Balance, HashFn, HashKeySpec, HostPattern, PoolConfig, RouteConfig};
use crate::discovery::Reports;
use crate::proxy::Engine;
use crate::proxy::state::{AdminState, Health, Pool, RAMP_FULL, Route, RouteTarget, Server, Snapshot};

/// RFC 3339 with milliseconds, UTC.
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A duration as humantime writes it ("2s", "1m 30s").
pub fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The last health check of a server.
#[derive(Debug, Serialize)]
pub struct CheckView {
    at: String,
    passed: bool,
    detail: String,
}

/// `<server>` of the contract.
#[derive(Debug, Serialize)]
pub struct ServerView {
    name: String,
    address: String,
    status: &'static str,
    state: &'static str,
    health: &'static str,
    ejected: bool,
    weight: u32,
    effective_weight: u32,
    ramp: f64,
    added_at_runtime: bool,
    discovered: bool,
    removing: bool,
    last_check: Option<CheckView>,
    in_flight: u64,
    requests: u64,
    failures: u64,
    #[serde(flatten)]
    figures: Figures,
}

/// One word for a server's condition, for colours: the first that holds of `removing`,
/// `maint`, `drain`, `down`, `checking`, `ejected`, `up`.
pub fn status_word(removing: bool, state: AdminState, health: Health, ejected: bool) -> &'static str {
    match (removing, state, health, ejected) {
        (true, ..) => "removing",
        (_, AdminState::Maint, ..) => "maint",
        (_, AdminState::Drain, ..) => "drain",
        (_, _, Health::Down, _) => "down",
        (_, _, Health::Checking, _) => "checking",
        (_, _, _, true) => "ejected",
        _ => "up",
    }
}

/// A server with its live figures.
pub fn server(s: &Server, sampler: &Sampler) -> ServerView {
    let removing = s.removing.load(Ordering::Relaxed);
    let last_check = s
        .last_check
        .lock()
        .ok()
        .and_then(|c| c.clone())
        .map(|c| CheckView {
            at: time(c.at),
            passed: c.passed,
            detail: c.detail,
        });
    ServerView {
        name: s.name.clone(),
        address: s.address.clone(),
        status: status_word(removing, s.admin_state(), s.health(), s.is_ejected()),
        state: s.admin_state().as_str(),
        health: s.health().as_str(),
        ejected: s.is_ejected(),
        weight: s.weight(),
        effective_weight: s.effective_weight(),
        ramp: f64::from(s.ramp()) / f64::from(RAMP_FULL),
        added_at_runtime: s.runtime_added.load(Ordering::Relaxed),
        discovered: s.discovered.load(Ordering::Relaxed),
        removing,
        last_check,
        in_flight: s.in_flight.load(Ordering::Relaxed),
        requests: s.requests.load(Ordering::Relaxed),
        failures: s.failures.load(Ordering::Relaxed),
        figures: sampler.server(s.id),
    }
}

fn hash_name(h: HashFn) -> &'static str {
    match h {
        HashFn::Xxh3 => "xxh3",
        HashFn::Sha1_28 => "sha1-28",
    }
}

/// `hash_key` as the configuration writes it.
pub fn hash_key_name(k: &HashKeySpec) -> String {
    match k {
        HashKeySpec::Path => "path".into(),
        HashKeySpec::Uri => "uri".into(),
        HashKeySpec::ClientIp => "client_ip".into(),
        HashKeySpec::Header(n) => format!("header:{n}"),
        HashKeySpec::Cookie(n) => format!("cookie:{n}"),
        HashKeySpec::Query(n) => format!("query:{n}"),
    }
}

/// The algorithm's name as the configuration writes it.
pub fn algorithm_name(b: &Balance) -> &'static str {
    match b {
        Balance::RoundRobin => "round_robin",
        Balance::LeastRequests => "least_requests",
        Balance::RandomTwo => "random_two",
        Balance::ConsistentHash(_) => "consistent_hash",
        Balance::Maglev(_) => "maglev",
    }
}

/// `balance` as plain JSON, and the algorithm in words.
pub fn balance(b: &Balance) -> (Value, String) {
    match b {
        Balance::RoundRobin => (
            json!({"algorithm": "round_robin"}),
            "smooth weighted round robin".into(),
        ),
        Balance::LeastRequests => (
            json!({"algorithm": "least_requests"}),
            "least requests: the fewest in flight relative to weight".into(),
        ),
        Balance::RandomTwo => (
            json!({"algorithm": "random_two"}),
            "power of two random choices, the less loaded of two".into(),
        ),
        Balance::ConsistentHash(h) => {
            let bounded = h
                .bounded_load
                .map_or(String::new(), |c| format!(", bounded load {c}"));
            (
                json!({"algorithm": "consistent_hash", "hash_key": hash_key_name(&h.key),
                       "vnodes": h.vnodes, "hash": hash_name(h.hash), "bounded_load": h.bounded_load}),
                format!(
                    "consistent hashing of the {} ({} points per unit of weight, {}{bounded})",
                    hash_key_name(&h.key),
                    h.vnodes,
                    hash_name(h.hash)
                ),
            )
        }
        Balance::Maglev(h) => {
            let bounded = h
                .bounded_load
                .map_or(String::new(), |c| format!(", bounded load {c}"));
            (
                json!({"algorithm": "maglev", "hash_key": hash_key_name(&h.key),
                       "table_size": h.maglev_table_size, "hash": hash_name(h.hash),
                       "bounded_load": h.bounded_load}),
                format!(
                    "Maglev hashing of the {} (table of {}, {}{bounded})",
                    hash_key_name(&h.key),
                    h.maglev_table_size,
                    hash_name(h.hash)
                ),
            )
        }
    }
}

/// The configuration of pool `name`.
pub fn pool_config<'a>(snapshot: &'a Snapshot, name: &str) -> Option<&'a PoolConfig> {
    snapshot.config.pools.iter().find(|p| p.name == name)
}

/// `discover` of a pool: its settings and how resolution is going.
fn discover(cfg: Option<&PoolConfig>, reports: &Reports) -> Value {
    let Some((pool, d)) = cfg.and_then(|c| Some((&c.name, c.discover.as_ref()?))) else {
        return Value::Null;
    };
    let report = reports.of(pool).unwrap_or_default();
    json!({
        "dns": d.dns,
        "interval": duration(d.interval),
        "resolvers": d.resolvers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "last_answer": report.last_answer.map(time),
        "answered": report.answered,
        "used": report.used,
        "failing_since": report.failing_since.map(time),
        "last_error": report.last_error,
    })
}

/// `<pool>` of the contract.
pub fn pool(p: &Pool, snapshot: &Snapshot, sampler: &Sampler, reports: &Reports) -> Value {
    let members = p.members.load();
    let servers: Vec<ServerView> = members.servers.iter().map(|s| server(s, sampler)).collect();
    let in_flight: u64 = members
        .servers
        .iter()
        .map(|s| s.in_flight.load(Ordering::Relaxed))
        .sum();
    let cfg = pool_config(snapshot, &p.name);
    let (balance, description) = cfg.map_or((Value::Null, String::new()), |c| balance(&c.balance));
    let health = p.settings.health.as_ref().map(|h| {
        json!({"path": h.path, "interval": duration(h.interval), "timeout": duration(h.timeout),
               "rise": h.rise, "fall": h.fall, "expect": h.expect})
    });
    let passive = p
        .settings
        .passive
        .map(|x| json!({"failures": x.failures, "eject": duration(x.eject)}));
    let figures = sampler.pool(&members.servers);
    let history: Vec<Value> = sampler
        .history(&p.name)
        .iter()
        .map(|h| json!({"at": time(h.at), "requests_per_s": h.requests_per_s, "p99_s": h.p99_s}))
        .collect();
    json!({
        "name": p.name,
        "balance": balance,
        "description": description,
        "retries": p.settings.retries,
        "max_conns": p.settings.max_conns,
        "slow_start": p.settings.slow_start.map(duration),
        "health_check": health,
        "passive": passive,
        "discover": discover(cfg, reports),
        "requests_per_s": figures.requests_per_s,
        "error_5xx_ratio": figures.error_5xx_ratio,
        "p50_s": figures.p50_s,
        "p99_s": figures.p99_s,
        "in_flight": in_flight,
        "history": history,
        "servers": servers,
    })
}

/// Every pool, in name order.
pub fn pools(snapshot: &Snapshot, sampler: &Sampler, reports: &Reports) -> Vec<Value> {
    let mut names: Vec<&String> = snapshot.pools.keys().collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|n| snapshot.pools.get(n))
        .map(|p| pool(p, snapshot, sampler, reports))
        .collect()
}

fn route_config<'a>(snapshot: &'a Snapshot, r: &Route) -> Option<&'a RouteConfig> {
    snapshot.config.routes.iter().find(|c| c.name == r.name)
}

/// A route with its target, figures and maintenance (`null` without `[route.maintenance]`) at
/// `now`.
pub fn route(r: &Route, snapshot: &Snapshot, sampler: &Sampler, now: jiff::Timestamp) -> Value {
    let host = route_config(snapshot, r)
        .and_then(|c| c.host.as_ref())
        .map(|h| match h {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Wildcard(suffix) => format!("*{suffix}"),
        });
    let target = match &r.target {
        RouteTarget::Forward { pool, .. } => json!({"kind": "pool", "pool": pool.name}),
        RouteTarget::Redirect { location, status } => json!({
            "kind": "redirect",
            "to": String::from_utf8_lossy(location.as_bytes()),
            "status": status.as_u16(),
        }),
        RouteTarget::Static { site } => json!({"kind": "static", "dir": site.dir.display().to_string()}),
    };
    let f = sampler.route(&r.name);
    json!({
        "name": r.name,
        "host": host,
        "path": r.prefix,
        "target": target,
        "requests_per_s": f.requests_per_s,
        "error_5xx_ratio": f.error_5xx_ratio,
        "p50_s": f.p50_s,
        "p99_s": f.p99_s,
        "maintenance": r.maintenance.as_deref().map(|m| super::routes::maintenance_view(m, now)),
    })
}

/// Every route, in configuration order, at `now` (the engine's clock).
pub fn routes(snapshot: &Snapshot, sampler: &Sampler, now: jiff::Timestamp) -> Vec<Value> {
    snapshot
        .routes
        .iter()
        .map(|r| route(r, snapshot, sampler, now))
        .collect()
}

/// Every listener with its open connections.
pub fn listeners(engine: &Engine) -> Vec<Value> {
    engine
        .listener_status()
        .into_iter()
        .map(|l| json!({"name": l.name, "bind": l.bind.to_string(), "open_connections": l.open}))
        .collect()
}

/// `GET /api/v1/status`: everything the status page shows, in one answer.
pub fn status(engine: &Engine, sampler: &Sampler, started_at: SystemTime) -> Value {
    let snapshot: Arc<Snapshot> = engine.shared.snapshot.load_full();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": time(started_at),
        "now": time(SystemTime::now()),
        "listeners": listeners(engine),
        "routes": routes(&snapshot, sampler, engine.shared.clock.now()),
        "pools": pools(&snapshot, sampler, &engine.shared.discovery),
        // The fleet in cluster mode (as GET /api/v1/cluster), for the status page.
        "cluster": engine.cluster.get().map(|c| c.view(engine)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_status_word_by_precedence() {
        use AdminState::*;
        use Health::*;
        assert_eq!(status_word(true, Maint, Down, true), "removing");
        assert_eq!(status_word(false, Maint, Down, true), "maint");
        assert_eq!(status_word(false, Drain, Down, true), "drain");
        assert_eq!(status_word(false, Ready, Down, true), "down");
        assert_eq!(status_word(false, Ready, Checking, true), "checking");
        assert_eq!(status_word(false, Ready, Up, true), "ejected");
        assert_eq!(status_word(false, Ready, Up, false), "up");
    }

    #[test]
    fn balance_is_plain_json() {
        let (v, words) = balance(&Balance::ConsistentHash(crate::cli::default_hash_settings()));
        assert_eq!(
            v,
            json!({"algorithm": "consistent_hash", "hash_key": "path", "vnodes": 160,
                   "hash": "xxh3", "bounded_load": null})
        );
        assert!(words.starts_with("consistent hashing of the path"), "{words}");
        let (v, _) = balance(&Balance::Maglev(crate::cli::default_hash_settings()));
        assert_eq!(v["table_size"], 65537);
        assert_eq!(
            balance(&Balance::RoundRobin).0,
            json!({"algorithm": "round_robin"})
        );
    }
}
