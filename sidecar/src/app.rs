//! The composition root. It turns the command line into typed [`Settings`] once (every check
//! there, every error naming its flag), binds every listener ([`Sidecar::bind`], so a port in use
//! fails at start), and runs every task on one tracker under one shutdown token
//! ([`Sidecar::run`]). It is the only module besides `main.rs` that knows [`cli`]; the
//! components get typed configs, listeners and the token.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use dwell_runtime::accept::Listener;
use dwell_runtime::clock::{SharedClock, SystemClock};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::Args;
use crate::identity::{self, Identity, IdentityError};
use crate::interval::{self, Reporter};
use crate::peek::{self, Peek};
use crate::push::backlog::Backlog;
use crate::push::token::TokenFile;
use crate::push::{self, Pusher, Resolver, Target, TlsError};
use crate::queues::Queues;
use crate::stats::{self, Stats};
use crate::tap::state::HeaderRule;
use crate::tap::upstream::Upstream;
use crate::tap::{self, Tap};
use crate::telemetry::{self, Metrics};
use crate::{report, timestamp};

/// Once the goodbye had its time, how long servers and sources get to close their connections
/// before the process exits anyway (a broker that stopped answering must not hold the pod in
/// Terminating).
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Runs the sidecar that `args` describe until `shutdown` fires, then says goodbye.
pub async fn run(args: Args, shutdown: CancellationToken) -> anyhow::Result<()> {
    let sidecar = Sidecar::bind(Settings::from_args(args)?).await?;
    sidecar.run(shutdown).await
}

/// Every component's configuration, built and checked once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `--queue` (always reported; the only one report inputs may name). None: the tap
    /// alone finds the queues.
    pub queue: Option<String>,
    /// The `--queue`'s vhost.
    pub vhost: String,
    /// Most queues reported.
    pub max_queues: usize,
    /// The AMQP tap (None: off).
    pub tap: Option<TapSettings>,
    /// The consumer pod.
    pub identity: Identity,
    /// How raw timestamps become ages.
    pub timestamps: timestamp::Policy,
    /// What to bind.
    pub listen: ListenAddrs,
    /// The stats source (None: no broker URL was given).
    pub stats: Option<stats::Config>,
    /// The peek source (None: off).
    pub peek: Option<peek::Config>,
    /// How reports are cut.
    pub interval: interval::Config,
    /// Reports kept for resending to a (re)connected aggregator.
    pub backlog: usize,
    /// Where and how reports are pushed.
    pub push: push::Config,
}

/// The addresses to bind (None: that listener is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddrs {
    /// UDP line protocol.
    pub report_udp: Option<SocketAddr>,
    /// `POST /v1/report`.
    pub report_http: Option<SocketAddr>,
    /// `/healthz` and `/metrics`.
    pub telemetry: Option<SocketAddr>,
    /// The AMQP tap.
    pub tap: Option<SocketAddr>,
}

/// The tap's settings beside its address.
#[derive(Debug, Clone)]
pub struct TapSettings {
    /// How it forwards and what it reads.
    pub config: tap::Config,
    /// Most app connections open at once.
    pub max_connections: usize,
}

impl Settings {
    /// Checks `args`, reads the files they name (CA, client certificate, labels) and resolves
    /// the pod identity from them and the environment.
    pub fn from_args(args: Args) -> anyhow::Result<Self> {
        if let Some(q) = &args.queue
            && (q.is_empty() || q.len() > 255)
        {
            bail!("--queue must be 1 to 255 bytes");
        }
        let tap = tap_settings(&args)?;
        if args.queue.is_none() && tap.is_none() {
            bail!("--queue is required unless --tap-listen is given");
        }
        let amqp_url = match &args.amqp_url {
            Some(arg) => Some(arg.validate().map_err(|e| anyhow!("--amqp-url: {e}"))?),
            None => None,
        };
        if args.peek && amqp_url.is_none() {
            bail!("--peek needs --amqp-url");
        }
        if args.peek && args.queue.is_none() {
            bail!("--peek needs --queue");
        }
        let target = target(&args)?;
        let identity = pod_identity(&args)?;
        let vhost = args
            .vhost
            .clone()
            .or_else(|| amqp_url.as_ref().map(|u| u.vhost().to_owned()))
            .unwrap_or_else(|| "/".to_owned());
        let stats = amqp_url.clone().map(|url| stats::Config {
            url,
            every: args.stats_interval,
        });
        let peek_queue = args.queue.clone().filter(|_| args.peek);
        let peek = amqp_url.zip(peek_queue).map(|(url, queue)| peek::Config {
            url,
            queue,
            queue_type: args.queue_type,
            every: args.peek_interval,
            header: args
                .timestamp_header
                .clone()
                .map(|h| (h, args.timestamp_header_unit)),
        });
        Ok(Self {
            vhost,
            identity,
            timestamps: timestamp::Policy {
                default_unit: args.timestamp_unit,
                max_age_ms: i64::try_from(args.max_age.as_millis())
                    .unwrap_or(i64::MAX)
                    .min(dwell_proto::summary::MAX_AGE_MS),
            },
            listen: ListenAddrs {
                // The report source names the --queue; without one it has nothing to take.
                report_udp: args.report_udp.addr().filter(|_| args.queue.is_some()),
                report_http: args.report_http.addr().filter(|_| args.queue.is_some()),
                telemetry: args.telemetry_addr.addr(),
                tap: args.tap_listen.addr(),
            },
            stats,
            peek,
            interval: interval::Config {
                every: args.interval,
                // A few missed polls are normal; older than that, the broker is unreachable.
                state_max_age: (args.stats_interval * 3).max(Duration::from_secs(15)),
            },
            backlog: args.backlog as usize,
            push: push::Config {
                target,
                resolve_interval: args.resolve_interval,
                shutdown_timeout: args.shutdown_timeout,
                token_recheck: push::token::RECHECK,
            },
            queue: args.queue,
            max_queues: args.max_queues as usize,
            tap,
        })
    }
}

/// `--tap-listen` with `--tap-upstream` (and its CA), or neither.
fn tap_settings(args: &Args) -> anyhow::Result<Option<TapSettings>> {
    let upstream = match (args.tap_listen.addr(), &args.tap_upstream) {
        (None, None) => return Ok(None),
        (None, Some(_)) => bail!("--tap-upstream needs --tap-listen"),
        (Some(_), None) => bail!("--tap-listen needs --tap-upstream (the real broker)"),
        (Some(_), Some(url)) => url,
    };
    let ca = match &args.tap_upstream_ca {
        Some(path) => Some(read("--tap-upstream-ca", path)?),
        None => None,
    };
    let upstream = Upstream::parse(upstream, ca.as_deref()).map_err(|e| match e {
        tap::upstream::UpstreamError::NoCertificate => anyhow!("--tap-upstream-ca {e}"),
        e => anyhow!("--tap-upstream {e}"),
    })?;
    Ok(Some(TapSettings {
        config: tap::Config {
            upstream,
            header: args.timestamp_header.clone().map(|name| HeaderRule {
                name,
                unit: args.timestamp_header_unit,
            }),
            drain: args.shutdown_timeout,
        },
        max_connections: args.tap_max_connections as usize,
    }))
}

/// `--aggregator`, with `--aggregator-ca`, the `--client-cert`/`--client-key` pair and the
/// `--token-file` (read now: an unusable file fails the start).
fn target(args: &Args) -> anyhow::Result<Target> {
    let url = &args.aggregator;
    let mut target = Target::parse(url).map_err(|e| anyhow!("--aggregator {url:?}: {e}"))?;
    if let Some(path) = &args.aggregator_ca {
        let pem = read("--aggregator-ca", path)?;
        target = target
            .with_ca(&pem)
            .map_err(|e| anyhow!("--aggregator-ca {e}"))?;
    }
    // clap makes each of the pair require the other.
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        let (cert, key) = (read("--client-cert", cert)?, read("--client-key", key)?);
        target = target.with_identity(cert, key).map_err(|e| match e {
            TlsError::NoPrivateKey => anyhow!("--client-key {e}"),
            TlsError::NotHttps | TlsError::NoCertificate => anyhow!("--client-cert {e}"),
        })?;
    }
    if let Some(path) = &args.token_file {
        let token = TokenFile::load(path).map_err(|e| anyhow!("--token-file: {e}"))?;
        target = target.with_token(token);
    }
    Ok(target)
}

fn read(flag: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))
}

/// `--pod-name`, `--pod-namespace`, `--labels-file` and `--label`, over the Downward API.
fn pod_identity(args: &Args) -> anyhow::Result<Identity> {
    let env = |k: &str| std::env::var(k).ok();
    Identity::resolve(&identity::Sources {
        pod: args.pod_name.as_deref(),
        namespace: args.pod_namespace.as_deref(),
        labels_file: args.labels_file.as_deref(),
        labels: &args.labels,
        env: &env,
    })
    .map_err(|e| match e {
        IdentityError::Label(_) => anyhow!("--label {e}"),
        IdentityError::Read { .. } | IdentityError::Syntax { .. } => {
            anyhow!("--labels-file: {e}")
        }
    })
}

/// A configured sidecar with its listeners bound.
pub struct Sidecar {
    settings: Settings,
    udp: Option<UdpSocket>,
    http: Option<TcpListener>,
    telemetry: Option<TcpListener>,
    tap: Option<Listener>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    resolver: Resolver,
}

impl Sidecar {
    /// Binds the listeners `settings` ask for; the system clock and DNS unless replaced.
    pub async fn bind(settings: Settings) -> anyhow::Result<Self> {
        let listen = settings.listen;
        let udp = match listen.report_udp {
            Some(a) => Some(
                UdpSocket::bind(a)
                    .await
                    .with_context(|| format!("binding --report-udp {a}"))?,
            ),
            None => None,
        };
        let http = bind_tcp(listen.report_http, "--report-http").await?;
        let telemetry = bind_tcp(listen.telemetry, "--telemetry-addr").await?;
        let max = settings.tap.as_ref().map_or(1, |t| t.max_connections);
        let tap = bind_tcp(listen.tap, "--tap-listen")
            .await?
            .map(|tcp| Listener::new(tcp, "AMQP tap", max));
        Ok(Self {
            settings,
            udp,
            http,
            telemetry,
            tap,
            metrics: Metrics::new(),
            clock: SystemClock::shared(),
            resolver: push::dns_resolver(),
        })
    }

    /// Replaces DNS for the aggregator name (tests simulate replicas coming and going).
    pub fn with_resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Replaces the system clock (tests pin "now" to compute exact ages).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
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

    /// The bound AMQP tap address.
    pub fn tap_addr(&self) -> Option<SocketAddr> {
        self.tap.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The sidecar's self-metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs every source, the interval clock and the pusher until `shutdown` fires, then waits
    /// (within the shutdown timeout) for the goodbye report to be delivered.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let instance: u64 = rand::random();
        let s = &self.settings;
        tracing::info!(
            queue = ?s.queue, vhost = %s.vhost, pod = %s.identity.pod,
            namespace = %s.identity.namespace, aggregator = %s.push.target.url, instance,
            tap = ?self.tap_addr(),
            tap_upstream = ?s.tap.as_ref().map(|t| t.config.upstream.to_string()),
            report_udp = ?self.report_udp_addr(), report_http = ?self.report_http_addr(),
            telemetry = ?self.telemetry_addr(),
            amqp = ?s.stats.as_ref().map(|c| c.url.to_string()),
            token_file = ?s.push.target.token.as_ref().map(|t| t.path().display().to_string()),
            peek = s.peek.is_some(), "dwell-sidecar started"
        );
        let Self {
            settings,
            udp,
            http,
            telemetry: telemetry_listener,
            tap: tap_listener,
            metrics,
            clock,
            resolver,
        } = self;
        let queues = Arc::new(Queues::new(
            settings.timestamps,
            clock.clone(),
            metrics.clone(),
            settings.max_queues,
        ));
        // The --queue first: it is always reported, even before anything is consumed.
        let own = settings
            .queue
            .as_ref()
            .and_then(|q| queues.track(q, &settings.vhost));
        let backlog = Backlog::new(settings.backlog, metrics.clone());
        let tasks = TaskTracker::new();

        if let Some(own) = &own {
            let intake = Arc::new(report::Intake::new(
                own.key().queue.clone(),
                own.ages().clone(),
                metrics.clone(),
            ));
            if let Some(socket) = udp {
                tasks.spawn(report::udp::serve(socket, intake.clone(), shutdown.clone()));
            }
            if let Some(listener) = http {
                let server = report::http::serve(listener, intake, shutdown.clone());
                tasks.spawn(log_failure("report HTTP server", server));
            }
        }
        if let Some(listener) = telemetry_listener {
            let server = telemetry::serve(listener, metrics.clone(), shutdown.clone());
            tasks.spawn(log_failure("telemetry server", server));
        }
        if let (Some(listener), Some(t)) = (tap_listener, settings.tap) {
            let tap = Tap {
                config: t.config,
                queues: queues.clone(),
                metrics: metrics.clone(),
            };
            tasks.spawn(tap.serve(listener, tasks.clone(), shutdown.clone()));
        }
        if let Some(config) = settings.stats {
            let stats = Stats {
                config,
                queues: queues.clone(),
                metrics: metrics.clone(),
                clock: clock.clone(),
            };
            tasks.spawn(stats.run(shutdown.clone()));
        }
        if let (Some(config), Some(own)) = (settings.peek, &own) {
            let peek = Peek {
                config,
                accumulator: own.ages().clone(),
                metrics: metrics.clone(),
            };
            tasks.spawn(peek.run(shutdown.clone()));
        }
        let reporter = Reporter {
            pod: dwell_proto::v1::Source {
                namespace: settings.identity.namespace,
                pod: settings.identity.pod,
                labels: settings.identity.labels,
                ..Default::default()
            },
            instance,
            config: settings.interval,
            queues,
            backlog: backlog.clone(),
            metrics: metrics.clone(),
            clock,
        };
        // On shutdown the reporter queues the goodbye reports and the pusher delivers them.
        tasks.spawn(reporter.run(shutdown.clone()));
        if let Some(token) = &settings.push.target.token {
            let watch = token.clone().watch(
                metrics.clone(),
                settings.push.token_recheck,
                shutdown.clone(),
            );
            tasks.spawn(watch);
        }
        let shutdown_timeout = settings.push.shutdown_timeout;
        let pusher = Pusher {
            config: settings.push,
            backlog,
            metrics,
            resolver,
        };
        tasks.spawn(pusher.run(shutdown.clone(), tasks.clone()));
        // Closed means "wait() may return once empty"; the pusher still spawns its streams.
        tasks.close();

        shutdown.cancelled().await;
        if tokio::time::timeout(shutdown_timeout + STOP_GRACE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = tasks.len(),
                "some tasks did not stop in time; exiting anyway"
            );
        }
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

/// Runs a server, logging its failure: a dead report or telemetry server must be seen, but it
/// does not stop the other sources or the goodbye.
async fn log_failure(what: &'static str, server: impl Future<Output = std::io::Result<()>>) {
    if let Err(e) = server.await {
        tracing::error!(error = %e, "{what} failed");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn settings(extra: &[&str]) -> anyhow::Result<Settings> {
        let mut argv = vec!["dwell-sidecar", "--queue", "q", "--pod-name", "p"];
        argv.extend_from_slice(extra);
        Settings::from_args(Args::try_parse_from(argv)?)
    }

    fn refused(extra: &[&str]) -> String {
        match settings(extra) {
            Ok(s) => panic!("{extra:?} accepted: {s:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn every_refusal_names_its_flag() {
        let long = "q".repeat(256);
        let args = Args::try_parse_from(["dwell-sidecar", "--queue", &long]).unwrap();
        let too_long = Settings::from_args(args).unwrap_err().to_string();
        assert_eq!(too_long, "--queue must be 1 to 255 bytes");
        assert_eq!(
            refused(&["--aggregator", "ftp://x:1"]),
            r#"--aggregator "ftp://x:1": must start with http:// or https://"#
        );
        assert_eq!(refused(&["--peek"]), "--peek needs --amqp-url");
        let bad_url = refused(&["--amqp-url", "amqp://u:s3cret@[nope/"]);
        assert!(
            bad_url.starts_with("--amqp-url: invalid AMQP URL amqp://u:***@"),
            "{bad_url}"
        );
        assert!(!bad_url.contains("s3cret"), "{bad_url}");
        assert_eq!(
            refused(&["--label", "novalue"]),
            r#"--label "novalue": expected key=value"#
        );
        let missing = refused(&["--labels-file", "/nonexistent/labels"]);
        assert!(missing.starts_with("--labels-file: "), "{missing}");
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, "not checked until https").unwrap();
        let pem = pem.display().to_string();
        assert_eq!(
            refused(&["--aggregator-ca", &pem]),
            "--aggregator-ca needs an https:// aggregator"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let empty = empty.display().to_string();
        let no_cert = refused(&[
            "--aggregator",
            "https://agg:443",
            "--client-cert",
            empty.as_str(),
            "--client-key",
            empty.as_str(),
        ]);
        assert_eq!(no_cert, "--client-cert holds no PEM CERTIFICATE block");
        let no_token = refused(&["--token-file", "/nonexistent/token"]);
        assert!(
            no_token.starts_with("--token-file: cannot read /nonexistent/token: "),
            "{no_token}"
        );
        let spaced = dir.path().join("spaced");
        std::fs::write(&spaced, "s3cret-part s3cret-part").unwrap();
        let spaced = refused(&["--token-file", &spaced.display().to_string()]);
        assert!(
            spaced.starts_with("--token-file: ") && !spaced.contains("s3cret"),
            "{spaced}"
        );
    }

    #[test]
    fn the_tap_needs_its_upstream_and_makes_the_queue_optional() {
        let tap = |extra: &[&str]| {
            let mut argv = vec!["dwell-sidecar", "--pod-name", "p"];
            argv.extend_from_slice(extra);
            Settings::from_args(Args::try_parse_from(argv).unwrap())
        };
        let refusal = |extra: &[&str]| format!("{:#}", tap(extra).unwrap_err());
        assert_eq!(
            refusal(&[]),
            "--queue is required unless --tap-listen is given"
        );
        assert_eq!(
            refusal(&["--tap-listen", "127.0.0.1:5672"]),
            "--tap-listen needs --tap-upstream (the real broker)"
        );
        assert_eq!(
            refusal(&["--tap-upstream", "amqp://rabbit"]),
            "--tap-upstream needs --tap-listen"
        );
        let creds = refusal(&[
            "--tap-listen",
            "127.0.0.1:0",
            "--tap-upstream",
            "amqp://u:s3cret@rabbit",
        ]);
        assert!(
            creds.starts_with("--tap-upstream ") && !creds.contains("s3cret"),
            "{creds}"
        );
        let ok = tap(&[
            "--tap-listen",
            "127.0.0.1:0",
            "--tap-upstream",
            "amqp://rabbit",
            "--timestamp-header",
            "timestamp_in_ms",
        ])
        .unwrap();
        assert!(ok.queue.is_none());
        assert_eq!((ok.listen.report_udp, ok.listen.report_http), (None, None));
        let t = ok.tap.unwrap();
        assert_eq!(t.config.upstream.to_string(), "amqp://rabbit:5672");
        assert_eq!(
            t.config.header.map(|h| h.name).as_deref(),
            Some("timestamp_in_ms")
        );
        assert_eq!(t.max_connections, 1024);
        assert_eq!(
            refusal(&[
                "--tap-listen",
                "127.0.0.1:0",
                "--tap-upstream",
                "amqp://rabbit",
                "--amqp-url",
                "amqp://rabbit",
                "--peek"
            ]),
            "--peek needs --queue"
        );
    }

    #[test]
    fn sources_follow_the_flags() {
        let plain = settings(&[]).unwrap();
        assert!(plain.stats.is_none() && plain.peek.is_none());
        assert_eq!(plain.vhost, "/");
        let url = "amqp://u:p@rabbit/orders-vhost";
        let stats_only = settings(&["--amqp-url", url, "--stats-interval", "2s"]).unwrap();
        assert_eq!(stats_only.vhost, "orders-vhost");
        assert!(stats_only.peek.is_none());
        assert_eq!(
            stats_only.stats.map(|c| c.every),
            Some(Duration::from_secs(2))
        );
        // A stale queue state is dropped after 3 polls, but never sooner than 15 s.
        assert_eq!(stats_only.interval.state_max_age, Duration::from_secs(15));
        let peeking = settings(&["--amqp-url", url, "--peek", "--vhost", "v"]).unwrap();
        assert_eq!(peeking.vhost, "v");
        assert!(peeking.peek.is_some());
        let off = settings(&["--report-udp", "off", "--max-age", "1m"]).unwrap();
        assert_eq!(off.listen.report_udp, None);
        assert_eq!(off.timestamps.max_age_ms, 60_000);
    }
}
