//! TLS towards servers: one rustls client configuration per pool, built when a snapshot is built
//! (start, reload), and the name each server is verified against.
//!
//! Owns: the pool's roots (its `ca` file or the system's), ALPN, the accept-anything verifier of
//! `verify = false`, and the choice of SNI / verification name. Must not touch: sockets (the
//! handshake itself is in `upstream_io.rs`) or the listener side's TLS (`tls.rs`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use crate::config::{UpstreamProtocol, UpstreamTls};

/// A pool's TLS client side: the shared rustls configuration (its session cache resumes
/// sessions to the pool's servers) and the fixed name, if the pool sets `server_name`.
#[derive(Debug)]
pub struct TlsClient {
    /// The rustls configuration; cloned by reference for each connection.
    pub config: Arc<ClientConfig>,
    /// `server_name` of the pool; `None`: each server's own host.
    pub server_name: Option<ServerName<'static>>,
}

impl TlsClient {
    /// Builds the client side of `pool`'s TLS: roots, ALPN for `protocol`, verification.
    pub fn build(pool: &str, tls: &UpstreamTls, protocol: UpstreamProtocol) -> Result<TlsClient, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("pool `{pool}`: TLS: {e}"))?;
        let mut config = if tls.verify {
            let roots = roots(pool, tls)?;
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny {
                    algorithms: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth()
        };
        config.alpn_protocols = match protocol {
            UpstreamProtocol::H2 => vec![b"h2".to_vec()],
            _ => vec![b"http/1.1".to_vec()],
        };
        let server_name = match &tls.server_name {
            None => None,
            Some(n) => Some(
                ServerName::try_from(n.clone())
                    .map_err(|e| format!("pool `{pool}`: tls server_name `{n}`: {e}"))?,
            ),
        };
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The name sent as SNI and verified for a server written as `address` (`host:port`).
    pub fn name_for(&self, address: &str) -> Result<ServerName<'static>, String> {
        if let Some(n) = &self.server_name {
            return Ok(n.clone());
        }
        let host = host_of(address);
        ServerName::try_from(host.to_owned()).map_err(|e| format!("no TLS name for `{address}`: {e}"))
    }
}

/// The host part of `host:port`, `[v6]:port`, or a bare host.
pub fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match address.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((h, _)) if !h.contains(':') => h,
        Some(_) => address,
        None => address,
    }
}

/// The trust anchors of a verifying pool: its `ca` file, else the system's.
fn roots(pool: &str, tls: &UpstreamTls) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match &tls.ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("pool `{pool}`: tls ca {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("pool `{pool}`: tls ca {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("pool `{pool}`: tls ca {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "pool `{pool}`: tls ca {}: no certificate in the file",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!("pool `{pool}`: reading the system's CA certificates: {e}");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "pool `{pool}`: tls: no system CA certificates found; set `ca` to a PEM file"
                ));
            }
        }
    }
    Ok(roots)
}

/// `verify = false`: any certificate is accepted (the handshake's signature is still checked
/// against the certificate's key, so the server at least holds that key).
#[derive(Debug)]
struct AcceptAny {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_takes_the_host_of_every_address_form() {
        assert_eq!(host_of("backend.internal:8443"), "backend.internal");
        assert_eq!(host_of("10.0.0.7:443"), "10.0.0.7");
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn an_ip_server_is_verified_as_an_ip_address() {
        let tls = UpstreamTls {
            ca: None,
            server_name: None,
            verify: false,
        };
        let client = TlsClient::build("p", &tls, UpstreamProtocol::Http1).unwrap();
        assert!(matches!(
            client.name_for("127.0.0.1:8443").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            client.name_for("api.example.com:443").unwrap(),
            ServerName::DnsName(_)
        ));
        assert_eq!(client.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn server_name_overrides_the_host_and_h2_asks_for_h2() {
        let tls = UpstreamTls {
            ca: None,
            server_name: Some("api.internal".into()),
            verify: false,
        };
        let client = TlsClient::build("p", &tls, UpstreamProtocol::H2).unwrap();
        assert_eq!(
            client.name_for("10.0.0.1:443").unwrap(),
            ServerName::try_from("api.internal").unwrap()
        );
        assert_eq!(client.config.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
