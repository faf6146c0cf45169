//! `--token-file`: the bound service-account token on every Ingest stream, checked against a
//! real in-process tonic server that records the `authorization` metadata of each call. A
//! rotated file (replaced by a rename, as the kubelet's atomic writer does) is picked up without
//! a restart and the stream reopens with it; a file that then disappears keeps the last good
//! token for the streams opened after it, counted as a read failure.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{Peer, Running, eventually, settings};
use dwell_sidecar::Sidecar;

/// Replaces the file at once, as the kubelet's atomic writer does (a rename, never a partial
/// file).
fn rotate(path: &Path, token: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, token).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn auth(peer: &Peer) -> Vec<Option<String>> {
    peer.auth.lock().unwrap().clone()
}

async fn start(peer: SocketAddr, token_file: &Path) -> Running {
    let path = token_file.display().to_string();
    let mut s = settings(peer, "orders", &["--token-file", &path]);
    // Faster than in production, so the test does not wait 5 s for each check.
    s.push.token_recheck = Duration::from_millis(100);
    Running::start(Sidecar::bind(s).await.unwrap()).await
}

#[tokio::test]
async fn the_token_is_sent_rotated_and_kept_when_the_file_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "token-one\n").unwrap();
    let mut peer = Peer::start(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let addr = peer.addr;
    let sidecar = start(addr, &path).await;
    peer.until("a first report", |_| true).await;
    assert_eq!(auth(&peer), [Some("Bearer token-one".to_owned())]);

    rotate(&path, "token-two");
    eventually("a stream with the rotated token", || async {
        auth(&peer)
            .contains(&Some("Bearer token-two".to_owned()))
            .then_some(())
    })
    .await;
    let seen = auth(&peer).len();
    peer.until("a report after the rotation", |_| true).await;
    peer.until("another report", |_| true).await;
    let calls = auth(&peer);
    assert_eq!(
        calls,
        [
            Some("Bearer token-one".to_owned()),
            Some("Bearer token-two".to_owned())
        ],
        "one stream per token, each opened with the token current then"
    );
    assert_eq!(calls.len(), seen);
    assert_eq!(sidecar.metrics.token_rotations.get(), 1);
    assert_eq!(
        sidecar.metrics.stream_failures.get(),
        0,
        "a rotation reopens the stream; it is no failure"
    );

    // The file goes away and the aggregator restarts: the new stream keeps the last good token.
    std::fs::remove_file(&path).unwrap();
    drop(peer.kill());
    let mut peer = Peer::start(addr).await;
    peer.until("a report after the restart", |_| true).await;
    assert_eq!(auth(&peer), [Some("Bearer token-two".to_owned())]);
    assert!(sidecar.metrics.token_read_failures.get() >= 1);

    // Back again with a third token: picked up as before.
    rotate(&path, "token-three");
    eventually("a stream with the third token", || async {
        auth(&peer)
            .contains(&Some("Bearer token-three".to_owned()))
            .then_some(())
    })
    .await;
    sidecar.stop().await;
}

#[tokio::test]
async fn without_a_token_file_no_authorization_is_sent() {
    let mut peer = Peer::start(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let sidecar = Running::start(
        Sidecar::bind(settings(peer.addr, "orders", &[]))
            .await
            .unwrap(),
    )
    .await;
    peer.until("a first report", |_| true).await;
    assert_eq!(auth(&peer), [None]);
    sidecar.stop().await;
}
