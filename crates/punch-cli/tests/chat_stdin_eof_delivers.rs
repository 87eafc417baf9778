//! Closing stdin (Ctrl-D, or the end of piped input) makes a chat deliver what was typed
//! and exit 0: the other side prints the message.

#[path = "chat_support.rs"]
mod support;

use std::time::Duration;

use support::{Proc, Server, TempDir};

/// Leaving waits (bounded) for the peer to acknowledge the stream, then closes.
const EXIT_TIMEOUT: Duration = Duration::from_secs(8);

#[test]
fn typed_line_is_delivered_before_exit() {
    let server = Server::start();
    let (home_a, home_b) = (TempDir::new("alice"), TempDir::new("bob"));
    let mut bob = Proc::chat(server.addr, "bob", &home_b, &[]);
    bob.wait_event("registered", &[]);
    let mut alice = Proc::chat(server.addr, "alice", &home_a, &["bob"]);
    alice.wait_event("connected", &[("peer", "bob")]);

    alice.say("last words");
    alice.close_stdin();
    let status = alice.wait_exit(EXIT_TIMEOUT);
    assert!(status.success(), "exit status {status}");
    let msg = bob.wait_event("message", &[("from", "alice")]);
    assert_eq!(msg["text"], "last words");
    bob.wait_event("disconnected", &[("peer", "alice")]);
}

#[test]
fn piped_input_is_delivered_to_the_named_peer() {
    let server = Server::start();
    let (home_a, home_b) = (TempDir::new("alice"), TempDir::new("bob"));
    let mut bob = Proc::chat(server.addr, "bob", &home_b, &[]);
    bob.wait_event("registered", &[]);
    // Input that is complete before anything is connected, as from a pipe.
    let mut alice = Proc::chat(server.addr, "alice", &home_a, &["bob"]);
    alice.say("piped line");
    alice.close_stdin();
    let status = alice.wait_exit(EXIT_TIMEOUT);
    assert!(status.success(), "exit status {status}");
    let msg = bob.wait_event("message", &[("from", "alice")]);
    assert_eq!(msg["text"], "piped line");
}
