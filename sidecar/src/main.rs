//! `dwell-sidecar`: parse the command line, boot (ring as the crypto provider, logging), run
//! until SIGTERM.
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = dwell_sidecar::cli::Args::parse();
    dwell_runtime::boot(args.log_format)?;
    dwell_sidecar::app::run(args, dwell_runtime::signal::shutdown_on_signal()).await
}
