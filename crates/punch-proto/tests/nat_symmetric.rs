//! Any mapping that depends on the destination is `symmetric`: address-and-port-dependent
//! with random ports (Linux `masquerade fully-random`), address-dependent, and one with
//! sequential ports, whose port allocation is reported as such.

mod nat_sim;

use nat_sim::{Ports, Scenario};
use punch_proto::nat::{Behaviour, Classic, PortAllocation, Test};

#[test]
fn symmetric_random_ports() {
    let r = Scenario::nat(
        Behaviour::AddressAndPortDependent,
        Behaviour::AddressAndPortDependent,
    )
    .ports(Ports::Random)
    .run()
    .report;
    assert_eq!(r.classic, Some(Classic::Symmetric), "{r:#?}");
    assert_eq!(r.mapping, Some(Behaviour::AddressAndPortDependent));
    assert_eq!(r.filtering, Some(Behaviour::AddressAndPortDependent));
    assert_eq!(r.port_allocation, Some(PortAllocation::Random));
    assert!(r.tests.iter().any(|o| o.test == Test::MappingIII));
    assert!(
        r.explanation.starts_with("ports change per destination"),
        "{}",
        r.explanation
    );
}

#[test]
fn symmetric_address_dependent_mapping() {
    let r = Scenario::nat(
        Behaviour::AddressDependent,
        Behaviour::AddressAndPortDependent,
    )
    .ports(Ports::Random)
    .run()
    .report;
    assert_eq!(r.classic, Some(Classic::Symmetric), "{r:#?}");
    assert_eq!(r.mapping, Some(Behaviour::AddressDependent));
}

#[test]
fn symmetric_sequential_ports() {
    let r = Scenario::nat(
        Behaviour::AddressAndPortDependent,
        Behaviour::AddressAndPortDependent,
    )
    .ports(Ports::Sequential)
    .run()
    .report;
    assert_eq!(r.classic, Some(Classic::Symmetric), "{r:#?}");
    assert_eq!(r.port_allocation, Some(PortAllocation::Sequential));
}

#[test]
fn symmetric_with_endpoint_independent_filtering_is_still_symmetric() {
    let r = Scenario::nat(
        Behaviour::AddressAndPortDependent,
        Behaviour::EndpointIndependent,
    )
    .ports(Ports::Random)
    .run()
    .report;
    assert_eq!(r.classic, Some(Classic::Symmetric), "{r:#?}");
    assert_eq!(r.filtering, Some(Behaviour::EndpointIndependent));
}
