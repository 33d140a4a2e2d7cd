//! The pool's load index against the servers' own counters, through every way members change:
//! requests, drain and health, ejection, the admin API (add, remove, weight) and reloads.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use proptest::prelude::*;

use super::*;
use crate::balance::bounded::SUMS_MIN_MEMBERS;
use crate::balance::least_requests::TREE_MIN_MEMBERS;
use crate::config::{Balance, HashFn, HashKeySpec, HashSettings};

/// Servers a configuration may list: a few more than a least-requests pool needs for its tree,
/// so that reloads and removals take pools below that size and back.
const LISTABLE: usize = TREE_MIN_MEMBERS + 3;

fn config(balance: &Balance, listed: &[bool]) -> Config {
    let mut c = crate::cli::empty_config();
    c.routes.push(crate::cli::route("r", "/", "p"));
    let servers = (1..)
        .zip(listed)
        .filter(|(_, l)| **l)
        .map(|(port, _)| crate::cli::server(&format!("127.0.0.1:{port}")))
        .collect();
    c.pools.push(crate::cli::pool("p", balance.clone(), servers));
    c
}

fn bounded_ring() -> Balance {
    Balance::ConsistentHash(HashSettings {
        key: HashKeySpec::Path,
        vnodes: 40,
        hash: HashFn::Xxh3,
        bounded_load: Some(1.25),
        maglev_table_size: 65_537,
    })
}

/// The index's sums must be those of the current members' own counters.
fn assert_sums(pool: &Pool) {
    let members = pool.members.load();
    let Some(index) = members.balancer.load_index() else {
        // Only a pool too small for a tree or for sums goes without.
        let smallest = TREE_MIN_MEMBERS.max(SUMS_MIN_MEMBERS);
        assert!(
            members.servers.len() < smallest,
            "{} servers",
            members.servers.len()
        );
        return;
    };
    let serving = members.servers.iter().filter(|s| s.serving());
    let want = (
        serving
            .clone()
            .map(|s| s.in_flight.load(Ordering::SeqCst))
            .sum::<u64>(),
        serving.count(),
    );
    assert_eq!(index.totals(), want, "{:?}", members.servers);
}

/// A least-requests pick must name a serving server with the fewest in flight relative to
/// weight.
fn assert_lightest_picked(pool: &Pool) {
    let members = pool.members.load();
    let ratio = |s: &Server| (s.in_flight.load(Ordering::SeqCst), s.weight().clamp(1, 256));
    let lightest = members
        .servers
        .iter()
        .filter(|s| s.serving())
        .map(|s| ratio(s))
        .reduce(|a, b| {
            if balance::least_requests::lighter(b.0, b.1, a.0, a.1) {
                b
            } else {
                a
            }
        });
    let picked = pick_server(&members, &pool.settings, None, &Tried::default());
    match (lightest, picked) {
        (None, None) => {}
        (Some((f, w)), Some(s)) => {
            let (pf, pw) = ratio(&s);
            assert!(s.serving(), "{} is not serving", s.name);
            assert_eq!(
                u128::from(pf) * u128::from(w),
                u128::from(f) * u128::from(pw),
                "{}",
                s.name
            );
        }
        (l, p) => panic!("lightest {l:?}, picked {p:?}"),
    }
}

/// One thing that happens to a pool.
#[derive(Debug, Clone)]
enum Op {
    Start(usize),
    End(usize),
    Admin(usize, AdminState),
    Health(usize, bool),
    Eject(usize, bool),
    Weight(usize, u32),
    /// The admin API adds a server.
    Add,
    /// The admin API removes a server (with whatever it has in flight).
    Remove(usize),
    /// A reload with the listed servers of `LISTABLE` (at least one).
    Reload(Vec<bool>),
}

fn op() -> impl Strategy<Value = Op> {
    let admin = prop::sample::select(vec![AdminState::Ready, AdminState::Drain, AdminState::Maint]);
    prop_oneof![
        6 => any::<usize>().prop_map(Op::Start),
        4 => any::<usize>().prop_map(Op::End),
        1 => (any::<usize>(), admin).prop_map(|(i, s)| Op::Admin(i, s)),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, up)| Op::Health(i, up)),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, e)| Op::Eject(i, e)),
        1 => (any::<usize>(), 1u32..5).prop_map(|(i, w)| Op::Weight(i, w)),
        1 => Just(Op::Add),
        1 => any::<usize>().prop_map(Op::Remove),
        1 => prop::collection::vec(prop::bool::weighted(0.97), LISTABLE)
            .prop_filter("a pool needs a server", |l| l.iter().any(|x| *x))
            .prop_map(Op::Reload),
    ]
}

/// Runs `ops` on a pool of `balance`, checking the index after each.
fn run(balance: &Balance, ops: &[Op]) {
    let mut listed = vec![true; LISTABLE];
    listed[LISTABLE - 1] = false;
    let mut snapshot = Snapshot::build(config(balance, &listed), None).expect("snapshot");
    // Requests in flight, by the server they hold (which may have left the pool since).
    let mut open: Vec<Arc<Server>> = Vec::new();
    let mut added = 0u16;
    let least = matches!(balance, Balance::LeastRequests);
    for op in ops {
        let pool = snapshot.pools["p"].clone();
        let servers = pool.members.load().servers.clone();
        let nth = |i: usize| servers[i % servers.len()].clone();
        match op {
            Op::Start(i) => {
                let s = nth(*i);
                s.request_started();
                open.push(s);
            }
            Op::End(i) => {
                if !open.is_empty() {
                    open.swap_remove(i % open.len()).request_ended();
                }
            }
            Op::Admin(i, state) => nth(*i).set_admin_state(*state),
            Op::Health(i, up) => {
                nth(*i).set_health(if *up { Health::Up } else { Health::Down });
            }
            Op::Eject(i, e) => {
                nth(*i).set_ejected(*e);
            }
            Op::Weight(i, w) => {
                nth(*i).set_weight(*w);
                pool.rebuild();
            }
            Op::Add => {
                added += 1;
                let addr = std::net::SocketAddr::from(([127, 0, 0, 2], added));
                let s = Arc::new(Server::new(
                    format!("added-{added}"),
                    addr.to_string(),
                    addr,
                    1,
                    Health::Up,
                ));
                s.runtime_added.store(true, Ordering::Relaxed);
                let mut next = servers.clone();
                next.push(s);
                pool.set_members(next);
            }
            Op::Remove(i) => {
                if servers.len() > 1 {
                    let gone = nth(*i);
                    let next = servers
                        .iter()
                        .filter(|s| !Arc::ptr_eq(s, &gone))
                        .cloned()
                        .collect();
                    pool.set_members(next);
                }
            }
            Op::Reload(listed) => {
                snapshot = Snapshot::build(config(balance, listed), Some(&snapshot)).expect("reload");
            }
        }
        let pool = &snapshot.pools["p"];
        assert_sums(pool);
        if least {
            assert_lightest_picked(pool);
        }
    }
    // Every request ends: nothing is left in flight anywhere.
    for s in open.drain(..) {
        s.request_ended();
    }
    assert_sums(&snapshot.pools["p"]);
    let index = snapshot.pools["p"].members.load().balancer.load_index().cloned();
    assert_eq!(index.map_or(0, |i| i.totals().0), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn least_requests_index_follows_every_change(ops in prop::collection::vec(op(), 1..50)) {
        run(&Balance::LeastRequests, &ops);
    }

    #[test]
    fn bounded_load_sums_follow_every_change(ops in prop::collection::vec(op(), 1..50)) {
        run(&bounded_ring(), &ops);
    }
}

#[test]
fn pools_without_loads_have_no_index() {
    let snapshot = Snapshot::build(config(&Balance::RoundRobin, &[true; 6]), None).expect("snapshot");
    let small = Snapshot::build(config(&Balance::LeastRequests, &[true; 6]), None).expect("snapshot");
    assert!(small.pools["p"].members.load().balancer.load_index().is_none());
    let small = Snapshot::build(config(&bounded_ring(), &[true; 6]), None).expect("snapshot");
    assert!(small.pools["p"].members.load().balancer.load_index().is_none());
    let members = snapshot.pools["p"].members.load();
    assert!(members.balancer.load_index().is_none());
    // Requests on such a pool count in flight without reporting anywhere.
    members.servers[0].request_started();
    assert_eq!(members.servers[0].in_flight.load(Ordering::SeqCst), 1);
    members.servers[0].request_ended();
    assert_eq!(members.servers[0].in_flight.load(Ordering::SeqCst), 0);
}

#[test]
fn a_refused_reload_leaves_the_running_index_in_charge() {
    let listed = [true; TREE_MIN_MEMBERS];
    let old = Snapshot::build(config(&Balance::LeastRequests, &listed), None).expect("snapshot");
    let mut bad = config(&Balance::LeastRequests, &listed);
    bad.routes.push(crate::cli::route("r2", "/x", "missing"));
    assert!(Snapshot::build(bad, Some(&old)).is_err());
    let pool = &old.pools["p"];
    let s = pool.members.load().servers[0].clone();
    s.request_started();
    assert_sums(pool);
    let totals = pool.members.load().balancer.load_index().map(|i| i.totals());
    assert_eq!(totals, Some((1, TREE_MIN_MEMBERS)));
    s.request_ended();
}
