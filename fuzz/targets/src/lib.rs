//! The bodies of dwell's fuzz targets, one plain function per target: `fn(&[u8]) -> Outcome`.
//! The cargo-fuzz binaries in `fuzz/fuzz_targets/` call them with libFuzzer's inputs, and
//! `tests/corpus.rs` replays every file of `fuzz/corpus/<target>/` through them in the normal
//! test suite, so the committed corpus keeps meaning something without the fuzzer.
//!
//! Each function feeds the input to the parser exactly as production does (the same public
//! entry points, the same order of checks) and then asserts what must hold of any input: no
//! panic, and the parser's own promises (a selector round-trips through `Display`, a line the
//! sidecar accepted renders back to itself, framing does not depend on how the bytes were cut,
//! …). A failed assertion is a crash to the fuzzer. The returned outcome says which path the
//! input took, so the corpus test can check that the seeds still reach the interesting ones.

mod api;
mod ingest;
mod report;
mod tap;

pub use api::{ApiOutcome, SelectorOutcome, api_request, label_selector};
pub use ingest::{NOW_MS, REASONS, ReportOutcome, report};
pub use report::{BodyOutcome, LineOutcome, report_http, report_line};
pub use tap::{TapOutcome, tap};

/// Every target by its name (the directory of its corpus), for the corpus replay.
pub const TARGETS: [&str; 6] = [
    "api_request",
    "label_selector",
    "report",
    "report_line",
    "report_http",
    "tap",
];
