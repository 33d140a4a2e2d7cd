//! A server of a pool and its live state: admin state, health, ejection, slow-start ramp and
//! counters, all atomics shared by every snapshot that contains the server.
//!
//! Owns: the per-server state the request path reads (`Server::serving`) and the health, admin
//! and metrics sides write, and the reports of its in-flight count and standing to the load
//! index of the balancer it is a member of (`request_started`, `request_ended`, the setters).
//! Must not touch: pools, balancers (beyond reporting to the index it is attached to) or sockets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;

use crate::balance::LoadIndex;
use crate::proxy::stats::Histogram;

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
    /// Found by DNS discovery (and so taken out by it when DNS no longer names it); a reload
    /// keeps it while its pool still has `discover`.
    pub discovered: AtomicBool,
    /// The weight was set through the admin API: a reload keeps it.
    pub weight_overridden: AtomicBool,
    /// Being removed through the admin API: drained, and gone from its pool once idle.
    pub removing: AtomicBool,
    /// Requests in flight now; changed only by [`Server::request_started`] and
    /// [`Server::request_ended`], which report the change to the pool's load index.
    pub in_flight: AtomicU64,
    /// Where changes of `in_flight` and of standing are reported: the load index of the
    /// balancer of the member list that holds the server now, and its member index there.
    load_slot: ArcSwapOption<LoadSlot>,
    /// Whether `load_slot` holds a slot: one plain load spares the servers of pools without a
    /// load index the slot's look-up on every request.
    reporting: AtomicBool,
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

/// A server's place in a load index.
#[derive(Debug)]
struct LoadSlot {
    index: Arc<LoadIndex>,
    member: usize,
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
            discovered: AtomicBool::new(false),
            weight_overridden: AtomicBool::new(false),
            removing: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
            load_slot: ArcSwapOption::empty(),
            reporting: AtomicBool::new(false),
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

    /// Counts a request sent to the server (in flight, and in its total) and reports it.
    #[inline]
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.report_load();
    }

    /// Ends the in-flight count of a request started with [`Server::request_started`].
    #[inline]
    pub fn request_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.report_load();
    }

    /// Makes the server report its load to `slot` (`(index, member index)`) from now on, or
    /// to nothing. The caller then reads every member's figures into the index
    /// ([`LoadIndex::refresh_all`]), which catches the changes reported to the previous one.
    pub(crate) fn attach(&self, slot: Option<(Arc<LoadIndex>, usize)>) {
        // A request that still sees `reporting` false changed its count before this store, so
        // the caller's read of every figure afterwards includes it.
        let reporting = slot.is_some();
        self.load_slot
            .store(slot.map(|(index, member)| Arc::new(LoadSlot { index, member })));
        self.reporting.store(reporting, Ordering::SeqCst);
    }

    /// `(in-flight, stands in rotation)` as a load index wants them.
    pub(crate) fn load_figures(&self) -> (u64, bool) {
        (self.in_flight.load(Ordering::SeqCst), self.serving())
    }

    /// Brings the attached load index up to date with this server's figures.
    #[inline]
    fn report_load(&self) {
        if !self.reporting.load(Ordering::SeqCst) {
            return;
        }
        let slot = self.load_slot.load();
        if let Some(slot) = slot.as_deref() {
            slot.index.refresh(slot.member, || self.load_figures());
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
        let before = Health::from_u8(self.health.swap(h as u8, Ordering::SeqCst));
        self.report_load();
        before
    }

    /// Whether passive ejection holds the server out of rotation now.
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Ejects or readmits the server; returns the previous value.
    pub fn set_ejected(&self, ejected: bool) -> bool {
        let before = self.ejected.swap(ejected, Ordering::SeqCst);
        self.report_load();
        before
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
        self.state.store(s as u8, Ordering::SeqCst);
        self.report_load();
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
