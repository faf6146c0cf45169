//! Periodic work that ends with the shutdown token: `while ticker.tick().await { … }` replaces
//! the hand-written interval/select/cancel loops. Missed ticks are delayed, never bunched, so a
//! slow tick (a broker timeout) is not followed by a burst.
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// When the first tick fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// At once (work that should start with the process).
    Now,
    /// One period from now (work on something just loaded).
    AfterPeriod,
}

/// Ticks every period until the shutdown token is cancelled.
#[derive(Debug)]
pub struct Ticker {
    interval: Interval,
    shutdown: CancellationToken,
}

impl Ticker {
    /// A ticker of `period` (at least 1 ms) that stops with `shutdown`.
    pub fn new(period: Duration, first: First, shutdown: &CancellationToken) -> Self {
        let period = period.max(Duration::from_millis(1));
        let start = match first {
            First::Now => Instant::now(),
            First::AfterPeriod => Instant::now() + period,
        };
        let mut interval = tokio::time::interval_at(start, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            interval,
            shutdown: shutdown.clone(),
        }
    }

    /// Waits for the next tick: true when it came, false once shutdown is cancelled (at once if
    /// it already is, even when a tick is due).
    pub async fn tick(&mut self) -> bool {
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => false,
            _ = self.interval.tick() => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_until_shutdown() {
        let shutdown = CancellationToken::new();
        let start = Instant::now();
        let mut now = Ticker::new(Duration::from_secs(1), First::Now, &shutdown);
        assert!(now.tick().await);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(now.tick().await);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        let mut later = Ticker::new(Duration::from_secs(1), First::AfterPeriod, &shutdown);
        assert!(later.tick().await);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        shutdown.cancel();
        assert!(!now.tick().await);
        assert!(!later.tick().await);
    }
}
