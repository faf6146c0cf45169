//! Passive `queue.declare`: the queue's ready count and consumers, exact at the moment of the
//! call (rabbitmq-sampling.md §3.1), needing no permission on the queue and changing nothing. A
//! refusal is classified: a missing queue (404) or a forbidden one (403, 405) closes only the
//! *channel*; anything else concerns the connection.
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, ErrorKind};

/// What a passive declare read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages ready for delivery (not the unacknowledged ones).
    pub messages_ready: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// Why a passive declare gave no depth.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeclareError {
    /// 404: no such queue in the vhost. The channel is closed.
    #[error("queue not found (404): {0}")]
    NotFound(String),
    /// 403 or 405: the user may not see the queue, or it is exclusive to another connection.
    /// The channel is closed.
    #[error("access refused: {0}")]
    Refused(String),
    /// Anything else (the connection is closing, a protocol error): the connection is suspect.
    #[error("{0}")]
    Connection(String),
}

impl DeclareError {
    /// Whether only the channel is lost (the connection is fine: open a new channel).
    pub fn channel_only(&self) -> bool {
        matches!(self, Self::NotFound(_) | Self::Refused(_))
    }

    /// A short label for metrics (`not_found`, `refused`, `error`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Refused(_) => "refused",
            Self::Connection(_) => "error",
        }
    }
}

/// One passive declare of `queue` on `channel`.
pub async fn passive_declare(channel: &Channel, queue: &str) -> Result<QueueDepth, DeclareError> {
    let declared = channel
        .queue_declare(
            queue.into(),
            // `.passive()` exists from lapin 4.6 only; the field works on every 4.x.
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match declared {
        Ok(q) => Ok(QueueDepth {
            messages_ready: q.message_count(),
            consumers: q.consumer_count(),
        }),
        Err(e) => Err(match e.kind() {
            ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404 => {
                DeclareError::NotFound(amqp.get_message().to_string())
            }
            ErrorKind::ProtocolError(amqp) if matches!(amqp.get_id(), 403 | 405) => {
                DeclareError::Refused(amqp.get_message().to_string())
            }
            _ => DeclareError::Connection(e.to_string()),
        }),
    }
}
