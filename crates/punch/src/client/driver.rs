//! The client's driver task: the IO around [`punch_proto::client::Session`].
//!
//! Owns the session, the tasks that open, accept and watch QUIC connections (in one
//! `JoinSet`, so they stop with the driver), the watch on the host's local address, and
//! the translation of the session's events into path-table writes, connection replies
//! and [`ClientEvent`]s. It decides nothing about paths itself: every such decision is
//! the session's.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use punch_proto::client::{
    Config, ConnectError, ConnectId, Event, PeerKey, Route, Session, Verdict,
};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::outbox::Outbox;
use super::{
    lock, ClientConfig, ClientError, ClientEvent, Command, Current, Introduced, PathReason,
    PeerConnection, TcpIncoming,
};
use crate::identity::{Identity, PublicKey};
use crate::known_peers::KnownPeers;
use crate::paths::PathTable;
use crate::socket::{ControlDatagram, DemuxSocket};
use crate::tcp::client::TcpConnector;
use crate::tcp::punch::TcpLink;
use crate::tls;

/// How often the host's local address is looked at (the route toward the server): a
/// host that moved to another network, or got a new address by DHCP, is noticed within
/// this long.
pub const ADDRESS_POLL: Duration = Duration::from_millis(250);
/// How long a closed connection's route outlives it, so quinn's CONNECTION_CLOSE (sent
/// after the connection reports closed) still reaches the peer.
const CLOSE_LINGER: Duration = Duration::from_secs(3);
/// Messages from the driver's tasks.
const INTERNAL_QUEUE: usize = 256;
/// Incoming handshakes at once; more are refused (a flood must not pile up tasks).
const MAX_HANDSHAKES: usize = 64;

/// Messages from the driver's tasks to the driver.
enum Internal {
    /// An outgoing QUIC handshake ended.
    Connected(PeerKey, Result<quinn::Connection, String>),
    /// An incoming connection from an introduced peer completed its handshake.
    Accepted(PeerKey, quinn::Connection),
    /// A connection closed.
    Closed(PeerKey, usize),
    /// A TCP attempt the session asked for ended.
    TcpDone {
        name: String,
        request: Option<(ConnectId, ConnectError)>,
        result: Result<Box<TcpLink>, ConnectError>,
    },
}

pub(super) struct Setup {
    pub cfg: ClientConfig,
    /// The keys we know for peer names, and their file.
    pub known: Arc<KnownPeers>,
    pub identity: Arc<Identity>,
    pub socket: DemuxSocket,
    pub local: SocketAddr,
    /// The server's address in the family we do not register over (Happy Eyeballs').
    pub server_other: Option<SocketAddr>,
    pub endpoint: quinn::Endpoint,
    pub introduced: Introduced,
    pub current: Current,
    pub events: mpsc::Sender<ClientEvent>,
    pub ready: oneshot::Sender<Result<SocketAddr, ClientError>>,
    /// The TCP transport, under [`super::TransportMode::Auto`].
    pub tcp: Option<TcpConnector>,
    /// Connections peers open to us over TCP.
    pub tcp_incoming: Option<TcpIncoming>,
}

/// What the driver holds for a peer the session knows.
struct Slot {
    name: String,
    virt: SocketAddr,
    conn: Option<quinn::Connection>,
    /// Where a TCP connection to this peer goes to take over the QUIC connection handed
    /// out (see [`crate::conversation`]).
    mover: Option<oneshot::Sender<TcpLink>>,
}

pub(super) struct Driver {
    cfg: ClientConfig,
    known: Arc<KnownPeers>,
    identity: Arc<Identity>,
    socket: DemuxSocket,
    paths: Arc<PathTable>,
    local_port: u16,
    /// The IPv4 and IPv6 addresses (the latter on a dual-stack socket) this host sends
    /// from toward the server.
    local_ips: Vec<IpAddr>,
    endpoint: quinn::Endpoint,
    session: Session,
    peers: HashMap<PeerKey, Slot>,
    replies: HashMap<ConnectId, oneshot::Sender<Result<PeerConnection, ConnectError>>>,
    introduced: Introduced,
    current: Current,
    events: Outbox,
    ready: Option<oneshot::Sender<Result<SocketAddr, ClientError>>>,
    tasks: JoinSet<()>,
    internal_tx: mpsc::Sender<Internal>,
    tcp: Option<TcpConnector>,
    tcp_incoming: Option<TcpIncoming>,
    /// Virtual addresses to drop once their closed connection's last datagrams left.
    lingering: Vec<(Instant, SocketAddr)>,
}

/// Where the kernel's route lookup is pointed for a family the server has no address in:
/// any global address of it will do (nothing is sent), so documentation ones.
const ROUTE_PROBE_V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
const ROUTE_PROBE_V6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

/// The addresses this host sends from toward the server, in each family the socket takes
/// (IPv6 only on a dual-stack socket); unknown ones (no route) left out.
fn local_ips(cfg: &ClientConfig, server_other: Option<SocketAddr>, ipv6: bool) -> Vec<IpAddr> {
    let bind = cfg.bind.ip();
    if !bind.is_unspecified() {
        return vec![bind];
    }
    let toward = |v4: bool| {
        [Some(cfg.server), server_other]
            .into_iter()
            .flatten()
            .find(|a| a.is_ipv4() == v4)
            .unwrap_or_else(|| SocketAddr::new(if v4 { ROUTE_PROBE_V4 } else { ROUTE_PROBE_V6 }, 9))
    };
    let families: &[bool] = if ipv6 { &[false, true] } else { &[true] };
    families
        .iter()
        .map(|&v6| crate::nat::local_ip_toward(toward(!v6), bind))
        .filter(|ip| !ip.is_unspecified())
        .collect()
}

/// Our host addresses: each local address on our port.
fn private_addrs(ips: &[IpAddr], port: u16) -> Vec<SocketAddr> {
    ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
}

impl Driver {
    pub(super) fn new(s: Setup) -> Result<Driver, ClientError> {
        let local_ips = local_ips(&s.cfg, s.server_other, s.local.is_ipv6());
        let session_cfg = Config {
            server: s.cfg.server,
            server_other: s.server_other,
            name: s.cfg.name.clone(),
            signer: s.identity.signing_key(),
            private: private_addrs(&local_ips, s.local.port()),
            server_keepalive: s.cfg.server_keepalive,
            server_timeout: s.cfg.server_timeout,
            punch: s.cfg.punch.clone(),
            relay: s.cfg.relay,
            tcp_fallback: s.tcp.is_some(),
            peer_keys: s.known.shared(),
        };
        let now = Instant::now().into_std();
        let session = Session::new(session_cfg, now, rand::rng().random())?;
        let (internal_tx, _) = mpsc::channel(1);
        Ok(Driver {
            paths: s.socket.paths().clone(),
            local_port: s.local.port(),
            local_ips,
            cfg: s.cfg,
            known: s.known,
            identity: s.identity,
            socket: s.socket,
            endpoint: s.endpoint,
            session,
            peers: HashMap::new(),
            replies: HashMap::new(),
            introduced: s.introduced,
            current: s.current,
            events: Outbox::new(s.events),
            ready: Some(s.ready),
            tasks: JoinSet::new(),
            internal_tx,
            tcp: s.tcp,
            tcp_incoming: s.tcp_incoming,
            lingering: Vec::new(),
        })
    }

    pub(super) async fn run(
        mut self,
        mut ctl_rx: mpsc::Receiver<ControlDatagram>,
        mut cmd_rx: mpsc::Receiver<Command>,
    ) {
        let (internal_tx, mut internal_rx) = mpsc::channel(INTERNAL_QUEUE);
        self.internal_tx = internal_tx;
        self.tasks.spawn(accept_loop(
            self.endpoint.clone(),
            self.introduced.clone(),
            self.internal_tx.clone(),
        ));
        let watch_address = self.cfg.bind.ip().is_unspecified();
        let (tcp_tx, mut tcp_rx) = mpsc::channel(16);
        if let Some(incoming) = self.tcp_incoming.take() {
            // Owned by the driver's JoinSet: stops with it.
            self.tasks.spawn(async move {
                let mut incoming = incoming.lock().await;
                while let Some(link) = incoming.recv().await {
                    if tcp_tx.send(link).await.is_err() {
                        return;
                    }
                }
            });
        }
        let mut address_poll = tokio::time::interval(ADDRESS_POLL);
        address_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.flush();
        loop {
            let wake = self.next_wake();
            tokio::select! {
                d = ctl_rx.recv() => match d {
                    Some(d) => {
                        let now = Instant::now().into_std();
                        self.session.handle_datagram(now, d.from, &d.data);
                    }
                    None => return,
                },
                c = cmd_rx.recv() => match c {
                    Some(c) => self.on_command(c),
                    None => return,
                },
                Some(m) = internal_rx.recv() => self.on_internal(m),
                Some(link) = tcp_rx.recv() => self.on_tcp_link(link, false),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                _ = address_poll.tick(), if watch_address => self.check_address(),
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.events.room() => {}
            }
            self.events.flush();
            let now = Instant::now();
            self.session.handle_timeout(now.into_std());
            self.drop_lingering(now);
            self.flush();
        }
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let session = self.session.poll_timeout().map(Instant::from_std);
        let linger = self.lingering.iter().map(|(t, _)| *t).min();
        [session, linger]
            .into_iter()
            .flatten()
            .fold(far, Instant::min)
    }

    fn drop_lingering(&mut self, now: Instant) {
        let socket = &self.socket;
        self.lingering.retain(|(t, virt)| {
            if *t <= now {
                socket.forget_peer(*virt);
                false
            } else {
                true
            }
        });
    }

    /// The host's address toward the server changed: tell the session (every peer
    /// punches again; QUIC keeps its connections over the virtual addresses).
    fn check_address(&mut self) {
        let server_other = self.session.config().server_other;
        let ipv6 = self.socket.local_addr().is_ok_and(|a| a.is_ipv6());
        let ips = local_ips(&self.cfg, server_other, ipv6);
        // No route at all (a link going down mid-move): wait for the new one.
        if ips == self.local_ips || ips.is_empty() {
            return;
        }
        info!(old = ?self.local_ips, new = ?ips, "local address changed");
        self.local_ips = ips;
        let now = Instant::now().into_std();
        self.session
            .set_local_addrs(now, private_addrs(&self.local_ips, self.local_port));
        // The address of the family we registered over, else the first.
        let v4 = self.cfg.server.is_ipv4();
        let local = (self.local_ips.iter())
            .find(|ip| ip.is_ipv4() == v4)
            .unwrap_or(&self.local_ips[0]);
        self.app_event(ClientEvent::LocalAddress { local: *local });
    }

    fn on_command(&mut self, c: Command) {
        let now = Instant::now().into_std();
        match c {
            Command::Connect { target, reply } => match self.session.connect(now, &target) {
                Ok(id) => {
                    self.replies.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::SetNat(classic) => self.session.set_nat(now, classic),
            Command::Close(done) => {
                self.session.close();
                self.flush();
                let _ = done.send(());
            }
        }
    }

    fn on_internal(&mut self, m: Internal) {
        let now = Instant::now().into_std();
        match m {
            Internal::Connected(key, Ok(conn)) => {
                let verdict = self.session.connection_up(now, key, true);
                self.keep_or_close(key, conn, verdict);
            }
            Internal::Connected(key, Err(e)) => {
                debug!(error = %e, "QUIC handshake failed");
                self.session.connection_failed(now, key, e);
            }
            Internal::Accepted(key, conn) => {
                let verdict = self.session.connection_up(now, key, false);
                self.keep_or_close(key, conn, verdict);
            }
            Internal::TcpDone {
                name,
                request,
                result,
            } => self.on_tcp_done(&name, request, result),
            Internal::Closed(key, id) => {
                let current = self
                    .peers
                    .get_mut(&key)
                    .filter(|s| s.conn.as_ref().is_some_and(|c| c.stable_id() == id));
                if let Some(slot) = current {
                    slot.conn = None;
                    self.session.connection_closed(now, key);
                }
            }
        }
    }

    fn keep_or_close(&mut self, key: PeerKey, conn: quinn::Connection, verdict: Verdict) {
        match verdict {
            Verdict::Keep => {
                let Some(slot) = self.peers.get_mut(&key) else {
                    conn.close(1u32.into(), b"not introduced");
                    return;
                };
                slot.conn = Some(conn.clone());
                let tx = self.internal_tx.clone();
                self.tasks.spawn(async move {
                    conn.closed().await;
                    let _ = tx.send(Internal::Closed(key, conn.stable_id())).await;
                });
            }
            Verdict::Duplicate => conn.close(2u32.into(), b"duplicate connection"),
            Verdict::NotIntroduced => conn.close(1u32.into(), b"not introduced"),
        }
    }

    fn app_event(&mut self, ev: ClientEvent) {
        self.events.push(ev);
    }

    /// The application's handle on `key`'s QUIC connection. The first one handed out
    /// carries the slot through which a TCP connection may take over (with TCP on).
    fn peer_connection(&mut self, key: PeerKey) -> Option<PeerConnection> {
        let path = self.session.path(&key);
        let tcp = self.tcp.is_some();
        let slot = self.peers.get_mut(&key)?;
        let conn = slot.conn.clone()?;
        let moved = if tcp && slot.mover.is_none() {
            let (tx, rx) = oneshot::channel();
            slot.mover = Some(tx);
            Some(rx)
        } else {
            None
        };
        let name = slot.name.clone();
        Some(PeerConnection::quic(
            name,
            PublicKey::from_bytes(key),
            conn,
            path,
            moved,
        ))
    }

    /// A TCP connection to a peer: it takes over the peer's QUIC connection if one was
    /// handed out (the peer, or we, found no direct UDP path), else it is a new one.
    fn on_tcp_link(&mut self, link: TcpLink, opened_by_us: bool) {
        let key = *link.key.as_bytes();
        let mover = self.peers.get_mut(&key).and_then(|s| s.mover.take());
        let link = match mover {
            Some(mover) => {
                let (name, path) = (link.name.clone(), link.path);
                match mover.send(link) {
                    Ok(()) => {
                        info!(peer = %name, ?path, "moved to TCP");
                        self.app_event(ClientEvent::Path {
                            peer: name,
                            key: PublicKey::from_bytes(key),
                            path: Some(path),
                            reason: PathReason::MovedToTcp,
                        });
                        return;
                    }
                    // The application let go of the connection that would have moved (it
                    // kept another one to the same peer): the link becomes a connection
                    // of its own rather than being dropped unseen.
                    Err(link) => {
                        info!(peer = %name, "connection to move is gone; TCP link handed over");
                        link
                    }
                }
            }
            None => link,
        };
        self.app_event(ClientEvent::Incoming(PeerConnection::tcp(
            link,
            opened_by_us,
        )));
    }

    fn on_tcp_done(
        &mut self,
        name: &str,
        request: Option<(ConnectId, ConnectError)>,
        result: Result<Box<TcpLink>, ConnectError>,
    ) {
        match (request, result) {
            (Some((id, _)), Ok(link)) => {
                if let Some(reply) = self.replies.remove(&id) {
                    let _ = reply.send(Ok(PeerConnection::tcp(*link, true)));
                }
            }
            (Some((id, udp)), Err(tcp)) => {
                if let Some(reply) = self.replies.remove(&id) {
                    let _ = reply.send(Err(ConnectError::NoPathAnyTransport {
                        udp: Box::new(udp),
                        tcp: Box::new(tcp),
                    }));
                }
            }
            (None, Ok(link)) => self.on_tcp_link(*link, true),
            (None, Err(e)) => {
                // The connection stays where it is (the relay): say so.
                let key = self
                    .peers
                    .iter()
                    .find(|(_, s)| s.name == name)
                    .map(|(k, _)| *k);
                debug!(error = %e, "no direct TCP path");
                if let Some(key) = key {
                    self.app_event(ClientEvent::Path {
                        peer: self.name_of(&key),
                        key: PublicKey::from_bytes(key),
                        path: self.session.path(&key),
                        reason: PathReason::NoTcpPath(e.to_string()),
                    });
                }
            }
        }
    }

    /// Send what the session wants sent and carry out what it decided.
    fn flush(&mut self) {
        while let Some(t) = self.session.poll_transmit() {
            if let Err(e) = self.socket.send_to(&t.payload, t.dest, t.ttl) {
                debug!(dest = %t.dest, error = %e, "send failed");
            }
        }
        while let Some(ev) = self.session.poll_event() {
            self.on_event(ev);
        }
        // Handling events may have queued more (none do today, but keep the invariant).
        while let Some(t) = self.session.poll_transmit() {
            if let Err(e) = self.socket.send_to(&t.payload, t.dest, t.ttl) {
                debug!(dest = %t.dest, error = %e, "send failed");
            }
        }
    }

    fn name_of(&self, key: &PeerKey) -> String {
        self.peers
            .get(key)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Registered { public } => match self.ready.take() {
                Some(ready) => {
                    info!(%public, "registered with {}", self.cfg.server);
                    let _ = ready.send(Ok(public));
                }
                None => {
                    info!(%public, "the server sees us at a new address");
                    self.app_event(ClientEvent::PublicAddress { public });
                }
            },
            Event::RegistrationRefused { code, reason } => match self.ready.take() {
                Some(ready) => {
                    let _ = ready.send(Err(ClientError::Refused { code, reason }));
                }
                None => {
                    warn!(%reason, "server refused our registration refresh");
                    self.app_event(ClientEvent::RegistrationRefused { reason });
                }
            },
            Event::ServerLost { .. } => match self.ready.take() {
                Some(ready) => {
                    let err =
                        ClientError::ServerUnreachable(self.cfg.server, self.cfg.server_timeout);
                    let _ = ready.send(Err(err));
                }
                None => self.app_event(ClientEvent::ServerLost),
            },
            Event::ServerBack { public } => self.app_event(ClientEvent::ServerBack { public }),
            Event::PeerAdded { peer, name } => {
                let Some(virt) = self.paths.allocate() else {
                    warn!(%name, "no virtual address left for another peer");
                    return;
                };
                lock(&self.introduced).insert(PublicKey::from_bytes(peer));
                self.peers.insert(
                    peer,
                    Slot {
                        name,
                        virt,
                        conn: None,
                        mover: None,
                    },
                );
            }
            Event::RelaySessions { peer, sessions } => {
                if let Some(slot) = self.peers.get(&peer) {
                    let sessions: Vec<u64> = sessions.iter().flatten().copied().collect();
                    self.socket.map_relay_sessions(slot.virt, &sessions);
                }
            }
            Event::Alias { peer, addr } => {
                if let Some(slot) = self.peers.get(&peer) {
                    self.paths.alias(addr, slot.virt);
                }
            }
            Event::Route { peer, route, path } => {
                let Some(slot) = self.peers.get(&peer) else {
                    return;
                };
                debug!(peer = %slot.name, ?route, "route");
                self.paths.set_active(slot.virt, route);
                if route != Route::None {
                    // The last datagram most likely died with the old path: its
                    // acknowledgement over the new one restarts QUIC's loss recovery.
                    self.socket.replay_last(slot.virt);
                }
                let key = PublicKey::from_bytes(peer);
                let mut current = lock(&self.current);
                match path {
                    Some(p) => current.insert(key, p),
                    None => current.remove(&key),
                };
            }
            Event::OpenConnection { peer } => {
                let Some(slot) = self.peers.get(&peer) else {
                    return;
                };
                let (endpoint, identity, keepalive, virt) = (
                    self.endpoint.clone(),
                    self.identity.clone(),
                    self.cfg.peer_keepalive,
                    slot.virt,
                );
                let tx = self.internal_tx.clone();
                self.tasks.spawn(async move {
                    let key = PublicKey::from_bytes(peer);
                    let r = quic_connect(&endpoint, &identity, key, keepalive, virt).await;
                    let _ = tx.send(Internal::Connected(peer, r)).await;
                });
            }
            Event::PathChanged { peer, path, reason } => {
                info!(peer = %self.name_of(&peer), ?path, %reason, "path changed");
                self.app_event(ClientEvent::Path {
                    peer: self.name_of(&peer),
                    key: PublicKey::from_bytes(peer),
                    path,
                    reason,
                });
            }
            Event::DirectFailed { peer, reason } => {
                info!(peer = %self.name_of(&peer), %reason, "no direct path");
                self.app_event(ClientEvent::DirectFailed {
                    peer: self.name_of(&peer),
                    reason,
                });
            }
            Event::ConnectDone { id, result } => {
                let Some(reply) = self.replies.remove(&id) else {
                    return;
                };
                let result =
                    result.and_then(|key| self.peer_connection(key).ok_or(ConnectError::Closed));
                let _ = reply.send(result);
            }
            Event::Incoming { peer } => {
                if let Some(pc) = self.peer_connection(peer) {
                    self.app_event(ClientEvent::Incoming(pc));
                }
            }
            Event::IncomingFailed { name, error } => {
                self.app_event(ClientEvent::IncomingFailed { peer: name, error })
            }
            Event::PeerRemoved { peer, linger } => {
                let Some(slot) = self.peers.remove(&peer) else {
                    return;
                };
                let key = PublicKey::from_bytes(peer);
                lock(&self.introduced).remove(&key);
                lock(&self.current).remove(&key);
                if linger {
                    self.lingering
                        .push((Instant::now() + CLOSE_LINGER, slot.virt));
                } else {
                    self.socket.forget_peer(slot.virt);
                }
            }
            Event::Rebind => match self.socket.rebind() {
                Ok(local) => {
                    info!(%local, "moved to a fresh local port");
                    self.local_port = local.port();
                    let now = Instant::now().into_std();
                    let private = private_addrs(&self.local_ips, self.local_port);
                    self.session.rebound(now, private);
                    self.app_event(ClientEvent::Rebound { local });
                }
                Err(e) => warn!(error = %e, "cannot move to a fresh local port"),
            },
            Event::TryTcp { name, request } => {
                let Some(tcp) = self.tcp.clone() else {
                    if let Some((id, err)) = request {
                        if let Some(reply) = self.replies.remove(&id) {
                            let _ = reply.send(Err(err));
                        }
                    }
                    return;
                };
                info!(peer = %name, "trying a direct TCP connection");
                let tx = self.internal_tx.clone();
                self.tasks.spawn(async move {
                    // A direct path only: the UDP relay already carries, or could not.
                    let result = tcp.connect(&name, false).await.map(Box::new);
                    let _ = tx
                        .send(Internal::TcpDone {
                            name,
                            request,
                            result,
                        })
                        .await;
                });
            }
            Event::PeerKeyLearned {
                name,
                key,
                replaced,
                recorded,
            } => {
                if recorded {
                    self.known.store(&name, &key);
                }
                info!(peer = %name, key = %PublicKey::from_bytes(key), "peer key recorded");
                let ev = ClientEvent::key_learned(&self.known, name, key, replaced, recorded);
                self.app_event(ev);
            }
            Event::PeerKeyRefused {
                name,
                known,
                offered,
            } => {
                warn!(peer = %name, "introduced with another key than the known one: refused");
                let ev = ClientEvent::key_refused(&self.known, name, known, offered);
                self.app_event(ev);
            }
            Event::PeerNat { peer, classic } => {
                let peer = self.name_of(&peer);
                self.app_event(ClientEvent::PeerNat { peer, classic });
            }
            other => debug!(?other, "unhandled session event"),
        }
    }
}

async fn quic_connect(
    endpoint: &quinn::Endpoint,
    identity: &Identity,
    key: PublicKey,
    keepalive: Duration,
    virt: SocketAddr,
) -> Result<quinn::Connection, String> {
    let mut cfg = tls::client_config(identity, key).map_err(|e| e.to_string())?;
    cfg.transport_config(tls::transport_config(keepalive).map_err(|e| e.to_string())?);
    let connecting = endpoint
        .connect_with(cfg, virt, tls::SERVER_NAME)
        .map_err(|e| e.to_string())?;
    connecting.await.map_err(|e| e.to_string())
}

/// Accept incoming connections from peers we were introduced to and hand them to the
/// driver (whose session decides whether to keep them).
async fn accept_loop(
    endpoint: quinn::Endpoint,
    introduced: Introduced,
    internal: mpsc::Sender<Internal>,
) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { return };
                if handshakes.len() >= MAX_HANDSHAKES {
                    incoming.refuse();
                    continue;
                }
                let introduced = introduced.clone();
                let internal = internal.clone();
                handshakes.spawn(async move {
                    let remote = incoming.remote_address();
                    let connection = match incoming.await {
                        Ok(c) => c,
                        Err(e) => {
                            debug!(%remote, error = %e, "incoming handshake failed");
                            return;
                        }
                    };
                    let Some(key) = tls::peer_public_key(&connection) else {
                        return;
                    };
                    if !lock(&introduced).contains(&key) {
                        connection.close(1u32.into(), b"not introduced");
                        return;
                    }
                    let _ = internal
                        .send(Internal::Accepted(*key.as_bytes(), connection))
                        .await;
                });
            }
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
        }
    }
}
