//! `discover = { dns, interval, resolvers }` of a pool: which DNS question finds its servers.
//!
//! Owns: reading the table and telling an A/AAAA name (`name:port`) from an SRV name
//! (`_service._tcp.name`), with an error at the value for anything that is neither.
//! Must not touch: the network (nothing is resolved here; `src/discovery/` does that at run time).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::model::{DiscoverConfig, DnsQuery};
use super::values;
use super::walk::{Ctx, Tbl};

/// Shortest `interval`: below it a pool would query its DNS server many times a second.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The port of a resolver written without one.
const DNS_PORT: u16 = 53;

pub(super) fn parse_discover(cx: &mut Ctx, t: &Tbl<'_>) -> Option<DiscoverConfig> {
    t.check_keys(cx, &["dns", "interval", "resolvers"]);
    let dns = match t.get("dns") {
        None => {
            cx.missing(t, "dns");
            None
        }
        Some(f) => cx.str(f).and_then(|name| match dns_query(name) {
            Ok(q) => Some((name.to_string(), q)),
            Err(e) => {
                cx.err(f.at, e);
                None
            }
        }),
    };
    let interval = match t.get("interval") {
        None => Some(Duration::from_secs(5)),
        Some(f) => cx.duration(f, true).and_then(|d| {
            if d < MIN_INTERVAL {
                cx.err(
                    f.at,
                    format!(
                        "discover `interval` must be at least 100ms (found {}): the DNS server \
                         would be asked many times a second",
                        humantime::format_duration(d)
                    ),
                );
                None
            } else {
                Some(d)
            }
        }),
    };
    let resolvers = match t.get("resolvers") {
        None => Some(Vec::new()),
        Some(f) => {
            let elements = cx.array(f)?;
            if elements.is_empty() {
                cx.err(
                    f.at,
                    "`resolvers` must list at least one name server (\"10.0.0.2:53\"); leave it \
                     out to use the system's (/etc/resolv.conf)",
                );
                None
            } else {
                let mut out = Some(Vec::with_capacity(elements.len()));
                for el in elements {
                    let addr = cx.str(el).and_then(|s| match resolver_addr(s) {
                        Ok(a) => Some(a),
                        Err(e) => {
                            cx.err(el.at, e);
                            None
                        }
                    });
                    match (addr, out.as_mut()) {
                        (Some(a), Some(list)) => list.push(a),
                        _ => out = None,
                    }
                }
                out
            }
        }
    };
    let (dns, query) = dns?;
    Some(DiscoverConfig {
        dns,
        query,
        interval: interval?,
        resolvers: resolvers?,
    })
}

/// `name:port` → A/AAAA of `name`; `_service._tcp.name` → SRV; anything else is an error in the
/// operator's words.
pub(super) fn dns_query(s: &str) -> Result<DnsQuery, String> {
    const HOW: &str = "write name:port for A/AAAA records (\"api.internal:8000\") or \
                       _service._tcp.name for SRV records (\"_http._tcp.api.internal\")";
    if s.starts_with('_') {
        if s.contains(':') {
            return Err(format!(
                "discover `dns` \"{s}\": an SRV name takes no port (the records give each \
                 server's port); write it as \"_http._tcp.api.internal\""
            ));
        }
        return if is_srv_name(s) {
            Ok(DnsQuery::Srv {
                name: s.to_ascii_lowercase(),
            })
        } else {
            Err(format!("discover `dns` \"{s}\" is not an SRV name: {HOW}"))
        };
    }
    if s.starts_with('[') || s.parse::<Ipv6Addr>().is_ok() {
        return Err(format!(
            "discover `dns` \"{s}\" is an IP address, so there is nothing to resolve: list it \
             in `servers`"
        ));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("discover `dns` \"{s}\" has no port: {HOW}"));
    };
    if host.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "discover `dns` \"{s}\" is an IP address, so there is nothing to resolve: list it \
             in `servers`"
        ));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p >= 1 => p,
        _ => {
            return Err(format!(
                "discover `dns` \"{s}\": port `{port}` is not a number in 1..=65535"
            ));
        }
    };
    if !values::is_dns_name(host, true) {
        return Err(format!(
            "discover `dns` \"{s}\": `{host}` is not a valid DNS name; {HOW}"
        ));
    }
    Ok(DnsQuery::Address {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// `_service._tcp.domain`: a service label, the `_tcp` protocol label (HTTP runs over TCP), and
/// a domain of valid labels.
fn is_srv_name(s: &str) -> bool {
    let mut labels = s.splitn(3, '.');
    let (Some(service), Some(proto), Some(domain)) = (labels.next(), labels.next(), labels.next()) else {
        return false;
    };
    let service_ok = service.strip_prefix('_').is_some_and(|l| {
        !l.is_empty()
            && l.len() <= 62
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    service_ok && proto.eq_ignore_ascii_case("_tcp") && values::is_dns_name(domain, true)
}

/// A name server: `ip:port`, `[ipv6]:port`, or an IP alone (port 53).
fn resolver_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return if a.port() == 0 {
            Err(format!("resolver \"{s}\": port 0 is not a name server's port"))
        } else {
            Ok(a)
        };
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .map_err(|_| {
            format!(
                "resolver \"{s}\" is not an IP address with an optional port \
                 (\"10.0.0.2\", \"127.0.0.1:5353\", \"[fd00::53]:53\"); name servers are given \
                 by address"
            )
        })
}
