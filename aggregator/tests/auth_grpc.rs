//! gRPC ingest over TLS with mTLS against the real binary (`--grpc-tls-cert`, `--grpc-tls-key`,
//! `--grpc-client-ca`): a client with a certificate from the client CA pushes and the value is
//! served through `kubectl`; clients without a certificate, with one from another CA, or in
//! plaintext are refused and their reports never land; `grpcurl -cacert -cert -key` lists the
//! services through reflection. Without the flags the plaintext warning is logged.
mod ingest_support;

use std::path::Path;

use dwell_e2e::aggregator::{Aggregator, Tls};
use dwell_e2e::certs::{ServingCert, TestCa};
use dwell_proto::v1::ingest_client::IngestClient;
use ingest_support::{object_value, report};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const BIN: &str = env!("CARGO_BIN_EXE_dwell-aggregator");
const RULES: &str = "rules:\n  - {name: dwell-max, statistic: max, window: 5m}\n";

/// An aggregator whose gRPC port requires client certificates from `clients`.
struct Mtls {
    agg: Aggregator,
    server_ca: TestCa,
    dir: tempfile::TempDir,
}

async fn start_mtls(clients: &TestCa) -> Mtls {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let server_ca = TestCa::new("dwell-grpc-server-ca");
    let (cert, key) = server_ca
        .issue(&["localhost", "127.0.0.1"])
        .write_as(dir.path(), "grpc");
    let client_ca = clients.write(dir.path(), "client-ca.crt");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).expect("rules");
    let flags = [
        "--grpc-tls-cert",
        &cert.display().to_string(),
        "--grpc-tls-key",
        &key.display().to_string(),
        "--grpc-client-ca",
        &client_ca.display().to_string(),
        "--config",
        &rules.display().to_string(),
    ]
    .map(String::from);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agg = Aggregator::start_program(Path::new(BIN), Tls::SelfSigned, &flags)
        .await
        .expect("aggregator starts");
    Mtls {
        agg,
        server_ca,
        dir,
    }
}

/// A tonic client over TLS trusting `server_ca`, presenting `identity` if given.
async fn tls_client(
    agg: &Aggregator,
    server_ca: &TestCa,
    identity: Option<&ServingCert>,
) -> Result<IngestClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca.pem()))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
    }
    let channel = Channel::from_shared(format!("https://{}", agg.grpc_addr))
        .expect("uri")
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(IngestClient::new(channel))
}

/// Pushes one report from `pod` (ages 4 s) with a client built by `client`; whether it was accepted.
async fn push_from(
    client: Result<IngestClient<Channel>, tonic::transport::Error>,
    pod: &str,
) -> bool {
    match client {
        Ok(mut c) => c.push(report("shop", pod, "q", &[4_000])).await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_ingest_accepts_only_clients_of_the_client_ca() {
    let clients = TestCa::new("dwell-sidecar-ca");
    let m = start_mtls(&clients).await;
    let good = clients.issue_client("sidecar", &[]);
    let stranger = TestCa::new("someone-else").issue_client("sidecar", &[]);

    // Refused: no certificate, a certificate from another CA, plaintext.
    assert!(!push_from(tls_client(&m.agg, &m.server_ca, None).await, "nocert").await);
    assert!(
        !push_from(
            tls_client(&m.agg, &m.server_ca, Some(&stranger)).await,
            "stranger"
        )
        .await
    );
    let plaintext = async {
        let channel = Channel::from_shared(format!("http://{}", m.agg.grpc_addr))
            .expect("uri")
            .connect()
            .await?;
        Ok(IngestClient::new(channel))
    };
    assert!(!push_from(plaintext.await, "plaintext").await);
    assert!(
        m.agg
            .process
            .output()
            .iter()
            .any(|l| l.contains("gRPC TLS handshake refused")),
        "refusals are logged: {:#?}",
        m.agg.process.output()
    );

    // Accepted: the client CA's certificate; the value is served (max age 4 s, in seconds).
    assert!(push_from(tls_client(&m.agg, &m.server_ca, Some(&good)).await, "good").await);
    assert_eq!(object_value(&m.agg, "shop", "dwell-max").await, Ok(4.0));

    // Nothing from the refused clients landed: the only source is the accepted one.
    let mut inspect =
        dwell_proto::v1::inspect_client::InspectClient::new(tls_channel(&m, &good).await);
    let sources = inspect
        .list_sources(dwell_proto::v1::ListSourcesRequest {
            namespace: "shop".into(),
            queue: "q".into(),
        })
        .await
        .expect("list sources over mTLS")
        .into_inner()
        .sources;
    let pods: Vec<&str> = sources.iter().map(|s| s.pod.as_str()).collect();
    assert_eq!(pods, ["good"]);
    drop(m.dir);
}

async fn tls_channel(m: &Mtls, id: &ServingCert) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(m.server_ca.pem()))
        .domain_name("localhost")
        .identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
    Channel::from_shared(format!("https://{}", m.agg.grpc_addr))
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .expect("connect")
}

/// `grpcurl -cacert -cert -key [-servername localhost] ARGS… ADDR`.
async fn grpcurl_tls(m: &Mtls, identity: Option<&ServingCert>, args: &[&str]) -> (bool, String) {
    let server_ca = m.server_ca.write(m.dir.path(), "server-ca.crt");
    let mut cmd = tokio::process::Command::new("grpcurl");
    cmd.arg("-cacert")
        .arg(&server_ca)
        .args(["-servername", "localhost"]);
    if let Some(id) = identity {
        let (cert, key) = id.write_as(m.dir.path(), "grpcurl");
        cmd.arg("-cert").arg(cert).arg("-key").arg(key);
    }
    cmd.arg(m.agg.grpc_addr.to_string()).args(args);
    match cmd.output().await {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("cannot run grpcurl: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_services_over_mtls_and_is_refused_without_a_certificate() {
    let clients = TestCa::new("dwell-sidecar-ca");
    let m = start_mtls(&clients).await;
    let id = clients.issue_client("grpcurl", &[]);
    let (ok, out) = grpcurl_tls(&m, Some(&id), &["list"]).await;
    assert!(ok, "{out}");
    for service in [
        "dwell.v1.Ingest",
        "dwell.v1.Inspect",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            out.lines().any(|l| l.trim() == service),
            "{service} in {out}"
        );
    }
    let (ok, out) = grpcurl_tls(&m, Some(&id), &["grpc.health.v1.Health/Check"]).await;
    assert!(ok && out.contains("SERVING"), "{out}");

    let (ok, out) = grpcurl_tls(&m, None, &["list"]).await;
    assert!(!ok, "without a client certificate grpcurl must fail: {out}");
    let stranger = TestCa::new("someone-else").issue_client("grpcurl", &[]);
    let (ok, out) = grpcurl_tls(&m, Some(&stranger), &["list"]).await;
    assert!(!ok, "a certificate from another CA must fail: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_grpc_tls_flags_ingest_is_plaintext_and_says_so() {
    let agg = ingest_support::start(&[]).await;
    let mut c = ingest_support::client(&agg).await;
    c.push(report("shop", "p", "q", &[1_000]))
        .await
        .expect("plaintext push still works");
    let out = agg.process.output();
    assert!(
        out.iter()
            .any(|l| l.contains("WARN") && l.contains("PLAINTEXT and UNAUTHENTICATED")),
        "{out:#?}"
    );
}
