//! dwell's aggregator: takes what sidecars observed (gRPC ingest), keeps a bounded window per
//! source, turns it into one number per metric through the configured rules, and serves it on the
//! Kubernetes custom and external metrics APIs over HTTPS.
//!
//! See ARCHITECTURE.md for the data path and one line per module.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod engine;
pub mod ingest;
pub mod inspect;
pub mod policy;
pub mod provider;
pub mod quantity;
pub mod selector;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod window;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::Args;
use crate::telemetry::Telemetry;

/// Binds both listeners and serves until `shutdown` is cancelled, then drains.
pub async fn run(args: Args, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Args {
        metrics_addr,
        grpc_addr,
        ..
    } = args.clone();
    let telemetry = Arc::new(Telemetry::new());
    let metrics_listener = TcpListener::bind(metrics_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --metrics-addr {metrics_addr}: {e}"))?;
    let grpc_listener = TcpListener::bind(grpc_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --grpc-addr {grpc_addr}: {e}"))?;
    let tracker = TaskTracker::new();

    // The engine (rules + window) is what gRPC ingest feeds and the HTTPS API serves from.
    let (engine, config_text) = engine::build(&args, &telemetry)?;
    let provider: Arc<dyn provider::MetricsProvider> = engine.clone();

    // HTTPS metrics API: TLS (with certificate hot reload) in front of the axum router, asking
    // for client certificates when a client CA is configured.
    let authenticator = api::auth::Authenticator::new(&api::auth::AuthSettings::from_args(&args))
        .map_err(|e| anyhow::anyhow!("metrics API authentication: {e}"))?
        .map(Arc::new);
    let mut tls_settings = tls::TlsSettings::from_args(&args);
    match &authenticator {
        Some(auth) => tls_settings.options.client_verifier = Some(auth.handshake_verifier()),
        None => tracing::warn!(
            "metrics API authenticates NOBODY: anyone who reaches it can read metrics; set \
             --requestheader-client-ca (and --requestheader-allowed-names) or --client-ca"
        ),
    }
    let mut tls =
        tls::TlsSetup::new(&tls_settings).map_err(|e| anyhow::anyhow!("metrics API TLS: {e}"))?;
    tls.spawn_reloader(&tracker, shutdown.clone());
    let api = api::router(
        api::ApiState::new(provider, telemetry.clone()).with_authenticator(authenticator),
    );
    tracing::info!(
        "metrics API listening on https://{}",
        metrics_listener.local_addr()?
    );
    tracker.spawn(tls::serve(
        metrics_listener,
        tls.config.clone(),
        api,
        shutdown.clone(),
    ));

    // gRPC ingest + inspect + health + reflection, the config watcher and the window sweeper.
    let grpc_tls = tls::TlsSettings::grpc_from_args(&args)
        .and_then(|settings| settings.as_ref().map(tls::TlsSetup::new).transpose())
        .map_err(|e| anyhow::anyhow!("gRPC TLS: {e}"))?;
    ingest::server::spawn_all(
        &tracker,
        &args,
        engine,
        config_text,
        grpc_listener,
        grpc_tls,
        &telemetry,
        &shutdown,
    );

    tracker.close();
    shutdown.cancelled().await;
    tracker.wait().await;
    Ok(())
}
