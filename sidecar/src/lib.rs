//! dwell's sidecar: samples message timestamps beside a consumer and pushes compact reports to the
//! aggregator. Its own connections never publish, ack, purge or hold a business message; the
//! optional AMQP tap ([`tap`]) forwards the app's own connections byte for byte and only reads.
//!
//! [`app`] is the composition root: [`Settings::from_args`] checks the command line once,
//! [`Sidecar::bind`] binds every listener (so a port in use fails at start), and [`Sidecar::run`]
//! runs the sources, the interval clock and the pusher until the shutdown token fires, then
//! delivers a goodbye report within the shutdown timeout. Every other module gets typed
//! configuration and never sees a flag.

pub mod accumulator;
pub mod amqp;
pub mod app;
pub mod cli;
pub mod identity;
pub mod interval;
pub mod peek;
pub mod push;
pub mod queues;
pub mod report;
pub mod stats;
pub mod tap;
pub mod telemetry;
pub mod timestamp;

pub use app::{Settings, Sidecar};
