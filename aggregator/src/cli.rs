//! Command-line flags (each with a `DWELL_…` environment twin), and nothing else: the
//! composition root (`app`) turns them into each part's settings. Durations use the one grammar
//! of `dwell_runtime::duration` (`500ms`, `1.5s`, `1m30s`, `7d`, a bare number of seconds).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dwell_runtime::duration;
use dwell_runtime::logging::LogFormat;

/// dwell aggregator: serves queue dwell time to the Kubernetes HPA.
///
/// Ingests sidecar reports over gRPC, keeps a sliding window per source, applies the configured
/// scaling rules and answers the custom.metrics.k8s.io (v1beta1, v1beta2) and
/// external.metrics.k8s.io (v1beta1) APIs over HTTPS, plus the sidecar injection webhook
/// (POST /mutate/pods). Without a subcommand it runs the server; `inject` rewrites manifests.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "dwell-aggregator", version, about, long_about)]
pub struct Cli {
    /// A tool to run instead of the server.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The server's flags (used when no subcommand is given).
    #[command(flatten)]
    pub server: Args,
}

/// The subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Injects dwell-sidecar into Kubernetes YAML or JSON (files or stdin → stdout; Helm's
    /// post-renderer too).
    ///
    /// Reads Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, Pods, Lists and
    /// multi-document streams, and injects the workloads whose pod template is annotated
    /// `dwell.io/inject: enabled` (or all, with --all); everything else is copied unchanged.
    /// Works as Helm's post-renderer (`--post-renderer dwell-aggregator --post-renderer-args
    /// inject`). Exits non-zero, writing nothing to stdout, when a workload cannot be injected.
    Inject(InjectArgs),
}

/// The flags of `inject`.
#[derive(Debug, Clone, clap::Args)]
pub struct InjectArgs {
    /// Files to read, in order ("-" or none: stdin).
    pub files: Vec<PathBuf>,

    /// Inject every workload not annotated `dwell.io/inject: disabled`.
    #[arg(long)]
    pub all: bool,

    /// The injected sidecar's defaults.
    #[command(flatten)]
    pub defaults: InjectDefaults,
}

/// The injected sidecar's defaults, for `inject` and for the webhook (a pod's `dwell.io/image`
/// and `dwell.io/aggregator` annotations win).
#[derive(Debug, Clone, clap::Args)]
pub struct InjectDefaults {
    /// Image of the injected dwell-sidecar (e.g. a mirror of it).
    #[arg(long, env = "DWELL_INJECT_IMAGE", default_value = crate::inject::DEFAULT_IMAGE,
          value_parser = crate::inject::annotations::image_ref)]
    pub inject_image: String,

    /// gRPC URL of the aggregator the injected sidecars stream to (the headless Service).
    #[arg(long, env = "DWELL_INJECT_AGGREGATOR", default_value = crate::inject::DEFAULT_AGGREGATOR,
          value_parser = crate::inject::annotations::aggregator_url)]
    pub inject_aggregator: String,
}

/// The server's flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "dwell-aggregator", version, about, long_about)]
pub struct Args {
    /// Address of the HTTPS metrics API (custom/external metrics, discovery, OpenAPI, health, /metrics).
    #[arg(long, env = "DWELL_METRICS_ADDR", default_value = "0.0.0.0:6443")]
    pub metrics_addr: SocketAddr,

    /// Most metrics API connections open at once; more wait in the kernel's backlog until one
    /// closes (kube-apiserver keeps a few long-lived ones).
    #[arg(long, env = "DWELL_METRICS_MAX_CONNECTIONS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub metrics_max_connections: u32,

    /// Address of the gRPC ingest and inspect services.
    #[arg(long, env = "DWELL_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,

    /// Most gRPC connections open at once (one per sidecar and replica, plus grpcurl); more wait
    /// in the kernel's backlog until one closes.
    #[arg(long, env = "DWELL_GRPC_MAX_CONNECTIONS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_connections: u32,

    /// PEM certificate chain for the metrics API. Re-read when the file changes (rotating Secrets).
    /// Without --tls-cert/--tls-key a self-signed certificate is generated at start-up.
    #[arg(long, env = "DWELL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key matching --tls-cert.
    #[arg(long, env = "DWELL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Extra DNS names or IPs for the self-signed certificate (e.g. dwell.custom-metrics.svc).
    /// Repeat the flag or separate with commas.
    #[arg(long = "tls-san", env = "DWELL_TLS_SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,

    /// Write the generated self-signed certificate (public PEM only, no key) to this file, so
    /// clients (kubectl, the quick start) can trust it. Ignored with --tls-cert/--tls-key.
    #[arg(long, env = "DWELL_TLS_SELF_SIGNED_OUT")]
    pub tls_self_signed_out: Option<PathBuf>,

    /// How often --tls-cert/--tls-key are checked for new content (e.g. 10s, 500ms).
    #[arg(long, env = "DWELL_TLS_RELOAD_INTERVAL", default_value = "10s",
          value_parser = duration::parse)]
    pub tls_reload_interval: Duration,

    /// Scaling rules (YAML). Watched and reloaded on change; without it the built-in rules apply.
    #[arg(long, env = "DWELL_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format. The filter comes from RUST_LOG (default `info`).
    #[arg(long, env = "DWELL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How often the --config file is checked for changes (e.g. 2s, 500ms).
    #[arg(long, env = "DWELL_CONFIG_POLL_INTERVAL", default_value = "2s",
          value_parser = duration::parse)]
    pub config_poll_interval: Duration,

    /// How often stale sources are counted and silent ones evicted.
    #[arg(long, env = "DWELL_SWEEP_INTERVAL", default_value = "1s",
          value_parser = duration::parse)]
    pub sweep_interval: Duration,

    /// Most raw samples one report may carry (larger reports are rejected: send a summary).
    #[arg(long, env = "DWELL_MAX_REPORT_SAMPLES", default_value_t = 10_000)]
    pub max_report_samples: usize,

    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "DWELL_MAX_REPORT_BYTES", default_value_t = 1024 * 1024)]
    pub max_report_bytes: usize,

    /// PEM certificate chain for gRPC ingest. Without --grpc-tls-cert/--grpc-tls-key gRPC is
    /// plaintext and unauthenticated (a warning is logged). Re-read on change like --tls-cert.
    #[arg(long, env = "DWELL_GRPC_TLS_CERT", requires = "grpc_tls_key")]
    pub grpc_tls_cert: Option<PathBuf>,

    /// PEM private key matching --grpc-tls-cert.
    #[arg(long, env = "DWELL_GRPC_TLS_KEY", requires = "grpc_tls_cert")]
    pub grpc_tls_key: Option<PathBuf>,

    /// PEM CA bundle for gRPC clients: when set, every gRPC client (sidecar, grpcurl) must
    /// present a certificate signed by it (mTLS). Needs --grpc-tls-cert.
    #[arg(long, env = "DWELL_GRPC_CLIENT_CA", requires = "grpc_tls_cert")]
    pub grpc_client_ca: Option<PathBuf>,

    /// PEM CA bundle of kube-apiserver's front proxy (the `requestheader-client-ca-file` key of
    /// kube-system/extension-apiserver-authentication). When set (or --client-ca), every route
    /// but /healthz /livez /readyz needs an authenticated caller; a front-proxy certificate makes
    /// X-Remote-User/X-Remote-Group the caller. Without either, the API authenticates nobody.
    #[arg(long, env = "DWELL_REQUESTHEADER_CLIENT_CA")]
    pub requestheader_client_ca: Option<PathBuf>,

    /// Front-proxy certificate CNs accepted: comma-separated (front-proxy-client) or the JSON
    /// array kube-apiserver publishes (["front-proxy-client"]); empty: any certificate signed
    /// by --requestheader-client-ca.
    #[arg(long, env = "DWELL_REQUESTHEADER_ALLOWED_NAMES",
          value_parser = crate::api::auth::AllowedNames::parse)]
    pub requestheader_allowed_names: Option<crate::api::auth::AllowedNames>,

    /// PEM CA bundle for ordinary x509 client certificates on the metrics API (user = CN,
    /// groups = O), e.g. the `client-ca-file` key of extension-apiserver-authentication.
    #[arg(long, env = "DWELL_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,

    /// Who may read which metrics, and the metrics API's connection timeouts.
    #[command(flatten)]
    pub metrics_authz: MetricsAuthzArgs,

    /// What the injection webhook (POST /mutate/pods) injects.
    #[command(flatten)]
    pub inject: InjectDefaults,

    /// Who may report for which pod, and what one caller may take.
    #[command(flatten)]
    pub ingest: IngestArgs,
}

/// Ingest authentication (a pod reports only for itself) and per-caller limits.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// The service-account issuer's keys: the JSON `kubectl get --raw /openid/v1/jwks` prints.
    /// With it, a stream's `authorization: Bearer` token is verified offline (RS256/ES256,
    /// exp/nbf/iat, --ingest-token-issuer, --ingest-token-audience) and its reports must be
    /// about the token's own namespace and pod. Re-read on change; a bad new file keeps the keys.
    #[arg(long, env = "DWELL_INGEST_JWKS", requires = "ingest_token_issuer")]
    pub ingest_jwks: Option<PathBuf>,

    /// How often --ingest-jwks is checked for new keys.
    #[arg(long, env = "DWELL_INGEST_JWKS_POLL_INTERVAL", default_value = "10s",
          value_parser = duration::parse)]
    pub ingest_jwks_poll_interval: Duration,

    /// The `iss` of the cluster's service-account tokens (e.g.
    /// https://kubernetes.default.svc.cluster.local; `kubectl get --raw
    /// /.well-known/openid-configuration` shows it). Required with --ingest-jwks.
    #[arg(long, env = "DWELL_INGEST_TOKEN_ISSUER", requires = "ingest_jwks")]
    pub ingest_token_issuer: Option<String>,

    /// The audience ingest tokens must be for (the sidecar's projected token's `audience`).
    #[arg(long, env = "DWELL_INGEST_TOKEN_AUDIENCE", default_value = "dwell")]
    pub ingest_token_audience: String,

    /// Refuse (UNAUTHENTICATED) every ingest stream without a verified identity: a token
    /// (--ingest-jwks) or a client certificate with a SPIFFE ID (--grpc-client-ca).
    #[arg(long, env = "DWELL_INGEST_REQUIRE_IDENTITY")]
    pub ingest_require_identity: bool,

    /// With mTLS: the trust domain of the client certificates' SPIFFE IDs
    /// (spiffe://TRUST-DOMAIN/ns/NS/sa/SA binds namespace NS); without it, any trust domain.
    #[arg(long, env = "DWELL_INGEST_SPIFFE_TRUST_DOMAIN")]
    pub ingest_spiffe_trust_domain: Option<String>,

    /// Most sources one namespace may hold; a report adding one more is refused
    /// (RESOURCE_EXHAUSTED). Sources held are never evicted for it.
    #[arg(long, env = "DWELL_INGEST_MAX_SOURCES_PER_NAMESPACE", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ingest_max_sources_per_namespace: u32,

    /// Most sources held in all (10 000 take ~56 MiB, 50 000 ~177 MiB: BENCHMARKS.md).
    #[arg(long, env = "DWELL_INGEST_MAX_SOURCES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ingest_max_sources: u32,

    /// Sustained reports per second one stream may send (a sidecar sends one per queue per
    /// interval); a report over it and --ingest-report-burst is refused and ends the stream
    /// (RESOURCE_EXHAUSTED).
    #[arg(long, env = "DWELL_INGEST_MAX_REPORTS_PER_SECOND", default_value_t = 300,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ingest_max_reports_per_second: u32,

    /// Reports a stream may send at once (a reconnecting sidecar resends its backlog, 300 by
    /// default).
    #[arg(long, env = "DWELL_INGEST_REPORT_BURST", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ingest_report_burst: u32,

    /// Most concurrent streams on one gRPC connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS;
    /// a sidecar uses one, a proxy pooling many sidecars' streams on one connection more:
    /// streams past it wait in the client).
    #[arg(long, env = "DWELL_GRPC_MAX_STREAMS_PER_CONNECTION", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_streams_per_connection: u32,

    /// How often the gRPC server pings each connection (HTTP/2 PING).
    #[arg(long, env = "DWELL_GRPC_KEEPALIVE_INTERVAL", default_value = "60s",
          value_parser = duration::parse)]
    pub grpc_keepalive_interval: Duration,

    /// A connection whose peer leaves a ping unanswered this long is closed.
    #[arg(long, env = "DWELL_GRPC_KEEPALIVE_TIMEOUT", default_value = "20s",
          value_parser = duration::parse)]
    pub grpc_keepalive_timeout: Duration,
}

/// Metrics API authorization (after authentication) and its HTTPS connection limits.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsAuthzArgs {
    /// Static authorization policy (YAML: allowed users and groups, optionally per namespace and
    /// per API). Re-read on change; a bad version keeps the policy in force. With
    /// --authorization-delegated too, the policy is asked first, then the cluster.
    #[arg(long, env = "DWELL_AUTHORIZATION_POLICY")]
    pub authorization_policy: Option<PathBuf>,

    /// How often --authorization-policy is checked for changes.
    #[arg(long, env = "DWELL_AUTHORIZATION_POLICY_POLL_INTERVAL", default_value = "2s",
          value_parser = duration::parse)]
    pub authorization_policy_poll_interval: Duration,

    /// Delegated authorization: ask the cluster (a SubjectAccessReview, with the pod's
    /// service-account token) whether the caller may read the metric, as custom-metrics
    /// API servers do. Needs RBAC `system:auth-delegator`.
    #[arg(long, env = "DWELL_AUTHORIZATION_DELEGATED")]
    pub authorization_delegated: bool,

    /// The cluster API for SubjectAccessReviews, `https://host[:port]` (default: in-cluster,
    /// from KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT).
    #[arg(long, env = "DWELL_AUTHORIZATION_KUBE_API",
          value_parser = crate::api::authz::sar::KubeApi::parse)]
    pub authorization_kube_api: Option<crate::api::authz::sar::KubeApi>,

    /// CA bundle of the cluster API's serving certificate.
    #[arg(
        long,
        env = "DWELL_AUTHORIZATION_KUBE_CA",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    )]
    pub authorization_kube_ca: PathBuf,

    /// The bearer token for SubjectAccessReviews (re-read for every review: it rotates).
    #[arg(
        long,
        env = "DWELL_AUTHORIZATION_KUBE_TOKEN_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub authorization_kube_token_file: PathBuf,

    /// The most one SubjectAccessReview may take; beyond it the request gets 500, never access.
    #[arg(long, env = "DWELL_AUTHORIZATION_TIMEOUT", default_value = "10s",
          value_parser = duration::parse)]
    pub authorization_timeout: Duration,

    /// How long an allowed SubjectAccessReview answer is reused.
    #[arg(long, env = "DWELL_AUTHORIZATION_CACHE_ALLOWED_TTL", default_value = "10s",
          value_parser = duration::parse)]
    pub authorization_cache_allowed_ttl: Duration,

    /// How long a denied SubjectAccessReview answer is reused.
    #[arg(long, env = "DWELL_AUTHORIZATION_CACHE_DENIED_TTL", default_value = "10s",
          value_parser = duration::parse)]
    pub authorization_cache_denied_ttl: Duration,

    /// Most SubjectAccessReview answers cached.
    #[arg(long, env = "DWELL_AUTHORIZATION_CACHE_SIZE", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub authorization_cache_size: u32,

    /// HTTP/1.1: the most a request's headers may take to arrive (also bounds a kept-alive
    /// connection waiting for its next request). Slow clients are closed.
    #[arg(long, env = "DWELL_METRICS_HEADER_READ_TIMEOUT", default_value = "10s",
          value_parser = duration::parse)]
    pub metrics_header_read_timeout: Duration,

    /// A metrics API connection with no request in flight for this long is closed (HTTP/2:
    /// GOAWAY).
    #[arg(long, env = "DWELL_METRICS_IDLE_TIMEOUT", default_value = "120s",
          value_parser = duration::parse)]
    pub metrics_idle_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Every duration flag and every duration field of the rules file reads the one grammar of
    /// `dwell_runtime::duration` (the sidecar's flags use it too): `--sweep-interval 1` used to be
    /// refused while the sidecar's `--interval 1` worked.
    #[test]
    fn every_duration_reads_the_one_grammar() {
        for text in ["1", "1.5s", "1m30s", "500ms", "2h", "7d"] {
            let want = duration::parse(text).expect("the grammar takes it");
            let args = Args::try_parse_from([
                "dwell-aggregator",
                "--tls-reload-interval",
                text,
                "--config-poll-interval",
                text,
                "--sweep-interval",
                text,
            ])
            .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                [
                    args.tls_reload_interval,
                    args.config_poll_interval,
                    args.sweep_interval
                ],
                [want; 3],
                "{text}"
            );
            let ms = want.as_millis() as i64;
            let rules = crate::config::parse(&format!(
                "stale_after: \"{text}\"\nevict_after: \"{text}\"\nrules:\n  - {{name: m, \
                 window: \"{text}\", stall_after: \"{text}\"}}\n"
            ));
            // Windows are capped at 24h; every other field takes what the grammar takes.
            if ms <= 24 * 3_600_000 {
                let rules = rules.unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!((rules.stale_after_ms, rules.evict_after_ms), (ms, ms));
                assert_eq!(
                    (rules.rules[0].window_ms, rules.rules[0].stall_after_ms),
                    (ms, Some(ms))
                );
            }
        }
        for bad in ["0", "-1s", "5x", "1m30", ""] {
            assert!(duration::parse(bad).is_err(), "{bad}");
            assert!(
                Args::try_parse_from(["dwell-aggregator", "--sweep-interval", bad]).is_err(),
                "{bad}"
            );
            let config = crate::config::parse(&format!("stale_after: \"{bad}\"\n"));
            assert!(config.is_err(), "{bad}");
        }
    }

    /// Without a subcommand the server's flags read exactly as before; `inject` has its own.
    #[test]
    fn the_server_is_the_default_and_inject_a_subcommand() {
        let cli = Cli::try_parse_from(["dwell-aggregator", "--grpc-addr", "127.0.0.1:1"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.server.grpc_addr, "127.0.0.1:1".parse().unwrap());
        assert_eq!(cli.server.inject.inject_image, crate::inject::DEFAULT_IMAGE);
        let cli = Cli::try_parse_from([
            "dwell-aggregator",
            "inject",
            "--all",
            "--inject-image",
            "mirror.local/dwell-sidecar:1",
            "a.yaml",
            "-",
        ])
        .unwrap();
        let Some(Command::Inject(args)) = cli.command else {
            panic!("no inject subcommand");
        };
        assert!(args.all);
        assert_eq!(args.files, [PathBuf::from("a.yaml"), PathBuf::from("-")]);
        assert_eq!(args.defaults.inject_image, "mirror.local/dwell-sidecar:1");
        for bad in [
            ["inject", "--inject-aggregator", "dwell:50051"],
            ["inject", "--inject-image", "a b"],
        ] {
            let argv = std::iter::once("dwell-aggregator").chain(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }
}
