//! A public address behind a stateful filter is a `firewall` (RFC 3489's symmetric UDP
//! firewall), whichever way the filter keys its state.

mod nat_sim;

use nat_sim::Scenario;
use punch_proto::nat::{Behaviour, Classic};

#[test]
fn firewall_with_address_and_port_dependent_filter() {
    let r = Scenario::firewall(Behaviour::AddressAndPortDependent)
        .run()
        .report;
    assert_eq!(r.classic, Some(Classic::Firewall), "{r:#?}");
    assert_eq!(r.nat, Some(false));
    assert_eq!(r.mapping, Some(Behaviour::EndpointIndependent));
    assert_eq!(r.filtering, Some(Behaviour::AddressAndPortDependent));
    assert!(r.explanation.contains("except"), "{}", r.explanation);
}

#[test]
fn firewall_with_address_dependent_filter() {
    let r = Scenario::firewall(Behaviour::AddressDependent).run().report;
    assert_eq!(r.classic, Some(Classic::Firewall), "{r:#?}");
    assert_eq!(r.filtering, Some(Behaviour::AddressDependent));
    assert!(r.explanation.contains("every peer"), "{}", r.explanation);
}
