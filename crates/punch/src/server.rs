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
//!
//! The hot paths stay in each socket's receive task: one batched receive (recvmmsg),
//! then relayed datagrams forwarded and STUN and `<Hi!>` answered right there (answers
//! encoded into buffers kept across batches, the shared rate limiter locked once per
//! batch, all answers sent with one sendmmsg, see `send.rs`). Rendezvous frames are taken
//! there too (`frames.rs`): the registry under its lock, the registrations' signatures
//! checked with the lock released. The server loop owns the registry's timers and is
//! woken after a batch fed the registry. With
//! [`ServerConfig::workers`] above 1 a primary address has several sockets
//! (`SO_REUSEPORT`), each with its own receive task, all sharing the registry.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use punch_proto::ratelimit::{self, Limiter, RateLimit};
use punch_proto::rendezvous::{Rendezvous, RendezvousConfig};
use punch_proto::stun::responder::{ServerAddrs, SocketId, StunResponder};
use punch_proto::stun::{self};
use punch_proto::wire::{self, HI_REQUEST, HI_RESPONSE};
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info};

use send::{Answers, Out, Outs, Train, Twin};

use crate::telemetry::server::{UdpMetrics, UdpRequest, PUBLISH_INTERVAL};

mod ancillary;
mod frames;
mod send;
mod twin;

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
    /// Sockets on each primary address, sharing it (`SO_REUSEPORT`), each client given to
    /// one of them by a hash of its address and port (one receive task each; see
    /// `twin.rs`); 0: one per available core. Default 1:
    /// a dual-stack client's two registrations then reach the registry in the order they
    /// arrived, and the registry keeps the first as the peer's record (see
    /// `punch_proto::client` family handling); with several sockets they race.
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            rendezvous: RendezvousConfig::default(),
            alt_ip: None,
            alt_port: None,
            stun_limit: ratelimit::DEFAULT_STUN,
            workers: 1,
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
    sockets: Vec<(SocketId, Bound)>,
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    UdpSocket::from_std(crate::socket::family::bind_udp_or_ipv4(addr)?)
}

impl ServerSockets {
    /// Bind `listen`, and with `cfg.alt_ip` the other three sockets of RFC 5780 §6.1.
    /// `[::]` is bound dual-stack.
    pub async fn bind(listen: SocketAddr, cfg: &ServerConfig) -> io::Result<ServerSockets> {
        Self::bind_workers(&[(listen, cfg.alt_ip)], cfg.alt_port, cfg.workers).await
    }

    /// Bind one group per `(listen, alternate IP)` (see the module doc); `alt_port` as
    /// for [`ServerConfig::alt_port`], the same in every group. One socket per primary
    /// address.
    pub async fn bind_groups(
        groups: &[(SocketAddr, Option<IpAddr>)],
        alt_port: Option<u16>,
    ) -> io::Result<ServerSockets> {
        Self::bind_workers(groups, alt_port, 1).await
    }

    /// [`ServerSockets::bind_groups`] with `workers` sockets on each primary address (see
    /// [`ServerConfig::workers`]; 0: one per available core).
    pub async fn bind_workers(
        groups: &[(SocketAddr, Option<IpAddr>)],
        alt_port: Option<u16>,
        workers: usize,
    ) -> io::Result<ServerSockets> {
        let workers = match workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(MAX_WORKERS);
        if groups.is_empty() || groups.len() > MAX_GROUPS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("1 to {MAX_GROUPS} listen addresses"),
            ));
        }
        let mut out = Vec::new();
        for &(listen, alt_ip) in groups {
            out.push(Group::bind(listen, alt_ip, alt_port, workers).await?);
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

/// Most sockets (and receive tasks) on one primary address.
pub const MAX_WORKERS: usize = 256;

/// `workers` receiving sockets on `listen`, each with its send-only twin if it has one
/// (see `twin.rs`: how each client's datagrams reach one of the receiving sockets, and why
/// a port another server holds is refused as in use rather than shared with it).
fn bind_primary(listen: SocketAddr, workers: usize) -> io::Result<Vec<Bound>> {
    twin::bind_group(listen, workers)?
        .into_iter()
        .map(|(recv, twin)| Ok((UdpSocket::from_std(recv)?, twin)))
        .collect()
}

/// A receiving socket and its send-only twin, if it has one.
type Bound = (UdpSocket, Option<std::net::UdpSocket>);

impl Group {
    async fn bind(
        listen: SocketAddr,
        alt_ip: Option<IpAddr>,
        alt_port: Option<u16>,
        workers: usize,
    ) -> io::Result<Group> {
        let primaries = bind_primary(listen, workers)?;
        let primary_addr = primaries[0].0.local_addr()?;
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
        let mut sockets: Vec<_> = primaries
            .into_iter()
            .map(|s| (SocketId::PRIMARY, s))
            .collect();
        for (id, addr) in addrs.sockets() {
            if id != SocketId::PRIMARY {
                let s = bind_udp(addr)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
                sockets.push((id, (s, None)));
            }
        }
        Ok(Group { addrs, sockets })
    }
}

/// The `<Hi!>` liveness answer for `data`, if it is one (a netcat user's trailing newline
/// is answered with one).
pub fn answer_hi(data: &[u8]) -> Option<Vec<u8>> {
    let mut answer = Vec::new();
    is_hi(data).then(|| {
        answer_hi_into(data, &mut answer);
        answer
    })
}

/// `<Hi!>`, with or without a trailing newline (`\n` or `\r\n`).
fn is_hi(data: &[u8]) -> bool {
    let trimmed = data.strip_suffix(b"\n").unwrap_or(data);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    trimmed == HI_REQUEST
}

/// Write the answer to `data`, a `<Hi!>` check ([`is_hi`]), into `out`.
fn answer_hi_into(data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(HI_RESPONSE);
    if data.last() == Some(&b'\n') {
        out.push(b'\n');
    }
}

/// [`IoStats`] shared by the receive tasks and the server loop.
#[derive(Default)]
struct SharedStats {
    stun_answered: AtomicU64,
    hi_answered: AtomicU64,
    malformed: AtomicU64,
    stun_limited: AtomicU64,
}

impl SharedStats {
    fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> IoStats {
        IoStats {
            stun_answered: self.stun_answered.load(Ordering::Relaxed),
            hi_answered: self.hi_answered.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            stun_limited: self.stun_limited.load(Ordering::Relaxed),
        }
    }
}

/// What every receive task shares.
struct Shared {
    outs: Arc<Outs>,
    registry: Arc<Mutex<Rendezvous>>,
    /// One STUN responder per group.
    responders: Vec<StunResponder>,
    /// The per-source limit of STUN requests and `<Hi!>` checks, over every socket.
    stun_limiter: Mutex<Limiter>,
    stats: SharedStats,
    counters: Counters,
    metrics: UdpMetrics,
    /// Told after a receive task fed the registry frames: the server loop then looks
    /// again at when its timers are due.
    wake: Notify,
}

/// Metric handles the receive tasks count into directly (once per batch).
struct Counters {
    relay: metrics::Counter,
    stun: metrics::Counter,
    hi: metrics::Counter,
}

/// Serve on `sockets` until `shutdown` completes.
pub async fn run(
    sockets: ServerSockets,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let ServerSockets { groups } = sockets;
    let all: Vec<_> = groups.iter().map(|g| g.addrs.sockets()).collect();
    let workers = groups.first().map_or(0, |g| {
        g.sockets
            .iter()
            .filter(|(id, _)| *id == SocketId::PRIMARY)
            .count()
    });
    info!(addresses = ?all, workers, "rendezvous server listening (UDP: STUN binding, <Hi!>, punch registry)");
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
    let metrics = UdpMetrics::new();
    let mut publish = tokio::time::interval(PUBLISH_INTERVAL);
    publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut outs = Vec::new();
    for (group, g) in groups.into_iter().enumerate() {
        for (id, (socket, twin)) in g.sockets {
            let local = socket.local_addr()?;
            let state = ancillary::udp_state(&socket, local)?;
            let twin = match twin {
                Some(t) => Some(Twin {
                    state: ancillary::udp_state(&t, local)?,
                    socket: t,
                }),
                None => None,
            };
            outs.push(Out {
                group,
                id,
                socket: Arc::new(socket),
                state,
                twin,
                ipv6: local.is_ipv6(),
                dual: crate::socket::family::is_dual_stack_any(local),
            });
        }
    }
    let outs = Arc::new(Outs(outs));
    let shared = Arc::new(Shared {
        outs: outs.clone(),
        registry: registry.clone(),
        responders,
        stun_limiter: Mutex::new(Limiter::new(cfg.stun_limit)),
        stats: SharedStats::default(),
        counters: Counters {
            relay: metrics.request_counter(UdpRequest::Relay),
            stun: metrics.request_counter(UdpRequest::Stun),
            hi: metrics.request_counter(UdpRequest::Hi),
        },
        metrics,
        wake: Notify::new(),
    });
    let metrics = &shared.metrics;
    let mut tasks = Vec::new();
    for i in 0..outs.0.len() {
        tasks.push(AbortOnDrop(tokio::spawn(recv_task(shared.clone(), i))));
    }

    tokio::pin!(shutdown);
    loop {
        let wake = lock(&registry)
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => {
                let stats = shared.stats.snapshot();
                info!(?stats, registry = ?lock(&registry).stats(), "server stopping");
                return Ok(());
            }
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
            _ = publish.tick() => {
                let reg = lock(&registry);
                let (peers, relays) = (reg.peer_count(), reg.relay_session_count());
                metrics.publish(&shared.stats.snapshot(), reg.stats(), peers, relays);
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

/// What one receive batch counted, added to the shared counters once at its end.
#[derive(Default)]
struct BatchCounts {
    relayed: u64,
    stun: u64,
    hi: u64,
    stun_answered: u64,
    hi_answered: u64,
    limited: u64,
    malformed: u64,
}

/// One socket's receive loop. Batched (recvmmsg with GRO, through quinn-udp: one system
/// call for up to [`quinn::udp::BATCH_SIZE`] buffers), because the server's cost is mostly
/// system calls. Relayed datagrams are forwarded right here (one lock per batch, one GSO
/// send per train of datagrams to the same peer); STUN requests and `<Hi!>` checks are
/// answered here too (the rate limiter locked once per batch, the answers encoded into
/// buffers kept across batches and sent with one sendmmsg); only rendezvous frames go to
/// the server loop. Rendezvous frames are taken here too ([`frames`]): the registry under
/// its lock, the signatures it asks for checked outside it.
async fn recv_task(shared: Arc<Shared>, index: usize) {
    let outs = &*shared.outs;
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
    let mut answers = Answers::new();
    let mut frames = frames::Frames::default();
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
        // One clock reading and at most one lock of each kind per batch.
        let now = Instant::now().into_std();
        let mut reg = None;
        let mut limiter = None;
        let mut counts = BatchCounts::default();
        for (m, buf) in meta.iter().zip(bufs.iter()).take(n) {
            let stride = m.stride.max(1);
            let from = crate::socket::family::canonical(m.addr);
            for data in buf[..m.len.min(buf.len())].chunks(stride) {
                if id == SocketId::PRIMARY && data.first() == Some(&wire::RELAY_TAG) {
                    let reg = reg.get_or_insert_with(|| lock(&shared.registry));
                    counts.relayed += 1;
                    if let Some(to) = relay_datagram(outs, group, reg, now, from, data) {
                        if let Some(out) = outs.toward(group, id, to) {
                            train.push(out, to, data);
                        }
                    }
                    continue;
                }
                let hi = is_hi(data);
                if !hi && !stun::looks_like_stun(data) {
                    if id == SocketId::PRIMARY && wire::is_frame(data) {
                        if !frames.push(from, data) {
                            counts.malformed += 1;
                        }
                    } else {
                        counts.malformed += 1;
                        debug!(%from, len = data.len(), "unrecognised datagram");
                    }
                    continue;
                }
                if hi {
                    counts.hi += 1;
                } else {
                    counts.stun += 1;
                }
                let limiter = limiter.get_or_insert_with(|| lock(&shared.stun_limiter));
                if !limiter.allow(now, from.ip()) {
                    counts.limited += 1;
                    continue;
                }
                let buf = answers.next_buf();
                if hi {
                    answer_hi_into(data, buf);
                    counts.hi_answered += 1;
                    answers.queue(me, from);
                    continue;
                }
                match shared.responders[group].respond_into(id, from, data, buf) {
                    Some((socket, dest)) => {
                        counts.stun_answered += 1;
                        match outs.toward(group, socket, dest) {
                            Some(out) => answers.queue(out, dest),
                            None => debug!(to = %dest, "no socket reaches that address family"),
                        }
                    }
                    None => {
                        counts.malformed += 1;
                        debug!(%from, "STUN message not answered");
                    }
                }
            }
        }
        drop(limiter);
        if !frames.is_empty() {
            let registry = &*shared.registry;
            frames.handle(
                registry,
                &mut reg,
                now,
                outs,
                group,
                &mut answers,
                &shared.metrics,
            );
            shared.wake.notify_one();
        }
        drop(reg);
        if answers.len() > 0 {
            answers.flush();
        }
        train.flush();
        counts.publish(&shared);
    }
}

impl BatchCounts {
    fn publish(&self, shared: &Shared) {
        let (c, s) = (&shared.counters, &shared.stats);
        for (counter, n) in [
            (&c.relay, self.relayed),
            (&c.stun, self.stun),
            (&c.hi, self.hi),
        ] {
            if n > 0 {
                counter.increment(n);
            }
        }
        SharedStats::add(&s.stun_answered, self.stun_answered);
        SharedStats::add(&s.hi_answered, self.hi_answered);
        SharedStats::add(&s.stun_limited, self.limited);
        SharedStats::add(&s.malformed, self.malformed);
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
    use super::send::GSO_MAX_BYTES;
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
