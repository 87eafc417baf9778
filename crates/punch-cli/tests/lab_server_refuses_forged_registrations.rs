//! Lab: nobody but a name's key moves its record. `lab/register-attack.py`, in the server's
//! namespace, captures alice's signed registration off the wire, replays it from another
//! address (challenged, never taken), forges it over a nonce of its own (refused: bad
//! signature), and sends an old client's registration (told to upgrade). Alice and bob
//! then talk, every message once and in order. Then the server restarts (SIGTERM, as a
//! service manager stops it) on its data directory and a second key asks for "alice" before she is back: refused, naming why;
//! alice returns, and bob, who kept her key, reaches her and his messages arrive.
mod lab;

use std::time::Duration;

use lab::abuse::{record, Script};
use lab::relay::{chat_args, Pair};
use lab::{require_lab, start_server, Lab, Proc, EVENT_TIMEOUT};

fn spawn(name: &str, ns: &str, args: &[String]) -> Proc {
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    Proc::spawn(name, ns, &args)
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn replayed_forged_and_hijacking_registrations_are_refused() {
    let test = "forged registrations";
    require_lab(test);
    let pr = "port-restricted-cone";
    let lab = Lab::pair("forge", pr, pr);
    let (srv_ip, srv_ip2) = (
        lab.get("SRV_IP").to_string(),
        lab.get("SRV_IP2").to_string(),
    );
    // The attacker listens before alice registers.
    let attack = Script::start(
        &lab,
        "srv",
        "register-attack.py",
        &[srv_ip.as_str(), "3478", srv_ip2.as_str(), "alice", "30"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut pair = Pair::start(&lab, &lab.ns("a"), &lab.ns("b"), "auto");
    pair.connected();
    let report = attack.report();
    assert!(
        report["captured"].is_string(),
        "alice's signed registration was never seen on the wire: {report}"
    );
    let n = |k: &str| report[k].as_u64().unwrap_or(u64::MAX);
    assert_eq!(n("replay_registered"), 0, "a replay was taken: {report}");
    assert_eq!(n("replay_challenged"), n("replays"), "{report}");
    assert_eq!(n("forged_registered"), 0, "a forgery was taken: {report}");
    assert!(
        n("forged") >= 2 && n("forged_refused") == n("forged"),
        "{report}"
    );
    let legacy = &report["legacy"];
    assert_eq!(
        legacy["version"], 1,
        "the old client is answered in its version: {report}"
    );
    let upgrade = legacy["reason"].as_str().unwrap_or_default();
    assert!(upgrade.contains("upgrade"), "{report}");
    // Alice's record never moved: the pair still talks.
    pair.talk_both_ways(test, 20);

    // The server restarts on its data directory; alice is away. (The pair's homes: see
    // `lab::tempdir`; alice and bob keep their keys.)
    let home =
        std::env::temp_dir().join(format!("punch-lab-{}-{}", lab.prefix, std::process::id()));
    let home = home.to_string_lossy().into_owned();
    let Pair {
        alice, bob, server, ..
    } = pair;
    drop(alice);
    drop(bob);
    let mut server = server.expect("the pair's server");
    assert!(
        server.terminate(Duration::from_secs(5)),
        "the server did not stop on SIGTERM"
    );
    let (_server, addr) = start_server(&lab);
    let mut thief = spawn(
        "thief",
        &lab.ns("b"),
        &chat_args(&addr, "alice", &format!("{home}/thief"), "auto", &[]),
    );
    let refused = thief.wait_for(EVENT_TIMEOUT, |v| {
        v["event"] == "registered" || v["event"] == "error"
    });
    let (_, ev) = refused.unwrap_or_else(|| panic!("no answer: {}", thief.events_text()));
    assert_eq!(ev["event"], "error", "the name was taken over: {ev}");
    let why = ev["reason"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("belongs to another key"), "{why}");
    drop(thief);
    // Alice comes back; bob, who kept her key, reaches her, and his message arrives.
    let mut alice = spawn(
        "alice",
        &lab.ns("a"),
        &chat_args(&addr, "alice", &format!("{home}/a"), "auto", &[]),
    );
    assert!(
        alice.wait_event("registered", EVENT_TIMEOUT).is_some(),
        "alice did not get her name back: {}",
        alice.events_text()
    );
    let extra = ["--peer", "alice"];
    let mut bob = spawn(
        "bob",
        &lab.ns("b"),
        &chat_args(&addr, "bob", &format!("{home}/b"), "auto", &extra),
    );
    assert!(
        bob.wait_event("connected", EVENT_TIMEOUT).is_some(),
        "bob did not reach alice after the restart: {}",
        bob.events_text()
    );
    // Her key is the one bob kept: no first contact, no new key.
    let key_events = bob
        .seen
        .iter()
        .filter(|(_, v)| v["event"] == "peer_key")
        .count();
    assert_eq!(key_events, 0, "alice's key changed: {}", bob.events_text());
    bob.say("after the restart");
    let got = alice.wait_for(Duration::from_secs(10), |v| {
        v["event"] == "message" && v["text"] == "after the restart"
    });
    assert!(
        got.is_some(),
        "alice did not get bob's message: {}",
        alice.events_text()
    );
    record(&format!(
        "{test}: {} replays from {} challenged, {}/{} forgeries refused (bad signature), \
         old client told {upgrade:?}; name taken over after a restart refused: {why}",
        n("replay_challenged"),
        report["attacker"],
        n("forged_refused"),
        n("forged"),
    ));
}
