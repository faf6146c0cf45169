//! The metrics API's connection limits against the real binary: a slowloris (connections that
//! send a request header one byte per second and never finish it) is closed by
//! `--metrics-header-read-timeout` while kubectl is answered meanwhile, and a connection that
//! says nothing after choosing HTTP/2 is closed by `--metrics-idle-timeout`; both counted in
//! `/metrics`. No timed assertions: only that answers arrive and that the slow connections are
//! closed, within generous bounds.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dwell_e2e::aggregator::{Aggregator, Tls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_dwell-aggregator");
/// How long a closed connection may take to be noticed: far beyond the 2 s timeouts.
const GENEROUS: Duration = Duration::from_secs(60);
const SLOW_CONNECTIONS: usize = 24;

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(agg: &Aggregator, alpn: &[u8]) -> TlsStream {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(agg.ca_pem.as_bytes()) {
        roots.add(cert.expect("CA")).expect("root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(agg.metrics_addr)
        .await
        .expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake")
}

/// Sends `GET /apis …` a byte a second, never ending the head; returns how many bytes went
/// out before the server closed the connection.
async fn slowloris(stream: TlsStream) -> usize {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let head = b"GET /apis HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let closed = async {
        let mut buf = [0u8; 1024];
        // EOF or an error: closed by the server (a 408 may come first on HTTP/1.1).
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::pin!(closed);
    let mut sent = 0;
    for byte in head.iter().cycle() {
        tokio::select! {
            _ = &mut closed => return sent,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
            return sent;
        }
        sent += 1;
    }
    sent
}

fn counted(metrics: &str, reason: &str) -> u64 {
    let series = format!("dwell_metrics_api_connections_closed_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_closed_while_kubectl_is_answered() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let flags = [
        "--metrics-header-read-timeout",
        "2s",
        "--metrics-idle-timeout",
        "2s",
        "--metrics-max-connections",
        "64",
    ];
    let agg = Aggregator::start_program(Path::new(BIN), Tls::SelfSigned, &flags)
        .await
        .expect("aggregator starts");
    let mut slow = Vec::new();
    for _ in 0..SLOW_CONNECTIONS {
        let stream = connect(&agg, b"http/1.1").await;
        slow.push(tokio::spawn(slowloris(stream)));
    }
    // A real client is answered while they drip.
    for _ in 0..3 {
        let list = agg
            .kubectl
            .get_json("/apis/custom.metrics.k8s.io/v1beta2")
            .await;
        assert_eq!(list["kind"], "APIResourceList");
    }
    for task in slow {
        let sent = tokio::time::timeout(GENEROUS, task)
            .await
            .expect("the slow connection was closed")
            .expect("task");
        assert!(sent >= 1, "it was open and slow before it was closed");
    }

    // An HTTP/2 connection that never sends a request is closed as idle.
    let mut idle = connect(&agg, b"h2").await;
    let mut buf = [0u8; 256];
    let ended = tokio::time::timeout(GENEROUS, async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue, // the server's SETTINGS, then GOAWAY
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection was closed");

    let metrics = agg.kubectl.get_raw("/metrics").await.stdout;
    assert!(
        counted(&metrics, "header_read_timeout") >= SLOW_CONNECTIONS as u64,
        "{metrics}"
    );
    assert!(counted(&metrics, "idle_timeout") >= 1, "{metrics}");
    assert!(
        metrics.contains("dwell_metrics_api_connections_max 64"),
        "{metrics}"
    );
    // Still answering afterwards.
    assert!(agg.kubectl.get_raw("/readyz").await.success);
}
