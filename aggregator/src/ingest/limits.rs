//! What one caller may take of the aggregator: sources (per namespace and in all: admission of
//! a new source only, so a source already held is never refused or evicted for others' sake),
//! reports per second on one stream (a token bucket: a report over it is refused and ends the
//! stream with `RESOURCE_EXHAUSTED`; the sidecar reconnects with backoff and resends its
//! backlog, which the burst is sized to take), and the HTTP/2 connection's concurrent streams
//! and keepalive. Each refusal names the limit and its flag.
use std::time::Duration;

use tonic::Status;

use crate::window::{SourceKey, WindowStore};

/// The ingest limits (defaults sized from BENCHMARKS.md: 10 000 sources take 56 MiB, 50 000
/// take 177 MiB; a sidecar sends one report per queue per second, at most 256 queues, and
/// resends a backlog of up to 300 on reconnect).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IngestLimits {
    /// Most sources held for one namespace.
    pub max_sources_per_namespace: usize,
    /// Most sources held in all.
    pub max_sources: usize,
    /// Sustained reports per second on one stream.
    pub max_reports_per_second: f64,
    /// Reports one stream may send at once above the sustained rate.
    pub report_burst: f64,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS of each gRPC connection.
    pub max_streams_per_connection: u32,
    /// How often the server pings an idle connection (`None`: never).
    pub keepalive_interval: Option<Duration>,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_sources_per_namespace: 10_000,
            max_sources: 100_000,
            max_reports_per_second: 300.0,
            report_burst: 1_000.0,
            max_streams_per_connection: 256,
            keepalive_interval: Some(Duration::from_secs(60)),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// Which limit refused a report (the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `--ingest-max-sources-per-namespace`.
    SourcesPerNamespace,
    /// `--ingest-max-sources`.
    Sources,
    /// `--ingest-max-reports-per-second`.
    ReportsPerSecond,
}

impl Limit {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::SourcesPerNamespace => "sources_per_namespace",
            Self::Sources => "sources",
            Self::ReportsPerSecond => "reports_per_second",
        }
    }
}

impl IngestLimits {
    /// Whether a report for `key` may be taken: always for a source already held; for a new
    /// one, only while its namespace and the whole store are under their bounds. (Two new
    /// sources racing may both pass at the bound: it is exceeded by at most the streams
    /// admitting at that instant.)
    pub fn admit(&self, store: &WindowStore, key: &SourceKey) -> Result<(), (Limit, Status)> {
        if store.contains(key) {
            return Ok(());
        }
        if store.len() >= self.max_sources {
            return Err((
                Limit::Sources,
                Status::resource_exhausted(format!(
                    "the aggregator holds its most sources ({}, --ingest-max-sources); \
                     source not taken",
                    self.max_sources
                )),
            ));
        }
        if store.sources_in(Some(&key.namespace)) >= self.max_sources_per_namespace {
            return Err((
                Limit::SourcesPerNamespace,
                Status::resource_exhausted(format!(
                    "namespace {} holds its most sources ({}, \
                     --ingest-max-sources-per-namespace); source not taken",
                    key.namespace, self.max_sources_per_namespace
                )),
            ));
        }
        Ok(())
    }

    /// A full bucket for a new stream opened at `now_ms`.
    pub fn bucket(&self, now_ms: i64) -> Bucket {
        Bucket {
            tokens: self.report_burst,
            at_ms: now_ms,
        }
    }

    /// Takes one report's token from `bucket` at `now_ms`, or the refusal.
    pub fn take(&self, bucket: &mut Bucket, now_ms: i64) -> Result<(), (Limit, Status)> {
        let elapsed_s = (now_ms - bucket.at_ms).max(0) as f64 / 1000.0;
        bucket.tokens =
            (bucket.tokens + elapsed_s * self.max_reports_per_second).min(self.report_burst);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err((
            Limit::ReportsPerSecond,
            Status::resource_exhausted(format!(
                "more than {} reports per second on this stream (burst {}; \
                 --ingest-max-reports-per-second, --ingest-report-burst): report refused, \
                 stream ended",
                self.max_reports_per_second, self.report_burst
            )),
        ))
    }
}

/// One stream's report tokens.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_refills_at_the_rate_up_to_the_burst() {
        let limits = IngestLimits {
            max_reports_per_second: 10.0,
            report_burst: 3.0,
            ..IngestLimits::default()
        };
        let mut b = limits.bucket(0);
        for _ in 0..3 {
            assert!(limits.take(&mut b, 0).is_ok());
        }
        let (limit, status) = limits.take(&mut b, 0).unwrap_err();
        assert_eq!(
            (limit, status.code()),
            (Limit::ReportsPerSecond, tonic::Code::ResourceExhausted)
        );
        assert!(status.message().contains("--ingest-max-reports-per-second"));
        assert!(limits.take(&mut b, 100).is_ok(), "one token after 100 ms");
        assert!(limits.take(&mut b, 100).is_err());
        // A long silence refills only to the burst; a clock going back gives nothing.
        let taken = (0..10)
            .filter(|_| limits.take(&mut b, 60_000).is_ok())
            .count();
        assert_eq!(taken, 3);
        assert!(limits.take(&mut b, 0).is_err());
    }
}
