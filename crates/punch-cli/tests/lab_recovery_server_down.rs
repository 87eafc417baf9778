//! Lab: the rendezvous server goes away for 30 s mid-chat and comes back empty. A pair on
//! a direct path keeps talking throughout; a pair that only the relay can carry (symmetric
//! NATs on both sides) resumes within 5 s of the server's return, every message once and
//! in order (QUIC's connection outlives the outage).
mod lab;

use std::time::Duration;

use lab::recovery::{scenario, Fault};

const DOWN: Duration = Duration::from_secs(30);

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn direct_pair_talks_through_a_server_outage() {
    scenario(
        "server down 30 s",
        "sdd",
        "port-restricted-cone",
        "port-restricted-cone",
        Fault::ServerDown { down: DOWN },
        false,
    );
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn relayed_pair_resumes_when_the_server_returns() {
    scenario(
        "server down 30 s",
        "sdr",
        "symmetric",
        "symmetric",
        Fault::ServerDown { down: DOWN },
        false,
    );
}
