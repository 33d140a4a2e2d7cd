//! DNS discovery: pools whose servers come from DNS (`discover = { dns = … }`), as Docker's DNS,
//! Kubernetes headless services and Consul publish a fleet.
//!
//! Owns: the thread "ringway-discovery" and its tasks, one per discovering pool
//! ([`supervisor`]); asking DNS ([`resolve`], hickory); turning answers into changes of a pool
//! ([`plan`], pure); applying them ([`apply`]) through the same member swaps and the same
//! drain-then-remove as the admin API; and what the admin side shows of it ([`Reports`]).
//! Must not touch: the request path (it sees only new member lists), health checks (a server
//! that joins a pool with `health` is `checking`, and the health thread brings it in).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::proxy::server::Shared;

pub mod apply;
pub mod plan;
pub mod resolve;
pub mod supervisor;

/// Starts the discovery thread; it follows the snapshot, so reloads start and stop its tasks.
pub fn start(shared: Arc<Shared>) -> std::io::Result<()> {
    supervisor::start(shared)
}

/// How discovery of one pool is going, for the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// When DNS last gave servers.
    pub last_answer: Option<SystemTime>,
    /// Distinct servers in that answer (before the cap).
    pub answered: usize,
    /// Servers the last answer gave the pool (after the cap).
    pub used: usize,
    /// When the outage going on began, if one is.
    pub failing_since: Option<SystemTime>,
    /// What the last failure said.
    pub last_error: Option<String>,
}

/// The reports of every discovering pool, by pool name; written by the discovery thread, read
/// by the admin side.
#[derive(Debug, Default)]
pub struct Reports(Mutex<HashMap<String, Report>>);

impl Reports {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Report>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The report of pool `pool`, if it discovers.
    pub fn of(&self, pool: &str) -> Option<Report> {
        self.lock().get(pool).cloned()
    }

    /// Changes the report of `pool` (creating it).
    pub(crate) fn update(&self, pool: &str, change: impl FnOnce(&mut Report)) {
        let mut all = self.lock();
        change(all.entry(pool.to_string()).or_default());
    }

    /// Keeps only the reports of the pools named by `keep`.
    pub(crate) fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.lock().retain(|name, _| keep(name));
    }
}
