//! The interval clock: every interval it takes the accumulator's summary, adds the latest
//! queue state and the running counters, and appends one numbered [`Report`] to the backlog. On
//! shutdown it closes the last, partial interval with a goodbye report.

use std::sync::Arc;
use std::time::Duration;

use dwell_proto::v1::{Counters, QueueState, Report, Source, report::Ages};
use dwell_runtime::clock::SharedClock;
use dwell_runtime::periodic::{First, Ticker};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::accumulator::Accumulator;
use crate::push::backlog::Backlog;
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
    /// Who observes (sent in every report).
    pub source: Source,
    /// Random per process; with `seq` it makes resends idempotent.
    pub instance: u64,
    /// Period and freshness rule.
    pub config: Config,
    /// The current interval's ages.
    pub accumulator: Arc<Accumulator>,
    /// The stats source's latest view.
    pub state: watch::Receiver<Option<QueueState>>,
    /// Where reports go.
    pub backlog: Arc<Backlog>,
    /// Self-metrics (and the running counters).
    pub metrics: Arc<Metrics>,
    /// Where interval bounds are read.
    pub clock: SharedClock,
}

impl Reporter {
    /// Emits a report per interval until `shutdown` fires, then a final goodbye report.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut seq = 0u64;
        let mut start = self.clock.now_ms();
        let mut ticker = Ticker::new(self.config.every, First::AfterPeriod, &shutdown);
        while ticker.tick().await {
            seq += 1;
            start = self.close_interval(seq, start, false);
        }
        // The last, partial interval is the goodbye: every aggregator forgets this source at
        // once instead of counting it until it goes stale.
        seq += 1;
        self.close_interval(seq, start, true);
        tracing::info!(seq, "goodbye report queued");
    }

    /// Appends the report for `[start_ms, now)` to the backlog; returns its end.
    fn close_interval(&self, seq: u64, start_ms: i64, goodbye: bool) -> i64 {
        // A wall clock stepped back must not give an interval that ends before it starts.
        let end_ms = self.clock.now_ms().max(start_ms);
        let report = self.build(seq, start_ms, end_ms, goodbye);
        self.metrics.reports_built.inc();
        self.backlog.push(report);
        end_ms
    }

    /// The report for `[start_ms, end_ms)`.
    pub fn build(&self, seq: u64, start_ms: i64, end_ms: i64, goodbye: bool) -> Report {
        let summary = self.accumulator.take();
        let fresh_after = end_ms - self.config.state_max_age.as_millis() as i64;
        let queue_state = (*self.state.borrow()).filter(|s| s.observed_at_ms >= fresh_after);
        let m = &self.metrics;
        Report {
            source: Some(self.source.clone()),
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
    use dwell_runtime::clock::ManualClock;

    use crate::accumulator::Source as AgeSource;
    use crate::timestamp::{Policy, Unit};

    const NOW_MS: i64 = 1_800_000_000_000;

    fn reporter(
        every: Duration,
    ) -> (
        Reporter,
        watch::Sender<Option<QueueState>>,
        Arc<ManualClock>,
    ) {
        let metrics = Metrics::new();
        let clock = ManualClock::new(NOW_MS);
        let acc = Arc::new(Accumulator::new(
            Policy {
                default_unit: Unit::Auto,
                max_age_ms: 60_000,
            },
            clock.clone(),
            metrics.clone(),
        ));
        let (tx, rx) = watch::channel(None);
        let r = Reporter {
            source: Source {
                namespace: "ns".into(),
                pod: "p".into(),
                queue: "q".into(),
                ..Default::default()
            },
            instance: 7,
            config: Config {
                every,
                state_max_age: Duration::from_secs(15),
            },
            accumulator: acc,
            state: rx,
            backlog: Backlog::new(10, metrics.clone()),
            metrics,
            clock: clock.clone(),
        };
        (r, tx, clock)
    }

    #[tokio::test(start_paused = true)]
    async fn one_report_per_interval_then_goodbye() {
        let (r, _state, _clock) = reporter(Duration::from_secs(1));
        let backlog = r.backlog.clone();
        let acc = r.accumulator.clone();
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
        let Some(Ages::Summary(s)) = first.ages else {
            panic!("no summary")
        };
        assert_eq!(s.count, 1);
        assert_eq!(first.counters.unwrap().clamped, 1);
        let second = backlog.next_after(1).unwrap();
        let Some(Ages::Summary(s)) = second.ages else {
            panic!("no summary")
        };
        assert_eq!(s.count, 0, "ages are not carried into the next interval");
    }

    #[test]
    fn stale_queue_state_is_not_sent() {
        let (r, state, _clock) = reporter(Duration::from_secs(1));
        let qs = QueueState {
            messages_ready: 3,
            consumers: 0,
            observed_at_ms: 100_000,
        };
        state.send_replace(Some(qs));
        assert_eq!(r.build(1, 0, 110_000, false).queue_state, Some(qs));
        assert_eq!(r.build(2, 0, 120_000, false).queue_state, None);
    }

    #[tokio::test(start_paused = true)]
    async fn interval_bounds_come_from_the_injected_clock() {
        let (r, _state, clock) = reporter(Duration::from_secs(1));
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
