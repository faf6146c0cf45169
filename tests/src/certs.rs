//! Test PKI made with rcgen: a CA, and serving certificates it signs (for `--tls-cert`/`--tls-key`
//! and certificate-rotation tests), and client certificates (mTLS, front-proxy) it signs.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A certificate authority for tests.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A serving certificate and key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct ServingCert {
    /// Certificate chain (leaf only).
    pub cert_pem: String,
    /// PKCS#8 private key.
    pub key_pem: String,
}

impl TestCa {
    /// A fresh CA whose subject CN is `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A serving certificate for `sans` (DNS names or IPs), signed by this CA.
    pub fn issue(&self, sans: &[&str]) -> ServingCert {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("serving params");
        params
            .distinguished_name
            .push(DnType::CommonName, "dwell-aggregator");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("serving key");
        let cert = params.signed_by(&key, &self.issuer).expect("serving cert");
        ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client certificate (client-auth usage) with subject CN `cn` and one O per group,
    /// signed by this CA: what a sidecar, kube-apiserver's front proxy or a user presents.
    pub fn issue_client(&self, cn: &str, groups: &[&str]) -> ServingCert {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, cn);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("client key");
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate to `dir/<file>` and returns the path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.pem).expect("write CA");
        path
    }
}

impl ServingCert {
    /// Writes `tls.crt` and `tls.key` into `dir` (atomically, by rename, as a Secret update
    /// would appear) and returns their paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        self.write_as(dir, "tls")
    }

    /// Writes `<stem>.crt` and `<stem>.key` into `dir` (as [`ServingCert::write`]) and returns
    /// their paths: for several certificates in one directory.
    pub fn write_as(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        for (path, content) in [(&cert, &self.cert_pem), (&key, &self.key_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, content).expect("write PEM");
            std::fs::rename(&tmp, path).expect("rename PEM");
        }
        (cert, key)
    }
}
