//! Shared harness for dwell's end-to-end tests: locating the built binaries, starting them on
//! free loopback ports, and talking to them with real clients (`kubectl`, `grpcurl`, tonic).

use std::path::PathBuf;

/// Path of a workspace binary built by `cargo build --workspace --bins` (the test script does that first).
pub fn binary(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile dir");
    dir.join(name)
}

/// [`binary`], when it has been built. A missing binary fails the test when
/// `DWELL_REQUIRE_SERVICES=1` (as `scripts/test.sh` sets) and is a loud skip otherwise.
pub fn built_binary(name: &str) -> Option<PathBuf> {
    let path = binary(name);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("DWELL_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!(
            "{} is missing: run cargo build --workspace --bins",
            path.display()
        );
    }
    eprintln!(
        "\n!!!!! SKIPPED: {} is missing (cargo build -p {name}) !!!!!\n",
        path.display()
    );
    None
}

pub mod aggregator;
pub mod broker;
pub mod certs;
pub mod closed_loop;
pub mod fleet;
pub mod hpa;
pub mod kube;
pub mod poll;
pub mod process;
pub mod publisher;
pub mod rabbitmqctl;
pub mod secrets;
pub mod sidecar;
pub mod tap;
pub mod trace;
pub mod worker;
