//! Listening sockets and the live set of listeners, and what a reload changes in it.
//!
//! Owns: binding a listener (one `SO_REUSEPORT` socket per worker, after making sure no other
//! process listens on the address), the listener set as it runs now (read by the admin side),
//! the plan of a reload's listener changes (a pure function of the running set and the new
//! configuration), and the batches of changes handed to each worker. Must not touch: client
//! connections and accept loops (`server.rs` runs those) or the configuration snapshot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use serde::Serialize;

use super::tls::ServerTls;
use crate::config::{ListenerConfig, binds_conflict};

/// One listener as it runs now.
#[derive(Debug, Clone)]
pub struct LiveListener {
    /// Process-unique id of this binding; a rebind gets a new one.
    pub id: u64,
    /// Its configuration (the latest applied).
    pub config: ListenerConfig,
    /// The address its sockets are bound to (the real port when the config says 0).
    pub addr: SocketAddr,
    /// Client connections open now on it, all workers (kept across a rebind or rename).
    pub open: Arc<AtomicUsize>,
    /// Its TLS side, for a TLS listener (shared by the workers; a reload swaps its
    /// certificates in place).
    pub tls: Option<Arc<ServerTls>>,
}

/// One change of a worker's accept loops.
#[derive(Debug)]
pub(super) enum Change {
    /// Start accepting on `socket` (this worker's own socket of listener `id`).
    Add {
        id: u64,
        config: ListenerConfig,
        open: Arc<AtomicUsize>,
        tls: Option<Arc<ServerTls>>,
        socket: std::net::TcpListener,
    },
    /// Stop accepting on listener `id` and close its socket; its connections carry on.
    Stop { id: u64 },
    /// New connections of listener `id` get these settings (limits, redirect, name, TLS).
    Update {
        id: u64,
        config: ListenerConfig,
        tls: Option<Arc<ServerTls>>,
    },
}

/// Changes a worker applies in order; `done` is told once they are all in effect.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) changes: Vec<Change>,
    pub(super) done: Option<std::sync::mpsc::Sender<()>>,
}

/// A listener bound once per worker.
#[derive(Debug)]
pub(super) struct Bound {
    /// The bound address (port 0 resolved).
    pub(super) addr: SocketAddr,
    /// One socket per worker, in worker order.
    pub(super) sockets: Vec<std::net::TcpListener>,
}

fn reuseport_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR: a restart must not wait for the old process's TIME_WAIT sockets.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = reuseport_socket(addr, true)?;
    socket.set_tcp_nodelay(true)?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Fails with `AddrInUse` when another socket listens on `addr`.
///
/// `SO_REUSEPORT` lets any process of the same user bind a port that Ringway serves and take a
/// share of its connections. A bind without it (but with `SO_REUSEADDR`, so that sockets in
/// TIME_WAIT do not count) fails when anything listens there, `SO_REUSEPORT` or not; the probe
/// is closed before the workers' sockets are bound. Between the two a process starting at the
/// same instant could still slip in: the window is a few system calls wide.
fn probe_free(addr: SocketAddr) -> std::io::Result<()> {
    reuseport_socket(addr, false).map(drop)
}

/// Binds listener `name` on `addr` once per worker (port 0: the first bind picks the port).
///
/// The address must be free of other processes' listeners; `ours` are the addresses this
/// process listens on now, which a listener moving or being renamed may share for a moment
/// (every socket of ours has `SO_REUSEPORT`).
pub(super) fn bind(
    name: &str,
    addr: SocketAddr,
    workers: usize,
    ours: &[SocketAddr],
) -> Result<Bound, String> {
    let failed = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "listener `{name}`: cannot bind {addr}: address already in use (another process listens on it)"
            )
        } else {
            format!("listener `{name}`: cannot bind {addr}: {e}")
        }
    };
    let shared_with_us = ours
        .iter()
        .any(|o| binds_conflict(addr, *o) || binds_conflict(*o, addr));
    if addr.port() != 0 && !shared_with_us {
        probe_free(addr).map_err(failed)?;
    }
    let mut bound = addr;
    let mut sockets = Vec::with_capacity(workers);
    for _ in 0..workers.max(1) {
        let sock = bind_reuseport(bound).map_err(failed)?;
        bound = sock.local_addr().map_err(failed)?;
        sockets.push(sock);
    }
    Ok(Bound { addr: bound, sockets })
}

/// What a reload does to the listeners: indices into the running set and new configurations.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Plan {
    /// Running listeners whose address stays: (index, new configuration, settings changed).
    pub(super) keep: Vec<(usize, ListenerConfig, bool)>,
    /// Listeners to bind and start.
    pub(super) add: Vec<ListenerConfig>,
    /// Running listeners to bind anew elsewhere, then stop: (index, new configuration).
    pub(super) rebind: Vec<(usize, ListenerConfig)>,
    /// Running listeners to stop.
    pub(super) remove: Vec<usize>,
}

/// Whether `wanted` asks for the address `running` already has: the same `bind`, or the port
/// the kernel picked for a `bind` with port 0 (written back into the file).
fn same_address(running: &LiveListener, wanted: &ListenerConfig) -> bool {
    wanted.bind == running.config.bind || wanted.bind == running.addr
}

/// Compares the running listeners with the configuration's: a listener is the same one when it
/// has the same name, or, renamed, the same address; it keeps its sockets when its address stays.
pub(super) fn plan(running: &[LiveListener], wanted: &[ListenerConfig]) -> Plan {
    let mut plan = Plan::default();
    let mut matched = vec![false; running.len()];
    let mut unmatched = Vec::new();
    for w in wanted {
        match running.iter().position(|r| r.config.name == w.name) {
            Some(i) => {
                matched[i] = true;
                if same_address(&running[i], w) {
                    let changed = settings_differ(&running[i].config, w);
                    plan.keep.push((i, w.clone(), changed));
                } else {
                    plan.rebind.push((i, w.clone()));
                }
            }
            None => unmatched.push(w),
        }
    }
    for w in unmatched {
        // Port 0 asks for "any port": another listener's, never a rename.
        let renamed =
            (0..running.len()).find(|&i| !matched[i] && w.bind.port() != 0 && same_address(&running[i], w));
        match renamed {
            Some(i) => {
                matched[i] = true;
                plan.keep.push((i, w.clone(), true));
            }
            None => plan.add.push(w.clone()),
        }
    }
    plan.remove = (0..running.len()).filter(|&i| !matched[i]).collect();
    plan
}

/// Whether anything but the address differs.
fn settings_differ(a: &ListenerConfig, b: &ListenerConfig) -> bool {
    let mut b = b.clone();
    b.bind = a.bind;
    *a != b
}

/// What a reload did to the listeners, as its answer and log say it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ListenerChanges {
    /// Listeners opened.
    pub added: Vec<ListenerAddr>,
    /// Listeners that stopped accepting (their connections finish by themselves).
    pub removed: Vec<ListenerAddr>,
    /// Listeners moved to another address.
    pub rebound: Vec<Rebound>,
    /// Listeners that kept their sockets but whose other settings (or name) changed; the new
    /// settings apply to connections accepted from now on.
    pub changed: Vec<String>,
}

/// A listener's name and bound address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerAddr {
    /// Listener name.
    pub name: String,
    /// Bound address.
    pub bind: SocketAddr,
}

/// A listener that moved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rebound {
    /// Listener name.
    pub name: String,
    /// The address it no longer accepts on.
    pub from: SocketAddr,
    /// The address it accepts on now.
    pub to: SocketAddr,
}

impl ListenerChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.rebound.is_empty() && self.changed.is_empty()
    }
}

impl std::fmt::Display for ListenerChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for a in &self.added {
            parts.push(format!("listener `{}` added on {}", a.name, a.bind));
        }
        for r in &self.removed {
            parts.push(format!("listener `{}` on {} removed", r.name, r.bind));
        }
        for r in &self.rebound {
            parts.push(format!("listener `{}` moved from {} to {}", r.name, r.from, r.to));
        }
        for c in &self.changed {
            parts.push(format!("listener `{c}` settings changed"));
        }
        if parts.is_empty() {
            f.write_str("listeners unchanged")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, bind: &str) -> ListenerConfig {
        crate::cli::listener(name, bind.parse().expect("address"))
    }

    fn live(id: u64, name: &str, bind: &str, bound: &str) -> LiveListener {
        LiveListener {
            id,
            config: cfg(name, bind),
            addr: bound.parse().expect("address"),
            open: Arc::new(AtomicUsize::new(0)),
            tls: None,
        }
    }

    #[test]
    fn unchanged_listeners_are_kept() {
        let running = [
            live(1, "a", "127.0.0.1:0", "127.0.0.1:4000"),
            live(2, "b", "127.0.0.1:81", "127.0.0.1:81"),
        ];
        // Port 0 as written, or the port it got.
        for a in ["127.0.0.1:0", "127.0.0.1:4000"] {
            let p = plan(&running, &[cfg("a", a), cfg("b", "127.0.0.1:81")]);
            assert_eq!(
                p,
                Plan {
                    keep: vec![(0, cfg("a", a), false), (1, cfg("b", "127.0.0.1:81"), false)],
                    ..Plan::default()
                }
            );
        }
    }

    #[test]
    fn added_removed_moved_and_changed() {
        let running = [
            live(1, "a", "127.0.0.1:80", "127.0.0.1:80"),
            live(2, "b", "127.0.0.1:81", "127.0.0.1:81"),
            live(3, "c", "127.0.0.1:82", "127.0.0.1:82"),
            live(4, "old", "127.0.0.1:83", "127.0.0.1:83"),
        ];
        let mut a = cfg("a", "127.0.0.1:80");
        a.limits.idle_timeout = std::time::Duration::from_secs(5);
        let p = plan(
            &running,
            &[
                a.clone(),
                cfg("b", "127.0.0.1:91"),
                cfg("new", "127.0.0.1:84"),
                cfg("renamed", "127.0.0.1:83"),
                cfg("any", "127.0.0.1:0"),
            ],
        );
        assert_eq!(
            p,
            Plan {
                keep: vec![(0, a, true), (3, cfg("renamed", "127.0.0.1:83"), true)],
                add: vec![cfg("new", "127.0.0.1:84"), cfg("any", "127.0.0.1:0")],
                rebind: vec![(1, cfg("b", "127.0.0.1:91"))],
                remove: vec![2],
            }
        );
    }

    #[test]
    fn a_busy_address_is_refused_and_ours_may_be_shared() {
        let first = bind("one", "127.0.0.1:0".parse().expect("address"), 2, &[]).expect("bind");
        assert_eq!(first.sockets.len(), 2);
        let err = bind("two", first.addr, 2, &[]).expect_err("another owner of the address");
        assert!(err.contains("address already in use"), "{err}");
        // The same process moving a listener onto an address it serves: allowed.
        let again = bind("two", first.addr, 1, &[first.addr]).expect("shared with ourselves");
        assert_eq!(again.addr, first.addr);
    }
}
