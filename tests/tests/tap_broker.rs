//! The broker's own signals reach apps through the tap as they do directly: `connection.blocked`
//! and `unblocked` while the memory alarm is raised (pika and amqplib through the tap, pika
//! directly beside them), and a broker-initiated close (`rabbitmqctl close_connection`) reaching
//! the app within a second.
//!
//! DISTURBS THE SHARED BROKER: the first test raises the memory alarm
//! (`set_vm_memory_high_watermark 0`), which blocks every publisher on the broker. It holds it
//! only until the three apps saw `connection.blocked` (15 s at most), and a guard restores the
//! previous watermark when dropped, panics included.

use std::time::Duration;

use dwell_e2e::broker;
use dwell_e2e::poll;
use dwell_e2e::process::Process;
use dwell_e2e::publisher::now_ms;
use dwell_e2e::rabbitmqctl::{self, MemoryAlarm};
use dwell_e2e::tap::{Client, TapSidecar, field};
use serde_json::Value;

const NOWHERE: &str = "127.0.0.1:9";

/// Whether rabbitmqctl works here; a loud skip (or a failure under DWELL_REQUIRE_SERVICES=1).
fn ctl_available(test: &str) -> bool {
    if rabbitmqctl::available() {
        return true;
    }
    if std::env::var("DWELL_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{test}: rabbitmqctl cannot reach the broker");
    }
    eprintln!("\n!!!!! SKIPPED {test}: rabbitmqctl cannot reach the broker !!!!!\n");
    false
}

async fn line_with(p: &mut Process, key: &str, deadline: Duration) -> Value {
    p.wait_for(deadline, |l| field(l, key))
        .await
        .unwrap_or_else(|e| panic!("waiting for {key}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_blocked_reaches_apps_through_the_tap() {
    let Some(url) = broker::require("tap_blocked").await else {
        return;
    };
    if !ctl_available("tap_blocked") {
        return;
    }
    let sidecar = TapSidecar::start("tap-blocked", &url, NOWHERE.parse().unwrap(), &[])
        .await
        .expect("sidecar starts");
    let tap_url = sidecar.url(&url);
    let mut apps = Vec::new();
    for client in Client::ALL {
        if client.available("tap_blocked").await {
            let q = broker::unique_queue(&format!("{}-blocked", client.name()));
            let app = client
                .spawn(&["blocked", &tap_url, &q])
                .expect("client starts");
            apps.push((format!("{} via tap", client.name()), app));
        }
    }
    if Client::Pika.available("tap_blocked").await {
        let q = broker::unique_queue("pika-blocked-direct");
        let app = Client::Pika.spawn(&["blocked", &url, &q]).unwrap();
        apps.push(("pika direct".into(), app));
    }
    for (_, app) in &mut apps {
        line_with(app, "ready", Duration::from_secs(30)).await;
    }
    {
        let _alarm = MemoryAlarm::raise().expect("memory alarm raised");
        for (name, app) in &mut apps {
            let blocked = line_with(app, "blocked", Duration::from_secs(15)).await;
            assert_eq!(blocked, Value::Bool(true), "{name}: connection.blocked");
        }
        // The guard restores the watermark here, as soon as every app saw the block.
    }
    for (name, app) in &mut apps {
        let unblocked = line_with(app, "unblocked", Duration::from_secs(30)).await;
        assert_eq!(unblocked, Value::Bool(true), "{name}: connection.unblocked");
    }
    let tapped = apps.iter().filter(|(n, _)| n.ends_with("via tap")).count() as f64;
    assert_eq!(
        sidecar.metric("dwell_sidecar_tap_blocked_total").await,
        Some(tapped),
        "the tap saw each tapped app's connection.blocked pass"
    );
    assert!(sidecar.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_initiated_close_reaches_the_app_within_a_second() {
    let Some(url) = broker::require("tap_close").await else {
        return;
    };
    if !ctl_available("tap_close") {
        return;
    }
    let sidecar = TapSidecar::start("tap-close", &url, NOWHERE.parse().unwrap(), &[])
        .await
        .expect("sidecar starts");
    let tap_url = sidecar.url(&url);
    for client in Client::ALL {
        if !client.available("tap_close").await {
            continue;
        }
        let name = broker::unique_queue(&format!("{}-close", client.name()));
        let mut app = client.spawn(&["close", &tap_url, &name]).unwrap();
        line_with(&mut app, "ready", Duration::from_secs(30)).await;
        let n = name.clone();
        tokio::task::spawn_blocking(move || {
            rabbitmqctl::close_connection_named(&n, "dwell tap test: operator close")
        })
        .await
        .unwrap()
        .expect("close_connection");
        let closed_returned = now_ms();
        let closed_at = line_with(&mut app, "closed_at_ms", Duration::from_secs(10)).await;
        let closed_at = closed_at
            .as_u64()
            .unwrap_or_else(|| panic!("{}: the app never saw the close", client.name()));
        assert!(
            closed_at <= closed_returned + 1_000,
            "{}: the close reached the app {} ms after rabbitmqctl returned",
            client.name(),
            closed_at.saturating_sub(closed_returned)
        );
    }
    // The upstream closed, so the tap closed the app side and let go of the connection.
    poll::until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            match sidecar.metric("dwell_sidecar_tap_connections_open").await {
                Some(0.0) => Ok(()),
                other => Err(format!("open: {other:?}")),
            }
        },
    )
    .await
    .expect("no tap connection left open");
    assert!(sidecar.stop().await);
}
