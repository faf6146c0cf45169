//! Decoding the few AMQP 0-9-1 methods the tap follows (connection.open/close, channel.open/
//! close, queue.declare-ok, basic.consume/consume-ok/cancel/cancel-ok/deliver/get/get-ok/
//! get-empty/return) and, of a content header, only the `timestamp` property and one named
//! integer header. Every other method is [`Method::Other`]; nothing here allocates, and any
//! malformed input is an error, never a panic.

/// A method the tap acts on, with the fields it needs (borrowed from the frame payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method<'a> {
    /// connection.open (client): the virtual host.
    ConnectionOpen {
        /// The vhost name.
        vhost: &'a [u8],
    },
    /// connection.tune-ok (client): the negotiated frame_max (0: no limit).
    TuneOk {
        /// Largest frame either side may send, frame header and end included.
        frame_max: u32,
    },
    /// connection.close or close-ok: the connection ends.
    ConnectionClose,
    /// connection.blocked (server).
    ConnectionBlocked,
    /// connection.unblocked (server).
    ConnectionUnblocked,
    /// channel.open: a fresh channel.
    ChannelOpen,
    /// channel.close or close-ok: the channel's consumers are gone.
    ChannelClose,
    /// queue.declare-ok (server): the queue an empty name refers to from now on.
    QueueDeclareOk {
        /// The declared queue.
        queue: &'a [u8],
    },
    /// basic.consume (client).
    Consume {
        /// The queue (empty: the channel's last declared queue).
        queue: &'a [u8],
        /// The consumer tag (empty: the server chooses one in consume-ok).
        tag: &'a [u8],
        /// No consume-ok will follow.
        no_wait: bool,
    },
    /// basic.consume-ok (server).
    ConsumeOk {
        /// The consumer tag in effect.
        tag: &'a [u8],
    },
    /// basic.cancel (either side; from the server: the queue went away).
    Cancel {
        /// The consumer tag.
        tag: &'a [u8],
        /// No cancel-ok will follow.
        no_wait: bool,
    },
    /// basic.cancel-ok.
    CancelOk {
        /// The consumer tag.
        tag: &'a [u8],
    },
    /// basic.deliver (server): a content header and body follow.
    Deliver {
        /// The consumer it is for.
        tag: &'a [u8],
        /// Delivered before.
        redelivered: bool,
    },
    /// basic.get (client).
    Get {
        /// The queue (empty: the channel's last declared queue).
        queue: &'a [u8],
    },
    /// basic.get-ok (server): a content header and body follow.
    GetOk {
        /// Delivered before.
        redelivered: bool,
    },
    /// basic.get-empty (server).
    GetEmpty,
    /// basic.return (server): content follows, but it is no delivery.
    Return,
    /// Anything else.
    Other,
}

/// Why a method or content header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload ended inside a field.
    #[error("truncated {0}")]
    Truncated(&'static str),
}

impl DecodeError {
    /// A short metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated(_) => "truncated_frame",
        }
    }
}

/// Reads fields off a payload, front to back.
struct Fields<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Fields<'a> {
    fn new(rest: &'a [u8], what: &'static str) -> Self {
        Self { rest, what }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated(self.what));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn short_str(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u8()?;
        self.bytes(usize::from(n))
    }

    fn long_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()?;
        self.bytes(n as usize)
    }
}

/// Decodes a method frame payload.
pub fn decode(payload: &[u8]) -> Result<Method<'_>, DecodeError> {
    let mut f = Fields::new(payload, "method");
    let class = f.u16()?;
    let method = f.u16()?;
    Ok(match (class, method) {
        (10, 40) => {
            f.what = "connection.open";
            Method::ConnectionOpen {
                vhost: f.short_str()?,
            }
        }
        (10, 31) => {
            f.what = "connection.tune-ok";
            f.u16()?; // channel_max
            Method::TuneOk {
                frame_max: f.u32()?,
            }
        }
        (10, 50 | 51) => Method::ConnectionClose,
        (10, 60) => Method::ConnectionBlocked,
        (10, 61) => Method::ConnectionUnblocked,
        (20, 10) => Method::ChannelOpen,
        (20, 40 | 41) => Method::ChannelClose,
        (50, 11) => {
            f.what = "queue.declare-ok";
            Method::QueueDeclareOk {
                queue: f.short_str()?,
            }
        }
        (60, 20) => {
            f.what = "basic.consume";
            f.u16()?; // reserved (ticket)
            let queue = f.short_str()?;
            let tag = f.short_str()?;
            // Bits: no-local, no-ack, exclusive, no-wait.
            let bits = f.u8()?;
            Method::Consume {
                queue,
                tag,
                no_wait: bits & 0b1000 != 0,
            }
        }
        (60, 21) => {
            f.what = "basic.consume-ok";
            Method::ConsumeOk {
                tag: f.short_str()?,
            }
        }
        (60, 30) => {
            f.what = "basic.cancel";
            let tag = f.short_str()?;
            // A server-sent cancel may omit the bit field's octet in old brokers: default it.
            let no_wait = f.u8().map(|b| b & 1 != 0).unwrap_or(false);
            Method::Cancel { tag, no_wait }
        }
        (60, 31) => {
            f.what = "basic.cancel-ok";
            Method::CancelOk {
                tag: f.short_str()?,
            }
        }
        (60, 50) => Method::Return,
        (60, 60) => {
            f.what = "basic.deliver";
            let tag = f.short_str()?;
            f.u64()?; // delivery tag
            Method::Deliver {
                tag,
                redelivered: f.u8()? & 1 != 0,
            }
        }
        (60, 70) => {
            f.what = "basic.get";
            f.u16()?; // reserved (ticket)
            Method::Get {
                queue: f.short_str()?,
            }
        }
        (60, 71) => {
            f.what = "basic.get-ok";
            f.u64()?; // delivery tag
            Method::GetOk {
                redelivered: f.u8()? & 1 != 0,
            }
        }
        (60, 72) => Method::GetEmpty,
        _ => Method::Other,
    })
}

/// What the tap reads of a content header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamps {
    /// The `timestamp` property.
    pub timestamp: Option<u64>,
    /// The named header, when present with a non-negative integer (or timestamp) value.
    pub header: Option<u64>,
}

/// Property flag bits of class basic, in wire order, up to `timestamp`.
const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;

/// Reads the timestamp property and the header `name` (when given) of a content header payload.
pub fn decode_header(payload: &[u8], name: Option<&[u8]>) -> Result<Stamps, DecodeError> {
    let mut f = Fields::new(payload, "content header");
    f.u16()?; // class
    f.u16()?; // weight
    f.u64()?; // body size
    let flags = f.u16()?;
    // Bit 0 says more flag words follow; basic has 14 properties, so they are all in the first.
    let mut more = flags & 1 != 0;
    while more {
        more = f.u16()? & 1 != 0;
    }
    let mut stamps = Stamps::default();
    for bit in [CONTENT_TYPE, CONTENT_ENCODING] {
        if flags & bit != 0 {
            f.short_str()?;
        }
    }
    if flags & HEADERS != 0 {
        let table = f.long_bytes()?;
        stamps.header = name.and_then(|n| find_integer(table, n));
    }
    for bit in [DELIVERY_MODE, PRIORITY] {
        if flags & bit != 0 {
            f.u8()?;
        }
    }
    for bit in [CORRELATION_ID, REPLY_TO, EXPIRATION, MESSAGE_ID] {
        if flags & bit != 0 {
            f.short_str()?;
        }
    }
    if flags & TIMESTAMP != 0 {
        stamps.timestamp = Some(f.u64()?);
    }
    Ok(stamps)
}

/// The non-negative integer value of `name` in a field table, if there; None when absent, not
/// an integer, or when an unknown value type makes the rest of the table unreadable (the frame
/// itself is still sound: the table's length was known).
fn find_integer(table: &[u8], name: &[u8]) -> Option<u64> {
    let mut f = Fields::new(table, "field table");
    while !f.rest.is_empty() {
        let key = f.short_str().ok()?;
        let kind = f.u8().ok()?;
        if key == name {
            return integer(&mut f, kind);
        }
        skip_value(&mut f, kind)?;
    }
    None
}

/// An integer field value of type `kind` (RabbitMQ's type letters), if non-negative.
fn integer(f: &mut Fields<'_>, kind: u8) -> Option<u64> {
    match kind {
        b'b' => u64::try_from(f.u8().ok()? as i8).ok(),
        b'B' => Some(u64::from(f.u8().ok()?)),
        b's' | b'U' => u64::try_from(f.u16().ok()? as i16).ok(),
        b'u' => Some(u64::from(f.u16().ok()?)),
        b'I' => u64::try_from(f.u32().ok()? as i32).ok(),
        b'i' => Some(u64::from(f.u32().ok()?)),
        b'l' | b'L' => u64::try_from(f.u64().ok()? as i64).ok(),
        b'T' => f.u64().ok(),
        _ => None,
    }
}

/// Skips one field value of type `kind`; None for a type the tap does not know.
fn skip_value(f: &mut Fields<'_>, kind: u8) -> Option<()> {
    let n = match kind {
        b't' | b'b' | b'B' => 1,
        b's' | b'U' | b'u' => 2,
        b'I' | b'i' | b'f' => 4,
        b'l' | b'L' | b'd' | b'T' => 8,
        b'D' => 5,
        b'V' => 0,
        b'S' | b'x' | b'A' | b'F' => f.u32().ok()? as usize,
        _ => return None,
    };
    f.bytes(n).ok().map(|_| ())
}

/// Encoders for tests: method payloads written the way a peer writes them.
#[cfg(test)]
pub(crate) mod encode {
    /// Appends a short string.
    pub fn short(out: &mut Vec<u8>, s: &[u8]) {
        out.push(s.len() as u8);
        out.extend_from_slice(s);
    }

    /// A method payload: class, method, arguments.
    pub fn method(class: u16, id: u16, args: &[u8]) -> Vec<u8> {
        let mut out = class.to_be_bytes().to_vec();
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(args);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::encode::{method, short};
    use super::*;

    #[test]
    fn consume_deliver_and_get_are_read() {
        let mut args = vec![0, 0];
        short(&mut args, b"orders");
        short(&mut args, b"");
        args.push(0b1000);
        args.extend_from_slice(&[0, 0, 0, 0]); // empty arguments table
        assert_eq!(
            decode(&method(60, 20, &args)),
            Ok(Method::Consume {
                queue: b"orders",
                tag: b"",
                no_wait: true
            })
        );
        let mut args = Vec::new();
        short(&mut args, b"amq.ctag-1");
        args.extend_from_slice(&7u64.to_be_bytes());
        args.push(1);
        short(&mut args, b"ex");
        short(&mut args, b"rk");
        assert_eq!(
            decode(&method(60, 60, &args)),
            Ok(Method::Deliver {
                tag: b"amq.ctag-1",
                redelivered: true
            })
        );
        let mut get_ok = 9u64.to_be_bytes().to_vec();
        get_ok.push(0);
        assert_eq!(
            decode(&method(60, 71, &get_ok)),
            Ok(Method::GetOk { redelivered: false })
        );
        assert_eq!(decode(&method(60, 40, &[])), Ok(Method::Other));
        assert_eq!(
            decode(&method(10, 31, &[0, 0, 0, 2, 0, 0, 0, 60])),
            Ok(Method::TuneOk { frame_max: 131_072 })
        );
        assert_eq!(decode(&method(20, 41, &[])), Ok(Method::ChannelClose));
        assert!(decode(&method(60, 60, &[5, b'a'])).is_err());
        assert!(decode(&[0, 60]).is_err());
    }

    fn header_frame(flags: u16, props: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 60, 0, 0];
        out.extend_from_slice(&42u64.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(props);
        out
    }

    #[test]
    fn timestamp_and_header_are_found_past_other_properties() {
        let mut table = Vec::new();
        short(&mut table, b"note");
        table.push(b'S');
        table.extend_from_slice(&3u32.to_be_bytes());
        table.extend_from_slice(b"abc");
        short(&mut table, b"nested");
        table.push(b'F');
        table.extend_from_slice(&0u32.to_be_bytes());
        short(&mut table, b"timestamp_in_ms");
        table.push(b'l');
        table.extend_from_slice(&1_795_817_979_177i64.to_be_bytes());
        let mut props = Vec::new();
        short(&mut props, b"text/plain");
        props.extend_from_slice(&(table.len() as u32).to_be_bytes());
        props.extend_from_slice(&table);
        props.push(2); // delivery mode
        short(&mut props, b"msg-1");
        props.extend_from_slice(&1_795_817_979u64.to_be_bytes());
        short(&mut props, b"type-is-ignored");
        let flags = CONTENT_TYPE | HEADERS | DELIVERY_MODE | MESSAGE_ID | TIMESTAMP | (1 << 5);
        let payload = header_frame(flags, &props);
        let stamps = decode_header(&payload, Some(b"timestamp_in_ms")).unwrap();
        assert_eq!(stamps.timestamp, Some(1_795_817_979));
        assert_eq!(stamps.header, Some(1_795_817_979_177));
        assert_eq!(decode_header(&payload, Some(b"nope")).unwrap().header, None);
        assert_eq!(decode_header(&payload, None).unwrap().header, None);
        // No properties at all.
        assert_eq!(
            decode_header(&header_frame(0, &[]), None),
            Ok(Stamps::default())
        );
        // Truncated inside the timestamp.
        assert!(decode_header(&payload[..payload.len() - 20], None).is_err());
    }

    proptest::proptest! {
        /// Arbitrary payloads (after a real class and method id, so the decoders run) are read or
        /// refused, never a panic.
        #[test]
        fn decoding_never_panics(
            ids in proptest::sample::select(vec![
                (10u16, 31u16), (10, 40), (50, 11), (60, 20), (60, 21), (60, 30), (60, 31),
                (60, 60), (60, 70), (60, 71),
            ]),
            args in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            header in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let _ = decode(&method(ids.0, ids.1, &args));
            let _ = decode_header(&header, Some(b"timestamp_in_ms"));
        }
    }

    #[test]
    fn unknown_table_types_hide_the_header_but_not_the_timestamp() {
        let mut table = Vec::new();
        short(&mut table, b"odd");
        table.push(b'?');
        table.extend_from_slice(&[1, 2, 3]);
        let mut props = (table.len() as u32).to_be_bytes().to_vec();
        props.extend_from_slice(&table);
        props.extend_from_slice(&5u64.to_be_bytes());
        let payload = header_frame(HEADERS | TIMESTAMP, &props);
        let stamps = decode_header(&payload, Some(b"timestamp_in_ms")).unwrap();
        assert_eq!(
            stamps,
            Stamps {
                timestamp: Some(5),
                header: None
            }
        );
    }
}
