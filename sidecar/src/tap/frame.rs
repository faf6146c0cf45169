//! The tap's side-channel frame reader: AMQP 0-9-1 framing (`type u8 | channel u16 | size u32 |
//! payload | 0xCE`) over a copy of the bytes already forwarded, fed in whatever pieces the
//! socket delivered. Method and content-header payloads are handed on whole (borrowed from the
//! input when a frame arrived in one piece, else gathered into a bounded scratch buffer); body
//! payloads are skipped by their size and never stored. A pure function over byte slices, so it
//! is property-tested (and fuzzable) without a socket.

/// The header an AMQP 0-9-1 client opens its connection with.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;
/// Largest method or content-header payload gathered. RabbitMQ's frame_max defaults to 128 KiB
/// and a header frame must fit one frame; anything larger switches parsing off (counted).
pub const MAX_KEPT_PAYLOAD: usize = 256 * 1024;
/// A scratch buffer grown past this is released once its frame is handed on, so one large
/// frame does not pin memory on an idle connection.
const SCRATCH_KEEP: usize = 16 * 1024;
/// Frame header: type, channel, size.
const HEAD: usize = 7;

/// One frame, as much of it as the tap looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A method frame (type 1) and its whole payload.
    Method {
        /// The channel.
        channel: u16,
        /// Class id, method id, arguments.
        payload: &'a [u8],
    },
    /// A content header frame (type 2) and its whole payload.
    Header {
        /// The channel.
        channel: u16,
        /// Class id, weight, body size, property flags and properties.
        payload: &'a [u8],
    },
    /// A content body frame (type 3): its payload was skipped.
    Body {
        /// The channel.
        channel: u16,
        /// Payload bytes skipped.
        size: u32,
    },
    /// A heartbeat frame (type 8).
    Heartbeat,
}

/// Why the reader stopped: the stream is not (or no longer) AMQP 0-9-1 framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The client's protocol header is not AMQP 0-9-1 (AMQP 1.0, a TLS ClientHello, garbage).
    #[error("the protocol header is not AMQP 0-9-1")]
    ForeignProtocol,
    /// A frame did not end with 0xCE.
    #[error("frame end octet {0:#04x} instead of 0xce")]
    BadFrameEnd(u8),
    /// A frame type other than 1, 2, 3 or 8.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// A method or header frame larger than [`MAX_KEPT_PAYLOAD`], or any frame larger than
    /// the negotiated frame_max.
    #[error("a {0}-byte frame payload is larger than the tap reads or frame_max allows")]
    TooLarge(u32),
}

impl FrameError {
    /// A short metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::ForeignProtocol => "foreign_protocol",
            FrameError::BadFrameEnd(_) => "bad_frame_end",
            FrameError::UnknownType(_) => "unknown_frame_type",
            FrameError::TooLarge(_) => "frame_too_large",
        }
    }
}

/// What the next input byte belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The client's protocol header; `got` bytes of it matched so far.
    ProtocolHeader { got: usize },
    /// A frame header; `got` bytes of it are in `head`.
    Head { got: usize },
    /// A method or header payload being gathered into `scratch` (`size` bytes in all).
    Keep { kind: Kept, channel: u16, size: u32 },
    /// A body (or oversized heartbeat) payload being skipped.
    Skip { pending: Pending, remaining: u32 },
    /// The frame-end octet of a frame whose payload is complete.
    End { pending: Pending },
    /// An error was returned: nothing more is read.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    Method,
    Header,
}

/// A frame waiting for its end octet before it is handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Kept { kind: Kept, channel: u16 },
    Body { channel: u16, size: u32 },
    Heartbeat,
}

/// An incremental reader of one direction of an AMQP connection.
#[derive(Debug)]
pub struct FrameReader {
    phase: Phase,
    head: [u8; HEAD],
    scratch: Vec<u8>,
    /// Largest payload allowed (frame_max less header and end); u32::MAX until negotiated.
    max_payload: u32,
}

impl FrameReader {
    /// A reader of the client→server direction: the protocol header comes first.
    pub fn client() -> Self {
        Self::starting(Phase::ProtocolHeader { got: 0 })
    }

    /// A reader of the server→client direction: frames from the first byte.
    pub fn server() -> Self {
        Self::starting(Phase::Head { got: 0 })
    }

    fn starting(phase: Phase) -> Self {
        Self {
            phase,
            head: [0; HEAD],
            scratch: Vec::new(),
            max_payload: u32::MAX,
        }
    }

    /// Applies the negotiated frame_max (connection.tune-ok; 0 means no limit): a larger frame
    /// of any type is then an error instead of a very long skip.
    pub fn set_frame_max(&mut self, frame_max: u32) {
        self.max_payload = match frame_max {
            0 => u32::MAX,
            n => n.saturating_sub(HEAD as u32 + 1),
        };
    }

    /// Stops reading for good and frees the scratch buffer.
    pub fn stop(&mut self) {
        self.phase = Phase::Stopped;
        self.scratch = Vec::new();
    }

    /// Bytes held for a frame not yet complete (a method or header payload in pieces).
    pub fn buffered(&self) -> usize {
        self.scratch.capacity()
    }

    /// How many of the next bytes of the stream this reader would pass over unread: the rest
    /// of a body payload being skipped, everything (`usize::MAX`) once stopped, else 0. A
    /// forwarder may move that many bytes without copying them out for the reader, and then
    /// accounts for them with [`FrameReader::skipped`] instead of [`FrameReader::feed`].
    pub fn skippable(&self) -> usize {
        match self.phase {
            Phase::Skip { remaining, .. } => remaining as usize,
            Phase::Stopped => usize::MAX,
            _ => 0,
        }
    }

    /// Accounts for `n` bytes forwarded unread, `n` at most [`FrameReader::skippable`]: the
    /// same as feeding any `n` bytes there (a larger `n` is cut to it; the rest is lost).
    pub fn skipped(&mut self, n: usize) {
        if let Phase::Skip { pending, remaining } = self.phase {
            let n = n.min(remaining as usize) as u32;
            self.phase = if n == remaining {
                Phase::End { pending }
            } else {
                Phase::Skip {
                    pending,
                    remaining: remaining - n,
                }
            };
        }
    }

    /// Reads `input`, the next bytes of the stream, handing each complete frame to `on_frame`.
    /// The first error (the reader's, or one `on_frame` returns) stops the reader for good.
    pub fn feed<E: From<FrameError>>(
        &mut self,
        mut input: &[u8],
        mut on_frame: impl FnMut(Frame<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let result = self.feed_inner(&mut input, &mut on_frame);
        if result.is_err() {
            self.stop();
        }
        result
    }

    fn feed_inner<E: From<FrameError>>(
        &mut self,
        input: &mut &[u8],
        on_frame: &mut impl FnMut(Frame<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        while !input.is_empty() {
            match self.phase {
                Phase::Stopped => return Ok(()),
                Phase::ProtocolHeader { got } => {
                    let n = (PROTOCOL_HEADER.len() - got).min(input.len());
                    if input[..n] != PROTOCOL_HEADER[got..got + n] {
                        return Err(FrameError::ForeignProtocol.into());
                    }
                    *input = &input[n..];
                    self.phase = if got + n == PROTOCOL_HEADER.len() {
                        Phase::Head { got: 0 }
                    } else {
                        Phase::ProtocolHeader { got: got + n }
                    };
                }
                Phase::Head { got: 0 } if input.len() >= HEAD => {
                    let head: [u8; HEAD] = take(input);
                    self.start_frame(head, input, on_frame)?;
                }
                Phase::Head { got } => {
                    let n = (HEAD - got).min(input.len());
                    self.head[got..got + n].copy_from_slice(&input[..n]);
                    *input = &input[n..];
                    if got + n == HEAD {
                        self.start_frame(self.head, input, on_frame)?;
                    } else {
                        self.phase = Phase::Head { got: got + n };
                    }
                }
                Phase::Keep {
                    kind,
                    channel,
                    size,
                } => {
                    let want = size as usize - self.scratch.len();
                    let n = want.min(input.len());
                    self.scratch.extend_from_slice(&input[..n]);
                    *input = &input[n..];
                    if n == want {
                        self.phase = Phase::End {
                            pending: Pending::Kept { kind, channel },
                        };
                    }
                }
                Phase::Skip { pending, remaining } => {
                    let n = (remaining as usize).min(input.len());
                    *input = &input[n..];
                    self.phase = if n == remaining as usize {
                        Phase::End { pending }
                    } else {
                        Phase::Skip {
                            pending,
                            remaining: remaining - n as u32,
                        }
                    };
                }
                Phase::End { pending } => {
                    let end = input[0];
                    *input = &input[1..];
                    if end != FRAME_END {
                        return Err(FrameError::BadFrameEnd(end).into());
                    }
                    self.phase = Phase::Head { got: 0 };
                    self.finish(pending, on_frame)?;
                }
            }
        }
        Ok(())
    }

    /// Reads a frame header; a method or header frame wholly in `input` is handed on at once,
    /// borrowed, without touching the scratch buffer.
    fn start_frame<E: From<FrameError>>(
        &mut self,
        head: [u8; HEAD],
        input: &mut &[u8],
        on_frame: &mut impl FnMut(Frame<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let kind = head[0];
        let channel = u16::from_be_bytes([head[1], head[2]]);
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
        if size > self.max_payload {
            return Err(FrameError::TooLarge(size).into());
        }
        let kept = match kind {
            1 => Kept::Method,
            2 => Kept::Header,
            3 | 8 => {
                let pending = if kind == 3 {
                    Pending::Body { channel, size }
                } else {
                    Pending::Heartbeat
                };
                self.phase = match size {
                    0 => Phase::End { pending },
                    remaining => Phase::Skip { pending, remaining },
                };
                return Ok(());
            }
            other => return Err(FrameError::UnknownType(other).into()),
        };
        if size as usize > MAX_KEPT_PAYLOAD {
            return Err(FrameError::TooLarge(size).into());
        }
        let size_us = size as usize;
        if input.len() > size_us {
            let (payload, rest) = input.split_at(size_us);
            if rest[0] != FRAME_END {
                return Err(FrameError::BadFrameEnd(rest[0]).into());
            }
            *input = &rest[1..];
            self.phase = Phase::Head { got: 0 };
            return on_frame(kept_frame(kept, channel, payload));
        }
        self.scratch.clear();
        self.scratch.reserve(size_us);
        self.phase = if size == 0 {
            Phase::End {
                pending: Pending::Kept {
                    kind: kept,
                    channel,
                },
            }
        } else {
            Phase::Keep {
                kind: kept,
                channel,
                size,
            }
        };
        Ok(())
    }

    fn finish<E>(
        &mut self,
        pending: Pending,
        on_frame: &mut impl FnMut(Frame<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        match pending {
            Pending::Kept { kind, channel } => {
                let result = on_frame(kept_frame(kind, channel, &self.scratch));
                self.scratch.clear();
                if self.scratch.capacity() > SCRATCH_KEEP {
                    self.scratch = Vec::new();
                }
                result
            }
            Pending::Body { channel, size } => on_frame(Frame::Body { channel, size }),
            Pending::Heartbeat => on_frame(Frame::Heartbeat),
        }
    }
}

fn kept_frame(kind: Kept, channel: u16, payload: &[u8]) -> Frame<'_> {
    match kind {
        Kept::Method => Frame::Method { channel, payload },
        Kept::Header => Frame::Header { channel, payload },
    }
}

/// The first `N` bytes of `input` (the caller checked there are that many), consumed.
fn take<const N: usize>(input: &mut &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&input[..N]);
    *input = &input[N..];
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A frame with its payload owned, to compare what was read with what was written.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Method(u16, Vec<u8>),
        Header(u16, Vec<u8>),
        Body(u16, u32),
        Heartbeat,
    }

    impl From<Frame<'_>> for Owned {
        fn from(f: Frame<'_>) -> Self {
            match f {
                Frame::Method { channel, payload } => Owned::Method(channel, payload.to_vec()),
                Frame::Header { channel, payload } => Owned::Header(channel, payload.to_vec()),
                Frame::Body { channel, size } => Owned::Body(channel, size),
                Frame::Heartbeat => Owned::Heartbeat,
            }
        }
    }

    fn encode(frames: &[Owned]) -> Vec<u8> {
        let mut out = PROTOCOL_HEADER.to_vec();
        for f in frames {
            let (kind, channel, payload) = match f {
                Owned::Method(c, p) => (1u8, *c, p.clone()),
                Owned::Header(c, p) => (2, *c, p.clone()),
                Owned::Body(c, n) => (3, *c, vec![0xCE; *n as usize]),
                Owned::Heartbeat => (8, 0, Vec::new()),
            };
            out.push(kind);
            out.extend_from_slice(&channel.to_be_bytes());
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            out.extend_from_slice(&payload);
            out.push(FRAME_END);
        }
        out
    }

    /// Feeds `bytes` cut at `cuts`; returns the frames read and the error, if any.
    fn read(bytes: &[u8], cuts: &[usize]) -> (Vec<Owned>, Option<FrameError>) {
        let mut reader = FrameReader::client();
        let mut frames = Vec::new();
        let mut at = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        points.push(bytes.len());
        for p in points {
            let r = reader.feed(&bytes[at..p], |f| {
                frames.push(Owned::from(f));
                Ok::<(), FrameError>(())
            });
            at = p;
            if let Err(e) = r {
                return (frames, Some(e));
            }
        }
        (frames, None)
    }

    fn frame() -> impl Strategy<Value = Owned> {
        prop_oneof![
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..300))
                .prop_map(|(c, p)| Owned::Method(c, p)),
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..300))
                .prop_map(|(c, p)| Owned::Header(c, p)),
            (any::<u16>(), 0u32..5000).prop_map(|(c, n)| Owned::Body(c, n)),
            Just(Owned::Heartbeat),
        ]
    }

    proptest! {
        /// Valid streams give back exactly the frames written, however the bytes are cut.
        #[test]
        fn frames_survive_any_split(
            frames in proptest::collection::vec(frame(), 0..30),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let bytes = encode(&frames);
            let (read_back, error) = read(&bytes, &cuts);
            prop_assert_eq!(error, None);
            prop_assert_eq!(read_back, frames);
        }

        /// Arbitrary bytes never panic, and what is read does not depend on where they are cut.
        #[test]
        fn arbitrary_bytes_read_the_same_however_cut(
            prefix in proptest::collection::vec(frame(), 0..4),
            garbage in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut bytes = encode(&prefix);
            bytes.extend_from_slice(&garbage);
            prop_assert_eq!(read(&bytes, &cuts), read(&bytes, &[]));
            // The same without the protocol header: garbage from the start.
            prop_assert_eq!(read(&garbage, &cuts), read(&garbage, &[]));
        }
    }

    proptest! {
        /// A forwarder that moves every skippable run unread (as the tap's splice path does)
        /// gets exactly the frames a reader fed every byte gets, however the bytes arrive.
        #[test]
        fn skipping_the_skippable_reads_the_same(
            frames in proptest::collection::vec(frame(), 0..30),
            garbage in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut bytes = encode(&frames);
            bytes.extend_from_slice(&garbage);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.sort_unstable();
            points.push(bytes.len());
            let mut reader = FrameReader::client();
            let mut seen = Vec::new();
            let mut error = None;
            let (mut at, mut skipped_any) = (0, false);
            for p in points {
                while at < p {
                    let skip = reader.skippable().min(p - at);
                    if skip > 0 {
                        reader.skipped(skip);
                        at += skip;
                        skipped_any = true;
                        continue;
                    }
                    // Fed one byte at a time up to the next skippable run.
                    let r = reader.feed(&bytes[at..at + 1], |f| {
                        seen.push(Owned::from(f));
                        Ok::<(), FrameError>(())
                    });
                    at += 1;
                    if let Err(e) = r {
                        error.get_or_insert(e);
                    }
                }
            }
            let (expected, expected_error) = read(&bytes, &[]);
            prop_assert_eq!(seen, expected);
            prop_assert_eq!(error, expected_error);
            if frames.iter().any(|f| matches!(f, Owned::Body(_, n) if *n > 0)) {
                prop_assert!(skipped_any, "body payloads are skippable");
            }
        }
    }

    #[test]
    fn foreign_headers_and_broken_frames_are_refused() {
        let amqp10 = b"AMQP\x00\x01\x00\x00";
        assert_eq!(read(amqp10, &[]).1, Some(FrameError::ForeignProtocol));
        let tls_hello = [0x16, 0x03, 0x01, 0x02, 0x00];
        assert_eq!(read(&tls_hello, &[]).1, Some(FrameError::ForeignProtocol));
        let mut bad_end = encode(&[Owned::Method(1, vec![0, 60, 0, 60])]);
        *bad_end.last_mut().unwrap() = 0;
        assert_eq!(read(&bad_end, &[3]).1, Some(FrameError::BadFrameEnd(0)));
        let mut unknown = PROTOCOL_HEADER.to_vec();
        unknown.extend_from_slice(&[9, 0, 0, 0, 0, 0, 0, FRAME_END]);
        assert_eq!(read(&unknown, &[]).1, Some(FrameError::UnknownType(9)));
        let mut huge = PROTOCOL_HEADER.to_vec();
        huge.extend_from_slice(&[1, 0, 1, 0x10, 0, 0, 0]);
        assert_eq!(read(&huge, &[]).1, Some(FrameError::TooLarge(0x1000_0000)));
    }

    #[test]
    fn bodies_are_skipped_not_stored_and_scratch_is_released() {
        let big_method = Owned::Method(3, vec![7; 100_000]);
        let body = Owned::Body(3, 1 << 20);
        let bytes = encode(&[big_method.clone(), body.clone()]);
        let mut reader = FrameReader::client();
        let mut seen = Vec::new();
        for chunk in bytes.chunks(1000) {
            reader
                .feed(chunk, |f| {
                    seen.push(Owned::from(f));
                    Ok::<(), FrameError>(())
                })
                .unwrap();
            // Never more than the one method payload is held.
            assert!(reader.buffered() <= 100_000 + 1000, "{}", reader.buffered());
        }
        assert_eq!(seen, vec![big_method, body]);
        assert_eq!(reader.buffered(), 0, "the scratch buffer was released");
    }

    #[test]
    fn frame_max_bounds_every_frame_once_negotiated() {
        let bytes = encode(&[Owned::Body(1, 5000)]);
        assert_eq!(read(&bytes, &[]).1, None, "no limit before tune-ok");
        let mut reader = FrameReader::client();
        reader.set_frame_max(4096);
        let r = reader.feed(&bytes, |_| Ok::<(), FrameError>(()));
        assert_eq!(r, Err(FrameError::TooLarge(5000)));
        let mut unlimited = FrameReader::client();
        unlimited.set_frame_max(0);
        assert!(unlimited.feed(&bytes, |_| Ok::<(), FrameError>(())).is_ok());
    }

    #[test]
    fn a_stopped_reader_reads_nothing_more() {
        let mut reader = FrameReader::server();
        let stop = reader.feed(&encode(&[Owned::Heartbeat])[8..], |_| {
            Err::<(), FrameError>(FrameError::UnknownType(0))
        });
        assert!(stop.is_err());
        let mut called = false;
        reader
            .feed(&encode(&[Owned::Heartbeat])[8..], |_| {
                called = true;
                Ok::<(), FrameError>(())
            })
            .unwrap();
        assert!(!called);
    }
}
