//! `ringway check` on TLS listeners: a missing, PEM-less, expired, not yet valid or mismatched
//! certificate or key is refused at the line and column of the key that names it; one that
//! expires soon is a warning. `ringway proxy --cert --key` serves TLS in one line.

use crate::common::tls as tls_common;

use std::path::Path;
use std::process::Stdio;

use crate::common::*;
use tls_common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_ringway");

/// A listener with a good default certificate and a second pair `case.pem`/`case.key` (lines 8
/// and 9, column 1), relative to the configuration file.
const TEXT: &str = r#"[[listener]]
name = "web"
bind = "127.0.0.1:0"
[[listener.tls.cert]]
cert = "good.pem"
key = "good.key"
[[listener.tls.cert]]
cert = "case.pem"
key = "case.key"

[[route]]
name = "all"
pool = "app"

[pool.app]
servers = ["127.0.0.1:9001"]
"#;

async fn check(path: &Path) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(path)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("run ringway check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn check_refuses_bad_certificates_and_keys_at_their_key() {
    bounded(async {
        let ca = TestCa::new();
        let now = unix_now();
        let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
        let good = ca.leaf(&["good.test"]);
        let other = ca.leaf(&["other.test"]);
        // (what, certificate text or None for no file, key text, line:col, message)
        let cases: Vec<(&str, Option<String>, String, &str, &str)> = vec![
            (
                "missing certificate",
                None,
                good.key_pem.clone(),
                "8:1",
                "cannot be read",
            ),
            (
                "no PEM in the certificate",
                Some("not a certificate\n".into()),
                good.key_pem.clone(),
                "8:1",
                "holds no PEM certificate",
            ),
            (
                "expired",
                Some(
                    ca.leaf_with(&["case.test"], p256, now - 90 * 86_400, now - 86_400)
                        .cert_pem,
                ),
                String::new(),
                "8:1",
                "has expired",
            ),
            (
                "not valid yet",
                Some(
                    ca.leaf_with(&["case.test"], p256, now + 86_400, now + 90 * 86_400)
                        .cert_pem,
                ),
                String::new(),
                "8:1",
                "is not valid yet",
            ),
            (
                "mismatched key",
                Some(good.cert_pem.clone()),
                other.key_pem.clone(),
                "9:1",
                "does not match certificate",
            ),
            (
                "no PEM in the key",
                Some(good.cert_pem.clone()),
                good.cert_pem.clone(),
                "9:1",
                "holds no PEM private key",
            ),
        ];
        for (what, cert, key, at, message) in cases {
            let dir = temp_dir("check");
            write_leaf(&dir, "good", &good);
            // The expired and not-yet-valid leaves are judged before their key: any key will do.
            let key = if key.is_empty() { good.key_pem.clone() } else { key };
            if let Some(cert) = cert {
                std::fs::write(dir.join("case.pem"), cert).expect("write cert");
            }
            std::fs::write(dir.join("case.key"), key).expect("write key");
            let path = dir.join("ringway.toml");
            std::fs::write(&path, TEXT).expect("write config");
            let (code, stderr) = check(&path).await;
            assert_eq!(code, Some(1), "{what}: {stderr}");
            let expected = format!("{}:{at}: ", path.display());
            let line = stderr
                .lines()
                .find(|l| l.contains(message))
                .unwrap_or_else(|| panic!("{what}: no `{message}` in {stderr}"));
            assert!(line.starts_with(&expected), "{what}: {line}");
            assert!(
                line.contains("case."),
                "{what}: the message names the file: {line}"
            );
            // One error: the good pair is not reported.
            assert_eq!(
                stderr.lines().filter(|l| l.contains(": ")).count(),
                1,
                "{what}: {stderr}"
            );
            let _ = std::fs::remove_dir_all(dir);
        }
    })
    .await
}

#[tokio::test]
async fn check_warns_of_a_certificate_expiring_soon_and_reports_inline_keys() {
    bounded(async {
        let ca = TestCa::new();
        let now = unix_now();
        let dir = temp_dir("expiring");
        write_leaf(&dir, "good", &ca.leaf(&["good.test"]));
        let soon = ca.leaf_with(&["case.test"], &rcgen::PKCS_ECDSA_P256_SHA256, now - 86_400, now + 7 * 86_400 - 3_600);
        write_leaf(&dir, "case", &soon);
        let path = dir.join("ringway.toml");
        std::fs::write(&path, TEXT).expect("write config");
        let (code, stderr) = check(&path).await;
        assert_eq!(code, Some(0), "{stderr}");
        let warning = format!("{}:8:1: warning: certificate ", path.display());
        assert!(stderr.contains(&warning) && stderr.contains("expires in 6 days"), "{stderr}");

        // The inline form: the column of `key` inside `tls = { ... }`.
        let other = ca.leaf(&["other.test"]);
        std::fs::write(dir.join("case.key"), other.key_pem).expect("write key");
        let inline = "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\
                      tls = { cert = \"case.pem\", key = \"case.key\" }\n\n\
                      [[route]]\nname = \"all\"\npool = \"app\"\n\n[pool.app]\nservers = [\"127.0.0.1:9001\"]\n";
        std::fs::write(&path, inline).expect("write config");
        let (code, stderr) = check(&path).await;
        assert_eq!(code, Some(1), "{stderr}");
        let col = inline.lines().nth(3).and_then(|l| l.find("key")).expect("key column") + 1;
        let expected = format!("{}:4:{col}: private key ", path.display());
        assert!(stderr.contains(&expected) && stderr.contains("does not match"), "{stderr}");
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

#[tokio::test]
async fn proxy_serves_tls_with_cert_and_key_flags() {
    bounded(async {
        let backend = Backend::start("b").await;
        let ca = TestCa::new();
        let dir = temp_dir("proxycmd");
        let pair = write_leaf(&dir, "site", &ca.leaf(&["localhost"]));

        // Both or neither.
        let out = tokio::process::Command::new(BIN)
            .args([
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--to",
                &backend.address(),
                "--cert",
            ])
            .arg(&pair.cert)
            .output()
            .await
            .expect("run ringway proxy");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--key"), "{out:?}");

        // A key that is not the certificate's: refused before serving.
        let other = write_leaf(&dir, "other", &ca.leaf(&["localhost"]));
        let out = tokio::process::Command::new(BIN)
            .args([
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--to",
                &backend.address(),
                "--cert",
            ])
            .arg(&pair.cert)
            .arg("--key")
            .arg(&other.key)
            .output()
            .await
            .expect("run ringway proxy");
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("does not match"),
            "{out:?}"
        );

        // As the benchmark harness runs it.
        let mut child = ringway_command()
            .args([
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--threads",
                "1",
                "--backends",
                &backend.address(),
            ])
            .arg("--cert")
            .arg(&pair.cert)
            .arg("--key")
            .arg(&pair.key)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ringway proxy");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = loop {
            let line = lines
                .next_line()
                .await
                .expect("read log")
                .expect("a listener line");
            if let Some(a) = address_after(&line, "listener `proxy` on https://") {
                break a;
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr: std::net::SocketAddr = addr.parse().expect("address");
        let client = https_client(&ca, addr, &["localhost"], true);
        let reply = send(client.get(format!("https://localhost:{}/", addr.port()))).await;
        assert_eq!(reply.backend(), "b");
        terminate_gracefully(&mut child).await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}
