//! The AMQP tap's side-channel reader: both directions of one connection through
//! `dwell_sidecar::tap::parser::Parser` (frame reader → method and content-header decoding →
//! per-channel state → deliveries into real queue sources), exactly as the tap's pumps feed it;
//! and, alongside, the frame reader alone fed the same bytes cut and uncut, which must agree.
//!
//! Input: records of `[ctl][bytes]`: the low 7 bits of `ctl` are the record's length (fewer if
//! the input ends), the high bit its direction (0 app → broker, 1 broker → app). So a
//! conversation recorded off a real connection is a seed, and the fuzzer may recut it.

use std::sync::Arc;

use dwell_runtime::clock::ManualClock;
use dwell_sidecar::queues::Queues;
use dwell_sidecar::tap::frame::{Frame, FrameError, FrameReader};
use dwell_sidecar::tap::parser::Parser;
use dwell_sidecar::tap::state::{Direction, HeaderRule, Tracker};
use dwell_sidecar::telemetry::Metrics;
use dwell_sidecar::timestamp::{Policy, Unit};
use prometheus_client::metrics::counter::Counter;

use crate::ingest::NOW_MS;

/// What one conversation gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapOutcome {
    /// Frames read app → broker (by the frame reader alone).
    pub to_broker: usize,
    /// Frames read broker → app.
    pub to_app: usize,
    /// Deliveries the tap recorded.
    pub deliveries: u64,
    /// Why parsing went off, if it did.
    pub off: Option<&'static str>,
}

/// Splits the input into its direction records.
fn records(mut data: &[u8]) -> Vec<(Direction, &[u8])> {
    let mut out = Vec::new();
    while let Some((&ctl, rest)) = data.split_first() {
        let n = usize::from(ctl & 0x7f).min(rest.len());
        let direction = if ctl & 0x80 == 0 {
            Direction::ToBroker
        } else {
            Direction::ToApp
        };
        out.push((direction, &rest[..n]));
        data = &rest[n..];
    }
    out
}

/// A frame, owned, for comparing two reads.
#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Method(u16, Vec<u8>),
    Header(u16, Vec<u8>),
    Body(u16, u32),
    Heartbeat,
}

fn own(f: Frame<'_>) -> Owned {
    match f {
        Frame::Method { channel, payload } => Owned::Method(channel, payload.to_vec()),
        Frame::Header { channel, payload } => Owned::Header(channel, payload.to_vec()),
        Frame::Body { channel, size } => Owned::Body(channel, size),
        Frame::Heartbeat => Owned::Heartbeat,
    }
}

/// Reads `pieces` with a fresh reader: the frames and the error that stopped it, if any.
fn read(mut reader: FrameReader, pieces: &[&[u8]]) -> (Vec<Owned>, Option<FrameError>) {
    let mut frames = Vec::new();
    for piece in pieces {
        if let Err(e) = reader.feed(piece, |f| {
            frames.push(own(f));
            Ok::<(), FrameError>(())
        }) {
            return (frames, Some(e));
        }
    }
    (frames, None)
}

/// Fuzzes one tapped conversation.
pub fn tap(data: &[u8]) -> TapOutcome {
    let metrics = Metrics::new();
    let policy = Policy {
        default_unit: Unit::Auto,
        max_age_ms: 7 * 86_400_000,
    };
    let queues = Arc::new(Queues::new(
        policy,
        ManualClock::new(NOW_MS),
        metrics.clone(),
        16,
    ));
    let header = HeaderRule {
        name: "timestamp_in_ms".to_owned(),
        unit: Unit::Ms,
    };
    let deliveries = Counter::default();
    let mut parser = Parser::new(
        1,
        Tracker::new(queues.clone(), Some(header)),
        metrics,
        deliveries.clone(),
    );
    let records = records(data);
    for &(direction, bytes) in &records {
        parser.feed(direction, bytes);
    }
    assert!(queues.all().len() <= 16, "the queue limit holds");
    if parser.off().is_some() {
        assert_eq!(
            parser.tracker().channels(),
            0,
            "state is freed once parsing is off"
        );
    }
    // The frame reader alone: however the bytes were cut, the same frames and the same error.
    let mut counts = [0; 2];
    for (i, (direction, reader)) in [
        (
            Direction::ToBroker,
            FrameReader::client as fn() -> FrameReader,
        ),
        (Direction::ToApp, FrameReader::server),
    ]
    .into_iter()
    .enumerate()
    {
        let pieces: Vec<&[u8]> = records
            .iter()
            .filter(|(d, _)| *d == direction)
            .map(|(_, b)| *b)
            .collect();
        let whole = pieces.concat();
        let cut = read(reader(), &pieces);
        assert_eq!(
            cut,
            read(reader(), &[&whole]),
            "{direction:?}: framing depends on the cuts"
        );
        counts[i] = cut.0.len();
    }
    TapOutcome {
        to_broker: counts[0],
        to_app: counts[1],
        deliveries: deliveries.get(),
        off: parser.off().map(|e| e.reason()),
    }
}
