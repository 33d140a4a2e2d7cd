//! Taking a server out of its pool without failing a request: drain it now, remove it once its
//! last request has ended. The admin API's DELETE and DNS discovery both go through here.
//!
//! Owns: marking a server `removing`, the task that waits for it to be idle, and its removal
//! from the pool of the snapshot current then. Must not touch: the request path (the server's
//! atomics and the pool's member swap are its only interface).

use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use super::{AdminState, Server};
use crate::proxy::server::Shared;

/// How often a removed server's in-flight count is looked at.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Drains `server` of pool `pool` and spawns (on the current tokio runtime) the task that
/// removes it once idle; `by` names who asked, for the log (`"admin API"`, `"DNS discovery"`).
/// Returns `false`, changing nothing, if it is being removed already.
///
/// Call it holding `Shared::changes`, as every change of a pool's members is made.
pub fn drain_then_remove(shared: &Arc<Shared>, pool: &str, server: &Arc<Server>, by: &'static str) -> bool {
    if server.removing.swap(true, Ordering::SeqCst) {
        return false;
    }
    server.set_admin_state(AdminState::Drain);
    // Picks on every worker see the drain once the caller goes on.
    fence(Ordering::SeqCst);
    tracing::info!(
        "pool `{pool}`: server `{}` ({}) draining, to be removed once idle ({by})",
        server.name,
        server.address
    );
    tokio::spawn(remove_when_idle(
        shared.clone(),
        pool.to_owned(),
        server.clone(),
        by,
    ));
    true
}

/// Waits (no deadline: a long download may take hours) until `server` has nothing in flight,
/// then takes it out of the current snapshot's pool.
async fn remove_when_idle(shared: Arc<Shared>, pool_name: String, server: Arc<Server>, by: &'static str) {
    let mut every = tokio::time::interval(IDLE_POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if server.in_flight.load(Ordering::SeqCst) == 0 {
            break;
        }
    }
    let _changes = shared
        .changes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let snapshot = shared.snapshot.load();
    let Some(pool) = snapshot.pools.get(&pool_name) else {
        tracing::info!(
            "server `{}` removed: its pool `{pool_name}` is gone already",
            server.name
        );
        return;
    };
    let servers: Vec<Arc<Server>> = pool
        .members
        .load()
        .servers
        .iter()
        .filter(|s| !Arc::ptr_eq(s, &server))
        .cloned()
        .collect();
    pool.set_members(servers);
    tracing::info!(
        "pool `{pool_name}`: server `{}` ({}) removed after its last request ({by})",
        server.name,
        server.address
    );
}
