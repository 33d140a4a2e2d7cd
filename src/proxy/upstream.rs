//! Upstream connections: opened on demand, kept alive, reused per server and per worker.
//!
//! Owns: the idle-connection pool of each worker thread (no lock: a worker runs on one thread and
//! owns its pool) and the opening of new connections with the pool's connect timeout.
//! Must not touch: balancing or retries; the caller decides which server and whether to retry.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::RequestBody;

/// A connection's request sender.
pub type Sender = http1::SendRequest<RequestBody>;

/// An upstream connection: its request sender and its response timer.
///
/// The timer lives as long as the connection and is reset for each request: tokio extends a
/// later deadline in place, so a request costs no timer-wheel insertion and removal.
pub struct Conn {
    /// Sends requests on the connection.
    pub sender: Sender,
    /// Fires when the current request's response head is late.
    pub timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// Idle connections kept per server and worker; more are closed when released.
const MAX_IDLE_PER_SERVER: usize = 1024;

/// Server ids are small sequential integers: hashing them again would only cost time.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdleMap = HashMap<u64, Vec<Conn>, BuildHasherDefault<IdHasher>>;

thread_local! {
    static IDLE: RefCell<IdleMap> = RefCell::new(HashMap::default());
}

/// Takes an idle connection to server `id` that is still open, if any.
pub fn checkout(id: u64) -> Option<Conn> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&id)?;
        while let Some(c) = list.pop() {
            if !c.sender.is_closed() {
                return Some(c);
            }
        }
        None
    })
}

/// Returns a connection whose last response was read to its end.
pub fn release(id: u64, conn: Conn) {
    if conn.sender.is_closed() {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(id).or_default();
        if list.len() < MAX_IDLE_PER_SERVER {
            list.push(conn);
        }
    });
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// Refused, reset or unreachable.
    Io(std::io::Error),
    /// No answer within the connect timeout.
    Timeout,
    /// The HTTP handshake failed.
    Handshake(hyper::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "connect: {e}"),
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Handshake(e) => write!(f, "handshake: {e}"),
        }
    }
}

/// Opens a new HTTP/1.1 connection; its driver runs as a task of the current worker.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Err(_) => return Err(ConnectError::Timeout),
    };
    // Small requests and responses must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::task::spawn_local(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("upstream connection to {addr} ended: {e}");
        }
    });
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
    Ok(Conn {
        sender,
        timer: Box::pin(tokio::time::sleep_until(far)),
    })
}
