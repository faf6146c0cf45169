//! `dwell-aggregator`: parse the command line, then run the server until SIGTERM, or a tool
//! (`inject`) once.
use clap::Parser;
use dwell_aggregator::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Inject(args)) => dwell_aggregator::app::inject(args),
        None => {
            dwell_runtime::boot(cli.server.log_format)?;
            dwell_aggregator::app::run(cli.server, dwell_runtime::signal::shutdown_on_signal())
                .await
        }
    }
}
