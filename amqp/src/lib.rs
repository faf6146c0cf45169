//! dwell's RabbitMQ client side, shared by the aggregator's queue watch and (later) the sidecar's
//! stats source: the AMQP URL whose password never reaches a log line, an error or Explain
//! ([`url`]); one connection, TLS for `amqps://` with an optional CA ([`connect`]); a link that
//! keeps one connection up with jittered-backoff reconnects ([`link`]); passive `queue.declare`
//! ([`declare`]) polled per queue on its own channel ([`poll`]); and the management API's
//! per-queue fields a passive declare cannot give ([`management`]).
//!
//! Nothing here publishes, consumes, acks or declares anything: the broker's state is only read.

pub mod connect;
pub mod declare;
pub mod link;
pub mod management;
pub mod poll;
pub mod url;

pub use connect::{ConnectError, ConnectFailure, Connector};
pub use declare::{DeclareError, QueueDepth};
pub use link::{Link, LinkEvent, LinkHandle, LinkState};
pub use management::{Management, ManagementError, ManagementUrl, QueueInfo};
pub use poll::{PollError, QueuePoller};
pub use url::{AmqpUrl, AmqpUrlError};
