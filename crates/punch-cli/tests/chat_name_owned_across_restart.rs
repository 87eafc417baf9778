//! `punch server --data-dir DIR` keeps which key owns each name: alice registers, the
//! server stops (SIGTERM) and starts again on the same directory, and a second key asking
//! for "alice" is refused with a clear error while alice herself is welcome. Once the
//! operator runs `punch server release alice`, the other key may take the name.

#[path = "chat_support.rs"]
mod support;

use std::time::Duration;

use support::{run, Proc, Server, TempDir};

const EXIT: Duration = Duration::from_secs(5);

fn registers(server: &Server, home: &TempDir) {
    let mut p = Proc::chat(server.addr, "alice", home, &[]);
    p.wait_event("registered", &[]);
    p.close_stdin();
    let status = p.wait_exit(EXIT);
    assert!(status.success(), "{status}: {}", p.stderr());
}

fn refused(server: &Server, home: &TempDir) -> String {
    let mut p = Proc::chat(server.addr, "alice", home, &[]);
    let ev = p.wait_event("error", &[]);
    assert!(
        !p.wait_exit(EXIT).success(),
        "a refused chat exits non-zero"
    );
    ev["reason"].as_str().unwrap_or_default().to_string()
}

fn stop(mut server: Server) {
    let status = server.proc.terminate(EXIT);
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
}

#[test]
fn a_name_stays_with_its_key_until_released() {
    let data = TempDir::new("srvdata");
    let opts = ["--data-dir", data.as_str()];
    let (owner, other) = (TempDir::new("owner"), TempDir::new("other"));

    let server = Server::start_with(&opts);
    registers(&server, &owner);
    stop(server);

    let server = Server::start_with(&opts);
    let reason = refused(&server, &other);
    assert!(
        reason.contains("belongs to another key"),
        "the refusal says why: {reason}"
    );
    registers(&server, &owner);
    stop(server);

    let (status, stdout, stderr) = run(
        &["server", "release", "alice", "--data-dir", data.as_str()],
        EXIT,
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("released \"alice\""), "{stdout}");

    let server = Server::start_with(&opts);
    registers(&server, &other);
}
