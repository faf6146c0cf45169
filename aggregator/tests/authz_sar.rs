//! Delegated authorization: the SubjectAccessReview client against a local HTTPS server that
//! answers as kube-apiserver's authorization.k8s.io/v1 API documents (no kube-apiserver can run
//! here, so [`api_support::fake_sar`] follows the documented wire format): allowed, denied, an
//! error status, too slow; answers cached (a hit sends no second request) for their TTL, errors
//! never; the request carries the right `spec` and the current token of a rotated file. Then
//! the real binary with `--authorization-delegated`, through kubectl with client certificates:
//! allowed gets the value, denied a 403 in kube-apiserver's words, an authorizer error a 500 and
//! never the value; the token never appears in what the binary prints.
mod api_support;

use std::path::Path;
use std::time::Duration;

use api_support::fake_sar::{Answer, FakeSar};
use dwell_aggregator::api::auth::Caller;
use dwell_aggregator::api::authz::attributes::Target;
use dwell_aggregator::api::authz::sar::{KubeApi, Reviewer, SarError, SarSettings};
use dwell_aggregator::clock::ManualClock;
use dwell_e2e::aggregator::{Aggregator, Tls};
use dwell_e2e::certs::TestCa;
use dwell_e2e::kube::Kubectl;

const PODS: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/%2A/wait_ms";
const OBJECT: &str =
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/deployments.apps/binder/wait_ms";
const TOKEN: &str = "sa-token-3f9c1e77-never-logged";

fn settings(fake: &FakeSar, dir: &Path, timeout: Duration) -> SarSettings {
    let api = KubeApi::parse(&fake.url).expect("url");
    let ca_file = dir.join("kube-ca.crt");
    std::fs::write(&ca_file, &fake.ca_pem).expect("write CA");
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write token");
    SarSettings {
        host: api.host,
        port: api.port,
        ca_file,
        token_file,
        timeout,
        allowed_ttl: Duration::from_secs(10),
        denied_ttl: Duration::from_secs(10),
        max_cached: 100,
    }
}

fn hpa() -> Caller {
    Caller {
        user: "system:serviceaccount:kube-system:horizontal-pod-autoscaler".into(),
        groups: vec![
            "system:serviceaccounts".into(),
            "system:authenticated".into(),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_are_asked_as_documented_and_cached_for_their_ttl() {
    let fake = FakeSar::start(Answer::Allow).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_700_000_000_000);
    let s = settings(&fake, dir.path(), Duration::from_secs(10));
    let token_file = s.token_file.clone();
    let reviewer = Reviewer::new(s, clock.clone()).expect("reviewer");
    let pods = Target::of(&http::Method::GET, PODS);

    let review = reviewer.review(&hpa(), &pods).await.expect("answer");
    assert!(review.allowed);
    let got = fake.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].path,
        "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    );
    assert_eq!(got[0].authorization, format!("Bearer {TOKEN}"));
    assert_eq!(got[0].body["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(got[0].body["kind"], "SubjectAccessReview");
    let spec = &got[0].body["spec"];
    assert_eq!(spec["user"], hpa().user);
    assert_eq!(spec["groups"], serde_json::json!(hpa().groups));
    assert_eq!(
        spec["resourceAttributes"],
        serde_json::json!({"namespace": "shop", "verb": "get", "group": "custom.metrics.k8s.io",
            "version": "v1beta2", "resource": "pods", "subresource": "wait_ms", "name": "*"})
    );

    // A cache hit sends no second request, even though the server now denies.
    fake.set(Answer::Deny("RBAC: no binding".into()));
    assert!(
        reviewer
            .review(&hpa(), &pods)
            .await
            .expect("cached")
            .allowed
    );
    assert_eq!(fake.received().len(), 1, "served from the cache");
    // The same groups in another order are the same caller.
    let mut reordered = hpa();
    reordered.groups.reverse();
    assert!(
        reviewer
            .review(&reordered, &pods)
            .await
            .expect("cached")
            .allowed
    );
    assert_eq!(fake.received().len(), 1);

    // Past the TTL: asked again, with the rotated token; the denial and its reason come back,
    // and are cached in turn.
    clock.advance(10_001);
    std::fs::write(&token_file, "rotated-token\n").expect("rotate");
    let review = reviewer.review(&hpa(), &pods).await.expect("answer");
    assert_eq!(
        (review.allowed, review.reason.as_str()),
        (false, "RBAC: no binding")
    );
    let got = fake.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].authorization, "Bearer rotated-token");
    fake.set(Answer::Allow);
    assert!(
        !reviewer
            .review(&hpa(), &pods)
            .await
            .expect("cached")
            .allowed
    );
    assert_eq!(fake.received().len(), 2, "denials are cached too");

    // Another request is another review: an external read is `list` on the metric.
    let external = Target::of(
        &http::Method::GET,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/wait_ms",
    );
    assert!(
        reviewer
            .review(&hpa(), &external)
            .await
            .expect("answer")
            .allowed
    );
    let got = fake.received();
    assert_eq!(
        got[2].body["spec"]["resourceAttributes"],
        serde_json::json!({"namespace": "shop", "verb": "list",
            "group": "external.metrics.k8s.io", "version": "v1beta1", "resource": "wait_ms"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_timeouts_are_no_answer_and_never_cached() {
    let fake = FakeSar::start(Answer::Fail(500)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_700_000_000_000);
    let reviewer = Reviewer::new(
        settings(&fake, dir.path(), Duration::from_millis(500)),
        clock,
    )
    .expect("reviewer");
    let pods = Target::of(&http::Method::GET, PODS);
    let error = reviewer.review(&hpa(), &pods).await.expect_err("500");
    assert!(
        matches!(error, SarError::Status { status: 500, .. }),
        "{error}"
    );
    assert!(!error.to_string().contains(TOKEN), "{error}");
    // Not cached: the next request asks again.
    fake.set(Answer::Slow(Duration::from_secs(3)));
    let error = reviewer.review(&hpa(), &pods).await.expect_err("slow");
    assert!(matches!(error, SarError::Timeout { .. }), "{error}");
    assert_eq!(fake.received().len(), 2);
    assert!(reviewer.cached(&hpa(), &pods).is_none());
    fake.set(Answer::Allow);
    assert!(
        reviewer
            .review(&hpa(), &pods)
            .await
            .expect("answer")
            .allowed
    );
    assert_eq!(fake.received().len(), 3);

    // A missing token file is an error naming the file, not a request without credentials.
    let s = SarSettings {
        token_file: dir.path().join("absent"),
        ..settings(&fake, dir.path(), Duration::from_secs(5))
    };
    let other = Target::of(&http::Method::GET, "/apis");
    let error = Reviewer::new(s, ManualClock::new(0))
        .expect("reviewer")
        .review(&hpa(), &other)
        .await
        .expect_err("no token");
    assert!(error.to_string().contains("absent"), "{error}");
    assert_eq!(fake.received().len(), 3, "nothing sent without a token");
}

const RULES: &str = "rules:\n  - name: wait_ms\n    window: 60s\n    statistic: max\n    \
                     on_missing: {fallback: 7}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_asks_the_cluster_and_answers_as_kube_apiserver() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeSar::start(Answer::Allow).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(&fake, dir.path(), Duration::from_secs(2));
    let users = TestCa::new("kubernetes-client-ca");
    let client_ca = users.write(dir.path(), "client-ca.crt");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).expect("rules");
    let flags: Vec<String> = [
        "--client-ca".into(),
        client_ca.display().to_string(),
        "--config".into(),
        rules.display().to_string(),
        "--authorization-delegated".into(),
        "--authorization-kube-api".into(),
        fake.url.clone(),
        "--authorization-kube-ca".into(),
        s.ca_file.display().to_string(),
        "--authorization-kube-token-file".into(),
        s.token_file.display().to_string(),
        "--authorization-timeout".into(),
        "2s".into(),
    ]
    .into();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agg = Aggregator::start_program(
        Path::new(env!("CARGO_BIN_EXE_dwell-aggregator")),
        Tls::SelfSigned,
        &flags,
    )
    .await
    .expect("aggregator starts");
    let kubectl = |name: &str| {
        let cert = users.issue_client(name, &["team"]);
        Kubectl::with_client_cert(
            agg.dir(),
            name,
            &agg.metrics_url(),
            &agg.ca_pem,
            &cert.cert_pem,
            &cert.key_pem,
        )
        .expect("kubeconfig")
    };

    let value = kubectl("alice").get_json(OBJECT).await;
    assert_eq!(value["kind"], "MetricValueList", "{value}");
    let asked = fake.received();
    assert_eq!(asked.last().expect("asked").body["spec"]["user"], "alice");
    assert_eq!(
        asked.last().expect("asked").body["spec"]["groups"],
        serde_json::json!(["team", "system:authenticated"])
    );

    fake.set(Answer::Deny("no RBAC binding".into()));
    let denied = kubectl("bob").get_raw(OBJECT).await;
    assert!(!denied.success, "{denied:?}");
    assert!(
        denied.stderr.contains(
            "deployments.apps.custom.metrics.k8s.io \"binder\" is forbidden: User \"bob\" cannot \
             get resource \"deployments.apps/wait_ms\" in API group \"custom.metrics.k8s.io\" in the namespace \"shop\": \
             no RBAC binding"
        ),
        "{denied:?}"
    );

    fake.set(Answer::Fail(503));
    let failed = kubectl("carol").get_raw(OBJECT).await;
    assert!(
        !failed.success && failed.stderr.contains("InternalError"),
        "{failed:?}"
    );
    assert!(!failed.stdout.contains("MetricValueList"), "{failed:?}");

    // system:masters never needs a review.
    let before = fake.received().len();
    let admin = users.issue_client("admin", &["system:masters"]);
    let admin = Kubectl::with_client_cert(
        agg.dir(),
        "admin",
        &agg.metrics_url(),
        &agg.ca_pem,
        &admin.cert_pem,
        &admin.key_pem,
    )
    .expect("kubeconfig");
    assert_eq!(admin.get_json(OBJECT).await["kind"], "MetricValueList");
    let metrics = admin.get_raw("/metrics").await.stdout;
    assert_eq!(fake.received().len(), before, "masters are not reviewed");
    for series in [
        "decider=\"subjectaccessreview\",decision=\"allowed\"",
        "decider=\"subjectaccessreview\",decision=\"denied\"",
        "decider=\"subjectaccessreview\",decision=\"error\"",
        "decider=\"masters\",decision=\"allowed\"",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    let printed = agg.process.output().join("\n");
    assert!(
        !printed.contains(TOKEN),
        "the token was printed:\n{printed}"
    );
}
