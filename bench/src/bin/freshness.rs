//! `dwell-bench-freshness`: how long after a change in the queue each observer shows it, in the
//! same run, against a real RabbitMQ:
//! - dwell: the release sidecar (report source over UDP, stats source by passive declare) pushing
//!   to the release aggregator, read on the external metrics API over HTTPS;
//! - the management API's `head_message_timestamp` (`GET /api/queues/%2F/{queue}`);
//! - the `rabbitmq_prometheus` detailed endpoint, scraped as Prometheus does.
//!
//! Changes: a **burst** of messages stamped A seconds old into a queue with a working consumer
//! (measured: time until the observer reports an age ≥ A − 2 s), and a **stalled** consumer (it
//! holds its message; fresh messages pile up behind it; measured: time past the true crossing
//! of S seconds until the observer reports an age > S). All three are polled every `--poll`.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use dwell_bench::child::{Process, free_udp_port, sibling_binary};
use dwell_bench::https::{Conn, connector};
use dwell_bench::rabbit::{self, ConsumerControl};
use dwell_bench::reports::now_ms;
use dwell_bench::stats::{median, ratio};
use dwell_bench::target::Aggregator;
use tokio_util::sync::CancellationToken;

/// Freshness: dwell vs. RabbitMQ's management API and Prometheus endpoint.
#[derive(Debug, Parser)]
#[command(name = "dwell-bench-freshness")]
struct Args {
    /// Trials per scenario; medians are reported.
    #[arg(long, default_value_t = 5)]
    trials: usize,
    /// The sidecar's push interval, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// How often each observer is polled, in milliseconds.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// Messages in a burst (drained at `--work-ms` each, so the burst stays visible for a while).
    #[arg(long, default_value_t = 500)]
    burst: usize,
    /// Consumer work per message, in milliseconds.
    #[arg(long, default_value_t = 20)]
    work_ms: u64,
    /// Stall threshold S, in seconds.
    #[arg(long, default_value_t = 2)]
    stall_threshold: u64,
    /// Give up on an observer after this many seconds of a trial.
    #[arg(long, default_value_t = 20)]
    deadline: u64,
    /// AMQP URL (its user also reads the management API).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Management API address.
    #[arg(long, default_value = "127.0.0.1:15672")]
    mgmt: SocketAddr,
    /// rabbitmq_prometheus address.
    #[arg(long, default_value = "127.0.0.1:15692")]
    prometheus: SocketAddr,
}

const OBSERVERS: [&str; 3] = [
    "dwell (sidecar → aggregator → external metrics API)",
    "management API head_message_timestamp",
    "rabbitmq_prometheus /metrics/detailed",
];

struct Observers {
    agg: SocketAddr,
    mgmt: SocketAddr,
    prom: SocketAddr,
    auth: String,
    queue: String,
    poll: Duration,
}

/// Parses a Kubernetes Quantity as served by dwell (`12`, `1500m`, `2k`).
fn quantity(q: &str) -> Option<f64> {
    let (num, scale) = match q.char_indices().last()? {
        (i, 'm') => (&q[..i], 1e-3),
        (i, 'k') => (&q[..i], 1e3),
        (i, 'M') => (&q[..i], 1e6),
        (i, 'G') => (&q[..i], 1e9),
        _ => (q, 1.0),
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

impl Observers {
    /// The head age (seconds) observer `which` shows now, if it shows one.
    async fn age(&self, which: usize, conn: &mut Option<Conn>) -> Option<f64> {
        let now_s = now_ms() as f64 / 1000.0;
        match which {
            0 => {
                if conn.is_none() {
                    *conn = Conn::open(&connector(), self.agg).await.ok();
                }
                let path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/bench/head_age";
                match conn.as_mut()?.get(path).await {
                    Ok((200, body)) => {
                        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
                        quantity(v["items"][0]["value"].as_str()?)
                    }
                    Ok(_) => None,
                    Err(_) => {
                        *conn = None;
                        None
                    }
                }
            }
            1 => rabbit::mgmt_head(self.mgmt, &self.auth, &self.queue)
                .await
                .map(|ts| now_s - ts as f64),
            _ => rabbit::prom_head(self.prom, &self.queue)
                .await
                .map(|ts| now_s - ts as f64),
        }
    }

    /// When observer `which` first shows an age satisfying `cond` (None: not by `deadline`):
    /// seconds since `t0` and the wall-clock time (Unix ms).
    async fn first_reach(
        &self,
        which: usize,
        t0: Instant,
        deadline: Duration,
        cond: &(dyn Fn(f64) -> bool + Sync),
    ) -> Option<(f64, i64)> {
        let mut conn = None;
        while t0.elapsed() < deadline {
            if self.age(which, &mut conn).await.is_some_and(cond) {
                return Some((t0.elapsed().as_secs_f64(), now_ms()));
            }
            tokio::time::sleep(self.poll).await;
        }
        None
    }

    /// All three observers at once.
    async fn all_reach(
        &self,
        t0: Instant,
        deadline: Duration,
        cond: &(dyn Fn(f64) -> bool + Sync),
    ) -> [Option<(f64, i64)>; 3] {
        let (a, b, c) = tokio::join!(
            self.first_reach(0, t0, deadline, cond),
            self.first_reach(1, t0, deadline, cond),
            self.first_reach(2, t0, deadline, cond),
        );
        [a, b, c]
    }

    /// Waits (up to 40 s) until no observer shows an age ≥ `below` any more.
    async fn settle(&self, below: f64) {
        let start = Instant::now();
        let mut conns = [None, None, None];
        while start.elapsed() < Duration::from_secs(40) {
            let mut calm = true;
            for (i, c) in conns.iter_mut().enumerate() {
                calm &= !self.age(i, c).await.is_some_and(|a| a >= below);
            }
            if calm {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!("observers did not settle below {below}s within 40 s; continuing");
    }
}

async fn ensure_rabbitmq() -> anyhow::Result<()> {
    let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/lib/services.sh");
    let status = tokio::process::Command::new("bash")
        .args(["-c", &format!("source {lib} && ensure_rabbitmq")])
        .status()
        .await?;
    anyhow::ensure!(status.success(), "ensure_rabbitmq failed");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dwell_bench::install_crypto();
    let args = Args::parse();
    ensure_rabbitmq().await?;
    let queue = format!("dwell-bench-fresh-{}", std::process::id());
    let work = std::env::temp_dir().join(format!("dwell-bench-fresh-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let config = work.join("rules.yaml");
    std::fs::write(
        &config,
        format!(
            "rules:\n  - name: head_age\n    sources: {{ queue: {queue} }}\n    window: 5s\n    statistic: max\n    stall_after: 2s\n    external: true\n"
        ),
    )?;
    // The queue exists before the sidecar's stats source first asks for it.
    let conn = rabbit::connect(&args.amqp_url).await?;
    let (pub_ch, cons_ch) = (conn.create_channel().await?, conn.create_channel().await?);
    rabbit::declare(&pub_ch, &queue).await?;
    let agg = Aggregator::start(Some(&config), &[]).await?;
    let udp = free_udp_port()?;
    let sidecar_args: Vec<String> = [
        "--aggregator".to_string(),
        agg.grpc_uri(),
        "--queue".into(),
        queue.clone(),
        "--interval".into(),
        format!("{}ms", args.interval_ms),
        "--amqp-url".into(),
        args.amqp_url.clone(),
        "--stats-interval".into(),
        "1s".into(),
        "--report-udp".into(),
        format!("127.0.0.1:{udp}"),
        "--report-http".into(),
        "off".into(),
        "--telemetry-addr".into(),
        "off".into(),
        "--pod-name".into(),
        "worker-0".into(),
        "--pod-namespace".into(),
        "bench".into(),
    ]
    .to_vec();
    let sidecar = Process::spawn("sidecar", &sibling_binary("dwell-sidecar")?, &sidecar_args)?;
    sidecar
        .wait_for("dwell-sidecar started", Duration::from_secs(20))
        .await?;

    let stop = CancellationToken::new();
    let control = Arc::new(ConsumerControl::default());
    let consumer = tokio::spawn(rabbit::consumer(
        cons_ch,
        queue.clone(),
        Duration::from_millis(args.work_ms),
        std::net::SocketAddr::from(([127, 0, 0, 1], udp)),
        control.clone(),
        stop.clone(),
    ));
    let steady = tokio::spawn(rabbit::steady_publisher(
        pub_ch.clone(),
        queue.clone(),
        5.0,
        stop.clone(),
    ));

    let url = args.amqp_url.parse::<lapin::uri::AMQPUri>();
    let (user, pass) = url
        .map(|u| (u.authority.userinfo.username, u.authority.userinfo.password))
        .unwrap_or(("guest".into(), "guest".into()));
    let obs = Observers {
        agg: agg.metrics_addr,
        mgmt: args.mgmt,
        prom: args.prometheus,
        auth: rabbit::basic_auth(&user, &pass),
        queue: queue.clone(),
        poll: Duration::from_millis(args.poll_ms),
    };
    // dwell serves a value once the sidecar's first report arrived.
    if obs
        .first_reach(0, Instant::now(), Duration::from_secs(30), &|_| true)
        .await
        .is_none()
    {
        anyhow::bail!(
            "dwell never served head_age; aggregator log:\n{}",
            agg.process.tail(20)
        );
    }
    let deadline = Duration::from_secs(args.deadline);
    let mut burst = Vec::new();
    for k in 0..args.trials {
        obs.settle(10.0).await;
        let age_s = 100 + 10 * k as i64;
        let t0 = Instant::now();
        let stamp = now_ms() - age_s * 1000;
        for _ in 0..args.burst {
            rabbit::publish(&pub_ch, &queue, stamp).await?;
        }
        let threshold = age_s as f64 - 2.0;
        let r = obs
            .all_reach(t0, deadline, &|a| a >= threshold)
            .await
            .map(|o| o.map(|(secs, _)| secs));
        eprintln!("burst {k} ({age_s}s old): {r:?}");
        burst.push(r);
    }
    let mut stall = Vec::new();
    let s = args.stall_threshold as f64;
    for k in 0..args.trials {
        obs.settle(s).await;
        let t0 = Instant::now();
        control.stalled.store(true, Ordering::Relaxed);
        // The consumer may be between messages: the stall starts when it holds the next one.
        while !control.holding.load(Ordering::Relaxed) && t0.elapsed() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let held = control.current_ts_ms.load(Ordering::Relaxed);
        // Shown = above S and within 1.05 s of the true head age (a stale reading that merely
        // looks old does not count); 1 s is the resolution of head_message_timestamp and of
        // dwell's ceiling rounding.
        let shown = |a: f64| {
            let truth = (now_ms() - held) as f64 / 1000.0;
            a > s && (a - truth).abs() <= 1.05
        };
        let r = obs.all_reach(t0, deadline, &shown).await;
        control.stalled.store(false, Ordering::Relaxed);
        let cross_ms = held + (s * 1000.0) as i64;
        let lag = r.map(|o| o.map(|(since, at)| (since, (at - cross_ms) as f64 / 1000.0)));
        eprintln!("stall {k}: {lag:?}");
        stall.push(lag);
    }
    stop.cancel();
    let _ = consumer.await;
    let _ = steady.await;
    rabbit::delete(&pub_ch, &queue).await;
    let _ = conn.close(200, "bench done".into()).await;
    sidecar.stop().await;
    agg.process.stop().await;
    let _ = std::fs::remove_dir_all(&work);

    println!(
        "\n{} — `dwell-bench-freshness --trials {} --interval-ms {}`, poll every {} ms, RabbitMQ 3.10 defaults (collect_statistics_interval 5 s)\n",
        dwell_bench::machine_line(),
        args.trials,
        args.interval_ms,
        args.poll_ms
    );
    table(
        &format!(
            "burst of {} messages stamped ≥ 100 s old: seconds until the observer shows it",
            args.burst
        ),
        &burst,
        args.trials,
    );
    let since: Vec<[Option<f64>; 3]> = stall.iter().map(|r| r.map(|o| o.map(|x| x.0))).collect();
    let lag: Vec<[Option<f64>; 3]> = stall.iter().map(|r| r.map(|o| o.map(|x| x.1))).collect();
    table(
        &format!(
            "consumer stalls (rule stall_after 2 s): seconds from the stall until the observer shows the true head age (> {s} s, within 1.05 s)"
        ),
        &since,
        args.trials,
    );
    table(
        &format!(
            "same stalls: seconds past the moment the true head age crossed {s} s (negative: shown early, by the 1 s resolution)"
        ),
        &lag,
        args.trials,
    );
    println!(
        "\nTarget: dwell within one push interval + 100 ms = {:.2} s.",
        args.interval_ms as f64 / 1000.0 + 0.1
    );
    Ok(())
}

fn table(title: &str, rows: &[[Option<f64>; 3]], trials: usize) {
    println!("\n{title}\n");
    println!("| observer | median | min | max | missed (> deadline) | ÷ dwell (median) |");
    println!("|---|---|---|---|---|---|");
    let seen = |i: usize| -> Vec<f64> { rows.iter().filter_map(|r| r[i]).collect() };
    let dwell = median(&seen(0));
    for (i, name) in OBSERVERS.iter().enumerate() {
        let v = seen(i);
        let (min, max) = (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
        if v.is_empty() {
            println!("| {name} | – | – | – | {trials}/{trials} | – |");
            continue;
        }
        let m = median(&v);
        println!(
            "| {name} | {m:.2} s | {min:.2} s | {max:.2} s | {}/{trials} | {} |",
            trials - v.len(),
            if dwell > 0.0 && m > 0.0 {
                ratio(m, dwell)
            } else {
                "–".into()
            }
        );
    }
}
