//! The TLS side of the accept loop, shared by the aggregator's HTTPS and gRPC servers: each
//! handshake runs in its own task under a deadline (a slow or hostile client never holds up the
//! others, nor a connection slot for long), with the server configuration current when the
//! connection was accepted (so certificates rotate without a restart); only finished handshakes
//! come out.
use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio::sync::mpsc::Sender;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::{Conn, Listener};

/// A client that has not finished the TLS handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where each new connection's server configuration comes from (a hot-reloaded one, or fixed).
pub trait ServerConfigSource: Send + Sync + 'static {
    /// The configuration for a connection accepted now.
    fn current(&self) -> Arc<ServerConfig>;
}

impl ServerConfigSource for Arc<ServerConfig> {
    fn current(&self) -> Arc<ServerConfig> {
        self.clone()
    }
}

/// A connection whose TLS handshake finished.
pub type TlsConn = Conn<TlsStream<TcpStream>>;

/// Finished handshakes waiting for the server to take them.
const READY_BUFFER: usize = 64;

/// Accepts on `listener` until `shutdown`, runs each handshake within `handshake_timeout` in a
/// task on `tracker`, and yields the connections that completed one.
pub fn incoming(
    listener: Listener,
    tls: impl ServerConfigSource,
    handshake_timeout: Duration,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> ReceiverStream<io::Result<TlsConn>> {
    let name = listener.name();
    pump(listener, tracker, shutdown, move |conn, tx, shutdown| {
        let acceptor = TlsAcceptor::from(tls.current());
        async move {
            let peer = conn.peer();
            let handshake = conn.upgrade(|io| acceptor.accept(io));
            tokio::select! {
                _ = shutdown.cancelled() => {}
                done = tokio::time::timeout(handshake_timeout, handshake) => match done {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    // Info, not debug: a refused client certificate is what an operator
                    // setting up mTLS needs to see.
                    Ok(Err(error)) => {
                        tracing::info!(listener = name, %peer, %error, "{name} TLS handshake refused")
                    }
                    Err(_) => {
                        tracing::debug!(listener = name, %peer, "{name} TLS handshake timed out")
                    }
                },
            }
        }
    })
}

/// Accepts on `listener` until `shutdown` and yields every connection as it is (plaintext).
pub fn plaintext(
    listener: Listener,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> ReceiverStream<io::Result<Conn<TcpStream>>> {
    pump(listener, tracker, shutdown, |conn, tx, _| async move {
        let _ = tx.send(Ok(conn)).await;
    })
}

/// The accept loop behind both: each accepted connection goes to `prepare` in its own task on
/// `tracker`, which sends it on (or drops it); the loop ends with `shutdown` or when nobody
/// reads the stream any more.
fn pump<T, F, Fut>(
    listener: Listener,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    mut prepare: F,
) -> ReceiverStream<io::Result<T>>
where
    T: Send + 'static,
    F: FnMut(Conn<TcpStream>, Sender<io::Result<T>>, CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(READY_BUFFER);
    let (tasks, shutdown) = (tracker.clone(), shutdown.clone());
    tracker.spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = tx.closed() => return,
                conn = listener.accept(&shutdown) => match conn {
                    Some(conn) => conn,
                    None => return,
                },
            };
            tasks.spawn(prepare(conn, tx.clone(), shutdown.clone()));
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_stream::StreamExt;

    fn configs() -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = CertificateDer::from(made.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    #[tokio::test]
    async fn a_silent_client_does_not_hold_up_a_real_one() {
        let (server, client) = configs();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let listener = Listener::new(tcp, "test", 4);
        let mut conns = incoming(
            listener,
            server,
            Duration::from_secs(5),
            &tracker,
            &shutdown,
        );
        // Connects and never sends a ClientHello.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let talker = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let connector = tokio_rustls::TlsConnector::from(client);
            let name = ServerName::try_from("localhost").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            tls.write_all(b"ping").await.unwrap();
            tls.flush().await.unwrap();
            tls
        });
        let mut conn = conns.next().await.unwrap().unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        drop(talker.await.unwrap());
        shutdown.cancel();
        tracker.close();
        drop(conns);
        tracker.wait().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_handshake_past_its_deadline_frees_its_slot() {
        let (server, _) = configs();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let listener = Listener::new(tcp, "test", 1);
        let _conns = incoming(
            listener,
            server,
            Duration::from_secs(1),
            &tracker,
            &shutdown,
        );
        let mut silent = TcpStream::connect(addr).await.unwrap();
        // The server gives up on the handshake and closes: the read sees EOF.
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(30), silent.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        shutdown.cancel();
    }
}
