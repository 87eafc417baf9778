//! A host with a public address and no filter is `open`: no NAT, endpoint-independent
//! behaviour, public address equal to the local one.

mod nat_sim;

use std::net::SocketAddr;

use nat_sim::{Scenario, HOST_PUBLIC, MAPPING_PORT, SERVER_ALT_IP};
use punch_proto::nat::{Behaviour, Classic, PortAllocation, Test};

#[test]
fn open() {
    let run = Scenario::open().run();
    let r = &run.report;
    assert_eq!(r.classic, Some(Classic::Open), "{r:#?}");
    assert_eq!(r.nat, Some(false));
    assert_eq!(r.mapping, Some(Behaviour::EndpointIndependent));
    assert_eq!(r.filtering, Some(Behaviour::EndpointIndependent));
    assert_eq!(r.public, Some(SocketAddr::new(HOST_PUBLIC, MAPPING_PORT)));
    assert_eq!(r.port_allocation, Some(PortAllocation::Preserved));
    // Our own address always comes back to us.
    assert_eq!(r.hairpin, Some(true));
    // Without NAT the mapping tests toward the alternate address are pointless.
    assert!(r
        .tests
        .iter()
        .all(|o| !matches!(o.test, Test::MappingII | Test::MappingIII)));
    assert!(run.sent.iter().all(|s| s.dest.ip() != SERVER_ALT_IP));
    assert!(r.explanation.contains("no NAT"), "{}", r.explanation);
}
