//! Load balancing: pure algorithms that choose a server of a pool for one request.
//!
//! Owns: the algorithms (smooth weighted round robin, least requests, power of two random
//! choices, the consistent-hash ring with bounded loads, Maglev), the hash functions and the
//! extraction of hash keys from a request head.
//! Must not touch: sockets, tokio, clocks, health checks or admin state. A balancer is an
//! immutable value built from the member list; the caller says which members are eligible at the
//! moment of a pick (ready, healthy, not ejected, under `max_conns`, not already tried), so
//! health and drain never enter the algorithms. A change of members builds a new value.

pub mod bounded;
pub mod hash;
pub mod least_requests;
pub mod load_index;
pub mod maglev;
pub mod planner;
pub mod random_two;
pub mod ring;
pub mod round_robin;
#[cfg(test)]
mod testutil;
mod visited;

pub use hash::{HashFunction, HashKey};
pub use least_requests::LeastRequests;
pub use load_index::LoadIndex;
pub use maglev::Maglev;
pub use random_two::RandomTwo;
pub use ring::Ring;
pub use round_robin::RoundRobin;

/// Smallest weight a member can have; lower configured weights are raised to it.
pub const MIN_WEIGHT: u32 = 1;
/// Largest weight a member can have; higher configured weights are lowered to it.
pub const MAX_WEIGHT: u32 = 256;

/// A server as the balancers see it: a stable name (used for hashing) and a weight (1..=256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Stable name; consistent hashing places points at hash("{name}-{i}").
    pub name: String,
    /// Relative share of traffic, at least 1.
    pub weight: u32,
}

/// What the caller knows about the members at the moment of a pick, by member index.
pub trait ServerLoads {
    /// Whether member `index` may take this request now.
    fn eligible(&self, index: usize) -> bool;
    /// Requests currently in flight on member `index`.
    fn in_flight(&self, index: usize) -> u64;
    /// `(total in-flight of eligible members, number of eligible members)` when the caller keeps
    /// these sums, so that bounded loads cost O(1) instead of a pass over every member. The
    /// default (`None`) makes the balancer compute them. A figure that disagrees with
    /// `eligible`/`in_flight` only loosens or tightens the bound; it never makes a pick fail.
    fn eligible_totals(&self) -> Option<(u64, usize)> {
        None
    }
    /// Whether the caller keeps the balancer's [`LoadIndex`] current (it reports every change
    /// of a member's in-flight count and standing, see [`Balancer::load_index`]), so that a
    /// least-requests pick may descend the index's tree instead of asking about every member.
    /// The default (`false`) makes it scan.
    fn indexed(&self) -> bool {
        false
    }
}

/// The inputs of one pick besides the loads.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickInput {
    /// Hash of the request's key for hashed pools (`None`: the request lacks its key, so it is
    /// balanced round robin).
    pub key_hash: Option<u64>,
    /// A random number for randomised algorithms.
    pub random: u64,
}

/// Which algorithm a pool uses and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Algorithm {
    /// Smooth weighted round robin, as nginx does it.
    RoundRobin,
    /// Fewest in-flight requests relative to weight, ties broken in rotation.
    LeastRequests,
    /// Power of two random choices, weight-aware.
    RandomTwo,
    /// Consistent-hash ring (DESIGN.md section 6).
    ConsistentHash {
        /// Points per unit of weight.
        vnodes: u32,
        /// Hash of points and keys.
        hash: HashFunction,
        /// `Some(c)`: no member takes more than ceil(c × mean in-flight).
        bounded_load: Option<f64>,
    },
    /// Maglev lookup table.
    Maglev {
        /// Prime table size.
        table_size: u32,
        /// Hash of keys and of member names.
        hash: HashFunction,
        /// `Some(c)`: no member takes more than ceil(c × mean in-flight).
        bounded_load: Option<f64>,
    },
}

/// A built balancer for one member list; picks take `&self` and no lock.
///
/// Build one with [`Balancer::new`] whenever the member list changes (and swap it in); ask it
/// with [`Balancer::pick`] for each request, and again for a retry with the tried servers made
/// ineligible by the caller's [`ServerLoads`].
#[derive(Debug)]
pub enum Balancer {
    /// Smooth weighted round robin.
    RoundRobin(RoundRobin),
    /// Fewest in-flight requests relative to weight.
    LeastRequests(LeastRequests),
    /// Power of two random choices.
    RandomTwo(RandomTwo),
    /// Consistent-hash ring, optionally with bounded loads.
    ConsistentHash(Ring),
    /// Maglev lookup table, optionally with bounded loads.
    Maglev(Maglev),
}

impl Balancer {
    /// Builds the balancer of `algorithm` for `members`; never panics (weights are clamped to
    /// 1..=256, an empty list gives a balancer that picks nothing).
    pub fn new(algorithm: &Algorithm, members: &[Member]) -> Balancer {
        match algorithm {
            Algorithm::RoundRobin => Balancer::RoundRobin(RoundRobin::new(members)),
            Algorithm::LeastRequests => Balancer::LeastRequests(LeastRequests::new(members)),
            Algorithm::RandomTwo => Balancer::RandomTwo(RandomTwo::new(members)),
            Algorithm::ConsistentHash {
                vnodes,
                hash,
                bounded_load,
            } => Balancer::ConsistentHash(Ring::new(members, *vnodes, *hash, *bounded_load)),
            Algorithm::Maglev {
                table_size,
                hash,
                bounded_load,
            } => Balancer::Maglev(Maglev::new(members, *table_size, *hash, *bounded_load)),
        }
    }

    /// An eligible member index for this request, or `None` when no member is eligible.
    #[inline]
    pub fn pick(&self, input: PickInput, loads: &impl ServerLoads) -> Option<usize> {
        match self {
            Balancer::RoundRobin(b) => b.pick(loads),
            Balancer::LeastRequests(b) => b.pick(loads),
            Balancer::RandomTwo(b) => b.pick(input.random, loads),
            Balancer::ConsistentHash(b) => b.pick(input.key_hash, loads),
            Balancer::Maglev(b) => b.pick(input.key_hash, loads),
        }
    }

    /// The live load index this balancer reads when the caller keeps it (see
    /// [`ServerLoads::indexed`]): least requests' tree (pools of at least
    /// [`least_requests::TREE_MIN_MEMBERS`]), or the sums of a bounded-load pool (of at least
    /// [`bounded::SUMS_MIN_MEMBERS`]). `None` for algorithms (and pools) that need no loads. The caller reports every member's changes to
    /// it with [`LoadIndex::refresh`], by member index.
    pub fn load_index(&self) -> Option<&std::sync::Arc<LoadIndex>> {
        match self {
            Balancer::LeastRequests(b) => b.load_index(),
            Balancer::ConsistentHash(b) => b.load_index(),
            Balancer::Maglev(b) => b.load_index(),
            Balancer::RoundRobin(_) | Balancer::RandomTwo(_) => None,
        }
    }

    /// The hash function of a hashed pool (to hash request keys with), `None` otherwise.
    pub fn hash_function(&self) -> Option<HashFunction> {
        match self {
            Balancer::ConsistentHash(b) => Some(b.hash_function()),
            Balancer::Maglev(b) => Some(b.hash_function()),
            _ => None,
        }
    }
}

/// A configured weight brought into 1..=256, so that no input can make a balancer panic.
#[inline]
pub(crate) fn clamp_weight(weight: u32) -> u32 {
    weight.clamp(MIN_WEIGHT, MAX_WEIGHT)
}

/// splitmix64: advances `state` and returns a well-mixed 64-bit value (Steele, Lea, Flood).
#[inline]
pub(crate) fn mix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Member indices sorted by name (then index), so tables do not depend on the listed order.
pub(crate) fn name_order(members: &[Member]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..members.len() as u32).collect();
    order.sort_by(|&a, &b| {
        members[a as usize]
            .name
            .cmp(&members[b as usize].name)
            .then(a.cmp(&b))
    });
    order
}

#[cfg(test)]
mod tests;
