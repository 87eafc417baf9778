//! The `tcp_inputs` script: the server's TCP side, sans-IO. Connections open on the main or
//! assist listener, bytes arrive on them in arbitrary reads, a [`FrameReader`] per connection
//! cuts them into frames for the [`TcpRegistry`], and time moves; the registry's actions are
//! drained and checked after every step. The harness plays the IO layer
//! (`crates/punch/src/tcp/server.rs`) as it behaves: it stops reading a connection after a
//! framing error or a `TcpRelayJoin`, and reports a connection closed (`handle_close`) when
//! the peer closes it, or, after an [`Action::Close`] or an [`Action::Splice`], once the
//! script says the connection's task finished (`REAP`).
//!
//! It does not cover the splice itself (byte copying, relay limits): that is IO-layer code.
//!
//! # Script format
//! Header: `limits` (`max_peers` = 1 + limits % 4, `max_connections` = 1 + (limits >> 2) % 8,
//! `max_sessions` = 1 + (limits >> 5) % 4), `ttls` (registration TTL = 1 s × (1 + ttls % 16),
//! session TTL = 1 s × (1 + ttls >> 4)) and `flags` (bit 0: relay off). Then steps until the
//! input ends, each an opcode byte (taken modulo 8):
//!
//! | op | bytes after it | step |
//! |----|----------------|------|
//! | 0 `OPEN` | how | a connection accepted: on the assist listener if bit 0, else main; from `sources(how >> 1)` |
//! | 1 `RAW` | conn, len (u16), len bytes | one read of len % 2049 bytes on a connection |
//! | 2 `FRAME` | conn, cut, kind, fields | a well-formed framed frame (see below), in two reads split at cut |
//! | 3 `CLOSE` | conn | the peer closes a connection (`handle_close` at once) |
//! | 4 `REAP` | | the IO layer reports every connection it was told to close or splice as closed |
//! | 5 `ADVANCE` | n | time moves n × 100 ms |
//! | 6 `TIMEOUT` | | `handle_timeout(now)` |
//! | 7 `DRIVE` | | time moves to `poll_timeout()`, then `handle_timeout` |
//!
//! `conn` indexes the connections opened and not yet reported closed, in the order opened
//! (a step with none is skipped). A `FRAME`'s `kind` (taken modulo 8) and fields:
//!
//! | kind | fields | frame |
//! |------|--------|-------|
//! | 0 | txn, name, key, n, n × addr | `Register` (up to 9 addresses: one more than a frame may carry), signed as `key` says (below) |
//! | 1 | txn, name | `TcpConnect` |
//! | 2 | session, n, n × addr | `TcpAssist` |
//! | 3 | session | `TcpReady` |
//! | 4 | session | `TcpRelay` |
//! | 5 | session | `TcpRelayJoin` |
//! | 6 | session | `IntroduceAck` (a UDP frame: the registry rejects it) |
//! | 7 | session | `TcpRelayReady` (a server frame: the registry rejects it) |
//!
//! `txn` is one byte; `key % 3` picks one of three key pairs and `key / 3 % 4` how the
//! registration is signed: 0 and 1 as a client does, over the last nonce the registry sent
//! that connection (none yet: the registry answers with a challenge, and the next
//! registration signs its nonce), 2 forged (the key named, another key's signature), 3 as
//! an old client sends it (wire version 1: told to upgrade, then closed); `addr` indexes [`sources`]. A `session`
//! byte below 0x80 picks one of the sessions the server handed out (`TcpSession`), if any;
//! otherwise it is the byte's value, a session nobody has. A `name` is a byte below 0x80 for
//! one of [`NAMES`], or 0x80 + n followed by n bytes, each a character of [`ALPHABET`]. A
//! frame that breaks a bound (name too long, too many addresses) does not encode and the
//! step is skipped. After the script the harness reports every pending close, drives
//! timeouts until the registry is idle, then closes every connection.
//!
//! # Invariants (from `punch_proto::tcp`'s documented behaviour)
//! - No action names a connection that was never opened, or that was already reported
//!   closed: the IO layer has forgotten it (this includes a splice's control connections).
//! - Every `Send` holds exactly one frame: a fresh [`FrameReader`] fed its bytes yields one
//!   frame and keeps nothing. It is a server frame (`Registered`, `Error`, `TcpSession`,
//!   `TcpAssistAck`, `TcpIntroduce`, `TcpRelay`, `TcpRelayReady`); `Registered` and
//!   `TcpAssistAck` report the connection's remote address, the latter on an assist
//!   connection; `TcpRelayReady` goes on a main connection that joined that session.
//! - A `Splice` names two distinct main connections that each sent `TcpRelayJoin` for its
//!   session and were each sent `TcpRelayReady` for it just before.
//! - A `Register` gets exactly one answer on its connection: `Registered` (its txn; the
//!   remote address and the TTL in seconds are checked on every `Registered`; only for a
//!   registration signed by its key over a nonce sent to that connection's address),
//!   `Challenge` (its txn), or `Error` (also `BadSignature`)
//!   (`NameTaken`, `Busy`) with its txn, or else a close. A `TcpConnect` likewise gets
//!   `TcpSession` or `Error` (`SelfConnect`, `UnknownPeer`, `NotRegistered`, `Busy`) with its
//!   txn, or a close. Besides that answer, a step may only close connections: an expiry run
//!   to make room closes overdue new connections, the sender itself included when its first
//!   frame came after `FIRST_FRAME_TIMEOUT` (and then it gets a close and no answer).
//! - `peer_count() <= max_peers`, `session_count() <= max_sessions`,
//!   `connection_count() <= max_connections`, and `connection_count()` is exactly the
//!   connections accepted and not yet reported closed.
//! - `stats()` count what was sent: `registrations` the `Registered` frames, `sessions` the
//!   `TcpSession` frames (each a new session id), `introductions` the `TcpIntroduce`s to
//!   initiators, `relays` the splices; `rejected` never decreases.
//! - The reader: after a read of n bytes it holds at most one partial frame
//!   (< `LEN_PREFIX + MAX_FRAME_LEN` bytes) plus n; once it answers "need more" it holds
//!   less than `LEN_PREFIX + MAX_FRAME_LEN`; each frame it yields consumes between
//!   `LEN_PREFIX + 1` and `LEN_PREFIX + MAX_FRAME_LEN` bytes.
//! - After `handle_timeout(now)`, `poll_timeout()` is later than `now` or `None`, unless a
//!   close is pending (a silent connection stays due until the IO layer reports it closed).
//!   Left alone, with its closes reported, the registry forgets every registration and
//!   session and stops asking for timeouts; once every connection closed, it holds none.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use punch_proto::auth::{Nonce, RegisterRequest, NO_NONCE};
use punch_proto::tcp::framing::{encode_framed, FrameReader, FramingError, LEN_PREFIX};
use punch_proto::tcp::registry::{Action, ConnId, Listener, TcpRegistry, TcpRegistryConfig};
use punch_proto::wire::{Frame, LEGACY_WIRE_VERSION, MAX_FRAME_LEN};

use crate::input::Input;
use crate::signing::{self, Signing};

mod checks;
mod script;
pub use script::Script;

/// Opcodes of the script (see the module doc).
pub mod op {
    /// A connection accepted.
    pub const OPEN: u8 = 0;
    /// One read of arbitrary bytes.
    pub const RAW: u8 = 1;
    /// A well-formed frame in two reads.
    pub const FRAME: u8 = 2;
    /// The peer closes a connection.
    pub const CLOSE: u8 = 3;
    /// The IO layer reports the connections it closed or spliced.
    pub const REAP: u8 = 4;
    /// Time moves n × 100 ms.
    pub const ADVANCE: u8 = 5;
    /// `handle_timeout(now)`.
    pub const TIMEOUT: u8 = 6;
    /// Sleep until `poll_timeout()`, then `handle_timeout`.
    pub const DRIVE: u8 = 7;
    /// Number of opcodes; an opcode byte is taken modulo this.
    pub const COUNT: u8 = 8;
}

/// Frame kinds of a `FRAME` step (see the module doc).
pub mod kind {
    /// `Register`.
    pub const REGISTER: u8 = 0;
    /// `TcpConnect`.
    pub const CONNECT: u8 = 1;
    /// `TcpAssist`.
    pub const ASSIST: u8 = 2;
    /// `TcpReady`.
    pub const READY: u8 = 3;
    /// `TcpRelay`.
    pub const RELAY: u8 = 4;
    /// `TcpRelayJoin`.
    pub const RELAY_JOIN: u8 = 5;
    /// `IntroduceAck`.
    pub const INTRO_ACK: u8 = 6;
    /// `TcpRelayReady`.
    pub const RELAY_READY: u8 = 7;
    /// Number of kinds; a kind byte is taken modulo this.
    pub const COUNT: u8 = 8;
}

/// Largest read the IO layer makes (its buffer in `crates/punch/src/tcp/server.rs`).
pub const MAX_READ: usize = 2048;

/// Most bytes a reader may hold once it needs more: one partial frame.
const PARTIAL_BOUND: usize = LEN_PREFIX + MAX_FRAME_LEN - 1;

/// Names a name byte below 0x80 picks from.
pub const NAMES: [&str; 3] = ["alice", "bob", "carol"];

/// Characters of a generated name: plain, quoting, control, multi-byte and combining
/// (what `{:?}` in an error reason escapes to several bytes).
pub const ALPHABET: [char; 8] = ['a', '"', '\\', '\0', '\n', 'é', '\u{300}', '\u{10ffff}'];

/// Where connections come from: distinct clients, two ports of one IP (a control
/// connection and its punching port), an IPv6 client and its second port.
pub const SOURCES: [SocketAddr; 6] = [
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 1000),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 2000),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 1001),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 2001),
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3)),
        3000,
    ),
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3)),
        3001,
    ),
];

/// The source address an address byte stands for.
pub fn sources(b: u8) -> SocketAddr {
    SOURCES[usize::from(b) % SOURCES.len()]
}

fn name(input: &mut Input<'_>) -> String {
    input.name(&NAMES, &ALPHABET)
}

fn addrs(input: &mut Input<'_>) -> Vec<SocketAddr> {
    let n = input.u8() % 10;
    (0..n).map(|_| sources(input.u8())).collect()
}

/// Where a connection stands, as the IO layer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Open; the registry knows it.
    Open,
    /// Told to close (or spliced): the IO layer reports it closed at the next `REAP`.
    Closing,
    /// Refused by `handle_open`: the IO layer never kept it, and reports its close at once.
    Refused,
    /// Reported closed: the IO layer forgot it.
    Gone,
}

struct Conn {
    id: ConnId,
    listener: Listener,
    remote: SocketAddr,
    reader: FrameReader,
    /// False after a framing error or a `TcpRelayJoin`: the IO layer stops reading.
    reading: bool,
    state: State,
    /// The session of the `TcpRelayJoin` it sent, if any.
    joined: Option<u64>,
    /// The last nonce the registry sent it (`Challenge` or `Registered`).
    nonce: Nonce,
    /// Every nonce the registry sent it.
    issued: Vec<Nonce>,
    /// It sent a frame of another wire version: an upgrade notice may follow.
    other_version: bool,
}

/// What a step fed the registry, for checking its answer.
enum Step {
    Frame(ConnId, Frame),
    Other,
}

struct Harness {
    registry: TcpRegistry,
    cfg: TcpRegistryConfig,
    now: Instant,
    /// Every connection opened, by `ConnId.0 - 1`.
    conns: Vec<Conn>,
    /// Sessions handed out, in order, for `session` bytes to pick.
    sessions: Vec<u64>,
    registered: u64,
    introduced: u64,
    relays: u64,
    rejected: u64,
}

/// Runs one script (see the module doc); panics if an invariant breaks.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let (limits, ttls, flags) = (input.u8(), input.u8(), input.u8());
    let cfg = TcpRegistryConfig {
        registration_ttl: Duration::from_secs(1 + u64::from(ttls % 16)),
        session_ttl: Duration::from_secs(1 + u64::from(ttls >> 4)),
        max_peers: 1 + usize::from(limits % 4),
        max_connections: 1 + usize::from((limits >> 2) % 8),
        max_sessions: 1 + usize::from((limits >> 5) % 4),
        relay: flags & 1 == 0,
        ..TcpRegistryConfig::default()
    };
    let mut h = Harness {
        registry: TcpRegistry::new(cfg.clone(), 7),
        cfg,
        now: Instant::now(),
        conns: Vec::new(),
        sessions: Vec::new(),
        registered: 0,
        introduced: 0,
        relays: 0,
        rejected: 0,
    };

    while !input.is_empty() {
        match input.u8() % op::COUNT {
            op::OPEN => {
                let how = input.u8();
                let listener = [Listener::Main, Listener::Assist][usize::from(how & 1)];
                h.open(listener, sources(how >> 1));
            }
            op::RAW => {
                let conn = input.u8();
                let len = usize::from(input.u16()) % (MAX_READ + 1);
                let bytes = input.bytes(len);
                if let Some(i) = h.pick(conn) {
                    h.read(i, bytes);
                }
            }
            op::FRAME => {
                let (conn, cut) = (input.u8(), input.u8());
                let picked = h.pick(conn);
                let nonce = picked.map_or(NO_NONCE, |i| h.conns[i].nonce);
                let (frame, legacy) = h.frame(&mut input, nonce);
                let (Some(i), Ok(mut bytes)) = (picked, encode_framed(&frame)) else {
                    continue;
                };
                if legacy {
                    // As an old client's: the same bytes under wire version 1.
                    bytes[LEN_PREFIX + 1] = LEGACY_WIRE_VERSION;
                }
                let (first, second) = bytes.split_at(usize::from(cut) % (bytes.len() + 1));
                h.read(i, first);
                h.read(i, second);
            }
            op::CLOSE => {
                if let Some(i) = h.pick(input.u8()) {
                    h.report_closed(i);
                }
            }
            op::REAP => h.reap(),
            op::ADVANCE => h.now += Duration::from_millis(100 * u64::from(input.u8())),
            op::TIMEOUT => h.timeout(),
            _ => h.drive(),
        }
    }

    // Left alone, registrations and sessions expire (TTLs at most 16 s) and silent
    // connections are closed (10 s); each round reports the closes and moves to the next
    // wake-up, and there are a handful of wake-ups per registration, session and connection.
    h.reap();
    for _ in 0..1_000 {
        if h.registry.poll_timeout().is_none() {
            break;
        }
        h.drive();
        h.reap();
    }
    assert_eq!(h.registry.poll_timeout(), None, "registry never goes idle");
    let (peers, sessions) = (h.registry.peer_count(), h.registry.session_count());
    assert_eq!(
        (peers, sessions),
        (0, 0),
        "idle registry holds peers, sessions"
    );
    for i in 0..h.conns.len() {
        if h.conns[i].state == State::Open {
            h.report_closed(i);
        }
    }
    h.reap();
    assert_eq!(
        h.registry.connection_count(),
        0,
        "every connection closed, yet the registry holds some"
    );
}

impl Harness {
    /// The index of the `b`-th connection not yet reported closed.
    fn pick(&self, b: u8) -> Option<usize> {
        let live: Vec<usize> = (0..self.conns.len())
            .filter(|&i| matches!(self.conns[i].state, State::Open | State::Closing))
            .collect();
        if live.is_empty() {
            return None;
        }
        Some(live[usize::from(b) % live.len()])
    }

    fn session(&self, b: u8) -> u64 {
        if b < 0x80 && !self.sessions.is_empty() {
            self.sessions[usize::from(b) % self.sessions.len()]
        } else {
            u64::from(b)
        }
    }

    /// Reads a `FRAME` step's kind and fields; true if it goes out as wire version 1.
    /// `nonce`: the last one the registry sent the connection.
    fn frame(&self, input: &mut Input<'_>, nonce: Nonce) -> (Frame, bool) {
        let frame = match input.u8() % kind::COUNT {
            kind::REGISTER => {
                let txn = u64::from(input.u8());
                let name = name(input);
                let kb = input.u8();
                let private = addrs(input);
                let req = RegisterRequest {
                    name,
                    private,
                    nat: None,
                    nonce,
                };
                let frame = signing::register_frame(txn, &req, kb);
                // The fourth way: an old client's (wire version 1).
                return (frame, signing::signing(kb) == Signing::Fourth);
            }
            kind::CONNECT => {
                let txn = u64::from(input.u8());
                let target = name(input);
                Frame::TcpConnect { txn, target }
            }
            kind::ASSIST => {
                let session = self.session(input.u8());
                let private = addrs(input);
                Frame::TcpAssist { session, private }
            }
            k => {
                let session = self.session(input.u8());
                match k {
                    kind::READY => Frame::TcpReady { session },
                    kind::RELAY => Frame::TcpRelay { session },
                    kind::RELAY_JOIN => Frame::TcpRelayJoin { session },
                    kind::INTRO_ACK => Frame::IntroduceAck { session },
                    _ => Frame::TcpRelayReady { session },
                }
            }
        };
        (frame, false)
    }

    fn open(&mut self, listener: Listener, remote: SocketAddr) {
        // Ids are never reused, as in the IO layer.
        let id = ConnId(self.conns.len() as u64 + 1);
        let accepted = self.registry.handle_open(self.now, id, listener, remote);
        self.conns.push(Conn {
            id,
            listener,
            remote,
            reader: FrameReader::new(),
            reading: accepted,
            state: if accepted {
                State::Open
            } else {
                State::Refused
            },
            joined: None,
            nonce: NO_NONCE,
            issued: Vec::new(),
            other_version: false,
        });
        self.settle(Step::Other);
        if !accepted {
            let conn = &self.conns[self.conns.len() - 1];
            assert_eq!(conn.state, State::Gone, "refused {id:?} never closed");
        }
    }

    /// One read of `bytes` on connection `i`, cut into frames as the IO layer does.
    fn read(&mut self, i: usize, bytes: &[u8]) {
        let conn = &mut self.conns[i];
        if !conn.reading {
            return;
        }
        let id = conn.id;
        conn.reader.push(bytes);
        assert!(
            conn.reader.buffered() <= PARTIAL_BOUND + bytes.len(),
            "reader holds {} bytes after a read of {}",
            conn.reader.buffered(),
            bytes.len()
        );
        loop {
            let conn = &mut self.conns[i];
            let before = conn.reader.buffered();
            match conn.reader.next_frame() {
                Ok(Some(frame)) => {
                    let used = before - conn.reader.buffered();
                    assert!(
                        (LEN_PREFIX + 1..=LEN_PREFIX + MAX_FRAME_LEN).contains(&used),
                        "a frame consumed {used} bytes"
                    );
                    if let Frame::TcpRelayJoin { session } = frame {
                        // The IO layer stops reading: later bytes belong to the peer.
                        conn.reading = false;
                        conn.joined = Some(session);
                    }
                    let reading = conn.reading;
                    self.registry.handle_frame(self.now, id, frame.clone());
                    self.settle(Step::Frame(id, frame));
                    if !reading {
                        return;
                    }
                }
                Ok(None) => {
                    assert!(
                        conn.reader.buffered() <= PARTIAL_BOUND,
                        "reader needs more bytes yet holds {}",
                        conn.reader.buffered()
                    );
                    return;
                }
                Err(e) => {
                    // The IO layer reports the bad stream (a frame of another wire version
                    // with its bytes), stops, and reports the close.
                    conn.reading = false;
                    if conn.state == State::Open {
                        conn.state = State::Closing;
                    }
                    match e {
                        FramingError::OtherVersion { frame, .. } => {
                            conn.other_version = true;
                            self.registry.handle_other_version(id, &frame);
                        }
                        _ => self.registry.handle_bad_stream(id),
                    }
                    self.settle(Step::Other);
                    return;
                }
            }
        }
    }

    /// Connection `i` ends: the IO layer reports it closed.
    fn report_closed(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        conn.state = State::Gone;
        conn.reading = false;
        let id = conn.id;
        self.registry.handle_close(id);
        self.settle(Step::Other);
    }

    /// Every connection told to close (or spliced) is reported closed.
    fn reap(&mut self) {
        for i in 0..self.conns.len() {
            if self.conns[i].state == State::Closing {
                self.report_closed(i);
            }
        }
    }

    fn timeout(&mut self) {
        self.registry.handle_timeout(self.now);
        self.settle(Step::Other);
        let pending = self.conns.iter().any(|c| c.state == State::Closing);
        if let Some(t) = self.registry.poll_timeout() {
            assert!(
                t > self.now || pending,
                "poll_timeout {t:?} not after handle_timeout's now, no close pending"
            );
        }
    }

    fn drive(&mut self) {
        if let Some(t) = self.registry.poll_timeout() {
            self.now = self.now.max(t);
        }
        self.timeout();
    }

    /// The connection `id` names; panics if it was never opened or was reported closed.
    fn conn(&self, id: ConnId, what: &str) -> &Conn {
        let conn = usize::try_from(id.0)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| self.conns.get(n));
        let Some(conn) = conn else {
            panic!("{what} names {id:?}, never opened");
        };
        assert!(
            conn.state != State::Gone,
            "{what} names {id:?}, already reported closed"
        );
        conn
    }

    /// Drains the registry's actions after `step`, checks them, and carries them out.
    fn settle(&mut self, step: Step) {
        // Whether the sender was already told to close (see `check_answer`).
        let was_closing = match &step {
            Step::Frame(from, _) => self.conns[from.0 as usize - 1].state == State::Closing,
            _ => false,
        };
        let mut out = Vec::new();
        while let Some(action) = self.registry.poll_action() {
            out.push(action);
        }
        // Per connection, the sessions a TcpRelayReady was queued for in this drain.
        let mut ready: HashMap<ConnId, Vec<u64>> = HashMap::new();
        let mut refused = Vec::new();
        for action in &out {
            match action {
                Action::Send(id, bytes) => {
                    let frame = self.check_send(*id, bytes);
                    if let Frame::TcpRelayReady { session } = frame {
                        ready.entry(*id).or_default().push(session);
                    }
                }
                Action::Close(id) => {
                    let i = self.conn(*id, "Close").id.0 as usize - 1;
                    match self.conns[i].state {
                        State::Refused => refused.push(i),
                        _ => self.conns[i].state = State::Closing,
                    }
                }
                Action::Splice {
                    session,
                    joins: (a, b),
                    controls: (ca, cb),
                } => {
                    assert_ne!(a, b, "splice of {a:?} with itself");
                    for id in [a, b] {
                        let conn = self.conn(*id, "Splice (join)");
                        assert_eq!(conn.listener, Listener::Main, "splice of assist {id:?}");
                        assert_eq!(
                            conn.joined,
                            Some(*session),
                            "splice of {id:?}, which did not join {session}"
                        );
                        assert!(
                            ready.get(id).is_some_and(|s| s.contains(session)),
                            "splice of {id:?} without TcpRelayReady first"
                        );
                    }
                    for id in [ca, cb] {
                        self.conn(*id, "Splice (control)");
                    }
                    // The IO layer takes both streams and reports both closed.
                    for id in [a, b] {
                        self.conns[id.0 as usize - 1].state = State::Closing;
                    }
                    self.relays += 1;
                }
            }
        }
        self.check_answer(&step, &out, was_closing);
        self.check_tables();
        // The IO layer reports a refused connection's close as soon as it sees the Close.
        for i in refused {
            self.report_closed(i);
        }
    }
}
