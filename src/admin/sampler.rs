//! The sampler: every 2 s it copies the request path's counters and histograms, keeps the last
//! minute per server and route and five minutes of history per pool, and turns them into the
//! API's figures (requests/s, 5xx ratio, p50, p99).
//!
//! Owns: the samples and the arithmetic over them (plain functions, unit-tested).
//! Must not touch: the request path (it only reads atomics) or live state.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::proxy::state::{Server, Snapshot};
use crate::proxy::stats::{HistogramSnapshot, RouteStats};

/// Time between samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Points of pool history kept: five minutes.
pub const HISTORY_POINTS: usize = 150;
/// Samples kept per server and route: a minute of intervals needs one more sample than
/// intervals.
pub const WINDOW_SAMPLES: usize = 31;

/// Cumulative counts of one server or route at one moment (or a difference of two).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Durations of the answers.
    pub latency: HistogramSnapshot,
    /// Answers with a 5xx status.
    pub errors_5xx: u64,
}

impl Counts {
    /// What was counted since `earlier`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            latency: self.latency.since(&earlier.latency),
            errors_5xx: self.errors_5xx.saturating_sub(earlier.errors_5xx),
        }
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Counts) {
        self.latency.add(&other.latency);
        self.errors_5xx += other.errors_5xx;
    }
}

/// The live figures of the API over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Answers per second.
    pub requests_per_s: f64,
    /// Share of 5xx answers, 0..1.
    pub error_5xx_ratio: f64,
    /// Median duration in seconds (`None` without answers).
    pub p50_s: Option<f64>,
    /// 99th percentile in seconds (`None` without answers).
    pub p99_s: Option<f64>,
}

/// `count` events over `secs` as a rate (0 over an empty window).
pub fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// `part / whole`, 0 when `whole` is 0.
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64).min(1.0)
    }
}

/// Figures of what was counted (`delta`) over `secs`.
pub fn figures(delta: &Counts, secs: f64) -> Figures {
    let n = delta.latency.count();
    Figures {
        requests_per_s: rate(n, secs),
        error_5xx_ratio: ratio(delta.errors_5xx, n),
        p50_s: delta.latency.quantile(0.5),
        p99_s: delta.latency.quantile(0.99),
    }
}

/// Figures of several parts, each counted over its own window: rates add up, ratios and
/// quantiles come from the merged counts.
pub fn merge(parts: &[(Counts, f64)]) -> Figures {
    let mut all = Counts::default();
    let mut per_s = 0.0;
    for (delta, secs) in parts {
        all.add(delta);
        per_s += rate(delta.latency.count(), *secs);
    }
    Figures {
        requests_per_s: per_s,
        ..figures(&all, 0.0)
    }
}

/// Samples of one thing, oldest first, at most [`WINDOW_SAMPLES`].
#[derive(Debug, Default)]
struct Series {
    samples: VecDeque<(Instant, Counts)>,
    /// Identity of what is sampled (a route's figures are replaced when its pool changes).
    source: usize,
    /// The tick that last saw it.
    seen: u64,
}

impl Series {
    fn push(&mut self, at: Instant, counts: Counts) {
        if self.samples.len() == WINDOW_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((at, counts));
    }

    /// The last two samples' difference, and the counts since the oldest with its time span.
    fn last_step(&self) -> Option<(Counts, f64)> {
        let n = self.samples.len();
        let (t1, c1) = self.samples.get(n.checked_sub(1)?)?;
        let (t0, c0) = self.samples.get(n.checked_sub(2)?)?;
        Some((c1.since(c0), t1.duration_since(*t0).as_secs_f64()))
    }

    fn window(&self) -> Option<(Counts, f64)> {
        let (t1, c1) = self.samples.back()?;
        let (t0, c0) = self.samples.front()?;
        (self.samples.len() > 1).then(|| (c1.since(c0), t1.duration_since(*t0).as_secs_f64()))
    }

    fn figures(&self) -> Figures {
        self.window()
            .map_or_else(Figures::default, |(d, s)| figures(&d, s))
    }
}

/// One point of a pool's history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryPoint {
    /// When the sample was taken.
    pub at: SystemTime,
    /// Answers per second over the 2 s before it.
    pub requests_per_s: f64,
    /// 99th percentile over the 2 s before it (`None` without answers).
    pub p99_s: Option<f64>,
}

#[derive(Debug, Default)]
struct History {
    points: VecDeque<HistoryPoint>,
    seen: u64,
}

#[derive(Debug, Default)]
struct Inner {
    tick: u64,
    servers: HashMap<u64, Series>,
    routes: HashMap<String, Series>,
    pools: HashMap<String, History>,
}

/// The samples of a running Ringway, read by the API's handlers.
#[derive(Debug, Default)]
pub struct Sampler {
    inner: Mutex<Inner>,
}

fn server_counts(s: &Server) -> Counts {
    Counts {
        latency: s.latency.snapshot(),
        errors_5xx: s.responses_5xx.load(Ordering::Relaxed),
    }
}

fn route_counts(r: &RouteStats) -> Counts {
    Counts {
        latency: r.duration.snapshot(),
        errors_5xx: r.responses_5xx.load(Ordering::Relaxed),
    }
}

impl Sampler {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one sample of everything in `snapshot`; what it no longer holds is forgotten.
    pub fn sample(&self, snapshot: &Snapshot, now: Instant, wall: SystemTime) {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let Inner {
            servers,
            routes,
            pools,
            ..
        } = &mut *inner;
        for (name, pool) in &snapshot.pools {
            let members = pool.members.load();
            let mut steps = Vec::with_capacity(members.servers.len());
            for s in &members.servers {
                let series = servers.entry(s.id).or_default();
                series.seen = tick;
                series.push(now, server_counts(s));
                steps.extend(series.last_step());
            }
            let history = pools.entry(name.clone()).or_default();
            history.seen = tick;
            if history.points.len() == HISTORY_POINTS {
                history.points.pop_front();
            }
            let merged = merge(&steps);
            history.points.push_back(HistoryPoint {
                at: wall,
                requests_per_s: merged.requests_per_s,
                p99_s: merged.p99_s,
            });
        }
        for r in snapshot
            .routes
            .iter()
            .map(|r| &r.stats)
            .chain([&snapshot.unrouted])
        {
            let source = Arc::as_ptr(r) as usize;
            let series = routes.entry(r.name.clone()).or_default();
            if series.source != source {
                *series = Series {
                    source,
                    ..Series::default()
                };
            }
            series.seen = tick;
            series.push(now, route_counts(r));
        }
        servers.retain(|_, s| s.seen == tick);
        routes.retain(|_, s| s.seen == tick);
        pools.retain(|_, h| h.seen == tick);
    }

    /// A server's figures over the last minute.
    pub fn server(&self, id: u64) -> Figures {
        self.lock()
            .servers
            .get(&id)
            .map_or_else(Figures::default, Series::figures)
    }

    /// A route's figures over the last minute ("" for requests that matched no route).
    pub fn route(&self, name: &str) -> Figures {
        self.lock()
            .routes
            .get(name)
            .map_or_else(Figures::default, Series::figures)
    }

    /// A pool's figures over the last minute: its servers' answers together.
    pub fn pool(&self, servers: &[Arc<Server>]) -> Figures {
        let inner = self.lock();
        let parts: Vec<(Counts, f64)> = servers
            .iter()
            .filter_map(|s| inner.servers.get(&s.id).and_then(Series::window))
            .collect();
        merge(&parts)
    }

    /// A pool's history, oldest first.
    pub fn history(&self, pool: &str) -> Vec<HistoryPoint> {
        self.lock()
            .pools
            .get(pool)
            .map(|h| h.points.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::stats::{Histogram, Observation};

    fn counts(durations_ms: &[u64], errors: u64) -> Counts {
        let h = Histogram::default();
        for &ms in durations_ms {
            h.observe(Duration::from_millis(ms));
        }
        Counts {
            latency: h.snapshot(),
            errors_5xx: errors,
        }
    }

    #[test]
    fn rates_and_ratios() {
        assert_eq!(rate(10, 2.0), 5.0);
        assert_eq!(rate(10, 0.0), 0.0);
        assert_eq!(ratio(1, 4), 0.25);
        assert_eq!(ratio(1, 0), 0.0);
        assert_eq!(ratio(5, 4), 1.0);
    }

    #[test]
    fn figures_of_a_window() {
        let d = counts(&[1, 1, 1, 40], 1);
        let f = figures(&d, 2.0);
        assert_eq!(f.requests_per_s, 2.0);
        assert_eq!(f.error_5xx_ratio, 0.25);
        assert_eq!(f.p50_s, Some(0.001));
        assert_eq!(f.p99_s, Some(0.05));
        let empty = figures(&Counts::default(), 2.0);
        assert_eq!(empty.requests_per_s, 0.0);
        assert_eq!(empty.p50_s, None);
    }

    #[test]
    fn merging_adds_rates_and_merges_quantiles() {
        let a = (counts(&[1; 10], 0), 10.0);
        let b = (counts(&[200; 10], 5), 5.0);
        let f = merge(&[a, b]);
        assert_eq!(f.requests_per_s, 1.0 + 2.0);
        assert_eq!(f.error_5xx_ratio, 0.25);
        assert_eq!(f.p50_s, Some(0.001));
        assert_eq!(f.p99_s, Some(0.25));
        assert_eq!(merge(&[]), Figures::default());
    }

    #[test]
    fn a_series_keeps_one_minute() {
        let start = Instant::now();
        let mut s = Series::default();
        assert_eq!(s.figures(), Figures::default());
        let mut total = Vec::new();
        for i in 0..40u64 {
            total.push(1);
            s.push(start + SAMPLE_EVERY * i as u32, counts(&total, 0));
        }
        assert_eq!(s.samples.len(), WINDOW_SAMPLES);
        // One answer per 2 s interval over the last 30 intervals.
        let f = s.figures();
        assert!((f.requests_per_s - 0.5).abs() < 1e-9, "{f:?}");
        let (step, secs) = s.last_step().expect("two samples");
        assert_eq!(step.latency.count(), 1);
        assert_eq!(secs, 2.0);
    }

    #[test]
    fn sampling_a_snapshot() {
        let mut c = crate::cli::empty_config();
        c.routes.push(crate::cli::route("r", "/", "p"));
        c.pools.push(crate::cli::pool(
            "p",
            crate::config::Balance::RoundRobin,
            vec![
                crate::cli::server("127.0.0.1:1"),
                crate::cli::server("127.0.0.1:2"),
            ],
        ));
        let snap = Snapshot::build(c, None).expect("snapshot");
        let sampler = Sampler::default();
        let t0 = Instant::now();
        sampler.sample(&snap, t0, SystemTime::now());
        let servers = snap.pools["p"].members.load().servers.clone();
        for s in &servers {
            for _ in 0..4 {
                s.latency.observe(Duration::from_millis(2));
            }
        }
        servers[0].responses_5xx.fetch_add(2, Ordering::Relaxed);
        snap.routes[0].stats.record(
            Some((servers[0].id, "a")),
            200,
            Observation::of(Duration::from_millis(2)),
        );
        sampler.sample(&snap, t0 + SAMPLE_EVERY, SystemTime::now());
        let pool = sampler.pool(&servers);
        assert_eq!(pool.requests_per_s, 4.0);
        assert_eq!(pool.error_5xx_ratio, 0.25);
        assert_eq!(pool.p99_s, Some(0.0025));
        assert_eq!(sampler.server(servers[0].id).error_5xx_ratio, 0.5);
        assert_eq!(sampler.route("r").requests_per_s, 0.5);
        assert_eq!(sampler.route("").requests_per_s, 0.0);
        let history = sampler.history("p");
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].requests_per_s, 0.0);
        assert_eq!(history[1].requests_per_s, 4.0);
        // What leaves the snapshot is forgotten.
        let empty = Snapshot::build(crate::cli::empty_config(), None).expect("snapshot");
        sampler.sample(&empty, t0 + SAMPLE_EVERY * 2, SystemTime::now());
        assert!(sampler.history("p").is_empty());
        assert_eq!(sampler.server(servers[0].id), Figures::default());
    }
}
