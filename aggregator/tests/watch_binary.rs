//! Issue 12 against the real binary and the real broker: the aggregator watches queues itself
//! (a dedicated monitoring user with no queue permissions, its URL in a file as a mounted
//! Secret), and `kubectl get --raw` reads what the HPA would read. Cases: a backlog nobody
//! consumes wakes within two polls (Object and External, the head age from the management
//! API), idle is exactly 0, wrong credentials (log line, counter, no crash, recovery after the
//! Secret is fixed), a missing queue reported per entry, the broker going away (a proxy cut: the
//! shared broker is never stopped) → stale → on_missing, and a reload adding and removing
//! watched queues. No test asserts on elapsed time: "within two polls" counts polls.
mod ingest_support;
#[path = "../../amqp/tests/support/proxy.rs"]
mod proxy;
mod watch_support;

use std::path::Path;

use dwell_e2e::aggregator::Aggregator;
use dwell_e2e::broker;
use dwell_e2e::publisher::{Publisher, now_ms};
use ingest_support::{eventually, external_value, grpcurl, object_value, start, write_config};
use watch_support::{TestUser, metric, metrics_text, write_url};

/// A rules file: broker `main` from `url_file` (and the management API), `entries` as YAML list
/// items of `watch:`, and the rules the tests read.
fn rules(url_file: &Path, management: bool, entries: &[String]) -> String {
    let management = if management {
        format!("    management_url: {}\n", watch_support::management_url())
    } else {
        String::new()
    };
    let watch = if entries.is_empty() {
        String::new()
    } else {
        format!("watch:\n{}", entries.concat())
    };
    format!(
        "stale_after: 30s\nbrokers:\n  main:\n    url_file: {}\n{management}{watch}rules:\n  \
         - {{name: wake, statistic: max, min: 1, idle_after: 5m}}\n  \
         - {{name: fb, statistic: max, min: 1, idle_after: 5m, on_missing: {{fallback: 7}}}}\n",
        url_file.display()
    )
}

/// One `watch:` item for `queue` in namespace `binder`, polled every second.
fn entry(queue: &str) -> String {
    format!(
        "  - {{broker: main, queue: \"{queue}\", namespace: binder, labels: {{app: binder}}, \
         interval: 1s}}\n"
    )
}

/// The External value of `metric` for queue `queue` (what an External HPA metric reads).
async fn external(agg: &Aggregator, metric: &str, queue: &str) -> Result<f64, String> {
    external_value(agg, "binder", metric, &format!("queue={queue}")).await
}

/// Successful polls so far.
async fn polls_ok(agg: &Aggregator) -> f64 {
    metric(
        agg,
        "dwell_watch_polls_total",
        &[r#"broker="main""#, r#"result="ok""#],
    )
    .await
}

/// Waits until `n` more successful polls than `from` were counted.
async fn polls_after(agg: &Aggregator, from: f64, n: f64) {
    eventually("polls", || async {
        let now = polls_ok(agg).await;
        if now >= from + n {
            Ok(())
        } else {
            Err(format!("{now} ok polls, waiting for {}", from + n))
        }
    })
    .await
}

fn assert_no_password(agg: &Aggregator, password: &str) {
    let out = agg.process.output().join("\n");
    assert!(
        !out.contains(password),
        "the password is in the aggregator's output:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_nobody_consumes_wakes_within_two_polls_and_idle_is_zero() {
    let Some(url) = broker::require("watch: backlog wakes").await else {
        return;
    };
    let Some(user) = TestUser::create("watch: backlog wakes", &url) else {
        return;
    };
    let queue = broker::unique_queue("watch-wake");
    let mut publisher = Publisher::new(&url, &queue);
    publisher
        .publish_at(0, now_ms())
        .await
        .expect("declare via a first message");
    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = write_url(dir.path(), &user.url(&url));
    // Drain the first message so the queue starts empty.
    let conn = broker::connect(&url, std::time::Duration::from_secs(5))
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let _ = ch
        .queue_purge(queue.as_str().into(), Default::default())
        .await
        .expect("purge");
    let config = write_config(dir.path(), &rules(&url_file, true, &[entry(&queue)]));
    let agg = start(&["--config", &config]).await;

    // Nothing ready and nobody consuming: idle at once, exactly 0 (min 1 notwithstanding).
    let zero = eventually("the watch's first poll", || async {
        match external(&agg, "wake", &queue).await {
            Ok(v) if v == 0.0 => Ok(v),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(zero, 0.0);
    assert_eq!(
        object_value(&agg, "binder", "wake").await,
        Ok(0.0),
        "the Object form too"
    );

    // A backlog with no consumer: by the second poll after the publish the value is above 0.
    let before = polls_ok(&agg).await;
    for seq in 1..=3 {
        // Published two minutes ago by the publisher's clock: the management API's head
        // timestamp then gives a longer lower bound than the watch's own sighting.
        publisher
            .publish_at(seq, now_ms() - 120_000)
            .await
            .expect("publish");
    }
    polls_after(&agg, before, 2.0).await;
    let woke = external(&agg, "wake", &queue).await.expect("a value");
    assert!(woke >= 1.0, "a backlog must wake the HPA: {woke}");
    // Then the management API's head timestamp (up to ~10 s stale) makes it ≥ 120 s.
    let head = eventually("the head age from the management API", || async {
        match external(&agg, "wake", &queue).await {
            Ok(v) if v >= 120.0 => Ok(v),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(head < 3_600.0, "{head}");
    assert!(
        metric(
            &agg,
            "dwell_watch_management_reads_total",
            &[r#"result="ok""#]
        )
        .await
            >= 1.0,
        "{}",
        metrics_text(&agg).await
    );

    // Explain shows the watched source and its lower bound, and never the password.
    let selector = format!("queue={queue}");
    let request = format!(
        r#"{{"metric":"wake","namespace":"binder","kind":"external","metric_label_selector":"{selector}"}}"#
    );
    let (ok, out) = grpcurl(&agg, &["-d", &request, "dwell.v1.Inspect/Explain"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("watch:main"), "{out}");
    assert!(out.contains("watched: 3 ready, 0 consumers"), "{out}");
    assert!(out.contains("head age"), "{out}");
    assert!(!out.contains(&user.password), "{out}");
    assert_no_password(&agg, &user.password);

    publisher.close().await;
    let _ = conn.close(200, "done".into()).await;
    broker::delete(&url, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_logged_counted_and_recovered_without_a_crash() {
    let Some(url) = broker::require("watch: wrong credentials").await else {
        return;
    };
    let Some(user) = TestUser::create("watch: wrong credentials", &url) else {
        return;
    };
    let queue = broker::unique_queue("watch-auth");
    let mut publisher = Publisher::new(&url, &queue);
    publisher.publish_at(1, now_ms()).await.expect("publish");
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = "Not-The-Password-s3cret";
    let url_file = write_url(dir.path(), &user.url_with_password(&url, wrong));
    let config = write_config(dir.path(), &rules(&url_file, false, &[entry(&queue)]));
    let mut agg = start(&["--config", &config]).await;

    let line = agg
        .process
        .wait_for(ingest_support::DEADLINE, |l| {
            l.contains("REFUSED the watch's credentials")
                .then(|| l.to_string())
        })
        .await
        .expect("a clear log line");
    assert!(
        line.contains("broker=main") && line.contains("url_file"),
        "{line}"
    );
    // Retries, counted by reason, while the process keeps serving.
    eventually("auth failures counted", || async {
        let n = metric(
            &agg,
            "dwell_watch_connect_failures_total",
            &[r#"result="auth""#],
        )
        .await;
        if n >= 2.0 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    assert!(agg.process.pid().is_some(), "still running");
    let missing = external(&agg, "wake", &queue)
        .await
        .expect_err("no value without a watch");
    assert!(missing.contains("never seen"), "{missing}");
    assert_eq!(
        external(&agg, "fb", &queue).await,
        Ok(7.0),
        "on_missing decides"
    );
    let failures = agg
        .process
        .output()
        .iter()
        .filter(|l| l.contains("REFUSED the watch's credentials"))
        .count();
    assert_eq!(
        failures, 1,
        "one line per distinct failure, not one per retry"
    );

    // The Secret is fixed: the next attempt reads the file again and connects.
    write_url(dir.path(), &user.url(&url));
    agg.process
        .wait_for(ingest_support::DEADLINE, |l| {
            l.contains("watch connected").then_some(())
        })
        .await
        .expect("reconnects with the rotated credentials");
    let woke = eventually("served once connected", || async {
        external(&agg, "wake", &queue).await
    })
    .await;
    assert!(woke >= 1.0, "{woke}");
    assert_no_password(&agg, wrong);
    assert_no_password(&agg, &user.password);

    publisher.close().await;
    broker::delete(&url, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_is_reported_per_entry_and_its_neighbours_go_on() {
    let Some(url) = broker::require("watch: missing queue").await else {
        return;
    };
    let queue = broker::unique_queue("watch-404");
    let absent = format!("{queue}.absent");
    let mut publisher = Publisher::new(&url, &queue);
    publisher.publish_at(1, now_ms()).await.expect("publish");
    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = write_url(dir.path(), &url);
    let config = write_config(
        dir.path(),
        &rules(&url_file, false, &[entry(&queue), entry(&absent)]),
    );
    let mut agg = start(&["--config", &config]).await;

    let line = agg
        .process
        .wait_for(ingest_support::DEADLINE, |l| {
            (l.contains("watched queue cannot be polled") && l.contains(&absent))
                .then(|| l.to_string())
        })
        .await
        .expect("the missing queue is reported");
    assert!(line.contains("404"), "{line}");
    let before = polls_ok(&agg).await;
    polls_after(&agg, before, 3.0).await;
    assert!(external(&agg, "wake", &queue).await.expect("served") >= 1.0);
    let missing = external(&agg, "wake", &absent)
        .await
        .expect_err("nothing for it");
    assert!(missing.contains("never seen"), "{missing}");
    let up = |q: &str| format!(r#"queue="{q}""#);
    assert_eq!(
        metric(&agg, "dwell_watch_queue_up", &[&up(&queue)]).await,
        1.0
    );
    assert_eq!(
        metric(&agg, "dwell_watch_queue_up", &[&up(&absent)]).await,
        0.0
    );
    assert!(metric(&agg, "dwell_watch_polls_total", &[r#"result="not_found""#]).await >= 1.0);
    assert_eq!(
        metric(&agg, "dwell_watch_connect_failures_total", &[]).await,
        0.0,
        "a 404 closes a channel, never the connection"
    );

    publisher.close().await;
    broker::delete(&url, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_going_away_goes_stale_and_on_missing_decides() {
    let Some(url) = broker::require("watch: broker goes away").await else {
        return;
    };
    let queue = broker::unique_queue("watch-gone");
    let mut publisher = Publisher::new(&url, &queue);
    publisher.publish_at(1, now_ms()).await.expect("declare");
    let conn = broker::connect(&url, std::time::Duration::from_secs(5))
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_purge(queue.as_str().into(), Default::default())
        .await
        .expect("purge");
    // The aggregator reaches the broker through a proxy this test cuts.
    let cut = proxy::Proxy::start(proxy::broker_addr(&url), None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = write_url(
        dir.path(),
        &proxy::through(&url, "amqp", "127.0.0.1", cut.addr()),
    );
    let config = write_config(dir.path(), &rules(&url_file, false, &[entry(&queue)]));
    let agg = start(&["--config", &config]).await;
    eventually("idle: 0", || async {
        match external(&agg, "wake", &queue).await {
            Ok(0.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    cut.cut();
    // Four failed polls after the last success: more than three intervals without an answer.
    let failed = || async {
        metric(&agg, "dwell_watch_polls_total", &[r#"broker="main""#]).await - polls_ok(&agg).await
    };
    let failed_at_cut = failed().await;
    eventually("polls fail", || async {
        let n = failed().await;
        if n >= failed_at_cut + 4.0 {
            Ok(())
        } else {
            Err(format!("{n} failed polls"))
        }
    })
    .await;
    let stale = external(&agg, "wake", &queue)
        .await
        .expect_err("not a stale 0");
    assert!(stale.contains("every source is stale"), "{stale}");
    assert_eq!(
        external(&agg, "fb", &queue).await,
        Ok(7.0),
        "the fallback decides"
    );

    cut.restore();
    eventually("fresh again: 0", || async {
        match external(&agg, "wake", &queue).await {
            Ok(0.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    publisher.close().await;
    let _ = conn.close(200, "done".into()).await;
    broker::delete(&url, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_and_removes_watched_queues() {
    let Some(url) = broker::require("watch: reload").await else {
        return;
    };
    let (a, b) = (
        broker::unique_queue("watch-ra"),
        broker::unique_queue("watch-rb"),
    );
    let mut pa = Publisher::new(&url, &a);
    let mut pb = Publisher::new(&url, &b);
    pa.publish_at(1, now_ms()).await.expect("publish a");
    pb.publish_at(1, now_ms()).await.expect("publish b");
    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = write_url(dir.path(), &url);
    let config = write_config(dir.path(), &rules(&url_file, false, &[entry(&a)]));
    let mut agg = start(&["--config", &config, "--config-poll-interval", "200ms"]).await;
    eventually("a is watched", || async {
        external(&agg, "wake", &a).await
    })
    .await;
    assert!(
        external(&agg, "wake", &b).await.is_err(),
        "b is not watched yet"
    );

    // Swap: a out, b in.
    write_config(dir.path(), &rules(&url_file, false, &[entry(&b)]));
    agg.process
        .wait_for(ingest_support::DEADLINE, |l| {
            (l.contains("queue watch updated")
                && l.contains("started=1")
                && l.contains("stopped=1"))
            .then_some(())
        })
        .await
        .expect("the reload restarts only what changed");
    eventually("b is watched", || async {
        external(&agg, "wake", &b).await
    })
    .await;
    let gone = external(&agg, "wake", &a)
        .await
        .expect_err("a left the window");
    assert!(gone.contains("never seen"), "{gone}");
    assert_eq!(metric(&agg, "dwell_watch_queues", &[]).await, 1.0);

    // A bad file (an inline URL) is refused; the watch in force goes on.
    write_config(
        dir.path(),
        "brokers:\n  main: {url: \"amqp://u:inline-s3cret@h/\"}\nrules:\n  - {name: wake}\n",
    );
    agg.process
        .wait_for(ingest_support::DEADLINE, |l| {
            (l.contains("config rejected") && l.contains("brokers.main.url")).then_some(())
        })
        .await
        .expect("rejected with its path");
    let before = polls_ok(&agg).await;
    polls_after(&agg, before, 2.0).await;
    assert!(external(&agg, "wake", &b).await.is_ok(), "b still watched");
    assert_no_password(&agg, "inline-s3cret");

    pa.close().await;
    pb.close().await;
    broker::delete(&url, &a).await;
    broker::delete(&url, &b).await;
}
