//! dwell-amqp against the real broker (`DWELL_TEST_AMQP_URL`, default the local RabbitMQ):
//! passive declares on one connection where a missing queue disturbs no neighbour, wrong
//! credentials classified and redacted, `amqps://` through a TLS-terminating proxy trusting a
//! test CA (and refused without it), an IP host honoured, and a link that reconnects after the
//! broker goes away (a proxy cut: the shared broker itself is never stopped).
#[path = "support/proxy.rs"]
mod proxy;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dwell_amqp::{
    AmqpUrl, ConnectFailure, Connector, DeclareError, Link, LinkEvent, PollError, QueuePoller,
};
use dwell_e2e::broker;
use dwell_e2e::publisher::{Publisher, now_ms};
use dwell_runtime::backoff::Backoff;
use proxy::Proxy;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);

fn quick_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(50), Duration::from_millis(500))
}

/// Starts a link to `connector` and returns its handle and the events it reported.
fn start_link(
    connector: Connector,
    shutdown: &CancellationToken,
) -> (dwell_amqp::LinkHandle, Arc<Mutex<Vec<String>>>) {
    let (link, handle) = Link::new(connector, "dwell-amqp test".into(), quick_backoff());
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    tokio::spawn(link.run(shutdown.clone(), move |e| {
        let line = match e {
            LinkEvent::Connected(g) => format!("connected {g}"),
            LinkEvent::ConnectFailed { error, .. } => format!("failed {error}"),
            LinkEvent::Lost(why) => format!("lost {why}"),
        };
        seen.lock().expect("events").push(line);
    }));
    (handle, events)
}

/// Polls until `ok` holds for a poll result, failing after [`DEADLINE`] with the last one.
async fn poll_until(
    poller: &mut QueuePoller,
    what: &str,
    ok: impl Fn(&Result<dwell_amqp::QueueDepth, PollError>) -> bool,
) -> Result<dwell_amqp::QueueDepth, PollError> {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let r = poller.poll().await;
        if ok(&r) {
            return r;
        }
        assert!(tokio::time::Instant::now() < end, "{what}: last poll {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn missing_queue_closes_only_its_own_channel() {
    let Some(url) = broker::require("missing_queue_closes_only_its_own_channel").await else {
        return;
    };
    let queue = broker::unique_queue("amqp-depth");
    let mut publisher = Publisher::new(&url, &queue);
    for seq in 0..3 {
        publisher.publish_at(seq, now_ms()).await.expect("publish");
    }
    let shutdown = CancellationToken::new();
    let (link, events) = start_link(
        Connector::new(AmqpUrl::parse(&url).expect("url")),
        &shutdown,
    );
    let mut present = QueuePoller::new(link.clone(), queue.clone(), Duration::from_secs(10));
    let mut missing = QueuePoller::new(link, format!("{queue}.absent"), Duration::from_secs(10));
    for _ in 0..3 {
        let depth = present.poll().await.expect("depth");
        assert_eq!((depth.messages_ready, depth.consumers), (3, 0));
        match missing.poll().await {
            Err(PollError::Declare(DeclareError::NotFound(m))) => {
                assert!(m.contains("absent"), "{m}")
            }
            other => panic!("a missing queue must be a 404, got {other:?}"),
        }
    }
    // One connection all along: the 404s closed channels, never the connection.
    assert_eq!(
        *events.lock().expect("events"),
        vec!["connected 1".to_string()]
    );
    shutdown.cancel();
    publisher.close().await;
    broker::delete(&url, &queue).await;
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_failure_without_the_password() {
    let Some(url) = broker::require("wrong_credentials").await else {
        return;
    };
    let addr = proxy::broker_addr(&url);
    let bad = format!("amqp://guest:Wr0ng-s3cret@{addr}/%2f");
    let connector = Connector::new(AmqpUrl::parse(&bad).expect("url"));
    let err = connector
        .connect("dwell-amqp test")
        .await
        .expect_err("refused");
    assert_eq!(err.failure, ConnectFailure::Auth, "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("Wr0ng-s3cret"), "{shown}");
    assert!(shown.contains("guest:***@"), "{shown}");
}

#[tokio::test]
async fn an_ip_host_is_connected_to_not_localhost() {
    // amq-protocol-uri alone turns an IP host into "localhost"; 127.0.0.2 must get the connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let port = listener.local_addr().expect("addr").port();
    let connector =
        Connector::new(AmqpUrl::parse(&format!("amqp://u:p@127.0.0.2:{port}/%2f")).expect("url"));
    let attempt = tokio::spawn(async move { connector.connect("ip test").await.map(|_| ()) });
    let accepted = tokio::time::timeout(DEADLINE, listener.accept()).await;
    attempt.abort();
    assert!(
        matches!(accepted, Ok(Ok(_))),
        "no connection reached 127.0.0.2:{port}"
    );
}

#[tokio::test]
async fn amqps_trusts_the_ca_file_and_refuses_without_it() {
    let Some(url) = broker::require("amqps_trusts_the_ca_file").await else {
        return;
    };
    let ca = dwell_e2e::certs::TestCa::new("dwell-amqp test CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let tls = Proxy::start(proxy::broker_addr(&url), Some(proxy::tls_acceptor(&ca))).await;
    let amqps =
        AmqpUrl::parse(&proxy::through(&url, "amqps", "localhost", tls.addr())).expect("url");
    assert!(amqps.is_tls());

    let untrusting = Connector::new(amqps.clone());
    let err = untrusting
        .connect("amqps test")
        .await
        .expect_err("untrusted certificate");
    assert_eq!(err.failure, ConnectFailure::Tls, "{err}");

    let trusting = Connector {
        ca_file: Some(ca_file),
        ..Connector::new(amqps)
    };
    let conn = trusting
        .connect("amqps test")
        .await
        .expect("TLS with the CA file");
    let queue = broker::unique_queue("amqp-tls");
    let channel = conn.create_channel().await.expect("channel");
    broker::declare(&channel, &queue).await.expect("declare");
    let depth = dwell_amqp::declare::passive_declare(&channel, &queue)
        .await
        .expect("passive declare over TLS");
    assert_eq!((depth.messages_ready, depth.consumers), (0, 0));
    let _ = conn.close(200, "done".into()).await;
    broker::delete(&url, &queue).await;

    let missing = Connector {
        ca_file: Some(dir.path().join("nope.pem")),
        ..Connector::new(
            AmqpUrl::parse(&proxy::through(&url, "amqps", "localhost", tls.addr())).expect("url"),
        )
    };
    let err = missing.connect("amqps test").await.expect_err("no CA file");
    assert_eq!(err.failure, ConnectFailure::CaFile, "{err}");
}

#[tokio::test]
async fn the_link_reconnects_after_the_broker_goes_away() {
    let Some(url) = broker::require("the_link_reconnects").await else {
        return;
    };
    let queue = broker::unique_queue("amqp-link");
    let mut publisher = Publisher::new(&url, &queue);
    publisher.publish_at(1, now_ms()).await.expect("publish");
    let cut = Proxy::start(proxy::broker_addr(&url), None).await;
    let via = AmqpUrl::parse(&proxy::through(&url, "amqp", "127.0.0.1", cut.addr())).expect("url");
    let shutdown = CancellationToken::new();
    let (link, events) = start_link(Connector::new(via), &shutdown);
    let mut poller = QueuePoller::new(link, queue.clone(), Duration::from_secs(2));
    assert_eq!(poller.poll().await.expect("depth").messages_ready, 1);

    cut.cut();
    let failed = poll_until(&mut poller, "polls fail once the broker is gone", |r| {
        r.is_err()
    })
    .await;
    assert!(failed.is_err());
    cut.restore();
    let back = poll_until(&mut poller, "polls resume after the broker is back", |r| {
        r.is_ok()
    })
    .await;
    assert_eq!(back.expect("depth").messages_ready, 1);
    let events = events.lock().expect("events").clone();
    assert!(events.iter().any(|e| e.starts_with("lost")), "{events:?}");
    assert!(events.contains(&"connected 2".to_string()), "{events:?}");
    shutdown.cancel();
    publisher.close().await;
    broker::delete(&url, &queue).await;
}

#[tokio::test]
async fn a_rotated_url_file_is_read_at_the_next_attempt() {
    let Some(url) = broker::require("a_rotated_url_file").await else {
        return;
    };
    let addr = proxy::broker_addr(&url);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("url");
    std::fs::write(&file, format!("amqp://guest:old-s3cret@{addr}/%2f\n")).expect("write");
    let connector = Connector {
        url_file: Some(file.clone()),
        ..Connector::new(AmqpUrl::parse(&url).expect("url"))
    };
    let err = connector
        .connect("rotation test")
        .await
        .expect_err("old password");
    assert_eq!(err.failure, ConnectFailure::Auth, "{err}");
    assert!(!err.to_string().contains("old-s3cret"), "{err}");
    std::fs::write(&file, format!("{url}\n")).expect("rotate");
    let conn = connector
        .connect("rotation test")
        .await
        .expect("rotated credentials");
    let _ = conn.close(200, "done".into()).await;
    std::fs::remove_file(&file).expect("remove");
    let err = connector
        .connect("rotation test")
        .await
        .expect_err("no file");
    assert_eq!(err.failure, ConnectFailure::UrlFile, "{err}");
}

#[tokio::test]
async fn the_management_api_reads_the_head_timestamp_of_a_classic_queue() {
    let Some(url) = broker::require("the_management_api_reads_the_head").await else {
        return;
    };
    let mgmt = std::env::var("DWELL_TEST_RABBITMQ_MGMT")
        .unwrap_or_else(|_| "http://127.0.0.1:15672".into());
    let Ok(mgmt_url) = dwell_amqp::ManagementUrl::parse(&mgmt) else {
        panic!("DWELL_TEST_RABBITMQ_MGMT {mgmt} is not a management URL");
    };
    let queue = broker::unique_queue("amqp-mgmt");
    let mut publisher = Publisher::new(&url, &queue);
    let published_s = now_ms() / 1000 - 60;
    publisher
        .publish_at(1, published_s * 1000)
        .await
        .expect("publish");
    let client = dwell_amqp::Management::new(
        mgmt_url,
        &AmqpUrl::parse(&url).expect("url"),
        None,
        Duration::from_secs(2),
    )
    .expect("client");
    let end = tokio::time::Instant::now() + DEADLINE;
    let info = loop {
        match client.queue("/", &queue).await {
            Ok(Some(info)) if info.head_message_timestamp.is_some() => break info,
            Err(dwell_amqp::ManagementError::Transport(e)) if e.contains("refused") => {
                eprintln!("SKIPPED: no management API at {mgmt}: {e}");
                return;
            }
            other => {
                // The management data lags by up to ~10 s (rabbitmq-sampling.md §3.2).
                assert!(
                    tokio::time::Instant::now() < end,
                    "never a head timestamp: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert_eq!(info.queue_type.as_deref(), Some("classic"));
    assert_eq!(info.head_message_timestamp, Some(published_s as i64));
    assert_eq!(
        client.queue("/", &format!("{queue}.absent")).await,
        Err(dwell_amqp::ManagementError::NotFound)
    );
    publisher.close().await;
    broker::delete(&url, &queue).await;
}
