//! A TCP proxy in front of the shared broker that a test can cut and restore: "the broker going
//! away" for one client only, without stopping the broker everyone's tests use. Optionally it
//! terminates TLS (a test CA's certificate) so `amqps://` is tested against the real broker.
//! Shared by dwell-amqp's and the aggregator's watch tests (included with `#[path]`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A running proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards each connection to `upstream`; with `tls`, the
    /// client side is TLS terminated here.
    pub async fn start(upstream: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (o, c, a, s) = (open.clone(), cuts.clone(), accepted.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accept = tokio::select! {
                    _ = s.cancelled() => return,
                    r = listener.accept() => r,
                };
                let Ok((client, _)) = accept else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                if !o.load(Ordering::SeqCst) {
                    drop(client); // cut: the connection is refused at once
                    continue;
                }
                let mut cut = c.subscribe();
                let (tls, stop) = (tls.clone(), s.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let pipe = async {
                        match tls {
                            None => {
                                let mut client = client;
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                            Some(acceptor) => {
                                if let Ok(mut client) = acceptor.accept(client).await {
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server)
                                        .await;
                                }
                            }
                        }
                    };
                    tokio::select! {
                        _ = pipe => {}
                        _ = cut.changed() => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        Self {
            addr,
            open,
            cuts,
            accepted,
            stop,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Connections accepted so far (forwarded or refused).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The broker's address from an AMQP URL (`DWELL_TEST_AMQP_URL`).
pub fn broker_addr(url: &str) -> SocketAddr {
    let url = dwell_amqp::AmqpUrl::parse(url).expect("test broker URL");
    let host = if url.host() == "localhost" {
        "127.0.0.1"
    } else {
        url.host()
    };
    std::net::ToSocketAddrs::to_socket_addrs(&(host, url.port()))
        .expect("resolve broker")
        .next()
        .expect("broker address")
}

/// The test broker URL rewritten to go through `proxy` (scheme `amqp` or `amqps`, host `host`).
pub fn through(url: &str, scheme: &str, host: &str, proxy: SocketAddr) -> String {
    let rest = &url[url.find("://").expect("URL") + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let userinfo = rest[..authority_end].rsplit_once('@').map(|(u, _)| u);
    let path = &rest[authority_end..];
    match userinfo {
        Some(u) => format!("{scheme}://{u}@{host}:{}{path}", proxy.port()),
        None => format!("{scheme}://{host}:{}{path}", proxy.port()),
    }
}

/// A TLS acceptor serving a certificate for `localhost` signed by `ca`.
pub fn tls_acceptor(ca: &dwell_e2e::certs::TestCa) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let cert = ca.issue(&["localhost"]);
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("cert PEM");
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key PEM");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
