//! The sidecar's report source: a UDP datagram of line-protocol lines
//! (`dwell_sidecar::report::udp::receive` into a real `Intake` and accumulator) and a
//! `POST /v1/report` body (`dwell_sidecar::report::http::parse_body`).

use std::sync::Arc;

use dwell_runtime::clock::ManualClock;
use dwell_sidecar::accumulator::Accumulator;
use dwell_sidecar::report::http::{MAX_BATCH, parse_body};
use dwell_sidecar::report::line::{self, Delivery};
use dwell_sidecar::report::{Intake, udp};
use dwell_sidecar::telemetry::Metrics;
use dwell_sidecar::timestamp::{Policy, Unit};

use crate::ingest::NOW_MS;

/// What one datagram gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineOutcome {
    /// Lines taken.
    pub accepted: u64,
    /// Lines (or the whole datagram) refused.
    pub rejected: u64,
}

fn intake() -> Intake {
    let metrics = Metrics::new();
    let policy = Policy {
        default_unit: Unit::Auto,
        max_age_ms: 7 * 86_400_000,
    };
    let clock = ManualClock::new(NOW_MS);
    let accumulator = Arc::new(Accumulator::new(policy, clock, metrics.clone()));
    Intake::new("orders".to_owned(), accumulator, metrics)
}

/// The line `d` would be written as; parsing it must give `d` back.
fn render(d: &Delivery) -> String {
    let queue = d.queue.as_deref().unwrap_or("-");
    let timestamp = match d.timestamp {
        None => "-".to_owned(),
        Some(t) => {
            let unit = match d.unit {
                None | Some(Unit::Auto) => "",
                Some(Unit::S) => "s",
                Some(Unit::Ms) => "ms",
                Some(Unit::Us) => "us",
            };
            format!("{t}{unit}")
        }
    };
    let flag = if d.redelivered { " 1" } else { "" };
    format!("{queue} {timestamp}{flag}")
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
}

/// Fuzzes one UDP datagram.
pub fn report_line(data: &[u8]) -> LineOutcome {
    let intake = intake();
    let (accepted, rejected) = udp::receive(&intake, data);
    if let (true, Ok(text)) = (data.len() <= udp::MAX_DATAGRAM, std::str::from_utf8(data)) {
        // Every non-empty line is counted once, one way or the other.
        assert_eq!(accepted + rejected, lines(text).count() as u64);
        for l in lines(text) {
            if let Ok(d) = line::parse(l) {
                let again = render(&d);
                assert_eq!(line::parse(&again), Ok(d), "{l:?} rendered as {again:?}");
            }
        }
    } else {
        assert_eq!(
            (accepted, rejected),
            (0, 1),
            "a refused datagram is one rejection"
        );
    }
    LineOutcome { accepted, rejected }
}

/// What one body gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOutcome {
    /// `200 {"accepted": n}` (before the queue check).
    Accepted(usize),
    /// Refused whole with this status.
    Refused(u16),
}

/// The Content-Type the first input byte picks (the rest is the body).
const CONTENT_TYPES: [&str; 5] = [
    "application/json",
    "text/plain",
    "application/json; charset=utf-8",
    "Text/Plain ; charset=utf-8",
    "application/x-www-form-urlencoded",
];

/// Fuzzes one `POST /v1/report`: the first byte picks the Content-Type, the rest is the body.
pub fn report_http(data: &[u8]) -> BodyOutcome {
    let Some((&pick, body)) = data.split_first() else {
        return BodyOutcome::Refused(0);
    };
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    match parse_body(content_type, body) {
        Ok(deliveries) => {
            assert!((1..=MAX_BATCH).contains(&deliveries.len()));
            for d in &deliveries {
                assert!(d.timestamp != Some(0), "0 means no timestamp");
                assert!(
                    d.timestamp.is_some() || d.unit.is_none(),
                    "no timestamp, no unit"
                );
                assert!(
                    d.queue.as_deref() != Some("-"),
                    "- means the sidecar's queue"
                );
            }
            BodyOutcome::Accepted(deliveries.len())
        }
        Err(r) => {
            assert!(
                matches!(r.status.as_u16(), 400 | 413 | 415),
                "status {}",
                r.status
            );
            assert!(!r.reason.is_empty() && !r.message.is_empty());
            BodyOutcome::Refused(r.status.as_u16())
        }
    }
}
