//! The client session, sans-IO: everything a punch client decides about reaching peers.
//!
//! Owns registration and its refresh, connect transactions and their retransmission, one
//! punching [`Agent`] per peer (which also watches the chosen path), the relay fallback,
//! the repunch backoff, recovery from lost mappings, a silent server and a moved host, and
//! the choice of route for each peer's connection, all under one `timer` table. It has
//! the shape of [`crate::nat::Discovery`] and [`crate::agent`]: feed it datagrams
//! ([`Session::handle_datagram`]), time ([`Session::handle_timeout`]) and commands
//! ([`Session::connect`], [`Session::set_local_addrs`], the connection reports), then drain
//! [`Session::poll_transmit`], [`Session::poll_event`] and [`Session::poll_timeout`].
//!
//! It does not own sockets, QUIC, TLS or tasks: the driver (`punch::client`) opens the
//! connection when told ([`Event::OpenConnection`]), sends each peer's datagrams the way
//! [`Event::Route`] says, and reports what became of the connection
//! ([`Session::connection_up`], [`Session::connection_failed`],
//! [`Session::connection_closed`]). The virtual-time tests in `tests/` drive this very
//! state machine through a simulated network.
//!
//! # Recovery
//! - A direct path that stops answering its checks falls back to the relay at once;
//!   the client re-registers at once (so the server learns a new mapping before anyone
//!   is introduced to the old one) and the side that opened the connection asks for a new
//!   introduction after [`REPUNCH_AFTER_LOSS`], with a short deadline
//!   ([`RECOVERY_DEADLINE`]). When that fails, NAT state blocks the old ports, and each
//!   side moves to a fresh local port ([`Event::Rebind`]) and punches again; later
//!   failures back off from [`REPUNCH_FIRST`] to [`REPUNCH_MAX`].
//! - A silent server is asked again every [`registration::MAX_REGISTER_RTO`] at most,
//!   so a server back from a restart hears from every client within that; a relay session
//!   the server no longer knows is replaced by a new introduction.
//! - A new local address ([`Session::set_local_addrs`]) means a new NAT mapping: the
//!   client re-registers, moves every peer to the relay and punches again at once,
//!   whichever side it is.
//! - While a peer is on a direct path, a relay keepalive with every registration refresh
//!   keeps its relay session alive on the server, so a fallback finds it there.

mod event;
mod family;
mod peer;
mod registration;
mod silence;
mod timer;
pub mod trust;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use event::{
    ConnectError, ConnectId, Event, Path, PathKind, PathReason, PeerKey, RelayMode, Route,
    Transport, Verdict,
};
pub use registration::{INITIAL_RTO, MAX_REGISTER_RTO, MAX_RTO};

use crate::agent::{Agent, PunchConfig, Transmit};
use crate::auth::SigningKey;
use crate::nat::Classic;
use crate::wire::{self, ErrorCode, Frame, HI_RESPONSE, MAX_NAME_LEN};
use peer::Peer;
use registration::Registration;
use timer::{Timer, TimerTable};

/// Interval of registration refreshes, which double as the keepalive toward the server:
/// below the 30 s after which many NATs drop idle UDP mappings (RFC 4787 REQ-5 asks for
/// at least 2 minutes, but real devices are often shorter).
pub const DEFAULT_SERVER_KEEPALIVE: Duration = Duration::from_secs(25);
/// Give up a request to the server after this long without an answer; a registration
/// unanswered this long reports [`Event::ServerLost`].
pub const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(5);
/// Registration refresh interval for a host with no NAT and no filter (`open`): two
/// refreshes fit in the server's 90 s registration lifetime.
pub const OPEN_SERVER_KEEPALIVE: Duration = Duration::from_secs(40);
/// Most peers (and requests for peers) at once: bounds what a server or peer can make
/// us hold.
pub const MAX_PEERS: usize = 256;
/// First wait before punching again after a failed attempt; doubles up to
/// [`REPUNCH_MAX`].
pub const REPUNCH_FIRST: Duration = Duration::from_secs(5);
/// Longest wait between punching attempts.
pub const REPUNCH_MAX: Duration = Duration::from_secs(120);
/// Wait before punching again after a direct path died: both sides re-register first,
/// so the introduction carries the mappings their NATs hold now.
pub const REPUNCH_AFTER_LOSS: Duration = Duration::from_secs(1);
/// Wait before punching again after our local address changed: the registration from
/// the new address lands first.
pub const REPUNCH_AFTER_MOVE: Duration = Duration::from_millis(500);
/// Payload of the relayed datagram that asks a server back from a silence whether it still
/// holds a relay session (zeroes, which no peer takes for QUIC): with the relay header, a
/// third of the longest refusal the server may send back.
pub const RELAY_PROBE_LEN: usize = 80;
/// Punching deadline after a lost direct path: the pair had a direct path moments ago,
/// so one that does not come back this quickly is blocked by NAT state, and the session
/// moves to a fresh port ([`Event::Rebind`]) rather than wait out the full deadline.
pub const RECOVERY_DEADLINE: Duration = Duration::from_secs(3);
/// Fewest seconds between two moves to a fresh port.
pub const REBIND_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// A peer introduced to us whose connection never comes is forgotten after this long.
pub const PASSIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Two introductions for one peer, requested by opposite sides within this long of each
/// other, are one mutual request: both sides keep the one the smaller key asked for.
pub const MUTUAL_WINDOW: Duration = Duration::from_secs(2);

/// How a client session is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The rendezvous server: the address we register with (the family Happy Eyeballs
    /// chose).
    pub server: SocketAddr,
    /// The server's address in the other family, if it has one: asked for our public
    /// address there, which we offer to peers (see the `family` module).
    pub server_other: Option<SocketAddr>,
    /// The name to register.
    pub name: String,
    /// Our Ed25519 key: its public half is our identity, and it signs our registrations.
    pub signer: SigningKey,
    /// Our host addresses (private ones behind a NAT, and global IPv6 ones), offered to
    /// peers as candidates.
    pub private: Vec<SocketAddr>,
    /// Registration refresh interval.
    pub server_keepalive: Duration,
    /// How long a request to the server may go unanswered.
    pub server_timeout: Duration,
    /// The punching schedule (and the liveness checks of a chosen path).
    pub punch: PunchConfig,
    /// Relay use.
    pub relay: RelayMode,
    /// The driver can also reach peers over TCP: UDP failures become
    /// [`Event::TryTcp`] instead of errors.
    pub tcp_fallback: bool,
    /// The keys we know for peer names (shared with the driver's other transports):
    /// an introduction of a known name with another key is refused.
    pub peer_keys: trust::SharedPeerKeys,
}

impl Config {
    /// Defaults for everything but the server, the name and the key.
    pub fn new(server: SocketAddr, name: impl Into<String>, signer: SigningKey) -> Config {
        Config {
            server,
            server_other: None,
            name: name.into(),
            signer,
            private: Vec::new(),
            server_keepalive: DEFAULT_SERVER_KEEPALIVE,
            server_timeout: DEFAULT_SERVER_TIMEOUT,
            punch: PunchConfig::default(),
            relay: RelayMode::default(),
            tcp_fallback: false,
            peer_keys: Default::default(),
        }
    }
}

/// A session that cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The name is empty or longer than [`MAX_NAME_LEN`] bytes.
    #[error("invalid name {0:?}: 1 to {MAX_NAME_LEN} bytes of UTF-8")]
    InvalidName(String),
    /// More private addresses than a registration carries.
    #[error("too many local addresses ({0}; at most {max})", max = wire::MAX_PRIVATE_ADDRS)]
    TooManyAddresses(usize),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN
}

/// A request to the server for an introduction.
#[derive(Debug)]
struct PendingConnect {
    target: String,
    frame: Vec<u8>,
    /// The application's request; `None` when the session asks again by itself.
    id: Option<ConnectId>,
    rto: Duration,
    give_up: Instant,
}

/// The client session. See the module documentation.
#[derive(Debug)]
pub struct Session {
    cfg: Config,
    reg: Registration,
    /// Our host addresses, as the driver last told us.
    host: Vec<SocketAddr>,
    /// The server's address in the other family and our registration there.
    other: Option<family::OtherFamily>,
    connects: HashMap<u64, PendingConnect>,
    peers: HashMap<PeerKey, Peer>,
    /// Punching session id -> peer (each peer's current and previous session).
    sessions: HashMap<u64, PeerKey>,
    timers: TimerTable,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rng: StdRng,
    next_id: u64,
    /// When we last asked the driver for a fresh port.
    last_rebind: Option<Instant>,
    closed: bool,
}

impl Session {
    /// A session that registers at once (at `now`); `seed` drives its transaction ids.
    pub fn new(cfg: Config, now: Instant, seed: u64) -> Result<Session, SetupError> {
        if !valid_name(&cfg.name) {
            return Err(SetupError::InvalidName(cfg.name));
        }
        if cfg.private.len() > wire::MAX_PRIVATE_ADDRS {
            return Err(SetupError::TooManyAddresses(cfg.private.len()));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let (txn, signer) = (rng.random(), cfg.signer.clone());
        let offered = family::offered(&cfg.private, None);
        let reg = Registration::new(txn, cfg.name.clone(), signer, offered.clone())
            .map_err(|_| SetupError::InvalidName(cfg.name.clone()))?;
        let other = match cfg.server_other {
            Some(o) if o.is_ipv4() != cfg.server.is_ipv4() => {
                let (txn, signer) = (rng.random(), cfg.signer.clone());
                let reg = Registration::new(txn, cfg.name.clone(), signer, offered)
                    .map_err(|_| SetupError::InvalidName(cfg.name.clone()))?;
                Some(family::OtherFamily { server: o, reg })
            }
            _ => None,
        };
        let mut timers = TimerTable::default();
        timers.set(Timer::Register, now);
        let mut s = Session {
            host: cfg.private.clone(),
            other,
            cfg,
            reg,
            connects: HashMap::new(),
            peers: HashMap::new(),
            sessions: HashMap::new(),
            timers,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rng,
            next_id: 0,
            last_rebind: None,
            closed: false,
        };
        s.handle_timeout(now);
        Ok(s)
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Our public address as the server last observed it.
    pub fn public_addr(&self) -> Option<SocketAddr> {
        self.reg.public
    }

    /// The path `peer`'s traffic takes now.
    pub fn path(&self, peer: &PeerKey) -> Option<Path> {
        self.peers.get(peer).and_then(|p| p.path)
    }

    /// The route of `peer`'s datagrams now.
    pub fn route(&self, peer: &PeerKey) -> Option<Route> {
        self.peers.get(peer).map(|p| p.route)
    }

    /// A peer's registered name.
    pub fn peer_name(&self, peer: &PeerKey) -> Option<&str> {
        self.peers.get(peer).map(|p| p.name.as_str())
    }

    /// True if we were introduced to `peer` (its connection may be accepted).
    pub fn is_introduced(&self, peer: &PeerKey) -> bool {
        self.peers.contains_key(peer)
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let silence = self.reg.silence_deadline(self.cfg.server_timeout);
        match (self.timers.next_timeout(), silence) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn send(&mut self, dest: SocketAddr, payload: Vec<u8>) {
        self.transmits.push_back(Transmit {
            dest,
            ttl: None,
            payload,
        });
    }

    fn send_frame(&mut self, dest: SocketAddr, frame: &Frame) {
        // Every frame the session builds is within bounds (names were checked on entry).
        if let Ok(bytes) = frame.encode() {
            self.send(dest, bytes);
        }
    }

    fn event(&mut self, ev: Event) {
        self.events.push_back(ev);
    }

    /// Stop: no more sends or timers; later requests fail with [`ConnectError::Closed`].
    pub fn close(&mut self) {
        self.closed = true;
        self.timers = TimerTable::default();
        self.transmits.clear();
        for (_, c) in std::mem::take(&mut self.connects) {
            if let Some(id) = c.id {
                self.events.push_back(Event::ConnectDone {
                    id,
                    result: Err(ConnectError::Closed),
                });
            }
        }
    }

    /// Ask for `name` and reach it: through the relay at once and moving to a punched
    /// direct path when one works ([`RelayMode::Auto`]), or as [`Config::relay`] says.
    /// The answer is an [`Event::ConnectDone`] with the returned id.
    pub fn connect(&mut self, now: Instant, name: &str) -> Result<ConnectId, ConnectError> {
        if self.closed {
            return Err(ConnectError::Closed);
        }
        if !valid_name(name) {
            return Err(ConnectError::InvalidName(name.to_string()));
        }
        if name == self.cfg.name {
            return Err(ConnectError::Refused {
                code: ErrorCode::SelfConnect,
                reason: "cannot connect to yourself".into(),
            });
        }
        self.next_id += 1;
        let id = ConnectId(self.next_id);
        // A peer of that name already connected (it reached us), or its connection on
        // its way (opening, or we asked for it already).
        let known = self.peers.iter().find(|(_, p)| p.name == name);
        if let Some((key, p)) = known {
            let key = *key;
            if p.conn != peer::Conn::NotStarted || p.initiator {
                self.answer_or_wait(key, id);
                return Ok(id);
            }
        }
        if self.connects.len() + self.peers.len() >= MAX_PEERS {
            return Err(ConnectError::Busy);
        }
        self.start_connect(now, name.to_string(), Some(id));
        Ok(id)
    }

    /// Send a connect request for `target` (an application request, or the session's own
    /// request for a new introduction when `id` is `None`).
    fn start_connect(&mut self, now: Instant, target: String, id: Option<ConnectId>) {
        let txn: u64 = self.rng.random();
        let frame = Frame::Connect {
            txn,
            target: target.clone(),
        };
        let Ok(frame) = frame.encode() else { return };
        self.send(self.cfg.server, frame.clone());
        self.connects.insert(
            txn,
            PendingConnect {
                target,
                frame,
                id,
                rto: INITIAL_RTO,
                give_up: now + self.cfg.server_timeout,
            },
        );
        self.timers.set(Timer::Connect(txn), now + INITIAL_RTO);
    }

    /// Tell the session what our NAT is: the server passes it to the peers we meet, and
    /// punching is skipped where the two types rule out a direct path.
    pub fn set_nat(&mut self, now: Instant, classic: Classic) {
        // The server keeps it with our registration: register again, now.
        if self.reg.set_nat(classic) {
            self.sync_other();
            self.timers.set(Timer::Register, now);
        }
        // Without NAT or filter there is no mapping to hold open: refresh the registration
        // only as often as its lifetime needs.
        if classic == Classic::Open && self.cfg.server_keepalive < OPEN_SERVER_KEEPALIVE {
            self.cfg.server_keepalive = OPEN_SERVER_KEEPALIVE;
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.check_possible(now, key);
        }
        self.drive(now);
    }

    /// Our local (private) addresses are now `private`. A change means a new NAT mapping:
    /// re-register at once, move every peer to the relay, punch again.
    pub fn set_local_addrs(&mut self, now: Instant, private: Vec<SocketAddr>) {
        self.local_change(now, private, PathReason::LocalAddressChanged);
    }

    /// The driver moved to a fresh local port after [`Event::Rebind`]; `private` are our
    /// addresses with it. Every peer punches again from the new port.
    pub fn rebound(&mut self, now: Instant, private: Vec<SocketAddr>) {
        self.local_change(now, private, PathReason::Rebound);
    }

    fn local_change(&mut self, now: Instant, private: Vec<SocketAddr>, why: PathReason) {
        // Our public address in the other family went with the old address (or port):
        // the registration there, sent with this one, brings the new one.
        self.host = private;
        match self.reg.set_private(family::offered(&self.host, None)) {
            Ok(true) => self.sync_other(),
            _ => return,
        }
        self.reregister_now(now);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.path_lost(now, key, why.clone());
            self.timers
                .set(Timer::Repunch(key), now + REPUNCH_AFTER_MOVE);
        }
        self.drive(now);
    }

    /// Ask the driver for a fresh port, unless we did so lately. True if asked.
    fn rebind(&mut self, now: Instant) -> bool {
        if self
            .last_rebind
            .is_some_and(|t| now.saturating_duration_since(t) < REBIND_MIN_INTERVAL)
        {
            return false;
        }
        self.last_rebind = Some(now);
        self.event(Event::Rebind);
        true
    }

    /// Send the registration now (a refresh may find a new mapping).
    fn reregister_now(&mut self, now: Instant) {
        self.reg.hurry();
        self.timers.set(Timer::Register, now);
    }

    /// Feed a datagram that arrived on the client's socket and is not QUIC (nor relayed).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.closed || data == HI_RESPONSE {
            return;
        }
        let Ok(frame) = Frame::decode(data) else {
            return;
        };
        // The server may send over either family: its record of us points at whichever of
        // our two registrations reached it first (see `family`).
        let other_server = self.other.as_ref().is_some_and(|o| o.server == from);
        if other_server && self.on_other_family(now, &frame) {
            return;
        }
        let from_server = from == self.cfg.server || other_server;
        match frame {
            Frame::Registered {
                txn,
                observed,
                nonce,
                ..
            } if from_server && txn == self.reg.txn => {
                self.reg.set_nonce(nonce);
                let events = self.reg.answered(observed);
                let back = events.iter().any(|e| matches!(e, Event::ServerBack { .. }));
                for ev in events {
                    self.event(ev);
                }
                if back {
                    self.probe_relay_sessions();
                    self.hurry_connects(now);
                }
                self.timers
                    .set(Timer::Register, now + self.cfg.server_keepalive);
            }
            Frame::Challenge { txn, nonce } if from_server && txn == self.reg.txn => {
                self.on_challenge(now, nonce)
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
                if let Some(a) = self.agent_of(session) {
                    a.peer_ready(now);
                }
            }
            Frame::PeerNat { session, classic } if from_server => {
                if let Some(key) = self.sessions.get(&session).copied() {
                    if let Some(p) = self.peers.get_mut(&key) {
                        if p.nat != Some(classic) {
                            p.nat = Some(classic);
                            self.event(Event::PeerNat { peer: key, classic });
                        }
                    }
                    self.check_possible(now, key);
                }
            }
            Frame::RelayClosed { session, reason } if from_server => {
                self.on_relay_closed(now, session, reason)
            }
            Frame::Probe { session, seq } => self.on_probe(now, from, session, seq, &frame),
            Frame::ProbeAck { session, .. } => {
                if let Some(a) = self.agent_of(session) {
                    a.handle_frame(now, from, &frame);
                }
            }
            _ => {}
        }
        self.drive(now);
    }

    /// The agent running `session`, if it is the current session of a peer.
    fn agent_of(&mut self, session: u64) -> Option<&mut Agent> {
        let key = self.sessions.get(&session)?;
        self.peers
            .get_mut(key)?
            .agent
            .as_mut()
            .filter(|a| a.session() == session)
    }

    fn on_probe(&mut self, now: Instant, from: SocketAddr, session: u64, seq: u32, f: &Frame) {
        let Some(key) = self.sessions.get(&session).copied() else {
            return;
        };
        // Direct datagrams from this address are this peer's.
        self.event(Event::Alias {
            peer: key,
            addr: from,
        });
        match self.agent_of(session) {
            Some(a) => a.handle_frame(now, from, f),
            None => {
                // No agent for that session (relay only, or an earlier session): still
                // answer, the peer may be checking its path or finishing its choice.
                let ack = Frame::ProbeAck {
                    session,
                    seq,
                    observed: from,
                };
                self.send_frame(from, &ack);
            }
        }
    }

    /// The server wants our registration signed over a nonce of its own (our first send, a
    /// restarted server, or a new address): sign it and send it at once. The same nonce
    /// twice waits for the retransmission timer, so a server that keeps challenging cannot
    /// make us loop.
    fn on_challenge(&mut self, now: Instant, nonce: crate::auth::Nonce) {
        if self.reg.set_nonce(nonce) {
            self.timers.set(Timer::Register, now);
        }
    }

    fn on_error(&mut self, now: Instant, txn: u64, code: ErrorCode, reason: String) {
        if txn == self.reg.txn {
            self.event(Event::RegistrationRefused { code, reason });
            return;
        }
        if code == ErrorCode::NotRegistered {
            // The server forgot us (it restarted, or our NAT gave us a new port): register
            // again now and repeat the request once that had time to land.
            let timeout = self.cfg.server_timeout;
            if let Some(c) = self.connects.get_mut(&txn) {
                c.give_up = c.give_up.max(now + timeout);
                self.timers.set(Timer::Connect(txn), now + INITIAL_RTO * 2);
                self.reregister_now(now);
                return;
            }
        }
        let Some(c) = self.connects.remove(&txn) else {
            return;
        };
        self.timers.stop(Timer::Connect(txn));
        match c.id {
            Some(id) => self.event(Event::ConnectDone {
                id,
                result: Err(ConnectError::Refused { code, reason }),
            }),
            // Our own request for a new introduction (after a lost path, or while the
            // peer has not registered again after a server restart): try again later. A
            // peer we cannot reach at all (its relay session went with a restarted server)
            // is most likely registering again itself, which a silent client retries every
            // MAX_REGISTER_RTO: ask again after that long, not after the punching backoff.
            None => {
                if let Some((key, p)) = self.peers.iter().find(|(_, p)| p.name == c.target) {
                    let wait = if p.route == Route::None {
                        MAX_REGISTER_RTO
                    } else {
                        p.backoff.min(REPUNCH_FIRST)
                    };
                    self.timers.set(Timer::Repunch(*key), now + wait);
                }
            }
        }
    }

    /// Advance timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        for timer in self.timers.expired(now) {
            match timer {
                Timer::Register => self.refresh(now),
                Timer::Connect(txn) => self.connect_timer(now, txn),
                Timer::Agent(key) => {
                    if let Some(a) = self.peers.get_mut(&key).and_then(|p| p.agent.as_mut()) {
                        a.handle_timeout(now);
                    }
                }
                Timer::Repunch(key) => {
                    if let Some(name) = self.peers.get(&key).map(|p| p.name.clone()) {
                        if !self.connects.values().any(|c| c.target == name) {
                            self.start_connect(now, name, None);
                        }
                    }
                }
                Timer::Passive(key) => self.passive_timeout(key),
            }
        }
        if let Some(ev) = self.reg.check_silence(now, self.cfg.server_timeout) {
            self.event(ev);
        }
        self.drive(now);
    }

    /// Send the registration (a refresh, or a retransmission while unanswered), with a
    /// relay keepalive for every peer on a direct path.
    fn refresh(&mut self, now: Instant) {
        let frame = self.reg.frame.clone();
        self.send(self.cfg.server, frame);
        self.refresh_other();
        let next = self.reg.sent(now);
        self.timers.set(Timer::Register, next);
        if self.cfg.relay == RelayMode::Never || self.reg.is_lost() {
            return;
        }
        let keepalives: Vec<Vec<u8>> = self
            .peers
            .values()
            .filter(|p| p.direct.is_some() && p.relay_refused.is_none())
            .map(|p| wire::encode_relay(p.side, p.session, &[]))
            .collect();
        for k in keepalives {
            self.send(self.cfg.server, k);
        }
    }

    fn connect_timer(&mut self, now: Instant, txn: u64) {
        let Some(c) = self.connects.get_mut(&txn) else {
            return;
        };
        if now < c.give_up {
            self.transmits.push_back(Transmit {
                dest: self.cfg.server,
                ttl: None,
                payload: c.frame.clone(),
            });
            c.rto = (c.rto * 2).min(MAX_RTO);
            self.timers
                .set(Timer::Connect(txn), (now + c.rto).min(c.give_up));
            return;
        }
        let Some(c) = self.connects.remove(&txn) else {
            return;
        };
        // The server stopped answering: the registration finds out what became of it.
        self.reregister_now(now);
        let after = self.cfg.server_timeout;
        match c.id {
            Some(id) => self.event(Event::ConnectDone {
                id,
                result: Err(ConnectError::ServerUnreachable {
                    server: self.cfg.server,
                    after,
                }),
            }),
            None => {
                if let Some((key, p)) = self.peers.iter().find(|(_, p)| p.name == c.target) {
                    let at = now + p.backoff.min(REPUNCH_FIRST);
                    self.timers.set(Timer::Repunch(*key), at);
                }
            }
        }
    }

    /// After every input: drain every agent's datagrams and events, and re-arm its timer.
    fn drive(&mut self, now: Instant) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.drive_agent(now, key);
        }
    }

    /// Drain one agent (its datagrams first: an introduction's opening probes must leave
    /// before its acknowledgement).
    fn drive_agent(&mut self, now: Instant, key: PeerKey) {
        let mut events = Vec::new();
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if let Some(a) = p.agent.as_mut() {
            while let Some(t) = a.poll_transmit() {
                self.transmits.push_back(t);
            }
            while let Some(ev) = a.poll_event() {
                events.push(ev);
            }
            self.timers.set_opt(Timer::Agent(key), a.poll_timeout());
        }
        for ev in events {
            self.on_agent_event(now, key, ev);
        }
    }

    /// Answer request `id` with `key` if its connection is up, else once it is.
    fn answer_or_wait(&mut self, key: PeerKey, id: ConnectId) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.is_up() {
            self.events.push_back(Event::ConnectDone {
                id,
                result: Ok(key),
            });
        } else {
            p.waiting.push(id);
        }
    }
}
