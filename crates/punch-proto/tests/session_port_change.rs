//! The client session in virtual time: a port-restricted router reboots mid-stream (every
//! mapping gone, and from then on it hands out other public ports, as a rebooted router or
//! a CGNAT that rebinds does). The host's public address changes for the server and for
//! its peer, which the test checks; every message still arrives once and in order, the
//! streams flow again within 5 s and a direct path is back within 15 s.

mod sim;

use punch_proto::client::Event;
use sim::recovery::{port_restricted_pair, report, SEEDS};

#[test]
fn a_new_public_port_is_learned_and_punched_again() {
    let mut runs = Vec::new();
    for seed in 0..SEEDS {
        let mut s = port_restricted_pair(seed);
        let (sa, sb, a) = (s.sa, s.sb, s.a);
        let before = s.sim.host(a).session.public_addr().expect("registered");
        let f = s.sim.fault_at(s.fault_at, |sim| {
            sim.flush_conntrack(sa);
            sim.flush_conntrack(sb);
            sim.change_ports(sa, 7);
        });
        let (r, sim) = s.finish(f).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        // The server saw a's new address, and a's session said so.
        let after = sim.host(a).session.public_addr().expect("registered");
        assert_ne!(
            before.port(),
            after.port(),
            "seed {seed}: the port did not change"
        );
        let told = sim.host(a).events.iter().any(|(t, ev)| {
            *t > f && matches!(ev, Event::Registered { public } if public.port() != before.port())
        });
        assert!(
            told,
            "seed {seed}: no Registered event with the new address"
        );
        runs.push(r);
    }
    report("router reboot with new ports, pr x pr", &runs, true);
}
