//! The static authorization policy end to end: the real binary with `--client-ca` and
//! `--authorization-policy`, read through `kubectl get --raw` with client certificates. A denied
//! user gets a 403 `Status` in kube-apiserver's words, an allowed one the value, per namespace and
//! per API; discovery stays open to the authenticated, health to everyone; an edited policy
//! applies without a restart, a broken one is refused naming the file and the old one stays; a
//! broken policy at start-up stops the binary with the file and the problem.
use std::path::Path;
use std::time::Duration;

use dwell_e2e::aggregator::{Aggregator, Tls};
use dwell_e2e::certs::TestCa;
use dwell_e2e::kube::Kubectl;

const BIN: &str = env!("CARGO_BIN_EXE_dwell-aggregator");
const OBJECT: &str =
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/deployments.apps/binder/wait_ms";
const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/wait_ms";
const RULES: &str = "rules:\n  - name: wait_ms\n    window: 60s\n    statistic: max\n    \
                     external: true\n    on_missing: {fallback: 7}\n";
const POLICY: &str = "allow:\n  - users: [system:serviceaccount:kube-system:horizontal-pod-autoscaler]\n  \
                      - groups: [ops]\n    apis: [custom]\n    namespaces: [shop]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_decides_who_reads_what_and_reloads() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let users = TestCa::new("kubernetes-client-ca");
    let client_ca = users.write(dir.path(), "client-ca.crt");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).expect("rules");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let flags = [
        "--client-ca",
        &client_ca.display().to_string(),
        "--config",
        &rules.display().to_string(),
        "--authorization-policy",
        &policy.display().to_string(),
        "--authorization-policy-poll-interval",
        "200ms",
    ]
    .map(str::to_owned);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agg = Aggregator::start_program(Path::new(BIN), Tls::SelfSigned, &flags)
        .await
        .expect("aggregator starts");
    let kubectl = |name: &str, groups: &[&str]| {
        let cert = users.issue_client(name, groups);
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
    let hpa = kubectl(
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        &[],
    );
    let alice = kubectl("alice", &["ops"]);
    let bob = kubectl("bob", &[]);

    for path in [OBJECT, EXTERNAL] {
        let v = hpa.get_json(path).await;
        assert_eq!(v["items"][0]["value"], "7", "{path}: {v}");
    }
    assert_eq!(alice.get_json(OBJECT).await["items"][0]["value"], "7");
    let forbidden = |out: &dwell_e2e::kube::RawOutput, message: &str| {
        assert!(!out.success, "{out:?}");
        assert!(
            out.stderr.contains("(Forbidden)") && out.stderr.contains(message),
            "{message:?} in {out:?}"
        );
        assert!(!out.stdout.contains("\"value\""), "{out:?}");
    };
    // Twice: the second time the response memo holds the value the others were served.
    for _ in 0..2 {
        forbidden(
            &bob.get_raw(OBJECT).await,
            "deployments.apps.custom.metrics.k8s.io \"binder\" is forbidden: User \"bob\" cannot \
             get resource \"deployments.apps/wait_ms\" in API group \"custom.metrics.k8s.io\" in \
             the namespace \"shop\"",
        );
    }
    // alice: custom only, shop only.
    forbidden(
        &alice.get_raw(EXTERNAL).await,
        "wait_ms.external.metrics.k8s.io is forbidden: User \"alice\" cannot list resource \
         \"wait_ms\" in API group \"external.metrics.k8s.io\" in the namespace \"shop\"",
    );
    forbidden(
        &alice.get_raw(&OBJECT.replace("/shop/", "/other/")).await,
        "in the namespace \"other\"",
    );
    // Discovery for every authenticated caller; health for anyone; /metrics only by a rule.
    let list = bob.get_json("/apis/custom.metrics.k8s.io/v1beta2").await;
    assert_eq!(list["kind"], "APIResourceList");
    assert!(agg.kubectl.get_raw("/readyz").await.success);
    forbidden(
        &bob.get_raw("/metrics").await,
        "forbidden: User \"bob\" cannot get path \"/metrics\"",
    );

    // An edited policy applies without a restart; a broken one keeps it.
    std::fs::write(
        &policy,
        "allow:\n  - users: [bob]\n    apis: [custom]\n    paths: [/metrics]\n",
    )
    .expect("edit");
    let mut served = false;
    for _ in 0..100 {
        if bob.get_raw(OBJECT).await.success {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the edited policy was never applied");
    forbidden(&hpa.get_raw(OBJECT).await, "User \"system:serviceaccount");
    let metrics = bob.get_raw("/metrics").await.stdout;
    for series in [
        "dwell_metrics_authorization_decisions_total{decider=\"policy\",decision=\"allowed\"}",
        "dwell_metrics_authorization_decisions_total{decider=\"policy\",decision=\"denied\"}",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    std::fs::write(&policy, "allow:\n  - apis: [custom]\n").expect("break");
    let mut rejected = false;
    for _ in 0..100 {
        let out = agg.process.output();
        if out.iter().any(|l| {
            l.contains("authorization policy rejected")
                && l.contains("policy.yaml")
                && l.contains("names no users and no groups")
        }) {
            rejected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rejected, "{:#?}", agg.process.output());
    assert!(
        bob.get_raw(OBJECT).await.success,
        "the policy in force stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authorization_a_warning_and_a_bad_policy_stops_start_up() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let agg = Aggregator::start_program(Path::new(BIN), Tls::SelfSigned, &[])
        .await
        .expect("aggregator starts");
    assert!(
        agg.process
            .output()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("metrics API authorizes EVERYONE")),
        "{:#?}",
        agg.process.output()
    );
    drop(agg);
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("policy.yaml");
    std::fs::write(&bad, "allow:\n  - users: [a]\n    verbs: [get]\n").expect("write");
    let out = tokio::process::Command::new(BIN)
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .arg("--authorization-policy")
        .arg(&bad)
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("authorization policy")
            && err.contains("policy.yaml")
            && err.contains("verbs"),
        "{err}"
    );
    let out = tokio::process::Command::new(BIN)
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .arg("--authorization-delegated")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--authorization-kube-api"), "{err}");
}
