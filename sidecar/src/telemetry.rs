//! The sidecar's own health: the self-metrics every source updates, and the small HTTP server
//! that serves `/healthz` and `/metrics` (Prometheus/OpenMetrics text).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Labels of a counter split by one short word.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The word (a source, a result, a reason).
    pub kind: String,
}

/// Labels of rejected report inputs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// `udp` or `http`.
    pub transport: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Every self-metric of the sidecar.
#[derive(Default)]
pub struct Metrics {
    /// Ages recorded, by source (`report`, `peek`).
    pub ages: Family<KindLabel, Counter>,
    /// Ages clamped into `[0, max_age]`.
    pub clamped: Counter,
    /// Deliveries without a usable timestamp.
    pub missing: Counter,
    /// Timestamps whose unit was inferred from their magnitude.
    pub unit_converted: Counter,
    /// Report inputs rejected, by transport and reason.
    pub rejected: Family<RejectLabels, Counter>,
    /// All report inputs rejected (the wire counter).
    pub rejected_total: Counter,
    /// Last `messages_ready` seen by the stats source.
    pub queue_messages_ready: Gauge,
    /// Last `consumer_count` seen by the stats source.
    pub queue_consumers: Gauge,
    /// Passive declares, by result (`ok`, `error`).
    pub stats_polls: Family<KindLabel, Counter>,
    /// 1 while the stats source holds a broker connection.
    pub stats_connected: Gauge,
    /// Peek attempts, by result (`peeked`, `empty`, `refused_*`, `error`).
    pub peeks: Family<KindLabel, Counter>,
    /// 1 once peeking was disabled for good (a quorum or stream queue was detected).
    pub peek_disabled: Gauge,
    /// Reports built (one per interval).
    pub reports_built: Counter,
    /// Reports held for resending.
    pub backlog_reports: Gauge,
    /// Reports that left the backlog before every aggregator acknowledged them.
    pub backlog_dropped: Counter,
    /// Aggregator addresses currently streamed to.
    pub aggregator_addresses: Gauge,
    /// Streams currently open.
    pub streams_open: Gauge,
    /// Reports written to streams (resends included).
    pub reports_sent: Counter,
    /// Acks received.
    pub acks: Counter,
    /// Streams that failed or were refused (each followed by a backoff).
    pub stream_failures: Counter,
}

impl Metrics {
    /// Creates the metrics.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts one rejected report input.
    pub fn reject(&self, transport: &str, reason: &str) {
        self.rejected
            .get_or_create(&RejectLabels {
                transport: transport.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
        self.rejected_total.inc();
    }

    /// Counts into a family by one word.
    pub fn inc(family: &Family<KindLabel, Counter>, kind: &str) {
        family
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Reads a family member (0 when never counted).
    pub fn get(family: &Family<KindLabel, Counter>, kind: &str) -> u64 {
        family
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .get()
    }

    /// Renders everything in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut r = Registry::with_prefix("dwell_sidecar");
        let c = |x: &Counter| x.clone();
        let g = |x: &Gauge| x.clone();
        r.register("ages", "Ages recorded, by source", self.ages.clone());
        r.register(
            "timestamps_clamped",
            "Ages clamped into [0, max_age]",
            c(&self.clamped),
        );
        r.register(
            "timestamps_missing",
            "Deliveries without a usable timestamp",
            c(&self.missing),
        );
        r.register(
            "timestamps_unit_converted",
            "Timestamps whose unit was inferred from their magnitude",
            c(&self.unit_converted),
        );
        r.register(
            "report_rejected",
            "Report inputs rejected",
            self.rejected.clone(),
        );
        r.register(
            "queue_messages_ready",
            "Last messages_ready (passive declare)",
            g(&self.queue_messages_ready),
        );
        r.register(
            "queue_consumers",
            "Last consumer_count (passive declare)",
            g(&self.queue_consumers),
        );
        r.register(
            "stats_polls",
            "Passive declares by result",
            self.stats_polls.clone(),
        );
        r.register(
            "stats_connected",
            "1 while the stats source is connected",
            g(&self.stats_connected),
        );
        r.register("peeks", "Peek attempts by result", self.peeks.clone());
        r.register(
            "peek_disabled",
            "1 once peeking was disabled for good",
            g(&self.peek_disabled),
        );
        r.register("reports_built", "Reports built", c(&self.reports_built));
        r.register(
            "backlog_reports",
            "Reports held for resending",
            g(&self.backlog_reports),
        );
        r.register(
            "backlog_dropped",
            "Reports dropped from the backlog before every aggregator acknowledged them",
            c(&self.backlog_dropped),
        );
        r.register(
            "aggregator_addresses",
            "Aggregator addresses streamed to",
            g(&self.aggregator_addresses),
        );
        r.register("streams_open", "Open report streams", g(&self.streams_open));
        r.register(
            "reports_sent",
            "Reports written to streams",
            c(&self.reports_sent),
        );
        r.register("acks", "Acks received", c(&self.acks));
        r.register(
            "stream_failures",
            "Streams that failed",
            c(&self.stream_failures),
        );
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

/// Serves `/healthz` and `/metrics` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(render))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}
