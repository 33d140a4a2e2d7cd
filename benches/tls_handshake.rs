//! The server side's CPU per TLS handshake with each rustls crypto provider (docs/benchmarks.md,
//! "TLS handshakes: aws-lc-rs or ring").
//!
//! Owns: criterion benches only. Must not touch: the listener's TLS code (it builds rustls
//! configurations the way `proxy::tls` does: TLS 1.2 and 1.3, ALPN, session cache and tickets).
//!
//! Handshakes run in memory between a rustls client and server, bytes handed over by hand; only
//! the server's calls are timed (`iter_custom`), in the thread's CPU time (so that other jobs on
//! a shared machine do not count), so the figure is the CPU a listener spends per handshake,
//! without sockets or the client. ECDSA P-256, as `proxy-bench --tls` serves by
//! default. `ring` is measured with `--features bench-ring` (the build of Ringway itself never
//! includes it):
//!
//!     cargo bench --bench tls_handshake --features bench-ring

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, ServerConfig, ServerConnection};

/// A CA-signed ECDSA P-256 leaf for `bench.test`, with the CA as the client's only root.
struct Material {
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    roots: RootCertStore,
}

fn material() -> Material {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["bench.test".to_string()])
        .expect("leaf params")
        .signed_by(&key, &ca)
        .expect("leaf");
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    Material {
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        roots,
    }
}

fn server(
    provider: &Arc<CryptoProvider>,
    m: &Material,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
) -> Arc<ServerConfig> {
    let mut c = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(m.chain.clone(), m.key.clone_key())
        .expect("certificate");
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    c.session_storage = rustls::server::ServerSessionMemoryCache::new(20_000);
    c.ticketer = ticketer;
    Arc::new(c)
}

fn client(
    provider: &Arc<CryptoProvider>,
    m: &Material,
    version: &'static rustls::SupportedProtocolVersion,
    resume: bool,
    x25519_only: bool,
) -> Arc<ClientConfig> {
    let mut provider = (**provider).clone();
    if x25519_only {
        // What OpenSSL 3.0 clients (`openssl s_time`, curl on Debian 12) offer; rustls' own
        // default with aws-lc-rs is the hybrid X25519MLKEM768 first, which costs the server an
        // ML-KEM encapsulation on top (ring has no ML-KEM and always does plain X25519).
        provider
            .kx_groups
            .retain(|g| g.name() == rustls::NamedGroup::X25519);
    }
    let mut c = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(m.roots.clone())
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        c.resumption = Resumption::disabled();
    }
    Arc::new(c)
}

/// CPU time this thread has used.
fn cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// One handshake (plus the server's first flight of tickets read by the client); returns the
/// time the server spent in it and what kind of handshake it was.
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> (Duration, Option<HandshakeKind>) {
    let name = ServerName::try_from("bench.test").expect("name");
    let mut c = ClientConnection::new(client.clone(), name).expect("client");
    let mut spent = Duration::ZERO;
    let started = cpu_now();
    let mut s = ServerConnection::new(server.clone()).expect("server");
    spent += cpu_now() - started;
    let mut buf = Vec::with_capacity(16 * 1024);
    for _ in 0..10 {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("client write");
        }
        let t = cpu_now();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).expect("server read");
        }
        s.process_new_packets().expect("server handshake");
        let mut out = Vec::with_capacity(16 * 1024);
        while s.wants_write() {
            s.write_tls(&mut out).expect("server write");
        }
        spent += cpu_now() - t;
        let mut rd = &out[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client read");
        }
        c.process_new_packets().expect("client handshake");
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
            break;
        }
    }
    assert!(!s.is_handshaking(), "handshake completed");
    (spent, s.handshake_kind())
}

fn providers() -> Vec<(&'static str, Arc<CryptoProvider>)> {
    #[allow(unused_mut)]
    let mut p = vec![(
        "aws-lc-rs",
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )];
    #[cfg(feature = "bench-ring")]
    p.push(("ring", Arc::new(rustls::crypto::ring::default_provider())));
    p
}

fn ticketer(name: &str) -> Arc<dyn rustls::server::ProducesTickets> {
    match name {
        #[cfg(feature = "bench-ring")]
        "ring" => rustls::crypto::ring::Ticketer::new().expect("ticketer"),
        _ => rustls::crypto::aws_lc_rs::Ticketer::new().expect("ticketer"),
    }
}

fn bench(c: &mut Criterion) {
    let m = material();
    let mut g = c.benchmark_group("tls_server_handshake");
    for (name, provider) in providers() {
        let s = server(&provider, &m, ticketer(name));
        for (label, version, resume, x25519_only) in [
            ("full_tls13_default_kx", &rustls::version::TLS13, false, false),
            ("full_tls13_x25519", &rustls::version::TLS13, false, true),
            ("full_tls12_x25519", &rustls::version::TLS12, false, true),
            ("resumed_tls13_x25519", &rustls::version::TLS13, true, true),
        ] {
            let cl = client(&provider, &m, version, resume, x25519_only);
            // A first handshake fills the client's session store for the resumed case.
            handshake(&s, &cl);
            let kind = handshake(&s, &cl).1;
            let expected = if resume {
                HandshakeKind::Resumed
            } else {
                HandshakeKind::Full
            };
            assert_eq!(kind, Some(expected), "{name}/{label}");
            g.bench_function(format!("{name}/{label}"), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| handshake(&s, &cl).0).sum())
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
