//! The one UDP socket a punch client owns, shared by every protocol.
//!
//! Owns the kernel socket, the receive loop that tells protocols apart by their first
//! byte (RFC 7983 style), and the [`quinn::AsyncUdpSocket`] face quinn sends and receives
//! through. Rendezvous frames, STUN and punch probes go to a control channel; QUIC
//! datagrams (first byte 64..=255, the QUIC bit is never greased) go to quinn. Because all
//! of them leave through this one socket, the NAT mapping the server observed is exactly
//! the one a peer punches toward.
//!
//! It does not own what the datagrams mean: the client's control task does.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use punch_proto::wire;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

use crate::paths::{PathTable, Route};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, trace};

/// Largest datagram received. QUIC and punch frames stay far below; anything longer is
/// truncated by the kernel and then rejected by the codecs.
pub const MAX_DATAGRAM: usize = 2048;
/// Datagrams queued for quinn before new ones are dropped (as a congested link would).
pub const QUIC_QUEUE: usize = 1024;
/// Control datagrams queued before new ones are dropped.
pub const CONTROL_QUEUE: usize = 1024;

/// A non-QUIC datagram for the control task.
#[derive(Debug)]
pub struct ControlDatagram {
    /// Where it came from.
    pub from: SocketAddr,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// True if the first byte marks a QUIC packet (RFC 9000 §17: the fixed bit 0x40 is set;
/// RFC 7983 reserves 64..=79 for TURN channels, which punch does not use).
fn is_quic(first: u8) -> bool {
    first >= 64
}

struct Inner {
    udp: tokio::net::UdpSocket,
    /// Virtual peer addresses (what quinn sees) and their real paths.
    paths: Arc<PathTable>,
    /// Taken for writing while a datagram leaves with a non-default TTL, so no other
    /// datagram leaves with the temporary TTL; every normal send takes it for reading.
    ttl_lock: RwLock<()>,
    default_ttl: u32,
    quic_rx: Mutex<mpsc::Receiver<(SocketAddr, Vec<u8>)>>,
    /// Feeds quinn; also used to hand over parked datagrams.
    quic_tx: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    /// Relayed datagrams of sessions not mapped yet.
    parked: Mutex<Parked>,
}

/// Most relayed datagrams kept for sessions not mapped yet (a QUIC handshake's first
/// flight is a few datagrams), and how many sessions may have some.
const PARKED_MAX: usize = 32;

/// Relayed datagrams that arrived before their session was known: bounded, oldest first out.
#[derive(Default)]
struct Parked {
    items: std::collections::VecDeque<(u64, Vec<u8>)>,
}

impl Parked {
    fn park(&mut self, session: u64, data: Vec<u8>) {
        if self.items.len() >= PARKED_MAX {
            self.items.pop_front();
        }
        self.items.push_back((session, data));
    }

    fn take(&mut self, session: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.items.retain_mut(|(s, d)| {
            if *s == session {
                out.push(std::mem::take(d));
                false
            } else {
                true
            }
        });
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shared socket. Cheap to clone; the receive loop stops when the last clone drops.
#[derive(Clone)]
pub struct DemuxSocket {
    inner: Arc<Inner>,
    _recv_task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for DemuxSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemuxSocket")
            .field("local", &self.inner.udp.local_addr().ok())
            .finish()
    }
}

impl DemuxSocket {
    /// Bind `addr` and start the receive loop. Returns the socket and the control channel.
    pub async fn bind(
        addr: SocketAddr,
    ) -> io::Result<(DemuxSocket, mpsc::Receiver<ControlDatagram>)> {
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        let default_ttl = udp.ttl()?;
        let (quic_tx, quic_rx) = mpsc::channel(QUIC_QUEUE);
        let (ctl_tx, ctl_rx) = mpsc::channel(CONTROL_QUEUE);
        let inner = Arc::new(Inner {
            udp,
            paths: Arc::new(PathTable::default()),
            ttl_lock: RwLock::new(()),
            default_ttl,
            quic_rx: Mutex::new(quic_rx),
            quic_tx: quic_tx.clone(),
            parked: Mutex::new(Parked::default()),
        });
        let task = tokio::spawn(recv_loop(Arc::downgrade(&inner), quic_tx, ctl_tx));
        Ok((
            DemuxSocket {
                inner,
                _recv_task: Arc::new(AbortOnDrop(task)),
            },
            ctl_rx,
        ))
    }

    /// The bound local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.udp.local_addr()
    }

    /// The table mapping peers' virtual addresses to real paths.
    pub fn paths(&self) -> &Arc<PathTable> {
        &self.inner.paths
    }

    /// Relayed datagrams of `session` belong to the peer at virtual address `v`; any that
    /// arrived before this call are handed to quinn now.
    pub fn map_relay_session(&self, session: u64, v: SocketAddr) {
        self.inner.paths.relay_session(session, v);
        for data in lock(&self.inner.parked).take(session) {
            let _ = self.inner.quic_tx.try_send((v, data));
        }
    }

    /// Send a datagram now (control traffic). `ttl` overrides the IP TTL for this datagram.
    pub fn send_to(&self, data: &[u8], dest: SocketAddr, ttl: Option<u32>) -> io::Result<()> {
        let result = match ttl {
            Some(ttl) if ttl != self.inner.default_ttl => {
                let _guard = self
                    .inner
                    .ttl_lock
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                self.inner.udp.set_ttl(ttl)?;
                let r = raw_send(&self.inner.udp, data, dest);
                self.inner.udp.set_ttl(self.inner.default_ttl)?;
                r
            }
            _ => {
                let _guard = self
                    .inner
                    .ttl_lock
                    .read()
                    .unwrap_or_else(|e| e.into_inner());
                raw_send(&self.inner.udp, data, dest)
            }
        };
        match result {
            Ok(_) => Ok(()),
            // A full send buffer loses the datagram as a congested link would; every
            // control exchange retransmits.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Send straight through the kernel. tokio's `try_send_to` answers WouldBlock until its
/// reactor has once seen the socket writable, which silently lost the first datagram of
/// every new socket (the first registration, retransmitted 250 ms later); a UDP socket
/// is writable unless its buffer is full, so ask the kernel directly, as quinn-udp does.
pub(crate) fn raw_send(
    udp: &tokio::net::UdpSocket,
    data: &[u8],
    dest: SocketAddr,
) -> io::Result<usize> {
    socket2::SockRef::from(udp).send_to(data, &dest.into())
}

async fn recv_loop(
    inner: std::sync::Weak<Inner>,
    quic_tx: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    ctl_tx: mpsc::Sender<ControlDatagram>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Some(sock) = inner.upgrade() else { return };
        let res = sock.udp.recv_from(&mut buf).await;
        drop(sock);
        let (n, from) = match res {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors (port unreachable after a probe to a dead candidate) surface
                // here on some systems; they say nothing about the socket itself.
                debug!(error = %e, "udp receive error");
                continue;
            }
        };
        if n == 0 {
            continue;
        }
        // Relayed QUIC: unwrap it and hand it to quinn as coming from the peer's virtual
        // address. Only the server relays; anything else with the tag is dropped.
        if buf[0] == wire::RELAY_TAG {
            let Some(sock) = inner.upgrade() else { return };
            if let Some((_, session, payload)) = wire::decode_relay(&buf[..n]) {
                if !payload.is_empty() && is_quic(payload[0]) {
                    match sock.paths.virtual_for_session(session) {
                        Some(v) => {
                            if quic_tx.try_send((v, payload.to_vec())).is_err() {
                                trace!("quic queue full; relayed datagram dropped");
                            }
                        }
                        // The peer's first packets can overtake our own introduction (which
                        // waits in the control queue): keep them until the session is mapped.
                        None => lock(&sock.parked).park(session, payload.to_vec()),
                    }
                }
            }
            continue;
        }
        let data = buf[..n].to_vec();
        if is_quic(data[0]) {
            // A peer on a direct path shows up at its virtual address too.
            let from = match inner.upgrade() {
                Some(s) => match s.paths.virtual_for_real(from) {
                    Some(v) => {
                        s.paths.learn_direct(v, from);
                        v
                    }
                    None => from,
                },
                None => return,
            };
            if quic_tx.try_send((from, data)).is_err() {
                trace!(%from, "quic queue full or closed; datagram dropped");
            }
        } else if ctl_tx.try_send(ControlDatagram { from, data }).is_err() {
            trace!(%from, "control queue full or closed; datagram dropped");
        }
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DemuxSocket")
    }
}

impl AsyncUdpSocket for DemuxSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Poller {
            sock: self.inner.clone(),
            fut: None,
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let _guard = self
            .inner
            .ttl_lock
            .read()
            .unwrap_or_else(|e| e.into_inner());
        match self.inner.paths.route(transmit.destination) {
            Route::Direct(real) => raw_send(&self.inner.udp, transmit.contents, real),
            Route::Unmapped => raw_send(&self.inner.udp, transmit.contents, transmit.destination),
            Route::Relay(r) => {
                let wrapped = wire::encode_relay(r.side, r.session, transmit.contents);
                raw_send(&self.inner.udp, &wrapped, r.server)
            }
            // No path yet: as lost on the wire; QUIC retransmits.
            Route::Drop => Ok(transmit.contents.len()),
        }
        .map(|_| ())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut rx = self.inner.quic_rx.lock().unwrap_or_else(|e| e.into_inner());
        let mut count = 0;
        while count < bufs.len().min(meta.len()) {
            let next = if count == 0 {
                match rx.poll_recv(cx) {
                    Poll::Ready(x) => x,
                    Poll::Pending => return Poll::Pending,
                }
            } else {
                match rx.try_recv() {
                    Ok(x) => Some(x),
                    Err(_) => break,
                }
            };
            let Some((from, data)) = next else {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "socket closed",
                )));
            };
            let len = data.len().min(bufs[count].len());
            bufs[count][..len].copy_from_slice(&data[..len]);
            meta[count] = RecvMeta {
                addr: from,
                len,
                stride: len,
                ecn: None,
                dst_ip: None,
            };
            count += 1;
        }
        Poll::Ready(Ok(count))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.udp.local_addr()
    }
}

type WritableFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>;

struct Poller {
    sock: Arc<Inner>,
    fut: Option<WritableFuture>,
}

impl fmt::Debug for Poller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Poller")
    }
}

impl UdpPoller for Poller {
    fn poll_writable(mut self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        if self.fut.is_none() {
            let sock = self.sock.clone();
            self.fut = Some(Box::pin(async move { sock.udp.writable().await }));
        }
        // Just set above.
        let fut = self.fut.as_mut().expect("future present");
        let res = fut.as_mut().poll(cx);
        if res.is_ready() {
            self.fut = None;
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_datagrams_are_bounded_and_taken_per_session() {
        let mut p = Parked::default();
        for i in 0..(PARKED_MAX + 5) {
            p.park(if i % 2 == 0 { 1 } else { 2 }, vec![i as u8]);
        }
        assert_eq!(p.items.len(), PARKED_MAX, "oldest dropped beyond the bound");
        let ones = p.take(1);
        assert!(ones.iter().all(|d| d[0] % 2 == 0));
        assert_eq!(p.items.len() + ones.len(), PARKED_MAX);
        assert!(p.take(1).is_empty(), "taken once");
        assert!(p.take(3).is_empty());
    }
}
