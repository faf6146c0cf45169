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

/// Labels of a per-queue series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The queue.
    pub queue: String,
    /// Its virtual host.
    pub vhost: String,
}

/// Labels of a per-direction byte counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `to_broker` or `to_app`.
    pub direction: &'static str,
}

/// Labels of a per-connection series (present while the connection is open).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// The tap's number for the connection (also in its log lines).
    pub conn: u64,
    /// `to_broker` or `to_app` (byte counters), or `deliveries`.
    pub kind: &'static str,
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
    /// Last `messages_ready` seen by the stats source, per queue.
    pub queue_messages_ready: Family<QueueLabels, Gauge>,
    /// Last `consumer_count` seen by the stats source, per queue.
    pub queue_consumers: Family<QueueLabels, Gauge>,
    /// Queues reported.
    pub queues_tracked: Gauge,
    /// Queues not reported because the queue limit was reached.
    pub queues_refused: Counter,
    /// Deliveries the tap read, per queue.
    pub tap_deliveries: Family<QueueLabels, Counter>,
    /// Deliveries the tap read without a usable timestamp, per queue.
    pub tap_without_timestamp: Family<QueueLabels, Counter>,
    /// Redelivered deliveries the tap read, per queue.
    pub tap_redelivered: Family<QueueLabels, Counter>,
    /// App connections accepted by the tap.
    pub tap_connections: Counter,
    /// App connections open now.
    pub tap_connections_open: Gauge,
    /// App connections closed because the broker could not be reached.
    pub tap_upstream_failures: Counter,
    /// Connections whose parsing was switched off (forwarding went on), by reason.
    pub tap_parse_off: Family<KindLabel, Counter>,
    /// Bytes forwarded, by direction.
    pub tap_bytes: Family<DirectionLabel, Counter>,
    /// Per open connection: bytes each way and deliveries read.
    pub tap_connection: Family<ConnectionLabels, Counter>,
    /// Deliveries for a consumer tag the tap never saw consumed (no queue known).
    pub tap_unknown_consumer: Counter,
    /// connection.blocked notifications passed from the broker to an app.
    pub tap_blocked: Counter,
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
    /// Reads of the `--token-file` that failed while running (the last good token is kept).
    pub token_read_failures: Counter,
    /// New tokens picked up from the `--token-file` (the kubelet's rotations).
    pub token_rotations: Counter,
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
            "Last messages_ready (passive declare), per queue",
            self.queue_messages_ready.clone(),
        );
        r.register(
            "queue_consumers",
            "Last consumer_count (passive declare), per queue",
            self.queue_consumers.clone(),
        );
        r.register("queues_tracked", "Queues reported", g(&self.queues_tracked));
        r.register(
            "queues_refused",
            "Queues not reported: the queue limit was reached",
            c(&self.queues_refused),
        );
        r.register(
            "tap_deliveries",
            "Deliveries read by the tap, per queue",
            self.tap_deliveries.clone(),
        );
        r.register(
            "tap_deliveries_without_timestamp",
            "Deliveries read by the tap without a usable timestamp, per queue",
            self.tap_without_timestamp.clone(),
        );
        r.register(
            "tap_redelivered",
            "Redelivered deliveries read by the tap, per queue",
            self.tap_redelivered.clone(),
        );
        r.register(
            "tap_connections",
            "App connections accepted by the tap",
            c(&self.tap_connections),
        );
        r.register(
            "tap_connections_open",
            "App connections open through the tap",
            g(&self.tap_connections_open),
        );
        r.register(
            "tap_upstream_failures",
            "App connections closed because the broker could not be reached",
            c(&self.tap_upstream_failures),
        );
        r.register(
            "tap_parse_off",
            "Connections whose parsing was switched off (forwarding went on), by reason",
            self.tap_parse_off.clone(),
        );
        r.register(
            "tap_bytes",
            "Bytes forwarded by the tap, by direction",
            self.tap_bytes.clone(),
        );
        r.register(
            "tap_connection",
            "Per open tap connection: bytes forwarded each way and deliveries read",
            self.tap_connection.clone(),
        );
        r.register(
            "tap_unknown_consumer",
            "Deliveries for a consumer tag never seen consumed",
            c(&self.tap_unknown_consumer),
        );
        r.register(
            "tap_blocked",
            "connection.blocked notifications passed to apps",
            c(&self.tap_blocked),
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
        r.register(
            "token_read_failures",
            "Reads of the --token-file that failed while running (the last good token is kept)",
            c(&self.token_read_failures),
        );
        r.register(
            "token_rotations",
            "New tokens picked up from the --token-file",
            c(&self.token_rotations),
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
