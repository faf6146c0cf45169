//! CPU pinning for benches that model a cluster on one machine: the broker's process on some
//! cores, the bench (and the children it spawns afterwards, which inherit its affinity) on
//! others, so a hop under test does not take its CPU from the broker as it would not in a
//! cluster. Done with `taskset -a` (every thread); the broker's own mask is restored when the
//! guard drops (also when the bench fails or panics; not if it is killed by a signal — then
//! `taskset -a -p <mask> <pid>` by hand, the mask is printed first).

use std::process::Command;

/// Pinned processes, put back as they were when dropped.
#[derive(Debug)]
pub struct Pinned {
    restore: Vec<(u32, String)>,
}

impl Pinned {
    /// Pins every thread of `pid` to `cpus` (a `taskset -c` list such as `1` or `0,2-3`);
    /// the guard restores the mask it had.
    pub fn pin(pid: u32, cpus: &str) -> anyhow::Result<Self> {
        let mask = current_mask(pid)?;
        eprintln!("pinning pid {pid} to CPU {cpus} (its mask was {mask})");
        taskset(&["-a", "-p", "-c", cpus, &pid.to_string()])?;
        Ok(Self {
            restore: vec![(pid, mask)],
        })
    }

    /// Pins this process's threads to `cpus` for good (nothing to restore: it ends).
    pub fn pin_self(cpus: &str) -> anyhow::Result<()> {
        let pid = std::process::id();
        eprintln!("pinning the bench (pid {pid}) and what it spawns to CPU {cpus}");
        taskset(&["-a", "-p", "-c", cpus, &pid.to_string()])
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for (pid, mask) in &self.restore {
            match taskset(&["-a", "-p", mask, &pid.to_string()]) {
                Ok(()) => eprintln!("restored pid {pid} to mask {mask}"),
                Err(e) => eprintln!(
                    "could not restore pid {pid} to mask {mask} ({e}): run `taskset -a -p {mask} {pid}`"
                ),
            }
        }
    }
}

/// The hexadecimal affinity mask `taskset -p` reports for `pid`.
fn current_mask(pid: u32) -> anyhow::Result<String> {
    let out = Command::new("taskset")
        .args(["-p", &pid.to_string()])
        .output()?;
    anyhow::ensure!(out.status.success(), "taskset -p {pid} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    text.rsplit(':')
        .next()
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_hexdigit() || c == ','))
        .ok_or_else(|| anyhow::anyhow!("no mask in {text:?}"))
}

fn taskset(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("taskset").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "taskset {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
