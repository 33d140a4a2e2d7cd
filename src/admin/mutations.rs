//! Changes of a pool's servers through the API: PATCH (state, weight), POST (add), DELETE
//! (drain, then remove once idle).
//!
//! Owns: validating a change whole before applying any of it, and applying it under
//! `Shared::changes` (a deleted server is drained and removed once idle by
//! `proxy::state::drain_then_remove`, which DNS discovery uses too).
//! Must not touch: the request path (servers' atomics and pool member swaps are its only
//! interface), the configuration file.

use std::sync::atomic::{Ordering, fence};
use std::sync::{Arc, MutexGuard, PoisonError};

use http::{HeaderValue, Request, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;

use super::http::{ApiError, Resp, json_ok, read_json};
use super::{Admin, fleet, views};
use crate::balance::{MAX_WEIGHT, MIN_WEIGHT};
use crate::cluster::keys::{Key, ServerValue};
use crate::proxy::Engine;
use crate::proxy::state::{AdminState, Health, Pool, Server, Snapshot, drain_then_remove, resolve};

/// `PATCH …/servers/{server}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    state: Option<String>,
    weight: Option<i64>,
}

/// `POST …/servers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewServer {
    address: String,
    weight: Option<i64>,
    name: Option<String>,
}

fn changes(engine: &Engine) -> MutexGuard<'_, ()> {
    engine
        .shared
        .changes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The pool named `name` of the current snapshot.
pub fn find_pool(snapshot: &Snapshot, name: &str) -> Result<Arc<Pool>, ApiError> {
    snapshot.pools.get(name).cloned().ok_or_else(|| {
        let mut names: Vec<&str> = snapshot.pools.keys().map(String::as_str).collect();
        names.sort_unstable();
        ApiError::not_found(format!("no pool `{name}` (pools: {})", names.join(", ")))
    })
}

/// The server named `name` of `pool`.
pub fn find_server(pool: &Pool, name: &str) -> Result<Arc<Server>, ApiError> {
    pool.members
        .load()
        .servers
        .iter()
        .find(|s| s.name == name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("pool `{}` has no server `{name}`", pool.name)))
}

fn check_weight(w: i64) -> Result<u32, ApiError> {
    u32::try_from(w)
        .ok()
        .filter(|w| (MIN_WEIGHT..=MAX_WEIGHT).contains(w))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "weight must be between {MIN_WEIGHT} and {MAX_WEIGHT}, not {w}"
            ))
        })
}

fn check_state(s: &str) -> Result<AdminState, ApiError> {
    AdminState::parse(s).ok_or_else(|| {
        ApiError::invalid(format!(
            "state must be \"ready\", \"drain\" or \"maint\", not {s:?}"
        ))
    })
}

/// The pool and server a PATCH changes: both exist and the server is not on its way out.
fn changeable(snapshot: &Snapshot, pool: &str, name: &str) -> Result<(Arc<Pool>, Arc<Server>), ApiError> {
    let pool = find_pool(snapshot, pool)?;
    let server = find_server(&pool, name)?;
    if server.removing.load(Ordering::Relaxed) {
        return Err(ApiError::conflict(format!(
            "server `{name}` is being removed; it cannot be changed"
        )));
    }
    Ok((pool, server))
}

/// PATCH: `state` and/or `weight`, both checked before either applies.
pub async fn patch(req: Request<Incoming>, admin: &Admin, pool: &str, name: &str) -> Result<Resp, ApiError> {
    let body: Patch = read_json(req).await?;
    let state = body.state.as_deref().map(check_state).transpose()?;
    let weight = body.weight.map(check_weight).transpose()?;
    if state.is_none() && weight.is_none() {
        return Err(ApiError::invalid(
            "nothing to change: give \"state\" and/or \"weight\"",
        ));
    }
    let engine = &admin.engine;
    if let Some(cluster) = engine.cluster.get() {
        let (pool, server) = changeable(&engine.shared.snapshot.load(), pool, name)?;
        let key = Key::Server {
            pool: pool.name.clone(),
            server: name.to_string(),
        };
        let (current, expected) = cluster.current::<ServerValue>(&key);
        let mut value = current.unwrap_or_default();
        value.removed = false;
        if let Some(state) = state {
            value.state = Some(state.as_str().to_string());
        }
        if let Some(weight) = weight {
            value.weight = Some(weight);
        }
        fleet::change(cluster, &key, &value, expected).await?;
        return Ok(json_ok(StatusCode::OK, &views::server(&server, &admin.sampler)));
    }
    let _changes = changes(engine);
    let (pool, server) = changeable(&engine.shared.snapshot.load(), pool, name)?;
    if let Some(state) = state {
        let before = server.admin_state();
        server.set_admin_state(state);
        if before != state {
            tracing::info!(
                "pool `{}`: server `{name}` {} -> {} (admin API)",
                pool.name,
                before.as_str(),
                state.as_str()
            );
        }
    }
    if let Some(weight) = weight {
        server.set_weight(weight);
        server.weight_overridden.store(true, Ordering::Relaxed);
        pool.rebuild();
        tracing::info!(
            "pool `{}`: server `{name}` weight {weight} (admin API)",
            pool.name
        );
    }
    // Picks on every worker see the new state once this call has answered.
    fence(Ordering::SeqCst);
    Ok(json_ok(StatusCode::OK, &views::server(&server, &admin.sampler)))
}

/// POST: adds a server (checking first if the pool has health checks); 201 with `Location`.
pub async fn add(req: Request<Incoming>, admin: &Admin, pool_name: &str) -> Result<Resp, ApiError> {
    let body: NewServer = read_json(req).await?;
    // A request for a pool that does not exist is a 404 before its values are judged.
    find_pool(&admin.engine.shared.snapshot.load(), pool_name)?;
    crate::config::host_port(&body.address).map_err(ApiError::invalid)?;
    let weight = body.weight.map_or(Ok(1), check_weight)?;
    let name = body.name.unwrap_or_else(|| body.address.clone());
    if !crate::config::is_valid_name(&name) {
        return Err(ApiError::invalid(format!(
            "server name {name:?} must be non-empty, at most 128 characters, without `/`, spaces or control characters"
        )));
    }
    // Name resolution may block: off the admin's event loop.
    let address = body.address.clone();
    let addr = tokio::task::spawn_blocking(move || resolve(&address))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("resolver task failed: {e}"),
            )
        })?
        .map_err(ApiError::invalid)?;
    let engine = &admin.engine;
    if let Some(cluster) = engine.cluster.get() {
        let pool = find_pool(&engine.shared.snapshot.load(), pool_name)?;
        unique(&pool, &name, &body.address, addr)?;
        let key = Key::Server {
            pool: pool_name.to_string(),
            server: name.clone(),
        };
        let (_, expected) = cluster.current::<ServerValue>(&key);
        let value = ServerValue {
            address: Some(body.address.clone()),
            weight: Some(weight),
            ..ServerValue::default()
        };
        fleet::change(cluster, &key, &value, expected).await?;
        let pool = find_pool(&engine.shared.snapshot.load(), pool_name)?;
        let server = find_server(&pool, &name)?;
        return Ok(created(pool_name, &server, admin));
    }
    let _changes = changes(engine);
    let snapshot = engine.shared.snapshot.load();
    let pool = find_pool(&snapshot, pool_name)?;
    unique(&pool, &name, &body.address, addr)?;
    let members = pool.members.load();
    let health = if pool.settings.health.is_some() {
        Health::Checking
    } else {
        Health::Up
    };
    let server = Arc::new(Server::new(name.clone(), body.address, addr, weight, health));
    server.runtime_added.store(true, Ordering::Relaxed);
    let mut servers = members.servers.clone();
    servers.push(server.clone());
    pool.set_members(servers);
    tracing::info!(
        "pool `{pool_name}`: server `{name}` ({}) added, {} (admin API)",
        server.address,
        health.as_str()
    );
    Ok(created(pool_name, &server, admin))
}

/// A new server's name and address are not the pool's already.
fn unique(pool: &Pool, name: &str, address: &str, addr: std::net::SocketAddr) -> Result<(), ApiError> {
    let members = pool.members.load();
    if let Some(s) = members.servers.iter().find(|s| s.name == name) {
        return Err(ApiError::conflict(format!(
            "pool `{}` already has a server named `{}` ({})",
            pool.name, s.name, s.address
        )));
    }
    if let Some(s) = members
        .servers
        .iter()
        .find(|s| s.address == address || s.addr == addr)
    {
        return Err(ApiError::conflict(format!(
            "pool `{}` already has server `{}` at {} ({})",
            pool.name, s.name, s.address, s.addr
        )));
    }
    Ok(())
}

/// 201 with the server and its `Location`.
fn created(pool_name: &str, server: &Server, admin: &Admin) -> Resp {
    let mut resp = json_ok(StatusCode::CREATED, &views::server(server, &admin.sampler));
    if let Ok(v) = HeaderValue::from_str(&server_path(pool_name, &server.name)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The API path of a server, its names percent-encoded as path segments.
pub fn server_path(pool: &str, server: &str) -> String {
    format!(
        "/api/v1/pools/{}/servers/{}",
        crate::cluster::keys::segment(pool),
        crate::cluster::keys::segment(server)
    )
}

/// DELETE: drains the server now, answers 202, and removes it from its pool once its last
/// request has ended.
pub async fn delete(admin: &Admin, pool_name: &str, name: &str) -> Result<Resp, ApiError> {
    let engine = &admin.engine;
    if let Some(cluster) = engine.cluster.get() {
        let pool = find_pool(&engine.shared.snapshot.load(), pool_name)?;
        let server = find_server(&pool, name)?;
        if pool.others_than(name) == 0 {
            return Err(ApiError::conflict(format!(
                "`{name}` is the last server of pool `{pool_name}`; in cluster mode a pool is never emptied"
            )));
        }
        let key = Key::Server {
            pool: pool_name.to_string(),
            server: name.to_string(),
        };
        let (current, expected) = cluster.current::<ServerValue>(&key);
        let value = ServerValue {
            removed: true,
            ..current.unwrap_or_default()
        };
        fleet::change(cluster, &key, &value, expected).await?;
        return Ok(json_ok(
            StatusCode::ACCEPTED,
            &views::server(&server, &admin.sampler),
        ));
    }
    let _changes = changes(engine);
    let snapshot = engine.shared.snapshot.load();
    let pool = find_pool(&snapshot, pool_name)?;
    let server = find_server(&pool, name)?;
    drain_then_remove(&engine.shared, pool_name, &server, "admin API");
    Ok(json_ok(
        StatusCode::ACCEPTED,
        &views::server(&server, &admin.sampler),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_and_states_are_checked() {
        assert_eq!(check_weight(1).ok(), Some(1));
        assert_eq!(check_weight(256).ok(), Some(256));
        for bad in [0, 257, -1, i64::MAX] {
            assert_eq!(
                check_weight(bad).map_err(|e| e.status).err(),
                Some(StatusCode::UNPROCESSABLE_ENTITY)
            );
        }
        assert_eq!(check_state("drain").ok(), Some(AdminState::Drain));
        assert!(check_state("off").is_err());
    }

    #[test]
    fn server_paths_are_encoded() {
        assert_eq!(
            server_path("api", "127.0.0.1:9005"),
            "/api/v1/pools/api/servers/127.0.0.1:9005"
        );
        assert_eq!(server_path("a b", "x?y"), "/api/v1/pools/a%20b/servers/x%3Fy");
    }
}
