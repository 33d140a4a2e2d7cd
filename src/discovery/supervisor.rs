//! The discovery thread: one task per discovering pool, kept in step with the snapshot.
//!
//! Owns: the thread "ringway-discovery" and its current-thread runtime; a supervisor loop that
//! wakes every [`TICK`], and when the snapshot's configuration has changed (a reload) starts the
//! task of a pool that now discovers, restarts the one whose `discover` changed, and stops the
//! one whose pool no longer discovers; the tasks themselves (resolve every `interval`, apply,
//! log each outage once). Everything stops at shutdown.
//! Must not touch: the request path, health checks, sockets other than the resolvers' own.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::plan::{MAX_ENDPOINTS, Standing};
use super::resolve::{self, Failure};
use super::{Report, apply};
use crate::config::{Config, DiscoverConfig};
use crate::proxy::server::Shared;

/// How often the supervisor looks for a new configuration (and for shutdown).
pub const TICK: Duration = Duration::from_millis(100);

/// A pool's running task and the settings it runs with.
struct Running {
    config: DiscoverConfig,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the thread.
pub fn start(shared: Arc<Shared>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ringway-discovery".into())
        .spawn(move || runtime.block_on(run(shared)))?;
    Ok(())
}

async fn run(shared: Arc<Shared>) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut seen: Option<Arc<Config>> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.shutting_down.load(Ordering::Relaxed) {
            break;
        }
        let config = shared.snapshot.load().config.clone();
        if seen.as_ref().is_some_and(|c| Arc::ptr_eq(c, &config)) {
            continue;
        }
        follow(&shared, &config, &mut running);
        seen = Some(config);
    }
    // Dropping the tasks aborts them; removals under way end with the runtime.
    running.clear();
}

/// Starts, keeps, restarts or stops each pool's task as `config` says.
fn follow(shared: &Arc<Shared>, config: &Config, running: &mut HashMap<String, Running>) {
    let wanted = |name: &str| {
        config
            .pools
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.discover.as_ref())
    };
    running.retain(|name, r| wanted(name) == Some(&r.config));
    shared.discovery.retain(|name| wanted(name).is_some());
    for p in &config.pools {
        let Some(d) = &p.discover else { continue };
        if running.contains_key(&p.name) {
            continue;
        }
        tracing::info!(
            "pool `{}`: discovering servers from DNS `{}` every {}{}",
            p.name,
            d.dns,
            humantime::format_duration(d.interval),
            if d.resolvers.is_empty() {
                String::new()
            } else {
                format!(
                    " (asking {})",
                    d.resolvers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        let task = tokio::spawn(discover(shared.clone(), p.name.clone(), d.clone()));
        running.insert(
            p.name.clone(),
            Running {
                config: d.clone(),
                task,
            },
        );
    }
}

/// Resolves `config.dns` every `config.interval` and applies each answer to pool `pool`. A
/// failure keeps the servers found before; the first failure of an outage is logged (warn),
/// and so is its end (info), not every failed interval.
async fn discover(shared: Arc<Shared>, pool: String, config: DiscoverConfig) {
    let mut standing = Standing::default();
    let mut resolver = None;
    let mut every = tokio::time::interval(config.interval);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if resolver.is_none() {
            // Built here, not once: /etc/resolv.conf may be fixed while Ringway runs.
            match resolve::resolver(&config) {
                Ok(r) => resolver = Some(r),
                Err(e) => {
                    failed(&shared, &pool, &config, &mut standing, &Failure::Error(e));
                    continue;
                }
            }
        }
        let Some(r) = &resolver else { continue };
        let limit = resolve::deadline(&config);
        let outcome = tokio::time::timeout(limit, resolve::resolve(r, &config.query))
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Error(format!(
                    "no answer within {}",
                    humantime::format_duration(limit)
                )))
            });
        match outcome {
            Ok(found) => {
                if let Some(failures) = standing.succeeded() {
                    tracing::info!(
                        "pool `{pool}`: DNS `{}` answers again ({} servers) after {failures} failed \
                         resolution{}",
                        config.dns,
                        found.endpoints.len(),
                        if failures == 1 { "" } else { "s" }
                    );
                }
                if standing.capped(found.capped()) {
                    tracing::warn!(
                        "pool `{pool}`: DNS `{}` names {} servers; only the first {MAX_ENDPOINTS} \
                         by address are used",
                        config.dns,
                        found.answered
                    );
                }
                apply::apply(&shared, &pool, &found.endpoints);
                shared.discovery.update(&pool, |r: &mut Report| {
                    r.last_answer = Some(SystemTime::now());
                    r.answered = found.answered;
                    r.used = found.endpoints.len();
                    r.failing_since = None;
                });
            }
            Err(failure) => failed(&shared, &pool, &config, &mut standing, &failure),
        }
    }
}

/// A failed resolution: logged if it begins an outage, reported to the admin side.
fn failed(shared: &Shared, pool: &str, config: &DiscoverConfig, standing: &mut Standing, failure: &Failure) {
    if standing.failed() {
        let kept = apply::discovered_count(shared, pool);
        let what = match failure {
            Failure::Error(_) => "DNS discovery failed",
            Failure::NoRecords(_) => "DNS discovery found no servers",
        };
        tracing::warn!(
            "pool `{pool}`: {what} for `{}`: {failure}; keeping the {kept} discovered server{} \
             until it answers again (logged once per outage)",
            config.dns,
            if kept == 1 { "" } else { "s" }
        );
    }
    let now = SystemTime::now();
    shared.discovery.update(pool, |r: &mut Report| {
        r.failing_since.get_or_insert(now);
        r.last_error = Some(failure.to_string());
    });
}
