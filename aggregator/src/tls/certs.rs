//! Serving identities: PEM files from disk, or a self-signed certificate made at start-up; and the
//! rustls `ServerConfig` built from one (ring provider, TLS 1.2+, ALPN h2 then http/1.1).
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use super::TlsError;

/// A certificate chain (leaf first) and its private key.
#[derive(Debug)]
pub struct Identity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Parses a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(format!("certificate: {e}")))?;
        if chain.is_empty() {
            return Err(TlsError::Pem("no CERTIFICATE block found".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::Pem(format!("private key: {e}")))?;
        Ok(Self { chain, key })
    }

    /// SHA-256 fingerprint of the leaf certificate.
    pub fn fingerprint(&self) -> String {
        self.chain.first().map(fingerprint).unwrap_or_default()
    }
}

/// A generated self-signed certificate: the identity to serve and its public PEM to trust.
#[derive(Debug)]
pub struct SelfSigned {
    /// What the server presents.
    pub identity: Identity,
    /// The certificate alone, PEM-encoded (no key): give it to clients as their CA.
    pub cert_pem: String,
}

/// Generates a self-signed certificate for `localhost`, `127.0.0.1` and `extra_sans` (DNS names or
/// IP addresses; duplicates and blanks ignored).
pub fn self_signed(extra_sans: &[String]) -> Result<SelfSigned, TlsError> {
    let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for san in extra_sans.iter().map(|s| s.trim()) {
        if !san.is_empty() && !sans.iter().any(|s| s == san) {
            sans.push(san.to_string());
        }
    }
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(sans).map_err(|e| TlsError::Generate(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der()));
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        identity: Identity {
            chain: vec![cert.der().clone()],
            key,
        },
    })
}

/// SHA-256 of a DER certificate, as colon-separated upper-case hex (`openssl x509 -fingerprint`).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What a server asks of its clients beyond TLS itself: an optional client-certificate
/// verifier and the ALPN protocols it offers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Verifies client certificates (required or optional, as the verifier was built);
    /// `None` never asks for one.
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// ALPN protocols in preference order.
    pub alpn: Vec<Vec<u8>>,
}

impl ServerOptions {
    /// The metrics API: `h2` then `http/1.1` (kube-apiserver's proxy negotiates h2).
    pub fn https() -> Self {
        Self {
            client_verifier: None,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }

    /// gRPC: `h2` only (grpc-go clients such as grpcurl insist on it).
    pub fn grpc() -> Self {
        Self {
            client_verifier: None,
            alpn: vec![b"h2".to_vec()],
        }
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self::https()
    }
}

/// Builds the server configuration: ring, TLS 1.3 and 1.2 only, no client certificates,
/// ALPN `h2` then `http/1.1` (kube-apiserver's proxy negotiates h2).
pub fn server_config(identity: &Identity) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(identity, &ServerOptions::https())
}

/// Builds a server configuration (ring, TLS 1.3 and 1.2) with the given client verification
/// and ALPN.
pub fn server_config_with(
    identity: &Identity,
    options: &ServerOptions,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &options.client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = options.alpn.clone();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_round_trips_through_pem() {
        let made = self_signed(&["dwell.custom-metrics.svc".into(), "localhost".into()]).unwrap();
        assert_eq!(made.identity.fingerprint().len(), 32 * 3 - 1);
        assert!(server_config(&made.identity).is_ok());
        let reparsed = CertificateDer::from_pem_slice(made.cert_pem.as_bytes()).unwrap();
        assert_eq!(fingerprint(&reparsed), made.identity.fingerprint());
    }

    #[test]
    fn bad_pem_is_an_error() {
        assert!(matches!(
            Identity::from_pem(b"nope", b"nope"),
            Err(TlsError::Pem(_))
        ));
        let made = self_signed(&[]).unwrap();
        assert!(matches!(
            Identity::from_pem(made.cert_pem.as_bytes(), b"-----BEGIN PRIVATE KEY-----\n"),
            Err(TlsError::Pem(_))
        ));
    }
}
