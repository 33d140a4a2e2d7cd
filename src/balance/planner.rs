//! The ring planner behind `ringway ring` and `/api/v1/pools/{pool}/ring`: routing tables of a
//! consistent-hash ring and the migration an add or remove would cause, with exact counts.
//!
//! Owns: partition counts over the whole hash space (`u128`, so that the 2^64 hashes of xxh3
//! fit), the simplified table, per-server shares, the migration between two rings, and their text
//! and JSON renderings.
//! Must not touch: files, config parsing, the terminal or exit codes (the CLI adapter does
//! those); it only turns a member list into tables and strings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use super::ring::{RingPoint, effective_vnodes, ring_points};
use super::{HashFunction, Member, clamp_weight};

/// One partition of the full table: the hashes from its start up to the next partition's.
///
/// The table starts at hash 0: when the smallest point is above 0, the first row is the
/// wrap-around partition (the hashes below the smallest point, served by the last point, as
/// the ring wraps), and the last point's row then counts only its own hashes up to the end of
/// the space. The classic demonstrations print the table this way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Partition {
    /// The smallest hash of the partition: the point's hash, or 0 for the wrap-around row.
    pub start: u64,
    /// The point's name, `{server}-{i}` (the last point's for the wrap-around row).
    pub point: String,
    /// The server owning the point.
    pub server: String,
    /// How many hashes the partition serves.
    pub hashes: u128,
}

/// A run of consecutive partitions of one server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    /// The smallest hash of the run.
    pub start: u64,
    /// The server owning the run.
    pub server: String,
    /// How many hashes the run serves.
    pub hashes: u128,
}

/// One server's total over the ring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerTotal {
    /// The server's name.
    pub server: String,
    /// Its weight (clamped to 1..=256 as the ring uses it).
    pub weight: u32,
    /// Its number of points.
    pub points: u64,
    /// How many hashes it serves.
    pub hashes: u128,
    /// Its fraction of the hash space, 0 to 1.
    pub share: f64,
}

/// The routing tables of one ring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RingTable {
    /// Hash function name (`xxh3` or `sha1-28`).
    pub hash: &'static str,
    /// Points per unit of weight, as used.
    pub vnodes: u32,
    /// The largest hash of the space (the space is `0..=max_hash`).
    pub max_hash: u64,
    /// Every partition in ring order, from hash 0 (see [`Partition`] for the wrap-around row).
    pub partitions: Vec<Partition>,
    /// Consecutive partitions of one server merged. The row at 0 and the last row belong to the
    /// same server (the last point's) and stay two rows, as the published tables show them.
    pub simplified: Vec<Segment>,
    /// Per-server totals, in name order.
    pub servers: Vec<ServerTotal>,
}

/// Hashes moving from one server to another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flow {
    /// Server that serves them before.
    pub from: String,
    /// Server that serves them after.
    pub to: String,
    /// How many hashes move.
    pub hashes: u128,
    /// Their fraction of the hash space.
    pub share: f64,
}

/// What changes between two rings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Migration {
    /// Servers only in the new ring.
    pub added: Vec<String>,
    /// Servers only in the old ring.
    pub removed: Vec<String>,
    /// Hashes whose server changes.
    pub moved_hashes: u128,
    /// Their fraction of the hash space.
    pub moved_share: f64,
    /// The moves, by (from, to).
    pub flows: Vec<Flow>,
    /// Hashes moving between two servers present in both rings: 0 for a consistent ring.
    pub moved_between_staying: u128,
}

/// A ring, and optionally the ring after a change with the migration between them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The ring as it is.
    pub before: RingTable,
    /// The ring after `--add`/`--remove`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<RingTable>,
    /// What moves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
}

/// The routing tables of the ring of `members` (which should have distinct names).
pub fn routing_table(members: &[Member], vnodes: u32, hash: HashFunction) -> RingTable {
    let vnodes = effective_vnodes(members, vnodes);
    let points = ring_points(members, vnodes, hash);
    let max_hash = hash.max_hash();
    let space = u128::from(max_hash) + 1;
    let (partitions, hashes_by_member) = partitions(members, &points, space);
    let simplified = simplify(&partitions);
    let mut servers: Vec<ServerTotal> = members
        .iter()
        .zip(&hashes_by_member)
        .map(|(m, &hashes)| ServerTotal {
            server: m.name.clone(),
            weight: clamp_weight(m.weight),
            points: u64::from(vnodes) * u64::from(clamp_weight(m.weight)),
            hashes,
            share: ratio(hashes, space),
        })
        .collect();
    servers.sort_by(|a, b| a.server.cmp(&b.server));
    RingTable {
        hash: hash.name(),
        vnodes,
        max_hash,
        partitions,
        simplified,
        servers,
    }
}

/// The full table of a ring's `points` (in ring order) over a space of `space` hashes, from
/// hash 0, and how many hashes each member serves.
fn partitions(members: &[Member], points: &[RingPoint], space: u128) -> (Vec<Partition>, Vec<u128>) {
    let mut partitions = Vec::with_capacity(points.len() + 1);
    let mut hashes_by_member = vec![0u128; members.len()];
    // Walking backwards gives each group of equal points the start of the next group; the
    // first point of a group owns it (ties are broken by name), the others serve nothing.
    let mut counts = vec![0u128; points.len()];
    let mut next_start: Option<u64> = None;
    let mut last_owner: Option<usize> = None;
    for j in (0..points.len()).rev() {
        let start = points[j].hash;
        let first_of_group = j == 0 || points[j - 1].hash != start;
        if first_of_group {
            counts[j] = match next_start {
                Some(next) => u128::from(next - start),
                None => {
                    last_owner = Some(j);
                    space - u128::from(start)
                }
            };
            next_start = Some(start);
        }
    }
    // The hashes below the smallest point wrap round to the last point: a row of their own at 0.
    if let (Some(first), Some(j)) = (points.first(), last_owner)
        && first.hash > 0
    {
        let p = &points[j];
        let member = &members[p.member as usize];
        hashes_by_member[p.member as usize] += u128::from(first.hash);
        partitions.push(Partition {
            start: 0,
            point: format!("{}-{}", member.name, p.vnode),
            server: member.name.clone(),
            hashes: u128::from(first.hash),
        });
    }
    for (p, &count) in points.iter().zip(&counts) {
        let member = &members[p.member as usize];
        hashes_by_member[p.member as usize] += count;
        partitions.push(Partition {
            start: p.hash,
            point: format!("{}-{}", member.name, p.vnode),
            server: member.name.clone(),
            hashes: count,
        });
    }
    (partitions, hashes_by_member)
}

fn simplify(partitions: &[Partition]) -> Vec<Segment> {
    let mut runs: Vec<Segment> = Vec::new();
    for p in partitions.iter().filter(|p| p.hashes > 0) {
        match runs.last_mut() {
            Some(run) if run.server == p.server => run.hashes += p.hashes,
            _ => runs.push(Segment {
                start: p.start,
                server: p.server.clone(),
                hashes: p.hashes,
            }),
        }
    }
    runs
}

fn ratio(part: u128, whole: u128) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Who serves each stretch of the space, from hash 0: `(start, server)` runs.
fn coverage(table: &RingTable) -> Vec<(u64, &str)> {
    // The partitions start at 0 (the wrap-around row) and cover the space in order.
    table
        .partitions
        .iter()
        .filter(|p| p.hashes > 0)
        .map(|p| (p.start, p.server.as_str()))
        .collect()
}

/// What moves from ring `before` to ring `after` (same hash function).
pub fn migration(before: &RingTable, after: &RingTable) -> Migration {
    let space = u128::from(before.max_hash) + 1;
    let old = coverage(before);
    let new = coverage(after);
    let mut flows: BTreeMap<(&str, &str), u128> = BTreeMap::new();
    let (mut i, mut j) = (0usize, 0usize);
    let mut pos: u128 = 0;
    while pos < space && i < old.len() && j < new.len() {
        let end_old = old.get(i + 1).map_or(space, |r| u128::from(r.0));
        let end_new = new.get(j + 1).map_or(space, |r| u128::from(r.0));
        let end = end_old.min(end_new);
        if old[i].1 != new[j].1 && end > pos {
            *flows.entry((old[i].1, new[j].1)).or_insert(0) += end - pos;
        }
        pos = end;
        if end == end_old {
            i += 1;
        }
        if end == end_new {
            j += 1;
        }
    }
    let old_names: BTreeSet<&str> = before.servers.iter().map(|s| s.server.as_str()).collect();
    let new_names: BTreeSet<&str> = after.servers.iter().map(|s| s.server.as_str()).collect();
    let staying = |s: &str| old_names.contains(s) && new_names.contains(s);
    let moved_hashes = flows.values().sum();
    let moved_between_staying = flows
        .iter()
        .filter(|((from, to), _)| staying(from) && staying(to))
        .map(|(_, &n)| n)
        .sum();
    Migration {
        added: new_names.difference(&old_names).map(|s| s.to_string()).collect(),
        removed: old_names.difference(&new_names).map(|s| s.to_string()).collect(),
        moved_hashes,
        moved_share: ratio(moved_hashes, space),
        flows: flows
            .into_iter()
            .map(|((from, to), hashes)| Flow {
                from: from.to_string(),
                to: to.to_string(),
                hashes,
                share: ratio(hashes, space),
            })
            .collect(),
        moved_between_staying,
    }
}

/// The plan for `members`, and when `add` or `remove` is non-empty, for the changed set too.
///
/// Errors (for a usage message): an empty set, duplicate names, adding a server already there,
/// removing one that is not.
pub fn plan(
    members: &[Member],
    add: &[Member],
    remove: &[String],
    vnodes: u32,
    hash: HashFunction,
) -> Result<Plan, String> {
    if members.is_empty() {
        return Err("the server set is empty".into());
    }
    check_names(members.iter().map(|m| m.name.as_str()), "server")?;
    let before = routing_table(members, vnodes, hash);
    if add.is_empty() && remove.is_empty() {
        return Ok(Plan {
            before,
            after: None,
            migration: None,
        });
    }
    check_names(add.iter().map(|m| m.name.as_str()), "--add server")?;
    check_names(remove.iter().map(String::as_str), "--remove server")?;
    for name in remove {
        if !members.iter().any(|m| &m.name == name) {
            let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
            return Err(format!(
                "cannot remove {name:?}: it is not in the server set ({})",
                names.join(", ")
            ));
        }
    }
    for m in add {
        if members.iter().any(|o| o.name == m.name) && !remove.contains(&m.name) {
            return Err(format!(
                "cannot add {:?}: it is already in the server set",
                m.name
            ));
        }
    }
    let changed: Vec<Member> = members
        .iter()
        .filter(|m| !remove.contains(&m.name))
        .chain(add)
        .cloned()
        .collect();
    if changed.is_empty() {
        return Err("removing every server leaves an empty set".into());
    }
    let after = routing_table(&changed, vnodes, hash);
    let migration = migration(&before, &after);
    Ok(Plan {
        before,
        after: Some(after),
        migration: Some(migration),
    })
}

fn check_names<'a>(names: impl Iterator<Item = &'a str>, what: &str) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for name in names {
        if name.is_empty() {
            return Err(format!("a {what} name is empty"));
        }
        if !seen.insert(name) {
            return Err(format!("{what} {name:?} is listed twice"));
        }
    }
    Ok(())
}

/// Width of the right-aligned hash column: the digits of the largest hash plus two spaces.
fn hash_width(max_hash: u64) -> usize {
    max_hash.to_string().len() + 2
}

/// The tables of one ring as text.
pub fn render_table(table: &RingTable, out: &mut String) {
    render_header(table, out);
    render_tables(table, out);
    render_shares(table, out);
}

/// The header line of a ring: servers, points, hash.
fn render_header(table: &RingTable, out: &mut String) {
    let servers = table.servers.len();
    let points: u64 = table.servers.iter().map(|s| s.points).sum();
    let _ = writeln!(
        out,
        "{servers} server{}, {} points per unit of weight, {points} points, hash {} (hashes 0 to {})",
        if servers == 1 { "" } else { "s" },
        table.vnodes,
        table.hash,
        table.max_hash,
    );
}

/// The full and simplified routing tables.
fn render_tables(table: &RingTable, out: &mut String) {
    let width = hash_width(table.max_hash);
    let _ = writeln!(out, "\nRouting table:");
    for p in &table.partitions {
        let _ = writeln!(out, "{:>width$} --> {} ({} hashes)", p.start, p.point, p.hashes);
    }
    let _ = writeln!(out, "\nSimplified routing table:");
    for s in &table.simplified {
        let _ = writeln!(out, "{:>width$} --> {} ({} hashes)", s.start, s.server, s.hashes);
    }
}

/// Per-server totals and shares.
fn render_shares(table: &RingTable, out: &mut String) {
    let _ = writeln!(out, "\nShares:");
    let name_width = table.servers.iter().map(|s| s.server.len()).max().unwrap_or(0);
    let count_width = table
        .servers
        .iter()
        .map(|s| s.hashes.to_string().len())
        .max()
        .unwrap_or(0);
    for s in &table.servers {
        let _ = writeln!(
            out,
            "  {:<name_width$}  weight {:>3}  {:>7} points  {:>count_width$} hashes  {:>7.3}%",
            s.server,
            s.weight,
            s.points,
            s.hashes,
            s.share * 100.0
        );
    }
}

/// The whole plan as text: the ring, and after a change the new ring and the migration.
pub fn render_text(plan: &Plan) -> String {
    render_plan(plan, true)
}

/// The plan without the routing tables: shares before (and after) and the migration.
pub fn render_summary(plan: &Plan) -> String {
    render_plan(plan, false)
}

fn render_plan(plan: &Plan, tables: bool) -> String {
    let render = |table: &RingTable, out: &mut String| {
        if tables {
            render_table(table, out);
        } else {
            render_header(table, out);
            render_shares(table, out);
        }
    };
    let mut out = String::new();
    render(&plan.before, &mut out);
    if let (Some(after), Some(m)) = (&plan.after, &plan.migration) {
        let _ = write!(out, "\n=== After");
        if !m.added.is_empty() {
            let _ = write!(out, " adding {}", m.added.join(", "));
        }
        if !m.removed.is_empty() {
            let and = if m.added.is_empty() { "" } else { " and" };
            let _ = write!(out, "{and} removing {}", m.removed.join(", "));
        }
        let _ = writeln!(out, " ===\n");
        render(after, &mut out);
        let _ = writeln!(out, "\nMigration:");
        let _ = writeln!(
            out,
            "  {} hashes move, {:.3}% of the hash space",
            m.moved_hashes,
            m.moved_share * 100.0
        );
        for f in &m.flows {
            let _ = writeln!(
                out,
                "  {} --> {}: {} hashes ({:.3}%)",
                f.from,
                f.to,
                f.hashes,
                f.share * 100.0
            );
        }
        if m.moved_between_staying == 0 {
            let _ = writeln!(out, "  Nothing moves between two servers that stay.");
        } else {
            let _ = writeln!(
                out,
                "  WARNING: {} hashes move between servers that stay.",
                m.moved_between_staying
            );
        }
    }
    out
}

/// The whole plan as pretty-printed JSON (counts are exact integers, possibly above 2^53).
pub fn render_json(plan: &Plan) -> Result<String, String> {
    serde_json::to_string_pretty(plan).map_err(|e| format!("cannot render the plan as JSON: {e}"))
}

#[cfg(test)]
mod tests;
