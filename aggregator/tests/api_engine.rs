//! The real router over the real engine (rules from YAML, a window fed with known ages, a manual
//! clock), through `kubectl get --raw` and the TLS accept loop, where the engine behaves unlike
//! the fake provider the other `api_*` tests use: discovery lists exactly the rules' metrics and
//! resources (external ones under external.metrics.k8s.io), before any source has reported; a
//! namespaced request is answered from that namespace's sources only, with
//! `describedObject.namespace` set; a source silent past `stale_after` stops counting, and when
//! none is left the answer is a 404 `Status` saying stale since when; `on_missing: {fallback: N}`
//! serves N; a Pods request with a labelSelector gets one item per matching pod. Every value is
//! the rule applied to known ages (`statistic: max`, `unit: milliseconds`), so it is exact.
mod api_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use api_support::Server;
use dwell_aggregator::clock::ManualClock;
use dwell_aggregator::engine::Engine;
use dwell_aggregator::window::{Ages, Observation, SourceKey, WindowStore};
use serde_json::{Value, json};

const B1: &str = "/apis/custom.metrics.k8s.io/v1beta1";
const B2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1";

/// 2026-01-15T10:04:05Z, the fixtures' observation time.
const T0: i64 = 1_768_471_445_000;
const T0_TEXT: &str = "2026-01-15T10:04:05Z";

/// `wait_ms`: the longest age of the last minute, in milliseconds, the worst source's; listed for
/// pods and deployments and served as an external metric. `backlog_ms`: the same, for pods and
/// services only, not external, and 250 when there is no fresh data.
const RULES: &str = r#"
stale_after: 10s
rules:
  - name: wait_ms
    window: 60s
    statistic: max
    combine: max
    unit: milliseconds
    stall_after: "off"
    resources: [deployments.apps]
  - name: backlog_ms
    window: 60s
    statistic: max
    unit: milliseconds
    stall_after: "off"
    on_missing: {fallback: 250}
    resources: [services]
    external: false
"#;
/// The rules' (only) window.
const WINDOW_MS: i64 = 60_000;

/// The engine served over HTTPS, its window, and the time it reads.
struct Served {
    server: Server<Engine>,
    store: Arc<WindowStore>,
    clock: Arc<ManualClock>,
    now_ms: i64,
    seq: u64,
}

impl Served {
    async fn start() -> Self {
        let rules = dwell_aggregator::config::parse(RULES).expect("valid rules");
        let clock = ManualClock::new(T0);
        let store = Arc::new(WindowStore::new(WINDOW_MS));
        let engine = Arc::new(Engine::new(rules, store.clone(), clock.clone()));
        Self {
            server: Server::serve(engine).await,
            store,
            clock,
            now_ms: T0,
            seq: 0,
        }
    }

    /// Moves the engine's clock forward.
    fn advance(&mut self, ms: i64) {
        self.clock.advance(ms);
        self.now_ms += ms;
    }

    /// A report from `ns/pod` (labelled `app`) on `queue`: deliveries observed now with these
    /// ages.
    fn report(&mut self, ns: &str, pod: &str, app: &str, queue: &str, ages_ms: &[i64]) {
        self.seq += 1;
        let now = self.now_ms;
        let obs = Observation {
            key: SourceKey {
                namespace: ns.into(),
                pod: pod.into(),
                queue: queue.into(),
                vhost: "/".into(),
            },
            labels: BTreeMap::from([("app".to_string(), app.to_string())]),
            peer: "127.0.0.1:1".into(),
            instance: 1,
            seq: self.seq,
            ages: Ages::Samples(ages_ms.iter().map(|&age| (age, now, false)).collect()),
            queue_state: None,
            counters: None,
        };
        self.store.ingest(obs, now);
    }

    async fn get(&self, path: &str) -> Value {
        self.server.get(path).await
    }

    /// kubectl's error text for a request that must fail.
    async fn get_err(&self, path: &str) -> String {
        self.server.get_err(path).await
    }

    /// The `Status` body of a request that must answer `code`.
    async fn status(&self, path: &str, code: u16) -> Value {
        let r = self.server.curl(path, &[], &[]).await;
        assert_eq!(r.status, code, "{path}: {r:?}");
        let status: Value = serde_json::from_str(&r.body).expect("Status JSON");
        assert_eq!(status["kind"], "Status", "{status}");
        assert_eq!(status["code"], code, "{status}");
        status
    }
}

/// `(describedObject.name, value)` of every item, in order.
fn values(list: &Value) -> Vec<(String, String)> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {list}"))
        .iter()
        .map(|i| {
            let name = i["describedObject"]["name"]
                .as_str()
                .or_else(|| i["metricName"].as_str())
                .unwrap_or_else(|| panic!("an item without a name: {i}"));
            let value = i["value"]
                .as_str()
                .unwrap_or_else(|| panic!("an item without a value: {i}"));
            (name.to_string(), value.to_string())
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// `name → namespaced` of a discovery resource list.
fn resources(list: &Value) -> BTreeMap<String, bool> {
    list["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no resources in {list}"))
        .iter()
        .map(|r| {
            let name = r["name"].as_str().expect("resource name").to_string();
            let namespaced = r["namespaced"].as_bool().expect("namespaced flag");
            (name, namespaced)
        })
        .collect()
}

/// Three pods in `shop` (two `app=binder` on queue q, one `app=other` on q2) and one `app=binder`
/// pod in `other` with the longest age of all, all reporting now.
fn shop_and_other(s: &mut Served) {
    s.report("shop", "shop-a", "binder", "q", &[1_200, 3_400]);
    s.report("shop", "shop-b", "binder", "q", &[2_500]);
    s.report("shop", "shop-c", "other", "q2", &[800]);
    s.report("other", "other-a", "binder", "q", &[9_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_exactly_the_rules_metrics_and_resources() {
    // No source has reported anything: the rules alone decide what is listed.
    let s = Served::start().await;
    let custom: BTreeMap<String, bool> = [
        ("pods/wait_ms", true),
        ("deployments.apps/wait_ms", true),
        ("namespaces/wait_ms", false),
        ("pods/backlog_ms", true),
        ("services/backlog_ms", true),
        ("namespaces/backlog_ms", false),
    ]
    .into_iter()
    .map(|(n, ns)| (n.to_string(), ns))
    .collect();
    for version in [B1, B2] {
        let list = s.get(version).await;
        assert_eq!(list["kind"], "APIResourceList", "{list}");
        assert_eq!(resources(&list), custom, "{version}: {list}");
    }
    let external = s.get(EXT).await;
    assert_eq!(
        resources(&external),
        BTreeMap::from([("wait_ms".to_string(), true)]),
        "only the external rule: {external}"
    );
    assert_eq!(
        external["resources"][0]["kind"], "ExternalMetricValueList",
        "{external}"
    );
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_requests_answer_from_that_namespace_only() {
    let mut s = Served::start().await;
    shop_and_other(&mut s);

    // The Deployment in `shop`: the worst of shop's three sources (3.4 s), not other-a's 9 s.
    let object = s
        .get(&format!(
            "{B2}/namespaces/shop/deployments.apps/binder/wait_ms"
        ))
        .await;
    assert_eq!(
        object,
        json!({
            "kind": "MetricValueList",
            "apiVersion": "custom.metrics.k8s.io/v1beta2",
            "metadata": {},
            "items": [{
                "describedObject": {
                    "kind": "Deployment",
                    "namespace": "shop",
                    "name": "binder",
                    "apiVersion": "apps/v1"
                },
                "metric": {"name": "wait_ms", "selector": null},
                "timestamp": T0_TEXT,
                "windowSeconds": 60,
                "value": "3400"
            }]
        })
    );
    // The same name in `other`: other's only source.
    let other = s
        .get(&format!(
            "{B1}/namespaces/other/deployments.apps/binder/wait_ms"
        ))
        .await;
    assert_eq!(values(&other), pairs(&[("binder", "9000")]), "{other}");
    assert_eq!(
        other["items"][0]["describedObject"]["namespace"], "other",
        "{other}"
    );
    assert_eq!(other["items"][0]["window"], 60, "{other}");
    // metricLabelSelector narrows shop's sources to queue q2.
    let q2 = s
        .get(&format!(
            "{B2}/namespaces/shop/deployments.apps/binder/wait_ms?metricLabelSelector=queue%3Dq2"
        ))
        .await;
    assert_eq!(values(&q2), pairs(&[("binder", "800")]), "{q2}");

    // One pod by name, in its namespace; the same pod name asked in another namespace has no data.
    let pod = s
        .get(&format!("{B2}/namespaces/shop/pods/shop-a/wait_ms"))
        .await;
    assert_eq!(values(&pod), pairs(&[("shop-a", "3400")]), "{pod}");
    assert_eq!(
        pod["items"][0]["describedObject"],
        json!({"kind": "Pod", "namespace": "shop", "name": "shop-a", "apiVersion": "v1"})
    );
    let elsewhere = s
        .get_err(&format!("{B2}/namespaces/other/pods/shop-a/wait_ms"))
        .await;
    assert!(
        elsewhere.contains("(NotFound)") && elsewhere.contains("never seen"),
        "{elsewhere}"
    );
    // A namespace without sources: 404, however many sources other namespaces have.
    let empty = s
        .status(
            &format!("{B1}/namespaces/empty/deployments.apps/binder/wait_ms"),
            404,
        )
        .await;
    let message = empty["message"].as_str().expect("message");
    assert!(
        message.contains("wait_ms") && message.contains("never seen"),
        "{empty}"
    );

    // The namespace itself (root-scoped): its own sources.
    let ns = s
        .get(&format!("{B2}/namespaces/shop/metrics/wait_ms"))
        .await;
    assert_eq!(values(&ns), pairs(&[("shop", "3400")]), "{ns}");
    assert_eq!(
        ns["items"][0]["describedObject"],
        json!({"kind": "Namespace", "name": "shop", "apiVersion": "v1"})
    );

    // External: one combined item per request (not one per series), from the namespace's sources.
    let all = s.get(&format!("{EXT}/namespaces/shop/wait_ms")).await;
    assert_eq!(values(&all), pairs(&[("wait_ms", "3400")]), "{all}");
    assert_eq!(
        all["items"][0]["metricLabels"],
        json!({"vhost": "/"}),
        "queues differ, so only the shared vhost labels the combined series: {all}"
    );
    let narrowed = s
        .get(&format!(
            "{EXT}/namespaces/shop/wait_ms?labelSelector=queue%3Dq2"
        ))
        .await;
    assert_eq!(
        narrowed["items"],
        json!([{
            "metricName": "wait_ms",
            "metricLabels": {"queue": "q2", "vhost": "/"},
            "timestamp": T0_TEXT,
            "window": 60,
            "value": "800"
        }])
    );
    let in_other = s.get(&format!("{EXT}/namespaces/other/wait_ms")).await;
    assert_eq!(
        values(&in_other),
        pairs(&[("wait_ms", "9000")]),
        "{in_other}"
    );
    // backlog_ms is not external: 404 although it is a rule.
    let not_external = s
        .get_err(&format!("{EXT}/namespaces/shop/backlog_ms"))
        .await;
    assert!(
        not_external.contains("(NotFound)") && not_external.contains("no rule serves"),
        "{not_external}"
    );
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_with_a_label_selector_get_one_item_per_matching_pod() {
    let mut s = Served::start().await;
    shop_and_other(&mut s);
    for (version, star) in [(B1, "%2A"), (B2, "*")] {
        let binders = s
            .get(&format!(
                "{version}/namespaces/shop/pods/{star}/wait_ms?labelSelector=app%3Dbinder"
            ))
            .await;
        // Each pod its own value (no combine), shop's pods only, sorted by name.
        assert_eq!(
            values(&binders),
            pairs(&[("shop-a", "3400"), ("shop-b", "2500")]),
            "{version}: {binders}"
        );
        for item in binders["items"].as_array().expect("items") {
            assert_eq!(item["describedObject"]["namespace"], "shop", "{item}");
            assert_eq!(item["describedObject"]["kind"], "Pod", "{item}");
            assert_eq!(item["timestamp"], T0_TEXT, "{item}");
        }
    }
    // Set-based selectors work the same way.
    let others = s
        .get(&format!(
            "{B2}/namespaces/shop/pods/*/wait_ms?labelSelector=app+notin+%28binder%29"
        ))
        .await;
    assert_eq!(values(&others), pairs(&[("shop-c", "800")]), "{others}");
    // No selector: every pod of the namespace.
    let every = s.get(&format!("{B2}/namespaces/shop/pods/*/wait_ms")).await;
    assert_eq!(
        values(&every),
        pairs(&[("shop-a", "3400"), ("shop-b", "2500"), ("shop-c", "800")]),
        "{every}"
    );
    // No pod with data matches: a 404 (the fake answers an empty list).
    let nobody = s
        .status(
            &format!("{B2}/namespaces/shop/pods/%2A/wait_ms?labelSelector=app%3Dnobody"),
            404,
        )
        .await;
    assert_eq!(nobody["reason"], "NotFound", "{nobody}");
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_silent_past_stale_after_is_a_404_saying_since_when() {
    let mut s = Served::start().await;
    let deployment = format!("{B2}/namespaces/shop/deployments.apps/binder/wait_ms");
    s.report("shop", "shop-a", "binder", "q", &[4_000]);
    s.report("shop", "shop-b", "binder", "q", &[2_000]);
    assert_eq!(
        values(&s.get(&deployment).await),
        pairs(&[("binder", "4000")])
    );

    // 6 s on only shop-b reports (a shorter age); at 12 s shop-a has been silent past the
    // 10 s stale_after and no longer counts, though its 4 s age is still inside the window.
    s.advance(6_000);
    s.report("shop", "shop-b", "binder", "q", &[1_000]);
    s.advance(6_000);
    let live = s.get(&deployment).await;
    assert_eq!(values(&live), pairs(&[("binder", "2000")]), "{live}");
    assert_eq!(
        live["items"][0]["timestamp"], "2026-01-15T10:04:11Z",
        "stamped with shop-b's last observation, T0 + 6 s: {live}"
    );
    let pod_a = s
        .status(&format!("{B2}/namespaces/shop/pods/shop-a/wait_ms"), 404)
        .await;
    assert_eq!(pod_a["reason"], "NotFound", "{pod_a}");
    let message = pod_a["message"].as_str().expect("message");
    assert!(
        message.contains("stale since 2026-01-15T10:04:15Z"),
        "shop-a last reported at T0, stale from T0 + 10 s: {message}"
    );

    // At 17 s shop-b is stale too: the Deployment gets a 404 that says since when.
    s.advance(5_000);
    let stale = s.status(&deployment, 404).await;
    let message = stale["message"].as_str().expect("message");
    assert!(
        message.contains(
            "the server could not find the metric wait_ms for deployments.apps shop/binder"
        ) && message.contains("stale since 2026-01-15T10:04:21Z"),
        "shop-b last reported at T0 + 6 s, stale from T0 + 16 s: {message}"
    );
    let err = s.get_err(&deployment).await;
    assert!(
        err.contains("(NotFound)") && err.contains("stale since"),
        "{err}"
    );

    // Reporting again brings the source back at once.
    s.report("shop", "shop-a", "binder", "q", &[300]);
    let back = s.get(&deployment).await;
    assert_eq!(
        values(&back),
        pairs(&[("binder", "4000")]),
        "shop-a live again, its 4 s age still in the window: {back}"
    );
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_missing_fallback_serves_its_value() {
    let mut s = Served::start().await;
    let service = format!("{B2}/namespaces/shop/services/binder/backlog_ms");
    // Nothing ever reported: the fallback, stamped now; the rule without one is a 404.
    let never = s.get(&service).await;
    assert_eq!(values(&never), pairs(&[("binder", "250")]), "{never}");
    assert_eq!(never["items"][0]["timestamp"], T0_TEXT, "{never}");
    assert_eq!(
        never["items"][0]["describedObject"],
        json!({"kind": "Service", "namespace": "shop", "name": "binder", "apiVersion": "v1"})
    );
    let pod = s
        .get(&format!("{B1}/namespaces/shop/pods/shop-a/backlog_ms"))
        .await;
    assert_eq!(values(&pod), pairs(&[("shop-a", "250")]), "{pod}");
    s.status(
        &format!("{B2}/namespaces/shop/services/binder/wait_ms"),
        404,
    )
    .await;

    // Data: the rule's value. Silent past stale_after: the fallback again, stamped at that time.
    s.report("shop", "shop-a", "binder", "q", &[1_800]);
    assert_eq!(values(&s.get(&service).await), pairs(&[("binder", "1800")]));
    s.advance(11_000);
    let stale = s.get(&service).await;
    assert_eq!(values(&stale), pairs(&[("binder", "250")]), "{stale}");
    assert_eq!(
        stale["items"][0]["timestamp"], "2026-01-15T10:04:16Z",
        "{stale}"
    );
    // A Pods request over a selector has no single object to stand in for: no fallback.
    let selected = s
        .status(
            &format!("{B2}/namespaces/shop/pods/%2A/backlog_ms?labelSelector=app%3Dbinder"),
            404,
        )
        .await;
    assert!(
        selected["message"]
            .as_str()
            .is_some_and(|m| m.contains("stale since 2026-01-15T10:04:15Z")),
        "{selected}"
    );
    s.server.stop().await;
}
