//! A lost opening probe brings the conntrack race back.
//!
//! The agent sends one low-TTL opening probe per candidate. If that one datagram is lost
//! before its own NAT (a LAN or Wi-Fi drop), the NAT has no mapping toward the peer.
//! When that side is also introduced later than its peer's `PeerReady` reaches it (it
//! drops the signal), the first thing that wakes it is the peer's full probe, which has
//! already hit its NAT and left a dead conntrack entry there: its own probes then leave
//! on another port and the peer's NAT filters them (port-restricted peer or firewall),
//! or the peer's further probes are black-holed (restricted cone). The agent's module doc
//! says the race "cannot happen, however skewed the two introductions were"; that holds
//! only if the single opening probe gets through.

mod sim;

use std::time::Duration;

use sim::{random_pair, run_pair, NatType, PairScenario, Tally};

const RUNS: u64 = 50;
/// B is introduced this much after A: more than A's `PeerReady` needs to reach B in most
/// of `random_pair`'s networks, far less than `open_delay`.
const SKEW: Duration = Duration::from_millis(30);

/// Pairs where B (the late side) needs its opening probe: its peer filters or it does.
const PAIRS: [(NatType, NatType); 3] = [
    (NatType::PortRestricted, NatType::PortRestricted),
    (NatType::Firewall, NatType::PortRestricted),
    (NatType::Symmetric, NatType::RestrictedCone),
];

fn scenario(a: NatType, b: NatType, seed: u64, lose: bool) -> PairScenario {
    PairScenario {
        start: (Duration::ZERO, SKEW),
        lose_opening: (false, lose),
        ..random_pair(a, b, seed)
    }
}

fn tally(lose: bool) -> Vec<Tally> {
    PAIRS
        .iter()
        .map(|&(a, b)| {
            let label = format!("{} <-> {} (late), opening lost {lose}", a.name(), b.name());
            let mut tally = Tally::new(label);
            for seed in 0..RUNS {
                tally.add(&run_pair(&scenario(a, b, seed, lose)));
            }
            println!("{tally}");
            tally
        })
        .collect()
}

#[test]
fn late_side_with_its_opening_probe_connects() {
    for t in tally(false) {
        assert_eq!(t.connected, t.runs, "{t}");
    }
}

#[test]
fn late_side_survives_losing_its_opening_probe() {
    for t in tally(true) {
        assert_eq!(t.connected, t.runs, "{t}");
    }
}
