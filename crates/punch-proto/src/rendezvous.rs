//! The rendezvous server's state machine: registry and introductions, sans-IO.
//!
//! Owns the table of registered peers (name -> key, public address, private addresses,
//! expiry), answering [`Frame::Register`], [`Frame::Connect`] and [`Frame::IntroduceAck`],
//! retransmitting introductions until the introduced side acknowledges them, and relaying
//! each side's acknowledgement to the other as [`Frame::PeerReady`] (the signal that the
//! acknowledging side has opened its NAT; see [`crate::agent`]). It does
//! not own sockets, STUN or the `<Hi!>` liveness check (the IO layer answers those before
//! frames reach this module).
//!
//! Every table is bounded ([`RendezvousConfig`]); a full table answers [`ErrorCode::Busy`].
//!
//! A registration's signature is the costly part of taking it. A refresh that repeats the
//! last signed registration byte for byte (the nonce it already signed) is not checked
//! again (see [`crate::auth`]); the others can be checked by the caller, outside whatever
//! lock holds this state ([`Rendezvous::screen`], [`Rendezvous::handle_checked`]).
//!
//! Relayed datagrams are taken in `relaying` ([`Rendezvous::relay`]); the counters are in
//! `stats` ([`Stats`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::auth::{self, Checked, Gate, RegisterGate, SignedDigest, Unchecked};
use crate::nat::Classic;
use crate::owners::{self, Owners, OwnersConfig, SharedOwners};
use crate::ratelimit::{self, Limiter, RateLimit};
use crate::relay::{RelayConfig, RelayUsage};
use crate::wire::{self, ErrorCode, Frame, KeyBytes, PeerInfo, MAX_NAME_LEN};

mod relaying;
mod stats;

pub use stats::{ErrorCounts, Stats};

/// How long a registration lives without a refresh. Clients refresh every 25 s
/// (below the 30 s many NATs give idle UDP mappings), so three refreshes may be lost.
pub const DEFAULT_REGISTRATION_TTL: Duration = Duration::from_secs(90);
/// Most registered peers.
pub const DEFAULT_MAX_PEERS: usize = 100_000;
/// Retransmission interval of an introduction to the introduced (passive) side.
pub const INTRO_RETRANSMIT: Duration = Duration::from_millis(250);
/// Introductions sent to the passive side before giving up (first send included).
pub const INTRO_ATTEMPTS: u32 = 6;
/// How long a `Connect` transaction is remembered, so a retransmitted request gets the
/// same session instead of a second one.
pub const CONNECT_DEDUP_TTL: Duration = Duration::from_secs(10);
/// Most introductions in flight (and remembered transactions and sessions).
pub const MAX_PENDING: usize = 10_000;
/// How long the two addresses of a session are remembered to relay ready signals.
pub const SESSION_TTL: Duration = Duration::from_secs(30);
/// Introduction-to-ready times kept for [`Rendezvous::poll_ready_time`] (the oldest are
/// dropped past this, when nobody drains them).
pub const MAX_READY_TIMES: usize = 1024;

/// Tunables of the rendezvous server.
#[derive(Debug, Clone)]
pub struct RendezvousConfig {
    /// Lifetime of a registration without refresh.
    pub registration_ttl: Duration,
    /// Most registered peers.
    pub max_peers: usize,
    /// Relay limits (and whether to relay at all).
    pub relay: RelayConfig,
    /// Which key owns each name (shared with the TCP registry; stored by the IO layer).
    pub owners: SharedOwners,
    /// Registrations per source address (over it: dropped unanswered). Counted apart for
    /// the two steps: first requests (answered with a challenge) and signed ones over a
    /// nonce the address received, so a flood of first requests from an address (a
    /// CGNAT's, shared with real clients) cannot starve the signed registrations behind it.
    pub register_limit: RateLimit,
    /// Introduction requests per source address (over it: dropped unanswered).
    pub connect_limit: RateLimit,
    /// Key of the registration nonces ([`crate::auth::Nonces`]); random by default.
    pub nonce_secret: [u8; 32],
}

impl Default for RendezvousConfig {
    fn default() -> Self {
        RendezvousConfig {
            registration_ttl: DEFAULT_REGISTRATION_TTL,
            max_peers: DEFAULT_MAX_PEERS,
            relay: RelayConfig::default(),
            owners: Owners::shared(OwnersConfig::default()),
            register_limit: ratelimit::DEFAULT_REGISTER,
            connect_limit: ratelimit::DEFAULT_CONNECT,
            nonce_secret: rand::random(),
        }
    }
}

#[derive(Debug, Clone)]
struct Registration {
    key: KeyBytes,
    public: SocketAddr,
    private: Vec<SocketAddr>,
    expires: Instant,
    /// The NAT type the peer reported in its registration, if any.
    nat: Option<Classic>,
    /// The address the same key registered from in the other family (a dual-stack
    /// client registers over both), and until when that registration holds.
    other: Option<(SocketAddr, Instant)>,
    /// Digests of the last signed registration taken over IPv4 and over IPv6
    /// ([`auth::signed_digest`]): the same bytes again need no signature check.
    signed: [SignedDigest; 2],
}

impl Registration {
    /// `addr` is one of the peer's registered addresses (either family) at `now`.
    fn is_at(&self, addr: SocketAddr, now: Instant) -> bool {
        self.public == addr
            || self
                .other
                .is_some_and(|(o, until)| o == addr && until > now)
    }
}

#[derive(Debug)]
struct PendingIntro {
    to: SocketAddr,
    payload: Vec<u8>,
    next: Instant,
    attempts: u32,
}

#[derive(Debug, Clone)]
struct ConnectRecord {
    /// Both introductions as sent, to repeat on a retransmitted request.
    to_requester: Vec<u8>,
    target_addr: SocketAddr,
    to_target: Vec<u8>,
    expires: Instant,
}

/// The two sides of a punching session and whether each acknowledged its introduction.
#[derive(Debug, Clone)]
struct SessionRecord {
    requester: SocketAddr,
    target: SocketAddr,
    requester_ready: bool,
    target_ready: bool,
    expires: Instant,
    relay: RelayUsage,
    /// Set once the relay ended this session; datagrams are then answered with the reason.
    relay_closed: Option<String>,
    /// When the introductions went out.
    introduced: Instant,
    /// Whether the relay forwarded a datagram of this session (counted in the live ones).
    relaying: bool,
}

/// A registered name, shared by the registry's tables.
type Name = Arc<str>;

/// The rendezvous state machine.
#[derive(Debug)]
pub struct Rendezvous {
    cfg: RendezvousConfig,
    /// Names are shared by this table, `by_addr` and `expiries` (one allocation each: a
    /// million peers would otherwise hold three copies of every name).
    peers: HashMap<Name, Registration>,
    /// Public address -> the name last registered from it (finds who sent a `Connect`).
    by_addr: HashMap<SocketAddr, Name>,
    pending: HashMap<u64, PendingIntro>,
    connects: HashMap<(SocketAddr, u64), ConnectRecord>,
    /// Session id -> the two sides and their acknowledgements, to relay ready signals.
    sessions: HashMap<u64, SessionRecord>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    rng: StdRng,
    stats: Stats,
    gate: RegisterGate,
    connect_limiter: Limiter,
    /// Sessions in the table that relayed a datagram.
    relaying: usize,
    /// Introduction-to-ready times not yet taken by [`Rendezvous::poll_ready_time`].
    ready_times: VecDeque<Duration>,
    /// Registrations by expiry, soonest first: one entry per name in `peers`, moved back
    /// when found refreshed. Expiring is then the work of the entries due, not a walk over
    /// every peer after every datagram (which made each registration cost in proportion
    /// to the peers registered).
    expiries: BinaryHeap<Reverse<(Instant, Name)>>,
    /// When the bounded tables (introductions, sessions) are swept next.
    next_sweep: Option<Instant>,
}

/// Interval of the sweep of the introduction and session tables (bounded by
/// [`MAX_PENDING`]; lookups check expiry themselves, so a late sweep only holds memory).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl Rendezvous {
    /// A server with no peers; `seed` drives the session ids it picks.
    pub fn new(cfg: RendezvousConfig, seed: u64) -> Rendezvous {
        Rendezvous {
            peers: HashMap::new(),
            by_addr: HashMap::new(),
            pending: HashMap::new(),
            connects: HashMap::new(),
            sessions: HashMap::new(),
            transmits: VecDeque::new(),
            rng: StdRng::seed_from_u64(seed),
            stats: Stats::default(),
            gate: RegisterGate::new(&cfg.nonce_secret, cfg.register_limit),
            connect_limiter: Limiter::new(cfg.connect_limit),
            relaying: 0,
            ready_times: VecDeque::new(),
            expiries: BinaryHeap::new(),
            next_sweep: None,
            cfg,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of live registrations.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Sessions that relayed a datagram and have not expired (idle past the relay's
    /// timeout, or past [`SESSION_TTL`] after the introduction).
    pub fn relay_session_count(&self) -> usize {
        self.relaying
    }

    /// The next introduction-to-ready time: from sending a pair its introductions to the
    /// moment both sides have acknowledged them (each has opened its NAT toward the other
    /// and the server tells both [`Frame::PeerReady`]). One per session, in order.
    pub fn poll_ready_time(&mut self) -> Option<Duration> {
        self.ready_times.pop_front()
    }

    fn send(&mut self, to: SocketAddr, frame: &Frame) -> Option<Vec<u8>> {
        match frame.encode() {
            Ok(bytes) => {
                self.transmits.push_back((to, bytes.clone()));
                Some(bytes)
            }
            Err(_) => None,
        }
    }

    fn error(&mut self, to: SocketAddr, txn: u64, code: ErrorCode, detail: &str) {
        self.stats.errors += 1;
        self.stats.errors_by_code.add(code);
        let mut reason = detail.to_string();
        // `detail` quotes names a peer chose: cut at a char boundary, or truncate panics.
        let mut end = reason.len().min(crate::wire::MAX_REASON_LEN);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        self.send(to, &Frame::Error { txn, code, reason });
    }

    fn live(&self, name: &str, now: Instant) -> Option<&Registration> {
        self.peers.get(name).filter(|r| r.expires > now)
    }

    /// Feed a decoded frame from `from`. Frames a server does not take are ignored.
    pub fn handle_frame(&mut self, now: Instant, from: SocketAddr, frame: Frame) {
        if let Some(unchecked) = self.screen(now, from, frame) {
            self.handle_checked(now, unchecked.check());
        }
    }

    /// [`Rendezvous::handle_frame`], except for a registration whose signature is still
    /// to be checked: that one comes back, for [`Unchecked::check_all`] (anywhere, say
    /// outside the lock that holds this state) and then [`Rendezvous::handle_checked`].
    /// It has passed the limit and the nonce already.
    pub fn screen(&mut self, now: Instant, from: SocketAddr, frame: Frame) -> Option<Unchecked> {
        match frame {
            register @ Frame::Register { .. } => return self.on_register(now, from, register),
            Frame::Connect { txn, target } => {
                if !self.connect_limiter.allow(now, from.ip()) {
                    self.stats.connect_limited += 1;
                } else {
                    self.connect(now, from, txn, target)
                }
            }
            Frame::IntroduceAck { session } => self.introduce_ack(now, from, session),
            _ => {}
        }
        None
    }

    /// Take a registration [`Rendezvous::screen`] gave back, now checked: into the table
    /// if its signature is its key's, else refused.
    pub fn handle_checked(&mut self, now: Instant, checked: Checked) {
        let Checked {
            from,
            frame,
            digest,
            valid,
        } = checked;
        if valid {
            return self.take_register(now, from, frame, digest);
        }
        if let Frame::Register { txn, .. } = frame {
            self.stats.bad_signatures += 1;
            let detail = "the registration is not signed by its key";
            self.error(from, txn, ErrorCode::BadSignature, detail);
        }
    }

    /// A registration: through the gate's cheap steps (limits, nonce), then into the
    /// table if its bytes are the record's last signed ones, else back to be checked.
    fn on_register(
        &mut self,
        now: Instant,
        from: SocketAddr,
        register: Frame,
    ) -> Option<Unchecked> {
        let Frame::Register { txn, ref name, .. } = register else {
            return None;
        };
        match self.gate.admit(now, from, &register) {
            Gate::Limited => self.stats.register_limited += 1,
            Gate::Challenge(nonce) => {
                self.stats.challenged += 1;
                self.send(from, &Frame::Challenge { txn, nonce });
            }
            // Not given by `admit` for a registration.
            Gate::BadSignature => {}
            Gate::Accept => {
                let digest = auth::signed_digest(&register);
                let known = self
                    .peers
                    .get(name.as_str())
                    .is_some_and(|r| r.signed.contains(&digest));
                if !known {
                    return Some(Unchecked {
                        from,
                        frame: register,
                        digest,
                    });
                }
                self.stats.signatures_known += 1;
                self.take_register(now, from, register, digest);
            }
        }
        None
    }

    /// A registration whose signature is good: into the table.
    fn take_register(
        &mut self,
        now: Instant,
        from: SocketAddr,
        frame: Frame,
        digest: SignedDigest,
    ) {
        if let Frame::Register {
            txn,
            name,
            key,
            private,
            nat,
            ..
        } = frame
        {
            let signed = (from.is_ipv6(), digest);
            self.register(now, from, txn, name, key, private, nat, signed);
        }
    }

    /// Take a datagram that is a punch frame of another version ([`wire::WireError::Version`]):
    /// a version-1 registration is told to upgrade ([`wire::legacy_upgrade_answer`]),
    /// within the registration rate limit; anything else is dropped.
    pub fn handle_other_version(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Some(answer) = wire::legacy_upgrade_answer(datagram) else {
            return;
        };
        // Within the first step's limit: an old client's request is a first request.
        if !self.gate.allow_first(now, from) {
            self.stats.register_limited += 1;
            return;
        }
        self.stats.legacy_refused += 1;
        self.transmits.push_back((from, answer));
    }

    /// `a` and `b` are the same peer: one address, or its two families' addresses.
    fn same_peer(&self, a: SocketAddr, b: SocketAddr) -> bool {
        a == b
            || matches!(
                (self.by_addr.get(&a), self.by_addr.get(&b)),
                (Some(x), Some(y)) if x == y
            )
    }

    fn introduce_ack(&mut self, now: Instant, from: SocketAddr, session: u64) {
        // A dual-stack peer may answer from its other family's address.
        if (self.pending.get(&session)).is_some_and(|p| self.same_peer(p.to, from)) {
            self.pending.remove(&session);
        }
        let Some((requester, target)) =
            self.sessions.get(&session).map(|r| (r.requester, r.target))
        else {
            return;
        };
        let (is_requester, is_target) = (
            self.same_peer(requester, from),
            self.same_peer(target, from),
        );
        let Some(rec) = self.sessions.get_mut(&session) else {
            return;
        };
        let was_ready = rec.requester_ready && rec.target_ready;
        if is_requester {
            rec.requester_ready = true;
        } else if is_target {
            rec.target_ready = true;
        } else {
            return;
        }
        if !was_ready && rec.requester_ready && rec.target_ready {
            if self.ready_times.len() >= MAX_READY_TIMES {
                self.ready_times.pop_front();
            }
            let after = now.saturating_duration_since(rec.introduced);
            self.ready_times.push_back(after);
        }
        // Each side hears "peer ready" only once it has acknowledged itself, so the signal
        // never arrives before the introduction it refers to. A repeated acknowledgement
        // (after a retransmitted introduction) repeats both signals: lost ones are replaced.
        if rec.requester_ready && rec.target_ready {
            let (a, b) = (rec.requester, rec.target);
            self.send(a, &Frame::PeerReady { session });
            self.send(b, &Frame::PeerReady { session });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        now: Instant,
        from: SocketAddr,
        txn: u64,
        name: String,
        key: KeyBytes,
        private: Vec<SocketAddr>,
        nat: Option<Classic>,
        (ipv6, digest): (bool, SignedDigest),
    ) {
        let name: Name = Arc::from(name);
        let admitted = owners::lock(&self.cfg.owners).admit(&name, &key);
        if let Err((code, detail)) = admitted {
            return self.error(from, txn, code, &detail);
        }
        if let Some(existing) = self.live(&name, now) {
            if existing.key != key {
                let detail = format!("the name {name:?} is registered by another key");
                return self.error(from, txn, ErrorCode::NameTaken, &detail);
            }
        } else if self.peers.len() >= self.cfg.max_peers && !self.peers.contains_key(&name) {
            self.expire(now);
            if self.peers.len() >= self.cfg.max_peers {
                return self.error(from, txn, ErrorCode::Busy, "registry full");
            }
        }
        let expires = now + self.cfg.registration_ttl;
        let live = self.peers.get_mut(&name).filter(|r| r.expires > now);
        match live {
            // The same key over the other family (the owner checked above): the peer's
            // second address. Its record, and the address introductions go to, stay.
            Some(old) if old.public.is_ipv4() != from.is_ipv4() => {
                if let Some((prev, _)) = old.other.filter(|(prev, _)| *prev != from) {
                    if self.by_addr.get(&prev) == Some(&name) {
                        self.by_addr.remove(&prev);
                    }
                }
                old.other = Some((from, expires));
                old.private = private;
                old.nat = nat;
                old.signed[usize::from(ipv6)] = digest;
                self.by_addr.insert(from, name);
            }
            old => {
                // The same key's digests stay (its other family's); another key's go.
                let mut signed = old
                    .as_ref()
                    .filter(|o| o.key == key)
                    .map_or([[0; 16]; 2], |o| o.signed);
                let other = old.and_then(|o| o.other);
                signed[usize::from(ipv6)] = digest;
                match self.peers.get(&name) {
                    Some(old) => {
                        if old.public != from && self.by_addr.get(&old.public) == Some(&name) {
                            self.by_addr.remove(&old.public);
                        }
                    }
                    // A name new to the table gets its one entry in the expiry queue.
                    None => self.expiries.push(Reverse((expires, name.clone()))),
                }
                self.by_addr.insert(from, name.clone());
                self.peers.insert(
                    name,
                    Registration {
                        key,
                        public: from,
                        private,
                        expires,
                        nat,
                        other,
                        signed,
                    },
                );
            }
        }
        self.stats.registrations += 1;
        let expires_secs = u32::try_from(self.cfg.registration_ttl.as_secs()).unwrap_or(u32::MAX);
        let nonce = self.gate.next_nonce(now, from);
        self.send(
            from,
            &Frame::Registered {
                txn,
                observed: from,
                expires_secs,
                nonce,
            },
        );
    }

    fn requester_name(&self, from: SocketAddr, now: Instant) -> Option<Name> {
        let name = self.by_addr.get(&from)?;
        self.live(name, now)
            .filter(|r| r.is_at(from, now))
            .map(|_| name.clone())
    }

    fn connect(&mut self, now: Instant, from: SocketAddr, txn: u64, target: String) {
        if let Some(rec) = self.connects.get(&(from, txn)).cloned() {
            // A retransmitted request: repeat both introductions, same session.
            self.transmits.push_back((from, rec.to_requester));
            self.transmits.push_back((rec.target_addr, rec.to_target));
            return;
        }
        let Some(me) = self.requester_name(from, now) else {
            return self.error(
                from,
                txn,
                ErrorCode::NotRegistered,
                // No reason text: the source is unproven (it may be spoofed), so the answer
                // stays no larger than the request; the code says it all.
                "",
            );
        };
        if *me == *target {
            return self.error(
                from,
                txn,
                ErrorCode::SelfConnect,
                "cannot connect to yourself",
            );
        }
        let Some(peer) = self.live(&target, now).cloned() else {
            let detail = format!("peer unknown: {target:?} is not registered");
            return self.error(from, txn, ErrorCode::UnknownPeer, &detail);
        };
        let full = |r: &Self| {
            r.pending.len() >= MAX_PENDING
                || r.connects.len() >= MAX_PENDING
                || r.sessions.len() >= MAX_PENDING
        };
        if full(self) {
            self.expire(now);
            if full(self) {
                return self.error(
                    from,
                    txn,
                    ErrorCode::Busy,
                    "too many introductions in flight",
                );
            }
        }
        // `me` was found by address, so it is registered: the lookup cannot miss.
        let Some(mine) = self.peers.get(&me).cloned() else {
            return;
        };
        let session: u64 = self.rng.random();
        debug_assert!(me.len() <= MAX_NAME_LEN);
        let to_requester = Frame::Introduce {
            txn,
            session,
            initiator: true,
            peer: PeerInfo {
                name: target,
                key: peer.key,
                public: peer.public,
                private: peer.private,
            },
        };
        let to_target = Frame::Introduce {
            txn: 0,
            session,
            initiator: false,
            peer: PeerInfo {
                name: me.to_string(),
                key: mine.key,
                // Where the request came from: the requester's registered address in
                // the family it asked over, which it has just proven it receives on.
                public: from,
                private: mine.private,
            },
        };
        // Both at once, so both sides start punching together.
        let (Some(a), Some(b)) = (
            self.send(from, &to_requester),
            self.send(peer.public, &to_target),
        ) else {
            return;
        };
        self.stats.introductions += 1;
        // Each side's NAT type, when known, lets the other skip punching that cannot work.
        if let Some(classic) = peer.nat {
            self.send(from, &Frame::PeerNat { session, classic });
        }
        if let Some(classic) = mine.nat {
            self.send(peer.public, &Frame::PeerNat { session, classic });
        }
        self.pending.insert(
            session,
            PendingIntro {
                to: peer.public,
                payload: b.clone(),
                next: now + INTRO_RETRANSMIT,
                attempts: 1,
            },
        );
        let replaced = self.sessions.insert(
            session,
            SessionRecord {
                requester: from,
                target: peer.public,
                requester_ready: false,
                target_ready: false,
                expires: now + SESSION_TTL,
                relay: RelayUsage::new(&self.cfg.relay, now),
                relay_closed: None,
                introduced: now,
                relaying: false,
            },
        );
        // A session id drawn twice (64 random bits): keep the live count right.
        if replaced.is_some_and(|r| r.relaying) {
            self.relaying -= 1;
        }
        self.connects.insert(
            (from, txn),
            ConnectRecord {
                to_requester: a,
                target_addr: peer.public,
                to_target: b,
                expires: now + CONNECT_DEDUP_TTL,
            },
        );
    }

    fn expire(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.expiries.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, name))) = self.expiries.pop() else {
                break;
            };
            let Some(r) = self.peers.get(&name) else {
                continue;
            };
            if r.expires > now {
                // Refreshed since: its entry goes back at the new expiry.
                self.expiries.push(Reverse((r.expires, name)));
                continue;
            }
            let addrs = [Some(r.public), r.other.map(|(o, _)| o)];
            for a in addrs.into_iter().flatten() {
                if self.by_addr.get(&a) == Some(&name) {
                    self.by_addr.remove(&a);
                }
            }
            self.peers.remove(&name);
            self.stats.expired += 1;
        }
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_INTERVAL);
        self.connects.retain(|_, c| c.expires > now);
        let mut ended_relays = 0;
        self.sessions.retain(|_, r| {
            let keep = r.expires > now;
            if !keep && r.relaying {
                ended_relays += 1;
            }
            keep
        });
        self.relaying -= ended_relays;
    }

    /// Advance timers: retransmit introductions, expire registrations.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        let mut gave_up = Vec::new();
        for (session, p) in self.pending.iter_mut() {
            if p.next <= now {
                if p.attempts >= INTRO_ATTEMPTS {
                    gave_up.push(*session);
                    continue;
                }
                p.attempts += 1;
                p.next = now + INTRO_RETRANSMIT * p.attempts;
                self.transmits.push_back((p.to, p.payload.clone()));
            }
        }
        for s in gave_up {
            self.pending.remove(&s);
            self.stats.intro_timeouts += 1;
        }
    }

    /// When [`Rendezvous::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let intro = self.pending.values().map(|p| p.next).min();
        // The soonest entry may be of a registration refreshed since: the wake is then
        // early, and moves that entry back.
        let expiry = self.expiries.peek().map(|Reverse((at, _))| *at);
        match (intro, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Next datagram to send: (destination, bytes).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }
}
