//! Logging set-up and the aggregator's own Prometheus metrics (served at `/metrics`).
//!
//! PLACEHOLDER for the metric families: the ingest work adds ingest/state families, the API work
//! adds HTTP request counters and latency histograms. `encode` renders the text format.
use std::sync::Mutex;

use prometheus_client::registry::Registry;

/// Initialises `tracing` once: `text` (human) or `json` (structured), filtered by RUST_LOG.
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The aggregator's self-observability registry.
#[derive(Debug, Default)]
pub struct Telemetry {
    registry: Mutex<Registry>,
}

impl Telemetry {
    /// A registry with no families yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renders every family in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}
