//! The server's TCP rendezvous state machine: registrations over main connections, the
//! assist sequence, and relay pairing. Sans-IO.
//!
//! The IO layer gives every accepted connection a [`ConnId`], reports it with
//! [`TcpRegistry::handle_open`], feeds each decoded frame with [`TcpRegistry::handle_frame`]
//! and the end of a connection with [`TcpRegistry::handle_close`], and carries out every
//! [`Action`] from [`TcpRegistry::poll_action`]: write bytes, close a connection, or splice two
//! relay connections together. It owns no sockets and no clock.
//!
//! A main-listener connection is either a control connection (first frame
//! [`Frame::Register`]) or a relay connection (first frame [`Frame::TcpRelayJoin`]); an
//! assist-listener connection sends exactly one [`Frame::TcpAssist`]. A registration lives as
//! long as its control connection and its keepalives (re-sent `Register`s). Everything is
//! bounded ([`TcpRegistryConfig`]); a connection that breaks the protocol is closed.
//!
//! A keepalive repeats the last signed registration byte for byte (same nonce, and
//! Ed25519 signatures are deterministic): as over UDP ([`crate::rendezvous`]), bytes whose
//! digest is the record's last signed one ([`auth::signed_digest`]) are taken without a
//! second signature check; anything else is checked.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::framing::{encode_framed, prefixed};
use crate::auth::{self, Gate, RegisterGate, SignedDigest};
use crate::owners::{self, Owners, OwnersConfig, SharedOwners};
use crate::ratelimit::{self, Limiter, RateLimit};
use crate::rendezvous::ErrorCounts;
use crate::wire::{self, ErrorCode, Frame, KeyBytes, PeerInfo, MAX_REASON_LEN};

/// Registration lifetime without a keepalive (clients refresh every 25 s).
pub const DEFAULT_REGISTRATION_TTL: Duration = Duration::from_secs(90);
/// How long a punching session (and its relay offer) lives after it was created.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(60);
/// How long a new connection may stay silent before its first frame.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Most registered peers.
pub const DEFAULT_MAX_PEERS: usize = 10_000;
/// Most connections at once (control, assist and relay).
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Most punching sessions at once.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// Most sessions in flight that one requester may hold.
pub const MAX_SESSIONS_PER_PEER: usize = 32;

/// An IO-layer connection handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Which listener accepted a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The main port: control and relay connections.
    Main,
    /// The assist port: one frame that reveals a punching port's public mapping.
    Assist,
}

/// What the IO layer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes (a length-prefixed frame) to the connection.
    Send(ConnId, Vec<u8>),
    /// Close the connection (after writing what was queued for it).
    Close(ConnId),
    /// Stop reading frames from both `joins` and copy bytes between them, both ways. The
    /// [`Frame::TcpRelayReady`] frames were queued on both just before. `controls` are the
    /// two peers' control connections: where a [`Frame::RelayClosed`] goes if the relay
    /// ends the session (a limit reached).
    Splice {
        /// The session relayed.
        session: u64,
        /// The two relay connections, joined.
        joins: (ConnId, ConnId),
        /// The requester's and the target's control connections.
        controls: (ConnId, ConnId),
    },
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct TcpRegistryConfig {
    /// Registration lifetime without a keepalive.
    pub registration_ttl: Duration,
    /// Punching session lifetime.
    pub session_ttl: Duration,
    /// Most registered peers.
    pub max_peers: usize,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most sessions at once.
    pub max_sessions: usize,
    /// Whether relay connections are paired (the fallback when punching fails).
    pub relay: bool,
    /// Which key owns each name (shared with the UDP registry; stored by the IO layer).
    pub owners: SharedOwners,
    /// Registrations per source address (over it: answered `Busy`; a TCP peer cannot
    /// spoof its address, so the answer costs no one else).
    pub register_limit: RateLimit,
    /// Introduction requests per source address (over it: answered `Busy`).
    pub connect_limit: RateLimit,
    /// Key of the registration nonces ([`crate::auth::Nonces`]); random by default.
    pub nonce_secret: [u8; 32],
}

impl Default for TcpRegistryConfig {
    fn default() -> Self {
        TcpRegistryConfig {
            registration_ttl: DEFAULT_REGISTRATION_TTL,
            session_ttl: DEFAULT_SESSION_TTL,
            max_peers: DEFAULT_MAX_PEERS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_sessions: DEFAULT_MAX_SESSIONS,
            relay: true,
            owners: Owners::shared(OwnersConfig::default()),
            register_limit: ratelimit::DEFAULT_REGISTER,
            connect_limit: ratelimit::DEFAULT_CONNECT,
            nonce_secret: rand::random(),
        }
    }
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Registrations accepted (new or refreshed).
    pub registrations: u64,
    /// Sessions started.
    pub sessions: u64,
    /// Sessions where both sides got the introduction.
    pub introductions: u64,
    /// Relays spliced.
    pub relays: u64,
    /// Connections closed for breaking the protocol or a bound.
    pub rejected: u64,
    /// Requests answered `Busy` over a per-source rate limit.
    pub rate_limited: u64,
    /// Registrations without a nonce issued to their address lately, answered with a
    /// challenge.
    pub challenged: u64,
    /// Registrations refused for a signature that is not their key's.
    pub bad_signatures: u64,
    /// Registrations taken without a second signature check: byte for byte the last
    /// signed registration the record took (a keepalive).
    pub signatures_known: u64,
    /// Version-1 (unsigned) registrations told to upgrade.
    pub legacy_refused: u64,
    /// Requests answered with an error, per code.
    pub errors: ErrorCounts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// Accepted, no frame yet.
    New { since: Instant },
    /// A control connection of a registered peer.
    Control { name: String },
    /// An assist connection that sent its frame.
    Assist,
    /// A relay connection waiting for the other side.
    RelayWaiting { session: u64 },
    /// Handed to the IO layer's splice.
    Spliced,
    /// Told to close (silent too long); whatever it sends now is ignored.
    Closing,
}

#[derive(Debug)]
struct Conn {
    listener: Listener,
    remote: SocketAddr,
    role: Role,
}

#[derive(Debug, Clone)]
struct Peer {
    key: KeyBytes,
    conn: ConnId,
    expires: Instant,
    /// Digest of the last signed registration taken: the same bytes again need no check.
    signed: SignedDigest,
}

#[derive(Debug, Clone)]
struct Side {
    name: String,
    key: KeyBytes,
    conn: ConnId,
    /// The punching port's public mapping and private addresses, once its assist arrived.
    assist: Option<(SocketAddr, Vec<SocketAddr>)>,
}

#[derive(Debug)]
struct Session {
    txn: u64,
    requester: Side,
    target: Side,
    target_ready: bool,
    initiator_introduced: bool,
    relay_joins: Vec<ConnId>,
    expires: Instant,
}

/// The TCP rendezvous state machine.
#[derive(Debug)]
pub struct TcpRegistry {
    cfg: TcpRegistryConfig,
    conns: HashMap<ConnId, Conn>,
    peers: HashMap<String, Peer>,
    sessions: HashMap<u64, Session>,
    actions: VecDeque<Action>,
    rng: StdRng,
    stats: TcpStats,
    gate: RegisterGate,
    connect_limiter: Limiter,
}

impl TcpRegistry {
    /// An empty registry; `seed` drives the session ids.
    pub fn new(cfg: TcpRegistryConfig, seed: u64) -> TcpRegistry {
        TcpRegistry {
            conns: HashMap::new(),
            peers: HashMap::new(),
            sessions: HashMap::new(),
            actions: VecDeque::new(),
            rng: StdRng::seed_from_u64(seed),
            stats: TcpStats::default(),
            gate: RegisterGate::new(&cfg.nonce_secret, cfg.register_limit),
            connect_limiter: Limiter::new(cfg.connect_limit),
            cfg,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &TcpStats {
        &self.stats
    }

    /// Live registrations.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Open connections known.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Sessions in flight.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Next thing for the IO layer to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`TcpRegistry::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let peers = self.peers.values().map(|p| p.expires);
        let sessions = self.sessions.values().map(|s| s.expires);
        let news = self.conns.values().filter_map(|c| match c.role {
            Role::New { since } => Some(since + FIRST_FRAME_TIMEOUT),
            _ => None,
        });
        peers.chain(sessions).chain(news).min()
    }

    /// A connection was accepted. Returns false (and queues its close) if the table is full.
    pub fn handle_open(
        &mut self,
        now: Instant,
        conn: ConnId,
        listener: Listener,
        remote: SocketAddr,
    ) -> bool {
        if self.conns.len() >= self.cfg.max_connections {
            self.stats.rejected += 1;
            self.actions.push_back(Action::Close(conn));
            return false;
        }
        self.conns.insert(
            conn,
            Conn {
                listener,
                remote,
                role: Role::New { since: now },
            },
        );
        true
    }

    /// A connection ended (closed by the peer, an error, or after our [`Action::Close`]).
    pub fn handle_close(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        match c.role {
            Role::Control { name } => {
                if self.peers.get(&name).is_some_and(|p| p.conn == conn) {
                    self.peers.remove(&name);
                }
                self.end_sessions_of(conn, &name);
            }
            Role::RelayWaiting { session } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.relay_joins.retain(|c| *c != conn);
                }
            }
            _ => {}
        }
    }

    /// A control connection closed: its sessions cannot go on (nothing more can be sent on
    /// it). The requester of a session whose target left hears so; relay joins waiting in
    /// those sessions are closed.
    fn end_sessions_of(&mut self, conn: ConnId, name: &str) {
        let ended: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.requester.conn == conn || s.target.conn == conn)
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            let Some(s) = self.sessions.remove(&id) else {
                continue;
            };
            if s.target.conn == conn && s.requester.conn != conn {
                let detail = format!("{name:?} left the server");
                self.error(s.requester.conn, s.txn, ErrorCode::UnknownPeer, &detail);
            }
            for join in s.relay_joins {
                self.actions.push_back(Action::Close(join));
            }
        }
    }

    /// A connection broke the stream framing: close it.
    pub fn handle_bad_stream(&mut self, conn: ConnId) {
        self.reject(conn);
    }

    /// A connection sent a punch frame of another version (`frame`, without its length
    /// prefix): a version-1 registration as the first frame of a main connection is told
    /// to upgrade ([`wire::legacy_upgrade_answer`]) and closed; anything else is rejected.
    pub fn handle_other_version(&mut self, conn: ConnId, frame: &[u8]) {
        let first_on_main = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.listener == Listener::Main && matches!(c.role, Role::New { .. }));
        match wire::legacy_upgrade_answer(frame).filter(|_| first_on_main) {
            Some(answer) => {
                self.stats.legacy_refused += 1;
                self.actions
                    .push_back(Action::Send(conn, prefixed(&answer)));
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.role = Role::Closing;
                }
                self.actions.push_back(Action::Close(conn));
            }
            None => self.reject(conn),
        }
    }

    fn reject(&mut self, conn: ConnId) {
        self.stats.rejected += 1;
        self.actions.push_back(Action::Close(conn));
    }

    fn send(&mut self, conn: ConnId, frame: &Frame) {
        match encode_framed(frame) {
            Ok(bytes) => self.actions.push_back(Action::Send(conn, bytes)),
            // Only reachable with a frame breaking a bound, which callers check first.
            Err(_) => self.actions.push_back(Action::Close(conn)),
        }
    }

    fn error(&mut self, conn: ConnId, txn: u64, code: ErrorCode, detail: &str) {
        self.stats.errors.add(code);
        let mut end = detail.len().min(MAX_REASON_LEN);
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        let reason = detail[..end].to_string();
        self.send(conn, &Frame::Error { txn, code, reason });
    }

    /// Feed a decoded frame from `conn`.
    pub fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: Frame) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (listener, remote, role) = (c.listener, c.remote, c.role.clone());
        match (listener, role, frame) {
            // Already told to close: no answer, and no second close.
            (_, Role::Closing, _) => {}
            (
                Listener::Main,
                Role::New { .. } | Role::Control { .. },
                register @ Frame::Register { .. },
            ) => self.on_register(now, conn, remote, register),
            (Listener::Main, Role::Control { name }, Frame::TcpConnect { txn, target }) => {
                if !self.connect_limiter.allow(now, remote.ip()) {
                    return self.limited(conn, txn);
                }
                self.connect(now, conn, name, txn, target)
            }
            (Listener::Main, Role::Control { .. }, Frame::TcpReady { session }) => {
                self.ready(conn, session)
            }
            (Listener::Main, Role::Control { .. }, Frame::TcpRelay { session }) => {
                self.relay_request(conn, session)
            }
            (Listener::Main, Role::New { .. }, Frame::TcpRelayJoin { session }) => {
                self.relay_join(conn, session)
            }
            (Listener::Assist, Role::New { .. }, Frame::TcpAssist { session, private }) => {
                self.assist(conn, remote, session, private)
            }
            _ => self.reject(conn),
        }
    }

    /// A registration: through the gate (limits, nonce, signature), as over UDP. The
    /// signature is checked unless the bytes are the record's last signed ones.
    fn on_register(&mut self, now: Instant, conn: ConnId, remote: SocketAddr, register: Frame) {
        let gate = self.gate.admit(now, remote, &register);
        let Frame::Register { txn, ref name, .. } = register else {
            return;
        };
        match gate {
            Gate::Accept => {
                let digest = auth::signed_digest(&register);
                if self.peers.get(name).is_some_and(|p| p.signed == digest) {
                    self.stats.signatures_known += 1;
                } else if !auth::verify_frame(&register) {
                    return self.bad_signature(conn, txn);
                }
                if let Frame::Register { name, key, .. } = register {
                    self.register(now, conn, remote, txn, name, key, digest);
                }
            }
            Gate::Limited => self.limited(conn, txn),
            Gate::Challenge(nonce) => {
                self.stats.challenged += 1;
                self.send(conn, &Frame::Challenge { txn, nonce });
            }
            Gate::BadSignature => self.bad_signature(conn, txn),
        }
    }

    /// A registration whose signature is not its key's.
    fn bad_signature(&mut self, conn: ConnId, txn: u64) {
        self.stats.bad_signatures += 1;
        let detail = "the registration is not signed by its key";
        self.error(conn, txn, ErrorCode::BadSignature, detail);
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: SocketAddr,
        txn: u64,
        name: String,
        key: KeyBytes,
        signed: SignedDigest,
    ) {
        if let Some(Role::Control { name: old }) = self.conns.get(&conn).map(|c| &c.role) {
            if *old != name {
                // One name per control connection.
                return self.reject(conn);
            }
        }
        let admitted = owners::lock(&self.cfg.owners).admit(&name, &key);
        if let Err((code, detail)) = admitted {
            return self.error(conn, txn, code, &detail);
        }
        if let Some(p) = self.peers.get(&name) {
            if p.key != key && p.expires > now {
                let detail = format!("the name {name:?} is registered by another key");
                return self.error(conn, txn, ErrorCode::NameTaken, &detail);
            }
        } else if self.peers.len() >= self.cfg.max_peers {
            self.expire(now);
            // Expiry may have closed this very connection (its first frame came too late).
            if matches!(self.conns.get(&conn).map(|c| &c.role), Some(Role::Closing)) {
                return;
            }
            if self.peers.len() >= self.cfg.max_peers {
                return self.error(conn, txn, ErrorCode::Busy, "registry full");
            }
        }
        self.peers.insert(
            name.clone(),
            Peer {
                key,
                conn,
                expires: now + self.cfg.registration_ttl,
                signed,
            },
        );
        if let Some(c) = self.conns.get_mut(&conn) {
            c.role = Role::Control { name };
        }
        self.stats.registrations += 1;
        let expires_secs = u32::try_from(self.cfg.registration_ttl.as_secs()).unwrap_or(u32::MAX);
        let nonce = self.gate.next_nonce(now, remote);
        self.send(
            conn,
            &Frame::Registered {
                txn,
                observed: remote,
                expires_secs,
                nonce,
            },
        );
    }

    /// A request over its source's rate limit.
    fn limited(&mut self, conn: ConnId, txn: u64) {
        self.stats.rate_limited += 1;
        let detail = "too many requests from your address: slow down";
        self.error(conn, txn, ErrorCode::Busy, detail);
    }

    fn connect(&mut self, now: Instant, conn: ConnId, me: String, txn: u64, target: String) {
        if me == target {
            return self.error(
                conn,
                txn,
                ErrorCode::SelfConnect,
                "cannot connect to yourself",
            );
        }
        let Some(peer) = self.peers.get(&target).filter(|p| p.expires > now).cloned() else {
            let detail = format!("peer unknown: {target:?} is not registered (over TCP)");
            return self.error(conn, txn, ErrorCode::UnknownPeer, &detail);
        };
        let Some(mine) = self.peers.get(&me).cloned() else {
            return self.error(conn, txn, ErrorCode::NotRegistered, "register first");
        };
        let mine_in_flight = self
            .sessions
            .values()
            .filter(|s| s.requester.conn == conn)
            .count();
        if self.sessions.len() >= self.cfg.max_sessions {
            self.expire(now);
        }
        if self.sessions.len() >= self.cfg.max_sessions || mine_in_flight >= MAX_SESSIONS_PER_PEER {
            return self.error(conn, txn, ErrorCode::Busy, "too many sessions in flight");
        }
        let mut session: u64 = self.rng.random();
        while self.sessions.contains_key(&session) {
            session = self.rng.random();
        }
        self.sessions.insert(
            session,
            Session {
                txn,
                requester: Side {
                    name: me,
                    key: mine.key,
                    conn,
                    assist: None,
                },
                target: Side {
                    name: target,
                    key: peer.key,
                    conn: peer.conn,
                    assist: None,
                },
                target_ready: false,
                initiator_introduced: false,
                relay_joins: Vec::new(),
                expires: now + self.cfg.session_ttl,
            },
        );
        self.stats.sessions += 1;
        self.send(conn, &Frame::TcpSession { txn, session });
    }

    fn assist(&mut self, conn: ConnId, remote: SocketAddr, session: u64, private: Vec<SocketAddr>) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return self.reject(conn);
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.role = Role::Assist;
        }
        let intro = if s.requester.assist.is_none() {
            s.requester.assist = Some((remote, private));
            Some((s.target.conn, peer_info(&s.requester)))
        } else if s.target.assist.is_none() {
            s.target.assist = Some((remote, private));
            None
        } else {
            return self.reject(conn);
        };
        self.send(
            conn,
            &Frame::TcpAssistAck {
                session,
                observed: remote,
            },
        );
        match intro {
            Some((to, Some(peer))) => self.send(
                to,
                &Frame::TcpIntroduce {
                    session,
                    initiator: false,
                    peer,
                },
            ),
            Some((_, None)) => {}
            None => self.maybe_introduce_initiator(session),
        }
    }

    fn ready(&mut self, conn: ConnId, session: u64) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if s.target.conn != conn {
            return;
        }
        s.target_ready = true;
        self.maybe_introduce_initiator(session);
    }

    fn maybe_introduce_initiator(&mut self, session: u64) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if !s.target_ready || s.initiator_introduced || s.target.assist.is_none() {
            return;
        }
        let Some(peer) = peer_info(&s.target) else {
            return;
        };
        s.initiator_introduced = true;
        let to = s.requester.conn;
        self.stats.introductions += 1;
        self.send(
            to,
            &Frame::TcpIntroduce {
                session,
                initiator: true,
                peer,
            },
        );
    }

    fn relay_request(&mut self, conn: ConnId, session: u64) {
        let relay = self.cfg.relay;
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if s.requester.conn != conn {
            return;
        }
        if !relay {
            let txn = s.txn;
            return self.error(conn, txn, ErrorCode::Busy, "relay is off on this server");
        }
        let to = s.target.conn;
        self.send(to, &Frame::TcpRelay { session });
    }

    fn relay_join(&mut self, conn: ConnId, session: u64) {
        // The session id is the capability (random, known to its two sides only). The join
        // may overtake the requester's TcpRelay on its control connection, so it is not
        // required first.
        let relay = self.cfg.relay;
        let Some(s) = self
            .sessions
            .get_mut(&session)
            .filter(|s| relay && s.relay_joins.len() < 2)
        else {
            return self.reject(conn);
        };
        s.relay_joins.push(conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.role = Role::RelayWaiting { session };
        }
        if s.relay_joins.len() < 2 {
            return;
        }
        let (a, b) = (s.relay_joins[0], s.relay_joins[1]);
        let controls = (s.requester.conn, s.target.conn);
        self.sessions.remove(&session);
        for c in [a, b] {
            if let Some(c) = self.conns.get_mut(&c) {
                c.role = Role::Spliced;
            }
            self.send(c, &Frame::TcpRelayReady { session });
        }
        self.stats.relays += 1;
        self.actions.push_back(Action::Splice {
            session,
            joins: (a, b),
            controls,
        });
    }

    fn expire(&mut self, now: Instant) {
        self.peers.retain(|_, p| p.expires > now);
        let mut closes = Vec::new();
        self.sessions.retain(|_, s| {
            if s.expires > now {
                return true;
            }
            closes.extend(s.relay_joins.iter().copied());
            false
        });
        for (id, c) in self.conns.iter_mut() {
            if let Role::New { since } = c.role {
                if since + FIRST_FRAME_TIMEOUT <= now {
                    c.role = Role::Closing;
                    closes.push(*id);
                }
            }
        }
        for c in closes {
            self.actions.push_back(Action::Close(c));
        }
    }

    /// Advance timers: expire registrations, sessions and silent connections.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
    }
}

fn peer_info(side: &Side) -> Option<PeerInfo> {
    let (public, private) = side.assist.clone()?;
    Some(PeerInfo {
        name: side.name.clone(),
        key: side.key,
        public,
        private,
    })
}
