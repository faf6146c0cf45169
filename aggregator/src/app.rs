//! The composition root: the only place that reads the command line ([`Settings::from_args`]),
//! binds listeners ([`App::bind`]) and starts tasks ([`App::run`]), all on one `TaskTracker`
//! with one cancellation path. Every part below it takes a typed config, a listener and the
//! shutdown token, so tests can bind port 0 and inject a clock.
//!
//! [`inject`] runs the `inject` subcommand instead (no listener, no task).
//!
//! Tasks started here: the HTTPS metrics API (and its certificate reloader), the gRPC server
//! (and its certificate reloader), the window sweeper, the rules watcher (with `--config`), and
//! the queue watch of the rules file (`watch:`; one task per broker connection and per watched
//! queue, restarted by a reload only where the file changed).
//! A server that fails cancels the token, which stops the others.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dwell_runtime::accept::Listener;
use dwell_runtime::clock::{SharedClock, SystemClock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::auth::{AuthSettings, Authenticator};
use crate::api::authz::sar::{KubeApi, SarSettings};
use crate::api::authz::{Authorizer, AuthzSettings};
use crate::cli::{Args, InjectArgs, InjectDefaults, MetricsAuthzArgs};
use crate::engine::Engine;
use crate::identity::{IngestAuth, IngestAuthSettings, TokenSettings};
use crate::ingest::{IngestLimits, IngestMetrics, IngestService, Limits};
use crate::inject::{InjectSettings, Selection};
use crate::inspect::InspectService;
use crate::policy::RuleSet;
use crate::telemetry::Telemetry;
use crate::tls::{HttpsLimits, ServerOptions, TlsSettings, TlsSetup, client_auth};
use crate::watch::{WatchMetrics, Watcher};
use crate::window::WindowStore;
use crate::window::sweep::{Retention, SweepMetrics, Sweeper};

/// The metrics API listener: where, how many connections, TLS and who may call.
#[derive(Debug, Clone)]
pub struct MetricsApiSettings {
    /// Listen address.
    pub addr: SocketAddr,
    /// Most connections open at once.
    pub max_connections: usize,
    /// The serving certificate.
    pub tls: TlsSettings,
    /// Client authentication.
    pub auth: AuthSettings,
    /// Authorization after authentication (policy file, SubjectAccessReviews).
    pub authz: AuthzSettings,
    /// Header-read and idle timeouts.
    pub limits: HttpsLimits,
}

/// The gRPC listener: where, how many connections, TLS, and what a report may hold.
#[derive(Debug, Clone)]
pub struct GrpcSettings {
    /// Listen address.
    pub addr: SocketAddr,
    /// Most connections open at once.
    pub max_connections: usize,
    /// TLS (None: plaintext); with `client_ca`, mTLS.
    pub tls: Option<TlsSettings>,
    /// The CA bundle every client certificate must chain to (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Bounds on one report.
    pub limits: Limits,
}

/// Where the rules come from.
#[derive(Debug, Clone)]
pub struct RulesSettings {
    /// The rules file, watched for changes (None: the built-in rules).
    pub path: Option<PathBuf>,
    /// How often the file is checked.
    pub poll_interval: Duration,
}

/// Every part's settings, validated once from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The metrics API.
    pub metrics: MetricsApiSettings,
    /// gRPC ingest and inspect.
    pub grpc: GrpcSettings,
    /// The rules file.
    pub rules: RulesSettings,
    /// How often the window is swept.
    pub sweep_interval: Duration,
    /// What the injection webhook injects.
    pub inject: InjectSettings,
    /// Ingest authentication and per-caller limits.
    pub ingest: IngestSettings,
}

/// Who may report for which pod ([`IngestAuthSettings`]) and what one caller may take.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Token verification, SPIFFE binding, whether an identity is required.
    pub auth: IngestAuthSettings,
    /// Sources, report rate, streams per connection, keepalive.
    pub limits: IngestLimits,
}

impl IngestSettings {
    fn from_args(args: crate::cli::IngestArgs) -> Self {
        let tokens = args
            .ingest_jwks
            .zip(args.ingest_token_issuer)
            .map(|(jwks, issuer)| TokenSettings {
                jwks,
                jwks_poll_interval: args.ingest_jwks_poll_interval,
                issuer,
                audience: args.ingest_token_audience,
            });
        Self {
            auth: IngestAuthSettings {
                tokens,
                required: args.ingest_require_identity,
                spiffe_trust_domain: args.ingest_spiffe_trust_domain,
            },
            limits: IngestLimits {
                max_sources_per_namespace: args.ingest_max_sources_per_namespace as usize,
                max_sources: args.ingest_max_sources as usize,
                max_reports_per_second: f64::from(args.ingest_max_reports_per_second),
                report_burst: f64::from(args.ingest_report_burst),
                max_streams_per_connection: args.grpc_max_streams_per_connection,
                keepalive_interval: Some(args.grpc_keepalive_interval),
                keepalive_timeout: args.grpc_keepalive_timeout,
            },
        }
    }
}

impl Settings {
    /// The settings the flags ask for. clap has checked each flag's own value and pairs
    /// (`--tls-cert` needs `--tls-key`, …); files are read by [`App::run`].
    pub fn from_args(args: Args) -> Self {
        let Args {
            metrics_addr,
            metrics_max_connections,
            grpc_addr,
            grpc_max_connections,
            tls_cert,
            tls_key,
            tls_san,
            tls_self_signed_out,
            tls_reload_interval,
            config,
            log_format: _,
            config_poll_interval,
            sweep_interval,
            max_report_samples,
            max_report_bytes,
            grpc_tls_cert,
            grpc_tls_key,
            grpc_client_ca,
            requestheader_client_ca,
            requestheader_allowed_names,
            client_ca,
            metrics_authz,
            inject,
            ingest,
        } = args;
        let (authz, limits) = metrics_authz_settings(metrics_authz);
        let grpc_tls = grpc_tls_cert.zip(grpc_tls_key).map(|files| TlsSettings {
            files: Some(files),
            sans: Vec::new(),
            self_signed_out: None,
            reload_interval: tls_reload_interval,
            options: ServerOptions::grpc(),
        });
        Self {
            metrics: MetricsApiSettings {
                addr: metrics_addr,
                max_connections: metrics_max_connections as usize,
                tls: TlsSettings {
                    files: tls_cert.zip(tls_key),
                    sans: tls_san,
                    self_signed_out: tls_self_signed_out,
                    reload_interval: tls_reload_interval,
                    options: ServerOptions::https(),
                },
                auth: AuthSettings {
                    requestheader_client_ca,
                    requestheader_allowed_names: requestheader_allowed_names
                        .map(|names| names.0)
                        .unwrap_or_default(),
                    client_ca,
                },
                authz,
                limits,
            },
            grpc: GrpcSettings {
                addr: grpc_addr,
                max_connections: grpc_max_connections as usize,
                tls: grpc_tls,
                client_ca: grpc_client_ca,
                limits: Limits {
                    max_samples: max_report_samples,
                    max_message_bytes: max_report_bytes,
                    ..Limits::default()
                },
            },
            rules: RulesSettings {
                path: config,
                poll_interval: config_poll_interval,
            },
            sweep_interval,
            inject: inject_settings(inject),
            ingest: IngestSettings::from_args(ingest),
        }
    }
}

/// Metrics API authorization and connection limits from their flags. Delegation without a
/// cluster address (neither --authorization-kube-api nor the in-cluster environment) keeps the
/// host empty: [`App::run`] refuses to start, naming both.
fn metrics_authz_settings(args: MetricsAuthzArgs) -> (AuthzSettings, HttpsLimits) {
    let delegated = args.authorization_delegated.then(|| {
        let api = args
            .authorization_kube_api
            .or_else(KubeApi::in_cluster)
            .unwrap_or(KubeApi {
                host: String::new(),
                port: 443,
            });
        SarSettings {
            host: api.host,
            port: api.port,
            ca_file: args.authorization_kube_ca,
            token_file: args.authorization_kube_token_file,
            timeout: args.authorization_timeout,
            allowed_ttl: args.authorization_cache_allowed_ttl,
            denied_ttl: args.authorization_cache_denied_ttl,
            max_cached: args.authorization_cache_size as usize,
        }
    });
    let authz = AuthzSettings {
        policy: args.authorization_policy,
        policy_poll_interval: args.authorization_policy_poll_interval,
        delegated,
    };
    let limits = HttpsLimits {
        header_read_timeout: args.metrics_header_read_timeout,
        idle_timeout: args.metrics_idle_timeout,
    };
    (authz, limits)
}

/// The injector's settings from its flags (the ingest-token hook stays off: no flag yet).
fn inject_settings(defaults: InjectDefaults) -> InjectSettings {
    InjectSettings {
        image: defaults.inject_image,
        aggregator: defaults.inject_aggregator,
        ingest_token: None,
    }
}

/// `dwell-aggregator inject`: the files (or stdin) injected, to stdout; a report to stderr.
pub fn inject(args: InjectArgs) -> anyhow::Result<()> {
    let selection = if args.all {
        Selection::All
    } else {
        Selection::Annotated
    };
    crate::inject::command::run(
        &inject_settings(args.defaults),
        selection,
        &args.files,
        std::io::stdin().lock(),
        std::io::stdout().lock(),
        std::io::stderr(),
    )?;
    Ok(())
}

/// The metrics API's authorizer (None, with a WARN, when none is configured).
fn metrics_authorizer(
    settings: &AuthzSettings,
    clock: &SharedClock,
    telemetry: &Telemetry,
) -> anyhow::Result<Option<Arc<Authorizer>>> {
    if settings
        .delegated
        .as_ref()
        .is_some_and(|d| d.host.is_empty())
    {
        anyhow::bail!(
            "--authorization-delegated needs the cluster API: --authorization-kube-api, or \
             KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (in a pod)"
        );
    }
    let authorizer = Authorizer::new(settings, clock.clone())
        .context("metrics API authorization (--authorization-policy, --authorization-kube-ca)")?;
    match &authorizer {
        Some(a) => {
            a.register(telemetry);
            tracing::info!(policy = ?settings.policy, delegated = settings.delegated.is_some(),
                "metrics API authorization: policy first, then SubjectAccessReview");
        }
        None => tracing::warn!(
            "metrics API authorizes EVERYONE: every authenticated caller can read every metric; \
             set --authorization-policy and/or --authorization-delegated"
        ),
    }
    Ok(authorizer.map(Arc::new))
}

/// Parses nothing, binds both listeners, and serves until `shutdown`: what `main` runs.
pub async fn run(args: Args, shutdown: CancellationToken) -> anyhow::Result<()> {
    App::bind(Settings::from_args(args))
        .await?
        .run(shutdown)
        .await
}

/// The aggregator with its listeners bound, ready to run.
pub struct App {
    settings: Settings,
    metrics: TcpListener,
    grpc: TcpListener,
    clock: SharedClock,
}

impl App {
    /// Binds both listeners (a port in use fails here, naming the flag).
    pub async fn bind(settings: Settings) -> anyhow::Result<Self> {
        let bind = |addr: SocketAddr, flag: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {flag} {addr}"))
        };
        Ok(Self {
            metrics: bind(settings.metrics.addr, "--metrics-addr").await?,
            grpc: bind(settings.grpc.addr, "--grpc-addr").await?,
            settings,
            clock: SystemClock::shared(),
        })
    }

    /// Reads time from `clock` instead of the system clock (tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The metrics API's bound address.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics.local_addr()
    }

    /// The gRPC bound address.
    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    /// Loads the rules, certificates and CA bundles, starts every task and serves until
    /// `shutdown` is cancelled; then waits for every task to finish draining.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            settings,
            metrics,
            grpc,
            clock,
        } = self;
        let tracker = TaskTracker::new();
        let telemetry = Arc::new(Telemetry::new());

        // The engine (rules + window) is what gRPC ingest feeds and the HTTPS API serves from.
        let (rules, rules_text) = match &settings.rules.path {
            None => (RuleSet::default(), None),
            Some(path) => crate::config::load_with_text(path)
                .map(|(rules, text)| (rules, Some(text)))
                .with_context(|| format!("--config {}", path.display()))?,
        };
        tracing::info!(rules = rules.rules.len(), watched = rules.watch.entries.len(),
            config = ?settings.rules.path, "rules loaded");
        let store = Arc::new(WindowStore::new(rules.longest_window_ms()));
        // The queue watch feeds the same window as ingest, from the same rules file.
        let watch_metrics = WatchMetrics::default();
        watch_metrics.register(&telemetry);
        let watcher = Watcher::new(
            store.clone(),
            clock.clone(),
            watch_metrics,
            tracker.clone(),
            shutdown.clone(),
        );
        watcher.apply(&rules.watch);
        let engine = Arc::new(Engine::new(rules, store.clone(), clock.clone()));
        engine.register(&telemetry);

        // HTTPS metrics API: TLS (hot-reloaded) in front of the router, asking for client
        // certificates when a client CA is configured.
        let authenticator = Authenticator::new(&settings.metrics.auth)
            .context("metrics API authentication (--requestheader-client-ca, --client-ca)")?
            .map(Arc::new);
        let authorizer = metrics_authorizer(&settings.metrics.authz, &clock, &telemetry)?;
        if let Some(watcher) = authorizer
            .as_ref()
            .and_then(|a| a.policy_watcher(shutdown.clone()))
        {
            tracker.spawn(watcher);
        }
        let mut https = settings.metrics.tls;
        match &authenticator {
            Some(auth) => https.options.client_verifier = Some(auth.handshake_verifier()),
            None => tracing::warn!(
                "metrics API authenticates NOBODY: anyone who reaches it can read metrics; set \
                 --requestheader-client-ca (and --requestheader-allowed-names) or --client-ca"
            ),
        }
        let mut https = TlsSetup::new(&https).context("metrics API TLS (--tls-cert/--tls-key)")?;
        if let Some(reloader) = https.reloader(shutdown.clone()) {
            tracker.spawn(reloader);
        }
        let router = crate::api::router(
            crate::api::ApiState::new(engine.clone(), telemetry.clone())
                .with_held_answers(engine.clone())
                .with_authenticator(authenticator)
                .with_authorizer(authorizer)
                .with_inject(settings.inject),
        );
        let listener = Listener::new(metrics, "metrics API", settings.metrics.max_connections);
        tracing::info!(
            "metrics API listening on https://{}",
            listener.local_addr()?
        );
        let connections = crate::tls::ConnectionMetrics::default();
        connections.register(&telemetry, settings.metrics.max_connections);
        tracker.spawn(crate::tls::serve_with(
            listener,
            https.config.clone(),
            router,
            settings.metrics.limits,
            connections,
            tracker.clone(),
            shutdown.clone(),
        ));

        // gRPC ingest + inspect + health + reflection.
        let grpc_tls = match settings.grpc.tls {
            None => None,
            Some(mut tls) => {
                if let Some(ca) = &settings.grpc.client_ca {
                    let roots = client_auth::load_roots(ca)
                        .with_context(|| format!("--grpc-client-ca {}", ca.display()))?;
                    tls.options.client_verifier = Some(client_auth::verifier(
                        roots,
                        client_auth::Presence::Required,
                    )?);
                }
                let mut setup =
                    TlsSetup::new(&tls).context("gRPC TLS (--grpc-tls-cert/--grpc-tls-key)")?;
                if let Some(reloader) = setup.reloader(shutdown.clone()) {
                    tracker.spawn(reloader);
                }
                Some(setup.config)
            }
        };
        match (&grpc_tls, &settings.grpc.client_ca) {
            (Some(_), Some(ca)) => tracing::info!(
                ca = %ca.display(),
                "gRPC clients must present a certificate signed by --grpc-client-ca (mTLS)"
            ),
            (Some(_), None) => tracing::warn!(
                "gRPC ingest is encrypted but UNAUTHENTICATED: any client may push reports; \
                 set --grpc-client-ca"
            ),
            (None, _) => tracing::warn!(
                "gRPC ingest is PLAINTEXT and UNAUTHENTICATED: anyone who reaches the gRPC port \
                 can push reports; set --grpc-tls-cert/--grpc-tls-key and --grpc-client-ca"
            ),
        }
        let ingest_metrics = IngestMetrics::default();
        ingest_metrics.register(&telemetry);
        let (ingest_auth, jwks_watch) =
            IngestAuth::load(&settings.ingest.auth, ingest_metrics.jwks.clone())
                .context("ingest tokens (--ingest-jwks)")?;
        if let Some((keys, content, every)) = jwks_watch {
            tracker.spawn(keys.watch(content, every, shutdown.clone()));
        }
        match (&settings.ingest.auth, settings.grpc.client_ca.is_some()) {
            (a, _) if a.required => tracing::info!(
                tokens = a.tokens.is_some(),
                "every ingest stream must prove its pod (token) or namespace (certificate)"
            ),
            (a, mtls) if a.tokens.is_some() || mtls => tracing::warn!(
                "ingest streams without a token or SPIFFE certificate may report for ANY \
                 namespace and pod; set --ingest-require-identity"
            ),
            _ => tracing::warn!(
                "ingest does not bind reports to their sender: any client may report for any \
                 pod; set --ingest-jwks/--ingest-token-issuer and --ingest-require-identity"
            ),
        }
        let ingest = IngestService::new(
            store.clone(),
            clock.clone(),
            settings.grpc.limits,
            ingest_metrics,
            tracker.clone(),
            shutdown.clone(),
        )
        .with_auth(ingest_auth)
        .with_limits(settings.ingest.limits);
        let inspect = InspectService::new(engine.clone(), store.clone(), clock.clone());
        let listener = Listener::new(grpc, "gRPC", settings.grpc.max_connections);
        let (grpc_tracker, grpc_shutdown) = (tracker.clone(), shutdown.clone());
        tracker.spawn(async move {
            let served = crate::ingest::server::serve(
                listener,
                grpc_tls,
                ingest,
                inspect,
                &grpc_tracker,
                grpc_shutdown.clone(),
            )
            .await;
            if let Err(error) = served {
                tracing::error!(%error, "gRPC server failed; shutting down");
                grpc_shutdown.cancel();
            }
        });

        // Window upkeep, with the retention of the rules in force at each sweep.
        let sweep_metrics = SweepMetrics::default();
        sweep_metrics.register(&telemetry);
        let rules_in_force = engine.clone();
        let sweeper = Sweeper {
            store,
            clock,
            retention: move || {
                let rules = rules_in_force.rules();
                Retention {
                    stale_after_ms: rules.stale_after_ms,
                    evict_after_ms: rules.evict_after_ms,
                }
            },
            metrics: sweep_metrics,
        };
        tracker.spawn(sweeper.run(settings.sweep_interval, shutdown.clone()));

        // Rules hot reload: a bad file keeps the rules (and the watched queues) in force.
        if let Some(path) = settings.rules.path {
            let apply = move |rules: RuleSet| {
                watcher.apply(&rules.watch);
                engine.set_rules(rules);
            };
            tracker.spawn(crate::config::watch::watch(
                path,
                rules_text,
                settings.rules.poll_interval,
                apply,
                shutdown.clone(),
            ));
        }

        tracker.close();
        shutdown.cancelled().await;
        tracker.wait().await;
        Ok(())
    }
}
