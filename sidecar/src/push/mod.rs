//! Pushing reports to the aggregator: every address the aggregator's host name resolves to gets
//! its own stream ([`stream`]), fed from one shared [`backlog::Backlog`]. The name is re-resolved
//! periodically: replicas that went away are dropped, new ones start with the whole backlog, so
//! every replica holds the full picture without any coordination between them. After shutdown
//! the streams get a bounded time to deliver the goodbye report. With a token file ([`token`])
//! every call carries the pod's bound service-account token.

pub mod backlog;
pub mod stream;
pub mod token;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use dwell_runtime::periodic::{First, Ticker};
use http::Uri;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::telemetry::Metrics;
use backlog::Backlog;
use token::TokenFile;

/// Where reports go: the aggregator URL, split up.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given (for log lines).
    pub url: String,
    /// Host name (or IP literal) to resolve.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The URL as given, used as the HTTP/2 authority.
    pub origin: Uri,
    /// TLS settings for https (None: plain http).
    pub tls: Option<ClientTlsConfig>,
    /// The bearer token sent on every call (None: none is sent).
    pub token: Option<Arc<TokenFile>>,
}

/// Why an aggregator URL was refused (the caller names the URL and where it came from).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Not a URL at all.
    #[error("not a URL ({0})")]
    NotAUrl(http::uri::InvalidUri),
    /// Neither `http://` nor `https://`.
    #[error("must start with http:// or https://")]
    Scheme,
    /// A path after the authority (the gRPC paths are fixed).
    #[error("must not have a path")]
    Path,
    /// No host after the scheme.
    #[error("has no host")]
    NoHost,
}

/// Why TLS material was refused for a target (the caller names the file or flag it came from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// TLS material for a plain `http://` target.
    #[error("needs an https:// aggregator")]
    NotHttps,
    /// The client certificate file holds no PEM certificate.
    #[error("holds no PEM CERTIFICATE block")]
    NoCertificate,
    /// The client key file holds no PEM private key.
    #[error("holds no PEM PRIVATE KEY block")]
    NoPrivateKey,
}

impl Target {
    /// Parses `http://host:port` or `https://host:port` (port 80 or 443 when left out); https
    /// trusts the system roots.
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        let origin: Uri = url.parse().map_err(TargetError::NotAUrl)?;
        let https = match origin.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(TargetError::Scheme),
        };
        if origin.path() != "/" && !origin.path().is_empty() {
            return Err(TargetError::Path);
        }
        let host = origin
            .host()
            .filter(|h| !h.is_empty())
            .ok_or(TargetError::NoHost)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = origin.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = https.then(|| ClientTlsConfig::new().with_native_roots());
        Ok(Self {
            url: url.to_owned(),
            host,
            port,
            origin,
            tls,
            token: None,
        })
    }

    /// Sends the token of `file` as `authorization: Bearer …` on every call.
    pub fn with_token(mut self, file: Arc<TokenFile>) -> Self {
        self.token = Some(file);
        self
    }

    /// Also trusts the CA certificates in `ca_pem` (for an aggregator with a private CA).
    pub fn with_ca(mut self, ca_pem: &[u8]) -> Result<Self, TlsError> {
        let tls = self.tls.take().ok_or(TlsError::NotHttps)?;
        self.tls = Some(tls.ca_certificate(Certificate::from_pem(ca_pem)));
        Ok(self)
    }

    /// Presents a client certificate (PEM chain and key) on every https connection, for an
    /// aggregator that requires mTLS.
    pub fn with_identity(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<Self, TlsError> {
        let tls = self.tls.take().ok_or(TlsError::NotHttps)?;
        if !contains(&cert_pem, b"-----BEGIN CERTIFICATE-----") {
            return Err(TlsError::NoCertificate);
        }
        if !contains(&key_pem, b"PRIVATE KEY-----") {
            return Err(TlsError::NoPrivateKey);
        }
        self.tls = Some(tls.identity(Identity::from_pem(cert_pem, key_pem)));
        Ok(self)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Resolves (host, port) to the aggregator addresses; DNS in production, a fixed set in tests.
pub type Resolver = Arc<
    dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

/// The system resolver (a headless Service name yields one address per ready replica).
pub fn dns_resolver() -> Resolver {
    Arc::new(|host, port| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    })
}

/// Where and how reports are pushed.
#[derive(Debug, Clone)]
pub struct Config {
    /// The aggregator.
    pub target: Target,
    /// How often its name is re-resolved (replicas come and go behind a headless Service).
    pub resolve_interval: Duration,
    /// After shutdown, how long the goodbye report may take to be acknowledged everywhere.
    pub shutdown_timeout: Duration,
    /// How often the token file (if any) is checked for a new token.
    pub token_recheck: Duration,
}

/// Keeps one stream per resolved aggregator address.
pub struct Pusher {
    /// Where and how to push.
    pub config: Config,
    /// What to push.
    pub backlog: Arc<Backlog>,
    /// Self-metrics.
    pub metrics: Arc<Metrics>,
    /// How addresses are found.
    pub resolver: Resolver,
}

/// One address's stream task.
struct Worker {
    stop: CancellationToken,
    done: JoinHandle<()>,
}

impl Pusher {
    /// Streams to every resolved address until `shutdown`, then gives the streams up to the
    /// shutdown timeout to deliver what is left, the goodbye report included. The streams are
    /// spawned on `tasks` (the process's one tracker); they do not watch `shutdown` themselves,
    /// because the goodbye report is only queued once it fires.
    pub async fn run(self, shutdown: CancellationToken, tasks: TaskTracker) {
        // Cancelled once the goodbye may no longer be waited for; every stream stops with it.
        let abandon = CancellationToken::new();
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.config.shutdown_timeout).await;
        };
        tokio::select! {
            () = self.stream_until_goodbye(&shutdown, &abandon, &tasks) => {}
            () = deadline => {
                tracing::warn!(timeout = ?self.config.shutdown_timeout,
                    "shutdown timeout: not every aggregator acknowledged the goodbye report");
            }
        }
        abandon.cancel();
    }

    /// Keeps one stream per resolved address until `shutdown`, then waits for every stream to
    /// end (each ends once its replica acknowledged the goodbye report).
    async fn stream_until_goodbye(
        &self,
        shutdown: &CancellationToken,
        abandon: &CancellationToken,
        tasks: &TaskTracker,
    ) {
        let target = Arc::new(self.config.target.clone());
        let mut workers: BTreeMap<SocketAddr, Worker> = BTreeMap::new();
        let mut ticker = Ticker::new(self.config.resolve_interval, First::Now, shutdown);
        while ticker.tick().await {
            match self.resolve().await {
                Ok(addrs) if !addrs.is_empty() => {
                    workers.retain(|addr, worker| {
                        let keep = addrs.contains(addr);
                        if !keep {
                            tracing::info!(aggregator = %addr, "aggregator address gone; dropping its stream");
                            worker.stop.cancel();
                        }
                        keep
                    });
                    for addr in addrs {
                        if workers.contains_key(&addr) {
                            continue;
                        }
                        tracing::info!(aggregator = %addr, "new aggregator address; streaming to it");
                        let stop = abandon.child_token();
                        let done = tasks.spawn(stream::run(
                            addr,
                            target.clone(),
                            self.backlog.clone(),
                            stop.clone(),
                            self.metrics.clone(),
                        ));
                        workers.insert(addr, Worker { stop, done });
                    }
                }
                Ok(_) => {
                    tracing::warn!(host = %target.host, "aggregator name resolved to no address")
                }
                // Keep streaming to the known addresses: a DNS hiccup is not a replica leaving.
                Err(e) => {
                    tracing::warn!(host = %target.host, error = %e, "cannot resolve the aggregator")
                }
            }
            self.metrics.aggregator_addresses.set(workers.len() as i64);
        }
        for worker in workers.into_values() {
            let _ = worker.done.await;
        }
    }

    async fn resolve(&self) -> std::io::Result<BTreeSet<SocketAddr>> {
        let Target { host, port, .. } = &self.config.target;
        let addrs = (self.resolver)(host.clone(), *port).await?;
        Ok(addrs.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://dwell-aggregator.dwell.svc:50051").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.tls.is_none()),
            ("dwell-aggregator.dwell.svc", 50051, true)
        );
        let t = Target::parse("https://[::1]:8443").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.tls.is_some()),
            ("::1", 8443, true)
        );
        assert_eq!(Target::parse("https://agg").unwrap().port, 443);
        for bad in [
            "ftp://x:1",
            "x:1",
            "http://x:1/path",
            "http://",
            "not a url",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        let http = Target::parse("http://x:1").unwrap();
        assert_eq!(http.with_ca(b"pem").unwrap_err(), TlsError::NotHttps);
    }

    #[test]
    fn client_identity_needs_https_and_pem() {
        let cert = b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".to_vec();
        let key = b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n".to_vec();
        let http = Target::parse("http://x:1").unwrap();
        assert!(http.with_identity(cert.clone(), key.clone()).is_err());
        let https = || Target::parse("https://x:1").unwrap();
        assert!(
            https()
                .with_identity(b"nope".to_vec(), key.clone())
                .is_err()
        );
        assert!(
            https()
                .with_identity(cert.clone(), b"nope".to_vec())
                .is_err()
        );
        assert!(https().with_identity(cert, key).unwrap().tls.is_some());
    }

    /// After shutdown the goodbye gets the shutdown timeout, then every stream is given up.
    #[tokio::test]
    async fn the_goodbye_gets_the_shutdown_timeout_and_no_more() {
        let metrics = Metrics::new();
        let backlog = Backlog::new(10, metrics.clone());
        // Nothing listens on port 1: the goodbye can never be delivered.
        let resolver: Resolver =
            Arc::new(|_, _| Box::pin(async { Ok(vec![SocketAddr::from(([127, 0, 0, 1], 1))]) }));
        let timeout = Duration::from_millis(300);
        let pusher = Pusher {
            config: Config {
                target: Target::parse("http://agg:1").unwrap(),
                resolve_interval: Duration::from_secs(10),
                shutdown_timeout: timeout,
                token_recheck: token::RECHECK,
            },
            backlog: backlog.clone(),
            metrics: metrics.clone(),
            resolver,
        };
        let (shutdown, tasks) = (CancellationToken::new(), TaskTracker::new());
        let pushing = tasks.spawn(pusher.run(shutdown.clone(), tasks.clone()));
        tasks.close();
        tokio::time::timeout(Duration::from_secs(10), async {
            while metrics.stream_failures.get() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the stream tries and fails");
        backlog.push(dwell_proto::v1::Report {
            seq: 1,
            goodbye: true,
            ..Default::default()
        });
        let stopped = tokio::time::Instant::now();
        shutdown.cancel();
        pushing.await.unwrap();
        let waited = stopped.elapsed();
        assert!(
            waited >= timeout && waited < timeout * 5,
            "waited {waited:?}"
        );
        tokio::time::timeout(Duration::from_secs(2), tasks.wait())
            .await
            .expect("the abandoned stream stops too");
    }
}
