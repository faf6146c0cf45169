//! The AMQP tap: the consumer app connects to the sidecar instead of the broker, and every app
//! connection gets its own upstream connection ([`upstream`]). Bytes are forwarded unchanged and
//! first, in both directions; a copy is then read on the side ([`frame`] → [`method`] →
//! [`state`]), so each delivery's timestamp reaches its queue's ages with no change to the app.
//!
//! Invisible by construction: the tap never writes a byte of its own into either stream, so
//! Start/Tune negotiation, heartbeats, frame_max, channel_max, flow control and
//! `connection.blocked` are exactly what app and broker say to each other. Each direction is one
//! read → write → parse loop (`pump`; on Linux body payloads are spliced instead of copied):
//! while a write to one side is pending, the other side is not read, so TCP back-pressure
//! reaches the sender. When either side closes or fails, the other is closed at once. Any parse
//! error switches parsing off for that connection only (counted by reason, logged once);
//! forwarding goes on. Every connection runs on the tap's own thread (`TapThread`).
//!
//! Memory per idle connection: two [`BUFFER`]-byte buffers, two sockets and the channel map
//! (a few hundred bytes per channel with consumers), about 40 KiB in all; a connection moving
//! bulk data holds up to two [`MAX_BUFFER`]s while it does, and a direction that has spliced
//! keeps its (empty) pipe.

pub mod frame;
pub mod method;
pub mod parser;
mod pump;
#[cfg(target_os = "linux")]
mod splice;
pub mod state;
pub mod upstream;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::net::SocketAddr;

use dwell_runtime::accept::{Listener, Slot};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::queues::Queues;
use crate::telemetry::{ConnectionLabels, DirectionLabel, Metrics};
use parser::Parser;
use pump::{Half, Source, pump};
use state::{Direction, HeaderRule, Tracker};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use upstream::Upstream;

/// Bytes read (and written) per step in each direction, to start with and when idle.
pub const BUFFER: usize = 16 * 1024;
/// The buffer grows (×4 per full read) up to this while reads keep filling it (bulk bodies:
/// fewer system calls per byte), and returns to [`BUFFER`] after `SHRINK_AFTER` (16) short reads.
pub const MAX_BUFFER: usize = 256 * 1024;
/// Consecutive reads shorter than [`BUFFER`] after which a grown buffer is released.
const SHRINK_AFTER: u32 = 16;
/// Default limit on app connections open at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How the tap runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The real broker.
    pub upstream: Upstream,
    /// The header read before the timestamp property, if any.
    pub header: Option<HeaderRule>,
    /// After shutdown, how long open connections keep forwarding (the app may still be
    /// acknowledging its last messages) before they are closed.
    pub drain: Duration,
}

/// The tap: its configuration and where its observations go.
pub struct Tap {
    /// How it runs.
    pub config: Config,
    /// Where deliveries are recorded.
    pub queues: Arc<Queues>,
    /// Self-metrics.
    pub metrics: Arc<Metrics>,
}

impl Tap {
    /// Accepts app connections on `listener` (spawning one task each on `tasks`) until
    /// `shutdown`; then open connections get the drain period before they are closed.
    pub async fn serve(self, listener: Listener, tasks: TaskTracker, shutdown: CancellationToken) {
        let tap = Arc::new(self);
        let close_all = CancellationToken::new();
        let thread = match TapThread::start() {
            Ok(t) => Some(t),
            Err(error) => {
                tracing::warn!(%error, "no thread of its own for the tap; its connections share the runtime");
                None
            }
        };
        let conns = TaskTracker::new();
        let mut id = 0u64;
        while let Some(conn) = listener.accept(&shutdown).await {
            id += 1;
            let (io, peer, slot) = conn.into_parts();
            let close = close_all.clone();
            match &thread {
                // Re-registered with the tap's own runtime, in the task, on its thread.
                Some(t) => match io.into_std() {
                    Ok(io) => {
                        let task =
                            tap.clone()
                                .connection(id, AppSocket::Moved(io), peer, slot, close);
                        tasks.spawn_on(conns.track_future(task), &t.handle);
                    }
                    Err(error) => {
                        tracing::warn!(conn = id, %peer, %error, "tap cannot take the connection")
                    }
                },
                None => {
                    let task = tap
                        .clone()
                        .connection(id, AppSocket::Here(io), peer, slot, close);
                    tasks.spawn(conns.track_future(task));
                }
            }
        }
        let drain_until = tokio::time::Instant::now() + tap.config.drain;
        while listener.open_connections() > 0 && tokio::time::Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if listener.open_connections() > 0 {
            tracing::info!(
                open = listener.open_connections(),
                "closing the remaining tap connections"
            );
        }
        close_all.cancel();
        conns.close();
        conns.wait().await;
        drop(thread);
    }

    async fn connection(
        self: Arc<Self>,
        id: u64,
        app: AppSocket,
        peer: SocketAddr,
        // Kept, under the listener's limit, until the connection is done.
        _slot: Slot,
        close: CancellationToken,
    ) {
        let m = &self.metrics;
        m.tap_connections.inc();
        m.tap_connections_open.inc();
        let app = match app {
            AppSocket::Here(s) => s,
            AppSocket::Moved(s) => match TcpStream::from_std(s) {
                Ok(s) => s,
                Err(error) => {
                    m.tap_connections_open.dec();
                    tracing::warn!(conn = id, %peer, %error, "tap cannot take the connection");
                    return;
                }
            },
        };
        let upstream = match self.config.upstream.connect().await {
            Ok(s) => s,
            Err(error) => {
                m.tap_upstream_failures.inc();
                m.tap_connections_open.dec();
                tracing::warn!(conn = id, %peer, upstream = %self.config.upstream, %error,
                    "tap cannot reach the broker; closing the app connection");
                return;
            }
        };
        tracing::debug!(conn = id, %peer, upstream = %self.config.upstream, "tap connection open");
        let counters = Counters::new(m, id);
        let parser = Mutex::new(Parser::new(
            id,
            Tracker::new(self.queues.clone(), self.config.header.clone()),
            m.clone(),
            counters.deliveries.clone(),
        ));
        // Owned halves: each direction reads and writes its own half, with no lock between
        // them (a TLS stream is one session, so its halves share one).
        let app = app.into_split();
        let ended = match upstream {
            upstream::Stream::Plain(broker) => {
                run_both(app, broker.into_split(), &parser, &counters, &close).await
            }
            tls @ upstream::Stream::Tls(_) => {
                run_both(app, tokio::io::split(tls), &parser, &counters, &close).await
            }
        };
        // Both sockets are dropped here: the side still open is closed at once.
        let p = parser.into_inner().unwrap_or_else(|e| e.into_inner());
        tracing::debug!(conn = id, %peer, closed_by = ended.0, error = ended.1.err().map(|e| e.to_string()),
            to_broker = counters.to_broker.get(), to_app = counters.to_app.get(),
            deliveries = counters.deliveries.get(), parse_off = p.off().map(|e| e.reason()),
            "tap connection closed");
        counters.forget(m, id);
        m.tap_connections_open.dec();
    }
}

/// An accepted app connection on its way to its task.
enum AppSocket {
    /// Registered with the runtime the task runs on.
    Here(TcpStream),
    /// Taken out of the accepting runtime, for the tap's own.
    Moved(std::net::TcpStream),
}

/// The tap's own thread and single-threaded runtime: every tap connection runs there, so one
/// wake-up of one thread serves whatever both directions of every connection have ready, with
/// no hand-over between worker threads. Stopped when dropped (after its connections ended).
struct TapThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TapThread {
    fn start() -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("dwell-tap".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
        })
    }
}

impl Drop for TapThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs both directions (`app` and `broker` as read and write halves) in this one task until
/// either ends or the sidecar closes every connection; says which side ended it. Returning drops
/// both pumps and with them every half of both sockets, so the side still open is closed at once.
async fn run_both<BR, BW>(
    app: (OwnedReadHalf, OwnedWriteHalf),
    broker: (BR, BW),
    parser: &Mutex<Parser>,
    counters: &Counters,
    close: &CancellationToken,
) -> (&'static str, io::Result<()>)
where
    BR: AsyncRead + Source + Unpin,
    BW: AsyncWrite + Half + Unpin,
{
    let to_broker = pump(app.0, broker.1, Direction::ToBroker, parser, counters);
    let to_app = pump(broker.0, app.1, Direction::ToApp, parser, counters);
    tokio::select! {
        r = to_broker => ("app", r),
        r = to_app => ("broker", r),
        () = close.cancelled() => ("sidecar shutdown", Ok(())),
    }
}

/// The per-connection counters (a series per open connection, removed when it closes).
struct Counters {
    to_broker: Counter,
    to_app: Counter,
    deliveries: Counter,
    total_to_broker: Counter,
    total_to_app: Counter,
}

impl Counters {
    const KINDS: [&'static str; 3] = ["to_broker", "to_app", "deliveries"];

    fn new(m: &Metrics, conn: u64) -> Self {
        let of = |kind| {
            m.tap_connection
                .get_or_create(&ConnectionLabels { conn, kind })
                .clone()
        };
        let total = |direction| {
            m.tap_bytes
                .get_or_create(&DirectionLabel { direction })
                .clone()
        };
        Self {
            to_broker: of("to_broker"),
            to_app: of("to_app"),
            deliveries: of("deliveries"),
            total_to_broker: total("to_broker"),
            total_to_app: total("to_app"),
        }
    }

    fn forget(&self, m: &Metrics, conn: u64) {
        for kind in Self::KINDS {
            m.tap_connection.remove(&ConnectionLabels { conn, kind });
        }
    }

    fn forwarded(&self, direction: Direction, n: usize) {
        let (one, all) = match direction {
            Direction::ToBroker => (&self.to_broker, &self.total_to_broker),
            Direction::ToApp => (&self.to_app, &self.total_to_app),
        };
        one.inc_by(n as u64);
        all.inc_by(n as u64);
    }
}
