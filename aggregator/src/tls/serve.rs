//! The HTTPS accept loop: TLS on every connection (never plain HTTP), HTTP/2 or HTTP/1.1 by
//! ALPN, a handshake deadline, per-connection tasks so one bad client never stops the loop, the
//! verified client certificate chain (if any) on every request as [`PeerCertificates`], and a
//! graceful drain on shutdown.
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{PeerCertificates, TlsConfig};

/// A client that has not finished the TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1.1 client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// On shutdown, in-flight requests get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over TLS on `listener` until `shutdown` is cancelled, then stops accepting
/// and drains open connections. Each connection uses the configuration current when accepted.
pub async fn serve(
    listener: TcpListener,
    tls: TlsConfig,
    router: Router,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // e.g. EMFILE: back off briefly instead of spinning, and keep serving.
                    tracing::warn!(%error, "metrics API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = TlsAcceptor::from(tls.current());
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls_stream = tokio::select! {
                _ = conn_shutdown.cancelled() => return,
                handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => {
                    match handshake {
                        Ok(Ok(s)) => s,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            // The chain the handshake verified, for the API's authentication per request.
            let peer_certs = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|chain| PeerCertificates(Arc::new(chain.to_vec())));
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    if let Some(certs) = &peer_certs {
                        req.extensions_mut().insert(certs.clone());
                    }
                    router.clone().oneshot(req)
                },
            );
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(tls_stream), service)
                .into_owned();
            if let Err(error) = watcher.watch(conn).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("metrics API connections still open after the drain timeout; closing");
    }
}
