//! Lab: the pairs where no direct path can exist chat through the server's relay.
mod lab;

use lab::relay::{assert_complete, available, code, record, Pair};
use lab::Lab;
use std::time::Duration;

fn through_relay(a: &str, b: &str) {
    let test = format!("relay: {a} x {b}");
    if !available(&test) {
        return;
    }
    let lab = Lab::pair(&format!("ri{}{}", code(a), code(b)), a, b);
    let mut pair = Pair::start(&lab, &lab.ns("a"), &lab.ns("b"), "auto");
    let connected = pair.connected();
    assert_eq!(connected["path"], "relay", "{connected}");
    let n = 20;
    pair.stream(n, Duration::from_millis(20), |_, _| {});
    let got = pair.received(n, Duration::from_secs(10));
    assert_complete(&test, &got, n, &pair);
    pair.alice.say("back from alice");
    let back = pair.bob.wait_for(Duration::from_secs(10), |v| {
        v["event"] == "message" && v["text"] == "back from alice"
    });
    assert!(
        back.is_some(),
        "{test}: alice's message did not arrive: {}",
        pair.bob.events_text()
    );
    let paths = pair.bob_paths();
    assert!(!paths.contains(&"direct".to_string()), "{test}: {paths:?}");
    record(&format!(
        "{test:<48} connected over the relay, {n}/{n} messages in order, paths {paths:?}"
    ));
}

#[test]
fn symmetric_port_restricted_cone_through_relay() {
    through_relay("symmetric", "port-restricted-cone");
}

#[test]
fn symmetric_firewall_through_relay() {
    through_relay("symmetric", "firewall");
}

#[test]
fn symmetric_symmetric_through_relay() {
    through_relay("symmetric", "symmetric");
}
