//! The client's control task: everything between "connect to bob" and a working path.
//!
//! Owns, per peer: the current punching session and its [`Agent`], the direct path once
//! punching found one and its liveness checks, the relay route, the QUIC connection's
//! progress, and the retry schedule. It points each peer's virtual address
//! ([`PathTable`]) at the best path and tells the application when that changes.
//!
//! # Paths
//! - [`RelayMode::Auto`]: the peer's virtual address starts on the relay, so QUIC (and the
//!   first message) flows at once; punching runs in parallel and the route moves to the
//!   direct path when it answers. A direct path that stops answering its checks falls back
//!   to the relay, and the initiator asks the server for a new introduction (a fresh
//!   punching session) with backoff. A failed punch is retried the same way.
//! - [`RelayMode::Never`]: QUIC starts only once punching found a path.
//! - [`RelayMode::Only`]: no punching.
//!
//! The server relays per session; a session the server does not know (it restarted) is
//! answered with `RelayClosed`, and the initiator re-registers and asks for a new one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use punch_proto::agent::{Agent, CandidateKind};
use punch_proto::nat::Classic;
use punch_proto::wire::{ErrorCode, Frame, PeerInfo, Side, HI_RESPONSE};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{
    lock, ClientConfig, ClientEvent, Command, ConnectError, Current, Introduced, PathInfo,
    PeerConnection, RelayMode, INITIAL_RTO, MAX_RTO,
};
use crate::identity::{Identity, PublicKey};
use crate::paths::{Active, PathTable, RelayRoute};
use crate::socket::{ControlDatagram, DemuxSocket};

mod paths;
mod quic;

use paths::{direct_info, emit, relay_info, set_path};
pub(crate) use quic::accept_loop;
use quic::{quic_connect, watch_close};

/// Most peers at once (bounds what a server or peer can make us hold).
pub const MAX_PEERS: usize = 256;
/// Interval of liveness checks on a direct path: a probe the peer answers. Short, so a
/// path that died (a NAT forgot its mapping) is left within seconds, not at QUIC's idle
/// timeout; one small datagram a second is cheap.
pub const PATH_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A direct path with no answer to its checks for this long is dead (three checks lost).
pub const PATH_DEAD_AFTER: Duration = Duration::from_millis(3500);
/// First wait before punching again after a failed attempt; doubles up to
/// [`REPUNCH_MAX`].
pub const REPUNCH_FIRST: Duration = Duration::from_secs(5);
/// Longest wait between punching attempts.
pub const REPUNCH_MAX: Duration = Duration::from_secs(120);
/// Wait before punching again after a direct path died (its NATs may need a moment).
pub const REPUNCH_AFTER_LOSS: Duration = Duration::from_secs(1);
/// A peer introduced to us that never connects is forgotten after this long.
pub const PASSIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Registration refresh interval for a host with no NAT and no filter (`open`): two
/// refreshes fit in the server's 90 s registration lifetime.
pub const OPEN_SERVER_KEEPALIVE: Duration = Duration::from_secs(40);
/// Sequence numbers of path checks have this bit set; the agent's never do.
/// How long a closed connection's route outlives it, so quinn's CONNECTION_CLOSE (sent
/// after the connection reports closed) still reaches the peer.
const CLOSE_LINGER: Duration = Duration::from_secs(3);
const CHECK_BIT: u32 = 1 << 31;
/// Messages from tasks back to the control task.
const INTERNAL_QUEUE: usize = 256;

/// Messages from the QUIC tasks to the control task.
pub(crate) enum Internal {
    /// An outgoing QUIC handshake ended.
    Connected(PublicKey, Result<quinn::Connection, String>),
    /// An incoming connection from an introduced peer completed its handshake.
    Accepted(PublicKey, quinn::Connection),
    /// A connection closed.
    Closed(PublicKey, u64),
}

pub(crate) struct Setup {
    pub cfg: ClientConfig,
    pub identity: Arc<Identity>,
    pub socket: DemuxSocket,
    pub endpoint: quinn::Endpoint,
    pub register: Vec<u8>,
    pub reg_txn: u64,
    pub private: Vec<SocketAddr>,
    pub introduced: Introduced,
    pub current: Current,
    pub events: mpsc::Sender<ClientEvent>,
}

struct PendingConnect {
    target: String,
    frame: Vec<u8>,
    /// The application's request; `None` when the control task asks again by itself.
    reply: Option<oneshot::Sender<Result<PeerConnection, ConnectError>>>,
    next: Instant,
    rto: Duration,
    give_up: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Direct {
    addr: SocketAddr,
    kind: CandidateKind,
    rtt: Duration,
}

#[derive(Debug)]
struct Check {
    addr: SocketAddr,
    next: Instant,
    last_answer: Instant,
    seq: u32,
}

#[derive(Debug)]
enum Quic {
    NotStarted,
    Connecting,
    Up(quinn::Connection),
}

struct Peer {
    name: String,
    virt: SocketAddr,
    info: PeerInfo,
    initiator: bool,
    session: u64,
    side: Side,
    agent: Option<Agent>,
    direct: Option<Direct>,
    check: Option<Check>,
    /// Why the relay cannot be used, once the server said so.
    relay_refused: Option<String>,
    reply: Option<oneshot::Sender<Result<PeerConnection, ConnectError>>>,
    quic: Quic,
    /// The path kind last reported to the application.
    reported: &'static str,
    retry_at: Option<Instant>,
    backoff: Duration,
    created: Instant,
    /// The peer's NAT type, when the server told us.
    nat: Option<Classic>,
    /// Both sides asked for each other at once and the peer has the smaller key: its
    /// connection carries the pair, and ours (if one is opening) is closed as a duplicate.
    yielded: bool,
}

pub(crate) struct Control {
    cfg: ClientConfig,
    identity: Arc<Identity>,
    socket: DemuxSocket,
    paths: Arc<PathTable>,
    endpoint: quinn::Endpoint,
    register: Vec<u8>,
    reg_txn: u64,
    private: Vec<SocketAddr>,
    server_ok: bool,
    last_reg_answer: Instant,
    next_register: Instant,
    reg_rto: Duration,
    connects: HashMap<u64, PendingConnect>,
    peers: HashMap<PublicKey, Peer>,
    sessions: HashMap<u64, PublicKey>,
    introduced: Introduced,
    current: Current,
    events: mpsc::Sender<ClientEvent>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: Option<mpsc::Receiver<Internal>>,
    /// Our NAT type, once discovery found it.
    own_nat: Option<Classic>,
}

impl Control {
    pub(crate) fn new(s: Setup) -> Control {
        let (internal_tx, internal_rx) = mpsc::channel(INTERNAL_QUEUE);
        let now = Instant::now();
        Control {
            paths: s.socket.paths().clone(),
            next_register: now + s.cfg.server_keepalive,
            cfg: s.cfg,
            identity: s.identity,
            socket: s.socket,
            endpoint: s.endpoint,
            register: s.register,
            reg_txn: s.reg_txn,
            private: s.private,
            server_ok: true,
            last_reg_answer: now,
            reg_rto: INITIAL_RTO,
            connects: HashMap::new(),
            peers: HashMap::new(),
            sessions: HashMap::new(),
            introduced: s.introduced,
            current: s.current,
            events: s.events,
            internal_tx,
            internal_rx: Some(internal_rx),
            own_nat: None,
        }
    }

    /// Where the accept loop reports incoming connections.
    pub(crate) fn internal(&self) -> mpsc::Sender<Internal> {
        self.internal_tx.clone()
    }

    pub(crate) async fn run(
        mut self,
        mut ctl_rx: mpsc::Receiver<ControlDatagram>,
        mut cmd_rx: mpsc::Receiver<Command>,
    ) {
        let Some(mut internal_rx) = self.internal_rx.take() else {
            return;
        };
        loop {
            let wake = self.next_wake();
            tokio::select! {
                d = ctl_rx.recv() => match d {
                    Some(d) => self.on_datagram(d),
                    None => return,
                },
                c = cmd_rx.recv() => match c {
                    Some(Command::Connect { target, reply }) => self.start_connect(target, Some(reply)),
                    Some(Command::SetNat(classic)) => self.set_own_nat(classic),
                    None => return,
                },
                Some(m) = internal_rx.recv() => self.on_internal(m),
                _ = tokio::time::sleep_until(wake) => {}
            }
            self.on_timeout(Instant::now());
            self.flush();
        }
    }

    fn next_wake(&self) -> Instant {
        let mut t = self.next_register;
        for c in self.connects.values() {
            t = t.min(c.next).min(c.give_up);
        }
        for p in self.peers.values() {
            if let Some(a) = p.agent.as_ref().and_then(|a| a.poll_timeout()) {
                t = t.min(Instant::from_std(a));
            }
            if let Some(c) = &p.check {
                t = t.min(c.next).min(c.last_answer + PATH_DEAD_AFTER);
            }
            if let Some(r) = p.retry_at {
                t = t.min(r);
            }
        }
        t
    }

    fn send(&self, data: &[u8], dest: SocketAddr, ttl: Option<u32>) {
        if let Err(e) = self.socket.send_to(data, dest, ttl) {
            debug!(%dest, error = %e, "send failed");
        }
    }

    fn event(&self, ev: ClientEvent) {
        emit(&self.events, ev);
    }

    fn start_connect(
        &mut self,
        target: String,
        reply: Option<oneshot::Sender<Result<PeerConnection, ConnectError>>>,
    ) {
        let txn: u64 = rand::rng().random();
        let frame = match (Frame::Connect {
            txn,
            target: target.clone(),
        })
        .encode()
        {
            Ok(f) => f,
            Err(e) => {
                if let Some(r) = reply {
                    let err = ConnectError::Refused(ErrorCode::BadRequest, e.to_string());
                    let _ = r.send(Err(err));
                }
                return;
            }
        };
        if self.connects.len() + self.peers.len() >= MAX_PEERS {
            if let Some(r) = reply {
                let _ = r.send(Err(ConnectError::Busy));
            }
            return;
        }
        self.send(&frame, self.cfg.server, None);
        let now = Instant::now();
        self.connects.insert(
            txn,
            PendingConnect {
                target,
                frame,
                reply,
                next: now + INITIAL_RTO,
                rto: INITIAL_RTO,
                give_up: now + self.cfg.server_timeout,
            },
        );
    }

    fn on_datagram(&mut self, d: ControlDatagram) {
        let now = Instant::now();
        if d.data == HI_RESPONSE {
            return;
        }
        let frame = match Frame::decode(&d.data) {
            Ok(f) => f,
            Err(e) => {
                debug!(from = %d.from, error = %e, "dropping undecodable datagram");
                return;
            }
        };
        let from_server = d.from == self.cfg.server;
        match frame {
            Frame::Registered { txn, observed, .. } if from_server && txn == self.reg_txn => {
                // The server may have restarted and forgotten our NAT type: repeat it.
                if let Some(classic) = self.own_nat {
                    self.send_nat(classic);
                }
                self.last_reg_answer = now;
                self.reg_rto = INITIAL_RTO;
                self.next_register = now + self.cfg.server_keepalive;
                if !self.server_ok {
                    self.server_ok = true;
                    self.event(ClientEvent::ServerBack { public: observed });
                }
            }
            Frame::Error { txn, code, reason } if from_server => {
                self.on_error(now, txn, code, reason)
            }
            Frame::Introduce {
                txn,
                session,
                initiator,
                peer,
            } if from_server => self.on_introduce(now, txn, session, initiator, peer),
            Frame::PeerReady { session } if from_server => {
                if let Some(a) = self.peer_of(session).and_then(|p| p.agent.as_mut()) {
                    a.peer_ready(now.into_std());
                }
            }
            Frame::PeerNat { session, classic } if from_server => {
                let Some(key) = self.sessions.get(&session).copied() else {
                    return;
                };
                if let Some(p) = self.peers.get_mut(&key) {
                    p.nat = Some(classic);
                }
                self.check_possible(key);
            }
            Frame::RelayClosed { session, reason } if from_server => {
                self.on_relay_closed(now, session, reason)
            }
            Frame::Probe { session, seq } => {
                let Some(key) = self.sessions.get(&session).copied() else {
                    return;
                };
                let Some(p) = self.peers.get_mut(&key) else {
                    return;
                };
                // Direct datagrams from this address are this peer's, at its virtual address.
                self.paths.alias(d.from, p.virt);
                match p.agent.as_mut().filter(|a| !a.is_done()) {
                    Some(a) => a.handle_frame(now.into_std(), d.from, &frame),
                    None => {
                        // No punching running (or it finished): still answer, the peer may
                        // be checking its path or finishing its own choice.
                        let ack = Frame::ProbeAck {
                            session,
                            seq,
                            observed: d.from,
                        };
                        if let Ok(b) = ack.encode() {
                            self.send(&b, d.from, None);
                        }
                    }
                }
            }
            Frame::ProbeAck { session, seq, .. } => {
                let Some(p) = self.peer_of(session) else {
                    return;
                };
                if seq & CHECK_BIT != 0 {
                    if let Some(c) = p.check.as_mut().filter(|c| c.addr == d.from) {
                        c.last_answer = now;
                    }
                } else if let Some(a) = p.agent.as_mut() {
                    a.handle_frame(now.into_std(), d.from, &frame);
                }
            }
            _ => debug!(from = %d.from, "ignoring unexpected frame"),
        }
    }

    fn send_nat(&self, classic: Classic) {
        if let Ok(b) = (Frame::NatType { classic }).encode() {
            self.send(&b, self.cfg.server, None);
        }
    }

    fn set_own_nat(&mut self, classic: Classic) {
        self.own_nat = Some(classic);
        self.send_nat(classic);
        // Without NAT or filter there is no mapping to hold open: refresh the registration
        // only as often as its lifetime needs. Everywhere else the default stays below the
        // 30 s after which many NATs forget idle UDP (lifetimes are not measured).
        if classic == Classic::Open {
            let relaxed = OPEN_SERVER_KEEPALIVE.max(self.cfg.server_keepalive);
            if relaxed != self.cfg.server_keepalive {
                info!(?relaxed, "no NAT: registration refreshes relaxed");
                self.cfg.server_keepalive = relaxed;
            }
        }
        let keys: Vec<PublicKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.check_possible(key);
        }
    }

    /// Stop punching toward a peer whose NAT type, with ours, rules a direct path out:
    /// the relay carries the connection at once (or the error comes at once), instead of
    /// after the punching deadline.
    fn check_possible(&mut self, key: PublicKey) {
        let Some(own) = self.own_nat else { return };
        let Some(p) = self.peers.get(&key) else {
            return;
        };
        let Some(theirs) = p.nat else { return };
        let Some(why) = own.direct_impossible(theirs) else {
            return;
        };
        if p.agent.as_ref().is_none_or(|a| a.is_done()) || p.direct.is_some() {
            return;
        }
        let reason = format!(
            "no direct path possible: {why} (our NAT: {}, {}'s: {})",
            own.as_str(),
            p.name,
            theirs.as_str()
        );
        info!(peer = %p.name, %reason, "not punching");
        self.give_up_punching(key, reason);
    }

    fn peer_of(&mut self, session: u64) -> Option<&mut Peer> {
        let key = self.sessions.get(&session)?;
        self.peers.get_mut(key)
    }

    fn on_error(&mut self, now: Instant, txn: u64, code: ErrorCode, reason: String) {
        if txn == self.reg_txn {
            warn!(%reason, "server refused registration refresh");
            return;
        }
        if code == ErrorCode::NotRegistered {
            // The server forgot us (it restarted, or our NAT gave us a new port): register
            // again now and repeat the request once that had time to land.
            if let Some(c) = self.connects.get_mut(&txn) {
                info!("server does not know us; registering again");
                self.next_register = now;
                c.next = now + INITIAL_RTO * 2;
                c.give_up = c.give_up.max(now + self.cfg.server_timeout);
                return;
            }
        }
        if let Some(c) = self.connects.remove(&txn) {
            match c.reply {
                Some(r) => {
                    let _ = r.send(Err(ConnectError::Refused(code, reason)));
                }
                None => {
                    // Our own request for a new session (to punch again, or after a server
                    // restart while the peer has not registered again yet): try later.
                    debug!(target = %c.target, %reason, "new introduction refused; retrying");
                    if let Some(p) = self.peers.values_mut().find(|p| p.name == c.target) {
                        p.retry_at = Some(now + p.backoff.min(REPUNCH_FIRST));
                    }
                }
            }
        }
    }

    fn ack_introduction(&self, session: u64) {
        if let Ok(ack) = (Frame::IntroduceAck { session }).encode() {
            self.send(&ack, self.cfg.server, None);
        }
    }

    fn on_introduce(
        &mut self,
        now: Instant,
        txn: u64,
        session: u64,
        initiator: bool,
        info: PeerInfo,
    ) {
        if self.sessions.contains_key(&session) {
            // A retransmitted introduction: our acknowledgement was lost.
            self.ack_introduction(session);
            return;
        }
        let reply = if initiator {
            match self.connects.remove(&txn) {
                Some(c) => c.reply,
                None => return, // stale: we gave up on that request
            }
        } else {
            None
        };
        let key = PublicKey::from_bytes(info.key);
        if !self.peers.contains_key(&key) {
            if self.peers.len() >= MAX_PEERS {
                if let Some(r) = reply {
                    let _ = r.send(Err(ConnectError::Busy));
                }
                return;
            }
            let Some(virt) = self.paths.allocate() else {
                if let Some(r) = reply {
                    let _ = r.send(Err(ConnectError::Busy));
                }
                return;
            };
            lock(&self.introduced).insert(key);
            self.peers.insert(
                key,
                Peer {
                    name: info.name.clone(),
                    virt,
                    info: info.clone(),
                    initiator,
                    session,
                    side: Side::Target,
                    agent: None,
                    direct: None,
                    check: None,
                    relay_refused: None,
                    reply: None,
                    quic: Quic::NotStarted,
                    reported: "none",
                    retry_at: None,
                    backoff: REPUNCH_FIRST,
                    created: now,
                    nat: None,
                    yielded: false,
                },
            );
        }
        let relay_mode = self.cfg.relay;
        // This task checks chosen paths itself.
        let punch = punch_proto::agent::PunchConfig {
            liveness: None,
            ..self.cfg.punch.clone()
        };
        let own_private = self.private.clone();
        let me_smaller = self.identity.public_key() < key;
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        // Both sides asked for each other at once: the server opened a session for each.
        // Both sides keep the one the smaller key opened (so they punch and relay in the
        // same session, and one QUIC connection forms); the other is only acknowledged.
        let current_by_smaller = (p.side == Side::Requester) == me_smaller;
        let this_by_smaller = initiator == me_smaller;
        let mutual = p.session != session && (p.reply.is_some() || p.initiator != initiator);
        if mutual && current_by_smaller && !this_by_smaller {
            if let Some(r) = reply {
                answer_or_wait(p, key, self.cfg.server, r);
            }
            if initiator {
                p.yielded = true;
            }
            info!(peer = %info.name, session, "both asked for each other; keeping the other session");
            self.sessions.insert(session, key);
            self.socket.map_relay_session(session, p.virt);
            self.ack_introduction(session);
            return;
        }
        if mutual && !initiator && !me_smaller {
            // The peer (smaller key) opens the connection; ours, if any, gives way.
            p.yielded = true;
        }
        p.initiator = initiator;
        p.info = info.clone();
        p.session = session;
        p.side = if initiator {
            Side::Requester
        } else {
            Side::Target
        };
        p.relay_refused = None;
        p.retry_at = None;
        if let Some(r) = reply {
            answer_or_wait(p, key, self.cfg.server, r);
        }
        self.sessions.insert(session, key);
        self.socket.map_relay_session(session, p.virt);
        let route = RelayRoute {
            server: self.cfg.server,
            side: p.side,
            session,
        };
        if relay_mode != RelayMode::Never && p.direct.is_none() {
            set_path(
                &self.paths,
                &self.current,
                key,
                p.virt,
                Active::Relay(route),
                relay_info(self.cfg.server),
            );
        }
        if relay_mode != RelayMode::Only {
            let mut candidates: Vec<(SocketAddr, CandidateKind)> = info
                .private
                .iter()
                // Our own address would answer our own probes; and a "private" address
                // equal to the public one (a host with a public address) is the public one.
                .filter(|a| !own_private.contains(a) && **a != info.public)
                .map(|a| (*a, CandidateKind::Host))
                .collect();
            candidates.push((info.public, CandidateKind::ServerReflexive));
            info!(peer = %info.name, ?candidates, initiator, session, "introduced; punching");
            p.agent = Some(Agent::new(punch, session, candidates, now.into_std()));
        } else {
            info!(peer = %info.name, session, "introduced; relay only");
        }
        let start_quic = initiator && relay_mode != RelayMode::Never && !p.yielded;
        // The opening probes must be on the wire before the acknowledgement: the server
        // relays it to the peer as the signal that our NAT is open (see the agent).
        // (Flushing can already find a path and start QUIC: start_quic starts it once.)
        self.flush();
        self.ack_introduction(session);
        if start_quic {
            self.start_quic(key);
        }
    }

    /// Open the QUIC connection to a peer, unless one is already opening or open (two
    /// connections to one peer would close each other as duplicates).
    fn start_quic(&mut self, key: PublicKey) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if !matches!(p.quic, Quic::NotStarted) {
            return;
        }
        p.quic = Quic::Connecting;
        let (endpoint, identity, keepalive) = (
            self.endpoint.clone(),
            self.identity.clone(),
            self.cfg.peer_keepalive,
        );
        let (virt, tx) = (p.virt, self.internal_tx.clone());
        tokio::spawn(async move {
            let r = quic_connect(&endpoint, &identity, key, keepalive, virt).await;
            let _ = tx.send(Internal::Connected(key, r)).await;
        });
    }

    fn on_internal(&mut self, m: Internal) {
        match m {
            Internal::Connected(key, result) => {
                let server = self.cfg.server;
                let Some(p) = self.peers.get_mut(&key) else {
                    return;
                };
                match result {
                    // We gave way to the peer's connection: ours is a duplicate.
                    Ok(conn) if p.yielded => {
                        conn.close(2u32.into(), b"duplicate connection");
                        if matches!(p.quic, Quic::Connecting) {
                            p.quic = Quic::NotStarted;
                        }
                    }
                    Ok(conn) => {
                        let path = match p.direct {
                            Some(d) if self.cfg.relay != RelayMode::Only => direct_info(d),
                            _ => relay_info(server),
                        };
                        let pc = up(p, key, conn, path, &self.internal_tx);
                        match p.reply.take() {
                            Some(r) => {
                                let _ = r.send(Ok(pc));
                            }
                            None => debug!(peer = %p.name, "connected with nobody waiting"),
                        }
                    }
                    // The peer's connection is up (or will be): ours failing changes nothing.
                    Err(e) if p.yielded || matches!(p.quic, Quic::Up(_)) => {
                        debug!(peer = %p.name, error = %e, "our duplicate connection failed");
                        if matches!(p.quic, Quic::Connecting) {
                            p.quic = Quic::NotStarted;
                        }
                    }
                    Err(e) => {
                        p.quic = Quic::NotStarted;
                        if let Some(r) = p.reply.take() {
                            let _ = r.send(Err(ConnectError::Handshake(e)));
                        }
                        self.forget(key);
                    }
                }
            }
            Internal::Accepted(key, conn) => {
                let server = self.cfg.server;
                let me_smaller = self.identity.public_key() < key;
                let Some(p) = self.peers.get_mut(&key) else {
                    conn.close(1u32.into(), b"not introduced");
                    return;
                };
                // Both opened a connection at once: the smaller key's one stays (the peer
                // closes its own too, having given way).
                if me_smaller && p.initiator && matches!(p.quic, Quic::Connecting | Quic::Up(_)) {
                    conn.close(2u32.into(), b"duplicate connection");
                    return;
                }
                let path = match (self.paths.active(p.virt), p.direct) {
                    (Some(Active::Direct(_)), Some(d)) => direct_info(d),
                    (Some(Active::Direct(a)), None) => PathInfo {
                        kind: "direct",
                        candidate: "peer-reflexive",
                        remote: a,
                        probe_rtt: conn.rtt(),
                    },
                    _ => relay_info(server),
                };
                let pc = up(p, key, conn, path, &self.internal_tx);
                // Our own request for this peer gave way to this connection: it is the answer.
                match p.reply.take() {
                    Some(r) => {
                        let _ = r.send(Ok(pc));
                    }
                    None => self.event(ClientEvent::Incoming(pc)),
                }
            }
            Internal::Closed(key, id) => {
                let same = self
                    .peers
                    .get(&key)
                    .is_some_and(|p| matches!(&p.quic, Quic::Up(c) if c.stable_id() as u64 == id));
                if same {
                    // quinn sends the CONNECTION_CLOSE after the connection reports closed:
                    // keep the route a little longer so the peer hears it.
                    if let Some(virt) = self.forget_keeping_route(key) {
                        let paths = self.paths.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(CLOSE_LINGER).await;
                            paths.remove(virt);
                        });
                    }
                }
            }
        }
    }

    /// Drop everything about a peer.
    fn forget(&mut self, key: PublicKey) {
        if let Some(virt) = self.forget_keeping_route(key) {
            self.paths.remove(virt);
        }
    }

    /// Drop everything about a peer but the route to its virtual address (returned).
    fn forget_keeping_route(&mut self, key: PublicKey) -> Option<SocketAddr> {
        let p = self.peers.remove(&key)?;
        self.sessions.retain(|_, k| *k != key);
        lock(&self.introduced).remove(&key);
        lock(&self.current).remove(&key);
        debug!(peer = %p.name, "forgotten");
        Some(p.virt)
    }

    fn on_timeout(&mut self, now: Instant) {
        // Registration refresh / retransmission.
        if now >= self.next_register {
            self.send(&self.register.clone(), self.cfg.server, None);
            let silent_for = now.saturating_duration_since(self.last_reg_answer);
            if self.server_ok && silent_for > self.cfg.server_keepalive + self.cfg.server_timeout {
                self.server_ok = false;
                self.event(ClientEvent::ServerLost);
            }
            // Until the answer comes, retransmit with backoff; the answer resets the timer.
            self.next_register = now + self.reg_rto;
            self.reg_rto = (self.reg_rto * 2).min(self.cfg.server_keepalive);
        }
        // Connect requests.
        let mut expired = Vec::new();
        for (txn, c) in self.connects.iter_mut() {
            if now >= c.give_up {
                expired.push(*txn);
            } else if now >= c.next {
                if let Err(e) = self.socket.send_to(&c.frame, self.cfg.server, None) {
                    debug!(error = %e, "send failed");
                }
                c.rto = (c.rto * 2).min(MAX_RTO);
                c.next = now + c.rto;
            }
        }
        for txn in expired {
            if let Some(c) = self.connects.remove(&txn) {
                debug!(target = %c.target, "connect request timed out");
                if let Some(r) = c.reply {
                    let err =
                        ConnectError::ServerUnreachable(self.cfg.server, self.cfg.server_timeout);
                    let _ = r.send(Err(err));
                }
            }
        }
        // Punching, path checks, retries.
        let std_now = now.into_std();
        let mut lost = Vec::new();
        let mut retry = Vec::new();
        let mut stale = Vec::new();
        for (key, p) in self.peers.iter_mut() {
            if let Some(a) = p.agent.as_mut() {
                a.handle_timeout(std_now);
            }
            if let Some(c) = p.check.as_mut() {
                if now.saturating_duration_since(c.last_answer) >= PATH_DEAD_AFTER {
                    lost.push(*key);
                } else if now >= c.next {
                    c.seq = c.seq.wrapping_add(1) | CHECK_BIT;
                    c.next = now + PATH_CHECK_INTERVAL;
                    let probe = Frame::Probe {
                        session: p.session,
                        seq: c.seq,
                    };
                    if let Ok(b) = probe.encode() {
                        if let Err(e) = self.socket.send_to(&b, c.addr, None) {
                            debug!(error = %e, "path check send failed");
                        }
                    }
                }
            }
            if p.retry_at.is_some_and(|r| now >= r) {
                p.retry_at = None;
                retry.push(p.name.clone());
            }
            if !p.initiator
                && matches!(p.quic, Quic::NotStarted)
                && now.saturating_duration_since(p.created) > PASSIVE_TIMEOUT
            {
                stale.push(*key);
            }
        }
        for key in lost {
            self.on_path_lost(now, key);
        }
        for name in retry {
            debug!(peer = %name, "asking for a new introduction to punch again");
            self.start_connect(name, None);
        }
        for key in stale {
            self.forget(key);
        }
    }

    /// Drain every agent's transmits and events.
    fn flush(&mut self) {
        let mut results = Vec::new();
        for (key, p) in self.peers.iter_mut() {
            let Some(a) = p.agent.as_mut() else { continue };
            while let Some(t) = a.poll_transmit() {
                if let Err(e) = self.socket.send_to(&t.payload, t.dest, t.ttl) {
                    debug!(dest = %t.dest, error = %e, "probe send failed");
                }
            }
            while let Some(ev) = a.poll_event() {
                results.push((*key, ev));
            }
        }
        for (key, ev) in results {
            self.on_agent_event(key, ev);
        }
    }
}

/// Record that `p`'s QUIC connection is up on `path`, watch for its end, and describe it.
fn up(
    p: &mut Peer,
    key: PublicKey,
    conn: quinn::Connection,
    path: PathInfo,
    internal: &mpsc::Sender<Internal>,
) -> PeerConnection {
    p.reported = path.kind;
    p.quic = Quic::Up(conn.clone());
    watch_close(key, &conn, internal.clone());
    peer_connection(p, key, conn, path)
}

fn peer_connection(
    p: &Peer,
    key: PublicKey,
    conn: quinn::Connection,
    path: PathInfo,
) -> PeerConnection {
    PeerConnection {
        name: p.name.clone(),
        key,
        // We opened it if we are its client.
        opened_by_us: conn.side().is_client(),
        connection: conn,
        path,
    }
}

/// Answer a connect request with the peer's connection if it is up, else keep the
/// request until it is.
fn answer_or_wait(
    p: &mut Peer,
    key: PublicKey,
    server: SocketAddr,
    r: oneshot::Sender<Result<PeerConnection, ConnectError>>,
) {
    match &p.quic {
        Quic::Up(conn) => {
            let path = match p.direct {
                Some(d) => direct_info(d),
                None => relay_info(server),
            };
            let _ = r.send(Ok(peer_connection(p, key, conn.clone(), path)));
        }
        _ => p.reply = Some(r),
    }
}
