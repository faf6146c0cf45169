//! The test publisher: plays an arrival [`Trace`] into a queue. Each message carries its
//! sequence number (body and `message_id`), the AMQP `timestamp` property (seconds, per spec) and
//! a `timestamp_in_ms` header; it is persistent and confirmed, and re-sent after a broker outage
//! until confirmed, so a consumer can account for every sequence number.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker;
use crate::trace::Trace;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A confirmed publishing channel to one queue.
pub struct Publisher {
    url: String,
    queue: String,
    conn: Option<(Connection, Channel)>,
}

impl Publisher {
    /// A publisher for `queue` (declared durable on first use).
    pub fn new(url: &str, queue: &str) -> Self {
        Self {
            url: url.to_owned(),
            queue: queue.to_owned(),
            conn: None,
        }
    }

    async fn channel(&mut self) -> Result<&Channel, String> {
        if self
            .conn
            .as_ref()
            .is_some_and(|(c, ch)| !c.status().connected() || !ch.status().connected())
        {
            self.conn = None;
        }
        if self.conn.is_none() {
            let conn = broker::connect(&self.url, Duration::from_secs(5)).await?;
            let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            broker::declare(&ch, &self.queue)
                .await
                .map_err(|e| e.to_string())?;
            self.conn = Some((conn, ch));
        }
        match &self.conn {
            Some((_, ch)) => Ok(ch),
            None => Err("no channel".into()),
        }
    }

    /// Publishes message `seq` stamped with `ts_ms` and waits for the broker's confirm.
    pub async fn publish_at(&mut self, seq: u64, ts_ms: u64) -> Result<(), String> {
        let queue = self.queue.clone();
        let ch = self.channel().await?;
        let mut headers = FieldTable::default();
        headers.insert(
            "timestamp_in_ms".into(),
            AMQPValue::LongLongInt(ts_ms as i64),
        );
        headers.insert("seq".into(), AMQPValue::LongLongInt(seq as i64));
        let props = BasicProperties::default()
            .with_timestamp(ts_ms / 1000)
            .with_headers(headers)
            .with_message_id(seq.to_string().into())
            .with_delivery_mode(2);
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                seq.to_string().as_bytes(),
                props,
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        if confirm.is_ack() {
            Ok(())
        } else {
            Err(format!("broker nacked message {seq}"))
        }
    }

    /// Publishes `seq` now, retrying (reconnecting) until it is confirmed or `cancel` fires.
    pub async fn publish_reliably(&mut self, seq: u64, cancel: &CancellationToken) -> bool {
        loop {
            match self.publish_at(seq, now_ms()).await {
                Ok(()) => return true,
                Err(e) => {
                    self.conn = None;
                    eprintln!("publisher: message {seq} not confirmed ({e}); retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return false,
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
            }
        }
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        if let Some((conn, _)) = self.conn.take() {
            let _ = conn.close(200, "done".into()).await;
        }
    }
}

/// Plays `trace` from `start`: message `i` is published at `start + arrivals[i]`.
/// `published` counts confirmed messages as they go. Returns how many were confirmed.
pub async fn play(
    mut publisher: Publisher,
    trace: &Trace,
    start: Instant,
    published: Arc<AtomicU64>,
    cancel: CancellationToken,
) -> u64 {
    for (seq, at) in trace.arrivals.iter().enumerate() {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(start + *at) => {}
        }
        if !publisher.publish_reliably(seq as u64, &cancel).await {
            break;
        }
        published.fetch_add(1, Ordering::Relaxed);
    }
    publisher.close().await;
    published.load(Ordering::Relaxed)
}

/// A trace played in the background by [`play`], stopped with [`Playing::stop`].
pub struct Playing {
    /// Confirmed messages so far.
    pub published: Arc<AtomicU64>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<u64>,
}

impl Playing {
    /// Starts playing `trace` into `queue` from `start` on a task of its own.
    pub fn start(url: &str, queue: &str, trace: &Trace, start: Instant) -> Self {
        let published = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let (trace, published, cancel) = (trace.clone(), published.clone(), cancel.clone());
            let publisher = Publisher::new(url, queue);
            async move { play(publisher, &trace, start, published, cancel).await }
        });
        Self {
            published,
            cancel,
            task,
        }
    }

    /// Stops publishing (whatever is not yet published stays unpublished) and returns how many
    /// messages were confirmed.
    pub async fn stop(self) -> Result<u64, String> {
        self.cancel.cancel();
        self.task.await.map_err(|e| format!("publisher task: {e}"))
    }
}
