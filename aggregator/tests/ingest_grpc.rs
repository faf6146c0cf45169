//! The gRPC side in-process with a real tonic client on a port-0 listener and a manual clock:
//! Stream acks, dedup, goodbye, validation codes, size bounds, Inspect, health, shutdown.
use std::collections::HashMap;
use std::sync::Arc;

use dwell_aggregator::clock::ManualClock;
use dwell_aggregator::engine::Engine;
use dwell_aggregator::ingest::{IngestMetrics, IngestService, Limits};
use dwell_aggregator::inspect::InspectService;
use dwell_aggregator::provider::{CustomQuery, MetricsProvider, ObjectRef, ProviderError};
use dwell_aggregator::selector::Selector;
use dwell_aggregator::telemetry::Telemetry;
use dwell_aggregator::window::WindowStore;
use dwell_proto::v1;
use dwell_proto::v1::ingest_client::IngestClient;
use dwell_proto::v1::inspect_client::InspectClient;
use dwell_runtime::accept::Listener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Code;
use tonic::transport::Channel;

const T0: i64 = 1_700_000_000_000;

struct Server {
    channel: Channel,
    engine: Arc<Engine>,
    telemetry: Telemetry,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(yaml: Option<&str>) -> Server {
    let rules = yaml.map_or_else(Default::default, |y| {
        dwell_aggregator::config::parse(y).expect("valid rules")
    });
    let clock = ManualClock::new(T0);
    let store = Arc::new(WindowStore::new(rules.longest_window_ms()));
    let engine = Arc::new(Engine::new(rules, store.clone(), clock.clone()));
    let telemetry = Telemetry::new();
    let metrics = IngestMetrics::default();
    metrics.register(&telemetry);
    let shutdown = CancellationToken::new();
    let limits = Limits {
        max_samples: 100,
        max_message_bytes: 64 * 1024,
        ..Limits::default()
    };
    let tracker = TaskTracker::new();
    let ingest = IngestService::new(
        store.clone(),
        clock.clone(),
        limits,
        metrics,
        tracker.clone(),
        shutdown.clone(),
    );
    let inspect = InspectService::new(engine.clone(), store, clock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let listener = Listener::new(listener, "gRPC", 64);
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        dwell_aggregator::ingest::server::serve(listener, None, ingest, inspect, &tracker, token)
            .await
            .expect("serve");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    Server {
        channel,
        engine,
        telemetry,
        shutdown,
        task,
    }
}

fn report(pod: &str, seq: u64, ages_ms: &[i64]) -> v1::Report {
    v1::Report {
        source: Some(v1::Source {
            namespace: "ns".into(),
            pod: pod.into(),
            labels: HashMap::from([("app".into(), "binder".into())]),
            queue: "q".into(),
            vhost: "/".into(),
        }),
        instance: 42,
        seq,
        interval_start_ms: T0 - 1_000,
        interval_end_ms: T0,
        ages: Some(v1::report::Ages::Samples(v1::Samples {
            samples: ages_ms
                .iter()
                .map(|&age_ms| v1::Sample {
                    observed_at_ms: T0,
                    age_ms,
                    redelivered: false,
                })
                .collect(),
        })),
        ..Default::default()
    }
}

fn served(engine: &Engine) -> Result<f64, String> {
    engine
        .custom(
            &CustomQuery::new(
                "seconds".into(),
                "deployments.apps".into(),
                Some("ns".into()),
                ObjectRef::Named("binder".into()),
                Selector::default(),
            )
            .expect("query"),
        )
        .map(|v| v[0].value)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn stream_acks_each_report_in_order_and_resends_are_idempotent() {
    let s = start(None).await;
    let mut client = IngestClient::new(s.channel.clone());
    let reports = vec![
        report("a", 1, &[1_000, 2_000]),
        report("a", 2, &[9_000]),
        report("a", 1, &[1_000, 2_000]), // a backlog resend
        report("a", 3, &[]),
    ];
    let acks: Vec<v1::Ack> = {
        let mut stream = client
            .stream(tokio_stream::iter(reports))
            .await
            .expect("stream")
            .into_inner();
        let mut acks = Vec::new();
        while let Some(ack) = stream.message().await.expect("ack") {
            acks.push(ack);
        }
        acks
    };
    let got: Vec<(u64, u64, bool)> = acks
        .iter()
        .map(|a| (a.seq, a.accepted, a.duplicate))
        .collect();
    assert_eq!(
        got,
        [(1, 2, false), (2, 1, false), (1, 0, true), (3, 0, false)]
    );
    assert_eq!(served(&s.engine), Ok(9.0), "p90 of 1, 2, 9 s");
    let text = s.telemetry.encode();
    assert!(text.contains("dwell_ingest_samples_total 3"), "{text}");
    assert!(
        text.contains("dwell_ingest_duplicate_reports_total 1"),
        "{text}"
    );
}

#[tokio::test]
async fn invalid_reports_get_invalid_argument_and_are_counted() {
    let s = start(None).await;
    let mut client = IngestClient::new(s.channel.clone());
    let e = client
        .push(report("a", 1, &[-5]))
        .await
        .expect_err("negative age");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "samples[0].age_ms -5 is out of range [0, 1000000000000]"
    );
    let too_many = vec![1_000; 101];
    let e = client
        .push(report("a", 2, &too_many))
        .await
        .expect_err("too many");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("101 samples; at most 100"),
        "{}",
        e.message()
    );
    let mut no_source = report("a", 3, &[1]);
    no_source.source = None;
    let e = client.push(no_source).await.expect_err("no source");
    assert_eq!(e.code(), Code::InvalidArgument);
    // A message beyond the server's size bound is refused before decoding.
    let mut huge = report("a", 4, &[1]);
    if let Some(src) = huge.source.as_mut() {
        src.labels.insert("big".into(), "x".repeat(100 * 1024));
    }
    let e = client.push(huge).await.expect_err("too large");
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    // On a stream, the bad report ends the stream with its status after the good ones' acks.
    let mut stream = client
        .stream(tokio_stream::iter(vec![
            report("a", 5, &[1_000]),
            report("a", 6, &[-1]),
        ]))
        .await
        .expect("stream")
        .into_inner();
    let first = stream.message().await.expect("first ack");
    assert_eq!(first.map(|a| a.seq), Some(5));
    let e = stream.message().await.expect_err("rejected");
    assert_eq!(e.code(), Code::InvalidArgument);
    let text = s.telemetry.encode();
    assert!(
        text.contains("dwell_ingest_rejected_reports_total{reason=\"age\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("dwell_ingest_rejected_reports_total{reason=\"samples\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("dwell_ingest_rejected_reports_total{reason=\"source\"} 1"),
        "{text}"
    );
    assert_eq!(served(&s.engine), Ok(1.0), "only the valid report counted");
}

#[tokio::test]
async fn goodbye_removes_the_source_at_once() {
    let s = start(None).await;
    let mut client = IngestClient::new(s.channel.clone());
    client.push(report("a", 1, &[3_000])).await.expect("push");
    assert_eq!(served(&s.engine), Ok(3.0));
    let mut bye = report("a", 2, &[]);
    bye.goodbye = true;
    client.push(bye).await.expect("goodbye");
    let e = served(&s.engine).expect_err("gone");
    assert!(e.contains("never seen"), "{e}");
}

#[tokio::test]
async fn inspect_lists_sources_and_explains_the_served_value() {
    let s = start(Some(
        "rules:\n  - {name: seconds, statistic: max, formula: \"value + 1.0\"}\n",
    ))
    .await;
    let mut client = IngestClient::new(s.channel.clone());
    client.push(report("a", 1, &[1_500])).await.expect("push");
    client.push(report("b", 1, &[4_200])).await.expect("push");
    let mut inspect = InspectClient::new(s.channel.clone());
    let list = inspect
        .list_sources(v1::ListSourcesRequest {
            namespace: "ns".into(),
            queue: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    let pods: Vec<&str> = list.sources.iter().map(|s| s.pod.as_str()).collect();
    assert_eq!(pods, ["a", "b"]);
    assert!(list.sources[0].peer.starts_with("127.0.0.1:"));
    assert_eq!(list.sources[1].samples, 1);
    let ex = inspect
        .explain(v1::ExplainRequest {
            metric: "seconds".into(),
            namespace: "ns".into(),
            kind: "object".into(),
            name: "binder".into(),
            ..Default::default()
        })
        .await
        .expect("explain")
        .into_inner();
    let served = served(&s.engine).expect("value");
    assert_eq!(served, 6.0, "ceil(4.2 + 1)");
    assert_eq!(ex.value, "6");
    assert_eq!(ex.rule, "seconds");
    assert_eq!(ex.inputs.len(), 2);
    assert_eq!(ex.observed_at_ms, T0);
    let last = ex.steps.last().expect("steps");
    assert_eq!(last.value, served);
    assert!(
        ex.steps
            .iter()
            .any(|st| st.description.contains("formula `value + 1.0`"))
    );
    let e = inspect
        .explain(v1::ExplainRequest {
            metric: "seconds".into(),
            namespace: "ns".into(),
            kind: "bogus".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad kind");
    assert_eq!(e.code(), Code::InvalidArgument);
}

/// Explain names the object exactly as serving does: the served 404 quotes the same object
/// (it used to say `object ns/binder` where serving said `deployments.apps ns/binder`).
#[tokio::test]
async fn explain_describes_the_object_exactly_as_served() {
    let s = start(None).await;
    let mut inspect = InspectClient::new(s.channel.clone());
    let explain = |kind: &str, resource: &str, name: &str| v1::ExplainRequest {
        metric: "seconds".into(),
        namespace: "ns".into(),
        kind: kind.into(),
        resource: resource.into(),
        name: name.into(),
        ..Default::default()
    };
    let cases = [
        (
            explain("object", "", "binder"),
            "deployments.apps",
            "binder",
            "deployments.apps ns/binder",
        ),
        (
            explain("object", "statefulsets.apps", "db"),
            "statefulsets.apps",
            "db",
            "statefulsets.apps ns/db",
        ),
        (explain("pods", "", "p-1"), "pods", "p-1", "pods ns/p-1"),
        (explain("object", "nodes", "n1"), "nodes", "n1", "nodes n1"),
    ];
    for (request, resource, name, object) in cases {
        let ex = inspect
            .explain(request)
            .await
            .expect("explain")
            .into_inner();
        assert_eq!(ex.object, object);
        // Nothing has reported: serving answers 404 about the very same object.
        let query = CustomQuery::new(
            "seconds".into(),
            resource.into(),
            Some("ns".into()),
            ObjectRef::Named(name.into()),
            Selector::default(),
        )
        .expect("query");
        match s.engine.custom(&query) {
            Err(ProviderError::NotFound { object: served, .. }) => assert_eq!(served, ex.object),
            other => panic!("expected a 404 for {object}, got {other:?}"),
        }
        assert!(ex.value.is_empty() && !ex.error.is_empty(), "{ex:?}");
    }
    let ex = inspect
        .explain(v1::ExplainRequest {
            kind: "external".into(),
            ..explain("", "", "")
        })
        .await
        .expect("explain")
        .into_inner();
    assert_eq!(ex.object, "external metric in namespace ns");
    // A namespaced kind needs the namespace; the error says so.
    let e = inspect
        .explain(v1::ExplainRequest {
            namespace: String::new(),
            ..explain("pods", "", "p")
        })
        .await
        .expect_err("no namespace");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("namespace is required"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn health_serves_and_shutdown_ends_open_streams() {
    let s = start(None).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "dwell.v1.Ingest".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // A long-lived stream that never ends on its own.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut client = IngestClient::new(s.channel.clone());
    let mut acks = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    tx.send(report("a", 1, &[1])).await.expect("send");
    assert!(acks.message().await.expect("ack").is_some());
    s.shutdown.cancel();
    // The server ends the stream and stops, although the client keeps its side open.
    assert!(acks.message().await.map(|m| m.is_none()).unwrap_or(true));
    s.task.await.expect("server stopped");
    drop(tx);
}
