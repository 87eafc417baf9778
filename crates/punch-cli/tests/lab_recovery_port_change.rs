//! Lab: alice's router reboots mid-chat (both routers forget every mapping) while bob's
//! packets keep arriving and take alice's old public port, so alice's traffic leaves on a
//! new port (checked in the router's connection tracking). Messages flow again within
//! 5 s (over the relay), every one once and in order, and a direct path is back within
//! 15 s: the punching that follows a lost path fails on the old ports' NAT state, and the
//! client moves to a fresh local port.
mod lab;

use std::time::Duration;

use lab::recovery::{scenario, Fault};

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn port_restricted_pair_recovers_from_a_reboot_that_changes_the_port() {
    scenario(
        "router reboot, new public port",
        "rpc",
        "port-restricted-cone",
        "port-restricted-cone",
        Fault::RouterRebootNewPort {
            outage: Duration::from_millis(1500),
        },
        true,
    );
}
