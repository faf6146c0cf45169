//! Ingest's own metrics: reports and ages taken, rejections by reason, goodbyes, streams
//! refused as unauthenticated and reports denied for their sender (by reason), reports over a
//! limit (by limit), and reloads of the token keys.
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

/// Label of the limit counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    /// Which limit (`sources_per_namespace`, `sources`, `reports_per_second`).
    pub limit: &'static str,
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
    /// Streams (and pushes) refused as unauthenticated, by reason.
    pub unauthenticated: Family<ReasonLabel, Counter>,
    /// Reports refused for their sender (`namespace`, `pod`).
    pub denied: Family<ReasonLabel, Counter>,
    /// Reports refused over a limit, by limit.
    pub limited: Family<LimitLabel, Counter>,
    /// Reloads of `--ingest-jwks`.
    pub jwks: crate::identity::keys::ReloadMetrics,
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
        t.register(
            "ingest_unauthenticated_streams",
            "Ingest streams and pushes refused UNAUTHENTICATED, by reason",
            self.unauthenticated.clone(),
        );
        t.register(
            "ingest_denied_reports",
            "Reports refused PERMISSION_DENIED: not about the sender's namespace or pod",
            self.denied.clone(),
        );
        t.register(
            "ingest_limited_reports",
            "Reports refused RESOURCE_EXHAUSTED, by limit",
            self.limited.clone(),
        );
        t.register(
            "ingest_jwks_reloads",
            "New --ingest-jwks key sets taken",
            self.jwks.reloaded.clone(),
        );
        t.register(
            "ingest_jwks_refused",
            "Changed --ingest-jwks files refused (the keys in force kept)",
            self.jwks.refused.clone(),
        );
    }
}
