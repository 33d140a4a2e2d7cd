//! Live figures counted on the request path: lock-free histograms of durations and the
//! per-route answer counters.
//!
//! Owns: the counting structures (atomics only, relaxed, no lock, no allocation per request
//! once a (server, status) pair has been seen on a route).
//! Must not touch: clocks (the caller measures), formatting or export (`admin` reads these).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

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

/// A duration placed in its bucket once, to be counted in several histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    bucket: usize,
    us: u64,
}

impl Observation {
    /// The bucket of `d`.
    #[inline]
    pub fn of(d: Duration) -> Observation {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Observation {
            bucket: BUCKET_BOUNDS_US.partition_point(|&b| b < us),
            us,
        }
    }
}

impl Histogram {
    /// Counts one duration.
    #[inline]
    pub fn observe(&self, d: Duration) {
        self.add(Observation::of(d));
    }

    /// Counts one duration already placed in its bucket.
    #[inline]
    pub fn add(&self, o: Observation) {
        if let Some(b) = self.buckets.get(o.bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(o.us, Ordering::Relaxed);
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

/// Answers of one status code by one server on one route, as read for export: a sample of
/// `ringway_requests_total{route,pool,server,code}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeCount {
    /// Id of the server that answered (0: none, Ringway answered itself).
    pub server_id: u64,
    /// Name of that server ("" for none).
    pub server: String,
    /// Status code.
    pub code: u16,
    /// Answers counted.
    pub count: u64,
}

/// A counter of the overflow map (pairs that found no slot in the table).
#[derive(Debug)]
struct CodeCell {
    count: AtomicU64,
}

/// Hashes the `(server id, code)` keys of the overflow map: one multiplication (Fibonacci
/// hashing); the keys are small integers, so SipHash's protection buys nothing here.
#[derive(Default)]
pub struct KeyHasher(u64);

const FIBONACCI: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(FIBONACCI);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(FIBONACCI);
    }
}

type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// Slots of a route's counter table (a power of two): a route seldom sees more `(server,
/// status)` pairs than this (ten servers with five codes each use 50).
const SLOTS: usize = 128;
/// Slots looked at for a pair before it goes to the overflow map.
const MAX_PROBES: usize = 16;

/// One `(server, status)` counter of the table; key 0 is a free slot.
#[derive(Debug, Default)]
struct Slot {
    key: AtomicU64,
    count: AtomicU64,
}

/// Live figures of one route (or of the requests no route matched), shared by every snapshot
/// in which the route keeps its name and pool.
///
/// The `(server, status)` counters of `ringway_requests_total` live in a fixed table of
/// atomic slots per route, open addressing: a pair's slot is found by hashing its key and is
/// claimed once with a compare-and-swap, so counting is a few loads and one relaxed addition,
/// with no lock, no allocation and no reference count. The rare pair that finds no slot
/// within 16 probes goes to an overflow map read through `arc-swap` and replaced whole (read,
/// copy, update) on first sight, so no pair is ever lost. An `arc-swap`'d map alone cost about
/// 70 instructions and two locked operations per request; per-server tables of every status
/// code would cost kilobytes per server and route and still need somewhere for the rest.
/// Server names, needed only for export, are registered when a server is first seen.
#[derive(Debug)]
pub struct RouteStats {
    /// Route name ("" for requests that matched no route).
    pub name: String,
    /// The pool the route forwards to, if it does.
    pub pool: Option<String>,
    /// Time from the request head's arrival to the end of the response, every answer.
    pub duration: Histogram,
    /// Answers with a 5xx status.
    pub responses_5xx: AtomicU64,
    slots: Box<[Slot]>,
    overflow: ArcSwap<KeyMap<Arc<CodeCell>>>,
    names: ArcSwap<KeyMap<String>>,
}

/// `(server id, status)` as one key; server ids are far below 2^48, and a status is never 0,
/// so no key is 0.
fn code_key(server_id: u64, code: u16) -> u64 {
    (server_id << 16) | u64::from(code)
}

impl RouteStats {
    /// Empty figures for a route.
    pub fn new(name: &str, pool: Option<&str>) -> RouteStats {
        RouteStats {
            name: name.to_owned(),
            pool: pool.map(str::to_owned),
            duration: Histogram::default(),
            responses_5xx: AtomicU64::new(0),
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            overflow: ArcSwap::from_pointee(KeyMap::default()),
            names: ArcSwap::from_pointee(KeyMap::default()),
        }
    }

    /// Counts one answer: by whom (`(id, name)` of the server, `None` when Ringway answered
    /// itself), its status and its duration.
    #[inline]
    pub fn record(&self, server: Option<(u64, &str)>, status: u16, elapsed: Observation) {
        self.duration.add(elapsed);
        if status >= 500 {
            self.responses_5xx.fetch_add(1, Ordering::Relaxed);
        }
        let key = code_key(server.map_or(0, |(id, _)| id), status);
        let mut i = (key.wrapping_mul(FIBONACCI) >> (64 - SLOTS.trailing_zeros())) as usize;
        for _ in 0..MAX_PROBES {
            let Some(slot) = self.slots.get(i) else { break };
            let mut seen = slot.key.load(Ordering::Relaxed);
            if seen == 0 && key != 0 {
                // The name is known before the key can be seen by an export.
                self.note_server(server);
                seen = match slot
                    .key
                    .compare_exchange(0, key, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => key,
                    Err(other) => other,
                };
            }
            if seen == key {
                slot.count.fetch_add(1, Ordering::Relaxed);
                return;
            }
            i = (i + 1) & (SLOTS - 1);
        }
        self.count_overflow(key, server);
    }

    #[cold]
    fn note_server(&self, server: Option<(u64, &str)>) {
        let Some((id, name)) = server else { return };
        if self.names.load().contains_key(&id) {
            return;
        }
        self.names.rcu(|names| {
            let mut next = KeyMap::clone(names);
            next.insert(id, name.to_owned());
            next
        });
    }

    #[cold]
    fn count_overflow(&self, key: u64, server: Option<(u64, &str)>) {
        if let Some(cell) = self.overflow.load().get(&key) {
            cell.count.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.note_server(server);
        let cell = Arc::new(CodeCell {
            count: AtomicU64::new(0),
        });
        // Two workers may meet the same new pair at once: the second finds the first's cell.
        self.overflow.rcu(|map| {
            if map.contains_key(&key) {
                Arc::clone(map)
            } else {
                let mut next = KeyMap::clone(map);
                next.insert(key, cell.clone());
                Arc::new(next)
            }
        });
        if let Some(cell) = self.overflow.load().get(&key) {
            cell.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every `(server, code)` count so far (for export; order unspecified, a pair once).
    pub fn counts(&self) -> Vec<CodeCount> {
        let names = self.names.load();
        let count = |key: u64, n: u64| {
            let server_id = key >> 16;
            CodeCount {
                server_id,
                server: names.get(&server_id).cloned().unwrap_or_default(),
                code: (key & 0xffff) as u16,
                count: n,
            }
        };
        let mut out: Vec<CodeCount> = self
            .slots
            .iter()
            .filter_map(|s| {
                let key = s.key.load(Ordering::Relaxed);
                (key != 0).then(|| count(key, s.count.load(Ordering::Relaxed)))
            })
            .collect();
        for (&key, cell) in self.overflow.load().iter() {
            out.push(count(key, cell.count.load(Ordering::Relaxed)));
        }
        out
    }
}

/// A point in time as nanoseconds since the process's first use of this clock: 8 bytes where
/// an `Instant` takes 16, for what each request keeps until its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

impl Stamp {
    /// Now (one clock read).
    #[inline]
    pub fn now() -> Stamp {
        let epoch = *EPOCH.get_or_init(std::time::Instant::now);
        Stamp(u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// Time from `self` to `later` (zero if `later` is earlier).
    #[inline]
    pub fn until(self, later: Stamp) -> Duration {
        Duration::from_nanos(later.0.saturating_sub(self.0))
    }

    /// The same moment as an `Instant`.
    pub fn instant(self) -> std::time::Instant {
        let epoch = *EPOCH.get_or_init(std::time::Instant::now);
        epoch + Duration::from_nanos(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_stats_count_each_server_and_code_once() {
        let r = RouteStats::new("api", Some("p"));
        r.record(Some((7, "a")), 200, Observation::of(Duration::from_millis(1)));
        r.record(Some((7, "a")), 200, Observation::of(Duration::from_millis(2)));
        r.record(Some((8, "b")), 503, Observation::of(Duration::from_millis(3)));
        r.record(None, 404, Observation::of(Duration::from_micros(100)));
        let mut cells: Vec<(String, u16, u64)> = r
            .counts()
            .into_iter()
            .map(|c| (c.server, c.code, c.count))
            .collect();
        cells.sort();
        assert_eq!(
            cells,
            vec![
                (String::new(), 404, 1),
                ("a".into(), 200, 2),
                ("b".into(), 503, 1)
            ]
        );
        assert_eq!(r.duration.snapshot().count(), 4);
        assert_eq!(r.responses_5xx.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn concurrent_first_sights_lose_no_count() {
        let r = Arc::new(RouteStats::new("x", None));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        r.record(
                            Some((i % 5 + 1, "s")),
                            200 + (i % 3) as u16,
                            Observation::of(Duration::ZERO),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let total: u64 = r.counts().iter().map(|c| c.count).sum();
        assert_eq!(total, 4000);
        assert_eq!(r.counts().len(), 15);
    }

    #[test]
    fn pairs_beyond_the_table_overflow_into_the_map() {
        let r = RouteStats::new("x", None);
        let names: Vec<String> = (0..200).map(|i| format!("s{i}")).collect();
        for round in 0..3u64 {
            for (i, name) in names.iter().enumerate() {
                let id = i as u64 + 1;
                r.record(Some((id, name)), 200, Observation::of(Duration::ZERO));
                if round == 0 {
                    r.record(Some((id, name)), 503, Observation::of(Duration::ZERO));
                }
            }
        }
        let counts = r.counts();
        assert_eq!(counts.len(), 400);
        let mut seen = std::collections::HashSet::new();
        for c in &counts {
            assert!(seen.insert((c.server_id, c.code)), "{c:?} twice");
            assert_eq!(c.server, format!("s{}", c.server_id - 1));
            assert_eq!(c.count, if c.code == 200 { 3 } else { 1 });
        }
    }

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
