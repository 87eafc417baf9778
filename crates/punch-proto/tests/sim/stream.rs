//! The app transport standing in for QUIC: a reliable, ordered message stream per peer,
//! and the record of every message sent and delivered.
//!
//! Owns the datagram format (first byte in QUIC's range, 0x40 and up, so the session
//! never sees it; the sender's 32-byte key next, as TLS would prove it), the handshake
//! that reports connections to the session (`connection_up`, honouring its verdict), and
//! go-back-N reliability: numbered data, cumulative acks, retransmission of everything
//! unacknowledged after [`RTO`]; the receiver keeps data that arrives early (reordered)
//! until the gap before it is filled, as a QUIC stream reassembles, and delivers in order
//! only. Delivery is exactly once and in order by construction; [`Flow`] checks it anyway
//! and measures stalls. It does not own
//! where datagrams go: it hands `(peer, bytes)` to the host driver, which sends them along
//! the peer's current route (or drops them when there is none).
//!
//! ```text
//! byte 0       kind: HELLO 0x40, HELLO_ACK 0x41, DATA 0x42, ACK 0x43, CLOSE 0x44
//! bytes 1..33  the sender's key
//! bytes 33..41 connection id (chosen by the side that opened it)
//! DATA         u64 sequence number, then the message
//! ACK          u64 next sequence number expected (cumulative)
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use punch_proto::client::{PathKind, PeerKey, Session, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// First byte of QUIC's range (RFC 9000 §17: the fixed bit 0x40 is set).
pub const QUIC_FIRST: u8 = 0x40;
const HELLO: u8 = 0x40;
const HELLO_ACK: u8 = 0x41;
const DATA: u8 = 0x42;
const ACK: u8 = 0x43;
const CLOSE: u8 = 0x44;
const HEADER: usize = 1 + 32 + 8;

/// Retransmission timeout of data and of the handshake (fixed: a QUIC PTO on a path of
/// tens of milliseconds, without the exponential backoff).
pub const RTO: Duration = Duration::from_millis(250);
/// Most messages in flight per connection.
pub const WINDOW: usize = 64;
/// An opened connection whose handshake does not complete in this long failed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The sender's key of an app datagram.
pub fn sender(datagram: &[u8]) -> Option<PeerKey> {
    datagram.get(1..33)?.try_into().ok()
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A message the app sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentMsg {
    /// Its number.
    pub id: u64,
    /// When the app sent it.
    pub at: Duration,
}

/// A message the app received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The number in its payload.
    pub id: u64,
    /// When it was delivered.
    pub at: Duration,
    /// How the datagram that completed it arrived.
    pub via: PathKind,
}

struct Conn {
    peer: PeerKey,
    id: u64,
    opened_by_us: bool,
    up: bool,
    opened_at: Duration,
    /// Next handshake retransmission (opener, before it is up).
    next_hello: Duration,
    /// Oldest unacknowledged sequence number.
    base: u64,
    /// Sent and unacknowledged, from `base` on.
    unacked: VecDeque<Vec<u8>>,
    /// Not sent yet (the window is full).
    pending: VecDeque<Vec<u8>>,
    rto_at: Option<Duration>,
    /// Next sequence number to deliver.
    expected: u64,
    /// Data that arrived ahead of `expected`: sequence number -> (message, how).
    early: BTreeMap<u64, (Vec<u8>, PathKind)>,
}

struct Generator {
    peer: PeerKey,
    interval: Duration,
    next: Duration,
    until: Duration,
    count: u64,
}

/// One host's app: its connections and the messages it sent and received.
pub struct App {
    key: PeerKey,
    rng: StdRng,
    conns: Vec<Conn>,
    /// Messages waiting for a connection to their peer.
    backlog: BTreeMap<PeerKey, VecDeque<Vec<u8>>>,
    generators: Vec<Generator>,
    out: Vec<(PeerKey, Vec<u8>)>,
    /// Messages sent, per peer.
    pub sent: BTreeMap<PeerKey, Vec<SentMsg>>,
    /// Messages delivered, per peer, in order of delivery.
    pub received: BTreeMap<PeerKey, Vec<Received>>,
    /// The session's verdicts on our connections: (time, peer, opened by us, verdict).
    pub verdicts: Vec<(Duration, PeerKey, bool, Verdict)>,
    /// Handshakes that timed out.
    pub failed: usize,
}

impl App {
    /// An app with identity `key`; `seed` drives its connection ids.
    pub fn new(key: PeerKey, seed: u64) -> App {
        App {
            key,
            rng: StdRng::seed_from_u64(seed),
            conns: Vec::new(),
            backlog: BTreeMap::new(),
            generators: Vec::new(),
            out: Vec::new(),
            sent: BTreeMap::new(),
            received: BTreeMap::new(),
            verdicts: Vec::new(),
            failed: 0,
        }
    }

    /// Send a numbered message to `peer` every `interval` from `start` until `until`.
    pub fn send_every(
        &mut self,
        peer: PeerKey,
        interval: Duration,
        start: Duration,
        until: Duration,
    ) {
        self.generators.push(Generator {
            peer,
            interval,
            next: start,
            until,
            count: 0,
        });
    }

    /// True if a connection to `peer` is up.
    pub fn is_up(&self, peer: &PeerKey) -> bool {
        self.conns.iter().any(|c| c.peer == *peer && c.up)
    }

    fn datagram(&self, kind: u8, id: u64, extra: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER + extra.len());
        b.push(kind);
        b.extend_from_slice(&self.key);
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(extra);
        b
    }

    fn emit(&mut self, peer: PeerKey, kind: u8, id: u64, extra: &[u8]) {
        let d = self.datagram(kind, id, extra);
        self.out.push((peer, d));
    }

    /// Datagrams to send: (peer, bytes).
    pub fn take_out(&mut self) -> Vec<(PeerKey, Vec<u8>)> {
        std::mem::take(&mut self.out)
    }

    /// The session said to open the connection to `peer`.
    pub fn open(&mut self, at: Duration, _now: Instant, peer: PeerKey) {
        if self.conns.iter().any(|c| c.peer == peer && c.opened_by_us) {
            return;
        }
        let id = self.rng.random();
        self.conns.push(Conn {
            peer,
            id,
            opened_by_us: true,
            up: false,
            opened_at: at,
            next_hello: at + RTO,
            base: 0,
            unacked: VecDeque::new(),
            pending: VecDeque::new(),
            rto_at: None,
            expected: 0,
            early: BTreeMap::new(),
        });
        self.emit(peer, HELLO, id, &[]);
    }

    fn find(&self, peer: &PeerKey, id: u64) -> Option<usize> {
        self.conns
            .iter()
            .position(|c| c.peer == *peer && c.id == id)
    }

    /// An app datagram arrived (`via` the relay or straight from the peer).
    pub fn receive(
        &mut self,
        at: Duration,
        now: Instant,
        via: PathKind,
        d: &[u8],
        session: &mut Session,
    ) {
        let (Some(&kind), Some(peer), Some(id)) = (d.first(), sender(d), u64_at(d, 33)) else {
            return;
        };
        let found = self.find(&peer, id);
        match (kind, found) {
            (HELLO, Some(i)) if self.conns[i].up && !self.conns[i].opened_by_us => {
                self.emit(peer, HELLO_ACK, id, &[]);
            }
            (HELLO, Some(_)) => {}
            (HELLO, None) => {
                let verdict = session.connection_up(now, peer, false);
                self.verdicts.push((at, peer, false, verdict));
                match verdict {
                    Verdict::Keep => {
                        self.conns.push(Conn {
                            peer,
                            id,
                            opened_by_us: false,
                            up: true,
                            opened_at: at,
                            next_hello: at,
                            base: 0,
                            unacked: VecDeque::new(),
                            pending: VecDeque::new(),
                            rto_at: None,
                            expected: 0,
                            early: BTreeMap::new(),
                        });
                        self.emit(peer, HELLO_ACK, id, &[]);
                        let i = self.conns.len() - 1;
                        self.attach_backlog(at, i);
                    }
                    Verdict::Duplicate => self.emit(peer, CLOSE, id, &[]),
                    // Not introduced (yet): drop it; the opener retransmits.
                    Verdict::NotIntroduced => {}
                }
            }
            (HELLO_ACK | DATA | ACK, Some(i)) => {
                if !self.conns[i].up && !self.establish(at, now, i, session) {
                    return;
                }
                let Some(i) = self.find(&peer, id) else {
                    return;
                };
                match kind {
                    DATA => self.on_data(at, via, i, d),
                    ACK => {
                        if let Some(n) = u64_at(d, HEADER) {
                            self.on_ack(at, i, n);
                        }
                    }
                    _ => {}
                }
            }
            (CLOSE, Some(i)) => {
                let c = self.conns.remove(i);
                if c.up {
                    session.connection_closed(now, peer);
                }
            }
            _ => {}
        }
    }

    /// Our opened connection `i` got its answer: ask the session whether to keep it.
    fn establish(&mut self, at: Duration, now: Instant, i: usize, session: &mut Session) -> bool {
        let (peer, id) = (self.conns[i].peer, self.conns[i].id);
        let verdict = session.connection_up(now, peer, true);
        self.verdicts.push((at, peer, true, verdict));
        if verdict == Verdict::Keep {
            self.conns[i].up = true;
            self.attach_backlog(at, i);
            return true;
        }
        self.conns.remove(i);
        self.emit(peer, CLOSE, id, &[]);
        false
    }

    fn attach_backlog(&mut self, at: Duration, i: usize) {
        let peer = self.conns[i].peer;
        if let Some(q) = self.backlog.remove(&peer) {
            self.conns[i].pending.extend(q);
        }
        self.fill(at, i);
    }

    /// Send pending messages while the window has room.
    fn fill(&mut self, at: Duration, i: usize) {
        while self.conns[i].unacked.len() < WINDOW {
            let c = &mut self.conns[i];
            let Some(msg) = c.pending.pop_front() else {
                break;
            };
            let seq = c.base + c.unacked.len() as u64;
            c.unacked.push_back(msg.clone());
            c.rto_at.get_or_insert(at + RTO);
            let (peer, id) = (c.peer, c.id);
            self.send_data(peer, id, seq, &msg);
        }
    }

    fn send_data(&mut self, peer: PeerKey, id: u64, seq: u64, msg: &[u8]) {
        let mut extra = seq.to_be_bytes().to_vec();
        extra.extend_from_slice(msg);
        self.emit(peer, DATA, id, &extra);
    }

    fn on_data(&mut self, at: Duration, via: PathKind, i: usize, d: &[u8]) {
        let Some(seq) = u64_at(d, HEADER) else {
            return;
        };
        let c = &mut self.conns[i];
        if seq > c.expected && seq < c.expected + 2 * WINDOW as u64 {
            c.early.insert(seq, (d[HEADER + 8..].to_vec(), via));
        } else if seq == c.expected {
            let mut next = Some((d[HEADER + 8..].to_vec(), via));
            while let Some((msg, via)) = next {
                c.expected += 1;
                if let Some(id) = u64_at(&msg, 0) {
                    let r = Received { id, at, via };
                    self.received.entry(c.peer).or_default().push(r);
                }
                next = c.early.remove(&c.expected);
            }
        }
        let (peer, id, next) = (c.peer, c.id, c.expected);
        self.emit(peer, ACK, id, &next.to_be_bytes());
    }

    fn on_ack(&mut self, at: Duration, i: usize, next: u64) {
        let c = &mut self.conns[i];
        if next <= c.base || next > c.base + c.unacked.len() as u64 {
            return;
        }
        let acked = (next - c.base) as usize;
        c.unacked.drain(..acked);
        c.base = next;
        c.rto_at = (!c.unacked.is_empty()).then_some(at + RTO);
        self.fill(at, i);
    }

    /// Queue a message to `peer`: on its connection if one is up, else until one is.
    fn send_msg(&mut self, at: Duration, peer: PeerKey, msg: Vec<u8>) {
        match self.conns.iter().position(|c| c.peer == peer && c.up) {
            Some(i) => {
                self.conns[i].pending.push_back(msg);
                self.fill(at, i);
            }
            None => self.backlog.entry(peer).or_default().push_back(msg),
        }
    }

    /// When [`App::wake`] should run next.
    pub fn next_wake(&self) -> Option<Duration> {
        let gens = self
            .generators
            .iter()
            .filter(|g| g.next <= g.until)
            .map(|g| g.next);
        let conns = self.conns.iter().filter_map(|c| {
            if c.up {
                c.rto_at
            } else if c.opened_by_us {
                Some(c.next_hello.min(c.opened_at + HANDSHAKE_TIMEOUT))
            } else {
                None
            }
        });
        gens.chain(conns).min()
    }

    /// Timers: new messages, handshake and data retransmissions, handshake timeouts.
    pub fn wake(&mut self, at: Duration, now: Instant, session: &mut Session) {
        for g in 0..self.generators.len() {
            while self.generators[g].next <= at
                && self.generators[g].next <= self.generators[g].until
            {
                let gen = &mut self.generators[g];
                let (peer, id) = (gen.peer, gen.count);
                gen.count += 1;
                gen.next += gen.interval;
                self.sent.entry(peer).or_default().push(SentMsg { id, at });
                let mut msg = id.to_be_bytes().to_vec();
                msg.extend_from_slice(&[0u8; 16]);
                self.send_msg(at, peer, msg);
            }
        }
        let mut i = 0;
        while i < self.conns.len() {
            let c = &mut self.conns[i];
            if !c.up && c.opened_by_us {
                if at >= c.opened_at + HANDSHAKE_TIMEOUT {
                    let peer = c.peer;
                    self.conns.remove(i);
                    self.failed += 1;
                    session.connection_failed(now, peer, "handshake timed out".into());
                    continue;
                }
                if at >= c.next_hello {
                    c.next_hello = at + RTO;
                    let (peer, id) = (c.peer, c.id);
                    self.emit(peer, HELLO, id, &[]);
                }
            } else if c.up && c.rto_at.is_some_and(|t| at >= t) {
                // Go back N: everything unacknowledged again.
                c.rto_at = Some(at + RTO);
                let (peer, id, base) = (c.peer, c.id, c.base);
                let again: Vec<Vec<u8>> = c.unacked.iter().cloned().collect();
                for (k, msg) in again.iter().enumerate() {
                    self.send_data(peer, id, base + k as u64, msg);
                }
            }
            i += 1;
        }
    }
}

/// The messages of one direction: what was sent when, what arrived when and how.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Sent, in order.
    pub sent: Vec<SentMsg>,
    /// Delivered, in order.
    pub received: Vec<Received>,
}

impl Flow {
    pub(super) fn new(from: &App, to_key: PeerKey, to: &App, from_key: PeerKey) -> Flow {
        Flow {
            sent: from.sent.get(&to_key).cloned().unwrap_or_default(),
            received: to.received.get(&from_key).cloned().unwrap_or_default(),
        }
    }

    /// Every message sent arrived, exactly once and in order; `Err` says what broke.
    pub fn check_complete(&self) -> Result<(), String> {
        if self.sent.is_empty() {
            return Err("nothing was sent".into());
        }
        for (k, r) in self.received.iter().enumerate() {
            if r.id != k as u64 {
                return Err(format!("delivery {k} carried message {} ({r:?})", r.id));
            }
        }
        if self.received.len() != self.sent.len() {
            return Err(format!(
                "{} of {} messages delivered; the first missing was sent at {:?}",
                self.received.len(),
                self.sent.len(),
                self.sent.get(self.received.len()).map(|s| s.at)
            ));
        }
        Ok(())
    }

    /// The longest wait of a message for delivery counted from `t` (or from when it was
    /// sent, if later), over the messages delivered from `t` on: how long the stream stood
    /// still after `t`.
    pub fn stall_after(&self, t: Duration) -> Duration {
        self.sent
            .iter()
            .zip(&self.received)
            .filter(|(_, r)| r.at >= t)
            .map(|(s, r)| r.at - s.at.max(t))
            .max()
            .unwrap_or_default()
    }

    /// The earliest time from `t` on after which every message arrived straight from the
    /// peer (and one did): when the direct path was back for good.
    pub fn direct_from(&self, t: Duration) -> Option<Duration> {
        let after: Vec<&Received> = self.received.iter().filter(|r| r.at >= t).collect();
        let last_relayed = after.iter().rposition(|r| r.via != PathKind::Direct);
        let first_direct = match last_relayed {
            Some(k) => after.get(k + 1)?,
            None => after.first()?,
        };
        Some(first_direct.at.max(t))
    }

    /// Deliveries that arrived through the relay.
    pub fn relayed(&self) -> usize {
        self.received
            .iter()
            .filter(|r| r.via == PathKind::Relay)
            .count()
    }
}

/// Minimum, median and maximum of some durations, for the lines the tests print.
pub fn spread(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    format!(
        "min {} / median {} / max {}",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    )
}
