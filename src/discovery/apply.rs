//! Applying an answer to a pool: servers join, vanished ones drain and leave once idle, SRV
//! weights change.
//!
//! Owns: building the new member list under `Shared::changes` from the snapshot current then,
//! as the admin API's POST does, and handing vanished servers to `drain_then_remove`, as its
//! DELETE does. Must not touch: DNS (the caller resolved), the decisions (`plan::changes`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::plan::{self, Endpoint, Member};
use crate::proxy::server::Shared;
use crate::proxy::state::{Health, Server, drain_then_remove};

/// Who changes the pool, for the log.
const BY: &str = "DNS discovery";

/// Joins logged a line each; more at once (a fleet found at start) are logged in one line.
const LOGGED_ONE_BY_ONE: usize = 8;

/// Makes the discovered servers of pool `pool_name` those of `found`; returns the changes
/// made, or `None` when the pool is not in the current snapshot (removed by a reload).
pub fn apply(shared: &Arc<Shared>, pool_name: &str, found: &[Endpoint]) -> Option<plan::Changes> {
    let _changes = shared
        .changes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let snapshot = shared.snapshot.load();
    let pool = snapshot.pools.get(pool_name)?;
    let members = pool.members.load();
    let view: Vec<Member<'_>> = members
        .servers
        .iter()
        .map(|s| Member {
            name: &s.name,
            addr: s.addr,
            weight: s.weight(),
            discovered: s.discovered.load(Ordering::Relaxed),
            removing: s.removing.load(Ordering::Relaxed),
            weight_pinned: s.weight_overridden.load(Ordering::Relaxed),
        })
        .collect();
    let changes = plan::changes(found, &view);
    if changes.is_empty() {
        return Some(changes);
    }
    for &(i, weight) in &changes.reweigh {
        if let Some(s) = members.servers.get(i) {
            tracing::info!(
                "pool `{pool_name}`: server `{}` weight {} -> {weight} ({BY})",
                s.name,
                s.weight()
            );
            s.set_weight(weight);
        }
    }
    let health = if pool.settings.health.is_some() {
        Health::Checking
    } else {
        Health::Up
    };
    if !changes.join.is_empty() || !changes.reweigh.is_empty() {
        let mut servers = members.servers.clone();
        let one_by_one = changes.join.len() <= LOGGED_ONE_BY_ONE;
        for e in &changes.join {
            let name = plan::endpoint_name(e.addr);
            let server = Arc::new(Server::new(name.clone(), name, e.addr, e.weight, health));
            server.discovered.store(true, Ordering::Relaxed);
            if one_by_one {
                tracing::info!(
                    "pool `{pool_name}`: server `{}` joined, weight {}, {} ({BY})",
                    server.name,
                    e.weight,
                    health.as_str()
                );
            }
            servers.push(server);
        }
        if !one_by_one {
            let first: Vec<String> = changes
                .join
                .iter()
                .take(LOGGED_ONE_BY_ONE)
                .map(|e| plan::endpoint_name(e.addr))
                .collect();
            tracing::info!(
                "pool `{pool_name}`: {} servers joined, {} ({BY}): {}, …",
                changes.join.len(),
                health.as_str(),
                first.join(", ")
            );
        }
        pool.set_members(servers);
    }
    for &i in &changes.leave {
        if let Some(s) = members.servers.get(i) {
            drain_then_remove(shared, pool_name, s, BY);
        }
    }
    Some(changes)
}

/// How many discovered servers pool `pool_name` holds now (draining ones included).
pub fn discovered_count(shared: &Shared, pool_name: &str) -> usize {
    let snapshot = shared.snapshot.load();
    snapshot.pools.get(pool_name).map_or(0, |pool| {
        pool.members
            .load()
            .servers
            .iter()
            .filter(|s| s.discovered.load(Ordering::Relaxed))
            .count()
    })
}
