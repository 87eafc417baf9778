//! Lab: a rendezvous server that lies about a key. Bob meets alice through the honest
//! server, so her key is in his `known_peers`. Then he asks for her again through
//! `lab/lying-proxy.py`, a proxy on the server's second address that forwards everything
//! but swaps the key in every introduction. Bob must refuse, loudly, naming the file and
//! the line, and must never report a connection. The proxy's count of swapped keys shows
//! that the lie was told.
mod lab;

use std::time::Duration;

use lab::abuse::Script;
use lab::relay::chat_args;
use lab::tcp::wait_bound;
use lab::{require_lab, start_server, tempdir, Lab, Proc, EVENT_TIMEOUT};

fn spawn(name: &str, ns: &str, args: &[String]) -> Proc {
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    Proc::spawn(name, ns, &args)
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn a_known_peer_introduced_with_another_key_is_refused() {
    let test = "lying server";
    require_lab(test);
    let pr = "port-restricted-cone";
    let lab = Lab::pair("liar", pr, pr);
    let (_server, honest) = start_server(&lab);
    let home = tempdir(&lab.prefix);
    let (a_home, b_home) = (format!("{home}/a"), format!("{home}/b"));

    let mut alice = spawn(
        "alice",
        &lab.ns("a"),
        &chat_args(&honest, "alice", &a_home, "auto", &[]),
    );
    assert!(
        alice.wait_event("registered", EVENT_TIMEOUT).is_some(),
        "alice did not register: {}",
        alice.events_text()
    );
    // Bob meets alice through the honest server: her key is recorded.
    let extra = ["--peer", "alice"];
    let mut bob = spawn(
        "bob",
        &lab.ns("b"),
        &chat_args(&honest, "bob", &b_home, "auto", &extra),
    );
    let first = bob.wait_for(EVENT_TIMEOUT, |v| v["event"] == "peer_key");
    let (_, first) = first.unwrap_or_else(|| panic!("no peer_key event: {}", bob.events_text()));
    assert_eq!(first["first_contact"], true, "{first}");
    assert!(
        bob.wait_event("connected", EVENT_TIMEOUT).is_some(),
        "bob did not reach alice through the honest server: {}",
        bob.events_text()
    );
    assert!(bob.finish(Duration::from_secs(5)), "bob did not leave");

    // The lying proxy on the server's second address.
    let (srv_ip, srv_ip2) = (
        lab.get("SRV_IP").to_string(),
        lab.get("SRV_IP2").to_string(),
    );
    let proxy = Script::start(
        &lab,
        "srv",
        "lying-proxy.py",
        &[srv_ip2.as_str(), "3478", srv_ip.as_str(), "3478", "12"],
    );
    wait_bound(&lab.ns("srv"), "-Huln", &format!("src {srv_ip2}:3478"));
    let liar = format!("{srv_ip2}:3478");
    let mut bob = spawn(
        "bob",
        &lab.ns("b"),
        &chat_args(&liar, "bob", &b_home, "auto", &extra),
    );
    let refused = bob.wait_for(EVENT_TIMEOUT, |v| {
        let refusal = v["reason"].as_str().is_some_and(|r| r.contains("REFUSED"));
        v["event"] == "connected" || (v["event"] == "error" && refusal)
    });
    let (_, ev) =
        refused.unwrap_or_else(|| panic!("bob reported no refusal: {}", bob.events_text()));
    assert_eq!(ev["event"], "error", "bob trusted the lying server: {ev}");
    let reason = ev["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("known_peers") && reason.contains("line 2"),
        "{reason}"
    );
    // Give a wrong connection the time to appear: it must not.
    let connected = bob.wait_event("connected", Duration::from_secs(3));
    assert!(connected.is_none(), "bob connected: {}", bob.events_text());
    drop(bob);
    drop(alice);
    let report = proxy.report();
    assert!(
        report["keys_swapped"].as_u64().unwrap_or(0) >= 1,
        "the proxy swapped no key, so nothing was tested: {report}"
    );
    lab::abuse::record(&format!(
        "{test}: bob refused alice's swapped key (proxy swapped {} introductions): {reason}",
        report["keys_swapped"]
    ));
}
