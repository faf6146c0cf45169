//! Metric value routes through `kubectl get --raw` against the in-process API over the fake
//! provider (`api_support::memstore`: values served as stored, so this is the plumbing, not the
//! engine): both custom versions, external, `%2A` + labelSelector, metricLabelSelector,
//! case-insensitive external names, and the fixtures' documents field by field.
mod api_support;

use std::time::Duration;

use api_support::memstore::Sample;
use api_support::{Server, assert_same_shape, fixture, fixture_time};
use serde_json::json;

const B1: &str = "/apis/custom.metrics.k8s.io/v1beta1";
const B2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1";
const METRIC: &str = "queue_dwell_seconds";

/// The fixtures' data: two binder pods (1.5 and 2, 30 s window), the binder Deployment (42,
/// series queue=a), the namespace (7), an external series (42, queue=a).
async fn fixture_server() -> Server {
    let server = Server::start().await;
    let s = &server.provider;
    let t = fixture_time();
    let w = Some(Duration::from_secs(30));
    for (pod, value, queue) in [
        ("binder-7d9f8c6b5d-2xk4q", 1.5, "a"),
        ("binder-7d9f8c6b5d-9hq7m", 2.0, "b"),
    ] {
        s.push_custom(
            METRIC,
            "pods",
            Some("default"),
            pod,
            Sample::new(value, t, w).label("queue", queue),
        );
        s.set_object_labels("pods", Some("default"), pod, &[("app", "binder")]);
    }
    s.push_custom(
        METRIC,
        "pods",
        Some("default"),
        "other-1",
        Sample::new(9.0, t, w),
    );
    s.set_object_labels("pods", Some("default"), "other-1", &[("app", "other")]);
    s.push_custom(
        METRIC,
        "deployments.apps",
        Some("default"),
        "binder",
        Sample::new(42.0, t, None).label("queue", "a"),
    );
    s.push_custom(
        METRIC,
        "deployments.apps",
        Some("default"),
        "binder",
        Sample::new(5.0, t, None).label("queue", "b"),
    );
    s.push_custom(
        METRIC,
        "namespaces",
        None,
        "default",
        Sample::new(7.0, t, None),
    );
    s.push_custom(METRIC, "nodes", None, "node-1", Sample::new(0.25, t, None));
    s.push_external(
        "default",
        METRIC,
        Sample::new(42.0, t, w).label("queue", "a"),
    );
    s.push_external(
        "default",
        METRIC,
        Sample::new(3.0, t, w).label("queue", "b"),
    );
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_wildcard_matches_fixture_exactly_in_both_versions() {
    let server = fixture_server().await;
    let path = |base: &str| {
        format!("{base}/namespaces/default/pods/%2A/{METRIC}?labelSelector=app%3Dbinder")
    };
    let v1 = server.get(&path(B1)).await;
    assert_eq!(v1, fixture("v1beta1-metricvaluelist.json"));
    // The v1beta2 fixture's second item carries `queue in (a,b)`; ask with that metric selector
    // (both series match) and the whole document must equal the fixture with it on both items.
    let v2 = server
        .get(&format!(
            "{}&metricLabelSelector=queue+in+%28a%2Cb%29",
            path(B2)
        ))
        .await;
    let mut want = fixture("v1beta2-metricvaluelist.json");
    want["items"][0]["metric"]["selector"] = want["items"][1]["metric"]["selector"].clone();
    assert_eq!(v2, want);
    let plain = server.get(&path(B2)).await;
    assert_eq!(
        plain["items"][0]["metric"],
        json!({"name": METRIC, "selector": null})
    );
    // A literal `*` works too, and set-based labelSelector selects the same pods.
    let star = server
        .get(&format!(
            "{B1}/namespaces/default/pods/*/{METRIC}?labelSelector=app+in+%28binder%29"
        ))
        .await;
    assert_eq!(star, v1);
    // No selector: every pod, including the one not labelled app=binder.
    let all = server
        .get(&format!("{B1}/namespaces/default/pods/%2A/{METRIC}"))
        .await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(3));
    // A selector that matches nothing: 200 with an empty list, as the fixture.
    let none = server
        .get(&format!(
            "{B1}/namespaces/default/pods/%2A/{METRIC}?labelSelector=app%3Dnobody"
        ))
        .await;
    assert_eq!(none, fixture("v1beta1-metricvaluelist-empty.json"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_metric_with_metric_label_selector() {
    let server = fixture_server().await;
    let v1 = server
        .get(&format!(
            "{B1}/namespaces/default/deployments.apps/binder/{METRIC}?metricLabelSelector=queue%3Da"
        ))
        .await;
    assert_eq!(v1, fixture("v1beta1-metricvaluelist-object.json"));
    let v2 = server
        .get(&format!(
            "{B2}/namespaces/default/deployments.apps/binder/{METRIC}?metricLabelSelector=queue%3Da"
        ))
        .await;
    let mut want = fixture("v1beta2-metricvaluelist-object.json");
    want["items"][0]["metric"]["selector"] = json!({"matchLabels": {"queue": "a"}});
    assert_eq!(v2, want);
    // Set-based metric selector picks the other series.
    let b = server
        .get(&format!(
            "{B2}/namespaces/default/deployments.apps/binder/{METRIC}?metricLabelSelector=queue+notin+%28a%29"
        ))
        .await;
    assert_eq!(b["items"][0]["value"], "5");
    assert_eq!(
        b["items"][0]["metric"]["selector"],
        json!({"matchExpressions": [{"key": "queue", "operator": "NotIn", "values": ["a"]}]})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_with_two_series_is_a_provider_bug_500() {
    let server = fixture_server().await;
    // Without metricLabelSelector the store answers both series of the Deployment.
    let err = server
        .get_err(&format!(
            "{B1}/namespaces/default/deployments.apps/binder/{METRIC}"
        ))
        .await;
    assert!(
        err.contains("InternalError") || err.contains("2 values"),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_metric_matches_fixture() {
    let server = fixture_server().await;
    let v1 = server
        .get(&format!("{B1}/namespaces/default/metrics/{METRIC}"))
        .await;
    assert_eq!(v1, fixture("v1beta1-metricvaluelist-namespace.json"));
    let v2 = server
        .get(&format!("{B2}/namespaces/default/metrics/{METRIC}"))
        .await;
    assert_eq!(
        v2["items"][0]["describedObject"],
        json!({"kind": "Namespace", "name": "default", "apiVersion": "v1"})
    );
    assert_eq!(v2["items"][0]["value"], "7");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scoped_objects_root_and_under_a_namespace() {
    let server = fixture_server().await;
    let root = server.get(&format!("{B1}/nodes/node-1/{METRIC}")).await;
    assert_eq!(
        root["items"][0]["describedObject"],
        json!({"kind": "Node", "name": "node-1", "apiVersion": "v1"})
    );
    assert_eq!(root["items"][0]["value"], "250m");
    // What the HPA sends for an Object metric on a Node: the namespace is ignored.
    let namespaced = server
        .get(&format!("{B2}/namespaces/default/nodes/node-1/{METRIC}"))
        .await;
    assert_eq!(namespaced["items"][0]["describedObject"]["name"], "node-1");
    assert!(
        namespaced["items"][0]["describedObject"]
            .get("namespace")
            .is_none()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_metrics_match_fixture_and_ignore_case() {
    let server = fixture_server().await;
    let one = server
        .get(&format!(
            "{EXT}/namespaces/default/{METRIC}?labelSelector=queue%3Da"
        ))
        .await;
    assert_eq!(one, fixture("external-v1beta1.json"));
    let upper = server
        .get(&format!(
            "{EXT}/namespaces/default/Queue_Dwell_SECONDS?labelSelector=queue%3Da"
        ))
        .await;
    assert_eq!(upper, one);
    let both = server
        .get(&format!("{EXT}/namespaces/default/{METRIC}"))
        .await;
    assert_eq!(both["items"].as_array().map(Vec::len), Some(2));
    let in_set = server
        .get(&format!(
            "{EXT}/namespaces/default/{METRIC}?labelSelector=queue+in+%28b%2Cc%29"
        ))
        .await;
    assert_eq!(in_set["items"][0]["metricLabels"], json!({"queue": "b"}));
    let none = server
        .get(&format!(
            "{EXT}/namespaces/default/{METRIC}?labelSelector=queue%3Dz"
        ))
        .await;
    assert_eq!(none, fixture("external-v1beta1-empty.json"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_cases_are_status_objects() {
    let server = fixture_server().await;
    let cases: &[(&str, &str, &str)] = &[
        // (path, kubectl reason, text in the message)
        (
            &format!("{B1}/namespaces/default/pods/%2A/nope"),
            "NotFound",
            "could not find the metric nope for pods default/*",
        ),
        (
            &format!("{B2}/namespaces/default/deployments.apps/ghost/{METRIC}"),
            "NotFound",
            "deployments.apps default/ghost",
        ),
        (
            &format!("{EXT}/namespaces/other/{METRIC}"),
            "NotFound",
            "namespace other",
        ),
        (
            &format!("{B1}/namespaces/default/pods/%2A/{METRIC}?labelSelector=a%3D%28"),
            "BadRequest",
            "unable to parse requirement: found '(', expected: identifier",
        ),
        (
            &format!("{B2}/namespaces/default/pods/x/{METRIC}?metricLabelSelector=a+in+b"),
            "BadRequest",
            "unable to parse requirement",
        ),
        (
            &format!("{EXT}/namespaces/default/{METRIC}?labelSelector=%21%21"),
            "BadRequest",
            "unable to parse requirement",
        ),
        (
            &format!("{B1}/namespaces/default/widgets/w/{METRIC}"),
            "NotFound",
            "unknown resource \"widgets\"",
        ),
        (
            &format!("{B1}/namespaces/default/{METRIC}"),
            "BadRequest",
            "invalid request path",
        ),
        (
            &format!("{B1}/namespaces/Not_A_Namespace/pods/p/{METRIC}"),
            "BadRequest",
            "namespace",
        ),
        (&format!("{B1}/pods/p/{METRIC}"), "BadRequest", "namespaced"),
        (
            &format!("{B1}/blah"),
            "NotFound",
            "could not find the requested resource",
        ),
        (
            &format!("{B1}/nodes/foo"),
            "NotFound",
            "could not find the requested resource",
        ),
        (
            &format!("{B1}/namespaces/ns/pods/bar"),
            "NotFound",
            "could not find the requested resource",
        ),
        (
            &format!("{EXT}/{METRIC}"),
            "NotFound",
            "could not find the requested resource",
        ),
        (
            "/apis/custom.metrics.k8s.io/v2",
            "NotFound",
            "could not find the requested resource",
        ),
        (
            "/nothing/here",
            "NotFound",
            "could not find the requested resource",
        ),
    ];
    for (path, reason, text) in cases {
        let err = server.get_err(path).await;
        assert!(err.contains(&format!("({reason})")), "{path}: {err}");
        assert!(err.contains(text), "{path}: {err}");
    }
    // The body itself is a v1 Status with the right code.
    let raw = server
        .curl(&format!("{B1}/namespaces/default/pods/%2A/nope"), &[], &[])
        .await;
    assert_eq!(raw.status, 404);
    assert_eq!(raw.header("content-type"), Some("application/json"));
    let status: serde_json::Value = serde_json::from_str(&raw.body).expect("Status JSON");
    assert_same_shape(&status, &fixture("status-metric-not-found.json"), "status");
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(status["code"], 404);
    let bad = server
        .curl(
            &format!("{B1}/namespaces/default/pods/%2A/{METRIC}?labelSelector=a%3D%28"),
            &[],
            &[],
        )
        .await;
    let bad: serde_json::Value = serde_json::from_str(&bad.body).expect("Status JSON");
    assert_eq!(bad, fixture("status-bad-request.json"));
    let post = server.curl(B1, &[], &["-X", "POST"]).await;
    assert_eq!(post.status, 405);
    assert!(
        post.body.contains("\"reason\":\"MethodNotAllowed\""),
        "{}",
        post.body
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_under_bounded_route_labels() {
    let server = fixture_server().await;
    for name in ["a", "b", "c"] {
        let err = server
            .get_err(&format!("{B1}/namespaces/default/pods/{name}/nope"))
            .await;
        assert!(err.contains("(NotFound)"), "{name}: {err}");
    }
    let text = server.curl("/metrics", &[], &[]).await.body;
    assert!(
        text.contains("dwell_http_requests_total{route=\"custom_object\",code=\"404\"} 3"),
        "{text}"
    );
    assert!(!text.contains("nope"), "raw paths must not become labels");
    server.stop().await;
}
