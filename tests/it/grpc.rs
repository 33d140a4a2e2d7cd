//! gRPC end to end through Ringway: a real tonic client speaking HTTP/2 with prior knowledge to
//! Ringway's cleartext listener, a real tonic service (written by hand with `tonic::server::Grpc`
//! and prost-derived messages: no protoc, no build script) behind an `h2c` pool, and behind an
//! `h2` pool over TLS with a private CA. Unary, server-streaming, client-streaming and
//! bidirectional calls; messages, `grpc-status` with its message, and metadata both ways.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::common::upstream::*;
use crate::common::*;
use http::uri::PathAndQuery;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ringway::config::{Balance, Config, UpstreamProtocol, UpstreamTls};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::codegen::{BoxFuture, BoxStream, Context, Poll, Service};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// The one message of the test service.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    /// Text.
    #[prost(string, tag = "1")]
    pub text: String,
    /// A number.
    #[prost(int32, tag = "2")]
    pub n: i32,
}

fn msg(text: &str, n: i32) -> Msg {
    Msg { text: text.into(), n }
}

const UNARY: &str = "/ringway.test.Echo/Unary";
const SERVER_STREAM: &str = "/ringway.test.Echo/Count";
const CLIENT_STREAM: &str = "/ringway.test.Echo/Sum";
const BIDI: &str = "/ringway.test.Echo/Shout";

/// Unary: echoes the text, copies `x-client-meta` into the response metadata as
/// `x-server-meta`; the text "fail" is refused with INVALID_ARGUMENT and metadata.
#[derive(Clone)]
struct Unary;

impl Service<Request<Msg>> for Unary {
    type Response = Response<Msg>;
    type Error = Status;
    type Future = BoxFuture<Response<Msg>, Status>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        Box::pin(async move {
            let meta = req.metadata().get("x-client-meta").cloned();
            let m = req.into_inner();
            if m.text == "fail" {
                let mut status = Status::invalid_argument("fail is not a greeting");
                status
                    .metadata_mut()
                    .insert("x-why", "asked to fail".parse().expect("metadata"));
                return Err(status);
            }
            let mut resp = Response::new(msg(&format!("echo: {}", m.text), m.n + 1));
            if let Some(v) = meta {
                resp.metadata_mut().insert("x-server-meta", v);
            }
            Ok(resp)
        })
    }
}

/// Server streaming: `n` messages counting up.
#[derive(Clone)]
struct Count;

impl Service<Request<Msg>> for Count {
    type Response = Response<BoxStream<Msg>>;
    type Error = Status;
    type Future = BoxFuture<Response<BoxStream<Msg>>, Status>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        Box::pin(async move {
            let m = req.into_inner();
            let items: Vec<Result<Msg, Status>> = (1..=m.n).map(|i| Ok(msg(&m.text, i))).collect();
            let stream: BoxStream<Msg> = Box::pin(tokio_stream::iter(items));
            Ok(Response::new(stream))
        })
    }
}

/// Client streaming: the sum of the numbers and the texts joined.
#[derive(Clone)]
struct Sum;

impl Service<Request<Streaming<Msg>>> for Sum {
    type Response = Response<Msg>;
    type Error = Status;
    type Future = BoxFuture<Response<Msg>, Status>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let mut stream = req.into_inner();
            let (mut sum, mut texts) = (0, Vec::new());
            while let Some(m) = stream.message().await? {
                sum += m.n;
                texts.push(m.text);
            }
            Ok(Response::new(msg(&texts.join(","), sum)))
        })
    }
}

/// Bidirectional: each message comes back in capitals as it arrives.
#[derive(Clone)]
struct Shout;

impl Service<Request<Streaming<Msg>>> for Shout {
    type Response = Response<BoxStream<Msg>>;
    type Error = Status;
    type Future = BoxFuture<Response<BoxStream<Msg>>, Status>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let stream = req.into_inner();
            let out: BoxStream<Msg> = Box::pin(stream.map(|m| m.map(|m| msg(&m.text.to_uppercase(), m.n))));
            Ok(Response::new(out))
        })
    }
}

/// Routes a request to its method, as tonic's generated server code does.
async fn route(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let codec = ProstCodec::<Msg, Msg>::default;
    let mut grpc = tonic::server::Grpc::new(codec());
    Ok(match req.uri().path() {
        UNARY => grpc.unary(Unary, req).await,
        SERVER_STREAM => grpc.server_streaming(Count, req).await,
        CLIENT_STREAM => grpc.client_streaming(Sum, req).await,
        BIDI => grpc.streaming(Shout, req).await,
        _ => Status::unimplemented("no such method").into_http(),
    })
}

/// A gRPC server over HTTP/2 on 127.0.0.1, with TLS (ALPN h2) if `leaf` is given.
async fn grpc_server(leaf: Option<Leaf>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    crypto();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = leaf.map(|leaf| {
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)
            .expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    let acceptor = acceptor.clone();
                    conns.spawn(async move {
                        let h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                        match acceptor {
                            Some(a) => {
                                if let Ok(tls) = a.accept(tcp).await {
                                    let _ = h2.serve_connection(TokioIo::new(tls), service_fn(route)).await;
                                }
                            }
                            None => {
                                let _ = h2.serve_connection(TokioIo::new(tcp), service_fn(route)).await;
                            }
                        }
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    (addr, task)
}

type Client = tonic::client::Grpc<tonic::transport::Channel>;

/// A tonic client to Ringway's cleartext listener (HTTP/2 with prior knowledge).
async fn grpc_client(proxy: &Proxy) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to ringway");
    tonic::client::Grpc::new(channel)
}

fn codec() -> ProstCodec<Msg, Msg> {
    ProstCodec::default()
}

/// Every kind of call, through `proxy`.
async fn every_call(proxy: &Proxy) {
    let mut c = grpc_client(proxy).await;

    // Unary, with metadata both ways.
    let mut req = Request::new(msg("hello", 41));
    req.metadata_mut()
        .insert("x-client-meta", "from the client".parse().expect("metadata"));
    c.ready().await.expect("ready");
    let resp = c
        .unary(req, PathAndQuery::from_static(UNARY), codec())
        .await
        .expect("unary call");
    assert_eq!(
        resp.metadata().get("x-server-meta").and_then(|v| v.to_str().ok()),
        Some("from the client")
    );
    assert_eq!(resp.into_inner(), msg("echo: hello", 42));

    // An error status, its message and its metadata pass through (trailers-only response).
    c.ready().await.expect("ready");
    let err = c
        .unary(
            Request::new(msg("fail", 0)),
            PathAndQuery::from_static(UNARY),
            codec(),
        )
        .await
        .expect_err("the server refuses");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "fail is not a greeting");
    assert_eq!(
        err.metadata().get("x-why").and_then(|v| v.to_str().ok()),
        Some("asked to fail")
    );

    // Server streaming, ended by grpc-status 0 in the trailers.
    c.ready().await.expect("ready");
    let mut stream = c
        .server_streaming(
            Request::new(msg("tick", 5)),
            PathAndQuery::from_static(SERVER_STREAM),
            codec(),
        )
        .await
        .expect("server streaming call")
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.expect("stream message") {
        got.push(m.n);
    }
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
    let trailers = stream.trailers().await.expect("trailers").expect("some trailers");
    assert_eq!(
        trailers.get("grpc-status").and_then(|v| v.to_str().ok()),
        Some("0")
    );

    // Client streaming.
    c.ready().await.expect("ready");
    let items = vec![msg("a", 1), msg("b", 2), msg("c", 3)];
    let resp = c
        .client_streaming(
            Request::new(tokio_stream::iter(items)),
            PathAndQuery::from_static(CLIENT_STREAM),
            codec(),
        )
        .await
        .expect("client streaming call");
    assert_eq!(resp.into_inner(), msg("a,b,c", 6));

    // Bidirectional: each answer arrives before the next message is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    c.ready().await.expect("ready");
    let mut answers = c
        .streaming(
            Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            PathAndQuery::from_static(BIDI),
            codec(),
        )
        .await
        .expect("bidi call")
        .into_inner();
    for (i, word) in ["one", "two", "three"].into_iter().enumerate() {
        tx.send(msg(word, i as i32)).await.expect("send");
        let back = answers.message().await.expect("answer").expect("an answer");
        assert_eq!(back, msg(&word.to_uppercase(), i as i32));
    }
    drop(tx);
    assert!(answers.message().await.expect("end").is_none());
    let trailers = answers
        .trailers()
        .await
        .expect("trailers")
        .expect("some trailers");
    assert_eq!(
        trailers.get("grpc-status").and_then(|v| v.to_str().ok()),
        Some("0")
    );
}

fn pool_to(addr: SocketAddr, protocol: UpstreamProtocol) -> Config {
    let mut c = one_pool(Balance::RoundRobin, &[addr.to_string()]);
    c.pools[0].protocol = protocol;
    c
}

#[tokio::test]
async fn grpc_calls_of_every_kind_pass_through_an_h2c_pool() {
    bounded(async {
        let (addr, _server) = grpc_server(None).await;
        let proxy = Proxy::start(pool_to(addr, UpstreamProtocol::H2c));
        every_call(&proxy).await;
    })
    .await;
}

#[tokio::test]
async fn grpc_calls_pass_through_an_h2_pool_over_tls() {
    bounded(async {
        let ca = TestCa::new("Ringway test CA");
        let dir = TempDir::new("grpc-tls");
        let ca_file = dir.write("ca.pem", &ca.pem());
        let (addr, _server) = grpc_server(Some(ca.issue(&["grpc.internal"]))).await;
        let mut config = pool_to(addr, UpstreamProtocol::H2);
        config.pools[0].tls = Some(UpstreamTls {
            ca: Some(ca_file),
            server_name: Some("grpc.internal".into()),
            verify: true,
        });
        let proxy = Proxy::start(config);
        every_call(&proxy).await;
    })
    .await;
}

#[tokio::test]
async fn an_unknown_method_is_the_servers_unimplemented() {
    bounded(async {
        let (addr, _server) = grpc_server(None).await;
        let proxy = Proxy::start(pool_to(addr, UpstreamProtocol::H2c));
        let mut c = grpc_client(&proxy).await;
        c.ready().await.expect("ready");
        let err = c
            .unary(
                Request::new(msg("x", 0)),
                PathAndQuery::from_static("/ringway.test.Echo/Nope"),
                codec(),
            )
            .await
            .expect_err("unimplemented");
        assert_eq!(err.code(), Code::Unimplemented);
        assert_eq!(err.message(), "no such method");
    })
    .await;
}
