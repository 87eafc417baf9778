//! Lab: TCP hole punching between two port-restricted cones whose routers answer an
//! unsolicited SYN with a RST instead of dropping it: `reject` (an explicit reject rule)
//! and `accept` (the Linux default without a drop rule: the router's own stack answers,
//! and its conntrack keeps the entry). A RST kills the connect it answers and, passing the
//! sender's NAT, that side's state too, so the two first SYNs must be in flight at once.
//!
//! The sites are 20 ms apart (10 ms on each core <-> router link, `punch-lab up --delay`):
//! at the lab's bare sub-millisecond latency no two SYNs sent by processes on either side
//! can cross, while on real networks they have milliseconds to. Ten fresh labs per mode;
//! at least nine must connect directly (the goal), every run is printed.
mod lab;

use lab::tcp::{tcp_pair_runs, Expect, TcpLabOpts};

/// Runs per mode, and how many must connect directly.
const RUNS: usize = 10;
const MIN_DIRECT: usize = 9;

fn rst_routers(mode: &'static str) {
    let opts = TcpLabOpts {
        wan_input: Some(mode),
        delay_ms: 10,
        ..TcpLabOpts::default()
    };
    let pr = "port-restricted-cone";
    tcp_pair_runs(pr, pr, Expect::Direct, opts, RUNS, MIN_DIRECT);
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn port_restricted_pair_direct_through_rejecting_routers() {
    rst_routers("reject");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn port_restricted_pair_direct_through_accepting_routers() {
    rst_routers("accept");
}
