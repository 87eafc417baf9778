//! Lab: the TCP relay fallback. For the pairs where no direct path can exist (symmetric with
//! port-restricted cone, firewall or symmetric), TCP punching fails within the deadline and
//! both peers meet through the server's main port; TLS runs end to end through the splice
//! and messages go both ways. Results go to target/lab-results/tcp-matrix.txt.
mod lab;

use lab::tcp::{tcp_pair, Expect, TcpLabOpts};

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn symmetric_port_restricted_cone_relays() {
    tcp_pair(
        "symmetric",
        "port-restricted-cone",
        Expect::Relay,
        TcpLabOpts::default(),
    );
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn symmetric_firewall_relays() {
    tcp_pair(
        "symmetric",
        "firewall",
        Expect::Relay,
        TcpLabOpts::default(),
    );
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn symmetric_symmetric_relays() {
    tcp_pair(
        "symmetric",
        "symmetric",
        Expect::Relay,
        TcpLabOpts::default(),
    );
}
