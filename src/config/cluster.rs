//! `[cluster]`: the etcd endpoints, key prefix, instance name, cache file, timeout, TLS and
//! user of cluster mode.
//!
//! Owns: reading and validating the section into a [`ClusterConfig`], every error at its key or
//! value. Must not touch: etcd, the host name, the environment (the password is read by the
//! runtime from the variable `password_env` names) or the files named (the loader checks `ca`,
//! `cert` and `key` on disk; the cache is written by the runtime).

use std::path::PathBuf;
use std::time::Duration;

use super::model::{CertPair, ClusterConfig, ClusterTls};
use super::validate::{Facts, PathFact, PathKind};
use super::values;
use super::walk::{Ctx, Field, Tbl};

const CLUSTER_KEYS: &[&str] = &[
    "etcd",
    "prefix",
    "name",
    "cache",
    "timeout",
    "ca",
    "cert",
    "key",
    "user",
    "password_env",
];

/// `timeout` when not written.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Shortest `timeout`: below it a healthy etcd across a data centre would time out.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest `timeout`: an admin call waits this long before answering 503.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// `password_env` when `user` is written without it.
pub(crate) const DEFAULT_PASSWORD_ENV: &str = "RINGWAY_ETCD_PASSWORD";

pub(crate) fn parse_cluster(cx: &mut Ctx, facts: &mut Facts, t: &Tbl<'_>) -> Option<ClusterConfig> {
    t.check_keys(cx, CLUSTER_KEYS);
    let etcd = match t.get("etcd") {
        None => {
            cx.missing(t, "etcd");
            None
        }
        Some(f) => endpoints(cx, f),
    };
    let prefix = match t.get("prefix") {
        None => {
            cx.missing(t, "prefix");
            None
        }
        Some(f) => cx.str(f).and_then(|s| match check_prefix(s) {
            Ok(()) => Some(s.to_string()),
            Err(e) => {
                cx.err(f.at, format!("`prefix`: {e}"));
                None
            }
        }),
    };
    let name = match t.get("name") {
        None => Some(None),
        Some(f) => cx.str(f).and_then(|s| {
            if values::is_valid_name(s) {
                Some(Some(s.to_string()))
            } else {
                cx.err(
                    f.at,
                    format!(
                        "`name` \"{s}\" must be non-empty, at most 128 characters, without `/`, \
                         spaces or control characters (it appears in etcd keys and the API)"
                    ),
                );
                None
            }
        }),
    };
    let cache = match t.get("cache") {
        None => Some(None),
        Some(f) => cx.nonempty_str(f).map(|s| Some(PathBuf::from(s))),
    };
    let timeout = match t.get("timeout") {
        None => Some(DEFAULT_TIMEOUT),
        Some(f) => cx.duration(f, false).and_then(|d| {
            if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d) {
                Some(d)
            } else {
                cx.err(
                    f.at,
                    format!(
                        "`timeout` must be between 100ms and 60s, found {}",
                        humantime::format_duration(d)
                    ),
                );
                None
            }
        }),
    };
    let tls = tls(cx, facts, t, etcd.as_deref());
    let user = match t.get("user") {
        None => Some(None),
        Some(f) => cx.nonempty_str(f).map(|s| Some(s.to_string())),
    };
    let password_env = match (t.get("password_env"), t.get("user")) {
        (None, None) => Some(None),
        (None, Some(_)) => Some(Some(DEFAULT_PASSWORD_ENV.to_string())),
        (Some(f), user) => {
            if user.is_none() {
                cx.err(
                    f.key_at,
                    "`password_env` has no use without `user` (the etcd user it is the password of)",
                );
            }
            super::parse::env_name(cx, f, "password_env").map(Some)
        }
    };
    Some(ClusterConfig {
        etcd: etcd?.into_iter().map(|(e, _)| e).collect(),
        prefix: prefix?,
        name: name?,
        cache: cache?,
        timeout: timeout?,
        tls: tls?,
        user: user?,
        password_env: password_env?,
    })
}

/// `etcd = [...]`: every endpoint normalised, with the offset of its value.
fn endpoints(cx: &mut Ctx, f: Field<'_>) -> Option<Vec<(String, usize)>> {
    let items = cx.array(f)?;
    if items.is_empty() {
        cx.err(
            f.at,
            "`etcd` must list at least one endpoint, e.g. [\"http://127.0.0.1:2379\"]",
        );
        return None;
    }
    let mut out: Vec<(String, usize)> = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        let Some(s) = cx.str(item) else {
            ok = false;
            continue;
        };
        match endpoint(s) {
            Ok(e) if out.iter().any(|(o, _)| *o == e) => {
                cx.err(item.at, format!("etcd endpoint \"{s}\" is listed twice"));
                ok = false;
            }
            Ok(e) => out.push((e, item.at)),
            Err(e) => {
                cx.err(item.at, e);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// One endpoint, `http://host:port` or `https://host:port` (a trailing `/` tolerated): the
/// scheme lower-cased and the trailing `/` dropped, or why it is not one.
pub(crate) fn endpoint(s: &str) -> Result<String, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!(
            "etcd endpoint \"{s}\" has no scheme; write \"http://{s}\" (or https://)"
        ));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "etcd endpoint \"{s}\": the scheme must be http:// or https://, not {scheme}://"
        ));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if let Some(i) = authority.find(['/', '?', '#']) {
        return Err(format!(
            "etcd endpoint \"{s}\": nothing may follow host:port, found \"{}\"",
            &authority[i..]
        ));
    }
    if authority.contains('@') {
        return Err(format!(
            "etcd endpoint \"{s}\": a user in the URL is not read; write `user` in [cluster]"
        ));
    }
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    if !has_port {
        return Err(format!(
            "etcd endpoint \"{s}\" has no port; write e.g. \"{scheme}://{authority}:2379\""
        ));
    }
    values::host_port(authority).map_err(|e| format!("etcd endpoint \"{s}\": {e}"))?;
    Ok(format!("{scheme}://{authority}"))
}

/// Whether `s` is a key prefix: starts with `/`, no trailing `/`, no empty segment, segments of
/// `[A-Za-z0-9._-]` (so that it needs no quoting in `etcdctl` or a URL).
pub(crate) fn check_prefix(s: &str) -> Result<(), String> {
    if s == "/" {
        return Err(
            "\"/\" would put the fleet's keys at the root of etcd; name a segment, \
             e.g. \"/ringway/prod\""
                .to_string(),
        );
    }
    let Some(rest) = s.strip_prefix('/') else {
        return Err(format!(
            "\"{s}\" must start with `/`, e.g. \"/{}\"",
            s.trim_end_matches('/')
        ));
    };
    if s.ends_with('/') {
        return Err(format!(
            "\"{s}\" must not end with `/`; write \"{}\"",
            s.trim_end_matches('/')
        ));
    }
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Err(format!("\"{s}\" has an empty segment (`//`)"));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "\"{s}\": segment \"{segment}\" holds {c:?}; segments are letters, digits, \
                 `.`, `_` and `-`"
            ));
        }
    }
    Ok(())
}

/// `ca`, `cert` and `key`: noted for the loader to check on disk; `cert` and `key` come
/// together; with any of them, every endpoint must be `https://` (the etcd client refuses TLS
/// settings with an `http://` endpoint).
fn tls(
    cx: &mut Ctx,
    facts: &mut Facts,
    t: &Tbl<'_>,
    endpoints: Option<&[(String, usize)]>,
) -> Option<Option<ClusterTls>> {
    let mut path = |cx: &mut Ctx, key: &str, kind: PathKind| -> Option<Option<PathBuf>> {
        let Some(f) = t.get(key) else {
            return Some(None);
        };
        let p = PathBuf::from(cx.nonempty_str(f)?);
        facts.paths.push(PathFact {
            kind,
            path: p.clone(),
            at: f.key_at,
        });
        Some(Some(p))
    };
    let ca = path(cx, "ca", PathKind::ClusterCa);
    let cert = path(cx, "cert", PathKind::ClusterCert);
    let key = path(cx, "key", PathKind::ClusterKey);
    let cert_f = t.get("cert");
    let key_f = t.get("key");
    match (cert_f, key_f) {
        (Some(f), None) => cx.err(
            f.key_at,
            "`cert` needs `key` (the client certificate's private key) in [cluster]",
        ),
        (None, Some(f)) => cx.err(
            f.key_at,
            "`key` needs `cert` (the client certificate it belongs to) in [cluster]",
        ),
        _ => {}
    }
    let first = ["ca", "cert", "key"].into_iter().find(|k| t.get(k).is_some());
    if let (Some(first), Some(endpoints)) = (first, endpoints) {
        for (e, at) in endpoints.iter().filter(|(e, _)| e.starts_with("http://")) {
            cx.err(
                *at,
                format!(
                    "etcd endpoint \"{e}\" is not https://, but `{first}` in [cluster] asks for \
                     TLS to etcd, which is spoken to every endpoint or to none"
                ),
            );
        }
    }
    let (ca, cert, key) = (ca?, cert?, key?);
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Some(CertPair { cert, key }),
        (None, None) => None,
        _ => return None,
    };
    Some((ca.is_some() || client.is_some()).then_some(ClusterTls { ca, client }))
}
