//! The sidecar's own broker connections, one per source, so a peek error can never disturb the
//! stats source. The URL is the project's one AMQP URL type ([`dwell_amqp::AmqpUrl`]: parsed once,
//! IP-literal hosts kept, the password never shown in `Display`, `Debug` or any error).

pub use dwell_amqp::url::{AmqpUrl, AmqpUrlError, redact};
use dwell_amqp::{ConnectError, Connector};

/// Connects to `url`, naming the connection so operators can tell it apart in the management UI
/// (with dwell-amqp's connect timeout; the error names the URL redacted and masks the password).
pub async fn connect(url: &AmqpUrl, name: &str) -> Result<lapin::Connection, ConnectError> {
    Connector::new(url.clone()).connect(name).await
}
