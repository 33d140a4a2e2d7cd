//! `ringway demo` through the real binary: rooms behind round robin, `/cache/` by consistent
//! hash, the status page, and a clean stop on SIGINT.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn demo_serves_rooms_cache_and_status_page() {
    bounded(async {
        let mut child = ringway_command()
            .args(["demo", "--port", "0", "--admin-port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringway demo");
        let mut err_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let admin = loop {
            let line = err_lines
                .next_line()
                .await
                .expect("stderr")
                .expect("demo exited early");
            if let Some(a) = address_after(&line, "admin interface on http://") {
                break a;
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = err_lines.next_line().await {} });
        let mut out_lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let base = loop {
            let line = out_lines
                .next_line()
                .await
                .expect("stdout")
                .expect("demo exited early");
            if let Some(a) = address_after(&line, "behind http://") {
                break a;
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = out_lines.next_line().await {} });

        let client = client();
        let mut served = Vec::new();
        for _ in 0..3 {
            let r = send(client.get(format!("http://{base}/rooms"))).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let rooms: serde_json::Value = serde_json::from_str(&r.text()).expect("rooms JSON");
            assert!(rooms.as_array().is_some_and(|a| !a.is_empty()), "{rooms}");
            served.push(r.header("x-served-by").expect("X-Served-By").to_owned());
        }
        served.sort();
        assert_eq!(
            served,
            ["rooms-1", "rooms-2", "rooms-3"],
            "round robin over the three services"
        );

        let available = send(client.get(format!("http://{base}/rooms?status=available"))).await;
        assert_eq!(available.status, 200);

        for key in ["/cache/rooms/abc", "/cache/rooms/xyz", "/cache/k/1"] {
            let first = send(client.get(format!("http://{base}{key}"))).await;
            assert_eq!(first.status, 200, "{}", first.text());
            let owner = first.header("x-served-by").expect("X-Served-By").to_owned();
            for _ in 0..3 {
                let again = send(client.get(format!("http://{base}{key}"))).await;
                assert_eq!(
                    again.header("x-served-by"),
                    Some(owner.as_str()),
                    "{key} changed server"
                );
            }
        }

        let health = send(client.get(format!("http://{admin}/healthz"))).await;
        assert_eq!(health.status, 200);
        let page = send(client.get(format!("http://{admin}/"))).await;
        assert_eq!(page.status, 200);
        assert!(page.text().contains("<title>Ringway status</title>"));
        // The page draws the pools from the API (tests/status_page.rs, .ci/browser-test).
        let pools = send(client.get(format!("http://{admin}/api/v1/pools"))).await;
        assert_eq!(pools.status, 200);
        for word in ["rooms-1", "rooms-3", "cache"] {
            assert!(pools.text().contains(word), "/api/v1/pools lacks {word}");
        }

        let pid = child.id().expect("pid").to_string();
        let killed = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await
            .expect("kill");
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("demo exits after SIGINT")
            .expect("wait");
        assert_eq!(status.code(), Some(0));
    })
    .await
}
