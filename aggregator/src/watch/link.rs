//! One broker connection of the watch (per broker and vhost): a [`dwell_amqp::Link`] whose
//! events become log lines (each distinct failure once, so a broker down for an hour is one
//! line, not thousands) and `/metrics` counters. Wrong credentials are an error line naming the
//! broker and its URL source, and a `reason="auth"` count; the link keeps retrying with backoff
//! and the process never exits over it.
use std::time::Duration;

use dwell_amqp::{ConnectFailure, Connector, Link, LinkEvent, LinkHandle};
use dwell_runtime::backoff::Backoff;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::metrics::{BrokerLabel, OutcomeLabels, WatchMetrics};
use super::spec::{BrokerSpec, UrlSource};

/// First and largest pause between connection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// Starts the connection task of `broker` on `vhost` and returns the handle its pollers use.
pub fn start(
    name: &str,
    spec: &BrokerSpec,
    vhost: &str,
    metrics: &WatchMetrics,
    tracker: &TaskTracker,
    token: CancellationToken,
) -> LinkHandle {
    let url = spec.url.with_vhost(vhost);
    if !url.is_tls() {
        tracing::warn!(broker = %name, amqp = %url,
            "the watch's broker connection is PLAINTEXT (amqp://): credentials cross the network \
             in the clear; use amqps://");
    }
    let connector = Connector {
        url: url.clone(),
        ca_file: spec.ca_file.clone(),
        url_file: match &spec.source {
            UrlSource::File(path) => Some(path.clone()),
            UrlSource::Env(_) => None,
        },
    };
    let source = match &spec.source {
        UrlSource::File(path) => format!("url_file {}", path.display()),
        UrlSource::Env(var) => format!("url_env {var}"),
    };
    let (link, handle) = Link::new(
        connector,
        format!("dwell-aggregator watch {name}"),
        Backoff::new(BACKOFF.0, BACKOFF.1),
    );
    let (broker, metrics) = (name.to_owned(), metrics.clone());
    let connected = metrics
        .connected
        .get_or_create(&BrokerLabel {
            broker: broker.clone(),
        })
        .clone();
    let mut up = false;
    let mut last_failure: Option<String> = None;
    tracker.spawn(async move {
        link.run(token, |event| match event {
            LinkEvent::Connected(generation) => {
                tracing::info!(broker = %broker, amqp = %url, generation, "watch connected");
                last_failure = None;
                up = true;
                connected.inc();
            }
            LinkEvent::Lost(why) => {
                tracing::warn!(broker = %broker, amqp = %url, %why,
                    "watch connection lost; reconnecting");
                if std::mem::take(&mut up) {
                    connected.dec();
                }
            }
            LinkEvent::ConnectFailed { error, retry_in } => {
                metrics
                    .connect_failures
                    .get_or_create(&OutcomeLabels {
                        broker: broker.clone(),
                        result: error.failure.as_str(),
                    })
                    .inc();
                let text = error.to_string();
                if last_failure.as_ref() == Some(&text) {
                    return;
                }
                last_failure = Some(text);
                let retry_in = format!("{:.1}s", retry_in.as_secs_f64());
                match error.failure {
                    ConnectFailure::Auth => tracing::error!(broker = %broker, %error, %retry_in,
                        "the broker REFUSED the watch's credentials (check the user, its password \
                         and its vhost access in the Secret behind {source}); retrying with backoff"),
                    reason => tracing::warn!(broker = %broker, %error, reason = reason.as_str(),
                        %retry_in, "watch cannot connect to the broker; retrying with backoff"),
                }
            }
        })
        .await;
        if up {
            connected.dec();
        }
    });
    handle
}
