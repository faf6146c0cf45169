//! The stream's framing against hand-made DATA frames: messages split across frames and
//! several in one frame, and each way a stream ends (client done, rejection, size bound,
//! compression), as the trailers say.
use std::collections::HashMap;
use std::convert::Infallible;

use dwell_proto::v1;
use dwell_runtime::clock::ManualClock;
use http_body_util::{BodyExt, StreamBody};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::ingest::{IngestMetrics, Limits};
use crate::window::WindowStore;

const NOW: i64 = 1_700_000_000_000;

fn service(max_message_bytes: usize) -> Arc<IngestService> {
    Arc::new(IngestService::new(
        Arc::new(WindowStore::new(30_000)),
        ManualClock::new(NOW),
        Limits {
            max_message_bytes,
            ..Limits::default()
        },
        IngestMetrics::default(),
        TaskTracker::new(),
        CancellationToken::new(),
    ))
}

/// A report with one age, as a gRPC message (prefix included).
fn message(seq: u64, age_ms: i64) -> Vec<u8> {
    let report = v1::Report {
        source: Some(v1::Source {
            namespace: "ns".into(),
            pod: "pod-1".into(),
            labels: HashMap::new(),
            queue: "q".into(),
            vhost: String::new(),
        }),
        instance: 1,
        seq,
        ages: Some(v1::report::Ages::Samples(v1::Samples {
            samples: vec![v1::Sample {
                observed_at_ms: NOW,
                age_ms,
                redelivered: false,
            }],
        })),
        ..Default::default()
    };
    let body = report.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Runs a stream over `frames`; returns the acked seqs and the final grpc-status.
async fn run(service: Arc<IngestService>, frames: Vec<Vec<u8>>) -> (Vec<u64>, String) {
    run_as(service, frames, None).await
}

/// [`run`] for a stream authenticated as `identity`.
async fn run_as(
    service: Arc<IngestService>,
    frames: Vec<Vec<u8>>,
    identity: Option<Identity>,
) -> (Vec<u64>, String) {
    let frames = frames
        .into_iter()
        .map(|f| Ok::<_, Infallible>(Frame::data(Bytes::from(f))));
    let inbound = StreamBody::new(tokio_stream::iter(frames));
    let collected = AckStream::new(service, inbound, "peer".into(), identity)
        .collect()
        .await
        .expect("the body itself never fails");
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string();
    let mut data = collected.to_bytes();
    let mut seqs = Vec::new();
    while data.len() >= PREFIX {
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        let mut one = data.split_to(PREFIX + len);
        one.advance(PREFIX);
        seqs.push(v1::Ack::decode(one).expect("an ack").seq);
    }
    (seqs, status)
}

/// A stream's identity binds every report on it, and its token's expiry ends it.
#[tokio::test]
async fn reports_are_bound_to_the_stream_identity_until_it_expires() {
    let frames = || vec![[message(1, 10), message(2, 20)].concat()];
    let as_pod = |pod: &str, expires_at_ms| Identity {
        namespace: "ns".into(),
        pod: Some(pod.into()),
        expires_at_ms: Some(expires_at_ms),
        proof: "token",
    };
    let code = |c: tonic::Code| (c as i32).to_string();
    let svc = service(1 << 20);
    assert_eq!(
        run_as(svc.clone(), frames(), Some(as_pod("pod-1", NOW))).await,
        (vec![1, 2], "0".into())
    );
    assert_eq!(
        run_as(svc.clone(), frames(), Some(as_pod("pod-2", NOW))).await,
        (vec![], code(tonic::Code::PermissionDenied))
    );
    assert_eq!(
        run_as(svc.clone(), frames(), Some(as_pod("pod-1", NOW - 1))).await,
        (vec![], code(tonic::Code::Unauthenticated))
    );
    let denied = svc
        .metrics
        .denied
        .get_or_create(&crate::ingest::telemetry::ReasonLabel { reason: "pod" })
        .get();
    assert_eq!(denied, 1);
}

#[tokio::test]
async fn messages_are_cut_out_of_frames_wherever_they_fall() {
    let (a, b, c) = (message(1, 10), message(2, 20), message(3, 30));
    // `a` split over two frames, whose second also holds all of `b` and the start of `c`.
    let cut = a.len() / 2;
    let mut second = a[cut..].to_vec();
    second.extend_from_slice(&b);
    second.extend_from_slice(&c[..3]);
    let frames = vec![a[..cut].to_vec(), second, c[3..].to_vec()];
    assert_eq!(
        run(service(1 << 20), frames).await,
        (vec![1, 2, 3], "0".into())
    );
}

#[tokio::test]
async fn a_rejected_report_ends_the_stream_after_the_acks_before_it() {
    let mut frame = message(1, 10);
    frame.extend_from_slice(&message(2, -1));
    frame.extend_from_slice(&message(3, 30));
    let invalid_argument = (tonic::Code::InvalidArgument as i32).to_string();
    assert_eq!(
        run(service(1 << 20), vec![frame]).await,
        (vec![1], invalid_argument)
    );
}

#[tokio::test]
async fn oversized_compressed_and_undecodable_messages_end_it() {
    let m = message(1, 10);
    let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
    assert_eq!(
        run(service(m.len() - 6), vec![m.clone()]).await,
        (vec![], out_of_range)
    );
    let mut compressed = m.clone();
    compressed[0] = 1;
    let internal = (tonic::Code::Internal as i32).to_string();
    assert_eq!(
        run(service(1 << 20), vec![compressed]).await,
        (vec![], internal.clone())
    );
    let garbage = vec![0, 0, 0, 0, 2, 0xff, 0xff];
    assert_eq!(
        run(service(1 << 20), vec![garbage]).await,
        (vec![], internal)
    );
}
