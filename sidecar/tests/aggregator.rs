//! Against the real `dwell-aggregator` binary (built by `cargo build --workspace --bins`): the
//! sidecar's reports land in its window, survive an aggregator crash and restart (the backlog is
//! resent, so the restarted window holds the ages from before the crash), and the goodbye report
//! removes the source.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use common::{Running, eventually, now_ms, settings};
use dwell_e2e::aggregator::{Aggregator, Tls};
use dwell_proto::v1::inspect_client::InspectClient;
use dwell_proto::v1::{ListSourcesRequest, SourceInfo};
use dwell_sidecar::Sidecar;

fn aggregator_binary() -> Option<PathBuf> {
    dwell_e2e::built_binary("dwell-aggregator")
}

async fn our_source(grpc: SocketAddr, queue: &str) -> Option<SourceInfo> {
    let mut client = InspectClient::connect(format!("http://{grpc}"))
        .await
        .ok()?;
    let req = ListSourcesRequest {
        namespace: "shop".into(),
        queue: queue.into(),
    };
    let sources = client.list_sources(req).await.ok()?.into_inner().sources;
    sources.into_iter().find(|s| s.pod == "binder-0")
}

#[tokio::test]
async fn aggregator_crash_and_restart_rebuilds_the_window() {
    let Some(bin) = aggregator_binary() else {
        return;
    };
    let agg = Aggregator::start_program(&bin, Tls::SelfSigned, &[])
        .await
        .expect("the aggregator starts");
    let (grpc, metrics) = (agg.grpc_addr, agg.metrics_addr);
    let q = "dwell.test.sidecar.real-aggregator";
    let running = Running::start(
        Sidecar::bind(settings(grpc, q, &["--backlog", "600"]))
            .await
            .unwrap(),
    )
    .await;
    let ts = (now_ms() - 5_000) as u64;
    running.send_udp(format!("{q} {ts}ms\n").as_bytes()).await;
    let before = eventually("the source in the aggregator", || async {
        our_source(grpc, q)
            .await
            .filter(|s| s.samples >= 1 && s.reports >= 3)
    })
    .await;
    assert_eq!(before.labels.get("app").map(String::as_str), Some("binder"));

    agg.kill().await;
    let ts = (now_ms() - 8_000) as u64;
    running.send_udp(format!("{q} {ts}ms\n").as_bytes()).await;
    let agg = Aggregator::start_program_on(&bin, Tls::SelfSigned, metrics, grpc, &[])
        .await
        .expect("the aggregator restarts on the same ports");
    // The restarted aggregator knows nothing; the resent backlog brings back both ages.
    let after = eventually("the window rebuilt after the restart", || async {
        our_source(grpc, q).await.filter(|s| s.samples >= 2)
    })
    .await;
    assert!(after.reports >= before.reports, "{after:?} vs {before:?}");

    running.stop().await;
    eventually("the goodbye to remove the source", || async {
        match InspectClient::connect(format!("http://{grpc}")).await {
            Ok(_) => our_source(grpc, q).await.is_none().then_some(()),
            Err(_) => None,
        }
    })
    .await;
    agg.kill().await;
}
