//! Ingest's own metrics: reports and ages taken, rejections by reason, goodbyes.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::telemetry::Telemetry;

/// Label of the rejection counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the report was rejected (bounded set, see `validate::Reason`).
    pub reason: &'static str,
}

/// Ingest counters and gauges (cheap to clone: they share their atomics).
#[derive(Debug, Clone, Default)]
pub struct IngestMetrics {
    /// Reports taken (not counting resends).
    pub reports: Counter,
    /// Resent reports ignored.
    pub duplicates: Counter,
    /// Ages taken into windows.
    pub samples: Counter,
    /// Reports rejected, by reason.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Sources that said goodbye.
    pub goodbyes: Counter,
}

impl IngestMetrics {
    /// Registers every family.
    pub fn register(&self, t: &Telemetry) {
        t.register(
            "ingest_reports",
            "Reports ingested (resends excluded)",
            self.reports.clone(),
        );
        t.register(
            "ingest_duplicate_reports",
            "Resent reports ignored",
            self.duplicates.clone(),
        );
        t.register(
            "ingest_samples",
            "Ages taken into windows",
            self.samples.clone(),
        );
        t.register(
            "ingest_rejected_reports",
            "Reports rejected, by reason",
            self.rejected.clone(),
        );
        t.register(
            "ingest_goodbyes",
            "Sources removed by a sidecar goodbye",
            self.goodbyes.clone(),
        );
    }
}
