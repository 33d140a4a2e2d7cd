//! Runtime state: one immutable snapshot of routes and pools, swapped whole on reload.
//!
//! Owns: the structures the request path reads (pools, their members and balancers, routes, the
//! pick), built from a validated [`Config`] by `build.rs`, with each server's live state in
//! `server.rs`. Pools and servers are shared by identity between snapshots, so connections that
//! keep an older snapshot still see state changes (drain, weight) made later.
//! Must not touch: sockets (addresses are resolved once, off the request path).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::balance::{self, Algorithm, Balancer, HashFunction, HashKey, LoadIndex, Member, ServerLoads};
use crate::config::{self, Config};
use crate::route::RouteTable;

use super::stats::RouteStats;

mod build;
mod maintenance;
mod removal;
mod server;

pub use build::{resolve, unsupported};
pub use maintenance::{Active, MAX_PAGE_BYTES, Maintenance, SwitchState};
pub use removal::drain_then_remove;
pub use server::{AdminState, CheckRecord, Health, RAMP_FULL, Server};

/// The members of a pool and the balancer built for exactly them.
#[derive(Debug)]
pub struct PoolMembers {
    /// Servers, in the balancer's index order.
    pub servers: Vec<Arc<Server>>,
    /// The balancer over `servers`.
    pub balancer: Balancer,
}

impl PoolMembers {
    /// Points every server's load reports at this balancer's load index (or at none), then
    /// reads every server's figures into the index; call it before the member list is read by
    /// the request path. Changes reported to the previous index meanwhile are caught by that
    /// read: a change made after it is reported here.
    pub fn attach(&self) {
        let index = self.balancer.load_index();
        for (member, server) in self.servers.iter().enumerate() {
            server.attach(index.map(|index| (index.clone(), member)));
        }
        if let Some(index) = index {
            index.refresh_all(|member| self.servers.get(member).map_or((0, false), |s| s.load_figures()));
        }
    }
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
    /// HTTP/1.1, h2 over TLS or h2c towards the servers.
    pub protocol: config::UpstreamProtocol,
    /// TLS towards the servers, if the pool has `tls`.
    pub tls: Option<Arc<super::upstream_tls::TlsClient>>,
    /// The PROXY header version sent first on each connection, if `send_proxy`.
    pub send_proxy: Option<config::ProxyVersion>,
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
    /// How many servers other than `name` the pool keeps (those being removed do not count): a
    /// removal that would leave none is refused in cluster mode.
    pub fn others_than(&self, name: &str) -> usize {
        self.members
            .load()
            .servers
            .iter()
            .filter(|s| s.name != name && !s.removing.load(std::sync::atomic::Ordering::Relaxed))
            .count()
    }

    /// Builds the balancer for `servers` and swaps it in. Callers serialise changes of one pool
    /// (see `Shared::changes`); the request path only reads.
    pub fn set_members(&self, servers: Vec<Arc<Server>>) {
        let members = build_members(&self.settings.algorithm, servers);
        members.attach();
        self.members.store(Arc::new(members));
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
    /// The balancer's load index, kept current by the servers' reports (`PoolMembers::attach`).
    pub index: Option<&'a LoadIndex>,
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

    /// The index's sums: over the servers serving (ready, up, not ejected), so they still count
    /// the servers this request tried and those at `max_conns` (a slightly looser bound).
    fn eligible_totals(&self) -> Option<(u64, usize)> {
        self.index.map(LoadIndex::totals)
    }

    fn indexed(&self) -> bool {
        self.index.is_some()
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
        /// The directory, opened at load.
        site: Arc<super::static_files::Site>,
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
    /// Requests whose path holds an encoded slash (`%2F`) are answered 400.
    pub reject_encoded_slash: bool,
    /// Its live figures (kept across reloads while its name and pool stay).
    pub stats: Arc<RouteStats>,
    /// Its maintenance, if it has a `[route.maintenance]` table.
    pub maintenance: Option<Box<Maintenance>>,
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
        index: members.balancer.load_index().map(|i| &**i),
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

#[cfg(test)]
mod tests;
