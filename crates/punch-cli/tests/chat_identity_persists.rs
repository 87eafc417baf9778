//! The identity key lives in `--home`: created on the first run, reused on the next (the
//! `registered` event shows the same key), and another home means another key.

#[path = "chat_support.rs"]
mod support;

use std::time::Duration;

use support::{Proc, Server, TempDir};

fn registered_key(server: &Server, name: &str, home: &TempDir) -> String {
    let mut p = Proc::chat(server.addr, name, home, &[]);
    let ev = p.wait_event("registered", &[("name", name)]);
    p.close_stdin();
    let status = p.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status {status}");
    let key = ev["key"].as_str().unwrap_or_else(|| panic!("no key: {ev}"));
    assert_eq!(key.len(), 64, "hex Ed25519 key: {key}");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    key.to_string()
}

#[test]
fn key_is_created_once_and_reused() {
    let server = Server::start();
    let home = TempDir::new("alice");
    let key_file = home.path().join("identity.key");
    assert!(!key_file.exists());

    let first = registered_key(&server, "alice", &home);
    assert!(
        key_file.exists(),
        "the first run creates {}",
        key_file.display()
    );
    let stored = std::fs::read(&key_file).unwrap();

    let second = registered_key(&server, "alice", &home);
    assert_eq!(first, second, "the second run reuses the key");
    assert_eq!(
        std::fs::read(&key_file).unwrap(),
        stored,
        "the file is not rewritten"
    );

    let other_home = TempDir::new("alice-elsewhere");
    let other = registered_key(&server, "alice2", &other_home);
    assert_ne!(first, other, "another home, another key");
}
