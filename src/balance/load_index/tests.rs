use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use proptest::prelude::*;

use super::*;

/// Plain figures of a pool: what the caller's counters say.
#[derive(Debug, Clone)]
struct Figures {
    in_flight: Vec<u64>,
    standing: Vec<bool>,
}

impl Figures {
    fn idle(n: usize) -> Figures {
        Figures {
            in_flight: vec![0; n],
            standing: vec![true; n],
        }
    }

    fn read(&self, i: usize) -> (u64, bool) {
        (self.in_flight[i], self.standing[i])
    }

    /// Changes member `i` and reports it, as the proxy does.
    fn set(&mut self, index: &LoadIndex, i: usize, in_flight: u64, standing: bool) {
        self.in_flight[i] = in_flight;
        self.standing[i] = standing;
        index.refresh(i, || self.read(i));
    }

    fn sums(&self) -> (u64, usize) {
        let in_flight = (0..self.in_flight.len())
            .filter(|&i| self.standing[i])
            .map(|i| self.in_flight[i])
            .sum();
        (in_flight, self.standing.iter().filter(|&&s| s).count())
    }
}

/// The linear scan of least requests over the same figures: the lightest eligible member
/// relative to weight, the first met from `start` among equals.
fn scan(weights: &[u32], f: &Figures, start: usize, eligible: impl Fn(usize) -> bool) -> Option<usize> {
    let n = weights.len();
    let mut best: Option<(usize, u64, u32)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        if !f.standing[i] || !eligible(i) {
            continue;
        }
        if best.is_none_or(|(_, bf, bw)| lighter(f.in_flight[i], weights[i], bf, bw)) {
            best = Some((i, f.in_flight[i], weights[i]));
        }
    }
    best.map(|(i, _, _)| i)
}

/// Every node names the lightest member below it (the leftmost among equals).
fn assert_settled(index: &LoadIndex, weights: &[u32], f: &Figures) {
    let tree = index.tree.as_ref().expect("tree");
    for k in 1..tree.size {
        let depth = usize::BITS - 1 - k.leading_zeros();
        let span = tree.size >> depth;
        let lo = (k << (tree.size.trailing_zeros() - depth)) - tree.size;
        let members: Vec<usize> = (lo..lo + span).filter(|&i| i < weights.len()).collect();
        let want = members
            .iter()
            .copied()
            .reduce(|a, b| {
                let load = |i: usize| f.standing[i].then_some((f.in_flight[i], weights[i]));
                if lighter_load(load(b), load(a)) { b } else { a }
            })
            .map_or(NONE, |i| i as u32);
        assert_eq!(tree.below(k), want, "node {k} over {members:?}: {f:?}");
    }
}

#[test]
fn sums_follow_in_flight_and_standing() {
    let index = LoadIndex::sums_only(3);
    let mut f = Figures::idle(3);
    index.refresh_all(|i| f.read(i));
    assert_eq!(index.totals(), (0, 3));
    f.set(&index, 0, 5, true);
    f.set(&index, 2, 7, true);
    assert_eq!(index.totals(), (12, 3));
    // A drained member's requests leave the sum with it, and come back with it.
    f.set(&index, 2, 7, false);
    assert_eq!(index.totals(), (5, 2));
    f.set(&index, 2, 6, false);
    f.set(&index, 2, 6, true);
    assert_eq!(index.totals(), (11, 3));
    // Out of range is ignored; an unchanged refresh changes nothing.
    index.refresh(9, || (100, true));
    index.refresh(0, || (5, true));
    assert_eq!(index.totals(), (11, 3));
    assert!(index.lightest(0, |_| true).is_none(), "no tree, no pick");
}

#[test]
fn tree_names_the_lightest_relative_to_weight() {
    let weights = [1, 4, 2, 1, 1];
    let index = LoadIndex::with_tree(&weights);
    let mut f = Figures::idle(5);
    f.in_flight = vec![3, 10, 6, 4, 9];
    index.refresh_all(|i| f.read(i));
    assert_settled(&index, &weights, &f);
    // Ratios 3, 2.5, 3, 4, 9.
    assert_eq!(index.lightest(0, |_| true), Some(1));
    assert_eq!(index.lightest(3, |_| true), Some(1));
    // Member 1 already tried: 0 and 2 tie at 3; the first from the start wins.
    assert_eq!(index.lightest(0, |i| i != 1), Some(0));
    assert_eq!(index.lightest(1, |i| i != 1), Some(2));
    assert_eq!(index.lightest(3, |i| i != 1), Some(0));
    // Out of rotation, member 1 is never named.
    f.set(&index, 1, 0, false);
    assert_settled(&index, &weights, &f);
    assert_eq!(index.lightest(1, |_| true), Some(2));
    assert_eq!(index.lightest(0, |i| i != 0 && i != 2), Some(3));
}

#[test]
fn ties_go_to_the_first_from_the_start() {
    let weights = [1; 6];
    let index = LoadIndex::with_tree(&weights);
    let f = Figures::idle(6);
    index.refresh_all(|i| f.read(i));
    let got: Vec<_> = (0..12).map(|s| index.lightest(s % 6, |_| true)).collect();
    let want: Vec<_> = (0..12).map(|s| Some(s % 6)).collect();
    assert_eq!(got, want);
}

#[test]
fn nobody_eligible_or_in_rotation_gives_none() {
    for n in [0usize, 1, 2, 3, 5, 8] {
        let index = LoadIndex::with_tree(&vec![1; n]);
        assert_eq!(
            index.lightest(0, |_| true),
            None,
            "{n} members, none reported yet"
        );
        let mut f = Figures::idle(n);
        index.refresh_all(|i| f.read(i));
        assert_eq!(index.lightest(0, |_| false), None);
        if n > 0 {
            assert!(index.lightest(n - 1, |_| true).is_some());
            for i in 0..n {
                f.set(&index, i, 1, false);
            }
            assert_eq!(index.lightest(0, |_| true), None);
            assert_eq!(index.totals(), (0, 0));
        }
    }
}

#[test]
fn a_single_member() {
    let index = LoadIndex::with_tree(&[3]);
    let mut f = Figures::idle(1);
    index.refresh_all(|i| f.read(i));
    assert_eq!(index.lightest(0, |_| true), Some(0));
    f.set(&index, 0, 40, true);
    assert_eq!(index.lightest(0, |_| true), Some(0));
    assert_eq!(index.totals(), (40, 1));
}

#[test]
fn huge_counts_saturate_instead_of_spilling() {
    let index = LoadIndex::with_tree(&[1, 1]);
    let mut f = Figures::idle(2);
    index.refresh_all(|i| f.read(i));
    f.set(&index, 0, u64::MAX, true);
    assert_eq!(index.lightest(0, |_| true), Some(1));
    assert_eq!(index.totals(), (IN_FLIGHT, 2));
}

/// One change of one member.
#[derive(Debug, Clone)]
struct Change {
    member: usize,
    in_flight: u64,
    standing: bool,
}

fn changes(n: usize) -> impl Strategy<Value = Vec<Change>> {
    // Few distinct counts, so that ties are common.
    let change =
        (0..n, 0u64..6, prop::bool::weighted(0.8)).prop_map(|(member, in_flight, standing)| Change {
            member,
            in_flight,
            standing,
        });
    prop::collection::vec(change, 0..60)
}

fn pool() -> impl Strategy<Value = (Vec<u32>, Vec<Change>, Vec<bool>, usize)> {
    (1usize..40).prop_flat_map(|n| {
        (
            prop::collection::vec(prop::sample::select(vec![1u32, 1, 2, 3, 4, 256]), n),
            changes(n),
            prop::collection::vec(prop::bool::weighted(0.8), n),
            0..n,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// After any sequence of changes the tree's pick is the linear scan's choice, for any start
    /// and any members refused by the caller (tried, at `max_conns`), and the sums are the sums.
    #[test]
    fn tree_pick_equals_the_scan((weights, changes, accepted, start) in pool()) {
        let n = weights.len();
        let index = LoadIndex::with_tree(&weights);
        let mut f = Figures::idle(n);
        index.refresh_all(|i| f.read(i));
        for c in &changes {
            f.set(&index, c.member, c.in_flight, c.standing);
            prop_assert_eq!(index.totals(), f.sums());
            prop_assert_eq!(index.lightest(start, |_| true), scan(&weights, &f, start, |_| true));
        }
        assert_settled(&index, &weights, &f);
        for s in 0..n {
            let eligible = |i: usize| accepted[i];
            prop_assert_eq!(index.lightest(s, eligible), scan(&weights, &f, s, eligible));
        }
    }

    /// The sums-only index keeps the same sums.
    #[test]
    fn sums_equal_the_summed_figures((weights, changes, _, _) in pool()) {
        let index = LoadIndex::sums_only(weights.len());
        let mut f = Figures::idle(weights.len());
        index.refresh_all(|i| f.read(i));
        for c in &changes {
            f.set(&index, c.member, c.in_flight, c.standing);
            prop_assert_eq!(index.totals(), f.sums());
        }
    }
}

/// Threads change members' counters and standing at random, each reporting its own changes:
/// once they stop, the index is exact.
#[test]
fn concurrent_changes_leave_it_exact() {
    const N: usize = 37;
    let weights: Vec<u32> = (0..N as u32).map(|i| 1 + i % 3).collect();
    let index = LoadIndex::with_tree(&weights);
    let in_flight: Vec<AtomicU64> = (0..N).map(|_| AtomicU64::new(0)).collect();
    let standing: Vec<AtomicBool> = (0..N).map(|_| AtomicBool::new(true)).collect();
    let read = |i: usize| {
        (
            in_flight[i].load(Ordering::SeqCst),
            standing[i].load(Ordering::SeqCst),
        )
    };
    index.refresh_all(read);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (index, in_flight, standing) = (&index, &in_flight, &standing);
            s.spawn(move || {
                let mut state = t + 1;
                let mut mine: Vec<usize> = Vec::new();
                for _ in 0..20_000 {
                    let r = crate::balance::mix64(&mut state);
                    let i = (r % N as u64) as usize;
                    match (r >> 32) % 8 {
                        // A request starts, or one of this thread's ends.
                        0..=3 => {
                            in_flight[i].fetch_add(1, Ordering::SeqCst);
                            mine.push(i);
                            index.refresh(i, || read(i));
                        }
                        4..=6 => {
                            if let Some(j) = mine.pop() {
                                in_flight[j].fetch_sub(1, Ordering::SeqCst);
                                index.refresh(j, || read(j));
                            }
                        }
                        _ => {
                            standing[i].store(!(r >> 40).is_multiple_of(4), Ordering::SeqCst);
                            index.refresh(i, || read(i));
                        }
                    }
                    if r.is_multiple_of(16) {
                        std::hint::black_box(index.lightest(i, |m| m != i));
                    }
                }
            });
        }
    });
    let f = Figures {
        in_flight: in_flight.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
        standing: standing.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
    };
    assert_eq!(index.totals(), f.sums());
    assert_settled(&index, &weights, &f);
    for s in 0..N {
        assert_eq!(index.lightest(s, |_| true), scan(&weights, &f, s, |_| true));
    }
}
