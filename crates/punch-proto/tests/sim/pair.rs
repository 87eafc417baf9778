//! The two-peer scenarios of the `agent_*` tests, on real sessions and the real server.
//!
//! Owns scenarios, their outcomes and tallies of repeated runs. Two hosts, `a` (host 0)
//! and `b` (host 1), start their sessions at time zero with `RelayMode::Never` and the
//! scenario's punching schedule, and register (lossless, as loss is not what these
//! scenarios are about); at [`INTRODUCED_AT`] `b` connects to `a`; the run ends when both
//! sides have a punching result or at the limit, and each chosen path is then checked to
//! carry a datagram. A side's punching result is read from its session's events: its
//! first direct [`Route`] is the agent's `Selected` (candidate and round trip from the
//! route's path) and [`ClientEvent::DirectFailed`] is `Failed(Deadline)`. Skew between the
//! two introductions is an extra delay on everything the server sends to the later side.
//! The connection itself is never opened: these scenarios are about punching.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use punch_proto::agent::{CandidateKind, Event, FailReason, PunchConfig};
use punch_proto::client::{Event as ClientEvent, RelayMode, Route};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{
    Delivery, HostConfig, HostId, NatType, NetStats, Sim, SiteConfig, INTRODUCED_AT, MAX_SKEW,
};

/// Where the two peers live.
#[derive(Debug, Clone)]
pub enum Topology {
    /// Each peer on its own site.
    TwoSites(SiteConfig, SiteConfig),
    /// Both peers on one LAN behind one NAT.
    SameSite(SiteConfig),
}

/// One run of two peers introduced to each other.
#[derive(Debug, Clone)]
pub struct PairScenario {
    /// Seed of the network's randomness.
    pub seed: u64,
    /// Where the peers are.
    pub topology: Topology,
    /// Local ports of peer A and peer B.
    pub ports: (u16, u16),
    /// Extra delay of everything the server sends to each side: the later side's
    /// introduction arrives that much later.
    pub start: (Duration, Duration),
    /// Each side's punching schedule.
    pub cfg: (PunchConfig, PunchConfig),
    /// Stop this long after [`INTRODUCED_AT`] even if a side has not reported.
    pub limit: Duration,
    /// The peers' acknowledgements of their introductions reach the server, so it relays
    /// the ready signal (`false`: every `IntroduceAck` is dropped as it leaves).
    pub ready_signal: bool,
    /// Each side's first opening probe to each candidate is lost on its LAN, before its NAT.
    pub lose_opening: (bool, bool),
}

impl PairScenario {
    /// No skew, the default schedule, the ready signal relayed, a limit past the deadline.
    pub fn new(topology: Topology, seed: u64) -> PairScenario {
        PairScenario {
            seed,
            topology,
            ports: (5000, 5000),
            start: (Duration::ZERO, Duration::ZERO),
            cfg: (PunchConfig::default(), PunchConfig::default()),
            limit: Duration::ZERO,
            ready_signal: true,
            lose_opening: (false, false),
        }
        .with_config(PunchConfig::default())
    }

    /// Both sides use `cfg`; the limit follows its deadline.
    pub fn with_config(mut self, cfg: PunchConfig) -> PairScenario {
        self.limit = cfg.deadline + Duration::from_secs(2);
        self.cfg = (cfg.clone(), cfg);
        self
    }
}

/// What one side's punching did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// Its first event, and when (since [`INTRODUCED_AT`]).
    pub event: Option<(Event, Duration)>,
    /// Events it reported in all (must be at most one).
    pub events: usize,
    /// When its introduction arrived (since [`INTRODUCED_AT`]).
    pub started: Duration,
    /// Its socket address.
    pub local: SocketAddr,
    /// Its public address as the server saw it.
    pub public: Option<SocketAddr>,
    /// Datagrams the host sent (registration, requests, probes and answers).
    pub sent: usize,
    /// After the run: a datagram to the selected address reached the peer.
    pub path_works: bool,
}

impl Side {
    /// The selected address and kind, if it selected one.
    pub fn selected(&self) -> Option<(SocketAddr, CandidateKind)> {
        match &self.event {
            Some((Event::Selected { addr, kind, .. }, _)) => Some((*addr, *kind)),
            _ => None,
        }
    }
}

/// The result of [`run_pair`].
#[derive(Debug, Clone)]
pub struct PairOutcome {
    /// Peer A (host 0).
    pub a: Side,
    /// Peer B (host 1).
    pub b: Side,
    /// Datagrams both hosts sent.
    pub packets_sent: usize,
    /// Network counters.
    pub stats: NetStats,
    /// Every delivery.
    pub log: Vec<Delivery>,
}

impl PairOutcome {
    /// Both sides selected a path, and each path carries a datagram to the peer.
    pub fn connected(&self) -> bool {
        let selected = self.a.selected().is_some() && self.b.selected().is_some();
        selected && self.a.path_works && self.b.path_works
    }

    /// From the first introduction until both sides had selected.
    pub fn connect_time(&self) -> Option<Duration> {
        let first = self.a.started.min(self.b.started);
        match (&self.a.event, &self.b.event) {
            (Some((Event::Selected { .. }, ta)), Some((Event::Selected { .. }, tb))) => {
                Some((*ta).max(*tb) - first)
            }
            _ => None,
        }
    }
}

/// A side's punching results as agent events, with their times: each direct route is a
/// `Selected`, each `DirectFailed` a `Failed(Deadline)`.
fn punching_results(events: &[(Duration, ClientEvent)]) -> Vec<(Event, Duration)> {
    events
        .iter()
        .filter_map(|(at, ev)| match ev {
            ClientEvent::Route {
                route: Route::Direct(addr),
                path,
                ..
            } => {
                let path = path.expect("a direct route has a path");
                let kind = path.candidate.expect("a direct path has a candidate");
                let rtt = path.rtt;
                Some((
                    Event::Selected {
                        addr: *addr,
                        kind,
                        rtt,
                    },
                    *at,
                ))
            }
            ClientEvent::DirectFailed { .. } => Some((Event::Failed(FailReason::Deadline), *at)),
            _ => None,
        })
        .collect()
}

/// Run two peers introduced to each other until both have a punching result or the
/// limit passes.
pub fn run_pair(sc: &PairScenario) -> PairOutcome {
    let mut sim = Sim::new(sc.seed);
    let host = |name: &str, punch: &PunchConfig, delay: Duration, lose: bool| HostConfig {
        relay: RelayMode::Never,
        punch: punch.clone(),
        server_delay: delay,
        drop_intro_acks: !sc.ready_signal,
        lose_opening: lose,
        open_connections: false,
        ..HostConfig::new(name)
    };
    let ca = host("a", &sc.cfg.0, sc.start.0, sc.lose_opening.0);
    let cb = host("b", &sc.cfg.1, sc.start.1, sc.lose_opening.1);
    let (ha, hb) = match &sc.topology {
        Topology::TwoSites(a, b) => {
            let sa = sim.add_site(a.clone());
            let sb = sim.add_site(b.clone());
            (
                sim.add_host(sa, sc.ports.0, ca),
                sim.add_host(sb, sc.ports.1, cb),
            )
        }
        Topology::SameSite(s) => {
            let site = sim.add_site(s.clone());
            (
                sim.add_host(site, sc.ports.0, ca),
                sim.add_host(site, sc.ports.1, cb),
            )
        }
    };
    sim.lossless(|sim| sim.run_until(INTRODUCED_AT));
    sim.connect(hb, "a");
    let done = |s: &Sim| {
        [ha, hb]
            .iter()
            .all(|&h| !punching_results(&s.host(h).events).is_empty())
    };
    sim.run(INTRODUCED_AT + sc.limit, done);
    let packets_sent = sim.host(ha).sent + sim.host(hb).sent;
    let stats = sim.stats.clone();
    let mut side = |h: HostId, peer: HostId| {
        let results = punching_results(&sim.host(h).events);
        let event = results
            .first()
            .map(|(e, at)| (e.clone(), *at - INTRODUCED_AT));
        let path_works = match &event {
            Some((Event::Selected { addr, .. }, _)) => sim.path_works(h, peer, *addr),
            _ => false,
        };
        let host = sim.host(h);
        Side {
            event,
            events: results.len(),
            started: host.started.map_or(Duration::MAX, |t| t - INTRODUCED_AT),
            local: sim.local_addr(h),
            public: host.session.public_addr(),
            sent: host.sent,
            path_works,
        }
    };
    let a = side(ha, hb);
    let b = side(hb, ha);
    PairOutcome {
        a,
        b,
        packets_sent,
        stats,
        log: sim.log,
    }
}

/// A two-site scenario with random small latencies (WAN 1-15 ms, LAN 0.1-1 ms per site)
/// and a random skew up to [`MAX_SKEW`] between the introductions, either way round
/// (on top of the difference of the two sides' latencies to the server).
pub fn random_pair(a: NatType, b: NatType, seed: u64) -> PairScenario {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5ca1_ab1e_0000_0000);
    let mut site = |nat| SiteConfig {
        wan_latency: Duration::from_micros(rng.random_range(1_000..=15_000)),
        lan_latency: Duration::from_micros(rng.random_range(100..=1_000)),
        ..SiteConfig::new(nat)
    };
    let (sa, sb) = (site(a), site(b));
    let skew = Duration::from_micros(rng.random_range(0..=MAX_SKEW.as_micros() as u64));
    let start = if rng.random_bool(0.5) {
        (Duration::ZERO, skew)
    } else {
        (skew, Duration::ZERO)
    };
    PairScenario {
        start,
        ..PairScenario::new(Topology::TwoSites(sa, sb), seed)
    }
}

/// Success rate and connect times over repeated runs.
#[derive(Debug, Clone)]
pub struct Tally {
    /// What was run.
    pub label: String,
    /// Runs.
    pub runs: usize,
    /// Runs where both sides selected a working path.
    pub connected: usize,
    /// Connect times of those runs.
    pub times: Vec<Duration>,
    /// Datagrams both hosts sent, per run.
    pub packets: Vec<usize>,
}

impl Tally {
    /// An empty tally.
    pub fn new(label: impl Into<String>) -> Tally {
        Tally {
            label: label.into(),
            runs: 0,
            connected: 0,
            times: Vec::new(),
            packets: Vec::new(),
        }
    }

    /// Count one run.
    pub fn add(&mut self, o: &PairOutcome) {
        self.runs += 1;
        self.packets.push(o.packets_sent);
        if o.connected() {
            self.connected += 1;
            self.times.extend(o.connect_time());
        }
    }

    /// Share of runs that connected, in percent.
    pub fn rate(&self) -> f64 {
        100.0 * self.connected as f64 / self.runs.max(1) as f64
    }

    /// Median connect time of the connected runs.
    pub fn median(&self) -> Option<Duration> {
        let mut t = self.times.clone();
        t.sort();
        t.get(t.len() / 2).copied()
    }

    /// Slowest connect time of the connected runs.
    pub fn max(&self) -> Option<Duration> {
        self.times.iter().max().copied()
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Option<Duration>| {
            d.map_or("-".to_string(), |d| {
                format!("{:.1} ms", d.as_secs_f64() * 1e3)
            })
        };
        let mut p = self.packets.clone();
        p.sort();
        write!(
            f,
            "{:<40} {:>3}/{:<3} ({:>5.1}%)  median {:>9}  max {:>9}  median packets {}",
            self.label,
            self.connected,
            self.runs,
            self.rate(),
            ms(self.median()),
            ms(self.max()),
            p.get(p.len() / 2).copied().unwrap_or(0)
        )
    }
}
