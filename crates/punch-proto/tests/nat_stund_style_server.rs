//! A RFC 3489 server such as stund answers modern requests with MAPPED-ADDRESS,
//! SOURCE-ADDRESS and CHANGED-ADDRESS only; the client reads those and reaches the same
//! verdicts as against a RFC 5780 server.

mod nat_sim;

use nat_sim::{Ports, Scenario, ServerKind, SERVER_ALT_IP, SERVER_ALT_PORT};
use punch_proto::nat::{Behaviour::*, Classic};
use std::net::SocketAddr;

#[test]
fn stund_style_answers_reach_the_same_verdicts() {
    for (sc, want) in [
        (Scenario::open(), Classic::Open),
        (
            Scenario::nat(EndpointIndependent, AddressDependent),
            Classic::RestrictedCone,
        ),
        (
            Scenario::nat(EndpointIndependent, AddressAndPortDependent),
            Classic::PortRestrictedCone,
        ),
        (
            Scenario::nat(AddressDependent, AddressAndPortDependent).ports(Ports::Random),
            Classic::Symmetric,
        ),
    ] {
        let r = sc.server(ServerKind::StundStyle).run().report;
        assert_eq!(r.classic, Some(want), "{r:#?}");
        assert_eq!(
            r.other_address,
            Some(SocketAddr::new(SERVER_ALT_IP, SERVER_ALT_PORT))
        );
    }
}
