//! HTTPS serving: connections come from the shared TLS accept loop (`dwell_runtime::tls`: a
//! connection limit, a handshake deadline, the configuration current at accept time), each is
//! served in a task on the process's tracker over HTTP/2 or HTTP/1.1 by ALPN, with the verified
//! client certificate chain (if any) on every request as [`PeerCertificates`], and all of them are
//! drained gracefully on shutdown. Never plain HTTP. A request the API's response memo holds an
//! answer for is answered without routing ([`Api::remembered`]).
//!
//! Limits ([`HttpsLimits`]), so slow or idle clients cannot keep the connection slots
//! (`--metrics-max-connections`; beyond it new connections wait in the kernel's backlog):
//! - **header read** (HTTP/1.1): a request's head must arrive within it, counted from when the
//!   connection starts waiting for it, so it also bounds a kept-alive connection between
//!   requests (hyper's timer); a client sending a header byte a second is closed by it;
//! - **idle** (both protocols; HTTP/2's only bound, as kube-apiserver keeps HTTP/2 connections):
//!   a connection with no request in flight for that long is closed gracefully (HTTP/2 GOAWAY).
//!
//! Each close is counted (`dwell_metrics_api_connections_closed_total{reason}`), and the open
//! connections are a gauge next to their limit.
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use dwell_runtime::accept::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::{PeerCertificates, TlsConfig};
use crate::api::Api;

/// On shutdown, in-flight requests get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Bounds on how long a connection may hold a slot without progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpsLimits {
    /// HTTP/1.1: the most a request's head may take (and a kept-alive connection may wait).
    pub header_read_timeout: Duration,
    /// The most a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
}

impl Default for HttpsLimits {
    /// 10 s to send a head (a real client sends it at once; kube-apiserver's own is 32 s), and
    /// 120 s idle: above Go's 90 s idle-connection pool, so clients close idle connections first.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    reason: &'static str,
}

/// The connection counters of the metrics API.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    closed: Family<CloseLabels, Counter>,
    open: Gauge,
    limit: Gauge,
}

impl ConnectionMetrics {
    /// Registers the families; `max_connections` is exported as the limit.
    pub fn register(&self, telemetry: &crate::telemetry::Telemetry, max_connections: usize) {
        self.limit
            .set(i64::try_from(max_connections).unwrap_or(i64::MAX));
        telemetry.register(
            "metrics_api_connections_closed",
            "Metrics API connections closed by a limit (header_read_timeout, idle_timeout)",
            self.closed.clone(),
        );
        telemetry.register(
            "metrics_api_connections_open",
            "Metrics API connections open (TLS established)",
            self.open.clone(),
        );
        telemetry.register(
            "metrics_api_connections_max",
            "--metrics-max-connections: beyond it new connections wait in the backlog",
            self.limit.clone(),
        );
    }

    fn closed(&self, reason: &'static str) {
        self.closed.get_or_create(&CloseLabels { reason }).inc();
    }
}

/// Requests in flight on one connection and when the last one ended (ms since `start`).
struct Activity {
    start: Instant,
    in_flight: AtomicI64,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            in_flight: AtomicI64::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    /// When the connection will have been idle for `timeout` (None: a request is in flight).
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0).then(|| {
            self.start + Duration::from_millis(self.last_ms.load(Ordering::Acquire)) + timeout
        })
    }
}

/// Marks one request in flight until dropped (also when the client resets it).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `api` over TLS on `listener` with the default [`HttpsLimits`] (see [`serve_with`]).
pub async fn serve(
    listener: Listener,
    tls: TlsConfig,
    api: Api,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let metrics = ConnectionMetrics::default();
    serve_with(
        listener,
        tls,
        api,
        HttpsLimits::default(),
        metrics,
        tracker,
        shutdown,
    )
    .await
}

/// Serves `api` over TLS on `listener` until `shutdown` is cancelled, then stops accepting
/// and drains open connections. Handshakes and connections run as tasks on `tracker`.
pub async fn serve_with(
    listener: Listener,
    tls: TlsConfig,
    api: Api,
    limits: HttpsLimits,
    metrics: ConnectionMetrics,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let handshake = dwell_runtime::tls::HANDSHAKE_TIMEOUT;
    let mut conns = dwell_runtime::tls::incoming(listener, tls, handshake, &tracker, &shutdown);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    // By ALPN, so no connection sits in protocol detection; without ALPN, detection (bounded
    // by the idle timeout).
    let (h1, h2) = (builder.clone().http1_only(), builder.clone().http2_only());
    let connections = TaskTracker::new();
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
        let session = &conn.get_ref().get_ref().1;
        // The chain the handshake verified, for the API's authentication per request.
        let peer_certs = session
            .peer_certificates()
            .map(|chain| PeerCertificates(Arc::new(chain.to_vec())));
        let builder = match session.alpn_protocol() {
            Some(b"h2") => h2.clone(),
            Some(_) => h1.clone(),
            None => builder.clone(),
        };
        let api = api.clone();
        let activity = Activity::new();
        let requests = activity.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                if let Some(certs) = &peer_certs {
                    req.extensions_mut().insert(certs.clone());
                }
                let in_flight = InFlight::new(&requests);
                let remembered = api.remembered(&req);
                let router = api.router().clone();
                async move {
                    let _in_flight = in_flight;
                    match remembered {
                        Some(response) => Ok(response),
                        None => router.oneshot(req).await,
                    }
                }
            });
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        metrics.open.inc();
        tracker.spawn(connections.track_future(async move {
            let served = builder.serve_connection_with_upgrades(TokioIo::new(conn), service);
            tokio::pin!(served);
            let mut drain_until: Option<Instant> = None;
            let mut closing = false;
            let ended = loop {
                let idle_at = activity
                    .idle_deadline(limits.idle_timeout)
                    .filter(|_| !closing);
                tokio::select! {
                    ended = served.as_mut() => break Some(ended),
                    _ = shutdown.cancelled(), if drain_until.is_none() => {
                        drain_until = Some(Instant::now() + DRAIN_TIMEOUT);
                        closing = true;
                        served.as_mut().graceful_shutdown();
                    }
                    _ = sleep_until_some(drain_until) => break None,
                    _ = sleep_until_some(idle_at) => {
                        // Still idle (a request may have come and gone meanwhile)?
                        if activity.idle_deadline(limits.idle_timeout).is_some_and(|at| at <= Instant::now()) {
                            metrics.closed("idle_timeout");
                            closing = true;
                            served.as_mut().graceful_shutdown();
                        }
                    }
                }
            };
            metrics.open.dec();
            match ended {
                Some(Err(error)) => {
                    let timed_out = error
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if timed_out {
                        metrics.closed("header_read_timeout");
                    }
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                None => {
                    tracing::warn!(%peer, "metrics API connection still open after the drain timeout; closing");
                }
                Some(Ok(())) => {}
            }
        }));
    }
    drop(conns);
    connections.close();
    connections.wait().await;
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
