//! Stable virtual addresses for peers, mapped to whichever real path is best right now.
//!
//! quinn sees each peer at one fixed, made-up address (in 240.0.0.0/4, reserved and never
//! routed). Underneath, this table says how to reach that peer at the moment: directly at
//! a real address, or through the server's relay. Switching the route is invisible to
//! quinn, so a live connection moves from relay to direct (and back) without a handshake,
//! a migration or a lost message: QUIC simply retransmits whatever the old path dropped.
//! This is the design iroh uses. The table does not decide *when* to switch: the client
//! session ([`punch_proto::client::Session`]) does, and its driver writes its
//! [`Route`]s here.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::RwLock;

pub use punch_proto::client::Route;
use punch_proto::wire::Side;

/// Most peers with a virtual address at once.
pub const MAX_PEERS: usize = 4096;

/// Where a datagram quinn addressed to some address goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Send the datagram as it is to this address.
    Direct(SocketAddr),
    /// Wrap it in a relay header and send it to the server.
    Relay {
        /// The relaying server.
        server: SocketAddr,
        /// Our end of the session.
        side: Side,
        /// The session.
        session: u64,
    },
    /// Drop it (no path for now: QUIC retransmits once one exists).
    Drop,
    /// Not a virtual address: send it to that address as it is.
    Unmapped,
}

#[derive(Default)]
struct Tables {
    active: HashMap<SocketAddr, Route>,
    /// Real peer address -> virtual address, for datagrams arriving directly.
    by_real: HashMap<SocketAddr, SocketAddr>,
    /// Relay session -> virtual address, for datagrams arriving through the relay.
    by_session: HashMap<u64, SocketAddr>,
    next: u32,
}

/// The shared table (cheap to read on every datagram).
#[derive(Default)]
pub struct PathTable {
    t: RwLock<Tables>,
}

impl std::fmt::Debug for PathTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PathTable")
    }
}

impl PathTable {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.t.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.t.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A new virtual address, with no path yet; `None` when [`MAX_PEERS`] are in use.
    pub fn allocate(&self) -> Option<SocketAddr> {
        let mut t = self.write();
        if t.active.len() >= MAX_PEERS {
            return None;
        }
        t.next = t.next.wrapping_add(1);
        let n = t.next;
        // 240.x.y.z with z != 0; the port carries nothing but keeps the address unique.
        let ip = Ipv4Addr::new(240, (n >> 16) as u8, (n >> 8) as u8, n as u8);
        let v = SocketAddr::new(ip.into(), 1);
        t.active.insert(v, Route::None);
        Some(v)
    }

    /// Forget a virtual address and everything that maps to it.
    pub fn remove(&self, v: SocketAddr) {
        let mut t = self.write();
        t.active.remove(&v);
        t.by_real.retain(|_, x| *x != v);
        t.by_session.retain(|_, x| *x != v);
    }

    /// Make `path` carry `v`'s traffic from now on.
    pub fn set_active(&self, v: SocketAddr, path: Route) {
        let mut t = self.write();
        if let Some(a) = t.active.get_mut(&v) {
            *a = path;
        }
    }

    /// A QUIC datagram for `v` arrived straight from `real`: if `v` has no path yet, take
    /// that one. The peer only sends QUIC on a direct path after its probe to us was
    /// answered, so the path is proven both ways; without this, our answers to its
    /// handshake would be dropped until our own punching finishes.
    pub fn learn_direct(&self, v: SocketAddr, real: SocketAddr) {
        // Called for received datagrams: the common case (a path exists) needs no write.
        if self.read().active.get(&v) != Some(&Route::None) {
            return;
        }
        let mut t = self.write();
        if let Some(a) = t.active.get_mut(&v) {
            if *a == Route::None {
                *a = Route::Direct(real);
            }
        }
    }

    /// The path carrying `v` now.
    pub fn active(&self, v: SocketAddr) -> Option<Route> {
        self.read().active.get(&v).copied()
    }

    /// Datagrams arriving from real address `real` belong to `v`.
    pub fn alias(&self, real: SocketAddr, v: SocketAddr) {
        let mut t = self.write();
        if t.by_real.len() < MAX_PEERS * 16 {
            t.by_real.insert(real, v);
        }
    }

    /// Datagrams relayed in `sessions` (and no others) belong to `v`.
    pub fn set_relay_sessions(&self, v: SocketAddr, sessions: &[u64]) {
        let mut t = self.write();
        t.by_session.retain(|s, x| *x != v || sessions.contains(s));
        for s in sessions {
            if t.by_session.len() < MAX_PEERS * 2 {
                t.by_session.insert(*s, v);
            }
        }
    }

    /// Where to send a datagram quinn addressed to `dest`. A virtual address no longer in
    /// the table is dropped: it must never leave as a real destination.
    pub fn route(&self, dest: SocketAddr) -> Dest {
        match self.read().active.get(&dest) {
            None if is_virtual(dest) => Dest::Drop,
            None => Dest::Unmapped,
            Some(Route::Direct(a)) => Dest::Direct(*a),
            Some(Route::Relay {
                server,
                side,
                session,
            }) => Dest::Relay {
                server: *server,
                side: *side,
                session: *session,
            },
            Some(Route::None) => Dest::Drop,
        }
    }

    /// The virtual address of a datagram that arrived directly from `real`.
    pub fn virtual_for_real(&self, real: SocketAddr) -> Option<SocketAddr> {
        self.read().by_real.get(&real).copied()
    }

    /// The virtual address of relay session `session`.
    pub fn virtual_for_session(&self, session: u64) -> Option<SocketAddr> {
        self.read().by_session.get(&session).copied()
    }
}

/// In 240.0.0.0/4, where virtual addresses live.
fn is_virtual(a: SocketAddr) -> bool {
    matches!(a, SocketAddr::V4(v4) if v4.ip().octets()[0] >= 240)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_active_path() {
        let t = PathTable::default();
        let v = t.allocate().unwrap();
        assert_eq!(t.route(v), Dest::Drop);
        let server: SocketAddr = "203.0.113.10:3478".parse().unwrap();
        let relay = Route::Relay {
            server,
            side: Side::Target,
            session: 9,
        };
        t.set_active(v, relay);
        t.set_relay_sessions(v, &[9, 8]);
        assert_eq!(
            t.route(v),
            Dest::Relay {
                server,
                side: Side::Target,
                session: 9
            }
        );
        assert_eq!(t.virtual_for_session(9), Some(v));
        assert_eq!(t.virtual_for_session(8), Some(v));
        t.set_relay_sessions(v, &[10, 9]);
        assert_eq!(
            t.virtual_for_session(8),
            None,
            "only the sessions given stay"
        );
        let real: SocketAddr = "198.51.100.2:4000".parse().unwrap();
        t.alias(real, v);
        t.set_active(v, Route::Direct(real));
        assert_eq!(t.route(v), Dest::Direct(real));
        assert_eq!(t.virtual_for_real(real), Some(v));
        assert_eq!(t.route(real), Dest::Unmapped);
        t.remove(v);
        assert_eq!(
            t.route(v),
            Dest::Drop,
            "a forgotten virtual address goes nowhere"
        );
        assert_eq!(t.virtual_for_real(real), None);
    }

    #[test]
    fn virtual_addresses_are_distinct_and_reserved() {
        let t = PathTable::default();
        let a = t.allocate().unwrap();
        let b = t.allocate().unwrap();
        assert_ne!(a, b);
        assert!(matches!(a.ip(), std::net::IpAddr::V4(ip) if ip.octets()[0] == 240));
    }
}
