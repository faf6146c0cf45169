//! A pod reports only for itself, against the real binary over real gRPC on loopback:
//! `--ingest-jwks` (an RS256 key made by openssl and an ES256 key made by ring, here), tokens
//! signed here as Kubernetes' projected service-account tokens, sent as `authorization:
//! Bearer` by a tonic client and by grpcurl. Checks the exact status codes (`UNAUTHENTICATED`
//! for a bad or missing token, `PERMISSION_DENIED` for another pod or namespace), the counters
//! in /metrics, that denied reports are not served on the metrics API (kubectl), that a key
//! rotation (the file rewritten) is picked up without a restart, and that no token reaches the
//! logs. No kube-apiserver runs here: the JWKS and token shapes are those the Kubernetes docs
//! give for `/openid/v1/jwks` and projected tokens.
mod ingest_support;

use std::path::{Path, PathBuf};

use dwell_e2e::aggregator::Aggregator;
use dwell_proto::v1;
use ingest_support::tokens::{ISSUER, Signer, claims, now_s, write_atomically, write_jwks};
use ingest_support::{client, eventually, object_value, report, start};
use serde_json::json;
use tonic::{Code, Request};

const RULES: &str = "rules:\n  - {name: dwell-max, statistic: max, window: 5m}\n";

/// The binary with tokens required, keys from `jwks` (checked every 200 ms).
async fn start_with_jwks(dir: &Path, jwks: &Path) -> Aggregator {
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, RULES).expect("rules");
    let (jwks, rules) = (jwks.display().to_string(), rules.display().to_string());
    start(&[
        "--ingest-jwks",
        &jwks,
        "--ingest-token-issuer",
        ISSUER,
        "--ingest-require-identity",
        "--ingest-jwks-poll-interval",
        "200ms",
        "--config",
        &rules,
    ])
    .await
}

fn bearer<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut req = Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("header value");
        req.metadata_mut().insert("authorization", value);
    }
    req
}

/// Pushes `ns/pod` (max age `age_ms`) with `token`: the status code (Ok for an accepted one)
/// and message.
async fn push(
    agg: &Aggregator,
    token: Option<&str>,
    ns: &str,
    pod: &str,
    age_ms: i64,
) -> (Code, String) {
    let mut c = client(agg).await;
    match c.push(bearer(report(ns, pod, "q", &[age_ms]), token)).await {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_owned()),
    }
}

/// Streams `reports` with `token`: the acks received and how the stream ended.
async fn stream(agg: &Aggregator, token: Option<&str>, reports: Vec<v1::Report>) -> (usize, Code) {
    let mut c = client(agg).await;
    let mut acks = match c.stream(bearer(tokio_stream::iter(reports), token)).await {
        Ok(r) => r.into_inner(),
        Err(s) => return (0, s.code()),
    };
    let mut n = 0;
    loop {
        match acks.message().await {
            Ok(Some(_)) => n += 1,
            Ok(None) => return (n, Code::Ok),
            Err(s) => return (n, s.code()),
        }
    }
}

fn metric(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

async fn pods_of(agg: &Aggregator, ns: &str) -> Vec<String> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", agg.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut inspect = v1::inspect_client::InspectClient::new(channel);
    let mut pods: Vec<String> = inspect
        .list_sources(v1::ListSourcesRequest {
            namespace: ns.into(),
            queue: String::new(),
        })
        .await
        .expect("list sources")
        .into_inner()
        .sources
        .into_iter()
        .map(|s| s.pod)
        .collect();
    pods.sort();
    pods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_bind_each_report_to_its_own_pod() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rsa = Signer::rs256("rsa-1", dir.path());
    let ec = Signer::es256("ec-1");
    let jwks = dir.path().join("jwks.json");
    write_jwks(&jwks, &[&rsa, &ec]);
    let agg = start_with_jwks(dir.path(), &jwks).await;

    // Valid: an RS256 and an ES256 token, each reporting for its own pod (Push and Stream).
    let rs_token = rsa.token("shop", "binder-0");
    let ec_token = ec.token("shop", "binder-1");
    assert_eq!(
        push(&agg, Some(&rs_token), "shop", "binder-0", 4_000)
            .await
            .0,
        Code::Ok
    );
    let own = vec![
        report("shop", "binder-1", "q", &[3_000]),
        report("shop", "binder-1", "r", &[2_000]),
    ];
    assert_eq!(stream(&agg, Some(&ec_token), own).await, (2, Code::Ok));

    // UNAUTHENTICATED: expired, wrong audience, wrong issuer, unknown key, tampered payload,
    // no token; each with what failed.
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims("shop", "binder-0");
        f(&mut c);
        rsa.sign(&c)
    };
    let expired = with(&|c| c["exp"] = json!(now_s() - 3600));
    let audience = with(&|c| c["aud"] = json!(["https://kubernetes.default.svc"]));
    let issuer = with(&|c| c["iss"] = json!("https://evil.example"));
    let unknown = Signer::es256("ec-1").token("shop", "binder-0");
    let stranger = Signer::es256("nobody").token("shop", "binder-0");
    let tampered = {
        let parts: Vec<&str> = rs_token.split('.').collect();
        let mut c = claims("shop", "binder-0");
        c["kubernetes.io"]["namespace"] = json!("bank");
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            c.to_string(),
        );
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    for (token, want) in [
        (Some(expired.as_str()), "token expired"),
        (Some(&audience), "audience"),
        (Some(&issuer), "issuer"),
        (Some(&unknown), "signature does not verify"),
        (Some(&stranger), "key not in --ingest-jwks"),
        (Some(&tampered), "signature does not verify"),
        (None, "no identity"),
    ] {
        let (code, message) = push(&agg, token, "shop", "binder-0", 99_000).await;
        assert_eq!(code, Code::Unauthenticated, "{want}: {message}");
        assert!(message.contains(want), "{want}: {message}");
        assert_eq!(
            stream(
                &agg,
                token,
                vec![report("shop", "binder-0", "q", &[99_000])]
            )
            .await,
            (0, Code::Unauthenticated)
        );
    }

    // PERMISSION_DENIED: a valid token reporting for another pod, another namespace, or
    // saying goodbye for another pod; on a stream after its own report was acked.
    for (ns, pod, want) in [
        ("shop", "binder-9", "pod"),
        ("bank", "binder-0", "namespace"),
    ] {
        let (code, message) = push(&agg, Some(&rs_token), ns, pod, 99_000).await;
        assert_eq!(code, Code::PermissionDenied, "{ns}/{pod}: {message}");
        assert!(message.contains(want), "{message}");
    }
    let mut goodbye = report("shop", "binder-1", "q", &[]);
    goodbye.goodbye = true;
    let mixed = vec![report("shop", "binder-0", "q", &[1_000]), goodbye];
    assert_eq!(
        stream(&agg, Some(&rs_token), mixed).await,
        (1, Code::PermissionDenied)
    );

    // grpcurl, a third-party client, with the token as a header.
    let addr = agg.grpc_addr.to_string();
    let body = r#"{"source":{"namespace":"shop","pod":"binder-0","queue":"g","vhost":"/"},"samples":{"samples":[{"age_ms":1000}]}}"#;
    for (token, ok, want) in [
        (&ec_token, false, "PermissionDenied"),
        (&rs_token, true, ""),
    ] {
        let out = tokio::process::Command::new("grpcurl")
            .args([
                "-plaintext",
                "-H",
                &format!("authorization: Bearer {token}"),
                "-d",
                body,
            ])
            .args([addr.as_str(), "dwell.v1.Ingest/Push"])
            .output()
            .await
            .expect("grpcurl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.success(), ok, "{text}");
        assert!(text.contains(want), "{text}");
    }

    // Served: only the accepted reports (max 4 s), none of the denied 99 s; no source in bank,
    // binder-1 kept (its denied goodbye came from binder-0's token).
    assert_eq!(object_value(&agg, "shop", "dwell-max").await, Ok(4.0));
    assert_eq!(
        pods_of(&agg, "shop").await,
        ["binder-0", "binder-0", "binder-1", "binder-1"]
    );
    assert!(pods_of(&agg, "bank").await.is_empty());

    let metrics = agg.kubectl.get_raw("/metrics").await.stdout;
    for line in [
        "dwell_ingest_denied_reports_total{reason=\"pod\"} 3",
        "dwell_ingest_denied_reports_total{reason=\"namespace\"} 1",
        "dwell_ingest_unauthenticated_streams_total{reason=\"expired\"} 2",
        "dwell_ingest_unauthenticated_streams_total{reason=\"audience\"} 2",
        "dwell_ingest_unauthenticated_streams_total{reason=\"issuer\"} 2",
        "dwell_ingest_unauthenticated_streams_total{reason=\"signature\"} 4",
        "dwell_ingest_unauthenticated_streams_total{reason=\"unknown_key\"} 2",
        "dwell_ingest_unauthenticated_streams_total{reason=\"missing\"} 2",
    ] {
        assert!(metric(&metrics, line), "{line} in\n{metrics}");
    }

    // No token, nor any signature of one, in anything the binary printed.
    let output = agg.process.output().join("\n");
    for token in [&rs_token, &ec_token, &expired, &tampered, &stranger] {
        let signature = token.rsplit('.').next().expect("signature");
        assert!(
            !output.contains(signature) && !output.contains(&token[..40]),
            "a token in the logs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_is_picked_up_without_restart_and_a_bad_file_keeps_the_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = Signer::es256("2025");
    let new = Signer::rs256("2026", dir.path());
    let jwks: PathBuf = dir.path().join("jwks.json");
    write_jwks(&jwks, &[&old]);
    let agg = start_with_jwks(dir.path(), &jwks).await;
    let (old_token, new_token) = (old.token("shop", "a"), new.token("shop", "a"));
    assert_eq!(
        push(&agg, Some(&old_token), "shop", "a", 1_000).await.0,
        Code::Ok
    );
    assert_eq!(
        push(&agg, Some(&new_token), "shop", "a", 1_000).await.0,
        Code::Unauthenticated
    );

    // The issuer rotated: the file now lists only the new key.
    write_jwks(&jwks, &[&new]);
    eventually("the new key is taken", || async {
        match push(&agg, Some(&new_token), "shop", "a", 1_000).await {
            (Code::Ok, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (code, message) = push(&agg, Some(&old_token), "shop", "a", 1_000).await;
    assert_eq!(code, Code::Unauthenticated, "{message}");
    assert!(message.contains("key not in --ingest-jwks"), "{message}");

    // A broken file: a clear error, the keys in force stay.
    write_atomically(&jwks, b"{\"keys\": [{\"kty\": \"RSA\", \"kid\": \"x\"}]}");
    let refused = eventually("the broken file is refused", || async {
        let m = agg.kubectl.get_raw("/metrics").await.stdout;
        metric(&m, "dwell_ingest_jwks_refused_total 1")
            .then_some(m)
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert!(
        metric(&refused, "dwell_ingest_jwks_reloads_total 1"),
        "{refused}"
    );
    assert_eq!(
        push(&agg, Some(&new_token), "shop", "a", 1_000).await.0,
        Code::Ok
    );
    let logged = agg.process.output();
    assert!(
        logged.iter().any(|l| l.contains("--ingest-jwks refused")
            && l.contains("key 0 (kid \"x\"): n is not base64url")),
        "{logged:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_file_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, "{\"keys\": []}").expect("write");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dwell-aggregator"))
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--ingest-jwks",
        ])
        .arg(&jwks)
        .args(["--ingest-token-issuer", ISSUER])
        .output()
        .await
        .expect("run the binary");
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("--ingest-jwks"), "{error}");
    assert!(error.contains("no RS256 or ES256 signing key"), "{error}");
}
