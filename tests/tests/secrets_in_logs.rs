//! Secrets never appear in what dwell prints. Both real binaries run at `RUST_LOG=debug` (every
//! dependency's debug lines too) with secrets made fresh for this run, and are driven through
//! the failure paths that handle them; then every line either printed, and every error a client
//! got back, is searched for every secret (`dwell_e2e::secrets::Secrets`).
//!
//! - The sidecar: a broker URL whose password the broker refuses (the stats source retries it),
//!   an app logging in through the tap with a refused password, an unreachable aggregator over
//!   mTLS (its client key), a token file rotated twice and once made unusable, and start-ups
//!   refused for a bad token file and a bad URL carrying the password.
//! - The aggregator: TLS keys for the metrics API and gRPC, a client CA, a queue watch whose
//!   broker refuses the password in its URL file; then requests that fail (no certificate with a
//!   bearer token, an untrusted certificate, bad paths and selectors, plaintext on TLS ports, a
//!   gRPC call with a bearer token but no certificate), and a sidecar that streams to it with its
//!   token and rotates it.
//!
//! **Adding a secret** (e.g. a JWKS document, the SubjectAccessReview token): make it with
//! `secrets.fresh(…)` (or register a key with `add_private_key`), give it to the binary in
//! [`AggregatorSecrets`] / the scenario's flags, drive the path that reads it, and the final
//! `assert_absent` covers it. No line is asserted on by time: each step waits for the log line
//! that shows it happened. The aggregator's verified ingest tokens (`--ingest-jwks`) and its
//! SubjectAccessReview token are checked the same way where those paths run:
//! `aggregator/tests/ingest_auth.rs` and `aggregator/tests/authz_sar.rs`.
//!
//! Uses the shared RabbitMQ only with a user that does not exist (`dwell-secrets-<pid>`): the
//! broker refuses it, nothing is created.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dwell_e2e::aggregator::{Aggregator, Tls};
use dwell_e2e::certs::TestCa;
use dwell_e2e::kube::{Kubectl, curl};
use dwell_e2e::process::{Process, addr_after};
use dwell_e2e::secrets::Secrets;
use dwell_e2e::{broker, built_binary, tap};

const STEP: Duration = Duration::from_secs(30);

fn show(p: &Path) -> String {
    p.display().to_string()
}

/// Writes `content` to `path` by rename, as the kubelet swaps a projected file.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A JWT-shaped token (header.payload.signature) whose signature is a fresh secret.
fn token(secrets: &mut Secrets, what: &str) -> String {
    secrets.fresh(
        what,
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImR3ZWxsIn0.eyJhdWQiOlsiZHdlbGwiXX0.sig-",
    )
}

/// A broker URL for a user the broker does not know, with a fresh password (percent-encoded:
/// it holds a `/`), on the broker of `url`.
fn refused_url(secrets: &mut Secrets, url: &str) -> String {
    let password = secrets.fresh("broker password", "pw/");
    format!(
        "amqp://dwell-secrets-{}:{}@{}/%2f",
        std::process::id(),
        password.replace('/', "%2F"),
        tap::host_port(url)
    )
}

/// How [`refused_url`]'s URL looks redacted (`amqp://user:***@…`).
fn redacted_user() -> String {
    format!("dwell-secrets-{}:***@", std::process::id())
}

/// Waits for a line containing `text`, failing with the output so far.
async fn wait_line(p: &mut Process, text: &str) {
    if let Err(e) = p.wait_for(STEP, |l| l.contains(text).then_some(())).await {
        panic!("waiting for {text:?}: {e}");
    }
}

/// Runs the sidecar to a refused start; its output.
fn refused_start(sidecar: &Path, args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new(sidecar)
        .args(["--queue", "q", "--pod-name", "p", "--pod-namespace", "n"])
        .args(["--report-udp", "off", "--report-http", "off"])
        .args(["--telemetry-addr", "off"])
        .args(args)
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .output()
        .expect("run dwell-sidecar");
    assert!(!out.status.success(), "started with {args:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_prints_no_password_token_or_key_on_its_failure_paths() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(url) = broker::require("secrets_in_logs").await else {
        return;
    };
    let Some(sidecar) = built_binary("dwell-sidecar") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut secrets = Secrets::new();
    let broker_url = refused_url(&mut secrets, &url);
    let app_url_password = secrets.fresh("app's broker password", "app-pw-");
    let tokens = [
        token(&mut secrets, "ingest token"),
        token(&mut secrets, "rotated ingest token"),
    ];
    let unusable = format!("{} {}", token(&mut secrets, "unusable token"), "trailer");

    // mTLS towards an aggregator address where nothing listens.
    let server_ca = TestCa::new("dwell-secrets-server-ca");
    let server_ca_file = server_ca.write(dir.path(), "server-ca.crt");
    let client = TestCa::new("dwell-secrets-client-ca").issue_client("binder-0", &[]);
    secrets.add_private_key("sidecar client key", &client.key_pem);
    let (client_cert, client_key) = client.write_as(dir.path(), "client");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let token_file = dir.path().join("token");
    replace(&token_file, &tokens[0]);

    let mut lines = Vec::new();
    // Refused start-ups: a token file a bearer token cannot be, a URL that does not parse.
    let bad_token_file = dir.path().join("bad-token");
    std::fs::write(&bad_token_file, &unusable).expect("write");
    let refused = refused_start(&sidecar, &["--token-file", &show(&bad_token_file)]);
    assert!(
        refused.iter().any(|l| l.contains("--token-file")),
        "{refused:?}"
    );
    lines.extend(refused);
    let bad_url = broker_url.replace("@", "@[::1");
    let refused = refused_start(&sidecar, &["--amqp-url", &bad_url]);
    assert!(
        refused.iter().any(|l| l.contains("--amqp-url")),
        "{refused:?}"
    );
    lines.extend(refused);

    let upstream = format!("amqp://{}", tap::host_port(&url));
    let args: Vec<String> = [
        "--aggregator",
        &format!("https://localhost:{}", closed.port()),
        "--aggregator-ca",
        &show(&server_ca_file),
        "--client-cert",
        &show(&client_cert),
        "--client-key",
        &show(&client_key),
        "--token-file",
        &show(&token_file),
        "--amqp-url",
        &broker_url,
        "--stats-interval",
        "1s",
        "--tap-listen",
        "127.0.0.1:0",
        "--tap-upstream",
        &upstream,
        "--queue",
        "secrets",
        "--pod-name",
        "binder-0",
        "--pod-namespace",
        "jobs",
        "--interval",
        "200ms",
        "--report-udp",
        "off",
        "--report-http",
        "off",
        "--telemetry-addr",
        "off",
        "--shutdown-timeout",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut p = Process::spawn("sidecar", &sidecar, &args, &[("RUST_LOG", "debug")])
        .expect("spawn sidecar");
    let tap_addr = p
        .wait_for(STEP, |l| {
            l.contains("dwell-sidecar started")
                .then(|| dwell_e2e::sidecar::tap_addr(l))
                .flatten()
        })
        .await
        .expect("started");
    // The broker refuses the stats source's password; the aggregator cannot be reached.
    wait_line(&mut p, "stats source cannot connect").await;
    wait_line(&mut p, "report stream failed; reconnecting").await;

    // An app logs in through the tap with a password the broker refuses.
    let app_url = format!(
        "amqp://dwell-secrets-app-{}:{app_url_password}@{tap_addr}/%2f",
        std::process::id()
    );
    let refused =
        match lapin::Connection::connect(&app_url, lapin::ConnectionProperties::default()).await {
            Ok(_) => panic!("the broker let an unknown user in"),
            Err(e) => e,
        };
    // The refusal the app got came through the tap: it names no password either.
    lines.push(refused.to_string());
    wait_line(&mut p, "tap connection closed").await;

    // The kubelet rotates the token; then the file becomes unusable; then good again.
    replace(&token_file, &tokens[1]);
    wait_line(&mut p, "new service-account token picked up").await;
    replace(&token_file, &unusable);
    wait_line(&mut p, "cannot read the token file").await;
    replace(&token_file, &tokens[0]);
    wait_line(&mut p, "token file readable again").await;

    assert!(p.terminate(Duration::from_secs(15)).await, "no clean exit");
    let output = p.output();
    // The run was at debug level: dependencies' debug lines are among those checked.
    assert!(
        output.iter().any(|l| l.contains("DEBUG")),
        "no debug line printed"
    );
    // The URL was printed, redacted: the line a leak would be in was checked.
    assert!(
        output.iter().any(|l| l.contains(&redacted_user())),
        "the broker URL was never shown"
    );
    lines.extend(output);
    secrets.assert_absent("dwell-sidecar", &lines);
}

/// The secrets the aggregator is started with, and the flags that give them to it.
struct AggregatorSecrets {
    tls: Tls,
    args: Vec<String>,
    /// The client CA that signs metrics-API users.
    users: TestCa,
    /// The CA that signs sidecar client certificates.
    sidecars: TestCa,
    /// The CA of the gRPC serving certificate.
    grpc_ca_file: PathBuf,
}

fn aggregator_secrets(secrets: &mut Secrets, dir: &Path, broker_url: &str) -> AggregatorSecrets {
    let metrics_ca = TestCa::new("dwell-secrets-metrics-ca");
    let metrics = metrics_ca.issue(&["localhost", "127.0.0.1"]);
    secrets.add_private_key("metrics TLS key", &metrics.key_pem);
    let (cert, key) = metrics.write_as(dir, "metrics");

    let grpc_ca = TestCa::new("dwell-secrets-grpc-ca");
    let grpc = grpc_ca.issue(&["localhost"]);
    secrets.add_private_key("gRPC TLS key", &grpc.key_pem);
    let (grpc_cert, grpc_key) = grpc.write_as(dir, "grpc");
    let grpc_ca_file = grpc_ca.write(dir, "grpc-ca.crt");

    let users = TestCa::new("dwell-secrets-users-ca");
    let users_file = users.write(dir, "users-ca.crt");
    let sidecars = TestCa::new("dwell-secrets-sidecars-ca");
    let sidecars_file = sidecars.write(dir, "sidecars-ca.crt");

    // The queue watch's broker URL (a Secret's file) with a password the broker refuses; the
    // management API gets the same credentials.
    let url_file = dir.join("broker-url");
    std::fs::write(&url_file, broker_url).expect("url file");
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        format!(
            r#"
stale_after: 10s
brokers:
  main:
    url_file: {}
    management_url: http://127.0.0.1:15672
watch:
  - {{broker: main, vhost: /, queue: "dwell-secrets-{}", namespace: jobs, labels: {{app: binder}}, interval: 1s}}
rules:
  - name: wait_ms
    window: 3s
    statistic: max
    combine: max
    unit: milliseconds
"#,
            show(&url_file),
            std::process::id()
        ),
    )
    .expect("rules");
    let args = [
        "--client-ca",
        &show(&users_file),
        "--grpc-tls-cert",
        &show(&grpc_cert),
        "--grpc-tls-key",
        &show(&grpc_key),
        "--grpc-client-ca",
        &show(&sidecars_file),
        "--config",
        &show(&rules),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    AggregatorSecrets {
        tls: Tls::Files {
            cert,
            key,
            ca_pem: metrics_ca.pem().to_owned(),
        },
        args,
        users,
        sidecars,
        grpc_ca_file,
    }
}

/// Sends `bytes` in plaintext to a TLS port and reads what comes back (a TLS alert, or nothing).
async fn plaintext(addr: std::net::SocketAddr, bytes: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let _ = s.write_all(bytes).await;
    let mut buf = [0; 256];
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
}

/// `grpcurl` against the aggregator's gRPC port; its output (it prints the server's error).
async fn grpcurl(args: &[&str]) -> Vec<String> {
    match tokio::process::Command::new("grpcurl")
        .args(args)
        .output()
        .await
    {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
        .lines()
        .map(str::to_owned)
        .collect(),
        Err(e) => panic!("cannot run grpcurl: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregator_prints_no_key_token_or_password_on_bad_requests() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(url) = broker::require("secrets_in_logs").await else {
        return;
    };
    let (Some(program), Some(sidecar)) = (
        built_binary("dwell-aggregator"),
        built_binary("dwell-sidecar"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut secrets = Secrets::new();
    let broker_url = refused_url(&mut secrets, &url);
    let s = aggregator_secrets(&mut secrets, dir.path(), &broker_url);
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
    let mut agg = Aggregator::start_program_env(
        &program,
        s.tls.clone(),
        any,
        any,
        &args,
        &[("RUST_LOG", "debug")],
    )
    .await
    .expect("aggregator");
    let mut replies: Vec<String> = Vec::new();
    // The queue watch is refused by the broker.
    wait_line(&mut agg.process, "REFUSED the watch's credentials").await;

    // Metrics API: a bearer token but no certificate (401), on a good and a bad path.
    let bearer = token(&mut secrets, "metrics API bearer token");
    let auth = format!("Bearer {bearer}");
    for path in [
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jobs/pods/*/wait_ms",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/%ZZ/../x?labelSelector=a%20in%20(",
    ] {
        let r = curl(
            &format!("{}{path}", agg.metrics_url()),
            &agg.ca_file(),
            &[("Authorization", &auth)],
            &[],
        )
        .await;
        assert_eq!(r.status, 401, "{r:?}");
        replies.push(r.body);
        replies.extend(r.headers.into_iter().map(|(k, v)| format!("{k}: {v}")));
    }
    // A user the client CA signed: bad selectors, unknown metrics, bad paths (400/404).
    let user = s
        .users
        .issue_client("dwell-secrets-user", &["dwell:readers"]);
    secrets.add_private_key("metrics API user key", &user.key_pem);
    let kubectl = Kubectl::with_client_cert(
        dir.path(),
        "user",
        &agg.metrics_url(),
        &agg.ca_pem,
        &user.cert_pem,
        &user.key_pem,
    )
    .expect("kubeconfig");
    for path in [
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jobs/pods/*/wait_ms?labelSelector=a+in+(",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jobs/pods/*/no_such_metric",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/NOT_A_NAMESPACE/wait_ms",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jobs/services/binder/wait_ms?metricLabelSelector=%00",
    ] {
        let r = kubectl.get_raw(path).await;
        assert!(!r.success, "{path}: {r:?}");
        replies.extend(r.stderr.lines().map(str::to_owned));
    }
    // A certificate no trusted CA signed: refused in the handshake.
    let stranger = TestCa::new("dwell-secrets-stranger").issue_client("mallory", &[]);
    secrets.add_private_key("untrusted client key", &stranger.key_pem);
    let r = Kubectl::with_client_cert(
        dir.path(),
        "stranger",
        &agg.metrics_url(),
        &agg.ca_pem,
        &stranger.cert_pem,
        &stranger.key_pem,
    )
    .expect("kubeconfig")
    .get_raw("/apis/custom.metrics.k8s.io/v1beta2")
    .await;
    assert!(!r.success, "{r:?}");
    replies.extend(r.stderr.lines().map(str::to_owned));
    // Plaintext on both TLS ports.
    let garbage = format!("GET / HTTP/1.1\r\nAuthorization: {auth}\r\n\r\n");
    plaintext(agg.metrics_addr, garbage.as_bytes()).await;
    plaintext(agg.grpc_addr, garbage.as_bytes()).await;

    // gRPC: a bearer token with no client certificate (refused), then with one (Inspect).
    let grpc_ca = show(&s.grpc_ca_file);
    let grpc_addr = agg.grpc_addr.to_string();
    let header = format!("authorization: {auth}");
    let base = [
        "-cacert",
        &grpc_ca,
        "-servername",
        "localhost",
        "-H",
        &header,
    ];
    let no_cert: Vec<&str> = base
        .iter()
        .copied()
        .chain([grpc_addr.as_str(), "dwell.v1.Inspect/ListSources"])
        .collect();
    replies.extend(grpcurl(&no_cert).await);
    let probe = s.sidecars.issue_client("grpcurl", &[]);
    secrets.add_private_key("grpcurl client key", &probe.key_pem);
    let (probe_cert, probe_key) = probe.write_as(dir.path(), "grpcurl");
    let (probe_cert, probe_key) = (show(&probe_cert), show(&probe_key));
    let with_cert: Vec<&str> = base
        .iter()
        .copied()
        .chain([
            "-cert",
            &probe_cert,
            "-key",
            &probe_key,
            "-d",
            "{\"bad\": 1}",
        ])
        .chain([grpc_addr.as_str(), "dwell.v1.Inspect/ListSources"])
        .collect();
    replies.extend(grpcurl(&with_cert).await);

    // A sidecar streams to it over mTLS with its token, and the token rotates.
    let client = s.sidecars.issue_client("binder-0", &[]);
    secrets.add_private_key("sidecar client key", &client.key_pem);
    let (client_cert, client_key) = client.write_as(dir.path(), "client");
    let tokens = [
        token(&mut secrets, "ingest token"),
        token(&mut secrets, "rotated ingest token"),
    ];
    let token_file = dir.path().join("token");
    replace(&token_file, &tokens[0]);
    let sidecar_args: Vec<String> = [
        "--aggregator",
        &format!("https://localhost:{}", agg.grpc_addr.port()),
        "--aggregator-ca",
        &grpc_ca,
        "--client-cert",
        &show(&client_cert),
        "--client-key",
        &show(&client_key),
        "--token-file",
        &show(&token_file),
        "--queue",
        "secrets",
        "--pod-name",
        "binder-0",
        "--pod-namespace",
        "jobs",
        "--interval",
        "200ms",
        "--report-udp",
        "127.0.0.1:0",
        "--report-http",
        "off",
        "--telemetry-addr",
        "off",
        "--shutdown-timeout",
        "3s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut side = Process::spawn("sidecar", &sidecar, &sidecar_args, &[("RUST_LOG", "debug")])
        .expect("spawn sidecar");
    let udp = side
        .wait_for(STEP, |l| {
            l.contains("dwell-sidecar started")
                .then(|| addr_after(l, "report_udp"))
                .flatten()
        })
        .await
        .expect("sidecar started");
    wait_line(&mut side, "report stream open").await;
    // A delivery reaches the aggregator: the stream with the token carries reports.
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let udp_socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    udp_socket
        .send_to(format!("secrets {}ms\n", now_ms - 2_000).as_bytes(), udp)
        .await
        .expect("send");
    let value = dwell_e2e::poll::until(STEP, Duration::from_millis(250), || async {
        let r = kubectl
            .get_raw("/apis/custom.metrics.k8s.io/v1beta2/namespaces/jobs/pods/binder-0/wait_ms")
            .await;
        match r.success {
            true => Ok(r.stdout),
            false => Err(r.stderr),
        }
    })
    .await
    .expect("the sidecar's report is served");
    assert!(value.contains("\"binder-0\""), "{value}");
    replies.push(value);
    replace(&token_file, &tokens[1]);
    wait_line(&mut side, "reopening the report stream with the new token").await;
    assert!(
        side.terminate(Duration::from_secs(15)).await,
        "sidecar exit"
    );
    assert!(
        agg.process.terminate(Duration::from_secs(15)).await,
        "aggregator exit"
    );

    let mut lines = agg.process.output();
    assert!(
        lines.iter().any(|l| l.contains("DEBUG")),
        "no debug line printed"
    );
    assert!(
        lines.iter().any(|l| l.contains(&redacted_user())),
        "the watch's broker URL was never shown"
    );
    lines.extend(replies);
    secrets.assert_absent("dwell-aggregator and its replies", &lines);
    secrets.assert_absent("dwell-sidecar (streaming)", &side.output());
}
