//! Hashed pools over real sockets: key affinity, identical routing across instances, and a
//! drained server moving only its own keys.

use std::collections::{HashMap, HashSet};

use crate::common::*;
use ringway::cli::default_hash_settings;
use ringway::config::{Balance, HashKeySpec, HashSettings};
use ringway::proxy::state::AdminState;

fn ring(key: HashKeySpec) -> Balance {
    Balance::ConsistentHash(HashSettings {
        key,
        ..default_hash_settings()
    })
}

fn maglev() -> Balance {
    Balance::Maglev(default_hash_settings())
}

async fn backends(n: usize) -> Vec<Backend> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Backend::start(&format!("b{i}")).await);
    }
    v
}

/// Which backend answers each of `keys` (paths), through `proxy`.
async fn owners(proxy: &Proxy, keys: &[String]) -> HashMap<String, String> {
    let client = client();
    let mut out = HashMap::new();
    for k in keys {
        let r = send(client.get(proxy.url(k))).await;
        assert_eq!(r.status, 200, "{k}: {}", r.text());
        out.insert(k.clone(), r.backend().to_owned());
    }
    out
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/cache/item-{i}")).collect()
}

#[tokio::test]
async fn the_same_key_reaches_the_same_server() {
    bounded(async {
        let bs = backends(4).await;
        let refs: Vec<&Backend> = bs.iter().collect();
        let proxy = Proxy::start(one_pool(ring(HashKeySpec::Path), &addrs(&refs)));
        let keys = keys(60);
        let first = owners(&proxy, &keys).await;
        for _ in 0..2 {
            assert_eq!(
                owners(&proxy, &keys).await,
                first,
                "a key changed server between requests"
            );
        }
        let used: HashSet<&String> = first.values().collect();
        assert!(
            used.len() >= 3,
            "60 keys should spread over most of 4 servers: {used:?}"
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn two_instances_with_one_config_route_identically() {
    bounded(async {
        let bs = backends(5).await;
        let refs: Vec<&Backend> = bs.iter().collect();
        for balance in [ring(HashKeySpec::Path), maglev()] {
            let config = one_pool(balance.clone(), &addrs(&refs));
            let a = Proxy::start(config.clone());
            let b = Proxy::start(config);
            let keys = keys(80);
            assert_eq!(owners(&a, &keys).await, owners(&b, &keys).await, "{balance:?}");
            a.stop().await;
            b.stop().await;
        }
    })
    .await
}

#[tokio::test]
async fn draining_a_server_moves_only_its_keys() {
    bounded(async {
        let bs = backends(4).await;
        let refs: Vec<&Backend> = bs.iter().collect();
        for balance in [ring(HashKeySpec::Path), maglev()] {
            let proxy = Proxy::start(one_pool(balance.clone(), &addrs(&refs)));
            let keys = keys(120);
            let before = owners(&proxy, &keys).await;
            let drained = proxy.server(POOL, 1);
            let drained_name = bs[1].name.clone();
            drained.set_admin_state(AdminState::Drain);
            let after = owners(&proxy, &keys).await;
            let mut moved = 0;
            for k in &keys {
                if before[k] == drained_name {
                    assert_ne!(after[k], drained_name, "{balance:?}: a drained server took {k}");
                    moved += 1;
                } else {
                    assert_eq!(
                        after[k], before[k],
                        "{balance:?}: {k} moved though its server stayed"
                    );
                }
            }
            assert!(moved > 0, "{balance:?}: the drained server owned no key of 120");
            // Back to ready: every key returns to where it was.
            drained.set_admin_state(AdminState::Ready);
            assert_eq!(owners(&proxy, &keys).await, before, "{balance:?}");
            proxy.stop().await;
        }
    })
    .await
}

#[tokio::test]
async fn header_key_and_round_robin_without_it() {
    bounded(async {
        let bs = backends(3).await;
        let refs: Vec<&Backend> = bs.iter().collect();
        let proxy = Proxy::start(one_pool(
            ring(HashKeySpec::Header("x-user".into())),
            &addrs(&refs),
        ));
        let client = client();
        // With the header, each user sticks to one server whatever the path.
        for user in ["ann", "bob", "cy", "dee"] {
            let mut seen = HashSet::new();
            for p in 0..5 {
                let r = send(client.get(proxy.url(&format!("/p{p}"))).header("x-user", user)).await;
                seen.insert(r.backend().to_owned());
            }
            assert_eq!(seen.len(), 1, "user {user} reached {seen:?}");
        }
        // Without it the request is balanced round robin: consecutive requests rotate.
        let mut rotation = Vec::new();
        for _ in 0..6 {
            rotation.push(send(client.get(proxy.url("/same"))).await.backend().to_owned());
        }
        let distinct: HashSet<&String> = rotation.iter().collect();
        assert_eq!(
            distinct.len(),
            3,
            "key-less requests should rotate over all servers: {rotation:?}"
        );
        proxy.stop().await;
    })
    .await
}
