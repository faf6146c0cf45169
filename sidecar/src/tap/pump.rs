//! One direction of a tapped connection: read → write → parse, in that order, one step at a
//! time, so while a write is pending the source is not read (TCP back-pressure reaches the
//! sender) and every byte is forwarded before the side-channel reader sees it.
//!
//! Two ways to move a step's bytes: copied through one buffer of this task (every stream,
//! TLS included), or — Linux, plain TCP on both sides — spliced ([`super::splice`]) when the
//! reader says the next bytes are ones it would skip anyway (a body payload of at least
//! [`SPLICE_MIN`] bytes, or everything once parsing is off). A direction whose splice fails
//! before moving a byte copies from then on.

use std::io;
use std::sync::Mutex;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::parser::Parser;
use super::state::Direction;
use super::{BUFFER, Counters, MAX_BUFFER, SHRINK_AFTER};

/// Skippable runs shorter than this are copied with what surrounds them: one read of the
/// buffer carries many small messages, where a splice would take two calls for one body.
pub const SPLICE_MIN: usize = 8 * 1024;
/// Bytes read right after a splice: enough for the frame end, the next method and content
/// header and a body frame's header, so the next body goes mostly by splice, not by copy.
const AFTER_SPLICE_READ: usize = 2 * 1024;

/// The reading half of a forwarded socket.
pub trait Source {
    /// The TCP socket underneath, when its bytes may be spliced (not through TLS).
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

/// The writing half of a forwarded socket.
pub trait Half {
    /// Whether writes must be flushed to reach the socket (a TLS session buffers records; a
    /// TCP half writes straight to the kernel and its flush does nothing).
    const BUFFERED: bool;

    /// The TCP socket underneath, when bytes may be spliced into it (not through TLS).
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl Source for tokio::net::tcp::OwnedReadHalf {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl<T> Source for tokio::io::ReadHalf<T> {}

impl Half for tokio::net::tcp::OwnedWriteHalf {
    const BUFFERED: bool = false;

    fn socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl<T> Half for tokio::io::WriteHalf<T> {
    const BUFFERED: bool = true;
}

/// Forwards `from` → `to` until `from` ends (then `to` is shut down) or either fails; each
/// step's bytes are written (and, through TLS, flushed) before they are parsed and before the
/// next read.
pub async fn pump<R, W>(
    mut from: R,
    mut to: W,
    direction: Direction,
    parser: &Mutex<Parser>,
    counters: &Counters,
) -> io::Result<()>
where
    R: AsyncRead + Source + Unpin,
    W: AsyncWrite + Half + Unpin,
{
    // Never held across an await: the two directions share one task, so it is uncontended.
    let parser =
        |f: &mut dyn FnMut(&mut Parser)| f(&mut parser.lock().unwrap_or_else(|e| e.into_inner()));
    #[cfg(target_os = "linux")]
    let mut splicer = super::splice::Splicer::default();
    let mut just_spliced = false;
    let mut buf = vec![0u8; BUFFER];
    let mut short_reads = 0u32;
    loop {
        #[cfg(target_os = "linux")]
        if let (Some(src), Some(dst), true) = (from.socket(), to.socket(), splicer.usable()) {
            let mut skippable = 0;
            parser(&mut |p| skippable = p.skippable(direction));
            if skippable >= SPLICE_MIN {
                use super::splice::Failed;
                match splicer.forward(src, dst, skippable).await {
                    Ok(0) => {
                        let _ = to.shutdown().await;
                        return Ok(());
                    }
                    Ok(n) => {
                        counters.forwarded(direction, n);
                        parser(&mut |p| p.skipped(direction, n));
                        just_spliced = true;
                        continue;
                    }
                    Err(Failed::Unsupported(error)) => {
                        tracing::debug!(direction = direction.label(), %error,
                            "tap copies this direction (no splice)");
                    }
                    Err(Failed::Io(e)) => return Err(e),
                }
            }
        }
        let limit = if just_spliced {
            AFTER_SPLICE_READ
        } else {
            buf.len()
        };
        just_spliced = false;
        let n = from.read(&mut buf[..limit]).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        if W::BUFFERED {
            to.flush().await?;
        }
        counters.forwarded(direction, n);
        parser(&mut |p| p.feed(direction, &buf[..n]));
        if n == buf.len() && buf.len() < MAX_BUFFER {
            buf = vec![0u8; (buf.len() * 4).min(MAX_BUFFER)];
            short_reads = 0;
        } else if buf.len() > BUFFER && n < BUFFER {
            short_reads += 1;
            if short_reads >= SHRINK_AFTER {
                buf = vec![0u8; BUFFER];
                short_reads = 0;
            }
        } else {
            short_reads = 0;
        }
    }
}
