//! `punch demo` runs a server and two peers in one process and exits 0, saying how the
//! peers connected and that messages went both ways; on loopback, where punching always
//! works, the path it ends on and reports is the direct one.

#[path = "chat_support.rs"]
mod support;

use std::time::Duration;

use support::run;

const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn demo_connects_and_delivers_both_ways() {
    let (status, out, err) = run(&["demo"], TIMEOUT);
    assert!(status.success(), "{status}\nstdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("connected in"), "{out}");
    assert!(
        out.contains("direct path") || out.contains("relay path"),
        "names the path: {out}"
    );
    assert!(out.contains("alice received: [bob]"), "{out}");
    assert!(out.contains("bob received:   [alice]"), "{out}");
}

#[test]
fn demo_reports_the_direct_path() {
    // Several runs: the path reported is a race, one run proves little.
    for _ in 0..5 {
        let (status, out, err) = run(&["demo"], TIMEOUT);
        assert!(status.success(), "{status}\nstdout:\n{out}\nstderr:\n{err}");
        // It may start on the relay; the path it ends on, and says so, is the direct one.
        assert!(out.contains("path now: direct"), "{out}");
        assert!(out.contains("delivered over the direct path"), "{out}");
    }
}
