//! Reloads change the listeners of the running engine: added ones answer, removed ones refuse
//! new connections while theirs finish, moved ones answer on the new address only, kept ones
//! keep their sockets and take new settings for new connections; an address another owner
//! holds refuses the reload (and a second engine) whole.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::common::*;
use ringway::config::{Balance, Config, RedirectHttps};
use ringway::proxy::Engine;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Worker threads of the engines here: more than one, as each has its own sockets.
const WORKERS: usize = 2;

fn loopback0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// `one_pool` with its listeners replaced by `listeners` (name, address).
fn config_with(backend: &Backend, listeners: &[(&str, SocketAddr)]) -> Config {
    let mut c = one_pool(Balance::RoundRobin, &[backend.address()]);
    c.listeners = listeners
        .iter()
        .map(|(name, addr)| ringway::cli::listener(name, *addr))
        .collect();
    c
}

/// An engine with [`WORKERS`] workers, stopped when dropped.
struct Running(Arc<Engine>);

impl Running {
    fn start(config: Config) -> Running {
        Running(Arc::new(
            Engine::start(config, Some(WORKERS), None).unwrap_or_else(|e| panic!("engine start: {e}")),
        ))
    }

    fn addr(&self, listener: &str) -> SocketAddr {
        self.0
            .listener_addr(listener)
            .unwrap_or_else(|| panic!("no listener `{listener}`"))
    }

    /// Reloads off the async runtime (a reload waits for the workers to confirm).
    async fn reload(&self, config: Config) -> Result<ringway::proxy::ReloadSummary, Vec<String>> {
        let engine = self.0.clone();
        tokio::task::spawn_blocking(move || engine.reload(config, "test"))
            .await
            .expect("reload task")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

const GET: &[u8] = b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n";

/// One request on a new connection: its status.
async fn get_status(addr: SocketAddr) -> u16 {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(GET).await.expect("write");
    read_response(&mut s).await.0
}

/// Whether a connection to `addr` is refused.
async fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect(addr).await {
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

#[tokio::test]
async fn a_reload_adds_a_listener_and_removes_another_whose_connections_finish() {
    bounded(async {
        let backend = Backend::start("b").await;
        let engine = Running::start(config_with(&backend, &[("old", loopback0())]));
        let old = engine.addr("old");
        assert_eq!(get_status(old).await, 200);

        // A keep-alive connection on `old` with a request in flight across the reload.
        let mut kept = TcpStream::connect(old).await.expect("connect");
        let local = kept.local_addr().expect("local address");
        backend.hold();
        kept.write_all(GET).await.expect("write");
        backend.wait_requests(2).await;

        let summary = engine
            .reload(config_with(&backend, &[("new", loopback0())]))
            .await
            .expect("reload");
        let new = engine.addr("new");
        assert_eq!(summary.listeners.added.len(), 1, "{summary:?}");
        assert_eq!(summary.listeners.added[0].bind, new);
        assert_eq!(summary.listeners.removed[0].name, "old");
        assert_eq!(summary.listeners.removed[0].bind, old);
        assert!(summary.notes.is_empty(), "{summary:?}");
        let status = engine.0.listener_status();
        assert_eq!(status.len(), 1);
        assert_eq!((status[0].name.as_str(), status[0].bind), ("new", new));

        // The old address refuses new connections at once; the new one answers.
        assert!(refused(old).await, "the removed listener still accepts");
        backend.release();
        assert_eq!(get_status(new).await, 200);
        // The request in flight on the old listener finishes, and the connection serves on.
        assert_eq!(read_response(&mut kept).await.0, 200);
        kept.write_all(GET).await.expect("write");
        assert_eq!(read_response(&mut kept).await.0, 200);
        assert_eq!(kept.local_addr().expect("local address"), local);
        // Its open connection still counts, under the listener's old name no more shown.
        assert!(
            engine
                .0
                .shared
                .open_connections
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 1
        );
    })
    .await
}

#[tokio::test]
async fn a_reload_moves_a_listener_to_its_new_address() {
    bounded(async {
        let backend = Backend::start("b").await;
        let engine = Running::start(config_with(&backend, &[("main", loopback0())]));
        let before = engine.addr("main");
        let target: SocketAddr = dead_addr().parse().expect("address");
        let summary = engine
            .reload(config_with(&backend, &[("main", target)]))
            .await
            .expect("reload");
        assert_eq!(summary.listeners.rebound.len(), 1, "{summary:?}");
        assert_eq!(
            (summary.listeners.rebound[0].from, summary.listeners.rebound[0].to),
            (before, target)
        );
        assert_eq!(engine.addr("main"), target);
        assert_eq!(get_status(target).await, 200);
        assert!(refused(before).await, "the old address still accepts");
    })
    .await
}

#[tokio::test]
async fn a_kept_listener_keeps_its_socket_and_new_connections_take_its_new_settings() {
    bounded(async {
        let backend = Backend::start("b").await;
        let mut config = config_with(&backend, &[("main", loopback0())]);
        let engine = Running::start(config.clone());
        let addr = engine.addr("main");
        let mut open = TcpStream::connect(addr).await.expect("connect");
        open.write_all(GET).await.expect("write");
        assert_eq!(read_response(&mut open).await.0, 200);

        // The written address is still port 0: the listener is the same one.
        config.listeners[0].redirect_https = Some(RedirectHttps {
            port: 8443,
            status: 308,
        });
        let summary = engine.reload(config.clone()).await.expect("reload");
        assert_eq!(summary.listeners.changed, ["main"], "{summary:?}");
        assert!(summary.listeners.added.is_empty() && summary.listeners.rebound.is_empty());
        assert!(
            summary.notes.iter().any(|n| n.contains("keep the settings")),
            "{summary:?}"
        );
        assert_eq!(engine.addr("main"), addr);
        // New connections redirect; the connection opened before keeps its settings.
        assert_eq!(get_status(addr).await, 308);
        open.write_all(GET).await.expect("write");
        assert_eq!(read_response(&mut open).await.0, 200);

        // The port it got, written back into the file: still the same listener, no change.
        config.listeners[0].bind = addr;
        config.listeners[0].redirect_https = None;
        let summary = engine.reload(config).await.expect("reload");
        assert_eq!(summary.listeners.changed, ["main"], "{summary:?}");
        assert_eq!(get_status(addr).await, 200);
    })
    .await
}

#[tokio::test]
async fn an_address_in_use_refuses_the_reload_whole() {
    bounded(async {
        let old_backend = Backend::start("old").await;
        let new_backend = Backend::start("new").await;
        let engine = Running::start(config_with(&old_backend, &[("main", loopback0())]));
        let main = engine.addr("main");
        // Another owner of an address (a plain socket, as another program would have).
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken_addr = taken.local_addr().expect("address");
        let errors = engine
            .reload(config_with(
                &new_backend,
                &[("main", loopback0()), ("extra", taken_addr)],
            ))
            .await
            .expect_err("the reload must be refused");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("address already in use"), "{errors:?}");
        assert!(errors[0].contains("extra"), "{errors:?}");
        // Nothing of the new configuration applies: the old pool answers, no listener was added.
        let client = client();
        let r = send(client.get(format!("http://{main}/x"))).await;
        assert_eq!(r.backend(), "old");
        assert_eq!(engine.0.listener_status().len(), 1);
    })
    .await
}

#[tokio::test]
async fn a_second_engine_on_a_served_address_is_refused() {
    bounded(async {
        let backend = Backend::start("b").await;
        let first = Running::start(config_with(&backend, &[("main", loopback0())]));
        let addr = first.addr("main");
        let err = Engine::start(config_with(&backend, &[("main", addr)]), Some(WORKERS), None)
            .expect_err("the address is served already");
        let text = err.to_string();
        assert!(text.contains("address already in use"), "{text}");
        assert!(text.contains(&addr.to_string()), "{text}");
        // The first one is untouched and every request reaches it.
        for _ in 0..10 {
            assert_eq!(get_status(addr).await, 200);
        }
    })
    .await
}

#[tokio::test]
async fn what_a_reload_cannot_apply_is_said() {
    bounded(async {
        let backend = Backend::start("b").await;
        let config = config_with(&backend, &[("main", loopback0())]);
        let engine = Running::start(config.clone());
        let mut changed = config.clone();
        changed.admin.listen = SocketAddr::from(([127, 0, 0, 1], 9999));
        changed.workers = ringway::config::Workers::Fixed(7);
        let summary = engine.reload(changed).await.expect("reload");
        assert_eq!(summary.notes.len(), 2, "{summary:?}");
        assert!(summary.notes[0].contains("[admin] listen changed from 127.0.0.1:9090 to 127.0.0.1:9999"));
        assert!(summary.notes[1].contains("`workers` changed from 1 to 7"));
        assert!(
            summary.to_string().contains("not applied: [admin] listen"),
            "{summary}"
        );
        // Back to what runs: nothing left out.
        let summary = engine.reload(config).await.expect("reload");
        assert!(
            summary.listeners.is_empty() && summary.notes.is_empty(),
            "{summary:?}"
        );
    })
    .await
}
