//! The Maglev lookup table (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016), weight-aware, with optional bounded loads.
//!
//! Owns: populating a prime-sized table from each member's permutation (offset and skip from two
//! hashes of its name, members in name order so the table ignores the listed order, turns taken
//! in proportion to weight), the lookup `table[h % M]`, the walk to the next eligible member, the
//! bounded-load walk, and the round robin of requests that have no key.
//! Must not touch: request heads, health, clocks, locks. The table is rebuilt when the member
//! list changes; a pick reads it and allocates nothing.

use std::sync::Arc;

use super::bounded::{SUMS_MIN_MEMBERS, load_bound};
use super::round_robin::RoundRobin;
use super::visited::Visited;
use super::{HashFunction, LoadIndex, Member, ServerLoads, clamp_weight, name_order};

/// Default table size, the paper's choice for small pools.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;
/// Largest table size; larger sizes are lowered to it (64 MiB of table).
pub const MAX_TABLE_SIZE: u32 = 16_777_213;

const EMPTY: u32 = u32::MAX;

/// Whether `n` is prime (trial division; table sizes are small).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let n = u64::from(n);
    let mut d = 3u64;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The table size really used for a requested size: the smallest prime `>=` it, within
/// 2..=`MAX_TABLE_SIZE`. A prime size makes every member's permutation cover the whole table.
pub fn effective_table_size(requested: u32) -> u32 {
    let mut m = requested.clamp(2, MAX_TABLE_SIZE);
    while !is_prime(m) {
        m += 1;
    }
    m
}

/// A Maglev lookup table over a fixed member list.
#[derive(Debug)]
pub struct Maglev {
    /// Owner (caller's member index) of each entry.
    table: Box<[u32]>,
    modulus: u64,
    members: usize,
    hash: HashFunction,
    bounded_load: Option<f64>,
    /// Requests without a key are spread by smooth weighted round robin.
    keyless: RoundRobin,
    /// With bounded loads: the sums the caller may keep for [`ServerLoads::eligible_totals`].
    sums: Option<Arc<LoadIndex>>,
}

impl Maglev {
    /// Builds the table; `table_size` is raised to a prime (see [`effective_table_size`]),
    /// weights are clamped to 1..=256.
    pub fn new(members: &[Member], table_size: u32, hash: HashFunction, bounded_load: Option<f64>) -> Maglev {
        let m = effective_table_size(table_size);
        Maglev {
            table: populate(members, m, hash).into_boxed_slice(),
            modulus: u64::from(m),
            members: members.len(),
            hash,
            bounded_load,
            keyless: RoundRobin::new(members),
            sums: (bounded_load.is_some() && members.len() >= SUMS_MIN_MEMBERS)
                .then(|| Arc::new(LoadIndex::sums_only(members.len()))),
        }
    }

    /// With bounded loads (and at least [`SUMS_MIN_MEMBERS`] members), the sums of in-flight
    /// requests its caller may keep current and report as [`ServerLoads::eligible_totals`], so
    /// that a pick costs O(1) instead of a pass.
    pub fn load_index(&self) -> Option<&Arc<LoadIndex>> {
        self.sums.as_ref()
    }

    /// The hash function of keys and member names.
    pub fn hash_function(&self) -> HashFunction {
        self.hash
    }

    /// The table (owners by entry), for inspection and tests.
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    /// The member owning `key_hash` when every member is eligible and none is loaded.
    #[inline]
    pub fn owner(&self, key_hash: u64) -> Option<usize> {
        let owner = *self.table.get((key_hash % self.modulus) as usize)?;
        (owner != EMPTY).then_some(owner as usize)
    }

    /// The member for a request: the table's owner of its key hash or, if that one is
    /// ineligible (or over the load bound), the owner of the next entries; requests without a
    /// key go round robin. `None` when no member is eligible.
    #[inline]
    pub fn pick(&self, key_hash: Option<u64>, loads: &impl ServerLoads) -> Option<usize> {
        if self.members == 0 {
            return None;
        }
        match self.bounded_load {
            None => self.pick_under(key_hash, None, loads),
            Some(c) => {
                let bound = load_bound(c, self.members, loads)?;
                self.pick_under(key_hash, Some(bound.limit), loads).or_else(|| {
                    // The caller's sums were off and nobody is under the bound.
                    bound.reported.then(|| self.pick_under(key_hash, None, loads))?
                })
            }
        }
    }

    /// A pick where members at or over `limit` in flight count as ineligible.
    #[inline]
    fn pick_under(
        &self,
        key_hash: Option<u64>,
        limit: Option<u64>,
        loads: &impl ServerLoads,
    ) -> Option<usize> {
        let ok = |m: usize| loads.eligible(m) && limit.is_none_or(|b| loads.in_flight(m) < b);
        let Some(h) = key_hash else {
            return self.keyless.pick_where(ok);
        };
        let at = (h % self.modulus) as usize;
        let owner = self.table[at] as usize;
        if ok(owner) {
            return Some(owner);
        }
        self.walk(at, owner, ok)
    }

    /// From entry `at` on, the first member `ok` accepts; each member is asked once. Members
    /// without an entry (a table smaller than the pool) are tried last.
    #[cold]
    fn walk(&self, at: usize, first: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.table.len();
        let mut seen = Visited::new();
        seen.insert(first);
        let mut pos = at;
        for _ in 1..len {
            pos += 1;
            if pos == len {
                pos = 0;
            }
            let m = self.table[pos] as usize;
            if seen.insert(m) {
                if ok(m) {
                    return Some(m);
                }
                if seen.saw_all(self.members) {
                    return None;
                }
            }
        }
        (0..self.members).find(|&m| seen.insert(m) && ok(m))
    }
}

/// Fills a table of `size` (prime) entries: members in name order take turns claiming the next
/// free entry of their own permutation `(offset + j × skip) mod size`; a member of weight `w`
/// takes a turn in `w / max_weight` of the rounds, so its share of entries follows its weight.
fn populate(members: &[Member], size: u32, hash: HashFunction) -> Vec<u32> {
    let mut table = vec![EMPTY; size as usize];
    if members.is_empty() {
        return table;
    }
    let size64 = u64::from(size);
    struct Turn {
        owner: u32,
        weight: u32,
        credit: u32,
        next: u64,
        skip: u64,
    }
    let mut turns: Vec<Turn> = name_order(members)
        .into_iter()
        .map(|index| {
            let member = &members[index as usize];
            let name = member.name.as_bytes();
            let mut skip_key = Vec::with_capacity(name.len() + 5);
            skip_key.extend_from_slice(name);
            skip_key.extend_from_slice(b"#skip");
            Turn {
                owner: index,
                weight: clamp_weight(member.weight),
                credit: 0,
                next: hash.hash(name) % size64,
                skip: hash.hash(&skip_key) % (size64 - 1) + 1,
            }
        })
        .collect();
    let max_weight = turns.iter().map(|t| t.weight).max().unwrap_or(1);
    let mut filled = 0u64;
    while filled < size64 {
        for turn in &mut turns {
            turn.credit += turn.weight;
            if turn.credit < max_weight {
                continue;
            }
            turn.credit -= max_weight;
            // The permutation visits every entry within `size` steps because size is prime.
            loop {
                let at = turn.next as usize;
                turn.next += turn.skip;
                if turn.next >= size64 {
                    turn.next -= size64;
                }
                if table[at] == EMPTY {
                    table[at] = turn.owner;
                    filled += 1;
                    break;
                }
            }
            if filled == size64 {
                break;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests;
