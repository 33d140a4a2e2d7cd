//! Asking DNS: a hickory resolver per discovering pool, and one resolution of its name into
//! servers.
//!
//! Owns: building the resolver (the pool's `resolvers`, or the system's configuration), the
//! A/AAAA and SRV questions, the lookup of SRV targets that the answer's additional section does
//! not cover, and telling a failure (error, timeout, NXDOMAIN, no records) from an answer.
//! Must not touch: the pools (the caller applies what a resolution found).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use super::plan::{self, Found, SrvTarget};
use crate::config::{DiscoverConfig, DnsQuery};

/// Most SRV targets looked up at once when the answer did not carry their addresses.
const TARGET_LOOKUPS_AT_ONCE: usize = 16;

/// Why a resolution gave no servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The resolver failed: no answer, a timeout, SERVFAIL, REFUSED, …
    Error(String),
    /// The name has no usable records (NXDOMAIN, or an answer without any).
    NoRecords(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error(e) | Failure::NoRecords(e) => f.write_str(e),
        }
    }
}

/// The resolver of one discovering pool. Its cache is off: `interval` says how often the
/// servers are looked at (as Envoy's `dns_refresh_rate`), not the records' TTL, which Docker's
/// DNS sets to 600 s.
pub fn resolver(config: &DiscoverConfig) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if config.resolvers.is_empty() {
        TokioResolver::builder(provider)
            .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?
    } else {
        let name_servers = config
            .resolvers
            .iter()
            .map(|addr| {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = addr.port();
                        c
                    })
                    .collect();
                NameServerConfig::new(addr.ip(), true, connections)
            })
            .collect();
        let mut resolver_config = ResolverConfig::default();
        resolver_config.name_servers = name_servers;
        let mut builder = TokioResolver::builder_with_config(resolver_config, provider);
        // Name servers given by hand are the whole truth; /etc/hosts is not asked.
        builder.options_mut().use_hosts_file = ResolveHosts::Never;
        builder
    };
    let options = builder.options_mut();
    options.cache_size = 0;
    options.positive_max_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(Duration::ZERO);
    // A query waits no longer than the interval (within 1 s to 5 s): an answer that late is
    // stale before the next one is due.
    options.timeout = config
        .interval
        .clamp(Duration::from_secs(1), Duration::from_secs(5));
    builder
        .build()
        .map_err(|e| format!("cannot build the DNS resolver: {e}"))
}

/// The longest a whole resolution may take (queries, retries, SRV targets).
pub fn deadline(config: &DiscoverConfig) -> Duration {
    config
        .interval
        .clamp(Duration::from_secs(1), Duration::from_secs(5))
        * 4
}

/// Resolves `query` once.
pub async fn resolve(resolver: &TokioResolver, query: &DnsQuery) -> Result<Found, Failure> {
    match query {
        DnsQuery::Address { host, port } => {
            let ips = addresses(resolver, host).await?;
            if ips.is_empty() {
                return Err(Failure::NoRecords(format!("`{host}` has no A or AAAA records")));
            }
            Ok(plan::address_endpoints(ips, *port))
        }
        DnsQuery::Srv { name } => srv(resolver, name).await,
    }
}

/// The IPv4 and IPv6 addresses of `host`, asked together. "No records" of one family is an
/// answer (most names have only A records); an error of either fails the whole, so that a lost
/// AAAA query never takes the IPv6 servers out of a pool.
async fn addresses(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, Failure> {
    let (v4, v6) = tokio::join!(
        resolver.lookup(host, RecordType::A),
        resolver.lookup(host, RecordType::AAAA)
    );
    let mut ips = Vec::new();
    for outcome in [v4, v6] {
        match outcome {
            Ok(lookup) => ips.extend(lookup.answers().iter().filter_map(ip_of)),
            Err(e) if e.is_no_records_found() => {}
            Err(e) => return Err(Failure::Error(describe(host, &e))),
        }
    }
    Ok(ips)
}

fn ip_of(record: &Record) -> Option<IpAddr> {
    match &record.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}

/// The SRV records of `name`, each target resolved: from the additional section when the
/// server put the addresses there (Consul, CoreDNS do), else by asking for them.
async fn srv(resolver: &TokioResolver, name: &str) -> Result<Found, Failure> {
    let lookup = match resolver.lookup(name, RecordType::SRV).await {
        Ok(l) => l,
        Err(e) if e.is_no_records_found() => return Err(Failure::NoRecords(describe(name, &e))),
        Err(e) => return Err(Failure::Error(describe(name, &e))),
    };
    let records: Vec<(u16, u16, u16, Name)> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            // A target of "." says the service is not offered there (RFC 2782).
            RData::SRV(s) if !s.target.is_root() => Some((s.priority, s.weight, s.port, s.target.clone())),
            _ => None,
        })
        .take(plan::MAX_ENDPOINTS)
        .collect();
    if records.is_empty() {
        return Err(Failure::NoRecords(format!("`{name}` has no SRV records")));
    }
    let mut known: HashMap<Name, Vec<IpAddr>> = HashMap::new();
    for r in lookup.additionals() {
        if let Some(ip) = ip_of(r) {
            known.entry(r.name.clone()).or_default().push(ip);
        }
    }
    let mut missing: Vec<Name> = records
        .iter()
        .map(|(.., target)| target.clone())
        .filter(|t| !known.contains_key(t))
        .collect();
    missing.sort();
    missing.dedup();
    for chunk in missing.chunks(TARGET_LOOKUPS_AT_ONCE) {
        let mut lookups = tokio::task::JoinSet::new();
        for target in chunk {
            let (resolver, target) = (resolver.clone(), target.clone());
            lookups.spawn(async move {
                let ips = addresses(&resolver, &target.to_ascii()).await;
                (target, ips)
            });
        }
        while let Some(done) = lookups.join_next().await {
            let (target, ips) = done.map_err(|e| Failure::Error(format!("SRV target lookup failed: {e}")))?;
            // A target without addresses is skipped; one that failed to resolve fails the whole
            // answer, so the last good servers stay.
            known.insert(target, ips?);
        }
    }
    let targets: Vec<SrvTarget> = records
        .into_iter()
        .map(|(priority, weight, port, target)| SrvTarget {
            priority,
            weight,
            port,
            ips: known.get(&target).cloned().unwrap_or_default(),
        })
        .collect();
    let found = plan::srv_endpoints(&targets);
    if found.endpoints.is_empty() {
        return Err(Failure::NoRecords(format!(
            "the SRV records of `{name}` name no reachable target (no addresses, or port 0)"
        )));
    }
    Ok(found)
}

/// A resolver error in the operator's words: NXDOMAIN and SERVFAIL by name.
fn describe(name: &str, e: &NetError) -> String {
    if e.is_nx_domain() {
        format!("`{name}` does not exist (NXDOMAIN)")
    } else if e.is_no_records_found() {
        format!("`{name}` has no records of the type asked for")
    } else {
        format!("resolving `{name}` failed: {e}")
    }
}
