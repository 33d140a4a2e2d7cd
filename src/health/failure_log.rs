//! Upstream failures in the log: connect refused or timed out, reset, bad or no response,
//! response timeout, at `warn`, at most one line per server every [`LOG_EVERY`] with the count
//! of those not logged meanwhile.
//!
//! Owns: the rate limit (an atomic timestamp per server, no lock). Must not touch: retries or
//! counters other than its own two fields of `Server`.

use std::fmt::Display;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::proxy::state::{Pool, Server};

/// At most one logged failure per server in this time.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Whether a failure at `now` (ms) may be logged when the last was logged at `last` (ms, 0 =
/// never).
pub fn due(last: u64, now: u64, every: Duration) -> bool {
    let every = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
    last == 0 || now.saturating_sub(last) >= every
}

/// Milliseconds since the first call, plus one (so that 0 can mean "never").
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1
}

/// Logs an upstream failure of `server` (rate-limited); the ones not logged at `warn` go to
/// `debug`.
pub fn upstream_failure(pool: &Pool, server: &Server, what: &dyn Display) {
    // A clock read per failure, never per request: failures are the slow path.
    let now = now_ms();
    let last = server.failure_logged_at.load(Ordering::Relaxed);
    let won = due(last, now, LOG_EVERY)
        && server
            .failure_logged_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
    if !won {
        server.failures_unlogged.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            "pool `{}`: server `{}` ({}): {what}",
            pool.name,
            server.name,
            server.addr
        );
        return;
    }
    let unlogged = server.failures_unlogged.swap(0, Ordering::Relaxed);
    let more = if unlogged > 0 {
        format!(" ({unlogged} more since the last report)")
    } else {
        String::new()
    };
    tracing::warn!(
        "pool `{}`: server `{}` ({}) failed: {what}{more}",
        pool.name,
        server.name,
        server.addr
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window() {
        let every = Duration::from_secs(10);
        assert!(due(0, 1, every));
        assert!(!due(1, 9_999, every));
        assert!(due(1, 10_001, every));
        // A clock that went backwards (it cannot, but) logs nothing rather than panic.
        assert!(!due(5_000, 1_000, every));
    }
}
