//! The TCP accept loop every dwell server shares: at most `max_connections` open at once (the
//! rest wait in the kernel's backlog, so a flood cannot exhaust file descriptors), accept errors
//! such as EMFILE backed off instead of spun on, TCP_NODELAY on every connection, and each
//! accepted connection carrying its slot until it is dropped.
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// A bound listener with a connection limit.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    name: &'static str,
    max_connections: usize,
    slots: Arc<Semaphore>,
    limited: AtomicBool,
}

impl Listener {
    /// Serves `tcp` with at most `max_connections` (at least 1) open at once; `name` (e.g.
    /// `metrics API`) labels its log lines.
    pub fn new(tcp: TcpListener, name: &'static str, max_connections: usize) -> Self {
        let max_connections = max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            tcp,
            name,
            max_connections,
            slots: Arc::new(Semaphore::new(max_connections)),
            limited: AtomicBool::new(false),
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The name its log lines carry.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Connections open now (accepted and not yet dropped).
    pub fn open_connections(&self) -> usize {
        self.max_connections - self.slots.available_permits()
    }

    /// The next connection, once a slot is free; None once `shutdown` is cancelled. Never fails:
    /// accept errors are logged and retried after a growing pause.
    pub async fn accept(&self, shutdown: &CancellationToken) -> Option<Conn<TcpStream>> {
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !self.limited.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        listener = self.name,
                        limit = self.max_connections,
                        "{}: {} connections open, the limit; new ones wait until one closes",
                        self.name,
                        self.max_connections
                    );
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    slot = self.slots.clone().acquire_owned() => slot.ok()?,
                }
            }
        };
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                accepted = self.tcp.accept() => match accepted {
                    Ok((io, peer)) => {
                        self.limited.store(false, Ordering::Relaxed);
                        // Requests and reports are small: send them at once.
                        let _ = io.set_nodelay(true);
                        return Some(Conn { io, peer, slot });
                    }
                    Err(error) => {
                        let pause = backoff.next_delay();
                        tracing::warn!(listener = self.name, %error, ?pause,
                            "{} accept failed; retrying", self.name);
                        tokio::select! {
                            _ = shutdown.cancelled() => return None,
                            _ = tokio::time::sleep(pause) => {}
                        }
                    }
                },
            }
        }
    }
}

/// An accepted connection: the stream, its peer, and its slot under the listener's limit
/// (released when the connection is dropped).
#[derive(Debug)]
pub struct Conn<IO> {
    io: IO,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
}

impl<IO> Conn<IO> {
    /// The remote address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The stream.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Takes the connection apart: the stream, its peer and its slot. The slot must be kept
    /// for as long as the stream is open (dropping it frees the connection's place under the
    /// listener's limit early); this lets a caller split the stream into owned halves
    /// (`TcpStream::into_split`) instead of sharing it behind a lock.
    pub fn into_parts(self) -> (IO, SocketAddr, Slot) {
        (self.io, self.peer, Slot { _permit: self.slot })
    }

    /// Replaces the stream (e.g. by its TLS session), keeping the peer and the slot.
    pub async fn upgrade<T, E, F>(self, f: impl FnOnce(IO) -> F) -> Result<Conn<T>, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let Self { io, peer, slot } = self;
        Ok(Conn {
            io: f(io).await?,
            peer,
            slot,
        })
    }
}

/// A connection's place under its listener's limit, taken out of a [`Conn`] by
/// [`Conn::into_parts`]: released when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Conn<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Conn<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// tonic learns the peer (`Request::remote_addr`) through the stream underneath.
impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Conn<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_limit_holds_until_a_connection_closes() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = Arc::new(Listener::new(tcp, "test", 2));
        let shutdown = CancellationToken::new();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let first = listener.accept(&shutdown).await.unwrap();
        let mut second = listener.accept(&shutdown).await.unwrap();
        assert_eq!(listener.open_connections(), 2);
        let third = {
            let (listener, shutdown) = (listener.clone(), shutdown.clone());
            tokio::spawn(async move { listener.accept(&shutdown).await })
        };
        tokio::task::yield_now().await;
        assert!(!third.is_finished(), "a third connection waits for a slot");
        drop(first);
        let third = third.await.unwrap().expect("accepted once a slot was free");
        assert_eq!(listener.open_connections(), 2);
        // The connection still works through the wrapper.
        clients[1].write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        second.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        // Taken apart, the connection keeps its slot until the slot is dropped.
        let (stream, peer, slot) = third.into_parts();
        assert_eq!(peer, clients[2].local_addr().unwrap());
        drop(stream);
        assert_eq!(listener.open_connections(), 2);
        drop(slot);
        assert_eq!(listener.open_connections(), 1);
        drop(second);
        assert_eq!(listener.open_connections(), 0);
        shutdown.cancel();
        assert!(listener.accept(&shutdown).await.is_none());
    }
}
