//! A listener's certificate and key files, read and judged: PEM present, X.509 valid now, key
//! usable and matching the certificate, and the names the certificate serves.
//!
//! Owns: turning one `{ cert, key }` pair of files into a rustls `CertifiedKey` with its names,
//! or a message that says which file is wrong and why. `config::load` (for `ringway check`, start
//! and reload) and the TLS listener (`proxy::tls`) both read pairs through [`load_pair`], so
//! `check` refuses exactly what a listener would. Must not touch: sockets, TLS sessions, or the
//! clock (the caller passes the time to judge validity against).

use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::model::CertPair;

/// A certificate expiring within this many days is warned about.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// A certificate chain with its key, ready to serve, and what it was checked to be.
#[derive(Debug, Clone)]
pub struct LoadedPair {
    /// The chain and signing key for rustls.
    pub certified: Arc<CertifiedKey>,
    /// DNS names the leaf certificate serves (SAN dNSNames, or the subject CN when there are
    /// none), lower case, wildcards as written (`*.example.com`).
    pub names: Vec<String>,
    /// When the leaf stops being valid, as the certificate says it.
    pub not_after: String,
    /// Days left before the leaf expires (rounded down).
    pub days_left: i64,
}

impl LoadedPair {
    /// A warning when the leaf expires within [`EXPIRY_WARNING_DAYS`].
    pub fn expiry_warning(&self, pair: &CertPair) -> Option<String> {
        (self.days_left < EXPIRY_WARNING_DAYS).then(|| {
            format!(
                "certificate {} expires in {} day{} ({}): renew it",
                pair.cert.display(),
                self.days_left,
                if self.days_left == 1 { "" } else { "s" },
                self.not_after
            )
        })
    }
}

/// Which file of a pair an error is about (its key is where the error is reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairFile {
    /// The certificate chain.
    Cert,
    /// The private key.
    Key,
}

/// Why a pair cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairError {
    /// The file at fault.
    pub file: PairFile,
    /// What is wrong, naming the file.
    pub message: String,
}

/// Where `now` falls in a certificate's validity period (all Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// `now` is before `not_before`.
    NotYet,
    /// `now` is after `not_after`.
    Expired,
    /// Valid, with this many whole days left.
    Valid {
        /// Whole days until `not_after`.
        days_left: i64,
    },
}

/// Judges a validity period at `now`.
pub fn validity(not_before: i64, not_after: i64, now: i64) -> Validity {
    if now < not_before {
        Validity::NotYet
    } else if now > not_after {
        Validity::Expired
    } else {
        Validity::Valid {
            days_left: (not_after - now) / 86_400,
        }
    }
}

/// Reads and checks `pair` at time `now` (Unix seconds).
pub fn load_pair(pair: &CertPair, now: i64) -> Result<LoadedPair, PairError> {
    let cert_err = |message: String| PairError {
        file: PairFile::Cert,
        message,
    };
    let key_err = |message: String| PairError {
        file: PairFile::Key,
        message,
    };
    let chain = read_chain(&pair.cert).map_err(cert_err)?;
    let (names, not_after, days_left) = inspect_leaf(&pair.cert, &chain[0], now).map_err(cert_err)?;
    let key = read_key(&pair.key).map_err(key_err)?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => key_err(format!(
            "private key {} does not match certificate {} (their public keys differ)",
            pair.key.display(),
            pair.cert.display()
        )),
        e => key_err(format!("private key {} cannot be used: {e}", pair.key.display())),
    })?;
    Ok(LoadedPair {
        certified: Arc::new(certified),
        names,
        not_after,
        days_left,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("certificate {shown} cannot be read as PEM: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "certificate {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let shown = path.display();
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("private key {shown} holds no PEM private key (PKCS#8, RSA or EC, unencrypted)")
        }
        e => format!("private key {shown} cannot be read as PEM: {e}"),
    })
}

/// The leaf's names, its end of validity as written, and the days left; refuses a leaf that is
/// expired or not valid yet.
fn inspect_leaf(
    path: &Path,
    leaf: &CertificateDer<'_>,
    now: i64,
) -> Result<(Vec<String>, String, i64), String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let shown = path.display();
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| format!("certificate {shown}: the first certificate is not valid X.509: {e}"))?;
    let v = cert.validity();
    let days_left = match validity(v.not_before.timestamp(), v.not_after.timestamp(), now) {
        Validity::NotYet => {
            return Err(format!(
                "certificate {shown} is not valid yet (not before {})",
                v.not_before
            ));
        }
        Validity::Expired => {
            return Err(format!(
                "certificate {shown} has expired (not after {})",
                v.not_after
            ));
        }
        Validity::Valid { days_left } => days_left,
    };
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("certificate {shown}: unreadable subjectAltName: {e}")),
    };
    if names.is_empty() {
        // Older certificates name their host only in the subject's CN, as HAProxy still honours.
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Ok((names, v.not_after.to_string(), days_left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_period_edges() {
        assert_eq!(validity(100, 200, 99), Validity::NotYet);
        assert_eq!(validity(100, 200, 100), Validity::Valid { days_left: 0 });
        assert_eq!(validity(100, 200, 200), Validity::Valid { days_left: 0 });
        assert_eq!(validity(100, 200, 201), Validity::Expired);
        assert_eq!(
            validity(0, 15 * 86_400, 86_400 / 2),
            Validity::Valid { days_left: 14 }
        );
    }
}
