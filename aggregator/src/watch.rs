//! The queue watch: the aggregator's own passive `queue.declare` polls of the queues the rules
//! file lists, so a deployment at zero replicas (no consumer, no sidecar, no report) still has
//! a value, and an HPA with `minReplicas: 0` wakes it. One connection per named broker and vhost
//! (AMQP binds a connection to one vhost: [`link`]), one channel per watched queue, each polled
//! every `interval` ([`entry`]) into the window store as a source with queue state and no ages
//! ([`crate::window::watched`]); what that means for a value is [`crate::engine::watched`]'s.
//! [`Watcher`] starts the tasks and applies reloads; [`metrics`] is its `/metrics` part.
//!
//! Every aggregator replica watches on its own (no leader): the cost per watched queue is one
//! channel and one passive declare per interval per replica (BENCHMARKS.md, "Queue watch").
pub mod entry;
pub mod link;
pub mod metrics;
pub mod spec;
pub mod supervisor;

pub use metrics::WatchMetrics;
pub use spec::{BrokerSpec, ManagementSpec, UrlSource, WatchEntry, WatchSet};
pub use supervisor::Watcher;
