//! The pure side of discovery: DNS answers turned into servers (addresses and weights), the
//! change a new answer makes to a pool, and when an outage is logged.
//!
//! Owns: [`address_endpoints`] and [`srv_endpoints`] (deduplicated, sorted, capped at
//! [`MAX_ENDPOINTS`], SRV weights brought into the pools' 1..=256), [`changes`] (who joins, who
//! drains, whose weight changes) and [`Standing`] (one warning per outage, one line at its end).
//! Must not touch: tokio, sockets, clocks, the pools themselves; callers pass plain values in and
//! apply what comes out.

use std::net::{IpAddr, SocketAddr};

use crate::balance::{MAX_WEIGHT, MIN_WEIGHT};

/// Most servers one answer may give a pool; the rest of a larger answer is left out (and logged).
pub const MAX_ENDPOINTS: usize = 512;

/// A server found in DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its weight in the pool (1..=256).
    pub weight: u32,
}

/// The servers of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// In address order, at most [`MAX_ENDPOINTS`].
    pub endpoints: Vec<Endpoint>,
    /// How many distinct servers the answer held before the cap.
    pub answered: usize,
}

impl Found {
    /// Whether the cap left servers out.
    pub fn capped(&self) -> bool {
        self.answered > self.endpoints.len()
    }
}

/// The name a discovered server gets: its address (`10.0.0.5:8080`, `[fd00::5]:8080`), as a
/// server listed without a name is called after its address.
pub fn endpoint_name(addr: SocketAddr) -> String {
    addr.to_string()
}

/// A/AAAA: every address on `port`, weight 1.
pub fn address_endpoints(ips: impl IntoIterator<Item = IpAddr>, port: u16) -> Found {
    finish(ips.into_iter().map(|ip| (SocketAddr::new(ip, port), 1)).collect())
}

/// One SRV record whose target has been resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    /// RFC 2782 priority: lower is preferred.
    pub priority: u16,
    /// RFC 2782 weight: share among records of the same priority.
    pub weight: u16,
    /// The server's port.
    pub port: u16,
    /// The target's addresses.
    pub ips: Vec<IpAddr>,
}

/// SRV: the records of the most preferred (lowest) priority, each address of each target on the
/// record's port. Weights keep their proportions: taken as they are when the largest is at most
/// 256, scaled down to 1..=256 otherwise; 0 (RFC 2782: "very small chance") counts as 1. An
/// address named by two records keeps the larger weight. Records with port 0 are unusable.
pub fn srv_endpoints(records: &[SrvTarget]) -> Found {
    let usable = || records.iter().filter(|r| r.port != 0 && !r.ips.is_empty());
    let Some(best) = usable().map(|r| r.priority).min() else {
        return finish(Vec::new());
    };
    let preferred: Vec<&SrvTarget> = usable().filter(|r| r.priority == best).collect();
    let largest = preferred.iter().map(|r| u32::from(r.weight)).max().unwrap_or(0);
    let weight = |w: u16| -> u32 {
        let w = u32::from(w);
        let scaled = if largest <= MAX_WEIGHT {
            w
        } else {
            // Rounded to the nearest, so that proportions survive as well as 256 steps allow.
            (w * MAX_WEIGHT + largest / 2) / largest
        };
        scaled.clamp(MIN_WEIGHT, MAX_WEIGHT)
    };
    finish(
        preferred
            .iter()
            .flat_map(|r| {
                r.ips
                    .iter()
                    .map(move |ip| (SocketAddr::new(*ip, r.port), weight(r.weight)))
            })
            .collect(),
    )
}

/// Sorted by address (DNS servers rotate their answers; the cap must not), one entry per address
/// with its largest weight, capped.
fn finish(mut all: Vec<(SocketAddr, u32)>) -> Found {
    all.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    all.dedup_by_key(|e| e.0);
    let answered = all.len();
    all.truncate(MAX_ENDPOINTS);
    Found {
        endpoints: all
            .into_iter()
            .map(|(addr, weight)| Endpoint { addr, weight })
            .collect(),
        answered,
    }
}

/// A member of the pool as discovery sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    /// Its name.
    pub name: &'a str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its configured weight.
    pub weight: u32,
    /// Discovery added it (and so may take it out).
    pub discovered: bool,
    /// It is draining to be removed.
    pub removing: bool,
    /// Its weight was set through the admin API, which outranks the records.
    pub weight_pinned: bool,
}

/// What a new answer changes in a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Servers to add.
    pub join: Vec<Endpoint>,
    /// Members (by index) to drain and remove once idle.
    pub leave: Vec<usize>,
    /// Members (by index) whose weight the records changed, with the new weight.
    pub reweigh: Vec<(usize, u32)>,
}

impl Changes {
    /// Whether the answer changes nothing.
    pub fn is_empty(&self) -> bool {
        self.join.is_empty() && self.leave.is_empty() && self.reweigh.is_empty()
    }
}

/// The change from the pool's `members` to the servers of an answer.
///
/// Only discovered members leave, and only when the answer lacks their address; members listed
/// in `servers` or added through the admin API stay whatever DNS says. An address that is
/// already a member (by address or by name) does not join again; one whose member is draining
/// to be removed joins anew once that member is gone. An empty answer changes nothing: a pool
/// is never emptied by DNS.
pub fn changes(found: &[Endpoint], members: &[Member<'_>]) -> Changes {
    let mut out = Changes::default();
    if found.is_empty() {
        return out;
    }
    for e in found {
        let name = endpoint_name(e.addr);
        match members.iter().position(|m| m.addr == e.addr || m.name == name) {
            None => out.join.push(*e),
            Some(i) => {
                let m = &members[i];
                if m.discovered && !m.removing && !m.weight_pinned && m.weight != e.weight {
                    out.reweigh.push((i, e.weight));
                }
            }
        }
    }
    for (i, m) in members.iter().enumerate() {
        if m.discovered && !m.removing && !found.iter().any(|e| e.addr == m.addr) {
            out.leave.push(i);
        }
    }
    out
}

/// How resolution has been going, to log each outage once (HAProxy and nginx log every failed
/// query; at a 1 s interval that is 3600 lines an hour saying the same thing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    /// Resolutions failed since the last good one.
    failures: u64,
    /// The last good answer was capped.
    capped: bool,
}

impl Standing {
    /// A resolution failed (error, timeout, no records): whether this begins an outage, the
    /// only failure to log.
    pub fn failed(&mut self) -> bool {
        self.failures += 1;
        self.failures == 1
    }

    /// A resolution gave servers: the number of failures in a row it ends, if it ends an
    /// outage (to log once), else `None`.
    pub fn succeeded(&mut self) -> Option<u64> {
        let ended = (self.failures > 0).then_some(self.failures);
        self.failures = 0;
        ended
    }

    /// Whether the cap applies to this answer when it did not to the last good one (to log
    /// once, not at every interval while the answer stays that large).
    pub fn capped(&mut self, capped: bool) -> bool {
        let begins = capped && !self.capped;
        self.capped = capped;
        begins
    }

    /// Whether an outage is going on.
    pub fn failing(&self) -> bool {
        self.failures > 0
    }
}

#[cfg(test)]
mod tests;
