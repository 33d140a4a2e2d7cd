//! Configuration reloads, inside the running process.
//!
//! Owns: swapping in a new configuration (snapshot, access log, listeners) as one step that
//! either happens whole or not at all, the summary of what it changed and of what it could not
//! apply, and the log line of every reload with its source. Must not touch: how connections are
//! served (`server.rs`), how a snapshot is built (`state.rs`) or how sockets are bound
//! (`listeners.rs`).
//!
//! Order of a reload: read and check the file, open the access log, bind the listeners to add or
//! move, build the snapshot; only when all of that succeeded is the snapshot swapped and are the
//! workers told to start and stop accept loops. A listener whose address stays keeps its
//! sockets, so no connection is refused; a stopped one finishes its connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::access_log::AccessLog;
use super::listeners::{self, Batch, Bound, Change, ListenerAddr, ListenerChanges, LiveListener, Rebound};
use super::server::Engine;
use super::state::Snapshot;
use super::tls::ServerTls;
use crate::config::{ClusterConfig, Config, ListenerConfig, Workers};

/// How long a reload waits for the workers to confirm their listener changes.
const WORKER_CONFIRM: Duration = Duration::from_secs(5);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReloadSummary {
    /// Routes of the new configuration.
    pub routes: usize,
    /// Pools of the new configuration.
    pub pools: usize,
    /// Listeners added, removed, moved or changed.
    pub listeners: ListenerChanges,
    /// Changes of the file that this reload did not apply, in the operator's words.
    pub notes: Vec<String>,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        write!(
            f,
            "{}, {}; {}",
            plural(self.routes, "route"),
            plural(self.pools, "pool"),
            self.listeners
        )?;
        if !self.notes.is_empty() {
            write!(f, "; not applied: {}", self.notes.join("; "))?;
        }
        Ok(())
    }
}

impl Engine {
    /// Re-reads the configuration file and swaps it in (see [`Engine::reload`]); `source` says
    /// who asked (`"SIGHUP"`, `"api"`) for the log.
    pub fn reload_from_file(&self, source: &str) -> Result<ReloadSummary, Vec<String>> {
        let config = match &self.config_path {
            None => Err(vec![
                "this instance was not started from a configuration file".to_string(),
            ]),
            Some(path) => crate::config::load_with_warnings(path)
                .map(|(config, warnings)| {
                    for w in warnings {
                        tracing::warn!("reload ({source}): {w}");
                    }
                    config
                })
                .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>()),
        };
        match config {
            Ok(config) => self.reload(config, source),
            Err(errors) => {
                let outcome = Err(errors);
                self.count_reload(&outcome);
                log_outcome(source, &outcome);
                outcome
            }
        }
    }

    /// Swaps in a new configuration, or changes nothing and returns every error; logs the
    /// outcome with `source`.
    ///
    /// No connection is closed: requests in flight finish on the routes they started with, the
    /// next request of every connection uses the new ones. Listeners are added, stopped and moved;
    /// those whose address stays keep their sockets.
    pub fn reload(&self, config: Config, source: &str) -> Result<ReloadSummary, Vec<String>> {
        // Reloads, admin changes and health-driven rebuilds never interleave.
        let _changes = self
            .shared
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outcome = self.swap(config);
        self.count_reload(&outcome);
        log_outcome(source, &outcome);
        outcome
    }

    /// Counts a reload by result for `ringway_reloads_total{result}`.
    fn count_reload(&self, outcome: &Result<ReloadSummary, Vec<String>>) {
        self.reloads[usize::from(outcome.is_err())].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn swap(&self, config: Config) -> Result<ReloadSummary, Vec<String>> {
        let mut notes = self.restart_only.unapplied(&config);
        let access_log = AccessLog::open(&config.log).map_err(|e| vec![format!("access log: {e}")])?;
        let running = self.live.load_full();
        let plan = listeners::plan(&running, &config.listeners);
        let file_order: Vec<String> = config.listeners.iter().map(|l| l.name.clone()).collect();

        // Every certificate is read again, changed paths or not (renewed files replace the old
        // ones in place); one that fails refuses the whole reload and the old ones keep serving.
        let tls = prepare_tls(&running, &plan)?;

        // Bind everything new before changing anything: a failure leaves all as it was (sockets
        // bound so far close when dropped). Bound before the snapshot is built, because building
        // it already carries settings over to the servers it keeps.
        let ours: Vec<SocketAddr> = running.iter().map(|l| l.addr).collect();
        let workers = self.workers.len();
        let mut errors = Vec::new();
        let mut bind = |l: &ListenerConfig| match listeners::bind(&l.name, l.bind, workers, &ours) {
            Ok(b) => Some(b),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let added: Vec<(ListenerConfig, Bound)> = plan
            .add
            .iter()
            .filter_map(|l| Some((l.clone(), bind(l)?)))
            .collect();
        let rebound: Vec<(usize, ListenerConfig, Bound)> = plan
            .rebind
            .iter()
            .filter_map(|(i, l)| Some((*i, l.clone(), bind(l)?)))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let old = self.shared.snapshot.load_full();
        let snapshot = Snapshot::build(config, Some(&old))?;

        let routes = snapshot.routes.len();
        let pools = snapshot.pools.len();
        self.shared.snapshot.store(Arc::new(snapshot));
        self.shared.access_log.store(Arc::new(access_log));
        for (server_tls, config) in tls.install {
            server_tls.install(config);
        }
        let mut tls_of = tls.of.into_iter();

        let mut batches: Vec<Vec<Change>> = (0..workers).map(|_| Vec::new()).collect();
        let mut live = Vec::with_capacity(plan.keep.len() + added.len() + rebound.len());
        let mut changes = ListenerChanges::default();
        for (i, config, changed) in plan.keep {
            let r = &running[i];
            let tls = tls_of.next().flatten();
            if changed {
                for batch in &mut batches {
                    batch.push(Change::Update {
                        id: r.id,
                        config: config.clone(),
                        tls: tls.clone(),
                    });
                }
                changes.changed.push(config.name.clone());
            }
            live.push(LiveListener {
                config,
                tls,
                ..r.clone()
            });
        }
        // `prepare_tls` answered for the rebound listeners in plan order, and binding kept
        // them all (a failure returned above).
        for ((i, config, bound), tls) in rebound.into_iter().zip(tls_of.by_ref()) {
            let r = &running[i];
            changes.rebound.push(Rebound {
                name: config.name.clone(),
                from: r.addr,
                to: bound.addr,
            });
            for batch in &mut batches {
                batch.push(Change::Stop { id: r.id });
            }
            // The count follows the listener: connections on the old address still count.
            live.push(self.queue_start(&mut batches, config, bound, r.open.clone(), tls));
        }
        for ((config, bound), tls) in added.into_iter().zip(tls_of) {
            changes.added.push(ListenerAddr {
                name: config.name.clone(),
                bind: bound.addr,
            });
            let open = Arc::new(AtomicUsize::new(0));
            live.push(self.queue_start(&mut batches, config, bound, open, tls));
        }
        for i in plan.remove {
            let r = &running[i];
            changes.removed.push(ListenerAddr {
                name: r.config.name.clone(),
                bind: r.addr,
            });
            for batch in &mut batches {
                batch.push(Change::Stop { id: r.id });
            }
        }
        // In the order of the file, as the status page lists them.
        live.sort_by_key(|l| file_order.iter().position(|n| *n == l.config.name));
        self.live.store(Arc::new(live));
        if !changes.is_empty() {
            notes.extend(self.send(batches));
        }
        if !changes.changed.is_empty() {
            notes.push(format!(
                "connections open on {} keep the settings they were accepted with",
                changes
                    .changed
                    .iter()
                    .map(|n| format!("listener `{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(ReloadSummary {
            routes,
            pools,
            listeners: changes,
            notes,
        })
    }

    /// Queues the start of a bound listener on every worker; its live entry.
    fn queue_start(
        &self,
        batches: &mut [Vec<Change>],
        config: ListenerConfig,
        bound: Bound,
        open: Arc<AtomicUsize>,
        tls: Option<Arc<ServerTls>>,
    ) -> LiveListener {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        for (batch, socket) in batches.iter_mut().zip(bound.sockets) {
            batch.push(Change::Add {
                id,
                config: config.clone(),
                open: open.clone(),
                tls: tls.clone(),
                socket,
            });
        }
        LiveListener {
            id,
            config,
            addr: bound.addr,
            open,
            tls,
        }
    }

    /// Hands each worker its batch and waits (bounded) until every one has applied it, so that
    /// a removed listener refuses connections once the reload has returned. Returns notes on
    /// workers that did not confirm in time.
    fn send(&self, batches: Vec<Vec<Change>>) -> Vec<String> {
        let (done, confirmed) = std::sync::mpsc::channel();
        let mut waiting = 0;
        for (worker, changes) in self.workers.iter().zip(batches) {
            let batch = Batch {
                changes,
                done: Some(done.clone()),
            };
            // A worker that has exited (shutting down) has nothing left to change.
            if worker.send(batch).is_ok() {
                waiting += 1;
            }
        }
        drop(done);
        let deadline = Instant::now() + WORKER_CONFIRM;
        while waiting > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match confirmed.recv_timeout(left) {
                Ok(()) => waiting -= 1,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    return vec![format!(
                        "{waiting} worker thread(s) had not applied the listener changes after {}; \
                         they will when they get to it",
                        humantime::format_duration(WORKER_CONFIRM)
                    )];
                }
            }
        }
        Vec::new()
    }
}

/// The TLS side of a reload, read before anything changes.
struct TlsPlan {
    /// For each listener of the plan, in the order keep, rebind, add: its TLS side.
    of: Vec<Option<Arc<ServerTls>>>,
    /// Running TLS sides and the configuration with their re-read certificates, to install
    /// once the reload is certain.
    install: Vec<(Arc<ServerTls>, Arc<rustls::ServerConfig>)>,
}

/// Reads every certificate of the new configuration's TLS listeners. A listener that stays
/// TLS (kept, or moved to another address) keeps its `ServerTls`, with its session cache and
/// ticket keys, and gets a new rustls configuration to install; a new TLS listener gets a new
/// one. Every error is returned, naming its listener.
fn prepare_tls(running: &[LiveListener], plan: &listeners::Plan) -> Result<TlsPlan, Vec<String>> {
    let mut out = TlsPlan {
        of: Vec::new(),
        install: Vec::new(),
    };
    let mut errors = Vec::new();
    let kept = plan.keep.iter().map(|(i, l, _)| (Some(*i), l));
    let rebound = plan.rebind.iter().map(|(i, l)| (Some(*i), l));
    let added = plan.add.iter().map(|l| (None, l));
    for (i, l) in kept.chain(rebound).chain(added) {
        let old = i.and_then(|i| running[i].tls.clone());
        let tls = match (&l.tls, old) {
            (None, _) => Ok(None),
            (Some(t), Some(old)) => old.prepare(t).map(|config| {
                out.install.push((old.clone(), config));
                Some(old)
            }),
            (Some(t), None) => ServerTls::new(t).map(|s| Some(Arc::new(s))),
        };
        match tls {
            Ok(tls) => out.of.push(tls),
            Err(e) => errors.push(format!("listener `{}`: {e}", l.name)),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// The settings only a restart applies, as the engine started with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RestartOnly {
    /// `[admin] listen`: the admin interface binds it once, at start.
    admin_listen: SocketAddr,
    /// `workers`: the worker threads are started once.
    workers: Workers,
    /// `[cluster]`: the etcd client, watch and registration are set up once, at start.
    cluster: Option<ClusterConfig>,
}

impl RestartOnly {
    pub(super) fn of(config: &Config) -> RestartOnly {
        RestartOnly {
            admin_listen: config.admin.listen,
            workers: config.workers,
            cluster: config.cluster.clone(),
        }
    }

    /// What `new` asks for that differs from the start, in the operator's words.
    fn unapplied(&self, new: &Config) -> Vec<String> {
        let mut notes = Vec::new();
        if self.admin_listen != new.admin.listen {
            notes.push(format!(
                "[admin] listen changed from {} to {}: the admin interface stays on {} until a restart",
                self.admin_listen, new.admin.listen, self.admin_listen
            ));
        }
        if self.workers != new.workers {
            let says = |w: Workers| match w {
                Workers::Auto => "\"auto\"".to_string(),
                Workers::Fixed(n) => n.to_string(),
            };
            notes.push(format!(
                "`workers` changed from {} to {}: the worker threads change at the next restart",
                says(self.workers),
                says(new.workers)
            ));
        }
        if self.cluster != new.cluster {
            notes.push("[cluster] changes need a restart".to_string());
        }
        notes
    }
}

/// Logs a reload's outcome: one line with the summary, a warning per note, an error per error.
fn log_outcome(source: &str, outcome: &Result<ReloadSummary, Vec<String>>) {
    match outcome {
        Ok(summary) => {
            tracing::info!("configuration reloaded ({source}): {summary}");
            for n in &summary.notes {
                tracing::warn!("reload ({source}): not applied: {n}");
            }
        }
        Err(errors) => {
            tracing::error!(
                "reload ({source}) refused with {} error{}; the running configuration keeps serving",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            for e in errors {
                tracing::error!("reload ({source}) refused: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(prefix: &str) -> ClusterConfig {
        ClusterConfig {
            etcd: vec!["http://127.0.0.1:2379".to_string()],
            prefix: prefix.to_string(),
            name: Some("edge-1".to_string()),
            cache: None,
            timeout: Duration::from_secs(2),
            tls: None,
            user: None,
            password_env: None,
        }
    }

    #[test]
    fn cluster_changes_need_a_restart() {
        let standalone = crate::cli::empty_config();
        let mut clustered = standalone.clone();
        clustered.cluster = Some(cluster("/ringway/prod"));
        let note = vec!["[cluster] changes need a restart".to_string()];

        // Added, removed and changed are each noted; an unchanged section is not.
        assert_eq!(RestartOnly::of(&standalone).unapplied(&clustered), note);
        assert_eq!(RestartOnly::of(&clustered).unapplied(&standalone), note);
        let mut moved = clustered.clone();
        moved.cluster = Some(cluster("/ringway/staging"));
        assert_eq!(RestartOnly::of(&clustered).unapplied(&moved), note);
        assert!(RestartOnly::of(&clustered).unapplied(&clustered).is_empty());
        assert!(RestartOnly::of(&standalone).unapplied(&standalone).is_empty());

        // Beside the other restart-only settings, each with its own note.
        moved.workers = Workers::Fixed(3);
        let notes = RestartOnly::of(&clustered).unapplied(&moved);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with("`workers` changed from \"auto\" to 3"),
            "{notes:?}"
        );
        assert_eq!(notes[1], note[0]);
    }
}
