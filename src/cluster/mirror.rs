//! This instance's copy of the fleet's keys: what it has applied, at which etcd revision.
//!
//! Owns: applying watch events in revision order, the difference between two copies (a full
//! resync becomes the events that turn one into the other), and the cache file's JSON. Pure:
//! no etcd, no files, no engine. Must not touch: what a key means (`apply`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One key's value and the revision that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The value's text (JSON for the keys Ringway writes).
    pub value: String,
    /// The etcd revision that last changed the key.
    pub mod_revision: i64,
}

/// A change of one key, as a watch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key was written.
    Put {
        /// The whole key.
        key: String,
        /// Its new value.
        value: String,
        /// The revision that wrote it.
        revision: i64,
    },
    /// The key was deleted.
    Delete {
        /// The whole key.
        key: String,
        /// The revision that deleted it.
        revision: i64,
    },
}

impl Event {
    /// The key it changes.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { key, .. } | Event::Delete { key, .. } => key,
        }
    }

    /// The revision it happened at.
    pub fn revision(&self) -> i64 {
        match self {
            Event::Put { revision, .. } | Event::Delete { revision, .. } => *revision,
        }
    }
}

/// The keys under the prefix as of `revision`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirror {
    /// The etcd revision this copy is complete up to.
    pub revision: i64,
    /// Every key with its value.
    pub kvs: BTreeMap<String, Entry>,
}

impl Mirror {
    /// Applies one event; `false` when it is older than what the mirror holds (a watch that
    /// replays revisions it already delivered after a reconnect), which changes nothing.
    pub fn apply(&mut self, event: &Event) -> bool {
        let revision = event.revision();
        if let Some(e) = self.kvs.get(event.key())
            && e.mod_revision >= revision
        {
            return false;
        }
        match event {
            Event::Put { key, value, .. } => {
                self.kvs.insert(
                    key.clone(),
                    Entry {
                        value: value.clone(),
                        mod_revision: revision,
                    },
                );
            }
            Event::Delete { key, .. } => {
                if self.kvs.remove(key).is_none() {
                    self.revision = self.revision.max(revision);
                    return false;
                }
            }
        }
        self.revision = self.revision.max(revision);
        true
    }

    /// The events that turn this copy into `newer`, keys in order (a full resync).
    pub fn changes_to(&self, newer: &Mirror) -> Vec<Event> {
        let mut events = Vec::new();
        for (key, entry) in &newer.kvs {
            if self.kvs.get(key) != Some(entry) {
                events.push(Event::Put {
                    key: key.clone(),
                    value: entry.value.clone(),
                    revision: entry.mod_revision,
                });
            }
        }
        for key in self.kvs.keys() {
            if !newer.kvs.contains_key(key) {
                events.push(Event::Delete {
                    key: key.clone(),
                    revision: newer.revision,
                });
            }
        }
        events
    }

    /// The keys for which `keep` holds, at the same revision (what the cache file holds).
    pub fn only(&self, keep: impl Fn(&str) -> bool) -> Mirror {
        Mirror {
            revision: self.revision,
            kvs: self
                .kvs
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect(),
        }
    }
}

/// The cache file: the last state this instance applied, to start from while etcd is away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheFile {
    /// Format version (1).
    pub version: u32,
    /// The instance that wrote it.
    pub name: String,
    /// The fleet's prefix; a cache of another prefix is not used.
    pub prefix: String,
    /// The etcd revision of the state.
    pub revision: i64,
    /// The state's keys.
    pub kvs: BTreeMap<String, Entry>,
}

impl CacheFile {
    /// The cache of `mirror`'s state keys.
    pub fn of(name: &str, prefix: &str, state: &Mirror) -> CacheFile {
        CacheFile {
            version: 1,
            name: name.to_string(),
            prefix: prefix.to_string(),
            revision: state.revision,
            kvs: state.kvs.clone(),
        }
    }

    /// The mirror this cache holds, if it is one of `prefix`.
    pub fn into_mirror(self, prefix: &str) -> Result<Mirror, String> {
        if self.version != 1 {
            return Err(format!("cache format {} is not 1", self.version));
        }
        if self.prefix != prefix {
            return Err(format!(
                "the cache is of prefix {:?}, not {prefix:?}",
                self.prefix
            ));
        }
        Ok(Mirror {
            revision: self.revision,
            kvs: self.kvs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn put(key: &str, value: &str, revision: i64) -> Event {
        Event::Put {
            key: key.into(),
            value: value.into(),
            revision,
        }
    }

    #[test]
    fn events_apply_in_revision_order_once() {
        let mut m = Mirror::default();
        assert!(m.apply(&put("/p/a", "1", 5)));
        assert!(!m.apply(&put("/p/a", "0", 4)), "an older put is a replay");
        assert!(!m.apply(&put("/p/a", "1", 5)), "the same revision twice");
        assert!(m.apply(&put("/p/b", "2", 6)));
        assert!(m.apply(&Event::Delete {
            key: "/p/a".into(),
            revision: 7
        }));
        assert!(!m.apply(&Event::Delete {
            key: "/p/zz".into(),
            revision: 8
        }));
        assert_eq!(m.revision, 8);
        assert_eq!(m.kvs.len(), 1);
    }

    #[test]
    fn cache_files_name_their_prefix() {
        let mut m = Mirror::default();
        m.apply(&put("/p/config", "{}", 3));
        let cache = CacheFile::of("edge-1", "/p", &m);
        let text = serde_json::to_string(&cache).unwrap_or_default();
        let back: CacheFile = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.clone().into_mirror("/p"), Ok(m));
        assert!(back.into_mirror("/q").is_err());
    }

    proptest! {
        /// A resync's events, applied to the old copy, give the new one (keys and values).
        #[test]
        fn resync_events_turn_old_into_new(
            old in proptest::collection::btree_map("[a-e]", ("[xy]", 1i64..50), 0..5),
            new in proptest::collection::btree_map("[a-e]", ("[xy]", 50i64..100), 0..5),
        ) {
            let mirror = |kvs: &std::collections::BTreeMap<String, (String, i64)>, revision| Mirror {
                revision,
                kvs: kvs.iter().map(|(k, (v, r))| (k.clone(), Entry { value: v.clone(), mod_revision: *r })).collect(),
            };
            let mut a = mirror(&old, 49);
            let b = mirror(&new, 100);
            for e in a.changes_to(&b) {
                a.apply(&e);
            }
            prop_assert_eq!(a.kvs, b.kvs);
        }
    }
}
