//! The `ringway` binary: `check` on good and bad files, and `proxy` end to end with a graceful
//! stop on SIGTERM.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ringway");

/// Writes `text` to a fresh file under the temp dir.
fn temp_file(tag: &str, text: &[u8]) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = std::env::temp_dir().join(format!("ringway-cli-{tag}-{}-{nanos}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write temp file");
    path
}

async fn check(path: &PathBuf) -> std::process::Output {
    let out = Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(path)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("run ringway check");
    let _ = std::fs::remove_file(path);
    out
}

#[tokio::test]
async fn check_accepts_a_valid_file() {
    bounded(async {
        let path = temp_file(
            "good",
            br#"
[[listener]]
name = "web"
bind = "127.0.0.1:0"

[[route]]
name = "all"
pool = "app"

[pool.app]
servers = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 3 }]
"#,
        );
        let out = check(&path).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "stdout: {stdout} stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("app"), "the summary names the pool: {stdout}");
    })
    .await
}

#[tokio::test]
async fn check_reports_every_error_with_file_line_col() {
    bounded(async {
        let path = temp_file(
            "bad",
            br#"[[listener]]
name = "web"
bind = "127.0.0.1:notaport"

[[route]]
name = "all"
pool = "missing"

[pool.app]
servers = ["127.0.0.1:9001"]
retrys = 2
timeouts = { connect = "3 parsecs" }
"#,
        );
        let name = path.display().to_string();
        let out = check(&path).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        for (line, what) in [(3, "notaport"), (7, "missing"), (11, "retries"), (12, "parsecs")] {
            let prefix = format!("{name}:{line}:");
            assert!(
                stderr.lines().any(|l| l.starts_with(&prefix) && l.contains(what)),
                "no error at line {line} mentioning `{what}`:\n{stderr}"
            );
        }
        assert!(stderr.contains("did you mean"), "{stderr}");
    })
    .await
}

#[tokio::test]
async fn check_never_panics_on_garbage() {
    bounded(async {
        for (i, text) in [
            &b"[[listener\n=== \n"[..],
            b"\xff\xfe not utf-8",
            b"workers = -1\nshutdown_grace = 5\n[pool]\nx = []\n",
            b"[[route]]\n[[route]]\npath = 7\n",
            b"",
        ]
        .iter()
        .enumerate()
        {
            let path = temp_file(&format!("garbage{i}"), text);
            let out = check(&path).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "file {i}: {stderr}");
            assert!(!stderr.contains("panicked"), "file {i}: {stderr}");
        }
    })
    .await
}

#[tokio::test]
async fn proxy_command_serves_and_stops_gracefully_on_sigterm() {
    bounded(async {
        let backend = Backend::start("cli").await;
        let mut child = ringway_command()
            .args(["proxy", "--listen", "127.0.0.1:0", "--threads", "1", "--to"])
            .arg(backend.address())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringway proxy");
        // The engine logs the address it bound (port 0 resolved).
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = loop {
            let line = lines
                .next_line()
                .await
                .expect("read stderr")
                .expect("ringway exited before listening");
            if let Some(addr) = address_after(&line, "http://") {
                break addr;
            }
        };
        // Keep draining stderr so that the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let client = client();
        let r = send(client.get(format!("http://{addr}/hello"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.backend(), "cli");

        let slow = client
            .get(format!("http://{addr}/slow"))
            .header(DELAY_HEADER, "500");
        let in_flight = tokio::spawn(async move {
            match slow.send().await {
                Ok(resp) => Ok(Reply::read(resp).await),
                Err(e) => Err(e),
            }
        });
        backend.wait_requests(2).await;
        let pid = child.id().expect("child pid").to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("run kill");
        assert!(killed.success());
        let reply = in_flight.await.expect("request task");
        let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .expect("ringway exits after SIGTERM once idle")
            .expect("wait for ringway");
        match reply {
            Ok(r) => assert_eq!(r.status, 200, "the request in flight at SIGTERM: {}", r.text()),
            Err(e) => panic!("the request in flight at SIGTERM failed ({e:?}); ringway exited with {status}"),
        }
        assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    })
    .await
}

#[tokio::test]
async fn sigterm_right_after_the_listener_is_announced_is_graceful() {
    use tokio::io::AsyncWriteExt;
    bounded(async {
        // Once ringway has said where it listens, SIGTERM must mean a graceful stop (exit 0),
        // never the default action of an uncaught signal. The signal is sent by a shell started
        // beforehand (no fork/exec in between) and tried ten times, to make a race visible.
        for attempt in 0..10 {
            let mut killer = Command::new("sh")
                .args(["-c", "read pid && kill -TERM \"$pid\""])
                .stdin(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn sh");
            let mut killer_stdin = killer.stdin.take().expect("killer stdin");
            let mut child = Command::new(BIN)
                .args([
                    "proxy",
                    "--listen",
                    "127.0.0.1:0",
                    "--threads",
                    "1",
                    "--to",
                    "127.0.0.1:9",
                ])
                .env("NO_COLOR", "1")
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn ringway proxy");
            let pid = child.id().expect("child pid");
            let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
            loop {
                let line = lines
                    .next_line()
                    .await
                    .expect("read stderr")
                    .expect("ringway exited before listening");
                if line.contains("http://") {
                    break;
                }
            }
            killer_stdin
                .write_all(format!("{pid}\n").as_bytes())
                .await
                .expect("tell the killer");
            drop(killer_stdin);
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            assert!(killer.wait().await.expect("killer").success());
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .expect("ringway exits after SIGTERM")
                .expect("wait for ringway");
            assert_eq!(
                status.code(),
                Some(0),
                "attempt {attempt}: SIGTERM just after start gave {status}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn check_refuses_settings_this_version_cannot_honour() {
    bounded(async {
        let path = temp_file(
            "tls",
            br#"
[[listener]]
name = "web"
bind = "127.0.0.1:0"
tls = { cert = "site.pem", key = "site.key" }

[[route]]
name = "all"
pool = "app"

[pool.app]
servers = ["127.0.0.1:9001"]
health = { path = "/healthz" }
"#,
        );
        let out = check(&path).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
        assert!(stderr.contains("TLS is not supported"), "{stderr}");
        // Health checks run now: nothing to warn about.
        assert!(!stderr.contains("health"), "{stderr}");
    })
    .await
}

#[tokio::test]
async fn ring_plans_a_configured_pool() {
    bounded(async {
        let path = temp_file(
            "ring",
            br#"
[[listener]]
name = "web"
bind = "127.0.0.1:0"

[[route]]
name = "cache"
path = "/cache/"
pool = "cache"

[pool.cache]
balance = "consistent_hash"
hash = "sha1-28"
vnodes = 5
servers = [{ address = "127.0.0.1:11211", name = "server-a" }, { address = "127.0.0.1:11212", name = "server-b" }]
"#,
        );
        let ring = |args: &'static [&'static str]| {
            let path = path.clone();
            async move {
                Command::new(BIN)
                    .arg("ring")
                    .arg("-c")
                    .arg(&path)
                    .args(args)
                    .output()
                    .await
                    .expect("run ringway ring")
            }
        };
        let out = ring(&["--pool", "cache", "--add", "server-c"]).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        // The classic demonstration's tables, read from the pool's names, vnodes and hash.
        assert!(stdout.contains("   23746828 --> server-a-4 (6848918 hashes)"), "{stdout}");
        assert!(stdout.contains("84970214 hashes move, 31.654% of the hash space"), "{stdout}");
        assert!(stdout.contains("Nothing moves between two servers that stay."), "{stdout}");

        let missing = ring(&["--pool", "nope"]).await;
        assert_eq!(missing.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&missing.stderr).contains("no pool `nope`"));
    })
    .await
}
