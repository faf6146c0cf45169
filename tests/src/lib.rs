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
pub mod sidecar;
pub mod trace;
pub mod worker;
