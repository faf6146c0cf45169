//! The [`Watcher`]: starts the watch's tasks for a [`WatchSet`] and, on every reload, stops
//! only what changed or went away and starts what is new. A link (broker + vhost) lives while
//! some entry uses it and its broker's spec is unchanged; an entry is restarted when anything
//! of it changes. A queue no longer watched leaves the window at once.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dwell_amqp::{LinkHandle, Management};
use dwell_runtime::clock::SharedClock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::entry::EntryTask;
use super::metrics::{QueueLabels, WatchMetrics};
use super::spec::{BrokerSpec, WatchEntry, WatchSet};
use crate::window::WindowStore;

/// How long one management API read may take.
const MANAGEMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// One connection: a broker on a vhost.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LinkKey {
    broker: String,
    vhost: String,
}

struct RunningLink {
    spec: BrokerSpec,
    handle: LinkHandle,
    management: Option<Management>,
    token: CancellationToken,
}

#[derive(Default)]
struct Running {
    links: HashMap<LinkKey, RunningLink>,
    entries: HashMap<WatchEntry, CancellationToken>,
}

/// Runs the queue watch of the rules in force.
pub struct Watcher {
    store: Arc<WindowStore>,
    clock: SharedClock,
    metrics: WatchMetrics,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    running: Mutex<Running>,
}

impl Watcher {
    /// A watcher writing into `store`, spawning on `tracker`, stopping with `shutdown`.
    pub fn new(
        store: Arc<WindowStore>,
        clock: SharedClock,
        metrics: WatchMetrics,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            clock,
            metrics,
            tracker,
            shutdown,
            running: Mutex::new(Running::default()),
        }
    }

    /// Puts `set` in force: stops what it no longer asks for, starts what is new.
    pub fn apply(&self, set: &WatchSet) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        let wanted_links: HashSet<LinkKey> = set
            .entries
            .iter()
            .map(|e| LinkKey {
                broker: e.broker.clone(),
                vhost: e.vhost.clone(),
            })
            .collect();
        // Links no longer used, or whose broker changed.
        let stale_links: Vec<LinkKey> = running
            .links
            .iter()
            .filter(|(k, l)| {
                !wanted_links.contains(k) || set.brokers.get(&k.broker) != Some(&l.spec)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &stale_links {
            if let Some(link) = running.links.remove(key) {
                link.token.cancel();
            }
        }
        // Entries no longer wanted, or on a link that was just stopped.
        let wanted: HashSet<&WatchEntry> = set.entries.iter().collect();
        let keys_wanted: HashSet<_> = set.entries.iter().map(WatchEntry::key).collect();
        let stale_entries: Vec<WatchEntry> = running
            .entries
            .keys()
            .filter(|e| {
                !wanted.contains(e)
                    || !running.links.contains_key(&LinkKey {
                        broker: e.broker.clone(),
                        vhost: e.vhost.clone(),
                    })
            })
            .cloned()
            .collect();
        for entry in &stale_entries {
            if let Some(token) = running.entries.remove(entry) {
                token.cancel();
            }
            let key = entry.key();
            if !keys_wanted.contains(&key) {
                self.store.remove(&key);
            }
            self.metrics.queue_up.remove(&QueueLabels {
                broker: entry.broker.clone(),
                vhost: entry.vhost.clone(),
                queue: entry.queue.clone(),
                namespace: entry.namespace.clone(),
            });
        }
        let (mut started, stopped) = (0, stale_entries.len());
        for entry in &set.entries {
            if running.entries.contains_key(entry) {
                continue;
            }
            let Some(spec) = set.brokers.get(&entry.broker) else {
                continue; // validation names every entry's broker
            };
            let link_key = LinkKey {
                broker: entry.broker.clone(),
                vhost: entry.vhost.clone(),
            };
            let link = running
                .links
                .entry(link_key)
                .or_insert_with(|| self.start_link(&entry.broker, spec, &entry.vhost));
            let token = link.token.child_token();
            let task = EntryTask {
                entry: entry.clone(),
                link: link.handle.clone(),
                management: link.management.clone(),
                store: self.store.clone(),
                clock: self.clock.clone(),
                metrics: self.metrics.clone(),
            };
            self.tracker.spawn(task.run(token.clone()));
            running.entries.insert(entry.clone(), token);
            started += 1;
        }
        self.metrics.queues.set(running.entries.len() as i64);
        if started + stopped > 0 {
            tracing::info!(
                started,
                stopped,
                watched = running.entries.len(),
                connections = running.links.len(),
                "queue watch updated"
            );
        }
    }

    fn start_link(&self, name: &str, spec: &BrokerSpec, vhost: &str) -> RunningLink {
        let token = self.shutdown.child_token();
        let handle = super::link::start(
            name,
            spec,
            vhost,
            &self.metrics,
            &self.tracker,
            token.clone(),
        );
        let management = spec.management.as_ref().and_then(|m| {
            Management::new(
                m.url.clone(),
                &spec.url,
                m.ca_file.as_deref(),
                MANAGEMENT_TIMEOUT,
            )
            .map_err(|error| {
                tracing::error!(broker = %name, %error,
                    "management API unusable; watching without head timestamps")
            })
            .ok()
        });
        RunningLink {
            spec: spec.clone(),
            handle,
            management,
            token,
        }
    }
}
