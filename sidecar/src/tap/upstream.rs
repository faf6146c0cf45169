//! The tap's connection to the real broker, one per app connection and never shared:
//! `amqp://host:port` over TCP, or `amqps://host:port` over TLS (rustls with ring, the server
//! name from the host for SNI and verification, trusting `--tap-upstream-ca` or else the system
//! bundle). TCP_NODELAY and keepalive on every upstream socket. The URL carries no credentials:
//! the app's own login passes through the tap untouched.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Longest wait for the broker's TCP connect and TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the system's CA bundle is looked for when no `--tap-upstream-ca` is given (after
/// `$SSL_CERT_FILE`): Debian/distroless, RHEL, Alpine/macOS-style.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why `--tap-upstream` (or its CA) was refused. Never echoes anything after `@`'s left side.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Not `amqp://host[:port]` or `amqps://host[:port]`.
    #[error("must be amqp://host[:port] or amqps://host[:port] (no user, password or vhost): {0}")]
    Syntax(&'static str),
    /// A CA file was given for a plaintext upstream.
    #[error("a CA only applies to an amqps:// upstream")]
    CaWithoutTls,
    /// The CA file held no certificate rustls accepts.
    #[error("holds no usable PEM CERTIFICATE block")]
    NoCertificate,
    /// No `--tap-upstream-ca` and no system CA bundle was found.
    #[error("no --tap-upstream-ca and no system CA bundle (set SSL_CERT_FILE)")]
    NoSystemRoots,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// The broker the tap forwards to.
#[derive(Clone)]
pub struct Upstream {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "amqps" } else { "amqp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl Upstream {
    /// Parses `amqp://host[:port]` or `amqps://host[:port]`; `ca_pem` (amqps only) replaces the
    /// system roots.
    pub fn parse(url: &str, ca_pem: Option<&[u8]>) -> Result<Self, UpstreamError> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("amqps://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("amqp://") {
            (false, rest)
        } else {
            return Err(UpstreamError::Syntax("the scheme"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('@') {
            return Err(UpstreamError::Syntax("credentials are the app's own"));
        }
        if authority.contains(['/', '?', '#']) {
            return Err(UpstreamError::Syntax("the vhost is the app's own"));
        }
        let default_port = if tls { 5671 } else { 5672 };
        let (host, port) = split_host_port(authority, default_port)?;
        let tls = match (tls, ca_pem) {
            (false, Some(_)) => return Err(UpstreamError::CaWithoutTls),
            (false, None) => None,
            (true, ca) => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| UpstreamError::Syntax("the host is no valid server name"))?;
                Some((connector(ca)?, name))
            }
        };
        Ok(Self { host, port, tls })
    }

    /// True for `amqps://`.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens one connection (TCP, then TLS for amqps), within [`CONNECT_TIMEOUT`].
    pub async fn connect(&self) -> io::Result<Stream> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_inner())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "broker connect timed out"))?
    }

    async fn connect_inner(&self) -> io::Result<Stream> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host resolved to nothing");
        for addr in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            // Small frames (acks, heartbeats) must not wait for Nagle; keepalive finds a broker
            // that vanished without a FIN while the app is idle between heartbeats.
            socket.set_nodelay(true)?;
            socket.set_keepalive(true)?;
            match socket.connect(addr).await {
                Ok(tcp) => {
                    return match &self.tls {
                        None => Ok(Stream::Plain(tcp)),
                        Some((connector, name)) => connector
                            .connect(name.clone(), tcp)
                            .await
                            .map(|s| Stream::Tls(Box::new(s))),
                    };
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), UpstreamError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or(UpstreamError::Syntax("an unclosed [IPv6] host"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(UpstreamError::Syntax("text after the [IPv6] host")),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UpstreamError::Syntax("the host is missing"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or(UpstreamError::Syntax("the port"))?,
    };
    Ok((host.to_owned(), port))
}

fn connector(ca_pem: Option<&[u8]>) -> Result<TlsConnector, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = match ca_pem {
        Some(pem) => pem.to_vec(),
        None => system_bundle().ok_or(UpstreamError::NoSystemRoots)?,
    };
    for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
        // A bundle may hold a certificate rustls does not parse; the others still count.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(UpstreamError::NoCertificate);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

fn system_bundle() -> Option<Vec<u8>> {
    let from_env = std::env::var_os("SSL_CERT_FILE");
    let env_path = from_env.as_deref().map(Path::new);
    env_path
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(Path::new))
        .find_map(|p| std::fs::read(p).ok())
}

/// An upstream connection, plain or TLS.
pub enum Stream {
    /// amqp://
    Plain(TcpStream),
    /// amqps://
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_refuse() {
        let plain = Upstream::parse("amqp://rabbitmq.data:5673", None).unwrap();
        assert_eq!(plain.to_string(), "amqp://rabbitmq.data:5673");
        assert!(!plain.is_tls());
        assert_eq!(
            Upstream::parse("amqp://rabbit/", None).unwrap().to_string(),
            "amqp://rabbit:5672"
        );
        assert_eq!(
            Upstream::parse("amqp://[::1]", None).unwrap().to_string(),
            "amqp://[::1]:5672"
        );
        let refused = |url: &str| Upstream::parse(url, None).unwrap_err().to_string();
        let creds = refused("amqp://guest:s3cret@rabbit");
        assert!(
            creds.contains("credentials") && !creds.contains("s3cret"),
            "{creds}"
        );
        assert!(refused("amqp://rabbit/orders").contains("vhost"));
        assert!(refused("http://rabbit").contains("scheme"));
        assert!(refused("amqp://rabbit:0").contains("port"));
        assert!(refused("amqp://:5672").contains("host"));
        assert!(matches!(
            Upstream::parse("amqp://rabbit", Some(b"x")),
            Err(UpstreamError::CaWithoutTls)
        ));
        assert!(matches!(
            Upstream::parse("amqps://rabbit", Some(b"no pem here")),
            Err(UpstreamError::NoCertificate)
        ));
    }
}
