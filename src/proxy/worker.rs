//! A worker thread: its single-threaded runtime, its accept loops and its graceful stop.
//!
//! Owns: the accept loops of one worker (one per listener, on the worker's own `SO_REUSEPORT`
//! socket), applying the batches of listener changes a reload sends (start, stop, new settings
//! for new connections), counting open connections, and waiting for them on shutdown. Must not
//! touch: how a connection is served (`server.rs`) or what a reload decides (`reload.rs`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::listeners::{Batch, Change};
use super::server::{ListenerCtx, Protocols, Shared, listener_ctx, serve_connection};
use super::tls::ServerTls;
use crate::config::ListenerConfig;

/// Runs a worker on the calling thread until shutdown; `commands` brings its listener changes
/// (the first batch opens its listeners).
pub(super) fn run(shared: Arc<Shared>, commands: mpsc::UnboundedReceiver<Batch>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("worker runtime: {e}");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, worker_main(shared, commands));
}

/// Per-worker count of open connections, to know when a graceful stop is complete.
pub(super) struct Tracker {
    open: Cell<usize>,
    idle: Notify,
}

/// What a listener's new connections get; replaced in place when a reload changes its settings.
struct Current {
    ctx: Rc<ListenerCtx>,
    protocols: Rc<Protocols>,
}

impl Current {
    fn new(config: &ListenerConfig, open: Arc<AtomicUsize>, tls: Option<Arc<ServerTls>>) -> Current {
        Current {
            protocols: Rc::new(Protocols::new(&config.limits)),
            ctx: Rc::new(listener_ctx(config, open, tls)),
        }
    }
}

/// One running accept loop of this worker.
struct AcceptLoop {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    current: Rc<RefCell<Current>>,
}

async fn worker_main(shared: Arc<Shared>, mut commands: mpsc::UnboundedReceiver<Batch>) {
    let tracker = Rc::new(Tracker {
        open: Cell::new(0),
        idle: Notify::new(),
    });
    tokio::task::spawn_local(async {
        let mut every = tokio::time::interval(super::upstream::IDLE_SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            super::upstream::sweep_idle();
        }
    });
    let mut loops: HashMap<u64, AcceptLoop> = HashMap::new();
    let mut rx = shared.shutdown.subscribe();
    let mut open_channel = true;
    while !*rx.borrow_and_update() {
        tokio::select! {
            batch = commands.recv(), if open_channel => match batch {
                Some(batch) => apply(batch, &mut loops, &shared, &tracker).await,
                // The engine is gone; serve on until shutdown.
                None => open_channel = false,
            },
            changed = rx.changed() => if changed.is_err() {
                break;
            },
        }
    }
    let grace = shared.snapshot.load().config.shutdown_grace;
    let deadline = Instant::now() + grace;
    while tracker.open.get() > 0 {
        // Waits on connections closing, bounded by the grace period.
        if tokio::time::timeout_at(deadline, tracker.idle.notified())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace over: closing {} connections", tracker.open.get());
            break;
        }
    }
}

/// Applies one batch of listener changes, in order; tells `done` once they are in effect (a
/// stopped listener's socket is closed by then).
async fn apply(
    batch: Batch,
    loops: &mut HashMap<u64, AcceptLoop>,
    shared: &Arc<Shared>,
    tracker: &Rc<Tracker>,
) {
    for change in batch.changes {
        match change {
            Change::Add {
                id,
                config,
                open,
                tls,
                socket,
            } => {
                let listener = match TcpListener::from_std(socket) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("listener `{}`: {e}", config.name);
                        continue;
                    }
                };
                let current = Rc::new(RefCell::new(Current::new(&config, open, tls)));
                let (stop, stopped) = oneshot::channel();
                let task = tokio::task::spawn_local(accept_loop(
                    listener,
                    current.clone(),
                    stopped,
                    shared.clone(),
                    tracker.clone(),
                ));
                loops.insert(id, AcceptLoop { stop, task, current });
            }
            Change::Stop { id } => {
                if let Some(l) = loops.remove(&id) {
                    let _ = l.stop.send(());
                    let _ = l.task.await;
                }
            }
            Change::Update { id, config, tls } => {
                if let Some(l) = loops.get(&id) {
                    let open = l.current.borrow().ctx.open.clone();
                    *l.current.borrow_mut() = Current::new(&config, open, tls);
                }
            }
        }
    }
    if let Some(done) = batch.done {
        let _ = done.send(());
    }
}

async fn accept_loop(
    listener: TcpListener,
    current: Rc<RefCell<Current>>,
    stop: oneshot::Receiver<()>,
    shared: Arc<Shared>,
    tracker: Rc<Tracker>,
) {
    let mut rx = shared.shutdown.subscribe();
    if *rx.borrow_and_update() {
        return;
    }
    let shutdown = rx.changed();
    tokio::pin!(shutdown);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = &mut stop => {
                // Connections the kernel has already completed would be reset when the socket
                // closes: accept them first, so that stopping a listener refuses only new ones.
                if let Ok(std_listener) = listener.into_std() {
                    while let Ok((stream, peer)) = std_listener.accept() {
                        match stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream)) {
                            Ok(stream) => start_connection(stream, peer, &current, &shared, &tracker),
                            Err(e) => tracing::debug!("connection from {peer}: {e}"),
                        }
                    }
                }
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => start_connection(stream, peer, &current, &shared, &tracker),
                Err(e) => {
                    // Out of file descriptors and the like: say so, back off a little, go on.
                    tracing::warn!("listener `{}`: accept failed: {e}", current.borrow().ctx.name);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Serves an accepted connection on its own task, with the listener's settings of now.
fn start_connection(
    stream: TcpStream,
    peer: SocketAddr,
    current: &RefCell<Current>,
    shared: &Arc<Shared>,
    tracker: &Rc<Tracker>,
) {
    let _ = stream.set_nodelay(true);
    let (ctx, protocols) = {
        let c = current.borrow();
        (c.ctx.clone(), c.protocols.clone())
    };
    tracker.open.set(tracker.open.get() + 1);
    shared.open_connections.fetch_add(1, Ordering::Relaxed);
    ctx.open.fetch_add(1, Ordering::Relaxed);
    let open = OpenConnection {
        listener: ctx.open.clone(),
        shared: shared.clone(),
        tracker: tracker.clone(),
    };
    // The task is the connection's future itself: wrapping it in another async block would hold
    // it twice (once captured, once awaited), doubling every connection's task.
    tokio::task::spawn_local(serve_connection(
        stream,
        peer,
        ctx,
        shared.clone(),
        protocols,
        open,
    ));
}

/// Counts a client connection as open until dropped, with the task that serves it.
pub(super) struct OpenConnection {
    listener: Arc<std::sync::atomic::AtomicUsize>,
    shared: Arc<Shared>,
    tracker: Rc<Tracker>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        self.listener.fetch_sub(1, Ordering::Relaxed);
        self.tracker.open.set(self.tracker.open.get() - 1);
        self.tracker.idle.notify_waiters();
    }
}
