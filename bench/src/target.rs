//! Starts the system under test: the release `dwell-aggregator` on loopback ports chosen by the
//! kernel, with its addresses read from its start-up log lines.
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::child::{Process, first_word, sibling_binary};

/// A running aggregator.
pub struct Aggregator {
    /// The process.
    pub process: Process,
    /// The HTTPS metrics API address.
    pub metrics_addr: SocketAddr,
    /// The gRPC ingest address.
    pub grpc_addr: SocketAddr,
}

impl Aggregator {
    /// Starts `dwell-aggregator` (next to the bench binary) with `extra` flags and an optional
    /// rules file, and waits until both listeners are up.
    pub async fn start(config: Option<&Path>, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_binary(&sibling_binary("dwell-aggregator")?, config, extra).await
    }

    /// The same with the aggregator binary at `bin` (e.g. a baseline build kept aside, to
    /// compare two builds in one command).
    pub async fn start_binary(
        bin: &Path,
        config: Option<&Path>,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut args: Vec<String> = [
            "--metrics-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ]
        .map(String::from)
        .to_vec();
        if let Some(c) = config {
            args.push("--config".into());
            args.push(c.display().to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let process = Process::spawn("aggregator", bin, &args)?;
        let wait = Duration::from_secs(30);
        let metrics = process
            .wait_for("metrics API listening on https://", wait)
            .await?;
        let grpc = process.wait_for("gRPC listening on ", wait).await?;
        let metrics_addr = first_word(&metrics)
            .parse()
            .map_err(|e| anyhow::anyhow!("bad metrics address {metrics:?}: {e}"))?;
        let grpc_addr = first_word(&grpc)
            .parse()
            .map_err(|e| anyhow::anyhow!("bad gRPC address {grpc:?}: {e}"))?;
        Ok(Self {
            process,
            metrics_addr,
            grpc_addr,
        })
    }

    /// The gRPC endpoint URI.
    pub fn grpc_uri(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }
}
