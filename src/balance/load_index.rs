//! A balancer's live view of its members' loads, kept current by the caller so that a pick need
//! not ask about every member: the pool-wide sums that bounded loads want (O(1)) and, for least
//! requests, a tournament tree of the lightest member (O(log n)).
//!
//! Owns: one copy per member of its in-flight count and whether it stands in rotation (serving:
//! ready, healthy, not ejected), the sums of those copies, the tree over them, and the searches
//! of the tree. Every part is plain atomics updated by any thread at any time, without a lock.
//! Must not touch: the in-flight counters themselves or any server state (the caller reads them
//! and hands them to [`LoadIndex::refresh`]), health, clocks, allocation after construction.
//!
//! The contract: after any change of a member's in-flight count or standing, the one who made
//! it calls [`LoadIndex::refresh`] for that member, which re-reads the member's figures. Each
//! slot (a member's copy, a tree node) carries a 32-bit version and is replaced only by a
//! compare-and-swap from the version that its writer read before reading its inputs, so a writer
//! that read stale inputs fails and reads again; the one who made the last change of a slot's
//! inputs rewrites it from the final inputs. Hence, once changes stop, every copy equals its
//! member's figures, the sums equal the sums of the copies and every tree node names the
//! lightest member below it: the index is exact when quiescent. While counts move, a pick reads
//! copies that lag each concurrent change by the few instructions between the change and its
//! refresh (the linear scan reads counters that move under it the same way).

use std::sync::atomic::{AtomicU64, Ordering};

use super::least_requests::lighter;

/// The low half of a slot: its payload; the high half is its version.
const PAYLOAD: u64 = 0xFFFF_FFFF;
/// One step of a slot's version.
const VERSION_STEP: u64 = 1 << 32;
/// In a member's copy: the member stands in rotation.
const STANDING: u64 = 1 << 31;
/// In a member's copy: its in-flight count, saturating at 2^31 - 1.
const IN_FLIGHT: u64 = STANDING - 1;
/// In a tree node: no member below (the padding right of the last member).
const NONE: u32 = u32::MAX;

/// A member's load as the tree orders them: `None` stands for a member out of rotation, heavier
/// than any in it.
type Load = Option<(u64, u32)>;

/// The live loads of a fixed member list (see the module doc for the contract).
#[derive(Debug)]
pub struct LoadIndex {
    /// Per member: version | standing bit | in-flight count.
    copies: Box<[AtomicU64]>,
    /// Sum of the in-flight copies of standing members (wrapping: a pending decrement may be
    /// applied before the increment it follows; read clamped at 0).
    in_flight: AtomicU64,
    /// Number of standing members (wrapping, like `in_flight`).
    standing: AtomicU64,
    /// The tree of the lightest member, for least requests.
    tree: Option<Tree>,
}

/// A tournament tree over the copies, in heap order: node `k` has children `2k` and `2k + 1`;
/// positions `size..2 × size` are the members (padded to a power of two) and nodes `1..size`
/// hold, under a version, the index of the lightest member below them.
#[derive(Debug)]
struct Tree {
    /// Weights of the members (1..=256), to compare `in_flight / weight`.
    weights: Box<[u32]>,
    /// `nodes[k]` for `k` in `1..size`; `nodes[0]` is unused.
    nodes: Box<[AtomicU64]>,
    /// Number of leaf positions, a power of two `>=` the number of members.
    size: usize,
}

impl LoadIndex {
    /// An index that keeps only the sums (for bounded loads), for `members` members.
    pub fn sums_only(members: usize) -> LoadIndex {
        LoadIndex {
            copies: (0..members).map(|_| AtomicU64::new(0)).collect(),
            in_flight: AtomicU64::new(0),
            standing: AtomicU64::new(0),
            tree: None,
        }
    }

    /// An index with the tree of the lightest member relative to `weights` (already clamped to
    /// 1..=256), one member per weight.
    pub fn with_tree(weights: &[u32]) -> LoadIndex {
        let members = weights.len();
        let size = members.next_power_of_two().max(1);
        let nodes: Box<[AtomicU64]> = (0..size).map(|_| AtomicU64::new(u64::from(NONE))).collect();
        let tree = Tree {
            weights: weights.into(),
            nodes,
            size,
        };
        // Every member starts out of rotation, so each node names the first member below it.
        for k in (1..size).rev() {
            let first = tree.below(2 * k);
            tree.nodes[k].store(u64::from(first), Ordering::Relaxed);
        }
        LoadIndex {
            tree: Some(tree),
            ..LoadIndex::sums_only(members)
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.copies.len()
    }

    /// Whether the index has no member.
    pub fn is_empty(&self) -> bool {
        self.copies.is_empty()
    }

    /// `(in-flight requests of the members in rotation, members in rotation)`: two loads. Exact
    /// when quiescent; while counts move, off by the changes whose refresh is under way.
    #[inline]
    pub fn totals(&self) -> (u64, usize) {
        let in_flight = self.in_flight.load(Ordering::Acquire) as i64;
        let standing = self.standing.load(Ordering::Acquire) as i64;
        (
            in_flight.max(0) as u64,
            usize::try_from(standing.max(0)).unwrap_or(0),
        )
    }

    /// Re-reads member `member`'s figures with `read` (`(in-flight, stands in rotation)`) and
    /// brings its copy, the sums and the tree up to date. Call it after every change of those
    /// figures; `read` must return the member's figures as they are now (it may run more than
    /// once). A member index out of range is ignored.
    pub fn refresh(&self, member: usize, read: impl Fn() -> (u64, bool)) {
        if self.update_copy(member, &read) {
            self.climb(member);
        }
    }

    /// Re-reads every member's figures (`read(member)`) and rebuilds the tree from them; for a
    /// new index, or one whose members' changes were not all reported. O(members).
    pub fn refresh_all(&self, read: impl Fn(usize) -> (u64, bool)) {
        for member in 0..self.copies.len() {
            self.update_copy(member, &|| read(member));
        }
        if let Some(tree) = &self.tree {
            // Bottom up, so that each node is settled after its children's last change by us.
            for k in (1..tree.size).rev() {
                tree.settle(k, &self.copies, usize::MAX);
            }
        }
    }

    /// The member for a least-requests pick: among those `eligible` accepts, the one with the
    /// fewest in-flight requests relative to its weight, ties going to the first met from
    /// `start` on (wrapping). `None` when the tree finds no eligible member in rotation, or the
    /// index has no tree.
    ///
    /// When every member in rotation is eligible this is one look at the root and one descent
    /// (O(log n)); each member in rotation that `eligible` refuses although it is no heavier
    /// than the answer adds a descent or two.
    pub fn lightest(&self, start: usize, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let tree = self.tree.as_ref()?;
        let copies = &self.copies;
        let root = tree.below(1);
        let (bound, found) = if root != NONE
            && let Some(load) = tree.load(copies, root as usize)
            && eligible(root as usize)
        {
            (load, root as usize)
        } else {
            let mut best = None;
            tree.min_eligible(copies, 1, &eligible, &mut best);
            let (load, member) = best?;
            (load, member)
        };
        // Only members met before `found` from `start` on can take the pick from it.
        let search = |from, to| tree.first_at_most(copies, 1, 0, tree.size, from, to, bound, &eligible);
        let earlier = if start <= found {
            search(start, found)
        } else {
            search(start, self.copies.len()).or_else(|| search(0, found))
        };
        earlier.or(Some(found))
    }

    /// Replaces member `member`'s copy with its figures; whether they changed.
    fn update_copy(&self, member: usize, read: &impl Fn() -> (u64, bool)) -> bool {
        let Some(copy) = self.copies.get(member) else {
            return false;
        };
        loop {
            let old = copy.load(Ordering::SeqCst);
            let (in_flight, standing) = read();
            let payload = in_flight.min(IN_FLIGHT) | if standing { STANDING } else { 0 };
            // The version moves even when the figures do not, so that a writer holding older
            // figures fails its swap.
            let new = (old & !PAYLOAD).wrapping_add(VERSION_STEP) | payload;
            if copy
                .compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                let (was, now) = (contribution(old), contribution(new));
                if was != now {
                    self.in_flight.fetch_add(now.wrapping_sub(was), Ordering::AcqRel);
                }
                match (old & STANDING != 0, standing) {
                    (false, true) => {
                        self.standing.fetch_add(1, Ordering::AcqRel);
                    }
                    (true, false) => {
                        self.standing.fetch_sub(1, Ordering::AcqRel);
                    }
                    _ => {}
                }
                return old & PAYLOAD != payload;
            }
        }
    }

    /// Settles the tree nodes above `member` while the member is, or was, the lightest below
    /// them: above the first node where it is neither, nothing depends on its load.
    fn climb(&self, member: usize) {
        let Some(tree) = &self.tree else {
            return;
        };
        let mut k = (tree.size + member) / 2;
        while k >= 1 && tree.settle(k, &self.copies, member) {
            k /= 2;
        }
    }
}

/// What a copy adds to the in-flight sum: its count if it stands in rotation.
fn contribution(copy: u64) -> u64 {
    if copy & STANDING != 0 { copy & IN_FLIGHT } else { 0 }
}

/// Whether load `a` is strictly lighter than load `b` (out of rotation is the heaviest).
fn lighter_load(a: Load, b: Load) -> bool {
    match (a, b) {
        (Some((fa, wa)), Some((fb, wb))) => lighter(fa, wa, fb, wb),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

impl Tree {
    /// The member named at position `k`: a node's lightest member, or the member at a leaf
    /// position (`NONE` for padding).
    #[inline]
    fn below(&self, k: usize) -> u32 {
        if k >= self.size {
            let member = k - self.size;
            if member < self.weights.len() {
                member as u32
            } else {
                NONE
            }
        } else {
            (self.nodes[k].load(Ordering::SeqCst) & PAYLOAD) as u32
        }
    }

    /// The load of `member` as its copy says.
    #[inline]
    fn load(&self, copies: &[AtomicU64], member: usize) -> Load {
        let copy = copies.get(member)?.load(Ordering::SeqCst);
        let weight = *self.weights.get(member)?;
        (copy & STANDING != 0).then_some((copy & IN_FLIGHT, weight))
    }

    /// The lighter of two members (ties and equal loads to `a`, the one on the left).
    #[inline]
    fn lighter_of(&self, copies: &[AtomicU64], a: u32, b: u32) -> u32 {
        if a == NONE {
            return b;
        }
        if b == NONE {
            return a;
        }
        if lighter_load(self.load(copies, b as usize), self.load(copies, a as usize)) {
            b
        } else {
            a
        }
    }

    /// Recomputes node `k` from its children; whether the nodes above must be settled too for
    /// a change of `changed` (the node named, or names now, `changed`, or another member).
    fn settle(&self, k: usize, copies: &[AtomicU64], changed: usize) -> bool {
        let node = &self.nodes[k];
        loop {
            let old = node.load(Ordering::SeqCst);
            let best = self.lighter_of(copies, self.below(2 * k), self.below(2 * k + 1));
            let new = (old & !PAYLOAD).wrapping_add(VERSION_STEP) | u64::from(best);
            if node
                .compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                let was = (old & PAYLOAD) as u32;
                return was != best || best as usize == changed;
            }
        }
    }

    /// Branch and bound for the lightest eligible member below `k`: a subtree is entered only
    /// if its lightest member is lighter than the best found, lighter side first.
    fn min_eligible(
        &self,
        copies: &[AtomicU64],
        k: usize,
        eligible: &impl Fn(usize) -> bool,
        best: &mut Option<((u64, u32), usize)>,
    ) {
        let member = self.below(k);
        if member == NONE {
            return;
        }
        let Some(load) = self.load(copies, member as usize) else {
            return;
        };
        if best.is_some_and(|(b, _)| !lighter_load(Some(load), Some(b))) {
            return;
        }
        if k >= self.size {
            if eligible(member as usize) {
                *best = Some((load, member as usize));
            }
            return;
        }
        let (left, right) = (2 * k, 2 * k + 1);
        let right_first = {
            let (l, r) = (self.below(left), self.below(right));
            l == NONE
                || (r != NONE && lighter_load(self.load(copies, r as usize), self.load(copies, l as usize)))
        };
        let (first, second) = if right_first { (right, left) } else { (left, right) };
        self.min_eligible(copies, first, eligible, best);
        self.min_eligible(copies, second, eligible, best);
    }

    /// The first member in `from..to` (by index) below node `k` (covering positions
    /// `lo..hi`) that is eligible and no heavier than `bound`.
    #[allow(clippy::too_many_arguments)]
    fn first_at_most(
        &self,
        copies: &[AtomicU64],
        k: usize,
        lo: usize,
        hi: usize,
        from: usize,
        to: usize,
        bound: (u64, u32),
        eligible: &impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if hi <= from || to <= lo || from >= to {
            return None;
        }
        let member = self.below(k);
        if member == NONE {
            return None;
        }
        // Below a node, nothing is lighter than the member it names.
        if lighter_load(Some(bound), self.load(copies, member as usize)) {
            return None;
        }
        if k >= self.size {
            return eligible(member as usize).then_some(member as usize);
        }
        let mid = lo + (hi - lo) / 2;
        self.first_at_most(copies, 2 * k, lo, mid, from, to, bound, eligible)
            .or_else(|| self.first_at_most(copies, 2 * k + 1, mid, hi, from, to, bound, eligible))
    }
}

#[cfg(test)]
mod tests;
