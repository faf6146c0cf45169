//! The queue watch: the aggregator's own passive `queue.declare` polls of the queues the rules
//! file lists, so a deployment at zero replicas (no consumer, no sidecar, no report) still has
//! a value, and an HPA with `minReplicas: 0` wakes it. One connection per named broker and vhost
//! (AMQP binds a connection to one vhost), one channel per watched queue; every entry polled
//! every `interval` into the window store as a source with queue state and no ages
//! ([`crate::window::watched`]); the semantics are [`crate::engine::watched`]'s.
//!
//! Every aggregator replica watches on its own (no leader): the cost per watched queue is one
//! channel and one passive declare per interval per replica (BENCHMARKS.md, "Queue watch").
pub mod spec;

pub use spec::{BrokerSpec, ManagementSpec, UrlSource, WatchEntry, WatchSet};
