//! A deterministic simulated network for the hole-punching agent, in virtual time.
//!
//! Owns: sites (a LAN behind a NAT, or one host with a routed public address), an
//! "internet core" router with the rendezvous server, links with latency, seeded loss and
//! jitter, and the loop that runs [`Agent`]s on hosts, feeding them frames and time as
//! the real socket loop (`crates/punch/src/client.rs`) does. It does not own the agent's
//! logic, the NAT model ([`nat`], Linux conntrack as in the namespace lab), the
//! two-peer driver ([`pair`]) or the helpers for driving an agent by hand ([`agent_io`]).
//!
//! # Topology and hops
//! host -> own router (hop 1) -> core (hop 2) -> peer's router (hop 3) -> peer host. A
//! packet with TTL 2 passes its own NAT, creating the mapping, and dies in the core. Hosts
//! on one LAN reach each other directly (no router, no TTL decrement). Loss and jitter
//! apply per link crossing; the registration and the path checks run lossless.
//!
//! # Rendezvous
//! The server is a minimal stand-in for `punch_proto::rendezvous`: it answers
//! registrations (recording the observed address) and, once both sides of a session sent
//! [`Frame::IntroduceAck`], sends [`Frame::PeerReady`] to both. A host acks its
//! introduction right after its agent's opening probes are out and hands `PeerReady` to
//! its agent if it has one for that session, else drops it (both as `client.rs` does).
//! Introductions are not sent over the network: each side's agent starts at a configured
//! time, which is how skew is modelled; so the server's retransmission of an introduction
//! whose acknowledgement was lost is not modelled either (a lost `IntroduceAck` here costs
//! the peer its ready signal, as a lost `PeerReady` does in reality).
//!
//! # Hairpinning
//! Off by default, as Linux masquerade. When on, it is the NAT loopback of consumer
//! routers (RFC 4787 REQ-9): a LAN packet to the NAT's own public ip:port gets its source
//! masqueraded, then goes to the LAN endpoint owning that public port, whatever the filter.

#![allow(dead_code)]

pub mod agent_io;
pub mod nat;
pub mod pair;

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use punch_proto::agent::{Agent, CandidateKind, Event, PunchConfig, Transmit};
use punch_proto::wire::Frame;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[allow(unused_imports)]
pub use agent_io::{agent_events, drain_agent, Sent};
#[allow(unused_imports)]
pub use nat::{direct_path_exists, NatType};
#[allow(unused_imports)]
pub use pair::{random_pair, run_pair, PairOutcome, PairScenario, Side, Tally, Topology};

use nat::{Out, Router};

/// TTL of a datagram sent without an explicit one (Linux `net.ipv4.ip_default_ttl`).
pub const DEFAULT_TTL: u32 = 64;
/// The rendezvous server, attached to the core.
pub const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 3478);
/// One-way latency between the core and the server.
pub const SERVER_LATENCY: Duration = Duration::from_millis(5);
/// Virtual time at which the server introduces the peers; registration happens before.
pub const INTRODUCED_AT: Duration = Duration::from_secs(1);
/// Largest skew between the two introductions in the randomised scenarios.
pub const MAX_SKEW: Duration = Duration::from_millis(30);

/// Index of a site in a [`Sim`].
pub type SiteId = usize;
/// Index of a host in a [`Sim`].
pub type HostId = usize;

/// One site: its NAT and its links.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// The NAT or router type.
    pub nat: NatType,
    /// One-way latency between the site's router and the core.
    pub wan_latency: Duration,
    /// One-way latency of a LAN hop (host <-> router, host <-> host).
    pub lan_latency: Duration,
    /// Chance that a packet is lost on the WAN link, per packet and direction.
    pub wan_loss: f64,
    /// Extra delay, uniform in `[0, wan_jitter]`, per WAN crossing: reorders packets.
    pub wan_jitter: Duration,
    /// Chance that a packet is lost on a LAN hop.
    pub lan_loss: f64,
    /// Extra delay, uniform in `[0, lan_jitter]`, per LAN hop.
    pub lan_jitter: Duration,
    /// NAT loopback for LAN packets to the NAT's own public address.
    pub hairpin: bool,
}

impl SiteConfig {
    /// A site with 10 ms to the core, 200 us LAN hops, no loss, no jitter, no hairpinning.
    pub fn new(nat: NatType) -> SiteConfig {
        SiteConfig {
            nat,
            wan_latency: Duration::from_millis(10),
            lan_latency: Duration::from_micros(200),
            wan_loss: 0.0,
            wan_jitter: Duration::ZERO,
            lan_loss: 0.0,
            lan_jitter: Duration::ZERO,
            hairpin: false,
        }
    }
}

/// Counters of what happened to packets, to prove a scenario exercised what it claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams hosts sent.
    pub sent: usize,
    /// Datagrams delivered to a host's socket.
    pub delivered: usize,
    /// Dropped by a router because the TTL ran out.
    pub ttl_expired: usize,
    /// Lost on a link.
    pub lost: usize,
    /// Dropped by a firewall filter.
    pub filtered: usize,
    /// Dead conntrack entries created by unsolicited inbound packets at a NAT.
    pub dead_entries: usize,
    /// Inbound packets dropped because they matched a live dead entry.
    pub black_holed: usize,
    /// Outbound connections that lost their preserved port to a dead entry.
    pub race_remaps: usize,
    /// Dropped for lack of a route (e.g. another site's private address).
    pub unroutable: usize,
    /// Packets looped back by a hairpinning NAT.
    pub hairpinned: usize,
    /// Delivered to an address where no socket listens.
    pub no_socket: usize,
    /// Deliveries that overtook a packet sent earlier on the same (source, destination).
    pub reordered: usize,
}

/// A datagram delivered to a host.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Virtual time of delivery.
    pub at: Duration,
    /// Receiving host.
    pub host: HostId,
    /// Source address as the host sees it.
    pub from: SocketAddr,
    /// The decoded frame, if it was one.
    pub frame: Option<Frame>,
    /// The raw payload.
    pub payload: Vec<u8>,
}

/// An event an agent reported, and when.
#[derive(Debug, Clone)]
pub struct Reported {
    /// Virtual time of the report.
    pub at: Duration,
    /// The event.
    pub event: Event,
}

#[derive(Debug, Clone)]
struct Packet {
    src: SocketAddr,
    dst: SocketAddr,
    ttl: u32,
    payload: Vec<u8>,
    /// Send order, to detect reordering.
    id: u64,
}

#[derive(Debug, Clone, Copy)]
enum Node {
    Host(HostId),
    RouterFromLan(SiteId),
    RouterFromWan(SiteId),
    Core,
    Server,
}

struct InFlight {
    at: Duration,
    seq: u64,
    node: Node,
    pkt: Packet,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Site {
    cfg: SiteConfig,
    router: Router,
    hosts: Vec<HostId>,
}

struct PendingStart {
    at: Duration,
    cfg: PunchConfig,
    session: u64,
    candidates: Vec<(SocketAddr, CandidateKind)>,
    /// Acknowledge the introduction to the server once the opening probes are out.
    ack: bool,
}

struct Host {
    site: SiteId,
    addr: SocketAddr,
    observed: Option<SocketAddr>,
    pending: Option<PendingStart>,
    agent: Option<Agent>,
    started: Option<Duration>,
    reports: Vec<Reported>,
    transmits: usize,
    /// Lose the first low-TTL datagram the agent sends to each destination, on the LAN.
    lose_opening: bool,
    /// Destinations whose first low-TTL datagram was lost.
    lost_opening: Vec<SocketAddr>,
}

/// The simulated network.
pub struct Sim {
    base: Instant,
    now: Duration,
    rng: StdRng,
    sites: Vec<Site>,
    hosts: Vec<Host>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Last packet id delivered per (source, destination), to count reordering.
    last_id: BTreeMap<(SocketAddr, SocketAddr), u64>,
    /// Sessions the server introduced: (id, one side's public address, the other's).
    sessions: Vec<(u64, SocketAddr, SocketAddr)>,
    /// (session, side) pairs that acknowledged their introduction.
    acked: Vec<(u64, SocketAddr)>,
    /// Packet counters.
    pub stats: NetStats,
    /// Every delivery to a host, in order.
    pub log: Vec<Delivery>,
}

impl Sim {
    /// An empty network whose randomness (loss, jitter, random ports) follows `seed`.
    pub fn new(seed: u64) -> Sim {
        Sim {
            base: Instant::now(),
            now: Duration::ZERO,
            rng: StdRng::seed_from_u64(seed),
            sites: Vec::new(),
            hosts: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            last_id: BTreeMap::new(),
            sessions: Vec::new(),
            acked: Vec::new(),
            stats: NetStats::default(),
            log: Vec::new(),
        }
    }

    /// Add a site. Site `i` has the public address 203.0.113.(10+i) and the LAN 10.(i+1).0.0/24.
    pub fn add_site(&mut self, cfg: SiteConfig) -> SiteId {
        let id = self.sites.len();
        let octet = u8::try_from(10 + id).expect("fewer than 245 sites");
        let public_ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, octet));
        self.sites.push(Site {
            router: Router::new(cfg.nat, public_ip, cfg.hairpin),
            cfg,
            hosts: Vec::new(),
        });
        id
    }

    /// Add a host with one UDP socket on `port`. A public site holds a single host, which
    /// has the site's public address.
    pub fn add_host(&mut self, site: SiteId, port: u16) -> HostId {
        let id = self.hosts.len();
        let s = &mut self.sites[site];
        let ip = if s.cfg.nat.is_public() {
            assert!(s.hosts.is_empty(), "a public site has one host");
            s.router.public_ip
        } else {
            let n = u8::try_from(2 + s.hosts.len()).expect("small LAN");
            let site_octet = u8::try_from(1 + site).expect("few sites");
            IpAddr::V4(Ipv4Addr::new(10, site_octet, 0, n))
        };
        s.router.dnat_to.get_or_insert(ip);
        s.hosts.push(id);
        self.hosts.push(Host {
            site,
            addr: SocketAddr::new(ip, port),
            observed: None,
            pending: None,
            agent: None,
            started: None,
            reports: Vec::new(),
            transmits: 0,
            lose_opening: false,
            lost_opening: Vec::new(),
        });
        id
    }

    /// Current virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The `Instant` the agents see for virtual time `t`.
    pub fn instant(&self, t: Duration) -> Instant {
        self.base + t
    }

    /// A host's socket address.
    pub fn local_addr(&self, h: HostId) -> SocketAddr {
        self.hosts[h].addr
    }

    /// The address the server observed for a host, once registered.
    pub fn observed(&self, h: HostId) -> Option<SocketAddr> {
        self.hosts[h].observed
    }

    /// What the agent of a host reported, in order.
    pub fn reports(&self, h: HostId) -> &[Reported] {
        &self.hosts[h].reports
    }

    /// Datagrams the agent of a host asked to send.
    pub fn transmits(&self, h: HostId) -> usize {
        self.hosts[h].transmits
    }

    /// When the agent of a host started.
    pub fn started(&self, h: HostId) -> Option<Duration> {
        self.hosts[h].started
    }

    /// Every host registers with the server now, lossless (the real client retries until
    /// answered); the network runs until quiet. See [`Sim::observed`].
    pub fn register_all(&mut self) {
        self.lossless(|sim| {
            for h in 0..sim.hosts.len() {
                let mut payload = b"register".to_vec();
                payload.extend_from_slice(&(h as u64).to_be_bytes());
                sim.send(h, SERVER, None, payload);
            }
            sim.run_packets(sim.now + Duration::from_secs(1));
        });
    }

    /// The candidates `to` punches toward after an introduction to `peer`, built as
    /// `client.rs` builds them: the peer's private address as a host candidate unless it
    /// is `to`'s own or equals the peer's public address, then the public address the
    /// server observed as server-reflexive.
    pub fn introduction(&self, to: HostId, peer: HostId) -> Vec<(SocketAddr, CandidateKind)> {
        let p = &self.hosts[peer];
        let mut out = Vec::new();
        if p.addr != self.hosts[to].addr && Some(p.addr) != p.observed {
            out.push((p.addr, CandidateKind::Host));
        }
        if let Some(o) = p.observed {
            out.push((o, CandidateKind::ServerReflexive));
        }
        out
    }

    /// Introduce registered hosts `a` and `b` under a fresh session id: the server will
    /// relay each side's acknowledgement to the other. Returns the session id.
    pub fn introduce(&mut self, a: HostId, b: HostId) -> u64 {
        let session = self.rng.random();
        let (pa, pb) = (self.hosts[a].observed, self.hosts[b].observed);
        self.sessions.push((
            session,
            pa.expect("a registered"),
            pb.expect("b registered"),
        ));
        session
    }

    /// Start an agent on `h` at virtual time `at`; with `ack`, the host acknowledges the
    /// introduction to the server right after the agent's opening probes.
    pub fn start_agent(
        &mut self,
        h: HostId,
        at: Duration,
        cfg: PunchConfig,
        session: u64,
        candidates: Vec<(SocketAddr, CandidateKind)>,
        ack: bool,
    ) {
        let start = PendingStart {
            at,
            cfg,
            session,
            candidates,
            ack,
        };
        self.hosts[h].pending = Some(start);
    }

    /// Lose the first opening (low-TTL) probe the agent of `h` sends to each destination,
    /// on its first LAN hop: its NAT never sees it. Later copies, if any, pass.
    pub fn lose_opening(&mut self, h: HostId) {
        self.hosts[h].lose_opening = true;
    }

    /// Send a raw datagram from a host's socket now (bypassing its agent).
    pub fn send(&mut self, h: HostId, dest: SocketAddr, ttl: Option<u32>, payload: Vec<u8>) {
        self.stats.sent += 1;
        self.seq += 1;
        let host = &self.hosts[h];
        let site = host.site;
        let ttl = ttl.unwrap_or(DEFAULT_TTL);
        let pkt = Packet {
            src: host.addr,
            dst: dest,
            ttl,
            payload,
            id: self.seq,
        };
        let s = &self.sites[site];
        let neighbour = s
            .hosts
            .iter()
            .copied()
            .find(|&o| self.hosts[o].addr.ip() == dest.ip());
        match neighbour {
            Some(o) if !s.cfg.nat.is_public() => self.lan(site, Node::Host(o), pkt),
            _ => self.lan(site, Node::RouterFromLan(site), pkt),
        }
    }

    /// Send a datagram from `from` to `dest` over a lossless network and report whether it
    /// reaches host `to`: checks that a chosen path really works.
    pub fn path_works(&mut self, from: HostId, to: HostId, dest: SocketAddr) -> bool {
        self.seq += 1;
        let marker = format!("path-check {}", self.seq).into_bytes();
        let first = self.log.len();
        self.lossless(|sim| {
            sim.send(from, dest, None, marker.clone());
            sim.run_packets(sim.now + Duration::from_secs(2));
        });
        self.log[first..]
            .iter()
            .any(|d| d.host == to && d.payload == marker)
    }

    /// Run `f` with loss switched off on every link.
    fn lossless<T>(&mut self, f: impl FnOnce(&mut Sim) -> T) -> T {
        let saved: Vec<(f64, f64)> = self
            .sites
            .iter()
            .map(|s| (s.cfg.wan_loss, s.cfg.lan_loss))
            .collect();
        for s in &mut self.sites {
            s.cfg.wan_loss = 0.0;
            s.cfg.lan_loss = 0.0;
        }
        let out = f(self);
        for (s, (w, l)) in self.sites.iter_mut().zip(saved) {
            s.cfg.wan_loss = w;
            s.cfg.lan_loss = l;
        }
        out
    }

    fn schedule(&mut self, at: Duration, node: Node, pkt: Packet) {
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at,
            seq: self.seq,
            node,
            pkt,
        }));
    }

    fn link(&mut self, latency: Duration, loss: f64, jitter: Duration, to: Node, pkt: Packet) {
        if loss > 0.0 && self.rng.random_bool(loss) {
            self.stats.lost += 1;
            return;
        }
        let extra = if jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.random_range(0..=jitter.as_nanos() as u64))
        };
        self.schedule(self.now + latency + extra, to, pkt);
    }

    fn lan(&mut self, s: SiteId, to: Node, pkt: Packet) {
        let c = &self.sites[s].cfg;
        let (l, p, j) = (c.lan_latency, c.lan_loss, c.lan_jitter);
        self.link(l, p, j, to, pkt);
    }

    fn wan(&mut self, s: SiteId, to: Node, pkt: Packet) {
        let c = &self.sites[s].cfg;
        let (l, p, j) = (c.wan_latency, c.wan_loss, c.wan_jitter);
        self.link(l, p, j, to, pkt);
    }

    fn forward_to_lan(&mut self, s: SiteId, pkt: Packet) {
        let hosts = &self.sites[s].hosts;
        match hosts
            .iter()
            .copied()
            .find(|&h| self.hosts[h].addr.ip() == pkt.dst.ip())
        {
            Some(h) => self.lan(s, Node::Host(h), pkt),
            None => self.stats.unroutable += 1,
        }
    }

    fn arrive(&mut self, node: Node, mut pkt: Packet) {
        match node {
            Node::Host(h) => self.deliver(h, pkt),
            Node::Server => self.server(pkt),
            Node::Core => {
                if pkt.ttl <= 1 {
                    self.stats.ttl_expired += 1;
                    return;
                }
                pkt.ttl -= 1;
                let site = self
                    .sites
                    .iter()
                    .position(|s| s.router.public_ip == pkt.dst.ip());
                if pkt.dst.ip() == SERVER.ip() {
                    self.schedule(self.now + SERVER_LATENCY, Node::Server, pkt);
                } else if let Some(s) = site {
                    self.wan(s, Node::RouterFromWan(s), pkt);
                } else {
                    self.stats.unroutable += 1;
                }
            }
            Node::RouterFromLan(s) => {
                // ip_forward checks the TTL before any netfilter forward/postrouting hook.
                if pkt.ttl <= 1 {
                    self.stats.ttl_expired += 1;
                    return;
                }
                pkt.ttl -= 1;
                let now = self.now;
                let Sim {
                    sites, rng, stats, ..
                } = self;
                match sites[s].router.outbound(now, &mut pkt, rng, stats) {
                    Out::Drop => {}
                    Out::Wan => self.wan(s, Node::Core, pkt),
                    Out::Hairpin(owner) => {
                        self.stats.hairpinned += 1;
                        pkt.dst = owner;
                        self.forward_to_lan(s, pkt);
                    }
                }
            }
            Node::RouterFromWan(s) => {
                let now = self.now;
                let Sim { sites, stats, .. } = self;
                if sites[s].router.inbound(now, &mut pkt, stats) {
                    self.forward_to_lan(s, pkt);
                }
            }
        }
    }

    fn server(&mut self, pkt: Packet) {
        let answer = |sim: &mut Sim, dst: SocketAddr, payload: Vec<u8>| {
            sim.seq += 1;
            let ttl = DEFAULT_TTL;
            let p = Packet {
                src: SERVER,
                dst,
                ttl,
                payload,
                id: sim.seq,
            };
            sim.schedule(sim.now + SERVER_LATENCY, Node::Core, p);
        };
        if let Some(id) = pkt.payload.strip_prefix(b"register") {
            // A registration: remember the observed address, answer it.
            let id = u64::from_be_bytes(id.try_into().expect("8-byte host id")) as usize;
            self.hosts[id].observed = Some(pkt.src);
            answer(self, pkt.src, b"registered".to_vec());
        } else if let Ok(Frame::IntroduceAck { session }) = Frame::decode(&pkt.payload) {
            // rendezvous.rs `introduce_ack`: once both sides acknowledged, tell both.
            let pair = self
                .sessions
                .iter()
                .find(|&&(s, a, b)| s == session && (a == pkt.src || b == pkt.src))
                .map(|&(_, a, b)| (a, b));
            if let Some((a, b)) = pair {
                if !self.acked.contains(&(session, pkt.src)) {
                    self.acked.push((session, pkt.src));
                }
                if self.acked.contains(&(session, a)) && self.acked.contains(&(session, b)) {
                    let ready = Frame::PeerReady { session }.encode().expect("small frame");
                    answer(self, a, ready.clone());
                    answer(self, b, ready);
                }
            }
        }
    }

    fn deliver(&mut self, h: HostId, pkt: Packet) {
        if pkt.dst != self.hosts[h].addr {
            self.stats.no_socket += 1;
            return;
        }
        self.stats.delivered += 1;
        let last = self.last_id.entry((pkt.src, pkt.dst)).or_insert(0);
        if pkt.id < *last {
            self.stats.reordered += 1;
        } else {
            *last = pkt.id;
        }
        let frame = Frame::decode(&pkt.payload).ok();
        self.log.push(Delivery {
            at: self.now,
            host: h,
            from: pkt.src,
            frame: frame.clone(),
            payload: pkt.payload,
        });
        let now = self.instant(self.now);
        let (Some(agent), Some(frame)) = (self.hosts[h].agent.as_mut(), frame) else {
            return;
        };
        match frame {
            // client.rs: the ready signal counts only from the server, for a known session.
            Frame::PeerReady { session } if pkt.src == SERVER && session == agent.session() => {
                agent.peer_ready(now)
            }
            Frame::PeerReady { .. } => {}
            frame => agent.handle_frame(now, pkt.src, &frame),
        }
        self.drain(h);
    }

    fn drain(&mut self, h: HostId) {
        let mut out: Vec<Transmit> = Vec::new();
        let host = &mut self.hosts[h];
        let Some(agent) = host.agent.as_mut() else {
            return;
        };
        while let Some(t) = agent.poll_transmit() {
            out.push(t);
        }
        while let Some(event) = agent.poll_event() {
            host.reports.push(Reported {
                at: self.now,
                event,
            });
        }
        host.transmits += out.len();
        if host.lose_opening {
            out.retain(|t| {
                let first = t.ttl.is_some() && !host.lost_opening.contains(&t.dest);
                if first {
                    host.lost_opening.push(t.dest);
                    self.stats.sent += 1;
                    self.stats.lost += 1;
                }
                !first
            });
        }
        for t in out {
            self.send(h, t.dest, t.ttl, t.payload);
        }
    }

    /// Next agent wake-up (start or timer), earliest first.
    fn next_wake(&self) -> Option<(Duration, HostId)> {
        let wake = |host: &Host| match (&host.pending, &host.agent) {
            (Some(p), _) => Some(p.at),
            (None, Some(a)) => a
                .poll_timeout()
                .map(|t| t.saturating_duration_since(self.base)),
            (None, None) => None,
        };
        let hosts = self.hosts.iter().enumerate();
        hosts
            .filter_map(|(h, host)| wake(host).map(|t| (t.max(self.now), h)))
            .min()
    }

    fn wake(&mut self, h: HostId) {
        let now = self.instant(self.now);
        if let Some(p) = self.hosts[h].pending.take() {
            self.hosts[h].agent = Some(Agent::new(p.cfg, p.session, p.candidates, now));
            self.hosts[h].started = Some(self.now);
            // The opening probes go on the wire before the acknowledgement.
            self.drain(h);
            if p.ack {
                let ack = Frame::IntroduceAck { session: p.session }.encode();
                self.send(h, SERVER, None, ack.expect("small frame"));
            }
        } else if let Some(agent) = self.hosts[h].agent.as_mut() {
            agent.handle_timeout(now);
            self.drain(h);
        }
    }

    /// Run packets and agents until `stop` holds, nothing is left to do, or `limit`.
    pub fn run(&mut self, limit: Duration, mut stop: impl FnMut(&Sim) -> bool) {
        let mut spins = 0u32;
        while !stop(self) {
            let packet = self.queue.peek().map(|Reverse(f)| f.at);
            let wake = self.next_wake();
            let t = match (packet, wake) {
                (Some(p), Some((w, _))) => p.min(w),
                (Some(p), None) => p,
                (None, Some((w, _))) => w,
                (None, None) => return,
            };
            if t > limit {
                self.now = limit;
                return;
            }
            spins = if t == self.now { spins + 1 } else { 0 };
            assert!(
                spins < 100_000,
                "no progress at {t:?}: an agent keeps waking at the same time"
            );
            self.now = t;
            match wake {
                Some((w, h)) if w == t => self.wake(h),
                _ => {
                    let Reverse(f) = self.queue.pop().expect("peeked");
                    self.arrive(f.node, f.pkt);
                }
            }
        }
    }

    /// Deliver packets in flight until `limit`, without waking agents' timers.
    fn run_packets(&mut self, limit: Duration) {
        while self.queue.peek().is_some_and(|Reverse(f)| f.at <= limit) {
            let Reverse(f) = self.queue.pop().expect("peeked");
            self.now = self.now.max(f.at);
            self.arrive(f.node, f.pkt);
        }
    }
}
