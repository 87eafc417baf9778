//! Without `--json`, a chat prints text: an incoming message is the line `[carol] text`.

#[path = "chat_support.rs"]
mod support;

use serde_json::Value;
use support::{Proc, Server, TempDir, EVENT_TIMEOUT};

#[test]
fn message_prints_as_name_in_brackets() {
    let server = Server::start();
    let (home_a, home_c) = (TempDir::new("alice"), TempDir::new("carol"));
    let mut alice = Proc::chat_with(server.addr, "alice", &home_a, &[], &[]);
    alice.wait_for("alice registered", EVENT_TIMEOUT, |v| {
        v.as_str()
            .is_some_and(|l| l.starts_with("registered as alice"))
    });
    let mut carol = Proc::chat(server.addr, "carol", &home_c, &["alice"]);
    carol.wait_event("connected", &[("peer", "alice")]);
    alice.wait_for("alice connected", EVENT_TIMEOUT, |v| {
        v.as_str()
            .is_some_and(|l| l.starts_with("connected to carol"))
    });

    carol.say("hello in plain text");
    alice.wait_for("the message line", EVENT_TIMEOUT, |v| {
        *v == Value::String("[carol] hello in plain text".into())
    });
    // Text mode prints no JSON at all.
    assert!(alice.seen.iter().all(Value::is_string), "{:?}", alice.seen);
}
