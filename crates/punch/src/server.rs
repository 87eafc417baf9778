//! The rendezvous server's IO: one UDP socket, STUN, the `<Hi!>` check, and the registry.
//!
//! Owns the socket loop and its timers. The registry and introduction logic is the
//! sans-IO [`punch_proto::rendezvous::Rendezvous`]; STUN parsing and answers are
//! [`punch_proto::stun`]. Malformed datagrams are counted and logged at debug level,
//! never answered and never a panic.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use punch_proto::rendezvous::{Rendezvous, RendezvousConfig};
use punch_proto::stun;
use punch_proto::wire::{self, Frame, HI_REQUEST, HI_RESPONSE};
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info};

/// How a server is set up.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Registry tunables.
    pub rendezvous: RendezvousConfig,
}

/// Counters of what the socket loop saw, beyond the registry's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoStats {
    /// STUN binding requests answered.
    pub stun_answered: u64,
    /// `<Hi!>` checks answered.
    pub hi_answered: u64,
    /// Datagrams dropped as malformed or unexpected.
    pub malformed: u64,
}

/// What to answer to one datagram that is not a rendezvous frame: STUN or `<Hi!>`.
/// Returns `None` for anything else.
pub fn answer_simple(data: &[u8], from: SocketAddr, stats: &mut IoStats) -> Option<Vec<u8>> {
    let trimmed = data.strip_suffix(b"\n").unwrap_or(data);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    if trimmed == HI_REQUEST {
        stats.hi_answered += 1;
        let mut answer = HI_RESPONSE.to_vec();
        if trimmed.len() != data.len() {
            answer.push(b'\n'); // a netcat user sent a line; answer one
        }
        return Some(answer);
    }
    if stun::looks_like_stun(data) {
        match stun::Message::decode(data) {
            Ok(req) if req.class == stun::Class::Request && req.method == stun::Method::BINDING => {
                if let Ok(answer) = stun::Message::binding_success(&req, from).encode() {
                    stats.stun_answered += 1;
                    return Some(answer);
                }
            }
            Ok(_) => debug!(%from, "ignoring STUN message that is not a binding request"),
            Err(e) => debug!(%from, error = %e, "malformed STUN message"),
        }
        stats.malformed += 1;
        return None;
    }
    None
}

/// Serve on `socket` until `shutdown` completes.
pub async fn run(
    socket: UdpSocket,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let local = socket.local_addr()?;
    info!(%local, "rendezvous server listening (UDP: STUN binding, <Hi!>, punch registry)");
    let mut registry = Rendezvous::new(cfg.rendezvous, rand::rng().random());
    let mut stats = IoStats::default();
    let mut buf = vec![0u8; 2048];
    tokio::pin!(shutdown);
    loop {
        let wake = registry
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => {
                info!(?stats, registry = ?registry.stats(), "server stopping");
                return Ok(());
            }
            r = socket.recv_from(&mut buf) => {
                let (n, from) = match r {
                    Ok(x) => x,
                    Err(e) => { debug!(error = %e, "receive error"); continue; }
                };
                let data = &buf[..n];
                if let Some(answer) = answer_simple(data, from, &mut stats) {
                    let _ = socket.try_send_to(&answer, from);
                } else if wire::is_frame(data) {
                    match Frame::decode(data) {
                        Ok(frame) => {
                            debug!(%from, ?frame, "frame");
                            registry.handle_frame(Instant::now().into_std(), from, frame)
                        }
                        Err(e) => {
                            stats.malformed += 1;
                            debug!(%from, error = %e, "malformed frame");
                        }
                    }
                } else if !stun::looks_like_stun(data) {
                    stats.malformed += 1;
                    debug!(%from, len = n, "unrecognised datagram");
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        registry.handle_timeout(Instant::now().into_std());
        while let Some((to, bytes)) = registry.poll_transmit() {
            if let Err(e) = socket.try_send_to(&bytes, to) {
                debug!(%to, error = %e, "send failed");
            }
        }
    }
}

/// A server running in the background; stops when dropped.
#[derive(Debug)]
pub struct ServerHandle {
    local: SocketAddr,
    task: JoinHandle<io::Result<()>>,
}

impl ServerHandle {
    /// Bind `addr` and serve in a background task.
    pub async fn spawn(addr: SocketAddr, cfg: ServerConfig) -> io::Result<ServerHandle> {
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        let task = tokio::spawn(run(socket, cfg, std::future::pending()));
        Ok(ServerHandle { local, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
