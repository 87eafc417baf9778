//! The `rendezvous_inputs` script: the [`Rendezvous`] server state machine with a tiny
//! registry, fed frames from a handful of addresses and moved through virtual time, with
//! its outputs drained and checked after every step.
//!
//! # Script format
//! Header: `max` (`max_peers` = 1 + max % 4) and `ttl` (registration TTL =
//! 500 ms × (1 + ttl % 32)). Then steps until the input ends, each an opcode byte (taken
//! modulo 8):
//!
//! | op | bytes after it | step |
//! |----|----------------|------|
//! | 0 `RAW` | from, len (u16), len bytes | the bytes through `Frame::decode`, delivered if they decode |
//! | 1 `REGISTER` | from, txn, name, key, n, n × addr | a `Register`, signed as `key` says (below) |
//! | 2 `CONNECT` | from, txn, name | a `Connect` |
//! | 3 `INTRO_ACK` | idx, flags | an `IntroduceAck` of an introduction the server sent: from its passive side (flags % 4 = 0), its requester (1), else `sources(flags >> 2)` |
//! | 4 `ADVANCE` | n | time moves n × 50 ms |
//! | 5 `TIMEOUT` | | `handle_timeout(now)` |
//! | 6 `DRIVE` | | time moves to `poll_timeout()`, then `handle_timeout` |
//! | 7 `NUDGE` | n | time moves n ms |
//!
//! `from` and `addr` index [`sources`]; `txn` is one byte (so retransmissions repeat
//! txns); `key % 3` picks one of three key pairs and `key / 3 % 4` how the registration is
//! signed: 0 and 1 as a client does (over the last nonce the server gave `from`, and once
//! more over a challenge's nonce if one comes back), 2 forged (the key named, another key's
//! signature), 3 unsigned (no nonce, no signature). A `name` is a byte below 0x80 for one of
//! [`NAMES`], or 0x80 + n followed by n bytes, each a character of [`ALPHABET`] (quotes,
//! control characters, multi-byte and combining characters: what a hostile client puts
//! in a name). Structured frames are encoded and decoded before delivery (one that breaks a
//! bound is dropped, as the socket layer would), so the server sees only what a real
//! socket could hand it. After the script the harness keeps driving timeouts until the
//! server is idle.
//!
//! # Invariants (each from `punch_proto::rendezvous`'s documented behaviour)
//! - `peer_count() <= max_peers` after every step.
//! - Every transmit is a decodable `Registered`, `Challenge`, `Error`, `Introduce` or
//!   `PeerReady`.
//! - A `Register` from X gets exactly one answer, to X (none if over the rate limit):
//!   `Registered` with its txn, X as `observed` and the TTL in seconds, `Challenge` with
//!   its txn and no larger than the request, or `Error` (`NameTaken`, `Busy`,
//!   `BadSignature`) with its txn. `Registered` only ever answers a registration whose
//!   signature is its key's, over a nonce the server sent to X.
//! - A forged or unsigned registration is never accepted.
//! - A `Connect` from X (none if over the rate limit) gets one `Error` to X with its txn,
//!   or exactly two introductions of one session: to X (its txn, initiator, the target's
//!   name) and to the target's address (txn 0, not initiator, X as the peer's public
//!   address).
//! - An `IntroduceAck` is answered only with `PeerReady` of that session, only to the
//!   session's two sides, and only when it came from one of them.
//! - Other frames get no answer; a timeout only retransmits earlier introductions to their
//!   passive side, at most `INTRO_ATTEMPTS - 1` times each.
//! - `stats()` count what was sent: `errors` the `Error` frames, `registrations` the
//!   `Registered` frames, `introductions` the distinct sessions.
//! - After `handle_timeout(now)`, `poll_timeout()` is later than `now` or `None`; left
//!   alone, the server forgets every registration and stops asking for timeouts.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use punch_proto::auth::{Nonce, RegisterRequest, NO_NONCE};
use punch_proto::rendezvous::{Rendezvous, RendezvousConfig, INTRO_ATTEMPTS};
use punch_proto::wire::{ErrorCode, Frame, MAX_FRAME_LEN};

use crate::input::Input;
use crate::signing::{self, Signing};

/// Opcodes of the script (see the module doc).
pub mod op {
    /// Raw bytes through `Frame::decode`.
    pub const RAW: u8 = 0;
    /// A registration.
    pub const REGISTER: u8 = 1;
    /// A connect request.
    pub const CONNECT: u8 = 2;
    /// An acknowledgement of an introduction.
    pub const INTRO_ACK: u8 = 3;
    /// Time moves n × 50 ms.
    pub const ADVANCE: u8 = 4;
    /// `handle_timeout(now)`.
    pub const TIMEOUT: u8 = 5;
    /// Sleep until `poll_timeout()`, then `handle_timeout`.
    pub const DRIVE: u8 = 6;
    /// Time moves n ms.
    pub const NUDGE: u8 = 7;
    /// Number of opcodes; an opcode byte is taken modulo this.
    pub const COUNT: u8 = 8;
}

/// Names a name byte below 0x80 picks from.
pub const NAMES: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// Characters of a generated name: plain, quoting, control, multi-byte, combining, format
/// and non-characters (most of which `{:?}` escapes to several bytes).
pub const ALPHABET: [char; 16] = [
    'a',
    '"',
    '\\',
    '\0',
    '\u{1}',
    '\n',
    '\u{7f}',
    '\u{9b}',
    'é',
    '€',
    '\u{300}',
    '\u{200b}',
    '\u{feff}',
    '😀',
    '\u{e0001}',
    '\u{10ffff}',
];

/// Where frames come from: distinct clients, two ports of one IP, an IPv4-mapped IPv6 twin.
pub const SOURCES: [SocketAddr; 6] = [
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 1000),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 2000),
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3)),
        3000,
    ),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 1001),
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0xc633, 0x6401)),
        1000,
    ),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 65535),
];

/// The source address an address byte stands for.
pub fn sources(b: u8) -> SocketAddr {
    SOURCES[usize::from(b) % SOURCES.len()]
}

fn name(input: &mut Input<'_>) -> String {
    input.name(&NAMES, &ALPHABET)
}

/// One introduction the server made.
struct Intro {
    requester: SocketAddr,
    passive: SocketAddr,
    retransmits: u32,
}

/// What a step fed the server, for checking its outputs.
// One value per step, on the stack: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Step {
    Frame { from: SocketAddr, frame: Frame },
    Timeout,
}

struct Harness {
    server: Rendezvous,
    max_peers: usize,
    ttl: Duration,
    now: Instant,
    /// Every introduction: session -> its two sides and how often a timeout retransmitted
    /// it.
    intros: HashMap<u64, Intro>,
    /// Sessions in the order first seen, for `INTRO_ACK` to pick from.
    sessions: Vec<u64>,
    errors: u64,
    registered: u64,
    /// The last nonce the server sent each address (a challenge's or a registration's).
    nonces: HashMap<SocketAddr, Nonce>,
    /// Every nonce the server sent each address.
    issued: HashMap<SocketAddr, Vec<Nonce>>,
}

/// Runs one script (see the module doc); panics if an invariant breaks.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let max_peers = 1 + usize::from(input.u8() % 4);
    let ttl = Duration::from_millis(500 * (1 + u64::from(input.u8() % 32)));
    let cfg = RendezvousConfig {
        registration_ttl: ttl,
        max_peers,
        ..RendezvousConfig::default()
    };
    let mut h = Harness {
        server: Rendezvous::new(cfg, 7),
        max_peers,
        ttl,
        now: Instant::now(),
        intros: HashMap::new(),
        sessions: Vec::new(),
        errors: 0,
        registered: 0,
        nonces: HashMap::new(),
        issued: HashMap::new(),
    };

    while !input.is_empty() {
        match input.u8() % op::COUNT {
            op::RAW => {
                let from = sources(input.u8());
                let len = usize::from(input.u16()) % (MAX_FRAME_LEN + 1);
                if let Ok(frame) = Frame::decode(input.bytes(len)) {
                    h.deliver(from, frame);
                }
            }
            op::REGISTER => {
                let from = sources(input.u8());
                let txn = u64::from(input.u8());
                let name = name(&mut input);
                let kb = input.u8();
                // Up to 9: one more than a frame may carry, so the bound is exercised.
                let n = input.u8() % 10;
                let private = (0..n).map(|_| sources(input.u8())).collect();
                let mut req = RegisterRequest {
                    name,
                    private,
                    nat: None,
                    nonce: h.nonces.get(&from).copied().unwrap_or(NO_NONCE),
                };
                let frame = match signing::signing(kb) {
                    Signing::Fourth => signing::unsigned(txn, &req, kb),
                    _ => signing::register_frame(txn, &req, kb),
                };
                let out = h.deliver_structured(from, frame);
                if let [(_, Frame::Challenge { nonce, .. })] = out[..] {
                    if signing::signing(kb) == Signing::AsClient {
                        req.nonce = nonce;
                        h.deliver_structured(from, signing::register_frame(txn, &req, kb));
                    }
                }
            }
            op::CONNECT => {
                let from = sources(input.u8());
                let txn = u64::from(input.u8());
                let target = name(&mut input);
                h.deliver_structured(from, Frame::Connect { txn, target });
            }
            op::INTRO_ACK => {
                let (idx, flags) = (input.u8(), input.u8());
                if h.sessions.is_empty() {
                    continue;
                }
                let session = h.sessions[usize::from(idx) % h.sessions.len()];
                let intro = &h.intros[&session];
                let from = match flags % 4 {
                    0 => intro.passive,
                    1 => intro.requester,
                    _ => sources(flags >> 2),
                };
                h.deliver_structured(from, Frame::IntroduceAck { session });
            }
            op::ADVANCE => h.now += Duration::from_millis(50 * u64::from(input.u8())),
            op::TIMEOUT => h.timeout(),
            op::DRIVE => h.drive(),
            _ => h.now += Duration::from_millis(u64::from(input.u8())),
        }
    }

    // Left alone, the server expires every registration (TTL at most 16 s) and gives up
    // every introduction (INTRO_ATTEMPTS sends): each drive moves to a later wake-up, and
    // there are a handful of wake-ups per registration and per introduction.
    for _ in 0..10_000 {
        if h.server.poll_timeout().is_none() {
            break;
        }
        h.drive();
    }
    assert_eq!(h.server.poll_timeout(), None, "server never goes idle");
    assert_eq!(
        h.server.peer_count(),
        0,
        "idle server still holds registrations"
    );
}

impl Harness {
    /// Delivers a frame built by the script as a socket would: encoded, then decoded. A frame
    /// that breaks a bound (over-long name, too many addresses) never reaches the server.
    /// Returns what the server sent in answer.
    fn deliver_structured(&mut self, from: SocketAddr, frame: Frame) -> Vec<(SocketAddr, Frame)> {
        let Ok(bytes) = frame.encode() else {
            return Vec::new();
        };
        let frame = Frame::decode(&bytes).expect("an encoded frame decodes");
        self.deliver(from, frame)
    }

    fn deliver(&mut self, from: SocketAddr, frame: Frame) -> Vec<(SocketAddr, Frame)> {
        let limited = |s: &punch_proto::rendezvous::Stats| s.register_limited + s.connect_limited;
        let before = limited(self.server.stats());
        self.server.handle_frame(self.now, from, frame.clone());
        let limited = limited(self.server.stats()) > before;
        self.check(Step::Frame { from, frame }, limited)
    }

    fn timeout(&mut self) {
        self.server.handle_timeout(self.now);
        self.check(Step::Timeout, false);
        if let Some(t) = self.server.poll_timeout() {
            assert!(
                t > self.now,
                "poll_timeout {t:?} not after handle_timeout's now"
            );
        }
    }

    fn drive(&mut self) {
        if let Some(t) = self.server.poll_timeout() {
            self.now = self.now.max(t);
        }
        self.timeout();
    }

    /// Drains the server's outputs after `step` and checks them; returns them. `limited`:
    /// the step's registration went over the rate limit.
    fn check(&mut self, step: Step, limited: bool) -> Vec<(SocketAddr, Frame)> {
        let mut out = Vec::new();
        while let Some((to, bytes)) = self.server.poll_transmit() {
            let frame = Frame::decode(&bytes).expect("the server sends decodable frames");
            match &frame {
                Frame::Error { .. } => self.errors += 1,
                Frame::Registered { .. } => self.registered += 1,
                Frame::Challenge { .. } | Frame::Introduce { .. } | Frame::PeerReady { .. } => {}
                other => panic!("the server sent an unexpected frame: {other:?}"),
            }
            if let Frame::Challenge { nonce, .. } | Frame::Registered { nonce, .. } = &frame {
                self.nonces.insert(to, *nonce);
                let issued = self.issued.entry(to).or_default();
                if !issued.contains(nonce) {
                    issued.push(*nonce);
                }
            }
            out.push((to, frame));
        }

        match &step {
            Step::Frame {
                from,
                frame: request @ Frame::Register { txn, .. },
            } => self.check_register(*from, *txn, request, &out, limited),
            Step::Frame {
                frame: Frame::Connect { .. },
                ..
            } if limited => assert!(out.is_empty(), "a limited Connect got answers: {out:?}"),
            Step::Frame {
                from,
                frame: Frame::Connect { txn, target },
            } => self.check_connect(*from, *txn, target, &out),
            Step::Frame {
                from,
                frame: Frame::IntroduceAck { session },
            } => self.check_ack(*from, *session, &out),
            Step::Frame { frame, .. } => {
                assert!(out.is_empty(), "{frame:?} got answers: {out:?}");
            }
            Step::Timeout => {
                for (to, frame) in &out {
                    let Frame::Introduce {
                        txn: 0,
                        session,
                        initiator: false,
                        ..
                    } = frame
                    else {
                        panic!("timeout sent {frame:?}");
                    };
                    let Some(intro) = self.intros.get_mut(session) else {
                        panic!("timeout retransmits unknown session {session}");
                    };
                    assert_eq!(*to, intro.passive, "introduction retransmitted elsewhere");
                    intro.retransmits += 1;
                    assert!(
                        intro.retransmits < INTRO_ATTEMPTS,
                        "introduction {session} sent more than {INTRO_ATTEMPTS} times"
                    );
                }
            }
        }
        self.check_bounds();
        out
    }

    fn check_register(
        &self,
        from: SocketAddr,
        txn: u64,
        request: &Frame,
        out: &[(SocketAddr, Frame)],
        limited: bool,
    ) {
        if limited {
            assert!(
                out.is_empty(),
                "a limited registration got answers: {out:?}"
            );
            return;
        }
        let [(to, answer)] = out else {
            panic!("Register got {} answers: {out:?}", out.len());
        };
        assert_eq!(*to, from, "Register answered to another address");
        match answer {
            Frame::Registered {
                txn: t,
                observed,
                expires_secs,
                ..
            } => {
                assert_eq!(*t, txn);
                assert_eq!(*observed, from, "Registered reports the wrong address");
                assert_eq!(u64::from(*expires_secs), self.ttl.as_secs());
                let Frame::Register { nonce, .. } = request else {
                    unreachable!("checked by the caller")
                };
                let sent_here = self.issued.get(&from).is_some_and(|v| v.contains(nonce));
                signing::assert_accepted(request, sent_here);
            }
            Frame::Challenge { txn: t, .. } => {
                assert_eq!(*t, txn);
                let (q, a) = (request.encoded_len(), answer.encoded_len());
                assert!(
                    a.unwrap_or(0) <= q.unwrap_or(0),
                    "challenge larger than the request"
                );
            }
            Frame::Error { txn: t, code, .. } => {
                assert_eq!(*t, txn);
                assert!(
                    matches!(
                        code,
                        ErrorCode::NameTaken | ErrorCode::Busy | ErrorCode::BadSignature
                    ),
                    "Register refused with {code:?}"
                );
            }
            other => panic!("Register answered with {other:?}"),
        }
    }

    /// The tables' bound and the counters against what was sent.
    fn check_bounds(&self) {
        assert!(
            self.server.peer_count() <= self.max_peers,
            "{} peers with max_peers {}",
            self.server.peer_count(),
            self.max_peers
        );
        let stats = self.server.stats();
        assert_eq!(
            stats.errors, self.errors,
            "stats.errors vs Error frames sent"
        );
        assert_eq!(
            stats.registrations, self.registered,
            "stats.registrations vs Registered"
        );
        assert_eq!(
            stats.introductions,
            self.intros.len() as u64,
            "stats.introductions"
        );
    }

    fn check_connect(
        &mut self,
        from: SocketAddr,
        txn: u64,
        target: &str,
        out: &[(SocketAddr, Frame)],
    ) {
        match out {
            [(to, Frame::Error { txn: t, code, .. })] => {
                assert_eq!(*to, from, "Connect error sent to another address");
                assert_eq!(*t, txn);
                assert!(
                    matches!(
                        code,
                        ErrorCode::NotRegistered
                            | ErrorCode::SelfConnect
                            | ErrorCode::UnknownPeer
                            | ErrorCode::Busy
                    ),
                    "Connect refused with {code:?}"
                );
            }
            [(
                to_a,
                Frame::Introduce {
                    txn: txn_a,
                    session: session_a,
                    initiator: true,
                    peer: peer_a,
                },
            ), (
                to_b,
                Frame::Introduce {
                    txn: 0,
                    session: session_b,
                    initiator: false,
                    peer: peer_b,
                },
            )] => {
                assert_eq!(*to_a, from, "initiator's introduction sent elsewhere");
                assert_eq!(*txn_a, txn);
                assert_eq!(session_a, session_b, "the two sides got different sessions");
                assert_eq!(
                    peer_a.public, *to_b,
                    "passive side is not where it registered"
                );
                assert_eq!(peer_b.public, from, "initiator's address misreported");
                assert_ne!(peer_a.name, peer_b.name, "introduced to itself");
                match self.intros.get(session_a) {
                    // A repeated (from, txn): the recorded introductions again, same session
                    // and passive side (and the first request's target, whatever this one
                    // names).
                    Some(intro) => assert_eq!(intro.passive, *to_b),
                    None => {
                        assert_eq!(peer_a.name, target, "introduced to another name");
                        let intro = Intro {
                            requester: from,
                            passive: *to_b,
                            retransmits: 0,
                        };
                        self.intros.insert(*session_a, intro);
                        self.sessions.push(*session_a);
                    }
                }
            }
            _ => panic!("Connect answered with {out:?}"),
        }
    }
}

impl Harness {
    fn check_ack(&self, from: SocketAddr, session: u64, out: &[(SocketAddr, Frame)]) {
        // When exactly the ready signal goes out (at once, or once both sides acknowledged)
        // is the server's policy; that it only ever tells the two sides of this session, and
        // only when one of them acknowledged, is the invariant.
        let sides = self
            .intros
            .get(&session)
            .map(|i| [i.requester, i.passive])
            .filter(|sides| sides.contains(&from));
        let Some(sides) = sides else {
            assert!(
                out.is_empty(),
                "IntroduceAck {session} from outsider {from} answered: {out:?}"
            );
            return;
        };
        assert!(
            out.len() <= 2,
            "IntroduceAck {session} answered with {out:?}"
        );
        for (to, frame) in out {
            assert_eq!(
                *frame,
                Frame::PeerReady { session },
                "IntroduceAck {session} answered with {frame:?}"
            );
            assert!(sides.contains(to), "ready signal sent to outsider {to}");
        }
    }
}

/// Builds scripts in the format above (for hand-made seeds).
#[derive(Debug, Clone)]
pub struct Script(Vec<u8>);

impl Script {
    /// Header: `max_peers` = 1 + max % 4, TTL = 500 ms × (1 + ttl % 32).
    pub fn new(max: u8, ttl: u8) -> Self {
        Script(vec![max, ttl])
    }

    /// Raw bytes from `from`.
    pub fn raw(mut self, from: u8, bytes: &[u8]) -> Self {
        let bytes = &bytes[..bytes.len().min(MAX_FRAME_LEN)];
        // Cannot truncate: at most MAX_FRAME_LEN (1200) by the line above.
        let len = bytes.len() as u16;
        self.0.extend([op::RAW, from]);
        self.0.extend(len.to_le_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    /// A registration of pool name `name` with key `key` and the given private addresses.
    pub fn register(mut self, from: u8, txn: u8, name: u8, key: u8, private: &[u8]) -> Self {
        self.0.extend([op::REGISTER, from, txn, name, key]);
        // Cannot truncate: callers pass a handful of addresses.
        self.0.push(private.len() as u8);
        self.0.extend_from_slice(private);
        self
    }

    /// A connect request toward pool name `name`.
    pub fn connect(mut self, from: u8, txn: u8, name: u8) -> Self {
        self.0.extend([op::CONNECT, from, txn, name]);
        self
    }

    /// A connect request toward a generated name: `chars` index [`ALPHABET`] (at most 127).
    pub fn connect_to(mut self, from: u8, txn: u8, chars: &[u8]) -> Self {
        let chars = &chars[..chars.len().min(127)];
        // Cannot truncate: at most 127 by the line above.
        self.0
            .extend([op::CONNECT, from, txn, 0x80 | chars.len() as u8]);
        self.0.extend_from_slice(chars);
        self
    }

    /// An acknowledgement of the `idx`-th introduction, from its passive side (or its
    /// requester).
    pub fn intro_ack(mut self, idx: u8, requester: bool) -> Self {
        self.0.extend([op::INTRO_ACK, idx, u8::from(requester)]);
        self
    }

    /// Time moves `n` × 50 ms.
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

    /// The script's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}
