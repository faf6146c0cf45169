//! `dwell-aggregator`: parse the command line, set up the process, run until SIGTERM.
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = dwell_aggregator::cli::Args::parse();
    dwell_runtime::boot(args.log_format)?;
    dwell_aggregator::app::run(args, dwell_runtime::signal::shutdown_on_signal()).await
}
