//! Lab: two people who name each other (`alice --peer bob`, `bob --peer alice`) and start
//! at the same moment. The server opens a session for each request; both sides keep the
//! one the smaller key opened, so one connection forms, each side reports one
//! `connected`, and numbered messages sent both ways at once all arrive in order.
mod lab;

use std::time::Duration;

use lab::relay::{chat_args, record};
use lab::require_lab;
use lab::tcp::{tcp_lab, TcpLabOpts};
use lab::{start_server, tempdir, Lab, Proc, EVENT_TIMEOUT};

/// At 50 ms apart they span the UDP punching deadline (3 s here) and a move to TCP.
const MESSAGES: usize = 120;

fn spawn(name: &str, ns: &str, args: &[String]) -> Proc {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::spawn(name, ns, &args)
}

/// Numbered messages `prefix0000..` that `p` received from `from`, in arrival order.
fn received(p: &mut Proc, from: &str, prefix: &str, n: usize) -> Vec<String> {
    let last = format!("{prefix}{:04}", n - 1);
    let _ = p.wait_for(Duration::from_secs(15), |v| {
        v["event"] == "message" && v["text"] == last.as_str()
    });
    p.seen
        .iter()
        .filter(|(_, v)| v["event"] == "message" && v["from"] == from)
        .filter_map(|(_, v)| v["text"].as_str().map(str::to_string))
        .collect()
}

/// Start both, each naming the other; talk both ways; check; return the path events
/// (path/transport) each printed, for the record.
fn mutual(test: &str, lab: &Lab, extra: &[&str]) -> (String, String) {
    let (_server, addr) = start_server(lab);
    lab::tcp::wait_tcp_listening(lab, 3478);
    let home = tempdir(&lab.prefix);
    let args = |me: &str, other: &str| {
        let mut x = extra.to_vec();
        x.extend(["--peer", other]);
        chat_args(&addr, me, &format!("{home}/{me}"), "auto", &x)
    };
    let mut alice = spawn("alice", &lab.ns("a"), &args("alice", "bob"));
    let mut bob = spawn("bob", &lab.ns("b"), &args("bob", "alice"));
    for p in [&mut alice, &mut bob] {
        let ok = p.wait_for(EVENT_TIMEOUT, |v| v["event"] == "connected");
        assert!(ok.is_some(), "{test}: no connection: {}", p.events_text());
    }
    for i in 0..MESSAGES {
        alice.say(&format!("a{i:04}"));
        bob.say(&format!("b{i:04}"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let want = |prefix: &str| -> Vec<String> {
        (0..MESSAGES).map(|i| format!("{prefix}{i:04}")).collect()
    };
    let at_bob = received(&mut bob, "alice", "a", MESSAGES);
    let at_alice = received(&mut alice, "bob", "b", MESSAGES);
    assert_eq!(
        at_bob,
        want("a"),
        "{test}: alice's messages at bob\n bob: {}\n alice: {}",
        bob.events_text(),
        alice.events_text()
    );
    assert_eq!(
        at_alice,
        want("b"),
        "{test}: bob's messages at alice\n alice: {}\n bob: {}",
        alice.events_text(),
        bob.events_text()
    );
    let mut paths = Vec::new();
    for p in [&mut alice, &mut bob] {
        p.drain();
        let connected = p
            .seen
            .iter()
            .filter(|(_, v)| v["event"] == "connected")
            .count();
        assert_eq!(
            connected,
            1,
            "{test}: one connection per side: {}",
            p.events_text()
        );
        let shown: Vec<String> = p
            .seen
            .iter()
            .filter(|(_, v)| v["event"] == "connected" || v["event"] == "path")
            .map(|(_, v)| {
                format!(
                    "{}/{}",
                    v["path"].as_str().unwrap_or("?"),
                    v["transport"].as_str().unwrap_or("?")
                )
            })
            .collect();
        paths.push(shown.join("->"));
    }
    (paths[0].clone(), paths[1].clone())
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn both_name_each_other_over_udp() {
    let test = "both name each other: port-restricted-cone x port-restricted-cone, udp";
    require_lab(test);
    let lab = Lab::pair("mupp", "port-restricted-cone", "port-restricted-cone");
    let (a, b) = mutual(test, &lab, &["--transport", "udp"]);
    assert!(
        a.ends_with("direct/udp") && b.ends_with("direct/udp"),
        "{test}: {a} | {b}"
    );
    record(&format!(
        "{test:<64} {MESSAGES}/{MESSAGES} each way in order, one connection; alice {a}, bob {b}"
    ));
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn both_name_each_other_and_move_to_tcp() {
    let test = "both name each other: --transport auto, UDP only to the server";
    require_lab(test);
    let opts = TcpLabOpts {
        block_udp: false,
        udp_to_server_only: true,
        ..TcpLabOpts::default()
    };
    let lab = tcp_lab("mutc", "port-restricted-cone", "port-restricted-cone", opts);
    let (a, b) = mutual(test, &lab, &["--transport", "auto"]);
    assert!(
        a.ends_with("direct/tcp") && b.ends_with("direct/tcp"),
        "{test}: {a} | {b}"
    );
    record(&format!(
        "{test:<64} {MESSAGES}/{MESSAGES} each way in order, one connection; alice {a}, bob {b}"
    ));
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn both_name_each_other_over_tcp() {
    let test = "both name each other: port-restricted-cone x port-restricted-cone, tcp";
    require_lab(test);
    let lab = tcp_lab(
        "mutt",
        "port-restricted-cone",
        "port-restricted-cone",
        TcpLabOpts::default(),
    );
    let (a, b) = mutual(test, &lab, &["--transport", "tcp"]);
    assert!(
        a.ends_with("direct/tcp") && b.ends_with("direct/tcp"),
        "{test}: {a} | {b}"
    );
    record(&format!(
        "{test:<64} {MESSAGES}/{MESSAGES} each way in order, one connection; alice {a}, bob {b}"
    ));
}
