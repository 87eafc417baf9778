//! Discovery ends in bounded virtual time however much is lost, and quickly on a clean path.

mod nat_sim;

use std::time::Duration;

use nat_sim::{Ports, Scenario};
use punch_proto::nat::Behaviour::*;

/// Four phases of two retransmission budgets (2 × 7 × 200 ms) plus pacing.
const BOUND: Duration = Duration::from_secs(12);

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::open(),
        Scenario::blocked(),
        Scenario::nat(EndpointIndependent, EndpointIndependent).hairpin(true),
        Scenario::nat(EndpointIndependent, AddressAndPortDependent),
        Scenario::nat(AddressAndPortDependent, AddressAndPortDependent).ports(Ports::Random),
    ]
}

#[test]
fn heavy_loss_still_ends_in_bounded_time() {
    for sc in scenarios() {
        for loss in [0.5, 0.7, 0.9] {
            for seed in 0..50 {
                let run = sc.clone().lossy(loss, seed).run();
                assert!(
                    run.elapsed <= BOUND,
                    "{sc:?} loss {loss} seed {seed}: {:?}",
                    run.elapsed
                );
            }
        }
    }
}

#[test]
fn clean_path_takes_one_silent_phase_at_most() {
    for sc in scenarios() {
        let run = sc.run();
        assert!(
            run.elapsed < Duration::from_millis(1600),
            "{sc:?}: {:?}",
            run.elapsed
        );
    }
}
