//! The `dwell.io/…` annotations of a pod template: what they mean, their defaults, and the checks
//! that refuse a bad value with a message naming the annotation (never echoing a value that could
//! hold a secret). Only the pod template's own annotations count, never the workload's: a pod the
//! webhook sees carries exactly its template's, so `inject` and the webhook decide alike.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `dwell.io/inject` | – | `enabled`: inject (the `inject` command without `--all`; the webhook for pods outside opted-in namespaces); `disabled`: never |
//! | `dwell.io/queue` | – | the sidecar's `DWELL_QUEUE`; required unless the tap is on |
//! | `dwell.io/aggregator` | the injector's (`http://dwell-aggregator-grpc.custom-metrics.svc:50051`) | `DWELL_AGGREGATOR` |
//! | `dwell.io/interval` | the sidecar's (`1s`) | `DWELL_INTERVAL`, in the one duration grammar |
//! | `dwell.io/image` | the injector's (`ghcr.io/dwell-autoscaler/dwell-sidecar:0.1.0`) | the sidecar image |
//! | `dwell.io/amqp-url-env` | – | the app's env var holding its broker URL: turns the tap on and points the app at it |
//! | `dwell.io/tap-upstream` | from a literal URL | the broker, `amqp[s]://host[:port]`; required when the URL comes from a Secret or ConfigMap |
//! | `dwell.io/tap-url-key` | – | with a Secret/ConfigMap URL: the key, in that same object, holding the app's URL on `127.0.0.1:5672` |
//! | `dwell.io/stats-url-secret` | – | `secret/key` of a monitoring user's URL: `DWELL_AMQP_URL` (stats source), `optional: true` |

use super::InjectError;
use super::node::Node;

/// The prefix every dwell annotation carries; an unknown key under it is refused (a typo would
/// otherwise be silently ignored).
pub const PREFIX: &str = "dwell.io/";
/// `enabled` / `disabled`.
pub const INJECT: &str = "dwell.io/inject";
/// The sidecar's queue.
pub const QUEUE: &str = "dwell.io/queue";
/// The aggregator's gRPC URL.
pub const AGGREGATOR: &str = "dwell.io/aggregator";
/// The report interval.
pub const INTERVAL: &str = "dwell.io/interval";
/// The sidecar image.
pub const IMAGE: &str = "dwell.io/image";
/// The app's AMQP URL variable (turns the tap on).
pub const AMQP_URL_ENV: &str = "dwell.io/amqp-url-env";
/// The tap's upstream broker.
pub const TAP_UPSTREAM: &str = "dwell.io/tap-upstream";
/// The Secret/ConfigMap key holding the app's URL on the tap.
pub const TAP_URL_KEY: &str = "dwell.io/tap-url-key";
/// `secret/key` of the stats source's URL.
pub const STATS_URL_SECRET: &str = "dwell.io/stats-url-secret";

const KNOWN: [&str; 9] = [
    INJECT,
    QUEUE,
    AGGREGATOR,
    INTERVAL,
    IMAGE,
    AMQP_URL_ENV,
    TAP_UPSTREAM,
    TAP_URL_KEY,
    STATS_URL_SECRET,
];

/// What `dwell.io/inject` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt {
    /// `enabled`.
    In,
    /// `disabled`.
    Out,
    /// Not set.
    Unset,
}

/// A Secret key reference (`name/key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKey {
    /// The Secret's name.
    pub name: String,
    /// The key in it.
    pub key: String,
}

/// Every dwell setting of one pod template, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodAnnotations {
    /// `dwell.io/queue`.
    pub queue: Option<String>,
    /// `dwell.io/aggregator`.
    pub aggregator: Option<String>,
    /// `dwell.io/interval`, as written (checked against the duration grammar).
    pub interval: Option<String>,
    /// `dwell.io/image`.
    pub image: Option<String>,
    /// `dwell.io/amqp-url-env`.
    pub amqp_url_env: Option<String>,
    /// `dwell.io/tap-upstream`.
    pub tap_upstream: Option<String>,
    /// `dwell.io/tap-url-key`.
    pub tap_url_key: Option<String>,
    /// `dwell.io/stats-url-secret`.
    pub stats_url_secret: Option<SecretKey>,
}

fn bad(annotation: &str, reason: impl Into<String>) -> InjectError {
    InjectError::Annotation {
        annotation: annotation.to_owned(),
        reason: reason.into(),
    }
}

/// The annotations map of a pod template's `metadata` (absent: none).
fn annotations(metadata: Option<&Node>) -> Result<Vec<(&str, &str)>, InjectError> {
    let Some(node) = metadata.and_then(|m| m.get("annotations")) else {
        return Ok(Vec::new());
    };
    if *node == Node::Null {
        return Ok(Vec::new());
    }
    let map = node.as_map().ok_or_else(|| InjectError::Shape {
        field: "metadata.annotations".into(),
        reason: "is not a mapping".into(),
    })?;
    let mut out = Vec::new();
    for (key, value) in map.iter() {
        if !key.starts_with(PREFIX) {
            continue;
        }
        let value = value
            .as_str()
            .ok_or_else(|| bad(key, "must be a string (quote it)"))?;
        out.push((key, value));
    }
    Ok(out)
}

/// What `dwell.io/inject` on the template says (any other value is an error).
pub fn opt(metadata: Option<&Node>) -> Result<Opt, InjectError> {
    match annotations(metadata)?.iter().find(|(k, _)| *k == INJECT) {
        None => Ok(Opt::Unset),
        Some((_, "enabled")) => Ok(Opt::In),
        Some((_, "disabled")) => Ok(Opt::Out),
        Some(_) => Err(bad(INJECT, "must be \"enabled\" or \"disabled\"")),
    }
}

/// Reads and checks every `dwell.io/` annotation of the template.
pub fn parse(metadata: Option<&Node>) -> Result<PodAnnotations, InjectError> {
    let mut out = PodAnnotations::default();
    for (key, value) in annotations(metadata)? {
        let value = value.trim();
        match key {
            INJECT => {}
            QUEUE => out.queue = Some(queue(value)?),
            AGGREGATOR => out.aggregator = Some(aggregator(value)?),
            INTERVAL => out.interval = Some(interval(value)?),
            IMAGE => out.image = Some(image(value)?),
            AMQP_URL_ENV => out.amqp_url_env = Some(env_name(value)?),
            TAP_UPSTREAM => out.tap_upstream = Some(tap_upstream(value)?),
            TAP_URL_KEY => out.tap_url_key = Some(object_key(TAP_URL_KEY, value)?),
            STATS_URL_SECRET => out.stats_url_secret = Some(secret_key(value)?),
            unknown => {
                return Err(bad(
                    unknown,
                    format!("unknown dwell annotation; known: {}", KNOWN.join(", ")),
                ));
            }
        }
    }
    Ok(out)
}

/// Queue names as ingest takes them: 1–255 bytes.
fn queue(value: &str) -> Result<String, InjectError> {
    if value.is_empty() || value.len() > 255 {
        return Err(bad(QUEUE, "must be 1 to 255 bytes"));
    }
    Ok(value.to_owned())
}

fn aggregator(value: &str) -> Result<String, InjectError> {
    aggregator_url(value).map_err(|reason| bad(AGGREGATOR, reason))
}

/// Checks an aggregator URL (the annotation's and the injector's `--inject-aggregator`).
pub fn aggregator_url(value: &str) -> Result<String, &'static str> {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .unwrap_or("");
    if rest.is_empty() || rest.contains(['@', ' ', '/']) {
        return Err("must be http://host:port or https://host:port");
    }
    Ok(value.to_owned())
}

fn interval(value: &str) -> Result<String, InjectError> {
    dwell_runtime::duration::parse(value).map_err(|e| bad(INTERVAL, e.to_string()))?;
    Ok(value.to_owned())
}

fn image(value: &str) -> Result<String, InjectError> {
    image_ref(value).map_err(|reason| bad(IMAGE, reason))
}

/// Checks an image reference (the annotation's and the injector's `--inject-image`).
pub fn image_ref(value: &str) -> Result<String, &'static str> {
    if value.is_empty() || value.len() > 1024 || value.contains(char::is_whitespace) {
        return Err("must be an image reference without spaces");
    }
    Ok(value.to_owned())
}

/// An env var name as the kubelet takes it: printable, no `=`.
fn env_name(value: &str) -> Result<String, InjectError> {
    let ok = !value.is_empty()
        && value.len() <= 256
        && value.chars().all(|c| c.is_ascii_graphic() && c != '=');
    if !ok {
        return Err(bad(AMQP_URL_ENV, "must be an environment variable name"));
    }
    Ok(value.to_owned())
}

/// `amqp://host[:port]` or `amqps://host[:port]`, as the sidecar's `--tap-upstream` takes it.
fn tap_upstream(value: &str) -> Result<String, InjectError> {
    let rest = value
        .strip_prefix("amqp://")
        .or_else(|| value.strip_prefix("amqps://"))
        .ok_or_else(|| {
            bad(
                TAP_UPSTREAM,
                "must be amqp://host[:port] or amqps://host[:port]",
            )
        })?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['@', '/', '?', '#', ' ']) {
        return Err(bad(
            TAP_UPSTREAM,
            "must be amqp://host[:port] or amqps://host[:port] (no user, password or vhost: they stay the app's)",
        ));
    }
    Ok(value.to_owned())
}

/// A Secret or ConfigMap key: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn object_key(annotation: &str, value: &str) -> Result<String, InjectError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !ok {
        return Err(bad(
            annotation,
            "must be a Secret/ConfigMap key ([-._a-zA-Z0-9]+)",
        ));
    }
    Ok(value.to_owned())
}

/// `name/key`: a Secret name (DNS subdomain) and a key in it.
fn secret_key(value: &str) -> Result<SecretKey, InjectError> {
    let (name, key) = value
        .split_once('/')
        .ok_or_else(|| bad(STATS_URL_SECRET, "must be <secret-name>/<key>"))?;
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'));
    if !name_ok {
        return Err(bad(
            STATS_URL_SECRET,
            "the Secret name must be a DNS subdomain",
        ));
    }
    Ok(SecretKey {
        name: name.to_owned(),
        key: object_key(STATS_URL_SECRET, key)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::node::from_yaml;

    fn meta(yaml: &str) -> Node {
        from_yaml(yaml).unwrap()
    }

    #[test]
    fn defaults_are_none_and_values_are_read() {
        assert_eq!(parse(None).unwrap(), PodAnnotations::default());
        let m = meta(
            "annotations:\n  dwell.io/queue: jobs\n  dwell.io/interval: 500ms\n  \
             dwell.io/stats-url-secret: amqp/monitor-url\n  other.io/x: y\n",
        );
        let a = parse(Some(&m)).unwrap();
        assert_eq!(a.queue.as_deref(), Some("jobs"));
        assert_eq!(a.interval.as_deref(), Some("500ms"));
        assert_eq!(
            a.stats_url_secret,
            Some(SecretKey {
                name: "amqp".into(),
                key: "monitor-url".into()
            })
        );
        assert_eq!(opt(Some(&m)).unwrap(), Opt::Unset);
    }

    #[test]
    fn every_refusal_names_its_annotation() {
        for (yaml, annotation) in [
            ("dwell.io/inject: yes-please", INJECT),
            ("dwell.io/queue: \"\"", QUEUE),
            ("dwell.io/aggregator: dwell:50051", AGGREGATOR),
            ("dwell.io/interval: 1x", INTERVAL),
            ("dwell.io/interval: 0s", INTERVAL),
            ("dwell.io/image: \"a b\"", IMAGE),
            ("dwell.io/amqp-url-env: \"A=B\"", AMQP_URL_ENV),
            (
                "dwell.io/tap-upstream: amqp://u:secret@rabbit:5672",
                TAP_UPSTREAM,
            ),
            ("dwell.io/tap-upstream: amqp://rabbit/vhost", TAP_UPSTREAM),
            ("dwell.io/tap-url-key: \"a/b\"", TAP_URL_KEY),
            ("dwell.io/stats-url-secret: nokey", STATS_URL_SECRET),
            ("dwell.io/stats-url-secret: Bad_Name/k", STATS_URL_SECRET),
            ("dwell.io/queu: jobs", "dwell.io/queu"),
            ("dwell.io/queue: 5", QUEUE),
        ] {
            let m = meta(&format!("annotations:\n  {yaml}\n"));
            let err = opt(Some(&m)).and_then(|_| parse(Some(&m)).map(|_| ()));
            let err = err.expect_err(yaml).to_string();
            assert!(err.starts_with(&format!("{annotation}: ")), "{yaml}: {err}");
            assert!(!err.contains("secret@"), "a value leaked: {err}");
        }
    }

    #[test]
    fn opt_reads_enabled_and_disabled() {
        let on = meta("annotations: {dwell.io/inject: enabled}");
        let off = meta("annotations: {dwell.io/inject: disabled}");
        assert_eq!(opt(Some(&on)).unwrap(), Opt::In);
        assert_eq!(opt(Some(&off)).unwrap(), Opt::Out);
        assert!(opt(Some(&meta("annotations: [a]"))).is_err());
    }
}
