//! `dwell-aggregator inject`, the real binary, as Helm runs a post-renderer. Helm cannot be
//! installed on this machine (no Debian, PyPI or npm package ships it), so this tests Helm's
//! documented contract instead: the rendered manifests on stdin, the modified manifests on
//! stdout, exit 0; on failure a non-zero exit, the reason on stderr (Helm shows it) and nothing
//! on stdout. Also: files in order, `-` for stdin, and a refusal that names the annotation.
use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_dwell-aggregator");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/inject/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn inject(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("inject")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs dwell-aggregator");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.as_bytes()).expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("waits")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn stdin_to_stdout_gives_the_golden_output() {
    let out = inject(&[], &fixture("shop.in.yaml"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), fixture("shop.out.yaml"));
    let report = text(&out.stderr);
    assert!(
        report.contains("stdin: document 3: Deployment shop-orders: injected"),
        "{report}"
    );
    assert!(
        report.contains("Deployment shop-mailer: not_selected"),
        "{report}"
    );
}

#[test]
fn files_and_stdin_in_order_separated_by_document_markers() {
    let dir = format!("{}/tests/fixtures/inject", env!("CARGO_MANIFEST_DIR"));
    let cron = format!("{dir}/cronjob.in.yaml");
    let out = inject(&[&cron, "-"], &fixture("statefulset.in.yaml"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = format!(
        "{}---\n{}",
        fixture("cronjob.out.yaml"),
        fixture("statefulset.out.yaml")
    );
    assert_eq!(text(&out.stdout), want);
    let with_all = inject(&["--all", "-"], &fixture("list.in.json"));
    assert!(with_all.status.success());
    assert_eq!(text(&with_all.stdout), fixture("list.out.json"));
}

#[test]
fn a_refusal_exits_non_zero_with_nothing_on_stdout() {
    // The variable named by dwell.io/amqp-url-env does not exist: the whole run fails, so Helm
    // installs nothing half-injected.
    let broken = fixture("binder.in.yaml").replace(
        "dwell.io/queue: jobs",
        "dwell.io/queue: jobs\n        dwell.io/amqp-url-env: BROKER_URL",
    );
    let out = inject(&[], &broken);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("document 2: Deployment binder: dwell.io/amqp-url-env: no container sets BROKER_URL in env"),
        "{err}"
    );
    let missing = inject(&["/nonexistent/manifests.yaml"], "");
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("/nonexistent/manifests.yaml"));
    let garbage = inject(&[], "a: [\n");
    assert!(!garbage.status.success());
    assert!(text(&garbage.stderr).contains("stdin: document 1"));
}

#[test]
fn a_stream_without_workloads_passes_through_unchanged() {
    let input = "# Source: chart/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: \"0644\"}\n";
    let out = inject(&[], input);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), input);
    assert!(out.stderr.is_empty());
}
