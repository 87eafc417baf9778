//! A server that advertises an alternate address but answers change requests from the
//! address they were sent to must not make a filtering NAT look open: filtering and the
//! classic name become unknown, with a note.

mod nat_sim;

use nat_sim::{Scenario, ServerKind};
use punch_proto::nat::Behaviour::*;

#[test]
fn ignored_change_request_makes_filtering_unknown() {
    let r = Scenario::nat(EndpointIndependent, AddressAndPortDependent)
        .server(ServerKind::IgnoresChangeRequest)
        .run()
        .report;
    assert_eq!(r.filtering, None, "{r:#?}");
    assert_eq!(r.classic, None);
    // The mapping tests do not depend on CHANGE-REQUEST.
    assert_eq!(r.mapping, Some(EndpointIndependent));
    assert!(
        r.notes.iter().any(|n| n.contains("ignores CHANGE-REQUEST")),
        "{:?}",
        r.notes
    );
}
