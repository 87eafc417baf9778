//! A client sending RFC 3489 requests (no magic cookie) gets RFC 3489 answers from our
//! responder (MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS) and reaches the same verdicts.

mod nat_sim;

use nat_sim::{Ports, Scenario};
use punch_proto::nat::{Behaviour::*, Classic, Dialect, Test};

fn cases() -> Vec<(Scenario, Classic)> {
    vec![
        (Scenario::open(), Classic::Open),
        (
            Scenario::firewall(AddressAndPortDependent),
            Classic::Firewall,
        ),
        (
            Scenario::nat(EndpointIndependent, EndpointIndependent),
            Classic::FullCone,
        ),
        (
            Scenario::nat(EndpointIndependent, AddressDependent),
            Classic::RestrictedCone,
        ),
        (
            Scenario::nat(EndpointIndependent, AddressAndPortDependent),
            Classic::PortRestrictedCone,
        ),
        (
            Scenario::nat(AddressAndPortDependent, AddressAndPortDependent).ports(Ports::Random),
            Classic::Symmetric,
        ),
    ]
}

#[test]
fn classic_requests_reach_the_same_verdicts() {
    for (sc, want) in cases() {
        let r = sc.dialect(Dialect::Classic).run().report;
        assert_eq!(r.classic, Some(want), "{r:#?}");
        let t1 = r.tests.iter().find(|o| o.test == Test::MappingI).unwrap();
        // Read from SOURCE-ADDRESS and CHANGED-ADDRESS.
        assert_eq!(t1.response_origin, t1.response_from);
        assert!(t1.other_address.is_some());
    }
}
