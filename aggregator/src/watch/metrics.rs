//! The watch's own metrics on `/metrics`: polls by result, connection failures by reason (wrong
//! credentials show as `reason="auth"`), connections up, one 0/1 gauge per watched queue, and
//! management API reads. Labels come from the rules file (bounded by its limits), never from
//! what the broker says.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::telemetry::Telemetry;

/// One broker.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerLabel {
    /// The broker's name in the rules file.
    pub broker: String,
}

/// One broker and an outcome (a bounded set of labels from `dwell_amqp`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The broker's name.
    pub broker: String,
    /// `ok`, `not_found`, `refused`, `error`, `not_connected`, `channel`, `timeout` (polls);
    /// `auth`, `tls`, `ca_file`, `url_file`, `network`, `protocol` (connections).
    pub result: &'static str,
}

/// One watched queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The broker's name.
    pub broker: String,
    /// The vhost.
    pub vhost: String,
    /// The queue.
    pub queue: String,
    /// The namespace it serves.
    pub namespace: String,
}

/// The watch's counters and gauges (cheap to clone: they share their atomics).
#[derive(Debug, Clone, Default)]
pub struct WatchMetrics {
    /// Passive declares, by broker and result.
    pub polls: Family<OutcomeLabels, Counter>,
    /// Failed connection attempts, by broker and reason.
    pub connect_failures: Family<OutcomeLabels, Counter>,
    /// Connections up, by broker (one per vhost watched).
    pub connected: Family<BrokerLabel, Gauge>,
    /// 1 when the queue's last poll succeeded, else 0.
    pub queue_up: Family<QueueLabels, Gauge>,
    /// Management API reads, by broker and result (`ok`, `empty`, `error`).
    pub management: Family<OutcomeLabels, Counter>,
    /// Watched queues in force.
    pub queues: Gauge,
}

impl WatchMetrics {
    /// Registers every family.
    pub fn register(&self, t: &Telemetry) {
        t.register(
            "watch_polls",
            "Passive queue.declare polls of watched queues, by broker and result",
            self.polls.clone(),
        );
        t.register(
            "watch_connect_failures",
            "Failed broker connection attempts of the watch, by broker and reason (auth: wrong credentials)",
            self.connect_failures.clone(),
        );
        t.register(
            "watch_connections",
            "Broker connections of the watch that are up, by broker",
            self.connected.clone(),
        );
        t.register(
            "watch_queue_up",
            "1 when the watched queue's last poll succeeded, else 0",
            self.queue_up.clone(),
        );
        t.register(
            "watch_management_reads",
            "Management API reads of the watch, by broker and result",
            self.management.clone(),
        );
        t.register(
            "watch_queues",
            "Queues watched by the rules in force",
            self.queues.clone(),
        );
    }

    /// Counts one poll.
    pub fn poll(&self, broker: &str, result: &'static str) {
        self.polls
            .get_or_create(&OutcomeLabels {
                broker: broker.to_owned(),
                result,
            })
            .inc();
    }
}
