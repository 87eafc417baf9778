//! Lab: `punch chat --transport auto` tries UDP, then TCP, then the relay.
//!
//! - Routers that pass UDP only to and from the server (`punch-lab up --block-udp-peers`):
//!   the chat starts on the UDP relay at once, UDP punching fails, a punched TCP
//!   connection follows, and the chat moves to it while messages flow: every one arrives
//!   once and in order, and the answer comes back over TCP.
//! - Two symmetric NATs: neither UDP nor TCP punches, and the chat stays on the relay
//!   and says why.
mod lab;

use std::time::Duration;

use lab::relay::{assert_complete, record, Pair, STREAM_GAP};
use lab::require_lab;
use lab::tcp::{tcp_lab, TcpLabOpts};

/// Messages sent while the path changes: at [`STREAM_GAP`] apart they span the UDP
/// punching deadline (3 s in these tests) and the TCP punching after it.
const MESSAGES: usize = 120;

/// A chat pair with `--transport auto --relay auto`.
fn auto_pair(lab: &lab::Lab) -> Pair {
    let extra = ["--transport", "auto"];
    Pair::start_with(lab, &lab.ns("a"), &lab.ns("b"), "auto", &extra)
}

/// The `path` and `connected` events bob printed, as (path, transport).
fn bob_paths(pair: &mut Pair) -> Vec<(String, String)> {
    pair.bob.drain();
    pair.bob
        .seen
        .iter()
        .filter(|(_, v)| v["event"] == "connected" || v["event"] == "path")
        .map(|(_, v)| {
            let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
            (s("path"), s("transport"))
        })
        .collect()
}

fn show(paths: &[(String, String)]) -> String {
    paths
        .iter()
        .map(|(p, t)| format!("{p}/{t}"))
        .collect::<Vec<_>>()
        .join("->")
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn auto_moves_from_the_udp_relay_to_punched_tcp() {
    let test = "chat --transport auto: port-restricted-cone x port-restricted-cone, UDP only to the server";
    require_lab(test);
    let opts = TcpLabOpts {
        block_udp: false,
        udp_to_server_only: true,
        ..TcpLabOpts::default()
    };
    let lab = tcp_lab("tapp", "port-restricted-cone", "port-restricted-cone", opts);
    let mut pair = auto_pair(&lab);
    let connected = pair.connected();
    assert_eq!(connected["transport"], "udp", "{test}: {connected}");
    assert_eq!(connected["path"], "relay", "{test}: {connected}");
    pair.stream(MESSAGES, STREAM_GAP, |_, _| {});
    let got = pair.received(MESSAGES, Duration::from_secs(15));
    assert_complete(test, &got, MESSAGES, &pair);
    let paths = bob_paths(&mut pair);
    assert_eq!(
        paths.last(),
        Some(&("direct".to_string(), "tcp".to_string())),
        "{test}: the chat did not end on direct TCP: {}\n bob: {}\n alice: {}",
        show(&paths),
        pair.bob.events_text(),
        pair.alice.events_text()
    );
    // Alice moved too, and her line reaches bob over TCP.
    pair.answer_back(test);
    let alice_moved = pair
        .alice
        .seen
        .iter()
        .any(|(_, v)| v["event"] == "path" && v["transport"] == "tcp" && v["path"] == "direct");
    assert!(
        alice_moved,
        "{test}: alice did not report the move: {}",
        pair.alice.events_text()
    );
    record(&format!(
        "{test:<64} {MESSAGES}/{MESSAGES} in order while moving; paths {}",
        show(&paths)
    ));
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn auto_stays_on_the_relay_when_tcp_cannot_punch_either() {
    let test = "chat --transport auto: symmetric x symmetric";
    require_lab(test);
    let lab = tcp_lab("tass", "symmetric", "symmetric", TcpLabOpts::default());
    let mut pair = auto_pair(&lab);
    let connected = pair.connected();
    assert_eq!(connected["path"], "relay", "{test}: {connected}");
    pair.stream(MESSAGES, STREAM_GAP, |_, _| {});
    let got = pair.received(MESSAGES, Duration::from_secs(15));
    assert_complete(test, &got, MESSAGES, &pair);
    let gave_up = pair.bob.wait_for(Duration::from_secs(10), |v| {
        v["event"] == "path"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("no direct TCP path either"))
    });
    assert!(
        gave_up.is_some(),
        "{test}: bob did not say TCP failed too: {}",
        pair.bob.events_text()
    );
    let paths = bob_paths(&mut pair);
    assert!(
        paths.iter().all(|(p, t)| p == "relay" && t == "udp"),
        "{test}: {}",
        show(&paths)
    );
    record(&format!(
        "{test:<64} {MESSAGES}/{MESSAGES} in order; UDP and TCP punching failed, relay kept"
    ));
}
