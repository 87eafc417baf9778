//! Lab: where a direct path is possible, the chat starts at once (on the relay if punching
//! is not done yet), moves to the direct path, and a stream of messages sent while the
//! path changes arrives complete and in order.
mod lab;

use std::time::Duration;

use lab::relay::{assert_complete, code, record, Pair, STREAM_GAP, STREAM_MESSAGES};
use lab::require_lab;
use lab::Lab;

fn upgrade(a: &str, b: &str) {
    let test = format!("relay->direct: {a} x {b}");
    require_lab(&test);
    let mut lines = Vec::new();
    for run in 0..2 {
        let lab = Lab::pair(&format!("rd{}{}{run}", code(a), code(b)), a, b);
        let mut pair = Pair::start(&lab, &lab.ns("a"), &lab.ns("b"), "auto");
        let n = STREAM_MESSAGES;
        pair.stream(n, STREAM_GAP, |_, _| {});
        let got = pair.received(n, Duration::from_secs(10));
        assert_complete(&test, &got, n, &pair);
        let first = pair
            .alice
            .seen
            .iter()
            .find(|(_, v)| v["event"] == "message" && v["text"] == "m0000")
            .map(|(t, _)| t.duration_since(pair.started).as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN);
        // Punching may still be finishing on a loaded machine: give the move to direct
        // the punching deadline and a retry's worth of time before judging.
        if pair.bob_paths().last().map(String::as_str) != Some("direct") {
            let _ = pair.bob.wait_for(Duration::from_secs(10), |v| {
                (v["event"] == "path" || v["event"] == "connected") && v["path"] == "direct"
            });
        }
        let paths = pair.bob_paths();
        assert_eq!(
            paths.last().map(String::as_str),
            Some("direct"),
            "{test}: the path did not end direct: {paths:?}\n bob: {}",
            pair.bob.events_text()
        );
        lines.push(format!(
            "first message {first:.0} ms, paths {}",
            paths.join("->")
        ));
    }
    record(&format!(
        "{test:<56} {} messages in order each run; {}",
        STREAM_MESSAGES,
        lines.join("; ")
    ));
}

macro_rules! pairs {
    ($($name:ident: $a:literal x $b:literal;)*) => {
        $(
            #[test]
            #[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
            fn $name() { upgrade($a, $b); })*
    };
}

pairs! {
    open_open: "open" x "open";
    open_firewall: "open" x "firewall";
    open_full_cone: "open" x "full-cone";
    open_restricted_cone: "open" x "restricted-cone";
    open_port_restricted_cone: "open" x "port-restricted-cone";
    open_symmetric: "open" x "symmetric";
    firewall_firewall: "firewall" x "firewall";
    firewall_full_cone: "firewall" x "full-cone";
    firewall_restricted_cone: "firewall" x "restricted-cone";
    firewall_port_restricted_cone: "firewall" x "port-restricted-cone";
    full_cone_full_cone: "full-cone" x "full-cone";
    full_cone_restricted_cone: "full-cone" x "restricted-cone";
    full_cone_port_restricted_cone: "full-cone" x "port-restricted-cone";
    full_cone_symmetric: "full-cone" x "symmetric";
    restricted_cone_restricted_cone: "restricted-cone" x "restricted-cone";
    restricted_cone_port_restricted_cone: "restricted-cone" x "port-restricted-cone";
    restricted_cone_symmetric: "restricted-cone" x "symmetric";
    port_restricted_cone_port_restricted_cone: "port-restricted-cone" x "port-restricted-cone";
}
