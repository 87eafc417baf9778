//! Endpoint-independent mapping with address-dependent filtering is a `restricted-cone`,
//! also when the filter's memory is host-wide (the lab's `@contacted` set), which the
//! mapping tests toward the alternate address would spoil if they ran first.

mod nat_sim;

use nat_sim::{Scenario, Scope};
use punch_proto::nat::{Behaviour, Classic, Outcome, Test};

fn restricted(scope: Scope) {
    let r = Scenario::nat(Behaviour::EndpointIndependent, Behaviour::AddressDependent)
        .scope(scope)
        .run()
        .report;
    assert_eq!(
        r.classic,
        Some(Classic::RestrictedCone),
        "{scope:?}: {r:#?}"
    );
    assert_eq!(r.mapping, Some(Behaviour::EndpointIndependent));
    assert_eq!(r.filtering, Some(Behaviour::AddressDependent));
    let outcome = |t| r.tests.iter().find(|o| o.test == t).unwrap().outcome;
    assert_eq!(outcome(Test::FilteringII), Outcome::NoAnswer);
    assert_eq!(outcome(Test::FilteringIII), Outcome::Answered);
}

#[test]
fn restricted_cone_per_mapping_filter() {
    restricted(Scope::PerMapping);
}

#[test]
fn restricted_cone_host_wide_filter() {
    restricted(Scope::HostWide);
}
