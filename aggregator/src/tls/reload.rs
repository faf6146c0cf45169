//! Hot reload of `--tls-cert`/`--tls-key`: the current `ServerConfig` lives in an `ArcSwap` that
//! the accept loop reads per connection, and a task polls the files and swaps in a new config when
//! their content changes. Mounted Secrets are swapped atomically through a `..data` symlink, so
//! polling (which follows symlinks) sees the change without inotify. Existing connections keep the
//! config they were accepted with; nothing is dropped.
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use dwell_runtime::periodic::{First, Ticker};
use rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

use super::TlsError;
use super::certs::{Identity, ServerOptions, server_config_with};

/// A shared, swappable server configuration: cheap to clone, read once per accepted connection.
#[derive(Debug, Clone)]
pub struct TlsConfig(Arc<ArcSwap<ServerConfig>>);

impl TlsConfig {
    /// Wraps a first configuration.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self(Arc::new(ArcSwap::new(config)))
    }

    /// The configuration new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.0.load_full()
    }

    /// Replaces the configuration for connections accepted from now on.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        self.0.store(config);
    }
}

impl dwell_runtime::tls::ServerConfigSource for TlsConfig {
    fn current(&self) -> Arc<ServerConfig> {
        TlsConfig::current(self)
    }
}

/// The certificate and key files being served, and the content last loaded from them.
#[derive(Debug)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    options: ServerOptions,
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl CertFiles {
    /// Loads both files once, returning the watcher state and the identity to serve first.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<(Self, Identity), TlsError> {
        Self::load_with(cert, key, ServerOptions::https())
    }

    /// Like [`CertFiles::load`], rebuilding each reloaded configuration with `options`
    /// (client-certificate verification, ALPN).
    pub fn load_with(
        cert: PathBuf,
        key: PathBuf,
        options: ServerOptions,
    ) -> Result<(Self, Identity), TlsError> {
        let (cert_pem, key_pem) = read_pair(&cert, &key)?;
        let identity = Identity::from_pem(&cert_pem, &key_pem)?;
        let files = Self {
            cert,
            key,
            options,
            loaded: Mutex::new((cert_pem, key_pem)),
        };
        Ok((files, identity))
    }

    /// Re-reads both files; when their content differs from what is served and parses into a
    /// valid configuration, swaps it into `tls` and returns the new leaf's fingerprint.
    /// A half-written or broken pair is an error and leaves the served config alone.
    pub fn reload_if_changed(&self, tls: &TlsConfig) -> Result<Option<String>, TlsError> {
        let pair = read_pair(&self.cert, &self.key)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if *loaded == pair {
            return Ok(None);
        }
        let identity = Identity::from_pem(&pair.0, &pair.1)?;
        tls.replace(server_config_with(&identity, &self.options)?);
        *loaded = pair;
        Ok(Some(identity.fingerprint()))
    }

    /// Polls every `interval` until `shutdown`, logging each reload (or why one failed).
    pub async fn watch(self, tls: TlsConfig, interval: Duration, shutdown: CancellationToken) {
        // The files were just loaded: the first check is one interval away.
        let mut ticks = Ticker::new(interval, First::AfterPeriod, &shutdown);
        while ticks.tick().await {
            match self.reload_if_changed(&tls) {
                Ok(Some(fingerprint)) => tracing::info!(
                    cert = %self.cert.display(),
                    %fingerprint,
                    "reloaded TLS certificate (SHA-256 {fingerprint}); new connections use it"
                ),
                Ok(None) => {}
                Err(error) => tracing::warn!(
                    cert = %self.cert.display(),
                    %error,
                    "TLS certificate files changed but cannot be loaded; still serving the previous one"
                ),
            }
        }
    }
}

fn read_pair(cert: &PathBuf, key: &PathBuf) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| TlsError::Read(path.display().to_string(), e.to_string()))
    };
    Ok((read(cert)?, read(key)?))
}
