//! What Ringway does with the bytes a server sends: body framing (length, chunked, until close),
//! connection reuse, malformed or oversized heads, truncated bodies, and answers that arrive
//! while the request body is still being sent. The servers here are scripted raw sockets, so
//! each test controls the exact bytes on the wire.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use ringway::config::Balance;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a scripted server does after it has read a request head.
#[derive(Clone, Copy)]
enum After {
    /// Keep the connection for further requests.
    KeepOpen,
    /// Close it.
    Close,
    /// Neither read nor close until the test ends.
    Stall,
}

/// A server that answers every request head with the same bytes.
struct Scripted {
    addr: String,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    async fn start(response: &'static [u8], after: After) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, response, after));
            }
        });
        Scripted {
            addr,
            connections,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, response: &'static [u8], after: After) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request head, then the scripted answer.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        buf.drain(..end);
        if stream.write_all(response).await.is_err() {
            return;
        }
        match after {
            After::KeepOpen => {}
            After::Close => return,
            After::Stall => {
                tokio::time::sleep(TEST_TIMEOUT).await;
                return;
            }
        }
    }
}

/// Sends `requests` (at least one) GETs through a proxy to a server answering `response`; each
/// must come back 200 with `body`. Returns how many connections the server accepted, and the
/// last reply.
async fn forward_each(response: &'static [u8], after: After, requests: usize, body: &str) -> (usize, Reply) {
    let server = Scripted::start(response, after).await;
    let proxy = proxy_to(&server);
    let client = client();
    let mut last = None;
    for _ in 0..requests {
        let r = send(client.get(proxy.url("/"))).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), body);
        assert!(r.header("connection").is_none_or(|v| v != "close"), "hop-by-hop");
        last = Some(r);
    }
    proxy.stop().await;
    (server.connections(), last.expect("at least one request"))
}

fn proxy_to(server: &Scripted) -> Proxy {
    let mut c = one_pool(Balance::RoundRobin, std::slice::from_ref(&server.addr));
    c.pools[0].retries = 0;
    Proxy::start(c)
}

#[tokio::test]
async fn body_until_close_is_forwarded_whole() {
    bounded(async {
        let response = b"HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nhello until close";
        let (connections, last) = forward_each(response, After::Close, 2, "hello until close").await;
        assert_eq!(last.header("x-a"), Some("1"));
        assert_eq!(connections, 2, "a body ended by close ends its connection");
    })
    .await
}

#[tokio::test]
async fn chunked_body_with_extensions_and_trailers_is_decoded_and_the_connection_reused() {
    bounded(async {
        let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
        assert_eq!(forward_each(response, After::KeepOpen, 3, "hello world").await.0, 1);
    })
    .await
}

#[tokio::test]
async fn connection_close_from_the_server_is_not_reused() {
    bounded(async {
        // The server says close but leaves the socket open: Ringway must not send on it again.
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        assert_eq!(forward_each(response, After::KeepOpen, 3, "ok").await.0, 3);
    })
    .await
}

#[tokio::test]
async fn bad_response_heads_give_502() {
    bounded(async {
        let big: &'static [u8] = format!("HTTP/1.1 200 OK\r\nx-big: {}\r\n\r\n", "a".repeat(70 * 1024))
            .leak()
            .as_bytes();
        let cases: [&'static [u8]; 4] = [
            b"HELLO THERE\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
            big,
        ];
        let client = client();
        for (i, bytes) in cases.into_iter().enumerate() {
            let server = Scripted::start(bytes, After::Close).await;
            let proxy = proxy_to(&server);
            let r = send(client.get(proxy.url("/"))).await;
            assert_eq!(r.status, 502, "case {i}: {}", r.text());
            proxy.stop().await;
        }
    })
    .await
}

#[tokio::test]
async fn truncated_body_is_not_passed_off_as_complete() {
    bounded(async {
        let server = Scripted::start(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it",
            After::Close,
        )
        .await;
        let proxy = proxy_to(&server);
        let client = client();
        // Whether the head got out before the body broke is a matter of timing; a complete
        // response must never arrive.
        let outcome = match client.get(proxy.url("/")).send().await {
            Ok(resp) => resp.bytes().await.map(|b| b.len()),
            Err(e) => Err(e),
        };
        assert!(
            outcome.is_err(),
            "the client must see the body cut short: {outcome:?}"
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn answer_before_the_body_is_read_reaches_the_client() {
    bounded(async {
        // The server answers at once and never reads the 8 MiB body: the answer must not wait
        // for an upload that cannot finish.
        let server = Scripted::start(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone", After::Stall).await;
        let proxy = proxy_to(&server);
        let body = vec![b'x'; 8 << 20];
        let resp = client()
            .post(proxy.url("/upload"))
            .body(body)
            .send()
            .await
            .expect("response");
        assert_eq!(resp.status(), 200);
        assert_eq!(&resp.bytes().await.expect("body")[..], b"done");
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_body_still_arriving_after_the_answer_is_read_not_reset() {
    bounded(async {
        // The server answers at once and never reads the body. The client reads the answer,
        // then sends the rest of its body and a second request on the same connection: Ringway
        // drains the rest (a lingering close) instead of closing on unread bytes, which would
        // make the kernel reset the connection under the client.
        let server = Scripted::start(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone", After::Stall).await;
        let proxy = proxy_to(&server);
        let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
        let total = 4 << 20;
        let head = format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n");
        client.write_all(head.as_bytes()).await.expect("head");
        client.write_all(&vec![b'x'; 64 << 10]).await.expect("first part");
        let answer = read_response(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        let rest = vec![b'x'; total - (64 << 10)];
        client
            .write_all(&rest)
            .await
            .expect("the rest of the body is taken, not reset");
        client
            .write_all(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("second request");
        let second = read_response(&mut client).await;
        assert!(
            second.starts_with("HTTP/1.1 200"),
            "second answer on the same connection: {second}"
        );
        proxy.stop().await;
    })
    .await
}

/// Reads one response with a `Content-Length` body from a raw client socket.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return String::from_utf8_lossy(&buf[..end + 4 + length]).into_owned();
            }
        }
        let n = stream.read(&mut chunk).await.expect("read response");
        assert!(
            n > 0,
            "connection closed after {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn bytes_after_the_body_keep_the_connection_out_of_the_pool() {
    bounded(async {
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA BYTES";
        assert_eq!(forward_each(response, After::KeepOpen, 2, "ok").await.0, 2);
    })
    .await
}

#[tokio::test]
async fn slow_trickle_of_a_head_still_parses() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".chunks(7) {
                if s.write_all(b).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(TEST_TIMEOUT).await;
        });
        let mut c = one_pool(Balance::RoundRobin, &[addr]);
        c.pools[0].retries = 0;
        let proxy = Proxy::start(c);
        let r = send(client().get(proxy.url("/"))).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello");
        proxy.stop().await;
    })
    .await
}
