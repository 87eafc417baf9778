//! A symmetric-NAT peer whose introduction arrives after its peer's ready signal.
//!
//! A's probes go to B's server-reflexive port (B's mapping toward the server), which never
//! reaches B, so only the ready signal can wake B before the `open_delay` fallback (1 s).
//! The server sends `PeerReady` to both sides once both acknowledged, so B cannot get it
//! before its own introduction (a signal arriving first would be dropped). When the
//! symmetric side is the earlier one, its peer's probes reach the peer and it connects at
//! once.

mod sim;

use std::time::Duration;

use sim::{run_pair, NatType, PairScenario, SiteConfig, Topology};

/// Skew between the introductions: more than A's `PeerReady` takes to reach B here
/// (0.2 + 5 + 5 + 5 + 5 + 0.2 ms), far less than `open_delay`.
const SKEW: Duration = Duration::from_millis(30);
/// What these pairs need with the fixed latencies below: the skew, the relay of B's
/// acknowledgement to A, a peer-reflexive round trip and the private grace, with slack.
const BOUND: Duration = Duration::from_millis(300);

fn scenario(peer: NatType, symmetric_late: bool, seed: u64) -> PairScenario {
    let site = |nat| SiteConfig {
        wan_latency: Duration::from_millis(5),
        ..SiteConfig::new(nat)
    };
    let topology = Topology::TwoSites(site(peer), site(NatType::Symmetric));
    let start = if symmetric_late {
        (Duration::ZERO, SKEW)
    } else {
        (SKEW, Duration::ZERO)
    };
    PairScenario {
        start,
        ..PairScenario::new(topology, seed)
    }
}

fn check(symmetric_late: bool) {
    for peer in [NatType::Open, NatType::FullCone, NatType::RestrictedCone] {
        for seed in 0..10 {
            let out = run_pair(&scenario(peer, symmetric_late, seed));
            let t = out.connect_time();
            let ctx = format!("{} seed {seed}: {t:?} {:?} {:?}", peer.name(), out.a, out.b);
            assert!(out.connected(), "{ctx}");
            assert!(t.is_some_and(|t| t <= BOUND), "{ctx}");
        }
    }
}

#[test]
fn symmetric_side_first_connects_at_once() {
    check(false);
}

#[test]
fn symmetric_side_late_connects_at_once() {
    check(true);
}
