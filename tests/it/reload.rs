//! `ringway run` reloads its file in place: a good file is swapped in, a bad one is refused with
//! every error while the running configuration keeps serving; SIGHUP does the same. Under load,
//! twenty reloads fail no request, refuse no connection, close no keep-alive connection and start
//! no process.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
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

        let (mut child, listen, admin, mut log_rx) = run_ringway(&path).await;
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
        // The API reloads above logged "configuration reloaded (api)" too: wait for this one.
        loop {
            let line = log_rx.recv().await.expect("ringway log ended");
            if line.contains("configuration reloaded (SIGHUP)") {
                break;
            }
        }
        assert_eq!(get(client.clone()).await.backend(), "first");

        terminate_gracefully(&mut child).await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

/// `ringway run -c path` as a child, once it has said where it listens: (child, listener
/// address, admin address, the rest of its log lines).
async fn run_ringway(
    path: &Path,
) -> (
    tokio::process::Child,
    String,
    String,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut child = ringway_command()
        .arg("run")
        .arg("-c")
        .arg(path)
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
    let (log_tx, log_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = log_tx.send(line);
        }
    });
    (child, listen.expect("listener"), admin.expect("admin"), log_rx)
}

/// Processes whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let child: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // "pid (comm) state ppid ...": comm may hold spaces, so read after its closing paren.
        let ppid: u32 = stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()?;
        (ppid == pid).then_some(child)
    })
    .collect()
}

#[derive(Default)]
struct Tally {
    ok: std::sync::atomic::AtomicUsize,
    failed: std::sync::atomic::AtomicUsize,
    refused: std::sync::atomic::AtomicUsize,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, counter: &std::sync::atomic::AtomicUsize, why: String) {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut first = self.first_failure.lock().expect("tally lock");
        first.get_or_insert(why);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_nothing() {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::AsyncWriteExt;
    bounded(async {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let dir = std::env::temp_dir().join(format!("ringway-reload-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("ringway.toml");
        // Two worker threads: each has its own socket per listener.
        let text = |port: u16, backend: &Backend| {
            config_text(port, &backend.address()).replace("workers = 1", "workers = 2")
        };
        write(&path, &text(0, &a));
        let (mut child, listen, admin, mut log) = run_ringway(&path).await;
        let pid = child.id().expect("pid");
        let port: u16 = listen
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        let addr: std::net::SocketAddr = listen.parse().expect("listener address");
        assert!(children_of(pid).is_empty());

        let tally = std::sync::Arc::new(Tally::default());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut load = tokio::task::JoinSet::new();
        // Keep-alive clients.
        for _ in 0..3 {
            let (tally, stop, client) = (tally.clone(), stop.clone(), client());
            let url = format!("http://{listen}/k");
            load.spawn(async move {
                while !stop.load(SeqCst) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => match r.bytes().await {
                            Ok(_) => {
                                tally.ok.fetch_add(1, SeqCst);
                            }
                            Err(e) => tally.fail(&tally.failed, format!("body: {e:?}")),
                        },
                        Ok(r) => tally.fail(&tally.failed, format!("status {}", r.status())),
                        Err(e) => tally.fail(&tally.failed, format!("request: {e:?}")),
                    }
                }
            });
        }
        // A client opening a connection per request: a refused connection shows here.
        for _ in 0..2 {
            let (tally, stop) = (tally.clone(), stop.clone());
            load.spawn(async move {
                while !stop.load(SeqCst) {
                    let s = match tokio::net::TcpStream::connect(addr).await {
                        Ok(s) => s,
                        Err(e) => {
                            tally.fail(&tally.refused, format!("connect: {e}"));
                            continue;
                        }
                    };
                    let req = b"GET /n HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n";
                    let out = raw_exchange_on(s, req, Duration::from_secs(5)).await;
                    if out.status == Some(200) {
                        tally.ok.fetch_add(1, SeqCst);
                    } else {
                        tally.fail(&tally.failed, format!("per-connection request: {out:?}"));
                    }
                }
            });
        }

        // One keep-alive connection held open across every reload.
        let mut held = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let held_port = held.local_addr().expect("local address").port();
        let client = client();
        let started = std::time::Instant::now();
        for i in 0..20 {
            // Paced so that the twenty reloads spread over the ten seconds of load.
            tokio::time::sleep(Duration::from_millis(450)).await;
            let next = if i % 2 == 0 { &b } else { &a };
            write(&path, &text(port, next));
            if i % 4 < 2 {
                let r = send(client.post(format!("http://{admin}/api/v1/reload"))).await;
                assert_eq!(r.status, 200, "reload {i}: {}", r.text());
            } else {
                assert!(
                    Command::new("kill")
                        .args(["-HUP", &pid.to_string()])
                        .status()
                        .await
                        .expect("kill")
                        .success()
                );
                let wait = tokio::time::timeout(Duration::from_secs(5), async {
                    loop {
                        let line = log.recv().await.expect("ringway log ended");
                        if line.contains("configuration reloaded (SIGHUP)") {
                            break;
                        }
                    }
                });
                wait.await.expect("SIGHUP reload logged within 5 s");
            }
            held.write_all(b"GET /held HTTP/1.1\r\nhost: t\r\n\r\n")
                .await
                .expect("write on the held connection");
            let (status, head, _) = read_response(&mut held).await;
            assert_eq!(status, 200, "held connection after reload {i}: {head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains(&format!("x-backend: {}", next.name)),
                "reload {i} applied on the held connection's next request: {head}"
            );
            assert_eq!(held.local_addr().expect("local address").port(), held_port);
        }
        let until = started + Duration::from_secs(10);
        tokio::time::sleep_until(until.into()).await;
        stop.store(true, SeqCst);
        while let Some(r) = load.join_next().await {
            r.expect("load task");
        }

        let (ok, failed, refused) = (
            tally.ok.load(SeqCst),
            tally.failed.load(SeqCst),
            tally.refused.load(SeqCst),
        );
        let first = tally.first_failure.lock().expect("tally lock").clone();
        assert_eq!((failed, refused), (0, 0), "{ok} ok; first failure: {first:?}");
        assert!(ok > 200, "too little load to tell: {ok} requests");
        eprintln!("{ok} requests over 20 reloads, none failed");
        // Still one process: the same pid, running, with no child.
        assert!(child.try_wait().expect("try_wait").is_none(), "ringway exited");
        assert!(
            children_of(pid).is_empty(),
            "child processes: {:?}",
            children_of(pid)
        );
        drop(held);

        terminate_gracefully(&mut child).await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}
