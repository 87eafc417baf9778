//! Lab: the pairs where no direct path can exist chat through the server's relay.
mod lab;

use lab::relay::{code, record, Pair};
use lab::require_lab;
use lab::Lab;

fn through_relay(a: &str, b: &str) {
    let test = format!("relay: {a} x {b}");
    require_lab(&test);
    let lab = Lab::pair(&format!("ri{}{}", code(a), code(b)), a, b);
    let mut pair = Pair::start(&lab, &lab.ns("a"), &lab.ns("b"), "auto");
    let connected = pair.connected();
    assert_eq!(connected["path"], "relay", "{connected}");
    let n = 20;
    pair.talk_both_ways(&test, n);
    let paths = pair.bob_paths();
    assert!(!paths.contains(&"direct".to_string()), "{test}: {paths:?}");
    record(&format!(
        "{test:<48} connected over the relay, {n}/{n} messages in order, paths {paths:?}"
    ));
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn symmetric_port_restricted_cone_through_relay() {
    through_relay("symmetric", "port-restricted-cone");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn symmetric_firewall_through_relay() {
    through_relay("symmetric", "firewall");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn symmetric_symmetric_through_relay() {
    through_relay("symmetric", "symmetric");
}
