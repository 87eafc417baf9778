//! A small simulated network for the NAT discovery tests, in virtual time.
//!
//! One client host with the two discovery sockets, one router in front of it (a NAT model,
//! no NAT with or without a stateful filter, or a black hole), and a [`StunResponder`] with
//! up to four sockets. Packets on the WAN take [`ONE_WAY`] and may be lost; the NAT creates
//! mappings when packets leave and filters when they come back. Shared by the `nat_*.rs`
//! test files, each of which checks one behaviour.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use punch_proto::nat::{
    Behaviour, Dialect, Discovery, DiscoveryConfig, LocalSocket, NatReport, Transmit,
};
use punch_proto::stun::{Attribute, Message, ServerAddrs, Side, SocketId, StunResponder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The server's primary address `A1:P1`.
pub const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), 3478);
/// The server's alternate IP `A2`.
pub const SERVER_ALT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2));
/// The server's alternate port `P2`.
pub const SERVER_ALT_PORT: u16 = 3479;
/// The client host's address behind a NAT.
pub const HOST_PRIVATE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));
/// The client host's address when it has a public one (no NAT).
pub const HOST_PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10));
/// The NAT's public address.
pub const NAT_PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
/// Local port of the Mapping socket.
pub const MAPPING_PORT: u16 = 40000;
/// Local port of the Filtering socket.
pub const FILTERING_PORT: u16 = 40001;
/// One-way delay between the client's router and the server.
pub const ONE_WAY: Duration = Duration::from_millis(10);
/// Virtual time after which a run counts as hung.
pub const HANG: Duration = Duration::from_secs(30);

/// How the NAT picks a public port for a new mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// The local port, if free (else random).
    Preserve,
    /// Uniformly random.
    Random,
    /// One above the previous allocation.
    Sequential,
}

/// Where an address-dependent filter keeps the addresses the host sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Per mapping (RFC 4787).
    PerMapping,
    /// One set for the whole host, like the lab's `@contacted` nftables set: a packet to an
    /// address from any socket admits that address to every mapping.
    HostWide,
}

/// A NAT's behaviour.
#[derive(Debug, Clone, Copy)]
pub struct NatModel {
    /// Mapping behaviour (RFC 4787 §4.1).
    pub mapping: Behaviour,
    /// Filtering behaviour (RFC 4787 §5).
    pub filtering: Behaviour,
    /// Port assignment.
    pub ports: Ports,
    /// Whether packets to the NAT's own public address from inside are hairpinned.
    pub hairpin: bool,
    /// Where filter state lives.
    pub scope: Scope,
}

/// What sits between the client host and the internet.
#[derive(Debug, Clone, Copy)]
pub enum Router {
    /// A NAT.
    Nat(NatModel),
    /// A public address; `Some` filtering is a stateful firewall.
    NoNat(Option<Behaviour>),
    /// Drops every packet.
    Blocked,
}

/// The STUN server the client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Our responder with both alternate IP and port.
    Full,
    /// Our responder with one address only.
    Single,
    /// Both addresses, but answers in RFC 3489 form even to modern requests, as stund does:
    /// MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS.
    StundStyle,
    /// Both addresses, but always answers from the socket the request came in on.
    IgnoresChangeRequest,
}

/// One simulated run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The router.
    pub router: Router,
    /// The server.
    pub server: ServerKind,
    /// Loss probability of each WAN packet.
    pub loss: f64,
    /// Seed of the network's randomness (loss, random ports).
    pub net_seed: u64,
    /// Seed of the client's randomness.
    pub client_seed: u64,
    /// The client's dialect.
    pub dialect: Dialect,
}

impl Scenario {
    /// A NAT with port preservation, no hairpin, per-mapping filters.
    pub fn nat(mapping: Behaviour, filtering: Behaviour) -> Self {
        Self::with_router(Router::Nat(NatModel {
            mapping,
            filtering,
            ports: Ports::Preserve,
            hairpin: false,
            scope: Scope::PerMapping,
        }))
    }

    /// A public address without filter.
    pub fn open() -> Self {
        Self::with_router(Router::NoNat(None))
    }

    /// A public address behind a stateful filter.
    pub fn firewall(filtering: Behaviour) -> Self {
        Self::with_router(Router::NoNat(Some(filtering)))
    }

    /// Nothing gets through.
    pub fn blocked() -> Self {
        Self::with_router(Router::Blocked)
    }

    fn with_router(router: Router) -> Self {
        Scenario {
            router,
            server: ServerKind::Full,
            loss: 0.0,
            net_seed: 1,
            client_seed: 1,
            dialect: Dialect::Modern,
        }
    }

    fn model(mut self, f: impl FnOnce(&mut NatModel)) -> Self {
        if let Router::Nat(m) = &mut self.router {
            f(m);
        }
        self
    }

    /// Sets the NAT's port assignment.
    pub fn ports(self, ports: Ports) -> Self {
        self.model(|m| m.ports = ports)
    }

    /// Sets the NAT's hairpinning.
    pub fn hairpin(self, hairpin: bool) -> Self {
        self.model(|m| m.hairpin = hairpin)
    }

    /// Sets where the NAT keeps filter state.
    pub fn scope(self, scope: Scope) -> Self {
        self.model(|m| m.scope = scope)
    }

    /// Sets the server.
    pub fn server(mut self, server: ServerKind) -> Self {
        self.server = server;
        self
    }

    /// Sets the WAN loss and both seeds.
    pub fn lossy(mut self, loss: f64, seed: u64) -> Self {
        self.loss = loss;
        self.net_seed = seed;
        self.client_seed = seed.wrapping_mul(31).wrapping_add(7);
        self
    }

    /// Sets the client's dialect.
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The client host's IP.
    pub fn host_ip(&self) -> IpAddr {
        match self.router {
            Router::NoNat(_) => HOST_PUBLIC,
            _ => HOST_PRIVATE,
        }
    }

    /// Runs discovery to the end.
    pub fn run(&self) -> Run {
        Sim::new(self).run()
    }
}

/// A datagram the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Virtual time since the start.
    pub at: Duration,
    /// From which socket.
    pub socket: LocalSocket,
    /// To where.
    pub dest: SocketAddr,
    /// Whether it carried CHANGE-REQUEST.
    pub change_request: bool,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The report.
    pub report: NatReport,
    /// Every datagram the client sent, in order.
    pub sent: Vec<Sent>,
    /// Virtual time the run took.
    pub elapsed: Duration,
}

struct NatEntry {
    lport: u16,
    /// The remote part the mapping is keyed on (none for endpoint-independent).
    key: Option<SocketAddr>,
    public_port: u16,
    /// Remote endpoints this mapping sent to.
    contacted: Vec<SocketAddr>,
}

enum Event {
    /// A packet from the client (after its router) reaches the server.
    ToServer {
        src: SocketAddr,
        dst: SocketAddr,
        payload: Vec<u8>,
    },
    /// A packet from outside reaches the client's router.
    ToRouter {
        src: SocketAddr,
        dst: SocketAddr,
        payload: Vec<u8>,
    },
}

struct Sim<'a> {
    sc: &'a Scenario,
    rng: StdRng,
    t0: Instant,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: Vec<Option<Event>>,
    nat: Vec<NatEntry>,
    next_seq_port: u16,
    host_contacted: Vec<SocketAddr>,
    responder: StunResponder,
    sent: Vec<Sent>,
}

impl<'a> Sim<'a> {
    fn new(sc: &'a Scenario) -> Self {
        let addrs = match sc.server {
            ServerKind::Single => ServerAddrs::single(SERVER),
            _ => ServerAddrs::new(SERVER, Some(SERVER_ALT_IP), Some(SERVER_ALT_PORT)).unwrap(),
        };
        Sim {
            sc,
            rng: StdRng::seed_from_u64(sc.net_seed),
            t0: Instant::now(),
            queue: BinaryHeap::new(),
            events: Vec::new(),
            nat: Vec::new(),
            next_seq_port: 20000,
            host_contacted: Vec::new(),
            responder: StunResponder::new(addrs),
            sent: Vec::new(),
        }
    }

    fn run(mut self) -> Run {
        let ip = self.sc.host_ip();
        let mut cfg = DiscoveryConfig::new(
            SocketAddr::new(ip, MAPPING_PORT),
            SocketAddr::new(ip, FILTERING_PORT),
        );
        cfg.dialect = self.sc.dialect;
        let mut now = self.t0;
        let mut d = Discovery::new(cfg, SERVER, now, self.sc.client_seed);
        loop {
            while let Some(t) = d.poll_transmit() {
                self.client_send(now, t, &mut d);
            }
            if let Some(report) = d.result() {
                return Run {
                    report: report.clone(),
                    sent: self.sent,
                    elapsed: now - self.t0,
                };
            }
            let next_event = self.queue.peek().map(|Reverse((t, _))| *t);
            now = [d.poll_timeout(), next_event]
                .into_iter()
                .flatten()
                .min()
                .expect("discovery neither finished nor waiting for anything");
            assert!(now - self.t0 < HANG, "discovery hung");
            while let Some(&Reverse((t, idx))) = self.queue.peek() {
                if t > now {
                    break;
                }
                self.queue.pop();
                let Some(ev) = self.events[idx as usize].take() else {
                    continue;
                };
                self.deliver(now, ev, &mut d);
                while let Some(t) = d.poll_transmit() {
                    self.client_send(now, t, &mut d);
                }
            }
            if d.poll_timeout().is_some_and(|t| t <= now) {
                d.handle_timeout(now);
            }
        }
    }

    fn schedule(&mut self, at: Instant, ev: Event) {
        let idx = self.events.len() as u64;
        self.events.push(Some(ev));
        self.queue.push(Reverse((at, idx)));
    }

    fn lost(&mut self) -> bool {
        self.sc.loss > 0.0 && self.rng.random_bool(self.sc.loss)
    }

    fn local_port(socket: LocalSocket) -> u16 {
        match socket {
            LocalSocket::Mapping => MAPPING_PORT,
            LocalSocket::Filtering => FILTERING_PORT,
        }
    }

    fn socket_of(port: u16) -> Option<LocalSocket> {
        match port {
            MAPPING_PORT => Some(LocalSocket::Mapping),
            FILTERING_PORT => Some(LocalSocket::Filtering),
            _ => None,
        }
    }

    fn client_send(&mut self, now: Instant, t: Transmit, d: &mut Discovery) {
        let change_request = Message::decode(&t.payload)
            .map(|m| m.attribute(Attribute::CHANGE_REQUEST).is_some())
            .unwrap_or(false);
        self.sent.push(Sent {
            at: now - self.t0,
            socket: t.socket,
            dest: t.dest,
            change_request,
        });
        let lport = Self::local_port(t.socket);
        let host = SocketAddr::new(self.sc.host_ip(), lport);
        match self.sc.router {
            Router::Blocked => {}
            Router::NoNat(_) => {
                self.host_contacted.push(t.dest);
                if t.dest.ip() == HOST_PUBLIC {
                    // Our own address: the kernel delivers it locally.
                    if let Some(s) = Self::socket_of(t.dest.port()) {
                        d.handle_datagram(now, s, host, &t.payload);
                    }
                } else {
                    self.send_wan(now, host, t.dest, t.payload);
                }
            }
            Router::Nat(model) => {
                let public = self.translate_out(model, lport, t.dest);
                if t.dest.ip() == NAT_PUBLIC {
                    if model.hairpin {
                        if let Some(port) = self.translate_in(model, public, t.dest.port()) {
                            if let Some(s) = Self::socket_of(port) {
                                d.handle_datagram(now, s, public, &t.payload);
                            }
                        }
                    }
                } else {
                    self.send_wan(now, public, t.dest, t.payload);
                }
            }
        }
    }

    fn send_wan(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr, payload: Vec<u8>) {
        if !self.lost() {
            self.schedule(now + ONE_WAY, Event::ToServer { src, dst, payload });
        }
    }

    fn deliver(&mut self, now: Instant, ev: Event, d: &mut Discovery) {
        match ev {
            Event::ToServer { src, dst, payload } => {
                let Some(on) = SocketId::ALL
                    .into_iter()
                    .find(|&id| self.responder.addrs().addr(id) == Some(dst))
                else {
                    return;
                };
                let Some(mut reply) = self.responder.respond(on, src, &payload) else {
                    return;
                };
                match self.sc.server {
                    ServerKind::StundStyle => reply.payload = stund_style(&reply.payload),
                    ServerKind::IgnoresChangeRequest => reply.socket = on,
                    _ => {}
                }
                let from = self.responder.addrs().addr(reply.socket).unwrap();
                if !self.lost() {
                    self.schedule(
                        now + ONE_WAY,
                        Event::ToRouter {
                            src: from,
                            dst: reply.dest,
                            payload: reply.payload,
                        },
                    );
                }
            }
            Event::ToRouter { src, dst, payload } => {
                let lport = match self.sc.router {
                    Router::Blocked => None,
                    Router::NoNat(filter) => {
                        let ok = match filter {
                            None => true,
                            Some(f) => self.host_contacted.iter().any(|&c| admits(f, c, src)),
                        };
                        ok.then_some(dst.port())
                    }
                    Router::Nat(model) => self.translate_in(model, src, dst.port()),
                };
                let Some(s) = lport.and_then(Self::socket_of) else {
                    return;
                };
                d.handle_datagram(now, s, src, &payload);
            }
        }
    }

    /// Outbound: finds or creates the mapping, records the destination for the filter, and
    /// returns the public source address.
    fn translate_out(&mut self, model: NatModel, lport: u16, dst: SocketAddr) -> SocketAddr {
        let key = match model.mapping {
            Behaviour::EndpointIndependent => None,
            Behaviour::AddressDependent => Some(SocketAddr::new(dst.ip(), 0)),
            Behaviour::AddressAndPortDependent => Some(dst),
        };
        let idx = match self
            .nat
            .iter()
            .position(|e| e.lport == lport && e.key == key)
        {
            Some(i) => i,
            None => {
                let port = self.allocate(model.ports, lport);
                self.nat.push(NatEntry {
                    lport,
                    key,
                    public_port: port,
                    contacted: Vec::new(),
                });
                self.nat.len() - 1
            }
        };
        self.nat[idx].contacted.push(dst);
        self.host_contacted.push(dst);
        SocketAddr::new(NAT_PUBLIC, self.nat[idx].public_port)
    }

    fn allocate(&mut self, ports: Ports, lport: u16) -> u16 {
        let used = |nat: &[NatEntry], p: u16| nat.iter().any(|e| e.public_port == p);
        if ports == Ports::Preserve && !used(&self.nat, lport) {
            return lport;
        }
        if ports == Ports::Sequential {
            loop {
                self.next_seq_port += 1;
                if !used(&self.nat, self.next_seq_port) {
                    return self.next_seq_port;
                }
            }
        }
        loop {
            let p = self.rng.random_range(1024..=65535);
            if !used(&self.nat, p) {
                return p;
            }
        }
    }

    /// Inbound: the local port the packet goes to, if a mapping exists and the filter admits
    /// `src`.
    fn translate_in(&self, model: NatModel, src: SocketAddr, public_port: u16) -> Option<u16> {
        let e = self.nat.iter().find(|e| e.public_port == public_port)?;
        let contacted = match model.scope {
            Scope::PerMapping => &e.contacted,
            Scope::HostWide => &self.host_contacted,
        };
        let ok = model.filtering == Behaviour::EndpointIndependent
            || contacted.iter().any(|&c| admits(model.filtering, c, src));
        ok.then_some(e.lport)
    }
}

/// Whether a filter that saw us send to `contacted` admits a packet from `src`.
fn admits(filtering: Behaviour, contacted: SocketAddr, src: SocketAddr) -> bool {
    match filtering {
        Behaviour::EndpointIndependent => true,
        Behaviour::AddressDependent => contacted.ip() == src.ip(),
        Behaviour::AddressAndPortDependent => contacted == src,
    }
}

/// Rewrites one of our answers the way a RFC 3489 server would have written it.
fn stund_style(payload: &[u8]) -> Vec<u8> {
    let mut msg = Message::decode(payload).unwrap();
    msg.attributes = msg
        .attributes
        .into_iter()
        .filter_map(|a| match a {
            Attribute::XorMappedAddress(_) => None,
            Attribute::ResponseOrigin(x) => Some(Attribute::SourceAddress(x)),
            Attribute::OtherAddress(x) => Some(Attribute::ChangedAddress(x)),
            other => Some(other),
        })
        .collect();
    msg.encode().unwrap()
}

/// Server socket of a destination, for assertions.
pub fn server_socket(dest: SocketAddr) -> Option<SocketId> {
    let ip = if dest.ip() == SERVER.ip() {
        Side::Primary
    } else if dest.ip() == SERVER_ALT_IP {
        Side::Alternate
    } else {
        return None;
    };
    let port = if dest.port() == SERVER.port() {
        Side::Primary
    } else if dest.port() == SERVER_ALT_PORT {
        Side::Alternate
    } else {
        return None;
    };
    Some(SocketId { ip, port })
}
