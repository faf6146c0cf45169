//! Client certificates: CA bundles loaded into rustls verifiers, the verified chain a connection
//! presented (handed to handlers as [`PeerCertificates`]), and the subject names read from it.
//! The handshake only proves a chain leads to *some* configured CA; [`verifies`] re-checks it
//! against one CA so callers can tell a front-proxy certificate from an ordinary client one.
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::TlsError;

/// The chain a client presented and the handshake verified (leaf first), attached to every
/// request on that connection.
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// Whether a client must present a certificate at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// No certificate, no connection.
    Required,
    /// Requested; a client without one still connects (and is judged per request). A bad
    /// certificate still fails the handshake.
    Optional,
}

/// Reads every certificate in the PEM file at `path` as a trust anchor.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|e| TlsError::Read(shown.clone(), e.to_string()))?;
    let mut roots = RootCertStore::empty();
    add_pem(&mut roots, &pem).map_err(|e| TlsError::Ca(shown, e.to_string()))?;
    Ok(roots)
}

/// Why a CA bundle cannot be used; shown after the file name (`invalid CA bundle F: …`).
#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    /// The PEM does not parse.
    #[error("{0}")]
    Pem(#[from] rustls_pki_types::pem::Error),
    /// The PEM parses but holds no certificate.
    #[error("no CERTIFICATE block found")]
    Empty,
    /// rustls refused a certificate as a trust anchor.
    #[error("{0}")]
    Anchor(#[from] rustls::Error),
}

/// Adds every certificate in `pem` to `roots`; an empty or broken bundle is an error (and then
/// `roots` may hold the certificates before the broken one: callers drop it).
pub fn add_pem(roots: &mut RootCertStore, pem: &[u8]) -> Result<(), CaBundleError> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(CaBundleError::Empty);
    }
    for cert in certs {
        roots.add(cert)?;
    }
    Ok(())
}

/// A verifier for client certificates signed by `roots` (ring provider, client-auth usage).
pub fn verifier(
    roots: RootCertStore,
    presence: Presence,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match presence {
        Presence::Required => builder,
        Presence::Optional => builder.allow_unauthenticated(),
    };
    builder
        .build()
        .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))
}

/// Whether `chain` (leaf first) is valid now for client authentication under `verifier`.
pub fn verifies(verifier: &dyn ClientCertVerifier, chain: &[CertificateDer<'_>]) -> bool {
    match chain.split_first() {
        Some((leaf, intermediates)) => verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .is_ok(),
        None => false,
    }
}

/// The parts of a certificate's subject that name a Kubernetes user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// The first CN (Kubernetes: the user name).
    pub common_name: Option<String>,
    /// Every O (Kubernetes: the groups).
    pub organizations: Vec<String>,
}

/// Reads the subject of a DER certificate (`None` if it does not parse).
pub fn subject(cert: &CertificateDer<'_>) -> Option<Subject> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = parsed.subject();
    let text =
        |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| attr.as_str().ok().map(str::to_owned);
    Some(Subject {
        common_name: name.iter_common_name().find_map(text),
        organizations: name.iter_organization().filter_map(text).collect(),
    })
}

/// The URI subject alternative names of a DER certificate (empty if it does not parse): where
/// a workload certificate carries its SPIFFE ID (`crate::identity::spiffe`).
pub fn uri_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(
        name: &str,
    ) -> (
        rcgen::Issuer<'static, rcgen::KeyPair>,
        CertificateDer<'static>,
    ) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (rcgen::Issuer::new(params, key), cert.der().clone())
    }

    fn client(issuer: &rcgen::Issuer<'static, rcgen::KeyPair>) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "ops");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        params.signed_by(&key, issuer).unwrap().der().clone()
    }

    #[test]
    fn verifies_only_against_the_signing_ca() {
        let (a, a_der) = ca("a");
        let (_, b_der) = ca("b");
        let roots = |der: &CertificateDer<'static>| {
            let mut r = RootCertStore::empty();
            r.add(der.clone()).unwrap();
            r
        };
        let by_a = verifier(roots(&a_der), Presence::Required).unwrap();
        let by_b = verifier(roots(&b_der), Presence::Optional).unwrap();
        let leaf = client(&a);
        assert!(verifies(by_a.as_ref(), std::slice::from_ref(&leaf)));
        assert!(!verifies(by_b.as_ref(), std::slice::from_ref(&leaf)));
        assert!(!verifies(by_a.as_ref(), &[]));
        assert_eq!(
            subject(&leaf),
            Some(Subject {
                common_name: Some("alice".into()),
                organizations: vec!["ops".into()],
            })
        );
        assert_eq!(subject(&CertificateDer::from(vec![0x30, 0x03])), None);
    }

    #[test]
    fn empty_bundles_are_errors() {
        let mut roots = RootCertStore::empty();
        let e = add_pem(&mut roots, b"").expect_err("empty");
        assert!(matches!(e, CaBundleError::Empty), "{e:?}");
        assert_eq!(e.to_string(), "no CERTIFICATE block found");
        let e = add_pem(&mut roots, b"-----BEGIN CERTIFICATE-----\nzz\n").expect_err("broken");
        assert!(matches!(e, CaBundleError::Pem(_)), "{e:?}");
        let not_a_cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = add_pem(&mut roots, not_a_cert).expect_err("not a certificate");
        assert!(matches!(e, CaBundleError::Anchor(_)), "{e:?}");
    }
}
