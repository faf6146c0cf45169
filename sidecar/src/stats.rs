//! The `stats` source: a passive `queue.declare` every few seconds, on the sidecar's own broker
//! connection, reads `messages_ready` and `consumer_count` (needs no queue permissions, changes
//! nothing). A channel error (a missing queue is a 404 channel close) reopens the channel; a lost
//! connection reconnects with backoff. The report source never depends on any of this.

use std::sync::Arc;
use std::time::Duration;

use dwell_proto::v1::QueueState;
use dwell_runtime::backoff::Backoff;
use dwell_runtime::clock::SharedClock;
use dwell_runtime::periodic::{First, Ticker};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::amqp::AmqpUrl;
use crate::telemetry::Metrics;

/// What the stats source watches, and how often.
#[derive(Debug, Clone)]
pub struct Config {
    /// Broker URL (its own connection, named `dwell-sidecar stats <queue>`).
    pub url: AmqpUrl,
    /// Queue to watch.
    pub queue: String,
    /// Time between passive declares.
    pub every: Duration,
}

/// The stats source: its configuration and where its observations go.
pub struct Stats {
    /// What to watch.
    pub config: Config,
    /// Where the latest state goes.
    pub state: watch::Sender<Option<QueueState>>,
    /// Self-metrics.
    pub metrics: Arc<Metrics>,
    /// Stamps each observation (`observed_at_ms`).
    pub clock: SharedClock,
}

/// A passive declare: the queue's ready count and consumers, or the broker's refusal.
pub async fn passive_declare(channel: &Channel, queue: &str) -> Result<(u32, u32), lapin::Error> {
    let q = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((q.message_count(), q.consumer_count()))
}

impl Stats {
    /// Polls until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) {
        let Config { url, queue, .. } = &self.config;
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut last_error: Option<String> = None;
        let name = format!("dwell-sidecar stats {queue}");
        while let Some(connected) = shutdown.run_until_cancelled(url.connect(&name)).await {
            match connected {
                Ok(conn) => {
                    tracing::info!(amqp = %url, queue = %queue, "stats source connected");
                    self.metrics.stats_connected.set(1);
                    last_error = None;
                    self.poll_connection(&conn, &shutdown, &mut backoff, &mut last_error)
                        .await;
                    self.metrics.stats_connected.set(0);
                    let _ = conn
                        .close(200, "dwell-sidecar stats reconnecting".into())
                        .await;
                }
                Err(e) => {
                    let e = e.to_string();
                    // Once per distinct error: a broker down for an hour is one line, not 7200.
                    if last_error.as_ref() != Some(&e) {
                        tracing::warn!(amqp = %url, error = %e, "stats source cannot connect; retrying");
                        last_error = Some(e);
                    }
                }
            }
            let pause = tokio::time::sleep(backoff.next_delay());
            if shutdown.run_until_cancelled(pause).await.is_none() {
                return;
            }
        }
    }

    /// Polls on `conn`, reopening channels, until the connection is gone or `shutdown` fires.
    async fn poll_connection(
        &self,
        conn: &Connection,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
        last_error: &mut Option<String>,
    ) {
        let Config { url, queue, every } = &self.config;
        let mut ticker = Ticker::new(*every, First::Now, shutdown);
        let mut channel: Option<Channel> = None;
        while ticker.tick().await {
            if !conn.status().connected() {
                tracing::warn!(amqp = %url, "stats connection lost; reconnecting");
                return;
            }
            let ch = match &channel {
                Some(ch) if ch.status().connected() => ch.clone(),
                _ => match conn.create_channel().await {
                    Ok(ch) => {
                        channel = Some(ch.clone());
                        ch
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "stats cannot open a channel; reconnecting");
                        return;
                    }
                },
            };
            let result =
                tokio::time::timeout(Duration::from_secs(10), passive_declare(&ch, queue)).await;
            match result {
                Ok(Ok((ready, consumers))) => {
                    backoff.reset();
                    if last_error.take().is_some() {
                        tracing::info!(queue = %queue, "stats source recovered");
                    }
                    Metrics::inc(&self.metrics.stats_polls, "ok");
                    self.metrics.queue_messages_ready.set(i64::from(ready));
                    self.metrics.queue_consumers.set(i64::from(consumers));
                    self.state.send_replace(Some(QueueState {
                        messages_ready: u64::from(ready),
                        consumers,
                        observed_at_ms: self.clock.now_ms(),
                    }));
                }
                Ok(Err(e)) => {
                    Metrics::inc(&self.metrics.stats_polls, "error");
                    let msg = e.to_string();
                    if last_error.as_ref() != Some(&msg) {
                        tracing::warn!(queue = %queue, error = %msg, "passive declare failed; reopening the channel");
                        *last_error = Some(msg);
                    }
                    // The broker closed the channel (404 for a missing queue); use a new one.
                    channel = None;
                }
                Err(_) => {
                    Metrics::inc(&self.metrics.stats_polls, "error");
                    tracing::warn!(queue = %queue, "passive declare timed out; reconnecting");
                    return;
                }
            }
        }
    }
}
