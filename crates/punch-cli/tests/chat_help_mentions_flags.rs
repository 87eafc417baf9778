//! `punch --help` and `punch chat --help` succeed; the first lists the commands, the
//! second documents `--peer` and `--json` (and the other chat flags).

#[path = "chat_support.rs"]
mod support;

use std::time::Duration;

use support::run;

const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn top_level_help_lists_the_commands() {
    let (status, out, err) = run(&["--help"], TIMEOUT);
    assert!(status.success(), "{status}: {err}");
    for word in ["chat", "server", "demo", "--verbose"] {
        assert!(out.contains(word), "--help mentions {word}:\n{out}");
    }
}

#[test]
fn chat_help_documents_peer_and_json() {
    let (status, out, err) = run(&["chat", "--help"], TIMEOUT);
    assert!(status.success(), "{status}: {err}");
    for flag in ["--peer", "--json", "--server", "--name", "--home", "--bind"] {
        assert!(out.contains(flag), "chat --help mentions {flag}:\n{out}");
    }
}
