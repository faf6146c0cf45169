//! The gRPC server: Ingest, Inspect, `grpc.health.v1` and reflection (v1 and v1alpha), served
//! on a bound listener until a shutdown token fires, plaintext or TLS with optional mTLS
//! ([`serve`], over the shared accept loop with its connection limit), or on any stream of
//! connections ([`serve_incoming`]); each connection with the HTTP/2 stream limit and
//! keepalive of the service's `IngestLimits`.
use std::net::SocketAddr;

use dwell_runtime::accept::Listener;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;
use tonic::transport::server::Connected;

use crate::inspect::InspectService;
use crate::tls::TlsConfig;

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

/// Serves on `listener` until `shutdown`: over TLS when `tls` is given (each connection gets
/// the configuration current when accepted, so certificates rotate), else plaintext. Accepting
/// and handshakes run as tasks on `tracker`. Logs `gRPC listening on ADDR` once ready.
pub async fn serve(
    listener: Listener,
    tls: Option<TlsConfig>,
    ingest: IngestService,
    inspect: InspectService,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let addr: SocketAddr = listener.local_addr()?;
    match tls {
        Some(tls) => {
            tracing::info!("gRPC listening on {addr} (TLS)");
            let handshake = dwell_runtime::tls::HANDSHAKE_TIMEOUT;
            let incoming =
                dwell_runtime::tls::incoming(listener, tls, handshake, tracker, &shutdown);
            serve_incoming(incoming, ingest, inspect, shutdown).await
        }
        None => {
            tracing::info!("gRPC listening on {addr}");
            let incoming = dwell_runtime::tls::plaintext(listener, tracker, &shutdown);
            serve_incoming(incoming, ingest, inspect, shutdown).await
        }
    }
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
    health.set_serving::<super::grpc::IngestServer>().await;
    health
        .set_serving::<dwell_proto::v1::inspect_server::InspectServer<InspectService>>()
        .await;
    // Per connection: at most this many streams at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS:
    // a client queues more; one that ignores it gets REFUSED_STREAM), and server pings that
    // close a connection whose peer stopped answering.
    let limits = *ingest.caller_limits();
    Server::builder()
        .max_concurrent_streams(Some(limits.max_streams_per_connection))
        .http2_keepalive_interval(limits.keepalive_interval)
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ingest.into_server())
        .add_service(inspect.into_server())
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    Ok(())
}
