//! Tests of the `Balancer` glue and of properties shared by every algorithm.

use super::testutil::{Loads, key_hashes, named, randoms, servers};
use super::*;
use proptest::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

fn algorithms() -> Vec<Algorithm> {
    vec![
        Algorithm::RoundRobin,
        Algorithm::LeastRequests,
        Algorithm::RandomTwo,
        Algorithm::ConsistentHash {
            vnodes: 40,
            hash: HashFunction::Xxh3,
            bounded_load: None,
        },
        Algorithm::ConsistentHash {
            vnodes: 5,
            hash: HashFunction::Sha1_28,
            bounded_load: Some(1.25),
        },
        Algorithm::Maglev {
            table_size: 1009,
            hash: HashFunction::Xxh3,
            bounded_load: None,
        },
        Algorithm::Maglev {
            table_size: 65_537,
            hash: HashFunction::Sha1_28,
            bounded_load: Some(1.5),
        },
    ]
}

#[test]
fn dispatch_and_hash_function() {
    let members = servers(3);
    for alg in algorithms() {
        let b = Balancer::new(&alg, &members);
        let expected = match &alg {
            Algorithm::ConsistentHash { hash, .. } | Algorithm::Maglev { hash, .. } => Some(*hash),
            _ => None,
        };
        assert_eq!(b.hash_function(), expected, "{alg:?}");
        let input = PickInput {
            key_hash: Some(7),
            random: 9,
        };
        assert!(b.pick(input, &Loads::idle(3)).is_some_and(|m| m < 3), "{alg:?}");
    }
}

#[test]
fn retry_skips_the_tried_server() {
    // The caller marks the tried server ineligible and picks again.
    let members = servers(5);
    for alg in algorithms() {
        let b = Balancer::new(&alg, &members);
        for (i, h) in key_hashes(1, 50).into_iter().enumerate() {
            let input = PickInput {
                key_hash: Some(h & 0x0FFF_FFFF),
                random: i as u64,
            };
            let mut loads = Loads::idle(5);
            let first = b.pick(input, &loads).expect("first pick");
            loads.eligible[first] = false;
            let second = b.pick(input, &loads).expect("retry pick");
            assert_ne!(first, second, "{alg:?}");
        }
    }
}

#[test]
fn empty_member_lists_pick_nothing() {
    for alg in algorithms() {
        let b = Balancer::new(&alg, &[]);
        assert_eq!(b.pick(PickInput::default(), &Loads::idle(0)), None, "{alg:?}");
    }
}

/// A discrete-event simulation of a hashed pool under bounded load: requests arrive one per tick
/// with skewed keys (a third on one hot key) and random durations; no clock is read.
fn simulate_bounded(alg: &Algorithm, c: f64) {
    let n = 10;
    let b = Balancer::new(alg, &servers(n));
    let mut loads = Loads::idle(n);
    let mut ends: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut rng = randoms(17);
    let keys = key_hashes(18, 500);
    let mut walked = 0u32;
    for now in 0..40_000u64 {
        while let Some(Reverse((end, m))) = ends.peek().copied() {
            if end > now {
                break;
            }
            ends.pop();
            loads.in_flight[m] -= 1;
        }
        // Some servers drop out of rotation for a while.
        for (i, e) in loads.eligible.iter_mut().enumerate() {
            *e = !(now / 5000 % 4 == 1 && i % 3 == 0);
        }
        let r = rng.next().unwrap_or(0);
        let key = if r.is_multiple_of(3) {
            keys[0]
        } else {
            keys[(r % 500) as usize]
        };
        let input = PickInput {
            key_hash: (!r.is_multiple_of(50)).then_some(key),
            random: r,
        };
        let eligible: Vec<usize> = (0..n).filter(|&i| loads.eligible[i]).collect();
        let total: u64 = eligible.iter().map(|&i| loads.in_flight[i]).sum();
        let bound = (c * (total as f64 + 1.0) / eligible.len() as f64).ceil() as u64;
        let m = b.pick(input, &loads).expect("some member is under the bound");
        assert!(loads.eligible[m]);
        assert!(
            loads.in_flight[m] < bound,
            "member {m} took a request at {} in flight, bound {bound}",
            loads.in_flight[m]
        );
        if input.key_hash.is_some() && m != b.pick_owner(key) {
            walked += 1;
        }
        loads.in_flight[m] += 1;
        let duration = 1 + (rng.next().unwrap_or(0) % 60);
        ends.push(Reverse((now + duration, m)));
    }
    // The hot key really pushed its owner to the bound.
    assert!(walked > 1000, "only {walked} requests walked");
}

impl Balancer {
    /// Owner of a key with everything eligible and idle, for the simulation's bookkeeping.
    fn pick_owner(&self, key: u64) -> usize {
        let input = PickInput {
            key_hash: Some(key),
            random: 0,
        };
        self.pick(input, &Loads::idle(10)).unwrap_or(usize::MAX)
    }
}

#[test]
fn bounded_load_ring_never_exceeds_the_bound() {
    simulate_bounded(
        &Algorithm::ConsistentHash {
            vnodes: 160,
            hash: HashFunction::Xxh3,
            bounded_load: Some(1.25),
        },
        1.25,
    );
}

#[test]
fn bounded_load_maglev_never_exceeds_the_bound() {
    simulate_bounded(
        &Algorithm::Maglev {
            table_size: 65_537,
            hash: HashFunction::Xxh3,
            bounded_load: Some(1.1),
        },
        1.1,
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn weights_at_the_bounds_never_panic(
        weights in proptest::collection::vec(prop_oneof![Just(0u32), Just(1), Just(256), Just(257), Just(u32::MAX), 1u32..=256], 1..40),
        vnodes in prop_oneof![Just(0u32), Just(1), Just(160), Just(u32::MAX)],
        table_size in prop_oneof![Just(0u32), Just(1), Just(4), Just(65_537), Just(65_536)],
        seed in any::<u64>(),
    ) {
        let members = named("w", &weights);
        let n = members.len();
        let algs = [
            Algorithm::RoundRobin,
            Algorithm::LeastRequests,
            Algorithm::RandomTwo,
            Algorithm::ConsistentHash { vnodes: vnodes.min(400), hash: HashFunction::Xxh3, bounded_load: Some(f64::NAN) },
            Algorithm::Maglev { table_size, hash: HashFunction::Sha1_28, bounded_load: Some(0.0) },
        ];
        for alg in &algs {
            let b = Balancer::new(alg, &members);
            for r in randoms(seed).take(20) {
                let picked = b.pick(PickInput { key_hash: Some(r), random: r }, &Loads::idle(n));
                prop_assert!(picked.is_some_and(|m| m < n));
            }
        }
    }

    #[test]
    fn only_eligible_members_are_picked(
        mask in proptest::collection::vec(any::<bool>(), 1..20),
        loads_seed in any::<u64>(),
        seed in any::<u64>(),
    ) {
        let n = mask.len();
        let mut rng = randoms(loads_seed);
        let loads = Loads { eligible: mask.clone(), in_flight: (0..n).map(|_| rng.next().unwrap_or(0) % 8).collect() };
        let any = mask.iter().any(|&e| e);
        for alg in algorithms() {
            let b = Balancer::new(&alg, &named("e", &vec![3; n]));
            for r in randoms(seed).take(30) {
                let input = PickInput { key_hash: (r % 4 != 0).then_some(r & 0x0FFF_FFFF), random: r };
                let picked = b.pick(input, &loads);
                prop_assert_eq!(picked.is_some(), any, "{:?}", alg);
                if let Some(m) = picked {
                    prop_assert!(mask[m], "{:?} picked ineligible {}", alg, m);
                }
            }
        }
    }
}

#[test]
fn caller_totals_are_used_and_wrong_ones_never_fail_a_pick() {
    use super::bounded::tests::Reported;
    let members = servers(4);
    for alg in [
        Algorithm::ConsistentHash {
            vnodes: 50,
            hash: HashFunction::Xxh3,
            bounded_load: Some(1.25),
        },
        Algorithm::Maglev {
            table_size: 1009,
            hash: HashFunction::Xxh3,
            bounded_load: Some(1.25),
        },
    ] {
        let b = Balancer::new(&alg, &members);
        let busy = Loads {
            eligible: vec![true; 4],
            in_flight: vec![5; 4],
        };
        for h in key_hashes(9, 100) {
            let input = PickInput {
                key_hash: Some(h),
                random: h,
            };
            // Right totals: ceil(1.25 × 21 / 4) = 7, everybody is under it: the owner takes it.
            let right = Reported(busy.clone(), (20, 4));
            assert_eq!(b.pick(input, &right), b.pick(input, &busy));
            // Wrong totals (limit 1, everybody at 5): the bound is dropped rather than failing.
            let wrong = Reported(busy.clone(), (0, 4));
            assert!(b.pick(input, &wrong).is_some(), "{alg:?}");
        }
        // Reported totals never make an all-ineligible pool pick.
        let none = Reported(
            Loads {
                eligible: vec![false; 4],
                in_flight: vec![0; 4],
            },
            (0, 4),
        );
        assert_eq!(b.pick(PickInput::default(), &none), None);
    }
}

#[test]
fn balancers_are_shared_across_threads() {
    fn shared<T: Send + Sync + 'static>(_: &T) {}
    shared(&Balancer::new(&Algorithm::LeastRequests, &servers(1)));
    // Concurrent picks on one value, as workers do through an Arc.
    let b = std::sync::Arc::new(Balancer::new(&Algorithm::RoundRobin, &servers(3)));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let b = std::sync::Arc::clone(&b);
            std::thread::spawn(move || {
                (0..3000)
                    .filter_map(|_| b.pick(PickInput::default(), &Loads::idle(3)))
                    .count()
            })
        })
        .collect();
    let picked: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    assert_eq!(picked, 6000);
}
