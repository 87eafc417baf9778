//! Faults to inject into a running simulation, each as it happens on real networks.
//!
//! Owns the fault commands: `conntrack -F` on a router, a router whose later mappings get
//! other public ports, the server going down and coming back with empty state, and a host
//! moving to another site (with the local-address report its driver makes). It does not
//! own what the faults lead to: the NAT model, the sessions and the server react as they
//! would to the real thing.

use std::time::Duration;

use super::{HostId, Sim, SiteId};

impl Sim {
    /// `conntrack -F` on `site`'s router: every mapping and filter entry is gone. Returns
    /// how many entries there were.
    pub fn flush_conntrack(&mut self, site: SiteId) -> usize {
        let n = self.sites[site].router.flush();
        self.stats.flushed += n;
        n
    }

    /// From now on `site`'s router gives new mappings the host's port plus `offset`, not
    /// the host's port (a rebooted router or a CGNAT that rebinds). Existing mappings
    /// stay until they expire or are flushed.
    pub fn change_ports(&mut self, site: SiteId, offset: u16) {
        self.sites[site].router.set_port_offset(offset);
    }

    /// The server goes down: every datagram to it is dropped, it sends nothing.
    pub fn server_down(&mut self) {
        self.server.stop();
    }

    /// The server comes back as a new process: no registrations, no sessions.
    pub fn server_restart(&mut self) {
        self.server.restart();
    }

    /// Host `h` moves to `site`: a new LAN address there (same local port), behind that
    /// site's router. Its driver notices the new address at once and tells its session
    /// (`set_local_addrs`), as the real driver does on an address change. Datagrams still
    /// on their way to the old address are lost.
    pub fn move_host(&mut self, h: HostId, site: SiteId) {
        let old = self.hosts[h].site;
        self.sites[old].hosts.retain(|&x| x != h);
        let port = self.hosts[h].addr.port();
        let addr = self.attach(site, h, port);
        self.hosts[h].site = site;
        self.hosts[h].addr = addr;
        self.act(h, |s, now| s.set_local_addrs(now, vec![addr]));
    }

    /// Run until `t`, then run `fault`, and report the virtual time it happened at.
    pub fn fault_at(&mut self, t: Duration, fault: impl FnOnce(&mut Sim)) -> Duration {
        self.run_until(t);
        fault(self);
        self.now
    }
}
