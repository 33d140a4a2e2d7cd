//! A fixed-size set of member indices for the fallback walks of the balancers.
//!
//! Owns: remembering which members a walk has already rejected, so that each member is asked at
//! most once, without allocating on the pick path.
//! Must not touch: eligibility or loads themselves; it only answers "seen before?".

/// Members with an index below this are de-duplicated; larger indices are always "new" (the walk
/// stays bounded by its own step limit, it only asks such members again).
pub(crate) const CAPACITY: usize = 4096;

/// A bit set of member indices that lives on the stack (512 bytes).
pub(crate) struct Visited {
    bits: [u64; CAPACITY / 64],
    count: usize,
}

impl Visited {
    /// An empty set.
    #[inline]
    pub(crate) fn new() -> Visited {
        Visited {
            bits: [0; CAPACITY / 64],
            count: 0,
        }
    }

    /// Adds `index`; true when it was not in the set before (or cannot be tracked).
    #[inline]
    pub(crate) fn insert(&mut self, index: usize) -> bool {
        let Some(word) = self.bits.get_mut(index / 64) else {
            return true;
        };
        let bit = 1u64 << (index % 64);
        if *word & bit != 0 {
            return false;
        }
        *word |= bit;
        self.count += 1;
        true
    }

    /// True once every member of a pool of `members` has been seen, so a walk can stop early.
    #[inline]
    pub(crate) fn saw_all(&self, members: usize) -> bool {
        members <= CAPACITY && self.count >= members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_reports_new_members_once() {
        let mut v = Visited::new();
        assert!(v.insert(3));
        assert!(!v.insert(3));
        assert!(v.insert(0));
        assert!(v.insert(CAPACITY - 1));
        assert!(!v.insert(CAPACITY - 1));
        assert!(!v.saw_all(4));
        assert!(v.saw_all(3));
    }

    #[test]
    fn untracked_indices_are_always_new() {
        let mut v = Visited::new();
        assert!(v.insert(CAPACITY));
        assert!(v.insert(CAPACITY));
        assert!(!v.saw_all(CAPACITY + 1));
    }
}
