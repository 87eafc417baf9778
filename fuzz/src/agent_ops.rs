//! The `agent_inputs` script: a punching [`Agent`] fed datagrams from a few addresses and
//! moved through virtual time, with its outputs drained and checked after every step.
//!
//! # Script format
//! Header: `cfg` (bit 0: no opening round; bits 1-2: deadline from [`DEADLINES`]; bit 3:
//! a 1 ms private grace instead of the default), then `mask` (which of [`CANDIDATES`] the
//! peer reported). Then steps until the input ends, each an opcode byte (taken modulo 9):
//!
//! | op | bytes after it | step |
//! |----|----------------|------|
//! | 0 `RAW` | from, len, len bytes | the bytes through `Frame::decode`, delivered if they decode |
//! | 1 `PROBE` | from, session, seq (u32) | a `Probe` |
//! | 2 `ACK_SENT` | idx, flags, observed | a `ProbeAck` for a probe the agent sent (from its destination unless flags bit 0) |
//! | 3 `ACK` | from, session, seq (u32), observed | a `ProbeAck` with any seq |
//! | 4 `ADVANCE` | n | time moves n × 8 ms |
//! | 5 `TIMEOUT` | | `handle_timeout(now)` |
//! | 6 `DRIVE` | | time moves to `poll_timeout()`, then `handle_timeout` |
//! | 7 `SPRAY` | port (u16), seq (u32) | a `Probe` from a fresh port of one stranger IP |
//! | 8 `READY` | | `peer_ready(now)` (the server relayed the peer's ready signal) |
//!
//! `from`/`observed` index [`sources`]; `session` is [`SESSION`] for a byte below 224, else
//! a u64 follows. Structured frames are encoded and decoded before delivery, so the agent
//! only ever sees what a real socket could hand it. After the script the harness keeps
//! driving timeouts and checks that the agent finishes by its deadline.
//!
//! # Invariants (each from `punch_proto::agent`'s documented behaviour)
//! - Every transmit is a decodable `Probe` or `ProbeAck` of our session, at most
//!   `MAX_FRAME_LEN` bytes; only the opening probes carry a TTL.
//! - A `ProbeAck` goes only in answer to a `Probe`, back to its source, echoing its seq and
//!   reporting that source as `observed`.
//! - Output per step is bounded: one ack per probe, plus one probe to a new candidate and
//!   a round of probes (one per candidate) when it starts full probing; at most one probe
//!   (to a new candidate) per ack; a round per timeout or ready signal (the opening round
//!   may send each probe a few times: [`OPENING_BOUND`] in all); probes go to at most `MAX_CANDIDATES` distinct addresses; no
//!   probe is sent once the agent is done.
//! - Exactly one terminal event, and `is_done()` and `poll_timeout().is_none()` agree with
//!   it. `Selected` names an address an ack came from, with its reported kind (or
//!   peer-reflexive) and an RTT no longer than the session; `Failed` only at the deadline.
//! - `poll_timeout()` never lies past the deadline, and after `handle_timeout(now)` it is
//!   later than `now` (no busy loop for a driver that sleeps until it).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use punch_proto::agent::{Agent, CandidateKind, Event, PunchConfig, MAX_CANDIDATES};
use punch_proto::wire::{Frame, MAX_FRAME_LEN};

use crate::input::Input;

/// The session the agent runs.
pub const SESSION: u64 = 0x5E55_10A0_CAFE_F00D;

/// Deadlines a script can pick (header bits 1-2).
pub const DEADLINES: [Duration; 4] = [
    Duration::from_secs(10),
    Duration::from_secs(2),
    Duration::from_millis(500),
    Duration::from_secs(30),
];

/// Most probes the opening round may send: a few copies of one probe per candidate (the
/// agent sends each opening probe more than once against loss on the LAN).
pub const OPENING_BOUND: usize = 4 * MAX_CANDIDATES;

/// Opcodes of the script (see the module doc).
pub mod op {
    /// Raw bytes through `Frame::decode`.
    pub const RAW: u8 = 0;
    /// A probe.
    pub const PROBE: u8 = 1;
    /// An ack of a probe the agent sent.
    pub const ACK_SENT: u8 = 2;
    /// An ack with any seq.
    pub const ACK: u8 = 3;
    /// Time moves on.
    pub const ADVANCE: u8 = 4;
    /// `handle_timeout(now)`.
    pub const TIMEOUT: u8 = 5;
    /// Sleep until `poll_timeout()`, then `handle_timeout`.
    pub const DRIVE: u8 = 6;
    /// A probe from a fresh port.
    pub const SPRAY: u8 = 7;
    /// `peer_ready(now)`.
    pub const READY: u8 = 8;
    /// Number of opcodes; an opcode byte is taken modulo this.
    pub const COUNT: u8 = 9;
}

const fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

const fn v6(segments: [u16; 8], port: u16) -> SocketAddr {
    let [a, b, c, d, e, f, g, h] = segments;
    SocketAddr::new(IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)), port)
}

/// Candidates the peer may report (header `mask` bit i selects entry i).
pub const CANDIDATES: [(SocketAddr, CandidateKind); 6] = [
    (v4(192, 168, 1, 20, 4000), CandidateKind::Host),
    (
        v6([0xfd00, 0, 0, 0, 0, 0, 0, 0x20], 4000),
        CandidateKind::Host,
    ),
    (v4(203, 0, 113, 20, 40000), CandidateKind::ServerReflexive),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20], 40000),
        CandidateKind::ServerReflexive,
    ),
    (v4(203, 0, 113, 20, 40001), CandidateKind::ServerReflexive),
    (v4(198, 51, 100, 20, 50000), CandidateKind::PeerReflexive),
];

/// Addresses that are never reported: a symmetric NAT's fresh port, an attacker, loopback,
/// and an IPv4-mapped IPv6 twin of a candidate.
const STRANGERS: [SocketAddr; 4] = [
    v4(203, 0, 113, 20, 40999),
    v4(198, 51, 100, 66, 6666),
    v4(127, 0, 0, 1, 9),
    v6([0, 0, 0, 0, 0, 0xffff, 0xcb00, 0x7114], 40000),
];

/// Number of source addresses a `from` byte chooses among.
pub const SOURCE_COUNT: u8 = 10;

/// The source address a `from` byte stands for: the candidates, then strangers.
pub fn sources(b: u8) -> SocketAddr {
    let i = usize::from(b % SOURCE_COUNT);
    match CANDIDATES.get(i) {
        Some(&(addr, _)) => addr,
        None => STRANGERS[i - CANDIDATES.len()],
    }
}

/// What a step fed the agent, for checking its outputs.
// One value per step, on the stack: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Step {
    Start,
    Frame { from: SocketAddr, frame: Frame },
    Timeout,
    Ready,
}

struct Harness {
    agent: Agent,
    start: Instant,
    now: Instant,
    deadline: Instant,
    reported: HashMap<SocketAddr, CandidateKind>,
    /// (seq, destination) of every probe sent, oldest first (the last 256 kept).
    probes: Vec<(u32, SocketAddr)>,
    probe_dests: HashSet<SocketAddr>,
    /// Addresses a `ProbeAck` of our session was delivered from.
    ack_sources: HashSet<SocketAddr>,
    terminal: Option<Event>,
}

/// Runs one script (see the module doc); panics if an invariant breaks.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let cfg_byte = input.u8();
    let mask = input.u8();
    let cfg = PunchConfig {
        open_ttl: if cfg_byte & 1 == 0 {
            PunchConfig::default().open_ttl
        } else {
            None
        },
        deadline: DEADLINES[usize::from((cfg_byte >> 1) & 3)],
        private_grace: if cfg_byte & 8 == 0 {
            PunchConfig::default().private_grace
        } else {
            Duration::from_millis(1)
        },
        // The punching phase is what this script checks; liveness after selection has
        // its own tests (agent_liveness.rs).
        liveness: None,
        ..PunchConfig::default()
    };
    let reported: Vec<(SocketAddr, CandidateKind)> = CANDIDATES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, c)| *c)
        .collect();
    let start = Instant::now();
    let deadline = start + cfg.deadline;
    let agent = Agent::new(cfg, SESSION, reported.iter().copied(), start);
    let mut h = Harness {
        agent,
        start,
        now: start,
        deadline,
        reported: reported.into_iter().collect(),
        probes: Vec::new(),
        probe_dests: HashSet::new(),
        ack_sources: HashSet::new(),
        terminal: None,
    };
    assert_eq!(h.agent.session(), SESSION);
    h.check(Step::Start, false);

    while !input.is_empty() {
        match input.u8() % op::COUNT {
            op::RAW => {
                let from = sources(input.u8());
                let len = usize::from(input.u8());
                if let Ok(frame) = Frame::decode(input.bytes(len)) {
                    h.deliver(from, frame);
                }
            }
            op::PROBE => {
                let from = sources(input.u8());
                let session = session(&mut input);
                let seq = input.u32();
                h.deliver_structured(from, Frame::Probe { session, seq });
            }
            op::ACK_SENT => {
                let (idx, flags, observed) = (input.u8(), input.u8(), sources(input.u8()));
                if h.probes.is_empty() {
                    continue;
                }
                let (seq, dest) = h.probes[h.probes.len() - 1 - usize::from(idx) % h.probes.len()];
                let from = if flags & 1 == 0 {
                    dest
                } else {
                    sources(flags >> 1)
                };
                let ack = Frame::ProbeAck {
                    session: SESSION,
                    seq,
                    observed,
                };
                h.deliver_structured(from, ack);
            }
            op::ACK => {
                let from = sources(input.u8());
                let session = session(&mut input);
                let seq = input.u32();
                let observed = sources(input.u8());
                let ack = Frame::ProbeAck {
                    session,
                    seq,
                    observed,
                };
                h.deliver_structured(from, ack);
            }
            op::ADVANCE => h.now += Duration::from_millis(u64::from(input.u8()) * 8),
            op::TIMEOUT => h.timeout(),
            op::DRIVE => h.drive(),
            op::READY => h.ready(),
            _ => {
                let from = v4(198, 51, 100, 99, input.u16());
                let seq = input.u32();
                h.deliver_structured(
                    from,
                    Frame::Probe {
                        session: SESSION,
                        seq,
                    },
                );
            }
        }
    }

    // Liveness: left alone, the agent finishes by its deadline. Each drive either moves time
    // to a later wake-up or finishes (checked in `timeout`); the probe interval is at least
    // 100 ms and the longest deadline 30 s, so 1000 drives are plenty.
    for _ in 0..1000 {
        if h.agent.is_done() {
            break;
        }
        h.drive();
    }
    assert!(h.agent.is_done(), "agent still running after its deadline");
}

fn session(input: &mut Input<'_>) -> u64 {
    if input.u8() < 224 {
        SESSION
    } else {
        input.u64()
    }
}

impl Harness {
    /// Delivers a frame built by the script as a socket would: encoded, then decoded.
    fn deliver_structured(&mut self, from: SocketAddr, frame: Frame) {
        // Probes and acks are small and unbounded by names: they always encode.
        let bytes = frame.encode().expect("probe frames encode");
        let frame = Frame::decode(&bytes).expect("encoded probe frames decode");
        self.deliver(from, frame);
    }

    fn deliver(&mut self, from: SocketAddr, frame: Frame) {
        if let Frame::ProbeAck { session, .. } = frame {
            if session == SESSION {
                self.ack_sources.insert(from);
            }
        }
        let was_done = self.agent.is_done();
        self.agent.handle_frame(self.now, from, &frame);
        self.check(Step::Frame { from, frame }, was_done);
    }

    fn timeout(&mut self) {
        let was_done = self.agent.is_done();
        self.agent.handle_timeout(self.now);
        self.check(Step::Timeout, was_done);
        if let Some(t) = self.agent.poll_timeout() {
            assert!(
                t > self.now,
                "poll_timeout {t:?} not after handle_timeout's now"
            );
        }
    }

    fn ready(&mut self) {
        let was_done = self.agent.is_done();
        self.agent.peer_ready(self.now);
        self.check(Step::Ready, was_done);
    }

    fn drive(&mut self) {
        if let Some(t) = self.agent.poll_timeout() {
            self.now = self.now.max(t);
        }
        self.timeout();
    }

    /// Drains the agent's outputs after `step` and checks them.
    fn check(&mut self, step: Step, was_done: bool) {
        let (mut probes, mut acks, mut total) = (0usize, 0usize, 0usize);
        while let Some(t) = self.agent.poll_transmit() {
            total += 1;
            assert!(t.payload.len() <= MAX_FRAME_LEN, "oversized transmit");
            let frame = Frame::decode(&t.payload).expect("the agent sends decodable frames");
            match frame {
                Frame::Probe { session, seq } => {
                    assert_eq!(session, SESSION, "probe for another session");
                    assert!(
                        t.ttl.is_none() || matches!(step, Step::Start),
                        "low-TTL probe outside the opening round"
                    );
                    probes += 1;
                    self.probe_dests.insert(t.dest);
                    if self.probes.len() == 256 {
                        self.probes.remove(0);
                    }
                    self.probes.push((seq, t.dest));
                }
                Frame::ProbeAck {
                    session,
                    seq,
                    observed,
                } => {
                    acks += 1;
                    assert_eq!(session, SESSION, "ack for another session");
                    assert_eq!(t.ttl, None, "ack with a TTL");
                    let Step::Frame {
                        from,
                        frame: Frame::Probe { seq: probe_seq, .. },
                    } = &step
                    else {
                        panic!("ack sent without a probe to answer");
                    };
                    assert_eq!(t.dest, *from, "ack not sent back to the probe's source");
                    assert_eq!(observed, *from, "ack reports the wrong observed address");
                    assert_eq!(seq, *probe_seq, "ack does not echo the probe's seq");
                }
                other => panic!("the agent sent an unexpected frame: {other:?}"),
            }
        }
        if was_done {
            assert_eq!(probes, 0, "probe sent after the agent was done");
        }
        match step {
            Step::Start => {
                assert_eq!(acks, 0);
                assert!(probes <= OPENING_BOUND, "{probes} probes in the opening");
            }
            Step::Timeout | Step::Ready => {
                assert_eq!(acks, 0);
                assert!(probes <= MAX_CANDIDATES, "{probes} probes in one round");
            }
            // A probe of our session is always answered (even once done, so the peer can
            // finish); its source may become a candidate probed at once, and it proves the
            // peer ready, which may start a full round.
            Step::Frame {
                frame: Frame::Probe { session, .. },
                ..
            } if session == SESSION => {
                assert_eq!(acks, 1, "probe not answered exactly once");
                assert!(
                    probes <= MAX_CANDIDATES + 1,
                    "{probes} probes for one probe"
                );
            }
            // An ack from an address nobody probed makes it a candidate, probed at once.
            Step::Frame {
                frame: Frame::ProbeAck { .. },
                ..
            } => {
                assert_eq!(acks, 0, "ack answered with an ack");
                assert!(probes <= 1, "{probes} probes for one ack");
            }
            // Anything else gets silence.
            Step::Frame { frame, .. } => assert_eq!(total, 0, "{frame:?} got {total} answers"),
        }
        assert!(
            self.probe_dests.len() <= MAX_CANDIDATES,
            "probes went to {} addresses",
            self.probe_dests.len()
        );

        while let Some(event) = self.agent.poll_event() {
            assert!(
                self.terminal.is_none(),
                "second terminal event {event:?} after {:?}",
                self.terminal
            );
            match &event {
                Event::Selected { addr, kind, rtt } => {
                    assert!(
                        self.ack_sources.contains(addr),
                        "selected {addr} never acked"
                    );
                    let expected = self
                        .reported
                        .get(addr)
                        .copied()
                        .unwrap_or(CandidateKind::PeerReflexive);
                    assert_eq!(*kind, expected, "selected {addr} with the wrong kind");
                    assert!(*rtt <= self.now - self.start, "RTT longer than the session");
                }
                Event::Failed(_) => assert!(self.now >= self.deadline, "failed before deadline"),
                Event::Disconnected { .. } => panic!("liveness is off in this script: {event:?}"),
            }
            self.terminal = Some(event);
        }
        assert_eq!(
            self.agent.is_done(),
            self.terminal.is_some(),
            "is_done vs events"
        );
        match self.agent.poll_timeout() {
            None => assert!(self.agent.is_done(), "running agent without a timeout"),
            Some(t) => {
                assert!(!self.agent.is_done(), "done agent asks for a timeout");
                assert!(t <= self.deadline, "timeout {t:?} past the deadline");
            }
        }
    }
}

/// Builds scripts in the format above (for hand-made seeds).
#[derive(Debug, Clone)]
pub struct Script(Vec<u8>);

impl Script {
    /// Header: config byte and candidate mask.
    pub fn new(cfg: u8, mask: u8) -> Self {
        Script(vec![cfg, mask])
    }

    /// Raw bytes (at most 255) from `from`.
    pub fn raw(mut self, from: u8, bytes: &[u8]) -> Self {
        let bytes = &bytes[..bytes.len().min(255)];
        // Cannot truncate: at most 255 by the line above.
        let len = bytes.len() as u8;
        self.0.extend([op::RAW, from, len]);
        self.0.extend_from_slice(bytes);
        self
    }

    /// A probe of our session.
    pub fn probe(mut self, from: u8, seq: u32) -> Self {
        self.0.extend([op::PROBE, from, 0]);
        self.0.extend(seq.to_le_bytes());
        self
    }

    /// An ack of the `idx`-th most recent probe, from its destination.
    pub fn ack_sent(mut self, idx: u8, observed: u8) -> Self {
        self.0.extend([op::ACK_SENT, idx, 0, observed]);
        self
    }

    /// Time moves `n` × 8 ms.
    pub fn advance(mut self, n: u8) -> Self {
        self.0.extend([op::ADVANCE, n]);
        self
    }

    /// `handle_timeout(now)`.
    pub fn timeout(mut self) -> Self {
        self.0.push(op::TIMEOUT);
        self
    }

    /// Sleep until `poll_timeout()`, then `handle_timeout`.
    pub fn drive(mut self) -> Self {
        self.0.push(op::DRIVE);
        self
    }

    /// A probe from `198.51.100.99:port`.
    pub fn spray(mut self, port: u16, seq: u32) -> Self {
        self.0.push(op::SPRAY);
        self.0.extend(port.to_le_bytes());
        self.0.extend(seq.to_le_bytes());
        self
    }

    /// `peer_ready(now)`.
    pub fn ready(mut self) -> Self {
        self.0.push(op::READY);
        self
    }

    /// The script's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}
