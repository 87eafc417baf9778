//! The hole-punching agent: one per punching session, sans-IO.
//!
//! Owns the probe schedule toward a peer's candidates, the answers to the peer's probes,
//! learning peer-reflexive candidates, and choosing the path. It does not own sockets,
//! clocks, QUIC or the rendezvous exchange: the caller feeds it decoded
//! [`Frame::Probe`]/[`Frame::ProbeAck`] frames and the time, and drains
//! [`Agent::poll_transmit`], [`Agent::poll_event`] and [`Agent::poll_timeout`] after
//! every input (the str0m/quinn-proto shape).
//!
//! # Schedule
//! 1. **Open** (t = 0): one probe to every candidate with a low TTL
//!    ([`PunchConfig::open_ttl`]). It passes our own NAT, creating the mapping and the
//!    filter entry toward the peer, and expires in the core before it reaches the peer's
//!    NAT. This is the remedy for the conntrack race described in the design notes (the
//!    same idea hyperdht uses): a full probe that reaches the peer's NAT before the peer
//!    has sent toward us creates a conntrack entry there that steals the mapping the peer
//!    needs, and the pair fails.
//! 2. **Probe**: full-TTL probes to every candidate, repeated at
//!    [`PunchConfig::probe_interval`], growing by half each round up to
//!    [`PunchConfig::max_probe_interval`], until the path is chosen or
//!    [`PunchConfig::deadline`] passes. Full probes start when the peer is known to have
//!    opened its own NAT: the rendezvous server relays each side's acknowledgement of the
//!    introduction, which each side sends *after* its opening probes, as
//!    [`Frame::PeerReady`] ([`Agent::peer_ready`]); a probe from the peer proves the same.
//!    Packets through one NAT keep their order, so by the time our full probe can reach
//!    the peer's NAT, the peer's opening probe has passed it: the race cannot happen,
//!    however skewed the two introductions were. If the signal never comes, full probes
//!    start after [`PunchConfig::open_delay`] anyway.
//! 3. A probe from an address we do not know is answered and becomes a peer-reflexive
//!    candidate (RFC 8445 §7.3.1.3): that is how a symmetric NAT's fresh port is learned.
//! 4. An ack proves the path both ways. An IPv6 path wins over an IPv4 one when both
//!    work (no NAT on it, and RFC 6724 prefers it too), then a private (host) path over a
//!    public one (peers behind the same NAT); if a path answers first while a better kind
//!    is untried (an IPv6 candidate, or a host one), the agent waits
//!    [`PunchConfig::private_grace`] for it.
//!
//! After [`Event::Selected`] the agent stops punching but keeps answering probes, so the
//! peer can finish choosing its own path, and (with [`PunchConfig::liveness`]) it keeps
//! the chosen path alive and watched, as str0m's ICE agent keeps its nominated pair: a
//! check probe every [`Liveness::interval`], and [`Event::Disconnected`] once no check
//! has been answered for [`Liveness::dead_after`] (a NAT forgot its mapping, the peer
//! moved). A disconnected agent is done; the caller punches again with a new session.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::wire::Frame;

/// Low TTL for the opening probes: passes the host's own NAT (hop 1) and expires at the
/// next router (hop 2), before the peer's NAT.
pub const DEFAULT_OPEN_TTL: u32 = 2;
/// Longest wait after the opening probes for the peer's ready signal before full probes
/// start anyway (the signal was lost). Long enough to cover a retransmitted introduction
/// (the client's first retransmission timeout is 250 ms).
pub const DEFAULT_OPEN_DELAY: Duration = Duration::from_millis(1000);
/// First interval between probe rounds (the issue asks for 100-200 ms, growing).
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Cap of the growing probe interval.
pub const DEFAULT_MAX_PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Give up on a direct path after this long.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// How long a working path waits for an untried better one (IPv6, or private).
pub const DEFAULT_PRIVATE_GRACE: Duration = Duration::from_millis(50);
/// Copies of each opening probe, sent back to back: the opening must survive a lost
/// datagram on the LAN, since the ready signal that follows it is trusted blindly.
pub const OPEN_COPIES: usize = 3;
/// Most candidates tracked per session (reported + learned); bounds the table against a
/// peer or attacker that sprays probes from many ports.
pub const MAX_CANDIDATES: usize = 16;
/// Interval of liveness checks on the chosen path: short, so a path that died (a NAT
/// forgot its mapping) is left within seconds, not at QUIC's idle timeout; one small
/// datagram a second is cheap.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A chosen path with no answer to its checks for this long is dead (three checks lost).
pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_millis(3500);

/// How the agent watches the path it chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Interval between check probes on the chosen path.
    pub interval: Duration,
    /// The path is dead after this long without an answer to a check.
    pub dead_after: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            interval: DEFAULT_CHECK_INTERVAL,
            dead_after: DEFAULT_DEAD_AFTER,
        }
    }
}

/// Tunables of the punching schedule.
#[derive(Debug, Clone)]
pub struct PunchConfig {
    /// TTL of the opening probes; `None` skips the opening round.
    pub open_ttl: Option<u32>,
    /// Longest wait between the opening probes and the first full probes, when neither
    /// [`Agent::peer_ready`] nor a probe from the peer comes first.
    pub open_delay: Duration,
    /// First interval between full probe rounds.
    pub probe_interval: Duration,
    /// Cap of the probe interval.
    pub max_probe_interval: Duration,
    /// Deadline after which the session fails.
    pub deadline: Duration,
    /// Wait for untried better candidates (IPv6 ones, then private ones) after a path
    /// works.
    pub private_grace: Duration,
    /// Watch the chosen path after selection; `None` stops all sending once a path is
    /// chosen (the caller then watches it itself).
    pub liveness: Option<Liveness>,
}

impl Default for PunchConfig {
    fn default() -> Self {
        PunchConfig {
            open_ttl: Some(DEFAULT_OPEN_TTL),
            open_delay: DEFAULT_OPEN_DELAY,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            max_probe_interval: DEFAULT_MAX_PROBE_INTERVAL,
            deadline: DEFAULT_DEADLINE,
            private_grace: DEFAULT_PRIVATE_GRACE,
            liveness: Some(Liveness::default()),
        }
    }
}

/// Where a candidate came from; also its preference (earlier variants win).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CandidateKind {
    /// A private address the peer reported (same LAN / same NAT).
    Host,
    /// The public address the server observed for the peer.
    ServerReflexive,
    /// An address a probe or ack arrived from that nobody reported.
    PeerReflexive,
}

impl CandidateKind {
    /// Lowercase name for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateKind::Host => "private",
            CandidateKind::ServerReflexive => "public",
            CandidateKind::PeerReflexive => "peer-reflexive",
        }
    }
}

/// A datagram the agent wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dest: SocketAddr,
    /// IP TTL to send with; `None` for the socket's default.
    pub ttl: Option<u32>,
    /// The encoded frame.
    pub payload: Vec<u8>,
}

/// Why a session failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// No candidate answered before the deadline.
    Deadline,
}

/// What the agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A path works both ways and is chosen.
    Selected {
        /// The peer's address on that path.
        addr: SocketAddr,
        /// Which kind of candidate it was.
        kind: CandidateKind,
        /// Round-trip time of the probe that proved it.
        rtt: Duration,
    },
    /// No path worked.
    Failed(FailReason),
    /// The chosen path stopped answering its liveness checks.
    Disconnected {
        /// The peer's address on the path that died.
        addr: SocketAddr,
        /// How long it had been silent.
        silent_for: Duration,
    },
}

/// A candidate's preference, smaller first: IPv6 before IPv4, then by kind.
fn rank(c: &Candidate) -> (bool, CandidateKind) {
    (c.addr.is_ipv4(), c.kind)
}

#[derive(Debug, Clone)]
struct Candidate {
    addr: SocketAddr,
    kind: CandidateKind,
    /// Round-trip time once an ack arrived.
    rtt: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Opening probes sent; full probes start at the given time.
    Opening,
    /// Full probes running.
    Probing,
    /// A path is chosen and watched with check probes.
    Checking {
        addr: SocketAddr,
        next_check: Instant,
        last_answer: Instant,
    },
    /// A path is chosen and not watched, the session failed, or the chosen path died;
    /// only answering now.
    Done,
}

/// Most probe send times remembered for RTT measurement.
const MAX_SENT: usize = 64;

/// One punching session toward one peer.
#[derive(Debug)]
pub struct Agent {
    cfg: PunchConfig,
    session: u64,
    started: Instant,
    state: State,
    candidates: Vec<Candidate>,
    next_round: Instant,
    interval: Duration,
    seq: u32,
    /// (seq, destination, send time) of recent probes.
    sent: VecDeque<(u32, SocketAddr, Instant)>,
    /// When a working public path stops waiting for private ones.
    grace_until: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Agent {
    /// Start a session at `now` toward the peer's reported candidates.
    pub fn new(
        cfg: PunchConfig,
        session: u64,
        candidates: impl IntoIterator<Item = (SocketAddr, CandidateKind)>,
        now: Instant,
    ) -> Agent {
        let mut agent = Agent {
            next_round: now + cfg.open_delay,
            interval: cfg.probe_interval,
            cfg,
            session,
            started: now,
            state: State::Opening,
            candidates: Vec::new(),
            seq: 0,
            sent: VecDeque::new(),
            grace_until: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        for (addr, kind) in candidates {
            agent.add_candidate(addr, kind);
        }
        match agent.cfg.open_ttl {
            Some(ttl) => {
                // Several copies: one lost opening probe would bring the race back.
                for _ in 0..OPEN_COPIES {
                    for i in 0..agent.candidates.len() {
                        let dest = agent.candidates[i].addr;
                        agent.send_probe(now, dest, Some(ttl));
                    }
                }
            }
            None => {
                agent.state = State::Probing;
                agent.next_round = now;
                agent.handle_timeout(now);
            }
        }
        agent
    }

    /// The peer has opened its NAT toward us (the server relayed its ready signal): start
    /// full probes now.
    pub fn peer_ready(&mut self, now: Instant) {
        if self.state == State::Opening {
            self.next_round = now;
            self.handle_timeout(now);
        }
    }

    /// The session id this agent answers to.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// True once punching is over: the agent chose a path (and may still be watching
    /// it), or failed.
    pub fn is_done(&self) -> bool {
        !matches!(self.state, State::Opening | State::Probing)
    }

    /// The chosen path while the agent watches it and it answers.
    pub fn nominated(&self) -> Option<SocketAddr> {
        match self.state {
            State::Checking { addr, .. } => Some(addr),
            _ => None,
        }
    }

    fn add_candidate(&mut self, addr: SocketAddr, kind: CandidateKind) -> bool {
        if self.candidates.iter().any(|c| c.addr == addr) {
            return false;
        }
        if self.candidates.len() >= MAX_CANDIDATES {
            return false;
        }
        self.candidates.push(Candidate {
            addr,
            kind,
            rtt: None,
        });
        true
    }

    fn send_probe(&mut self, now: Instant, dest: SocketAddr, ttl: Option<u32>) {
        self.seq = self.seq.wrapping_add(1);
        let frame = Frame::Probe {
            session: self.session,
            seq: self.seq,
        };
        if let Ok(payload) = frame.encode() {
            self.transmits.push_back(Transmit { dest, ttl, payload });
        }
        if self.sent.len() >= MAX_SENT {
            self.sent.pop_front();
        }
        self.sent.push_back((self.seq, dest, now));
    }

    /// Feed a decoded frame that arrived from `from`. Frames of other sessions and other
    /// kinds are ignored (the caller routes by session id).
    pub fn handle_frame(&mut self, now: Instant, from: SocketAddr, frame: &Frame) {
        match *frame {
            Frame::Probe { session, seq } if session == self.session => {
                let ack = Frame::ProbeAck {
                    session,
                    seq,
                    observed: from,
                };
                if let Ok(payload) = ack.encode() {
                    self.transmits.push_back(Transmit {
                        dest: from,
                        ttl: None,
                        payload,
                    });
                }
                if !self.is_done() && self.add_candidate(from, CandidateKind::PeerReflexive) {
                    // Probe the new candidate at once: its mapping is fresh and open.
                    self.send_probe(now, from, None);
                }
                // A full probe from the peer means it has opened its NAT: no need to wait.
                self.peer_ready(now);
            }
            Frame::ProbeAck { session, seq, .. } if session == self.session => {
                let sent = self.sent.iter().find(|(s, _, _)| *s == seq).copied();
                let Some((_, dest, sent_at)) = sent else {
                    return;
                };
                if let State::Checking {
                    addr, last_answer, ..
                } = &mut self.state
                {
                    // An answer to a check (or a late one to a probe) from the chosen path.
                    if from == *addr && dest == from {
                        *last_answer = (*last_answer).max(now);
                    }
                    return;
                }
                if self.state == State::Done {
                    return;
                }
                if dest != from {
                    // RFC 8445 §7.2.5.2.1: an answer proves a path only if it comes from the
                    // address probed. From elsewhere it is a new candidate to check.
                    if self.add_candidate(from, CandidateKind::PeerReflexive) {
                        self.send_probe(now, from, None);
                    }
                    return;
                }
                let rtt = now.saturating_duration_since(sent_at);
                if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == from) {
                    if c.rtt.is_none() {
                        c.rtt = Some(rtt);
                    }
                }
                self.maybe_select(now);
            }
            _ => {}
        }
    }

    /// Choose a path if the best working one cannot be beaten any more.
    fn maybe_select(&mut self, now: Instant) {
        let best = self
            .candidates
            .iter()
            .filter(|c| c.rtt.is_some())
            .min_by_key(|c| (rank(c), c.rtt))
            .cloned();
        let Some(best) = best else { return };
        // Worth a short wait: an untried IPv6 candidate while the best is IPv4, or an
        // untried host one of the best's family while the best is not a host one.
        let better_pending = self.candidates.iter().any(|c| {
            c.rtt.is_none()
                && ((c.addr.is_ipv6() && best.addr.is_ipv4())
                    || (c.kind == CandidateKind::Host
                        && best.kind != CandidateKind::Host
                        && c.addr.is_ipv4() == best.addr.is_ipv4()))
        });
        if better_pending {
            let until = *self.grace_until.get_or_insert(now + self.cfg.private_grace);
            if now < until {
                return;
            }
        }
        self.state = match self.cfg.liveness {
            Some(l) => State::Checking {
                addr: best.addr,
                next_check: now + l.interval,
                last_answer: now,
            },
            None => State::Done,
        };
        self.events.push_back(Event::Selected {
            addr: best.addr,
            kind: best.kind,
            rtt: best.rtt.unwrap_or_default(),
        });
    }

    /// Liveness checks on the chosen path.
    fn check(&mut self, now: Instant) {
        let State::Checking {
            addr,
            next_check,
            last_answer,
        } = self.state
        else {
            return;
        };
        // Only Checking exists with liveness configured.
        let Some(l) = self.cfg.liveness else { return };
        let silent_for = now.saturating_duration_since(last_answer);
        if silent_for >= l.dead_after {
            self.state = State::Done;
            self.events
                .push_back(Event::Disconnected { addr, silent_for });
            return;
        }
        if now >= next_check {
            self.send_probe(now, addr, None);
            self.state = State::Checking {
                addr,
                next_check: now + l.interval,
                last_answer,
            };
        }
    }

    /// Advance timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Checking { .. }) {
            return self.check(now);
        }
        if self.state == State::Done {
            return;
        }
        if self.grace_until.is_some_and(|t| now >= t) {
            self.maybe_select(now);
            if self.is_done() {
                return;
            }
        }
        if now >= self.started + self.cfg.deadline {
            self.state = State::Done;
            self.events.push_back(Event::Failed(FailReason::Deadline));
            return;
        }
        if now >= self.next_round {
            self.state = State::Probing;
            let dests: Vec<SocketAddr> = self.candidates.iter().map(|c| c.addr).collect();
            for dest in dests {
                self.send_probe(now, dest, None);
            }
            self.next_round = now + self.interval;
            self.interval = (self.interval + self.interval / 2).min(self.cfg.max_probe_interval);
        }
    }

    /// When [`Agent::handle_timeout`] should be called next; `None` once nothing is left
    /// to do (punching failed, or the chosen path is not watched or died).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let (
            State::Checking {
                next_check,
                last_answer,
                ..
            },
            Some(l),
        ) = (self.state, self.cfg.liveness)
        {
            return Some(next_check.min(last_answer + l.dead_after));
        }
        if self.state == State::Done {
            return None;
        }
        let deadline = self.started + self.cfg.deadline;
        let mut t = self.next_round.min(deadline);
        if let Some(g) = self.grace_until {
            t = t.min(g);
        }
        Some(t)
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}
