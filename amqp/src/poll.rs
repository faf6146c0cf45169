//! Polling one queue by passive `queue.declare` on its own channel of a shared [`Link`]
//! connection: a 404 or 403 closes only that channel (reopened at the next poll), so one missing
//! queue never disturbs the others on the connection; a timeout or a connection-level error is
//! reported to the link, which reconnects. The caller owns the schedule (a `Ticker`).
//!
//! [`Link`]: crate::link::Link
use std::time::Duration;

use lapin::Channel;

use crate::connect::ConnectError;
use crate::declare::{DeclareError, QueueDepth, passive_declare};
use crate::link::LinkHandle;

/// Why one poll gave no depth.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// The broker answered with a refusal (404, 403) or a connection-level error.
    #[error(transparent)]
    Declare(#[from] DeclareError),
    /// The link has no connection: its last attempt failed (why), or it is still connecting.
    #[error("not connected{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    NotConnected(Option<ConnectError>),
    /// No channel could be opened on the connection.
    #[error("cannot open a channel: {0}")]
    Channel(String),
    /// No answer within the poll timeout (the connection is then replaced).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl PollError {
    /// A short label for metrics (`not_found`, `refused`, `error`, `not_connected`, `channel`,
    /// `timeout`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Declare(e) => e.as_str(),
            Self::NotConnected(_) => "not_connected",
            Self::Channel(_) => "channel",
            Self::Timeout(_) => "timeout",
        }
    }
}

/// One queue's poller: its name, its channel, and the link it borrows connections from.
pub struct QueuePoller {
    link: LinkHandle,
    queue: String,
    timeout: Duration,
    channel: Option<(u64, Channel)>,
}

impl QueuePoller {
    /// A poller of `queue` on `link`'s connections; each poll (connection wait, channel open,
    /// declare) is bounded by `timeout`.
    pub fn new(link: LinkHandle, queue: String, timeout: Duration) -> Self {
        Self {
            link,
            queue,
            timeout,
            channel: None,
        }
    }

    /// The queue polled.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// One passive declare.
    pub async fn poll(&mut self) -> Result<QueueDepth, PollError> {
        let up = self
            .link
            .connection(self.timeout)
            .await
            .map_err(PollError::NotConnected)?;
        let channel = match &self.channel {
            Some((generation, ch)) if *generation == up.generation && ch.status().connected() => {
                ch.clone()
            }
            _ => {
                self.channel = None;
                let opened =
                    tokio::time::timeout(self.timeout, up.connection.create_channel()).await;
                match opened {
                    Ok(Ok(ch)) => {
                        self.channel = Some((up.generation, ch.clone()));
                        ch
                    }
                    Ok(Err(e)) => {
                        // Out of channels is this connection's limit, not a dead connection.
                        if !matches!(e.kind(), lapin::ErrorKind::ChannelsLimitReached) {
                            self.link.report_lost(up.generation);
                        }
                        return Err(PollError::Channel(e.to_string()));
                    }
                    Err(_) => {
                        self.link.report_lost(up.generation);
                        return Err(PollError::Timeout(self.timeout));
                    }
                }
            }
        };
        match tokio::time::timeout(self.timeout, passive_declare(&channel, &self.queue)).await {
            Ok(Ok(depth)) => Ok(depth),
            Ok(Err(e)) => {
                // The broker closed the channel (404/403) or the connection is failing.
                self.channel = None;
                if !e.channel_only() {
                    self.link.report_lost(up.generation);
                }
                Err(e.into())
            }
            Err(_) => {
                self.channel = None;
                self.link.report_lost(up.generation);
                Err(PollError::Timeout(self.timeout))
            }
        }
    }
}
