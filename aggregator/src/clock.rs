//! Time in the aggregator: the injected clock (`dwell_runtime::clock`, re-exported so tests
//! reach it here), and conversions of Unix milliseconds for the API and for messages.
use std::time::{SystemTime, UNIX_EPOCH};

pub use dwell_runtime::clock::{Clock, ManualClock, SharedClock, SystemClock};

/// Converts Unix milliseconds to a `SystemTime` (clamped at the epoch).
pub fn to_system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64)
}

/// Formats Unix milliseconds as RFC 3339 (UTC), for messages meant for people.
pub fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}
