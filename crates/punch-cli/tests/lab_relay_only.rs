//! Lab: `--relay only` carries a chat for every pair of router types, without punching.
mod lab;

use std::time::Duration;

use lab::relay::{assert_complete, code, record, Pair};
use lab::require_lab;
use lab::Lab;

const TYPES: [&str; 6] = [
    "open",
    "firewall",
    "full-cone",
    "restricted-cone",
    "port-restricted-cone",
    "symmetric",
];

fn relay_only(a: &str) {
    for b in TYPES.iter().skip_while(|t| **t != a) {
        let test = format!("relay only: {a} x {b}");
        require_lab(&test);
        let lab = Lab::pair(&format!("ro{}{}", code(a), code(b)), a, b);
        let mut pair = Pair::start(&lab, &lab.ns("a"), &lab.ns("b"), "only");
        let connected = pair.connected();
        assert_eq!(connected["path"], "relay", "{test}: {connected}");
        let n = 10;
        pair.stream(n, Duration::from_millis(10), |_, _| {});
        let got = pair.received(n, Duration::from_secs(10));
        assert_complete(&test, &got, n, &pair);
        let paths = pair.bob_paths();
        assert!(paths.iter().all(|p| p == "relay"), "{test}: {paths:?}");
        record(&format!("{test:<48} relay, {n}/{n} messages in order"));
    }
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn relay_only_from_open() {
    relay_only("open");
}
#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn relay_only_from_firewall() {
    relay_only("firewall");
}
#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn relay_only_from_full_cone() {
    relay_only("full-cone");
}
#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn relay_only_from_restricted_cone() {
    relay_only("restricted-cone");
}
#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn relay_only_from_port_restricted_cone() {
    relay_only("port-restricted-cone");
}
#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn relay_only_from_symmetric() {
    relay_only("symmetric");
}
