//! The last N reports, kept so that every aggregator stream, on (re)connect, can resend them all:
//! a restarted aggregator rebuilds its window from them, and one that already has them ignores
//! the duplicates by (instance, seq). The oldest report goes first when it is full; it is counted
//! as dropped when some aggregator never acknowledged it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use dwell_proto::v1::Report;
use tokio::sync::watch;

use crate::telemetry::Metrics;

/// Bounded, shared store of recent reports.
pub struct Backlog {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    capacity: usize,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct State {
    reports: VecDeque<Report>,
    goodbye_seq: Option<u64>,
    /// Highest seq acknowledged, per aggregator address currently streamed to.
    acked: HashMap<SocketAddr, u64>,
}

impl Backlog {
    /// A backlog holding at most `capacity` reports.
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
            capacity: capacity.max(1),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a report (seqs must increase), evicting the oldest when full.
    pub fn push(&self, report: Report) {
        let mut s = self.lock();
        if report.goodbye {
            s.goodbye_seq = Some(report.seq);
        }
        s.reports.push_back(report);
        while s.reports.len() > self.capacity {
            if let Some(old) = s.reports.pop_front() {
                let unacked = s.acked.is_empty() || s.acked.values().any(|&a| a < old.seq);
                if unacked {
                    self.metrics.backlog_dropped.inc();
                }
            }
        }
        self.metrics.backlog_reports.set(s.reports.len() as i64);
        drop(s);
        self.changed.send_modify(|v| *v += 1);
    }

    /// The oldest report with a seq above `cursor` (0: the oldest of all).
    pub fn next_after(&self, cursor: u64) -> Option<Report> {
        let s = self.lock();
        // Seqs increase along the deque, so skip by position.
        let start = s.reports.partition_point(|r| r.seq <= cursor);
        s.reports.get(start).cloned()
    }

    /// Number of reports held.
    pub fn len(&self) -> usize {
        self.lock().reports.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The seq of the goodbye report, once shutdown has produced it.
    pub fn goodbye_seq(&self) -> Option<u64> {
        self.lock().goodbye_seq
    }

    /// Wakes up on every push.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Starts tracking acknowledgements from `addr`.
    pub fn register(&self, addr: SocketAddr) {
        self.lock().acked.entry(addr).or_insert(0);
    }

    /// Stops tracking `addr` (its replica went away).
    pub fn unregister(&self, addr: SocketAddr) {
        self.lock().acked.remove(&addr);
    }

    /// Records that `addr` acknowledged `seq`.
    pub fn ack(&self, addr: SocketAddr, seq: u64) {
        if let Some(a) = self.lock().acked.get_mut(&addr) {
            *a = (*a).max(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seq: u64) -> Report {
        Report {
            seq,
            ..Default::default()
        }
    }

    #[test]
    fn bounded_oldest_first_and_counted_only_when_unacked() {
        let metrics = Metrics::new();
        let b = Backlog::new(3, metrics.clone());
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        b.register(a);
        for seq in 1..=3 {
            b.push(report(seq));
        }
        b.ack(a, 2);
        b.push(report(4)); // evicts 1: acked, not a loss
        b.push(report(5)); // evicts 2: acked
        assert_eq!(metrics.backlog_dropped.get(), 0);
        b.push(report(6)); // evicts 3: never acked
        assert_eq!(metrics.backlog_dropped.get(), 1);
        assert_eq!(b.len(), 3);
        assert_eq!(b.next_after(0).map(|r| r.seq), Some(4));
        assert_eq!(b.next_after(4).map(|r| r.seq), Some(5));
        assert_eq!(b.next_after(6), None);
        let mut bye = report(7);
        bye.goodbye = true;
        b.push(bye);
        assert_eq!(b.goodbye_seq(), Some(7));
    }
}
