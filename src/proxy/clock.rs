//! The wall clock that maintenance reads: the system's, or a time set by a test.
//!
//! Owns: [`Clock`], one per engine (`Shared::clock`). Read only by routes that have
//! maintenance configured and by the admin views of it; a route without maintenance never
//! reads it. Must not touch: the monotonic clocks of timeouts and figures (tokio's and
//! `Stamp`), which stay real whatever this one says.

use std::sync::atomic::{AtomicI64, Ordering};

use jiff::Timestamp;

/// No time set: follow the system clock.
const SYSTEM: i64 = i64::MIN;

/// A wall clock the request path can read without a lock and a test can set.
#[derive(Debug)]
pub struct Clock {
    /// Milliseconds since the Unix epoch of a fixed time, or [`SYSTEM`].
    fixed_ms: AtomicI64,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock {
            fixed_ms: AtomicI64::new(SYSTEM),
        }
    }

    /// Now: the fixed time if one is set, the system's otherwise.
    pub fn now(&self) -> Timestamp {
        match self.fixed_ms.load(Ordering::Relaxed) {
            SYSTEM => Timestamp::now(),
            ms => Timestamp::from_millisecond(ms).unwrap_or_else(|_| Timestamp::now()),
        }
    }

    /// Stops the clock at `at` (to the millisecond) until [`Clock::follow_system`]: for tests
    /// that must be inside or outside a maintenance window.
    pub fn set(&self, at: Timestamp) {
        let ms = at.as_millisecond();
        // `SYSTEM` is out of jiff's range anyway; a clamp keeps it unambiguous.
        self.fixed_ms.store(ms.max(SYSTEM + 1), Ordering::Relaxed);
    }

    /// Follows the system clock again.
    pub fn follow_system(&self) {
        self.fixed_ms.store(SYSTEM, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_then_system() {
        let c = Clock::system();
        let at: Timestamp = "2001-03-25T01:30:00.250Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        c.set(at);
        assert_eq!(c.now(), at);
        c.follow_system();
        assert!(c.now() > at);
    }
}
