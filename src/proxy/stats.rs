//! Live figures counted on the request path: lock-free histograms of durations.
//!
//! Owns: the counting structures (atomics only, relaxed, no lock, no allocation per request).
//! Must not touch: clocks (the caller measures), formatting or export (`admin` reads these).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the duration buckets, in microseconds: from 0.5 ms (a proxy's own answers
/// and a warm upstream on the same host) to 60 s (the default response timeout).
pub const BUCKET_BOUNDS_US: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Number of buckets: one per bound, and one above the last.
pub const BUCKETS: usize = BUCKET_BOUNDS_US.len() + 1;

/// A histogram of durations whose buckets are atomics; observing is two relaxed additions.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

/// A copy of a histogram's counts at one moment (or the difference of two).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Count per bucket (not cumulative); the last counts everything above the last bound.
    pub buckets: [u64; BUCKETS],
    /// Sum of observed durations in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// Counts one duration.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKET_BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut s = HistogramSnapshot {
            sum_us: self.sum_us.load(Ordering::Relaxed),
            ..HistogramSnapshot::default()
        };
        for (d, b) in s.buckets.iter_mut().zip(&self.buckets) {
            *d = b.load(Ordering::Relaxed);
        }
        s
    }
}

impl HistogramSnapshot {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// What was observed since `earlier` (counts only grow, so this never underflows for a
    /// later snapshot of the same histogram; saturating otherwise).
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let mut d = HistogramSnapshot {
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
            ..HistogramSnapshot::default()
        };
        for i in 0..BUCKETS {
            d.buckets[i] = self.buckets[i].saturating_sub(earlier.buckets[i]);
        }
        d
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &HistogramSnapshot) {
        self.sum_us += other.sum_us;
        for i in 0..BUCKETS {
            self.buckets[i] += other.buckets[i];
        }
    }

    /// The `q` quantile (0..=1) as the upper bound of the bucket that holds it, in seconds;
    /// `None` without observations. Above the last bound it answers the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let bound = BUCKET_BOUNDS_US
                    .get(i)
                    .or(BUCKET_BOUNDS_US.last())
                    .copied()
                    .unwrap_or(0);
                return Some(bound as f64 / 1e6);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_bucket_of_their_upper_bound() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_micros(501));
        h.observe(Duration::from_secs(120));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[BUCKETS - 1], 1);
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_us, 500 + 501 + 120_000_000);
    }

    #[test]
    fn quantiles_answer_bucket_bounds() {
        let h = Histogram::default();
        for _ in 0..98 {
            h.observe(Duration::from_micros(300));
        }
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_millis(20));
        let s = h.snapshot();
        assert_eq!(s.quantile(0.5), Some(0.0005));
        assert_eq!(s.quantile(0.99), Some(0.025));
        assert_eq!(HistogramSnapshot::default().quantile(0.5), None);
    }

    #[test]
    fn differences_count_what_happened_between() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(1));
        let a = h.snapshot();
        h.observe(Duration::from_millis(3));
        let d = h.snapshot().since(&a);
        assert_eq!(d.count(), 1);
        assert_eq!(d.buckets[3], 1);
        assert_eq!(d.sum_us, 3_000);
    }
}
