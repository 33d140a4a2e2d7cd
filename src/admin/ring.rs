//! `GET /api/v1/pools/{pool}/ring` and `POST …/ring/plan`: the routing table of a hashed pool
//! and the migration an add or remove would cause, from the live members.
//!
//! Owns: choosing the members (the pool's live servers with their weights) and shaping the
//! planner's answer as JSON (hash values as decimal strings: a u64 does not fit a JS number).
//! Must not touch: the ring arithmetic (`balance::planner`, the same code as `ringway ring`;
//! for Maglev pools the table itself, `balance::Maglev`).

use std::collections::BTreeMap;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{ApiError, Resp, json_response, read_json};
use super::mutations::find_pool;
use super::{Admin, views};
use crate::balance::planner::{self, RingTable};
use crate::balance::{Algorithm, HashFunction, Maglev, Member};
use crate::proxy::state::Pool;

/// `POST …/ring/plan`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanRequest {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// How a pool hashes, if it does.
enum Hashed {
    Ring { vnodes: u32, hash: HashFunction },
    Maglev { table_size: u32, hash: HashFunction },
}

fn hashed(pool: &Pool, admin: &Admin) -> Result<Hashed, ApiError> {
    match pool.settings.algorithm {
        Algorithm::ConsistentHash { vnodes, hash, .. } => Ok(Hashed::Ring { vnodes, hash }),
        Algorithm::Maglev { table_size, hash, .. } => Ok(Hashed::Maglev { table_size, hash }),
        _ => {
            let snapshot = admin.engine.shared.snapshot.load();
            let algorithm = views::pool_config(&snapshot, &pool.name)
                .map_or("round_robin", |c| views::algorithm_name(&c.balance));
            Err(ApiError::conflict(format!(
                "pool `{}` is not hashed (balance = {algorithm})",
                pool.name
            )))
        }
    }
}

/// The pool's servers as the balancer weighs them (hashed pools use the full weight).
fn members(pool: &Pool) -> Vec<Member> {
    pool.members
        .load()
        .servers
        .iter()
        .map(|s| Member {
            name: s.name.clone(),
            weight: s.weight().max(1),
        })
        .collect()
}

fn shares(table: &RingTable) -> Vec<Value> {
    table
        .servers
        .iter()
        .map(|s| {
            json!({"server": s.server, "weight": s.weight, "points": s.points,
                   "share": s.share, "hashes": s.hashes.to_string()})
        })
        .collect()
}

/// `GET …/ring`.
pub fn table(admin: &Admin, pool_name: &str) -> Result<Resp, ApiError> {
    let pool = find_pool(&admin.engine.shared.snapshot.load(), pool_name)?;
    let members = members(&pool);
    let body = match hashed(&pool, admin)? {
        Hashed::Ring { vnodes, hash } => {
            let t = planner::routing_table(&members, vnodes, hash);
            json!({
                "pool": pool.name,
                "algorithm": "consistent_hash",
                "hash": t.hash,
                "vnodes": t.vnodes,
                "max_hash": t.max_hash.to_string(),
                "shares": shares(&t),
                "partitions": t.partitions.iter().map(|p| json!({
                    "start": p.start.to_string(), "point": p.point, "server": p.server,
                    "hashes": p.hashes.to_string()})).collect::<Vec<_>>(),
                "simplified": t.simplified.iter().map(|s| json!({
                    "start": s.start.to_string(), "server": s.server,
                    "hashes": s.hashes.to_string()})).collect::<Vec<_>>(),
            })
        }
        Hashed::Maglev { table_size, hash } => {
            let m = maglev_plan(&members, &members, table_size, hash);
            json!({
                "pool": pool.name,
                "algorithm": "maglev",
                "hash": hash.name(),
                "table_size": m.table_size,
                "shares": m.before,
            })
        }
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST …/ring/plan`: what moves if `add` joined and `remove` left.
pub async fn plan(req: Request<Incoming>, admin: &Admin, pool_name: &str) -> Result<Resp, ApiError> {
    let body: PlanRequest = read_json(req).await?;
    let pool = find_pool(&admin.engine.shared.snapshot.load(), pool_name)?;
    let how = hashed(&pool, admin)?;
    let members = members(&pool);
    let unknown: Vec<&String> = body
        .remove
        .iter()
        .filter(|r| !members.iter().any(|m| &m.name == *r))
        .collect();
    if !unknown.is_empty() {
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        return Err(ApiError::invalid(format!(
            "cannot remove {}: not in pool `{pool_name}`, whose servers are {}",
            quoted(unknown.iter().map(|s| s.as_str())),
            quoted(names.into_iter())
        )));
    }
    if let Some(bad) = body.add.iter().find(|a| !crate::config::is_valid_name(a)) {
        return Err(ApiError::invalid(format!(
            "cannot add {bad:?}: a server name is non-empty, at most 128 characters, without `/`, spaces or control characters"
        )));
    }
    let add: Vec<Member> = body
        .add
        .iter()
        .map(|n| Member {
            name: n.clone(),
            weight: 1,
        })
        .collect();
    let answer = match how {
        Hashed::Ring { vnodes, hash } => {
            let p = planner::plan(&members, &add, &body.remove, vnodes, hash).map_err(ApiError::invalid)?;
            let after = p.after.as_ref().unwrap_or(&p.before);
            let moves = p.migration.as_ref().map_or(Vec::new(), |m| {
                m.flows
                    .iter()
                    .map(|f| json!({"from": f.from, "to": f.to, "share": f.share, "hashes": f.hashes.to_string()}))
                    .collect()
            });
            json!({
                "pool": pool.name,
                "algorithm": "consistent_hash",
                "moved_share": p.migration.as_ref().map_or(0.0, |m| m.moved_share),
                "moves": moves,
                "before": shares(&p.before),
                "after": shares(after),
            })
        }
        Hashed::Maglev { table_size, hash } => {
            // The same checks as the ring planner's, on the same lists.
            planner::plan(&members, &add, &body.remove, 1, hash).map_err(ApiError::invalid)?;
            let changed: Vec<Member> = members
                .iter()
                .filter(|m| !body.remove.contains(&m.name))
                .chain(&add)
                .cloned()
                .collect();
            let m = maglev_plan(&members, &changed, table_size, hash);
            json!({
                "pool": pool.name,
                "algorithm": "maglev",
                "moved_share": m.moved_share,
                "moves": m.moves,
                "before": m.before,
                "after": m.after,
            })
        }
    };
    Ok(json_response(StatusCode::OK, &answer))
}

fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// Shares and moves between two Maglev tables.
#[derive(Debug, PartialEq)]
struct MaglevPlan {
    table_size: u32,
    before: Vec<Value>,
    after: Vec<Value>,
    moves: Vec<Value>,
    moved_share: f64,
}

/// Compares the Maglev tables of two member lists entry by entry; each entry is an equal share
/// of the hash space.
fn maglev_plan(before: &[Member], after: &[Member], table_size: u32, hash: HashFunction) -> MaglevPlan {
    let old = Maglev::new(before, table_size, hash, None);
    let new = Maglev::new(after, table_size, hash, None);
    let size = old.table().len().max(1) as f64;
    let owner =
        |members: &'_ [Member], i: u32| members.get(i as usize).map_or("", |m| m.name.as_str()).to_owned();
    let shares = |members: &[Member], table: &[u32]| {
        let mut entries: BTreeMap<String, u64> = members.iter().map(|m| (m.name.clone(), 0)).collect();
        for &i in table {
            *entries.entry(owner(members, i)).or_default() += 1;
        }
        entries
            .into_iter()
            .map(|(server, n)| json!({"server": server, "entries": n, "share": n as f64 / size}))
            .collect::<Vec<_>>()
    };
    let mut flows: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (&a, &b) in old.table().iter().zip(new.table()) {
        let (from, to) = (owner(before, a), owner(after, b));
        if from != to {
            *flows.entry((from, to)).or_default() += 1;
        }
    }
    let moved: u64 = flows.values().sum();
    MaglevPlan {
        table_size: old.table().len() as u32,
        before: shares(before, old.table()),
        after: shares(after, new.table()),
        moves: flows
            .into_iter()
            .map(|((from, to), n)| json!({"from": from, "to": to, "share": n as f64 / size, "entries": n}))
            .collect(),
        moved_share: moved as f64 / size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(names: &[&str]) -> Vec<Member> {
        names
            .iter()
            .map(|n| Member {
                name: (*n).into(),
                weight: 1,
            })
            .collect()
    }

    #[test]
    fn maglev_moves_only_what_the_removed_server_had() {
        let before = m(&["a", "b", "c"]);
        let after = m(&["a", "b"]);
        let p = maglev_plan(&before, &after, 65537, HashFunction::Xxh3);
        assert_eq!(p.table_size, 65537);
        let share_of_c = p.before[2]["share"].as_f64().expect("share");
        assert_eq!(p.before[2]["server"], "c");
        // Everything c had moves, and little else (Maglev's minimal disruption is near, not
        // exactly, perfect).
        assert!(p.moved_share >= share_of_c - 1e-12, "{p:?}");
        assert!(p.moved_share < share_of_c + 0.05, "{p:?}");
        assert!(p.moves.iter().any(|mv| mv["from"] == "c"));
        let unchanged = maglev_plan(&before, &before, 65537, HashFunction::Xxh3);
        assert_eq!(unchanged.moved_share, 0.0);
        assert!(unchanged.moves.is_empty());
    }
}
