//! The quick start's load: a queue that falls behind during a burst and catches up after it,
//! repeated until Ctrl-C, with every delivery's timestamp reported to a sidecar's UDP report
//! source (the one-line integration a real consumer makes).
//!
//! `demo_load rabbitmq <amqp-url> <queue> <sidecar-udp>`: a real publisher and a real consumer
//! (prefetch 1, 100 ms per message) on RabbitMQ.
//! `demo_load synthetic <queue> <sidecar-udp>`: no broker; the same queue simulated in-process.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use dwell_e2e::publisher::{Publisher, now_ms, play};
use dwell_e2e::trace::{Phase, Trace};
use dwell_e2e::worker::{self, Ledger, WorkerConfig};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// One worker's processing time per message.
const PROCESSING: Duration = Duration::from_millis(100);

/// One cycle: 15 s at twice the worker's capacity, then 25 s at a fifth of it.
fn cycle(seed: u64) -> Trace {
    Trace::poisson(
        &[
            Phase {
                duration: Duration::from_secs(15),
                rate: 20.0,
            },
            Phase {
                duration: Duration::from_secs(25),
                rate: 2.0,
            },
        ],
        seed,
    )
}

async fn rabbitmq(url: String, queue: String, sidecar: SocketAddr, stop: CancellationToken) {
    let ledger = Arc::new(Ledger::default());
    let config = WorkerConfig {
        amqp_url: url.clone(),
        queue: queue.clone(),
        processing: PROCESSING,
        report_udp: Some(sidecar),
    };
    let consumer = tokio::spawn(worker::run(config, ledger, stop.clone()));
    let mut seed = 1;
    while !stop.is_cancelled() {
        let trace = cycle(seed);
        seed += 1;
        let start = tokio::time::Instant::now();
        let published = Arc::new(AtomicU64::new(0));
        play(
            Publisher::new(&url, &queue),
            &trace,
            start,
            published,
            stop.clone(),
        )
        .await;
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep_until(start + trace.length) => {}
        }
    }
    let _ = consumer.await;
    dwell_e2e::broker::delete(&url, &queue).await;
}

async fn synthetic(queue: String, sidecar: SocketAddr, stop: CancellationToken) {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0").await else {
        eprintln!("demo_load: cannot open a UDP socket");
        return;
    };
    let mut seed = 1;
    while !stop.is_cancelled() {
        let trace = cycle(seed);
        seed += 1;
        let start = tokio::time::Instant::now();
        let start_ms = now_ms();
        let mut waiting: VecDeque<u64> = VecDeque::new();
        let mut next_arrival = 0;
        let mut busy_until = start;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = tokio::time::Instant::now();
            let elapsed = now - start;
            while next_arrival < trace.arrivals.len() && trace.arrivals[next_arrival] <= elapsed {
                waiting.push_back(start_ms + trace.arrivals[next_arrival].as_millis() as u64);
                next_arrival += 1;
            }
            // One simulated consumer: a delivery whenever it is free.
            if now >= busy_until
                && let Some(ts) = waiting.pop_front()
            {
                let _ = sock
                    .send_to(format!("{queue} {ts}ms 0").as_bytes(), sidecar)
                    .await;
                busy_until = now + PROCESSING;
            }
            if elapsed >= trace.length && waiting.is_empty() {
                break;
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        on_signal.cancel();
    });
    let parse = |s: &str| -> SocketAddr {
        s.parse().unwrap_or_else(|_| {
            eprintln!("demo_load: {s:?} is not an ip:port address");
            std::process::exit(2)
        })
    };
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["rabbitmq", url, queue, udp] => {
            rabbitmq(url.to_string(), queue.to_string(), parse(udp), stop).await
        }
        ["synthetic", queue, udp] => synthetic(queue.to_string(), parse(udp), stop).await,
        _ => {
            eprintln!(
                "usage: demo_load rabbitmq <amqp-url> <queue> <sidecar-udp> | demo_load synthetic <queue> <sidecar-udp>"
            );
            std::process::exit(2)
        }
    }
}
