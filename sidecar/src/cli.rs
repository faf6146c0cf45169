//! Command-line flags (each with a `DWELL_…` environment twin).

/// dwell sidecar: measures how long messages waited in the queue and streams it to the aggregator.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "dwell-sidecar", version, about, long_about)]
pub struct Args {
    /// Aggregator gRPC endpoint (http:// or https://); every address the name resolves to gets a stream.
    #[arg(
        long,
        env = "DWELL_AGGREGATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub aggregator: String,
}
