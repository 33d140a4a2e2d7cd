//! Power of two random choices (Mitzenmacher), weight-aware: draw two members with probability
//! proportional to weight, send the request to the one with the lower `in_flight / weight`.
//!
//! Owns: turning the caller's random number into weighted draws, the comparison, and the bounded
//! redraws and final scan when draws hit ineligible members.
//! Must not touch: any source of randomness (the caller passes `PickInput::random`), locks,
//! health. A pick never allocates.

use super::least_requests::lighter;
use super::{Member, ServerLoads, clamp_weight, mix64};

/// Draws (including the first two) before falling back to a scan of the members.
const MAX_DRAWS: usize = 16;

/// Power of two random choices over a fixed member list.
#[derive(Debug)]
pub struct RandomTwo {
    weights: Box<[u32]>,
    /// Running sums of weights: member i owns draws in `cumulative[i-1]..cumulative[i]`.
    cumulative: Box<[u64]>,
    /// All weights equal: a draw is a plain index, no search.
    uniform: bool,
}

impl RandomTwo {
    /// Builds it for `members`; weights are clamped to 1..=256.
    pub fn new(members: &[Member]) -> RandomTwo {
        let weights: Box<[u32]> = members.iter().map(|m| clamp_weight(m.weight)).collect();
        let cumulative = weights
            .iter()
            .scan(0u64, |sum, &w| {
                *sum += u64::from(w);
                Some(*sum)
            })
            .collect();
        let uniform = weights.windows(2).all(|w| w[0] == w[1]);
        RandomTwo {
            weights,
            cumulative,
            uniform,
        }
    }

    /// The lighter of two weighted draws from `random`, or `None` when no member is eligible.
    pub fn pick(&self, random: u64, loads: &impl ServerLoads) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 {
            return None;
        }
        if n == 1 {
            return loads.eligible(0).then_some(0);
        }
        let mut state = random;
        let mut first: Option<usize> = None;
        for _ in 0..MAX_DRAWS {
            let m = self.draw(mix64(&mut state));
            if first == Some(m) || !loads.eligible(m) {
                continue;
            }
            match first {
                None => first = Some(m),
                Some(a) => return Some(self.lighter_of(a, m, loads)),
            }
        }
        if first.is_some() {
            // Only one eligible member drawn: the others are (almost surely) out.
            return first;
        }
        self.scan(mix64(&mut state), loads)
    }

    /// Member owning draw `x`: index `floor(x × total / 2^64)` in the weighted line.
    #[inline]
    fn draw(&self, x: u64) -> usize {
        let n = self.weights.len();
        if self.uniform {
            return ((u128::from(x) * n as u128) >> 64) as usize;
        }
        let total = self.cumulative[n - 1];
        let t = ((u128::from(x) * u128::from(total)) >> 64) as u64;
        self.cumulative.partition_point(|&c| c <= t)
    }

    #[inline]
    fn lighter_of(&self, a: usize, b: usize, loads: &impl ServerLoads) -> usize {
        let (fa, fb) = (loads.in_flight(a), loads.in_flight(b));
        if lighter(fb, self.weights[b], fa, self.weights[a]) {
            b
        } else {
            a
        }
    }

    /// Draws kept missing: the first two eligible members from a random start, lighter wins.
    #[cold]
    fn scan(&self, x: u64, loads: &impl ServerLoads) -> Option<usize> {
        let n = self.weights.len();
        let start = ((u128::from(x) * n as u128) >> 64) as usize;
        let mut found = (0..n).map(|k| (start + k) % n).filter(|&m| loads.eligible(m));
        let a = found.next()?;
        Some(match found.next() {
            Some(b) => self.lighter_of(a, b, loads),
            None => a,
        })
    }
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

    fn randoms(seed: u64) -> impl Iterator<Item = u64> {
        let mut state = seed;
        std::iter::repeat_with(move || mix64(&mut state))
    }

    #[test]
    fn draws_follow_weights() {
        let r = RandomTwo::new(&members(&[1, 2, 3, 4]));
        let mut counts = [0u32; 4];
        for x in randoms(7).take(100_000) {
            counts[r.draw(x)] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let expected = 10_000.0 * (i + 1) as f64;
            assert!((c as f64 - expected).abs() < expected * 0.05, "{counts:?}");
        }
    }

    #[test]
    fn idle_pool_spreads_in_proportion_to_weight() {
        // With equal loads the first draw wins, so picks follow the weights.
        let r = RandomTwo::new(&members(&[3, 1]));
        let loads = Loads::idle(2);
        let mut counts = [0u32; 2];
        for x in randoms(11).take(40_000) {
            counts[r.pick(x, &loads).expect("eligible")] += 1;
        }
        let ratio = f64::from(counts[0]) / f64::from(counts[1]);
        assert!((2.8..=3.2).contains(&ratio), "{counts:?}");
    }

    #[test]
    fn loaded_pool_stays_level_and_weighted() {
        // Requests finish in random order; two choices keep in-flight close to weight × level.
        let weights = [2, 1, 1, 1, 1, 1, 1, 1, 1, 2];
        let r = RandomTwo::new(&members(&weights));
        let mut loads = Loads::idle(weights.len());
        let mut active: Vec<usize> = Vec::new();
        let mut counts = [0u64; 10];
        let mut rng = randoms(3);
        let mut worst_spread = 0.0f64;
        for step in 0..50_000 {
            if active.len() >= 120 {
                let k = (rng.next().unwrap_or(0) % active.len() as u64) as usize;
                let done = active.swap_remove(k);
                loads.in_flight[done] -= 1;
            }
            let m = r.pick(rng.next().unwrap_or(0), &loads).expect("eligible");
            loads.in_flight[m] += 1;
            counts[m] += 1;
            active.push(m);
            if step > 1000 {
                let per_weight: Vec<f64> = loads
                    .in_flight
                    .iter()
                    .zip(weights)
                    .map(|(&f, w)| f as f64 / f64::from(w))
                    .collect();
                let max = per_weight.iter().cloned().fold(f64::MIN, f64::max);
                let min = per_weight.iter().cloned().fold(f64::MAX, f64::min);
                worst_spread = worst_spread.max(max - min);
            }
        }
        // Plain random choice would wander by tens of requests; two choices stay within a few.
        assert!(worst_spread <= 12.0, "spread {worst_spread}");
        let heavy = (counts[0] + counts[9]) as f64 / 2.0;
        let light = counts[1..9].iter().sum::<u64>() as f64 / 8.0;
        assert!((heavy / light - 2.0).abs() < 0.2, "{counts:?}");
    }

    #[test]
    fn only_eligible_members_are_picked() {
        let r = RandomTwo::new(&members(&[5, 1, 1, 1, 5]));
        let loads = Loads {
            eligible: vec![false, false, true, false, false],
            in_flight: vec![0; 5],
        };
        for x in randoms(5).take(1000) {
            assert_eq!(r.pick(x, &loads), Some(2));
        }
    }

    #[test]
    fn scan_finds_a_rare_eligible_member() {
        // 1 of 200 eligible, weight 1 against 256: draws nearly always miss, the scan finds it.
        let mut weights = vec![256; 200];
        weights[123] = 1;
        let r = RandomTwo::new(&members(&weights));
        let mut loads = Loads::idle(200);
        loads.eligible = vec![false; 200];
        loads.eligible[123] = true;
        for x in randoms(9).take(200) {
            assert_eq!(r.pick(x, &loads), Some(123));
        }
    }

    #[test]
    fn none_eligible_gives_none() {
        let r = RandomTwo::new(&members(&[1, 2, 3]));
        let loads = Loads {
            eligible: vec![false; 3],
            in_flight: vec![0; 3],
        };
        for x in randoms(1).take(50) {
            assert_eq!(r.pick(x, &loads), None);
        }
        assert_eq!(RandomTwo::new(&[]).pick(1, &Loads::idle(0)), None);
    }

    #[test]
    fn lighter_member_wins() {
        let r = RandomTwo::new(&members(&[1, 1]));
        let loads = Loads {
            eligible: vec![true; 2],
            in_flight: vec![9, 1],
        };
        // Any pair of distinct draws is {0, 1}: member 1 is lighter.
        for x in randoms(2).take(200) {
            assert_eq!(r.pick(x, &loads), Some(1));
        }
    }
}
