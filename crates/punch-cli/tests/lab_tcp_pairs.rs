//! Lab matrix: TCP hole punching (server main + assist ports, TLS with pinned keys) between
//! every pair of router types that works for UDP without a relay, on real kernel NAT.
//!
//! Each test builds a fresh lab [`lab::tcp::TCP_RUNS`] times, runs the `tcp_peer` example as
//! server and peers, and checks a direct TCP connection with messages both ways. Every run's
//! result is printed (failures with the routers' conntrack tables) and a line per pair goes to
//! target/lab-results/tcp-matrix.txt. The pairs that need a relay are in lab_tcp_relay.rs.
mod lab;

use lab::tcp::{tcp_pair, Expect, TcpLabOpts};

macro_rules! pairs {
    ($($name:ident: $a:literal x $b:literal => $expect:ident;)*) => {
        $(
            #[test]
            #[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
            fn $name() { tcp_pair($a, $b, Expect::$expect, TcpLabOpts::default()); })*
    };
}

pairs! {
    open_open: "open" x "open" => Direct;
    open_firewall: "open" x "firewall" => Direct;
    open_full_cone: "open" x "full-cone" => Direct;
    open_restricted_cone: "open" x "restricted-cone" => Direct;
    open_port_restricted_cone: "open" x "port-restricted-cone" => Direct;
    open_symmetric: "open" x "symmetric" => Direct;
    firewall_firewall: "firewall" x "firewall" => Direct;
    firewall_full_cone: "firewall" x "full-cone" => Direct;
    firewall_restricted_cone: "firewall" x "restricted-cone" => Direct;
    firewall_port_restricted_cone: "firewall" x "port-restricted-cone" => Direct;
    full_cone_full_cone: "full-cone" x "full-cone" => Direct;
    full_cone_restricted_cone: "full-cone" x "restricted-cone" => Direct;
    full_cone_port_restricted_cone: "full-cone" x "port-restricted-cone" => Direct;
    full_cone_symmetric: "full-cone" x "symmetric" => Direct;
    restricted_cone_restricted_cone: "restricted-cone" x "restricted-cone" => Direct;
    restricted_cone_port_restricted_cone: "restricted-cone" x "port-restricted-cone" => Direct;
    restricted_cone_symmetric: "restricted-cone" x "symmetric" => Direct;
    port_restricted_cone_port_restricted_cone: "port-restricted-cone" x "port-restricted-cone" => Direct;
}
