//! What one tapped connection has told the tap so far: its vhost (from connection.open), and per
//! channel which consumer tag reads which queue (from basic.consume, consume-ok for
//! server-named tags), which basic.get waits for its answer, and which delivery the next
//! content header belongs to. Channels interleave, so everything is per channel; channel.close,
//! basic.cancel (either side) and connection.close drop what they end. Bounded: a connection
//! holding more consumers or outstanding requests than [`MAX_PENDING`] and [`MAX_CONSUMERS`]
//! is no longer followed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::queues::{Queues, Tracked};
use crate::timestamp::Unit;

use super::frame::{Frame, FrameError};
use super::method::{self, DecodeError, Method};

/// Consumers followed on one connection.
pub const MAX_CONSUMERS: usize = 4096;
/// Unanswered basic.consume / basic.get requests followed per channel.
pub const MAX_PENDING: usize = 1024;

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// App → broker.
    ToBroker,
    /// Broker → app.
    ToApp,
}

impl Direction {
    /// A metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Direction::ToBroker => "to_broker",
            Direction::ToApp => "to_app",
        }
    }
}

/// Why a connection is no longer followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseOff {
    /// The framing broke (or was never AMQP 0-9-1).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A method or header could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// More consumers or outstanding requests than the tap follows.
    #[error("more consumers or outstanding requests than the tap follows")]
    TooMuchState,
}

impl ParseOff {
    /// A short metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseOff::Frame(e) => e.reason(),
            ParseOff::Decode(e) => e.reason(),
            ParseOff::TooMuchState => "too_much_state",
        }
    }
}

/// The timestamp header to prefer over the property, and its unit.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    /// The header name, e.g. `timestamp_in_ms`.
    pub name: String,
    /// Its unit.
    pub unit: Unit,
}

/// What the next content header on a channel belongs to.
enum Expect {
    /// A delivery from this queue (None: a queue the tap does not know or does not report).
    Delivery {
        queue: Option<Arc<Tracked>>,
        redelivered: bool,
    },
    /// A returned message: not a delivery.
    Nothing,
}

#[derive(Default)]
struct Channel {
    consumers: HashMap<Box<[u8]>, Option<Arc<Tracked>>>,
    /// basic.consume requests awaiting consume-ok, oldest first: the queue each reads. A queue
    /// is only reported once the broker accepted the request (a typo is no source).
    consumes: VecDeque<Option<String>>,
    /// basic.get requests awaiting get-ok or get-empty, oldest first.
    gets: VecDeque<Option<String>>,
    /// The queue an empty queue name means (the last queue.declare-ok).
    last_declared: Option<String>,
    expect: Option<Expect>,
}

/// Counts from one connection, read by its owner after each feed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Deliveries read (with or without a timestamp).
    pub deliveries: u64,
    /// Deliveries for a consumer tag never seen consumed.
    pub unknown_consumer: u64,
    /// connection.blocked from the broker.
    pub blocked: u64,
}

/// The followed state of one connection.
pub struct Tracker {
    queues: Arc<Queues>,
    header: Option<HeaderRule>,
    vhost: String,
    channels: HashMap<u16, Channel>,
    consumers: usize,
    /// The frame_max the app agreed to (connection.tune-ok), once it did.
    pub frame_max: Option<u32>,
    /// Counts since the owner last took them.
    pub seen: Seen,
}

impl Tracker {
    /// A fresh connection whose deliveries go to `queues`.
    pub fn new(queues: Arc<Queues>, header: Option<HeaderRule>) -> Self {
        Self {
            queues,
            header,
            // AMQP's default until connection.open says otherwise.
            vhost: "/".to_owned(),
            channels: HashMap::new(),
            consumers: 0,
            frame_max: None,
            seen: Seen::default(),
        }
    }

    /// Channels with state (for tests and memory accounting).
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// Follows one frame travelling `direction`.
    pub fn frame(&mut self, direction: Direction, frame: Frame<'_>) -> Result<(), ParseOff> {
        match frame {
            Frame::Method { channel, payload } => {
                let m = method::decode(payload)?;
                match direction {
                    Direction::ToBroker => self.app_said(channel, m),
                    Direction::ToApp => self.broker_said(channel, m),
                }
            }
            Frame::Header { channel, payload } if direction == Direction::ToApp => {
                self.content_header(channel, payload)
            }
            // Published content, bodies and heartbeats carry nothing the tap reads.
            Frame::Header { .. } | Frame::Body { .. } | Frame::Heartbeat => Ok(()),
        }
    }

    /// The queue a request names (an empty name: the channel's last declared queue).
    fn queue_name(&self, ch: u16, name: &[u8]) -> Option<String> {
        if name.is_empty() {
            self.channels.get(&ch)?.last_declared.clone()
        } else {
            Some(String::from_utf8_lossy(name).into_owned())
        }
    }

    /// The reported entry of a queue the broker accepted a request for.
    fn track(&self, name: Option<String>) -> Option<Arc<Tracked>> {
        self.queues.track(&name?, &self.vhost)
    }

    fn app_said(&mut self, ch: u16, m: Method<'_>) -> Result<(), ParseOff> {
        match m {
            Method::TuneOk { frame_max } => self.frame_max = Some(frame_max),
            Method::ConnectionOpen { vhost } => {
                self.vhost = String::from_utf8_lossy(vhost).into_owned();
            }
            Method::ConnectionClose => self.drop_all(),
            Method::ChannelOpen | Method::ChannelClose => self.drop_channel(ch),
            Method::Consume {
                queue,
                tag,
                no_wait,
            } => {
                let name = self.queue_name(ch, queue);
                if no_wait {
                    // No answer will come: take the request as accepted.
                    let tracked = self.track(name);
                    self.add_consumer(ch, tag, tracked)?;
                } else {
                    let c = self.channels.entry(ch).or_default();
                    if c.consumes.len() >= MAX_PENDING {
                        return Err(ParseOff::TooMuchState);
                    }
                    c.consumes.push_back(name);
                }
            }
            // Deliveries keep coming until cancel-ok; a no-wait cancel has none.
            Method::Cancel { tag, no_wait: true } => self.remove_consumer(ch, tag),
            Method::Get { queue } => {
                let name = self.queue_name(ch, queue);
                let c = self.channels.entry(ch).or_default();
                if c.gets.len() >= MAX_PENDING {
                    return Err(ParseOff::TooMuchState);
                }
                c.gets.push_back(name);
            }
            _ => {}
        }
        Ok(())
    }

    fn broker_said(&mut self, ch: u16, m: Method<'_>) -> Result<(), ParseOff> {
        match m {
            Method::ConnectionClose => self.drop_all(),
            Method::ConnectionBlocked => self.seen.blocked += 1,
            Method::ChannelClose => self.drop_channel(ch),
            Method::QueueDeclareOk { queue } => {
                self.channels.entry(ch).or_default().last_declared =
                    Some(String::from_utf8_lossy(queue).into_owned());
            }
            Method::ConsumeOk { tag } => {
                let name = self
                    .channels
                    .get_mut(&ch)
                    .and_then(|c| c.consumes.pop_front())
                    .flatten();
                let tracked = self.track(name);
                self.add_consumer(ch, tag, tracked)?;
            }
            Method::Cancel { tag, .. } | Method::CancelOk { tag } => self.remove_consumer(ch, tag),
            Method::Deliver { tag, redelivered } => {
                let c = self.channels.entry(ch).or_default();
                let queue = match c.consumers.get(tag) {
                    Some(q) => q.clone(),
                    None => {
                        self.seen.unknown_consumer += 1;
                        None
                    }
                };
                c.expect = Some(Expect::Delivery { queue, redelivered });
            }
            Method::GetOk { redelivered } => {
                let name = self.channels.entry(ch).or_default().gets.pop_front();
                let queue = self.track(name.flatten());
                self.channels.entry(ch).or_default().expect =
                    Some(Expect::Delivery { queue, redelivered });
            }
            Method::GetEmpty => {
                // An empty queue is still a queue the app reads: report it (and poll its stats).
                let name = self.channels.get_mut(&ch).and_then(|c| c.gets.pop_front());
                self.track(name.flatten());
            }
            Method::Return => self.channels.entry(ch).or_default().expect = Some(Expect::Nothing),
            _ => {}
        }
        Ok(())
    }

    fn content_header(&mut self, ch: u16, payload: &[u8]) -> Result<(), ParseOff> {
        let Some(expect) = self.channels.get_mut(&ch).and_then(|c| c.expect.take()) else {
            return Ok(());
        };
        let Expect::Delivery { queue, redelivered } = expect else {
            return Ok(());
        };
        let name = self.header.as_ref().map(|h| h.name.as_bytes());
        let stamps = method::decode_header(payload, name)?;
        self.seen.deliveries += 1;
        if let Some(queue) = queue {
            let (raw, unit) = match (&self.header, stamps.header) {
                (Some(rule), Some(v)) => (Some(v), Some(rule.unit)),
                _ => (stamps.timestamp, None),
            };
            queue.delivered(raw, unit, redelivered);
        }
        Ok(())
    }

    fn add_consumer(
        &mut self,
        ch: u16,
        tag: &[u8],
        tracked: Option<Arc<Tracked>>,
    ) -> Result<(), ParseOff> {
        if self.consumers >= MAX_CONSUMERS {
            return Err(ParseOff::TooMuchState);
        }
        let c = self.channels.entry(ch).or_default();
        if c.consumers.insert(tag.into(), tracked).is_none() {
            self.consumers += 1;
        }
        Ok(())
    }

    fn remove_consumer(&mut self, ch: u16, tag: &[u8]) {
        if let Some(c) = self.channels.get_mut(&ch)
            && c.consumers.remove(tag).is_some()
        {
            self.consumers -= 1;
        }
    }

    fn drop_channel(&mut self, ch: u16) {
        if let Some(c) = self.channels.remove(&ch) {
            self.consumers -= c.consumers.len();
        }
    }

    /// Forgets every channel (parsing was switched off, or the connection closed).
    pub fn forget(&mut self) {
        self.drop_all();
        self.channels.shrink_to_fit();
    }

    fn drop_all(&mut self) {
        self.channels.clear();
        self.consumers = 0;
    }
}

#[cfg(test)]
mod tests {
    use dwell_runtime::clock::ManualClock;

    use super::*;
    use crate::tap::method::encode::{method, short};
    use crate::telemetry::Metrics;
    use crate::timestamp::Policy;

    const NOW_MS: i64 = 1_800_000_000_000;

    fn consume(queue: &[u8], tag: &[u8]) -> Vec<u8> {
        let mut a = vec![0, 0];
        short(&mut a, queue);
        short(&mut a, tag);
        a.push(0);
        a.extend_from_slice(&[0, 0, 0, 0]);
        method(60, 20, &a)
    }

    fn tag_only(id: u16, tag: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        short(&mut a, tag);
        method(60, id, &a)
    }

    fn deliver(tag: &[u8], redelivered: bool) -> Vec<u8> {
        let mut a = Vec::new();
        short(&mut a, tag);
        a.extend_from_slice(&1u64.to_be_bytes());
        a.push(u8::from(redelivered));
        short(&mut a, b"");
        short(&mut a, b"q");
        method(60, 60, &a)
    }

    fn header(timestamp_s: u64) -> Vec<u8> {
        let mut out = vec![0, 60, 0, 0];
        out.extend_from_slice(&1u64.to_be_bytes());
        out.extend_from_slice(&(1u16 << 6).to_be_bytes());
        out.extend_from_slice(&timestamp_s.to_be_bytes());
        out
    }

    struct Conn {
        tracker: Tracker,
        queues: Arc<Queues>,
    }

    impl Conn {
        fn new() -> Self {
            let queues = Arc::new(Queues::new(
                Policy {
                    default_unit: Unit::Auto,
                    max_age_ms: 3_600_000,
                },
                ManualClock::new(NOW_MS),
                Metrics::new(),
                16,
            ));
            Self {
                tracker: Tracker::new(queues.clone(), None),
                queues,
            }
        }

        fn app(&mut self, ch: u16, payload: &[u8]) {
            let f = Frame::Method {
                channel: ch,
                payload,
            };
            self.tracker.frame(Direction::ToBroker, f).unwrap();
        }

        fn broker(&mut self, ch: u16, payload: &[u8]) {
            let f = Frame::Method {
                channel: ch,
                payload,
            };
            self.tracker.frame(Direction::ToApp, f).unwrap();
        }

        fn content(&mut self, ch: u16, stamp_s: u64) {
            let payload = header(stamp_s);
            let f = Frame::Header {
                channel: ch,
                payload: &payload,
            };
            self.tracker.frame(Direction::ToApp, f).unwrap();
        }

        /// (count, max age) recorded for `queue` in vhost `vhost`.
        fn ages(&self, queue: &str, vhost: &str) -> (u64, Option<i64>) {
            let t = self
                .queues
                .all()
                .into_iter()
                .find(|t| t.key().queue == queue && t.key().vhost == vhost);
            let s = t.map(|t| t.ages().take()).unwrap_or_default();
            (s.count(), s.max_ms())
        }
    }

    #[test]
    fn deliveries_are_attributed_per_channel_and_vhost() {
        let mut c = Conn::new();
        let mut open = Vec::new();
        short(&mut open, b"orders");
        short(&mut open, b"");
        open.push(0);
        c.app(0, &method(10, 40, &open));
        c.app(1, &consume(b"a", b"t1"));
        c.app(2, &consume(b"b", b"")); // server-named tag
        c.broker(1, &tag_only(21, b"t1"));
        c.broker(2, &tag_only(21, b"amq.ctag-9"));
        // Channels interleave: deliver on 1, deliver on 2, then both headers.
        c.broker(1, &deliver(b"t1", false));
        c.broker(2, &deliver(b"amq.ctag-9", true));
        let stamp = (NOW_MS / 1000 - 10) as u64;
        c.content(2, stamp);
        c.content(1, stamp - 5);
        assert_eq!(c.ages("a", "orders"), (1, Some(15_000)));
        assert_eq!(c.ages("b", "orders"), (1, Some(10_000)));
        assert_eq!(c.tracker.seen.deliveries, 2);
        // A header with no delivery before it (a publish echoed? garbage?) is ignored.
        c.content(1, stamp);
        assert_eq!(c.ages("a", "orders").0, 0);
    }

    #[test]
    fn cancel_close_and_get_reset_or_use_state() {
        let mut c = Conn::new();
        c.app(1, &consume(b"a", b"t"));
        c.broker(1, &tag_only(21, b"t"));
        // The broker cancels (queue deleted): later deliveries for "t" are unknown.
        c.broker(1, &tag_only(30, b"t"));
        c.broker(1, &deliver(b"t", false));
        c.content(1, (NOW_MS / 1000) as u64);
        assert_eq!(c.tracker.seen.unknown_consumer, 1);
        assert_eq!(c.ages("a", "/").0, 0);
        // basic.get on an empty queue name means the last declared queue.
        let mut ok = Vec::new();
        short(&mut ok, b"declared");
        ok.extend_from_slice(&[0; 8]);
        c.broker(3, &method(50, 11, &ok));
        let mut get = vec![0, 0];
        short(&mut get, b"");
        get.push(0);
        c.app(3, &method(60, 70, &get));
        c.app(3, &method(60, 70, &get));
        c.broker(3, &method(60, 72, &[])); // the first was empty
        let mut get_ok = 1u64.to_be_bytes().to_vec();
        get_ok.push(1);
        c.broker(3, &method(60, 71, &get_ok));
        c.content(3, (NOW_MS / 1000 - 2) as u64);
        assert_eq!(c.ages("declared", "/"), (1, Some(2_000)));
        // channel.close forgets the channel; connection.close forgets everything.
        c.app(4, &consume(b"x", b"t4"));
        c.broker(4, &tag_only(21, b"t4"));
        assert_eq!(c.tracker.channels(), 3);
        c.broker(4, &method(20, 40, &[0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(c.tracker.channels(), 2);
        c.app(0, &method(10, 50, &[0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(c.tracker.channels(), 0);
        assert_eq!(c.tracker.consumers, 0);
    }

    #[test]
    fn only_queues_the_broker_accepted_are_reported() {
        let mut c = Conn::new();
        c.app(1, &consume(b"typo", b"t"));
        // The broker refuses (404 channel.close): nothing was reported.
        c.broker(1, &method(20, 40, &[1, 148, 0, 0, 0, 0, 0]));
        assert!(c.queues.all().is_empty());
        c.app(2, &consume(b"real", b"t2"));
        c.broker(2, &tag_only(21, b"t2"));
        let names: Vec<String> = c
            .queues
            .all()
            .iter()
            .map(|t| t.key().queue.clone())
            .collect();
        assert_eq!(names, vec!["real".to_owned()]);
    }

    proptest::proptest! {
        /// Any sequence of the methods the tap follows, on any channels, either way, with any
        /// arguments: never a panic, and the consumer count stays the sum over channels.
        #[test]
        fn any_method_sequence_keeps_the_state_consistent(
            steps in proptest::collection::vec(
                (
                    proptest::prelude::any::<bool>(),
                    0u16..4,
                    proptest::sample::select(vec![
                        (10u16, 40u16), (10, 50), (20, 10), (20, 40), (50, 11), (60, 20),
                        (60, 21), (60, 30), (60, 31), (60, 60), (60, 70), (60, 71), (60, 72),
                        (60, 50),
                    ]),
                    proptest::collection::vec(0u8..4, 0..24),
                ),
                0..200,
            )
        ) {
            let mut c = Conn::new();
            for (to_app, ch, (class, id), args) in steps {
                let payload = method(class, id, &args);
                let direction = if to_app { Direction::ToApp } else { Direction::ToBroker };
                let f = Frame::Method { channel: ch, payload: &payload };
                let _ = c.tracker.frame(direction, f);
                let header = header(1);
                let _ = c.tracker.frame(Direction::ToApp, Frame::Header { channel: ch, payload: &header });
                let total: usize = c.tracker.channels.values().map(|x| x.consumers.len()).sum();
                proptest::prop_assert_eq!(total, c.tracker.consumers);
            }
        }
    }

    #[test]
    fn state_is_bounded() {
        let mut c = Conn::new();
        let mut off = None;
        for i in 0..=MAX_CONSUMERS {
            let tag = format!("t{i}");
            let f = consume(b"a", tag.as_bytes());
            let mut args = f.clone();
            // no-wait: registered at once.
            let bits = args.len() - 5;
            args[bits] = 0b1000;
            let r = c.tracker.frame(
                Direction::ToBroker,
                Frame::Method {
                    channel: 1,
                    payload: &args,
                },
            );
            if let Err(e) = r {
                off = Some((i, e));
                break;
            }
        }
        assert_eq!(off, Some((MAX_CONSUMERS, ParseOff::TooMuchState)));
    }
}
