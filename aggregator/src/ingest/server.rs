//! The gRPC server: Ingest, Inspect, `grpc.health.v1` and reflection (v1 and v1alpha), served
//! on a bound listener until a shutdown token fires: plaintext ([`serve`]) or TLS with optional
//! mTLS ([`serve_tls`]), both through [`serve_incoming`], which takes any stream of connections.
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::Connected;

use crate::inspect::InspectService;
use crate::tls::{TlsConfig, TlsSetup};

use super::IngestService;

/// Why the gRPC server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Reflection could not load the descriptor set.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The listener has no address.
    #[error("gRPC listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// Serves on a bound plaintext `listener`; logs `gRPC listening on ADDR` once ready.
pub async fn serve(
    listener: TcpListener,
    ingest: IngestService,
    inspect: InspectService,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!("gRPC listening on {addr}");
    serve_incoming(TcpListenerStream::new(listener), ingest, inspect, shutdown).await
}

/// A client that has not finished the TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves over TLS on a bound `listener` (each connection gets the configuration current when
/// accepted, so certificates rotate); logs `gRPC listening on ADDR (TLS…)` once ready.
pub async fn serve_tls(
    listener: TcpListener,
    tls: TlsConfig,
    ingest: IngestService,
    inspect: InspectService,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!("gRPC listening on {addr} (TLS)");
    let incoming = tls_incoming(listener, tls, shutdown.clone());
    serve_incoming(incoming, ingest, inspect, shutdown).await
}

/// Accepts TCP connections and completes each TLS handshake in its own task (a slow or hostile
/// client never holds up the others), yielding only finished handshakes.
fn tls_incoming(
    listener: TcpListener,
    tls: TlsConfig,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // e.g. EMFILE: back off briefly instead of spinning, and keep serving.
                        tracing::warn!(%error, "gRPC accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        let _ = tx.send(Ok(tls_stream)).await;
                    }
                    // Info, not debug: a refused client certificate is what an operator
                    // setting up mTLS needs to see.
                    Ok(Err(error)) => {
                        tracing::info!(%peer, %error, "gRPC TLS handshake refused")
                    }
                    Err(_) => tracing::debug!(%peer, "gRPC TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Serves on any stream of accepted connections until `shutdown`.
pub async fn serve_incoming<I, IO, IE>(
    incoming: I,
    ingest: IngestService,
    inspect: InspectService,
    shutdown: CancellationToken,
) -> Result<(), ServeError>
where
    I: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Each builder lists its own reflection service; register the other's so both list alike.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(dwell_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(dwell_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<dwell_proto::v1::ingest_server::IngestServer<IngestService>>()
        .await;
    health
        .set_serving::<dwell_proto::v1::inspect_server::InspectServer<InspectService>>()
        .await;
    Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ingest.into_server())
        .add_service(inspect.into_server())
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// Spawns the gRPC server (TLS when `tls` is given, its certificate watcher too), the window
/// sweeper and (with `--config`) the config watcher on `tracker`. A server failure is logged and
/// stops the process through `shutdown`.
#[allow(clippy::too_many_arguments)]
pub fn spawn_all(
    tracker: &tokio_util::task::TaskTracker,
    args: &crate::cli::Args,
    engine: std::sync::Arc<crate::engine::Engine>,
    config_text: Option<Vec<u8>>,
    listener: TcpListener,
    tls: Option<TlsSetup>,
    telemetry: &crate::telemetry::Telemetry,
    shutdown: &CancellationToken,
) {
    let metrics = super::IngestMetrics::default();
    metrics.register(telemetry);
    let limits = super::Limits {
        max_samples: args.max_report_samples,
        max_message_bytes: args.max_report_bytes,
        ..super::Limits::default()
    };
    let ingest = IngestService::new(
        engine.store().clone(),
        engine.clock().clone(),
        limits,
        metrics.clone(),
        shutdown.clone(),
    );
    let inspect = InspectService::new(engine.clone());
    let token = shutdown.clone();
    let tls = tls.map(|mut setup| {
        setup.spawn_reloader(tracker, shutdown.clone());
        setup.config
    });
    if let (Some(_), Some(ca)) = (&tls, &args.grpc_client_ca) {
        tracing::info!(
            ca = %ca.display(),
            "gRPC clients must present a certificate signed by --grpc-client-ca (mTLS)"
        );
    } else if tls.is_some() {
        tracing::warn!(
            "gRPC ingest is encrypted but UNAUTHENTICATED: any client may push reports; \
             set --grpc-client-ca"
        );
    } else {
        tracing::warn!(
            "gRPC ingest is PLAINTEXT and UNAUTHENTICATED: anyone who reaches the gRPC port can \
             push reports; set --grpc-tls-cert/--grpc-tls-key and --grpc-client-ca"
        );
    }
    tracker.spawn(async move {
        let served = match tls {
            Some(tls) => serve_tls(listener, tls, ingest, inspect, token.clone()).await,
            None => serve(listener, ingest, inspect, token.clone()).await,
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "gRPC server failed; shutting down");
            token.cancel();
        }
    });
    tracker.spawn(super::sweeper::run(
        engine.clone(),
        metrics,
        args.sweep_interval,
        shutdown.clone(),
    ));
    if let Some(path) = args.config.clone() {
        let apply = move |rules| engine.set_rules(rules);
        tracker.spawn(crate::config::watch::watch(
            path,
            config_text,
            args.config_poll_interval,
            apply,
            shutdown.clone(),
        ));
    }
}
