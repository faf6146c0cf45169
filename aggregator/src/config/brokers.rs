//! The rules file's `brokers:` and `watch:` sections: named broker connections (the URL from a
//! file or an environment variable, never inline: it holds a password) and the queues the
//! aggregator watches itself. Every problem is reported with its path
//! (`brokers.main.url_file: cannot read …`, `watch[2].broker: no broker named "x"`); a URL is
//! only ever shown redacted.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use dwell_amqp::{AmqpUrl, ManagementUrl};
use dwell_runtime::duration;
use serde::Deserialize;

use crate::watch::{BrokerSpec, ManagementSpec, UrlSource, WatchEntry, WatchSet};

/// Most watched queues in one file.
pub const MAX_WATCH_ENTRIES: usize = 10_000;

/// Most watched queues on one broker and vhost: one channel each on one connection, and
/// RabbitMQ's default `channel_max` is 2047.
pub const MAX_ENTRIES_PER_CONNECTION: usize = 2_000;

/// Shortest poll interval (bounds the broker load one entry can cause).
const MIN_INTERVAL_MS: i64 = 500;

/// Default poll interval.
const DEFAULT_INTERVAL_MS: i64 = 2_000;

/// Most labels on one entry.
const MAX_LABELS: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBroker {
    url: Option<serde::de::IgnoredAny>,
    url_file: Option<String>,
    url_env: Option<String>,
    ca_file: Option<String>,
    management_url: Option<String>,
    management_ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatch {
    broker: String,
    vhost: Option<String>,
    queue: String,
    namespace: String,
    labels: Option<BTreeMap<String, String>>,
    interval: Option<String>,
}

/// Validates both sections; problems go to `errors` as `path: reason`.
pub(super) fn watch_set(
    brokers: Option<BTreeMap<String, RawBroker>>,
    watch: Option<Vec<RawWatch>>,
    stale_after_ms: i64,
    errors: &mut Vec<String>,
) -> WatchSet {
    let mut set = WatchSet::default();
    for (name, raw) in brokers.unwrap_or_default() {
        if let Some(spec) = broker(&name, raw, errors) {
            set.brokers.insert(name, spec);
        }
    }
    let raws = watch.unwrap_or_default();
    if raws.len() > MAX_WATCH_ENTRIES {
        errors.push(format!(
            "watch: {} entries, at most {MAX_WATCH_ENTRIES}",
            raws.len()
        ));
        return set;
    }
    let mut seen = HashMap::new();
    let mut per_connection: HashMap<(String, String), usize> = HashMap::new();
    for (i, raw) in raws.into_iter().enumerate() {
        let at = format!("watch[{i}]");
        let Some(entry) = entry(&at, raw, &set, stale_after_ms, errors) else {
            continue;
        };
        if let Some(first) = seen.insert(entry.key(), i) {
            errors.push(format!(
                "{at}: the same queue as watch[{first}] (namespace, broker, vhost and queue)"
            ));
            continue;
        }
        let n = per_connection
            .entry((entry.broker.clone(), entry.vhost.clone()))
            .or_default();
        *n += 1;
        if *n == MAX_ENTRIES_PER_CONNECTION + 1 {
            errors.push(format!(
                "{at}: more than {MAX_ENTRIES_PER_CONNECTION} queues on broker {} vhost {:?} \
                 (one channel each on one connection)",
                entry.broker, entry.vhost
            ));
        }
        set.entries.push(entry);
    }
    set
}

fn broker(name: &str, raw: RawBroker, errors: &mut Vec<String>) -> Option<BrokerSpec> {
    let at = format!("brokers.{name}");
    let before = errors.len();
    let mut fail = |field: &str, reason: String| {
        let path = if field.is_empty() {
            at.clone()
        } else {
            format!("{at}.{field}")
        };
        errors.push(format!("{path}: {reason}"));
    };
    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid_name {
        fail(
            "",
            format!("{name:?} is not a broker name (1-63 of A-Z a-z 0-9 _ - .)"),
        );
    }
    if raw.url.is_some() {
        fail(
            "url",
            "a broker URL holds a password: keep it in a Secret and name the file (url_file) \
             or the environment variable (url_env)"
                .into(),
        );
    }
    let (source, text) = match (raw.url_file, raw.url_env) {
        (Some(file), None) => {
            let path = PathBuf::from(&file);
            match dwell_amqp::connect::read_url_file(&path) {
                Ok(text) => (Some(UrlSource::File(path)), Some(("url_file", text))),
                Err(e) => {
                    fail("url_file", e);
                    (None, None)
                }
            }
        }
        (None, Some(var)) => match std::env::var(&var) {
            Ok(text) => (Some(UrlSource::Env(var)), Some(("url_env", text))),
            Err(e) => {
                fail("url_env", format!("{var}: {e}"));
                (None, None)
            }
        },
        (Some(_), Some(_)) => {
            fail("", "set url_file or url_env, not both".into());
            (None, None)
        }
        (None, None) => {
            fail("", "needs url_file (a mounted Secret) or url_env".into());
            (None, None)
        }
    };
    let url = text.and_then(|(field, text)| match AmqpUrl::parse(&text) {
        Ok(url) => Some(url),
        Err(e) => {
            fail(field, e.to_string());
            None
        }
    });
    let ca_file = raw.ca_file.map(PathBuf::from);
    if let (Some(ca), Some(url)) = (&ca_file, &url) {
        if !url.is_tls() {
            fail(
                "ca_file",
                format!("{url} is plaintext (amqp://): a CA file needs amqps://"),
            );
        }
        if let Err(e) = check_pem(ca) {
            fail("ca_file", e);
        }
    }
    let management = match raw.management_url {
        None => {
            if raw.management_ca_file.is_some() {
                fail("management_ca_file", "needs management_url".into());
            }
            None
        }
        Some(text) => match ManagementUrl::parse(&text) {
            Ok(url) => {
                let ca_file = raw.management_ca_file.map(PathBuf::from);
                if let Some(ca) = &ca_file
                    && let Err(e) = check_pem(ca)
                {
                    fail("management_ca_file", e);
                }
                Some(ManagementSpec { url, ca_file })
            }
            Err(e) => {
                fail("management_url", e.to_string());
                None
            }
        },
    };
    if errors.len() > before {
        return None;
    }
    Some(BrokerSpec {
        source: source?,
        url: url?,
        ca_file,
        management,
    })
}

/// A CA file must be readable and hold a PEM certificate.
fn check_pem(path: &std::path::Path) -> Result<(), String> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => Ok(()),
        Ok(_) => Err(format!("{} holds no PEM certificate", path.display())),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn entry(
    at: &str,
    raw: RawWatch,
    set: &WatchSet,
    stale_after_ms: i64,
    errors: &mut Vec<String>,
) -> Option<WatchEntry> {
    let before = errors.len();
    let mut fail = |field: &str, reason: String| errors.push(format!("{at}.{field}: {reason}"));
    let broker = set.brokers.get(&raw.broker);
    if broker.is_none() {
        let known: Vec<&str> = set.brokers.keys().map(String::as_str).collect();
        fail(
            "broker",
            format!(
                "no broker named {:?} (brokers: {})",
                raw.broker,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        );
    }
    if raw.queue.is_empty() || raw.queue.len() > 255 {
        fail(
            "queue",
            format!("{:?} is not a queue name (1-255 bytes)", raw.queue),
        );
    }
    if !is_dns_label(&raw.namespace) {
        fail(
            "namespace",
            format!("{:?} is not a Kubernetes namespace name", raw.namespace),
        );
    }
    let labels = raw.labels.unwrap_or_default();
    if labels.len() > MAX_LABELS {
        fail(
            "labels",
            format!("{} labels, at most {MAX_LABELS}", labels.len()),
        );
    }
    for key in labels.keys() {
        if key.is_empty() || key.len() > 317 {
            fail("labels", format!("{key:?} is not a label name"));
        } else if key == "queue" || key == "vhost" {
            fail(
                "labels",
                format!("{key:?} is set from the entry itself (every series has queue and vhost)"),
            );
        }
    }
    let interval_ms = match raw.interval.as_deref() {
        None => DEFAULT_INTERVAL_MS,
        Some(text) => match duration::parse_ms(text) {
            Ok(ms) if ms < MIN_INTERVAL_MS => {
                fail("interval", format!("{text:?} is shorter than 500ms"));
                DEFAULT_INTERVAL_MS
            }
            Ok(ms) if ms * 2 > stale_after_ms => {
                fail(
                    "interval",
                    format!(
                        "{text:?} is more than half of stale_after ({}s): the watched state \
                         would go stale between polls",
                        stale_after_ms as f64 / 1000.0
                    ),
                );
                DEFAULT_INTERVAL_MS
            }
            Ok(ms) => ms,
            Err(e) => {
                fail("interval", e.to_string());
                DEFAULT_INTERVAL_MS
            }
        },
    };
    let vhost = match (raw.vhost, broker) {
        (Some(v), _) if !v.is_empty() => v,
        (_, Some(b)) => b.url.vhost().to_string(),
        (_, None) => "/".to_string(),
    };
    (errors.len() == before).then(|| WatchEntry {
        broker: raw.broker,
        vhost,
        queue: raw.queue,
        namespace: raw.namespace,
        labels,
        interval: Duration::from_millis(interval_ms as u64),
    })
}

/// A Kubernetes namespace name (RFC 1123 label).
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests;
