//! The `brokers:` and `watch:` sections and `idle_after`: a full valid file, defaults, and every
//! refusal with its path, never showing a password.
use std::path::Path;
use std::time::Duration;

use crate::config::parse;
use crate::watch::UrlSource;

/// A rules file with `brokers.main` reading its URL from `dir/url`.
fn with_broker(dir: &Path, url: &str, rest: &str) -> String {
    let file = dir.join("url");
    std::fs::write(&file, format!("{url}\n")).expect("write url");
    format!(
        "brokers:\n  main:\n    url_file: {}\n{rest}",
        file.display()
    )
}

fn errors_of(text: &str) -> String {
    parse(text).expect_err("refused").to_string()
}

#[test]
fn brokers_and_watch_entries_parse_with_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = with_broker(
        dir.path(),
        "amqp://dwell:s3cret@rabbit:5672/team",
        "    management_url: http://rabbit:15672\n\
         watch:\n  - {broker: main, queue: jobs, namespace: binder, labels: {app: binder}}\n  \
         - {broker: main, vhost: /, queue: jobs, namespace: binder, interval: 1s}\n\
         rules:\n  - {name: wake, idle_after: 5m, min: 1}\n",
    );
    let set = parse(&text).expect("valid");
    let main = &set.watch.brokers["main"];
    assert_eq!(main.source, UrlSource::File(dir.path().join("url")));
    assert_eq!(main.url.vhost(), "team");
    assert!(main.management.is_some());
    let [a, b] = &set.watch.entries[..] else {
        panic!("two entries: {:?}", set.watch.entries)
    };
    assert_eq!(
        (a.vhost.as_str(), a.interval),
        ("team", Duration::from_secs(2))
    );
    assert_eq!(a.labels["app"], "binder");
    assert_eq!(
        (b.vhost.as_str(), b.interval),
        ("/", Duration::from_secs(1))
    );
    assert_eq!(set.rules[0].idle_after_ms, Some(300_000));
    assert!(
        !format!("{set:?}").contains("s3cret"),
        "Debug shows no password"
    );
}

#[test]
fn urls_never_come_inline_and_refusals_hide_the_password() {
    let inline = "brokers:\n  main: {url: \"amqp://u:s3cret@h/\"}\n";
    let e = errors_of(inline);
    assert!(
        e.contains("brokers.main.url: a broker URL holds a password"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
    let e = errors_of("brokers:\n  main: {url_file: /nonexistent/dwell-url}\n");
    assert!(
        e.starts_with("brokers.main.url_file: cannot read /nonexistent/dwell-url"),
        "{e}"
    );
    let e = errors_of("brokers:\n  main: {url_file: /a, url_env: B}\n");
    assert!(
        e.contains("brokers.main: set url_file or url_env, not both"),
        "{e}"
    );
    let e = errors_of("brokers:\n  main: {}\n");
    assert!(e.contains("brokers.main: needs url_file"), "{e}");
    let dir = tempfile::tempdir().expect("tempdir");
    let e = errors_of(&with_broker(dir.path(), "http://u:s3cret@h/", ""));
    assert!(
        e.starts_with("brokers.main.url_file: invalid AMQP URL"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
}

#[test]
fn tls_files_and_management_urls_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = errors_of(&with_broker(
        dir.path(),
        "amqp://u:s3cret@h/",
        "    ca_file: /nonexistent/ca.pem\n    management_url: http://u:pw@h:15672\n",
    ));
    assert!(
        e.contains("brokers.main.ca_file: amqp://u:***@h/ is plaintext"),
        "{e}"
    );
    assert!(
        e.contains("brokers.main.ca_file: cannot read /nonexistent/ca.pem"),
        "{e}"
    );
    assert!(
        e.contains("brokers.main.management_url: invalid management URL"),
        "{e}"
    );
    assert!(!e.contains("s3cret") && !e.contains(":pw@"), "{e}");
    let e = errors_of("brokers:\n  \"a b\": {url_env: X}\n");
    assert!(
        e.contains("brokers.a b: \"a b\" is not a broker name"),
        "{e}"
    );
}

#[test]
fn watch_entries_are_refused_with_their_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = errors_of(&with_broker(
        dir.path(),
        "amqp://u:p@h/",
        "watch:\n  - {broker: other, queue: q, namespace: ns}\n  \
         - {broker: main, queue: \"\", namespace: Not_A_Namespace}\n  \
         - {broker: main, queue: q, namespace: ns, labels: {queue: x}}\n  \
         - {broker: main, queue: q, namespace: ns, interval: 20s}\n  \
         - {broker: main, queue: q, namespace: ns, interval: 100ms}\n  \
         - {broker: main, queue: q, namespace: ns}\n  \
         - {broker: main, queue: q, namespace: ns}\n\
         rules:\n  - {name: r, idle_after: soon}\n",
    ));
    for want in [
        "watch[0].broker: no broker named \"other\" (brokers: main)",
        "watch[1].queue: \"\" is not a queue name",
        "watch[1].namespace: \"Not_A_Namespace\" is not a Kubernetes namespace name",
        "watch[2].labels: \"queue\" is set from the entry itself",
        "watch[3].interval: \"20s\" is more than half of stale_after (30s)",
        "watch[4].interval: \"100ms\" is shorter than 500ms",
        "watch[6]: the same queue as watch[5]",
        "rules[0].idle_after:",
    ] {
        assert!(e.contains(want), "missing {want:?} in {e}");
    }
}
