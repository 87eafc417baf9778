//! The client-side discovery state machine: which test runs when, retransmissions, matching
//! answers to tests. The order of the tests and why is in the [module doc](crate::nat);
//! verdicts come from `classify.rs`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::classify::{self, Inputs};
use super::report::{LocalSocket, NatReport, Observation, Outcome, Test};
use crate::stun::responder::canonical;
use crate::stun::{Attribute, ChangeRequest, Class, Message, Method, TransactionId};

/// Interval between retransmissions of a test's request, constant (no backoff).
///
/// RFC 8489 §6.2.1 starts at 500 ms and doubles, which would make a test that expects
/// silence (filtering II/III, hairpin) wait tens of seconds. Discovery sends a handful of
/// tiny requests once, so a constant 200 ms is both kind to the network and fast; answers to
/// any earlier transmission still count until the test gives up, so paths with a round trip
/// up to about `DEFAULT_MAX_TRANSMITS × DEFAULT_RTO` (1.4 s) still work.
pub const DEFAULT_RTO: Duration = Duration::from_millis(200);

/// Transmissions per test before it counts as unanswered: RFC 8489 §6.2.1's default Rc.
///
/// A test gives up one [`DEFAULT_RTO`] after its last transmission, 1.4 s after its first.
/// Seven rather than four because silence is a verdict here: with 30 % loss each way a
/// round trip fails with probability 0.51, so four tries would turn a full cone into a
/// restricted one in 0.51⁴ ≈ 7 % of runs, seven in 0.51⁷ ≈ 0.9 %. The budget doubles
/// where the run has shown that silence means loss (see [`Discovery`]).
pub const DEFAULT_MAX_TRANSMITS: u32 = 7;

/// Stagger between the first transmissions of tests started together, so that their
/// retransmissions do not go out in lockstep (RFC 5780 §5 asks for paced transactions and
/// unsynchronised RTOs). A whole run starts at most eight transactions over at least 1.4 s,
/// within RFC 5780 §5's ten new transactions per second.
pub const DEFAULT_PACING: Duration = Duration::from_millis(25);

/// Which STUN dialect the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// RFC 8489 requests with the magic cookie and FINGERPRINT. RFC 3489 servers (stund)
    /// answer these too; their CHANGED-ADDRESS / SOURCE-ADDRESS / MAPPED-ADDRESS are read.
    #[default]
    Modern,
    /// RFC 3489 requests: a 128-bit transaction id without cookie, no FINGERPRINT.
    Classic,
}

/// Tunables and the local addresses of the two sockets.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Local address of the [`LocalSocket::Mapping`] socket. For a wildcard bind pass the
    /// host's actual source IP toward the server (`0.0.0.0` makes "no NAT" undetectable).
    pub mapping_local: SocketAddr,
    /// Local address of the [`LocalSocket::Filtering`] socket; same rule.
    pub filtering_local: SocketAddr,
    /// Retransmission interval, see [`DEFAULT_RTO`].
    pub rto: Duration,
    /// Transmissions per test, see [`DEFAULT_MAX_TRANSMITS`] (at least 1).
    pub max_transmits: u32,
    /// Stagger between tests started together, see [`DEFAULT_PACING`].
    pub pacing: Duration,
    /// Requests in RFC 8489 or RFC 3489 form.
    pub dialect: Dialect,
    /// Run the hairpinning test (RFC 5780 §3.4).
    pub hairpin: bool,
}

impl DiscoveryConfig {
    /// The defaults for the two sockets' local addresses.
    pub fn new(mapping_local: SocketAddr, filtering_local: SocketAddr) -> Self {
        DiscoveryConfig {
            mapping_local,
            filtering_local,
            rto: DEFAULT_RTO,
            max_transmits: DEFAULT_MAX_TRANSMITS,
            pacing: DEFAULT_PACING,
            dialect: Dialect::Modern,
            hairpin: true,
        }
    }
}

/// A datagram discovery wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local socket to send from.
    pub socket: LocalSocket,
    /// Destination.
    pub dest: SocketAddr,
    /// The encoded STUN request.
    pub payload: Vec<u8>,
}

/// Stages of a run; each waits for all of its tests to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Test I on both sockets, to the primary address only.
    Initial,
    /// Filtering tests II and III, and the hairpin probes.
    Filtering,
    /// Mapping test II, the first packet toward the alternate address.
    MappingII,
    /// Mapping test III.
    MappingIII,
    /// Report ready.
    Done,
}

/// Who is expected to see a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The STUN server, which answers.
    Server,
    /// Our own other socket, through the NAT's hairpin.
    Hairpin(LocalSocket),
}

/// One test in flight or finished.
#[derive(Debug)]
struct Tx {
    obs: Observation,
    tid: TransactionId,
    payload: Vec<u8>,
    target: Target,
    phase: Phase,
    /// Transmissions allowed so far.
    budget: u32,
    /// Whether the budget was already extended (tests that expect an answer).
    extended: bool,
    /// First transmission, for the loss estimate.
    first_sent: Option<Instant>,
    /// Next transmission, or the give-up time after the last one.
    next_at: Instant,
    done: bool,
}

impl Tx {
    /// Whether silence is an expected, meaningful result of this test.
    fn silence_is_verdict(&self) -> bool {
        matches!(
            self.obs.test,
            Test::FilteringII | Test::FilteringIII | Test::Hairpin
        )
    }
}

/// RFC 5780 NAT behaviour discovery against one server, sans-IO.
///
/// After [`Discovery::new`] and after every [`Discovery::handle_datagram`] or
/// [`Discovery::handle_timeout`], drain [`Discovery::poll_transmit`] and arm a timer for
/// [`Discovery::poll_timeout`]; [`Discovery::result`] is `Some` once the run is over.
///
/// # Retransmission budgets
/// Every test starts with [`DiscoveryConfig::max_transmits`] transmissions. Two kinds of
/// test then differ, because loss must not pass for a verdict:
/// - Tests that **expect an answer** (test I of each socket, mapping tests II and III): once
///   the server has answered anything, silence is loss, not a verdict, so a test that runs
///   out gets the budget once more. Without any answer test I stops at the first budget:
///   that silence is `blocked`.
/// - Tests where **silence is the verdict** (filtering II and III, hairpin) get a double
///   budget from the start when an earlier answer showed loss: it came later than the
///   fastest first-try answer plus half an RTO, i.e. only a retransmission got through (with
///   no first-try answer to compare, any retransmitted answer counts; a path slower than the
///   RTO then just takes longer).
///
/// A run therefore takes about 1.5 s on a clean path and at most four phases of two budgets,
/// under 12 s with the defaults, however much is lost.
#[derive(Debug)]
pub struct Discovery {
    cfg: DiscoveryConfig,
    server: SocketAddr,
    rng: StdRng,
    start: Instant,
    phase: Phase,
    txs: Vec<Tx>,
    queue: VecDeque<Transmit>,
    other: Option<SocketAddr>,
    notes: Vec<String>,
    report: Option<NatReport>,
    /// The server has answered something: it is reachable.
    server_answered: bool,
    /// Fastest answer to a first transmission.
    rtt_min: Option<Duration>,
    /// An answer showed that a transmission was lost.
    loss_seen: bool,
}

impl Discovery {
    /// Starts discovery against `server` (its primary address); transaction ids come from a
    /// generator seeded with `rng_seed` (pass a random seed in production).
    pub fn new(cfg: DiscoveryConfig, server: SocketAddr, now: Instant, rng_seed: u64) -> Self {
        let mut d = Discovery {
            cfg,
            server,
            rng: StdRng::seed_from_u64(rng_seed),
            start: now,
            phase: Phase::Initial,
            txs: Vec::new(),
            queue: VecDeque::new(),
            other: None,
            notes: Vec::new(),
            report: None,
            server_answered: false,
            rtt_min: None,
            loss_seen: false,
        };
        d.cfg.max_transmits = d.cfg.max_transmits.max(1);
        let none = ChangeRequest::default();
        d.start_test(now, 0, Test::MappingI, LocalSocket::Mapping, server, none);
        d.start_test(
            now,
            1,
            Test::FilteringI,
            LocalSocket::Filtering,
            server,
            none,
        );
        d.drive(now);
        d
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    /// When [`Discovery::handle_timeout`] wants to be called; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.report.is_some() {
            return None;
        }
        self.txs.iter().filter(|t| !t.done).map(|t| t.next_at).min()
    }

    /// Retransmits, gives up on silent tests, and moves on to the next tests.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.report.is_none() {
            self.drive(now);
        }
    }

    /// A datagram `socket` received from `from`. Anything that is not an answer to one of
    /// our tests (or one of our hairpin probes) is ignored.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        socket: LocalSocket,
        from: SocketAddr,
        data: &[u8],
    ) {
        if self.report.is_some() {
            return;
        }
        let Ok(msg) = Message::decode(data) else {
            return;
        };
        if msg.method != Method::BINDING {
            return;
        }
        let tid = msg.transaction_id;
        match msg.class {
            Class::Request => {
                let hit = self
                    .txs
                    .iter_mut()
                    .find(|t| !t.done && t.target == Target::Hairpin(socket) && t.tid == tid);
                let Some(tx) = hit else {
                    return;
                };
                tx.done = true;
                tx.obs.outcome = Outcome::Answered;
                tx.obs.response_from = Some(from);
                // One probe through the hairpin answers the question.
                self.cancel(|t| t.target != Target::Server);
            }
            Class::SuccessResponse | Class::ErrorResponse => {
                let hit = self.txs.iter_mut().find(|t| {
                    !t.done && t.target == Target::Server && t.tid == tid && t.obs.socket == socket
                });
                let Some(tx) = hit else {
                    return;
                };
                tx.done = true;
                tx.obs.response_from = Some(from);
                let elapsed = tx.first_sent.map(|t| now.saturating_duration_since(t));
                let first_try = tx.obs.transmits == 1;
                self.server_answered = true;
                if let Some(elapsed) = elapsed {
                    if first_try {
                        self.rtt_min = Some(self.rtt_min.map_or(elapsed, |m| m.min(elapsed)));
                    } else if elapsed > self.rtt_min.unwrap_or_default() + self.cfg.rto / 2 {
                        self.loss_seen = true;
                    }
                }
                if msg.class == Class::ErrorResponse {
                    tx.obs.outcome = Outcome::Error;
                    tx.obs.error_code = msg.attributes.iter().find_map(|a| match a {
                        Attribute::ErrorCode(e) => Some(e.code()),
                        _ => None,
                    });
                } else {
                    record_success(&mut tx.obs, &msg);
                    let test = tx.obs.test;
                    if let Some(note) = alg_note(&msg) {
                        if !self.notes.contains(&note) {
                            self.notes.push(note);
                        }
                    }
                    // RFC 5780 §4.4: an answer to test II decides; test III is moot.
                    if test == Test::FilteringII && classify::from_changed(&tx.obs) {
                        self.cancel(|t| t.obs.test == Test::FilteringIII);
                    }
                }
            }
            Class::Indication => return,
        }
        self.drive(now);
    }

    /// The report, once discovery is over.
    pub fn result(&self) -> Option<&NatReport> {
        self.report.as_ref()
    }

    /// The tests started so far, finished or not (for progress display).
    pub fn observations(&self) -> impl Iterator<Item = &Observation> + '_ {
        self.txs.iter().map(|t| &t.obs)
    }

    /// Starts a test: its first transmission goes out `slot` pacing intervals from `now`.
    fn start_test(
        &mut self,
        now: Instant,
        slot: u32,
        test: Test,
        socket: LocalSocket,
        dest: SocketAddr,
        change: ChangeRequest,
    ) {
        let target = match test {
            Test::Hairpin => Target::Hairpin(socket.other()),
            _ => Target::Server,
        };
        let (tid, fingerprint) = match self.cfg.dialect {
            Dialect::Modern => (TransactionId::random(&mut self.rng), true),
            Dialect::Classic => (TransactionId::random_classic(&mut self.rng), false),
        };
        let mut msg = Message::binding_request(tid);
        msg.fingerprint = fingerprint;
        if change.change_ip || change.change_port {
            msg.attributes.push(Attribute::ChangeRequest(change));
        }
        // Cannot fail: one small attribute at most.
        let Ok(payload) = msg.encode() else {
            return;
        };
        let local = match socket {
            LocalSocket::Mapping => self.cfg.mapping_local,
            LocalSocket::Filtering => self.cfg.filtering_local,
        };
        self.txs.push(Tx {
            obs: Observation {
                test,
                socket,
                local,
                dest,
                change_ip: change.change_ip,
                change_port: change.change_port,
                transmits: 0,
                outcome: Outcome::NoAnswer,
                mapped: None,
                response_from: None,
                response_origin: None,
                other_address: None,
                error_code: None,
            },
            tid,
            payload,
            target,
            phase: self.phase,
            budget: self.cfg.max_transmits,
            extended: false,
            first_sent: None,
            next_at: now + self.cfg.pacing * slot,
            done: false,
        });
        if let Some(t) = self.txs.last_mut() {
            if self.loss_seen && t.silence_is_verdict() {
                t.budget = self.cfg.max_transmits.saturating_mul(2);
            }
        }
    }

    /// Ends the tests `which` selects that are still running.
    fn cancel(&mut self, which: impl Fn(&Tx) -> bool) {
        for t in self.txs.iter_mut().filter(|t| !t.done && which(t)) {
            t.done = true;
            t.obs.outcome = Outcome::Cancelled;
        }
    }

    /// Sends what is due, gives up on exhausted tests, and advances phases until nothing
    /// changes.
    fn drive(&mut self, now: Instant) {
        loop {
            for t in self.txs.iter_mut().filter(|t| !t.done && t.next_at <= now) {
                if t.obs.transmits >= t.budget
                    && self.server_answered
                    && !t.extended
                    && !t.silence_is_verdict()
                {
                    t.budget = t.budget.saturating_add(self.cfg.max_transmits);
                    t.extended = true;
                }
                if t.obs.transmits < t.budget {
                    t.first_sent.get_or_insert(now);
                    t.obs.transmits += 1;
                    t.next_at = now + self.cfg.rto;
                    self.queue.push_back(Transmit {
                        socket: t.obs.socket,
                        dest: t.obs.dest,
                        payload: t.payload.clone(),
                    });
                } else {
                    // Outcome stays NoAnswer.
                    t.done = true;
                }
            }
            if !self.advance(now) {
                break;
            }
        }
    }

    fn snapshot(&self) -> Vec<Observation> {
        self.txs.iter().map(|t| t.obs.clone()).collect()
    }

    /// Starts the next phase once every test of the current one has ended. Returns whether
    /// anything changed (new tests may be due now).
    fn advance(&mut self, now: Instant) -> bool {
        if self.phase == Phase::Done || self.txs.iter().any(|t| t.phase == self.phase && !t.done) {
            return false;
        }
        let obs = self.snapshot();
        let m1 = classify::mapped(&obs, Test::MappingI);
        let f1 = classify::mapped(&obs, Test::FilteringI);
        let none = ChangeRequest::default();
        match self.phase {
            Phase::Initial => {
                if !classify::reachable(&obs) {
                    self.notes.push(format!(
                        "no answer from {} to {} requests from each of two local sockets \
                         within {} ms",
                        self.server,
                        self.cfg.max_transmits,
                        now.saturating_duration_since(self.start).as_millis()
                    ));
                    self.finish(now);
                    return false;
                }
                self.other = self.choose_other(&obs);
                self.phase = Phase::Filtering;
                let server = self.server;
                let mut slot = 0;
                if let (Some(_), Some(_)) = (self.other, f1) {
                    let both = ChangeRequest {
                        change_ip: true,
                        change_port: true,
                    };
                    let port = ChangeRequest {
                        change_ip: false,
                        change_port: true,
                    };
                    let f = LocalSocket::Filtering;
                    self.start_test(now, 0, Test::FilteringII, f, server, both);
                    self.start_test(now, 1, Test::FilteringIII, f, server, port);
                    slot = 2;
                }
                if let (true, Some(m1), Some(f1)) = (self.cfg.hairpin, m1, f1) {
                    let (m, f) = (LocalSocket::Mapping, LocalSocket::Filtering);
                    self.start_test(now, slot, Test::Hairpin, f, m1, none);
                    self.start_test(now, slot + 1, Test::Hairpin, m, f1, none);
                }
                true
            }
            Phase::Filtering => match (self.other, m1, classify::nat_present(&obs)) {
                (Some(other), Some(_), Some(true)) => {
                    self.phase = Phase::MappingII;
                    let dest = SocketAddr::new(other.ip(), self.server.port());
                    let m = LocalSocket::Mapping;
                    self.start_test(now, 0, Test::MappingII, m, dest, none);
                    true
                }
                _ => {
                    self.finish(now);
                    false
                }
            },
            Phase::MappingII => {
                let m2 = classify::mapped(&obs, Test::MappingII);
                match (self.other, m2) {
                    (Some(other), Some(m2)) if Some(m2) != m1 => {
                        self.phase = Phase::MappingIII;
                        let m = LocalSocket::Mapping;
                        self.start_test(now, 0, Test::MappingIII, m, other, none);
                        true
                    }
                    _ => {
                        self.finish(now);
                        false
                    }
                }
            }
            Phase::MappingIII | Phase::Done => {
                self.finish(now);
                false
            }
        }
    }

    /// The server's alternate address from test I's answers (OTHER-ADDRESS or the classic
    /// CHANGED-ADDRESS), if it is one the tests can use.
    fn choose_other(&mut self, obs: &[Observation]) -> Option<SocketAddr> {
        let other = [Test::MappingI, Test::FilteringI]
            .iter()
            .find_map(|&t| classify::find(obs, t)?.other_address);
        let Some(other) = other.map(canonical) else {
            self.notes.push(
                "the server sent no OTHER-ADDRESS or CHANGED-ADDRESS: with a single address it \
                 cannot show mapping and filtering behaviour (RFC 5780 §4.3, §4.4)"
                    .to_owned(),
            );
            return None;
        };
        let server = canonical(self.server);
        let problem = if other.is_ipv4() != server.is_ipv4() {
            Some("is of another IP family")
        } else if other.ip().is_unspecified() {
            Some("is unspecified")
        } else if other.ip() == server.ip() {
            Some("has the primary IP")
        } else if other.port() == server.port() {
            Some("has the primary port")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.notes.push(format!(
                "the server's alternate address {other} {problem}: mapping and filtering \
                 cannot be measured"
            ));
            return None;
        }
        Some(other)
    }

    fn finish(&mut self, now: Instant) {
        self.cancel(|_| true);
        self.phase = Phase::Done;
        self.queue.clear();
        let obs = self.snapshot();
        let elapsed = now.saturating_duration_since(self.start).as_millis();
        self.report = Some(classify::build(Inputs {
            server: self.server,
            other: self.other,
            observations: &obs,
            notes: std::mem::take(&mut self.notes),
            elapsed_ms: u64::try_from(elapsed).unwrap_or(u64::MAX),
        }));
    }
}

/// Fills an observation from a success response, reading the RFC 5780 attributes or, from
/// RFC 3489 servers, their classic equivalents.
fn record_success(obs: &mut Observation, msg: &Message) {
    let addr = |typ: u16| match msg.attribute(typ)? {
        Attribute::ResponseOrigin(x)
        | Attribute::OtherAddress(x)
        | Attribute::SourceAddress(x)
        | Attribute::ChangedAddress(x) => Some(canonical(*x)),
        _ => None,
    };
    obs.outcome = Outcome::Answered;
    obs.mapped = msg.mapped_address().map(canonical);
    obs.response_origin =
        addr(Attribute::RESPONSE_ORIGIN).or_else(|| addr(Attribute::SOURCE_ADDRESS));
    obs.other_address = addr(Attribute::OTHER_ADDRESS).or_else(|| addr(Attribute::CHANGED_ADDRESS));
}

/// RFC 5780 §3.6: MAPPED-ADDRESS and XOR-MAPPED-ADDRESS disagreeing means an ALG rewrote
/// the address inside the packet.
fn alg_note(msg: &Message) -> Option<String> {
    let xor = msg.attributes.iter().find_map(|a| match a {
        Attribute::XorMappedAddress(x) => Some(canonical(*x)),
        _ => None,
    })?;
    let plain = msg.attributes.iter().find_map(|a| match a {
        Attribute::MappedAddress(x) => Some(canonical(*x)),
        _ => None,
    })?;
    (xor != plain).then(|| {
        format!(
            "MAPPED-ADDRESS {plain} differs from XOR-MAPPED-ADDRESS {xor}: an ALG on the path \
             rewrites addresses inside packets (RFC 5780 §3.6)"
        )
    })
}
