//! Metrics API client authentication against the real binary (`--requestheader-client-ca`,
//! `--requestheader-allowed-names`, `--client-ca`), with real clients: `kubectl get --raw`
//! through kubeconfigs carrying client certificates, and `curl` where the request must carry the
//! front proxy's `X-Remote-User`/`X-Remote-Group` headers (kubectl cannot set headers).
use std::path::{Path, PathBuf};

use dwell_e2e::aggregator::{Aggregator, Tls};
use dwell_e2e::certs::{ServingCert, TestCa};
use dwell_e2e::kube::{CurlResponse, Kubectl, curl};

const BIN: &str = env!("CARGO_BIN_EXE_dwell-aggregator");
const RESOURCES: &str = "/apis/custom.metrics.k8s.io/v1beta2";

struct Secured {
    agg: Aggregator,
    front_proxy: TestCa,
    users: TestCa,
    _cas: tempfile::TempDir,
}

async fn start_secured() -> Secured {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let front_proxy = TestCa::new("front-proxy-ca");
    let users = TestCa::new("kubernetes-client-ca");
    let dir = tempfile::tempdir().expect("tempdir");
    let fp = front_proxy
        .write(dir.path(), "front-proxy-ca.crt")
        .display()
        .to_string();
    let us = users
        .write(dir.path(), "client-ca.crt")
        .display()
        .to_string();
    let flags = [
        "--requestheader-client-ca",
        &fp,
        "--requestheader-allowed-names",
        r#"["front-proxy-client", "aggregator"]"#,
        "--client-ca",
        &us,
    ];
    let agg = Aggregator::start_program(Path::new(BIN), Tls::SelfSigned, &flags)
        .await
        .expect("aggregator starts");
    Secured {
        agg,
        front_proxy,
        users,
        _cas: dir,
    }
}

fn kubectl(s: &Secured, name: &str, cert: &ServingCert) -> Kubectl {
    Kubectl::with_client_cert(
        s.agg.dir(),
        name,
        &s.agg.metrics_url(),
        &s.agg.ca_pem,
        &cert.cert_pem,
        &cert.key_pem,
    )
    .expect("kubeconfig")
}

/// `curl` a path presenting `cert` (if any) with `headers`.
async fn curl_as(
    s: &Secured,
    cert: Option<(&str, &ServingCert)>,
    path: &str,
    headers: &[(&str, &str)],
) -> CurlResponse {
    let files: Option<(PathBuf, PathBuf)> = cert.map(|(name, c)| c.write_as(s.agg.dir(), name));
    let mut flags: Vec<String> = Vec::new();
    if let Some((cert, key)) = &files {
        flags.extend([
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ]);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let url = format!("{}{path}", s.agg.metrics_url());
    curl(&url, &s.agg.ca_file(), headers, &flags).await
}

fn assert_unauthorized(r: &CurlResponse, mentions: &str) {
    assert_eq!(r.status, 401, "{r:?}");
    let status: serde_json::Value = serde_json::from_str(&r.body).expect("Status JSON");
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["reason"], "Unauthorized", "{status}");
    assert_eq!(status["code"], 401, "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_proxy_with_allowed_name_and_headers_is_served() {
    let s = start_secured().await;
    let proxy = s.front_proxy.issue_client("front-proxy-client", &[]);
    let headers = [
        ("X-Remote-User", "system:kube-aggregator"),
        ("X-Remote-Group", "system:masters"),
    ];
    let r = curl_as(&s, Some(("proxy", &proxy)), RESOURCES, &headers).await;
    // HTTP/2, as kube-apiserver's proxy negotiates.
    assert_eq!((r.status, r.http_version.as_str()), (200, "2"), "{r:?}");
    let list: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(list["kind"], "APIResourceList");

    // kubectl presents the front-proxy certificate but cannot send X-Remote-User: nobody is
    // vouched for, so it is refused (as kube's requestheader authenticator does).
    let raw = kubectl(&s, "proxy", &proxy).get_raw(RESOURCES).await;
    assert!(
        !raw.success && raw.stderr.contains("Unauthorized"),
        "{raw:?}"
    );
    let r = curl_as(&s, Some(("proxy", &proxy)), RESOURCES, &[]).await;
    assert_unauthorized(&r, "X-Remote-User");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_users_are_served_through_kubectl() {
    let s = start_secured().await;
    let alice = s.users.issue_client("alice", &["ops"]);
    let v = kubectl(&s, "alice", &alice).get_json(RESOURCES).await;
    assert_eq!(v["kind"], "APIResourceList");
    let v = kubectl(&s, "alice", &alice)
        .get_json("/apis/external.metrics.k8s.io/v1beta1")
        .await;
    assert_eq!(v["groupVersion"], "external.metrics.k8s.io/v1beta1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_a_trusted_identity_get_401_or_no_handshake() {
    let s = start_secured().await;

    // No certificate: 401 with a Status (kubectl's dummy bearer token is not a credential).
    let raw = s.agg.kubectl.get_raw(RESOURCES).await;
    assert!(
        !raw.success && raw.stderr.contains("Unauthorized"),
        "{raw:?}"
    );
    let r = curl_as(&s, None, RESOURCES, &[("X-Remote-User", "system:admin")]).await;
    assert_unauthorized(&r, "no client certificate");

    // A certificate from another CA: the handshake is refused.
    let stranger = TestCa::new("someone-else").issue_client("front-proxy-client", &[]);
    let raw = kubectl(&s, "stranger", &stranger).get_raw(RESOURCES).await;
    assert!(!raw.success, "{raw:?}");
    assert!(!raw.stderr.contains("NotFound") && !raw.stdout.contains("APIResourceList"));
    let r = curl_as(&s, Some(("stranger", &stranger)), RESOURCES, &[]).await;
    assert_eq!(r.status, 0, "no HTTP response expected: {r:?}");

    // The front-proxy CA, but a CN that is not allowed: its X-Remote-* headers are not trusted.
    let other = s.front_proxy.issue_client("not-the-proxy", &[]);
    let raw = kubectl(&s, "other", &other).get_raw(RESOURCES).await;
    assert!(
        !raw.success && raw.stderr.contains("Unauthorized"),
        "{raw:?}"
    );
    let r = curl_as(
        &s,
        Some(("other", &other)),
        RESOURCES,
        &[("X-Remote-User", "system:admin")],
    )
    .await;
    assert_unauthorized(&r, "requestheader-allowed-names");

    // Health routes stay open to callers without a certificate (kubelet probes).
    for path in ["/healthz", "/livez", "/readyz"] {
        let raw = s.agg.kubectl.get_raw(path).await;
        assert!(raw.success && raw.stdout.trim() == "ok", "{path}: {raw:?}");
    }
    // But nothing else, including discovery, OpenAPI and /metrics.
    for path in ["/apis", "/openapi/v2", "/metrics", "/nope"] {
        let r = curl_as(&s, None, path, &[]).await;
        assert_eq!(r.status, 401, "{path}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_client_cas_the_api_is_open_and_says_so() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let agg = Aggregator::start_program(Path::new(BIN), Tls::SelfSigned, &[])
        .await
        .expect("aggregator starts");
    let v = agg.kubectl.get_json(RESOURCES).await;
    assert_eq!(v["kind"], "APIResourceList");
    let out = agg.process.output();
    assert!(
        out.iter()
            .any(|l| l.contains("WARN") && l.contains("metrics API authenticates NOBODY")),
        "{out:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_client_ca_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.crt");
    std::fs::write(&bad, "not a certificate").expect("write");
    let out = tokio::process::Command::new(BIN)
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .arg("--requestheader-client-ca")
        .arg(&bad)
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics API authentication") && err.contains("bad.crt"),
        "{err}"
    );
}
