//! A broker link: one connection kept up by its own task, reconnecting with jittered exponential
//! backoff (so a fleet does not reconnect in lockstep after an outage), shared by every poller
//! through a [`LinkHandle`]. Pollers never connect themselves: they read the current connection
//! and report one that stopped answering, which the link then replaces.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dwell_runtime::backoff::Backoff;
use dwell_runtime::periodic::{First, Ticker};
use lapin::Connection;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::connect::{ConnectError, Connector};

/// How often an open connection's status is checked (lapin notices a closed socket itself).
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// A connection up this long resets the backoff: one that keeps dropping right after the
/// handshake is retried with growing pauses, not in a tight loop.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// The link's connection, as pollers see it.
#[derive(Clone)]
pub enum LinkState {
    /// The first attempt, or a reconnect, is under way.
    Connecting,
    /// Connected.
    Up(Up),
    /// The last attempt failed; the next one follows the backoff.
    Down(ConnectError),
}

/// An open connection and which one it is (a new one after every reconnect).
#[derive(Clone)]
pub struct Up {
    /// The connection; open channels on it.
    pub connection: Arc<Connection>,
    /// Counts connections made by this link, from 1.
    pub generation: u64,
}

/// What the link reports to its owner (for logs and metrics).
#[derive(Debug)]
pub enum LinkEvent<'a> {
    /// Connected (generation).
    Connected(u64),
    /// An attempt failed; the next one comes after `retry_in`.
    ConnectFailed {
        /// Why.
        error: &'a ConnectError,
        /// The backoff before the next attempt.
        retry_in: Duration,
    },
    /// An open connection was lost (closed by the broker, reset, or reported unresponsive).
    Lost(String),
}

/// What pollers hold: the link's state and a way to report a connection that stopped answering.
#[derive(Clone)]
pub struct LinkHandle {
    state: watch::Receiver<LinkState>,
    lost: Arc<Lost>,
}

#[derive(Default)]
struct Lost {
    generation: AtomicU64,
    notify: Notify,
}

impl LinkHandle {
    /// The state now.
    pub fn current(&self) -> LinkState {
        self.state.borrow().clone()
    }

    /// The open connection, waiting up to `patience` while a connection attempt is under way.
    /// Err: the link is down (why), or still connecting after `patience` (None).
    pub async fn connection(&mut self, patience: Duration) -> Result<Up, Option<ConnectError>> {
        let settled = tokio::time::timeout(
            patience,
            self.state.wait_for(|s| !matches!(s, LinkState::Connecting)),
        )
        .await;
        match settled {
            Ok(Ok(state)) => match &*state {
                LinkState::Up(up) => Ok(up.clone()),
                LinkState::Down(e) => Err(Some(e.clone())),
                LinkState::Connecting => Err(None),
            },
            // The link task ended (shutdown) or is still connecting.
            Ok(Err(_)) | Err(_) => Err(None),
        }
    }

    /// Tells the link that connection `generation` stopped answering (a poll timed out or
    /// failed at the connection level): the link closes it and reconnects.
    pub fn report_lost(&self, generation: u64) {
        self.lost.generation.store(generation, Ordering::SeqCst);
        self.lost.notify.notify_one();
    }
}

/// The task keeping one connection up.
pub struct Link {
    connector: Connector,
    name: String,
    backoff: Backoff,
    state: watch::Sender<LinkState>,
    lost: Arc<Lost>,
}

impl Link {
    /// A link to `connector`'s broker whose connections are named `name`, retrying with
    /// `backoff`, and the handle pollers use.
    pub fn new(connector: Connector, name: String, backoff: Backoff) -> (Self, LinkHandle) {
        let (state, receiver) = watch::channel(LinkState::Connecting);
        let lost = Arc::new(Lost::default());
        let handle = LinkHandle {
            state: receiver,
            lost: lost.clone(),
        };
        let link = Self {
            connector,
            name,
            backoff,
            state,
            lost,
        };
        (link, handle)
    }

    /// Connects and keeps the connection up until `shutdown`, then closes it.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        mut on_event: impl FnMut(LinkEvent<'_>),
    ) {
        let mut generation = 0;
        loop {
            self.state.send_replace(LinkState::Connecting);
            let attempt = self.connector.connect(&self.name);
            let Some(connected) = shutdown.run_until_cancelled(attempt).await else {
                return;
            };
            match connected {
                Ok(connection) => {
                    generation += 1;
                    let since = tokio::time::Instant::now();
                    let connection = Arc::new(connection);
                    self.state.send_replace(LinkState::Up(Up {
                        connection: connection.clone(),
                        generation,
                    }));
                    on_event(LinkEvent::Connected(generation));
                    let why = self.hold(&connection, generation, &shutdown).await;
                    self.state.send_replace(LinkState::Connecting);
                    let closing = connection.close(200, "dwell: closing".into());
                    let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
                    match why {
                        None => return,
                        Some(why) => on_event(LinkEvent::Lost(self.connector.url.mask(&why))),
                    }
                    if since.elapsed() >= STABLE_AFTER {
                        self.backoff.reset();
                    }
                    let pause = tokio::time::sleep(self.backoff.next_delay());
                    if shutdown.run_until_cancelled(pause).await.is_none() {
                        return;
                    }
                }
                Err(error) => {
                    let retry_in = self.backoff.next_delay();
                    on_event(LinkEvent::ConnectFailed {
                        error: &error,
                        retry_in,
                    });
                    self.state.send_replace(LinkState::Down(error));
                    let pause = tokio::time::sleep(retry_in);
                    if shutdown.run_until_cancelled(pause).await.is_none() {
                        return;
                    }
                }
            }
        }
    }

    /// Waits until the connection is lost (Some(why)) or `shutdown` (None).
    async fn hold(
        &self,
        connection: &Connection,
        generation: u64,
        shutdown: &CancellationToken,
    ) -> Option<String> {
        let mut status = Ticker::new(STATUS_EVERY, First::AfterPeriod, shutdown);
        loop {
            tokio::select! {
                ticked = status.tick() => {
                    if !ticked {
                        return None;
                    }
                    if !connection.status().connected() {
                        let status = connection.status();
                        let state = if status.errored() { "failed" } else { "closed" };
                        return Some(format!("the connection {state}"));
                    }
                }
                () = self.lost.notify.notified() => {
                    if self.lost.generation.load(Ordering::SeqCst) == generation {
                        return Some("a poll on it failed or timed out".into());
                    }
                }
            }
        }
    }
}
