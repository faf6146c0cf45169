//! Publisher → RabbitMQ → consumers with sidecars → aggregator → `kubectl get --raw`: the values
//! served on the Object, Pods and External APIs are the configured rules applied to the known
//! timestamps of the published messages, and the HPA model reads them as the HPA would.

use std::collections::BTreeMap;
use std::time::Duration;

use dwell_e2e::aggregator::Aggregator;
use dwell_e2e::broker;
use dwell_e2e::fleet::{Fleet, FleetConfig};
use dwell_e2e::hpa::behavior::ClockScale;
use dwell_e2e::hpa::client::{self, Reading};
use dwell_e2e::hpa::{Controller, HpaSpec, MetricSource, MetricSpec, ScaleState, Target};
use dwell_e2e::poll;
use dwell_e2e::publisher::{Publisher, now_ms};
use dwell_e2e::sidecar::SidecarConfig;
use serde_json::Value;

const RULES: &str = r#"
stale_after: 60s
rules:
  - name: wait_max
    window: 60s
    statistic: max
    combine: max
    stall_after: "off"
  - name: wait_mean
    window: 60s
    statistic: mean
    combine: max
    stall_after: "off"
  - name: deliveries
    window: 60s
    statistic: count
    combine: sum
    stall_after: "off"
"#;

/// Ages (ms) the messages of each queue have when published. Each is 0.3 s past a whole second,
/// so `ceil` gives the same answer for any delivery latency under 0.6 s and within the
/// summary's 1 % error.
const AGES_A: [u64; 3] = [12_300, 22_300, 32_300];
const AGES_B: [u64; 2] = [5_300, 7_300];

fn fleet(name: &str, url: &str, queue: &str, agg: &Aggregator) -> Fleet {
    let sidecar = SidecarConfig::binder(agg.grpc_addr, queue, url);
    let processing = Duration::from_millis(10);
    Fleet::new(FleetConfig::new(
        name,
        url,
        queue,
        processing,
        Some(sidecar),
    ))
}

async fn get(agg: &Aggregator, path: &str) -> Result<Value, String> {
    agg.kubectl.get_raw(path).await.json()
}

/// `{name or queue label: value}` of a list answer.
fn items(list: &Value) -> BTreeMap<String, String> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let key = i["describedObject"]["name"]
                .as_str()
                .or_else(|| i["metricLabels"]["queue"].as_str())
                .unwrap_or("?")
                .to_owned();
            (key, i["value"].as_str().unwrap_or("?").to_owned())
        })
        .collect()
}

const CUSTOM: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jobs";
const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/jobs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_values_match_the_rules_applied_to_known_timestamps() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(url) = broker::require("pipeline").await else {
        return;
    };
    let agg = Aggregator::start_with_rules(RULES)
        .await
        .expect("aggregator starts");
    let (qa, qb) = (broker::unique_queue("a"), broker::unique_queue("b"));
    let mut fa = fleet("binder-a", &url, &qa, &agg);
    let mut fb = fleet("binder-b", &url, &qb, &agg);
    fa.scale_to(1).await.expect("pod a starts");
    fb.scale_to(1).await.expect("pod b starts");

    let mut seq = 0;
    for (queue, ages) in [(&qa, &AGES_A[..]), (&qb, &AGES_B[..])] {
        let mut publisher = Publisher::new(&url, queue);
        for age in ages {
            publisher
                .publish_at(seq, now_ms() - age)
                .await
                .expect("published and confirmed");
            seq += 1;
        }
        publisher.close().await;
    }
    poll::until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            match (fa.ledger.distinct(), fb.ledger.distinct()) {
                (3, 2) => Ok(()),
                seen => Err(format!("consumed {seen:?}")),
            }
        },
    )
    .await
    .expect("every message consumed");
    // The count rule tells when every delivery has reached the aggregator.
    poll::until(
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let v = get(
                &agg,
                &format!("{CUSTOM}/deployments.apps/binder/deliveries"),
            )
            .await?;
            match items(&v).get("binder").map(String::as_str) {
                Some("5") => Ok(()),
                other => Err(format!("deliveries = {other:?}")),
            }
        },
    )
    .await
    .expect("all five deliveries reported");

    // Object: max over sources of each source's max age → ceil(32.3) = 33; narrowed to queue B: 8.
    let object = get(&agg, &format!("{CUSTOM}/deployments.apps/binder/wait_max"))
        .await
        .expect("object");
    assert_eq!(
        items(&object).get("binder").map(String::as_str),
        Some("33"),
        "{object}"
    );
    let only_b = get(
        &agg,
        &format!(
            "{CUSTOM}/deployments.apps/binder/wait_max?metricLabelSelector=queue%3D{}",
            qb
        ),
    )
    .await
    .expect("object narrowed");
    assert_eq!(
        items(&only_b).get("binder").map(String::as_str),
        Some("8"),
        "{only_b}"
    );

    // Pods: each pod its own value (max, and mean: ceil(22.3) = 23, ceil(6.3) = 7).
    let pods = get(
        &agg,
        &format!("{CUSTOM}/pods/%2A/wait_max?labelSelector=app%3Dbinder"),
    )
    .await
    .expect("pods");
    let want: BTreeMap<String, String> = [("binder-a-0", "33"), ("binder-b-0", "8")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(items(&pods), want, "{pods}");
    let mean = get(
        &agg,
        &format!("{CUSTOM}/pods/%2A/wait_mean?labelSelector=app%3Dbinder"),
    )
    .await
    .expect("pods mean");
    let want: BTreeMap<String, String> = [("binder-a-0", "23"), ("binder-b-0", "7")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(items(&mean), want, "{mean}");

    // External: one series per queue; the HPA sums whatever comes back.
    let ext_a = get(
        &agg,
        &format!("{EXTERNAL}/wait_max?labelSelector=queue%3D{qa}"),
    )
    .await
    .expect("external a");
    assert_eq!(
        items(&ext_a).get(&qa).map(String::as_str),
        Some("33"),
        "{ext_a}"
    );
    // Without a selector the sources combine (`combine: max`) into the answer's items; the HPA
    // sums the items, which must give the rule's answer over both queues: 33.
    let ext_all = get(&agg, &format!("{EXTERNAL}/wait_max"))
        .await
        .expect("external all");
    let total: i64 = items(&ext_all)
        .values()
        .map(|v| v.parse::<i64>().unwrap_or(-1_000))
        .sum();
    assert_eq!(total, 33, "{ext_all}");

    // Every value is fresh: observed within the last few seconds, not a replayed old number.
    let now = time::OffsetDateTime::now_utc();
    for list in [&object, &pods, &ext_all] {
        let items = list["items"].as_array().expect("a list with items");
        assert!(
            !items.is_empty(),
            "no item to check the timestamp of: {list}"
        );
        for item in items {
            let ts = time::OffsetDateTime::parse(
                item["timestamp"].as_str().unwrap_or(""),
                &time::format_description::well_known::Rfc3339,
            )
            .expect("RFC 3339 timestamp");
            let age = (now - ts).whole_seconds();
            assert!(
                (-2..=10).contains(&age),
                "timestamp {ts} is {age}s old: {item}"
            );
        }
    }

    // The HPA model reads the same API: External sums to 33; against an average of 10 per pod
    // it wants ceil(33 / 10) = 4 replicas; an Object Value target of 10 with 2 ready pods wants
    // ceil(2 × 33 / 10) = 7, capped by the scale-up limit of max(2 + 4, 2 × 2) = 6.
    let mut spec = HpaSpec::new("jobs", "app=binder", (1, 20), ClockScale::REAL);
    spec.metrics = vec![
        MetricSpec {
            metric: "wait_max".into(),
            selector: None,
            source: MetricSource::External,
            target: Target::AverageValue(10_000),
        },
        MetricSpec::deployment("wait_max", "binder", Target::Value(10_000)),
    ];
    let pods_now: Vec<_> = fa.hpa_pods().into_iter().chain(fb.hpa_pods()).collect();
    let scale = ScaleState {
        spec_replicas: 2,
        status_replicas: 2,
        pods: pods_now,
    };
    let mut hpa = Controller::new(spec);
    let (decision, readings) = hpa
        .sync(&agg.kubectl, std::time::Instant::now(), &scale)
        .await;
    assert!(
        matches!(&readings[0], Ok(Reading::External { values, .. }) if values.iter().sum::<i64>() == 33_000),
        "{readings:?}"
    );
    assert_eq!(decision.proposals, vec![Ok((4, 16_500)), Ok((7, 33_000))]);
    assert_eq!(decision.desired, 6);
    assert!(
        client::request_path(&hpa.spec.metrics[0], "jobs", "v1beta2", "").ends_with("/wait_max")
    );

    fa.shutdown().await;
    fb.shutdown().await;
    broker::delete(&url, &qa).await;
    broker::delete(&url, &qb).await;
    agg.stop(Duration::from_secs(10)).await;
}
