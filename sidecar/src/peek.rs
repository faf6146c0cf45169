//! The `peek` source (off unless enabled): `basic.get` + `nack(requeue)` of the head message, to
//! learn the age of the oldest ready message when no consumer reports anything.
//!
//! A peek changes the message (it comes back `redelivered`), so it runs only when every gate of
//! the safety rules holds: the queue is asserted classic, a passive declare just saw no consumer
//! and at least one ready message, and the last peek was at least the peek interval (>= 10 s) ago.
//! The message is given back at once, within a bound; any error or timeout closes the channel,
//! which requeues whatever it held. A delivery carrying `x-delivery-count` (a quorum queue) or a
//! `basic.get` refused as not implemented (a stream) disables peeking for good.

use std::sync::Arc;
use std::time::Duration;

use dwell_runtime::periodic::{First, Ticker};
use lapin::options::{BasicGetOptions, BasicNackOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel, Connection};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::accumulator::{Accumulator, Source};
use crate::amqp::AmqpUrl;
use crate::stats::passive_declare;
use crate::telemetry::Metrics;
use crate::timestamp::Unit;

/// Longest wait for basic.get, and longest time a peeked message is held before it is given back.
pub const HOLD_BOUND: Duration = Duration::from_secs(2);
/// Least time between peeks, whatever the configuration says.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// The operator's assertion of the queue's type (peek needs "classic"). Only the operator can
/// say: a passive declare does not tell, and guessing wrong would poison a quorum queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    /// A classic queue: peek may run (if the other gates hold).
    Classic,
    /// A quorum queue: never peeked (a requeue counts towards the delivery limit).
    Quorum,
    /// A stream: never peeked (basic.get is a connection error).
    Stream,
    /// Not asserted: never peeked.
    Unknown,
}

/// What the peek source peeks, and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// Broker URL (its own connection, named `dwell-sidecar peek <queue>`).
    pub url: AmqpUrl,
    /// Queue to peek.
    pub queue: String,
    /// The operator's assertion of the queue type.
    pub queue_type: QueueType,
    /// Time between peeks (raised to [`MIN_INTERVAL`]).
    pub every: Duration,
    /// Header read before the timestamp property, and its unit.
    pub header: Option<(String, Unit)>,
}

/// The peek source: its configuration and where its ages go.
pub struct Peek {
    /// What to peek.
    pub config: Config,
    /// Where ages go.
    pub accumulator: Arc<Accumulator>,
    /// Self-metrics.
    pub metrics: Arc<Metrics>,
}

/// The outcome of one peek tick (also the metrics `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// A message was read and given back.
    Peeked,
    /// The queue had no ready message.
    Empty,
    /// Refused: the queue is not asserted classic.
    RefusedQueueType,
    /// Refused: consumers are attached.
    RefusedConsumers,
    /// Refused: peeking was disabled for good.
    RefusedDisabled,
    /// Refused: the last peek was too recent.
    RefusedRate,
    /// Something failed; the channel was closed.
    Error,
}

impl Tick {
    fn label(self) -> &'static str {
        match self {
            Tick::Peeked => "peeked",
            Tick::Empty => "empty",
            Tick::RefusedQueueType => "refused_queue_type",
            Tick::RefusedConsumers => "refused_consumers",
            Tick::RefusedDisabled => "refused_disabled",
            Tick::RefusedRate => "refused_rate",
            Tick::Error => "error",
        }
    }
}

/// Connection state kept between ticks.
#[derive(Default)]
struct Session {
    conn: Option<Connection>,
    channel: Option<Channel>,
    disabled: bool,
    last_peek: Option<Instant>,
}

/// Why the peek could not get a channel on the broker (the password masked in both).
#[derive(Debug, thiserror::Error)]
enum ReachError {
    /// No connection.
    #[error(transparent)]
    Connect(#[from] dwell_amqp::ConnectError),
    /// Connected, but no channel.
    #[error("cannot open a channel: {0}")]
    Channel(#[from] lapin::Error),
}

impl Peek {
    /// Peeks once per interval until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) {
        let Config {
            queue, queue_type, ..
        } = &self.config;
        let every = self.config.every.max(MIN_INTERVAL);
        if *queue_type != QueueType::Classic {
            tracing::warn!(queue = %queue, queue_type = ?queue_type,
                "peek is enabled but refuses to run: it needs --queue-type classic");
        }
        let mut session = Session::default();
        let mut ticker = Ticker::new(every, First::Now, &shutdown);
        while ticker.tick().await {
            let outcome = self.tick(&mut session, every).await;
            Metrics::inc(&self.metrics.peeks, outcome.label());
            tracing::debug!(queue = %queue, outcome = outcome.label(), "peek tick");
        }
        if let Some(conn) = session.conn {
            let _ = conn.close(200, "dwell-sidecar peek stopping".into()).await;
        }
    }

    async fn tick(&self, s: &mut Session, every: Duration) -> Tick {
        if s.disabled {
            return Tick::RefusedDisabled;
        }
        if self.config.queue_type != QueueType::Classic {
            return Tick::RefusedQueueType;
        }
        if s.last_peek.is_some_and(|t| t.elapsed() < every) {
            return Tick::RefusedRate;
        }
        let channel = match self.channel(s).await {
            Ok(ch) => ch,
            Err(e) => {
                tracing::warn!(amqp = %self.config.url, error = %e, "peek cannot reach the broker");
                return Tick::Error;
            }
        };
        // Gate on a fresh count: a consumer attached since the last stats poll must stop us.
        match timeout(HOLD_BOUND, passive_declare(&channel, &self.config.queue)).await {
            Ok(Ok((_, consumers))) if consumers > 0 => return Tick::RefusedConsumers,
            Ok(Ok((0, _))) => return Tick::Empty,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return self.fail(s, &channel, &e.to_string()).await,
            Err(_) => return self.fail(s, &channel, "passive declare timed out").await,
        }
        s.last_peek = Some(Instant::now());
        let got = timeout(
            HOLD_BOUND,
            channel.basic_get(
                self.config.queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            ),
        )
        .await;
        let msg = match got {
            Ok(Ok(Some(msg))) => msg,
            Ok(Ok(None)) => return Tick::Empty,
            Ok(Err(e)) => {
                let text = e.to_string();
                if text.contains("NOT_IMPLEMENTED") || text.contains("NOT-IMPLEMENTED") {
                    self.disable(s, "basic.get is not implemented for this queue (a stream?)");
                }
                return self.fail(s, &channel, &text).await;
            }
            // A late get-ok may still arrive: closing the channel gives it back.
            Err(_) => return self.fail(s, &channel, "basic.get timed out").await,
        };
        // Read what we need, then give the message back before anything else.
        let properties: BasicProperties = msg.delivery.properties.clone();
        let redelivered = msg.delivery.redelivered;
        let nack = timeout(
            HOLD_BOUND,
            msg.delivery.acker.nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            }),
        )
        .await;
        match nack {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return self.fail(s, &channel, "nack was not sent").await,
            Ok(Err(e)) => return self.fail(s, &channel, &e.to_string()).await,
            Err(_) => return self.fail(s, &channel, "nack timed out").await,
        }
        if header(&properties, "x-delivery-count").is_some() {
            self.disable(
                s,
                "the peeked message carries x-delivery-count: this is a quorum queue, not classic",
            );
        }
        let (raw, unit) = match &self.config.header {
            Some((name, unit)) if header(&properties, name).is_some() => {
                (header(&properties, name), Some(*unit))
            }
            _ => (*properties.timestamp(), None),
        };
        self.accumulator
            .observe(raw, unit, redelivered, Source::Peek);
        Tick::Peeked
    }

    async fn channel(&self, s: &mut Session) -> Result<Channel, ReachError> {
        if let Some(ch) = s.channel.as_ref().filter(|c| c.status().connected()) {
            return Ok(ch.clone());
        }
        let conn = match s.conn.take() {
            Some(c) if c.status().connected() => c,
            _ => {
                let name = format!("dwell-sidecar peek {}", self.config.queue);
                crate::amqp::connect(&self.config.url, &name).await?
            }
        };
        let ch = conn.create_channel().await;
        s.conn = Some(conn);
        let ch = ch?;
        s.channel = Some(ch.clone());
        Ok(ch)
    }

    /// Closes the channel (which requeues anything it holds) and, failing that, the connection.
    async fn fail(&self, s: &mut Session, channel: &Channel, why: &str) -> Tick {
        tracing::warn!(queue = %self.config.queue, error = %why, "peek failed; closing its channel");
        s.channel = None;
        if channel.status().connected() {
            let closed = timeout(
                HOLD_BOUND,
                channel.close(200, "dwell-sidecar peek error".into()),
            )
            .await;
            if !matches!(closed, Ok(Ok(())))
                && let Some(conn) = s.conn.take()
            {
                let _ = timeout(
                    HOLD_BOUND,
                    conn.close(200, "dwell-sidecar peek error".into()),
                )
                .await;
            }
        }
        Tick::Error
    }

    fn disable(&self, s: &mut Session, why: &str) {
        s.disabled = true;
        self.metrics.peek_disabled.set(1);
        tracing::error!(queue = %self.config.queue, reason = why,
            "PEEK DISABLED FOR GOOD: peeking this queue would reorder or poison messages; fix --queue-type");
    }
}

/// An integer header value (any integer or timestamp type), if present and non-negative.
fn header(properties: &BasicProperties, name: &str) -> Option<u64> {
    let headers = properties.headers().as_ref()?;
    let value = headers.inner().iter().find(|(k, _)| k.as_str() == name)?.1;
    match value {
        AMQPValue::ShortShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::Timestamp(v) => Some(*v),
        // Present but not a number: still "present" for x-delivery-count detection.
        _ => Some(0).filter(|_| name == "x-delivery-count"),
    }
}
