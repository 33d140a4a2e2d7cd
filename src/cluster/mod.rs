//! Cluster mode: the fleet's runtime changes and published configs shared through etcd
//! (DESIGN.md section 8, docs/scaling.md).
//!
//! Owns: the `ringway-cluster` thread and its runtime, on which every etcd call runs (never on a
//! worker: the request path reads snapshots as in standalone mode and never waits on etcd); the
//! start from etcd or from the cache file; the admin API's writes through etcd; the view of the
//! fleet. Modules: `keys` (layout and values, pure), `mirror` (this instance's copy, pure),
//! `cache` (the file), `store` (etcd), `apply` (keys to the engine), `agent` (the watch loop and
//! the registration). Must not touch: the request path, the config format.

mod agent;
pub mod apply;
pub mod cache;
pub mod keys;
pub mod mirror;
pub mod publish;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::config::{ClusterConfig, Config};
use crate::proxy::Engine;
use apply::{Applier, ConfigStatus, Source};
use keys::{Key, Published, Registration, parse_value};
use mirror::Mirror;
use store::{Store, WriteError};

/// TLS to etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The CA that signed etcd's certificates (else the system's roots).
    pub ca: Option<PathBuf>,
    /// A client certificate and its key.
    pub cert_key: Option<(PathBuf, PathBuf)>,
}

/// `[cluster]` with everything known at run time filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// etcd's client URLs.
    pub endpoints: Vec<String>,
    /// Every key of the fleet lives under it (no trailing `/`).
    pub prefix: String,
    /// This instance's name.
    pub name: String,
    /// The cache file.
    pub cache: PathBuf,
    /// The bound of every etcd call.
    pub timeout: Duration,
    /// TLS to etcd.
    pub tls: Option<TlsSettings>,
    /// User and password for etcd.
    pub user: Option<(String, String)>,
}

impl Settings {
    /// The settings of `c`, from the config file at `config_path`, on host `hostname`.
    pub fn of(c: &ClusterConfig, config_path: &Path, hostname: &str) -> Result<Settings, String> {
        let name = c.name.clone().unwrap_or_else(|| hostname.to_string());
        let base = config_path.parent().unwrap_or(Path::new(""));
        let cache = c
            .cache
            .clone()
            .unwrap_or_else(|| base.join(format!("{name}.cluster-cache.json")));
        let user = match &c.user {
            Some(u) => {
                let var = c.password_env.as_deref().unwrap_or("RINGWAY_ETCD_PASSWORD");
                let password = std::env::var(var).map_err(|_| {
                    format!("[cluster] user `{u}` needs its password in the environment variable {var}")
                })?;
                Some((u.clone(), password))
            }
            None => None,
        };
        Ok(Settings {
            endpoints: c.etcd.clone(),
            prefix: c.prefix.clone(),
            name,
            cache,
            timeout: c.timeout,
            tls: c.tls.as_ref().map(|t| TlsSettings {
                ca: t.ca.clone(),
                cert_key: t.client.as_ref().map(|p| (p.cert.clone(), p.key.clone())),
            }),
            user,
        })
    }
}

/// Connection to etcd as the API shows it.
#[derive(Debug, Clone)]
struct Link {
    connected: bool,
    since: SystemTime,
    error: Option<String>,
}

/// What the agent and the admin API share.
#[derive(Debug)]
struct Shared {
    mirror: Mirror,
    link: Link,
    admin: Option<String>,
}

/// A running instance's part of the fleet.
pub struct Cluster {
    /// Its settings.
    pub settings: Settings,
    store: Arc<Store>,
    rt: tokio::runtime::Handle,
    shared: Mutex<Shared>,
    applier: Mutex<Option<Applier>>,
    applied: tokio::sync::watch::Sender<i64>,
    started_at: SystemTime,
    /// Wakes the registration when what it says changed.
    changed: tokio::sync::Notify,
    /// The registration's lease, once granted.
    lease: Mutex<Option<i64>>,
    /// Set by a stop: the registration is not written again.
    leaving: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What an instance starts with in cluster mode.
pub struct Boot {
    /// The config to start the engine with.
    pub config: Config,
    cluster: Arc<Cluster>,
    status: ConfigStatus,
    local: Config,
    base: PathBuf,
}

/// The thread that runs every etcd call, and its runtime's handle.
pub(crate) fn start_thread() -> std::io::Result<tokio::runtime::Handle> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("ringway-cluster".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// Runs `f` on the cluster runtime and waits for it on this (non-async) thread.
pub(crate) fn run_blocking<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    f: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().ok()
}

/// Starts cluster mode for the instance whose file `config_path` gave `local`: reads the fleet's
/// state from etcd (bounded by `[cluster] timeout`), or from the cache when etcd does not
/// answer, and chooses the config to start with.
pub fn boot(settings: Settings, local: Config, config_path: &Path) -> Result<Boot, String> {
    let rt = start_thread().map_err(|e| format!("cannot start the cluster thread: {e}"))?;
    let store = Arc::new(Store::new(&settings)?);
    let base = config_path.parent().unwrap_or(Path::new("")).to_path_buf();
    let prefix = settings.prefix.clone();
    let read = {
        let store = store.clone();
        let prefix = prefix.clone();
        run_blocking(&rt, async move { store.read_all(&prefix).await })
            .unwrap_or_else(|| Err("the cluster thread stopped".into()))
    };
    let (mirror, from_etcd, link) = match read {
        Ok(m) => {
            tracing::info!(
                "cluster: etcd answered at revision {} ({} keys under {prefix})",
                m.revision,
                m.kvs.len()
            );
            let link = Link {
                connected: true,
                since: SystemTime::now(),
                error: None,
            };
            (m, true, link)
        }
        Err(e) => {
            let cached =
                cache::read(&settings.cache).and_then(|c| c.map(|c| c.into_mirror(&prefix)).transpose());
            let m = match cached {
                Ok(Some(m)) => {
                    tracing::warn!(
                        "cluster: etcd unreachable ({e}); starting from the cache {} (revision {})",
                        settings.cache.display(),
                        m.revision
                    );
                    m
                }
                Ok(None) => {
                    tracing::warn!(
                        "cluster: etcd unreachable ({e}) and no cache at {}; starting from the file alone",
                        settings.cache.display()
                    );
                    Mirror::default()
                }
                Err(c) => {
                    tracing::warn!(
                        "cluster: etcd unreachable ({e}) and the cache is unusable ({c}); starting from the file alone"
                    );
                    Mirror::default()
                }
            };
            let link = Link {
                connected: false,
                since: SystemTime::now(),
                error: Some(e),
            };
            (m, false, link)
        }
    };
    let published = mirror
        .kvs
        .get(&Key::Config.path(&prefix))
        .map(|e| (parse_value::<Published>(&e.value), e.mod_revision));
    let (config, status) = match published {
        None => (
            local.clone(),
            ConfigStatus {
                revision: None,
                source: Source::File,
                error: None,
            },
        ),
        Some((p, revision)) => match p.and_then(|p| apply::published_config(&p, &local, &base)) {
            Ok(c) => (
                c,
                ConfigStatus {
                    revision: Some(revision),
                    source: if from_etcd {
                        Source::Published
                    } else {
                        Source::Cache
                    },
                    error: None,
                },
            ),
            Err(e) => {
                tracing::warn!(
                    "cluster: the config published at revision {revision} cannot run here: {e}; starting from the file"
                );
                (
                    local.clone(),
                    ConfigStatus {
                        revision: None,
                        source: Source::File,
                        error: Some(format!("revision {revision}: {e}")),
                    },
                )
            }
        },
    };
    let (applied, _) = tokio::sync::watch::channel(mirror.revision);
    let cluster = Arc::new(Cluster {
        settings,
        store,
        rt,
        shared: Mutex::new(Shared {
            mirror,
            link,
            admin: None,
        }),
        applier: Mutex::new(None),
        applied,
        started_at: SystemTime::now(),
        changed: tokio::sync::Notify::new(),
        lease: Mutex::new(None),
        leaving: std::sync::atomic::AtomicBool::new(false),
    });
    Ok(Boot {
        config,
        cluster,
        status,
        local,
        base,
    })
}

impl Boot {
    /// The instance's own file, when the config chosen cannot start (a listener it cannot
    /// bind): the instance starts from it and says why in its registration.
    pub fn fall_back(&mut self, why: &str) -> Option<Config> {
        if self.config == self.local {
            return None;
        }
        tracing::warn!("cluster: the fleet's config cannot start here ({why}); starting from the file");
        self.config = self.local.clone();
        self.status = ConfigStatus {
            revision: None,
            source: Source::File,
            error: Some(match self.status.revision {
                Some(r) => format!("revision {r}: {why}"),
                None => why.to_string(),
            }),
        };
        Some(self.config.clone())
    }

    /// Joins the fleet with the started `engine`: the runtime changes apply on top of its
    /// config, then the watch and the registration run.
    pub fn join(self, engine: Arc<Engine>) -> Arc<Cluster> {
        let cluster = self.cluster;
        let mut applier = Applier::new(
            engine.clone(),
            &cluster.settings.prefix,
            self.local,
            self.base,
            self.status,
        );
        {
            let mirror = cluster.lock().mirror.clone();
            // Applied on this runtime: removals spawn their wait for idleness on it.
            let _guard = cluster.rt.enter();
            applier.reapply_runtime(&mirror);
        }
        *cluster.applier.lock().unwrap_or_else(PoisonError::into_inner) = Some(applier);
        if cluster.lock().link.connected {
            agent::write_cache(&cluster);
        }
        let _ = engine.cluster.set(cluster.clone());
        cluster.rt.spawn(agent::watch(cluster.clone(), engine.clone()));
        cluster.rt.spawn(agent::register(cluster.clone(), engine));
        cluster
    }
}

/// Why an admin change through etcd did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    /// The key changed since this instance read it.
    Conflict,
    /// etcd did not take it.
    Unavailable(String),
    /// etcd did not answer in time: it may take it late (then every instance applies it).
    NoAnswer(String),
}

impl Cluster {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The config this instance runs, as the registration tells it.
    fn status(&self) -> Option<ConfigStatus> {
        self.applier
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|a| a.status.clone())
    }

    /// The admin address this instance registers with.
    pub fn set_admin(&self, addr: std::net::SocketAddr) {
        self.lock().admin = Some(addr.to_string());
        self.changed.notify_one();
    }

    /// The value of `key` as this instance has it, and its mod_revision (0: absent).
    pub fn current<T: for<'de> serde::Deserialize<'de>>(&self, key: &Key) -> (Option<T>, i64) {
        let shared = self.lock();
        match shared.mirror.kvs.get(&key.path(&self.settings.prefix)) {
            Some(e) => (parse_value(&e.value).ok(), e.mod_revision),
            None => (None, 0),
        }
    }

    /// Writes `value` at `key` if it is still at `expected`, then waits (up to the timeout)
    /// until this instance's watch has applied it.
    pub async fn change(
        &self,
        key: &Key,
        value: &impl serde::Serialize,
        expected: i64,
    ) -> Result<i64, ChangeError> {
        let text = serde_json::to_string(value).map_err(|e| ChangeError::Unavailable(e.to_string()))?;
        let store = self.store.clone();
        let full = key.path(&self.settings.prefix);
        let revision = self
            .rt
            .spawn(async move { store.write(&full, Some(text), expected).await })
            .await
            .map_err(|e| ChangeError::Unavailable(e.to_string()))?
            .map_err(|e| match e {
                WriteError::Conflict => ChangeError::Conflict,
                WriteError::Unavailable(e) => ChangeError::Unavailable(e),
                WriteError::NoAnswer(e) => ChangeError::NoAnswer(e),
            })?;
        let mut applied = self.applied.subscribe();
        let waited = tokio::time::timeout(self.store.timeout(), applied.wait_for(|r| *r >= revision)).await;
        if waited.is_err() {
            tracing::warn!("cluster: revision {revision} was written but this instance has not seen it yet");
        }
        Ok(revision)
    }

    /// A stop: the registration leaves the fleet's list now rather than when its lease runs out
    /// (bounded by the timeout; a crash still leaves within the lease's 10 s).
    pub fn leave(&self) {
        self.leaving.store(true, std::sync::atomic::Ordering::SeqCst);
        let lease = self.lease.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(lease) = lease {
            let store = self.store.clone();
            match run_blocking(&self.rt, async move { store.revoke(lease).await }) {
                Some(Ok(())) => tracing::info!("cluster: left the fleet's list"),
                Some(Err(e)) => {
                    tracing::warn!("cluster: could not leave the fleet's list ({e}); it expires by itself")
                }
                None => {}
            }
        }
    }

    /// `POST /api/v1/reload` and SIGHUP: the published config again, or the file.
    pub fn reload(&self) -> Result<crate::proxy::ReloadSummary, Vec<String>> {
        let mirror = self.lock().mirror.clone();
        let _guard = self.rt.enter();
        let mut applier = self.applier.lock().unwrap_or_else(PoisonError::into_inner);
        match applier.as_mut() {
            Some(a) => a.reload(&mirror),
            None => Err(vec!["cluster mode is still starting".into()]),
        }
    }

    /// This instance's registration as of now.
    fn registration(&self, engine: &Engine) -> Registration {
        let status = self.status();
        let shared = self.lock();
        let stopping = engine
            .shared
            .shutting_down
            .load(std::sync::atomic::Ordering::Relaxed);
        Registration {
            name: self.settings.name.clone(),
            admin: shared.admin.clone().unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: crate::admin::rfc3339(self.started_at),
            config_revision: status.as_ref().and_then(|s| s.revision),
            config_source: status.as_ref().map_or("file", |s| s.source.as_str()).into(),
            config_error: status.and_then(|s| s.error),
            health: if stopping { "shutting_down" } else { "ok" }.into(),
            revision_seen: shared.mirror.revision,
        }
    }

    /// `GET /api/v1/cluster` in cluster mode.
    pub fn view(&self, engine: &Engine) -> Value {
        let own = self.registration(engine);
        let shared = self.lock();
        let mut instances: Vec<Value> = shared
            .mirror
            .kvs
            .iter()
            .filter_map(|(k, e)| match Key::parse(&self.settings.prefix, k) {
                Some(Key::Instance { name }) if name != own.name => {
                    parse_value::<Registration>(&e.value).ok()
                }
                _ => None,
            })
            .map(|r| {
                let mut v = json!(r);
                v["self"] = json!(false);
                v
            })
            .collect();
        let mut me = json!(own);
        me["self"] = json!(true);
        instances.push(me);
        instances.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        json!({
            "mode": "cluster",
            "name": self.settings.name,
            "prefix": self.settings.prefix,
            "etcd": {
                "endpoints": self.settings.endpoints,
                "connected": shared.link.connected,
                "revision": shared.mirror.revision,
                "since": crate::admin::rfc3339(shared.link.since),
                "error": shared.link.error,
            },
            "config": {
                "revision": own.config_revision,
                "source": own.config_source,
                "error": own.config_error,
            },
            "instances": instances,
        })
    }
}
