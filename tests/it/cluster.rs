//! Cluster mode against a real etcd (issue 15's proofs): three `ringway run` processes (A, B,
//! C) sharing one 3-member etcd cluster through relays, so that each instance can lose etcd on
//! its own while `etcdctl` still reaches the members. Runtime changes through one instance
//! reach the others under load (`changes`), published configs (`publish`), etcd members lost,
//! the whole store cut off or stopped, stalled or compacted (`outage`), values that do not
//! apply (`changes`), the cache file against crashes in the middle of its writes (`cache`),
//! and the propagation time (an ignored figure).
//!
//! Every test here needs `etcd` and `etcdctl` and is ignored by plain `cargo test`:
//! `.ci/cluster-test` installs them and runs
//! `cargo test --test it cluster:: -- --ignored --test-threads=1`.

mod cache;
mod changes;
mod outage;
mod publish;
mod tls;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::etcd::{EtcdCluster, Relay, RelayMode, bounded_for};
use crate::common::fleet::{Instance, Load, Upstream};
use crate::common::upstream::TempDir;
use crate::common::*;
use serde_json::Value;

/// The instances' names, in the order of [`Fleet::inst`].
const NAMES: [&str; 3] = ["a", "b", "c"];
/// Every runtime change is applied by every instance within this (THE SPEC).
const APPLY_WITHIN: Duration = Duration::from_secs(1);
/// The `[cluster] timeout` of every instance.
const ETCD_TIMEOUT: Duration = Duration::from_secs(1);
/// A published config applied, or the fleet caught up after etcd came back.
const CONVERGE_WITHIN: Duration = Duration::from_secs(5);
/// Upper bound of one cluster test.
const CLUSTER_TEST: Duration = Duration::from_secs(150);

/// Three instances, a 3-member etcd, a relay per (instance, member), upstream servers s1..s3
/// in pool `p` (route `main`, `/`, with a maintenance switch) and x1 alone in pool `solo`
/// (route `solo`, `/solo/`). Fields drop in order: instances first, etcd last.
struct Fleet {
    inst: Vec<Instance>,
    /// `relays[i][m]`: instance `i`'s way to member `m`.
    relays: Vec<Vec<Relay>>,
    etcd: EtcdCluster,
    servers: Vec<Upstream>,
    solo: Upstream,
    prefix: String,
    dir: TempDir,
}

impl Fleet {
    /// Starts etcd, the relays, the servers and the three instances; returns once A lists all
    /// three as registered.
    async fn start() -> Fleet {
        let etcd = EtcdCluster::start(3).await;
        let mut relays = Vec::new();
        for _ in NAMES {
            let mut mine = Vec::new();
            for m in 0..etcd.len() {
                mine.push(Relay::start(etcd.client_addr(m)).await);
            }
            relays.push(mine);
        }
        let mut servers = Vec::new();
        for name in ["s1", "s2", "s3"] {
            servers.push(Upstream::start(name).await);
        }
        let mut fleet = Fleet {
            inst: Vec::new(),
            relays,
            etcd,
            servers,
            solo: Upstream::start("x1").await,
            prefix: format!("/rw-test-{:012x}", fastrand::u64(..) >> 16),
            dir: TempDir::new("fleet"),
        };
        // Each instance in a directory of its own (its file, log and cache file), so that a
        // test can see every file one instance writes there.
        for (i, name) in NAMES.iter().enumerate() {
            let home = fleet.home(i);
            std::fs::create_dir_all(&home).expect("instance directory");
            let path = home.join(format!("{name}.toml"));
            std::fs::write(&path, fleet.config_text(i, "")).expect("write config");
            fleet.inst.push(Instance::start(name, &path).await);
        }
        fleet.wait_registered(0, Duration::from_secs(10)).await;
        fleet
    }

    /// Instance `i`'s configuration file, with `extra` appended (more routes, pools,
    /// listeners). Every address is a `${RW_*_PORT}` variable, so that one text can be
    /// published to all three.
    fn config_text(&self, i: usize, extra: &str) -> String {
        let etcd = self.relays[i]
            .iter()
            .map(|r| format!("\"{}\"", r.url()))
            .collect::<Vec<_>>()
            .join(", ");
        let servers = self
            .servers
            .iter()
            .map(|s| format!("{{ address = \"{}\", name = \"{}\" }}", s.address(), s.name))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            r#"workers = 1
shutdown_grace = "1s"

[admin]
listen = "127.0.0.1:${{RW_ADMIN_PORT}}"

[log]
access = "off"

[cluster]
etcd = [{etcd}]
prefix = "{prefix}"
name = "{name}"
timeout = "1s"

[[listener]]
name = "web"
bind = "127.0.0.1:${{RW_WEB_PORT}}"

[[route]]
name = "main"
path = "/"
pool = "p"

[route.maintenance]

[[route]]
name = "solo"
path = "/solo/"
pool = "solo"

[pool.p]
balance = "round_robin"
servers = [{servers}]

[pool.solo]
servers = [{{ address = "{solo}", name = "x1" }}]
{extra}"#,
            prefix = self.prefix,
            name = NAMES[i],
            solo = self.solo.address(),
        )
    }

    /// Instance `i`'s directory: its config file, its stderr, its cache file (by default
    /// beside the config).
    fn home(&self, i: usize) -> PathBuf {
        self.dir.0.join(NAMES[i])
    }

    /// Instance `i`'s cache file (the default name).
    fn cache_file(&self, i: usize) -> PathBuf {
        self.home(i).join(format!("{}.cluster-cache.json", NAMES[i]))
    }

    fn a(&self) -> &Instance {
        &self.inst[0]
    }

    fn b(&self) -> &Instance {
        &self.inst[1]
    }

    fn c(&self) -> &Instance {
        &self.inst[2]
    }

    /// The full etcd key of `rel` (`servers/p/s1`) under this fleet's prefix.
    fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.prefix)
    }

    /// Upstream server `name` (s1..s3).
    fn server(&self, name: &str) -> &Upstream {
        self.servers
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server {name}"))
    }

    /// Sets the relays of instances `which` to every member.
    fn set_relays(&self, which: &[usize], mode: RelayMode) {
        for &i in which {
            for r in &self.relays[i] {
                r.set(mode);
            }
        }
    }

    /// Clients through instances `which` (2 each, a 10 ms pause between requests: a few hundred
    /// requests a second in all, which leaves etcd its share of the two cores CI has).
    fn load(&self, which: &[usize]) -> Load {
        let targets: Vec<(String, String)> = which
            .iter()
            .map(|&i| (self.inst[i].name.clone(), self.inst[i].web("/")))
            .collect();
        Load::start(&targets, 2, Duration::from_millis(10))
    }

    /// Waits until instance `i`'s `/api/v1/cluster` lists a, b and c.
    async fn wait_registered(&self, i: usize, limit: Duration) -> Value {
        let inst = &self.inst[i];
        wait_for(limit, &format!("{} lists a, b and c", inst.name), async || {
            let v = inst.cluster().await;
            let names: Vec<&str> = v["instances"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
                .unwrap_or_default();
            if names == NAMES {
                Ok(v)
            } else {
                Err(format!("instances {names:?}: {v}"))
            }
        })
        .await
        .0
    }

    /// Waits until instances `which` all show server `pool/server` as `check` accepts it
    /// (status and `<server>` JSON); returns how long the slowest took.
    async fn wait_server(
        &self,
        which: &[usize],
        pool: &str,
        server: &str,
        limit: Duration,
        check: impl Fn(u16, &Value) -> bool,
    ) -> Duration {
        let start = Instant::now();
        for &i in which {
            let inst = &self.inst[i];
            let what = format!("{pool}/{server} as expected on {}", inst.name);
            let left = limit.saturating_sub(start.elapsed());
            wait_for(left, &what, async || {
                let (status, v) = inst.server(pool, server).await;
                if check(status, &v) {
                    Ok(())
                } else {
                    Err(format!("{status} {v}"))
                }
            })
            .await;
        }
        start.elapsed()
    }

    /// Waits until instances `which` all answer `cluster` JSON that `check` accepts.
    async fn wait_cluster(&self, which: &[usize], limit: Duration, check: impl Fn(&Value) -> bool) {
        let start = Instant::now();
        for &i in which {
            let inst = &self.inst[i];
            let what = format!("/api/v1/cluster of {} as expected", inst.name);
            let left = limit.saturating_sub(start.elapsed());
            wait_for(left, &what, async || {
                let v = inst.cluster().await;
                if check(&v) { Ok(()) } else { Err(v.to_string()) }
            })
            .await;
        }
    }

    /// `ringway publish -c file` with A's environment: (exit code, stdout, stderr).
    async fn publish(&self, file: &Path) -> (Option<i32>, String, String) {
        let out = ringway_command()
            .arg("publish")
            .arg("-c")
            .arg(file)
            .envs(self.a().env())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output();
        let out = tokio::time::timeout(Duration::from_secs(20), out)
            .await
            .expect("ringway publish finishes")
            .expect("run ringway publish");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Writes `text` as `name` in the fleet's directory.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        self.dir.write(name, text)
    }
}

/// Calls `f` every 10 ms until it answers `Ok`, for at most `limit`; returns the value and the
/// time it took. Panics with `what` and the last `Err`.
async fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Result<T, String>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return (v, start.elapsed()),
            Err(e) => assert!(
                start.elapsed() < limit,
                "not within {limit:?}: {what}; last seen: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The JSON body of an admin answer.
fn json(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

/// `published FILE as revision N` → N.
fn published_revision(stdout: &str) -> i64 {
    stdout
        .lines()
        .find_map(|l| {
            let rest = &l[l.find(" as revision ")? + " as revision ".len()..];
            rest.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no `published FILE as revision N` in: {stdout}"))
}

/// A route `/new/` to a new pool `q` of server n1.
fn new_route(n1: &Upstream) -> String {
    format!(
        r#"
[[route]]
name = "new"
path = "/new/"
pool = "q"

[pool.q]
servers = [{{ address = "{}", name = "n1" }}]
"#,
        n1.address()
    )
}

/// Publishes `text` as `name` and checks the output; returns the revision.
async fn publish_ok(fleet: &Fleet, name: &str, text: &str) -> i64 {
    let file = fleet.write(name, text);
    let (code, out, err) = fleet.publish(&file).await;
    assert_eq!(code, Some(0), "ringway publish: stdout {out}; stderr {err}");
    let rev = published_revision(&out);
    assert!(
        out.contains(&format!("published {} as revision {rev}", file.display())),
        "publish says what it published: {out}"
    );
    rev
}

/// The harness alone: three members, one killed while the others take writes, started again
/// and caught up; a relay that passes, refuses (closing open connections) and stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn harness_etcd_members_and_relays() {
    use tokio::io::AsyncReadExt;
    bounded_for(Duration::from_secs(90), async {
        let mut etcd = EtcdCluster::start(3).await;
        let r1 = etcd.put("/h/k", "one").await;
        etcd.kill_member(1);
        etcd.wait_running_healthy().await;
        // etcdctl is given every endpoint, the dead one included.
        let r2 = etcd.put("/h/k", "two").await;
        assert!(r2 > r1, "revisions {r1} then {r2}");
        assert_eq!(etcd.get("/h/k").await, Some(("two".to_owned(), r2)));
        etcd.start_member(1).await;
        let only_1 = vec![etcd.endpoints()[1].clone()];
        wait_for(Duration::from_secs(5), "member 1 caught up", async || {
            let out = etcd
                .etcdctl_at(&only_1, &["get", "/h/k", "--print-value-only", "--consistency=s"])
                .await;
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if text == "two" { Ok(()) } else { Err(text) }
        })
        .await;

        let relay = Relay::start(etcd.client_addr(0)).await;
        let through = vec![relay.url()];
        let out = etcd.etcdctl_at(&through, &["put", "/h/r", "pass"]).await;
        assert!(out.status.success(), "put through a passing relay: {out:?}");

        let mut open = tokio::net::TcpStream::connect(relay.addr).await.expect("connect");
        relay.set(RelayMode::Refuse);
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(2), open.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "refuse closes open connections: {closed:?}"
        );
        let out = etcd.etcdctl_at(&through, &["put", "/h/r", "refused"]).await;
        assert!(!out.status.success(), "put through a refusing relay succeeded");

        relay.set(RelayMode::Stall);
        let start = Instant::now();
        let out = etcd
            .etcdctl_at(&through, &["--command-timeout=1s", "put", "/h/r", "stalled"])
            .await;
        assert!(!out.status.success(), "put through a stalled relay succeeded");
        assert!(
            start.elapsed() >= Duration::from_millis(900),
            "a stall waits, it does not refuse"
        );
        assert_eq!(etcd.get("/h/r").await.map(|(v, _)| v).as_deref(), Some("pass"));

        relay.set(RelayMode::Pass);
        let out = etcd.etcdctl_at(&through, &["put", "/h/r", "again"]).await;
        assert!(out.status.success(), "put through a relay passing again: {out:?}");

        let now = etcd.revision().await;
        etcd.compact(now).await;
        etcd.stop_all();
        etcd.start_all().await;
        assert_eq!(etcd.get("/h/r").await.map(|(v, _)| v).as_deref(), Some("again"));
        assert_eq!(etcd.keys("/h/").await, vec!["/h/k".to_owned(), "/h/r".to_owned()]);
        etcd.del("/h/r").await;
        assert_eq!(etcd.get("/h/r").await, None);
    })
    .await
}
