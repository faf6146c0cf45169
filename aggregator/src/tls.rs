//! TLS for the metrics API and gRPC ingest: where the serving certificate comes from (PEM files
//! that are hot-reloaded, or a self-signed one generated at start-up), which client certificates
//! are accepted ([`client_auth`]), and the HTTPS accept loop.
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
pub use serve::serve;

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

/// How the serving certificate is chosen (from the command line).
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `--tls-cert` and `--tls-key`; without them a self-signed certificate is generated.
    pub files: Option<(PathBuf, PathBuf)>,
    /// `--tls-san`: extra names for the self-signed certificate.
    pub sans: Vec<String>,
    /// `--tls-self-signed-out`: where to write the self-signed certificate's public PEM.
    pub self_signed_out: Option<PathBuf>,
    /// `--tls-reload-interval`: how often the files are checked for changes.
    pub reload_interval: Duration,
    /// Client-certificate verification and ALPN.
    pub options: ServerOptions,
}

impl TlsSettings {
    /// The settings the command line asks for.
    pub fn from_args(args: &crate::cli::Args) -> Self {
        Self {
            files: args.tls_cert.clone().zip(args.tls_key.clone()),
            sans: args.tls_san.clone(),
            self_signed_out: args.tls_self_signed_out.clone(),
            reload_interval: args.tls_reload_interval,
            options: ServerOptions::https(),
        }
    }

    /// The gRPC listener's settings: `None` (plaintext) without `--grpc-tls-cert`; with
    /// `--grpc-client-ca`, every client must present a certificate signed by it.
    pub fn grpc_from_args(args: &crate::cli::Args) -> Result<Option<Self>, TlsError> {
        let Some(files) = args.grpc_tls_cert.clone().zip(args.grpc_tls_key.clone()) else {
            return Ok(None);
        };
        let client_verifier = match &args.grpc_client_ca {
            Some(ca) => Some(client_auth::verifier(
                client_auth::load_roots(ca)?,
                client_auth::Presence::Required,
            )?),
            None => None,
        };
        Ok(Some(Self {
            files: Some(files),
            sans: Vec::new(),
            self_signed_out: None,
            reload_interval: args.tls_reload_interval,
            options: ServerOptions {
                client_verifier,
                ..ServerOptions::grpc()
            },
        }))
    }
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

    /// Starts the file watcher (if any) as a task that stops with `shutdown`.
    pub fn spawn_reloader(
        &mut self,
        tracker: &tokio_util::task::TaskTracker,
        shutdown: CancellationToken,
    ) {
        if let Some(files) = self.files.take() {
            tracker.spawn(files.watch(self.config.clone(), self.reload_interval, shutdown));
        }
    }
}
