//! Endpoint-independent mapping with address-and-port-dependent filtering (Linux
//! `masquerade`) is a `port-restricted-cone`, found in about 1.5 s.

mod nat_sim;

use std::time::Duration;

use nat_sim::Scenario;
use punch_proto::nat::{Behaviour, Classic, Outcome, PortAllocation, Test};

#[test]
fn port_restricted_cone() {
    let run = Scenario::nat(
        Behaviour::EndpointIndependent,
        Behaviour::AddressAndPortDependent,
    )
    .run();
    let r = &run.report;
    assert_eq!(r.classic, Some(Classic::PortRestrictedCone), "{r:#?}");
    assert_eq!(r.mapping, Some(Behaviour::EndpointIndependent));
    assert_eq!(r.filtering, Some(Behaviour::AddressAndPortDependent));
    assert_eq!(r.port_allocation, Some(PortAllocation::Preserved));
    let order: Vec<(Test, Outcome)> = r.tests.iter().map(|o| (o.test, o.outcome)).collect();
    assert_eq!(
        order,
        [
            (Test::MappingI, Outcome::Answered),
            (Test::FilteringI, Outcome::Answered),
            (Test::FilteringII, Outcome::NoAnswer),
            (Test::FilteringIII, Outcome::NoAnswer),
            (Test::Hairpin, Outcome::NoAnswer),
            (Test::Hairpin, Outcome::NoAnswer),
            (Test::MappingII, Outcome::Answered),
        ]
    );
    // One silent phase of 7 × 200 ms, plus a few round trips.
    assert!(
        run.elapsed < Duration::from_millis(1700),
        "{:?}",
        run.elapsed
    );
    assert!(r.explanation.contains("symmetric"), "{}", r.explanation);
}
