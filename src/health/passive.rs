//! Passive ejection on the request path: count consecutive failures of a server, eject it at the
//! pool's threshold unless it is the last one taking traffic.
//!
//! Owns: the request path's side of ejection. Costs one relaxed atomic per attempt; the scan of
//! the pool's servers happens only when a server reaches the threshold. Readmission belongs to
//! the health thread (`supervisor.rs`). Must not touch: locks, the clock, the balancers.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::proxy::state::{Pool, Server};

use super::eject::{self, Ejection};
use super::events;

/// Held while one ejection decides, so that two servers failing at the same moment cannot each
/// see the other serving and both leave (an attempt that finds it held is skipped: the next
/// failure tries again).
static DECIDING: AtomicBool = AtomicBool::new(false);

/// An attempt on `server` failed: connect error or timeout, reset, no or bad response, response
/// timeout, or a 5xx answer.
#[inline]
pub fn on_failure(pool: &Pool, server: &Server) {
    let Some(passive) = &pool.settings.passive else {
        return;
    };
    let n = server
        .consecutive_failures
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(1);
    if n >= passive.failures && !server.is_ejected() {
        try_eject(pool, server, n, passive.failures);
    }
}

/// `server` answered with `status`: a 5xx is a failure, anything else ends a run of failures.
#[inline]
pub fn on_answer(pool: &Pool, server: &Server, status: u16) {
    if status >= 500 {
        on_failure(pool, server);
    } else if server.consecutive_failures.load(Ordering::Relaxed) != 0 {
        // Stored only when set: a write per request would bounce the cache line between workers.
        server.consecutive_failures.store(0, Ordering::Relaxed);
    }
}

#[cold]
fn try_eject(pool: &Pool, server: &Server, consecutive: u32, failures: u32) {
    if DECIDING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let members = pool.members.load();
    let others = members
        .servers
        .iter()
        .filter(|s| s.id != server.id && s.serving())
        .count();
    match eject::decide(consecutive, failures, server.is_ejected(), others) {
        Ejection::Eject => {
            events::set_ejected(
                &pool.name,
                server,
                true,
                &format!("{consecutive} failures in a row (passive.failures = {failures})"),
            );
        }
        // Said once per run of failures, not for every failure that follows.
        Ejection::LastServer if consecutive == failures => tracing::warn!(
            "pool `{}`: server `{}` ({}) not ejected after {consecutive} failures in a row: it is \
             the last server of the pool taking traffic",
            pool.name,
            server.name,
            server.address
        ),
        Ejection::LastServer | Ejection::Keep => {}
    }
    DECIDING.store(false, Ordering::Release);
}
