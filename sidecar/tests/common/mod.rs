//! Shared test harness: the real broker (or a loud skip), a recording `Ingest` peer standing in
//! for the aggregator, an in-process sidecar on loopback port 0, and small HTTP/metrics helpers.
#![allow(dead_code)]

pub mod amqp;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use clap::Parser;
use dwell_proto::v1::ingest_server::{Ingest, IngestServer};
use dwell_proto::v1::{Ack, Report, report::Ages};
use dwell_sidecar::cli::Args;
use dwell_sidecar::telemetry::Metrics;
use dwell_sidecar::{Settings, Sidecar};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;

/// Generous deadline for anything that waits on a real process or broker.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The broker URL for tests.
pub fn amqp_url() -> String {
    std::env::var("DWELL_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A connection to the test broker; None (after a loud skip notice) when it is unreachable,
/// unless DWELL_REQUIRE_SERVICES=1, which turns that into a failure.
pub async fn broker(test: &str) -> Option<lapin::Connection> {
    let url = amqp_url();
    match lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await {
        Ok(c) => Some(c),
        Err(e) => {
            if std::env::var("DWELL_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!(
                    "{test}: RabbitMQ is required (DWELL_REQUIRE_SERVICES=1) but unreachable: {e}"
                );
            }
            eprintln!(
                "\n!!!!! SKIPPED {test}: RabbitMQ unreachable at {} ({e}); run scripts/test.sh !!!!!\n",
                dwell_sidecar::amqp::redact(&url)
            );
            None
        }
    }
}

/// Polls `check` every 50 ms until it returns Some, or panics after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let give_up = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A recording aggregator stand-in: acks every report in order and hands it to the test, and
/// records the `authorization` metadata every call (stream or push) arrived with.
struct Recorder {
    tx: mpsc::UnboundedSender<Report>,
    auth: Arc<Mutex<Vec<Option<String>>>>,
}

impl Recorder {
    fn record_auth<T>(&self, request: &tonic::Request<T>) {
        let value = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or("<not ascii>").to_owned());
        self.auth.lock().unwrap().push(value);
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<Ack, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Ingest for Recorder {
    type StreamStream = AckStream;

    async fn stream(
        &self,
        request: tonic::Request<tonic::Streaming<Report>>,
    ) -> Result<tonic::Response<AckStream>, tonic::Status> {
        self.record_auth(&request);
        let mut inbound = request.into_inner();
        let (ack_tx, ack_rx) = mpsc::channel(64);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(report)) = inbound.message().await {
                let ack = Ack {
                    seq: report.seq,
                    accepted: 0,
                    duplicate: false,
                };
                let _ = tx.send(report);
                if ack_tx.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(ack_rx))))
    }

    async fn push(
        &self,
        request: tonic::Request<Report>,
    ) -> Result<tonic::Response<Ack>, tonic::Status> {
        self.record_auth(&request);
        let report = request.into_inner();
        let seq = report.seq;
        let _ = self.tx.send(report);
        Ok(tonic::Response::new(Ack {
            seq,
            accepted: 0,
            duplicate: false,
        }))
    }
}

/// A running recording peer.
pub struct Peer {
    /// Its address.
    pub addr: SocketAddr,
    /// Reports in arrival order.
    pub reports: mpsc::UnboundedReceiver<Report>,
    /// The `authorization` metadata of every call, in arrival order (None: there was none).
    pub auth: Arc<Mutex<Vec<Option<String>>>>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    /// Starts a peer on `addr` (port 0 for any), on its own runtime so that killing it drops
    /// every connection at once, like a crashed aggregator process.
    pub async fn start(addr: SocketAddr) -> Peer {
        let listener = std::net::TcpListener::bind(addr).expect("bind peer");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, reports) = mpsc::unbounded_channel();
        let auth = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder {
            tx,
            auth: auth.clone(),
        };
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let server = tonic::transport::Server::builder()
                    .add_service(IngestServer::new(recorder))
                    .serve_with_incoming(TcpListenerStream::new(listener));
                tokio::select! {
                    _ = server => {}
                    _ = killed => {}
                }
            });
            // Dropping the runtime here aborts every connection task.
        });
        Peer {
            addr,
            reports,
            auth,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// Kills the peer abruptly (connections are dropped, like a crashed aggregator); once this
    /// returns its runtime is gone, so its port can be bound again.
    pub fn kill(mut self) -> mpsc::UnboundedReceiver<Report> {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        std::mem::replace(&mut self.reports, mpsc::unbounded_channel().1)
    }

    /// Waits for a report satisfying `pred`, returning every report seen up to it.
    pub async fn until(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&Report) -> bool,
    ) -> Vec<Report> {
        let mut seen = Vec::new();
        let give_up = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(give_up, self.reports.recv()).await {
                Ok(Some(r)) => {
                    let done = pred(&r);
                    seen.push(r);
                    if done {
                        return seen;
                    }
                }
                Ok(None) => panic!("peer closed while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}; saw {} reports", seen.len()),
            }
        }
    }
}

/// The (count, min, max) of a report's age summary.
pub fn ages(r: &Report) -> (u64, i64, i64) {
    match &r.ages {
        Some(Ages::Summary(s)) => (s.count, s.min_ms, s.max_ms),
        _ => (0, 0, 0),
    }
}

/// Sidecar settings for tests, from flags: every listener on loopback port 0, a 200 ms interval.
pub fn settings(aggregator: SocketAddr, queue: &str, extra: &[&str]) -> Settings {
    let agg = format!("http://{aggregator}");
    let mut v = vec![
        "dwell-sidecar",
        "--aggregator",
        &agg,
        "--queue",
        queue,
        "--interval",
        "200ms",
        "--report-udp",
        "127.0.0.1:0",
        "--report-http",
        "127.0.0.1:0",
        "--telemetry-addr",
        "127.0.0.1:0",
        "--pod-name",
        "binder-0",
        "--pod-namespace",
        "shop",
        "--label",
        "app=binder",
    ];
    v.extend_from_slice(extra);
    let args = Args::try_parse_from(v).expect("test flags parse");
    Settings::from_args(args).expect("test flags are valid")
}

/// Sidecar settings for tap tests: no --queue (the tap finds the queues), the tap on loopback
/// port 0 in front of the test broker, a 200 ms interval, telemetry on port 0.
pub fn tap_settings(aggregator: SocketAddr, extra: &[&str]) -> Settings {
    let agg = format!("http://{aggregator}");
    let url = amqp_url();
    // The test broker's host:port, without credentials or vhost.
    let host = url
        .rsplit_once('@')
        .map_or(url.as_str(), |(_, h)| h)
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:5672")
        .to_owned();
    let upstream = format!("amqp://{host}");
    let mut v = vec![
        "dwell-sidecar",
        "--aggregator",
        &agg,
        "--tap-listen",
        "127.0.0.1:0",
        "--tap-upstream",
        &upstream,
        "--interval",
        "200ms",
        "--telemetry-addr",
        "127.0.0.1:0",
        "--pod-name",
        "binder-0",
        "--pod-namespace",
        "shop",
    ];
    v.extend_from_slice(extra);
    let args = Args::try_parse_from(v).expect("test flags parse");
    Settings::from_args(args).expect("test flags are valid")
}

/// A sidecar running in this process.
pub struct Running {
    /// UDP report address (0.0.0.0:0 when off).
    pub udp: SocketAddr,
    /// HTTP report address (0.0.0.0:0 when off).
    pub http: SocketAddr,
    /// The AMQP tap's address, when on.
    pub tap: Option<SocketAddr>,
    /// Telemetry address.
    pub telemetry: SocketAddr,
    /// Self-metrics.
    pub metrics: Arc<Metrics>,
    cancel: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Binds and starts a sidecar.
    pub async fn start(sidecar: Sidecar) -> Running {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let off = SocketAddr::from(([0, 0, 0, 0], 0));
        let udp = sidecar.report_udp_addr().unwrap_or(off);
        let http = sidecar.report_http_addr().unwrap_or(off);
        let tap = sidecar.tap_addr();
        let telemetry = sidecar.telemetry_addr().unwrap();
        let metrics = sidecar.metrics();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(sidecar.run(cancel.clone()));
        Running {
            udp,
            http,
            tap,
            telemetry,
            metrics,
            cancel,
            task,
        }
    }

    /// Sends one UDP datagram to the report port.
    pub async fn send_udp(&self, payload: &[u8]) {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(payload, self.udp).await.unwrap();
    }

    /// Cancels (as SIGTERM would) and waits for the sidecar to return.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("sidecar stops")
            .unwrap()
            .unwrap();
    }
}

/// A minimal HTTP/1.1 request; returns (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // A server may refuse before reading a large body; a write error is then expected.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one sample line of the /metrics text (`name{labels}` exactly), if present.
pub async fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let (_, text) = http(addr, "GET", "/metrics", "text/plain", b"").await;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

/// Unix time now in milliseconds.
pub fn now_ms() -> i64 {
    use dwell_runtime::clock::Clock;
    dwell_runtime::clock::SystemClock.now_ms()
}
