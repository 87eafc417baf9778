//! A chat pointed at a server that never answers gives up after the server timeout: an
//! `error` event saying the server is unreachable, and a non-zero exit status.

#[path = "chat_support.rs"]
mod support;

use std::net::UdpSocket;
use std::time::Duration;

use support::{Proc, TempDir};

#[test]
fn dead_server_exits_nonzero_with_an_error_event() {
    // Bound and silent: datagrams to it vanish, as with a server that is down.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let home = TempDir::new("alice");
    let mut alice = Proc::chat(silent.local_addr().unwrap(), "alice", &home, &[]);
    let ev = alice.wait_event("error", &[]);
    let reason = ev["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason: {ev}"));
    assert!(reason.contains("unreachable"), "{ev}");
    assert!(ev["peer"].is_null(), "not about a peer: {ev}");
    let status = alice.wait_exit(Duration::from_secs(4));
    assert!(!status.success(), "exit status {status}");
    assert!(
        !alice.seen.iter().any(|v| v["event"] == "registered"),
        "{:?}",
        alice.seen
    );
}
