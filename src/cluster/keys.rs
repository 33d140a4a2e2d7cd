//! The fleet's keys in etcd and the JSON of their values (docs/scaling.md, "cluster mode").
//!
//! Owns: the key layout under the prefix, names encoded in keys as the admin API encodes them in
//! paths, and the value types with their JSON. Pure: no etcd, no engine, no clock. Must not
//! touch: how values are applied (`apply`) or stored (`store`).

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

/// Characters encoded in a name inside a key or an admin API path: those of a URL path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// What a key under the prefix stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// `P/config`: the published configuration.
    Config,
    /// `P/servers/{pool}/{server}`: a runtime change of one server.
    Server {
        /// The pool's name.
        pool: String,
        /// The server's name.
        server: String,
    },
    /// `P/routes/{route}/maintenance`: a route's maintenance switch.
    Maintenance {
        /// The route's name.
        route: String,
    },
    /// `P/instances/{name}`: an instance's registration.
    Instance {
        /// The instance's name.
        name: String,
    },
}

/// `name` as one URL path segment (keys in etcd and admin API paths alike).
pub fn segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

fn decode(segment: &str) -> Option<String> {
    let name = percent_decode_str(segment).decode_utf8().ok()?.into_owned();
    (!name.is_empty()).then_some(name)
}

impl Key {
    /// The whole etcd key under `prefix` (which has no trailing `/`).
    pub fn path(&self, prefix: &str) -> String {
        match self {
            Key::Config => format!("{prefix}/config"),
            Key::Server { pool, server } => {
                format!("{prefix}/servers/{}/{}", segment(pool), segment(server))
            }
            Key::Maintenance { route } => format!("{prefix}/routes/{}/maintenance", segment(route)),
            Key::Instance { name } => format!("{prefix}/instances/{}", segment(name)),
        }
    }

    /// The key that `full` names under `prefix`, or `None` for a key Ringway does not know.
    pub fn parse(prefix: &str, full: &str) -> Option<Key> {
        let rest = full.strip_prefix(prefix)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["config"] => Some(Key::Config),
            ["servers", pool, server] => Some(Key::Server {
                pool: decode(pool)?,
                server: decode(server)?,
            }),
            ["routes", route, "maintenance"] => Some(Key::Maintenance {
                route: decode(route)?,
            }),
            ["instances", name] => Some(Key::Instance { name: decode(name)? }),
            _ => None,
        }
    }

    /// Whether the key belongs in the cache file (the fleet's state, not who is in it).
    pub fn is_state(&self) -> bool {
        !matches!(self, Key::Instance { .. })
    }
}

/// `P/servers/{pool}/{server}`: every field optional; absent ones mean "as the config says".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerValue {
    /// `host:port`; needed when the pool does not have the server (it is then added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Weight 1..=256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// `ready`, `drain` or `maint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Drained, then removed once idle.
    #[serde(default, skip_serializing_if = "is_false")]
    pub removed: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// `P/routes/{route}/maintenance`: the body of `PUT /api/v1/routes/{route}/maintenance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceValue {
    /// Maintenance on by hand.
    pub enabled: bool,
    /// When it ends by itself (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// `Retry-After` while on (a humantime duration such as "30m").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
}

/// `P/config`: a configuration published with `ringway publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The whole file's text.
    pub toml: String,
    /// The file as the publisher named it (for messages).
    pub file: String,
    /// When it was published (RFC 3339).
    pub published_at: String,
    /// The host that published it.
    pub published_by: String,
}

/// `P/instances/{name}`: one instance as the fleet sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The instance's `[cluster] name`.
    pub name: String,
    /// Its admin address.
    pub admin: String,
    /// Ringway's version.
    pub version: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// The revision of the published config it runs, if it runs one.
    pub config_revision: Option<i64>,
    /// `file`, `published` or `cache`.
    pub config_source: String,
    /// Why the latest published config was not applied.
    pub config_error: Option<String>,
    /// `ok` or `shutting_down`.
    pub health: String,
    /// The last etcd revision it applied.
    pub revision_seen: i64,
}

/// A value that cannot be applied, in words for the log.
pub fn parse_value<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("not the JSON this key takes: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_have_one_layout() {
        let p = "/ringway/prod";
        let server = Key::Server {
            pool: "api".into(),
            server: "127.0.0.1:9001".into(),
        };
        assert_eq!(server.path(p), "/ringway/prod/servers/api/127.0.0.1:9001");
        assert_eq!(Key::Config.path(p), "/ringway/prod/config");
        let route = Key::Maintenance { route: "a b".into() };
        assert_eq!(route.path(p), "/ringway/prod/routes/a%20b/maintenance");
        for k in [
            server,
            route,
            Key::Config,
            Key::Instance {
                name: "edge-1".into(),
            },
        ] {
            assert_eq!(Key::parse(p, &k.path(p)), Some(k));
        }
        for other in [
            "/ringway/prod",
            "/ringway/prod/",
            "/ringway/production/config",
            "/ringway/prod/servers/api",
            "/ringway/prod/servers//x",
            "/ringway/prod/routes/r/other",
            "/ringway/prod/config/x",
            "/ringway/prod/servers/a/%FF",
        ] {
            assert_eq!(Key::parse(p, other), None, "{other}");
        }
        assert!(!Key::Instance { name: "a".into() }.is_state());
        assert!(Key::Config.is_state());
    }

    #[test]
    fn values_read_and_write_as_documented() {
        let v: ServerValue = parse_value(r#"{"state": "drain", "weight": 5}"#).unwrap_or_default();
        assert_eq!(v.state.as_deref(), Some("drain"));
        assert_eq!(v.weight, Some(5));
        assert!(!v.removed);
        assert_eq!(
            serde_json::to_string(&v).ok().as_deref(),
            Some(r#"{"weight":5,"state":"drain"}"#)
        );
        assert!(parse_value::<ServerValue>(r#"{"colour": "red"}"#).is_err());
        assert!(parse_value::<ServerValue>("not json").is_err());
        assert!(parse_value::<ServerValue>(r#"{"weight": -1}"#).is_err());
        let m: Result<MaintenanceValue, _> = parse_value(r#"{"enabled": true, "retry_after": "30m"}"#);
        assert_eq!(
            m.map(|m| (m.enabled, m.retry_after)),
            Ok((true, Some("30m".into())))
        );
        assert!(parse_value::<MaintenanceValue>("{}").is_err());
    }

    proptest! {
        #[test]
        fn any_names_survive_a_key(pool in "\\PC{1,20}", server in "\\PC{1,20}") {
            let k = Key::Server { pool, server };
            prop_assert_eq!(Key::parse("/p", &k.path("/p")), Some(k));
        }
    }
}
