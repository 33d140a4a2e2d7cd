//! Cluster mode without etcd: the fleet's keys applied to a running engine as its watch applies
//! them (server state, weight, servers added and removed, route maintenance, values deleted with
//! `etcdctl del`), and values that cannot apply ignored and logged once. The tests with a real
//! etcd are in `cluster.rs` (`.ci/cluster-test`).

use std::path::PathBuf;
use std::time::Duration;

use crate::common::logs::{capture_logs, logged};
use crate::common::*;
use ringway::cluster::apply::{Applier, ConfigStatus, Source};
use ringway::cluster::mirror::{Event, Mirror};
use ringway::proxy::state::AdminState;

const PREFIX: &str = "/rw-apply";

fn config_text(a: &Backend, b: &Backend) -> String {
    format!(
        "workers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n\
         [[listener]]\nname = \"{LISTENER}\"\nbind = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"web\"\npath = \"/\"\npool = \"p\"\n[route.maintenance]\n\
         [pool.p]\nservers = [{{ address = \"{}\", name = \"a\", weight = 2 }}, {{ address = \"{}\", name = \"b\" }}]\n",
        a.address(),
        b.address()
    )
}

/// Applies `events` in order, as the watch does: the mirror first, then the engine.
fn feed(applier: &mut Applier, mirror: &mut Mirror, events: &[Event]) {
    for e in events {
        if mirror.apply(e) {
            let value = match e {
                Event::Put { value, .. } => Some(value.as_str()),
                Event::Delete { .. } => None,
            };
            applier.apply(e.key(), value, e.revision(), mirror);
        }
    }
}

fn put(key: &str, value: &str, revision: i64) -> Event {
    Event::Put {
        key: format!("{PREFIX}/{key}"),
        value: value.into(),
        revision,
    }
}

fn del(key: &str, revision: i64) -> Event {
    Event::Delete {
        key: format!("{PREFIX}/{key}"),
        revision,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_apply_to_the_running_engine_and_bad_values_change_nothing() {
    bounded(async {
        capture_logs();
        let (a, b, c) = (
            Backend::start("a").await,
            Backend::start("b").await,
            Backend::start("c").await,
        );
        let dir: PathBuf = std::env::temp_dir().join(format!("ringway-cluster-apply-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("ringway.toml");
        std::fs::write(&path, config_text(&a, &b)).expect("config");
        let local = ringway::config::load(&path).expect("config loads");
        let proxy = Proxy::start_from(local.clone(), Some(path));
        let status = ConfigStatus {
            revision: None,
            source: Source::File,
            error: None,
        };
        let mut applier = Applier::new(proxy.engine_arc(), PREFIX, local, dir.clone(), status);
        let mut mirror = Mirror::default();
        let http = client();

        // A drain and a weight: the server keeps its place, takes nothing new.
        feed(
            &mut applier,
            &mut mirror,
            &[put("servers/p/a", r#"{"state":"drain","weight":9}"#, 5)],
        );
        assert_eq!(proxy.server("p", 0).admin_state(), AdminState::Drain);
        assert_eq!(proxy.server("p", 0).weight(), 9);
        let before = a.requests();
        for _ in 0..6 {
            assert_eq!(send(http.get(proxy.url("/"))).await.status, 200);
        }
        assert_eq!(a.requests(), before, "a drained server takes no new request");

        // Deleted: back to what the config says (ready, weight 2).
        feed(&mut applier, &mut mirror, &[del("servers/p/a", 6)]);
        assert_eq!(proxy.server("p", 0).admin_state(), AdminState::Ready);
        assert_eq!(proxy.server("p", 0).weight(), 2);

        // A server the pool lacks is added from its address, and takes traffic.
        let added = format!(r#"{{"address":"{}","weight":3}}"#, c.address());
        feed(&mut applier, &mut mirror, &[put("servers/p/c", &added, 7)]);
        let names = |p: &Proxy| -> Vec<String> {
            p.engine().shared.snapshot.load().pools["p"]
                .members
                .load()
                .servers
                .iter()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(names(&proxy), ["a", "b", "c"]);
        for _ in 0..12 {
            send(http.get(proxy.url("/"))).await;
        }
        assert!(c.requests() > 0, "the added server takes traffic");

        // Removed: drained, then gone once idle.
        let removed = format!(r#"{{"address":"{}","weight":3,"removed":true}}"#, c.address());
        feed(&mut applier, &mut mirror, &[put("servers/p/c", &removed, 8)]);
        let gone = poll_until(Duration::from_secs(5), || {
            (names(&proxy) == ["a", "b"]).then_some(())
        })
        .await;
        assert!(gone.is_some(), "c leaves the pool: {:?}", names(&proxy));

        // Values that cannot apply: ignored, logged once with key and revision, nothing moves.
        let bad = [
            put("servers/p/a", "not json", 9),
            put("servers/nopool/a", r#"{"state":"drain"}"#, 10),
            put("servers/p/ghost", r#"{"state":"drain"}"#, 11),
            put("servers/p/b", r#"{"weight":999}"#, 12),
            put("routes/nowhere/maintenance", r#"{"enabled":true}"#, 13),
        ];
        feed(&mut applier, &mut mirror, &bad);
        // Removing both servers would empty the pool: the second removal is refused.
        feed(
            &mut applier,
            &mut mirror,
            &[put("servers/p/a", r#"{"removed":true}"#, 14)],
        );
        feed(
            &mut applier,
            &mut mirror,
            &[put("servers/p/b", r#"{"removed":true}"#, 15)],
        );
        for (key, revision) in [
            ("/rw-apply/servers/p/a at revision 9", 9),
            ("/rw-apply/servers/nopool/a at revision 10", 10),
            ("/rw-apply/servers/p/ghost at revision 11", 11),
            ("/rw-apply/servers/p/b at revision 12", 12),
            ("/rw-apply/routes/nowhere/maintenance at revision 13", 13),
            ("/rw-apply/servers/p/b at revision 15", 15),
        ] {
            assert_eq!(
                logged(&[key, "ignored"]).len(),
                1,
                "logged once: {key} ({revision})"
            );
        }
        // Applied again (a config swap re-applies every key), still logged once.
        applier.reapply_runtime(&mirror.clone());
        assert_eq!(
            logged(&["/rw-apply/servers/p/b at revision 15", "ignored"]).len(),
            1
        );
        let b_server = proxy.engine().shared.snapshot.load().pools["p"]
            .members
            .load()
            .servers
            .iter()
            .find(|s| s.name == "b")
            .cloned();
        assert!(b_server.is_some_and(|s| s.admin_state() == AdminState::Ready
            && !s.removing.load(std::sync::atomic::Ordering::Relaxed)));
        assert_eq!(
            send(http.get(proxy.url("/"))).await.status,
            200,
            "the pool still serves"
        );

        // Route maintenance: on through the key, off when it is deleted.
        feed(
            &mut applier,
            &mut mirror,
            &[put(
                "routes/web/maintenance",
                r#"{"enabled":true,"retry_after":"2m"}"#,
                16,
            )],
        );
        let r = send(http.get(proxy.url("/"))).await;
        assert_eq!(r.status, 503);
        feed(&mut applier, &mut mirror, &[del("routes/web/maintenance", 17)]);
        assert_eq!(send(http.get(proxy.url("/"))).await.status, 200);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
