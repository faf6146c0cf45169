//! The real `dwell-aggregator` binary: discovery, OpenAPI, errors and health through kubectl;
//! the self-signed certificate's logged fingerprint; HTTP/2 and HTTP/1.1; no plain HTTP; and
//! certificate rotation from `--tls-cert`/`--tls-key` (new connections get the new certificate,
//! an open connection keeps working).
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dwell_e2e::aggregator::{Aggregator, Tls, fingerprint_in};
use dwell_e2e::certs::TestCa;
use dwell_e2e::kube::curl;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_dwell-aggregator");
const DEADLINE: Duration = Duration::from_secs(30);

async fn start(tls: Tls, extra: &[&str]) -> Aggregator {
    Aggregator::start_program(Path::new(BIN), tls, extra)
        .await
        .expect("aggregator starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_openapi_errors_and_health_through_kubectl() {
    let agg = start(Tls::SelfSigned, &["--tls-san", "dwell.custom-metrics.svc"]).await;
    let k = &agg.kubectl;
    for version in ["v1beta1", "v1beta2"] {
        let list = k
            .get_json(&format!("/apis/custom.metrics.k8s.io/{version}"))
            .await;
        assert_eq!(list["kind"], "APIResourceList");
        assert!(!list["resources"].as_array().expect("resources").is_empty());
    }
    let ext = k.get_json("/apis/external.metrics.k8s.io/v1beta1").await;
    assert!(!ext["resources"].as_array().expect("resources").is_empty());
    assert_eq!(k.get_json("/apis").await["kind"], "APIGroupList");
    assert_eq!(k.get_json("/openapi/v2").await["swagger"], "2.0");
    assert!(k.get_json("/openapi/v3").await["paths"].is_object());
    for health in ["/healthz", "/livez", "/readyz"] {
        let out = k.get_raw(health).await;
        assert!(
            out.success && out.stdout.trim() == "ok",
            "{health}: {out:?}"
        );
    }
    let err = k.get_raw("/apis/custom.metrics.k8s.io/v1beta1/blah").await;
    assert!(!err.success && err.stderr.contains("(NotFound)"), "{err:?}");
    let err = k
        .get_raw("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/m?labelSelector=%3D%3D")
        .await;
    assert!(
        !err.success && err.stderr.contains("(BadRequest)"),
        "{err:?}"
    );
    let metrics = k.get_raw("/metrics").await;
    assert!(
        metrics.stdout.contains("dwell_http_requests_total"),
        "{metrics:?}"
    );
    assert!(agg.stop(DEADLINE).await, "exits on SIGTERM");
}

/// Nodes are cluster-scoped: a node's metric is answered as root-scoped — here a 404 that says
/// the rule does not serve nodes — never the 400 "nodes is namespaced" it used to be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_metric_is_answered_as_root_scoped() {
    let agg = start(Tls::SelfSigned, &[]).await;
    for version in ["v1beta1", "v1beta2"] {
        let out = agg
            .kubectl
            .get_raw(&format!(
                "/apis/custom.metrics.k8s.io/{version}/nodes/n1/seconds"
            ))
            .await;
        assert!(!out.success, "{out:?}");
        assert!(out.stderr.contains("(NotFound)"), "{out:?}");
        assert!(
            out.stderr.contains("for nodes n1") && out.stderr.contains("does not serve nodes"),
            "{out:?}"
        );
        assert!(!out.stderr.contains("is namespaced"), "{out:?}");
    }
    assert!(agg.stop(DEADLINE).await, "exits on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_fingerprint_is_logged_and_served() {
    let agg = start(Tls::SelfSigned, &[]).await;
    let logged = agg.logged_fingerprint().expect("fingerprint line");
    let served = peer_fingerprint(&agg, &agg.ca_pem, &[b"h2"]).await.0;
    assert_eq!(logged, served);
    let ca = CertificateDer::from_pem_slice(agg.ca_pem.as_bytes()).expect("PEM");
    assert_eq!(dwell_aggregator::tls::fingerprint(&ca), logged);
    assert!(
        !agg.ca_pem.contains("PRIVATE KEY"),
        "only the public PEM is written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_http11_both_work_and_plain_http_does_not() {
    let agg = start(Tls::SelfSigned, &[]).await;
    let url = format!("{}/apis/custom.metrics.k8s.io/v1beta2", agg.metrics_url());
    let h2 = curl(&url, &agg.ca_file(), &[], &["--http2"]).await;
    assert_eq!((h2.status, h2.http_version.as_str()), (200, "2"), "{h2:?}");
    let h1 = curl(&url, &agg.ca_file(), &[], &["--http1.1"]).await;
    assert_eq!(
        (h1.status, h1.http_version.as_str()),
        (200, "1.1"),
        "{h1:?}"
    );
    assert_eq!(h1.body, h2.body);
    // ALPN offers h2 first, then http/1.1.
    assert_eq!(
        peer_fingerprint(&agg, &agg.ca_pem, &[b"h2", b"http/1.1"])
            .await
            .1,
        Some(b"h2".to_vec())
    );
    assert_eq!(
        peer_fingerprint(&agg, &agg.ca_pem, &[b"http/1.1"]).await.1,
        Some(b"http/1.1".to_vec())
    );
    // Plain HTTP on the metrics port gets no HTTP answer.
    let plain = curl(
        &format!("http://{}/healthz", agg.metrics_addr),
        &agg.ca_file(),
        &[],
        &[],
    )
    .await;
    assert_eq!(plain.status, 0, "plain HTTP must not be served: {plain:?}");
    // …and the server is still fine afterwards (one bad connection never stops the loop).
    let again = curl(&url, &agg.ca_file(), &[], &[]).await;
    assert_eq!(again.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificate_files_are_picked_up_without_dropping_connections() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let old_ca = TestCa::new("dwell test CA 1");
    let new_ca = TestCa::new("dwell test CA 2");
    let (cert, key) = old_ca.issue(&["localhost", "127.0.0.1"]).write(dir.path());
    let tls = Tls::Files {
        cert: cert.clone(),
        key: key.clone(),
        ca_pem: old_ca.pem().to_string(),
    };
    let mut agg = start(tls, &["--tls-reload-interval", "200ms"]).await;
    assert!(agg.kubectl.get_raw("/healthz").await.success);
    let old_fp = agg.logged_fingerprint().expect("fingerprint line");

    // An HTTP/1.1 keep-alive connection opened before the rotation.
    let mut open = connect(&agg, old_ca.pem(), &[b"http/1.1"])
        .await
        .expect("old CA trusted");
    assert!(request(&mut open).await.starts_with("HTTP/1.1 200"));

    // Rotate: a new key and certificate from another CA.
    new_ca.issue(&["localhost", "127.0.0.1"]).write(dir.path());
    let new_fp = agg
        .process
        .wait_for(DEADLINE, |l| {
            l.contains("reloaded TLS certificate")
                .then(|| fingerprint_in(l))
                .flatten()
        })
        .await
        .expect("reload logged");
    assert_ne!(new_fp, old_fp);

    // New connections present the new certificate: trusted by the new CA only.
    let (served, _) = peer_fingerprint(&agg, new_ca.pem(), &[b"h2"]).await;
    assert_eq!(served, new_fp);
    assert!(
        connect(&agg, old_ca.pem(), &[b"h2"]).await.is_err(),
        "old CA no longer matches"
    );
    let ca2 = new_ca.write(dir.path(), "ca2.pem");
    let fresh = curl(&format!("{}/healthz", agg.metrics_url()), &ca2, &[], &[]).await;
    assert_eq!(fresh.status, 200, "{fresh:?}");

    // The connection opened before the rotation still serves requests.
    assert!(request(&mut open).await.starts_with("HTTP/1.1 200"));

    // A broken pair is refused and the current certificate stays.
    std::fs::write(&key, "not a key").expect("write");
    agg.process
        .wait_for(DEADLINE, |l| l.contains("cannot be loaded").then_some(()))
        .await
        .expect("bad files logged");
    assert_eq!(
        peer_fingerprint(&agg, new_ca.pem(), &[b"h2"]).await.0,
        new_fp
    );
}

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(agg: &Aggregator, ca_pem: &str, alpn: &[&[u8]]) -> Result<TlsStream, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(agg.metrics_addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    // With TLS 1.3 a rejected certificate can surface on first use; flush to find out now.
    stream.flush().await.map_err(|e| e.to_string())?;
    Ok(stream)
}

/// The leaf certificate's fingerprint and the negotiated ALPN protocol.
async fn peer_fingerprint(
    agg: &Aggregator,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> (String, Option<Vec<u8>>) {
    let stream = connect(agg, ca_pem, alpn).await.expect("TLS connection");
    let (_, conn) = stream.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("peer certificate");
    (
        dwell_aggregator::tls::fingerprint(leaf),
        conn.alpn_protocol().map(<[u8]>::to_vec),
    )
}

/// One keep-alive HTTP/1.1 GET /healthz on an open connection; returns the response head+body.
async fn request(stream: &mut TlsStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while !got.ends_with("ok") {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed; got {got:?}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    got
}
