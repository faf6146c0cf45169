//! Discovery and OpenAPI against the in-process API over the fake provider (it lists what is
//! stored; `api_engine` checks what the engine lists): legacy documents equal to the fixtures,
//! the never-empty placeholder, aggregated discovery (v2, v2beta1, ETag → 304, 406), and
//! OpenAPI v2/v3 documents that parse and cover the served paths.
mod api_support;

use api_support::memstore::Sample;
use api_support::{Server, assert_same_shape, fixture, fixture_time};
use dwell_aggregator::api::{V2_CONTENT_TYPE, V2BETA1_CONTENT_TYPE};
use serde_json::Value;

const METRIC: &str = "queue_dwell_seconds";

/// Sorts every `resources` array (legacy: by `name`, aggregated: by `resource`).
fn sorted(mut doc: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if let Some(Value::Array(items)) = map.get_mut("resources") {
                    items.sort_by_key(|r| {
                        r.get("name")
                            .or_else(|| r.get("resource"))
                            .map(|n| n.to_string())
                            .unwrap_or_default()
                    });
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut doc);
    doc
}

async fn served() -> Server {
    let server = Server::start().await;
    let t = fixture_time();
    for resource in ["pods", "deployments.apps"] {
        server.provider.push_custom(
            METRIC,
            resource,
            Some("default"),
            "x",
            Sample::new(1.0, t, None),
        );
    }
    server
        .provider
        .push_external("default", METRIC, Sample::new(1.0, t, None));
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_discovery_equals_fixtures() {
    let server = served().await;
    for (path, file) in [
        (
            "/apis/custom.metrics.k8s.io/v1beta1",
            "discovery-v1beta1.json",
        ),
        (
            "/apis/custom.metrics.k8s.io/v1beta2",
            "discovery-v1beta2.json",
        ),
        (
            "/apis/external.metrics.k8s.io/v1beta1",
            "discovery-external-v1beta1.json",
        ),
        (
            "/apis/custom.metrics.k8s.io",
            "apigroup-custom-metrics.json",
        ),
        ("/apis", "apigrouplist.json"),
    ] {
        // Resource order is the provider's; compare as sets.
        assert_eq!(
            sorted(server.get(path).await),
            sorted(fixture(file)),
            "{path}"
        );
    }
    let external_group = server.get("/apis/external.metrics.k8s.io").await;
    assert_eq!(
        external_group["preferredVersion"]["groupVersion"],
        "external.metrics.k8s.io/v1beta1"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_lists_are_never_empty() {
    let server = Server::start().await;
    for path in [
        "/apis/custom.metrics.k8s.io/v1beta1",
        "/apis/custom.metrics.k8s.io/v1beta2",
        "/apis/external.metrics.k8s.io/v1beta1",
    ] {
        let list = server.get(path).await;
        let resources = list["resources"].as_array().expect("resources");
        assert_eq!(resources.len(), 1, "{path}: {list}");
        assert_eq!(resources[0]["verbs"], serde_json::json!(["get"]));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_discovery_v2_v2beta1_etag_and_406() {
    let server = served().await;
    let v2 = server
        .curl("/apis", &[("Accept", V2_CONTENT_TYPE)], &[])
        .await;
    assert_eq!(v2.status, 200, "{v2:?}");
    assert_eq!(v2.header("content-type"), Some(V2_CONTENT_TYPE));
    let doc: Value = serde_json::from_str(&v2.body).expect("JSON");
    // The fixture lists pods and namespaces; we also serve deployments.apps (second).
    let mut want = fixture("aggregated-discovery-v2.json");
    for version in want["items"][0]["versions"].as_array_mut().unwrap() {
        let resources = version["resources"].as_array_mut().unwrap();
        let mut deployments = resources[0].clone();
        deployments["resource"] = "deployments.apps".into();
        resources.insert(1, deployments);
    }
    assert_eq!(sorted(doc.clone()), sorted(want));
    let etag = v2.header("etag").expect("ETag").to_string();

    // kube-aggregator 1.30+ sends both profiles; the first wins. A matching ETag → 304.
    let both = format!("{V2_CONTENT_TYPE},{V2BETA1_CONTENT_TYPE}");
    let cached = server
        .curl("/apis", &[("Accept", &both), ("If-None-Match", &etag)], &[])
        .await;
    assert_eq!(cached.status, 304, "{cached:?}");
    assert_eq!(cached.header("etag"), Some(etag.as_str()));
    assert!(cached.body.is_empty());
    let stale = server
        .curl(
            "/apis",
            &[("Accept", &both), ("If-None-Match", "\"old\"")],
            &[],
        )
        .await;
    assert_eq!(stale.status, 200);

    // 1.27–1.29 ask for v2beta1 only.
    let beta = server
        .curl("/apis", &[("Accept", V2BETA1_CONTENT_TYPE)], &[])
        .await;
    assert_eq!(beta.status, 200);
    assert_eq!(beta.header("content-type"), Some(V2BETA1_CONTENT_TYPE));
    let beta_doc: Value = serde_json::from_str(&beta.body).expect("JSON");
    assert_eq!(beta_doc["apiVersion"], "apidiscovery.k8s.io/v2beta1");
    assert_eq!(beta_doc["items"], doc["items"]);
    assert_ne!(beta.header("etag"), Some(etag.as_str()));

    // Nothing we can produce → 406 Status.
    for accept in [
        "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList",
        "application/vnd.kubernetes.protobuf",
        "text/html",
    ] {
        let refused = server.curl("/apis", &[("Accept", accept)], &[]).await;
        assert_eq!(refused.status, 406, "{accept}");
        let status: Value = serde_json::from_str(&refused.body).expect("Status");
        assert_eq!(status["reason"], "NotAcceptable");
    }
    // Plain JSON (kubectl, browsers) still gets the legacy APIGroupList.
    let legacy = server
        .curl("/apis", &[("Accept", "application/json, */*")], &[])
        .await;
    assert_eq!(legacy.header("content-type"), Some("application/json"));
    assert!(legacy.body.contains("\"APIGroupList\""));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_scopes_are_consistent_per_parent() {
    let server = Server::start().await;
    let t = fixture_time();
    server
        .provider
        .push_custom("a", "nodes", None, "n", Sample::new(1.0, t, None));
    server
        .provider
        .push_custom("b", "pods", Some("x"), "p", Sample::new(1.0, t, None));
    let v2 = server
        .curl("/apis", &[("Accept", V2_CONTENT_TYPE)], &[])
        .await;
    let doc: Value = serde_json::from_str(&v2.body).expect("JSON");
    let resources = doc["items"][0]["versions"][0]["resources"]
        .as_array()
        .unwrap();
    let scope = |r: &str| {
        resources
            .iter()
            .filter(|x| x["resource"] == r)
            .map(|x| x["scope"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(scope("nodes"), ["Cluster"]);
    assert_eq!(scope("pods"), ["Namespaced"]);
    assert_eq!(
        scope("namespaces"),
        ["Cluster"],
        "one parent for both metrics"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_parse_and_cover_served_paths() {
    let server = served().await;
    let v2 = server.get("/openapi/v2").await;
    assert_same_shape(
        &serde_json::json!({"swagger": v2["swagger"], "info": v2["info"], "paths": {}}),
        &fixture("openapi-v2-minimal.json"),
        "openapi v2",
    );
    assert_eq!(v2["swagger"], "2.0");
    let paths = v2["paths"].as_object().expect("paths");
    for gv in [
        "custom.metrics.k8s.io/v1beta1",
        "custom.metrics.k8s.io/v1beta2",
        "external.metrics.k8s.io/v1beta1",
    ] {
        assert!(
            paths.keys().any(|p| p.starts_with(&format!("/apis/{gv}/"))),
            "{gv}"
        );
    }
    for (path, item) in paths {
        assert!(item["get"]["responses"]["200"].is_object(), "{path}");
    }
    // ETag → 304, as kube-aggregator's downloader sends If-None-Match.
    let first = server.curl("/openapi/v2", &[], &[]).await;
    let etag = first.header("etag").expect("etag").to_string();
    let again = server
        .curl("/openapi/v2", &[("If-None-Match", &etag)], &[])
        .await;
    assert_eq!(again.status, 304);

    let index = server.get("/openapi/v3").await;
    assert_same_shape(&index, &fixture("openapi-v3-root.json"), "openapi v3 root");
    for (_, link) in index["paths"].as_object().expect("paths") {
        let url = link["serverRelativeURL"].as_str().expect("URL");
        let doc = server.get(url).await;
        assert_eq!(doc["openapi"], "3.0.0", "{url}");
        assert!(!doc["paths"].as_object().expect("paths").is_empty());
    }
    let missing = server.get_err("/openapi/v3/apis/apps/v1").await;
    assert!(missing.contains("NotFound"), "{missing}");
    server.stop().await;
}
