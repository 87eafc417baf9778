//! The one UDP socket a punch client owns, shared by every protocol.
//!
//! Owns the kernel socket, the receive loop (module `recv`) that tells protocols apart by
//! their first byte (RFC 7983 style), and the [`quinn::AsyncUdpSocket`] face quinn sends
//! and receives through. Rendezvous frames, STUN and punch probes go to a control
//! channel; QUIC datagrams (first byte 64..=255, the QUIC bit is never greased) go to
//! quinn. Because all of them leave through this one socket, the NAT mapping the server
//! observed is exactly the one a peer punches toward.
//!
//! Datagrams move in batches, since system calls are most of the cost of a bulk
//! transfer: the receive loop reads many per call (recvmmsg, and GRO trains of one
//! sender's datagrams, through quinn-udp) and hands quinn its share as one batch; quinn's
//! sends leave as GSO trains of up to ten datagrams per call, on the relay path with a
//! relay header in front of every segment.
//!
//! The kernel socket can be replaced under a live endpoint ([`DemuxSocket::rebind`]): a
//! fresh local port means fresh NAT mappings everywhere, the remedy when a NAT's
//! connection tracking was left in a state that blocks the old port's paths. quinn keeps
//! its connections (it addresses peers by their virtual addresses).
//!
//! It does not own what the datagrams mean: the client's session does.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use punch_proto::wire;
use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::Interest;

use crate::paths::{Dest, PathTable};

mod batch;
pub mod family;
mod recv;

use batch::{Backlog, Parked, Pool, QuicBatch};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, trace};

/// Largest datagram received. QUIC and punch frames stay far below; anything longer is
/// truncated by the kernel and then rejected by the codecs.
pub const MAX_DATAGRAM: usize = 2048;
/// Datagrams queued for quinn. The receive loop waits for room before it reads more (they
/// wait in the kernel's buffer); those that still do not fit are dropped, as a congested
/// link would.
pub const QUIC_QUEUE: usize = 1024;
/// Control datagrams queued before new ones are dropped.
pub const CONTROL_QUEUE: usize = 1024;
/// Receive buffers per system call (recvmmsg). Each holds one datagram, or with GRO a
/// train of them from one sender.
const RECV_SLOTS: usize = 8;
/// Size of a receive buffer when the kernel coalesces datagrams (GRO): the largest train.
const GRO_BUF: usize = 64 * 1024;

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

/// One kernel socket with quinn-udp's view of it.
struct Io {
    udp: tokio::net::UdpSocket,
    /// quinn-udp's view of the same socket: batched receive (recvmmsg, GRO) and GSO sends.
    state: UdpSocketState,
    /// An IPv6 socket (dual-stack when bound to `[::]`): IPv4 destinations go out
    /// IPv4-mapped.
    ipv6: bool,
    /// The IPv4 TTL of normal sends (IPv4 destinations, mapped ones included).
    default_ttl: u32,
    /// The IPv6 hop limit of normal sends (IPv6 destinations).
    default_hops: u32,
}

/// Receive and send buffer asked for on the client's socket (public so that a benchmark's
/// plain QUIC reference can ask for the same).
pub const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Hop limit assumed when the kernel does not say (Linux's default for both families).
const DEFAULT_HOPS: u32 = 64;

impl Io {
    fn bind(addr: SocketAddr) -> io::Result<Io> {
        let std = family::bind_udp_or_ipv4(addr)?;
        let ipv6 = std.local_addr()?.is_ipv6();
        let udp = tokio::net::UdpSocket::from_std(std)?;
        let state = UdpSocketState::new((&udp).into())?;
        // Room for a burst of a bulk transfer while the receive loop is descheduled (the
        // kernel caps it at net.core.rmem_max / wmem_max); failing is not fatal.
        if let Err(e) = state.set_recv_buffer_size((&udp).into(), SOCKET_BUFFER) {
            debug!(error = %e, "cannot enlarge the receive buffer");
        }
        if let Err(e) = state.set_send_buffer_size((&udp).into(), SOCKET_BUFFER) {
            debug!(error = %e, "cannot enlarge the send buffer");
        }
        let sock = socket2::SockRef::from(&udp);
        let default_ttl = sock.ttl().unwrap_or(DEFAULT_HOPS);
        let default_hops = if ipv6 {
            sock.unicast_hops_v6().unwrap_or(DEFAULT_HOPS)
        } else {
            DEFAULT_HOPS
        };
        Ok(Io {
            udp,
            state,
            ipv6,
            default_ttl,
            default_hops,
        })
    }

    /// Send one datagram with the IP TTL (IPv6: hop limit) `ttl` instead of the default.
    fn send_with_ttl(&self, data: &[u8], dest: SocketAddr, ttl: u32) -> io::Result<usize> {
        let sock = socket2::SockRef::from(&self.udp);
        if dest.is_ipv4() {
            sock.set_ttl(ttl)?;
            let r = raw_send(&self.udp, data, family::for_socket(dest, self.ipv6));
            sock.set_ttl(self.default_ttl)?;
            r
        } else {
            sock.set_unicast_hops_v6(ttl)?;
            let r = raw_send(&self.udp, data, dest);
            sock.set_unicast_hops_v6(self.default_hops)?;
            r
        }
    }
}

struct Inner {
    /// The kernel socket in use (replaced by [`DemuxSocket::rebind`]).
    io: RwLock<Arc<Io>>,
    /// The address asked for at bind time (a rebind keeps its IP, with a fresh port).
    bind_addr: SocketAddr,
    /// Where the receive loop sends control datagrams (kept for a rebind's new loop).
    ctl_tx: mpsc::Sender<ControlDatagram>,
    /// The receive loop of the socket in use.
    recv_task: Mutex<Option<AbortOnDrop>>,
    /// Virtual peer addresses (what quinn sees) and their real paths.
    paths: Arc<PathTable>,
    /// Taken for writing while a datagram leaves with a non-default TTL, so no other
    /// datagram leaves with the temporary TTL; every normal send takes it for reading.
    ttl_lock: RwLock<()>,
    quic_rx: Mutex<QuicRx>,
    /// Feeds quinn; also used to hand over parked datagrams.
    quic_tx: mpsc::Sender<QuicBatch>,
    /// How many QUIC datagrams are queued for quinn (at most [`QUIC_QUEUE`]); the receive
    /// loop waits on it for room.
    backlog: Arc<Backlog>,
    /// Relayed datagrams of sessions not mapped yet.
    parked: Mutex<Parked>,
    /// Receive buffers lent to quinn with direct datagrams in them.
    pool: Arc<Pool>,
    /// The last QUIC datagram sent to each peer (virtual address), for
    /// [`DemuxSocket::replay_last`].
    last_sent: Mutex<HashMap<SocketAddr, Vec<u8>>>,
}

/// quinn's end of the queue, with the batch it is part way through.
struct QuicRx {
    rx: mpsc::Receiver<QuicBatch>,
    current: Option<(QuicBatch, usize)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shared socket. Cheap to clone; the receive loop stops when the last clone drops.
#[derive(Clone)]
pub struct DemuxSocket {
    inner: Arc<Inner>,
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
            .field("local", &self.inner.io().udp.local_addr().ok())
            .finish()
    }
}

impl DemuxSocket {
    /// Bind `addr` and start the receive loop. Returns the socket and the control channel.
    pub async fn bind(
        addr: SocketAddr,
    ) -> io::Result<(DemuxSocket, mpsc::Receiver<ControlDatagram>)> {
        let io = Arc::new(Io::bind(addr)?);
        // Every queued batch holds at least one datagram, and at most QUIC_QUEUE datagrams
        // are queued, so the channel never fills before the count does.
        let (quic_tx, quic_rx) = mpsc::channel(QUIC_QUEUE);
        let (ctl_tx, ctl_rx) = mpsc::channel(CONTROL_QUEUE);
        let inner = Arc::new(Inner {
            io: RwLock::new(io.clone()),
            bind_addr: addr,
            ctl_tx,
            recv_task: Mutex::new(None),
            paths: Arc::new(PathTable::default()),
            ttl_lock: RwLock::new(()),
            quic_rx: Mutex::new(QuicRx {
                rx: quic_rx,
                current: None,
            }),
            quic_tx,
            backlog: Arc::default(),
            parked: Mutex::new(Parked::default()),
            pool: Arc::default(),
            last_sent: Mutex::new(HashMap::new()),
        });
        inner.start_recv(io);
        Ok((DemuxSocket { inner }, ctl_rx))
    }

    /// The bound local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.io().udp.local_addr()
    }

    /// Replace the kernel socket with a fresh one on a new port (same IP as bound). What
    /// was in flight to the old port is lost, as on any path change; QUIC retransmits.
    /// Returns the new local address.
    pub fn rebind(&self) -> io::Result<SocketAddr> {
        let addr = SocketAddr::new(self.inner.bind_addr.ip(), 0);
        let io = Arc::new(Io::bind(addr)?);
        let local = io.udp.local_addr()?;
        {
            // No datagram leaves with a temporary TTL while the socket changes.
            let _guard = self
                .inner
                .ttl_lock
                .write()
                .unwrap_or_else(|e| e.into_inner());
            *self.inner.io.write().unwrap_or_else(|e| e.into_inner()) = io.clone();
        }
        self.inner.start_recv(io);
        Ok(local)
    }

    /// The table mapping peers' virtual addresses to real paths.
    pub fn paths(&self) -> &Arc<PathTable> {
        &self.inner.paths
    }

    /// Relayed datagrams of `sessions` belong to the peer at virtual address `v`; any that
    /// arrived before this call are handed to quinn now.
    pub fn map_relay_sessions(&self, v: SocketAddr, sessions: &[u64]) {
        self.inner.paths.set_relay_sessions(v, sessions);
        let mut batch = QuicBatch::default();
        for session in sessions {
            for data in lock(&self.inner.parked).take(*session) {
                batch.push(v, &data);
            }
        }
        self.inner.queue_for_quinn(batch);
    }

    /// Send the last QUIC datagram sent to the peer at virtual address `v` again, along
    /// its route now. Called when a peer's path changes: that datagram was most likely
    /// lost on the dead path, and the peer's acknowledgement of it wakes QUIC's loss
    /// recovery at once. Without it, a sender whose packets went nowhere for a while sends
    /// its next probe only after an exponentially backed-off timeout (RFC 9002 §6.2), which
    /// after a 30 s outage can be another half minute.
    pub fn replay_last(&self, v: SocketAddr) {
        let last: Option<Vec<u8>> = lock(&self.inner.last_sent).get(&v).cloned();
        if let Some(d) = last {
            let _guard = self
                .inner
                .ttl_lock
                .read()
                .unwrap_or_else(|e| e.into_inner());
            if let Err(e) = self.inner.route_and_send(v, &d, None) {
                debug!(error = %e, "replay failed");
            }
        }
    }

    /// Forget the peer at virtual address `v`: its routes and what was sent to it.
    pub fn forget_peer(&self, v: SocketAddr) {
        self.inner.paths.remove(v);
        lock(&self.inner.last_sent).remove(&v);
    }

    /// Send a datagram now (control traffic). `ttl` overrides the IP TTL for this datagram.
    pub fn send_to(&self, data: &[u8], dest: SocketAddr, ttl: Option<u32>) -> io::Result<()> {
        let io = self.inner.io();
        if dest.is_ipv6() && !io.ipv6 {
            // An IPv4-only socket (a host without IPv6, or --bind 0.0.0.0): the candidate
            // cannot be reached from here, as a route that does not exist.
            return Ok(());
        }
        let default = if dest.is_ipv4() {
            io.default_ttl
        } else {
            io.default_hops
        };
        let result = match ttl {
            Some(ttl) if ttl != default => {
                let _guard = self
                    .inner
                    .ttl_lock
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                io.send_with_ttl(data, dest, ttl)
            }
            _ => {
                let _guard = self
                    .inner
                    .ttl_lock
                    .read()
                    .unwrap_or_else(|e| e.into_inner());
                raw_send(&io.udp, data, family::for_socket(dest, io.ipv6))
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

impl Inner {
    /// The kernel socket in use.
    fn io(&self) -> Arc<Io> {
        self.io.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Run the receive loop on `io`, replacing the loop of an earlier socket.
    fn start_recv(self: &Arc<Self>, io: Arc<Io>) {
        let task = tokio::spawn(recv::recv_loop(
            Arc::downgrade(self),
            io,
            self.ctl_tx.clone(),
            self.pool.clone(),
            self.backlog.clone(),
        ));
        // The old loop (if any) is aborted as its handle drops.
        *lock(&self.recv_task) = Some(AbortOnDrop(task));
    }

    /// Queue `batch` for quinn, dropping what does not fit in [`QUIC_QUEUE`] (as a
    /// congested link would).
    fn queue_for_quinn(&self, mut batch: QuicBatch) {
        let room = QUIC_QUEUE.saturating_sub(self.backlog.queued());
        if batch.datagrams > room {
            let before = batch.datagrams;
            batch.truncate(room);
            trace!(
                dropped = before - batch.datagrams,
                "quic queue full; datagrams dropped"
            );
        }
        let n = batch.datagrams;
        if n == 0 {
            return;
        }
        self.backlog.add(n);
        if self.quic_tx.try_send(batch).is_err() {
            self.backlog.take(n);
            trace!("quic queue closed; datagrams dropped");
        }
    }

    /// Send QUIC datagrams (several of `segment_size` bytes each, the last possibly
    /// shorter, when `segment_size` is set: one GSO system call).
    fn send_quic(
        &self,
        dest: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let io = self.io();
        if dest.is_ipv6() && !io.ipv6 {
            return Ok(());
        }
        let transmit = Transmit {
            destination: family::for_socket(dest, io.ipv6),
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        // Through tokio's readiness, so a full buffer parks quinn until the socket is
        // writable again instead of making it retry at once.
        io.udp.try_io(Interest::WRITABLE, || {
            io.state.send((&io.udp).into(), &transmit)
        })
    }
}

impl Inner {
    /// Send QUIC datagrams quinn addressed to `dest` along its route (a GSO train when
    /// `segment_size` is set), remembering the last one sent to a peer.
    fn route_and_send(
        &self,
        dest: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let route = self.paths.route(dest);
        if route != Dest::Unmapped {
            let segment = segment_size.unwrap_or(contents.len()).max(1);
            if let Some(last) = contents.chunks(segment).next_back() {
                let mut sent = lock(&self.last_sent);
                if sent.len() < crate::paths::MAX_PEERS || sent.contains_key(&dest) {
                    let slot = sent.entry(dest).or_default();
                    slot.clear();
                    slot.extend_from_slice(last);
                }
            }
        }
        match route {
            Dest::Direct(real) => self.send_quic(real, contents, segment_size),
            Dest::Unmapped => self.send_quic(dest, contents, segment_size),
            Dest::Relay {
                server,
                side,
                session,
            } => {
                // Every datagram of a GSO batch gets its own header, so the segments grow
                // by the header and stay equal-sized (the last may still be shorter).
                let segment = segment_size.unwrap_or(contents.len()).max(1);
                let segments = contents.len().div_ceil(segment);
                let mut wrapped =
                    Vec::with_capacity(contents.len() + segments * wire::RELAY_HEADER_LEN);
                for payload in contents.chunks(segment) {
                    wire::encode_relay_into(&mut wrapped, side, session, payload);
                }
                self.send_quic(
                    server,
                    &wrapped,
                    segment_size.map(|s| s + wire::RELAY_HEADER_LEN),
                )
            }
            // No path yet: as lost on the wire; QUIC retransmits.
            Dest::Drop => Ok(()),
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
        self.inner.route_and_send(
            // quinn addresses peers by their virtual (IPv4) addresses; it never maps them,
            // since the address it is told it has is IPv4 (see `local_addr`).
            family::canonical(transmit.destination),
            transmit.contents,
            transmit.segment_size,
        )
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut q = lock(&self.inner.quic_rx);
        let QuicRx { rx, current } = &mut *q;
        let max = bufs.len().min(meta.len());
        let mut count = 0;
        while count < max {
            let (batch, next) = match current {
                Some(c) => c,
                None => {
                    let got = if count == 0 {
                        match rx.poll_recv(cx) {
                            Poll::Ready(x) => x,
                            Poll::Pending => return Poll::Pending,
                        }
                    } else {
                        match rx.try_recv() {
                            Ok(b) => Some(b),
                            Err(_) => break,
                        }
                    };
                    match got {
                        Some(b) => current.insert((b, 0)),
                        None if count > 0 => break,
                        None => {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::BrokenPipe,
                                "socket closed",
                            )))
                        }
                    }
                }
            };
            let mut taken = 0;
            while count < max && *next < batch.runs.len() {
                let (from, stride) = (batch.runs[*next].from, batch.runs[*next].stride);
                let bytes = batch.run_bytes(*next);
                if bytes.is_empty() {
                    taken += batch.runs[*next].datagrams();
                    *next += 1;
                    continue;
                }
                let buf = &mut bufs[count];
                // Whole datagrams that fit (quinn's buffers hold a whole run unless its
                // configuration shrank them); one longer than the buffer is truncated.
                let fits = buf.len() / stride * stride;
                let take = bytes.len().min(fits.max(stride));
                let len = take.min(buf.len());
                buf[..len].copy_from_slice(&bytes[..len]);
                meta[count] = RecvMeta {
                    addr: from,
                    len,
                    stride: stride.min(len),
                    ecn: None,
                    dst_ip: None,
                };
                taken += take.div_ceil(stride);
                let run = &mut batch.runs[*next];
                run.start += take;
                if run.start >= run.end {
                    *next += 1;
                }
                count += 1;
            }
            self.inner.backlog.take(taken);
            if *next >= batch.runs.len() {
                *current = None;
            }
        }
        Poll::Ready(Ok(count))
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.io().state.max_gso_segments()
    }

    /// quinn probes for a larger datagram size (path MTU discovery, up to
    /// [`crate::tls::MAX_QUIC_PAYLOAD`]) only on a socket that never fragments: quinn-udp
    /// sets "don't fragment" where the system allows it.
    fn may_fragment(&self) -> bool {
        self.inner.io().state.may_fragment()
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        // quinn only ever sees virtual IPv4 addresses: told its socket were IPv6, it would
        // map them (`::ffff:240.0.0.1`) and see each peer at two addresses.
        let local = self.inner.io().udp.local_addr()?;
        Ok(SocketAddr::new(family::IPV4_ANY.ip(), local.port()))
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
            self.fut = Some(Box::pin(async move { sock.io().udp.writable().await }));
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

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([240, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn runs_are_split_at_datagram_boundaries_to_fit_quinns_buffers() {
        let (sock, _ctl) = DemuxSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0).into())
            .await
            .unwrap();
        let mut b = QuicBatch::default();
        for i in 0..3 {
            b.push(addr(1), &[i; 100]);
        }
        b.push(addr(2), &[9; 10]);
        sock.inner.queue_for_quinn(b);
        assert_eq!(sock.inner.backlog.queued(), 4);

        let mut storage = [[0u8; 250]; 2];
        let [s0, s1] = &mut storage;
        let mut bufs = [IoSliceMut::new(s0), IoSliceMut::new(s1)];
        let mut meta = [RecvMeta::default(); 2];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let got = sock.poll_recv(&mut cx, &mut bufs, &mut meta);
        assert!(matches!(got, Poll::Ready(Ok(2))));
        assert_eq!(
            (meta[0].len, meta[0].stride),
            (200, 100),
            "two whole datagrams"
        );
        assert_eq!((meta[1].len, meta[1].stride), (100, 100));
        assert_eq!(bufs[1][0], 2);
        assert_eq!(sock.inner.backlog.queued(), 1);
        let got = sock.poll_recv(&mut cx, &mut bufs, &mut meta);
        assert!(matches!(got, Poll::Ready(Ok(1))));
        assert_eq!((meta[0].addr, meta[0].len), (addr(2), 10));
        assert_eq!(sock.inner.backlog.queued(), 0);
        assert!(sock.poll_recv(&mut cx, &mut bufs, &mut meta).is_pending());
    }

    /// Direct QUIC datagrams reach quinn from the buffer they were received into; a
    /// control datagram in the same flow still goes to the control channel.
    #[tokio::test]
    async fn direct_datagrams_reach_quinn_in_place() {
        let (sock, mut ctl) = DemuxSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0).into())
            .await
            .unwrap();
        let to = sock.inner.io().udp.local_addr().unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let from = peer.local_addr().unwrap();
        for i in 0..20u8 {
            peer.send_to(&[0xc0, i, i, i], to).unwrap();
        }
        peer.send_to(b"<HI!>", to).unwrap();

        let mut storage = vec![[0u8; 2048]; 8];
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < 20 && tokio::time::Instant::now() < deadline {
            let mut bufs: Vec<IoSliceMut<'_>> =
                storage.iter_mut().map(|s| IoSliceMut::new(s)).collect();
            let mut meta = [RecvMeta::default(); 8];
            let n = std::future::poll_fn(|cx| sock.poll_recv(cx, &mut bufs, &mut meta))
                .await
                .unwrap();
            for (m, b) in meta.iter().zip(&bufs).take(n) {
                assert_eq!(m.addr, from);
                for d in b[..m.len].chunks(m.stride) {
                    got.push(d.to_vec());
                }
            }
        }
        let want: Vec<Vec<u8>> = (0..20u8).map(|i| vec![0xc0, i, i, i]).collect();
        assert_eq!(got, want, "every datagram once, in order");
        let made = lock(&sock.inner.pool.free).1;
        assert!(made >= 1, "received into lent buffers");
        let c = ctl.recv().await.unwrap();
        assert_eq!((c.from, &c.data[..]), (from, &b"<HI!>"[..]));
        assert_eq!(sock.inner.backlog.queued(), 0);
    }
}
