//! dwell's benchmark harness: the pieces the bench binaries share (child processes, /proc
//! sampling, an HTTPS load client, the ceiling server, realistic reports, statistics).
//!
//! These are measuring tools, not tests: nothing here asserts timing. See BENCHMARKS.md for the
//! commands and the results.

pub mod child;
pub mod https;
pub mod ingest;
pub mod pin;
pub mod plainhttp;
pub mod procfs;
pub mod rabbit;
pub mod reads;
pub mod reports;
pub mod stats;
pub mod target;
pub mod tokens;

/// Installs ring as the process's rustls crypto provider (idempotent).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Today's date and the machine, for the header of every result table.
pub fn machine_line() -> String {
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{date}; {cores} cores (nproc), {model}")
}
