//! dwell's sidecar: samples message timestamps beside a consumer and pushes compact reports to the
//! aggregator. It never publishes, acks, purges or holds a business message.

pub mod cli;

/// Runs the sidecar until SIGTERM.
pub async fn run(_args: cli::Args) -> anyhow::Result<()> {
    Ok(())
}
