//! `[cluster]` with TLS to etcd (a private CA, a client certificate that etcd requires) and an
//! etcd user whose password comes from the environment: the instance connects, registers and
//! writes through it; with a wrong password it does not, and says so; stopped cleanly, it leaves
//! the fleet's list at once.

use std::process::Stdio;

use super::*;
use crate::common::etcd::free_ports;
use crate::common::tls::{TestCa, write_leaf};

/// One etcd member that speaks TLS only and asks clients for a certificate of `ca`.
struct TlsEtcd {
    child: tokio::process::Child,
    url: String,
    /// etcdctl's TLS flags.
    flags: Vec<String>,
}

impl TlsEtcd {
    async fn start(dir: &Path, ca: &TestCa) -> TlsEtcd {
        let server = write_leaf(dir, "etcd", &ca.leaf(&["127.0.0.1", "localhost"]));
        let client = write_leaf(dir, "client", &ca.leaf(&["ringway"]));
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("CA file");
        let [client_port, peer_port] = free_ports(2)[..] else {
            panic!("two free ports")
        };
        let url = format!("https://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = tokio::process::Command::new("etcd")
            .args(["--name", "t0", "--data-dir"])
            .arg(dir.join("t0.data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("t0={peer}")])
            .arg("--cert-file")
            .arg(&server.cert)
            .arg("--key-file")
            .arg(&server.key)
            .arg("--client-cert-auth")
            .arg("--trusted-ca-file")
            .arg(&ca_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("etcd.log")).expect("etcd log"))
            .kill_on_drop(true)
            .spawn()
            .expect("etcd (install etcd-server: .ci/cluster-test)");
        let flags = vec![
            format!("--endpoints={url}"),
            format!("--cacert={}", ca_file.display()),
            format!("--cert={}", client.cert.display()),
            format!("--key={}", client.key.display()),
            "--dial-timeout=2s".into(),
            "--command-timeout=5s".into(),
        ];
        let etcd = TlsEtcd { child, url, flags };
        wait_for(Duration::from_secs(20), "the TLS etcd answers", async || {
            let out = etcd.etcdctl(&["put", "/up", "1"]).await;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        })
        .await;
        etcd
    }

    async fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(&self.flags)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("etcdctl (install etcd-client: .ci/cluster-test)")
    }
}

/// A `ringway run` of `config` with `password` in `RW_TEST_ETCD_PASSWORD`; killed on drop.
struct Run {
    child: tokio::process::Child,
    admin: String,
    log: PathBuf,
}

impl Run {
    async fn start(config: &Path, admin_port: u16, web_port: u16, password: &str) -> Run {
        let log = config.with_extension("stderr");
        let child = ringway_command()
            .arg("run")
            .arg("-c")
            .arg(config)
            .env("RW_ADMIN_PORT", admin_port.to_string())
            .env("RW_WEB_PORT", web_port.to_string())
            .env("RW_TEST_ETCD_PASSWORD", password)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .kill_on_drop(true)
            .spawn()
            .expect("ringway run");
        let run = Run {
            child,
            admin: format!("http://127.0.0.1:{admin_port}"),
            log,
        };
        let http = client();
        wait_for(
            Duration::from_secs(10),
            "the admin interface answers",
            async || match http.get(format!("{}/healthz", run.admin)).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
        run
    }

    async fn cluster(&self) -> Value {
        client()
            .get(format!("{}/api/v1/cluster", self.admin))
            .send()
            .await
            .expect("GET /api/v1/cluster")
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .expect("JSON")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn tls_with_a_client_certificate_and_a_user() {
    bounded_for(CLUSTER_TEST, async {
        let dir = TempDir::new("cluster-tls");
        let ca = TestCa::new();
        let mut etcd = TlsEtcd::start(&dir.0, &ca).await;
        for args in [&["user", "add", "root:s3cret"][..], &["auth", "enable"][..]] {
            let out = etcd.etcdctl(args).await;
            assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        // From here etcdctl needs the user too.
        etcd.flags.push("--user=root:s3cret".into());
        let upstream = Upstream::start("u1").await;
        let ringway_client = write_leaf(&dir.0, "ringway", &ca.leaf(&["ringway"]));
        std::fs::write(dir.0.join("etcd-ca.pem"), ca.pem()).expect("CA");
        let config = dir.0.join("t.toml");
        std::fs::write(
            &config,
            format!(
                "[cluster]\netcd = [\"{}\"]\nprefix = \"/rw-tls\"\nname = \"t\"\ntimeout = \"2s\"\n\
                 ca = \"etcd-ca.pem\"\ncert = \"{}\"\nkey = \"{}\"\nuser = \"root\"\npassword_env = \"RW_TEST_ETCD_PASSWORD\"\n\
                 [admin]\nlisten = \"127.0.0.1:${{RW_ADMIN_PORT}}\"\n[log]\naccess = \"off\"\n\
                 [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:${{RW_WEB_PORT}}\"\n\
                 [[route]]\npath = \"/\"\npool = \"p\"\n[pool.p]\nservers = [{{ address = \"{}\", name = \"u1\" }}]\n",
                etcd.url,
                ringway_client.cert.display(),
                ringway_client.key.display(),
                upstream.address()
            ),
        )
        .expect("config");
        let ports = free_ports(4);
        let run = Run::start(&config, ports[0], ports[1], "s3cret").await;
        let c = run.cluster().await;
        assert_eq!(c["etcd"]["connected"], true, "{c}\n{}", run.log_text());
        let r = client()
            .patch(format!("{}/api/v1/pools/p/servers/u1", run.admin))
            .header("content-type", "application/json")
            .body(r#"{"weight": 7}"#)
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status(), 200, "{}", run.log_text());
        let out = etcd.etcdctl(&["get", "--print-value-only", "/rw-tls/servers/p/u1"]).await;
        let value: Value = serde_json::from_slice(&out.stdout).expect("the key's JSON");
        assert_eq!(value["weight"], 7, "written over TLS as the user");
        let out = etcd.etcdctl(&["get", "--print-value-only", "/rw-tls/instances/t"]).await;
        let reg: Value = serde_json::from_slice(&out.stdout).expect("the registration's JSON");
        assert_eq!(reg["name"], "t");

        // The wrong password: the instance starts (from its cache), says etcd refused, and
        // its admin writes answer 503.
        let wrong = Run::start(&config, ports[2], ports[3], "wrong").await;
        let c = wrong.cluster().await;
        assert_eq!(c["etcd"]["connected"], false, "{c}");
        let error = c["etcd"]["error"].as_str().unwrap_or_default().to_lowercase();
        assert!(error.contains("auth"), "the reason names authentication: {error}");
        let r = client()
            .patch(format!("{}/api/v1/pools/p/servers/u1", wrong.admin))
            .header("content-type", "application/json")
            .body(r#"{"weight": 9}"#)
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status(), 503);
        drop(wrong);

        // A clean stop takes the registration out at once (its lease revoked), not after 10 s.
        let mut run = run;
        let stopped = Instant::now();
        terminate_gracefully(&mut run.child).await;
        let out = etcd.etcdctl(&["get", "--print-value-only", "/rw-tls/instances/t"]).await;
        assert!(out.status.success() && out.stdout.is_empty(), "registration gone after the stop");
        assert!(stopped.elapsed() < Duration::from_secs(8), "well before the lease's 10 s");
        assert!(run.log_text().contains("left the fleet's list"), "{}", run.log_text());
        let _ = etcd.child.start_kill();
    })
    .await;
}
