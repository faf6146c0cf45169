//! `dwell-aggregator`: parse the command line, install the crypto provider, run until SIGTERM.
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One crypto provider (ring) for the whole process; see ARCHITECTURE.md.
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls CryptoProvider was already installed"))?;
    let args = dwell_aggregator::cli::Args::parse();
    dwell_aggregator::telemetry::init_logging(&args.log_format);
    dwell_aggregator::run(args, dwell_aggregator::shutdown::on_signal()).await
}
