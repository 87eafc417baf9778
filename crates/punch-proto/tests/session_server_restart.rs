//! The client session in virtual time: the rendezvous server is gone for 30 s mid-stream
//! and comes back with empty state. A pair on a direct path never stops; a pair only the
//! relay can carry (symmetric on both sides) stands still while the server is away and
//! flows again within 5 s of its return, every message once and in order.

mod sim;

use std::time::Duration;

use sim::recovery::{report, streaming_pair, Recovery, SEEDS};
use sim::NatType;

const AWAY: Duration = Duration::from_secs(30);

/// Runs with the server away for [`AWAY`]: the recovery measured from the fault
/// (`from_return`: from the server's return).
fn runs(na: NatType, nb: NatType, from_return: bool) -> Vec<Recovery> {
    (0..SEEDS)
        .map(|seed| {
            let mut s = streaming_pair(seed, na, nb, Duration::from_secs(80));
            let down = s.sim.fault_at(s.fault_at, |sim| sim.server_down());
            let back = s.sim.fault_at(down + AWAY, |sim| sim.server_restart());
            let since = if from_return { back } else { down };
            let (r, sim) = s
                .finish(since)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert!(sim.server().is_up());
            r
        })
        .collect()
}

#[test]
fn a_direct_pair_talks_through_the_outage() {
    let r = runs(NatType::PortRestricted, NatType::PortRestricted, false);
    for x in &r {
        assert!(x.stall < Duration::from_secs(1), "{x:?}");
    }
    report("server away 30 s, pr x pr (direct)", &r, false);
}

#[test]
fn a_relayed_pair_flows_again_when_the_server_returns() {
    let r = runs(NatType::Symmetric, NatType::Symmetric, true);
    report(
        "server away 30 s, sym x sym (relay), from its return",
        &r,
        false,
    );
}
