//! The bound service-account token the sidecar presents to the aggregator (`--token-file`). In
//! Kubernetes the file is a projected token for the audience `dwell`, which the kubelet
//! rewrites before it expires; so it is re-read every few seconds ([`TokenFile::watch`]) and on
//! every (re)connect ([`TokenFile::refresh`]), and a stream notices a rotation through
//! [`TokenFile::subscribe`] and reopens with the new token. [`Bearer`] puts it on every Ingest
//! call as `authorization: Bearer …`.
//!
//! The token is a credential: it is held only as a sensitive header value (hpack never indexes
//! it; its `Debug` is `Sensitive`), [`TokenFile`]'s `Debug` shows the path alone, and no error
//! or log line quotes the file's content. A file that cannot be read while running is a
//! counted WARN and the last good token stays in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dwell_runtime::periodic::{First, Ticker};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;

use crate::telemetry::Metrics;

/// Largest token file read (a Kubernetes service-account JWT is about 1 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// How often the file is checked for a new token while running.
pub const RECHECK: Duration = Duration::from_secs(5);

/// Why a token file cannot be used. Names the file and the cause, never its content.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file cannot be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Nothing but whitespace in it.
    #[error("{} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Larger than [`MAX_TOKEN_BYTES`].
    #[error("{} is larger than {MAX_TOKEN_BYTES} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Bytes a bearer token cannot have (anything but visible ASCII inside it).
    #[error(
        "{} holds bytes a bearer token cannot have (only visible ASCII, no spaces inside)",
        path.display()
    )]
    NotAToken {
        /// The file.
        path: PathBuf,
    },
}

/// The `authorization` header value, `Bearer <token>`, marked sensitive.
#[derive(Clone, PartialEq, Eq)]
pub struct Header(AsciiMetadataValue);

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Header(<redacted>)")
    }
}

/// The token file and the last good token read from it.
pub struct TokenFile {
    path: PathBuf,
    current: watch::Sender<Header>,
    /// The last read failed (so only the first failure of a run is a WARN).
    failing: AtomicBool,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Header, TokenError> {
    use std::io::Read;
    let err = |source| TokenError::Read {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(err)?
        // One byte more than allowed tells "too large" from "exactly the limit".
        .take(MAX_TOKEN_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge {
            path: path.to_owned(),
        });
    }
    // A hand-written file often ends with a newline; the kubelet writes none.
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_owned(),
        });
    }
    if !token.iter().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::NotAToken {
            path: path.to_owned(),
        });
    }
    let mut value = Vec::with_capacity(token.len() + 7);
    value.extend_from_slice(b"Bearer ");
    value.extend_from_slice(token);
    let mut value = MetadataValue::try_from(value).map_err(|_| TokenError::NotAToken {
        path: path.to_owned(),
    })?;
    value.set_sensitive(true);
    Ok(Header(value))
}

impl TokenFile {
    /// Reads the token at start-up: a file that cannot be used is an error.
    pub fn load(path: &Path) -> Result<Arc<Self>, TokenError> {
        let header = read(path)?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            current: watch::Sender::new(header),
            failing: AtomicBool::new(false),
        }))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header with the last good token.
    pub fn header(&self) -> Header {
        self.current.borrow().clone()
    }

    /// Changes whenever a new token is picked up.
    pub fn subscribe(&self) -> watch::Receiver<Header> {
        self.current.subscribe()
    }

    /// Reads the file now. A new token replaces the current one (and wakes subscribers); a
    /// failure is logged and counted, and the last good token stays. Returns whether the token
    /// changed.
    pub fn refresh(&self, metrics: &Metrics) -> bool {
        match read(&self.path) {
            Ok(header) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(path = %self.path.display(), "token file readable again");
                }
                let changed = self.current.send_if_modified(|current| {
                    let changed = *current != header;
                    if changed {
                        *current = header;
                    }
                    changed
                });
                if changed {
                    metrics.token_rotations.inc();
                    tracing::info!(path = %self.path.display(),
                        "new service-account token picked up; streams reopen with it");
                }
                changed
            }
            Err(error) => {
                metrics.token_read_failures.inc();
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "cannot read the token file; keeping the last good token");
                } else {
                    tracing::debug!(%error, "token file still unreadable");
                }
                false
            }
        }
    }

    /// Re-reads the file every `every` until `shutdown`.
    pub async fn watch(
        self: Arc<Self>,
        metrics: Arc<Metrics>,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = Ticker::new(every, First::AfterPeriod, &shutdown);
        while ticker.tick().await {
            self.refresh(&metrics);
        }
    }
}

/// Puts `authorization: Bearer <token>` (the token current when the call starts) on every
/// call of the client it wraps; nothing without a token file.
#[derive(Debug, Clone, Default)]
pub struct Bearer(pub Option<Arc<TokenFile>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.header().0);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOlsiZHdlbGwiXX0.c2lnbmF0dXJl";

    fn value(h: &Header) -> String {
        h.0.to_str().unwrap().to_owned()
    }

    #[test]
    fn reads_trims_and_redacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        let token = TokenFile::load(&path).unwrap();
        assert_eq!(value(&token.header()), format!("Bearer {TOKEN}"));
        assert!(token.header().0.is_sensitive());
        let shown = format!("{token:?} {:?} {:?}", token.header(), token.header().0);
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(shown.contains("token"), "the path is shown: {shown}");
    }

    #[test]
    fn unusable_files_are_refused_without_quoting_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let secret = "s3cr3t-token-part";
        for (content, want) in [
            (String::new(), "is empty"),
            (" \n".to_owned(), "is empty"),
            (format!("{secret} {secret}"), "cannot have"),
            (format!("{secret}\u{e9}"), "cannot have"),
            ("x".repeat(MAX_TOKEN_BYTES + 1), "larger than"),
        ] {
            std::fs::write(&path, &content).unwrap();
            let e = TokenFile::load(&path).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("token"), "{e}");
            assert!(!e.contains(secret), "{e}");
        }
        let missing = TokenFile::load(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().starts_with("cannot read "), "{missing}");
    }

    #[test]
    fn a_rotation_is_picked_up_and_a_failure_keeps_the_last_good_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first").unwrap();
        let metrics = Metrics::new();
        let token = TokenFile::load(&path).unwrap();
        let mut changes = token.subscribe();
        assert!(!token.refresh(&metrics), "same content: no change");
        assert!(!changes.has_changed().unwrap());
        std::fs::write(&path, "second").unwrap();
        assert!(token.refresh(&metrics));
        assert!(changes.has_changed().unwrap());
        assert_eq!(value(&changes.borrow_and_update()), "Bearer second");
        std::fs::remove_file(&path).unwrap();
        assert!(!token.refresh(&metrics));
        assert!(!token.refresh(&metrics));
        assert_eq!(value(&token.header()), "Bearer second");
        assert_eq!(metrics.token_read_failures.get(), 2);
        assert_eq!(metrics.token_rotations.get(), 1);
        assert!(!changes.has_changed().unwrap());
    }

    #[test]
    fn the_interceptor_sets_the_header_only_with_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, TOKEN).unwrap();
        let mut with = Bearer(Some(TokenFile::load(&path).unwrap()));
        let request = with.call(tonic::Request::new(())).unwrap();
        let got = request.metadata().get("authorization").unwrap();
        assert_eq!(got.to_str().unwrap(), format!("Bearer {TOKEN}"));
        let request = Bearer(None).call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }
}
