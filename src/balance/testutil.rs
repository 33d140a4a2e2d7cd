//! Helpers shared by the balance tests: member lists, seeded random numbers, loads.
//!
//! Owns: test fixtures only; compiled in tests alone.
//! Must not touch: the algorithms' own state.

use super::{Member, mix64};

pub(crate) use super::bounded::tests::Loads;

/// Members `{prefix}0`, `{prefix}1`, … with the given weights.
pub(crate) fn named(prefix: &str, weights: &[u32]) -> Vec<Member> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Member {
            name: format!("{prefix}{i}"),
            weight,
        })
        .collect()
}

/// `count` members `server-0` … of weight 1.
pub(crate) fn servers(count: usize) -> Vec<Member> {
    named("server-", &vec![1; count])
}

/// A seeded stream of well-mixed 64-bit numbers.
pub(crate) fn randoms(seed: u64) -> impl Iterator<Item = u64> {
    let mut state = seed;
    std::iter::repeat_with(move || mix64(&mut state))
}

/// `count` key hashes: xxh3 of 16-byte keys made from a seeded stream.
pub(crate) fn key_hashes(seed: u64, count: usize) -> Vec<u64> {
    let mut r = randoms(seed);
    (0..count)
        .map(|_| {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&r.next().unwrap_or(0).to_le_bytes());
            key[8..].copy_from_slice(&r.next().unwrap_or(0).to_le_bytes());
            xxhash_rust::xxh3::xxh3_64(&key)
        })
        .collect()
}

/// Keys per member for `owner` over `keys`.
pub(crate) fn shares(members: usize, keys: &[u64], owner: impl Fn(u64) -> Option<usize>) -> Vec<u64> {
    let mut counts = vec![0u64; members];
    for &k in keys {
        if let Some(m) = owner(k) {
            counts[m] += 1;
        }
    }
    counts
}

/// Most loaded count over the mean count.
pub(crate) fn peak_to_mean(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let mean = total as f64 / counts.len() as f64;
    counts.iter().copied().max().unwrap_or(0) as f64 / mean
}
