//! `dwell-bench-merge`: the CPU cost of turning one source's window (31 one-second slots, each a
//! summary of 50 log-normal ages) into a p90, two ways, in the same run: pairwise
//! `AgeSummary::merge` (what the aggregator's read path does today, minus unpacking) and one dense
//! scratch array indexed by bucket (the fix proposed in BENCHMARKS.md, note A).
use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use dwell_bench::reports::summary_pool;
use dwell_bench::stats::{median, ratio};
use dwell_proto::summary::{AgeSummary, MAX_BUCKETS, bucket_value};

/// Window merge cost: pairwise merges vs a dense scratch array.
#[derive(Debug, Parser)]
#[command(name = "dwell-bench-merge")]
struct Args {
    /// Slots per window.
    #[arg(long, default_value_t = 31)]
    slots: usize,
    /// Ages per slot.
    #[arg(long, default_value_t = 50)]
    ages: usize,
    /// Windows merged per measurement.
    #[arg(long, default_value_t = 20_000)]
    iterations: usize,
    /// Measurements; medians are reported.
    #[arg(long, default_value_t = 7)]
    runs: usize,
}

fn pairwise(slots: &[AgeSummary]) -> f64 {
    let mut acc = AgeSummary::new();
    for s in slots {
        acc.merge(s);
    }
    acc.quantile_ms(0.9).unwrap_or(0.0)
}

/// Sums bucket counts into `dense` (cleared after use) and walks it once for the p90.
fn dense(slots: &[AgeSummary], dense: &mut [u64]) -> f64 {
    let (mut count, mut zero, mut lo, mut hi) = (0u64, 0u64, usize::MAX, 0usize);
    for s in slots {
        count += s.count();
        zero += s.count() - s.buckets().iter().map(|b| b.1).sum::<u64>();
        for &(i, n) in s.buckets() {
            let i = i.clamp(0, MAX_BUCKETS as i32 - 1) as usize;
            dense[i] += n;
            lo = lo.min(i);
            hi = hi.max(i);
        }
    }
    let rank = ((0.9 * count as f64).ceil() as u64).max(1);
    let mut seen = zero;
    let mut out = 0.0;
    if lo <= hi {
        for (i, cell) in dense.iter_mut().enumerate().take(hi + 1).skip(lo) {
            seen += *cell;
            if out == 0.0 && seen >= rank {
                out = bucket_value(i as i32);
            }
            *cell = 0;
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let slots: Vec<AgeSummary> = summary_pool(args.slots, args.ages, 11)
        .iter()
        .map(AgeSummary::from_proto)
        .collect::<Result<_, _>>()?;
    let buckets: usize = slots.iter().map(|s| s.buckets().len()).sum();
    let mut scratch = vec![0u64; MAX_BUCKETS];
    let (a, b) = (pairwise(&slots), dense(&slots, &mut scratch));
    anyhow::ensure!(
        (a - b).abs() <= a * 0.021,
        "the two ways disagree: {a} vs {b}"
    );
    let (mut pw, mut dn) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let t = Instant::now();
        for _ in 0..args.iterations {
            black_box(pairwise(black_box(&slots)));
        }
        pw.push(t.elapsed().as_secs_f64() * 1e6 / args.iterations as f64);
        let t = Instant::now();
        for _ in 0..args.iterations {
            black_box(dense(black_box(&slots), &mut scratch));
        }
        dn.push(t.elapsed().as_secs_f64() * 1e6 / args.iterations as f64);
    }
    let (pw, dn) = (median(&pw), median(&dn));
    println!(
        "\n{} — `dwell-bench-merge --slots {} --ages {}` ({buckets} populated buckets in all), median of {} runs\n",
        dwell_bench::machine_line(),
        args.slots,
        args.ages,
        args.runs
    );
    println!("| one source's window → p90 | µs per source | ratio |");
    println!("|---|---|---|");
    println!("| pairwise `AgeSummary::merge` (today, without unpack) | {pw:.2} | 1.00× |");
    println!(
        "| dense scratch array (proposed) | {dn:.2} | {} |",
        ratio(dn, pw)
    );
    Ok(())
}
