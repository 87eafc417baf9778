//! Lab: the rendezvous server restarts in the middle of a chat. Established sessions stay
//! up (a relayed one gets a new relay session), no message is lost, and the clients
//! register again by themselves: a new peer can reach them afterwards.
mod lab;

use std::time::Duration;

use lab::relay::{assert_complete, chat_args, code, record, Pair, STREAM_GAP};
use lab::require_lab;
use lab::{start_server, tempdir, Lab, Proc, EVENT_TIMEOUT};

fn restart_mid_chat(a: &str, b: &str) {
    let test = format!("server restart mid-chat: {a} x {b}");
    require_lab(&test);
    let lab = Lab::pair(&format!("sr{}{}", code(a), code(b)), a, b);
    let mut pair = Pair::start(&lab, &lab.ns("a"), &lab.ns("b"), "auto");
    pair.connected();
    let n = 140;
    pair.stream(n, STREAM_GAP, |i, p| {
        if i == 30 {
            // Stop the server: its registrations and relay sessions are gone.
            p.server = None;
        }
        if i == 50 {
            let (server, _) = start_server(&lab);
            p.server = Some(server);
        }
    });
    let got = pair.received(n, Duration::from_secs(30));
    assert_complete(&test, &got, n, &pair);
    // alice registered again by herself: a newcomer can reach her.
    let home = tempdir(&format!("{}c", lab.prefix));
    let args = chat_args(&pair.addr, "carol", &home, "auto", &["--peer", "alice"]);
    let mut carol = Proc::spawn(
        "carol",
        &lab.ns("b"),
        &args.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    );
    let reached = carol.wait_for(EVENT_TIMEOUT, |v| {
        v["event"] == "connected" && v["peer"] == "alice"
    });
    assert!(
        reached.is_some(),
        "{test}: carol could not reach alice after the restart: {}",
        carol.events_text()
    );
    let paths = pair.bob_paths();
    record(&format!("{test:<48} {n}/{n} messages in order across the restart; carol reached alice after it; paths {}", paths.join("->")));
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn direct_pair_survives_server_restart() {
    restart_mid_chat("port-restricted-cone", "full-cone");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn relayed_pair_survives_server_restart() {
    restart_mid_chat("symmetric", "symmetric");
}
