//! dwell's aggregator: takes what sidecars observed (gRPC ingest), keeps a bounded window per
//! source, turns it into one number per metric through the configured rules, and serves it on the
//! Kubernetes custom and external metrics APIs over HTTPS.
//!
//! See ARCHITECTURE.md for the data path and one line per module.

pub mod cli;
pub mod clock;
pub mod config;
pub mod engine;
pub mod memstore;
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
    let _telemetry = Arc::new(Telemetry::new());
    let metrics_listener = TcpListener::bind(metrics_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --metrics-addr {metrics_addr}: {e}"))?;
    let grpc_listener = TcpListener::bind(grpc_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --grpc-addr {grpc_addr}: {e}"))?;
    let tracker = TaskTracker::new();
    // --- HTTPS metrics API (api, tls) wires in here ---
    drop(metrics_listener);
    // --- gRPC ingest (ingest, engine, config) wires in here ---
    drop(grpc_listener);
    tracker.close();
    shutdown.cancelled().await;
    tracker.wait().await;
    Ok(())
}
