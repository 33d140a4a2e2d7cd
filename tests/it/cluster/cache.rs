//! The cache file against crashes: an instance killed in the middle of a cache write starts
//! again from a whole cache file while etcd is out of its reach.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use serde_json::json;

use super::*;

/// The cache file survives crashes in the middle of its writes: while changes stream in
/// through A and B (C rewrites its cache after each), C is killed (SIGKILL) the moment a file
/// other than its config, log and cache appears in its directory (the temporary file of a
/// cache write), until that file was still there after the kill at least twice (a crash in the
/// middle of a write; up to 20 tries); each time the cache file is whole, and C, started again
/// cut off from etcd, starts from it and serves, then catches up once etcd is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn cache_file_survives_crashes_during_its_writes() {
    bounded_for(CLUSTER_TEST, async {
        let mut fleet = Fleet::start().await;
        let n1 = Upstream::start("n1").await;
        let rev = publish_ok(&fleet, "published.toml", &fleet.config_text(0, &new_route(&n1))).await;
        fleet
            .wait_cluster(&[0, 1, 2], CONVERGE_WITHIN, |v| v["config"]["revision"] == rev)
            .await;
        let home = fleet.home(2);
        let cache = fleet.cache_file(2);
        let (mut tries, mut mid_write) = (0u64, 0);
        while mid_write < 2 && tries < 20 {
            tries += 1;
            wait_for(
                Duration::from_secs(5),
                "no temporary file left in C's directory",
                async || match foreign_files(&home) {
                    f if f.is_empty() => Ok(()),
                    f => Err(format!("{f:?}")),
                },
            )
            .await;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let (seen, seen_stop) = temporary_file_seen(home.clone());
            let (ab, c) = fleet.inst.split_at_mut(2);
            let killer = async {
                let found = tokio::time::timeout(Duration::from_secs(3), seen).await;
                c[0].kill().await;
                stop.send_replace(true);
                seen_stop.store(true, SeqCst);
                found.is_ok()
            };
            let (s2, s3, found) = tokio::join!(
                weights_until(&ab[0], "s2", tries, stopped.clone()),
                weights_until(&ab[1], "s3", tries, stopped),
                killer
            );
            assert!(found, "no cache write seen in C's directory within 3 s");
            let leftovers = foreign_files(&home);
            mid_write += usize::from(!leftovers.is_empty());

            let text = std::fs::read_to_string(&cache).unwrap_or_else(|e| panic!("try {tries}: {e}"));
            let doc: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("try {tries}: the cache is not whole ({e}): {text}"));
            assert_eq!(doc["version"], 1, "try {tries}: {doc}");
            fleet.set_relays(&[2], RelayMode::Refuse);
            fleet.inst[2].spawn().await;
            let c = fleet.c();
            let v = c.cluster().await;
            assert_eq!(
                v["config"]["source"], "cache",
                "try {tries} (left {leftovers:?}): {v}"
            );
            assert_eq!(v["config"]["revision"], rev, "try {tries}: {v}");
            let r = c.get("/new/x").await;
            assert_eq!((r.status, r.backend()), (200, "n1"), "try {tries}: C serves");

            fleet.set_relays(&[2], RelayMode::Pass);
            fleet
                .wait_server(&[2], "p", "s2", CONVERGE_WITHIN, |st, v| {
                    st == 200 && v["weight"] == s2
                })
                .await;
            fleet
                .wait_server(&[2], "p", "s3", CONVERGE_WITHIN, |st, v| {
                    st == 200 && v["weight"] == s3
                })
                .await;
        }
        println!("cache: {mid_write} of {tries} kills landed in the middle of a cache write");
        assert!(
            mid_write >= 1,
            "no kill landed in the middle of a cache write in {tries} tries"
        );
    })
    .await
}

/// PATCHes the weight of `server` through `inst` without pause until `stop`; the last weight.
async fn weights_until(
    inst: &Instance,
    server: &str,
    round: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let mut last = 0;
    for n in 0u64.. {
        if *stop.borrow() {
            break;
        }
        last = 2 + (round * 37 + n) % 250;
        let r = inst.patch_server("p", server, json!({"weight": last})).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    last
}

/// Files in instance C's directory other than its config, log and cache file.
fn foreign_files(home: &Path) -> Vec<String> {
    const KNOWN: [&str; 3] = ["c.toml", "c.stderr", "c.cluster-cache.json"];
    std::fs::read_dir(home)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !KNOWN.contains(&n.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

/// A thread that watches `home` without pause and fires the moment a foreign file appears (a
/// cache write's temporary file lives for well under a millisecond); it ends when it fires or
/// when the flag is set.
fn temporary_file_seen(home: PathBuf) -> (tokio::sync::oneshot::Receiver<()>, Arc<AtomicBool>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !flag.load(SeqCst) {
            if !foreign_files(&home).is_empty() {
                let _ = tx.send(());
                return;
            }
            std::thread::yield_now();
        }
    });
    (rx, stop)
}
