//! The RabbitMQ broker the end-to-end tests run against: its URL (`DWELL_TEST_AMQP_URL`), whether
//! it answers (a test fails when `DWELL_REQUIRE_SERVICES=1`, else skips loudly), unique queue
//! names, and queue housekeeping. The password in the URL is never printed.

use std::time::Duration;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};

/// The default broker URL (the test script's local RabbitMQ).
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker URL for tests.
pub fn url() -> String {
    std::env::var("DWELL_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The URL with any password replaced by `***`, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Connects to `url`, giving up after `deadline`.
pub async fn connect(url: &str, deadline: Duration) -> Result<Connection, String> {
    match tokio::time::timeout(
        deadline,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("cannot connect to {}: {e}", redacted(url))),
        Err(_) => Err(format!(
            "no answer from {} within {deadline:?}",
            redacted(url)
        )),
    }
}

/// The broker URL when one answers. When none does: panics if `DWELL_REQUIRE_SERVICES=1`,
/// otherwise prints a loud skip notice and returns `None`.
pub async fn require(test: &str) -> Option<String> {
    let url = url();
    match connect(&url, Duration::from_secs(5)).await {
        Ok(conn) => {
            let _ = conn.close(200, "probe".into()).await;
            Some(url)
        }
        Err(e) if std::env::var("DWELL_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{test}: RabbitMQ is required (DWELL_REQUIRE_SERVICES=1) but {e}")
        }
        Err(e) => {
            eprintln!(
                "\n########## SKIPPED {test}: {e}. Run scripts/test.sh (it starts RabbitMQ) or set DWELL_TEST_AMQP_URL. ##########\n"
            );
            None
        }
    }
}

/// A queue name no other test run uses.
pub fn unique_queue(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("dwell-e2e.{prefix}.{}.{nanos:x}", std::process::id())
}

/// Declares `queue` as a durable classic queue (it survives a broker restart).
pub async fn declare(channel: &Channel, queue: &str) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map(|_| ())
}

/// `messages_ready` and `consumer_count` by passive declare (what the sidecar's stats source reads).
pub async fn queue_depth(channel: &Channel, queue: &str) -> Result<(u32, u32), lapin::Error> {
    let q = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((q.message_count(), q.consumer_count()))
}

/// Deletes `queue` (best effort; used when a test ends).
pub async fn delete(url: &str, queue: &str) {
    if let Ok(conn) = connect(url, Duration::from_secs(5)).await {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = conn.close(200, "done".into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redacted("amqp://host/%2f"), "amqp://host/%2f");
    }
}
