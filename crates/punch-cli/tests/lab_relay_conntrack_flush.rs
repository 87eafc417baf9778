//! Lab: flushing both NAT routers' connection tracking (every mapping and filter state)
//! in the middle of a chat loses no message: the session falls back to the relay or
//! punches again, and carries on.
mod lab;

use std::time::Duration;

use lab::relay::{assert_complete, code, conntrack_flush, record, Pair, STREAM_GAP};
use lab::require_lab;
use lab::Lab;

fn flush_mid_chat(a: &str, b: &str) {
    let test = format!("conntrack -F mid-chat: {a} x {b}");
    require_lab(&test);
    let lab = Lab::pair(&format!("cf{}{}", code(a), code(b)), a, b);
    let mut pair = Pair::start(&lab, &lab.ns("a"), &lab.ns("b"), "auto");
    pair.connected();
    let n = 140;
    pair.stream(n, STREAM_GAP, |i, _| {
        if i == 40 {
            conntrack_flush(&lab, "ra");
            conntrack_flush(&lab, "rb");
        }
    });
    let got = pair.received(n, Duration::from_secs(20));
    assert_complete(&test, &got, n, &pair);
    let paths = pair.bob_paths();
    record(&format!(
        "{test:<48} {n}/{n} messages in order across the flush; paths {}",
        paths.join("->")
    ));
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn port_restricted_cone_pair_survives_conntrack_flush() {
    flush_mid_chat("port-restricted-cone", "port-restricted-cone");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn symmetric_pair_on_relay_survives_conntrack_flush() {
    flush_mid_chat("symmetric", "symmetric");
}
