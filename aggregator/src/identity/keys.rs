//! The `--ingest-jwks` file, held as the key set in force and re-read while running: a changed
//! file that parses replaces the keys at once (a rotation needs no restart); one that does not
//! is logged with the precise error and counted, and the keys in force stay. Kubernetes swaps
//! ConfigMap volumes through a symlink, so content, not mtime, is what is compared.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dwell_runtime::periodic::{First, Ticker};
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use super::jwks::{self, JwksError, KeySet, MAX_JWKS_BYTES};

/// Why the key file cannot be used (names the file, never key material).
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// It is not a usable JWKS.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: JwksError,
    },
}

/// Counters of the reloads.
#[derive(Debug, Clone, Default)]
pub struct ReloadMetrics {
    /// New key sets taken.
    pub reloaded: Counter,
    /// Changed files refused (the old keys kept).
    pub refused: Counter,
}

/// The key set in force, from its file.
#[derive(Debug)]
pub struct KeyFile {
    path: PathBuf,
    keys: ArcSwap<KeySet>,
    metrics: ReloadMetrics,
}

impl KeyFile {
    /// Reads `path` (an error names the file and the problem: start-up fails on it).
    pub fn load(path: &Path, metrics: ReloadMetrics) -> Result<(Self, Vec<u8>), KeyFileError> {
        let bytes = read(path)?;
        let keys = parse(path, &bytes)?;
        let file = Self {
            path: path.to_owned(),
            keys: ArcSwap::from_pointee(keys),
            metrics,
        };
        Ok((file, bytes))
    }

    /// The keys in force now.
    pub fn current(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// Re-reads the file every `every` until `shutdown`; `last` is what the keys in force
    /// came from.
    pub async fn watch(
        self: Arc<Self>,
        mut last: Vec<u8>,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticks = Ticker::new(every, First::AfterPeriod, &shutdown);
        while ticks.tick().await {
            let bytes = match read(&self.path) {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!(%error, "--ingest-jwks unreadable; keeping the keys in force");
                    continue;
                }
            };
            if bytes == last {
                continue;
            }
            match parse(&self.path, &bytes) {
                Ok(keys) => {
                    tracing::info!(path = %self.path.display(), keys = keys.len(),
                        skipped = keys.skipped, "--ingest-jwks reloaded");
                    self.keys.store(Arc::new(keys));
                    self.metrics.reloaded.inc();
                }
                Err(error) => {
                    tracing::error!(%error, "--ingest-jwks refused; keeping the keys in force");
                    self.metrics.refused.inc();
                }
            }
            last = bytes;
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    let failed = |source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(failed)?;
    let mut bytes = Vec::new();
    // One byte past the bound, so an oversized file is seen as such.
    file.take(MAX_JWKS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    Ok(bytes)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<KeySet, KeyFileError> {
    jwks::parse(bytes).map_err(|source| KeyFileError::Parse {
        path: path.to_owned(),
        source,
    })
}
