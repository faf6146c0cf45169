//! The consumer app of the tests (our `binder`): a lapin consumer with prefetch 1 that spends a
//! fixed time on each message and acks it. On each delivery it reports the message's timestamp to
//! its own sidecar over the sidecar's UDP line protocol (`<queue> <ms>ms <0|1>`), the one-line
//! integration the sidecar documents. Every acked sequence number goes into a shared [`Ledger`].
//! It reconnects after a broker outage, and stops cleanly: the message in hand is finished and
//! acked, anything else prefetched goes back to the queue when the channel closes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use tokio::net::UdpSocket;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::broker;
use crate::publisher::now_ms;

/// What every worker consumed: acks per sequence number and the wait of each delivery.
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<LedgerInner>,
}

#[derive(Debug, Default)]
struct LedgerInner {
    acked: BTreeMap<u64, u32>,
    waits: Vec<(u64, u64)>,
}

impl Ledger {
    fn record_delivery(&self, at_ms: u64, wait_ms: u64) {
        if let Ok(mut l) = self.inner.lock() {
            l.waits.push((at_ms, wait_ms));
        }
    }

    fn record_ack(&self, seq: u64) {
        if let Ok(mut l) = self.inner.lock() {
            *l.acked.entry(seq).or_default() += 1;
        }
    }

    /// How many distinct sequence numbers were acked.
    pub fn distinct(&self) -> usize {
        self.inner.lock().map(|l| l.acked.len()).unwrap_or_default()
    }

    /// Sequence numbers below `n` never acked.
    pub fn missing(&self, n: u64) -> Vec<u64> {
        let Ok(l) = self.inner.lock() else {
            return Vec::new();
        };
        (0..n).filter(|s| !l.acked.contains_key(s)).collect()
    }

    /// Sequence numbers acked more than once (redelivered after a lost ack).
    pub fn duplicates(&self) -> usize {
        self.inner
            .lock()
            .map(|l| l.acked.values().filter(|c| **c > 1).count())
            .unwrap_or_default()
    }

    /// `(delivered_at_ms, wait_ms)` of every delivery so far, in delivery order.
    pub fn waits(&self) -> Vec<(u64, u64)> {
        self.inner
            .lock()
            .map(|l| l.waits.clone())
            .unwrap_or_default()
    }
}

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Broker URL.
    pub amqp_url: String,
    /// The queue consumed.
    pub queue: String,
    /// Time spent on each message.
    pub processing: Duration,
    /// The sidecar's UDP report address (None: report nothing).
    pub report_udp: Option<SocketAddr>,
}

/// The timestamp of a delivery in milliseconds: the `timestamp_in_ms` header, else the
/// `timestamp` property (seconds).
pub fn timestamp_ms(delivery: &Delivery) -> Option<u64> {
    let header = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h: &FieldTable| h.inner().get("timestamp_in_ms").cloned());
    match header {
        Some(AMQPValue::LongLongInt(v)) if v > 0 => Some(v as u64),
        Some(AMQPValue::LongUInt(v)) => Some(u64::from(v)),
        Some(AMQPValue::Timestamp(v)) => Some(v),
        _ => delivery.properties.timestamp().map(|s| s * 1000),
    }
}

/// The sequence number in a delivery's body.
fn sequence(delivery: &Delivery) -> Option<u64> {
    std::str::from_utf8(&delivery.data)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Consumes until `cancel` fires; reconnects after any broker error.
pub async fn run(config: WorkerConfig, ledger: Arc<Ledger>, cancel: CancellationToken) {
    let udp = UdpSocket::bind("127.0.0.1:0").await.ok();
    while !cancel.is_cancelled() {
        if let Err(e) = consume(&config, &ledger, udp.as_ref(), &cancel).await {
            eprintln!("worker on {}: {e}; reconnecting", config.queue);
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

async fn consume(
    config: &WorkerConfig,
    ledger: &Ledger,
    udp: Option<&UdpSocket>,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let conn = broker::connect(&config.amqp_url, Duration::from_secs(5)).await?;
    let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
    broker::declare(&ch, &config.queue)
        .await
        .map_err(|e| e.to_string())?;
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut consumer = ch
        .basic_consume(
            config.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let tag = consumer.tag();
    let result = loop {
        let delivery = tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            d = consumer.next() => d,
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(e)) => break Err(e.to_string()),
            None => break Err("consumer stream ended".into()),
        };
        let now = now_ms();
        let ts = timestamp_ms(&delivery);
        if let Some(ts) = ts {
            ledger.record_delivery(now, now.saturating_sub(ts));
        }
        if let (Some(sock), Some(addr)) = (udp, config.report_udp) {
            let line = match ts {
                Some(ts) => format!("{} {ts}ms {}", config.queue, u8::from(delivery.redelivered)),
                None => format!("{} - {}", config.queue, u8::from(delivery.redelivered)),
            };
            // Fire-and-forget, as a real app would: a lost datagram is a lost sample, not an error.
            let _ = sock.send_to(line.as_bytes(), addr).await;
        }
        tokio::time::sleep(config.processing).await;
        match delivery.ack(BasicAckOptions::default()).await {
            Ok(true) => {
                if let Some(seq) = sequence(&delivery) {
                    ledger.record_ack(seq);
                }
            }
            // The acker was invalidated (channel gone): the broker will redeliver it.
            Ok(false) => break Err("ack refused: the channel is gone".into()),
            Err(e) => break Err(format!("ack failed: {e}")),
        }
    };
    if result.is_ok() {
        let _ = ch.basic_cancel(tag, BasicCancelOptions::default()).await;
        let _ = ch.close(200, "worker stopping".into()).await;
    }
    let _ = conn.close(200, "worker stopping".into()).await;
    result
}
