//! The health thread: one checker task per server of every pool with `health`, ejection timers,
//! slow-start ramps.
//!
//! Owns: the thread "ringway-health" and its current-thread runtime; the per-server state that
//! lives there (rise/fall counter, ejection start, ramp, whether it served at the last tick).
//! A supervisor loop wakes every [`TICK`], reads the current snapshot (so servers added through
//! the admin API or by a reload are picked up at the next tick, and removed ones dropped),
//! starts and stops checkers, readmits ejected servers whose time is up, and steps ramps. Check
//! results come back to the loop over a channel and are applied at once.
//! Must not touch: the request path (it reads the atomics this thread writes) and sockets other
//! than the checks' own.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::HealthConfig;
use crate::proxy::server::Shared;
use crate::proxy::state::{AdminState, CheckRecord, Health, Pool, RAMP_FULL, Server};

use super::check::{self, Target};
use super::events;
use super::expect::Verdict;
use super::ramp;
use super::rise_fall::RiseFall;

/// How often the supervisor looks at the snapshot: the precision of ejection times and the
/// delay before a server added at run time gets its first check scheduled.
pub const TICK: Duration = Duration::from_millis(100);

/// A check result on its way from a checker to the supervisor.
struct CheckResult {
    id: u64,
    generation: u64,
    verdict: Verdict,
    at: SystemTime,
}

/// A running checker and what it was started with.
struct Checker {
    task: JoinHandle<()>,
    config: HealthConfig,
    connect_timeout: Duration,
    /// How the pool spoke to its servers when the checker started.
    transport: check::Transport,
    generation: u64,
    counter: RiseFall,
}

/// What the health thread remembers of one server, keyed by its id.
struct Tracked {
    server: Arc<Server>,
    pool: String,
    checker: Option<Checker>,
    /// `serving()` at the last look.
    serving: bool,
    /// It has taken traffic at some point.
    ever_served: bool,
    /// It was there at the first tick: its first coming into service is Ringway's start, which
    /// does not ramp (HAProxy: "slowstart never applies when haproxy starts").
    initial: bool,
    /// When this thread first saw it ejected.
    ejected_since: Option<Instant>,
    /// The running slow start: when it began and when it last stepped.
    ramp: Option<(Instant, Instant)>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(c) = &self.checker {
            c.task.abort();
        }
    }
}

/// The supervisor's state.
struct Supervisor {
    shared: Arc<Shared>,
    servers: HashMap<u64, Tracked>,
    first_tick: bool,
    generation: u64,
    results: mpsc::UnboundedSender<CheckResult>,
    /// Pools whose balancer must be rebuilt for changed ramps.
    rebuild: HashSet<String>,
}

/// Starts the thread.
pub fn start(shared: Arc<Shared>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ringway-health".into())
        .spawn(move || runtime.block_on(run(shared)))?;
    Ok(())
}

async fn run(shared: Arc<Shared>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut sup = Supervisor {
        shared,
        servers: HashMap::new(),
        first_tick: true,
        generation: 0,
        results: tx,
        rebuild: HashSet::new(),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if sup.shared.shutting_down.load(Ordering::Relaxed) {
                    break;
                }
                sup.scan(Instant::now());
            }
            Some(result) = rx.recv() => sup.on_result(result),
        }
        apply_rebuilds(&sup.shared, &mut sup.rebuild);
    }
    // Dropping the tracked servers aborts their checkers.
    sup.servers.clear();
}

impl Tracked {
    fn new(server: Arc<Server>, pool: &str, initial: bool) -> Tracked {
        let serving = initial && server.serving();
        Tracked {
            server,
            pool: pool.to_string(),
            checker: None,
            serving,
            ever_served: serving,
            initial,
            ejected_since: None,
            ramp: None,
        }
    }
}

impl Supervisor {
    /// One look at every server of the current snapshot.
    fn scan(&mut self, now: Instant) {
        let snapshot = self.shared.snapshot.load_full();
        let mut seen = HashSet::with_capacity(self.servers.len());
        for pool in snapshot.pools.values() {
            let members = pool.members.load();
            for server in &members.servers {
                seen.insert(server.id);
                let first = self.first_tick;
                let tracked = self
                    .servers
                    .entry(server.id)
                    .or_insert_with(|| Tracked::new(server.clone(), &pool.name, first));
                if tracked.pool != pool.name {
                    tracked.pool.clone_from(&pool.name);
                }
                self.generation = sync_checker(tracked, pool, self.generation, &self.results);
                if let Some(done) = ejection_over(tracked, pool, now) {
                    readmit(tracked, pool, &done, now, &mut self.rebuild);
                }
                follow_serving(tracked, pool, now, &mut self.rebuild);
            }
        }
        self.servers.retain(|id, _| seen.contains(id));
        self.first_tick = false;
    }

    /// Applies one check result.
    fn on_result(&mut self, r: CheckResult) {
        let Some(tracked) = self.servers.get_mut(&r.id) else {
            return;
        };
        let Some(checker) = tracked.checker.as_mut().filter(|c| c.generation == r.generation) else {
            return;
        };
        let server = tracked.server.clone();
        let record = CheckRecord {
            at: r.at,
            passed: r.verdict.passed,
            detail: r.verdict.detail.clone(),
        };
        match server.last_check.lock() {
            Ok(mut last) => *last = Some(record),
            Err(poisoned) => *poisoned.into_inner() = Some(record),
        }
        let change = checker.counter.record(r.verdict.passed);
        let (rise, fall) = (checker.config.rise, checker.config.fall);
        let snapshot = self.shared.snapshot.load_full();
        let Some(pool) = snapshot.pools.get(&tracked.pool) else {
            return;
        };
        let now = Instant::now();
        if let Some(to) = change {
            let reason = match to {
                Health::Up => format!("{} passed ({})", checks(rise), r.verdict.detail),
                _ => format!("{} failed, last: {}", checks(fall), r.verdict.detail),
            };
            if to == Health::Up && server.admin_state() == AdminState::Ready && !server.is_ejected() {
                begin_ramp(tracked, pool, now, &mut self.rebuild);
                // The ramp must be in the balancer before the server takes its first request.
                apply_rebuilds(&self.shared, &mut self.rebuild);
            }
            events::set_health(&tracked.pool, &server, to, &reason);
        }
        if r.verdict.passed && server.health() == Health::Up && server.is_ejected() {
            readmit(
                tracked,
                pool,
                &format!("an active check passed ({})", r.verdict.detail),
                now,
                &mut self.rebuild,
            );
            apply_rebuilds(&self.shared, &mut self.rebuild);
        }
        follow_serving(tracked, pool, now, &mut self.rebuild);
    }
}

/// Rebuilds the balancers of the pools named in `rebuild` (their ramps changed), under the lock
/// that serialises changes of live state, from the snapshot current then.
fn apply_rebuilds(shared: &Shared, rebuild: &mut HashSet<String>) {
    if rebuild.is_empty() {
        return;
    }
    let _guard = shared
        .changes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let snapshot = shared.snapshot.load();
    for name in rebuild.drain() {
        if let Some(pool) = snapshot.pools.get(&name) {
            pool.rebuild();
        }
    }
}

/// "1 check", "3 checks".
fn checks(n: u32) -> String {
    if n == 1 {
        "1 check".into()
    } else {
        format!("{n} checks")
    }
}

/// Starts, keeps or stops the checker of `tracked` as its pool's `health` says; returns the
/// next generation number.
fn sync_checker(
    tracked: &mut Tracked,
    pool: &Pool,
    mut generation: u64,
    results: &mpsc::UnboundedSender<CheckResult>,
) -> u64 {
    let connect_timeout = pool.settings.connect_timeout;
    let transport = check::Transport::of(&pool.settings);
    match (&pool.settings.health, &tracked.checker) {
        (Some(h), Some(c))
            if c.config == *h && c.connect_timeout == connect_timeout && c.transport.same_as(&transport) => {}
        (Some(h), _) => {
            if let Some(old) = tracked.checker.take() {
                old.task.abort();
            }
            generation += 1;
            let server = &tracked.server;
            let target = Target {
                addr: server.addr,
                request: check::request(&h.path, &server.address),
                connect_timeout,
                timeout: h.timeout,
                expect: h.expect.clone(),
                address: server.address.clone(),
                transport: transport.clone(),
            };
            let task = tokio::spawn(run_checker(
                server.id,
                generation,
                target,
                h.interval,
                server.health() == Health::Checking,
                results.clone(),
            ));
            tracked.checker = Some(Checker {
                task,
                config: h.clone(),
                connect_timeout,
                transport,
                generation,
                counter: RiseFall::new(h.rise, h.fall, server.health()),
            });
        }
        (None, Some(_)) => {
            if let Some(old) = tracked.checker.take() {
                old.task.abort();
            }
            // The pool has no checks any more: an old result would only mislead.
            match tracked.server.last_check.lock() {
                Ok(mut last) => *last = None,
                Err(poisoned) => *poisoned.into_inner() = None,
            }
        }
        (None, None) => {}
    }
    generation
}

/// Checks one server every `interval` from a random phase of it, so that the checks of a pool
/// spread over the interval instead of arriving together. A server still `checking` is checked
/// once at once first: until it passes it takes no traffic, and at Ringway's start that is
/// every server of the pool.
async fn run_checker(
    id: u64,
    generation: u64,
    target: Target,
    interval: Duration,
    check_at_once: bool,
    results: mpsc::UnboundedSender<CheckResult>,
) {
    let probe = |target: &Target| {
        let target = target.clone();
        async move {
            CheckResult {
                id,
                generation,
                verdict: check::probe(&target).await,
                at: SystemTime::now(),
            }
        }
    };
    if check_at_once && results.send(probe(&target).await).is_err() {
        return;
    }
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX).max(1);
    tokio::time::sleep(Duration::from_nanos(fastrand::u64(..nanos))).await;
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if results.send(probe(&target).await).is_err() {
            return;
        }
    }
}

/// If `tracked` is ejected and its pool's `eject` time has passed since this thread first saw
/// it so, the reason to readmit it.
fn ejection_over(tracked: &mut Tracked, pool: &Pool, now: Instant) -> Option<String> {
    if !tracked.server.is_ejected() {
        tracked.ejected_since = None;
        return None;
    }
    let eject = pool.settings.passive.as_ref()?.eject;
    let since = *tracked.ejected_since.get_or_insert(now);
    (now.duration_since(since) >= eject)
        .then(|| format!("ejection time of {} is over", humantime::format_duration(eject)))
}

/// Readmits an ejected server: its run of failures starts again, and it ramps if it comes back
/// into service.
fn readmit(tracked: &mut Tracked, pool: &Pool, reason: &str, now: Instant, rebuild: &mut HashSet<String>) {
    let server = tracked.server.clone();
    server.consecutive_failures.store(0, Ordering::Relaxed);
    if server.admin_state() == AdminState::Ready && server.health() == Health::Up {
        begin_ramp(tracked, pool, now, rebuild);
    }
    events::set_ejected(&pool.name, &server, false, reason);
    tracked.ejected_since = None;
}

/// Whether a server coming into service now ramps: its pool has `slow_start` and a balancer
/// that reads ramped weights, and this is not Ringway's start.
fn ramps(tracked: &Tracked, pool: &Pool) -> bool {
    pool.settings.slow_start.is_some() && pool.ramps_weights() && (tracked.ever_served || !tracked.initial)
}

/// Puts the server at the start of its ramp, if it ramps and is not ramping already.
fn begin_ramp(tracked: &mut Tracked, pool: &Pool, now: Instant, rebuild: &mut HashSet<String>) {
    if tracked.ramp.is_none() && ramps(tracked, pool) {
        tracked.server.set_ramp(ramp::RAMP_START);
        tracked.ramp = Some((now, now));
        rebuild.insert(pool.name.clone());
    }
}

/// Notices a server coming into or leaving service, and steps its ramp.
fn follow_serving(tracked: &mut Tracked, pool: &Pool, now: Instant, rebuild: &mut HashSet<String>) {
    let serving = tracked.server.serving();
    if serving && !tracked.serving {
        begin_ramp(tracked, pool, now, rebuild);
    }
    if !serving && tracked.ramp.take().is_some() {
        // Out of service, a ramp means nothing; it starts again when the server comes back.
        full_weight(tracked, pool, rebuild);
    }
    tracked.serving = serving;
    tracked.ever_served |= serving;
    let Some((start, last_step)) = tracked.ramp else {
        if tracked.server.ramp() < RAMP_FULL {
            // A ramp left over from a change of pool settings.
            full_weight(tracked, pool, rebuild);
        }
        return;
    };
    let Some(duration) = pool.settings.slow_start.filter(|_| pool.ramps_weights()) else {
        tracked.ramp = None;
        full_weight(tracked, pool, rebuild);
        return;
    };
    let elapsed = now.duration_since(start);
    if elapsed >= duration {
        tracked.ramp = None;
        full_weight(tracked, pool, rebuild);
    } else if now.duration_since(last_step) >= ramp::step_every(duration) {
        tracked.server.set_ramp(ramp::ramp_at(elapsed, duration));
        tracked.ramp = Some((start, now));
        rebuild.insert(pool.name.clone());
    }
}

fn full_weight(tracked: &Tracked, pool: &Pool, rebuild: &mut HashSet<String>) {
    if tracked.server.ramp() != RAMP_FULL {
        tracked.server.set_ramp(RAMP_FULL);
        rebuild.insert(pool.name.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Balance;
    use crate::proxy::state::Snapshot;

    fn pool(balance: Balance, slow_start: Option<Duration>) -> Arc<Pool> {
        let mut c = crate::cli::empty_config();
        let mut p = crate::cli::pool(
            "p",
            balance,
            vec![
                crate::cli::server("127.0.0.1:1"),
                crate::cli::server("127.0.0.1:2"),
            ],
        );
        p.slow_start = slow_start;
        c.pools.push(p);
        let snapshot = Snapshot::build(c, None).expect("snapshot");
        snapshot.pools["p"].clone()
    }

    fn server(pool: &Pool, i: usize) -> Arc<Server> {
        pool.members.load().servers[i].clone()
    }

    const RAMP: Duration = Duration::from_secs(2);

    #[test]
    fn servers_serving_at_start_do_not_ramp() {
        let pool = pool(Balance::RoundRobin, Some(RAMP));
        let mut t = Tracked::new(server(&pool, 0), "p", true);
        let mut rebuild = HashSet::new();
        follow_serving(&mut t, &pool, Instant::now(), &mut rebuild);
        assert!(t.ramp.is_none());
        assert_eq!(t.server.ramp(), RAMP_FULL);
        assert!(rebuild.is_empty());
    }

    #[test]
    fn a_server_back_from_drain_ramps_step_by_step() {
        let pool = pool(Balance::RoundRobin, Some(RAMP));
        let s = server(&pool, 1);
        let mut t = Tracked::new(s.clone(), "p", true);
        let mut rebuild = HashSet::new();
        let t0 = Instant::now();
        s.set_admin_state(AdminState::Drain);
        follow_serving(&mut t, &pool, t0, &mut rebuild);
        assert!(t.ramp.is_none() && rebuild.is_empty());

        s.set_admin_state(AdminState::Ready);
        let back = t0 + Duration::from_millis(100);
        follow_serving(&mut t, &pool, back, &mut rebuild);
        assert_eq!(s.ramp(), ramp::RAMP_START);
        assert!(rebuild.remove("p"));

        // Within a step nothing changes (steps are a second apart for a 2 s ramp).
        follow_serving(&mut t, &pool, back + Duration::from_millis(500), &mut rebuild);
        assert_eq!(s.ramp(), ramp::RAMP_START);
        assert!(rebuild.is_empty());

        follow_serving(&mut t, &pool, back + Duration::from_millis(1100), &mut rebuild);
        assert_eq!(s.ramp(), 595);
        assert!(rebuild.remove("p"));

        follow_serving(&mut t, &pool, back + RAMP, &mut rebuild);
        assert_eq!(s.ramp(), RAMP_FULL);
        assert!(t.ramp.is_none() && rebuild.remove("p"));
    }

    #[test]
    fn a_server_added_at_run_time_ramps() {
        let pool = pool(Balance::LeastRequests, Some(RAMP));
        let mut t = Tracked::new(server(&pool, 0), "p", false);
        let mut rebuild = HashSet::new();
        follow_serving(&mut t, &pool, Instant::now(), &mut rebuild);
        assert_eq!(t.server.ramp(), ramp::RAMP_START);
        assert!(rebuild.contains("p"));
    }

    #[test]
    fn hashed_pools_and_pools_without_slow_start_do_not_ramp() {
        for pool in [
            pool(Balance::Maglev(crate::cli::default_hash_settings()), Some(RAMP)),
            pool(Balance::RoundRobin, None),
        ] {
            let mut t = Tracked::new(server(&pool, 0), "p", false);
            let mut rebuild = HashSet::new();
            follow_serving(&mut t, &pool, Instant::now(), &mut rebuild);
            assert_eq!(t.server.ramp(), RAMP_FULL);
            assert!(t.ramp.is_none() && rebuild.is_empty());
        }
    }

    #[test]
    fn leaving_service_mid_ramp_restores_the_full_weight() {
        let pool = pool(Balance::RoundRobin, Some(RAMP));
        let s = server(&pool, 0);
        let mut t = Tracked::new(s.clone(), "p", false);
        let mut rebuild = HashSet::new();
        let t0 = Instant::now();
        follow_serving(&mut t, &pool, t0, &mut rebuild);
        assert_eq!(s.ramp(), ramp::RAMP_START);
        s.set_admin_state(AdminState::Maint);
        follow_serving(&mut t, &pool, t0 + Duration::from_millis(100), &mut rebuild);
        assert_eq!(s.ramp(), RAMP_FULL);
        assert!(t.ramp.is_none());
        // Back again: a new ramp from the start.
        s.set_admin_state(AdminState::Ready);
        follow_serving(&mut t, &pool, t0 + Duration::from_millis(200), &mut rebuild);
        assert_eq!(s.ramp(), ramp::RAMP_START);
    }

    #[test]
    fn ejection_ends_after_the_eject_time_seen_from_the_first_tick() {
        let mut c = crate::cli::empty_config();
        let mut p = crate::cli::pool("p", Balance::RoundRobin, vec![crate::cli::server("127.0.0.1:1")]);
        p.passive = Some(crate::config::PassiveConfig {
            failures: 1,
            eject: Duration::from_secs(1),
        });
        c.pools.push(p);
        let snapshot = Snapshot::build(c, None).expect("snapshot");
        let pool = snapshot.pools["p"].clone();
        let s = server(&pool, 0);
        let mut t = Tracked::new(s.clone(), "p", true);
        let t0 = Instant::now();
        assert_eq!(ejection_over(&mut t, &pool, t0), None);
        s.set_ejected(true);
        assert_eq!(ejection_over(&mut t, &pool, t0), None);
        assert_eq!(
            ejection_over(&mut t, &pool, t0 + Duration::from_millis(900)),
            None
        );
        let reason = ejection_over(&mut t, &pool, t0 + Duration::from_secs(1)).expect("over");
        assert_eq!(reason, "ejection time of 1s is over");
        let mut rebuild = HashSet::new();
        s.consecutive_failures.store(7, Ordering::Relaxed);
        readmit(&mut t, &pool, &reason, t0, &mut rebuild);
        assert!(!s.is_ejected());
        assert_eq!(s.consecutive_failures.load(Ordering::Relaxed), 0);
        assert_eq!(s.health_changes.load(Ordering::Relaxed), 1);
    }
}
