//! dwell's sidecar: samples message timestamps beside a consumer and pushes compact reports to the
//! aggregator. It never publishes, acks, purges or holds a business message.
//!
//! [`Sidecar::bind`] validates the configuration and binds every listener (so a port in use fails
//! at start); [`Sidecar::run`] runs the sources, the interval clock and the pusher until the
//! cancellation token fires, then delivers a goodbye report within the shutdown timeout.

pub mod accumulator;
pub mod amqp;
pub mod cli;
pub mod identity;
pub mod interval;
pub mod peek;
pub mod push;
pub mod report;
pub mod stats;
pub mod telemetry;
pub mod timestamp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use accumulator::Accumulator;
use identity::Identity;
use push::backlog::Backlog;
use telemetry::Metrics;

/// A configured sidecar with its listeners bound.
pub struct Sidecar {
    args: cli::Args,
    identity: Identity,
    target: push::Target,
    amqp_url: Option<amqp::AmqpUrl>,
    vhost: String,
    udp: Option<UdpSocket>,
    http: Option<TcpListener>,
    telemetry: Option<TcpListener>,
    metrics: Arc<Metrics>,
    resolver: Option<push::Resolver>,
}

/// Runs the sidecar until `shutdown` fires (logging and the crypto provider are set up first,
/// by `dwell_runtime::boot`).
pub async fn run(args: cli::Args, shutdown: CancellationToken) -> anyhow::Result<()> {
    let sidecar = Sidecar::bind(args).await?;
    sidecar.run(shutdown).await
}

impl Sidecar {
    /// Validates `args`, resolves the pod identity and binds the listeners.
    pub async fn bind(args: cli::Args) -> anyhow::Result<Self> {
        if args.queue.is_empty() || args.queue.len() > 255 {
            anyhow::bail!("--queue must be 1 to 255 bytes");
        }
        let amqp_url = match &args.amqp_url {
            Some(arg) => Some(
                arg.validate()
                    .map_err(|e| anyhow::anyhow!("--amqp-url: {e}"))?,
            ),
            None => None,
        };
        if args.peek && amqp_url.is_none() {
            anyhow::bail!("--peek needs --amqp-url");
        }
        let mut target = push::Target::parse(&args.aggregator)
            .map_err(|e| anyhow::anyhow!("--aggregator {:?}: {e}", args.aggregator))?;
        if let Some(path) = &args.aggregator_ca {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --aggregator-ca {}", path.display()))?;
            target = target
                .with_ca(&pem)
                .map_err(|e| anyhow::anyhow!("--aggregator-ca {e}"))?;
        }
        if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
            let read = |flag: &str, path: &std::path::Path| {
                std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))
            };
            target = target
                .with_identity(read("--client-cert", cert)?, read("--client-key", key)?)
                .map_err(|e| match e {
                    push::TlsError::NoPrivateKey => anyhow::anyhow!("--client-key {e}"),
                    _ => anyhow::anyhow!("--client-cert {e}"),
                })?;
        }
        let env = |k: &str| std::env::var(k).ok();
        let identity = Identity::resolve(&identity::Sources {
            pod: args.pod_name.as_deref(),
            namespace: args.pod_namespace.as_deref(),
            labels_file: args.labels_file.as_deref(),
            labels: &args.labels,
            env: &env,
        })
        .map_err(|e| match e {
            identity::IdentityError::Label(_) => anyhow::anyhow!("--label {e}"),
            _ => anyhow::anyhow!("--labels-file: {e}"),
        })?;
        let vhost = args
            .vhost
            .clone()
            .or_else(|| amqp_url.as_ref().map(|u| u.vhost().to_owned()))
            .unwrap_or_else(|| "/".to_owned());
        let udp = match args.report_udp.addr() {
            Some(a) => Some(
                UdpSocket::bind(a)
                    .await
                    .with_context(|| format!("binding --report-udp {a}"))?,
            ),
            None => None,
        };
        let http = bind_tcp(args.report_http.addr(), "--report-http").await?;
        let telemetry = bind_tcp(args.telemetry_addr.addr(), "--telemetry-addr").await?;
        Ok(Self {
            args,
            identity,
            target,
            amqp_url,
            vhost,
            udp,
            http,
            telemetry,
            metrics: Metrics::new(),
            resolver: None,
        })
    }

    /// Replaces DNS for the aggregator name (tests simulate replicas coming and going).
    pub fn with_resolver(mut self, resolver: push::Resolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// The bound UDP report address.
    pub fn report_udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The bound HTTP report address.
    pub fn report_http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The bound telemetry address.
    pub fn telemetry_addr(&self) -> Option<SocketAddr> {
        self.telemetry.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The sidecar's self-metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs until `cancel` fires, then sends the goodbye report and returns.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let a = &self.args;
        let metrics = self.metrics.clone();
        let policy = timestamp::Policy {
            default_unit: a.timestamp_unit,
            max_age_ms: i64::try_from(a.max_age.as_millis())
                .unwrap_or(i64::MAX)
                .min(dwell_proto::summary::MAX_AGE_MS),
        };
        let clock = dwell_runtime::clock::SystemClock::shared();
        let accumulator = Arc::new(Accumulator::new(policy, clock.clone(), metrics.clone()));
        let backlog = Backlog::new(a.backlog as usize, metrics.clone());
        let (state_tx, state_rx) = watch::channel(None);
        let instance: u64 = rand::random();
        tracing::info!(
            queue = %a.queue, vhost = %self.vhost, pod = %self.identity.pod,
            namespace = %self.identity.namespace, aggregator = %a.aggregator, instance,
            report_udp = ?self.report_udp_addr(), report_http = ?self.report_http_addr(),
            telemetry = ?self.telemetry_addr(), amqp = ?self.amqp_url.as_ref().map(ToString::to_string),
            peek = a.peek, "dwell-sidecar started"
        );
        let mut tasks = tokio::task::JoinSet::new();
        let intake = Arc::new(report::Intake::new(
            a.queue.clone(),
            accumulator.clone(),
            metrics.clone(),
        ));
        if let Some(sock) = self.udp {
            tasks.spawn(report::udp::serve(sock, intake.clone(), cancel.clone()));
        }
        if let Some(l) = self.http {
            let (intake, cancel) = (intake.clone(), cancel.clone());
            tasks.spawn(async move {
                if let Err(e) = report::http::serve(l, intake, cancel).await {
                    tracing::error!(error = %e, "report HTTP server failed");
                }
            });
        }
        if let Some(l) = self.telemetry {
            let (m, cancel) = (metrics.clone(), cancel.clone());
            tasks.spawn(async move {
                if let Err(e) = telemetry::serve(l, m, cancel).await {
                    tracing::error!(error = %e, "telemetry server failed");
                }
            });
        }
        if let Some(url) = &self.amqp_url {
            let stats = stats::Stats {
                url: url.clone(),
                queue: a.queue.clone(),
                every: a.stats_interval,
                state: state_tx,
                metrics: metrics.clone(),
                clock: clock.clone(),
            };
            tasks.spawn(stats.run(cancel.clone()));
            if a.peek {
                let peek = peek::Peek {
                    url: url.clone(),
                    queue: a.queue.clone(),
                    queue_type: a.queue_type,
                    every: a.peek_interval,
                    header: a
                        .timestamp_header
                        .clone()
                        .map(|h| (h, a.timestamp_header_unit)),
                    accumulator: accumulator.clone(),
                    metrics: metrics.clone(),
                };
                tasks.spawn(peek.run(cancel.clone()));
            }
        }
        let reporter = interval::Reporter {
            source: dwell_proto::v1::Source {
                namespace: self.identity.namespace.clone(),
                pod: self.identity.pod.clone(),
                labels: self.identity.labels.clone(),
                queue: a.queue.clone(),
                vhost: self.vhost.clone(),
            },
            instance,
            every: a.interval,
            state_max_age: (a.stats_interval * 3).max(Duration::from_secs(15)),
            accumulator,
            state: state_rx,
            backlog: backlog.clone(),
            metrics: metrics.clone(),
            clock,
        };
        let reporter = tokio::spawn(reporter.run(cancel.clone()));
        let push_stop = CancellationToken::new();
        let pusher = push::Pusher {
            target: Arc::new(self.target),
            backlog,
            resolve_interval: a.resolve_interval,
            metrics,
            resolver: self.resolver.unwrap_or_else(push::dns_resolver),
        };
        let mut pusher = tokio::spawn(pusher.run(push_stop.clone()));

        cancel.cancelled().await;
        // The reporter answers cancellation with the goodbye report; the pusher delivers it.
        let _ = reporter.await;
        if tokio::time::timeout(a.shutdown_timeout, &mut pusher)
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?a.shutdown_timeout,
                "shutdown timeout: not every aggregator acknowledged the goodbye report");
            push_stop.cancel();
            let _ = pusher.await;
        }
        // Servers and sources watch the same token; give them a moment to close cleanly.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tracing::info!("dwell-sidecar stopped");
        Ok(())
    }
}

async fn bind_tcp(addr: Option<SocketAddr>, flag: &str) -> anyhow::Result<Option<TcpListener>> {
    match addr {
        Some(a) => Ok(Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("binding {flag} {a}"))?,
        )),
        None => Ok(None),
    }
}
