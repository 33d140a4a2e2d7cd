//! TLS pieces of the integration tests: a test CA that signs leaf certificates (rcgen), PEM files
//! in a temporary directory, rustls clients (verifying against the test CA, or not verifying,
//! to see which certificate a listener presents), and a configuration file with TLS listeners.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SignatureAlgorithm,
};
use ringway::config::CertPair;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate (chain: leaf then CA) and its key, as PEM.
pub struct Leaf {
    /// The chain, leaf first.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

/// Seconds since the epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TestCa {
    /// A new CA (ECDSA P-256).
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Ringway test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        TestCa { issuer }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// An ECDSA P-256 leaf for `names`, valid from yesterday for 90 days.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let now = unix_now();
        self.leaf_with(
            names,
            &rcgen::PKCS_ECDSA_P256_SHA256,
            now - 86_400,
            now + 90 * 86_400,
        )
    }

    /// A leaf for `names` with key algorithm `alg`, valid between two Unix times.
    pub fn leaf_with(&self, names: &[&str], alg: &'static SignatureAlgorithm, from: u64, until: u64) -> Leaf {
        let key = KeyPair::generate_for(alg).expect("leaf key");
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(from);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(until);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        Leaf {
            cert_pem: format!("{}{}", cert.pem(), self.pem()),
            key_pem: key.serialize_pem(),
        }
    }

    /// Trust anchors holding this CA.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der()).expect("CA trust anchor");
        roots
    }
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("ringway-tls-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes `leaf` as `<stem>.pem` and `<stem>.key` in `dir`.
pub fn write_leaf(dir: &Path, stem: &str, leaf: &Leaf) -> CertPair {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    // Written to a new name then renamed, as certificate renewal tools do: a reader never sees a
    // half-written file.
    for (path, text) in [(&cert, &leaf.cert_pem), (&key, &leaf.key_pem)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write PEM");
        std::fs::rename(&tmp, path).expect("rename PEM");
    }
    CertPair { cert, key }
}

/// The aws-lc-rs provider, also installed as the process default (for reqwest).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client trusting `ca`, offering `alpn`.
pub fn client_config(ca: &TestCa, alpn: &[&[u8]]) -> ClientConfig {
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    c
}

/// A client that accepts any certificate (to look at which one a listener presents).
pub fn looking_client(sni: bool) -> ClientConfig {
    let provider = provider();
    let mut c = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    c.enable_sni = sni;
    c
}

/// Opens a TLS connection to `addr` for `name` with `config`.
pub async fn connect(
    addr: SocketAddr,
    name: &str,
    config: ClientConfig,
) -> std::io::Result<TlsStream<TcpStream>> {
    connect_shared(addr, name, Arc::new(config)).await
}

/// [`connect`] with a shared configuration (its session cache makes resumption possible).
pub async fn connect_shared(
    addr: SocketAddr,
    name: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let server_name = ServerName::try_from(name.to_owned()).map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
}

/// The DNS names of the leaf certificate the server presented.
pub fn presented_names(stream: &TlsStream<TcpStream>) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let certs = stream.get_ref().1.peer_certificates().expect("peer certificates");
    let (_, cert) = X509Certificate::from_der(certs[0].as_ref()).expect("X.509 leaf");
    let san = cert
        .subject_alternative_name()
        .expect("SAN extension")
        .expect("SAN present");
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// A reqwest client trusting `ca` that resolves every name in `hosts` to `addr`.
pub fn https_client(ca: &TestCa, addr: SocketAddr, hosts: &[&str], h2: bool) -> reqwest::Client {
    let alpn: &[&[u8]] = if h2 { &[b"h2", b"http/1.1"] } else { &[b"http/1.1"] };
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(client_config(ca, alpn));
    if !h2 {
        b = b.http1_only();
    }
    for h in hosts {
        b = b.resolve(h, addr);
    }
    b.build().expect("https client")
}

/// A configuration file: one TLS listener `main` (and, with `plain`, a plain listener `plain`
/// redirecting to https on port `https_port`) forwarding to `backend`.
pub fn tls_config_text(pairs: &[CertPair], backend: &str, plain: Option<u16>) -> String {
    let mut text = String::from(
        "workers = 1\nshutdown_grace = \"2s\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[log]\naccess = \"off\"\n\n",
    );
    text.push_str("[[listener]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n");
    for p in pairs {
        text.push_str(&format!(
            "[[listener.tls.cert]]\ncert = \"{}\"\nkey = \"{}\"\n",
            p.cert.display(),
            p.key.display()
        ));
    }
    if let Some(port) = plain {
        text.push_str(&format!(
            "\n[[listener]]\nname = \"plain\"\nbind = \"127.0.0.1:0\"\nredirect_https = {{ port = {port} }}\n"
        ));
    }
    text.push_str(&format!(
        "\n[[route]]\nname = \"all\"\npool = \"app\"\n\n[pool.app]\nservers = [\"{backend}\"]\n"
    ));
    text
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
