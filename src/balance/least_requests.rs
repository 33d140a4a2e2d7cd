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

/// Least in-flight requests relative to weight over a fixed member list.
#[derive(Debug)]
pub struct LeastRequests {
    weights: Box<[u32]>,
    counter: AtomicUsize,
    index: Arc<LoadIndex>,
}

impl LeastRequests {
    /// Builds it for `members`; weights are clamped to 1..=256.
    pub fn new(members: &[Member]) -> LeastRequests {
        let weights: Box<[u32]> = members.iter().map(|m| clamp_weight(m.weight)).collect();
        LeastRequests {
            index: Arc::new(LoadIndex::with_tree(&weights)),
            weights,
            counter: AtomicUsize::new(0),
        }
    }

    /// The tree of loads this balancer descends when the caller keeps it current.
    pub fn load_index(&self) -> &Arc<LoadIndex> {
        &self.index
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
            && let Some(i) = self.index.lightest(start, |i| loads.eligible(i))
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

    #[test]
    fn huge_counts_do_not_overflow() {
        assert!(lighter(u64::MAX - 1, 256, u64::MAX, 256));
        assert!(!lighter(u64::MAX, 1, u64::MAX, 256));
    }
}
