//! The client session in virtual time: mid-stream, host b moves to another network (a new
//! LAN address behind another router, so a new public address; its socket keeps its port).
//! Its driver reports the new address; every peer punches again. Every message arrives
//! once and in order, the streams flow again within 5 s and a direct path is back within
//! 15 s.

mod sim;

use sim::recovery::{port_restricted_pair, report, SEEDS};
use sim::{NatType, SiteConfig};

#[test]
fn a_host_that_moves_is_reached_again() {
    let mut runs = Vec::new();
    for seed in 0..SEEDS {
        let mut s = port_restricted_pair(seed);
        let cafe = s.sim.add_site(SiteConfig::new(NatType::PortRestricted));
        let b = s.b;
        let before = s.sim.host(b).session.public_addr().expect("registered");
        let f = s.sim.fault_at(s.fault_at, |sim| sim.move_host(b, cafe));
        let (r, sim) = s.finish(f).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let after = sim.host(b).session.public_addr().expect("registered");
        assert_ne!(before.ip(), after.ip(), "seed {seed}: b did not move");
        runs.push(r);
    }
    report("host moves to another network, pr x pr", &runs, true);
}
