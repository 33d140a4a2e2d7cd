//! Runtime state: one immutable snapshot of routes and pools, swapped whole on reload.
//!
//! Owns: turning a validated [`Config`] into the structures the request path reads, and the live
//! per-server counters (atomics). Pools and servers are shared by identity between snapshots, so
//! connections that keep an older snapshot still see state changes (drain, weight) made later.
//! Must not touch: sockets (addresses are resolved here, once, off the request path).

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::balance::{self, Algorithm, Balancer, HashFunction, HashKey, Member, ServerLoads};
use crate::config::{self, Config, HostPattern, RouteAction};
use crate::route::{HostMatch, RouteKey, RouteTable};

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
}

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
    up: AtomicBool,
    /// Requests in flight now.
    pub in_flight: AtomicU64,
    /// Requests sent to this server since start.
    pub requests: AtomicU64,
    /// Failed attempts (connect errors, resets, timeouts) since start.
    pub failures: AtomicU64,
}

static NEXT_SERVER_ID: AtomicU64 = AtomicU64::new(1);

impl Server {
    /// A new server in state `ready`, considered up until health checks say otherwise.
    pub fn new(name: String, address: String, addr: SocketAddr, weight: u32) -> Server {
        Server {
            id: NEXT_SERVER_ID.fetch_add(1, Ordering::Relaxed),
            addr_text: addr.to_string(),
            name,
            address,
            addr,
            weight: AtomicU64::new(u64::from(weight)),
            state: AtomicU8::new(AdminState::Ready as u8),
            up: AtomicBool::new(true),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
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
        self.up.load(Ordering::Relaxed)
    }

    /// Marks the server up or down.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
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
    /// Builds the balancer for `servers` and swaps it in.
    pub fn set_members(&self, servers: Vec<Arc<Server>>) {
        self.members
            .store(Arc::new(build_members(&self.settings.algorithm, servers)));
    }
}

fn build_members(algorithm: &Algorithm, servers: Vec<Arc<Server>>) -> PoolMembers {
    let members: Vec<Member> = servers
        .iter()
        .map(|s| Member {
            name: s.name.clone(),
            weight: s.weight().max(1),
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
        s.admin_state() == AdminState::Ready
            && s.is_up()
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
#[derive(Debug, Default)]
pub struct Tried {
    ids: [u64; 12],
    len: usize,
}

impl Tried {
    /// Whether the server with this id was tried.
    pub fn contains(&self, id: u64) -> bool {
        self.ids[..self.len].contains(&id)
    }

    /// Records a tried server.
    pub fn insert(&mut self, id: u64) {
        if self.len < self.ids.len() && !self.contains(id) {
            self.ids[self.len] = id;
            self.len += 1;
        }
    }

    /// How many servers were tried.
    pub fn len(&self) -> usize {
        self.len
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
            };
            let old = previous.and_then(|s| s.pools.get(&p.name));
            let mut servers = Vec::with_capacity(p.servers.len());
            for s in &p.servers {
                let kept = old.and_then(|pool| {
                    pool.members
                        .load()
                        .servers
                        .iter()
                        .find(|o| o.name == s.name && o.address == s.address)
                        .cloned()
                });
                match kept {
                    Some(server) => {
                        server.weight.store(u64::from(s.weight), Ordering::Relaxed);
                        servers.push(server);
                    }
                    None => match resolve(&s.address) {
                        Ok(addr) => servers.push(Arc::new(Server::new(
                            s.name.clone(),
                            s.address.clone(),
                            addr,
                            s.weight,
                        ))),
                        Err(e) => errors.push(format!("pool `{}`: {e}", p.name)),
                    },
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
            routes.push(Route {
                name: r.name.clone(),
                prefix: r.path.clone(),
                target,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Snapshot {
            table: RouteTable::new(&keys),
            routes,
            pools,
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
    let mut warnings = Vec::new();
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
        if p.health.is_some() {
            warnings.push(format!(
                "pool `{}`: active health checks are not run by this version yet; servers count as up",
                p.name
            ));
        }
        if p.passive.is_some() {
            warnings.push(format!(
                "pool `{}`: passive ejection is not done by this version yet",
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
