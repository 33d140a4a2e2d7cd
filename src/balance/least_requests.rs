//! Least requests: the eligible member with the fewest in-flight requests relative to its
//! weight, ties broken in rotation.
//!
//! Owns: comparing loads (`in_flight_a × weight_b` against `in_flight_b × weight_a`, exact in
//! integers), the rotating start that spreads ties, and the choice between the tree of its
//! [`LoadIndex`] (when the caller keeps it) and one pass over the members.
//! Must not touch: the in-flight counters themselves (the caller reports them), health, locks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{LoadIndex, Member, ServerLoads, clamp_weight};

/// Pools of at least this many members keep a tree of their loads; smaller ones are scanned.
///
/// A pass costs about 2.7 ns a member; a descent of the tree 65 to 170 ns and the two reports of
/// each request to it some 50 ns more (docs/benchmarks.md, issue 14 item 5): the two break even
/// near 64 members, and a pool without a tree makes no reports at all.
pub const TREE_MIN_MEMBERS: usize = 64;

/// Least in-flight requests relative to weight over a fixed member list.
#[derive(Debug)]
pub struct LeastRequests {
    weights: Box<[u32]>,
    counter: AtomicUsize,
    index: Option<Arc<LoadIndex>>,
}

impl LeastRequests {
    /// Builds it for `members`; weights are clamped to 1..=256. From [`TREE_MIN_MEMBERS`]
    /// members on it has a tree of loads (see [`LeastRequests::load_index`]).
    pub fn new(members: &[Member]) -> LeastRequests {
        LeastRequests::with_tree_from(members, TREE_MIN_MEMBERS)
    }

    /// Builds it with a tree of loads if `members` has at least `tree_min` members.
    pub fn with_tree_from(members: &[Member], tree_min: usize) -> LeastRequests {
        let weights: Box<[u32]> = members.iter().map(|m| clamp_weight(m.weight)).collect();
        LeastRequests {
            index: (weights.len() >= tree_min).then(|| Arc::new(LoadIndex::with_tree(&weights))),
            weights,
            counter: AtomicUsize::new(0),
        }
    }

    /// The tree of loads this balancer descends when the caller keeps it current (`None` for
    /// a pool small enough to scan).
    pub fn load_index(&self) -> Option<&Arc<LoadIndex>> {
        self.index.as_ref()
    }

    /// The eligible member with the lowest `in_flight / weight`, or `None` when none is eligible.
    ///
    /// Ties go to the first member met from a start that rotates at each pick, so they (an idle
    /// pool) take turns. When the caller keeps the [`LoadIndex`] (`loads.indexed()`), its tree
    /// gives that member in O(log n); otherwise, or when the tree finds nobody, one pass over
    /// the members does.
    pub fn pick(&self, loads: &impl ServerLoads) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 {
            return None;
        }
        let start = self.counter.fetch_add(1, Ordering::Relaxed) % n;
        if loads.indexed()
            && let Some(index) = &self.index
            && let Some(i) = index.lightest(start, |i| loads.eligible(i))
        {
            return Some(i);
        }
        self.scan(start, loads)
    }

    /// One pass from `start`: the first member met among equals wins.
    fn scan(&self, start: usize, loads: &impl ServerLoads) -> Option<usize> {
        let n = self.weights.len();
        let mut best: Option<(usize, u64, u32)> = None;
        for k in 0..n {
            let i = if start + k >= n { start + k - n } else { start + k };
            if !loads.eligible(i) {
                continue;
            }
            let in_flight = loads.in_flight(i);
            if in_flight == 0 {
                // Nothing can be strictly lighter than an idle member.
                return Some(i);
            }
            let weight = self.weights[i];
            if best.is_none_or(|(_, f, w)| lighter(in_flight, weight, f, w)) {
                best = Some((i, in_flight, weight));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

/// Whether `fa / wa < fb / wb`, without division or overflow.
#[inline]
pub(crate) fn lighter(fa: u64, wa: u32, fb: u64, wb: u32) -> bool {
    u128::from(fa) * u128::from(wb) < u128::from(fb) * u128::from(wa)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::balance::bounded::tests::Loads;

    fn members(weights: &[u32]) -> Vec<Member> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Member {
                name: format!("m{i}"),
                weight,
            })
            .collect()
    }

    #[test]
    fn picks_the_lightest_relative_to_weight() {
        let lr = LeastRequests::new(&members(&[1, 4, 2]));
        let loads = Loads {
            eligible: vec![true; 3],
            // Ratios 3, 2.5, 3.
            in_flight: vec![3, 10, 6],
        };
        for _ in 0..5 {
            assert_eq!(lr.pick(&loads), Some(1));
        }
    }

    #[test]
    fn ties_rotate() {
        let lr = LeastRequests::new(&members(&[1, 1, 1, 1]));
        let loads = Loads {
            eligible: vec![true; 4],
            in_flight: vec![2, 2, 2, 2],
        };
        let got: Vec<_> = (0..8).map(|_| lr.pick(&loads).expect("eligible")).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 0, 1, 2, 3]);
    }

    #[test]
    fn only_eligible_members_are_picked() {
        let lr = LeastRequests::new(&members(&[1, 1, 1]));
        let loads = Loads {
            eligible: vec![false, true, false],
            in_flight: vec![0, 50, 0],
        };
        for _ in 0..6 {
            assert_eq!(lr.pick(&loads), Some(1));
        }
    }

    #[test]
    fn none_eligible_gives_none() {
        let lr = LeastRequests::new(&members(&[1, 2]));
        let loads = Loads {
            eligible: vec![false; 2],
            in_flight: vec![0; 2],
        };
        assert_eq!(lr.pick(&loads), None);
        assert_eq!(LeastRequests::new(&[]).pick(&Loads::idle(0)), None);
    }

    #[test]
    fn in_flight_follows_weights_when_nothing_completes() {
        // Every pick adds a request and none finishes: in-flight grows in proportion to weight.
        let lr = LeastRequests::new(&members(&[2, 1, 1]));
        let mut loads = Loads::idle(3);
        for _ in 0..4000 {
            let m = lr.pick(&loads).expect("eligible");
            loads.in_flight[m] += 1;
        }
        assert!(loads.in_flight[0].abs_diff(2000) <= 2, "{:?}", loads.in_flight);
        assert!(loads.in_flight[1].abs_diff(1000) <= 2, "{:?}", loads.in_flight);
        assert!(loads.in_flight[2].abs_diff(1000) <= 2, "{:?}", loads.in_flight);
    }

    #[test]
    fn spread_is_even_with_completions() {
        // Requests complete in pick order after a fixed lag: the pool stays level.
        let lr = LeastRequests::new(&members(&[1; 10]));
        let mut loads = Loads::idle(10);
        let mut queue = std::collections::VecDeque::new();
        let mut counts = [0u32; 10];
        for _ in 0..10_000 {
            if queue.len() == 35 {
                let done: usize = queue.pop_front().expect("non-empty");
                loads.in_flight[done] -= 1;
            }
            let m = lr.pick(&loads).expect("eligible");
            loads.in_flight[m] += 1;
            counts[m] += 1;
            queue.push_back(m);
            let max = loads.in_flight.iter().max().copied().unwrap_or(0);
            let min = loads.in_flight.iter().min().copied().unwrap_or(0);
            assert!(max - min <= 1, "{:?}", loads.in_flight);
        }
        assert!(counts.iter().all(|&c| c.abs_diff(1000) <= 10), "{counts:?}");
    }

    /// Loads whose caller keeps the balancer's index current.
    struct Indexed(Loads);

    impl ServerLoads for Indexed {
        fn eligible(&self, index: usize) -> bool {
            self.0.eligible(index)
        }
        fn in_flight(&self, index: usize) -> u64 {
            self.0.in_flight(index)
        }
        fn indexed(&self) -> bool {
            true
        }
    }

    fn pool() -> impl Strategy<Value = (Vec<u32>, Vec<u64>, Vec<bool>, usize)> {
        (1usize..70).prop_flat_map(|n| {
            (
                prop::collection::vec(prop::sample::select(vec![1u32, 1, 2, 5, 256]), n),
                prop::collection::vec(0u64..4, n),
                prop::collection::vec(prop::bool::weighted(0.7), n),
                0usize..8,
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// With its index kept, a pick is the pass's choice, pick after pick (the rotating
        /// start stays in step), whoever is eligible.
        #[test]
        fn indexed_picks_are_the_scans((weights, in_flight, eligible, picks) in pool()) {
            let members: Vec<Member> = weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| Member { name: format!("m{i}"), weight })
                .collect();
            let tree = LeastRequests::with_tree_from(&members, 1);
            let pass = LeastRequests::with_tree_from(&members, usize::MAX);
            prop_assert!(pass.load_index().is_none());
            let mut loads = Loads { eligible, in_flight };
            let index = tree.load_index().expect("a tree");
            // The index stands for every member; eligibility is the caller's alone.
            index.refresh_all(|i| (loads.in_flight[i], true));
            for k in 0..picks * 3 {
                let got = tree.pick(&Indexed(loads.clone()));
                prop_assert_eq!(got, pass.pick(&loads));
                if let Some(m) = got {
                    loads.in_flight[m] += 1;
                    index.refresh(m, || (loads.in_flight[m], true));
                }
                if k % 3 == 2 {
                    let m = k % loads.in_flight.len();
                    loads.in_flight[m] = loads.in_flight[m].saturating_sub(1);
                    index.refresh(m, || (loads.in_flight[m], true));
                }
            }
        }
    }

    #[test]
    fn small_pools_have_no_tree() {
        assert!(
            LeastRequests::new(&members(&[1; TREE_MIN_MEMBERS - 1]))
                .load_index()
                .is_none()
        );
        assert!(
            LeastRequests::new(&members(&[1; TREE_MIN_MEMBERS]))
                .load_index()
                .is_some()
        );
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        assert!(lighter(u64::MAX - 1, 256, u64::MAX, 256));
        assert!(!lighter(u64::MAX, 1, u64::MAX, 256));
    }
}
