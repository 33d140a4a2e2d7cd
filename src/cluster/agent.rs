//! The loops on the cluster thread: the watch that applies the fleet's changes in revision
//! order, and the registration under a lease.
//!
//! Owns: reconnecting with backoff (100 ms doubling to 5 s), logging an outage once when it
//! starts and once when it ends, catching up from the last revision seen (a full resync when
//! etcd has compacted it away), the cache file after every applied change. Must not touch: what
//! keys mean (`apply`), how etcd is called (`store`).

use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use super::keys::Key;
use super::mirror::{CacheFile, Event, Mirror};
use super::store::WatchItem;
use super::{Cluster, Link, cache};
use crate::proxy::Engine;

/// The first wait after a failure; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The registration's lease, in seconds: a crashed instance leaves the list within it.
const LEASE_TTL: i64 = 10;
/// How often the registration is rewritten and its lease kept alive.
const REGISTER_EVERY: Duration = Duration::from_secs(3);

/// Applies `events` in order: the mirror first, then the engine; then the cache file and the
/// revision the admin API waits for.
fn apply_events(cluster: &Cluster, events: Vec<Event>, resync_to: Option<Mirror>) {
    let mut state_changed = false;
    let mut last = 0;
    for event in &events {
        let mirror = {
            let mut shared = cluster.lock();
            if !shared.mirror.apply(event) {
                continue;
            }
            shared.mirror.clone()
        };
        last = last.max(event.revision());
        let is_state = Key::parse(&cluster.settings.prefix, event.key()).is_some_and(|k| k.is_state());
        if !is_state {
            continue;
        }
        state_changed = true;
        let value = match event {
            Event::Put { value, .. } => Some(value.as_str()),
            Event::Delete { .. } => None,
        };
        let before = cluster.status();
        if let Some(a) = cluster
            .applier
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            a.apply(event.key(), value, event.revision(), &mirror);
        }
        if cluster.status() != before {
            cluster.changed.notify_one();
        }
    }
    if let Some(newer) = resync_to {
        let mut shared = cluster.lock();
        shared.mirror.revision = shared.mirror.revision.max(newer.revision);
        last = last.max(newer.revision);
        state_changed = true;
    }
    if state_changed {
        write_cache(cluster);
    }
    if last > 0 {
        cluster.applied.send_if_modified(|r| {
            let newer = last > *r;
            *r = (*r).max(last);
            newer
        });
    }
}

pub(super) fn write_cache(cluster: &Cluster) {
    let state = cluster
        .lock()
        .mirror
        .only(|k| Key::parse(&cluster.settings.prefix, k).is_some_and(|k| k.is_state()));
    let file = CacheFile::of(&cluster.settings.name, &cluster.settings.prefix, &state);
    if let Err(e) = cache::write(&cluster.settings.cache, &file) {
        tracing::warn!(
            "cluster: cannot write the cache {}: {e}",
            cluster.settings.cache.display()
        );
    }
}

/// A full read: the differences with the mirror are applied as events.
async fn resync(cluster: &Cluster) -> Result<(), String> {
    let newer = cluster.store.read_all(&cluster.settings.prefix).await?;
    let events = cluster.lock().mirror.changes_to(&newer);
    apply_events(cluster, events, Some(newer));
    Ok(())
}

/// Marks etcd reachable or not, logging the change once.
fn set_link(cluster: &Cluster, error: Option<String>) {
    let back = {
        let mut shared = cluster.lock();
        let revision = shared.mirror.revision;
        match (&error, shared.link.connected) {
            (None, false) => {
                tracing::info!("cluster: etcd reachable again; catching up from revision {revision}")
            }
            (Some(e), true) => {
                tracing::warn!("cluster: etcd unreachable: {e}; serving revision {revision} until it is back")
            }
            _ => {}
        }
        let back = error.is_none() && !shared.link.connected;
        if shared.link.connected != error.is_none() {
            shared.link = Link {
                connected: error.is_none(),
                since: SystemTime::now(),
                error,
            };
        } else {
            shared.link.error = error;
        }
        back
    };
    // A config taken from the cache is the fleet's again once etcd answers: a newer one would
    // come through the watch.
    if back
        && let Some(a) = cluster
            .applier
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        && a.status.source == super::apply::Source::Cache
    {
        a.status.source = super::apply::Source::Published;
        cluster.changed.notify_one();
    }
}

/// The watch, for as long as the process runs.
pub async fn watch(cluster: Arc<Cluster>, _engine: Arc<Engine>) {
    let mut backoff = BACKOFF_MIN;
    let mut fresh = false;
    loop {
        let from = cluster.lock().mirror.revision;
        // With nothing seen yet (no etcd and no cache at start), a full read comes first;
        // otherwise the watch replays every change since the last revision seen.
        let started = if from == 0 || fresh {
            match resync(&cluster).await {
                Ok(()) => {
                    let from = cluster.lock().mirror.revision;
                    cluster.store.watch(&cluster.settings.prefix, from + 1).await
                }
                Err(e) => Err(e),
            }
        } else {
            cluster.store.watch(&cluster.settings.prefix, from + 1).await
        };
        let mut stream = match started {
            Ok(s) => s,
            Err(e) => {
                set_link(&cluster, Some(e));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        fresh = false;
        set_link(&cluster, None);
        backoff = BACKOFF_MIN;
        loop {
            match stream.next().await {
                Ok(Some(WatchItem::Events(events))) => apply_events(&cluster, events, None),
                Ok(Some(WatchItem::Compacted(at))) => {
                    tracing::warn!(
                        "cluster: etcd compacted past the revision this instance saw (now {at}); resyncing in full"
                    );
                    fresh = true;
                    break;
                }
                // A broken stream is retried at once (another member may answer); only a
                // failed reconnection counts as an outage.
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// The registration under a lease, rewritten every few seconds and whenever it changes.
pub async fn register(cluster: Arc<Cluster>, engine: Arc<Engine>) {
    let key = Key::Instance {
        name: cluster.settings.name.clone(),
    }
    .path(&cluster.settings.prefix);
    let mut lease = None;
    loop {
        if cluster.leaving.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let value = serde_json::to_string(&cluster.registration(&engine)).unwrap_or_default();
        lease = match lease {
            None => cluster.store.register(&key, value, LEASE_TTL).await.ok(),
            Some(l) => cluster.store.refresh(&key, value, l).await.ok().map(|()| l),
        };
        *cluster.lease.lock().unwrap_or_else(PoisonError::into_inner) = lease;
        tokio::select! {
            () = tokio::time::sleep(REGISTER_EVERY) => {}
            () = cluster.changed.notified() => {}
        }
    }
}
