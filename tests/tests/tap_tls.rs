//! The tap's TLS upstream (`amqps://`): the test broker has no TLS listener, so a TLS terminator
//! on loopback (rustls, a certificate from a test CA for `localhost`) stands in front of it and
//! relays the plaintext. A lapin app connects to the tap in plaintext (the pod's loopback); the
//! tap connects upstream over TLS with SNI `localhost`, verified against `--tap-upstream-ca`, and
//! the app's publish and get go through. With a CA that did not sign the broker's certificate the
//! tap refuses the upstream, closes the app's connection and counts it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dwell_e2e::broker;
use dwell_e2e::certs::TestCa;
use dwell_e2e::tap::{TapSidecar, round_trip};
use lapin::{Connection, ConnectionProperties};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const NOWHERE: &str = "127.0.0.1:9";

/// A TLS terminator in front of `broker` (host:port); returns its port and the SNI names seen.
async fn tls_front(
    cert_pem: &str,
    key_pem: &str,
    broker: String,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let names = Arc::new(Mutex::new(Vec::new()));
    let seen = names.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, broker, seen) = (acceptor.clone(), broker.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                seen.lock().unwrap().push(sni);
                let Ok(mut plain) = TcpStream::connect(broker).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_upstream_is_verified_against_the_ca_with_sni_from_the_host() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(url) = broker::require("tap_tls").await else {
        return;
    };
    let ca = TestCa::new("broker-ca");
    let serving = ca.issue(&["localhost"]);
    let (port, names) = tls_front(
        &serving.cert_pem,
        &serving.key_pem,
        dwell_e2e::tap::host_port(&url),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let good_ca = ca.write(dir.path(), "broker-ca.pem");
    let tls_url = format!("amqps://localhost:{port}");
    let good_ca = good_ca.display().to_string();
    let sidecar = TapSidecar::start(
        "tap-tls",
        &tls_url,
        NOWHERE.parse().unwrap(),
        &["--tap-upstream-ca", &good_ca],
    )
    .await
    .expect("sidecar starts");
    // The app keeps its own credentials and vhost and speaks plaintext to the tap.
    let app_url = sidecar.url(&url);
    let conn = Connection::connect(&app_url, ConnectionProperties::default())
        .await
        .expect("connected through the tap and TLS");
    let q = broker::unique_queue("tap-tls");
    round_trip(&conn, &q, b"over tls")
        .await
        .expect("publish and get over TLS");
    broker::delete(&url, &q).await;
    // (lapin closes the dropped channel on its own; the close result says nothing here.)
    let _ = conn.close(200, "done".into()).await;
    assert_eq!(
        names.lock().unwrap().as_slice(),
        ["localhost"],
        "SNI from the host name"
    );
    assert!(sidecar.stop().await);

    // A CA that did not sign the broker's certificate: the upstream is refused, the app's
    // connection closed, the failure counted.
    let other = TestCa::new("someone-else").write(dir.path(), "other-ca.pem");
    let other = other.display().to_string();
    let refusing = TapSidecar::start(
        "tap-tls-wrong-ca",
        &tls_url,
        NOWHERE.parse().unwrap(),
        &["--tap-upstream-ca", &other],
    )
    .await
    .expect("sidecar starts");
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        Connection::connect(&refusing.url(&url), ConnectionProperties::default()),
    )
    .await
    .expect("an answer within 20 s");
    assert!(
        refused.is_err(),
        "connected although the certificate is not trusted"
    );
    assert_eq!(
        refusing
            .metric("dwell_sidecar_tap_upstream_failures_total")
            .await,
        Some(1.0)
    );
    assert!(refusing.stop().await);
}
