//! `--peer nobody` for a name nobody registered gives an `error` event for that peer whose
//! reason says the peer is unknown; the chat keeps running and leaves cleanly on Ctrl-D.

#[path = "chat_support.rs"]
mod support;

use std::time::Duration;

use support::{Proc, Server, TempDir};

#[test]
fn unknown_peer_is_an_error_event() {
    let server = Server::start();
    let home = TempDir::new("carol");
    let mut carol = Proc::chat(server.addr, "carol", &home, &["nobody"]);
    let ev = carol.wait_event("error", &[("peer", "nobody")]);
    let reason = ev["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason: {ev}"));
    assert!(
        reason.contains("unknown"),
        "reason says the peer is unknown: {ev}"
    );
    assert!(carol.is_running(), "one failed peer does not end the chat");
    carol.close_stdin();
    let status = carol.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "{status}");
}
