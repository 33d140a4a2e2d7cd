//! Slow start, pure: the ramp of a returning server's weight as a function of elapsed time, how
//! often to step it, and the weights a balancer gets while some server ramps.
//!
//! Owns: the numbers. Must not touch: clocks, atomics or pools (the health thread reads the time
//! and applies the ramp; `proxy::state` builds balancers from [`balancer_weights`]).

use std::time::Duration;

use crate::proxy::state::RAMP_FULL;

/// Where a ramp starts, in per mille of the full weight: 10 %, as Envoy's slow start
/// (`min_weight_percent`) does. Starting from zero would leave a lone returning server idle
/// for the first steps; HAProxy starts near zero but steps every few milliseconds.
pub const RAMP_START: u32 = 100;

/// Shortest time between two steps of a ramp: each step rebuilds the pool's balancer.
pub const MIN_STEP: Duration = Duration::from_secs(1);

/// Steps a ramp takes at most (one every `slow_start / 20` when that is over [`MIN_STEP`]).
pub const MAX_STEPS: u32 = 20;

/// Scaled weights aim at this magnitude while a ramp runs, so that 10 % of weight 1 still
/// differs from 100 % (balancers take integer weights).
const SCALE_TARGET: u32 = 100;

/// The ramp, in per mille of the full weight, `elapsed` into a slow start of `duration`: linear
/// from [`RAMP_START`] to [`RAMP_FULL`], full once `duration` has passed.
pub fn ramp_at(elapsed: Duration, duration: Duration) -> u32 {
    if elapsed >= duration || duration.is_zero() {
        return RAMP_FULL;
    }
    let span = u128::from(RAMP_FULL - RAMP_START);
    let done = span * elapsed.as_nanos() / duration.as_nanos();
    // `done < span` because `elapsed < duration`.
    RAMP_START + u32::try_from(done).unwrap_or(0)
}

/// How long to wait between two steps of a ramp over `duration`: `duration / 20`, but at
/// least [`MIN_STEP`].
pub fn step_every(duration: Duration) -> Duration {
    (duration / MAX_STEPS).max(MIN_STEP)
}

/// The balancer weights of servers given as `(weight, ramp per mille)`.
///
/// When nobody ramps these are the weights themselves (at least 1). While someone does, every
/// weight is first multiplied by one common factor (so that the largest is about
/// `SCALE_TARGET`), then by its ramp, so that shares keep their proportions and a ramped
/// weight-1 server really gets less than its neighbours.
pub fn balancer_weights(servers: impl Iterator<Item = (u32, u32)> + Clone) -> Vec<u32> {
    let ramping = servers.clone().any(|(_, r)| r < RAMP_FULL);
    if !ramping {
        return servers.map(|(w, _)| w.max(1)).collect();
    }
    let max_weight = servers.clone().map(|(w, _)| w.max(1)).max().unwrap_or(1);
    let scale = u64::from((SCALE_TARGET / max_weight).max(1));
    servers
        .map(|(w, r)| {
            let scaled = u64::from(w.max(1)) * scale * u64::from(r.min(RAMP_FULL)) / u64::from(RAMP_FULL);
            u32::try_from(scaled).unwrap_or(u32::MAX).max(1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ramp_is_linear_from_start_to_full() {
        let d = Duration::from_secs(30);
        assert_eq!(ramp_at(Duration::ZERO, d), RAMP_START);
        assert_eq!(ramp_at(Duration::from_secs(15), d), 550);
        assert_eq!(ramp_at(Duration::from_secs(30), d), RAMP_FULL);
        assert_eq!(ramp_at(Duration::from_secs(300), d), RAMP_FULL);
        assert_eq!(ramp_at(Duration::from_secs(1), Duration::ZERO), RAMP_FULL);
    }

    #[test]
    fn steps_are_a_twentieth_but_at_least_a_second() {
        assert_eq!(step_every(Duration::from_secs(60)), Duration::from_secs(3));
        assert_eq!(step_every(Duration::from_secs(30)), Duration::from_millis(1500));
        assert_eq!(step_every(Duration::from_secs(2)), Duration::from_secs(1));
    }

    #[test]
    fn weights_without_a_ramp_are_unchanged() {
        let w = balancer_weights([(1, RAMP_FULL), (3, RAMP_FULL), (0, RAMP_FULL)].into_iter());
        assert_eq!(w, vec![1, 3, 1]);
    }

    #[test]
    fn a_ramping_weight_one_server_gets_a_tenth() {
        let w = balancer_weights([(1, RAMP_FULL), (1, RAMP_START), (1, RAMP_FULL)].into_iter());
        assert_eq!(w, vec![100, 10, 100]);
        let w = balancer_weights([(3, RAMP_FULL), (1, 500)].into_iter());
        assert_eq!(w, vec![99, 16]);
        // Weights above the target cannot be scaled up; the ramp still applies to them.
        let w = balancer_weights([(256, RAMP_FULL), (200, RAMP_START)].into_iter());
        assert_eq!(w, vec![256, 20]);
    }

    proptest! {
        #[test]
        fn ramp_grows_and_stays_in_range(a in 0u64..100_000, b in 0u64..100_000, d in 1u64..100_000) {
            let d = Duration::from_millis(d);
            let (lo, hi) = (a.min(b), a.max(b));
            let r_lo = ramp_at(Duration::from_millis(lo), d);
            let r_hi = ramp_at(Duration::from_millis(hi), d);
            prop_assert!(r_lo <= r_hi);
            prop_assert!((RAMP_START..=RAMP_FULL).contains(&r_lo));
            prop_assert!((RAMP_START..=RAMP_FULL).contains(&r_hi));
        }

        #[test]
        fn ramped_shares_keep_their_order(
            servers in proptest::collection::vec((1u32..=256, 1u32..=RAMP_FULL), 1..20)
        ) {
            let w = balancer_weights(servers.iter().copied());
            prop_assert_eq!(w.len(), servers.len());
            for (i, a) in servers.iter().enumerate() {
                prop_assert!(w[i] >= 1);
                for (j, b) in servers.iter().enumerate() {
                    // A server with at least the weight and at least the ramp of another never
                    // gets a smaller balancer weight.
                    if a.0 >= b.0 && a.1 >= b.1 {
                        prop_assert!(w[i] >= w[j], "{:?} {:?} -> {} {}", a, b, w[i], w[j]);
                    }
                }
            }
        }
    }
}
