//! Changes of a server's health or ejection: applied, logged once and counted.
//!
//! Owns: the one place where health and ejection flip, so that every change, in either
//! direction and for any cause (checks, passive ejection, its timer, a reload), is logged exactly
//! once (by whoever flipped the atomic) and counted in `Server::health_changes`.
//! Must not touch: the decisions (rise/fall, ejection rule) or the balancers.

use std::sync::atomic::Ordering;

use crate::proxy::state::{AdminState, Health, Server};

/// Sets `server`'s health to `to`; logs and counts the change if it is one. Returns whether it
/// changed. Up is logged at `info`, down at `warn` (at `info` for a server in maintenance,
/// which raises no alarm).
pub fn set_health(pool: &str, server: &Server, to: Health, reason: &str) -> bool {
    let from = server.set_health(to);
    if from == to {
        return false;
    }
    server.health_changes.fetch_add(1, Ordering::Relaxed);
    let (name, addr) = (&server.name, &server.address);
    let quiet = server.admin_state() == AdminState::Maint;
    match to {
        Health::Down if !quiet => tracing::warn!(
            "pool `{pool}`: server `{name}` ({addr}) is down (was {}): {reason}",
            from.as_str()
        ),
        _ => tracing::info!(
            "pool `{pool}`: server `{name}` ({addr}) is {} (was {}): {reason}",
            to.as_str(),
            from.as_str()
        ),
    }
    true
}

/// Ejects (`true`) or readmits `server`; logs and counts the change if it is one. Returns
/// whether it changed. Ejection is logged at `warn`, readmission at `info`.
pub fn set_ejected(pool: &str, server: &Server, ejected: bool, reason: &str) -> bool {
    if server.set_ejected(ejected) == ejected {
        return false;
    }
    server.health_changes.fetch_add(1, Ordering::Relaxed);
    let (name, addr) = (&server.name, &server.address);
    if ejected {
        tracing::warn!("pool `{pool}`: server `{name}` ({addr}) ejected: {reason}");
    } else {
        tracing::info!("pool `{pool}`: server `{name}` ({addr}) readmitted: {reason}");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Server {
        let addr = "127.0.0.1:1".parse().unwrap();
        Server::new("s".into(), "127.0.0.1:1".into(), addr, 1, Health::Checking)
    }

    #[test]
    fn changes_are_counted_once() {
        let s = server();
        assert!(set_health("p", &s, Health::Up, "2 checks passed"));
        assert!(!set_health("p", &s, Health::Up, "again"));
        assert!(set_health("p", &s, Health::Down, "3 checks failed"));
        assert!(set_ejected("p", &s, true, "5 failures"));
        assert!(!set_ejected("p", &s, true, "5 failures"));
        assert!(set_ejected("p", &s, false, "30s passed"));
        assert!(!set_ejected("p", &s, false, "30s passed"));
        assert_eq!(s.health_changes.load(Ordering::Relaxed), 4);
        assert_eq!(s.health(), Health::Down);
        assert!(!s.is_ejected());
    }
}
