//! What both dwell binaries share at run time, so they speak one dialect: the signal that starts
//! a graceful stop ([`signal`]), logging set-up ([`logging`]), one duration grammar for every flag
//! and config field ([`duration`]), jittered backoff ([`backoff`]), periodic ticks that end with
//! the shutdown token ([`periodic`]), the injected notion of "now" ([`clock`]), and the accept
//! loops with a connection limit and a TLS handshake deadline ([`accept`], [`tls`]).
//!
//! Nothing here knows a flag, a metric or a message: each binary's composition root (`app`)
//! decides the values and passes them in.

pub mod accept;
pub mod backoff;
pub mod clock;
pub mod duration;
pub mod logging;
pub mod periodic;
pub mod signal;
pub mod tls;

/// Why a dwell binary could not start.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Another rustls crypto provider was installed first (the tree must use ring only).
    #[error("a rustls CryptoProvider was already installed (dwell uses ring only)")]
    CryptoProvider,
}

/// What every dwell binary does first: install ring as the process's one rustls crypto provider
/// and set up logging in `format`.
pub fn boot(format: logging::LogFormat) -> Result<(), BootError> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| BootError::CryptoProvider)?;
    logging::init(format);
    Ok(())
}
