//! The consistent-hash ring of DESIGN.md section 6, with optional bounded loads.
//!
//! Owns: placing `vnodes × weight` points per member at `hash("{name}-{i}")`, the lookup of the
//! point that owns a key hash (greatest point `<=` hash, wrapping below the smallest, equal points
//! ordered by member name), the walk from an ineligible owner to the member that would own the key
//! without it, the bounded-load walk, and the round robin of requests that have no key.
//! Must not touch: request heads (the caller hashes the key with [`HashKey`]), health, clocks,
//! locks. The ring is built once per member list; a pick reads it and allocates nothing.
//!
//! [`HashKey`]: super::HashKey

use std::sync::Arc;

use super::bounded::{SUMS_MIN_MEMBERS, load_bound};
use super::round_robin::RoundRobin;
use super::visited::Visited;
use super::{HashFunction, LoadIndex, Member, ServerLoads, clamp_weight, name_order};

/// Default points per unit of weight.
pub const DEFAULT_VNODES: u32 = 160;
/// Largest accepted `vnodes`; higher values are lowered to it.
pub const MAX_VNODES: u32 = 10_000;
/// Largest number of points of one ring (about 200 MiB while building); `vnodes` is lowered so
/// that `vnodes × total weight` stays under it. The config refuses a pool whose listed servers
/// pass it; servers added later (DNS discovery: up to 512 of weight up to 256; the admin API)
/// lower the pool's effective `vnodes` instead.
pub const MAX_POINTS: u64 = 16_000_000;
/// The lookup index never has more than 2^this buckets.
const MAX_INDEX_BITS: u32 = 20;

/// One point of a ring: its hash, the member (caller's index) and the point's number `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingPoint {
    /// `hash("{name}-{i}")`, the smallest key hash this point serves.
    pub hash: u64,
    /// Index of the member in the list the ring was built from.
    pub member: u32,
    /// The point's number `i` within its member.
    pub vnode: u32,
}

/// `vnodes` as a ring of `members` will really use it (clamped to 1..=10000 and to the point cap).
pub fn effective_vnodes(members: &[Member], vnodes: u32) -> u32 {
    let vnodes = vnodes.clamp(1, MAX_VNODES);
    let total_weight: u64 = members.iter().map(|m| u64::from(clamp_weight(m.weight))).sum();
    if total_weight == 0 || u64::from(vnodes) * total_weight <= MAX_POINTS {
        return vnodes;
    }
    u32::try_from((MAX_POINTS / total_weight).max(1)).unwrap_or(1)
}

/// Every point of the ring in ring order: by hash, then member name, then point number.
///
/// The order does not depend on the order of `members`; `member` refers to the caller's indices.
pub fn ring_points(members: &[Member], vnodes: u32, hash: HashFunction) -> Vec<RingPoint> {
    let vnodes = effective_vnodes(members, vnodes);
    let order = name_order(members);
    let total: usize = members
        .iter()
        .map(|m| vnodes as usize * clamp_weight(m.weight) as usize)
        .sum();
    let mut points = Vec::with_capacity(total);
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    for (rank, &index) in order.iter().enumerate() {
        let member = &members[index as usize];
        buf.clear();
        buf.extend_from_slice(member.name.as_bytes());
        buf.push(b'-');
        let prefix = buf.len();
        for i in 0..vnodes * clamp_weight(member.weight) {
            buf.truncate(prefix);
            push_decimal(&mut buf, i);
            points.push(RingPoint {
                hash: hash.hash(&buf),
                // The name rank sorts ties by name; replaced by the caller's index below.
                member: rank as u32,
                vnode: i,
            });
        }
    }
    points.sort_unstable_by_key(|p| (p.hash, p.member, p.vnode));
    for p in &mut points {
        p.member = order[p.member as usize];
    }
    points
}

fn push_decimal(buf: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend(digits[..len].iter().rev());
}

/// A consistent-hash ring over a fixed member list.
#[derive(Debug)]
pub struct Ring {
    /// Point hashes in ring order.
    hashes: Box<[u64]>,
    /// Owner (caller's member index) of each point.
    owners: Box<[u32]>,
    /// `index[b]` is the first point whose hash is `>= b << shift`; one extra entry at the end.
    index: Box<[u32]>,
    shift: u32,
    members: usize,
    hash: HashFunction,
    bounded_load: Option<f64>,
    /// Requests without a key are spread by smooth weighted round robin.
    keyless: RoundRobin,
    /// With bounded loads: the sums the caller may keep for [`ServerLoads::eligible_totals`].
    sums: Option<Arc<LoadIndex>>,
}

impl Ring {
    /// Builds the ring of `members`; weights are clamped to 1..=256, `vnodes` to 1..=10000.
    pub fn new(members: &[Member], vnodes: u32, hash: HashFunction, bounded_load: Option<f64>) -> Ring {
        let points = ring_points(members, vnodes, hash);
        Ring::from_points(&points, members, hash, bounded_load)
    }

    /// Builds the lookup structures from points already in ring order.
    fn from_points(
        points: &[RingPoint],
        members: &[Member],
        hash: HashFunction,
        bounded_load: Option<f64>,
    ) -> Ring {
        let hashes: Box<[u64]> = points.iter().map(|p| p.hash).collect();
        let owners: Box<[u32]> = points.iter().map(|p| p.member).collect();
        let (index, shift) = build_index(&hashes, hash.bits());
        Ring {
            hashes,
            owners,
            index,
            shift,
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

    /// The hash function of points and keys.
    pub fn hash_function(&self) -> HashFunction {
        self.hash
    }

    /// Number of points on the ring.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the ring has no point (built from an empty member list).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Bytes held by the lookup structures (points and index), for capacity planning.
    pub fn memory_bytes(&self) -> usize {
        size_of_val(&*self.hashes)
            + size_of_val(&*self.owners)
            + size_of_val(&*self.index)
            + size_of_val(self.keyless.sequence())
    }

    /// The member owning `key_hash` when every member is eligible and none is loaded.
    #[inline]
    pub fn owner(&self, key_hash: u64) -> Option<usize> {
        if self.hashes.is_empty() {
            return None;
        }
        Some(self.owners[self.position(key_hash)] as usize)
    }

    /// The member for a request: the owner of its key hash or, if the owner is ineligible (or
    /// over the load bound), the next owner: the member that would own the key were the owner
    /// removed; requests without a key go round robin. `None` when no member is eligible.
    #[inline]
    pub fn pick(&self, key_hash: Option<u64>, loads: &impl ServerLoads) -> Option<usize> {
        if self.hashes.is_empty() {
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
        let at = self.position(h);
        let owner = self.owners[at] as usize;
        if ok(owner) {
            return Some(owner);
        }
        self.walk(at, owner, ok)
    }

    /// Position of the point that owns `h`: the first (by name) of the points with the greatest
    /// value `<= h`, or of the last points when `h` is below them all.
    #[inline]
    fn position(&self, h: u64) -> usize {
        let len = self.hashes.len();
        let bucket = (h >> self.shift) as usize;
        let after = match (self.index.get(bucket), self.index.get(bucket + 1)) {
            (Some(&lo), Some(&hi)) => {
                let (lo, hi) = (lo as usize, hi as usize);
                lo + self.hashes[lo..hi].partition_point(|&p| p <= h)
            }
            // A key beyond the hash space (a caller's own hash): above every point.
            _ => len,
        };
        let mut at = if after == 0 { len - 1 } else { after - 1 };
        while at > 0 && self.hashes[at - 1] == self.hashes[at] {
            at -= 1;
        }
        at
    }

    /// The first member `ok` accepts, in the order in which members would inherit the key if
    /// the ones before them were removed: the other points equal to the owner's (by name), then
    /// the points below it, group by group, wrapping. A point is the minimum of its partition, so
    /// removing it hands its hashes to the point below; a drained member's keys thus go where
    /// removing it would send them, and only its keys move. Each member is asked once.
    #[cold]
    fn walk(&self, at: usize, first: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.hashes.len();
        let mut seen = Visited::new();
        seen.insert(first);
        let mut group = at;
        let mut visited = 0usize;
        loop {
            let value = self.hashes[group];
            let mut pos = group;
            while pos < len && self.hashes[pos] == value {
                visited += 1;
                let m = self.owners[pos] as usize;
                if seen.insert(m) {
                    if ok(m) {
                        return Some(m);
                    }
                    if seen.saw_all(self.members) {
                        return None;
                    }
                }
                pos += 1;
            }
            if visited >= len {
                return None;
            }
            group = if group == 0 { len - 1 } else { group - 1 };
            while group > 0 && self.hashes[group - 1] == self.hashes[group] {
                group -= 1;
            }
        }
    }
}

/// A table of bucket starts over the top bits of the hash space, so that a lookup searches only
/// the one or two points of its bucket instead of the whole ring.
fn build_index(hashes: &[u64], space_bits: u32) -> (Box<[u32]>, u32) {
    let len = hashes.len().max(2);
    let bits = (usize::BITS - 1 - len.leading_zeros()).clamp(1, MAX_INDEX_BITS.min(space_bits));
    let shift = space_bits - bits;
    let buckets = 1usize << bits;
    let mut index = Vec::with_capacity(buckets + 1);
    let mut j = 0usize;
    for b in 0..buckets as u64 {
        let start = b << shift;
        while j < hashes.len() && hashes[j] < start {
            j += 1;
        }
        index.push(u32::try_from(j).unwrap_or(u32::MAX));
    }
    index.push(u32::try_from(hashes.len()).unwrap_or(u32::MAX));
    (index.into_boxed_slice(), shift)
}

#[cfg(test)]
mod tests;
