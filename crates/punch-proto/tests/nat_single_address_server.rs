//! Against a server with one address (no OTHER-ADDRESS) mapping, filtering and the classic
//! name stay unknown instead of guessed; the public address, NAT or no NAT, hairpinning and
//! port allocation are still reported, and no CHANGE-REQUEST is sent.

mod nat_sim;

use std::net::SocketAddr;

use nat_sim::{Scenario, ServerKind, MAPPING_PORT, NAT_PUBLIC};
use punch_proto::nat::{Behaviour, PortAllocation, Test};

#[test]
fn single_address_server_behind_nat() {
    let run = Scenario::nat(
        Behaviour::EndpointIndependent,
        Behaviour::EndpointIndependent,
    )
    .hairpin(true)
    .server(ServerKind::Single)
    .run();
    let r = &run.report;
    assert_eq!(r.classic, None, "{r:#?}");
    assert_eq!(r.mapping, None);
    assert_eq!(r.filtering, None);
    assert_eq!(r.other_address, None);
    assert_eq!(r.nat, Some(true));
    assert_eq!(r.public, Some(SocketAddr::new(NAT_PUBLIC, MAPPING_PORT)));
    assert_eq!(r.hairpin, Some(true));
    assert_eq!(r.port_allocation, Some(PortAllocation::Preserved));
    assert!(r
        .tests
        .iter()
        .all(|o| matches!(o.test, Test::MappingI | Test::FilteringI | Test::Hairpin)));
    assert!(run.sent.iter().all(|s| !s.change_request));
    assert!(
        r.notes.iter().any(|n| n.contains("OTHER-ADDRESS")),
        "{:?}",
        r.notes
    );
    assert!(
        r.explanation.contains("no second address"),
        "{}",
        r.explanation
    );
}

#[test]
fn single_address_server_without_nat() {
    let r = Scenario::open().server(ServerKind::Single).run().report;
    assert_eq!(r.classic, None, "{r:#?}");
    assert_eq!(r.nat, Some(false));
    assert_eq!(r.filtering, None);
    assert!(r.explanation.starts_with("no NAT"), "{}", r.explanation);
}
