//! A full-cone NAT (endpoint-independent mapping and filtering, ports preserved) is named
//! `full-cone`, with its public address and preserved ports.

mod nat_sim;

use nat_sim::{Scenario, FILTERING_PORT, MAPPING_PORT, NAT_PUBLIC};
use punch_proto::nat::{Behaviour, Classic, Outcome, PortAllocation, Test};
use std::net::SocketAddr;

#[test]
fn full_cone() {
    let run = Scenario::nat(
        Behaviour::EndpointIndependent,
        Behaviour::EndpointIndependent,
    )
    .run();
    let r = &run.report;
    assert_eq!(r.classic, Some(Classic::FullCone), "{r:#?}");
    assert_eq!(r.mapping, Some(Behaviour::EndpointIndependent));
    assert_eq!(r.filtering, Some(Behaviour::EndpointIndependent));
    assert_eq!(r.nat, Some(true));
    assert_eq!(r.public, Some(SocketAddr::new(NAT_PUBLIC, MAPPING_PORT)));
    assert_eq!(r.port_allocation, Some(PortAllocation::Preserved));
    assert_eq!(r.hairpin, Some(false));
    let f1 = r.tests.iter().find(|o| o.test == Test::FilteringI).unwrap();
    assert_eq!(f1.mapped, Some(SocketAddr::new(NAT_PUBLIC, FILTERING_PORT)));
    // Test II answered, so test III was cut short; mapping test II matched test I.
    let f3 = r
        .tests
        .iter()
        .find(|o| o.test == Test::FilteringIII)
        .unwrap();
    assert_eq!(f3.outcome, Outcome::Cancelled);
    assert!(r.tests.iter().all(|o| o.test != Test::MappingIII));
    assert!(r.explanation.contains("any peer"), "{}", r.explanation);
}
