//! The side-channel reader of one tapped connection: both directions' framing ([`FrameReader`])
//! feeding one shared [`Tracker`], the negotiated frame_max applied to both, and the first
//! error switching parsing off for that connection only (counted, logged once). It sees only
//! copies of bytes already forwarded, so it is a pure function of its input and the fuzz
//! target `tap` drives it exactly as the tap's pumps do.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use super::frame::FrameReader;
use super::state::{Direction, ParseOff, Tracker};
use crate::telemetry::Metrics;

/// Both directions of one connection, read on the side.
pub struct Parser {
    id: u64,
    tracker: Tracker,
    client: FrameReader,
    server: FrameReader,
    /// Why parsing is off, once it is.
    off: Option<ParseOff>,
    metrics: Arc<Metrics>,
    deliveries: Counter,
}

impl Parser {
    /// A parser for connection `id` (in log lines) following `tracker`; its deliveries are
    /// counted in `deliveries` (the connection's own series), its other counts in `metrics`.
    pub fn new(id: u64, tracker: Tracker, metrics: Arc<Metrics>, deliveries: Counter) -> Self {
        Self {
            id,
            tracker,
            client: FrameReader::client(),
            server: FrameReader::server(),
            off: None,
            metrics,
            deliveries,
        }
    }

    /// Why parsing stopped, once it has.
    pub fn off(&self) -> Option<ParseOff> {
        self.off
    }

    /// The followed state (channels, consumers).
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// How many of the next bytes `direction` need not be read at all (the rest of a body
    /// payload; everything once parsing is off): they may be forwarded without a copy and
    /// accounted for with [`Parser::skipped`].
    pub fn skippable(&self, direction: Direction) -> usize {
        if self.off.is_some() {
            return usize::MAX;
        }
        self.reader(direction).skippable()
    }

    /// Accounts for `n` bytes (at most [`Parser::skippable`]) already forwarded `direction`
    /// unread.
    pub fn skipped(&mut self, direction: Direction, n: usize) {
        if self.off.is_none() {
            self.reader_mut(direction).skipped(n);
        }
    }

    fn reader(&self, direction: Direction) -> &FrameReader {
        match direction {
            Direction::ToBroker => &self.client,
            Direction::ToApp => &self.server,
        }
    }

    fn reader_mut(&mut self, direction: Direction) -> &mut FrameReader {
        match direction {
            Direction::ToBroker => &mut self.client,
            Direction::ToApp => &mut self.server,
        }
    }

    /// Reads a copy of bytes already forwarded `direction`.
    pub fn feed(&mut self, direction: Direction, bytes: &[u8]) {
        if self.off.is_some() {
            return;
        }
        let reader = match direction {
            Direction::ToBroker => &mut self.client,
            Direction::ToApp => &mut self.server,
        };
        let tracker = &mut self.tracker;
        let result = reader.feed(bytes, |f| tracker.frame(direction, f));
        if let Some(frame_max) = self.tracker.frame_max.take() {
            // Tune-ok is sent once: from now on no frame may be larger, in either direction.
            self.client.set_frame_max(frame_max);
            self.server.set_frame_max(frame_max);
        }
        let seen = std::mem::take(&mut self.tracker.seen);
        self.deliveries.inc_by(seen.deliveries);
        self.metrics
            .tap_unknown_consumer
            .inc_by(seen.unknown_consumer);
        self.metrics.tap_blocked.inc_by(seen.blocked);
        if let Err(e) = result {
            Metrics::inc(&self.metrics.tap_parse_off, e.reason());
            tracing::warn!(conn = self.id, direction = direction.label(), reason = e.reason(), error = %e,
                "tap stops reading this connection (forwarding goes on)");
            self.off = Some(e);
            // Nothing more is read: free what was followed.
            self.tracker.forget();
            self.client.stop();
            self.server.stop();
        }
    }
}
