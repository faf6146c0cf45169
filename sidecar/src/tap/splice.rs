//! Zero-copy forwarding on Linux: bytes the side-channel reader would skip anyway (body
//! payloads; everything once parsing is off) go socket → pipe → socket with `splice(2)`, so the
//! kernel moves page references instead of copying each byte into the tap and back out.
//!
//! One pipe per direction, made the first time that direction has a long enough run to skip
//! (an idle or small-message connection never has one). Each step fills the pipe from the
//! source once and empties it into the destination before it returns, so while a write is
//! pending the source is not read (back-pressure as on the copy path), and bytes are forwarded
//! before the reader is told of them. If the pipe cannot be made or the source refuses
//! `splice`, nothing has been taken from the source and the caller copies instead, for good.
//! Only the safe wrappers of `nix` are used: no `unsafe` here.

use std::io;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Size asked for each pipe: a 128 KiB frame_max body frame moves in one fill. Pages are held
/// only while bytes are in flight; an empty pipe costs its descriptors and ring.
const PIPE_SIZE: i32 = 256 * 1024;
/// Most bytes asked of one step (a stream read blind asks for "everything").
const MAX_STEP: usize = PIPE_SIZE as usize;

/// Why a step did not forward.
#[derive(Debug)]
pub enum Failed {
    /// No pipe, or the source does not splice: nothing was taken from it; copy instead.
    Unsupported(io::Error),
    /// A socket failed, as a read or write on the copy path would have.
    Io(io::Error),
}

/// One direction's zero-copy path: its pipe, once made, or why there is none.
#[derive(Debug, Default)]
pub struct Splicer {
    pipe: Option<Pipe>,
    off: bool,
}

#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Splicer {
    /// Whether this direction may still splice (it has not failed to).
    pub fn usable(&self) -> bool {
        !self.off
    }

    /// Moves up to `want` bytes (`want` > 0) from `from` to `to`: one pipe-full, all of it
    /// written before this returns. Returns the bytes moved; 0 means `from` has ended.
    pub async fn forward(
        &mut self,
        from: &TcpStream,
        to: &TcpStream,
        want: usize,
    ) -> Result<usize, Failed> {
        let pipe = match &self.pipe {
            Some(p) => p,
            None => match Pipe::new() {
                Ok(p) => self.pipe.insert(p),
                Err(e) => {
                    self.off = true;
                    return Err(Failed::Unsupported(e));
                }
            },
        };
        let want = want.min(MAX_STEP);
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        // The pipe is empty here, so "would block" can only be the socket's.
        let n = loop {
            from.readable().await.map_err(Failed::Io)?;
            let step = from.try_io(Interest::READABLE, || {
                splice(from, None, &pipe.write, None, want, flags).map_err(io::Error::from)
            });
            match step {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if unsupported(&e) => {
                    self.off = true;
                    return Err(Failed::Unsupported(e));
                }
                Err(e) => return Err(Failed::Io(e)),
            }
        };
        let mut left = n;
        while left > 0 {
            to.writable().await.map_err(Failed::Io)?;
            let step = to.try_io(Interest::WRITABLE, || {
                splice(&pipe.read, None, to, None, left, flags).map_err(io::Error::from)
            });
            match step {
                Ok(0) => return Err(Failed::Io(io::ErrorKind::WriteZero.into())),
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // Bytes are in the pipe: they cannot go back, so this ends the connection.
                Err(e) => return Err(Failed::Io(e)),
            }
        }
        Ok(n)
    }
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // A smaller pipe (the per-user pipe budget is spent) still works, in more steps.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        Ok(Self { read, write })
    }
}

/// The errors with which a descriptor says it does not splice at all.
fn unsupported(e: &io::Error) -> bool {
    [Errno::EINVAL, Errno::ENOSYS, Errno::EOPNOTSUPP]
        .iter()
        .any(|&errno| e.raw_os_error() == Some(errno as i32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// Bytes arrive unchanged and in order, no more than asked are taken, and an ended
    /// source reads as 0.
    #[tokio::test]
    async fn moves_exactly_what_is_asked_unchanged() {
        let (mut app, from) = pair().await;
        let (to, mut broker) = pair().await;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let writer = tokio::spawn({
            let data = data.clone();
            async move {
                app.write_all(&data).await.unwrap();
                app.shutdown().await.unwrap();
            }
        });
        let mut splicer = Splicer::default();
        let want = 200_000;
        let mut moved = 0;
        while moved < want {
            let n = splicer.forward(&from, &to, want - moved).await.unwrap();
            assert!(n > 0 && n <= want - moved, "{n}");
            moved += n;
        }
        let mut got = vec![0u8; want];
        broker.read_exact(&mut got).await.unwrap();
        assert_eq!(got, data[..want], "the spliced bytes");
        // The rest is still in the source, for the copy path.
        let mut rest = Vec::new();
        let mut from = from;
        writer.await.unwrap();
        from.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, data[want..]);
        assert_eq!(splicer.forward(&from, &to, 10).await.unwrap(), 0, "ended");
    }
}
