//! The interval clock: every interval, for each reported queue ([`Queues`]: the `--queue`, and
//! every queue the tap saw), it takes that queue's summary, adds its latest queue state and the
//! running counters, and appends one numbered [`Report`] to the backlog. On shutdown it closes
//! the last, partial interval with a goodbye report per queue.

use std::sync::Arc;
use std::time::Duration;

use dwell_proto::v1::{Counters, Report, Source, report::Ages};
use dwell_runtime::clock::SharedClock;
use dwell_runtime::periodic::{First, Ticker};
use tokio_util::sync::CancellationToken;

use crate::push::backlog::Backlog;
use crate::queues::{Queues, Tracked};
use crate::telemetry::Metrics;

/// How reports are cut.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Report period.
    pub every: Duration,
    /// Queue state older than this is not sent (the broker has been unreachable).
    pub state_max_age: Duration,
}

/// Builds and numbers reports.
pub struct Reporter {
    /// Who observes: namespace, pod and labels (queue and vhost come from each tracked queue).
    pub pod: Source,
    /// Random per process; with `seq` it makes resends idempotent.
    pub instance: u64,
    /// Period and freshness rule.
    pub config: Config,
    /// The reported queues, each with its interval's ages and queue state.
    pub queues: Arc<Queues>,
    /// Where reports go.
    pub backlog: Arc<Backlog>,
    /// Self-metrics (and the running counters).
    pub metrics: Arc<Metrics>,
    /// Where interval bounds are read.
    pub clock: SharedClock,
}

impl Reporter {
    /// Emits a report per queue per interval until `shutdown` fires, then a final goodbye per
    /// queue.
    pub async fn run(self, shutdown: CancellationToken) {
        // One seq per report across every queue, so the backlog's seqs increase.
        let mut seq = 0u64;
        let mut start = self.clock.now_ms();
        let mut ticker = Ticker::new(self.config.every, First::AfterPeriod, &shutdown);
        while ticker.tick().await {
            start = self.close_interval(&mut seq, start, false);
        }
        // The last, partial interval is the goodbye: every aggregator forgets these sources at
        // once instead of counting them until they go stale.
        self.close_interval(&mut seq, start, true);
        tracing::info!(seq, "goodbye reports queued");
    }

    /// Appends each queue's report for `[start_ms, now)` to the backlog; returns its end.
    fn close_interval(&self, seq: &mut u64, start_ms: i64, goodbye: bool) -> i64 {
        // A wall clock stepped back must not give an interval that ends before it starts.
        let end_ms = self.clock.now_ms().max(start_ms);
        for queue in self.queues.all() {
            *seq += 1;
            let report = self.build(&queue, *seq, start_ms, end_ms, goodbye);
            self.metrics.reports_built.inc();
            self.backlog.push(report);
        }
        end_ms
    }

    /// The report of `queue` for `[start_ms, end_ms)`.
    pub fn build(
        &self,
        queue: &Tracked,
        seq: u64,
        start_ms: i64,
        end_ms: i64,
        goodbye: bool,
    ) -> Report {
        let summary = queue.ages().take();
        let fresh_after = end_ms - self.config.state_max_age.as_millis() as i64;
        let queue_state = queue.state().filter(|s| s.observed_at_ms >= fresh_after);
        let m = &self.metrics;
        let key = queue.key();
        Report {
            source: Some(Source {
                queue: key.queue.clone(),
                vhost: key.vhost.clone(),
                ..self.pod.clone()
            }),
            instance: self.instance,
            seq,
            interval_start_ms: start_ms,
            interval_end_ms: end_ms,
            ages: Some(Ages::Summary(summary.to_proto())),
            queue_state,
            counters: Some(Counters {
                clamped: m.clamped.get(),
                missing: m.missing.get(),
                unit_converted: m.unit_converted.get(),
                backlog_dropped: m.backlog_dropped.get(),
                rejected: m.rejected_total.get(),
            }),
            goodbye,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwell_proto::v1::QueueState;
    use dwell_runtime::clock::ManualClock;

    use crate::accumulator::Source as AgeSource;
    use crate::timestamp::{Policy, Unit};

    const NOW_MS: i64 = 1_800_000_000_000;

    fn reporter(every: Duration, queues: &[&str]) -> (Reporter, Arc<ManualClock>) {
        let metrics = Metrics::new();
        let clock = ManualClock::new(NOW_MS);
        let policy = Policy {
            default_unit: Unit::Auto,
            max_age_ms: 60_000,
        };
        let tracked = Arc::new(Queues::new(policy, clock.clone(), metrics.clone(), 16));
        for q in queues {
            tracked.track(q, "/").unwrap();
        }
        let r = Reporter {
            pod: Source {
                namespace: "ns".into(),
                pod: "p".into(),
                ..Default::default()
            },
            instance: 7,
            config: Config {
                every,
                state_max_age: Duration::from_secs(15),
            },
            queues: tracked,
            backlog: Backlog::new(100, metrics.clone()),
            metrics,
            clock: clock.clone(),
        };
        (r, clock)
    }

    fn summary(r: &Report) -> dwell_proto::v1::Summary {
        match &r.ages {
            Some(Ages::Summary(s)) => s.clone(),
            other => panic!("no summary: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_report_per_interval_then_goodbye() {
        let (r, _clock) = reporter(Duration::from_secs(1), &["q"]);
        let backlog = r.backlog.clone();
        let acc = r.queues.all()[0].ages().clone();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(r.run(cancel.clone()));
        acc.observe(Some(1), Some(Unit::S), false, AgeSource::Report);
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(backlog.len(), 3);
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(backlog.len(), 4);
        assert_eq!(backlog.goodbye_seq(), Some(4));
        let first = backlog.next_after(0).unwrap();
        assert_eq!((first.seq, first.instance, first.goodbye), (1, 7, false));
        assert_eq!(first.source.as_ref().unwrap().queue, "q");
        assert_eq!(first.source.as_ref().unwrap().pod, "p");
        assert_eq!(summary(&first).count, 1);
        assert_eq!(first.counters.unwrap().clamped, 1);
        let second = backlog.next_after(1).unwrap();
        assert_eq!(
            summary(&second).count,
            0,
            "ages are not carried into the next interval"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_queue_is_its_own_source_with_increasing_seqs() {
        let (r, _clock) = reporter(Duration::from_secs(1), &["a", "b"]);
        let backlog = r.backlog.clone();
        let queues = r.queues.clone();
        queues.all()[1].ages().observe(
            Some(NOW_MS as u64 - 2_000),
            Some(Unit::Ms),
            false,
            AgeSource::Tap,
        );
        let cancel = CancellationToken::new();
        let task = tokio::spawn(r.run(cancel.clone()));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // A queue first seen later is reported from the next interval on.
        queues.track("c", "v").unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        cancel.cancel();
        task.await.unwrap();
        let mut reports = Vec::new();
        let mut cursor = 0;
        while let Some(r) = backlog.next_after(cursor) {
            cursor = r.seq;
            let s = r.source.clone().unwrap();
            reports.push((r.seq, s.queue, s.vhost, summary(&r).count, r.goodbye));
        }
        let expected: Vec<(u64, String, String, u64, bool)> = [
            (1, "a", "/", 0, false),
            (2, "b", "/", 1, false),
            (3, "a", "/", 0, false),
            (4, "b", "/", 0, false),
            (5, "c", "v", 0, false),
            (6, "a", "/", 0, true),
            (7, "b", "/", 0, true),
            (8, "c", "v", 0, true),
        ]
        .into_iter()
        .map(|(n, q, v, c, g)| (n, q.to_owned(), v.to_owned(), c, g))
        .collect();
        assert_eq!(reports, expected);
        assert_eq!(backlog.goodbye_seq(), Some(8));
    }

    #[test]
    fn stale_queue_state_is_not_sent() {
        let (r, _clock) = reporter(Duration::from_secs(1), &["q"]);
        let q = r.queues.all()[0].clone();
        let qs = QueueState {
            messages_ready: 3,
            consumers: 0,
            observed_at_ms: 100_000,
        };
        q.set_state(qs);
        assert_eq!(r.build(&q, 1, 0, 110_000, false).queue_state, Some(qs));
        assert_eq!(r.build(&q, 2, 0, 120_000, false).queue_state, None);
    }

    #[tokio::test(start_paused = true)]
    async fn interval_bounds_come_from_the_injected_clock() {
        let (r, clock) = reporter(Duration::from_secs(1), &["q"]);
        let backlog = r.backlog.clone();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(r.run(cancel.clone()));
        tokio::task::yield_now().await; // the reporter reads its start time
        clock.advance(1_000);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // The wall clock steps back (NTP): an interval never ends before it starts.
        clock.advance(-400);
        tokio::time::sleep(Duration::from_secs(1)).await;
        cancel.cancel();
        task.await.unwrap();
        let bounds = |seq: u64| {
            let r = backlog.next_after(seq - 1).unwrap();
            (r.interval_start_ms, r.interval_end_ms, r.goodbye)
        };
        assert_eq!(bounds(1), (NOW_MS, NOW_MS + 1_000, false));
        assert_eq!(bounds(2), (NOW_MS + 1_000, NOW_MS + 1_000, false));
        assert_eq!(bounds(3), (NOW_MS + 1_000, NOW_MS + 1_000, true));
    }
}
