//! Lab matrix: UDP hole punching between every pair of router types, on real kernel NAT.
//!
//! Each test builds a fresh lab [`lab::RUNS`] times, runs a real `punch server` and two
//! `punch chat` peers, and checks a direct connection with messages both ways — or, for
//! the pairs where no direct path can exist, a clear error within the deadline. Each prints
//! its success rate and median times (collected in target/lab-results/udp-matrix.txt).
mod lab;

use lab::pair_matrix;

macro_rules! pairs {
    ($($name:ident: $a:literal x $b:literal => $direct:literal;)*) => {
        $(
            #[test]
            #[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
            fn $name() { pair_matrix($a, $b, $direct); })*
    };
}

pairs! {
    open_open: "open" x "open" => true;
    open_firewall: "open" x "firewall" => true;
    open_full_cone: "open" x "full-cone" => true;
    open_restricted_cone: "open" x "restricted-cone" => true;
    open_port_restricted_cone: "open" x "port-restricted-cone" => true;
    open_symmetric: "open" x "symmetric" => true;
    firewall_firewall: "firewall" x "firewall" => true;
    firewall_full_cone: "firewall" x "full-cone" => true;
    firewall_restricted_cone: "firewall" x "restricted-cone" => true;
    firewall_port_restricted_cone: "firewall" x "port-restricted-cone" => true;
    full_cone_full_cone: "full-cone" x "full-cone" => true;
    full_cone_restricted_cone: "full-cone" x "restricted-cone" => true;
    full_cone_port_restricted_cone: "full-cone" x "port-restricted-cone" => true;
    full_cone_symmetric: "full-cone" x "symmetric" => true;
    restricted_cone_restricted_cone: "restricted-cone" x "restricted-cone" => true;
    restricted_cone_port_restricted_cone: "restricted-cone" x "port-restricted-cone" => true;
    restricted_cone_symmetric: "restricted-cone" x "symmetric" => true;
    port_restricted_cone_port_restricted_cone: "port-restricted-cone" x "port-restricted-cone" => true;
    // No direct path can exist without a relay: a clear error is the right answer.
    symmetric_port_restricted_cone: "symmetric" x "port-restricted-cone" => false;
    symmetric_firewall: "symmetric" x "firewall" => false;
    symmetric_symmetric: "symmetric" x "symmetric" => false;
}
