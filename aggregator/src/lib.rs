//! dwell's aggregator: takes what sidecars observed (gRPC ingest), keeps a bounded window per
//! source, turns it into one number per metric through the configured rules, and serves it on the
//! Kubernetes custom and external metrics APIs over HTTPS.
//!
//! [`app`] is the composition root (flags → settings → listeners → tasks); every other module
//! takes typed settings and never reads flags. See ARCHITECTURE.md for the data path and one
//! line per module.

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod engine;
pub mod identity;
pub mod ingest;
pub mod inject;
pub mod inspect;
pub mod kinds;
pub mod policy;
pub mod provider;
pub mod quantity;
pub mod selector;
pub mod telemetry;
pub mod tls;
pub mod watch;
pub mod window;
