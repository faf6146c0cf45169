//! Queue-watch benchmarks (BENCHMARKS.md, "Queue watch"), against the real broker and the real
//! aggregator binary (`cargo build -p dwell-aggregator` first; it is the sibling of `examples/`):
//!
//! - `wake`: wake-up latency, a backlog appearing on an idle queue nobody consumes → the first
//!   value > 0 on the external metrics API (HTTPS, `curl`), with the watch polling every 2 s,
//!   against a baseline run in the same command: the same watch polling every 30 s, KEDA's
//!   default `pollingInterval` (KEDA activates 0 → 1 at its next poll). Each trial waits a random
//!   fraction of the interval before publishing, so the publish lands at a uniform phase.
//! - `cost`: broker CPU of watching 1 000 queues every 2 s, from the beam process's
//!   `/proc/<pid>/stat`, against a baseline window without the watch in the same command; also
//!   the aggregator's own CPU and RSS. `cost-amplified`: the same at 8× the declare rate, where
//!   the cost per declare stands out of a shared broker's other work.
//!
//! `cargo run -p dwell-aggregator --example watch_bench -- [wake|cost|all] [runs]`. It prints
//! medians of `runs` (default 3). Queues are unique to the run and deleted at the end (and expire
//! on their own after 15 minutes should the run be interrupted). Not a test: nothing is asserted.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dwell_e2e::aggregator::{Aggregator, Tls};
use dwell_e2e::broker;
use dwell_e2e::publisher::{Publisher, now_ms};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};

const COST_QUEUES: usize = 1_000;
const COST_WINDOW: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("all");
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(3);
    let url = broker::url();
    broker::connect(&url, Duration::from_secs(5))
        .await
        .map_err(anyhow::Error::msg)?;
    let binary = aggregator_binary()?;
    println!("commit {}, {}", commit(), machine());
    if matches!(what, "wake" | "all") {
        wake(&binary, &url, runs).await?;
    }
    if matches!(what, "cost" | "all") {
        cost(&binary, &url, runs, ("2s", 1)).await?;
    }
    // The same at 8x the declare rate (2 000 entries every 500 ms), so the broker's cost per
    // declare stands out of the other work on a shared broker; it scales linearly with the rate.
    if matches!(what, "cost-amplified" | "all") {
        cost(&binary, &url, runs, ("500ms", 2)).await?;
    }
    Ok(())
}

/// `target/<profile>/dwell-aggregator`, next to `examples/`.
fn aggregator_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("no target directory")?;
    let path = dir.join("dwell-aggregator");
    if !path.exists() {
        bail!(
            "{} not found: cargo build -p dwell-aggregator",
            path.display()
        );
    }
    Ok(path)
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{date}, {cores} cores (shared)")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Writes `url` to a file and a rules file watching `queues` every `interval` (each from
/// `copies` namespaces, `bench`, `bench-1`, …); starts the binary.
async fn start(
    binary: &Path,
    dir: &Path,
    url: &str,
    queues: &[String],
    (interval, copies): (&str, usize),
    stale_after: &str,
) -> anyhow::Result<Aggregator> {
    let url_file = dir.join("url");
    std::fs::write(&url_file, format!("{url}\n"))?;
    let mut rules = format!(
        "stale_after: {stale_after}\nbrokers:\n  main: {{url_file: {}}}\nwatch:\n",
        url_file.display()
    );
    for copy in 0..copies {
        let ns = if copy == 0 {
            "bench".to_string()
        } else {
            format!("bench-{copy}")
        };
        for q in queues {
            rules.push_str(&format!(
                "  - {{broker: main, queue: \"{q}\", namespace: {ns}, interval: {interval}}}\n"
            ));
        }
    }
    rules.push_str("rules:\n  - {name: wake, statistic: max, min: 1, idle_after: 5m}\n");
    let path = dir.join("rules.yaml");
    std::fs::write(&path, rules)?;
    Aggregator::start_program(
        binary,
        Tls::SelfSigned,
        &["--config", &path.display().to_string()],
    )
    .await
    .map_err(anyhow::Error::msg)
}

/// The external value of `wake` for `queue` (None: no value).
async fn value(agg: &Aggregator, queue: &str) -> Option<f64> {
    let url = format!(
        "{}/apis/external.metrics.k8s.io/v1beta1/namespaces/bench/wake?labelSelector=queue%3D{}",
        agg.metrics_url(),
        queue
    );
    let r = dwell_e2e::kube::curl(&url, &agg.ca_file(), &[], &[]).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    v["items"][0]["value"].as_str()?.parse().ok()
}

/// Wake-up latency with the watch every 2 s and the KEDA-default 30 s baseline.
async fn wake(binary: &Path, url: &str, runs: usize) -> anyhow::Result<()> {
    println!(
        "\n== wake-up latency: backlog on an idle queue → value > 0 on the external metrics API"
    );
    let mut medians = Vec::new();
    for (interval_s, trials, stale) in [(2u64, 5usize, "30s"), (30, 2, "90s")] {
        let mut run_medians = Vec::new();
        let mut all = Vec::new();
        for run in 1..=runs {
            let queue = broker::unique_queue("bench-wake");
            let mut publisher = Publisher::new(url, &queue);
            publisher
                .publish_at(0, now_ms())
                .await
                .map_err(anyhow::Error::msg)?;
            let conn = broker::connect(url, Duration::from_secs(5))
                .await
                .map_err(anyhow::Error::msg)?;
            let ch = conn.create_channel().await?;
            ch.queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
                .await?;
            let dir = tempfile::tempdir()?;
            let interval = format!("{interval_s}s");
            let agg = start(
                binary,
                dir.path(),
                url,
                std::slice::from_ref(&queue),
                (&interval, 1),
                stale,
            )
            .await?;
            let mut latencies = Vec::new();
            for trial in 0..trials {
                // Idle first: exactly 0 on the API.
                while value(&agg, &queue).await != Some(0.0) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let phase = rand::random::<f64>() * interval_s as f64;
                tokio::time::sleep(Duration::from_secs_f64(phase)).await;
                publisher
                    .publish_at(trial as u64 + 1, now_ms())
                    .await
                    .map_err(anyhow::Error::msg)?;
                let t0 = Instant::now();
                while !value(&agg, &queue).await.is_some_and(|v| v > 0.0) {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                latencies.push(t0.elapsed().as_secs_f64());
                ch.queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
                    .await?;
            }
            println!("interval {interval_s:>2}s run {run}: {latencies:.2?} s");
            all.extend(latencies.iter().copied());
            run_medians.push(median(latencies));
            drop(agg);
            publisher.close().await;
            let _ = ch
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
            let _ = conn.close(200, "done".into()).await;
        }
        let (lo, hi) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        let m = median(run_medians.clone());
        println!(
            "interval {interval_s:>2}s: median of {runs} run medians {m:.2} s (run medians {run_medians:.2?}; min {lo:.2} s, max {hi:.2} s over {} trials)",
            all.len()
        );
        medians.push(m);
    }
    println!(
        "ratio 30 s baseline (KEDA default pollingInterval) / dwell watch every 2 s: {:.1}x",
        medians[1] / medians[0]
    );
    Ok(())
}

/// The beam process (RabbitMQ's Erlang VM).
fn beam_pid() -> anyhow::Result<u32> {
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "beam.smp" {
            return Ok(pid);
        }
    }
    bail!("no beam.smp process: is RabbitMQ running on this machine?")
}

/// CPU seconds (user + system) of `pid` so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Cores `pid` used over `window`.
async fn cores(pid: u32, window: Duration) -> anyhow::Result<f64> {
    let (c0, t0) = (
        cpu_seconds(pid).context("the broker process is gone")?,
        Instant::now(),
    );
    tokio::time::sleep(window).await;
    let c1 = cpu_seconds(pid).context("the broker process is gone (restarted?)")?;
    Ok((c1 - c0) / t0.elapsed().as_secs_f64())
}

/// Successful polls so far.
async fn polls_ok(agg: &Aggregator) -> f64 {
    let url = format!("{}/metrics", agg.metrics_url());
    let text = dwell_e2e::kube::curl(&url, &agg.ca_file(), &[], &[])
        .await
        .body;
    text.lines()
        .filter(|l| l.starts_with("dwell_watch_polls_total{") && l.contains("result=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Broker CPU of watching 1 000 queues every 2 s: pairs of windows, the watch running then not
/// (the aggregator stopped), and the median of the per-pair differences, so the other work on a
/// shared broker cancels out as far as it can.
async fn cost(
    binary: &Path,
    url: &str,
    runs: usize,
    (interval, copies): (&str, usize),
) -> anyhow::Result<()> {
    let pairs = 2 * runs;
    println!(
        "\n== broker CPU: {} watch entries ({COST_QUEUES} queues x {copies}) every {interval} \
         ({pairs} pairs of {COST_WINDOW:?} windows)",
        COST_QUEUES * copies
    );
    let conn = broker::connect(url, Duration::from_secs(5))
        .await
        .map_err(anyhow::Error::msg)?;
    let ch = conn.create_channel().await?;
    let prefix = broker::unique_queue("bench-cost");
    let queues: Vec<String> = (0..COST_QUEUES).map(|i| format!("{prefix}.{i}")).collect();
    let mut args = FieldTable::default();
    // Gone on their own 15 minutes after the run even if it is interrupted.
    args.insert("x-expires".into(), AMQPValue::LongInt(900_000));
    for q in &queues {
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions::default(),
            args.clone(),
        )
        .await?;
    }
    let (mut base, mut watched, mut diffs, mut agg_cores, mut rates, mut rss) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    // The aggregator's RSS with nothing watched, for the per-queue share of its memory.
    let idle_dir = tempfile::tempdir()?;
    let idle = start(binary, idle_dir.path(), url, &[], (interval, copies), "30s").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = rss_mib(idle.process.pid().context("pid")?).unwrap_or(f64::NAN);
    drop(idle);
    let mut result = Ok(());
    for pair in 1..=pairs {
        let measured = pair_of_windows(binary, url, &queues, (interval, copies)).await;
        let (w, b, rate, a, r) = match measured {
            Ok(m) => m,
            Err(e) => {
                // Another test restarted the shared broker, say: stop, and clean up below.
                result = Err(e);
                break;
            }
        };
        println!(
            "pair {pair}: broker {w:.4} cores with the watch, {b:.4} without ({:+.4}); \
             {rate:.0} passive declares/s; aggregator {a:.4} cores, RSS {r:.1} MiB",
            w - b
        );
        base.push(b);
        watched.push(w);
        diffs.push(w - b);
        agg_cores.push(a);
        rates.push(rate);
        rss.push(r);
    }
    for q in &queues {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
    result?;
    let (d, rate) = (median(diffs), median(rates));
    println!(
        "median of {pairs} pairs: broker +{d:.4} cores for the watch (with {:.4}, without {:.4}); \
         {rate:.0} declares/s → {:.0} µs of broker CPU per passive declare; aggregator {:.4} \
         cores, RSS {:.1} MiB ({idle_rss:.1} MiB watching nothing: {:.1} KiB per entry)",
        median(watched),
        median(base),
        d / rate * 1e6,
        median(agg_cores),
        median(rss.clone()),
        (median(rss) - idle_rss) * 1024.0 / (COST_QUEUES * copies) as f64
    );
    Ok(())
}

/// One window with the watch running and one without: broker cores with and without,
/// declares/s, the aggregator's cores and RSS.
async fn pair_of_windows(
    binary: &Path,
    url: &str,
    queues: &[String],
    (interval, copies): (&str, usize),
) -> anyhow::Result<(f64, f64, f64, f64, f64)> {
    {
        let dir = tempfile::tempdir()?;
        let agg = start(binary, dir.path(), url, queues, (interval, copies), "30s").await?;
        // Warm: every queue polled at least twice (channels open).
        while polls_ok(&agg).await < 2.0 * (COST_QUEUES * copies) as f64 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let pid = agg.process.pid().context("aggregator pid")?;
        let (p0, a0, t0) = (
            polls_ok(&agg).await,
            cpu_seconds(pid).context("aggregator cpu")?,
            Instant::now(),
        );
        let w = cores(beam_pid()?, COST_WINDOW).await?;
        let (p1, a1) = (
            polls_ok(&agg).await,
            cpu_seconds(pid).context("aggregator cpu")?,
        );
        let secs = t0.elapsed().as_secs_f64();
        let r = rss_mib(pid).unwrap_or(f64::NAN);
        drop(agg);
        // The broker closes the channels; then the same window without the watch.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let b = cores(beam_pid()?, COST_WINDOW).await?;
        Ok((w, b, (p1 - p0) / secs, (a1 - a0) / secs, r))
    }
}
