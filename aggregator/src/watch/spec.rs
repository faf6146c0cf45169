//! What the rules file asks the watch to do (its `brokers:` and `watch:` sections), validated by
//! `crate::config` and compared on reload to start and stop only what changed.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use dwell_amqp::{AmqpUrl, ManagementUrl};

use crate::window::SourceKey;
use crate::window::watched::watch_pod;

/// Every broker and watched queue of one rules file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchSet {
    /// Named broker connections.
    pub brokers: BTreeMap<String, BrokerSpec>,
    /// The queues watched, in file order.
    pub entries: Vec<WatchEntry>,
}

/// Where the broker URL comes from: never the rules file itself (it holds a password).
#[derive(Debug, Clone, PartialEq)]
pub enum UrlSource {
    /// A file (a mounted Secret), re-read at every connection attempt.
    File(PathBuf),
    /// An environment variable (read at load).
    Env(String),
}

/// One named broker.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerSpec {
    /// Where the URL came from.
    pub source: UrlSource,
    /// The URL as read at load (password redacted when shown).
    pub url: AmqpUrl,
    /// Extra CA certificates trusted for `amqps://`.
    pub ca_file: Option<PathBuf>,
    /// The management API, for the head message's timestamp and the queue type.
    pub management: Option<ManagementSpec>,
}

/// A broker's management API.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagementSpec {
    /// `http[s]://host:port` (no credentials: the AMQP URL's are used).
    pub url: ManagementUrl,
    /// Extra CA certificates trusted for `https://`.
    pub ca_file: Option<PathBuf>,
}

/// One watched queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchEntry {
    /// The broker's name.
    pub broker: String,
    /// The vhost (default: the broker URL's).
    pub vhost: String,
    /// The queue.
    pub queue: String,
    /// The namespace whose HPAs read it.
    pub namespace: String,
    /// Labels matched by rules and selectors, like a sidecar's pod labels.
    pub labels: BTreeMap<String, String>,
    /// Time between passive declares.
    pub interval: Duration,
}

impl WatchEntry {
    /// The window source this entry feeds.
    pub fn key(&self) -> SourceKey {
        SourceKey {
            namespace: self.namespace.clone(),
            pod: watch_pod(&self.broker),
            queue: self.queue.clone(),
            vhost: self.vhost.clone(),
        }
    }
}
