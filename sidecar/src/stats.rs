//! The `stats` source: every few seconds a passive `queue.declare` of each reported queue in the
//! URL's vhost (the `--queue`, and every queue the tap has seen), on the sidecar's own broker
//! connection, reads `messages_ready` and `consumer_count` (needs no queue permissions, changes
//! nothing). A channel error (a missing queue is a 404 channel close) reopens the channel for
//! the next queue; a lost connection reconnects with backoff. Queues of other vhosts cannot be
//! polled on this connection and are skipped (logged once each). The report source and the tap
//! never depend on any of this.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use dwell_proto::v1::QueueState;
use dwell_runtime::backoff::Backoff;
use dwell_runtime::clock::SharedClock;
use dwell_runtime::periodic::{First, Ticker};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio_util::sync::CancellationToken;

use crate::amqp::AmqpUrl;
use crate::queues::{QueueKey, Queues, Tracked};
use crate::telemetry::{Metrics, QueueLabels};

/// Where the stats source connects, and how often it polls.
#[derive(Debug, Clone)]
pub struct Config {
    /// Broker URL (its own connection, named `dwell-sidecar stats`).
    pub url: AmqpUrl,
    /// Time between rounds of passive declares.
    pub every: Duration,
}

/// The stats source: its configuration and where its observations go.
pub struct Stats {
    /// Where and how often.
    pub config: Config,
    /// The queues to poll; each one's latest state is stored on it.
    pub queues: Arc<Queues>,
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
        let url = &self.config.url;
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut last_error: Option<String> = None;
        let name = "dwell-sidecar stats";
        while let Some(connected) = shutdown
            .run_until_cancelled(crate::amqp::connect(url, name))
            .await
        {
            match connected {
                Ok(conn) => {
                    tracing::info!(amqp = %url, "stats source connected");
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
        let Config { url, every } = &self.config;
        let mut ticker = Ticker::new(*every, First::Now, shutdown);
        let mut channel: Option<Channel> = None;
        let mut skipped: BTreeSet<QueueKey> = BTreeSet::new();
        while ticker.tick().await {
            for queue in self.queues.all() {
                if queue.key().vhost != url.vhost() {
                    if skipped.insert(queue.key().clone()) {
                        tracing::info!(queue = %queue.key().queue, vhost = %queue.key().vhost,
                            stats_vhost = %url.vhost(), "stats cannot poll a queue of another vhost");
                    }
                    continue;
                }
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
                match self.poll(&ch, &queue, backoff, last_error).await {
                    Polled::Ok => {}
                    // The broker closed the channel (404 for a missing queue); use a new one.
                    Polled::ChannelGone => channel = None,
                    Polled::Reconnect => return,
                }
            }
        }
    }

    /// One passive declare of `queue`.
    async fn poll(
        &self,
        ch: &Channel,
        queue: &Tracked,
        backoff: &mut Backoff,
        last_error: &mut Option<String>,
    ) -> Polled {
        let name = &queue.key().queue;
        let result = tokio::time::timeout(Duration::from_secs(10), passive_declare(ch, name)).await;
        match result {
            Ok(Ok((ready, consumers))) => {
                backoff.reset();
                if last_error.take().is_some() {
                    tracing::info!(queue = %name, "stats source recovered");
                }
                Metrics::inc(&self.metrics.stats_polls, "ok");
                let labels = QueueLabels {
                    queue: name.clone(),
                    vhost: queue.key().vhost.clone(),
                };
                let m = &self.metrics;
                m.queue_messages_ready
                    .get_or_create(&labels)
                    .set(i64::from(ready));
                m.queue_consumers
                    .get_or_create(&labels)
                    .set(i64::from(consumers));
                queue.set_state(QueueState {
                    messages_ready: u64::from(ready),
                    consumers,
                    observed_at_ms: self.clock.now_ms(),
                });
                Polled::Ok
            }
            Ok(Err(e)) => {
                Metrics::inc(&self.metrics.stats_polls, "error");
                let msg = e.to_string();
                if last_error.as_ref() != Some(&msg) {
                    tracing::warn!(queue = %name, error = %msg, "passive declare failed; reopening the channel");
                    *last_error = Some(msg);
                }
                Polled::ChannelGone
            }
            Err(_) => {
                Metrics::inc(&self.metrics.stats_polls, "error");
                tracing::warn!(queue = %name, "passive declare timed out; reconnecting");
                Polled::Reconnect
            }
        }
    }
}

/// What one poll left behind.
enum Polled {
    /// Polled.
    Ok,
    /// The channel was closed by the broker.
    ChannelGone,
    /// The connection is unusable.
    Reconnect,
}
