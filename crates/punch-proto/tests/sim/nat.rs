//! The NAT and router types of the simulated network, as Linux conntrack + nftables.
//!
//! Owns each site router's conntrack table, SNAT/DNAT and filtering decisions. It does not
//! own links, time or hosts (see the parent module).
//!
//! Every NAT router keeps a conntrack table of connections, each an original and a reply
//! tuple. An outbound packet that matches no connection gets a new one through SNAT
//! (`masquerade`: keep the source port unless the reply tuple is already taken, then any
//! free port; `masquerade fully-random`: a random port per connection, i.e. per
//! destination). An inbound packet that matches no connection is either DNAT'ed to the
//! host (full cone: always; restricted cone: if its source address is in the `@contacted`
//! set that the host's outbound packets fill) or, being addressed to the router itself and
//! accepted by its input chain, confirmed as a **dead** connection for 30 s
//! (`nf_conntrack_udp_timeout`) and dropped. That dead entry is the race of design.md:
//! - a later outbound packet whose masqueraded reply tuple would equal it gets another
//!   public port (`nf_nat_used_tuple`), which the peer's filter then drops
//!   (port-restricted);
//! - a later inbound packet matching it keeps matching it (NAT rules run only on a
//!   connection's first packet) and is black-holed while it lives, even after the host has
//!   contacted the peer (the dnat-based cones).
//!
//! Each packet refreshes its connection, so a peer that keeps probing keeps a dead entry
//! alive. The stateful firewall drops unsolicited packets in its forward chain, before
//! conntrack confirms them, so it creates no dead entries. TTL is checked in `ip_forward`
//! before any forward or postrouting hook, so an expiring packet creates no mapping and no
//! DNAT'ed connection; a packet delivered locally to a NAT is not TTL-checked.
//!
//! Two faults act on a router: [`Router::flush`] is `conntrack -F` (every entry gone; the
//! `@contacted` set is an nftables set and stays), and [`Router::set_port_offset`] makes
//! later mappings take another public port than the host's (a rebooted router or a CGNAT
//! that rebinds), where masquerade would have kept it.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use super::{NetStats, Packet};

/// `nf_conntrack_udp_timeout`: a connection seen one way only lives 30 s after its last packet.
pub const CT_UNREPLIED_TIMEOUT: Duration = Duration::from_secs(30);
/// `nf_conntrack_udp_timeout_stream`: 120 s once traffic has been seen both ways.
pub const CT_REPLIED_TIMEOUT: Duration = Duration::from_secs(120);

/// The NAT (or lack of one) in front of a site, named as in the namespace lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatType {
    /// Routed public address, no filter.
    Open,
    /// Routed public address behind a stateful filter (`ct state established` only).
    Firewall,
    /// `masquerade` + `dnat` of every inbound packet to the host.
    FullCone,
    /// `masquerade` + `dnat` only for sources in the `@contacted` set.
    RestrictedCone,
    /// `masquerade` alone: endpoint-independent mapping, address-and-port-dependent filter.
    PortRestricted,
    /// `masquerade fully-random`: a random port per destination.
    Symmetric,
}

impl NatType {
    /// Every type, from the most to the least permissive.
    pub const ALL: [NatType; 6] = [
        NatType::Open,
        NatType::Firewall,
        NatType::FullCone,
        NatType::RestrictedCone,
        NatType::PortRestricted,
        NatType::Symmetric,
    ];

    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            NatType::Open => "open",
            NatType::Firewall => "firewall",
            NatType::FullCone => "full-cone",
            NatType::RestrictedCone => "restricted-cone",
            NatType::PortRestricted => "port-restricted",
            NatType::Symmetric => "symmetric",
        }
    }

    /// True for the routed (non-NAT) sites, whose single host has the public address.
    pub fn is_public(self) -> bool {
        matches!(self, NatType::Open | NatType::Firewall)
    }
}

/// True when hosts behind `a` and `b` can have a direct UDP path: everything but a
/// symmetric NAT facing anything that filters on the port it cannot predict.
pub fn direct_path_exists(a: NatType, b: NatType) -> bool {
    use NatType::*;
    match (a, b) {
        (Symmetric, x) | (x, Symmetric) => matches!(x, Open | FullCone | RestrictedCone),
        _ => true,
    }
}

type Tuple = (SocketAddr, SocketAddr);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnKind {
    /// Outbound, masqueraded.
    Snat,
    /// Inbound, dnat'ed to the host.
    Dnat,
    /// Inbound to the router itself: confirmed, never answered.
    Dead,
    /// A firewall's connection, without NAT.
    Plain,
}

#[derive(Debug, Clone)]
struct Conn {
    orig: Tuple,
    reply: Tuple,
    kind: ConnKind,
    replied: bool,
    expires: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Orig,
    Reply,
}

/// What happens to a packet from the LAN after the router.
pub(super) enum Out {
    /// Dropped.
    Drop,
    /// On to the core.
    Wan,
    /// Looped back to this LAN endpoint (hairpinning).
    Hairpin(SocketAddr),
}

/// A site's router: NAT, filter and conntrack table.
pub(super) struct Router {
    nat: NatType,
    pub(super) public_ip: IpAddr,
    conns: Vec<Conn>,
    /// The restricted cone's `@contacted` set.
    contacted: BTreeSet<IpAddr>,
    /// Where the cones' `dnat` sends inbound packets: the site's first host.
    pub(super) dnat_to: Option<IpAddr>,
    /// NAT loopback enabled.
    hairpin: bool,
    /// Added to the host's port to pick the public port of a new mapping (0: keep it).
    port_offset: u16,
}

impl Router {
    pub(super) fn new(nat: NatType, public_ip: IpAddr, hairpin: bool) -> Router {
        Router {
            nat,
            public_ip,
            conns: Vec::new(),
            contacted: BTreeSet::new(),
            dnat_to: None,
            hairpin,
            port_offset: 0,
        }
    }

    /// `conntrack -F`: forget every connection. Returns how many there were.
    pub(super) fn flush(&mut self) -> usize {
        std::mem::take(&mut self.conns).len()
    }

    /// New mappings take the host's port plus `offset` (wrapping within 1024..=65535)
    /// instead of the host's own port. (The cones' `dnat` of unsolicited packets still
    /// maps a public port to the same host port: use it on masquerade-only routers.)
    pub(super) fn set_port_offset(&mut self, offset: u16) {
        self.port_offset = offset;
    }

    /// The public port a new mapping of local port `port` asks for first.
    fn preferred_port(&self, port: u16) -> u16 {
        const FIRST: u32 = 1024;
        const SPAN: u32 = 65536 - FIRST;
        if self.port_offset == 0 {
            return port;
        }
        let p = u32::from(port).max(FIRST) - FIRST + u32::from(self.port_offset);
        u16::try_from(FIRST + p % SPAN).expect("below 65536")
    }

    fn expire(&mut self, now: Duration) {
        self.conns.retain(|c| c.expires > now);
    }

    fn lookup(&self, t: Tuple) -> Option<(usize, Dir)> {
        self.conns.iter().enumerate().find_map(|(i, c)| {
            if c.orig == t {
                Some((i, Dir::Orig))
            } else if c.reply == t {
                Some((i, Dir::Reply))
            } else {
                None
            }
        })
    }

    /// `nf_conntrack_tuple_taken`: some connection already uses `t` in either direction.
    fn taken(&self, t: Tuple) -> Option<ConnKind> {
        self.conns
            .iter()
            .find(|c| c.orig == t || c.reply == t)
            .map(|c| c.kind)
    }

    /// Refresh a connection on a packet and translate the packet's addresses.
    fn pass(&mut self, now: Duration, i: usize, dir: Dir, pkt: &mut Packet) {
        let c = &mut self.conns[i];
        if dir == Dir::Reply {
            c.replied = true;
        }
        let timeout = if c.replied {
            CT_REPLIED_TIMEOUT
        } else {
            CT_UNREPLIED_TIMEOUT
        };
        c.expires = now + timeout;
        let other = if dir == Dir::Orig { c.reply } else { c.orig };
        pkt.src = other.1;
        pkt.dst = other.0;
    }

    fn insert(&mut self, now: Duration, orig: Tuple, reply: Tuple, kind: ConnKind) -> usize {
        self.conns.push(Conn {
            orig,
            reply,
            kind,
            replied: false,
            expires: now + CT_UNREPLIED_TIMEOUT,
        });
        self.conns.len() - 1
    }

    /// Source NAT of a LAN packet (POSTROUTING `masquerade`): reuse its connection, or
    /// create one, preserving the port (or taking the offset one) unless the reply tuple
    /// is taken (never preserving it for `fully-random`).
    fn snat(&mut self, now: Duration, pkt: &mut Packet, rng: &mut StdRng, stats: &mut NetStats) {
        if let Some((i, dir)) = self.lookup((pkt.src, pkt.dst)) {
            self.pass(now, i, dir, pkt);
            return;
        }
        let want = |p: u16| (pkt.dst, SocketAddr::new(self.public_ip, p));
        let mut port = None;
        if self.nat != NatType::Symmetric {
            let preferred = self.preferred_port(pkt.src.port());
            match self.taken(want(preferred)) {
                None => port = Some(preferred),
                Some(ConnKind::Dead) => stats.race_remaps += 1,
                Some(_) => {}
            }
        }
        let port = port.unwrap_or_else(|| loop {
            let p = rng.random_range(1024..=u16::MAX);
            if self.taken(want(p)).is_none() {
                break p;
            }
        });
        let i = self.insert(now, (pkt.src, pkt.dst), want(port), ConnKind::Snat);
        self.pass(now, i, Dir::Orig, pkt);
    }

    /// A packet from the LAN whose TTL the caller already checked and decremented.
    pub(super) fn outbound(
        &mut self,
        now: Duration,
        pkt: &mut Packet,
        rng: &mut StdRng,
        stats: &mut NetStats,
    ) -> Out {
        self.expire(now);
        match self.nat {
            NatType::Open => Out::Wan,
            NatType::Firewall => {
                match self.lookup((pkt.src, pkt.dst)) {
                    Some((i, dir)) => self.pass(now, i, dir, pkt),
                    None => {
                        let (orig, reply) = ((pkt.src, pkt.dst), (pkt.dst, pkt.src));
                        let i = self.insert(now, orig, reply, ConnKind::Plain);
                        self.pass(now, i, Dir::Orig, pkt);
                    }
                }
                Out::Wan
            }
            _ => {
                let hairpin = pkt.dst.ip() == self.public_ip;
                if hairpin && !self.hairpin {
                    // Delivered to the router itself, where nothing listens.
                    stats.no_socket += 1;
                    return Out::Drop;
                }
                if self.nat == NatType::RestrictedCone {
                    // forward chain: `update @contacted { ip daddr }`
                    self.contacted.insert(pkt.dst.ip());
                }
                self.snat(now, pkt, rng, stats);
                if !hairpin {
                    return Out::Wan;
                }
                // NAT loopback: to the LAN endpoint owning that public port, if any.
                let owner = self
                    .conns
                    .iter()
                    .find(|c| c.kind == ConnKind::Snat && c.reply.1 == pkt.dst)
                    .map(|c| c.orig.0);
                match owner {
                    Some(o) => Out::Hairpin(o),
                    None => {
                        stats.no_socket += 1;
                        Out::Drop
                    }
                }
            }
        }
    }

    /// A packet from the WAN. Returns true if it is forwarded to the LAN (translated and
    /// TTL-decremented).
    pub(super) fn inbound(
        &mut self,
        now: Duration,
        pkt: &mut Packet,
        stats: &mut NetStats,
    ) -> bool {
        self.expire(now);
        let forward = |pkt: &mut Packet, stats: &mut NetStats| {
            if pkt.ttl <= 1 {
                stats.ttl_expired += 1;
                false
            } else {
                pkt.ttl -= 1;
                true
            }
        };
        match self.nat {
            NatType::Open => forward(pkt, stats),
            NatType::Firewall => match self.lookup((pkt.src, pkt.dst)) {
                Some((i, dir)) => {
                    self.pass(now, i, dir, pkt);
                    forward(pkt, stats)
                }
                None => {
                    // Dropped in the forward chain before conntrack confirms: no entry.
                    stats.filtered += 1;
                    false
                }
            },
            _ => {
                if let Some((i, dir)) = self.lookup((pkt.src, pkt.dst)) {
                    let kind = self.conns[i].kind;
                    self.pass(now, i, dir, pkt);
                    if kind == ConnKind::Dead {
                        stats.black_holed += 1;
                        return false;
                    }
                    return forward(pkt, stats);
                }
                if pkt.dst.ip() != self.public_ip {
                    stats.unroutable += 1;
                    return false;
                }
                let dnat = match self.nat {
                    NatType::FullCone => true,
                    NatType::RestrictedCone => self.contacted.contains(&pkt.src.ip()),
                    _ => false,
                };
                match self.dnat_to {
                    Some(host) if dnat => {
                        let reply = (SocketAddr::new(host, pkt.dst.port()), pkt.src);
                        // A clash or an expiring TTL drops the packet before conntrack
                        // confirms the connection.
                        if self.taken(reply).is_some() || pkt.ttl <= 1 {
                            stats.ttl_expired += usize::from(pkt.ttl <= 1);
                            return false;
                        }
                        let i = self.insert(now, (pkt.src, pkt.dst), reply, ConnKind::Dnat);
                        self.pass(now, i, Dir::Orig, pkt);
                        forward(pkt, stats)
                    }
                    _ => {
                        // Local delivery to the router: the input chain accepts, conntrack
                        // confirms, no socket listens. The dead entry lives on.
                        let (orig, reply) = ((pkt.src, pkt.dst), (pkt.dst, pkt.src));
                        self.insert(now, orig, reply, ConnKind::Dead);
                        stats.dead_entries += 1;
                        false
                    }
                }
            }
        }
    }
}
