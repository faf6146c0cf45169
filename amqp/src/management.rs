//! The RabbitMQ management API, for what a passive declare cannot tell: the queue's type and,
//! for classic queues only, the head message's `timestamp` property (seconds, publisher clock;
//! up to ~10 s stale: rabbitmq-sampling.md §3.2). One `GET /api/queues/{vhost}/{name}?columns=…`
//! per call, over HTTPS when the URL says so (ring, system roots plus an optional CA), with the
//! AMQP URL's credentials (the user needs the `monitoring` tag), a deadline and a size bound.
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::Deserialize;
use tokio::net::TcpStream;

use crate::url::AmqpUrl;

/// The largest response read: one queue's few columns are well under 1 KiB.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The largest CA file read.
const MAX_CA_BYTES: u64 = 1 << 20;

/// Where the management API listens: `http://host:15672` or `https://host:15671`, optionally
/// under a path prefix. Never carries credentials (they come from the AMQP URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementUrl {
    tls: bool,
    host: String,
    port: u16,
    prefix: String,
}

/// Why a management URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid management URL {shown}: {reason}")]
pub struct ManagementUrlError {
    /// The URL with any password masked.
    pub shown: String,
    /// What is wrong.
    pub reason: String,
}

impl ManagementUrl {
    /// Parses `http[s]://host[:port][/prefix]`.
    pub fn parse(raw: &str) -> Result<Self, ManagementUrlError> {
        let raw = raw.trim();
        let fail = |reason: &str| ManagementUrlError {
            shown: crate::url::redact(raw),
            reason: reason.to_owned(),
        };
        let (tls, rest) = if let Some(rest) = raw.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = raw.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(fail("expected http:// or https://"));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err(fail(
                "credentials do not belong in it: the broker's AMQP URL credentials are used",
            ));
        }
        if path.contains(['?', '#']) {
            return Err(fail("no query or fragment"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let close = v6.find(']').ok_or_else(|| fail("unclosed [ in the host"))?;
                (&v6[..close], v6[close + 1..].strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(fail("no host"));
        }
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => p.parse().map_err(|_| fail("the port is not a number"))?,
        };
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }
}

impl fmt::Display for ManagementUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}{}", self.host, self.port, self.prefix)
        } else {
            write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.prefix)
        }
    }
}

/// What the management API says about one queue (absent fields: unknown).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct QueueInfo {
    /// `classic`, `quorum` or `stream`.
    #[serde(rename = "type")]
    pub queue_type: Option<String>,
    /// The head message's `timestamp` property as the publisher set it (the spec says seconds;
    /// some publishers write milliseconds). Classic queues only; null when the head has none.
    pub head_message_timestamp: Option<i64>,
    /// Delivered, not yet acknowledged.
    pub messages_unacknowledged: Option<u64>,
}

/// Why a management read failed. Never holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagementError {
    /// 401: the credentials were refused (or the user lacks the `monitoring` tag: 401 too).
    #[error(
        "management API refused the credentials of user {0:?} (401; it needs the monitoring tag)"
    )]
    Unauthorized(String),
    /// 404: no such queue or vhost.
    #[error("management API: queue not found (404)")]
    NotFound,
    /// Another status.
    #[error("management API answered {0}")]
    Status(u16),
    /// The CA file, TLS or the network.
    #[error("management API: {0}")]
    Transport(String),
    /// The body was not the expected JSON, or too large.
    #[error("management API: unexpected body: {0}")]
    Body(String),
    /// No answer in time.
    #[error("management API: no answer within {0:?}")]
    Timeout(Duration),
}

/// A management API client for one broker.
#[derive(Clone)]
pub struct Management {
    url: ManagementUrl,
    user: String,
    authorization: String,
    tls: Option<tokio_rustls::TlsConnector>,
    timeout: Duration,
}

impl fmt::Debug for Management {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Management")
            .field("url", &self.url.to_string())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Management {
    /// A client of `url` authenticating as `credentials`' user; over HTTPS it trusts the system
    /// roots plus `ca_file`. Each read is bounded by `timeout`.
    pub fn new(
        url: ManagementUrl,
        credentials: &AmqpUrl,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, ManagementError> {
        let tls = if url.tls {
            Some(tls_connector(ca_file)?)
        } else {
            None
        };
        let userpass = format!("{}:{}", credentials.username(), credentials.password());
        Ok(Self {
            url,
            user: credentials.username().to_owned(),
            authorization: format!("Basic {}", base64(userpass.as_bytes())),
            tls,
            timeout,
        })
    }

    /// The queue's type, head timestamp and unacknowledged count. `Ok(None)`: the broker knows
    /// nothing yet (a queue younger than about a second answers 200 with `[]`).
    pub async fn queue(
        &self,
        vhost: &str,
        queue: &str,
    ) -> Result<Option<QueueInfo>, ManagementError> {
        match tokio::time::timeout(self.timeout, self.get_queue(vhost, queue)).await {
            Ok(r) => r,
            Err(_) => Err(ManagementError::Timeout(self.timeout)),
        }
    }

    async fn get_queue(
        &self,
        vhost: &str,
        queue: &str,
    ) -> Result<Option<QueueInfo>, ManagementError> {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let path = format!(
            "{}/api/queues/{}/{}?columns=type,head_message_timestamp,messages_unacknowledged",
            self.url.prefix,
            utf8_percent_encode(vhost, NON_ALPHANUMERIC),
            utf8_percent_encode(queue, NON_ALPHANUMERIC),
        );
        let host_header = if self.url.host.contains(':') {
            format!("[{}]:{}", self.url.host, self.url.port)
        } else {
            format!("{}:{}", self.url.host, self.url.port)
        };
        let request = http::Request::get(path)
            .header(http::header::HOST, host_header)
            .header(http::header::AUTHORIZATION, &self.authorization)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| ManagementError::Transport(e.to_string()))?;
        let transport = |e: std::io::Error| ManagementError::Transport(e.to_string());
        let tcp = TcpStream::connect((self.url.host.as_str(), self.url.port))
            .await
            .map_err(transport)?;
        let (status, body) = match &self.tls {
            None => exchange(TokioIo::new(tcp), request).await?,
            Some(connector) => {
                let name = ServerName::try_from(self.url.host.clone())
                    .map_err(|e| ManagementError::Transport(e.to_string()))?;
                let stream = connector.connect(name, tcp).await.map_err(transport)?;
                exchange(TokioIo::new(stream), request).await?
            }
        };
        match status {
            200 => parse_queue(&body),
            401 => Err(ManagementError::Unauthorized(self.user.clone())),
            404 => Err(ManagementError::NotFound),
            other => Err(ManagementError::Status(other)),
        }
    }
}

/// One HTTP/1.1 request on `io`; the status and the (bounded) body.
async fn exchange<I>(
    io: I,
    request: http::Request<Empty<Bytes>>,
) -> Result<(u16, Bytes), ManagementError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let transport = |e: hyper::Error| ManagementError::Transport(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(transport)?;
    let response = async {
        let response = sender.send_request(request).await.map_err(transport)?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| ManagementError::Body(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    };
    // The connection is driven here, in this future, instead of on a spawned task. With
    // `Connection: close` it may finish first; what it read is then buffered for the response.
    tokio::pin!(connection, response);
    tokio::select! {
        biased;
        result = &mut response => result,
        ended = &mut connection => match ended {
            Ok(()) => response.await,
            Err(e) => Err(ManagementError::Transport(e.to_string())),
        },
    }
}

/// The JSON of one queue, or None for the young-queue `[]`.
fn parse_queue(body: &[u8]) -> Result<Option<QueueInfo>, ManagementError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ManagementError::Body(e.to_string()))?;
    if value.as_array().is_some_and(|a| a.is_empty()) {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| ManagementError::Body(e.to_string()))
}

/// A TLS connector (ring) trusting the system roots and the PEM certificates of `ca_file`.
fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, ManagementError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let transport = |e: String| ManagementError::Transport(e);
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        use std::io::Read;
        let mut pem = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CA_BYTES).read_to_end(&mut pem))
            .map_err(|e| transport(format!("cannot read CA file {}: {e}", path.display())))?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| transport(format!("CA file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(transport(format!(
                "CA file {} holds no certificate",
                path.display()
            )));
        }
        roots.add_parsable_certificates(certs);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| transport(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Standard base64 (RFC 4648, padded), for the basic authentication header.
fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_without_credentials() {
        let u = ManagementUrl::parse("https://rabbit.ns.svc:15671/mgmt/").unwrap();
        assert_eq!(u.to_string(), "https://rabbit.ns.svc:15671/mgmt");
        let u = ManagementUrl::parse("http://[::1]:15672").unwrap();
        assert_eq!(u.to_string(), "http://[::1]:15672");
        assert_eq!(ManagementUrl::parse("http://h").unwrap().port, 80);
        let err = ManagementUrl::parse("http://u:s3cret@h:15672").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(err.to_string().contains("credentials"), "{err}");
        for bad in ["ftp://h", "http://", "http://h:x", "http://h/?a=1"] {
            assert!(ManagementUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queue_json_and_the_young_queue_pitfall() {
        let info = parse_queue(
            br#"{"type":"classic","head_message_timestamp":1795817750,"messages_unacknowledged":2}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(info.queue_type.as_deref(), Some("classic"));
        assert_eq!(info.head_message_timestamp, Some(1_795_817_750));
        assert_eq!(info.messages_unacknowledged, Some(2));
        let quorum = parse_queue(br#"{"type":"quorum"}"#).unwrap().unwrap();
        assert_eq!(quorum.head_message_timestamp, None);
        let null = parse_queue(br#"{"type":"classic","head_message_timestamp":null}"#).unwrap();
        assert_eq!(null.unwrap().head_message_timestamp, None);
        assert_eq!(parse_queue(b"[]").unwrap(), None);
        assert!(parse_queue(b"<html>").is_err());
    }

    #[test]
    fn basic_auth_is_rfc4648_and_debug_hides_it() {
        assert_eq!(base64(b"guest:guest"), "Z3Vlc3Q6Z3Vlc3Q=");
        let creds = AmqpUrl::parse("amqp://mon:s3cret@h/%2f").unwrap();
        let m = Management::new(
            ManagementUrl::parse("http://h:15672").unwrap(),
            &creds,
            None,
            Duration::from_secs(2),
        )
        .unwrap();
        let shown = format!("{m:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains(&base64(b"mon:s3cret")),
            "{shown}"
        );
    }
}
