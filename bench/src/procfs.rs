//! Reads a process's CPU time and memory from `/proc/<pid>/{stat,status}`: what `top` shows,
//! without a dependency.
use std::time::Instant;

/// Clock ticks per second of `utime`/`stime` (USER_HZ, 100 on every Linux we run on).
const TICKS_PER_SEC: f64 = 100.0;

/// Memory of a process, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident set size now (`VmRSS`).
    pub rss: u64,
    /// Peak resident set size (`VmHWM`).
    pub peak_rss: u64,
}

/// CPU seconds (user + system) the process has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may itself hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after comm and state.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// The process's current and peak RSS.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let n: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(n * 1024)
    };
    Some(Memory {
        rss: kib("VmRSS:")?,
        peak_rss: kib("VmHWM:")?,
    })
}

/// Measures CPU use between two points in time, as a fraction of one core.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: u32,
    start_cpu: f64,
    start: Instant,
}

impl CpuMeter {
    /// Starts measuring `pid` now.
    pub fn start(pid: u32) -> Self {
        Self {
            pid,
            start_cpu: cpu_seconds(pid).unwrap_or(0.0),
            start: Instant::now(),
        }
    }

    /// Seconds since the start.
    pub fn elapsed_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Share of one core used since the start (1.0 = one full core).
    pub fn cores(&self) -> f64 {
        let used = cpu_seconds(self.pid).unwrap_or(self.start_cpu) - self.start_cpu;
        used / self.start.elapsed().as_secs_f64().max(1e-9)
    }
}

/// Formats bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl CpuMeter {
    /// CPU seconds (user + system) used since the start.
    pub fn seconds(&self) -> f64 {
        cpu_seconds(self.pid).unwrap_or(self.start_cpu) - self.start_cpu
    }
}

/// CPU seconds the whole machine spent busy so far (every core; `/proc/stat` less idle and
/// iowait): with each process's own share subtracted, what everything else on the machine used.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: f64 = ticks.iter().take(8).sum::<f64>() - ticks.get(3)? - ticks.get(4)?;
    Some(busy / TICKS_PER_SEC)
}

/// The pid of the first process whose `comm` is `name` (e.g. RabbitMQ's `beam.smp`).
pub fn find_process(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
}
