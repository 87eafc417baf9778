//! Both address families in the client session: our registration with the server's
//! address in the other family, our public address there, and which of a peer's
//! candidates can work from here.
//!
//! A client registers with the server address Happy Eyeballs chose
//! ([`super::Config::server`]): that registration is the one its requests, introductions
//! and relay go through. With [`super::Config::server_other`] (the server's address in the
//! other family) it registers there too, with the same signed request over that
//! address's own nonce, refreshed with the first: the server keeps it as the peer's second
//! address (its record and the address introductions go to stay the first's), the answer
//! tells us our public address in that family, and that goes into the request we sign,
//! beside our host addresses, so every peer we are introduced to gets candidates of both
//! families. Refreshing it also keeps that family's NAT mapping open. If the first family
//! stops working, the server drops the first registration when it expires and takes the
//! next refresh over the other family as the peer's record. A server that does not answer
//! over that family costs nothing: the candidate is simply not offered.
//!
//! A peer's candidate is tried only where it can work ([`usable`]): in a family we have
//! an address in, never link-local (its zone means nothing on another host), and a
//! unique local address (RFC 4193) only inside the same site.
//!
//! It does not own sockets or name resolution (the driver's).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use super::registration::Registration;
use super::Session;
use crate::agent::CandidateKind;
use crate::wire::{Frame, PeerInfo, MAX_PRIVATE_ADDRS};

impl Session {
    /// A frame from the server's address in the other family: true if it answered our
    /// registration there (and was taken here). A new public address there goes into both
    /// registrations at once (peers introduced from now on get it as a candidate). Other
    /// frames are the server's as from its first address: the caller takes them.
    pub(super) fn on_other_family(&mut self, now: Instant, frame: &Frame) -> bool {
        let Some(o) = self.other.as_mut() else {
            return false;
        };
        match *frame {
            // Signed again over this address's nonce (in the guard) and sent at once; the
            // same nonce twice waits for the next refresh (no loop with the server).
            Frame::Challenge { txn, nonce } if txn == o.reg.txn => {
                if o.reg.set_nonce(nonce) {
                    let (to, frame) = (o.server, o.reg.frame.clone());
                    self.send(to, frame);
                }
            }
            Frame::Registered {
                txn,
                observed,
                nonce,
                ..
            } if txn == o.reg.txn && observed.is_ipv4() == o.server.is_ipv4() => {
                o.reg.set_nonce(nonce);
                // Only the first registration's answers are events: this one's silence
                // or return means nothing to the application.
                let _ = o.reg.answered(observed);
                let offered = offered(&self.host, Some(observed));
                if let Ok(true) = self.reg.set_private(offered) {
                    self.sync_other();
                    self.reregister_now(now);
                }
            }
            Frame::Registered { txn, .. } if txn == o.reg.txn => {}
            // Refusals (the server's table full, say) are retried with the next refresh.
            Frame::Error { txn, .. } if txn == o.reg.txn => {}
            _ => return false,
        }
        true
    }

    /// The registration over the other family says what the first says: signed again
    /// when that changed (its own nonce kept).
    pub(super) fn sync_other(&mut self) {
        let Some(o) = self.other.as_mut() else {
            return;
        };
        let _ = o.reg.set_private(self.reg.private().to_vec());
        if let Some(nat) = self.reg.nat() {
            o.reg.set_nat(nat);
        }
    }

    /// Send the registration over the other family (with every refresh of the first).
    pub(super) fn refresh_other(&mut self) {
        if let Some(o) = self.other.as_ref() {
            let (to, frame) = (o.server, o.reg.frame.clone());
            self.send(to, frame);
        }
    }

    /// Our own addresses, both families: the candidates we registered and the public
    /// address the server observed.
    pub(super) fn own_addrs(&self) -> Vec<SocketAddr> {
        let mut own = self.reg.private().to_vec();
        own.extend(self.reg.public);
        own
    }

    /// The candidates to punch toward `info` that can work from here (see [`usable`]):
    /// its host addresses but ours and its public one, then its public address.
    pub(super) fn candidates(&self, info: &PeerInfo) -> Vec<(SocketAddr, CandidateKind)> {
        let own = self.own_addrs();
        let mut out: Vec<(SocketAddr, CandidateKind)> = info
            .private
            .iter()
            // Our own address would answer our own probes; and a "private" address equal
            // to the public one (a host with a public address) is the public one.
            .filter(|a| !self.reg.private().contains(a) && **a != info.public)
            .map(|a| (*a, CandidateKind::Host))
            .collect();
        out.push((info.public, CandidateKind::ServerReflexive));
        out.retain(|(a, _)| usable(*a, &own));
        out
    }

    /// Our public address in the other family, once the server answered our
    /// registration there.
    pub fn other_public_addr(&self) -> Option<SocketAddr> {
        self.other.as_ref().and_then(|o| o.reg.public)
    }
}

/// Why punching toward `info` cannot start: none of its candidates is in a family we
/// have (an IPv4-only host meeting an IPv6-only one), or in scope.
pub(crate) fn no_common_family(info: &PeerInfo, own: &[SocketAddr]) -> String {
    let families = |addrs: &mut dyn Iterator<Item = &SocketAddr>| {
        let (mut v4, mut v6) = (false, false);
        for a in addrs {
            v4 |= a.is_ipv4();
            v6 |= a.is_ipv6();
        }
        match (v4, v6) {
            (true, true) => "IPv4 and IPv6",
            (true, false) => "IPv4",
            (false, true) => "IPv6",
            (false, false) => "no",
        }
    };
    let theirs = families(&mut std::iter::once(&info.public).chain(&info.private));
    let ours = families(&mut own.iter());
    format!(
        "no address family in common: {} has {theirs} addresses, we have {ours} only \
         (or theirs are out of scope: link-local, another site's unique local)",
        info.name
    )
}

/// The server's address in the other family, and our registration there.
#[derive(Debug)]
pub(crate) struct OtherFamily {
    /// Where its registration goes.
    pub(crate) server: SocketAddr,
    /// The same request as the first registration's, signed over this address's nonce.
    pub(crate) reg: Registration,
}

/// What we register as our other candidates: our host addresses, then our public
/// address in the other family (unless it is one of them), at most
/// [`MAX_PRIVATE_ADDRS`]. Link-local host addresses are left out.
pub(crate) fn offered(host: &[SocketAddr], other_public: Option<SocketAddr>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in host.iter().copied().chain(other_public) {
        if offerable(a.ip()) && !out.contains(&a) {
            out.push(a);
        }
    }
    out.truncate(MAX_PRIVATE_ADDRS);
    out
}

/// True for an address worth telling anyone: not unspecified, multicast or IPv6
/// link-local. (A loopback address is told: it serves peers on the same host.)
fn offerable(ip: IpAddr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || is_link_local(ip))
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

/// A unique local address (fc00::/7, RFC 4193).
fn is_ula(v6: &Ipv6Addr) -> bool {
    v6.segments()[0] & 0xfe00 == 0xfc00
}

/// Whether a peer's candidate `c` can work from a host whose own addresses (host and
/// public, both families) are `own`: a family we have an address in; never link-local;
/// loopback only from loopback (the same host); a unique local address only when one of
/// ours is in the same /48 (the same site, RFC 4193 §3.1: global id and prefix are the
/// first 48 bits).
pub(crate) fn usable(c: SocketAddr, own: &[SocketAddr]) -> bool {
    if !offerable(c.ip()) {
        return false;
    }
    if c.ip().is_loopback() {
        return own
            .iter()
            .any(|a| a.ip().is_loopback() && a.is_ipv4() == c.is_ipv4());
    }
    match c.ip() {
        IpAddr::V4(_) => own.iter().any(|a| a.is_ipv4()),
        IpAddr::V6(v6) if is_ula(&v6) => own.iter().any(|a| match a.ip() {
            IpAddr::V6(o) => is_ula(&o) && o.segments()[..3] == v6.segments()[..3],
            IpAddr::V4(_) => false,
        }),
        IpAddr::V6(_) => own
            .iter()
            .any(|a| matches!(a.ip(), IpAddr::V6(o) if !is_link_local(IpAddr::V6(o)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn candidates_of_a_family_we_lack_are_not_tried() {
        let v4_only = [a("10.0.1.2:5000"), a("198.51.100.2:5000")];
        assert!(usable(a("198.51.100.6:4000"), &v4_only));
        assert!(!usable(a("[2001:db8:2::2]:4000"), &v4_only));
        let v6_only = [a("[2001:db8:1::2]:5000")];
        assert!(!usable(a("198.51.100.6:4000"), &v6_only));
        assert!(usable(a("[2001:db8:2::2]:4000"), &v6_only));
    }

    #[test]
    fn link_local_never_and_ula_only_within_the_site() {
        let own = [a("[fd12:3456:789a:1::2]:5000"), a("[2001:db8:1::2]:5000")];
        assert!(!usable(a("[fe80::1]:4000"), &own));
        assert!(usable(a("[fd12:3456:789a:2::9]:4000"), &own));
        assert!(!usable(a("[fd99:3456:789a:1::9]:4000"), &own));
        assert!(!usable(
            a("[fd12:3456:789a:1::9]:4000"),
            &[a("[2001:db8::1]:1")]
        ));
    }

    #[test]
    fn loopback_only_from_loopback() {
        assert!(usable(a("127.0.0.1:4000"), &[a("127.0.0.1:5000")]));
        assert!(!usable(a("127.0.0.1:4000"), &[a("10.0.1.2:5000")]));
        assert!(!usable(a("[::1]:4000"), &[a("127.0.0.1:5000")]));
    }

    #[test]
    fn offered_drops_link_local_and_duplicates_and_keeps_the_bound() {
        let host = [a("[fe80::1]:5000"), a("10.0.1.2:5000"), a("10.0.1.2:5000")];
        let got = offered(&host, Some(a("[2001:db8:1::2]:5000")));
        assert_eq!(got, vec![a("10.0.1.2:5000"), a("[2001:db8:1::2]:5000")]);
        let many: Vec<SocketAddr> = (1..20).map(|i| a(&format!("10.0.0.{i}:1"))).collect();
        assert_eq!(offered(&many, None).len(), MAX_PRIVATE_ADDRS);
    }
}
