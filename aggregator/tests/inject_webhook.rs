//! `POST /mutate/pods` on the real binary over TLS, called with curl. No kube-apiserver can run
//! here, so every request is shaped exactly like the documented `admission.k8s.io/v1`
//! AdmissionReview (Kubernetes "Dynamic Admission Control": the request's fields, a Pod CREATE as
//! the API server sends it after defaulting and the ServiceAccount plugin; the documented Scale
//! UPDATE example verbatim as the non-Pod case), and every answer is checked against the
//! documented response (`uid` echoed, `allowed`, `patchType: JSONPatch`, base64 `patch`). The
//! patch is applied with this test's own RFC 6902 implementation and must give exactly the pod
//! `dwell-aggregator inject` makes of the same pod.
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use dwell_e2e::aggregator::{Aggregator, Tls};
use dwell_e2e::certs::TestCa;
use dwell_e2e::kube::{CurlResponse, curl};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_dwell-aggregator");
const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

/// A pod as the ReplicaSet controller creates it from the binder Deployment's template (tap on,
/// URL from a Secret), after the API server's defaulting and the ServiceAccount admission plugin.
fn binder_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "binder-7c9f8d5b4-",
            "namespace": "binder",
            "labels": {"app.kubernetes.io/name": "binder", "pod-template-hash": "7c9f8d5b4"},
            "annotations": {
                "dwell.io/inject": "enabled",
                "dwell.io/amqp-url-env": "AMQP_URL",
                "dwell.io/tap-url-key": "app-url-tap",
                "dwell.io/tap-upstream": "amqp://rabbitmq.rabbitmq.svc:5672"
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "binder-7c9f8d5b4",
                "uid": "0b5e3cbb-8ad6-4c8f-9e0c-3b1f6f0e2a11", "controller": true,
                "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "containers": [{
                "name": "binder",
                "image": "ghcr.io/dwell-autoscaler/binder-example:0.1.0",
                "env": [
                    {"name": "AMQP_URL", "valueFrom": {"secretKeyRef": {"name": "binder-amqp", "key": "app-url"}}},
                    {"name": "QUEUE", "value": "jobs"}
                ],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
                "volumeMounts": [{
                    "name": "kube-api-access-x7k2p",
                    "readOnly": true,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"
                }]
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "volumes": [{
                "name": "kube-api-access-x7k2p",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                    ],
                    "defaultMode": 420
                }
            }]
        },
        "status": {}
    })
}

/// The documented AdmissionReview request for creating `pod`.
fn pod_review(pod: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "binder",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "a8f3e0b2-1111-4c3e-9d0a-2b7c5e6f7a80",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]
            },
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// The documentation's own example request, verbatim: a Scale UPDATE (not a Pod).
fn documented_scale_review() -> Value {
    json!({
      "apiVersion": "admission.k8s.io/v1",
      "kind": "AdmissionReview",
      "request": {
        "uid": UID,
        "kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "subResource": "scale",
        "requestKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
        "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "requestSubResource": "scale",
        "name": "my-deployment",
        "namespace": "my-namespace",
        "operation": "UPDATE",
        "userInfo": {
          "username": "admin",
          "uid": "014fbff9a07c",
          "groups": ["system:authenticated", "my-admin-group"],
          "extra": {"some-key": ["some-value1", "some-value2"]}
        },
        "object": {"apiVersion": "autoscaling/v1", "kind": "Scale"},
        "oldObject": {"apiVersion": "autoscaling/v1", "kind": "Scale"},
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"},
        "dryRun": false
      }
    })
}

async fn post(agg: &Aggregator, body: &[u8]) -> CurlResponse {
    let file = agg.dir().join("review.json");
    std::fs::write(&file, body).expect("write body");
    let data = format!("@{}", file.display());
    curl(
        &format!("{}/mutate/pods", agg.metrics_url()),
        &agg.dir().join("ca.pem"),
        &[("Content-Type", "application/json")],
        &["-X", "POST", "--data-binary", &data],
    )
    .await
}

/// The answer's `response`, after checking the envelope every answer must have.
fn response(r: &CurlResponse, uid: &str) -> Value {
    assert_eq!(r.status, 200, "{} {}", r.body, r.stderr);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_str(&r.body).expect("JSON answer");
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], uid);
    assert_eq!(v["response"]["allowed"], true);
    v["response"].clone()
}

fn assert_no_patch(response: &Value) {
    assert!(response.get("patch").is_none(), "{response}");
    assert!(response.get("patchType").is_none(), "{response}");
}

/// RFC 6902 `add`/`remove`/`replace` with RFC 6901 pointers: this test's own implementation.
fn apply_patch(doc: &mut Value, ops: &[Value]) {
    for op in ops {
        let path = op["path"].as_str().expect("path");
        let (parent, last) = match path.rfind('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", path),
        };
        let last = last.replace("~1", "/").replace("~0", "~");
        if path.is_empty() {
            *doc = op["value"].clone();
            continue;
        }
        let target = doc
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("no {parent}"));
        match (op["op"].as_str(), target) {
            (Some("add"), Value::Array(items)) => {
                let at = if last == "-" {
                    items.len()
                } else {
                    last.parse().expect("index")
                };
                assert!(at <= items.len(), "{path}");
                items.insert(at, op["value"].clone());
            }
            (Some("add" | "replace"), Value::Object(map)) => {
                if op["op"] == "replace" {
                    assert!(map.contains_key(&last), "replace of missing {path}");
                }
                map.insert(last, op["value"].clone());
            }
            (Some("replace"), Value::Array(items)) => {
                items[last.parse::<usize>().expect("index")] = op["value"].clone();
            }
            (Some("remove"), Value::Object(map)) => {
                map.remove(&last).expect("remove of missing key");
            }
            (Some("remove"), Value::Array(items)) => {
                items.remove(last.parse().expect("index"));
            }
            (other, _) => panic!("unexpected op {other:?} at {path}"),
        }
    }
}

/// `dwell-aggregator inject --all` on one pod (JSON in, JSON out).
fn inject_cli(pod: &Value) -> Value {
    let mut child = Command::new(BIN)
        .args(["inject", "--all"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs inject");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(pod.to_string().as_bytes()).expect("stdin");
    drop(stdin);
    let out = child.wait_with_output().expect("inject");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inject writes JSON for JSON")
}

async fn start(extra: &[&str]) -> Aggregator {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Aggregator::start_program(Path::new(BIN), Tls::SelfSigned, extra)
        .await
        .expect("aggregator starts")
}

fn counted(metrics: &str, result: &str) -> u64 {
    let series = format!("dwell_webhook_reviews_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_patch_gives_the_pod_inject_gives_and_every_other_review_is_allowed_unpatched() {
    let agg = start(&[]).await;
    let pod = binder_pod();

    // A Pod CREATE: the documented response with a base64 JSONPatch.
    let r = response(
        &post(&agg, pod_review(pod.clone()).to_string().as_bytes()).await,
        UID,
    );
    assert_eq!(r["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().expect("patch is a string"))
        .expect("patch is base64");
    let ops: Vec<Value> = serde_json::from_slice(&patch).expect("patch is a JSON array");
    assert!(
        ops.iter()
            .all(|op| op["path"].as_str().is_some_and(|p| p.starts_with("/spec/")))
    );
    let mut patched = pod.clone();
    apply_patch(&mut patched, &ops);
    assert_eq!(patched, inject_cli(&pod), "webhook and inject disagree");
    let sidecar = &patched["spec"]["initContainers"][0];
    assert_eq!(sidecar["name"], "dwell-sidecar");
    assert_eq!(
        patched["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["key"],
        "app-url-tap"
    );
    // The sidecar's volumes go first (pod info, then the bound token), the pod's own after them.
    assert_eq!(patched["spec"]["volumes"][1]["name"], "dwell-ingest-token");
    assert_eq!(
        patched["spec"]["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "dwell"
    );
    assert_eq!(patched["spec"]["volumes"][2], pod["spec"]["volumes"][0]);

    // The injected pod again (reinvocation): left alone.
    let again = response(
        &post(&agg, pod_review(patched).to_string().as_bytes()).await,
        UID,
    );
    assert_no_patch(&again);

    // Opted out, and a pod whose named variable does not exist: allowed, unpatched, warned.
    let mut off = pod.clone();
    off["metadata"]["annotations"]["dwell.io/inject"] = json!("disabled");
    assert_no_patch(&response(
        &post(&agg, pod_review(off).to_string().as_bytes()).await,
        UID,
    ));
    let mut missing = pod.clone();
    missing["metadata"]["annotations"]["dwell.io/amqp-url-env"] = json!("BROKER_URL");
    let refused = response(
        &post(&agg, pod_review(missing).to_string().as_bytes()).await,
        UID,
    );
    assert_no_patch(&refused);
    let warning = refused["warnings"][0].as_str().expect("a warning");
    assert!(
        warning.contains("dwell.io/amqp-url-env: no container sets BROKER_URL"),
        "{warning}"
    );

    // The documented Scale UPDATE, and a Pod DELETE: not ours to patch.
    let scale = documented_scale_review();
    assert_no_patch(&response(
        &post(&agg, scale.to_string().as_bytes()).await,
        UID,
    ));
    let mut delete = pod_review(pod.clone());
    delete["request"]["operation"] = json!("DELETE");
    delete["request"]["oldObject"] = delete["request"]["object"].take();
    assert_no_patch(&response(
        &post(&agg, delete.to_string().as_bytes()).await,
        UID,
    ));

    // Malformed: not JSON, the v1beta1 envelope, no uid.
    assert_no_patch(&response(&post(&agg, b"{\"apiVersion\": ").await, ""));
    let mut beta = pod_review(pod.clone());
    beta["apiVersion"] = json!("admission.k8s.io/v1beta1");
    assert_no_patch(&response(
        &post(&agg, beta.to_string().as_bytes()).await,
        UID,
    ));
    let mut no_uid = pod_review(pod.clone());
    no_uid["request"].as_object_mut().map(|r| r.remove("uid"));
    assert_no_patch(&response(
        &post(&agg, no_uid.to_string().as_bytes()).await,
        "",
    ));

    // Oversized: more than 1 MiB (a huge annotation); the uid is still echoed.
    let mut huge = pod.clone();
    huge["metadata"]["annotations"]["example.com/blob"] = json!("x".repeat(1 << 20));
    // Written in the API server's field order (Go struct order: uid first), not serde_json's.
    let body = format!(
        r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"uid":"{UID}","kind":{{"group":"","version":"v1","kind":"Pod"}},"operation":"CREATE","object":{huge}}}}}"#
    );
    let big = response(&post(&agg, body.as_bytes()).await, UID);
    assert_no_patch(&big);

    // Every review counted by result.
    let metrics = curl(
        &format!("{}/metrics", agg.metrics_url()),
        &agg.dir().join("ca.pem"),
        &[],
        &[],
    )
    .await;
    for (result, n) in [
        ("injected", 1),
        ("already_injected", 1),
        ("disabled", 1),
        ("refused", 1),
        ("not_pod_create", 2),
        ("malformed", 3),
        ("oversized", 1),
    ] {
        assert_eq!(
            counted(&metrics.body, result),
            n,
            "{result}\n{}",
            metrics.body
        );
    }
    agg.kill().await;
}

/// kube-apiserver calls webhooks without a client certificate: with authentication on, the
/// metrics API refuses such a caller, the webhook answers it.
#[tokio::test]
async fn the_webhook_needs_no_client_certificate_when_the_api_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("front-proxy-ca")
        .write(dir.path(), "front-proxy-ca.crt")
        .display()
        .to_string();
    let agg = start(&["--requestheader-client-ca", &ca]).await;
    let ca_file = agg.dir().join("ca.pem");
    let refused = curl(
        &format!("{}/metrics", agg.metrics_url()),
        &ca_file,
        &[],
        &[],
    )
    .await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    let r = response(
        &post(&agg, pod_review(binder_pod()).to_string().as_bytes()).await,
        UID,
    );
    assert_eq!(r["patchType"], "JSONPatch");
    agg.kill().await;
}
