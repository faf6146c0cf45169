//! Placeholder while the driver is written.
fn main() {}
