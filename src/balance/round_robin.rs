//! Smooth weighted round robin, as nginx does it (`ngx_http_upstream_get_peer`).
//!
//! Owns: the order in which a weighted member list takes its turns, and a lock-free rotation
//! over that order.
//! Must not touch: health, drain or connection limits (the caller's `eligible` says who may take
//! a request) and any lock: a pick is one relaxed `fetch_add` plus reads.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use super::visited::Visited;
use super::{Member, ServerLoads, clamp_weight, mix64};

/// Draws from the order when a member is rejected, before scanning the members.
const REASSIGN_DRAWS: usize = 8;

/// Above this many steps (members × period) the exact nginx simulation is replaced by stride
/// scheduling, which costs O(period × log members) instead.
const EXACT_SIMULATION_LIMIT: usize = 1 << 24;

/// A smooth weighted round robin over a fixed member list.
#[derive(Debug)]
pub struct RoundRobin {
    /// One period of the nginx order, as member indices.
    sequence: Box<[u32]>,
    members: usize,
    counter: AtomicUsize,
}

impl RoundRobin {
    /// Precomputes one period of the order; weights are clamped to 1..=256.
    pub fn new(members: &[Member]) -> RoundRobin {
        let weights: Vec<u32> = members.iter().map(|m| clamp_weight(m.weight)).collect();
        RoundRobin {
            sequence: turn_sequence(&weights).into_boxed_slice(),
            members: members.len(),
            counter: AtomicUsize::new(0),
        }
    }

    /// The next eligible member in turn, or `None` when none is eligible.
    #[inline]
    pub fn pick(&self, loads: &impl ServerLoads) -> Option<usize> {
        self.pick_where(|m| loads.eligible(m))
    }

    /// One period of the order (member indices); its length is the sum of the reduced weights.
    pub fn sequence(&self) -> &[u32] {
        &self.sequence
    }

    /// The next member in turn that satisfies `ok`.
    ///
    /// A rejected member's turn goes to a member drawn in proportion to weight among the others
    /// (a few draws from the order itself, at positions mixed from the ticket), so no single
    /// member inherits all the turns of a drained neighbour; after the draws, a plain scan of
    /// the members. Each member is asked at most once; the walk is bounded by the member count.
    #[inline]
    pub(crate) fn pick_where(&self, mut ok: impl FnMut(usize) -> bool) -> Option<usize> {
        let len = self.sequence.len();
        if len == 0 {
            return None;
        }
        let ticket = self.counter.fetch_add(1, AtomicOrdering::Relaxed);
        let first = self.sequence[ticket % len] as usize;
        if ok(first) {
            return Some(first);
        }
        self.reassign(ticket, first, ok)
    }

    #[cold]
    fn reassign(&self, ticket: usize, first: usize, mut ok: impl FnMut(usize) -> bool) -> Option<usize> {
        let n = self.members;
        let mut seen = Visited::new();
        seen.insert(first);
        let mut state = ticket as u64;
        for _ in 0..REASSIGN_DRAWS {
            let draw = mix64(&mut state);
            let pos = ((u128::from(draw) * self.sequence.len() as u128) >> 64) as usize;
            let m = self.sequence[pos] as usize;
            if seen.insert(m) {
                if ok(m) {
                    return Some(m);
                }
                if seen.saw_all(n) {
                    return None;
                }
            }
        }
        let offset = ticket % n;
        (0..n)
            .map(|k| (offset + k) % n)
            .find(|&m| seen.insert(m) && ok(m))
    }
}

/// One period of the smooth weighted round robin order for `weights` (each at least 1).
fn turn_sequence(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let reduced: Vec<u64> = weights.iter().map(|&w| u64::from(w / divisor)).collect();
    let period: u64 = reduced.iter().sum();
    let Ok(period) = usize::try_from(period) else {
        return Vec::new();
    };
    if weights.len().saturating_mul(period) <= EXACT_SIMULATION_LIMIT {
        nginx_order(&reduced, period)
    } else {
        stride_order(&reduced, period)
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// nginx's loop, step by step: every member gains its weight, the largest current weight wins
/// (the first listed on ties) and loses the total.
fn nginx_order(weights: &[u64], period: usize) -> Vec<u32> {
    let total = period as i64;
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(period);
    for _ in 0..period {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best as u32);
    }
    order
}

/// Stride scheduling: member i's k-th turn is due at (k + 1/2) / w_i; turns are taken in order
/// of due time, the first listed on ties. As smooth as nginx for large lists, O(log n) a turn.
fn stride_order(weights: &[u64], period: usize) -> Vec<u32> {
    #[derive(PartialEq, Eq)]
    struct Due {
        // Due time (2k + 1) / (2w) kept as a fraction to stay exact.
        num: u64,
        den: u64,
        index: u32,
    }
    impl Ord for Due {
        fn cmp(&self, other: &Self) -> Ordering {
            // Reversed so that the max-heap yields the earliest due time, then the lowest index.
            let lhs = u128::from(self.num) * u128::from(other.den);
            let rhs = u128::from(other.num) * u128::from(self.den);
            rhs.cmp(&lhs).then(other.index.cmp(&self.index))
        }
    }
    impl PartialOrd for Due {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    let mut heap: BinaryHeap<Due> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Due {
            num: 1,
            den: 2 * w,
            index: i as u32,
        })
        .collect();
    let mut order = Vec::with_capacity(period);
    while order.len() < period {
        let Some(mut due) = heap.pop() else { break };
        order.push(due.index);
        due.num += 2;
        heap.push(due);
    }
    order
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

    fn picks(rr: &RoundRobin, loads: &Loads, count: usize) -> Vec<usize> {
        (0..count).map(|_| rr.pick(loads).expect("eligible")).collect()
    }

    /// nginx's algorithm written out plainly, the reference for the precomputed order.
    fn reference(weights: &[i64], count: usize) -> Vec<usize> {
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut out = Vec::new();
        for _ in 0..count {
            let mut best: Option<usize> = None;
            for i in 0..weights.len() {
                current[i] += weights[i];
                if best.is_none_or(|b| current[i] > current[b]) {
                    best = Some(i);
                }
            }
            let b = best.expect("non-empty");
            current[b] -= total;
            out.push(b);
        }
        out
    }

    #[test]
    fn five_one_one_is_the_nginx_sequence() {
        let rr = RoundRobin::new(&members(&[5, 1, 1]));
        let loads = Loads::idle(3);
        let (a, b, c) = (0, 1, 2);
        let period = [a, a, b, a, c, a, a];
        let got = picks(&rr, &loads, 21);
        assert_eq!(&got[..7], &period);
        assert_eq!(&got[7..14], &period);
        assert_eq!(&got[14..], &period);
    }

    #[test]
    fn matches_reference_for_other_weight_sets() {
        for weights in [
            vec![1, 1, 1],
            vec![2, 1],
            vec![3, 2, 1],
            vec![4, 4, 2],
            vec![7, 3, 3, 1],
            vec![1, 256, 17, 3],
            vec![256, 256],
            vec![10, 20, 30, 40, 50],
        ] {
            let rr = RoundRobin::new(&members(&weights));
            let loads = Loads::idle(weights.len());
            let w: Vec<i64> = weights.iter().map(|&w| i64::from(w)).collect();
            let total = w.iter().sum::<i64>() as usize;
            assert_eq!(
                picks(&rr, &loads, 2 * total),
                reference(&w, 2 * total),
                "{weights:?}"
            );
        }
    }

    #[test]
    fn period_is_reduced_by_the_common_divisor() {
        let rr = RoundRobin::new(&members(&[10, 2, 2]));
        assert_eq!(rr.sequence(), &[0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn stride_order_keeps_weights_and_smoothness() {
        let weights = [5u64, 1, 1];
        let order = stride_order(&weights, 7);
        assert_eq!(order, vec![0, 0, 0, 1, 2, 0, 0]);
        // Large lists fall back to stride; every member still gets exactly its weight a period.
        let weights: Vec<u32> = (0..3000).map(|i| 1 + (i % 256)).collect();
        let seq = turn_sequence(&weights);
        assert_eq!(
            seq.len() as u64,
            weights.iter().map(|&w| u64::from(w)).sum::<u64>()
        );
        let mut counts = vec![0u32; weights.len()];
        for &m in &seq {
            counts[m as usize] += 1;
        }
        assert_eq!(counts, weights);
    }

    #[test]
    fn ineligible_members_are_skipped() {
        let rr = RoundRobin::new(&members(&[5, 1, 1]));
        let loads = Loads {
            eligible: vec![false, true, true],
            in_flight: vec![0; 3],
        };
        let got = picks(&rr, &loads, 7000);
        assert!(got.iter().all(|&m| m != 0));
        let b = got.iter().filter(|&&m| m == 1).count();
        // As nginx: with a out, b and c (equal weights) share its turns evenly.
        assert!((3300..=3700).contains(&b), "b took {b} of 7000");
    }

    #[test]
    fn turns_of_a_rejected_member_follow_the_others_weights() {
        let rr = RoundRobin::new(&members(&[3, 2, 1]));
        let loads = Loads {
            eligible: vec![false, true, true],
            in_flight: vec![0; 3],
        };
        let got = picks(&rr, &loads, 6000);
        let b = got.iter().filter(|&&m| m == 1).count();
        let c = got.iter().filter(|&&m| m == 2).count();
        assert_eq!(b + c, 6000);
        // nginx gives 2:1 (4000 : 2000).
        let ratio = b as f64 / c as f64;
        assert!((1.8..=2.2).contains(&ratio), "b:c = {b}:{c}");
    }

    #[test]
    fn only_one_eligible_member_takes_everything() {
        let rr = RoundRobin::new(&members(&[3, 1, 1, 1, 1]));
        let mut loads = Loads::idle(5);
        loads.eligible = vec![false, false, false, true, false];
        assert!(picks(&rr, &loads, 50).iter().all(|&m| m == 3));
    }

    #[test]
    fn none_eligible_gives_none() {
        let rr = RoundRobin::new(&members(&[5, 1, 1]));
        let loads = Loads {
            eligible: vec![false; 3],
            in_flight: vec![0; 3],
        };
        for _ in 0..10 {
            assert_eq!(rr.pick(&loads), None);
        }
    }

    #[test]
    fn rare_eligible_members_are_found_by_the_scan() {
        // Draws almost never hit the one eligible member; the scan after them does.
        let mut weights = vec![200; 40];
        weights[39] = 1;
        let rr = RoundRobin::new(&members(&weights));
        let mut loads = Loads::idle(40);
        loads.eligible = vec![false; 40];
        loads.eligible[39] = true;
        assert!(picks(&rr, &loads, 100).iter().all(|&m| m == 39));
        loads.eligible[39] = false;
        assert_eq!(rr.pick(&loads), None);
    }

    #[test]
    fn empty_member_list_picks_nothing() {
        let rr = RoundRobin::new(&[]);
        assert_eq!(rr.pick(&Loads::idle(0)), None);
    }
}
