//! The window's data types: source identity, what a report brings, and what reads return.
use std::collections::BTreeMap;
use std::sync::Arc;

use dwell_proto::summary::{AgeSummary, ValidSummary};

/// Identifies a source: one consumer pod watching one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    /// Kubernetes namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Queue observed.
    pub queue: String,
    /// RabbitMQ vhost ("/" by default).
    pub vhost: String,
}

/// The broker's view of the queue, as last reported.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QueueState {
    /// Messages ready for delivery.
    pub messages_ready: u64,
    /// Consumers attached.
    pub consumers: u32,
    /// When the broker was asked (Unix ms).
    pub observed_at_ms: i64,
}

/// The sidecar's running counters, as last reported.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SidecarCounters {
    /// Ages clamped.
    pub clamped: u64,
    /// Deliveries without a usable timestamp.
    pub missing: u64,
    /// Reports dropped from the sidecar's backlog.
    pub backlog_dropped: u64,
}

/// The ages a report carries, already validated.
#[derive(Debug, Clone)]
pub enum Ages {
    /// Raw ages: `(age_ms, observed_at_ms, redelivered)`.
    Samples(Vec<(i64, i64, bool)>),
    /// A summary of an interval, placed at `at_ms`.
    Summary {
        /// The ages, validated and still in their wire form (merged into a slot as they are).
        summary: ValidSummary,
        /// Where in time the interval lands (its end).
        at_ms: i64,
    },
}

/// One validated report, ready to be taken into the window.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Who observed it.
    pub key: SourceKey,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// Peer address of the connection (one allocation per stream, shared by its reports).
    pub peer: Arc<str>,
    /// Sidecar process identity (0: none).
    pub instance: u64,
    /// Report sequence number within the instance.
    pub seq: u64,
    /// The ages.
    pub ages: Ages,
    /// Queue state, if reported.
    pub queue_state: Option<QueueState>,
    /// Sidecar counters, if reported.
    pub counters: Option<SidecarCounters>,
}

/// What happened to a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Taken; the number of ages that landed in the window.
    Accepted(u64),
    /// Seen before; ignored.
    Duplicate,
}

/// A copy of one source's bookkeeping (not its ages), for listings and explanations.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSnapshot {
    /// Identity.
    pub key: SourceKey,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
    /// Peer of the last report.
    pub peer: String,
    /// First report (aggregator clock, Unix ms).
    pub first_seen_ms: i64,
    /// Last report (aggregator clock, Unix ms).
    pub last_report_ms: i64,
    /// Reports taken.
    pub reports: u64,
    /// Ages taken.
    pub samples: u64,
    /// Latest age observed and when (Unix ms), ever.
    pub last_sample: Option<(i64, i64)>,
    /// Latest queue state.
    pub queue_state: Option<QueueState>,
    /// Latest sidecar counters.
    pub counters: SidecarCounters,
    /// What the aggregator's queue watch saw (None: a sidecar's source).
    pub watched: Option<super::WatchedQueue>,
}

/// A source's bookkeeping as a read sees it: identity and labels shared with the window (no
/// strings copied per read), the rest copied. [`SourceView::snapshot`] makes the owned
/// [`SourceSnapshot`] that listings and explanations show.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceView {
    /// Identity.
    pub key: Arc<SourceKey>,
    /// Pod labels.
    pub labels: Arc<BTreeMap<String, String>>,
    /// Peer of the last report.
    pub peer: Arc<str>,
    /// First report (aggregator clock, Unix ms).
    pub first_seen_ms: i64,
    /// Last report (aggregator clock, Unix ms).
    pub last_report_ms: i64,
    /// Reports taken.
    pub reports: u64,
    /// Ages taken.
    pub samples: u64,
    /// Latest age observed and when (Unix ms), ever.
    pub last_sample: Option<(i64, i64)>,
    /// Latest queue state.
    pub queue_state: Option<QueueState>,
    /// Latest sidecar counters.
    pub counters: SidecarCounters,
    /// What the aggregator's queue watch saw (None: a sidecar's source).
    pub watched: Option<super::WatchedQueue>,
}

impl SourceView {
    /// The owned copy listings and explanations show.
    pub fn snapshot(&self) -> SourceSnapshot {
        SourceSnapshot {
            key: SourceKey::clone(&self.key),
            labels: BTreeMap::clone(&self.labels),
            peer: self.peer.to_string(),
            first_seen_ms: self.first_seen_ms,
            last_report_ms: self.last_report_ms,
            reports: self.reports,
            samples: self.samples,
            last_sample: self.last_sample,
            queue_state: self.queue_state,
            counters: self.counters,
            watched: self.watched.clone(),
        }
    }
}

/// A source's bookkeeping plus its ages over one window, and when, as time passes with no new
/// report, that would read differently (what a result cache needs to know).
#[derive(Debug, Clone)]
pub struct SourceWindow {
    /// The source.
    pub source: SourceView,
    /// Every age observed in the window, merged.
    pub ages: AgeSummary,
    /// The time the merged slots cover, in milliseconds: the window, or more when the oldest
    /// slot counted starts before the window does (a slot counts when any part of it is inside).
    /// Rates divide by this, not by the nominal window, so they do not read high.
    pub span_ms: i64,
    /// The first time (Unix ms, after the read's `now`) at which a slot starts or stops counting:
    /// `ages` may differ from then on. `i64::MAX` when never.
    pub slots_change_at_ms: i64,
    /// The first time at which `span_ms` may differ (the next millisecond when the oldest slot
    /// counted starts before the window, since the span then grows with time).
    pub span_changes_at_ms: i64,
}

/// Which buckets a read's merged summaries keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BucketsKept<'a> {
    /// All of them (the summary is the full merge).
    All,
    /// Those answering these quantiles exactly (as `AgeSummary::quantile_ms` takes them); every
    /// other statistic needs none. A read over a thousand sources holds a thousand summaries.
    Answering(&'a [f64]),
}

/// Counts after a sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepCounts {
    /// Sources reporting within `stale_after`.
    pub live: usize,
    /// Sources past `stale_after` but not yet evicted.
    pub stale: usize,
    /// Sources evicted by this sweep.
    pub evicted: usize,
}
