//! The rendezvous server's IO: its UDP sockets, STUN, the `<Hi!>` check, and the registry.
//!
//! Owns the sockets, the receive tasks and the timers. The sockets come in groups, one
//! per listen address: one socket, or four with a second address (two addresses x two
//! ports, for RFC 5780 behaviour discovery). The default is one group on `[::]`, a single
//! dual-stack socket (IPv6 with `IPV6_V6ONLY` off) that serves IPv4 and IPv6 on one port
//! and relays between them without a hop between sockets. RFC 5780 needs specific
//! addresses, so a server that discovers NAT behaviour in both families listens on one
//! address per family, each with its own alternate (`--listen A4 --listen A6 --alt-addr
//! B4 --alt-addr B6`); all groups share one registry, and a datagram for a peer of the
//! other family leaves from that family's primary socket. Addresses are made canonical
//! as they arrive (`::ffff:a.b.c.d` is IPv4 to the registry).
//!
//! The registry and introduction logic is the sans-IO
//! [`punch_proto::rendezvous::Rendezvous`]; STUN answers come from
//! [`punch_proto::stun::responder::StunResponder`], one per group. Rendezvous frames are
//! taken on each group's primary socket only; STUN and `<Hi!>` on every socket.
//! Malformed datagrams are counted and logged at debug level, never answered and never a
//! panic.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use punch_proto::ratelimit::{self, Limiter, RateLimit};
use punch_proto::rendezvous::{Rendezvous, RendezvousConfig};
use punch_proto::stun::responder::{ServerAddrs, SocketId, StunResponder};
use punch_proto::stun::{self};
use punch_proto::wire::{self, Frame, HI_REQUEST, HI_RESPONSE};
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::telemetry::server::{UdpMetrics, UdpRequest, PUBLISH_INTERVAL};

/// Datagrams queued from the receive tasks to the server loop before new ones are dropped.
const INBOX: usize = 4096;

/// How a server is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Registry tunables.
    pub rendezvous: RendezvousConfig,
    /// A second IP address for RFC 5780 behaviour discovery (`--alt-addr`).
    pub alt_ip: Option<IpAddr>,
    /// The alternate port (default: the primary port + 1 when `alt_ip` is set).
    pub alt_port: Option<u16>,
    /// STUN requests and `<Hi!>` checks per source address (over it: dropped unanswered).
    pub stun_limit: RateLimit,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            rendezvous: RendezvousConfig::default(),
            alt_ip: None,
            alt_port: None,
            stun_limit: ratelimit::DEFAULT_STUN,
        }
    }
}

/// Counters of what the socket loop saw, beyond the registry's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoStats {
    /// STUN requests answered.
    pub stun_answered: u64,
    /// `<Hi!>` checks answered.
    pub hi_answered: u64,
    /// Datagrams dropped as malformed or unexpected.
    pub malformed: u64,
    /// STUN requests and `<Hi!>` checks dropped over the per-source rate limit.
    pub stun_limited: u64,
}

/// The server's bound sockets, with the addresses they stand for: one group per listen
/// address.
#[derive(Debug)]
pub struct ServerSockets {
    groups: Vec<Group>,
}

/// One listen address's sockets (one, or four for RFC 5780).
#[derive(Debug)]
struct Group {
    addrs: ServerAddrs,
    sockets: Vec<(SocketId, UdpSocket)>,
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    UdpSocket::from_std(crate::socket::family::bind_udp_or_ipv4(addr)?)
}

impl ServerSockets {
    /// Bind `listen`, and with `cfg.alt_ip` the other three sockets of RFC 5780 §6.1.
    /// `[::]` is bound dual-stack.
    pub async fn bind(listen: SocketAddr, cfg: &ServerConfig) -> io::Result<ServerSockets> {
        Self::bind_groups(&[(listen, cfg.alt_ip)], cfg.alt_port).await
    }

    /// Bind one group per `(listen, alternate IP)` (see the module doc); `alt_port` as
    /// for [`ServerConfig::alt_port`], the same in every group.
    pub async fn bind_groups(
        groups: &[(SocketAddr, Option<IpAddr>)],
        alt_port: Option<u16>,
    ) -> io::Result<ServerSockets> {
        if groups.is_empty() || groups.len() > MAX_GROUPS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("1 to {MAX_GROUPS} listen addresses"),
            ));
        }
        let mut out = Vec::new();
        for &(listen, alt_ip) in groups {
            out.push(Group::bind(listen, alt_ip, alt_port).await?);
        }
        Ok(ServerSockets { groups: out })
    }

    /// The primary address (registrations and introductions) of the first group.
    pub fn local_addr(&self) -> SocketAddr {
        self.groups[0].addrs.primary()
    }

    /// Every group's primary address.
    pub fn primary_addrs(&self) -> Vec<SocketAddr> {
        self.groups.iter().map(|g| g.addrs.primary()).collect()
    }

    /// Every bound address.
    pub fn all_addrs(&self) -> Vec<SocketAddr> {
        self.groups
            .iter()
            .flat_map(|g| g.addrs.sockets().into_iter().map(|(_, a)| a))
            .collect()
    }

    /// True if some group answers RFC 5780 behaviour discovery.
    pub fn supports_behavior_discovery(&self) -> bool {
        self.groups
            .iter()
            .any(|g| g.addrs.supports_behavior_discovery())
    }
}

/// Most listen addresses (one per family, and a spare).
pub const MAX_GROUPS: usize = 4;

impl Group {
    async fn bind(
        listen: SocketAddr,
        alt_ip: Option<IpAddr>,
        alt_port: Option<u16>,
    ) -> io::Result<Group> {
        let primary = bind_udp(listen)?;
        let primary_addr = primary.local_addr()?;
        let alt_port = match (alt_ip, alt_port) {
            (_, Some(p)) => Some(p),
            (Some(_), None) => Some(primary_addr.port().checked_add(1).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no port after 65535 for the alternate port",
                )
            })?),
            (None, None) => None,
        };
        let addrs = match alt_ip {
            Some(_) => ServerAddrs::new(primary_addr, alt_ip, alt_port)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?,
            None => ServerAddrs::single(primary_addr),
        };
        let mut sockets = vec![(SocketId::PRIMARY, primary)];
        for (id, addr) in addrs.sockets() {
            if id != SocketId::PRIMARY {
                let s = bind_udp(addr)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
                sockets.push((id, s));
            }
        }
        Ok(Group { addrs, sockets })
    }
}

/// The `<Hi!>` liveness answer for `data`, if it is one (a netcat user's trailing newline
/// is answered with one).
pub fn answer_hi(data: &[u8]) -> Option<Vec<u8>> {
    let trimmed = data.strip_suffix(b"\n").unwrap_or(data);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    if trimmed != HI_REQUEST {
        return None;
    }
    let mut answer = HI_RESPONSE.to_vec();
    if trimmed.len() != data.len() {
        answer.push(b'\n');
    }
    Some(answer)
}

/// One socket the server sends from, and which destinations it can reach.
struct Out {
    group: usize,
    id: SocketId,
    socket: Arc<UdpSocket>,
    /// quinn-udp's view of it (GSO sends of relayed trains).
    state: quinn::udp::UdpSocketState,
    /// An IPv6 socket: IPv4 destinations need the mapped form, and only a dual-stack
    /// one (bound to `[::]`) reaches them.
    ipv6: bool,
    dual: bool,
}

impl Out {
    fn reaches(&self, to: SocketAddr) -> bool {
        match (to.is_ipv4(), self.ipv6) {
            (true, false) | (false, true) => true,
            (true, true) => self.dual,
            (false, false) => false,
        }
    }
}

/// Every socket of every group.
struct Outs(Vec<Out>);

impl Outs {
    fn get(&self, group: usize, id: SocketId) -> Option<&Out> {
        self.0.iter().find(|o| o.group == group && o.id == id)
    }

    /// The socket a datagram to `to` leaves from: `(group, id)` if it reaches `to`, else
    /// the first primary socket that does (a peer of the other family).
    fn toward(&self, group: usize, id: SocketId, to: SocketAddr) -> Option<&Out> {
        self.get(group, id).filter(|o| o.reaches(to)).or_else(|| {
            self.0
                .iter()
                .find(|o| o.id == SocketId::PRIMARY && o.reaches(to))
        })
    }

    /// Send `bytes` to `to` from `(group, id)`, or the socket that reaches it.
    fn send(&self, group: usize, id: SocketId, to: SocketAddr, bytes: &[u8]) {
        let Some(out) = self.toward(group, id, to) else {
            debug!(%to, "no socket reaches that address family");
            return;
        };
        let dest = crate::socket::family::for_socket(to, out.ipv6);
        if let Err(e) = crate::socket::raw_send(&out.socket, bytes, dest) {
            debug!(%to, error = %e, "send failed");
        }
    }
}

/// A datagram from a receive task: group, socket, (canonical) source, bytes.
type Inbound = (usize, SocketId, SocketAddr, Vec<u8>);

/// Serve on `sockets` until `shutdown` completes.
pub async fn run(
    sockets: ServerSockets,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let ServerSockets { groups } = sockets;
    let all: Vec<_> = groups.iter().map(|g| g.addrs.sockets()).collect();
    info!(addresses = ?all, "rendezvous server listening (UDP: STUN binding, <Hi!>, punch registry)");
    if !groups.iter().any(|g| g.addrs.supports_behavior_discovery()) {
        info!("full NAT behaviour discovery (RFC 5780) needs a second address: start with --alt-addr IP");
    }
    let responders: Vec<StunResponder> =
        groups.iter().map(|g| StunResponder::new(g.addrs)).collect();
    // Shared with the primary sockets' receive tasks, which relay datagrams themselves:
    // the relay's hot path then costs one lock and one send, no queue hop or copy.
    let registry = Arc::new(Mutex::new(Rendezvous::new(
        cfg.rendezvous,
        rand::rng().random(),
    )));
    let mut stats = IoStats::default();
    let mut stun_limiter = Limiter::new(cfg.stun_limit);
    let metrics = UdpMetrics::new();
    let mut publish = tokio::time::interval(PUBLISH_INTERVAL);
    publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut outs = Vec::new();
    for (group, g) in groups.into_iter().enumerate() {
        for (id, socket) in g.sockets {
            let local = socket.local_addr()?;
            let state = quinn::udp::UdpSocketState::new((&socket).into())?;
            outs.push(Out {
                group,
                id,
                socket: Arc::new(socket),
                state,
                ipv6: local.is_ipv6(),
                dual: crate::socket::family::is_dual_stack_any(local),
            });
        }
    }
    let outs = Arc::new(Outs(outs));
    let (tx, mut inbox) = mpsc::channel::<Inbound>(INBOX);
    let mut tasks = Vec::new();
    for i in 0..outs.0.len() {
        let counters = (metrics.relay_requests(), metrics.inbox_full());
        tasks.push(AbortOnDrop(tokio::spawn(recv_task(
            outs.clone(),
            i,
            tx.clone(),
            registry.clone(),
            counters,
        ))));
    }
    drop(tx);

    tokio::pin!(shutdown);
    loop {
        let wake = lock(&registry)
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => {
                info!(?stats, registry = ?lock(&registry).stats(), "server stopping");
                return Ok(());
            }
            got = inbox.recv() => {
                let Some((group, on, from, data)) = got else {
                    warn!("every receive task ended");
                    return Ok(());
                };
                let hi = answer_hi(&data);
                let answerable = hi.is_some() || stun::looks_like_stun(&data);
                if answerable {
                    let kind = if hi.is_some() { UdpRequest::Hi } else { UdpRequest::Stun };
                    metrics.requests(kind, 1);
                }
                if answerable && !stun_limiter.allow(Instant::now().into_std(), from.ip()) {
                    stats.stun_limited += 1;
                } else if let Some(answer) = hi {
                    stats.hi_answered += 1;
                    outs.send(group, on, from, &answer);
                } else if stun::looks_like_stun(&data) {
                    match responders[group].respond(on, from, &data) {
                        Some(reply) => {
                            stats.stun_answered += 1;
                            outs.send(group, reply.socket, reply.dest, &reply.payload);
                        }
                        None => {
                            stats.malformed += 1;
                            debug!(%from, "STUN message not answered");
                        }
                    }
                } else if on == SocketId::PRIMARY && wire::is_frame(&data) {
                    match Frame::decode(&data) {
                        Ok(frame) => {
                            debug!(%from, ?frame, "frame");
                            metrics.requests(UdpRequest::of(&frame), 1);
                            lock(&registry).handle_frame(Instant::now().into_std(), from, frame)
                        }
                        Err(wire::WireError::Version(v)) => {
                            debug!(%from, version = v, "frame of another wire version");
                            metrics.requests(UdpRequest::OtherVersion, 1);
                            let now = Instant::now().into_std();
                            lock(&registry).handle_other_version(now, from, &data);
                        }
                        Err(e) => {
                            stats.malformed += 1;
                            debug!(%from, error = %e, "malformed frame");
                        }
                    }
                } else {
                    stats.malformed += 1;
                    debug!(%from, len = data.len(), "unrecognised datagram");
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
            _ = publish.tick() => {
                let reg = lock(&registry);
                let (peers, relays) = (reg.peer_count(), reg.relay_session_count());
                metrics.publish(&stats, reg.stats(), peers, relays);
            }
        }
        let mut reg = lock(&registry);
        reg.handle_timeout(Instant::now().into_std());
        while let Some(after) = reg.poll_ready_time() {
            metrics.ready(after);
        }
        while let Some((to, bytes)) = reg.poll_transmit() {
            outs.send(0, SocketId::PRIMARY, to, &bytes);
        }
    }
}

/// Receive buffer asked for on the primary socket, which relays.
const RELAY_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Receive buffers per batch, each large enough for a GRO-coalesced train of datagrams.
const RECV_BUF: usize = 64 * 1024;

/// One socket's receive loop. Batched (recvmmsg with GRO, through quinn-udp: one system
/// call for up to [`quinn::udp::BATCH_SIZE`] buffers), because the relay's cost is mostly
/// system calls. Relayed datagrams are forwarded right here (one lock per batch, one GSO
/// send per train of datagrams to the same peer); the rest go to the server loop.
/// `counters`: relayed datagrams received (counted once per batch) and datagrams dropped
/// for a full inbox.
async fn recv_task(
    outs: Arc<Outs>,
    index: usize,
    tx: mpsc::Sender<Inbound>,
    registry: Arc<Mutex<Rendezvous>>,
    counters: (metrics::Counter, metrics::Counter),
) {
    let (relay_requests, inbox_full) = counters;
    let me = &outs.0[index];
    let (group, id, state) = (me.group, me.id, &me.state);
    let socket: &UdpSocket = &me.socket;
    if id == SocketId::PRIMARY {
        // The relay's queue toward the peers: bursts wait here while the server is
        // descheduled; the kernel caps it at net.core.rmem_max.
        if let Err(e) = state.set_recv_buffer_size(socket.into(), RELAY_SOCKET_BUFFER) {
            debug!(error = %e, "cannot enlarge the receive buffer");
        }
    }
    let batch = quinn::udp::BATCH_SIZE
        .min(state.gro_segments().max(1) * 8)
        .max(1);
    let mut storage = vec![0u8; RECV_BUF * batch];
    let mut meta = vec![quinn::udp::RecvMeta::default(); batch];
    let mut train = Train::default();
    loop {
        if let Err(e) = socket.readable().await {
            debug!(error = %e, "socket not readable");
            continue;
        }
        let mut bufs: Vec<std::io::IoSliceMut<'_>> = storage
            .chunks_mut(RECV_BUF)
            .map(std::io::IoSliceMut::new)
            .collect();
        let got = socket.try_io(tokio::io::Interest::READABLE, || {
            state.recv(socket.into(), &mut bufs, &mut meta)
        });
        let n = match got {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            // ICMP errors from earlier sends surface here on some systems.
            Err(e) => {
                debug!(error = %e, "receive error");
                continue;
            }
        };
        // One clock reading and at most one lock per batch.
        let now = Instant::now().into_std();
        let mut reg = None;
        let mut relayed = 0;
        for (m, buf) in meta.iter().zip(bufs.iter()).take(n) {
            let stride = m.stride.max(1);
            let from = crate::socket::family::canonical(m.addr);
            for data in buf[..m.len.min(buf.len())].chunks(stride) {
                if id == SocketId::PRIMARY && data.first() == Some(&wire::RELAY_TAG) {
                    let reg = reg.get_or_insert_with(|| lock(&registry));
                    relayed += 1;
                    if let Some(to) = relay_datagram(&outs, group, reg, now, from, data) {
                        if let Some(out) = outs.toward(group, id, to) {
                            train.push(out, to, data);
                        }
                    }
                } else if tx.try_send((group, id, from, data.to_vec())).is_err() {
                    inbox_full.increment(1);
                    debug!(%from, "server inbox full; datagram dropped");
                }
            }
        }
        train.flush();
        if relayed > 0 {
            relay_requests.increment(relayed);
        }
    }
}

/// Largest UDP payload of one GSO send: the IPv4 total length is 16 bits (20 bytes of IP
/// header, 8 of UDP).
const GSO_MAX_BYTES: usize = u16::MAX as usize - 28;

/// Relayed datagrams that go on to the same peer back to back, collected to leave as one
/// GSO train: one system call, one trip through the network stack, and the receiving
/// peer reads them in one go (GRO). Runs may span the trains of one receive batch. GSO
/// asks that every segment but the last has the first one's length.
#[derive(Default)]
struct Train<'a> {
    /// The socket it leaves from (one that reaches `to`).
    out: Option<&'a Out>,
    to: Option<SocketAddr>,
    /// Length of every segment but the last.
    segment: usize,
    count: usize,
    /// The last datagram added was shorter than `segment`: nothing may follow it.
    closed: bool,
    bytes: Vec<u8>,
}

impl<'a> Train<'a> {
    /// Forward `data` to `to` from `out`, with the datagrams before it if it can join them.
    fn push(&mut self, out: &'a Out, to: SocketAddr, data: &[u8]) {
        if !self.joins(to, data.len(), out.state.max_gso_segments()) {
            self.flush();
        }
        self.out = Some(out);
        self.append(to, data);
    }

    /// Whether a datagram of `len` bytes to `to` can join this train as its next segment.
    fn joins(&self, to: SocketAddr, len: usize, max_segments: usize) -> bool {
        self.to == Some(to)
            && !self.closed
            && len <= self.segment
            && self.count < max_segments
            && self.bytes.len() + len <= GSO_MAX_BYTES
    }

    /// Add a datagram that [`Train::joins`] this train, or start one (when empty).
    fn append(&mut self, to: SocketAddr, data: &[u8]) {
        if self.to.is_none() {
            self.to = Some(to);
            self.segment = data.len();
        }
        self.bytes.extend_from_slice(data);
        self.count += 1;
        self.closed = data.len() < self.segment;
    }

    /// Send what has been collected.
    fn flush(&mut self) {
        let (Some(to), Some(out)) = (self.to, self.out) else {
            return;
        };
        let (socket, state) = (&*out.socket, &out.state);
        let transmit = quinn::udp::Transmit {
            destination: crate::socket::family::for_socket(to, out.ipv6),
            ecn: None,
            contents: &self.bytes,
            segment_size: (self.count > 1).then_some(self.segment),
            src_ip: None,
        };
        // Only WouldBlock is returned (quinn-udp logs the rest): a full send buffer loses
        // the datagrams as a congested link would.
        if let Err(e) = state.send(socket.into(), &transmit) {
            debug!(%to, error = %e, "relay send failed");
        }
        self.clear();
    }

    fn clear(&mut self) {
        self.to = None;
        self.bytes.clear();
        self.count = 0;
        self.closed = false;
    }
}

/// Account for one relayed datagram (or answer a refusal), from the primary socket:
/// returns where to forward it.
fn relay_datagram(
    outs: &Outs,
    group: usize,
    reg: &mut Rendezvous,
    now: std::time::Instant,
    from: SocketAddr,
    data: &[u8],
) -> Option<SocketAddr> {
    let to = reg.relay(now, from, data);
    // Refusals (RelayClosed) go out at once, from the primary socket.
    while let Some((to, bytes)) = reg.poll_transmit() {
        outs.send(group, SocketId::PRIMARY, to, &bytes);
    }
    to
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct AbortOnDrop(JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A server running in the background; stops when dropped.
#[derive(Debug)]
pub struct ServerHandle {
    local: SocketAddr,
    task: JoinHandle<io::Result<()>>,
}

impl ServerHandle {
    /// Bind `addr` (and the alternates `cfg` asks for) and serve in a background task.
    pub async fn spawn(addr: SocketAddr, cfg: ServerConfig) -> io::Result<ServerHandle> {
        let sockets = ServerSockets::bind(addr, &cfg).await?;
        let local = sockets.local_addr();
        let task = tokio::spawn(run(sockets, cfg, std::future::pending()));
        Ok(ServerHandle { local, task })
    }

    /// The primary address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 7], port))
    }

    #[test]
    fn a_train_takes_equal_segments_to_one_peer_and_ends_after_a_short_one() {
        let mut t = Train::default();
        assert!(
            !t.joins(addr(1), 100, 64),
            "an empty train is started, not joined"
        );
        t.append(addr(1), &[1; 100]);
        assert!(t.joins(addr(1), 100, 64));
        assert!(!t.joins(addr(2), 100, 64), "another peer");
        assert!(!t.joins(addr(1), 101, 64), "longer than the segment size");
        assert!(!t.joins(addr(1), 100, 1), "GSO segment limit");
        t.append(addr(1), &[2; 40]);
        assert!(
            !t.joins(addr(1), 40, 64),
            "nothing follows a shorter last segment"
        );
        assert_eq!((t.count, t.segment, t.bytes.len()), (2, 100, 140));
        t.clear();
        assert!(!t.joins(addr(1), 100, 64));
    }

    #[test]
    fn a_train_stays_within_one_udp_payload() {
        let mut t = Train::default();
        let segment = [0u8; 1400];
        t.append(addr(1), &segment);
        while t.joins(addr(1), segment.len(), usize::MAX) {
            t.append(addr(1), &segment);
        }
        assert!(t.bytes.len() <= GSO_MAX_BYTES);
        assert!(t.bytes.len() + segment.len() > GSO_MAX_BYTES);
    }
}
