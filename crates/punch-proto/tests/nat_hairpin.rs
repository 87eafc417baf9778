//! Hairpinning (RFC 5780 §3.4) is reported as the NAT does it, also when the receiving
//! mapping filters by address and port (the probes go both ways and open each other).

mod nat_sim;

use nat_sim::{Scenario, NAT_PUBLIC};
use punch_proto::nat::{Behaviour::*, Classic, Outcome, Test};

#[test]
fn hairpin_on() {
    let r = Scenario::nat(EndpointIndependent, EndpointIndependent)
        .hairpin(true)
        .run()
        .report;
    assert_eq!(r.hairpin, Some(true), "{r:#?}");
    let probe = r
        .tests
        .iter()
        .find(|o| o.test == Test::Hairpin && o.outcome == Outcome::Answered)
        .unwrap();
    // It came in from our own public address.
    assert_eq!(probe.response_from.map(|a| a.ip()), Some(NAT_PUBLIC));
}

#[test]
fn hairpin_off() {
    let r = Scenario::nat(EndpointIndependent, EndpointIndependent)
        .hairpin(false)
        .run()
        .report;
    assert_eq!(r.hairpin, Some(false), "{r:#?}");
}

#[test]
fn hairpin_through_port_restricted_filter() {
    let r = Scenario::nat(EndpointIndependent, AddressAndPortDependent)
        .hairpin(true)
        .run()
        .report;
    assert_eq!(r.hairpin, Some(true), "{r:#?}");
    // The probes did not disturb the filtering verdict.
    assert_eq!(r.classic, Some(Classic::PortRestrictedCone));
}
