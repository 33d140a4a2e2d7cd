//! Each balancing algorithm's spread and weights, over real sockets (one worker thread).

use crate::common::*;
use ringway::config::Balance;

fn weighted(balance: Balance, backends: &[(&Backend, u32)]) -> ringway::config::Config {
    let mut c = one_pool(
        balance,
        &backends.iter().map(|(b, _)| b.address()).collect::<Vec<_>>(),
    );
    for (s, (_, w)) in c.pools[0].servers.iter_mut().zip(backends) {
        s.weight = *w;
    }
    c
}

/// Who answered each of `n` sequential requests.
async fn sequence(proxy: &Proxy, n: usize) -> Vec<String> {
    let client = client();
    let mut who = Vec::with_capacity(n);
    for i in 0..n {
        let r = send(client.get(proxy.url(&format!("/seq/{i}")))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        who.push(r.backend().to_owned());
    }
    who
}

fn count(who: &[String], name: &str) -> usize {
    who.iter().filter(|w| *w == name).count()
}

#[tokio::test]
async fn round_robin_weights_5_1_1_pick_a_a_b_a_c_a_a() {
    bounded(async {
        let (a, b, c) = (
            Backend::start("a").await,
            Backend::start("b").await,
            Backend::start("c").await,
        );
        let proxy = Proxy::start(weighted(Balance::RoundRobin, &[(&a, 5), (&b, 1), (&c, 1)]));
        let who = sequence(&proxy, 14).await.concat();
        assert_eq!(who, "aabacaaaabacaa", "smooth weighted round robin, two cycles");
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn round_robin_equal_weights_rotate() {
    bounded(async {
        let (a, b, c) = (
            Backend::start("a").await,
            Backend::start("b").await,
            Backend::start("c").await,
        );
        let proxy = Proxy::start(weighted(Balance::RoundRobin, &[(&a, 1), (&b, 1), (&c, 1)]));
        let who = sequence(&proxy, 9).await;
        for name in ["a", "b", "c"] {
            assert_eq!(count(&who, name), 3, "{who:?}");
        }
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn least_requests_avoids_the_server_holding_slow_requests() {
    bounded(async {
        let (a, b, c) = (
            Backend::start("a").await,
            Backend::start("b").await,
            Backend::start("c").await,
        );
        let proxy = Proxy::start(weighted(Balance::LeastRequests, &[(&a, 1), (&b, 1), (&c, 1)]));
        let client = client();
        a.hold();
        // Send requests until one is held in flight on `a`.
        let mut arrivals_a = a.arrivals();
        let mut held = None;
        for i in 0..10 {
            let mut req = tokio::spawn(send(client.get(proxy.url(&format!("/warm/{i}")))));
            tokio::select! {
                r = &mut req => assert_eq!(r.expect("request task").status, 200),
                _ = arrivals_a.wait_for(|n| *n >= 1) => {
                    held = Some(req);
                    break;
                }
            }
        }
        let held = held.expect("no request reached server a in 10 tries");

        // With one request in flight on `a` and none elsewhere, new requests go to b and c.
        let mut who = Vec::new();
        for i in 0..20 {
            let seen_by_a = a.requests();
            tokio::select! {
                r = send(client.get(proxy.url(&format!("/lr/{i}")))) => {
                    assert_eq!(r.status, 200);
                    who.push(r.backend().to_owned());
                }
                _ = a.wait_requests(seen_by_a + 1) => {
                    panic!("request {i} went to server a, which holds a slow request (so far: {who:?})")
                }
            }
        }
        assert!(
            count(&who, "b") > 0 && count(&who, "c") > 0,
            "ties between b and c rotate: {who:?}"
        );

        a.release();
        let r = held.await.expect("held request task");
        assert_eq!(r.status, 200);
        assert_eq!(r.backend(), "a");
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn random_two_spreads_over_all_servers() {
    bounded(async {
        let (a, b, c) = (
            Backend::start("a").await,
            Backend::start("b").await,
            Backend::start("c").await,
        );
        let proxy = Proxy::start(weighted(Balance::RandomTwo, &[(&a, 1), (&b, 1), (&c, 1)]));
        let who = sequence(&proxy, 300).await;
        for name in ["a", "b", "c"] {
            let n = count(&who, name);
            // Expected 100 each; the bound is over 5 standard deviations wide.
            assert!((60..=140).contains(&n), "{name} got {n} of 300");
        }
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn random_two_follows_weights() {
    bounded(async {
        let (a, b) = (Backend::start("a").await, Backend::start("b").await);
        let proxy = Proxy::start(weighted(Balance::RandomTwo, &[(&a, 3), (&b, 1)]));
        let who = sequence(&proxy, 400).await;
        let n = count(&who, "a");
        // Expected 300 of 400 (3:1); 200 would be an even spread that ignores weights.
        assert!(
            (255..=345).contains(&n),
            "a (weight 3) got {n} of 400, b (weight 1) {}",
            400 - n
        );
        proxy.stop().await;
    })
    .await
}
