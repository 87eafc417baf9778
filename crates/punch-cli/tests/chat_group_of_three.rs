//! A group chat of three over the real binary on loopback: carol names alice and bob
//! (`--peer alice --peer bob`), both accept her. Every side reports `connected` with a
//! remote address and a numeric rtt, and is on a direct path (at once, or after starting
//! on the relay); a line carol types reaches alice and bob as a `message` event from
//! carol, and alice's line reaches carol.

#[path = "chat_support.rs"]
mod support;

use support::{wait_direct, Proc, Server, TempDir};

#[test]
fn carol_talks_to_alice_and_bob() {
    let server = Server::start();
    let homes = [
        TempDir::new("alice"),
        TempDir::new("bob"),
        TempDir::new("carol"),
    ];
    let mut alice = Proc::chat(server.addr, "alice", &homes[0], &[]);
    let mut bob = Proc::chat(server.addr, "bob", &homes[1], &[]);
    alice.wait_event("registered", &[("name", "alice")]);
    bob.wait_event("registered", &[("name", "bob")]);
    let mut carol = Proc::chat(server.addr, "carol", &homes[2], &["alice", "bob"]);

    wait_direct(&mut carol, "alice");
    wait_direct(&mut carol, "bob");
    wait_direct(&mut alice, "carol");
    wait_direct(&mut bob, "carol");

    carol.say("hello group, this is carol");
    for p in [&mut alice, &mut bob] {
        let msg = p.wait_event("message", &[("from", "carol")]);
        assert_eq!(msg["text"], "hello group, this is carol", "{msg}");
    }

    alice.say("hi carol, alice here");
    let msg = carol.wait_event("message", &[("from", "alice")]);
    assert_eq!(msg["text"], "hi carol, alice here", "{msg}");
}
