//! HTTPS on loopback for the read benchmarks: a keep-alive HTTP/1.1 client over rustls (the
//! servers' self-signed certificates are accepted, as this only ever talks to 127.0.0.1), a
//! closed-loop load driver, and the "ceiling" server that answers fixed bytes from memory with the
//! same stack as the aggregator (hyper-util auto builder + tokio-rustls + ring).
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

use crate::stats::Latencies;

/// Accepts any certificate: the benchmarks only connect to servers they started on 127.0.0.1.
#[derive(Debug)]
struct LoopbackOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for LoopbackOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connector for loopback servers, HTTP/1.1 by ALPN.
pub fn connector() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LoopbackOnly(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// One keep-alive HTTPS connection.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: String,
}

impl Conn {
    /// Connects and completes the TLS and HTTP/1.1 handshakes.
    pub async fn open(connector: &TlsConnector, addr: SocketAddr) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(addr.ip().into());
        let tls = connector.connect(name, tcp).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: addr.to_string(),
        })
    }

    /// GETs `path`, returning the status and the whole body.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Bytes)> {
        let req = http::Request::get(path)
            .header(http::header::HOST, &self.host)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// GETs `path` once on a fresh connection.
pub async fn get_once(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Bytes)> {
    Conn::open(&connector(), addr).await?.get(path).await
}

/// Result of a closed-loop run.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Successful requests per second.
    pub rps: f64,
    /// Latencies of successful requests.
    pub latencies: Latencies,
}

/// Closed loop: `connections` keep-alive connections each send `path` back to back for
/// `duration`; counts 2xx answers.
pub async fn closed_loop(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let connector = connector();
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Conn::open(&connector, addr).await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let path = path.to_string();
        tasks.spawn(async move {
            let mut lat = Latencies::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                match conn.get(&path).await {
                    Ok((s, _)) if (200..300).contains(&s) => lat.record(t.elapsed()),
                    Ok(_) => lat.errors += 1,
                    Err(_) => {
                        lat.errors += 1;
                        break;
                    }
                }
            }
            lat
        });
    }
    let mut all = Latencies::default();
    while let Some(r) = tasks.join_next().await {
        all.extend(&r?);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(LoadResult {
        rps: all.len() as f64 / secs,
        latencies: all,
    })
}

/// A self-signed server config for 127.0.0.1 (h2 and HTTP/1.1 by ALPN, like the aggregator).
pub fn self_signed_server_config() -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])?;
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The ceiling: answers every request with `body` (JSON) from memory, over the same stack as the
/// aggregator, until `shutdown`.
pub async fn serve_fixed(
    listener: TcpListener,
    body: Bytes,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let acceptor = TlsAcceptor::from(self_signed_server_config()?);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            a = listener.accept() => a?,
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, builder, body) = (acceptor.clone(), builder.clone(), body.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper::service::service_fn(move |_req| {
                let body = body.clone();
                async move {
                    http::Response::builder()
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Full::new(body))
                }
            });
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
