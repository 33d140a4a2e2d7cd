//! Runtime state: one immutable snapshot of routes and pools, swapped whole on reload.
//!
//! Owns: turning a validated [`Config`] into the structures the request path reads, and the live
//! per-server counters (atomics). Pools and servers are shared by identity between snapshots, so
//! connections that keep an older snapshot still see state changes (drain, weight) made later.
//! Must not touch: sockets (addresses are resolved here, once, off the request path).

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::balance::{self, Algorithm, Balancer, HashFunction, HashKey, Member, ServerLoads};
use crate::config::{self, Config, HostPattern, RouteAction};
use crate::route::{HostMatch, RouteKey, RouteTable};

use super::stats::{Histogram, RouteStats};

/// Admin state of a server: takes traffic, finishes what it has, or takes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Takes new requests.
    Ready = 0,
    /// Takes no new requests; finishes those in flight.
    Drain = 1,
    /// Out of service, and no health alarm.
    Maint = 2,
}

impl AdminState {
    fn from_u8(v: u8) -> AdminState {
        match v {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }

    /// The name used in the API and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }

    /// The state named `s` in the API (`ready`, `drain`, `maint`).
    pub fn parse(s: &str) -> Option<AdminState> {
        match s {
            "ready" => Some(AdminState::Ready),
            "drain" => Some(AdminState::Drain),
            "maint" => Some(AdminState::Maint),
            _ => None,
        }
    }
}

/// Health of a server as the active checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not yet passed its first `rise` checks: takes no traffic (a server never seen up is not
    /// trusted with requests).
    Checking = 0,
    /// Passing its checks, or in a pool without active checks.
    Up = 1,
    /// Failed `fall` checks in a row.
    Down = 2,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            0 => Health::Checking,
            2 => Health::Down,
            _ => Health::Up,
        }
    }

    /// The name used in the API and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Checking => "checking",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// The outcome of the last active health check of a server (read by the admin side only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRecord {
    /// When the check finished.
    pub at: SystemTime,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen: `"200"`, `"timeout"`, `"connection refused"`, …
    pub detail: String,
}

/// Full weight in the slow-start ramp (per mille).
pub const RAMP_FULL: u32 = 1000;

/// One upstream server and its live figures; shared by every snapshot that contains it.
#[derive(Debug)]
pub struct Server {
    /// Process-unique id; keys the per-worker idle connection pools.
    pub id: u64,
    /// Name (default: the address as written).
    pub name: String,
    /// Address as written in the config.
    pub address: String,
    /// Resolved socket address.
    pub addr: SocketAddr,
    /// The address as a header-ready string, for the access log.
    pub addr_text: String,
    weight: AtomicU64,
    state: AtomicU8,
    health: AtomicU8,
    ejected: AtomicBool,
    /// Slow-start ramp in per mille of the full weight ([`RAMP_FULL`] when not ramping).
    ramp: AtomicU32,
    /// Added through the admin API and absent from the configuration file.
    pub runtime_added: AtomicBool,
    /// The weight was set through the admin API: a reload keeps it.
    pub weight_overridden: AtomicBool,
    /// Being removed through the admin API: drained, and gone from its pool once idle.
    pub removing: AtomicBool,
    /// Requests in flight now.
    pub in_flight: AtomicU64,
    /// Requests sent to this server since start.
    pub requests: AtomicU64,
    /// Failed attempts (connect errors, resets, timeouts) since start.
    pub failures: AtomicU64,
    /// Consecutive failed attempts or 5xx answers seen by the request path (passive ejection);
    /// reset by any good answer.
    pub consecutive_failures: AtomicU32,
    /// Changes of health or ejection, either way and for any cause, since start.
    pub health_changes: AtomicU64,
    /// Answers with a 5xx status for requests sent to this server, since start.
    pub responses_5xx: AtomicU64,
    /// Time from the request's arrival to the end of its response, for requests it answered.
    pub latency: Histogram,
    /// The last active health check; written by the checker, read by the admin side.
    pub last_check: Mutex<Option<CheckRecord>>,
    /// When an upstream failure of this server was last logged (milliseconds on the health
    /// module's clock, 0 = never): failure logs are rate-limited per server without a lock.
    pub failure_logged_at: AtomicU64,
    /// Upstream failures not logged since the last logged one (rate limit).
    pub failures_unlogged: AtomicU64,
}

static NEXT_SERVER_ID: AtomicU64 = AtomicU64::new(1);

impl Server {
    /// A new server in state `ready` with the given health (`Checking` in a pool with active
    /// checks, `Up` otherwise).
    pub fn new(name: String, address: String, addr: SocketAddr, weight: u32, health: Health) -> Server {
        Server {
            id: NEXT_SERVER_ID.fetch_add(1, Ordering::Relaxed),
            addr_text: addr.to_string(),
            name,
            address,
            addr,
            weight: AtomicU64::new(u64::from(weight)),
            state: AtomicU8::new(AdminState::Ready as u8),
            health: AtomicU8::new(health as u8),
            ejected: AtomicBool::new(false),
            ramp: AtomicU32::new(RAMP_FULL),
            runtime_added: AtomicBool::new(false),
            weight_overridden: AtomicBool::new(false),
            removing: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            health_changes: AtomicU64::new(0),
            responses_5xx: AtomicU64::new(0),
            latency: Histogram::default(),
            last_check: Mutex::new(None),
            failure_logged_at: AtomicU64::new(0),
            failures_unlogged: AtomicU64::new(0),
        }
    }

    /// Whether the server may take a new request: admin state `ready`, health `up`, not
    /// ejected. (`max_conns` and the request's own tried servers are the pick's business.)
    #[inline]
    pub fn serving(&self) -> bool {
        self.state.load(Ordering::Relaxed) == AdminState::Ready as u8
            && self.health.load(Ordering::Relaxed) == Health::Up as u8
            && !self.ejected.load(Ordering::Relaxed)
    }

    /// Health as the active checks see it.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Sets the health; returns the previous one.
    pub fn set_health(&self, h: Health) -> Health {
        Health::from_u8(self.health.swap(h as u8, Ordering::SeqCst))
    }

    /// Whether passive ejection holds the server out of rotation now.
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Ejects or readmits the server; returns the previous value.
    pub fn set_ejected(&self, ejected: bool) -> bool {
        self.ejected.swap(ejected, Ordering::SeqCst)
    }

    /// Slow-start ramp in per mille of full weight.
    pub fn ramp(&self) -> u32 {
        self.ramp.load(Ordering::Relaxed)
    }

    /// Sets the slow-start ramp (clamped to 1..=[`RAMP_FULL`]).
    pub fn set_ramp(&self, permille: u32) {
        self.ramp.store(permille.clamp(1, RAMP_FULL), Ordering::Relaxed);
    }

    /// The weight balancers use now: the weight scaled by the slow-start ramp, at least 1.
    pub fn effective_weight(&self) -> u32 {
        let w = u64::from(self.weight()) * u64::from(self.ramp()) / u64::from(RAMP_FULL);
        u32::try_from(w).unwrap_or(u32::MAX).max(1)
    }

    /// Sets the configured weight (rebuild the pool's balancer for it to apply).
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(u64::from(weight), Ordering::Relaxed);
    }

    /// Current admin state.
    pub fn admin_state(&self) -> AdminState {
        AdminState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Changes the admin state.
    pub fn set_admin_state(&self, s: AdminState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// Current weight.
    pub fn weight(&self) -> u32 {
        u32::try_from(self.weight.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
    }

    /// Whether health checks consider the server up.
    pub fn is_up(&self) -> bool {
        self.health() == Health::Up
    }
}

/// The members of a pool and the balancer built for exactly them.
#[derive(Debug)]
pub struct PoolMembers {
    /// Servers, in the balancer's index order.
    pub servers: Vec<Arc<Server>>,
    /// The balancer over `servers`.
    pub balancer: Balancer,
}

/// Settings of a pool that the request path reads.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Retries on a different server.
    pub retries: u32,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed until the response head.
    pub response_timeout: Duration,
    /// Per-server in-flight limit, 0 = none.
    pub max_conns: u64,
    /// What to hash for hashed pools.
    pub hash_key: Option<(HashKey, HashFunction)>,
    /// The algorithm, to rebuild the balancer when members change.
    pub algorithm: Algorithm,
    /// Active health checks, if the pool has them.
    pub health: Option<config::HealthConfig>,
    /// Passive ejection, if the pool has it.
    pub passive: Option<config::PassiveConfig>,
    /// Slow start: how long a server coming back ramps to its full weight.
    pub slow_start: Option<Duration>,
}

/// A pool: its settings and its current members, swapped atomically on change.
#[derive(Debug)]
pub struct Pool {
    /// Pool name.
    pub name: String,
    /// Settings.
    pub settings: PoolSettings,
    /// Current members.
    pub members: ArcSwap<PoolMembers>,
}

impl Pool {
    /// Builds the balancer for `servers` and swaps it in. Callers serialise changes of one pool
    /// (see `Shared::changes`); the request path only reads.
    pub fn set_members(&self, servers: Vec<Arc<Server>>) {
        self.members
            .store(Arc::new(build_members(&self.settings.algorithm, servers)));
    }

    /// Rebuilds the balancer over the same servers, for changed weights or ramps.
    pub fn rebuild(&self) {
        let servers = self.members.load().servers.clone();
        self.set_members(servers);
    }

    /// Whether the balancer reads weights as ramped by slow start. Hashed pools do not: a ramp
    /// would move keys back and forth (HAProxy's `slowstart` skips static algorithms likewise).
    pub fn ramps_weights(&self) -> bool {
        ramps_weights(&self.settings.algorithm)
    }
}

fn ramps_weights(algorithm: &Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::RoundRobin | Algorithm::LeastRequests | Algorithm::RandomTwo
    )
}

fn build_members(algorithm: &Algorithm, servers: Vec<Arc<Server>>) -> PoolMembers {
    // Weights are small integers (often all 1), so a ramp is applied to scaled weights.
    let weights = if ramps_weights(algorithm) {
        crate::health::ramp::balancer_weights(servers.iter().map(|s| (s.weight(), s.ramp())))
    } else {
        servers.iter().map(|s| s.weight().max(1)).collect()
    };
    let members: Vec<Member> = servers
        .iter()
        .zip(weights)
        .map(|(s, weight)| Member {
            name: s.name.clone(),
            weight,
        })
        .collect();
    PoolMembers {
        balancer: Balancer::new(algorithm, &members),
        servers,
    }
}

/// The eligibility and load view a balancer reads during one pick.
pub struct PickView<'a> {
    /// The pool's members.
    pub servers: &'a [Arc<Server>],
    /// Per-server limit of in-flight requests, 0 = none.
    pub max_conns: u64,
    /// Servers already tried for this request.
    pub tried: &'a Tried,
}

impl ServerLoads for PickView<'_> {
    fn eligible(&self, index: usize) -> bool {
        let Some(s) = self.servers.get(index) else {
            return false;
        };
        s.serving()
            && (self.max_conns == 0 || s.in_flight.load(Ordering::Relaxed) < self.max_conns)
            && !self.tried.contains(s.id)
    }

    fn in_flight(&self, index: usize) -> u64 {
        self.servers
            .get(index)
            .map_or(0, |s| s.in_flight.load(Ordering::Relaxed))
    }
}

/// The servers already tried by one request (at most 11 attempts: retries are capped at 10).
///
/// Sized to the cap (and the count a byte): it lives in every forwarded request's boxed
/// future, which is kept within mimalloc's 1 KiB small-block limit.
#[derive(Debug, Default)]
pub struct Tried {
    ids: [u64; 11],
    len: u8,
}

impl Tried {
    /// Whether the server with this id was tried.
    pub fn contains(&self, id: u64) -> bool {
        self.ids[..self.len()].contains(&id)
    }

    /// Records a tried server.
    pub fn insert(&mut self, id: u64) {
        let len = self.len();
        if len < self.ids.len() && !self.contains(id) {
            self.ids[len] = id;
            self.len += 1;
        }
    }

    /// How many servers were tried.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether no server was tried.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a matched route does, ready for the request path.
#[derive(Debug)]
pub enum RouteTarget {
    /// Forward to a pool.
    Forward {
        /// The pool.
        pool: Arc<Pool>,
        /// The prefix to remove, if `strip_prefix`.
        strip: Option<String>,
    },
    /// Answer with a redirect.
    Redirect {
        /// `Location` value.
        location: HeaderValue,
        /// Status code.
        status: http::StatusCode,
    },
    /// Serve files from a directory.
    Static {
        /// The directory.
        dir: std::path::PathBuf,
    },
}

/// A route as the request path sees it.
#[derive(Debug)]
pub struct Route {
    /// Route name (access log, metrics).
    pub name: String,
    /// The route's path prefix.
    pub prefix: String,
    /// What it does.
    pub target: RouteTarget,
    /// Its live figures (kept across reloads while its name and pool stay).
    pub stats: Arc<RouteStats>,
}

/// One immutable view of the configuration for the request path.
#[derive(Debug)]
pub struct Snapshot {
    /// The configuration it was built from.
    pub config: Arc<Config>,
    /// Route matching.
    pub table: RouteTable,
    /// Routes, by the indices the table returns.
    pub routes: Vec<Route>,
    /// Pools by name.
    pub pools: HashMap<String, Arc<Pool>>,
    /// Figures of requests answered before any route matched (route "" in metrics).
    pub unrouted: Arc<RouteStats>,
}

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
            // Servers added at run time survive a reload of a file that does not list them.
            for o in old_servers {
                if o.runtime_added.load(Ordering::Relaxed) && !servers.iter().any(|s| s.name == o.name) {
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
            if servers.is_empty() {
                // Discovery may fill the pool later; until then it answers 503.
                continue;
            }
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
                RouteAction::Static { dir } => RouteTarget::Static { dir: dir.clone() },
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
            routes.push(Route {
                name: r.name.clone(),
                prefix: r.path.clone(),
                target,
                stats,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
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
/// in plaintext, a PROXY header read as a request, a maintenance page never shown); the engine
/// refuses them. Warnings are settings whose absence only removes a safety net.
pub fn unsupported(config: &Config) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    // Nothing is only warned about today (health checks and passive ejection, once warned
    // about, now run); the list stays for the next setting whose runtime comes later.
    let warnings = Vec::new();
    for l in &config.listeners {
        if l.tls.is_some() {
            errors.push(format!(
                "listener `{}`: TLS is not supported by this version yet",
                l.name
            ));
        }
        if l.proxy_protocol {
            errors.push(format!(
                "listener `{}`: proxy_protocol is not supported by this version yet",
                l.name
            ));
        }
    }
    for r in &config.routes {
        if let Some(m) = &r.maintenance
            && (m.enabled || !m.windows.is_empty())
        {
            errors.push(format!(
                "route `{}`: maintenance is not supported by this version yet",
                r.name
            ));
        }
    }
    for p in &config.pools {
        if p.discover.is_some() {
            errors.push(format!(
                "pool `{}`: DNS discovery is not supported by this version yet",
                p.name
            ));
        }
    }
    (errors, warnings)
}

/// Picks a server of `pool` for a request, skipping those tried already.
pub fn pick_server(
    members: &PoolMembers,
    settings: &PoolSettings,
    key_hash: Option<u64>,
    tried: &Tried,
) -> Option<Arc<Server>> {
    let view = PickView {
        servers: &members.servers,
        max_conns: settings.max_conns,
        tried,
    };
    let input = balance::PickInput {
        key_hash,
        random: fastrand::u64(..),
    };
    members
        .balancer
        .pick(input, &view)
        .and_then(|i| members.servers.get(i).cloned())
}
