//! One watched queue: a passive declare every `interval` on its own channel of its broker's
//! connection, each answer put into the window store as the queue's state
//! ([`crate::window::WindowStore::observe_watched`]). A refusal (404: no such queue; 403) is
//! logged once for this entry and counted; the other entries on the connection go on. With a
//! management API, a backlog also reads the head message's timestamp and the queue type.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dwell_amqp::{LinkHandle, Management, PollError, QueuePoller};
use dwell_runtime::clock::SharedClock;
use dwell_runtime::periodic::{First, Ticker};
use tokio_util::sync::CancellationToken;

use super::metrics::{OutcomeLabels, QueueLabels, WatchMetrics};
use super::spec::WatchEntry;
use crate::window::watched::HeadMessage;
use crate::window::{WatchPoll, WindowStore};

/// Longest wait for one poll (connection, channel, declare); a timeout replaces the connection.
const POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// Management data is refreshed at most this often (the broker itself refreshes it every 5 s).
const MANAGEMENT_EVERY_MS: i64 = 5_000;

/// What one entry's task needs.
pub struct EntryTask {
    /// The entry.
    pub entry: WatchEntry,
    /// Its broker connection.
    pub link: LinkHandle,
    /// The broker's management API, if configured.
    pub management: Option<Management>,
    /// Where observations go.
    pub store: Arc<WindowStore>,
    /// What "now" is.
    pub clock: SharedClock,
    /// Counters and gauges.
    pub metrics: WatchMetrics,
}

/// The management API's latest word on the queue.
#[derive(Default)]
struct ManagementView {
    head: Option<HeadMessage>,
    queue_type: Option<String>,
    read_at_ms: Option<i64>,
    last_error: Option<String>,
}

impl EntryTask {
    /// Polls until `token` is cancelled.
    pub async fn run(self, token: CancellationToken) {
        let e = &self.entry;
        let key = e.key();
        let labels: BTreeMap<String, String> = e.labels.clone();
        // A clone shares the gauge's atomic; the family's lock is not held across awaits.
        let up = self
            .metrics
            .queue_up
            .get_or_create(&QueueLabels {
                broker: e.broker.clone(),
                vhost: e.vhost.clone(),
                queue: e.queue.clone(),
                namespace: e.namespace.clone(),
            })
            .clone();
        let mut poller = QueuePoller::new(self.link.clone(), e.queue.clone(), POLL_TIMEOUT);
        let mut ticker = Ticker::new(e.interval, First::Now, &token);
        let mut continuous = false;
        let mut last_error: Option<String> = None;
        let mut management = ManagementView::default();
        while ticker.tick().await {
            let polled = token.run_until_cancelled(poller.poll()).await;
            let Some(polled) = polled else { break };
            match polled {
                Ok(depth) => {
                    let observed_at_ms = self.clock.now_ms();
                    self.metrics.poll(&e.broker, "ok");
                    up.set(1);
                    if last_error.take().is_some() {
                        tracing::info!(broker = %e.broker, vhost = %e.vhost, queue = %e.queue,
                            "watched queue answers again");
                    }
                    if depth.messages_ready > 0 {
                        self.read_management(&mut management).await;
                    } else {
                        management.head = None;
                    }
                    let poll = WatchPoll {
                        broker: e.broker.clone(),
                        interval_ms: e.interval.as_millis() as i64,
                        messages_ready: u64::from(depth.messages_ready),
                        consumers: depth.consumers,
                        observed_at_ms,
                        continuous,
                        head: management.head,
                        queue_type: management.queue_type.clone(),
                    };
                    if token.is_cancelled() {
                        break; // removed by a reload: its source must not come back
                    }
                    let now = self.clock.now_ms();
                    self.store.observe_watched(key.clone(), &labels, &poll, now);
                    continuous = true;
                }
                Err(error) => {
                    self.metrics.poll(&e.broker, error.as_str());
                    up.set(0);
                    continuous = false;
                    let text = error.to_string();
                    // The link logs its own connection failures; a refusal is this entry's.
                    let own = !matches!(error, PollError::NotConnected(_));
                    if own && last_error.as_ref() != Some(&text) {
                        tracing::warn!(broker = %e.broker, vhost = %e.vhost, queue = %e.queue,
                            namespace = %e.namespace, error = %text,
                            "watched queue cannot be polled (other watched queues are not \
                             affected); retrying every interval");
                    }
                    last_error = Some(text);
                }
            }
        }
        up.set(0);
    }

    /// Refreshes the management view during a backlog (at most every 5 s or interval).
    async fn read_management(&self, view: &mut ManagementView) {
        let Some(m) = &self.management else { return };
        let e = &self.entry;
        let now = self.clock.now_ms();
        let every = MANAGEMENT_EVERY_MS.max(e.interval.as_millis() as i64);
        if view.read_at_ms.is_some_and(|at| now - at < every) {
            return;
        }
        view.read_at_ms = Some(now);
        let count = |result| {
            self.metrics
                .management
                .get_or_create(&OutcomeLabels {
                    broker: e.broker.clone(),
                    result,
                })
                .inc();
        };
        match m.queue(&e.vhost, &e.queue).await {
            Ok(Some(info)) => {
                count("ok");
                view.last_error = None;
                view.queue_type = info.queue_type.or(view.queue_type.take());
                view.head =
                    info.head_message_timestamp
                        .and_then(timestamp_ms)
                        .map(|published_at_ms| HeadMessage {
                            published_at_ms,
                            read_at_ms: now,
                        });
            }
            Ok(None) => count("empty"),
            Err(error) => {
                count("error");
                let text = error.to_string();
                if view.last_error.as_ref() != Some(&text) {
                    tracing::warn!(broker = %e.broker, queue = %e.queue, error = %text,
                        "management API read failed; the head age falls back to the watch's own");
                }
                view.last_error = Some(text);
            }
        }
    }
}

/// A `timestamp` property in Unix ms: seconds by the spec, but some publishers write ms or µs
/// (rabbitmq-sampling.md §1.2): ≥ 1e14 is µs, ≥ 1e11 ms (after the year 5138 in seconds).
pub fn timestamp_ms(raw: i64) -> Option<i64> {
    match raw {
        r if r <= 0 => None,
        r if r >= 100_000_000_000_000 => Some(r / 1_000),
        r if r >= 100_000_000_000 => Some(r),
        r => r.checked_mul(1_000),
    }
}

#[cfg(test)]
mod tests {
    use super::timestamp_ms;

    #[test]
    fn timestamps_in_seconds_ms_and_us() {
        assert_eq!(timestamp_ms(1_795_817_750), Some(1_795_817_750_000));
        assert_eq!(timestamp_ms(1_795_817_750_123), Some(1_795_817_750_123));
        assert_eq!(timestamp_ms(1_795_817_750_123_456), Some(1_795_817_750_123));
        assert_eq!(timestamp_ms(0), None);
        assert_eq!(timestamp_ms(-5), None);
    }
}
