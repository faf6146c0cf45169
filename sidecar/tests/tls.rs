//! The real `dwell-sidecar` binary streaming to the real `dwell-aggregator` (built by
//! `cargo build --workspace --bins`) over TLS with a client certificate: `--aggregator https://…`,
//! `--aggregator-ca`, and the client identity through its `DWELL_CLIENT_CERT`/`DWELL_CLIENT_KEY`
//! environment twins. The aggregator requires mTLS (`--grpc-client-ca`); the pushed age is read
//! back with `kubectl get --raw`. A sidecar without a certificate is refused and its reports
//! never land.

use std::path::PathBuf;
use std::time::Duration;

use dwell_e2e::aggregator::{Aggregator, Tls};
use dwell_e2e::certs::TestCa;
use dwell_e2e::process::{Process, addr_after};

const DEADLINE: Duration = Duration::from_secs(30);
const RULES: &str = "rules:\n  - {name: dwell-max, statistic: max, window: 5m}\n";

fn aggregator_binary() -> Option<PathBuf> {
    dwell_e2e::built_binary("dwell-aggregator")
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// Starts the sidecar binary for pod `pod` pushing to `aggregator` with `extra` flags and `env`;
/// returns it and its UDP report address.
async fn sidecar(
    aggregator: &str,
    pod: &str,
    extra: &[String],
    env: &[(&str, &str)],
) -> (Process, std::net::SocketAddr) {
    let mut args: Vec<String> = [
        "--aggregator",
        aggregator,
        "--queue",
        "q",
        "--pod-name",
        pod,
        "--pod-namespace",
        "shop",
        "--label",
        "app=binder",
        "--interval",
        "200ms",
        "--report-udp",
        "127.0.0.1:0",
        "--report-http",
        "off",
        "--telemetry-addr",
        "off",
    ]
    .map(String::from)
    .to_vec();
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.push(("RUST_LOG", "info"));
    let program = PathBuf::from(env!("CARGO_BIN_EXE_dwell-sidecar"));
    let mut process = Process::spawn(pod, &program, &args, &env).expect("spawn sidecar");
    let udp = process
        .wait_for(DEADLINE, |l| {
            l.contains("dwell-sidecar started")
                .then(|| addr_after(l, "report_udp"))
                .flatten()
        })
        .await
        .expect("sidecar starts");
    (process, udp)
}

async fn send_age(udp: std::net::SocketAddr, age_ms: u128) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let line = format!("q {}ms\n", now_ms() - age_ms);
    sock.send_to(line.as_bytes(), udp).await.expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_streams_over_mtls_and_the_value_is_served() {
    let Some(bin) = aggregator_binary() else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let server_ca = TestCa::new("dwell-grpc-server-ca");
    let clients = TestCa::new("dwell-sidecar-ca");
    let (grpc_cert, grpc_key) = server_ca
        .issue(&["localhost", "127.0.0.1"])
        .write_as(dir.path(), "grpc");
    let server_ca_file = server_ca.write(dir.path(), "server-ca.crt");
    let client_ca_file = clients.write(dir.path(), "client-ca.crt");
    let (client_cert, client_key) = clients
        .issue_client("binder-0", &[])
        .write_as(dir.path(), "client");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).expect("rules");
    let show = |p: &PathBuf| p.display().to_string();
    let flags = [
        "--grpc-tls-cert".to_string(),
        show(&grpc_cert),
        "--grpc-tls-key".into(),
        show(&grpc_key),
        "--grpc-client-ca".into(),
        show(&client_ca_file),
        "--config".into(),
        show(&rules),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agg = Aggregator::start_program(&bin, Tls::SelfSigned, &flags)
        .await
        .expect("aggregator starts");
    // The certificate names localhost; the URL's host is what the sidecar verifies.
    let url = format!("https://localhost:{}", agg.grpc_addr.port());
    let ca_flag = ["--aggregator-ca".to_string(), show(&server_ca_file)];

    // Without a client certificate: refused at the handshake, so nothing lands.
    let (mut anonymous, udp) = sidecar(&url, "anonymous-0", &ca_flag, &[]).await;
    send_age(udp, 9_000).await;
    anonymous
        .wait_for(DEADLINE, |l| {
            l.contains("report stream failed").then_some(())
        })
        .await
        .expect("the sidecar without a certificate is refused");

    // With one (through the environment twins): streams, and the served max is its 5 s age.
    let (cert, key) = (show(&client_cert), show(&client_key));
    let env = [
        ("DWELL_CLIENT_CERT", cert.as_str()),
        ("DWELL_CLIENT_KEY", key.as_str()),
    ];
    let (mut good, udp) = sidecar(&url, "binder-0", &ca_flag, &env).await;
    send_age(udp, 5_000).await;
    let path =
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/deployments.apps/binder/dwell-max";
    let end = tokio::time::Instant::now() + DEADLINE;
    let value = loop {
        let raw = agg.kubectl.get_raw(path).await;
        let got = raw.json().ok().and_then(|v| {
            v["items"][0]["value"]
                .as_str()
                .and_then(|q| q.parse::<f64>().ok())
        });
        if let Some(v) = got.filter(|v| *v >= 5.0) {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "no value after 30 s: {raw:?}\n{:#?}",
            agg.process.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // 5 s old when sent; the 9 s age of the refused sidecar must not be the max.
    assert!((5.0..9.0).contains(&value), "served {value}");
    assert!(good.terminate(Duration::from_secs(10)).await);
    assert!(anonymous.terminate(Duration::from_secs(10)).await);
}

#[test]
fn client_certificate_flags_need_https_and_each_other() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dwell-sidecar"))
            .args(["--queue", "q", "--pod-name", "p", "--pod-namespace", "n"])
            .args(args)
            .output()
            .expect("run sidecar")
    };
    let out = run(&["--client-cert", "/nonexistent"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--client-key"));
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = TestCa::new("c")
        .issue_client("p", &[])
        .write_as(dir.path(), "client");
    let out = run(&[
        "--aggregator",
        "http://127.0.0.1:1",
        "--client-cert",
        &cert.display().to_string(),
        "--client-key",
        &key.display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--client-cert needs an https:// aggregator"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
