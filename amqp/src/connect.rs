//! Opening one broker connection: `amqp://` in the clear, `amqps://` over rustls (ring, the
//! process's one provider) trusting the system roots plus an optional CA file. Failures are
//! classified ([`ConnectFailure`]) so callers can count them by reason, and their messages never
//! hold the password.
use std::path::{Path, PathBuf};
use std::time::Duration;

use lapin::tcp::OwnedTLSConfig;
use lapin::{Connection, ConnectionProperties, ErrorKind};

use crate::url::AmqpUrl;

/// How long one connection attempt (TCP, TLS, AMQP handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest CA file read (a bundle of a few hundred certificates).
const MAX_CA_BYTES: u64 = 1 << 20;

/// Where and how to connect: the URL and, for `amqps://`, an extra CA to trust.
#[derive(Clone, Debug, PartialEq)]
pub struct Connector {
    /// The broker (password redacted when shown).
    pub url: AmqpUrl,
    /// A PEM file of CA certificates trusted besides the system roots (`amqps://` only); read
    /// at every attempt, so a rotated CA is picked up on reconnect.
    pub ca_file: Option<PathBuf>,
    /// A file holding the URL (a mounted Secret): when set, re-read at every attempt, so rotated
    /// credentials are picked up on reconnect; its URL is used on `url`'s vhost.
    pub url_file: Option<PathBuf>,
}

/// Why a connection attempt failed, by what an operator must fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectFailure {
    /// The broker refused the credentials (or the user may not open the vhost).
    Auth,
    /// The TLS handshake failed (certificate not trusted, wrong name, not TLS).
    Tls,
    /// The CA file could not be read or holds no certificate.
    CaFile,
    /// The URL file could not be read or holds no valid URL.
    UrlFile,
    /// No answer, refused, reset or timed out.
    Network,
    /// The broker sent something else (a protocol error, an unknown vhost).
    Protocol,
}

impl ConnectFailure {
    /// A short label for metrics (`auth`, `tls`, `ca_file`, `url_file`, `network`, `protocol`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Tls => "tls",
            Self::CaFile => "ca_file",
            Self::UrlFile => "url_file",
            Self::Network => "network",
            Self::Protocol => "protocol",
        }
    }
}

/// A failed attempt: its class and a message free of the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot connect to {url}: {message}")]
pub struct ConnectError {
    /// What went wrong, by what to fix.
    pub failure: ConnectFailure,
    /// The URL, redacted.
    pub url: String,
    /// What the broker or the network said, with the password masked.
    pub message: String,
}

impl Connector {
    /// A connector for `url` with no extra CA.
    pub fn new(url: AmqpUrl) -> Self {
        Self {
            url,
            ca_file: None,
            url_file: None,
        }
    }

    /// The URL to use now: `url_file`'s (on `url`'s vhost) when set, else `url`.
    pub fn current_url(&self) -> Result<AmqpUrl, ConnectError> {
        let Some(path) = &self.url_file else {
            return Ok(self.url.clone());
        };
        let fail = |message: String| ConnectError {
            failure: ConnectFailure::UrlFile,
            url: self.url.to_string(),
            message,
        };
        let text = read_url_file(path).map_err(fail)?;
        let url = AmqpUrl::parse(&text).map_err(|e| fail(e.to_string()))?;
        Ok(url.with_vhost(self.url.vhost()))
    }

    /// Connects, naming the connection (`connection_name`, shown in the management UI), with
    /// [`CONNECT_TIMEOUT`].
    pub async fn connect(&self, name: &str) -> Result<Connection, ConnectError> {
        let url = self.current_url()?;
        let fail = |failure, message: String| ConnectError {
            failure,
            url: url.to_string(),
            message: url.mask(&message),
        };
        let tls = match (&self.ca_file, url.is_tls()) {
            (Some(path), true) => OwnedTLSConfig {
                identity: None,
                cert_chain: Some(read_ca(path).map_err(|m| fail(ConnectFailure::CaFile, m))?),
            },
            _ => OwnedTLSConfig::default(),
        };
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let attempt = Connection::connect_uri_with_config(
            url.uri().clone(),
            props,
            tls,
            lapin::runtime::default_runtime()
                .map_err(|e| fail(ConnectFailure::Protocol, e.to_string()))?,
        );
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(fail(classify(&e), e.to_string())),
            Err(_) => Err(fail(
                ConnectFailure::Network,
                format!("no connection within {CONNECT_TIMEOUT:?}"),
            )),
        }
    }
}

/// The largest URL file read.
const MAX_URL_BYTES: u64 = 4096;

/// Reads a URL file (a mounted Secret), bounded; the error names the file, never its content.
pub fn read_url_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_URL_BYTES).read_to_string(&mut text))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text)
}

/// Reads a PEM CA bundle, checking it holds at least one certificate.
fn read_ca(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_BYTES).read_to_string(&mut text))
        .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!(
            "CA file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(text)
}

/// The class of a lapin connection error.
fn classify(e: &lapin::Error) -> ConnectFailure {
    match e.kind() {
        ErrorKind::ProtocolError(amqp) if amqp.get_id() == 403 => ConnectFailure::Auth,
        ErrorKind::ProtocolError(_) => ConnectFailure::Protocol,
        ErrorKind::AuthProviderError(_) => ConnectFailure::Auth,
        ErrorKind::IOError(io) => {
            let text = io.to_string().to_ascii_lowercase();
            let tls = io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
                || ["certificate", "tls", "handshake", "invaliddata"]
                    .iter()
                    .any(|w| text.contains(w));
            if tls {
                ConnectFailure::Tls
            } else {
                ConnectFailure::Network
            }
        }
        _ => ConnectFailure::Protocol,
    }
}
