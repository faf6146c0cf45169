//! The harness finds the workspace binaries.
#[test]
fn binaries_are_built() {
    for name in ["dwell-aggregator", "dwell-sidecar"] {
        let path = dwell_e2e::binary(name);
        assert!(
            path.exists(),
            "{} missing: run `cargo build --workspace --bins` first",
            path.display()
        );
    }
}
