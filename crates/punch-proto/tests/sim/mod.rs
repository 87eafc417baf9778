//! A deterministic simulated network in virtual time, on which every host runs the real
//! client [`Session`](punch_proto::client::Session) and the server node runs the real
//! [`Rendezvous`](punch_proto::rendezvous::Rendezvous).
//!
//! Owns: sites (a LAN behind a NAT, or one host with a routed public address), an
//! "internet core" router with the rendezvous server, links with latency, seeded loss and
//! jitter, the event loop (packets in flight, host and server wake-ups, earliest first),
//! the packet counters and the log of deliveries. It does not own the NAT model
//! ([`nat`], Linux conntrack as in the namespace lab), the host driver ([`host`]), the
//! server node ([`server`]), the app transport standing in for QUIC ([`stream`]), the
//! faults ([`faults`]), the two-peer scenarios ([`pair`]) or the helpers for driving a
//! bare agent by hand ([`agent_io`]).
//!
//! # Topology and hops
//! host -> own router (hop 1) -> core (hop 2) -> peer's router (hop 3) -> peer host. A
//! packet with TTL 2 passes its own NAT, creating the mapping, and dies in the core. Hosts
//! on one LAN reach each other directly (no router, no TTL decrement). Loss and jitter
//! apply per link crossing; [`Sim::lossless`] switches loss off for a while (the pair
//! scenarios register that way, and check chosen paths that way).
//!
//! # Hairpinning
//! Off by default, as Linux masquerade. When on, it is the NAT loopback of consumer
//! routers (RFC 4787 REQ-9): a LAN packet to the NAT's own public ip:port gets its source
//! masqueraded, then goes to the LAN endpoint owning that public port, whatever the filter.
//!
//! # Tracing a run
//! With `SIM_TRACE=1` in the environment, every host prints its session's events and the
//! frames it sends (probes aside), and the server the frames it takes and answers, each
//! with its virtual time: how a failing seed is read.

#![allow(dead_code)]

pub mod agent_io;
pub mod faults;
pub mod host;
pub mod nat;
pub mod pair;
pub mod recovery;
pub mod server;
pub mod stream;

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use punch_proto::agent::Transmit;
use punch_proto::auth::SigningKey;
use punch_proto::client::{ConnectId, PeerKey, Session};
use punch_proto::wire::Frame;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[allow(unused_imports)]
pub use agent_io::{ack, agent_events, drain_agent, probing, Sent};
#[allow(unused_imports)]
pub use host::{Host, HostConfig};
#[allow(unused_imports)]
pub use nat::{direct_path_exists, NatType};
#[allow(unused_imports)]
pub use pair::{random_pair, run_pair, PairOutcome, PairScenario, Side, Tally, Topology};
#[allow(unused_imports)]
pub use stream::{Flow, Received};

use nat::{Out, Router};
use server::ServerNode;

/// TTL of a datagram sent without an explicit one (Linux `net.ipv4.ip_default_ttl`).
pub const DEFAULT_TTL: u32 = 64;
/// The rendezvous server, attached to the core.
pub const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 3478);
/// One-way latency between the core and the server.
pub const SERVER_LATENCY: Duration = Duration::from_millis(5);
/// Virtual time at which the pair scenarios ask for the introduction; registration
/// happens before.
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
    /// Hosts that moved to a fresh local port when their session asked.
    pub rebinds: usize,
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
    /// Conntrack entries dropped by flushes.
    pub flushed: usize,
    /// Datagrams that reached the server while it was down.
    pub server_down: usize,
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

/// What wakes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Host(HostId),
    Server,
}

/// The simulated network.
pub struct Sim {
    base: Instant,
    now: Duration,
    seed: u64,
    rng: StdRng,
    sites: Vec<Site>,
    hosts: Vec<Host>,
    server: ServerNode,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Last packet id delivered per (source, destination), to count reordering.
    last_id: BTreeMap<(SocketAddr, SocketAddr), u64>,
    /// Packet counters.
    pub stats: NetStats,
    /// Every delivery to a host, in order.
    pub log: Vec<Delivery>,
}

impl Sim {
    /// An empty network whose randomness (loss, jitter, random ports, the server's and
    /// the sessions' ids) follows `seed`.
    pub fn new(seed: u64) -> Sim {
        Sim {
            base: Instant::now(),
            now: Duration::ZERO,
            seed,
            rng: StdRng::seed_from_u64(seed),
            sites: Vec::new(),
            hosts: Vec::new(),
            server: ServerNode::new(seed ^ 0x5e1f_0000),
            queue: BinaryHeap::new(),
            seq: 0,
            last_id: BTreeMap::new(),
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

    /// Attach a host to `site` on the next free LAN address (the public address on a
    /// public site, which holds one host) with local `port`.
    fn attach(&mut self, site: SiteId, host: HostId, port: u16) -> SocketAddr {
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
        s.hosts.push(host);
        SocketAddr::new(ip, port)
    }

    /// Add a host with one UDP socket on `port`, running a client session set up by
    /// `cfg` that starts (registers) now. Its key pair comes from the seed `[id + 1; 32]`.
    pub fn add_host(&mut self, site: SiteId, port: u16, cfg: HostConfig) -> HostId {
        let id = self.hosts.len();
        let addr = self.attach(site, id, port);
        let signer = SigningKey::from_seed(&[u8::try_from(id + 1).expect("few hosts"); 32]);
        let seed = self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (id as u64 + 1);
        let now = self.instant(self.now);
        let host = Host::new(cfg, site, addr, signer, self.base, now, seed);
        self.hosts.push(host);
        self.flush_host(id);
        id
    }

    /// Current virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The `Instant` the sessions see for virtual time `t`.
    pub fn instant(&self, t: Duration) -> Instant {
        self.base + t
    }

    /// A host's socket address.
    pub fn local_addr(&self, h: HostId) -> SocketAddr {
        self.hosts[h].addr
    }

    /// A host and everything it recorded.
    pub fn host(&self, h: HostId) -> &Host {
        &self.hosts[h]
    }

    /// A host's key.
    pub fn key(&self, h: HostId) -> PeerKey {
        self.hosts[h].key
    }

    /// The server node.
    pub fn server(&self) -> &ServerNode {
        &self.server
    }

    /// Act on a host's session now (a command, as the application would), then send what
    /// it wants sent.
    pub fn act<T>(&mut self, h: HostId, f: impl FnOnce(&mut Session, Instant) -> T) -> T {
        let (at, now) = (self.now, self.instant(self.now));
        let out = f(&mut self.hosts[h].session, now);
        self.hosts[h].pump(at, now);
        self.flush_host(h);
        out
    }

    /// Host `h` asks its session for `name` (see `Session::connect`).
    pub fn connect(&mut self, h: HostId, name: &str) -> ConnectId {
        self.act(h, |s, now| s.connect(now, name))
            .expect("a valid connect request")
    }

    /// Host `from` sends a numbered message to host `to` every `interval`, from `start`
    /// until `until` (messages wait for the connection, as a QUIC stream's would).
    pub fn stream(
        &mut self,
        from: HostId,
        to: HostId,
        interval: Duration,
        start: Duration,
        until: Duration,
    ) {
        let peer = self.hosts[to].key;
        self.hosts[from]
            .app
            .send_every(peer, interval, start.max(self.now), until);
    }

    /// The messages from `from` to `to`: when each was sent and when (and how) it arrived.
    pub fn flow(&self, from: HostId, to: HostId) -> Flow {
        let (kf, kt) = (self.hosts[from].key, self.hosts[to].key);
        Flow::new(&self.hosts[from].app, kt, &self.hosts[to].app, kf)
    }

    /// Send a raw datagram from a host's socket now (bypassing its session).
    pub fn send(&mut self, h: HostId, dest: SocketAddr, ttl: Option<u32>, payload: Vec<u8>) {
        self.stats.sent += 1;
        self.seq += 1;
        let host = &self.hosts[h];
        let site = host.site;
        let pkt = Packet {
            src: host.addr,
            dst: dest,
            ttl: ttl.unwrap_or(DEFAULT_TTL),
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

    /// Send what host `h` wants sent; give it a fresh port if its session asked for one
    /// (as the real driver rebinds its socket), and send what that leads to.
    fn flush_host(&mut self, h: HostId) {
        let (out, dropped) = self.hosts[h].take_outbox();
        self.stats.sent += dropped;
        self.stats.lost += dropped;
        for t in out {
            let Transmit { dest, ttl, payload } = t;
            self.send(h, dest, ttl, payload);
        }
        if std::mem::take(&mut self.hosts[h].rebind) {
            let old = self.hosts[h].addr;
            let addr = SocketAddr::new(old.ip(), old.port().wrapping_add(1000).max(1024));
            self.hosts[h].addr = addr;
            self.stats.rebinds += 1;
            self.act(h, |s, now| s.rebound(now, vec![addr]));
        }
    }

    /// Send a datagram from `from` to `dest` over a lossless network and report whether it
    /// reaches host `to`: checks that a chosen path really works. The marker's first byte
    /// is in QUIC's range, so no session sees it.
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
    pub fn lossless<T>(&mut self, f: impl FnOnce(&mut Sim) -> T) -> T {
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
            if std::env::var("SIMDEBUG").is_ok() {
                eprintln!(
                    "{:?} LOST {} -> {} {:?}",
                    self.now,
                    pkt.src,
                    pkt.dst,
                    Frame::decode(&pkt.payload).ok()
                );
            }
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

    /// The last hop to a host of site `s`; datagrams from the server take the host's
    /// extra server delay on top (how the pair scenarios skew the introductions).
    fn forward_to_lan(&mut self, s: SiteId, pkt: Packet) {
        let hosts = &self.sites[s].hosts;
        let Some(h) = hosts
            .iter()
            .copied()
            .find(|&h| self.hosts[h].addr.ip() == pkt.dst.ip())
        else {
            self.stats.unroutable += 1;
            return;
        };
        let c = &self.sites[s].cfg;
        let (mut l, p, j) = (c.lan_latency, c.lan_loss, c.lan_jitter);
        if pkt.src == SERVER {
            l += self.hosts[h].server_delay();
        }
        self.link(l, p, j, Node::Host(h), pkt);
    }

    fn arrive(&mut self, node: Node, mut pkt: Packet) {
        match node {
            Node::Host(h) => self.deliver(h, pkt),
            Node::Server => self.server_input(pkt),
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

    /// A datagram reaches the server: it answers (and relays) from [`SERVER`].
    fn server_input(&mut self, pkt: Packet) {
        if pkt.dst != SERVER {
            self.stats.no_socket += 1;
            return;
        }
        if !self.server.is_up() {
            self.stats.server_down += 1;
            return;
        }
        let now = self.instant(self.now);
        if std::env::var("SIMDEBUG").is_ok() {
            eprintln!(
                "{:?} server <- {} {:?}",
                self.now,
                pkt.src,
                Frame::decode(&pkt.payload).ok()
            );
        }
        let out = self.server.receive(now, pkt.src, &pkt.payload);
        if std::env::var("SIMDEBUG").is_ok() {
            for (d, p) in &out {
                eprintln!("{:?} server -> {} {:?}", self.now, d, Frame::decode(p).ok());
            }
        }
        self.server_output(out);
    }

    fn server_output(&mut self, out: Vec<(SocketAddr, Vec<u8>)>) {
        for (dst, payload) in out {
            self.seq += 1;
            let p = Packet {
                src: SERVER,
                dst,
                ttl: DEFAULT_TTL,
                payload,
                id: self.seq,
            };
            self.schedule(self.now + SERVER_LATENCY, Node::Core, p);
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
        let (at, now) = (self.now, self.instant(self.now));
        self.hosts[h].receive(at, now, pkt.src, &pkt.payload);
        self.log.push(Delivery {
            at,
            host: h,
            from: pkt.src,
            frame,
            payload: pkt.payload,
        });
        self.flush_host(h);
    }

    /// Next wake-up of a host or the server, earliest first (hosts before the server,
    /// lower ids first, at equal times).
    fn next_wake(&self) -> Option<(Duration, Wake)> {
        let hosts = self.hosts.iter().enumerate();
        let hosts = hosts.filter_map(|(h, host)| host.next_wake().map(|t| (t, Wake::Host(h))));
        let server = self
            .server
            .next_wake()
            .map(|t| (t.saturating_duration_since(self.base), Wake::Server));
        hosts
            .chain(server)
            .map(|(t, w)| (t.max(self.now), w))
            .min_by_key(|&(t, w)| {
                let rank = match w {
                    Wake::Host(h) => h,
                    Wake::Server => usize::MAX,
                };
                (t, rank)
            })
    }

    fn wake(&mut self, w: Wake) {
        let (at, now) = (self.now, self.instant(self.now));
        match w {
            Wake::Host(h) => {
                self.hosts[h].wake(at, now);
                self.flush_host(h);
            }
            Wake::Server => {
                let out = self.server.wake(now);
                self.server_output(out);
            }
        }
    }

    /// Run packets, hosts and the server until `stop` holds, nothing is left to do, or
    /// `limit`.
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
                "no progress at {t:?}: something keeps waking at the same time"
            );
            self.now = t;
            match wake {
                Some((w, who)) if w == t => self.wake(who),
                _ => {
                    let Reverse(f) = self.queue.pop().expect("peeked");
                    self.arrive(f.node, f.pkt);
                }
            }
        }
    }

    /// Run everything until virtual time `t`.
    pub fn run_until(&mut self, t: Duration) {
        self.run(t, |_| false);
        self.now = self.now.max(t);
    }

    /// Deliver packets in flight until `limit`, without waking hosts or the server.
    fn run_packets(&mut self, limit: Duration) {
        while self.queue.peek().is_some_and(|Reverse(f)| f.at <= limit) {
            let Reverse(f) = self.queue.pop().expect("peeked");
            self.now = self.now.max(f.at);
            self.arrive(f.node, f.pkt);
        }
    }
}
