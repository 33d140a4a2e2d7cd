//! The rise/fall counter of active checks, as HAProxy keeps it (`check->health` in its
//! `set_server_check_status`), pure.
//!
//! Owns: turning a sequence of check results into health states. Must not touch: servers,
//! clocks or sockets; the health thread feeds results in and applies the states out.
//!
//! The counter runs from 0 to `rise + fall - 1`; a server is up while it is at least `rise`.
//! A pass adds one and, once the counter reaches `rise`, jumps it to the top; a failure takes
//! one off and, once it drops below `rise`, drops it to 0. So an up server goes down after
//! `fall` failures in a row, and a down server comes up after `rise` passes in a row; one
//! result of the other kind starts the count again.
//!
//! HAProxy has no "checking" state (its servers start up). Here a server never seen up is
//! `Checking`: `rise` passes make it up, `fall` failures in a row make it down (it was checked
//! and fails, which an operator wants to see as such).

use crate::proxy::state::Health;

/// Rise/fall state of one server's active checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    /// HAProxy's counter, `0..=rise + fall - 1`.
    health: u32,
    /// Failures in a row while `Checking`.
    checking_failures: u32,
    state: Health,
}

impl RiseFall {
    /// A counter for `rise`/`fall` (each at least 1) starting from the server's current health.
    pub fn new(rise: u32, fall: u32, current: Health) -> RiseFall {
        let (rise, fall) = (rise.max(1), fall.max(1));
        RiseFall {
            rise,
            fall,
            health: if current == Health::Up { rise + fall - 1 } else { 0 },
            checking_failures: 0,
            state: current,
        }
    }

    /// The state the results so far give.
    pub fn state(&self) -> Health {
        self.state
    }

    /// Counts one check result; returns the new state if it changed.
    pub fn record(&mut self, passed: bool) -> Option<Health> {
        let top = self.rise + self.fall - 1;
        let before = self.state;
        if passed {
            self.checking_failures = 0;
            if self.health < top {
                self.health += 1;
                if self.health >= self.rise {
                    self.health = top;
                }
            }
            if self.health >= self.rise {
                self.state = Health::Up;
            }
        } else {
            if self.health > 0 {
                self.health -= 1;
                if self.health < self.rise {
                    self.health = 0;
                }
            }
            match self.state {
                Health::Up if self.health < self.rise => self.state = Health::Down,
                Health::Checking => {
                    self.checking_failures = self.checking_failures.saturating_add(1);
                    if self.checking_failures >= self.fall {
                        self.state = Health::Down;
                    }
                }
                _ => {}
            }
        }
        (self.state != before).then_some(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(c: &mut RiseFall, results: &str) -> Vec<Option<Health>> {
        results.chars().map(|r| c.record(r == 'P')).collect()
    }

    #[test]
    fn checking_comes_up_after_rise_passes() {
        let mut c = RiseFall::new(2, 3, Health::Checking);
        assert_eq!(run(&mut c, "P"), vec![None]);
        assert_eq!(run(&mut c, "P"), vec![Some(Health::Up)]);
    }

    #[test]
    fn a_failure_restarts_the_rise() {
        let mut c = RiseFall::new(3, 2, Health::Down);
        assert_eq!(run(&mut c, "PPFPP"), vec![None; 5]);
        assert_eq!(c.record(true), Some(Health::Up));
    }

    #[test]
    fn up_goes_down_after_fall_failures_in_a_row() {
        let mut c = RiseFall::new(2, 3, Health::Up);
        assert_eq!(run(&mut c, "FFPFF"), vec![None; 5]);
        assert_eq!(c.record(false), Some(Health::Down));
        assert_eq!(run(&mut c, "FFF"), vec![None; 3]);
        assert_eq!(run(&mut c, "PP"), vec![None, Some(Health::Up)]);
    }

    #[test]
    fn checking_goes_down_after_fall_failures() {
        let mut c = RiseFall::new(2, 2, Health::Checking);
        assert_eq!(run(&mut c, "FPF"), vec![None; 3]);
        assert_eq!(c.record(false), Some(Health::Down));
    }

    #[test]
    fn rise_and_fall_of_one_follow_every_result() {
        let mut c = RiseFall::new(1, 1, Health::Checking);
        assert_eq!(
            run(&mut c, "PFPF"),
            vec![
                Some(Health::Up),
                Some(Health::Down),
                Some(Health::Up),
                Some(Health::Down)
            ]
        );
    }

    /// The same rules written as "the last `rise` results passed" / "the last `fall` failed".
    fn model(rise: u32, fall: u32, start: Health, results: &[bool]) -> Health {
        let mut state = start;
        let (mut passes, mut fails) = (0u32, 0u32);
        for &r in results {
            if r {
                passes += 1;
                fails = 0;
                if passes >= rise {
                    state = Health::Up;
                }
            } else {
                fails += 1;
                passes = 0;
                if fails >= fall {
                    state = Health::Down;
                }
            }
        }
        state
    }

    proptest! {
        #[test]
        fn matches_the_consecutive_model(
            rise in 1u32..6,
            fall in 1u32..6,
            start in prop_oneof![Just(Health::Checking), Just(Health::Up), Just(Health::Down)],
            results in proptest::collection::vec(any::<bool>(), 0..60),
        ) {
            let mut c = RiseFall::new(rise, fall, start);
            let mut changes = 0;
            let mut last = start;
            for &r in &results {
                if let Some(s) = c.record(r) {
                    prop_assert_ne!(s, last);
                    last = s;
                    changes += 1;
                }
            }
            prop_assert_eq!(c.state(), model(rise, fall, start, &results));
            prop_assert!(changes <= results.len());
        }
    }
}
