//! `[cluster]` (every key, valid and not), `load_text` and the summary line of cluster mode.

use std::path::Path;

use super::*;

/// MINIMAL with `[cluster]` on line 12 and `body` from line 13.
fn cluster(body: &str) -> String {
    format!("{MINIMAL}[cluster]\n{body}")
}

/// The two required keys; `rest` starts on line 15.
fn required(rest: &str) -> String {
    cluster(&format!(
        "etcd = [\"http://127.0.0.1:2379\"]\nprefix = \"/ringway/prod\"\n{rest}"
    ))
}

fn parsed(src: &str) -> ClusterConfig {
    ok(src).cluster.expect("[cluster]")
}

#[test]
fn no_section_is_standalone() {
    assert_eq!(ok(MINIMAL).cluster, None);
}

#[test]
fn defaults_of_the_required_keys() {
    assert_eq!(
        parsed(&required("")),
        ClusterConfig {
            etcd: vec!["http://127.0.0.1:2379".into()],
            prefix: "/ringway/prod".into(),
            name: None,
            cache: None,
            timeout: Duration::from_secs(2),
            tls: None,
            user: None,
            password_env: None,
        }
    );
}

#[test]
fn every_key_parses() {
    let c = parsed(&cluster(
        r#"etcd = ["https://10.0.0.5:2379", "HTTPS://etcd-2.internal:2379/", "https://[fd00::7]:2379"]
prefix = "/ringway/prod-eu.1_a"
name = "edge-1"
cache = "state/edge-1.json"
timeout = "750ms"
ca = "etcd-ca.pem"
cert = "client.pem"
key = "client-key.pem"
user = "ringway"
password_env = "ETCD_PW"
"#,
    ));
    assert_eq!(
        c,
        ClusterConfig {
            etcd: vec![
                "https://10.0.0.5:2379".into(),
                // The scheme lower-cased, the trailing slash dropped.
                "https://etcd-2.internal:2379".into(),
                "https://[fd00::7]:2379".into(),
            ],
            prefix: "/ringway/prod-eu.1_a".into(),
            name: Some("edge-1".into()),
            cache: Some("state/edge-1.json".into()),
            timeout: Duration::from_millis(750),
            tls: Some(ClusterTls {
                ca: Some("etcd-ca.pem".into()),
                client: Some(CertPair {
                    cert: "client.pem".into(),
                    key: "client-key.pem".into(),
                }),
            }),
            user: Some("ringway".into()),
            password_env: Some("ETCD_PW".into()),
        }
    );
    assert_eq!(c.instance_name("host-a"), "edge-1");
    assert_eq!(
        c.cache_file("edge-1", Path::new("/etc/ringway")),
        PathBuf::from("state/edge-1.json")
    );

    // Without `name` and `cache`: the host name, and the cache beside the config file.
    let c = parsed(&required(""));
    assert_eq!(c.instance_name("host-a"), "host-a");
    assert_eq!(
        c.cache_file("host-a", Path::new("/etc/ringway")),
        PathBuf::from("/etc/ringway/host-a.cluster-cache.json")
    );

    // `user` alone gets the default password variable; https without `ca` has no TLS settings
    // (the system's roots); a CA alone is TLS without a client certificate.
    let c = parsed(&required("user = \"ringway\"\n"));
    assert_eq!(c.password_env.as_deref(), Some("RINGWAY_ETCD_PASSWORD"));
    let https = |rest: &str| {
        cluster(&format!(
            "etcd = [\"https://127.0.0.1:2379\"]\nprefix = \"/p\"\n{rest}"
        ))
    };
    assert_eq!(parsed(&https("")).tls, None);
    assert_eq!(
        parsed(&https("ca = \"ca.pem\"\n")).tls,
        Some(ClusterTls {
            ca: Some("ca.pem".into()),
            client: None
        })
    );
    // Mixed schemes without TLS settings are the etcd client's business, not an error.
    assert_eq!(
        parsed(&cluster(
            "etcd = [\"http://a:2379\", \"https://b:2379\"]\nprefix = \"/p\"\n"
        ))
        .etcd
        .len(),
        2
    );
    // The boundaries of `timeout`.
    assert_eq!(
        parsed(&required("timeout = \"100ms\"\n")).timeout,
        Duration::from_millis(100)
    );
    assert_eq!(
        parsed(&required("timeout = \"1m\"\n")).timeout,
        Duration::from_secs(60)
    );
}

#[test]
fn bad_endpoints() {
    let etcd = |list: &str| cluster(&format!("etcd = {list}\nprefix = \"/p\"\n"));
    one_err(
        &etcd(r#"["ftp://127.0.0.1:2379"]"#),
        "13:9: etcd endpoint \"ftp://127.0.0.1:2379\": the scheme must be http:// or https://, not ftp://",
    );
    one_err(
        &etcd(r#"["127.0.0.1:2379"]"#),
        "13:9: etcd endpoint \"127.0.0.1:2379\" has no scheme; write \"http://127.0.0.1:2379\"",
    );
    one_err(
        &etcd(r#"["http://etcd-1"]"#),
        "13:9: etcd endpoint \"http://etcd-1\" has no port; write e.g. \"http://etcd-1:2379\"",
    );
    one_err(
        &etcd(r#"["http://[::1]"]"#),
        "13:9: etcd endpoint \"http://[::1]\" has no port",
    );
    one_err(
        &etcd(r#"["http://etcd-1:2379/v3"]"#),
        "13:9: etcd endpoint \"http://etcd-1:2379/v3\": nothing may follow host:port, found \"/v3\"",
    );
    one_err(
        &etcd(r#"["http://etcd-1:2379//"]"#),
        "13:9: etcd endpoint \"http://etcd-1:2379//\": nothing may follow host:port, found \"/\"",
    );
    one_err(
        &etcd(r#"["http://etcd-1:2379?x=1"]"#),
        "13:9: etcd endpoint \"http://etcd-1:2379?x=1\": nothing may follow host:port",
    );
    one_err(
        &etcd(r#"["http://root@etcd-1:2379"]"#),
        "13:9: etcd endpoint \"http://root@etcd-1:2379\": a user in the URL is not read",
    );
    one_err(
        &etcd(r#"["http://etcd-1:99999"]"#),
        "13:9: etcd endpoint \"http://etcd-1:99999\": invalid address \"etcd-1:99999\": port `99999`",
    );
    one_err(
        &etcd(r#"["http://etcd 1:2379"]"#),
        "13:9: etcd endpoint \"http://etcd 1:2379\": invalid address",
    );
    one_err(&etcd("[]"), "13:8: `etcd` must list at least one endpoint");
    one_err(
        &etcd("[2379]"),
        "13:9: `etcd`: expected a string, found an integer",
    );
    one_err(
        &etcd(r#""http://127.0.0.1:2379""#),
        "13:8: `etcd`: expected an array, found a string",
    );
    one_err(
        &etcd(r#"["http://a:2379", "HTTP://a:2379/"]"#),
        "13:26: etcd endpoint \"HTTP://a:2379/\" is listed twice",
    );
    // Every bad endpoint is reported, each at its own column.
    assert_eq!(
        errs(&etcd(r#"["ftp://a:1", "http://b:2379", "http://c"]"#)),
        vec![
            "13:9: etcd endpoint \"ftp://a:1\": the scheme must be http:// or https://, not ftp://"
                .to_string(),
            "13:39: etcd endpoint \"http://c\" has no port; write e.g. \"http://c:2379\"".to_string(),
        ]
    );
}

#[test]
fn bad_prefixes() {
    let prefix = |p: &str| cluster(&format!("etcd = [\"http://a:2379\"]\nprefix = {p}\n"));
    one_err(
        &prefix(r#""ringway/prod""#),
        "14:10: `prefix`: \"ringway/prod\" must start with `/`, e.g. \"/ringway/prod\"",
    );
    one_err(
        &prefix(r#""/ringway/prod/""#),
        "14:10: `prefix`: \"/ringway/prod/\" must not end with `/`; write \"/ringway/prod\"",
    );
    one_err(
        &prefix(r#""/ringway//prod""#),
        "14:10: `prefix`: \"/ringway//prod\" has an empty segment (`//`)",
    );
    one_err(
        &prefix(r#""/ringway/pr od""#),
        "14:10: `prefix`: \"/ringway/pr od\": segment \"pr od\" holds ' '; segments are letters, digits",
    );
    one_err(
        &prefix(r#""/ringway/prod%2F""#),
        "14:10: `prefix`: \"/ringway/prod%2F\": segment \"prod%2F\" holds '%'",
    );
    one_err(
        &prefix(r#""/ringway/prød""#),
        "14:10: `prefix`: \"/ringway/prød\": segment \"prød\" holds 'ø'",
    );
    one_err(
        &prefix(r#""/""#),
        "14:10: `prefix`: \"/\" would put the fleet's keys at the root of etcd",
    );
    one_err(&prefix(r#""""#), "14:10: `prefix`: \"\" must start with `/`");
    one_err(
        &prefix("1"),
        "14:10: `prefix`: expected a string, found an integer",
    );
}

#[test]
fn required_keys() {
    one_err(
        &cluster("prefix = \"/p\"\n"),
        "12:1: [cluster] has no `etcd`; it is required",
    );
    one_err(
        &cluster("etcd = [\"http://a:2379\"]\n"),
        "12:1: [cluster] has no `prefix`; it is required",
    );
    assert_eq!(
        errs(&cluster("")),
        vec![
            "12:1: [cluster] has no `etcd`; it is required".to_string(),
            "12:1: [cluster] has no `prefix`; it is required".to_string(),
        ]
    );
    one_err(
        &format!("cluster = 1\n{MINIMAL}"),
        "1:11: `cluster`: expected a table, found an integer",
    );
}

#[test]
fn bad_names_timeouts_and_caches() {
    one_err(
        &required("name = \"edge 1\"\n"),
        "15:8: `name` \"edge 1\" must be non-empty, at most 128 characters, without `/`",
    );
    one_err(&required("name = \"edge/1\"\n"), "15:8: `name` \"edge/1\"");
    one_err(&required("name = \"\"\n"), "15:8: `name` \"\"");
    one_err(
        &required(&format!("name = \"{}\"\n", "e".repeat(129))),
        "15:8: `name`",
    );
    one_err(&required("name = 1\n"), "15:8: `name`: expected a string");
    one_err(
        &required("timeout = \"50ms\"\n"),
        "15:11: `timeout` must be between 100ms and 60s, found 50ms",
    );
    one_err(
        &required("timeout = \"61s\"\n"),
        "15:11: `timeout` must be between 100ms and 60s, found 1m 1s",
    );
    one_err(
        &required("timeout = \"0s\"\n"),
        "15:11: `timeout` must be between 100ms and 60s, found 0s",
    );
    one_err(
        &required("timeout = \"soon\"\n"),
        "15:11: `timeout`: invalid duration \"soon\"",
    );
    one_err(
        &required("timeout = 2\n"),
        "15:11: `timeout`: expected a duration string",
    );
    one_err(&required("cache = \"\"\n"), "15:9: `cache` must not be empty");
    one_err(&required("cache = true\n"), "15:9: `cache`: expected a string");
}

#[test]
fn tls_keys() {
    let https = |rest: &str| cluster(&format!("etcd = [\"https://a:2379\"]\nprefix = \"/p\"\n{rest}"));
    one_err(
        &https("cert = \"client.pem\"\n"),
        "15:1: `cert` needs `key` (the client certificate's private key) in [cluster]",
    );
    one_err(
        &https("key = \"client-key.pem\"\n"),
        "15:1: `key` needs `cert` (the client certificate it belongs to) in [cluster]",
    );
    one_err(&https("ca = \"\"\n"), "15:6: `ca` must not be empty");
    one_err(&https("ca = 1\n"), "15:6: `ca`: expected a string");
    // TLS settings with an http:// endpoint: reported at every such endpoint.
    assert_eq!(
        errs(&cluster(
            "etcd = [\"https://a:2379\", \"http://b:2379\", \"http://c:2379\"]\nprefix = \"/p\"\nca = \"ca.pem\"\n"
        )),
        vec![
            "13:27: etcd endpoint \"http://b:2379\" is not https://, but `ca` in [cluster] asks \
             for TLS to etcd, which is spoken to every endpoint or to none"
                .to_string(),
            "13:44: etcd endpoint \"http://c:2379\" is not https://, but `ca` in [cluster] asks \
             for TLS to etcd, which is spoken to every endpoint or to none"
                .to_string(),
        ]
    );
    one_err(
        &required("cert = \"c.pem\"\nkey = \"k.pem\"\n"),
        "13:9: etcd endpoint \"http://127.0.0.1:2379\" is not https://, but `cert` in [cluster]",
    );
}

#[test]
fn user_and_password_env() {
    one_err(&required("user = \"\"\n"), "15:8: `user` must not be empty");
    one_err(
        &required("password_env = \"ETCD_PW\"\n"),
        "15:1: `password_env` has no use without `user`",
    );
    one_err(
        &required("user = \"r\"\npassword_env = \"1PW\"\n"),
        "16:16: `password_env` must name an environment variable (letters, digits, `_`; not \
         starting with a digit), found \"1PW\"",
    );
    one_err(
        &required("user = \"r\"\npassword_env = \"ETCD-PW\"\n"),
        "16:16: `password_env` must name an environment variable",
    );
}

#[test]
fn unknown_keys() {
    one_err(
        &required("etcd_endpoints = [\"http://a:2379\"]\n"),
        "15:1: unknown key `etcd_endpoints` in [cluster]",
    );
    one_err(
        &required("tiemout = \"1s\"\n"),
        "15:1: unknown key `tiemout` in [cluster]; did you mean `timeout`?",
    );
    one_err(
        &required("password = \"secret\"\n"),
        "15:1: unknown key `password` in [cluster]",
    );
}

#[test]
fn every_error_of_the_section_at_once() {
    let es = errs(&cluster(
        "etcd = [\"ftp://a:1\"]\nprefix = \"p/\"\nname = \"a b\"\ntimeout = \"1h\"\ncert = \"c.pem\"\nsize = 1\n",
    ));
    let at: Vec<&str> = es.iter().map(|e| e.split(": ").next().unwrap_or("")).collect();
    assert_eq!(at, ["13:9", "14:10", "15:8", "16:11", "17:1", "18:1"], "{es:#?}");
}

/// A scratch directory of its own for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringway-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir: {e}"));
    dir
}

fn messages(r: Result<(Config, Vec<ConfigError>), Vec<ConfigError>>) -> Vec<String> {
    r.err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn load_text_anchors_and_checks_at_base() {
    let dir = scratch("load-text");
    let src = format!(
        "[log]\naccess = \"logs/access.log\"\n{}[cluster]\netcd = [\"https://127.0.0.1:2379\"]\n\
         prefix = \"/p\"\ncache = \"state/c.json\"\nca = \"ca.pem\"\ncert = \"client.pem\"\nkey = \"client.key\"\n",
        MINIMAL.replace("pool = \"app\"", "static_dir = \"public\"")
    );
    // Lines: [log] 1-2, MINIMAL 3-13 (static_dir on 10), [cluster] 14, ca 18, cert 19, key 20.
    let es = messages(load_text(&src, "published.toml", &dir));
    let shown = dir.display();
    assert_eq!(
        es,
        vec![
            format!(
                "published.toml:2:1: access log {shown}/logs/access.log: directory {shown}/logs does not exist"
            ),
            format!("published.toml:10:1: static_dir {shown}/public does not exist"),
            format!(
                "published.toml:18:1: etcd CA certificate file {shown}/ca.pem cannot be read: No such file or directory (os error 2)"
            ),
            format!(
                "published.toml:19:1: etcd client certificate {shown}/client.pem cannot be read: No such file or directory (os error 2)"
            ),
            format!(
                "published.toml:20:1: etcd client private key {shown}/client.key cannot be read: No such file or directory (os error 2)"
            ),
        ]
    );

    // Everything in place: the paths come back anchored at `base`, the cache unchecked.
    for d in ["logs", "public"] {
        std::fs::create_dir_all(dir.join(d)).unwrap_or_else(|e| panic!("mkdir: {e}"));
    }
    let client = rcgen::generate_simple_self_signed(vec!["edge-1".to_string()])
        .unwrap_or_else(|e| panic!("certificate: {e}"));
    let other = rcgen::generate_simple_self_signed(vec!["other".to_string()])
        .unwrap_or_else(|e| panic!("certificate: {e}"));
    for (f, text) in [
        ("ca.pem", client.cert.pem()),
        ("client.pem", client.cert.pem()),
        ("client.key", client.signing_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(f), text).unwrap_or_else(|e| panic!("write: {e}"));
    }
    let (c, warnings) = load_text(&src, "published.toml", &dir).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    let cl = c.cluster.clone().expect("[cluster]");
    assert_eq!(cl.cache, Some(dir.join("state/c.json")));
    assert_eq!(
        cl.tls,
        Some(ClusterTls {
            ca: Some(dir.join("ca.pem")),
            client: Some(CertPair {
                cert: dir.join("client.pem"),
                key: dir.join("client.key"),
            }),
        })
    );
    assert_eq!(c.log.access, AccessLogTarget::File(dir.join("logs/access.log")));

    // `load_with_warnings` of the same text in a file is `load_text` at the file's directory.
    let file = dir.join("ringway.toml");
    std::fs::write(&file, &src).unwrap_or_else(|e| panic!("write: {e}"));
    let (from_file, _) = load_with_warnings(&file).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(from_file, c);
    assert_eq!(read(&file).unwrap_or_else(|e| panic!("{e:?}")), c);

    // The client pair is judged as a listener's: a key that is not the certificate's own.
    std::fs::write(dir.join("client.key"), other.signing_key.serialize_pem())
        .unwrap_or_else(|e| panic!("write: {e}"));
    let es = messages(load_text(&src, "published.toml", &dir));
    assert_eq!(es.len(), 1, "{es:#?}");
    assert!(
        es[0].starts_with(&format!(
            "published.toml:20:1: private key {shown}/client.key does not match certificate {shown}/client.pem"
        )),
        "{es:#?}"
    );
    // Absolute paths stay, relative ones follow `base`.
    let elsewhere = scratch("load-text-elsewhere");
    let es = messages(load_text(
        &src.replace("ca.pem", &dir.join("ca.pem").display().to_string()),
        "published.toml",
        &elsewhere,
    ));
    assert!(es.iter().all(|e| !e.contains("ca.pem")), "{es:#?}");
    assert!(
        es.iter()
            .any(|e| e.contains(&format!("{}/client.pem", elsewhere.display()))),
        "{es:#?}"
    );
    // Errors of the text itself name `file_name` with line and column; `${NAME}` comes from
    // the process environment, where this one is not set.
    let es = messages(load_text(
        &MINIMAL.replace("0.0.0.0:8080", "0.0.0.0:${RINGWAY_TEST_SURELY_UNSET_7F3A}"),
        "published.toml",
        &dir,
    ));
    assert_eq!(
        es,
        vec![
            "published.toml:4:8: `bind`: environment variable RINGWAY_TEST_SURELY_UNSET_7F3A is \
             not set (`${RINGWAY_TEST_SURELY_UNSET_7F3A}` in \"0.0.0.0:${RINGWAY_TEST_SURELY_UNSET_7F3A}\")"
                .to_string()
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&elsewhere);
}

#[test]
fn summary_mentions_cluster_mode() {
    let s = summary(&ok(&cluster(
        "etcd = [\"http://a:2379\", \"http://b:2379\", \"http://c:2379\"]\nprefix = \"/ringway/prod\"\nname = \"edge-1\"\n",
    )));
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(
        lines[1],
        "  cluster: 3 etcd endpoints, prefix /ringway/prod, name edge-1, timeout 2s"
    );
    let s = summary(&ok(&cluster(
        "etcd = [\"https://a:2379\"]\nprefix = \"/p\"\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\nuser = \"rw\"\ntimeout = \"500ms\"\n",
    )));
    assert_eq!(
        s.lines().nth(1),
        Some(
            "  cluster: 1 etcd endpoint, prefix /p, name (the host name), TLS with a client \
             certificate, user rw, timeout 500ms"
        )
    );
    assert!(!summary(&ok(MINIMAL)).contains("cluster"));
}
