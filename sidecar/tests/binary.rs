//! The real `dwell-sidecar` binary: --help documents every flag with its DWELL_ twin, bad values
//! exit non-zero with a clear message (and never the AMQP password), and SIGTERM sends a goodbye
//! report before a clean exit.

mod common;

use std::process::{Command, Stdio};

use common::{Peer, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_dwell-sidecar");

#[test]
fn help_lists_every_env_twin() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for env in [
        "DWELL_AGGREGATOR",
        "DWELL_AGGREGATOR_CA",
        "DWELL_INTERVAL",
        "DWELL_QUEUE",
        "DWELL_VHOST",
        "DWELL_AMQP_URL",
        "DWELL_STATS_INTERVAL",
        "DWELL_REPORT_UDP",
        "DWELL_REPORT_HTTP",
        "DWELL_TELEMETRY_ADDR",
        "DWELL_PEEK",
        "DWELL_PEEK_INTERVAL",
        "DWELL_QUEUE_TYPE",
        "DWELL_TIMESTAMP_HEADER",
        "DWELL_TIMESTAMP_HEADER_UNIT",
        "DWELL_TIMESTAMP_UNIT",
        "DWELL_MAX_AGE",
        "DWELL_POD_NAME",
        "DWELL_POD_NAMESPACE",
        "DWELL_LABELS_FILE",
        "DWELL_LABELS",
        "DWELL_BACKLOG",
        "DWELL_RESOLVE_INTERVAL",
        "DWELL_SHUTDOWN_TIMEOUT",
        "DWELL_LOG_FORMAT",
    ] {
        assert!(
            help.contains(&format!("[env: {env}=")),
            "--help lacks {env}"
        );
    }
}

fn fails_with(args: &[&str], envs: &[(&str, &str)], needle: &str) -> String {
    let out = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    stderr
}

#[test]
fn bad_values_fail_clearly() {
    let off = [
        "--report-udp",
        "off",
        "--report-http",
        "off",
        "--telemetry-addr",
        "off",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["--queue", "q"];
        v.extend_from_slice(&off);
        v.extend_from_slice(extra);
        v
    };
    fails_with(&with(&["--interval", "0"]), &[], "--interval");
    fails_with(&with(&["--peek-interval", "1s"]), &[], "10s");
    fails_with(&["--interval", "1s"], &[], "--queue");
    fails_with(
        &with(&["--aggregator", "ftp://x:1"]),
        &[],
        "http:// or https://",
    );
    let err = fails_with(
        &with(&[]),
        &[("DWELL_AMQP_URL", "amqp://guest:s3cret@[oops/x")],
        "--amqp-url",
    );
    assert!(!err.contains("s3cret"), "{err}");
    fails_with(&with(&["--peek"]), &[], "--peek needs --amqp-url");
    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let args = [
        "--queue",
        "q",
        "--report-udp",
        "off",
        "--telemetry-addr",
        "off",
        "--report-http",
        &port,
    ];
    fails_with(&args, &[], "--report-http");
}

#[tokio::test]
async fn sigterm_sends_goodbye_and_exits() {
    let mut peer = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let agg = format!("http://{}", peer.addr);
    let mut child = Command::new(BIN)
        .args([
            "--aggregator",
            &agg,
            "--queue",
            "orders",
            "--interval",
            "200ms",
        ])
        .args([
            "--report-udp",
            "127.0.0.1:0",
            "--report-http",
            "127.0.0.1:0",
            "--telemetry-addr",
            "127.0.0.1:0",
        ])
        .env("POD_NAME", "binder-7")
        .env("POD_NAMESPACE", "shop")
        .env("DWELL_AMQP_URL", "amqp://guest:s3cret@127.0.0.1:1/%2f")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = peer.until("a report", |r| r.seq >= 2).await;
    let source = first[0].source.clone().unwrap();
    assert_eq!(
        (source.pod.as_str(), source.namespace.as_str()),
        ("binder-7", "shop")
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let bye = peer.until("the goodbye report", |r| r.goodbye).await;
    assert_eq!(bye.last().unwrap().source.as_ref().unwrap().pod, "binder-7");
    let exit = eventually("the process to exit", || {
        let s = child.try_wait().unwrap();
        async move { s }
    })
    .await;
    assert!(exit.success(), "{exit:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("dwell-sidecar started"), "{stderr}");
    assert!(stderr.contains("goodbye report acknowledged"), "{stderr}");
    assert!(
        !stderr.contains("s3cret"),
        "the AMQP password leaked into the log: {stderr}"
    );
}

/// A closed log pipe (`dwell-sidecar 2>&1 | head -1`) must not take tasks down: logging into it
/// used to panic inside tracing-subscriber, and the goodbye never went out.
#[tokio::test]
async fn sigterm_still_says_goodbye_when_stderr_is_a_closed_pipe() {
    let mut peer = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let agg = format!("http://{}", peer.addr);
    let mut child = Command::new(BIN)
        .args(["--aggregator", &agg, "--queue", "orders"])
        .args(["--interval", "200ms", "--report-udp", "127.0.0.1:0"])
        .args([
            "--report-http",
            "127.0.0.1:0",
            "--telemetry-addr",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    peer.until("a report", |r| r.seq >= 1).await;
    drop(child.stderr.take()); // close the read end: every later log write gets EPIPE
    peer.until("a report after the pipe closed", |r| r.seq >= 4)
        .await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    peer.until("the goodbye report", |r| r.goodbye).await;
    let exit = eventually("the process to exit", || {
        let s = child.try_wait().unwrap();
        async move { s }
    })
    .await;
    assert!(exit.success(), "{exit:?}");
}
