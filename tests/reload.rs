//! `ringway run` reloads its file in place: a good file is swapped in, a bad one is refused with
//! every error while the running configuration keeps serving; SIGHUP does the same.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn config_text(listen_port: u16, backend: &str) -> String {
    format!(
        r#"workers = 1
shutdown_grace = "2s"

[admin]
listen = "127.0.0.1:0"

[log]
access = "off"

[[listener]]
name = "main"
bind = "127.0.0.1:{listen_port}"

[[route]]
name = "all"
pool = "app"

[pool.app]
servers = ["{backend}"]
"#
    )
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}

#[tokio::test]
async fn reload_swaps_a_good_file_and_refuses_a_bad_one() {
    bounded(async {
        let first = Backend::start("first").await;
        let second = Backend::start("second").await;
        let dir = std::env::temp_dir().join(format!("ringway-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("ringway.toml");
        // Port 0 at start; the bound port is read back and kept in later versions of the file
        // (a listener change would need a restart).
        write(&path, &config_text(0, &first.address()));

        let mut child = ringway_command()
            .arg("run")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringway run");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (mut listen, mut admin) = (None, None);
        while listen.is_none() || admin.is_none() {
            let line = lines
                .next_line()
                .await
                .expect("stderr")
                .expect("ringway exited early");
            if line.contains("listener `main`") {
                listen = address_after(&line, "http://");
            } else if line.contains("admin interface") {
                admin = address_after(&line, "http://");
            }
        }
        let (listen, admin) = (listen.expect("listener"), admin.expect("admin"));
        let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log_tx.send(line);
            }
        });
        let port: u16 = listen
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        let client = client();
        let get = |client: reqwest::Client| {
            let url = format!("http://{listen}/x");
            async move { send(client.get(url)).await }
        };
        assert_eq!(get(client.clone()).await.backend(), "first");

        // A good file: the new pool serves the next request.
        write(&path, &config_text(port, &second.address()));
        let r = send(client.post(format!("http://{admin}/api/v1/reload"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(get(client.clone()).await.backend(), "second");

        // A bad file: 422 with every error, and the running configuration keeps serving.
        write(
            &path,
            &config_text(port, &second.address())
                .replace("pool = \"app\"", "pool = \"nope\"\nstirp_prefix = true"),
        );
        let r = send(client.post(format!("http://{admin}/api/v1/reload"))).await;
        assert_eq!(r.status, 422, "{}", r.text());
        let body: serde_json::Value = serde_json::from_str(&r.text()).expect("JSON error");
        let errors = body["error"]["errors"].as_array().expect("errors list");
        assert_eq!(errors.len(), 2, "{body}");
        assert!(
            errors
                .iter()
                .all(|e| e.as_str().is_some_and(|s| s.contains("ringway.toml:"))),
            "{body}"
        );
        assert_eq!(get(client.clone()).await.backend(), "second");

        // SIGHUP with a good file again.
        write(&path, &config_text(port, &first.address()));
        let pid = child.id().expect("pid").to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .await
                .expect("kill")
                .success()
        );
        loop {
            let line = log_rx.recv().await.expect("ringway log ended");
            if line.contains("configuration reloaded") {
                break;
            }
        }
        assert_eq!(get(client.clone()).await.backend(), "first");

        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .await
                .expect("kill")
                .success()
        );
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("wait");
        assert_eq!(status.code(), Some(0));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}
