//! The passive-ejection decision, pure: eject a failing server unless it is the last one left.
//!
//! Owns: the rule. Must not touch: atomics, pools or logs (`passive.rs` gathers the facts on the
//! request path and applies the decision).

/// What to do with a server after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ejection {
    /// Nothing: under the threshold, or already ejected.
    Keep,
    /// Take it out of rotation for the pool's `eject` time.
    Eject,
    /// It reached the threshold but no other server of the pool takes traffic: a failing server
    /// still answers some requests, an empty pool answers none (Envoy's panic threshold exists
    /// for the same reason).
    LastServer,
}

/// The decision for a server with `consecutive` failures in a row against a threshold of
/// `failures`, given whether it is ejected already and how many *other* servers of its pool
/// take traffic now.
pub fn decide(consecutive: u32, failures: u32, already_ejected: bool, others_serving: usize) -> Ejection {
    if already_ejected || consecutive < failures.max(1) {
        Ejection::Keep
    } else if others_serving == 0 {
        Ejection::LastServer
    } else {
        Ejection::Eject
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ejects_at_the_threshold_unless_last() {
        assert_eq!(decide(4, 5, false, 2), Ejection::Keep);
        assert_eq!(decide(5, 5, false, 2), Ejection::Eject);
        assert_eq!(decide(9, 5, false, 1), Ejection::Eject);
        assert_eq!(decide(5, 5, false, 0), Ejection::LastServer);
        assert_eq!(decide(5, 5, true, 3), Ejection::Keep);
        assert_eq!(decide(1, 1, false, 1), Ejection::Eject);
    }

    proptest! {
        #[test]
        fn never_empties_a_pool(c in 0u32..100, f in 1u32..50, e: bool, others in 0usize..4) {
            let d = decide(c, f, e, others);
            if others == 0 {
                prop_assert_ne!(d, Ejection::Eject);
            }
            if c < f || e {
                prop_assert_eq!(d, Ejection::Keep);
            }
        }
    }
}
