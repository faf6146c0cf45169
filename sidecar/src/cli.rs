//! Command-line flags (each with a `DWELL_…` environment twin) and the parsers that reject bad
//! values up front, so a misconfigured sidecar fails at start with a clear message. Every
//! duration flag speaks the one grammar of [`dwell_runtime::duration`].

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dwell_runtime::duration::{self, DurationError};
use dwell_runtime::logging::LogFormat;

use crate::amqp::{AmqpUrl, AmqpUrlError};
use crate::peek::{self, QueueType};
use crate::timestamp::Unit;

/// dwell sidecar: measures how long messages waited in a RabbitMQ queue and streams compact
/// reports to every dwell aggregator replica.
///
/// Sources: `tap` (the app's AMQP connections pass through the sidecar, which reads every
/// delivery's timestamp off the frames; on with --tap-listen and --tap-upstream), `report` (the
/// consumer app sends each delivery's timestamp over localhost UDP or HTTP; on with --queue),
/// `stats` (passive queue.declare; on when --amqp-url is given) and `peek` (basic.get + requeue
/// of the head message; off unless --peek and --queue-type classic).
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "dwell-sidecar", version, about, long_about)]
pub struct Args {
    /// Aggregator gRPC endpoint, http://host:port or https://host:port. Every address the host
    /// resolves to (a headless Service has one per replica) gets its own stream.
    #[arg(
        long,
        env = "DWELL_AGGREGATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub aggregator: String,

    /// PEM file with the CA certificate(s) that sign the aggregator's certificate (https only;
    /// the system roots are trusted too).
    #[arg(long, env = "DWELL_AGGREGATOR_CA")]
    pub aggregator_ca: Option<PathBuf>,

    /// PEM client certificate presented to the aggregator (mTLS; https only). The aggregator
    /// checks it against its --grpc-client-ca.
    #[arg(long, env = "DWELL_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// PEM private key matching --client-cert.
    #[arg(long, env = "DWELL_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,

    /// File with a bearer token sent to the aggregator on every stream (`authorization: Bearer
    /// …`): in Kubernetes a projected service-account token with the audience `dwell`, which
    /// proves the pod's identity. Re-read every few seconds and on every reconnect, so the
    /// kubelet's rotations are picked up. Never logged. Off unless given.
    #[arg(long, env = "DWELL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// How often a report is sent (e.g. 1s, 500ms). Ages are pre-aggregated per interval.
    #[arg(long, env = "DWELL_INTERVAL", default_value = "1s", value_parser = duration::parse)]
    pub interval: Duration,

    /// The queue whose messages are observed (the report source's queue, always reported).
    /// Required unless --tap-listen is given: the tap reports every queue the app consumes from.
    #[arg(long, env = "DWELL_QUEUE")]
    pub queue: Option<String>,

    /// Address of the AMQP tap, e.g. 127.0.0.1:5672: point the app's AMQP URL here and every
    /// delivery's wait is measured with no change to the app ("off", the default, disables it).
    #[arg(long, env = "DWELL_TAP_LISTEN", default_value = "off", value_parser = parse_listen)]
    pub tap_listen: Listen,

    /// The real broker behind the tap: amqp://host[:port] or amqps://host[:port] (TLS, SNI and
    /// verification from the host name). No credentials or vhost: the app's own pass through.
    #[arg(long, env = "DWELL_TAP_UPSTREAM")]
    pub tap_upstream: Option<String>,

    /// PEM file with the CA certificate(s) of an amqps:// upstream [default: the system bundle].
    #[arg(long, env = "DWELL_TAP_UPSTREAM_CA")]
    pub tap_upstream_ca: Option<PathBuf>,

    /// Most app connections the tap holds open at once; more wait until one closes.
    #[arg(long, env = "DWELL_TAP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub tap_max_connections: u32,

    /// Most queues reported; queues seen beyond it are counted, not reported.
    #[arg(long, env = "DWELL_MAX_QUEUES", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_queues: u32,

    /// RabbitMQ virtual host of the queue [default: the AMQP URL's vhost, else "/"].
    #[arg(long, env = "DWELL_VHOST")]
    pub vhost: Option<String>,

    /// AMQP URL for the stats (and peek) sources, e.g. amqp://user:pass@rabbitmq:5672/%2f. Use a
    /// separate user with no queue permissions (read only when --peek is on). Without it only the
    /// report source runs. The password is never logged.
    #[arg(long, env = "DWELL_AMQP_URL", value_parser = parse_amqp_url)]
    pub amqp_url: Option<AmqpUrlArg>,

    /// How often the stats source runs a passive queue.declare (messages_ready, consumers).
    #[arg(long, env = "DWELL_STATS_INTERVAL", default_value = "5s", value_parser = duration::parse)]
    pub stats_interval: Duration,

    /// UDP address of the report line protocol ("off" to disable).
    #[arg(long, env = "DWELL_REPORT_UDP", default_value = "127.0.0.1:9125", value_parser = parse_listen)]
    pub report_udp: Listen,

    /// HTTP address of the report endpoint, POST /v1/report ("off" to disable).
    #[arg(long, env = "DWELL_REPORT_HTTP", default_value = "127.0.0.1:9126", value_parser = parse_listen)]
    pub report_http: Listen,

    /// Address of /healthz and /metrics (Prometheus text) ("off" to disable).
    #[arg(long, env = "DWELL_TELEMETRY_ADDR", default_value = "0.0.0.0:9127", value_parser = parse_listen)]
    pub telemetry_addr: Listen,

    /// Enable the peek source: basic.get + nack(requeue) of the head message. It marks the peeked
    /// message redelivered, so it only ever runs on an asserted classic queue with no consumers.
    #[arg(long, env = "DWELL_PEEK")]
    pub peek: bool,

    /// Least time between two peeks (at least 10s).
    #[arg(long, env = "DWELL_PEEK_INTERVAL", default_value = "30s", value_parser = parse_peek_interval)]
    pub peek_interval: Duration,

    /// The queue's type, as asserted by the operator. Peek runs only when this is "classic".
    #[arg(long, env = "DWELL_QUEUE_TYPE", value_enum, default_value_t = QueueType::Unknown)]
    pub queue_type: QueueType,

    /// Header read before the timestamp property (by the tap and when peeking), e.g.
    /// timestamp_in_ms.
    #[arg(long, env = "DWELL_TIMESTAMP_HEADER")]
    pub timestamp_header: Option<String>,

    /// Unit of the --timestamp-header value.
    #[arg(long, env = "DWELL_TIMESTAMP_HEADER_UNIT", value_enum, default_value_t = Unit::Ms)]
    pub timestamp_header_unit: Unit,

    /// Unit of the timestamp property and of reported timestamps without a unit. "auto" reads
    /// values >= 1e11 as milliseconds and >= 1e14 as microseconds (counted as unit-converted).
    #[arg(long, env = "DWELL_TIMESTAMP_UNIT", value_enum, default_value_t = Unit::Auto)]
    pub timestamp_unit: Unit,

    /// Largest age reported; older (and future) timestamps are clamped into [0, max-age] and counted.
    #[arg(long, env = "DWELL_MAX_AGE", default_value = "7d", value_parser = duration::parse)]
    pub max_age: Duration,

    /// Pod name [default: $POD_NAME from the Downward API, else the hostname].
    #[arg(long, env = "DWELL_POD_NAME")]
    pub pod_name: Option<String>,

    /// Pod namespace [default: $POD_NAMESPACE from the Downward API, else "default"].
    #[arg(long, env = "DWELL_POD_NAMESPACE")]
    pub pod_namespace: Option<String>,

    /// Downward API labels file (key="value" per line) [default: /etc/podinfo/labels when present].
    #[arg(long, env = "DWELL_LABELS_FILE")]
    pub labels_file: Option<PathBuf>,

    /// Extra pod label key=value (repeatable; comma-separated in the env var); overrides the file.
    #[arg(long = "label", env = "DWELL_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,

    /// Reports kept for resending to a (re)connected aggregator (oldest dropped first, counted).
    #[arg(long, env = "DWELL_BACKLOG", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub backlog: u32,

    /// How often the aggregator host name is re-resolved to find replicas that came or went.
    #[arg(long, env = "DWELL_RESOLVE_INTERVAL", default_value = "10s", value_parser = duration::parse)]
    pub resolve_interval: Duration,

    /// On SIGTERM, how long to try delivering the final (goodbye) report before exiting. Keep it
    /// below the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "DWELL_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = duration::parse)]
    pub shutdown_timeout: Duration,

    /// Log format.
    #[arg(long, env = "DWELL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A listen address, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Listen here.
    On(SocketAddr),
    /// Do not listen.
    Off,
}

impl Listen {
    /// The address, when on.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Listen::On(a) => Some(a),
            Listen::Off => None,
        }
    }
}

/// The `--amqp-url` flag as given: a URL, or the reason it is not one (without the password).
#[derive(Clone)]
pub struct AmqpUrlArg(Result<AmqpUrl, AmqpUrlError>);

impl AmqpUrlArg {
    /// The URL, or why it is not one.
    pub fn validate(&self) -> Result<AmqpUrl, AmqpUrlError> {
        self.0.clone()
    }
}

impl fmt::Debug for AmqpUrlArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Ok(u) => write!(f, "{u:?}"),
            Err(e) => write!(f, "invalid({e})"),
        }
    }
}

/// Never fails: clap would echo a refused value (password and all) in its error, so the
/// (redacted) reason is kept for the app to report instead.
fn parse_amqp_url(raw: &str) -> Result<AmqpUrlArg, std::convert::Infallible> {
    Ok(AmqpUrlArg(AmqpUrl::parse(raw)))
}

/// A listen address that is neither `ip:port` nor `off`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an ip:port address (or \"off\")")]
struct ListenError(String);

fn parse_listen(s: &str) -> Result<Listen, ListenError> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    s.parse::<SocketAddr>()
        .map(Listen::On)
        .map_err(|_| ListenError(s.to_owned()))
}

/// Why a `--peek-interval` was refused.
#[derive(Debug, thiserror::Error)]
enum PeekIntervalError {
    /// Not a duration at all.
    #[error(transparent)]
    Duration(#[from] DurationError),
    /// A duration, but under [`peek::MIN_INTERVAL`].
    #[error("{0:?} is too short: peeking more than once per 10s is unsafe")]
    TooShort(String),
}

/// The one duration grammar, plus the peek rule: at least [`peek::MIN_INTERVAL`] (10 s), because
/// every peek marks a message redelivered.
fn parse_peek_interval(s: &str) -> Result<Duration, PeekIntervalError> {
    let d = duration::parse(s)?;
    if d < peek::MIN_INTERVAL {
        return Err(PeekIntervalError::TooShort(s.trim().to_owned()));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn durations_parse_and_reject() {
        let flag = |name: &str, value: &str| {
            Args::try_parse_from(["dwell-sidecar", "--queue", "q", name, value])
        };
        let interval = |v: &str| flag("--interval", v).map(|a| a.interval).map_err(|_| ());
        assert_eq!(interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(interval("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(interval("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(interval("3"), Ok(Duration::from_secs(3)));
        assert_eq!(interval("1m30s"), Ok(Duration::from_secs(90)));
        assert!(interval("1x").is_err());
        assert!(interval("").is_err());
        assert!(interval("-1s").is_err());
        assert!(interval("0s").is_err());
        assert!(flag("--peek-interval", "5s").is_err());
        assert!(flag("--peek-interval", "10s").is_ok());
        let too_short = parse_peek_interval("5s").unwrap_err().to_string();
        assert!(too_short.contains("10s"), "{too_short}");
    }

    #[test]
    fn bad_values_are_refused() {
        let base = ["dwell-sidecar", "--queue", "q"];
        assert!(Args::try_parse_from(base).is_ok());
        let with = |extra: &[&str]| {
            let mut v: Vec<&str> = base.to_vec();
            v.extend_from_slice(extra);
            Args::try_parse_from(v)
        };
        assert!(with(&["--interval", "0"]).is_err());
        let bad_url = with(&["--amqp-url", "http://nope"])
            .unwrap()
            .amqp_url
            .unwrap();
        assert!(bad_url.validate().is_err());
        assert!(with(&["--report-udp", "nope"]).is_err());
        assert!(with(&["--backlog", "0"]).is_err());
        assert_eq!(
            with(&["--report-http", "off"]).unwrap().report_http,
            Listen::Off
        );
        let arg = with(&["--amqp-url", "amqp://u:s3cret@[bad"]).unwrap();
        let err = arg
            .amqp_url
            .as_ref()
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("s3cret") && !format!("{arg:?}").contains("s3cret"),
            "{err}"
        );
    }
}
