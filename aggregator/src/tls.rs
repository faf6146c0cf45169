//! TLS for the metrics API and gRPC ingest: where the serving certificate comes from (PEM files
//! that are hot-reloaded, or a self-signed one generated at start-up), which client certificates
//! are accepted ([`client_auth`]), and HTTPS serving over the shared TLS accept loop
//! (`dwell_runtime::tls`).
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

mod certs;
pub mod client_auth;
mod reload;
mod serve;

pub use certs::{
    Identity, SelfSigned, ServerOptions, fingerprint, self_signed, server_config,
    server_config_with,
};
pub use client_auth::PeerCertificates;
pub use reload::{CertFiles, TlsConfig};
pub use serve::{ConnectionMetrics, HttpsLimits, serve, serve_with};

/// Why TLS could not be set up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, String),
    /// PEM content is missing or malformed.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// rustls refused the certificate/key pair.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
    /// The self-signed certificate could not be generated (e.g. a bad --tls-san).
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    /// The self-signed certificate could not be written to --tls-self-signed-out.
    #[error("cannot write the self-signed certificate to {0}: {1}")]
    Write(String, String),
    /// A client CA bundle is unusable (no certificate, or rejected as a trust anchor).
    #[error("invalid CA bundle {0}: {1}")]
    Ca(String, String),
}

/// How the serving certificate is chosen.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// Certificate chain and key files, hot-reloaded; without them a self-signed certificate is
    /// generated.
    pub files: Option<(PathBuf, PathBuf)>,
    /// Extra names for the self-signed certificate.
    pub sans: Vec<String>,
    /// Where to write the self-signed certificate's public PEM (for clients to trust).
    pub self_signed_out: Option<PathBuf>,
    /// How often the files are checked for changes.
    pub reload_interval: Duration,
    /// Client-certificate verification and ALPN.
    pub options: ServerOptions,
}

/// The served configuration and, when serving files, the watcher that reloads them.
#[derive(Debug)]
pub struct TlsSetup {
    /// The swappable configuration for the accept loop.
    pub config: TlsConfig,
    /// The files to watch (none for a self-signed certificate).
    pub files: Option<CertFiles>,
    /// How often to check the files.
    pub reload_interval: Duration,
}

impl TlsSetup {
    /// Loads or generates the certificate, logging its SHA-256 fingerprint.
    pub fn new(settings: &TlsSettings) -> Result<Self, TlsError> {
        let (identity, files) = match &settings.files {
            Some((cert, key)) => {
                let (files, identity) =
                    CertFiles::load_with(cert.clone(), key.clone(), settings.options.clone())?;
                tracing::info!(
                    cert = %cert.display(),
                    fingerprint = %identity.fingerprint(),
                    "serving TLS certificate from {} (SHA-256 {})",
                    cert.display(),
                    identity.fingerprint()
                );
                (identity, Some(files))
            }
            None => {
                let made = self_signed(&settings.sans)?;
                if let Some(out) = &settings.self_signed_out {
                    std::fs::write(out, &made.cert_pem)
                        .map_err(|e| TlsError::Write(out.display().to_string(), e.to_string()))?;
                }
                tracing::info!(
                    fingerprint = %made.identity.fingerprint(),
                    "generated a self-signed TLS certificate for localhost, 127.0.0.1{} \
                     (SHA-256 {})",
                    settings.sans.iter().map(|s| format!(", {s}")).collect::<String>(),
                    made.identity.fingerprint()
                );
                (made.identity, None)
            }
        };
        Ok(Self {
            config: TlsConfig::new(server_config_with(&identity, &settings.options)?),
            files,
            reload_interval: settings.reload_interval,
        })
    }

    /// The file watcher (none for a self-signed certificate), for the caller to run as a task;
    /// it stops with `shutdown`.
    pub fn reloader(
        &mut self,
        shutdown: CancellationToken,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let files = self.files.take()?;
        Some(files.watch(self.config.clone(), self.reload_interval, shutdown))
    }
}
