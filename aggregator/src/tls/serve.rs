//! HTTPS serving: connections come from the shared TLS accept loop (`dwell_runtime::tls`: a
//! connection limit, a handshake deadline, the configuration current at accept time), each is
//! served in a task on the process's tracker over HTTP/2 or HTTP/1.1 by ALPN, with the verified
//! client certificate chain (if any) on every request as [`PeerCertificates`], and all of them are
//! drained gracefully on shutdown. Never plain HTTP. A request the API's response memo holds an
//! answer for is answered without routing ([`Api::remembered`]).
use std::sync::Arc;
use std::time::Duration;

use dwell_runtime::accept::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio_stream::StreamExt;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::{PeerCertificates, TlsConfig};
use crate::api::Api;

/// An HTTP/1.1 client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// On shutdown, in-flight requests get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `api` over TLS on `listener` until `shutdown` is cancelled, then stops accepting
/// and drains open connections. Handshakes and connections run as tasks on `tracker`.
pub async fn serve(
    listener: Listener,
    tls: TlsConfig,
    api: Api,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let handshake = dwell_runtime::tls::HANDSHAKE_TIMEOUT;
    let mut conns = dwell_runtime::tls::incoming(listener, tls, handshake, &tracker, &shutdown);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    loop {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => break,
            conn = conns.next() => match conn {
                Some(Ok(conn)) => conn,
                Some(Err(_)) => continue,
                None => break,
            },
        };
        let peer = conn.peer();
        // The chain the handshake verified, for the API's authentication per request.
        let peer_certs = conn
            .get_ref()
            .get_ref()
            .1
            .peer_certificates()
            .map(|chain| PeerCertificates(Arc::new(chain.to_vec())));
        let api = api.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                if let Some(certs) = &peer_certs {
                    req.extensions_mut().insert(certs.clone());
                }
                match api.remembered(&req) {
                    Some(response) => Either::Left(std::future::ready(Ok(response))),
                    None => Either::Right(api.router().clone().oneshot(req)),
                }
            });
        let served = builder
            .serve_connection_with_upgrades(TokioIo::new(conn), service)
            .into_owned();
        let watched = graceful.watch(served);
        tracker.spawn(async move {
            if let Err(error) = watched.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(conns);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("metrics API connections still open after the drain timeout; closing");
    }
}
