//! Tests run in an order in which none can spoil the next: the Filtering socket never sends
//! to the alternate address, and nothing goes to the alternate IP before every filtering
//! test has ended.

mod nat_sim;

use nat_sim::{server_socket, Ports, Scenario, SERVER_ALT_IP};
use punch_proto::nat::{Behaviour::*, LocalSocket, Test};
use punch_proto::stun::SocketId;

#[test]
fn filtering_runs_before_anything_touches_the_alternate_address() {
    for sc in [
        Scenario::nat(EndpointIndependent, AddressDependent),
        Scenario::nat(AddressAndPortDependent, AddressAndPortDependent).ports(Ports::Random),
        Scenario::nat(EndpointIndependent, EndpointIndependent).lossy(0.3, 5),
    ] {
        let run = sc.run();
        let from_filtering = run
            .sent
            .iter()
            .filter(|s| s.socket == LocalSocket::Filtering);
        for s in from_filtering {
            assert!(
                server_socket(s.dest).is_none_or(|id| id == SocketId::PRIMARY),
                "Filtering socket sent to {}",
                s.dest
            );
        }
        let last_filtering_test = run
            .sent
            .iter()
            .filter(|s| s.change_request)
            .map(|s| s.at)
            .max()
            .unwrap();
        let first_to_alternate = run
            .sent
            .iter()
            .find(|s| s.dest.ip() == SERVER_ALT_IP)
            .unwrap();
        assert!(
            first_to_alternate.at > last_filtering_test,
            "{:?}",
            run.sent
        );
        assert_eq!(first_to_alternate.socket, LocalSocket::Mapping);
        let order: Vec<Test> = run.report.tests.iter().map(|o| o.test).collect();
        let pos = |t| order.iter().position(|&x| x == t).unwrap();
        assert!(pos(Test::FilteringIII) < pos(Test::MappingII));
    }
}
