//! UDP transport of the report source: one or more lines per datagram, fire-and-forget, so the
//! consumer app is never slowed down by the sidecar.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::Intake;

/// Largest accepted datagram, in bytes; larger ones are rejected whole.
pub const MAX_DATAGRAM: usize = 8192;

/// Reads datagrams from `socket` until `shutdown` fires.
pub async fn serve(socket: UdpSocket, intake: Arc<Intake>, shutdown: CancellationToken) {
    // One byte more than allowed, so an oversized datagram is seen as such (it is truncated).
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    while let Some(received) = shutdown
        .run_until_cancelled(socket.recv_from(&mut buf))
        .await
    {
        let len = match received {
            Ok((len, _peer)) => len,
            Err(e) => {
                // ICMP errors and the like surface here on some platforms; keep serving.
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        receive(&intake, &buf[..len]);
    }
}

/// Takes one datagram: every line of it, or nothing when it is too large or not UTF-8 (each
/// counted). Returns (accepted, rejected) lines; a datagram refused whole is one rejection.
pub fn receive(intake: &Intake, datagram: &[u8]) -> (u64, u64) {
    if datagram.len() > MAX_DATAGRAM {
        intake.reject("udp", "datagram_too_large");
        return (0, 1);
    }
    match std::str::from_utf8(datagram) {
        Ok(text) => intake.accept_lines(text, "udp"),
        Err(_) => {
            intake.reject("udp", "not_utf8");
            (0, 1)
        }
    }
}
