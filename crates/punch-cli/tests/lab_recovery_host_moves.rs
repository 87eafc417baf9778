//! Lab: bob moves to another network mid-chat (his namespace's link goes to a third
//! router: a new LAN address, a new public address; `punch chat` keeps running and its
//! socket its port). bob's client notices the new address, registers again and both
//! sides punch again: messages flow again within 5 s, every one once and in order, and a
//! direct path is back within 15 s.
mod lab;

use lab::recovery::{scenario, Fault};

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn port_restricted_pair_recovers_when_bob_moves() {
    scenario(
        "peer moves to another network",
        "mov",
        "port-restricted-cone",
        "port-restricted-cone",
        Fault::BobMoves,
        true,
    );
}
