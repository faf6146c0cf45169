//! `dwell-bench-tap`: the release `dwell-sidecar`'s AMQP tap against the same RabbitMQ reached
//! directly, in the same run: publish + consume throughput (1 KiB and 64 KiB messages), the
//! latency the tap adds per message (p50/p99 of publish → delivery, direct vs tapped), the
//! sidecar's CPU per 10 000 msg/s forwarded, and its RSS with 100 idle app connections.
//!
//! Each path uses two connections (publisher, consumer) through that path; the consumer runs
//! with no-ack and a prefetch of 1 000, the publisher without confirms (RabbitMQ's own flow
//! control paces it), so the broker, not the client, is the limit, as in production. A third
//! path, a minimal relay (`tokio::io::copy_bidirectional`, no parsing, run as a child process
//! like the sidecar), separates what any extra hop costs from what the tap itself costs.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use dwell_bench::child::{Process, free_tcp_port, sibling_binary};
use dwell_bench::procfs::{self, CpuMeter, mib};
use dwell_bench::rabbit;
use dwell_bench::stats::{median, percentile, ratio};
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use tokio_stream::StreamExt;

/// The tap against direct.
#[derive(Debug, Parser)]
#[command(name = "dwell-bench-tap")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The broker (its host:port is also the tap's upstream).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Message sizes (bytes) for the throughput phase.
    #[arg(long, value_delimiter = ',', default_value = "1024,65536")]
    sizes: Vec<usize>,
    /// Megabytes published per size and path (at least 2 000 messages).
    #[arg(long, default_value_t = 64)]
    megabytes: usize,
    /// Messages per second of the latency and CPU phases.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds of the latency and CPU phases.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Idle connections for the memory phase.
    #[arg(long, default_value_t = 100)]
    idle: usize,
    /// Runs; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The phases to run (throughput, latency, memory).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "throughput,latency,memory"
    )]
    phases: Vec<Phase>,
    /// A/B of two builds: run this `dwell-sidecar` binary as the third path instead of the
    /// minimal relay (its columns then compare it with the tap under test, in the same run).
    #[arg(long)]
    relay_sidecar: Option<std::path::PathBuf>,
    /// The broker's process name, whose CPU is counted per message (found in /proc).
    #[arg(long, default_value = "beam.smp")]
    broker_process: String,
    /// A cluster on one machine: pin every thread of the broker's process to these CPUs
    /// (`taskset -c` list) for the run, its mask restored afterwards. The SHARED broker runs
    /// on fewer cores meanwhile: keep such runs short. Needs `--pin-clients`.
    #[arg(long, requires = "pin_clients")]
    pin_broker: Option<String>,
    /// With `--pin-broker`: pin the bench (both clients of every path) and the sidecar and
    /// relay it spawns to these CPUs, for the direct and the tapped paths alike.
    #[arg(long, requires = "pin_broker")]
    pin_clients: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    Throughput,
    Latency,
    Memory,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Internal: the baseline relay, 127.0.0.1:PORT → UPSTREAM (host:port).
    Relay {
        /// The port.
        port: u16,
        /// The broker's host:port.
        upstream: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Tap,
    Relay,
}

/// The baseline relay: every connection copied both ways, nothing else (TCP_NODELAY both sides).
fn relay(port: u16, upstream: String) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("relay listening on {}", listener.local_addr()?);
        loop {
            let (mut app, _) = listener.accept().await?;
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut broker) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = (app.set_nodelay(true), broker.set_nodelay(true));
                let _ = tokio::io::copy_bidirectional(&mut app, &mut broker).await;
            });
        }
    })
}

/// Flat-out publish + consume of one size over one path.
#[derive(Debug, Clone, Copy, Default)]
struct Pass {
    /// Messages per second.
    rate: f64,
    /// Share of one core the hop (sidecar or relay) used.
    hop_cores: f64,
    /// CPU microseconds (user + system) per message: the bench's own publisher and consumer,
    /// the broker, the hop (0 direct), and everything else the machine ran meanwhile.
    us: Cpu,
}

/// CPU microseconds per message, by who spent them.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    clients: f64,
    broker: f64,
    hop: f64,
    others: f64,
}

/// One run's numbers.
#[derive(Debug, Clone, Default)]
struct Run {
    /// Per size: the direct, tap and relay passes.
    throughput: Vec<[Pass; 3]>,
    /// (direct p50, p99, tap p50, p99) in ms.
    latency: (f64, f64, f64, f64),
    /// Sidecar cores while forwarding `rate` msg/s, and the rate reached.
    cpu: (f64, f64),
    /// Sidecar RSS idle, and with the idle connections open (bytes).
    rss: (u64, u64),
}

fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    rest.split('/').next().unwrap_or("").to_owned()
}

fn url_for(args: &Args, path: Path, ports: (u16, u16)) -> String {
    let port = match path {
        Path::Direct => return args.amqp_url.clone(),
        Path::Tap => ports.0,
        Path::Relay => ports.1,
    };
    args.amqp_url
        .replacen(&host_port(&args.amqp_url), &format!("127.0.0.1:{port}"), 1)
}

/// The body: 8 bytes of microseconds since `epoch` (for latency), padded to `size`.
fn body(size: usize, epoch: Instant) -> Vec<u8> {
    let mut b = vec![0x5a; size.max(8)];
    let us = epoch.elapsed().as_micros() as u64;
    b[..8].copy_from_slice(&us.to_be_bytes());
    b
}

/// Publishes `count` messages of `size` bytes (at `rate`/s when given, else flat out) and
/// consumes them on a second connection. Returns (seconds from first publish to last delivery,
/// per-message latencies in ms).
async fn publish_consume(
    url: &str,
    queue: &str,
    size: usize,
    count: u64,
    rate: Option<u64>,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let (pconn, cconn) = (rabbit::connect(url).await?, rabbit::connect(url).await?);
    let pch = pconn.create_channel().await?;
    rabbit::declare(&pch, queue).await?;
    let cch = cconn.create_channel().await?;
    cch.basic_qos(1000, BasicQosOptions::default()).await?;
    let mut deliveries = cch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let epoch = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let consumer = {
        let received = received.clone();
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(count as usize);
            while received.load(Ordering::Relaxed) < count {
                match tokio::time::timeout(Duration::from_secs(30), deliveries.next()).await {
                    Ok(Some(Ok(d))) => {
                        let mut us = [0u8; 8];
                        us.copy_from_slice(&d.data[..8]);
                        let sent = u64::from_be_bytes(us) as f64;
                        lat.push((epoch.elapsed().as_micros() as f64 - sent) / 1000.0);
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            (epoch.elapsed(), lat)
        })
    };
    let start = Instant::now();
    for n in 0..count {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        pch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &body(size, epoch),
            BasicProperties::default().with_timestamp(0),
        )
        .await?;
    }
    let (end, lat) = consumer.await?;
    anyhow::ensure!(
        lat.len() as u64 == count,
        "consumed {} of {count} messages",
        lat.len()
    );
    let secs = end
        .saturating_sub(start.duration_since(epoch))
        .as_secs_f64();
    rabbit::delete(&pch, queue).await;
    let _ = pconn.close(200, "bench done".into()).await;
    let _ = cconn.close(200, "bench done".into()).await;
    Ok((secs, lat))
}

async fn one_run(args: &Args, n: usize) -> anyhow::Result<Run> {
    let tap_port = free_tcp_port()?;
    let sidecar_args = |port: u16| -> Vec<String> {
        [
            "--aggregator",
            "http://127.0.0.1:9",
            "--tap-listen",
            &format!("127.0.0.1:{port}"),
            "--tap-upstream",
            &format!("amqp://{}", host_port(&args.amqp_url)),
            "--telemetry-addr",
            "off",
            "--pod-name",
            "bench-0",
            "--pod-namespace",
            "bench",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let sidecar = Process::spawn(
        "sidecar",
        &sibling_binary("dwell-sidecar")?,
        &sidecar_args(tap_port),
    )?;
    sidecar
        .wait_for("dwell-sidecar started", Duration::from_secs(20))
        .await?;
    let pid = sidecar.pid()?;
    let relay_port = free_tcp_port()?;
    let relay = match &args.relay_sidecar {
        Some(bin) => {
            let p = Process::spawn("other sidecar", bin, &sidecar_args(relay_port))?;
            p.wait_for("dwell-sidecar started", Duration::from_secs(20))
                .await?;
            p
        }
        None => {
            let relay_args = vec![
                "relay".to_owned(),
                relay_port.to_string(),
                host_port(&args.amqp_url),
            ];
            let p = Process::spawn("relay", &sibling_binary("dwell-bench-tap")?, &relay_args)?;
            p.wait_for("relay listening on", Duration::from_secs(10))
                .await?;
            p
        }
    };
    let relay_pid = relay.pid()?;
    let ports = (tap_port, relay_port);
    let queue = |what: &str| format!("dwell-bench-tap.{what}.{}.{n}", std::process::id());
    let mut run = Run::default();
    // Alternate which path goes first, so neither always meets a warmer broker.
    let order = if n.is_multiple_of(2) {
        [Path::Direct, Path::Tap, Path::Relay]
    } else {
        [Path::Relay, Path::Tap, Path::Direct]
    };
    let broker_pid = procfs::find_process(&args.broker_process);
    let sizes = if args.phases.contains(&Phase::Throughput) {
        args.sizes.as_slice()
    } else {
        &[]
    };
    for &size in sizes {
        let count = (args.megabytes * 1024 * 1024 / size).max(2_000) as u64;
        let mut passes = [Pass::default(); 3];
        for path in order {
            let url = url_for(args, path, ports);
            let hop = CpuMeter::start(if path == Path::Relay { relay_pid } else { pid });
            let clients = CpuMeter::start(std::process::id());
            let broker = broker_pid.map(CpuMeter::start);
            let machine = procfs::machine_busy_seconds().unwrap_or(0.0);
            let (secs, _) = publish_consume(&url, &queue("tp"), size, count, None).await?;
            let per_msg = |s: f64| s * 1e6 / count as f64;
            let (c, b) = (clients.seconds(), broker.map_or(0.0, |m| m.seconds()));
            let h = if path == Path::Direct {
                0.0
            } else {
                hop.seconds()
            };
            let all = procfs::machine_busy_seconds().unwrap_or(0.0) - machine;
            passes[path as usize] = Pass {
                rate: count as f64 / secs,
                hop_cores: hop.cores(),
                us: Cpu {
                    clients: per_msg(c),
                    broker: per_msg(b),
                    hop: per_msg(h),
                    others: per_msg((all - c - b - h).max(0.0)),
                },
            };
        }
        let [d, t, r] = passes;
        eprintln!(
            "run {n}: {size} B: direct {:.0} msg/s, tap {:.0} msg/s ({:.0} % CPU), relay {:.0} msg/s ({:.0} % CPU)",
            d.rate,
            t.rate,
            t.hop_cores * 100.0,
            r.rate,
            r.hop_cores * 100.0
        );
        for (name, p) in [("direct", d), ("tap", t), ("relay", r)] {
            eprintln!(
                "run {n}: {size} B: {name} CPU µs/msg: clients {:.1}, broker {:.1}, hop {:.1}, others {:.1}",
                p.us.clients, p.us.broker, p.us.hop, p.us.others
            );
        }
        run.throughput.push(passes);
    }
    if !args.phases.contains(&Phase::Latency) {
        sidecar.stop().await;
        relay.stop().await;
        return Ok(run);
    }
    let count = args.rate * args.seconds;
    let mut lat = [(0.0, 0.0); 2];
    let latency_order = if n.is_multiple_of(2) {
        [Path::Direct, Path::Tap]
    } else {
        [Path::Tap, Path::Direct]
    };
    for path in latency_order {
        let url = url_for(args, path, ports);
        let meter = CpuMeter::start(pid);
        let (secs, l) = publish_consume(&url, &queue("lat"), 1024, count, Some(args.rate)).await?;
        if path == Path::Tap {
            run.cpu = (meter.cores(), count as f64 / secs);
        }
        lat[(path == Path::Tap) as usize] = (percentile(&l, 50.0), percentile(&l, 99.0));
    }
    run.latency = (lat[0].0, lat[0].1, lat[1].0, lat[1].1);
    eprintln!(
        "run {n}: latency direct p50 {:.2} ms p99 {:.2} ms, tap p50 {:.2} ms p99 {:.2} ms; sidecar {:.1} % CPU at {:.0} msg/s",
        lat[0].0,
        lat[0].1,
        lat[1].0,
        lat[1].1,
        run.cpu.0 * 100.0,
        run.cpu.1
    );
    if !args.phases.contains(&Phase::Memory) {
        sidecar.stop().await;
        relay.stop().await;
        return Ok(run);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = procfs::memory(pid).unwrap_or_default().rss;
    let url = url_for(args, Path::Tap, ports);
    let mut idle: Vec<Connection> = Vec::new();
    for _ in 0..args.idle {
        idle.push(rabbit::connect(&url).await?);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let busy_rss = procfs::memory(pid).unwrap_or_default().rss;
    run.rss = (idle_rss, busy_rss);
    eprintln!(
        "run {n}: RSS {} idle, {} with {} idle connections",
        mib(idle_rss),
        mib(busy_rss),
        args.idle
    );
    for c in idle {
        let _ = c.close(200, "bench done".into()).await;
    }
    sidecar.stop().await;
    relay.stop().await;
    Ok(run)
}

fn main() -> anyhow::Result<()> {
    dwell_bench::install_crypto();
    let args = Args::parse();
    if let Some(Command::Relay { port, upstream }) = args.command {
        return relay(port, upstream);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(measure(args))
}

async fn measure(args: Args) -> anyhow::Result<()> {
    // Before pinning: the machine's cores, not the bench's share of them.
    let machine = dwell_bench::machine_line();
    // Restores the broker's affinity when dropped, whatever ends the run.
    let _pinned = match (&args.pin_broker, &args.pin_clients) {
        (Some(broker), Some(clients)) => {
            let pid = procfs::find_process(&args.broker_process)
                .ok_or_else(|| anyhow::anyhow!("no {} process to pin", args.broker_process))?;
            let guard = dwell_bench::pin::Pinned::pin(pid, broker)?;
            dwell_bench::pin::Pinned::pin_self(clients)?;
            Some(guard)
        }
        _ => None,
    };
    let mut runs = Vec::new();
    for n in 0..args.runs {
        runs.push(one_run(&args, n).await?);
    }
    let med = |f: &dyn Fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    println!(
        "\n{} — `dwell-bench-tap --runs {} --megabytes {} --rate {} --seconds {} --idle {}`, median of {} runs\n",
        machine, args.runs, args.megabytes, args.rate, args.seconds, args.idle, args.runs
    );
    if let (Some(broker), Some(clients)) = (&args.pin_broker, &args.pin_clients) {
        println!(
            "Pinned (`--pin-broker {broker} --pin-clients {clients}`): every {} thread on CPU {broker}; the bench's clients, the sidecar and the relay on CPU {clients}, for every path.\n",
            args.broker_process
        );
    }
    println!(
        "| message size | direct msg/s (baseline) | through the tap msg/s | tap / direct (each run) | tap CPU | minimal relay msg/s | relay / direct | relay CPU | tap / relay |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let sizes = if args.phases.contains(&Phase::Throughput) {
        args.sizes.as_slice()
    } else {
        &[]
    };
    for (i, size) in sizes.iter().enumerate() {
        let d = med(&|r| r.throughput[i][0].rate);
        let t = med(&|r| r.throughput[i][1].rate);
        let rl = med(&|r| r.throughput[i][2].rate);
        let tc = med(&|r| r.throughput[i][1].hop_cores);
        let rc = med(&|r| r.throughput[i][2].hop_cores);
        // The ratio of medians, and each run's own ratio (same broker moment) in brackets.
        let per_run: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.2}", r.throughput[i][1].rate / r.throughput[i][0].rate))
            .collect();
        println!(
            "| {} KiB | {d:.0} | {t:.0} | {} ({}) | {:.0} % | {rl:.0} | {} | {:.0} % | {} |",
            size / 1024,
            ratio(t, d),
            per_run.join(", "),
            tc * 100.0,
            ratio(rl, d),
            rc * 100.0,
            ratio(t, rl)
        );
    }
    if !sizes.is_empty() {
        println!(
            "\n| CPU µs per message (user + system), median of runs | clients | broker | hop | clients + broker + hop | everything else on the machine |"
        );
        println!("|---|---|---|---|---|---|");
    }
    for (i, size) in sizes.iter().enumerate() {
        for (k, name) in ["direct", "through the tap", "minimal relay"]
            .iter()
            .enumerate()
        {
            let us = |f: &dyn Fn(&Cpu) -> f64| med(&|r| f(&r.throughput[i][k].us));
            let (c, b, h) = (us(&|u| u.clients), us(&|u| u.broker), us(&|u| u.hop));
            println!(
                "| {} KiB {name} | {c:.1} | {b:.1} | {h:.1} | {:.1} | {:.1} |",
                size / 1024,
                c + b + h,
                us(&|u| u.others)
            );
        }
    }
    if !args.phases.contains(&Phase::Latency) {
        return Ok(());
    }
    let (dp50, dp99) = (med(&|r| r.latency.0), med(&|r| r.latency.1));
    let (tp50, tp99) = (med(&|r| r.latency.2), med(&|r| r.latency.3));
    println!(
        "\n| publish → delivery, 1 KiB at {} msg/s | p50 | p99 |",
        args.rate
    );
    println!("|---|---|---|");
    println!("| direct (baseline) | {dp50:.2} ms | {dp99:.2} ms |");
    println!("| through the tap | {tp50:.2} ms | {tp99:.2} ms |");
    println!(
        "| added by the tap | {:.2} ms | {:.2} ms |",
        tp50 - dp50,
        tp99 - dp99
    );
    let (cores, reached) = (med(&|r| r.cpu.0), med(&|r| r.cpu.1));
    println!(
        "\nSidecar CPU while forwarding {reached:.0} msg/s (1 KiB, publisher and consumer both through the tap): {:.1} % of one core = {:.1} % per 10 000 msg/s.",
        cores * 100.0,
        cores * 100.0 * 10_000.0 / reached.max(1.0)
    );
    if !args.phases.contains(&Phase::Memory) {
        return Ok(());
    }
    let (idle, busy) = (med(&|r| r.rss.0 as f64), med(&|r| r.rss.1 as f64));
    println!(
        "Sidecar RSS: {} idle (after the load), {} with {} idle app connections open: {:.1} KiB per connection.",
        mib(idle as u64),
        mib(busy as u64),
        args.idle,
        (busy - idle) / 1024.0 / args.idle as f64
    );
    Ok(())
}
