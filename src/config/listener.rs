//! `[[listener]]`: name, bind address, TLS certificates, limits and the https redirect.

use std::path::PathBuf;

use toml_edit::{Item, Value};

use super::model::*;
use super::parse::{name, redirect_status, socket_addr};
use super::validate::{Facts, ListenerFact, PathFact, PathKind};
use super::walk::{Ctx, Field, Node, Tbl};

const LISTENER_KEYS: &[&str] = &[
    "name",
    "bind",
    "tls",
    "proxy_protocol",
    "proxy_protocol_from",
    "trusted_proxies",
    "limits",
    "redirect_https",
];

pub(crate) fn parse_listener(cx: &mut Ctx, facts: &mut Facts, t: &Tbl<'_>) -> Option<ListenerConfig> {
    t.check_keys(cx, LISTENER_KEYS);
    let name = name(cx, t);
    let bind = match t.get("bind") {
        None => {
            cx.missing(t, "bind");
            None
        }
        Some(f) => socket_addr(cx, f).map(|a| (a, f.at)),
    };
    facts.listeners.push(ListenerFact {
        name: name.clone(),
        bind,
    });
    let tls = match t.get("tls") {
        None => Some(None),
        Some(f) => cx
            .table(f, "`tls` of [[listener]]".into())
            .and_then(|tt| parse_tls(cx, facts, &tt))
            .map(Some),
    };
    let proxy_protocol = t.get("proxy_protocol").map_or(Some(false), |f| cx.bool(f));
    let proxy_protocol_from = match t.get("proxy_protocol_from") {
        None => Some(Vec::new()),
        Some(f) => {
            if proxy_protocol == Some(false) {
                cx.err(
                    f.key_at,
                    "`proxy_protocol_from` needs `proxy_protocol = true` on the same listener",
                );
            }
            networks(cx, f)
        }
    };
    let trusted_proxies = t
        .get("trusted_proxies")
        .map_or(Some(Vec::new()), |f| networks(cx, f));
    let limits = match t.get("limits") {
        None => Some(Limits::default()),
        Some(f) => cx
            .table(f, "[listener.limits]".into())
            .and_then(|lt| parse_limits(cx, &lt)),
    };
    let redirect_https = match t.get("redirect_https") {
        None => Some(None),
        Some(f) => {
            if t.get("tls").is_some() {
                cx.err(
                    f.key_at,
                    "`redirect_https` on a TLS listener would redirect https to itself; \
                     put it on the plain-HTTP listener",
                );
            }
            cx.table(f, "`redirect_https`".into())
                .and_then(|rt| parse_redirect_https(cx, &rt))
                .map(Some)
        }
    };
    Some(ListenerConfig {
        name: name?.0,
        bind: bind?.0,
        tls: tls?,
        proxy_protocol: proxy_protocol?,
        proxy_protocol_from: proxy_protocol_from?,
        trusted_proxies: trusted_proxies?,
        limits: limits?,
        redirect_https: redirect_https?,
    })
}

/// A certificate or key file name, noted for the loader to check on disk.
fn tls_path<'a>(cx: &mut Ctx, facts: &mut Facts, f: Field<'a>, kind: PathKind) -> Option<&'a str> {
    let p = cx.nonempty_str(f)?;
    facts.paths.push(PathFact {
        kind,
        path: PathBuf::from(p),
        at: f.key_at,
    });
    Some(p)
}

/// `tls = { cert, key }`, `[listener.tls]` with cert/key, or `[[listener.tls.cert]]` tables.
fn parse_tls(cx: &mut Ctx, facts: &mut Facts, t: &Tbl<'_>) -> Option<TlsConfig> {
    t.check_keys(cx, &["cert", "key"]);
    let Some(cf) = t.get("cert") else {
        cx.missing(t, "cert");
        return None;
    };
    let list_form = matches!(cf.node, Node::Item(Item::ArrayOfTables(_)))
        || matches!(cf.node.value(), Some(Value::Array(_)));
    if !list_form {
        // The single-pair form.
        let cert = tls_path(cx, facts, cf, PathKind::TlsCert);
        let key = match t.get("key") {
            None => {
                cx.missing(t, "key");
                None
            }
            Some(f) => tls_path(cx, facts, f, PathKind::TlsKey),
        };
        return Some(TlsConfig {
            certs: vec![CertPair {
                cert: PathBuf::from(cert?),
                key: PathBuf::from(key?),
            }],
        });
    }
    // The SNI form: a list of {cert, key} tables.
    if let Some(kf) = t.get("key") {
        cx.err(
            kf.key_at,
            "`key` belongs inside each [[listener.tls.cert]] table when `cert` is a list",
        );
    }
    let mut certs = Vec::new();
    let mut ok = true;
    for pt in cx.tables(cf, "[[listener.tls.cert]]")? {
        pt.check_keys(cx, &["cert", "key"]);
        let cert = match pt.get("cert") {
            None => {
                cx.missing(&pt, "cert");
                None
            }
            Some(f) => tls_path(cx, facts, f, PathKind::TlsCert),
        };
        let key = match pt.get("key") {
            None => {
                cx.missing(&pt, "key");
                None
            }
            Some(f) => tls_path(cx, facts, f, PathKind::TlsKey),
        };
        match (cert, key) {
            (Some(c), Some(k)) => certs.push(CertPair {
                cert: PathBuf::from(c),
                key: PathBuf::from(k),
            }),
            _ => ok = false,
        }
    }
    if certs.is_empty() && ok {
        cx.err(cf.at, "`tls` needs at least one certificate");
        return None;
    }
    ok.then_some(TlsConfig { certs })
}

/// Smallest `max_header_bytes`: hyper's read buffer cannot be smaller than 8 KiB.
const MIN_HEADER_BYTES: u64 = 8192;
/// Largest `max_header_bytes`: more is a memory lever for attackers, never a need.
const MAX_HEADER_BYTES: u64 = 1 << 20;

fn parse_limits(cx: &mut Ctx, t: &Tbl<'_>) -> Option<Limits> {
    t.check_keys(
        cx,
        &[
            "header_timeout",
            "idle_timeout",
            "max_header_bytes",
            "max_body_bytes",
            "send_timeout",
        ],
    );
    let d = Limits::default();
    let header_timeout = t
        .get("header_timeout")
        .map_or(Some(d.header_timeout), |f| cx.duration(f, true));
    let idle_timeout = t
        .get("idle_timeout")
        .map_or(Some(d.idle_timeout), |f| cx.duration(f, true));
    let max_header_bytes = match t.get("max_header_bytes") {
        None => Some(d.max_header_bytes),
        Some(f) => cx.size(f).and_then(|n| {
            if (MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&n) {
                usize::try_from(n).ok()
            } else {
                cx.err(
                    f.at,
                    format!(
                        "`max_header_bytes` must be between 8KiB (8192, hyper's smallest \
                         buffer) and 1MiB (1048576), found {n}"
                    ),
                );
                None
            }
        }),
    };
    let max_body_bytes = match t.get("max_body_bytes") {
        None => Some(d.max_body_bytes),
        Some(f) => cx.size(f).and_then(|n| {
            if n == 0 {
                // nginx reads 0 as "unlimited"; a silent opposite meaning would bite.
                cx.err(
                    f.at,
                    "`max_body_bytes` must be at least 1 byte (unlike nginx, 0 does not mean \
                     unlimited; write a large size instead)",
                );
                None
            } else {
                Some(n)
            }
        }),
    };
    let send_timeout = t
        .get("send_timeout")
        .map_or(Some(d.send_timeout), |f| cx.duration(f, true));
    Some(Limits {
        send_timeout: send_timeout?,
        header_timeout: header_timeout?,
        idle_timeout: idle_timeout?,
        max_header_bytes: max_header_bytes?,
        max_body_bytes: max_body_bytes?,
    })
}

/// A list of networks (`["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]`); a bare address is a
/// network of one.
pub(crate) fn networks(cx: &mut Ctx, f: Field<'_>) -> Option<Vec<ipnet::IpNet>> {
    let items = cx.array(f)?;
    let mut nets = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        let Some(s) = cx.str(item) else {
            ok = false;
            continue;
        };
        match super::values::network(s) {
            Ok(n) => nets.push(n),
            Err(e) => {
                cx.err(item.at, e);
                ok = false;
            }
        }
    }
    ok.then_some(nets)
}

fn parse_redirect_https(cx: &mut Ctx, t: &Tbl<'_>) -> Option<RedirectHttps> {
    t.check_keys(cx, &["port", "status"]);
    let port = t.get("port").map_or(Some(443), |f| cx.int_in(f, 1, 65535));
    let status = t.get("status").map_or(Some(308), |f| redirect_status(cx, f));
    Some(RedirectHttps {
        port: u16::try_from(port?).ok()?,
        status: status?,
    })
}
