//! Failures around the sidecar: an aggregator that crashes and comes back gets the backlog again
//! (its window is rebuilt), replicas that appear or vanish behind the aggregator name are picked
//! up or dropped, and a broker restart only pauses the stats source, never the report source.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{Peer, Running, ages, amqp_url, broker, eventually, metric, now_ms, settings};
use dwell_sidecar::Sidecar;
use dwell_sidecar::push::Resolver;

#[tokio::test]
async fn aggregator_restart_gets_the_whole_backlog_again() {
    let mut peer = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let addr = peer.addr;
    let running = Running::start(
        Sidecar::bind(settings(addr, "orders", &["--backlog", "1000"]))
            .await
            .unwrap(),
    )
    .await;
    peer.until("three reports", |r| r.seq >= 3).await;
    drop(peer.kill());
    let t = running.telemetry;
    eventually("the sidecar noticing", || async {
        metric(t, "dwell_sidecar_stream_failures_total")
            .await
            .filter(|v| *v >= 1.0)
    })
    .await;
    // Ages observed while the aggregator is down are kept for it.
    let ts = (now_ms() - 7_000) as u64;
    running
        .send_udp(format!("orders {ts}ms\n").as_bytes())
        .await;
    eventually("the age to be folded into a report", || async {
        (running.metrics.reports_built.get() > 0
            && metric(t, "dwell_sidecar_ages_total{kind=\"report\"}").await == Some(1.0))
        .then_some(())
    })
    .await;
    let mut restarted = Peer::start(addr).await;
    let mut seqs = Vec::new();
    let mut seen_age = false;
    let first = restarted
        .until("the outage age after a reconnect", |r| {
            seqs.push(r.seq);
            seen_age |= ages(r).0 == 1 && (7_000..60_000).contains(&ages(r).1);
            seen_age
        })
        .await;
    // The whole backlog came first, in order, from seq 1: the window can be rebuilt.
    assert_eq!(first[0].seq, 1);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(running.metrics.backlog_dropped.get(), 0);
    running.stop().await;
}

#[tokio::test]
async fn every_replica_behind_the_name_gets_the_full_picture() {
    let mut a = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let mut b = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let mut c = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let replicas: Arc<Mutex<Vec<SocketAddr>>> = Arc::new(Mutex::new(vec![a.addr]));
    let current = replicas.clone();
    let resolver: Resolver = Arc::new(move |_host, _port| {
        let addrs = current.lock().unwrap().clone();
        Box::pin(async move { Ok(addrs) })
    });
    let flags = ["--resolve-interval", "100ms", "--backlog", "1000"];
    let sidecar = Sidecar::bind(settings(a.addr, "orders", &flags))
        .await
        .unwrap()
        .with_resolver(resolver);
    let running = Running::start(sidecar).await;
    let t = running.telemetry;
    a.until("a's third report", |r| r.seq >= 3).await;

    // A second replica appears: it is brought up to date from seq 1.
    replicas.lock().unwrap().push(b.addr);
    let got = b.until("b catching up", |r| r.seq >= 5).await;
    assert_eq!(got[0].seq, 1);
    assert!(got.windows(2).all(|w| w[1].seq == w[0].seq + 1));

    // Replica a goes away and c arrives: a's stream is dropped, c starts from the backlog.
    *replicas.lock().unwrap() = vec![b.addr, c.addr];
    let got = c.until("c catching up", |r| r.seq >= 3).await;
    assert_eq!(got[0].seq, 1);
    eventually("two addresses", || async {
        metric(t, "dwell_sidecar_aggregator_addresses")
            .await
            .filter(|v| *v == 2.0)
    })
    .await;
    let mut a_max = 0;
    while let Ok(r) = a.reports.try_recv() {
        a_max = a_max.max(r.seq);
    }
    c.until("c moving on", |r| r.seq >= a_max + 5).await;
    while let Ok(r) = a.reports.try_recv() {
        assert!(
            r.seq <= a_max + 1,
            "a dropped replica still got seq {} (last {a_max})",
            r.seq
        );
    }
    running.stop().await;
    // The goodbye reached both remaining replicas.
    b.until("b's goodbye", |r| r.goodbye).await;
    c.until("c's goodbye", |r| r.goodbye).await;
}

/// Restarts the broker app when dropped, so a failed assertion never leaves it stopped.
struct StartAppOnDrop;

impl Drop for StartAppOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .arg("start_app")
            .output();
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["await_startup", "--timeout", "60"])
            .output();
    }
}

fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn broker_restart_pauses_stats_only() {
    let Some(conn) = broker("broker_restart").await else {
        return;
    };
    let q = "dwell.test.sidecar.restart";
    let ch = conn.create_channel().await.unwrap();
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(q.into(), durable, Default::default())
        .await
        .unwrap();
    drop(conn);
    let url = amqp_url();
    let mut peer = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let flags = ["--amqp-url", url.as_str(), "--stats-interval", "200ms"];
    let running =
        Running::start(Sidecar::bind(settings(peer.addr, q, &flags)).await.unwrap()).await;
    let t = running.telemetry;
    peer.until("queue state", |r| r.queue_state.is_some()).await;

    let restart = StartAppOnDrop;
    rabbitmqctl(&["stop_app"]);
    eventually("stats to notice the broker is gone", || async {
        metric(t, "dwell_sidecar_stats_connected")
            .await
            .filter(|v| *v == 0.0)
    })
    .await;
    // The report source keeps working while the broker is down.
    let ts = (now_ms() - 3_000) as u64;
    running.send_udp(format!("{q} {ts}ms\n").as_bytes()).await;
    peer.until("an age during the outage", |r| ages(r).0 == 1)
        .await;
    let ok_before = metric(t, "dwell_sidecar_stats_polls_total{kind=\"ok\"}")
        .await
        .unwrap_or(0.0);
    drop(restart);
    eventually("stats to recover", || async {
        metric(t, "dwell_sidecar_stats_polls_total{kind=\"ok\"}")
            .await
            .filter(|v| *v > ok_before)
    })
    .await;
    let after = now_ms();
    peer.until("fresh queue state", |r| {
        r.queue_state.is_some_and(|s| s.observed_at_ms >= after)
    })
    .await;
    running.stop().await;
}
