//! etcd, through the etcd-client crate: reads, guarded writes, the watch and the lease.
//!
//! Owns: one client per endpoint, made when first needed, and the move to the next endpoint
//! when one fails (so a member that is down costs one failed attempt, not every call); the
//! bound of every call (`[cluster] timeout`). Must not touch: what keys mean, the engine.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, TlsOptions, Txn, TxnOp,
    WatchOptions, WatchStream,
};

use super::Settings;
use super::mirror::{Entry, Event, Mirror};

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The key changed since the value the write was based on.
    Conflict,
    /// etcd refused or could not be reached: the change was not taken.
    Unavailable(String),
    /// etcd did not answer within the timeout: it may still take the change late.
    NoAnswer(String),
}

/// What a watch delivers.
#[derive(Debug)]
pub enum WatchItem {
    /// Changes, in revision order.
    Events(Vec<Event>),
    /// The revision asked for was compacted away: resync from a full read.
    Compacted(i64),
}

/// The fleet's etcd.
pub struct Store {
    endpoints: Vec<String>,
    options: ConnectOptions,
    timeout: Duration,
    clients: Mutex<Vec<Option<Client>>>,
    current: AtomicUsize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

fn words(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("{}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

impl Store {
    /// A store of `settings`' endpoints; nothing is connected yet.
    pub fn new(settings: &Settings) -> Result<Store, String> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(settings.timeout)
            .with_timeout(settings.timeout)
            .with_keep_alive(Duration::from_secs(2), settings.timeout);
        if let Some((user, password)) = &settings.user {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &settings.tls {
            let mut t = TlsOptions::new();
            if let Some(ca) = &tls.ca {
                let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
                t = t.ca_certificate(etcd_client::Certificate::from_pem(pem));
            }
            if let Some((cert, key)) = &tls.cert_key {
                let c = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
                let k = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
                t = t.identity(etcd_client::Identity::from_pem(c, k));
            }
            options = options.with_tls(t);
        }
        Ok(Store {
            endpoints: settings.endpoints.clone(),
            options,
            timeout: settings.timeout,
            clients: Mutex::new(vec![None; settings.endpoints.len()]),
            current: AtomicUsize::new(0),
        })
    }

    /// The bound of every call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The client of the endpoint in use, connected if it was not.
    async fn client(&self) -> Result<(usize, Client), String> {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1);
        let cached = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(i)
            .cloned()
            .flatten();
        if let Some(c) = cached {
            return Ok((i, c));
        }
        let endpoint = self.endpoints.get(i).cloned().unwrap_or_default();
        let c = tokio::time::timeout(
            self.timeout,
            Client::connect([endpoint.as_str()], Some(self.options.clone())),
        )
        .await
        .map_err(|_| format!("{endpoint}: no answer within {:?}", self.timeout))?
        .map_err(|e| format!("{endpoint}: {}", words(&e)))?;
        if let Some(slot) = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(i)
        {
            *slot = Some(c.clone());
        }
        Ok((i, c))
    }

    /// Gives up on endpoint `i` for now: the next call tries the next one.
    fn failed(&self, i: usize) {
        if let Some(slot) = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(i)
        {
            *slot = None;
        }
        let _ = self.current.compare_exchange(
            i,
            (i + 1) % self.endpoints.len().max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Runs `call` on one endpoint after another until one answers, all within the timeout.
    async fn with_failover<T, F, Fut>(&self, what: &str, call: F) -> Result<T, String>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let attempts = async {
            let mut last = String::new();
            for _ in 0..self.endpoints.len().max(1) {
                match self.client().await {
                    Ok((i, c)) => match call(c).await {
                        Ok(v) => return Ok(v),
                        Err(e) => {
                            last = words(&e);
                            self.failed(i);
                        }
                    },
                    Err(e) => {
                        last = e;
                        self.failed(self.current.load(Ordering::Relaxed));
                    }
                }
            }
            Err(last)
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(r) => r.map_err(|e| format!("{what}: {e}")),
            Err(_) => Err(format!("{what}: no answer within {:?}", self.timeout)),
        }
    }

    /// Every key under `prefix` as of one revision.
    pub async fn read_all(&self, prefix: &str) -> Result<Mirror, String> {
        let from = format!("{prefix}/");
        let resp = self
            .with_failover("read", |mut c| {
                let from = from.clone();
                async move { c.get(from, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let mut mirror = Mirror {
            revision: resp.header().map_or(0, |h| h.revision()),
            ..Mirror::default()
        };
        for kv in resp.kvs() {
            let (Ok(key), Ok(value)) = (kv.key_str(), kv.value_str()) else {
                continue;
            };
            mirror.kvs.insert(
                key.to_string(),
                Entry {
                    value: value.to_string(),
                    mod_revision: kv.mod_revision(),
                },
            );
        }
        Ok(mirror)
    }

    /// Writes (or with `None` deletes) `key` if it is still at `expected` (its mod_revision, 0
    /// when absent); the revision of the write.
    pub async fn write(&self, key: &str, value: Option<String>, expected: i64) -> Result<i64, WriteError> {
        let began = tokio::time::Instant::now();
        let resp = self
            .with_failover("write", |mut c| {
                let op = match &value {
                    Some(v) => TxnOp::put(key, v.clone(), None),
                    None => TxnOp::delete(key, None),
                };
                let txn = Txn::new()
                    .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
                    .and_then([op]);
                async move { c.txn(txn).await }
            })
            .await
            .map_err(|e| {
                // A request that was sent and timed out may still commit: say so.
                if began.elapsed() >= self.timeout {
                    WriteError::NoAnswer(e)
                } else {
                    WriteError::Unavailable(e)
                }
            })?;
        if !resp.succeeded() {
            return Err(WriteError::Conflict);
        }
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// Writes `key` unconditionally (the published config); the revision of the write.
    pub async fn put(&self, key: &str, value: String) -> Result<i64, String> {
        let resp = self
            .with_failover("write", |mut c| {
                let value = value.clone();
                async move { c.put(key, value, None).await }
            })
            .await?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// Puts `key` under a new lease of `ttl` seconds; the lease's id.
    pub async fn register(&self, key: &str, value: String, ttl: i64) -> Result<i64, String> {
        let lease = self
            .with_failover("lease", |mut c| async move { c.lease_grant(ttl, None).await })
            .await?
            .id();
        self.with_failover("register", |mut c| {
            let value = value.clone();
            async move { c.put(key, value, Some(PutOptions::new().with_lease(lease))).await }
        })
        .await?;
        Ok(lease)
    }

    /// Rewrites `key` under the existing `lease`, keeping it alive.
    pub async fn refresh(&self, key: &str, value: String, lease: i64) -> Result<(), String> {
        self.with_failover("keep-alive", |mut c| async move {
            let (mut keeper, mut stream) = c.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            match stream.message().await? {
                Some(r) if r.ttl() > 0 => Ok(()),
                _ => Err(etcd_client::Error::LeaseKeepAliveError(
                    "the lease expired".into(),
                )),
            }
        })
        .await?;
        self.with_failover("register", |mut c| {
            let value = value.clone();
            async move { c.put(key, value, Some(PutOptions::new().with_lease(lease))).await }
        })
        .await
        .map(|_| ())
    }

    /// Revokes `lease`: the keys under it (the registration) go at once.
    pub async fn revoke(&self, lease: i64) -> Result<(), String> {
        self.with_failover("revoke", |mut c| async move { c.lease_revoke(lease).await })
            .await
            .map(|_| ())
    }

    /// Starts watching every key under `prefix` from `revision`.
    pub async fn watch(&self, prefix: &str, revision: i64) -> Result<Watch, String> {
        let from = format!("{prefix}/");
        let stream = self
            .with_failover("watch", |mut c| {
                let from = from.clone();
                async move {
                    c.watch(
                        from,
                        Some(WatchOptions::new().with_prefix().with_start_revision(revision)),
                    )
                    .await
                }
            })
            .await?;
        Ok(Watch { stream })
    }
}

/// A running watch.
pub struct Watch {
    stream: WatchStream,
}

impl Watch {
    /// The next changes; `Err` when the watch broke (etcd gone), `Ok(None)` when it ended.
    pub async fn next(&mut self) -> Result<Option<WatchItem>, String> {
        loop {
            let Some(resp) = self.stream.message().await.map_err(|e| words(&e))? else {
                return Ok(None);
            };
            if resp.compact_revision() > 0 {
                return Ok(Some(WatchItem::Compacted(resp.compact_revision())));
            }
            if resp.canceled() {
                return Err(format!("watch cancelled: {}", resp.cancel_reason()));
            }
            let mut events = Vec::new();
            for e in resp.events() {
                let Some(kv) = e.kv() else { continue };
                let Ok(key) = kv.key_str() else { continue };
                events.push(match e.event_type() {
                    EventType::Put => Event::Put {
                        key: key.to_string(),
                        value: kv.value_str().unwrap_or_default().to_string(),
                        revision: kv.mod_revision(),
                    },
                    EventType::Delete => Event::Delete {
                        key: key.to_string(),
                        revision: kv.mod_revision(),
                    },
                });
            }
            if !events.is_empty() {
                return Ok(Some(WatchItem::Events(events)));
            }
        }
    }
}
