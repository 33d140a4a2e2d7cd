use super::*;
use crate::balance::testutil::{Loads, key_hashes, named, peak_to_mean, randoms, servers, shares};
use proptest::prelude::*;

fn maglev(members: &[Member]) -> Maglev {
    Maglev::new(members, DEFAULT_TABLE_SIZE, HashFunction::Xxh3, None)
}

fn entries(m: &Maglev, members: usize) -> Vec<u64> {
    let mut counts = vec![0u64; members];
    for &owner in m.table() {
        counts[owner as usize] += 1;
    }
    counts
}

#[test]
fn primes() {
    let primes: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
    assert_eq!(primes, vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
    assert!(is_prime(65_537));
    assert!(is_prime(MAX_TABLE_SIZE));
    assert!(!is_prime(65_536));
    assert_eq!(effective_table_size(65_536), 65_537);
    assert_eq!(effective_table_size(0), 2);
    assert_eq!(effective_table_size(u32::MAX), MAX_TABLE_SIZE);
}

#[test]
fn every_entry_is_filled_evenly() {
    let m = maglev(&servers(7));
    assert_eq!(m.table().len(), 65_537);
    let counts = entries(&m, 7);
    // Turns alternate strictly, so entry counts differ by at most one.
    let (lo, hi) = (counts.iter().min(), counts.iter().max());
    assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{counts:?}");
}

#[test]
fn balance_of_ten_servers() {
    // Measured peak: 1.0077× the mean over 1,000,000 keys (table entries differ by at most one).
    let m = maglev(&servers(10));
    let keys = key_hashes(1, 1_000_000);
    let counts = shares(10, &keys, |h| m.owner(h));
    let peak = peak_to_mean(&counts);
    assert!(peak <= 1.02, "peak {peak:.4} of {counts:?}");
}

#[test]
fn weights_two_to_one() {
    let members = named("server-", &[2, 1, 2, 1, 2, 1, 2, 1, 2, 1]);
    let m = maglev(&members);
    let keys = key_hashes(2, 1_000_000);
    let counts = shares(10, &keys, |h| m.owner(h));
    for pair in counts.chunks(2) {
        let ratio = pair[0] as f64 / pair[1] as f64;
        assert!((1.8..=2.2).contains(&ratio), "ratio {ratio:.3} of {counts:?}");
    }
    let e = entries(&m, 10);
    assert!(e.chunks(2).all(|p| p[0].abs_diff(2 * p[1]) <= 2), "{e:?}");
}

#[test]
fn removing_a_member_moves_its_keys_and_few_others() {
    // Measured: removing server-3 of 10 moves all its keys and 0.30% of the others' keys
    // (the paper's "minimal disruption" is this weaker form, not the ring's zero).
    let members = servers(10);
    let without: Vec<Member> = members.iter().filter(|m| m.name != "server-3").cloned().collect();
    let (a, b) = (maglev(&members), maglev(&without));
    let keys = key_hashes(4, 1_000_000);
    let (mut others, mut others_moved) = (0u64, 0u64);
    for &h in &keys {
        let before = a.owner(h).map(|i| members[i].name.as_str());
        let after = b.owner(h).map(|i| without[i].name.as_str());
        if before == Some("server-3") {
            assert_ne!(after, Some("server-3"));
        } else {
            others += 1;
            others_moved += u64::from(before != after);
        }
    }
    let fraction = others_moved as f64 / others as f64;
    assert!(fraction < 0.01, "{:.2}% of other keys moved", fraction * 100.0);
}

#[test]
fn adding_a_member_takes_its_share() {
    let old = servers(10);
    let new = servers(11);
    let (a, b) = (maglev(&old), maglev(&new));
    let keys = key_hashes(6, 1_000_000);
    let to_new = keys.iter().filter(|&&h| b.owner(h) == Some(10)).count();
    let moved = keys.iter().filter(|&&h| a.owner(h) != b.owner(h)).count();
    let expected = keys.len() as f64 / 11.0;
    assert!((to_new as f64 - expected).abs() < 0.05 * expected);
    // Every key the new member takes moves; a few others move too (measured 0.23% of all keys).
    assert!(moved >= to_new && (moved - to_new) as f64 / (keys.len() as f64) < 0.01);
}

#[test]
fn table_ignores_member_order() {
    let members = named("cache-", &[1, 2, 1, 3, 1]);
    let mut reversed = members.clone();
    reversed.reverse();
    let (a, b) = (maglev(&members), maglev(&reversed));
    for (x, y) in a.table().iter().zip(b.table()) {
        assert_eq!(members[*x as usize].name, reversed[*y as usize].name);
    }
}

#[test]
fn ineligible_owner_passes_to_another_member() {
    let members = servers(6);
    let m = maglev(&members);
    let mut loads = Loads::idle(6);
    loads.eligible[2] = false;
    let keys = key_hashes(8, 60_000);
    let mut inherited = vec![0u64; 6];
    for &h in &keys {
        let picked = m.pick(Some(h), &loads).expect("eligible");
        let owner = m.owner(h).expect("owner");
        if owner == 2 {
            inherited[picked] += 1;
        } else {
            assert_eq!(picked, owner, "only the ineligible member's keys move");
        }
    }
    // Its keys spread over the others instead of landing on one neighbour.
    assert_eq!(inherited[2], 0);
    let spread: Vec<u64> = inherited.iter().copied().filter(|&c| c > 0).collect();
    assert_eq!(spread.len(), 5, "{inherited:?}");
}

#[test]
fn small_tables_and_empty_sets_do_not_panic() {
    // A table smaller than the pool leaves members out; they still serve when the others cannot.
    let members = servers(10);
    let m = Maglev::new(&members, 4, HashFunction::Sha1_28, None);
    assert_eq!(m.table().len(), 5);
    let mut loads = Loads::idle(10);
    for e in loads.eligible.iter_mut().take(9) {
        *e = false;
    }
    for h in 0..20 {
        assert_eq!(m.pick(Some(h), &loads), Some(9));
    }
    let empty = maglev(&[]);
    assert_eq!(empty.pick(Some(3), &Loads::idle(0)), None);
    assert_eq!(empty.pick(None, &Loads::idle(0)), None);
    assert_eq!(empty.owner(3), None);
}

#[test]
fn none_eligible_gives_none() {
    let m = maglev(&servers(4));
    let loads = Loads {
        eligible: vec![false; 4],
        in_flight: vec![0; 4],
    };
    assert_eq!(m.pick(Some(1), &loads), None);
    assert_eq!(m.pick(None, &loads), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn picks_are_eligible(mask in proptest::collection::vec(any::<bool>(), 1..12), seed in any::<u64>(), bounded in any::<bool>()) {
        let n = mask.len();
        let m = Maglev::new(&servers(n), 251, HashFunction::Xxh3, bounded.then_some(1.1));
        let mut rng = randoms(seed);
        let loads = Loads { eligible: mask.clone(), in_flight: (0..n).map(|_| rng.next().unwrap_or(0) % 5).collect() };
        for h in key_hashes(seed, 200) {
            let picked = m.pick(Some(h), &loads);
            prop_assert_eq!(picked.is_some(), mask.iter().any(|&e| e));
            if let Some(p) = picked {
                prop_assert!(mask[p]);
            }
        }
    }

    #[test]
    fn any_order_gives_the_same_table(weights in proptest::collection::vec(1u32..5, 1..8), rot in 0usize..8) {
        let members = named("n", &weights);
        let mut rotated = members.clone();
        rotated.rotate_left(rot % members.len());
        let (a, b) = (Maglev::new(&members, 101, HashFunction::Xxh3, None), Maglev::new(&rotated, 101, HashFunction::Xxh3, None));
        for (x, y) in a.table().iter().zip(b.table()) {
            prop_assert_eq!(&members[*x as usize].name, &rotated[*y as usize].name);
        }
    }
}
