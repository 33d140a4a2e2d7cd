//! Applies the fleet's keys to this instance's engine: published configs, server changes and
//! route maintenance, each as the admin API or a reload would.
//!
//! Owns: what each key means for the running state (docs/scaling.md has the table), the refusal
//! of values that cannot apply (logged once per key and revision, disturbing nothing), and the
//! state of the published config (which revision runs, or why one did not). Must not touch: etcd
//! (`store`), the order of events (`agent`), the request path beyond the atomics and member
//! swaps of `proxy::state`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{Ordering, fence};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::keys::{Key, MaintenanceValue, Published, ServerValue, parse_value};
use super::mirror::Mirror;
use crate::config::{self, Config};
use crate::proxy::Engine;
use crate::proxy::state::{AdminState, Health, Server, SwitchState, drain_then_remove, resolve};

/// Where the running config came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The instance's own file.
    File,
    /// A config published to the fleet.
    Published,
    /// The cache file, while etcd was unreachable at start.
    Cache,
}

impl Source {
    /// As the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Published => "published",
            Source::Cache => "cache",
        }
    }
}

/// Which config this instance runs, and why not the published one when it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigStatus {
    /// The revision of the published config it runs.
    pub revision: Option<i64>,
    /// Where it came from.
    pub source: Source,
    /// Why the latest published config was not applied.
    pub error: Option<String>,
}

/// The published config of `text`, checked as `ringway check` does, with this instance's own
/// `[admin]` and `[cluster]`; relative paths are taken from `base`, its own file's directory.
pub fn published_config(published: &Published, local: &Config, base: &Path) -> Result<Config, String> {
    let label = format!("{} (published)", published.file);
    let (mut c, warnings) = config::load_text(&published.toml, &label, base).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    c.admin = local.admin.clone();
    c.cluster = local.cluster.clone();
    Ok(c)
}

/// The switch a maintenance value asks for, or why it cannot be one.
pub fn switch_of(v: &MaintenanceValue) -> Result<SwitchState, String> {
    let retry_after = v
        .retry_after
        .as_deref()
        .map(|s| {
            humantime::parse_duration(s.trim()).map_err(|e| {
                format!("`retry_after` {s:?} is not a duration ({e}); write e.g. \"30m\" or \"2h\"")
            })
        })
        .transpose()?;
    let until = v
        .until
        .as_deref()
        .map(|s| {
            s.trim().parse::<jiff::Timestamp>().map_err(|e| {
                format!("`until` {s:?} is not an RFC 3339 time ({e}); write e.g. \"2026-12-01T06:00:00Z\"")
            })
        })
        .transpose()?;
    if !v.enabled && (retry_after.is_some() || until.is_some()) {
        return Err("`retry_after` and `until` only go with \"enabled\": true".into());
    }
    if retry_after == Some(Duration::ZERO) {
        return Err("`retry_after` must be longer than zero".into());
    }
    Ok(SwitchState {
        enabled: v.enabled,
        until,
        retry_after,
        by_api: true,
    })
}

/// Applies keys to one engine.
pub struct Applier {
    engine: Arc<Engine>,
    prefix: String,
    local: Config,
    base: PathBuf,
    logged: HashSet<(String, i64)>,
    /// The config this instance runs.
    pub status: ConfigStatus,
}

impl Applier {
    /// An applier for `engine`, which runs a config from `source`.
    pub fn new(
        engine: Arc<Engine>,
        prefix: &str,
        local: Config,
        base: PathBuf,
        status: ConfigStatus,
    ) -> Applier {
        Applier {
            engine,
            prefix: prefix.to_string(),
            local,
            base,
            logged: HashSet::new(),
            status,
        }
    }

    /// A value that cannot apply: logged once for its key and revision, nothing else.
    fn ignore(&mut self, key: &str, revision: i64, why: &str) {
        if self.logged.insert((key.to_string(), revision)) {
            tracing::warn!("cluster: {key} at revision {revision} ignored: {why}");
        }
    }

    /// Applies the key `full` (its new value, or `None` when deleted) written at `revision`;
    /// `mirror` holds every key as of then (a new config re-applies the runtime changes).
    pub fn apply(&mut self, full: &str, value: Option<&str>, revision: i64, mirror: &Mirror) {
        let Some(key) = Key::parse(&self.prefix, full) else {
            return;
        };
        match key {
            Key::Instance { .. } => {}
            Key::Config => match value {
                Some(text) => match parse_value::<Published>(text) {
                    Ok(p) => self.apply_config(&p, revision, mirror),
                    Err(e) => {
                        self.status.error = Some(format!("revision {revision}: {e}"));
                        self.ignore(full, revision, &e);
                    }
                },
                None => tracing::warn!(
                    "cluster: the published config was deleted at revision {revision}; this instance keeps the config it runs"
                ),
            },
            Key::Server { pool, server } => {
                let parsed = value.map(parse_value::<ServerValue>).transpose();
                match parsed {
                    Ok(v) => {
                        if let Err(why) = self.apply_server(&pool, &server, v.as_ref()) {
                            self.ignore(full, revision, &why);
                        }
                    }
                    Err(e) => self.ignore(full, revision, &e),
                }
            }
            Key::Maintenance { route } => {
                let parsed = value.map(parse_value::<MaintenanceValue>).transpose();
                let outcome = parsed.and_then(|v| self.apply_maintenance(&route, v.as_ref()));
                if let Err(why) = outcome {
                    self.ignore(full, revision, &why);
                }
            }
        }
    }

    /// Swaps in a published config as a reload does, then the runtime changes on top again.
    fn apply_config(&mut self, p: &Published, revision: i64, mirror: &Mirror) {
        if self.status.revision == Some(revision) && self.status.source != Source::Cache {
            return;
        }
        let outcome = published_config(p, &self.local, &self.base).and_then(|c| {
            self.engine
                .reload(c, &format!("cluster, revision {revision}"))
                .map_err(|e| e.join("; "))
        });
        match outcome {
            Ok(_) => {
                self.status = ConfigStatus {
                    revision: Some(revision),
                    source: Source::Published,
                    error: None,
                };
                self.reapply_runtime(mirror);
            }
            Err(e) => {
                tracing::warn!("cluster: the config published at revision {revision} was not applied: {e}");
                self.status.error = Some(format!("revision {revision}: {e}"));
            }
        }
    }

    /// Applies every server and maintenance key again (after a config swap).
    pub fn reapply_runtime(&mut self, mirror: &Mirror) {
        let keys: Vec<(String, String, i64)> = mirror
            .kvs
            .iter()
            .filter(|(k, _)| {
                matches!(
                    Key::parse(&self.prefix, k),
                    Some(Key::Server { .. } | Key::Maintenance { .. })
                )
            })
            .map(|(k, e)| (k.clone(), e.value.clone(), e.mod_revision))
            .collect();
        for (k, v, r) in keys {
            self.apply(&k, Some(&v), r, mirror);
        }
    }

    /// `POST /api/v1/reload` and SIGHUP in cluster mode: the published config again if there
    /// is one (certificates re-read; one that could not apply before is tried again), else the
    /// instance's file.
    pub fn reload(&mut self, mirror: &Mirror) -> Result<crate::proxy::ReloadSummary, Vec<String>> {
        let published = mirror.kvs.get(&Key::Config.path(&self.prefix)).and_then(|e| {
            parse_value::<Published>(&e.value)
                .ok()
                .map(|p| (p, e.mod_revision))
        });
        let outcome = match published {
            Some((p, revision)) => published_config(&p, &self.local, &self.base)
                .map_err(|e| vec![e])
                .and_then(|c| {
                    self.engine
                        .reload(c, &format!("cluster, revision {revision} again"))
                })
                .inspect(|_| {
                    self.status = ConfigStatus {
                        revision: Some(revision),
                        source: Source::Published,
                        error: None,
                    }
                })
                .inspect_err(|e| self.status.error = Some(format!("revision {revision}: {}", e.join("; ")))),
            None => self.engine.reload_local_file("api"),
        };
        if outcome.is_ok() {
            self.reapply_runtime(mirror);
        }
        outcome
    }

    fn apply_server(
        &mut self,
        pool_name: &str,
        name: &str,
        value: Option<&ServerValue>,
    ) -> Result<(), String> {
        let shared = self.engine.shared.clone();
        let snapshot = shared.snapshot.load_full();
        let pool = snapshot
            .pools
            .get(pool_name)
            .cloned()
            .ok_or_else(|| format!("no pool `{pool_name}`"))?;
        let configured = snapshot
            .config
            .pools
            .iter()
            .find(|p| p.name == pool_name)
            .and_then(|p| p.servers.iter().find(|s| s.name == name))
            .cloned();
        let state = value
            .and_then(|v| v.state.as_deref())
            .map(|s| AdminState::parse(s).ok_or_else(|| format!("state {s:?} is not ready, drain or maint")))
            .transpose()?
            .unwrap_or(AdminState::Ready);
        let weight = value.and_then(|v| v.weight);
        if let Some(w) = weight
            && !(crate::balance::MIN_WEIGHT..=crate::balance::MAX_WEIGHT).contains(&w)
        {
            return Err(format!("weight {w} is not between 1 and 256"));
        }
        let present = |pool: &crate::proxy::state::Pool| {
            pool.members
                .load()
                .servers
                .iter()
                .find(|s| s.name == name && !s.removing.load(Ordering::Relaxed))
                .cloned()
        };
        let removed = value.is_some_and(|v| v.removed);
        // A server to add is resolved before the lock: name resolution may take a while.
        let to_add = match (present(&pool), removed) {
            (None, false) => {
                let address = value
                    .and_then(|v| v.address.clone())
                    .or_else(|| configured.as_ref().map(|c| c.address.clone()));
                match address {
                    Some(a) => Some((resolve(&a)?, a)),
                    None if value.is_none() => return Ok(()),
                    None => {
                        return Err(format!(
                            "pool `{pool_name}` has no server `{name}` and the value gives no address"
                        ));
                    }
                }
            }
            _ => None,
        };
        let _changes = shared.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(server) = present(&pool) else {
            let Some((addr, address)) = to_add else {
                return Ok(());
            };
            if value.is_none() && configured.is_none() {
                return Ok(());
            }
            let health = if pool.settings.health.is_some() {
                Health::Checking
            } else {
                Health::Up
            };
            let w = weight.or(configured.as_ref().map(|c| c.weight)).unwrap_or(1);
            let server = Arc::new(Server::new(name.to_string(), address, addr, w, health));
            server.set_admin_state(state);
            server
                .runtime_added
                .store(configured.is_none(), Ordering::Relaxed);
            server
                .weight_overridden
                .store(weight.is_some(), Ordering::Relaxed);
            let mut servers = pool.members.load().servers.clone();
            servers.push(server.clone());
            pool.set_members(servers);
            tracing::info!(
                "pool `{pool_name}`: server `{name}` ({}) added, {} (cluster)",
                server.address,
                health.as_str()
            );
            return Ok(());
        };
        let gone = removed
            || (value.is_none() && configured.is_none() && server.runtime_added.load(Ordering::Relaxed));
        if gone {
            if pool.others_than(name) == 0 {
                return Err(format!("removing `{name}` would leave pool `{pool_name}` empty"));
            }
            drain_then_remove(&shared, pool_name, &server, "cluster");
            return Ok(());
        }
        let before = server.admin_state();
        if before != state {
            server.set_admin_state(state);
            tracing::info!(
                "pool `{pool_name}`: server `{name}` {} -> {} (cluster)",
                before.as_str(),
                state.as_str()
            );
        }
        let w = weight.or(configured.as_ref().map(|c| c.weight));
        if let Some(w) = w
            && (w != server.weight() || server.weight_overridden.load(Ordering::Relaxed) != weight.is_some())
        {
            server.set_weight(w);
            server
                .weight_overridden
                .store(weight.is_some(), Ordering::Relaxed);
            pool.rebuild();
            tracing::info!("pool `{pool_name}`: server `{name}` weight {w} (cluster)");
        }
        // Picks on every worker see the change once the watch goes on to the next event.
        fence(Ordering::SeqCst);
        Ok(())
    }

    fn apply_maintenance(&mut self, route: &str, value: Option<&MaintenanceValue>) -> Result<(), String> {
        let shared = &self.engine.shared;
        let _changes = shared.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = shared.snapshot.load();
        let r = snapshot
            .routes
            .iter()
            .find(|r| r.name == route)
            .ok_or_else(|| format!("no route `{route}`"))?;
        let m = r
            .maintenance
            .as_deref()
            .ok_or_else(|| format!("route `{route}` has no [route.maintenance] table"))?;
        let state = match value {
            Some(v) => switch_of(v)?,
            None => {
                let enabled = snapshot
                    .config
                    .routes
                    .iter()
                    .find(|c| c.name == route)
                    .and_then(|c| c.maintenance.as_ref())
                    .is_some_and(|m| m.enabled);
                SwitchState::from_file(enabled)
            }
        };
        if **m.switch.load() != state {
            tracing::info!(
                "route `{route}`: maintenance {} (cluster)",
                if state.enabled { "on" } else { "off" }
            );
            m.switch.store(Arc::new(state));
        }
        Ok(())
    }
}
