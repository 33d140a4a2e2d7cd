//! The embedded demo upstream: in-process instances of the "rooms" rental service that
//! `ringway demo` puts behind the balancer (DESIGN.md §7).
//!
//! This module owns the instances' accept loops and connection tasks; the service itself lives in
//! [`rooms`], layered entity → repository → use cases → HTTP adapter. Nothing here knows about the
//! balancer: each instance is an ordinary HTTP/1.1 upstream on loopback.

pub mod rooms;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use rooms::http::RoomsApp;
use rooms::repository::MemoryRepository;

/// Serves instance `rooms-{instance}` on `listener` until `shutdown` turns true or its sender drops.
pub async fn serve_rooms(listener: TcpListener, instance: usize, mut shutdown: watch::Receiver<bool>) {
    let app = RoomsApp::new(instance, Arc::new(MemoryRepository::seeded()));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(instance, %err, "rooms: accept failed");
                    // Errors such as EMFILE recur at once; a short pause keeps the loop from spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let app = app.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let resp = app.handle(&req);
                async move { Ok::<_, Infallible>(resp) }
            });
            // The timer enables hyper's default header-read timeout, so an idle half-sent
            // request cannot hold a task forever.
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                res = conn.as_mut() => res,
                () = stopped(&mut shutdown) => {
                    // Finish the request in flight, then close instead of keeping the connection alive.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(instance, %peer, %err, "rooms: connection ended with an error");
            }
        });
    }
}

/// Starts `n` instances, `rooms-1` to `rooms-n`, each on its own `127.0.0.1:0` listener.
///
/// Each instance runs until its handle is aborted; once every handle is aborted, open connections
/// are closed gracefully.
pub async fn spawn_rooms_instances(n: usize) -> std::io::Result<Vec<(SocketAddr, JoinHandle<()>)>> {
    let (tx, rx) = watch::channel(false);
    // Every instance holds the sender, so dropping the last task is what signals shutdown.
    let tx = Arc::new(tx);
    let mut instances = Vec::with_capacity(n);
    for instance in 1..=n {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = (Arc::clone(&tx), rx.clone());
        let handle = tokio::spawn(async move {
            let _keep_open = tx;
            serve_rooms(listener, instance, rx).await;
        });
        instances.push((addr, handle));
    }
    Ok(instances)
}

/// Resolves once shutdown is requested: the value turned true or the sender was dropped.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// Sends one raw HTTP/1.1 request and returns the response head (lowercased) and body.
    async fn get(addr: SocketAddr, path: &str) -> (String, serde_json::Value) {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the instance");
        let request = format!("GET {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read response");
        let raw = String::from_utf8(raw).expect("UTF-8 response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
        let body = serde_json::from_str(body).expect("JSON body");
        (head.to_ascii_lowercase(), body)
    }

    #[tokio::test]
    async fn serves_over_a_real_socket_and_shuts_down() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("bound address");
        let (tx, rx) = watch::channel(false);
        let server = tokio::spawn(serve_rooms(listener, 3, rx));

        let (head, body) = get(addr, "/rooms?status=available").await;
        assert!(head.starts_with("http/1.1 200 ok"), "{head}");
        assert!(head.contains("\r\nx-served-by: rooms-3"), "{head}");
        assert!(head.contains("\r\ncontent-type: application/json"), "{head}");
        let rooms = body.as_array().expect("a list of rooms");
        assert_eq!(rooms.len(), 4);
        assert!(rooms.iter().all(|r| r["available"] == true));

        // A kept-alive connection, once idle, must be closed by shutdown rather than linger.
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: demo\r\n\r\n")
            .await
            .expect("send");
        let mut first = Vec::new();
        while !first.ends_with(b"\"ok\"") {
            let mut chunk = [0; 512];
            let n = idle.read(&mut chunk).await.expect("read response");
            assert!(n > 0, "closed before the first response");
            first.extend_from_slice(&chunk[..n]);
        }
        tx.send(true).expect("server still listening");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("accept loop stops on shutdown")
            .expect("accept loop does not panic");
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest))
            .await
            .expect("idle connection closed on shutdown")
            .expect("clean close");
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn spawned_instances_are_numbered_from_one() {
        let instances = spawn_rooms_instances(3).await.expect("bind loopback");
        for (i, (addr, _)) in instances.iter().enumerate() {
            let (head, body) = get(*addr, "/cache/rooms/ABC").await;
            let name = format!("rooms-{}", i + 1);
            assert!(head.contains(&format!("\r\nx-served-by: {name}")), "{head}");
            assert_eq!(
                body,
                serde_json::json!({"key": "/cache/rooms/ABC", "served_by": name})
            );
        }
        for (_, handle) in instances {
            handle.abort();
        }
    }
}
