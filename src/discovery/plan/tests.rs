use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proptest::prelude::*;

use super::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn at(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(ip(last), port)
}

fn ep(last: u8, weight: u32) -> Endpoint {
    Endpoint {
        addr: at(last, 80),
        weight,
    }
}

/// Owned member data, to lend out as [`Member`]s.
struct M {
    name: String,
    addr: SocketAddr,
    weight: u32,
    discovered: bool,
    removing: bool,
    pinned: bool,
}

fn discovered(last: u8, weight: u32) -> M {
    M {
        name: endpoint_name(at(last, 80)),
        addr: at(last, 80),
        weight,
        discovered: true,
        removing: false,
        pinned: false,
    }
}

fn listed(name: &str, last: u8) -> M {
    M {
        name: name.into(),
        addr: at(last, 80),
        weight: 1,
        discovered: false,
        removing: false,
        pinned: false,
    }
}

fn view(ms: &[M]) -> Vec<Member<'_>> {
    ms.iter()
        .map(|m| Member {
            name: &m.name,
            addr: m.addr,
            weight: m.weight,
            discovered: m.discovered,
            removing: m.removing,
            weight_pinned: m.pinned,
        })
        .collect()
}

#[test]
fn address_answers_are_sorted_deduplicated_and_weighted_one() {
    let found = address_endpoints([ip(3), ip(1), ip(3), "fd00::1".parse().unwrap()], 8080);
    assert_eq!(
        found.endpoints,
        vec![
            Endpoint {
                addr: at(1, 8080),
                weight: 1
            },
            Endpoint {
                addr: at(3, 8080),
                weight: 1
            },
            Endpoint {
                addr: "[fd00::1]:8080".parse().unwrap(),
                weight: 1
            },
        ]
    );
    assert_eq!(found.answered, 3);
    assert!(!found.capped());
    assert_eq!(endpoint_name("[fd00::1]:8080".parse().unwrap()), "[fd00::1]:8080");
}

#[test]
fn a_huge_answer_is_capped_to_the_same_servers_whatever_its_order() {
    let ips: Vec<IpAddr> = (0..700u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    let mut rotated = ips.clone();
    rotated.rotate_left(333);
    let a = address_endpoints(ips, 80);
    let b = address_endpoints(rotated, 80);
    assert_eq!(a.endpoints.len(), MAX_ENDPOINTS);
    assert_eq!(a.answered, 700);
    assert!(a.capped());
    assert_eq!(a, b);
    assert_eq!(a.endpoints[0].addr, "10.0.0.0:80".parse().unwrap());
}

fn srv(priority: u16, weight: u16, port: u16, ips: &[u8]) -> SrvTarget {
    SrvTarget {
        priority,
        weight,
        port,
        ips: ips.iter().map(|&l| ip(l)).collect(),
    }
}

#[test]
fn srv_takes_the_preferred_priority_with_ports_and_weights() {
    let found = srv_endpoints(&[
        srv(20, 100, 9000, &[9]),
        srv(10, 5, 8001, &[1]),
        srv(10, 1, 8002, &[2, 3]),
        // Unusable: port 0, or a target without addresses (at a better priority even).
        srv(10, 9, 0, &[4]),
        srv(1, 9, 8005, &[]),
    ]);
    assert_eq!(
        found.endpoints,
        vec![
            Endpoint {
                addr: at(1, 8001),
                weight: 5
            },
            Endpoint {
                addr: at(2, 8002),
                weight: 1
            },
            Endpoint {
                addr: at(3, 8002),
                weight: 1
            },
        ]
    );
}

#[test]
fn srv_weights_keep_their_proportions_in_1_to_256() {
    let weights = |records: &[SrvTarget]| -> Vec<u32> {
        srv_endpoints(records)
            .endpoints
            .iter()
            .map(|e| e.weight)
            .collect()
    };
    // 0 is the smallest share, as RFC 2782 has it; within 256 the records' values stand.
    assert_eq!(
        weights(&[srv(0, 0, 80, &[1]), srv(0, 256, 80, &[2])]),
        vec![1, 256]
    );
    // Larger weights are scaled down (Kubernetes and Consul publish such values).
    assert_eq!(
        weights(&[srv(0, 1000, 80, &[1]), srv(0, 500, 80, &[2]), srv(0, 1, 80, &[3])]),
        vec![256, 128, 1]
    );
    assert_eq!(
        weights(&[srv(0, 65535, 80, &[1]), srv(0, 65535, 80, &[2])]),
        vec![256, 256]
    );
    // One address named by two records keeps the larger weight.
    assert_eq!(weights(&[srv(0, 3, 80, &[1]), srv(0, 7, 80, &[1])]), vec![7]);
    assert!(srv_endpoints(&[]).endpoints.is_empty());
}

#[test]
fn new_servers_join_and_vanished_discovered_ones_leave() {
    let members = [discovered(1, 1), discovered(2, 1), listed("static", 3)];
    let c = changes(&[ep(2, 1), ep(4, 1)], &view(&members));
    assert_eq!(c.join, vec![ep(4, 1)]);
    assert_eq!(c.leave, vec![0]);
    assert!(c.reweigh.is_empty());
}

#[test]
fn listed_and_admin_added_servers_never_leave() {
    let mut admin = listed("added", 5);
    admin.addr = at(5, 81);
    let members = [listed("static", 3), admin, discovered(1, 1)];
    let c = changes(&[ep(1, 1)], &view(&members));
    assert!(c.is_empty(), "{c:?}");
    // An answer naming a listed server's address does not add it twice, nor change its weight.
    let c = changes(&[ep(1, 1), ep(3, 9)], &view(&members));
    assert!(c.is_empty(), "{c:?}");
}

#[test]
fn an_empty_answer_changes_nothing() {
    let members = [discovered(1, 1), discovered(2, 1)];
    assert!(changes(&[], &view(&members)).is_empty());
}

#[test]
fn srv_weight_changes_reweigh_unless_pinned_by_the_admin() {
    let mut pinned = discovered(2, 4);
    pinned.pinned = true;
    let members = [discovered(1, 1), pinned];
    let c = changes(&[ep(1, 3), ep(2, 9)], &view(&members));
    assert_eq!(c.reweigh, vec![(0, 3)]);
    assert!(c.join.is_empty() && c.leave.is_empty());
}

#[test]
fn a_draining_server_is_not_touched_and_rejoins_once_gone() {
    let mut going = discovered(1, 1);
    going.removing = true;
    let members = [going, discovered(2, 1)];
    // Back in DNS while it drains: it neither joins twice nor leaves twice.
    let c = changes(&[ep(1, 5), ep(2, 1)], &view(&members));
    assert!(c.is_empty(), "{c:?}");
    // Still gone: it is already leaving.
    let c = changes(&[ep(2, 1)], &view(&members));
    assert!(c.is_empty(), "{c:?}");
    // Once removed, the next answer naming it adds it afresh.
    let c = changes(&[ep(1, 5), ep(2, 1)], &view(&members[1..]));
    assert_eq!(c.join, vec![ep(1, 5)]);
}

#[test]
fn outages_are_logged_once_and_their_end_once() {
    let mut s = Standing::default();
    assert_eq!(s.succeeded(), None);
    assert!(s.failed());
    assert!(!s.failed());
    assert!(!s.failed());
    assert!(s.failing());
    assert_eq!(s.succeeded(), Some(3));
    assert_eq!(s.succeeded(), None);
    assert!(!s.failing());
    assert!(s.failed());

    assert!(s.capped(true));
    assert!(!s.capped(true));
    assert!(!s.capped(false));
    assert!(s.capped(true));
}

fn members_strategy() -> impl Strategy<Value = Vec<(u8, u32, bool, bool)>> {
    prop::collection::vec((0u8..24, 1u32..4, any::<bool>(), any::<bool>()), 0..12)
}

proptest! {
    /// Applying the changes gives a pool whose discovered, non-draining servers are exactly
    /// the answer's addresses that no other member holds; no other member is ever touched.
    #[test]
    fn applying_changes_converges_on_the_answer(
        raw in members_strategy(),
        answer in prop::collection::vec((0u8..24, 1u32..4), 0..12),
    ) {
        let mut members: Vec<M> = Vec::new();
        for (last, weight, is_discovered, removing) in raw {
            if members.iter().any(|m| m.addr == at(last, 80)) {
                continue;
            }
            let mut m = if is_discovered { discovered(last, weight) } else { listed(&format!("s{last}"), last) };
            m.removing = removing && is_discovered;
            members.push(m);
        }
        let found = address_endpoints(answer.iter().map(|&(l, _)| ip(l)), 80).endpoints;
        let c = changes(&found, &view(&members));
        for &i in &c.leave {
            prop_assert!(members[i].discovered && !members[i].removing);
        }
        for &(i, _) in &c.reweigh {
            prop_assert!(members[i].discovered);
        }
        if found.is_empty() {
            prop_assert!(c.is_empty());
            return Ok(());
        }
        let mut after: Vec<SocketAddr> = members
            .iter()
            .enumerate()
            .filter(|(i, m)| m.discovered && !m.removing && !c.leave.contains(i))
            .map(|(_, m)| m.addr)
            .chain(c.join.iter().map(|e| e.addr))
            .collect();
        after.sort();
        let mut expected: Vec<SocketAddr> = found
            .iter()
            .map(|e| e.addr)
            .filter(|a| !members.iter().any(|m| m.addr == *a && (!m.discovered || m.removing)))
            .collect();
        expected.sort();
        prop_assert_eq!(after, expected);
        // A second look at the result changes nothing more.
        let mut next: Vec<M> = members
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !c.leave.contains(i))
            .map(|(_, m)| m)
            .collect();
        next.extend(c.join.iter().map(|e| discovered_at(e.addr)));
        let again = changes(&found, &view(&next));
        prop_assert!(again.join.is_empty() && again.leave.is_empty());
    }
}

fn discovered_at(addr: SocketAddr) -> M {
    M {
        name: endpoint_name(addr),
        addr,
        weight: 1,
        discovered: true,
        removing: false,
        pinned: false,
    }
}
