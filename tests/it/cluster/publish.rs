//! `ringway publish`: a config published to the fleet is applied by all three without closing
//! a connection; a broken file (or one without `[cluster]`, or with etcd unreachable) is refused
//! and nothing is written; a file one instance cannot apply (a port it cannot bind) leaves that
//! instance on its old config with the reason in `/api/v1/cluster`, while runtime changes keep
//! applying to it.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::*;
use crate::common::fleet::VIA;

/// One request on an open keep-alive connection: (status, X-Backend).
async fn on_connection(conn: &mut tokio::net::TcpStream, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: fleet.test\r\n{}: b\r\n\r\n", VIA);
    conn.write_all(req.as_bytes()).await.expect("write request");
    let (status, head, _) = read_response(conn).await;
    let backend = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("x-backend").then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, backend)
}

/// A published config (one more route and pool) is applied by A, B and C: their
/// `config.revision` is the printed revision, the new route answers on all three, and a
/// keep-alive connection open across the swap keeps working and sees the new route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn published_config_is_applied_by_all_three() {
    bounded_for(CLUSTER_TEST, async {
        let fleet = Fleet::start().await;
        let n1 = Upstream::start("n1").await;
        for (i, inst) in fleet.inst.iter().enumerate() {
            let v = inst.cluster().await;
            assert_eq!(v["mode"], "cluster", "{v}");
            assert_eq!(v["name"], inst.name.as_str());
            assert_eq!(v["prefix"], fleet.prefix.as_str());
            let endpoints: Vec<String> = fleet.relays[i].iter().map(|r| r.url()).collect();
            assert_eq!(v["etcd"]["endpoints"], json!(endpoints), "{v}");
            assert_eq!(v["etcd"]["connected"], true, "{v}");
            assert_eq!(v["config"]["source"], "file", "{}: {v}", inst.name);
            assert_eq!(v["config"]["revision"], Value::Null);
            let list = v["instances"].as_array().expect("instances");
            let mine: Vec<&Value> = list.iter().filter(|e| e["self"] == true).collect();
            assert_eq!(mine.len(), 1, "one entry is this instance's own: {v}");
            assert_eq!(mine[0]["name"], inst.name.as_str());
            assert_eq!(mine[0]["admin"], format!("127.0.0.1:{}", inst.admin_port), "{v}");
            assert_eq!(mine[0]["health"], "ok", "{v}");
            assert_eq!(mine[0]["config_source"], "file", "{v}");
        }
        let mut conn = tokio::net::TcpStream::connect(fleet.b().web_addr())
            .await
            .expect("connect to B");
        let (status, first) = on_connection(&mut conn, "/new/x").await;
        assert_eq!(status, 200);
        assert!(first.starts_with('s'), "/new/x goes to pool p before: {first}");

        let text = fleet.config_text(0, &new_route(&n1));
        let rev = publish_ok(&fleet, "published.toml", &text).await;
        let (value, mod_rev) = fleet
            .etcd
            .get(&fleet.key("config"))
            .await
            .expect("P/config written");
        assert_eq!(mod_rev, rev, "the config revision is P/config's mod_revision");
        let value: Value = serde_json::from_str(&value).expect("P/config is JSON");
        assert_eq!(value["toml"], text.as_str(), "P/config holds the whole file");
        let file = value["file"].as_str().expect("P/config file");
        assert!(
            fleet
                .dir
                .0
                .join("published.toml")
                .display()
                .to_string()
                .ends_with(file),
            "file {file}"
        );
        assert!(
            value["published_by"].as_str().is_some_and(|s| !s.is_empty()),
            "{value}"
        );
        assert!(
            value["published_at"].as_str().is_some_and(|s| s.ends_with('Z')),
            "{value}"
        );

        fleet
            .wait_cluster(&[0, 1, 2], CONVERGE_WITHIN, |v| {
                v["config"]["revision"] == rev
                    && v["config"]["source"] == "published"
                    && v["config"]["error"].is_null()
            })
            .await;
        for inst in &fleet.inst {
            let r = inst.get("/new/x").await;
            assert_eq!((r.status, r.backend()), (200, "n1"), "/new/x on {}", inst.name);
            let r = inst.get("/").await;
            assert_eq!(r.status, 200, "/ on {}", inst.name);
        }
        wait_for(
            Duration::from_secs(3),
            "A lists every instance on the new revision",
            async || {
                let v = fleet.a().cluster().await;
                let all = v["instances"].as_array().is_some_and(|list| {
                    list.len() == 3
                        && list.iter().all(|e| {
                            e["config_revision"] == rev
                                && e["config_source"] == "published"
                                && e["config_error"].is_null()
                        })
                });
                if all { Ok(()) } else { Err(v.to_string()) }
            },
        )
        .await;
        assert_eq!(
            on_connection(&mut conn, "/new/x").await,
            (200, "n1".to_owned()),
            "the open connection sees the new route"
        );
    })
    .await
}

/// A file with errors is refused with every error at file:line:col and exit 1, and P/config
/// is unchanged; so is a file without `[cluster]`; with etcd unreachable publish fails with a
/// message and exit 1 within its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn publish_refuses_broken_files_and_writes_nothing() {
    bounded_for(CLUSTER_TEST, async {
        let fleet = Fleet::start().await;
        let n1 = Upstream::start("n1").await;
        let rev = publish_ok(&fleet, "good.toml", &fleet.config_text(0, &new_route(&n1))).await;
        let before = fleet.etcd.get(&fleet.key("config")).await.expect("P/config");

        let broken = fleet.config_text(
            0,
            "\n[[route]]\nname = \"broken\"\npath = \"/broken/\"\npool = \"nosuchpool\"\n\n[pool.bad]\nbalance = \"bogus\"\nservers = [\"127.0.0.1:1\"]\n",
        );
        let line_of = |needle: &str| {
            1 + broken
                .lines()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no {needle}"))
        };
        let file = fleet.write("broken.toml", &broken);
        let (code, out, err) = fleet.publish(&file).await;
        assert_eq!(code, Some(1), "publish of a broken file: stdout {out}; stderr {err}");
        assert!(!out.contains("published"), "{out}");
        for needle in ["\"nosuchpool\"", "\"bogus\""] {
            let at = format!("{}:{}:", file.display(), line_of(needle));
            let found = err
                .match_indices(&at)
                .any(|(i, _)| err[i + at.len()..].starts_with(|c: char| c.is_ascii_digit()));
            assert!(found, "no error at {at}COL for {needle} in: {err}");
        }
        assert_eq!(fleet.etcd.get(&fleet.key("config")).await, Some(before.clone()), "P/config unchanged");

        // Without [cluster], publish has nowhere to write.
        let text = fleet.config_text(0, "");
        let start = text.find("[cluster]").expect("[cluster]");
        let end = start + text[start..].find("\n\n").expect("end of [cluster]");
        let no_cluster = format!("{}{}", &text[..start], &text[end..]);
        let file = fleet.write("no-cluster.toml", &no_cluster);
        let (code, out, err) = fleet.publish(&file).await;
        assert_eq!(code, Some(1), "publish without [cluster]: stdout {out}; stderr {err}");
        assert!(err.contains("cluster"), "the message names [cluster]: {err}");
        assert_eq!(fleet.etcd.get(&fleet.key("config")).await, Some(before.clone()));

        // etcd unreachable (A's relays, which A's file names, refuse).
        fleet.set_relays(&[0], RelayMode::Refuse);
        let file = fleet.write("unreachable.toml", &fleet.config_text(0, ""));
        let started = Instant::now();
        let (code, out, err) = fleet.publish(&file).await;
        assert_eq!(code, Some(1), "publish with etcd unreachable: stdout {out}; stderr {err}");
        assert!(!err.trim().is_empty(), "publish says why it failed");
        assert!(started.elapsed() < ETCD_TIMEOUT + Duration::from_secs(2), "publish took {:?}", started.elapsed());
        fleet.set_relays(&[0], RelayMode::Pass);
        assert_eq!(fleet.etcd.get(&fleet.key("config")).await, Some(before));
        for inst in &fleet.inst {
            assert_eq!(inst.cluster().await["config"]["revision"], rev, "{} stays on {rev}", inst.name);
        }
    })
    .await
}

/// A published file with a new listener on `${RW_EXTRA_PORT}`, where the test holds C's port:
/// A and B apply it (their new listener answers), C stays on the previous revision, says why in
/// its `config.error` and in A's list of instances, and still serves; a drain through A still
/// reaches C. Once the port is free, the next publish applies on C too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn published_config_that_c_cannot_bind_leaves_c_on_its_old_config() {
    bounded_for(CLUSTER_TEST, async {
        let fleet = Fleet::start().await;
        let n1 = Upstream::start("n1").await;
        let rev1 = publish_ok(&fleet, "first.toml", &fleet.config_text(0, &new_route(&n1))).await;
        fleet
            .wait_cluster(&[0, 1, 2], CONVERGE_WITHIN, |v| v["config"]["revision"] == rev1)
            .await;

        let c_port = fleet.c().extra_port;
        let holder = std::net::TcpListener::bind(("127.0.0.1", c_port)).expect("hold C's extra port");
        let extra = format!(
            "{}\n[[listener]]\nname = \"extra\"\nbind = \"127.0.0.1:${{RW_EXTRA_PORT}}\"\n",
            new_route(&n1)
        );
        let rev2 = publish_ok(&fleet, "second.toml", &fleet.config_text(0, &extra)).await;
        fleet
            .wait_cluster(&[0, 1], CONVERGE_WITHIN, |v| {
                v["config"]["revision"] == rev2 && v["config"]["error"].is_null()
            })
            .await;
        for inst in &fleet.inst[..2] {
            let url = format!("http://127.0.0.1:{}/", inst.extra_port);
            let r = send(client().get(url).header(VIA, inst.name.as_str())).await;
            assert_eq!(r.status, 200, "{}'s new listener answers", inst.name);
        }
        let mentions_why = |e: &Value| {
            e.as_str()
                .is_some_and(|s| s.contains(&c_port.to_string()) || s.contains("extra"))
        };
        fleet
            .wait_cluster(&[2], CONVERGE_WITHIN, |v| mentions_why(&v["config"]["error"]))
            .await;
        let v = fleet.c().cluster().await;
        assert_eq!(v["config"]["revision"], rev1, "C stays on its old config: {v}");
        let (list, _) = wait_for(Duration::from_secs(3), "A shows C's config_error", async || {
            let v = fleet.a().cluster().await;
            let c = v["instances"]
                .as_array()
                .and_then(|a| a.iter().find(|e| e["name"] == "c"))
                .cloned()
                .unwrap_or(Value::Null);
            if mentions_why(&c["config_error"]) {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        })
        .await;
        for entry in list["instances"].as_array().expect("instances") {
            let expected = if entry["name"] == "c" { rev1 } else { rev2 };
            assert_eq!(entry["config_revision"], expected, "{entry}");
        }
        let r = fleet.c().get("/new/x").await;
        assert_eq!((r.status, r.backend()), (200, "n1"), "C still serves its config");

        // Runtime changes still reach C.
        let r = fleet.a().patch_server("p", "s1", json!({"state": "drain"})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        fleet
            .wait_server(&[0, 1, 2], "p", "s1", APPLY_WITHIN, |st, v| {
                st == 200 && v["state"] == "drain"
            })
            .await;

        // The port free again, the next publish applies everywhere.
        drop(holder);
        let rev3 = publish_ok(&fleet, "third.toml", &fleet.config_text(0, &extra)).await;
        fleet
            .wait_cluster(&[0, 1, 2], CONVERGE_WITHIN, |v| {
                v["config"]["revision"] == rev3 && v["config"]["error"].is_null()
            })
            .await;
        let url = format!("http://127.0.0.1:{c_port}/");
        let r = send(client().get(url).header(VIA, "c")).await;
        assert_eq!(r.status, 200, "C's new listener answers");
        fleet
            .wait_server(&[2], "p", "s1", APPLY_WITHIN, |st, v| {
                st == 200 && v["state"] == "drain"
            })
            .await;
    })
    .await
}
