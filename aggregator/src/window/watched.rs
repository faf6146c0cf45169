//! Watched queues as window sources: what the aggregator's own watch (`crate::watch`) saw of a
//! queue, held like a sidecar's source (same key shape, labels, `last_report_ms`, queue state)
//! but with no ages. The pod slot of the key is `watch:<broker>`, which no sidecar can take
//! (ingest admits Kubernetes pod names only, and they have no `:`).
//!
//! Besides the queue state, a watched source keeps the history the engine's scale-from-zero
//! semantics need (`crate::engine::watched`): since when every poll saw no ready message, since
//! when a backlog has waited with no consumer, and the management API's head timestamp.
use std::collections::BTreeMap;
use std::sync::Arc;

use super::labels::LabelSets;
use super::{QueueState, SourceKey, SourceState, WindowStore};

/// The pod slot of every watched source's key starts with this.
pub const WATCH_POD_PREFIX: &str = "watch:";

/// The pod slot of the key of a queue watched on `broker`.
pub fn watch_pod(broker: &str) -> String {
    format!("{WATCH_POD_PREFIX}{broker}")
}

/// Whether a source key is a watched queue's (not a sidecar's).
pub fn is_watched(key: &SourceKey) -> bool {
    key.pod.starts_with(WATCH_POD_PREFIX)
}

/// The management API's view of the head message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadMessage {
    /// The head message's `timestamp` property in Unix ms (publisher clock).
    pub published_at_ms: i64,
    /// When the management API was asked (its data is itself up to ~10 s old).
    pub read_at_ms: i64,
}

/// One successful poll of a watched queue.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchPoll {
    /// The broker's name in the rules file.
    pub broker: String,
    /// The entry's poll interval.
    pub interval_ms: i64,
    /// Messages ready (passive declare: exact at the time of the poll).
    pub messages_ready: u64,
    /// Consumers attached.
    pub consumers: u32,
    /// When the broker answered (Unix ms, aggregator clock).
    pub observed_at_ms: i64,
    /// Whether the previous poll of this entry succeeded too: only then does history carry on
    /// (after a gap nobody knows what happened in it).
    pub continuous: bool,
    /// The management API's head message, when it was read during this backlog.
    pub head: Option<HeadMessage>,
    /// The queue type from the management API (`classic`, `quorum`, `stream`).
    pub queue_type: Option<String>,
}

/// What the watch knows of a queue, kept with its window source.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchedQueue {
    /// The broker's name in the rules file.
    pub broker: String,
    /// The entry's poll interval.
    pub interval_ms: i64,
    /// Since when every poll (without a gap) saw no ready message; None while some are ready.
    pub quiet_since_ms: Option<i64>,
    /// Since when every poll (without a gap) saw ready messages and no consumer: the head has
    /// waited at least this long. None otherwise.
    pub backlog_since_ms: Option<i64>,
    /// The management API's head message (classic queues), if read.
    pub head: Option<HeadMessage>,
    /// The queue type, if the management API said.
    pub queue_type: Option<String>,
}

impl WatchedQueue {
    /// The state after `poll`, given the state before it.
    pub fn advance(before: Option<&WatchedQueue>, poll: &WatchPoll) -> Self {
        let before = before.filter(|_| poll.continuous);
        let at = poll.observed_at_ms;
        let quiet_since_ms =
            (poll.messages_ready == 0).then(|| before.and_then(|b| b.quiet_since_ms).unwrap_or(at));
        let backlog_since_ms = (poll.messages_ready > 0 && poll.consumers == 0)
            .then(|| before.and_then(|b| b.backlog_since_ms).unwrap_or(at));
        let head = poll
            .head
            .or_else(|| before.and_then(|b| b.head))
            .filter(|_| poll.messages_ready > 0);
        Self {
            broker: poll.broker.clone(),
            interval_ms: poll.interval_ms,
            quiet_since_ms,
            backlog_since_ms,
            head,
            queue_type: poll
                .queue_type
                .clone()
                .or_else(|| before.and_then(|b| b.queue_type.clone())),
        }
    }
}

impl WindowStore {
    /// Takes one successful poll of a watched queue: its queue state (and `last_report_ms`, so
    /// a watch that stops answering goes stale like a silent sidecar) and its history.
    pub fn observe_watched(
        &self,
        key: SourceKey,
        labels: &BTreeMap<String, String>,
        poll: &WatchPoll,
        now_ms: i64,
    ) {
        let key = match self.sources.get_mut(&key) {
            Some(mut held) => {
                observe(held.value_mut(), &self.labels, labels, poll, now_ms);
                held.key().clone()
            }
            None => {
                let key = Arc::new(key);
                {
                    let mut entry = self.sources.entry(key.clone()).or_insert_with(|| {
                        SourceState::new(now_ms, self.labels.intern(labels.clone()), "".into())
                    });
                    observe(entry.value_mut(), &self.labels, labels, poll, now_ms);
                }
                // After the source's shard lock is released (the lock order of `by_namespace`).
                self.index(&key);
                key
            }
        };
        // Queue state and watch history change what a read answers: no cached answer holds.
        self.touch(&key.namespace);
    }
}

/// Writes one poll into a watched source's state.
fn observe(
    state: &mut SourceState,
    sets: &LabelSets,
    labels: &BTreeMap<String, String>,
    poll: &WatchPoll,
    now_ms: i64,
) {
    if *state.labels != *labels {
        state.labels = sets.intern(labels.clone());
    }
    if state.peer.strip_prefix("watch ") != Some(poll.broker.as_str()) {
        state.peer = Arc::from(format!("watch {}", poll.broker));
    }
    state.last_report_ms = state.last_report_ms.max(now_ms);
    state.reports += 1;
    state.queue_state = Some(QueueState {
        messages_ready: poll.messages_ready,
        consumers: poll.consumers,
        observed_at_ms: poll.observed_at_ms,
    });
    state.watched = Some(WatchedQueue::advance(state.watched.as_ref(), poll));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::BucketsKept;

    fn poll(ready: u64, consumers: u32, at: i64, continuous: bool) -> WatchPoll {
        WatchPoll {
            broker: "main".into(),
            interval_ms: 2_000,
            messages_ready: ready,
            consumers,
            observed_at_ms: at,
            continuous,
            head: None,
            queue_type: None,
        }
    }

    #[test]
    fn quiet_and_backlog_run_only_over_unbroken_polls() {
        let mut q = WatchedQueue::advance(None, &poll(0, 0, 1_000, false));
        assert_eq!((q.quiet_since_ms, q.backlog_since_ms), (Some(1_000), None));
        q = WatchedQueue::advance(Some(&q), &poll(0, 1, 3_000, true));
        assert_eq!(q.quiet_since_ms, Some(1_000), "quiet carries on");
        q = WatchedQueue::advance(Some(&q), &poll(5, 0, 5_000, true));
        assert_eq!((q.quiet_since_ms, q.backlog_since_ms), (None, Some(5_000)));
        q = WatchedQueue::advance(Some(&q), &poll(9, 0, 7_000, true));
        assert_eq!(q.backlog_since_ms, Some(5_000), "the same backlog");
        // A gap (failed polls in between): the backlog's start is no longer known.
        q = WatchedQueue::advance(Some(&q), &poll(9, 0, 20_000, false));
        assert_eq!(q.backlog_since_ms, Some(20_000));
        // A consumer attached: the head may move, so no lower bound from the watch alone.
        q = WatchedQueue::advance(Some(&q), &poll(9, 2, 22_000, true));
        assert_eq!(q.backlog_since_ms, None);
        q = WatchedQueue::advance(Some(&q), &poll(0, 2, 24_000, true));
        assert_eq!(q.quiet_since_ms, Some(24_000));
    }

    #[test]
    fn the_head_is_kept_during_a_backlog_only() {
        let mut p = poll(3, 0, 1_000, false);
        p.head = Some(HeadMessage {
            published_at_ms: 500,
            read_at_ms: 1_000,
        });
        p.queue_type = Some("classic".into());
        let q = WatchedQueue::advance(None, &p);
        let q = WatchedQueue::advance(Some(&q), &poll(3, 0, 3_000, true));
        assert_eq!(q.head.map(|h| h.published_at_ms), Some(500));
        assert_eq!(q.queue_type.as_deref(), Some("classic"));
        let q = WatchedQueue::advance(Some(&q), &poll(0, 0, 5_000, true));
        assert_eq!(q.head, None);
    }

    #[test]
    fn observations_land_as_sources_with_queue_state_and_no_ages() {
        let store = WindowStore::new(30_000);
        let key = SourceKey {
            namespace: "binder".into(),
            pod: watch_pod("main"),
            queue: "jobs".into(),
            vhost: "/".into(),
        };
        assert!(is_watched(&key));
        let labels = BTreeMap::from([("app".to_string(), "binder".to_string())]);
        store.observe_watched(key.clone(), &labels, &poll(4, 0, 1_000, false), 1_000);
        store.observe_watched(key.clone(), &labels, &poll(6, 0, 3_000, true), 3_000);
        let windows = store.window(30_000, 3_000, Some("binder"), BucketsKept::All, |_, _| true);
        assert_eq!(windows.len(), 1);
        let w = &windows[0];
        assert_eq!(w.ages.count(), 0);
        assert_eq!(w.source.last_report_ms, 3_000);
        assert_eq!(w.source.queue_state.map(|q| q.messages_ready), Some(6));
        assert_eq!(*w.source.labels, labels);
        let watched = w.source.watched.as_ref().expect("watched");
        assert_eq!(watched.backlog_since_ms, Some(1_000));
        assert!(store.remove(&key));
        assert!(
            store
                .window(30_000, 3_000, Some("binder"), BucketsKept::All, |_, _| true)
                .is_empty()
        );
    }

    #[test]
    fn every_poll_moves_the_namespace_stamp() {
        let store = WindowStore::new(30_000);
        let key = SourceKey {
            namespace: "binder".into(),
            pod: watch_pod("main"),
            queue: "jobs".into(),
            vhost: "/".into(),
        };
        let labels = BTreeMap::new();
        store.observe_watched(key.clone(), &labels, &poll(0, 0, 1_000, false), 1_000);
        let first = store.stamp(Some("binder"));
        // The same counts again: the quiet stretch grows, so a cached answer may not hold.
        store.observe_watched(key, &labels, &poll(0, 0, 3_000, true), 3_000);
        assert_ne!(store.stamp(Some("binder")), first);
    }
}
