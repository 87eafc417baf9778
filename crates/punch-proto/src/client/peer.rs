//! One peer of the client session: its introduction, punching, route, connection state
//! and recovery; the decisions of [`super::Session`] that concern one peer.
//!
//! Owns what an introduction, a punching result, a lost direct path or a closed relay
//! session means for a peer's route, what the application is told, and when the peer is
//! forgotten.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::event::{ConnectError, ConnectId, Event, Path, PathKind, PathReason, PeerKey, Route};
use super::family;
use super::timer::Timer;
use super::trust::{self, KeyCheck};
use super::{
    RelayMode, Session, Verdict, MAX_PEERS, MUTUAL_WINDOW, PASSIVE_TIMEOUT, REPUNCH_AFTER_LOSS,
    REPUNCH_FIRST, REPUNCH_MAX,
};
use crate::agent::{Agent, Event as AgentEvent};
use crate::nat::Classic;
use crate::wire::{Frame, PeerInfo, Side};

/// Where the peer's (QUIC) connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conn {
    NotStarted,
    Connecting,
    Up,
}

#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) name: String,
    pub(crate) info: PeerInfo,
    /// We asked for the current session: we open the connection (if it is not up).
    pub(crate) initiator: bool,
    pub(crate) session: u64,
    /// The session before the current one (its late datagrams still belong to us).
    pub(crate) prev_session: Option<u64>,
    pub(crate) side: Side,
    /// When the current session's introduction arrived.
    pub(crate) introduced_at: Instant,
    pub(crate) agent: Option<Agent>,
    /// The peer's address on the chosen direct path, while it answers.
    pub(crate) direct: Option<SocketAddr>,
    /// Why the relay cannot be used, once the server said so.
    pub(crate) relay_refused: Option<String>,
    /// Application requests waiting for the connection.
    pub(crate) waiting: Vec<ConnectId>,
    pub(crate) conn: Conn,
    /// The path last reported to the application: its kind and where it goes (a direct
    /// path to another address is news too).
    pub(crate) reported: Option<(PathKind, SocketAddr)>,
    pub(crate) route: Route,
    pub(crate) path: Option<Path>,
    pub(crate) backoff: Duration,
    /// The peer's NAT type, when the server told us.
    pub(crate) nat: Option<Classic>,
    /// Both sides asked for each other at once and the peer's request won: its
    /// connection carries the pair, and ours (if one is opening) is a duplicate.
    pub(crate) yielded: bool,
    /// The direct path was lost and has not come back yet.
    pub(crate) recovering: bool,
    /// A fresh port was asked for during this recovery.
    pub(crate) rebind_tried: bool,
    /// TCP was tried (or is due once the connection is up) for this connection.
    pub(crate) tcp_tried: bool,
    /// Punching ended without a direct path before the connection was up: try TCP then.
    pub(crate) tcp_wanted: bool,
}

impl Peer {
    pub(crate) fn is_up(&self) -> bool {
        self.conn == Conn::Up
    }

    /// Still punching.
    fn punching(&self) -> bool {
        self.agent.as_ref().is_some_and(|a| !a.is_done())
    }
}

/// The candidates tried toward `info` (private first, then public), for messages.
fn tried(info: &PeerInfo) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in info.private.iter().chain(std::iter::once(&info.public)) {
        if !out.contains(a) {
            out.push(*a);
        }
    }
    out
}

impl Session {
    fn relay_route(&self, p: &Peer) -> Route {
        Route::Relay {
            server: self.cfg.server,
            side: p.side,
            session: p.session,
        }
    }

    /// Point `key`'s datagrams at `route` (described as `path`), telling the driver.
    fn set_route(&mut self, key: PeerKey, route: Route, path: Option<Path>) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.route == route && p.path == path {
            return;
        }
        p.route = route;
        p.path = path;
        self.events.push_back(Event::Route {
            peer: key,
            route,
            path,
        });
    }

    /// Tell the application about a path change of an established connection.
    fn report_path(&mut self, key: PeerKey, path: Option<Path>, reason: PathReason) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if !p.is_up() {
            return;
        }
        p.reported = path.map(|p| (p.kind, p.remote));
        self.events.push_back(Event::PathChanged {
            peer: key,
            path,
            reason,
        });
    }

    fn ack_introduction(&mut self, session: u64) {
        self.send_frame(self.cfg.server, &Frame::IntroduceAck { session });
    }

    /// Check the introduced key against the one we know for the name (see [`trust`]):
    /// false when it is refused (the introduction is then acknowledged, so the server
    /// stops repeating it, and goes no further).
    fn key_trusted(&mut self, session: u64, id: Option<ConnectId>, info: &PeerInfo) -> bool {
        let (name, key) = (info.name.clone(), info.key);
        let check = trust::lock(&self.cfg.peer_keys).check(&name, &key);
        match check {
            KeyCheck::Known => true,
            KeyCheck::First { recorded } => {
                self.event(Event::PeerKeyLearned {
                    name,
                    key,
                    replaced: None,
                    recorded,
                });
                true
            }
            KeyCheck::Replaced { known } => {
                self.event(Event::PeerKeyLearned {
                    name,
                    key,
                    replaced: Some(known),
                    recorded: true,
                });
                true
            }
            KeyCheck::Changed { known } => {
                self.ack_introduction(session);
                if let Some(id) = id {
                    self.event(Event::ConnectDone {
                        id,
                        result: Err(ConnectError::KeyChanged {
                            name: name.clone(),
                            known,
                            offered: key,
                        }),
                    });
                }
                self.event(Event::PeerKeyRefused {
                    name,
                    known,
                    offered: key,
                });
                false
            }
        }
    }

    pub(super) fn on_introduce(
        &mut self,
        now: Instant,
        txn: u64,
        session: u64,
        initiator: bool,
        info: PeerInfo,
    ) {
        if self.sessions.contains_key(&session) {
            // A retransmitted introduction: our acknowledgement was lost.
            return self.ack_introduction(session);
        }
        let id = if initiator {
            match self.connects.remove(&txn) {
                Some(c) => {
                    self.timers.stop(Timer::Connect(txn));
                    c.id
                }
                None => return, // stale: we gave up on that request
            }
        } else {
            None
        };
        let key = info.key;
        if key == self.cfg.signer.public_key() {
            return; // introduced to ourselves: nothing to punch
        }
        if !self.key_trusted(session, id, &info) {
            return;
        }
        let new = !self.peers.contains_key(&key);
        if new {
            if self.peers.len() >= MAX_PEERS {
                if let Some(id) = id {
                    self.event(Event::ConnectDone {
                        id,
                        result: Err(ConnectError::Busy),
                    });
                }
                return;
            }
            self.peers.insert(key, self.new_peer(now, &info, initiator));
            self.event(Event::PeerAdded {
                peer: key,
                name: info.name.clone(),
            });
            if !initiator {
                self.timers.set(Timer::Passive(key), now + PASSIVE_TIMEOUT);
            }
        }
        let me_smaller = self.cfg.signer.public_key() < key;
        let ours_pending = self.connects.values().any(|c| c.target == info.name);
        let p = self.peers.get_mut(&key).expect("inserted above");
        let recent = now.saturating_duration_since(p.introduced_at) < MUTUAL_WINDOW;
        // Both sides asked for each other at about the same time: the server opened a
        // session for each. Both keep the one the smaller key asked for, so they punch
        // and relay in one session and one connection forms.
        let mutual = !new
            && p.session != session
            && if initiator {
                p.side == Side::Target && recent
            } else {
                ours_pending || (p.side == Side::Requester && recent)
            };
        let current_by_smaller = (p.side == Side::Requester) == me_smaller;
        let this_by_smaller = initiator == me_smaller;
        if mutual && current_by_smaller && !this_by_smaller {
            if initiator {
                p.yielded = true;
            }
            self.remember_session(key, session, false);
            if let Some(id) = id {
                self.answer_or_wait(key, id);
            }
            return self.ack_introduction(session);
        }
        if mutual && !initiator && !me_smaller {
            // The peer's request wins: its connection opens; ours, if any, gives way.
            p.yielded = true;
        }
        p.initiator = initiator;
        p.info = info.clone();
        p.side = if initiator {
            Side::Requester
        } else {
            Side::Target
        };
        p.introduced_at = now;
        p.relay_refused = None;
        self.timers.stop(Timer::Repunch(key));
        // A new session while we hold a direct path: the peer lost it on its side (or
        // moved); ours is about to be replaced, and the agent watching it goes.
        self.path_lost(now, key, PathReason::PeerRepunching);
        self.remember_session(key, session, true);
        if let Some(id) = id {
            self.answer_or_wait(key, id);
        }
        let mode = self.cfg.relay;
        let p = &self.peers[&key];
        if mode != RelayMode::Never && p.direct.is_none() {
            let route = self.relay_route(p);
            let path = Path::relay(self.cfg.server);
            // An established connection that had no path (its relay session closed) is
            // carried again: the application hears it now, not when punching ends.
            let told = p.reported == Some((path.kind, path.remote));
            self.set_route(key, route, Some(path));
            if !told {
                self.report_path(key, Some(path), PathReason::Reintroduced);
            }
        }
        let mut no_common_family = None;
        if mode != RelayMode::Only {
            let candidates = self.candidates(&info);
            if candidates.is_empty() {
                no_common_family = Some(family::no_common_family(&info, &self.own_addrs()));
            } else {
                let mut cfg = self.cfg.punch.clone();
                if self.peers.get(&key).is_some_and(|p| p.recovering) {
                    cfg.deadline = cfg.deadline.min(super::RECOVERY_DEADLINE);
                }
                let agent = Agent::new(cfg, session, candidates, now);
                if let Some(p) = self.peers.get_mut(&key) {
                    p.agent = Some(agent);
                }
            }
        }
        let p = &self.peers[&key];
        let open =
            initiator && mode != RelayMode::Never && !p.yielded && p.conn == Conn::NotStarted;
        // The opening probes must be on the wire before the acknowledgement: the server
        // relays it to the peer as the signal that our NAT is open (see the agent).
        self.drive_agent(now, key);
        self.ack_introduction(session);
        if open {
            self.open_connection(key);
        }
        match no_common_family {
            Some(why) => self.give_up_punching(now, key, why),
            None => self.check_possible(now, key),
        }
    }

    fn new_peer(&self, now: Instant, info: &PeerInfo, initiator: bool) -> Peer {
        Peer {
            name: info.name.clone(),
            info: info.clone(),
            initiator,
            session: 0,
            prev_session: None,
            side: Side::Target,
            introduced_at: now,
            agent: None,
            direct: None,
            relay_refused: None,
            waiting: Vec::new(),
            conn: Conn::NotStarted,
            reported: None,
            route: Route::None,
            path: None,
            backoff: REPUNCH_FIRST,
            nat: None,
            yielded: false,
            recovering: false,
            rebind_tried: false,
            tcp_tried: false,
            tcp_wanted: false,
        }
    }

    /// Map `session` to `key`; as the current one if `current`, else as the previous one.
    /// Only a peer's current and previous sessions stay mapped.
    fn remember_session(&mut self, key: PeerKey, session: u64, current: bool) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if current {
            if p.session != 0 {
                p.prev_session = Some(p.session);
            }
            p.session = session;
        } else {
            p.prev_session = Some(session);
        }
        let keep = [Some(p.session), p.prev_session];
        self.sessions
            .retain(|s, k| *k != key || keep.contains(&Some(*s)));
        self.sessions.insert(session, key);
        self.events.push_back(Event::RelaySessions {
            peer: key,
            sessions: keep,
        });
    }

    /// Open the connection to a peer, unless one is already opening or open (two
    /// connections to one peer would close each other as duplicates).
    pub(super) fn open_connection(&mut self, key: PeerKey) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.conn != Conn::NotStarted {
            return;
        }
        p.conn = Conn::Connecting;
        self.events.push_back(Event::OpenConnection { peer: key });
    }

    /// Stop punching toward a peer whose NAT type, with ours, rules a direct path out:
    /// the relay carries the connection at once (or the error comes at once), instead of
    /// after the punching deadline.
    pub(super) fn check_possible(&mut self, now: Instant, key: PeerKey) {
        let Some(own) = self.reg.nat() else { return };
        let Some(p) = self.peers.get(&key) else {
            return;
        };
        let Some(theirs) = p.nat else { return };
        let Some(why) = own.direct_impossible(theirs) else {
            return;
        };
        // NAT types are IPv4's: an IPv6 candidate we can use may still work (no NAT on
        // it, at most a stateful firewall, which punching opens).
        let mine = self.own_addrs();
        let info = &p.info;
        let ipv6_left = std::iter::once(&info.public)
            .chain(&info.private)
            .any(|a| a.is_ipv6() && family::usable(*a, &mine));
        if ipv6_left {
            return;
        }
        if !p.punching() || p.direct.is_some() {
            return;
        }
        let reason = format!(
            "{why} (our NAT: {}, {}'s: {})",
            own.as_str(),
            p.name,
            theirs.as_str()
        );
        self.give_up_punching(now, key, reason);
    }

    /// End punching toward `key` for good: stay on the relay if it may be used, else fail.
    fn give_up_punching(&mut self, _now: Instant, key: PeerKey, why: String) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        p.agent = None;
        self.timers.stop(Timer::Agent(key));
        self.timers.stop(Timer::Repunch(key));
        let reason = PathReason::Impossible(why.clone());
        if self.punching_ended(key, reason.clone()) {
            let path = Some(Path::relay(self.cfg.server));
            self.report_path(key, path, reason);
            return;
        }
        self.no_path_left(key, ConnectError::Impossible(why));
    }

    /// Punching toward `key` ended without a direct path: the application hears it (it
    /// may try another transport). True if the relay may still carry the peer.
    fn punching_ended(&mut self, key: PeerKey, reason: PathReason) -> bool {
        self.event(Event::DirectFailed { peer: key, reason });
        if self.cfg.tcp_fallback {
            if let Some(p) = self.peers.get_mut(&key).filter(|p| p.initiator) {
                p.tcp_wanted = true;
            }
            self.maybe_try_tcp(key);
        }
        self.cfg.relay != RelayMode::Never
            && self
                .peers
                .get(&key)
                .is_some_and(|p| p.relay_refused.is_none())
    }

    /// A peer has no path and will get none soon: fail the waiting requests (or tell the
    /// application about an incoming peer that could not connect) and forget the peer;
    /// an established connection stays, and the application hears it has no path for
    /// now. True if the peer was kept.
    fn no_path_left(&mut self, key: PeerKey, err: ConnectError) -> bool {
        let Some(p) = self.peers.get_mut(&key) else {
            return false;
        };
        if p.is_up() {
            let reason = match &err {
                ConnectError::NoPath {
                    deadline, tried, ..
                } => PathReason::NoDirectPath {
                    deadline: *deadline,
                    tried: tried.clone(),
                    retry_in: None,
                },
                other => PathReason::Impossible(other.to_string()),
            };
            self.report_path(key, None, reason);
            return true;
        }
        let waiting = std::mem::take(&mut p.waiting);
        let name = p.name.clone();
        if waiting.is_empty() {
            self.event(Event::IncomingFailed {
                name: name.clone(),
                error: err.clone(),
            });
        }
        for id in waiting {
            self.fail_or_try_tcp(id, &name, err.clone());
        }
        self.forget(key, false);
        false
    }

    /// Answer a failed request with `err`, or (with a TCP fallback, for failures TCP may
    /// get past) hand it to TCP.
    fn fail_or_try_tcp(&mut self, id: ConnectId, name: &str, err: ConnectError) {
        let tcp_may_help = matches!(
            err,
            ConnectError::NoPath { .. } | ConnectError::Impossible(_) | ConnectError::Handshake(_)
        );
        if self.cfg.tcp_fallback && tcp_may_help {
            self.event(Event::TryTcp {
                name: name.to_string(),
                request: Some((id, err)),
            });
        } else {
            self.event(Event::ConnectDone {
                id,
                result: Err(err),
            });
        }
    }

    /// Ask for a TCP attempt for an established connection we opened, once, when its UDP
    /// punching found no direct path.
    fn maybe_try_tcp(&mut self, key: PeerKey) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.tcp_wanted && !p.tcp_tried && p.is_up() {
            p.tcp_tried = true;
            let name = p.name.clone();
            self.event(Event::TryTcp {
                name,
                request: None,
            });
        }
    }

    pub(super) fn on_agent_event(&mut self, now: Instant, key: PeerKey, ev: AgentEvent) {
        let (mode, deadline, server) = (self.cfg.relay, self.cfg.punch.deadline, self.cfg.server);
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        match ev {
            AgentEvent::Selected { addr, kind, rtt } => {
                p.direct = Some(addr);
                p.backoff = REPUNCH_FIRST;
                p.recovering = false;
                p.rebind_tried = false;
                let (up, reported) = (p.is_up(), p.reported);
                let open = p.initiator && !p.yielded && p.conn == Conn::NotStarted;
                self.event(Event::Alias { peer: key, addr });
                let path = Path::direct(addr, kind, rtt);
                if mode != RelayMode::Only {
                    self.set_route(key, Route::Direct(addr), Some(path));
                    if up && reported != Some((PathKind::Direct, addr)) {
                        let reason = PathReason::DirectConfirmed {
                            candidate: kind,
                            addr,
                            rtt,
                        };
                        self.report_path(key, Some(path), reason);
                    }
                }
                if open {
                    self.open_connection(key);
                }
            }
            AgentEvent::Disconnected { addr, silent_for } => {
                self.path_lost(now, key, PathReason::DirectLost { addr, silent_for });
                if self.peers.get(&key).is_some_and(|p| p.initiator) {
                    self.timers
                        .set(Timer::Repunch(key), now + REPUNCH_AFTER_LOSS);
                }
            }
            AgentEvent::Failed(_) if p.recovering && !p.rebind_tried => {
                // Punching again after a lost path failed: NAT state blocks the old port,
                // on our side or the peer's (Linux gives every new connection from a
                // source port the public port of the first one it finds, so one
                // remapped connection moves them all). Both sides take a fresh port.
                p.rebind_tried = true;
                if !self.rebind(now) {
                    self.repunch_later(now, key);
                }
            }
            AgentEvent::Failed(_) => {
                let tried = tried(&p.info);
                // On the relay the handshake takes one round trip through the server;
                // still not done when punching gave up means the peer answers on no path.
                let silent = p.conn == Conn::Connecting;
                let initiator = p.initiator;
                let backoff = p.backoff;
                let refused = p.relay_refused.clone();
                let reason = PathReason::NoDirectPath {
                    deadline,
                    tried: tried.clone(),
                    retry_in: initiator.then_some(backoff),
                };
                let relay_usable = self.punching_ended(key, reason.clone());
                if relay_usable && !silent {
                    // Stay on the relay; punch again later, less and less often.
                    if initiator {
                        self.repunch_later(now, key);
                    }
                    self.report_path(key, Some(Path::relay(server)), reason);
                    return;
                }
                let relay = match (refused, relay_usable) {
                    (Some(r), _) => Some(format!("relay refused: {r}")),
                    (None, true) => Some("no answer through the relay either".to_string()),
                    (None, false) => None,
                };
                let err = ConnectError::NoPath {
                    deadline,
                    tried,
                    relay,
                };
                if self.no_path_left(key, err) && initiator {
                    // Still connected (the path may come back): punch again later.
                    self.repunch_later(now, key);
                }
            }
        }
    }

    /// Punch again after the current backoff, and back off further for the time after.
    fn repunch_later(&mut self, now: Instant, key: PeerKey) {
        if let Some(p) = self.peers.get_mut(&key) {
            self.timers.set(Timer::Repunch(key), now + p.backoff);
            p.backoff = (p.backoff * 2).min(REPUNCH_MAX);
        }
    }

    /// The direct path to `key` is gone: fall back to the relay (or to nothing), and
    /// register again at once so the server learns the mapping our NAT holds now.
    pub(super) fn path_lost(&mut self, now: Instant, key: PeerKey, reason: PathReason) {
        let (server, mode) = (self.cfg.server, self.cfg.relay);
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        // Punching for this session is over (a new one follows).
        if p.agent.as_ref().is_some_and(|a| a.nominated().is_some()) {
            p.agent = None;
            self.timers.stop(Timer::Agent(key));
        }
        if p.direct.take().is_none() {
            return;
        }
        p.backoff = REPUNCH_FIRST;
        p.recovering = true;
        self.reregister_now(now);
        let p = &self.peers[&key];
        if mode != RelayMode::Never && p.relay_refused.is_none() {
            let route = self.relay_route(p);
            let path = Some(Path::relay(server));
            self.set_route(key, route, path);
            self.report_path(key, path, reason);
        } else {
            self.set_route(key, Route::None, None);
            self.report_path(key, None, reason);
        }
    }

    pub(super) fn on_relay_closed(&mut self, now: Instant, session: u64, reason: String) {
        let Some(key) = self.sessions.get(&session).copied() else {
            return;
        };
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.session != session || p.relay_refused.is_some() {
            return;
        }
        p.relay_refused = Some(reason.clone());
        let restarted = reason.starts_with("unknown relay session");
        let (on_relay, punching, direct) = (
            matches!(p.route, Route::Relay { .. }),
            p.punching(),
            p.direct.is_some(),
        );
        if on_relay {
            self.set_route(key, Route::None, None);
            self.report_path(key, None, PathReason::RelayClosed(reason.clone()));
        }
        if restarted {
            // The server lost its state: register again, then ask for a new session.
            self.reregister_now(now);
            self.timers
                .set(Timer::Repunch(key), now + super::INITIAL_RTO * 2);
        }
        // A pending request that now has no path at all and no punching left fails.
        if !punching && !direct {
            let Some(p) = self.peers.get_mut(&key) else {
                return;
            };
            let waiting = std::mem::take(&mut p.waiting);
            let name = p.name.clone();
            let err = ConnectError::NoPath {
                deadline: self.cfg.punch.deadline,
                tried: tried(&p.info),
                relay: Some(format!("relay refused: {reason}")),
            };
            for id in waiting {
                self.fail_or_try_tcp(id, &name, err.clone());
            }
        }
    }

    pub(super) fn passive_timeout(&mut self, key: PeerKey) {
        if self
            .peers
            .get(&key)
            .is_some_and(|p| !p.initiator && p.conn == Conn::NotStarted)
        {
            self.forget(key, false);
        }
    }

    /// Drop everything about a peer.
    fn forget(&mut self, key: PeerKey, linger: bool) {
        let Some(p) = self.peers.remove(&key) else {
            return;
        };
        for id in p.waiting {
            self.events.push_back(Event::ConnectDone {
                id,
                result: Err(ConnectError::Closed),
            });
        }
        self.sessions.retain(|_, k| *k != key);
        self.timers.stop_peer(&key);
        self.event(Event::PeerRemoved { peer: key, linger });
    }

    /// The driver's connection to `peer` completed its handshake: `opened_by_us` for one
    /// we opened after [`Event::OpenConnection`], else one the peer opened.
    pub fn connection_up(&mut self, _now: Instant, peer: PeerKey, opened_by_us: bool) -> Verdict {
        let me_smaller = self.cfg.signer.public_key() < peer;
        let Some(p) = self.peers.get_mut(&peer) else {
            return Verdict::NotIntroduced;
        };
        if opened_by_us {
            if p.yielded {
                // We gave way to the peer's connection: ours is a duplicate.
                if p.conn == Conn::Connecting {
                    p.conn = Conn::NotStarted;
                }
                return Verdict::Duplicate;
            }
        } else if me_smaller && p.initiator && p.conn != Conn::NotStarted {
            // Both opened a connection at once: the smaller key's one stays (the peer
            // closes its own too, having given way).
            return Verdict::Duplicate;
        }
        p.conn = Conn::Up;
        p.reported = p.path.map(|x| (x.kind, x.remote));
        let waiting = std::mem::take(&mut p.waiting);
        self.timers.stop(Timer::Passive(peer));
        self.maybe_try_tcp(peer);
        if waiting.is_empty() && !opened_by_us {
            self.event(Event::Incoming { peer });
        }
        for id in waiting {
            self.event(Event::ConnectDone {
                id,
                result: Ok(peer),
            });
        }
        Verdict::Keep
    }

    /// The connection we opened to `peer` failed its handshake.
    pub fn connection_failed(&mut self, _now: Instant, peer: PeerKey, reason: String) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.conn == Conn::Connecting {
            p.conn = Conn::NotStarted;
        }
        // The peer's connection is up (or will be): ours failing changes nothing.
        if p.yielded || p.is_up() {
            return;
        }
        let waiting = std::mem::take(&mut p.waiting);
        let name = p.name.clone();
        for id in waiting {
            self.fail_or_try_tcp(id, &name, ConnectError::Handshake(reason.clone()));
        }
        self.forget(peer, false);
    }

    /// The established connection to `peer` closed: forget the peer (its route lingers
    /// so the close itself still reaches it).
    pub fn connection_closed(&mut self, _now: Instant, peer: PeerKey) {
        if self.peers.get(&peer).is_some_and(|p| p.is_up()) {
            self.forget(peer, true);
        }
    }
}
