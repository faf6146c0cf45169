//! Third-party AMQP clients through the sidecar's tap, against the real RabbitMQ: pika (PyPI)
//! and amqplib (npm) run the same app once directly and once through the tap, and what they see
//! must be identical message by message (bodies up to 1 MiB, every property, headers, order,
//! redelivered, basic.get, publisher confirms on the consuming connection, 50 channels on one
//! connection); heartbeats of 2 s survive 10 s of idle, and the broker's consumer cancel
//! notification (queue deleted) reaches the app.

use std::collections::BTreeMap;
use std::time::Duration;

use dwell_e2e::broker;
use dwell_e2e::publisher::now_ms;
use dwell_e2e::tap::{Client, TapSidecar};
use serde_json::Value;

/// No aggregator is needed to test forwarding: reports go nowhere.
const NOWHERE: &str = "127.0.0.1:9";

fn deliveries(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l.get("role").is_some())
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_and_amqplib_see_through_the_tap_what_they_see_directly() {
    let Some(url) = broker::require("tap_clients_compare").await else {
        return;
    };
    let sidecar = TapSidecar::start("tap-compare", &url, NOWHERE.parse().unwrap(), &[])
        .await
        .expect("sidecar starts");
    let stamp = (now_ms() - 20_000).to_string();
    let mut tapped_queues = Vec::new();
    for client in Client::ALL {
        if !client.available("tap_clients_compare").await {
            continue;
        }
        let name = client.name();
        let (da, db) = (
            broker::unique_queue(&format!("{name}-direct-a")),
            broker::unique_queue(&format!("{name}-direct-b")),
        );
        let (ta, tb) = (
            broker::unique_queue(&format!("{name}-tap-a")),
            broker::unique_queue(&format!("{name}-tap-b")),
        );
        let deadline = Duration::from_secs(120);
        let direct = client
            .run(&["compare", &url, &da, &db, &stamp], deadline)
            .await
            .expect("direct run");
        let tap_url = sidecar.url(&url);
        let tapped = client
            .run(&["compare", &tap_url, &ta, &tb, &stamp], deadline)
            .await
            .expect("run through the tap");
        assert_eq!(
            direct.last(),
            Some(&serde_json::json!({"done": 101})),
            "{name}"
        );
        let (direct, tapped) = (deliveries(&direct), deliveries(&tapped));
        assert_eq!(tapped.len(), 101, "{name}: 51 consumed + 50 got");
        assert_eq!(
            tapped.iter().filter(|d| d["redelivered"] == true).count(),
            1,
            "{name}: the nacked delivery came back redelivered"
        );
        assert!(
            tapped.iter().any(|d| d["len"] == 1 << 20),
            "{name}: the 1 MiB body crossed frame_max"
        );
        // Message by message: same order, bodies, properties, headers and redelivered flags.
        for (i, (d, t)) in direct.iter().zip(&tapped).enumerate() {
            assert_eq!(d, t, "{name}: delivery {i} differs");
        }
        tapped_queues.push((ta, 51.0));
        tapped_queues.push((tb, 50.0));
    }
    // The tap read every one of them, per queue.
    for (q, n) in &tapped_queues {
        let series = format!(r#"dwell_sidecar_tap_deliveries_total{{queue="{q}",vhost="/"}}"#);
        assert_eq!(sidecar.metric(&series).await, Some(*n), "{series}");
    }
    let off: BTreeMap<&str, Option<f64>> = [
        "foreign_protocol",
        "bad_frame_end",
        "unknown_frame_type",
        "truncated_frame",
    ]
    .into_iter()
    .map(|k| (k, None))
    .collect();
    let mut seen_off = BTreeMap::new();
    for k in off.keys() {
        let series = format!(r#"dwell_sidecar_tap_parse_off_total{{kind="{k}"}}"#);
        seen_off.insert(*k, sidecar.metric(&series).await);
    }
    assert_eq!(seen_off, off, "no connection had its parsing switched off");
    assert!(sidecar.stop().await, "the sidecar exits on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_survive_idle_and_cancel_notifications_arrive() {
    let Some(url) = broker::require("tap_clients_heartbeat").await else {
        return;
    };
    let sidecar = TapSidecar::start("tap-heartbeat", &url, NOWHERE.parse().unwrap(), &[])
        .await
        .expect("sidecar starts");
    let tap_url = sidecar.url(&url);
    let mut idle = Vec::new();
    for client in Client::ALL {
        if !client.available("tap_clients_heartbeat").await {
            continue;
        }
        let q = broker::unique_queue(&format!("{}-heartbeat", client.name()));
        let idle_url = tap_url.clone();
        // Both clients idle at once: 10 s in all, not 20.
        idle.push(tokio::spawn(async move {
            let out = client
                .run(&["heartbeat", &idle_url, &q], Duration::from_secs(60))
                .await;
            (client, out)
        }));
        let q = broker::unique_queue(&format!("{}-cancel", client.name()));
        let out = client
            .run(&["cancel", &tap_url, &q], Duration::from_secs(30))
            .await
            .expect("cancel mode runs");
        assert_eq!(
            out,
            vec![serde_json::json!({"cancelled": true})],
            "{}: the broker's basic.cancel reached the app",
            client.name()
        );
    }
    for task in idle {
        let (client, out) = task.await.expect("joined");
        assert_eq!(
            out.expect("heartbeat mode runs"),
            vec![serde_json::json!({"alive": true})],
            "{}: a 2 s heartbeat connection lived through 10 s idle",
            client.name()
        );
    }
    assert!(sidecar.stop().await);
}
