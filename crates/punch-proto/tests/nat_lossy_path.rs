//! With 30 % loss on every WAN packet, retransmissions still reach the right verdict for
//! every classic type, and loss never makes a NAT look more open than it is.
//!
//! Silence is a verdict for filtering tests II/III, so loss can only push toward the more
//! restrictive answer; the retransmission budgets (see `Discovery`) make that rare. Measured
//! over 1000 seeds per type when this was written: no wrong verdict except 6 restricted
//! cones reported as port-restricted (runs whose first two round trips all got through, so
//! that no loss was visible before the silent tests). Here: 300 seeds per type.

mod nat_sim;

use nat_sim::{Ports, Scenario};
use punch_proto::nat::{Behaviour::*, Classic};

const LOSS: f64 = 0.3;
const SEEDS: u64 = 300;
/// At most 1 % wrong verdicts per type.
const MAX_WRONG: usize = 3;

/// How open a verdict is: a higher rank admits more peers.
fn openness(c: Option<Classic>) -> u8 {
    match c {
        Some(Classic::Open) => 6,
        Some(Classic::FullCone) => 5,
        Some(Classic::Firewall) | Some(Classic::RestrictedCone) => 4,
        Some(Classic::PortRestrictedCone) => 3,
        Some(Classic::Symmetric) => 2,
        Some(Classic::Blocked) | None => 0,
    }
}

fn check(sc: Scenario, want: Classic) {
    let mut wrong = Vec::new();
    for seed in 0..SEEDS {
        let r = sc.clone().lossy(LOSS, seed).run().report;
        if r.classic != Some(want) {
            assert!(
                openness(r.classic) < openness(Some(want)),
                "seed {seed}: loss made {want:?} look like {:?}",
                r.classic
            );
            wrong.push((seed, r.classic));
        }
    }
    assert!(wrong.len() <= MAX_WRONG, "{want:?}: {wrong:?}");
}

#[test]
fn lossy_open() {
    check(Scenario::open(), Classic::Open);
}

#[test]
fn lossy_firewall() {
    check(
        Scenario::firewall(AddressAndPortDependent),
        Classic::Firewall,
    );
}

#[test]
fn lossy_full_cone() {
    check(
        Scenario::nat(EndpointIndependent, EndpointIndependent),
        Classic::FullCone,
    );
}

#[test]
fn lossy_restricted_cone() {
    check(
        Scenario::nat(EndpointIndependent, AddressDependent),
        Classic::RestrictedCone,
    );
}

#[test]
fn lossy_port_restricted_cone() {
    check(
        Scenario::nat(EndpointIndependent, AddressAndPortDependent),
        Classic::PortRestrictedCone,
    );
}

#[test]
fn lossy_symmetric() {
    check(
        Scenario::nat(AddressAndPortDependent, AddressAndPortDependent).ports(Ports::Random),
        Classic::Symmetric,
    );
}

#[test]
fn lossy_blocked_verdict_needs_total_silence() {
    // A path that loses 30 % is not blocked.
    for seed in 0..SEEDS {
        let r = Scenario::open().lossy(LOSS, seed).run().report;
        assert_ne!(r.classic, Some(Classic::Blocked), "seed {seed}");
    }
}
