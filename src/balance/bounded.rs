//! The load bound of "consistent hashing with bounded loads" (Mirrokni, Thorup and
//! Zadimoghaddam), shared by the ring and Maglev.
//!
//! Owns: computing `ceil(c × mean)` from the loads the caller reports.
//! Must not touch: which member owns a key, or any state of its own; the bound is recomputed
//! from the caller's figures at every pick.

use super::ServerLoads;

/// Bounded-load pools of at least this many members keep running sums of their loads (a
/// [`LoadIndex`](super::LoadIndex)); smaller ones add up their members at each pick.
///
/// Adding up costs about 1 ns a member; the reports that keep the sums cost each request some
/// 28 ns (docs/benchmarks.md, issue 14 item 5), so they pay from about 30 members on.
pub const SUMS_MIN_MEMBERS: usize = 32;

/// The in-flight limit of one pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    /// A member takes the key only while its in-flight count is below this.
    pub(crate) limit: u64,
    /// The sums came from the caller's `eligible_totals`, so they may disagree with its
    /// per-member figures and a bounded walk may find nobody: then the pick drops the bound.
    pub(crate) reported: bool,
}

/// The bound of this pick, or `None` when no member is eligible.
///
/// `mean = (total in-flight of eligible members + 1) / eligible members`, counting the request
/// being placed; `limit = ceil(c × mean)`. With `c >= 1` some eligible member is always under
/// the limit, so a walk over every member finds one. A `c` below 1 (or NaN) is treated as 1, the
/// tightest feasible bound.
pub(crate) fn load_bound(c: f64, members: usize, loads: &impl ServerLoads) -> Option<Bound> {
    let (total, eligible, reported) = match loads.eligible_totals() {
        Some((total, eligible)) if eligible > 0 => (total, eligible as u64, true),
        _ => {
            let (mut total, mut eligible) = (0u64, 0u64);
            for i in 0..members {
                if loads.eligible(i) {
                    total = total.saturating_add(loads.in_flight(i));
                    eligible += 1;
                }
            }
            (total, eligible, false)
        }
    };
    if eligible == 0 {
        return None;
    }
    let c = if c.is_nan() || c < 1.0 { 1.0 } else { c };
    let mean = (total as f64 + 1.0) / eligible as f64;
    Some(Bound {
        // `as` saturates, so an infinite factor means "no bound".
        limit: (c * mean).ceil() as u64,
        reported,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Loads for tests: eligibility and in-flight counts by member index.
    #[derive(Debug, Clone)]
    pub(crate) struct Loads {
        pub(crate) eligible: Vec<bool>,
        pub(crate) in_flight: Vec<u64>,
    }

    /// Loads whose caller reports (possibly wrong) totals.
    pub(crate) struct Reported(pub(crate) Loads, pub(crate) (u64, usize));

    impl ServerLoads for Reported {
        fn eligible(&self, index: usize) -> bool {
            self.0.eligible(index)
        }
        fn in_flight(&self, index: usize) -> u64 {
            self.0.in_flight(index)
        }
        fn eligible_totals(&self) -> Option<(u64, usize)> {
            Some(self.1)
        }
    }

    impl Loads {
        pub(crate) fn idle(n: usize) -> Loads {
            Loads {
                eligible: vec![true; n],
                in_flight: vec![0; n],
            }
        }
    }

    impl ServerLoads for Loads {
        fn eligible(&self, index: usize) -> bool {
            self.eligible.get(index).copied().unwrap_or(false)
        }
        fn in_flight(&self, index: usize) -> u64 {
            self.in_flight.get(index).copied().unwrap_or(0)
        }
    }

    #[test]
    fn bound_counts_the_request_being_placed() {
        let limit = |c, n, loads: &Loads| load_bound(c, n, loads).map(|b| b.limit);
        let loads = Loads::idle(4);
        // mean = 1/4, ceil(1.25 / 4) = 1: an idle member may take one request.
        assert_eq!(limit(1.25, 4, &loads), Some(1));
        let loads = Loads {
            eligible: vec![true, true, false, true],
            in_flight: vec![10, 2, 100, 0],
        };
        // mean = 13 / 3, 1.25 × 13 / 3 = 5.41..
        assert_eq!(limit(1.25, 4, &loads), Some(6));
        // The caller's own sums are used as given.
        let reported = Reported(loads, (12, 3));
        assert_eq!(
            load_bound(1.25, 4, &reported),
            Some(Bound {
                limit: 6,
                reported: true
            })
        );
        // Sums claiming no eligible member are not trusted.
        let reported = Reported(reported.0, (0, 0));
        assert_eq!(load_bound(1.25, 4, &reported).map(|b| b.reported), Some(false));
    }

    #[test]
    fn no_eligible_member_means_no_bound() {
        let loads = Loads {
            eligible: vec![false; 3],
            in_flight: vec![0; 3],
        };
        assert_eq!(load_bound(1.5, 3, &loads), None);
    }

    #[test]
    fn odd_factors_do_not_panic() {
        let loads = Loads::idle(2);
        let limit = |c| load_bound(c, 2, &loads).map(|b| b.limit);
        assert_eq!(limit(f64::NAN), Some(1));
        assert_eq!(limit(0.1), Some(1));
        assert_eq!(limit(f64::INFINITY), Some(u64::MAX));
    }
}
