//! The `report` source: the consumer app tells the sidecar each delivery's timestamp over
//! localhost, by UDP datagram ([`udp`]) or HTTP POST ([`http`]), in the line protocol of [`line`]
//! or JSON. Every rejected input is counted by transport and reason, never silently dropped.

pub mod http;
pub mod line;
pub mod udp;

use std::sync::Arc;

use crate::accumulator::{Accumulator, Source};
use crate::telemetry::Metrics;

/// Checks reported deliveries against the sidecar's queue and records them.
pub struct Intake {
    queue: String,
    accumulator: Arc<Accumulator>,
    metrics: Arc<Metrics>,
}

impl Intake {
    /// An intake for `queue`.
    pub fn new(queue: String, accumulator: Arc<Accumulator>, metrics: Arc<Metrics>) -> Self {
        Self {
            queue,
            accumulator,
            metrics,
        }
    }

    /// True when `queue` is the sidecar's queue (or `-`).
    pub fn is_own_queue(&self, queue: &str) -> bool {
        queue == "-" || queue == self.queue
    }

    /// Records one delivery, or rejects it (counted) when it names another queue.
    pub fn accept(&self, d: line::Delivery, transport: &str) -> Result<(), &'static str> {
        if d.queue.as_deref().is_some_and(|q| q != self.queue) {
            self.reject(transport, "unknown_queue");
            return Err("unknown_queue");
        }
        self.accumulator
            .observe(d.timestamp, d.unit, d.redelivered, Source::Report);
        Ok(())
    }

    /// Counts one rejected input.
    pub fn reject(&self, transport: &str, reason: &str) {
        self.metrics.reject(transport, reason);
        tracing::debug!(transport, reason, "report input rejected");
    }

    /// Parses and records every line of `text`; returns (accepted, rejected).
    pub fn accept_lines(&self, text: &str, transport: &str) -> (u64, u64) {
        let (mut ok, mut bad) = (0, 0);
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            match line::parse(line) {
                Ok(d) => match self.accept(d, transport) {
                    Ok(()) => ok += 1,
                    Err(_) => bad += 1,
                },
                Err(e) => {
                    self.reject(transport, e.reason());
                    bad += 1;
                }
            }
        }
        (ok, bad)
    }
}
