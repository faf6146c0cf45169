//! `dwell-sidecar`: parse the command line, install the crypto provider, run until SIGTERM.
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One crypto provider (ring) for the whole process; see ARCHITECTURE.md.
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls CryptoProvider was already installed"))?;
    let args = dwell_sidecar::cli::Args::parse();
    dwell_sidecar::run(args).await
}
