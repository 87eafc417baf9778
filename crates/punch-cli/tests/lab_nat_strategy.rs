//! Lab: punching follows from the NAT types. When both peers know their NAT (the server
//! has a second address, so discovery works) and the types rule out a direct path, the
//! answer comes at once instead of after the punching deadline; where a path is possible,
//! punching goes ahead as always. UDP only (`--transport udp`): with `auto`, a direct TCP
//! attempt would follow the UDP refusal.
mod lab;

use std::time::{Duration, Instant};

use lab::relay::{chat_args, code, record};
use lab::require_lab;
use lab::{tempdir, Lab, Proc, EVENT_TIMEOUT};

/// The punching deadline given to the peers: the hopeless case must answer well before.
const DEADLINE_SECS: &str = "10";

fn spawn(name: &str, ns: &str, args: &[String]) -> Proc {
    Proc::spawn(
        name,
        ns,
        &args.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    )
}

fn run(a: &str, b: &str, expect_direct: bool) {
    let test = format!("NAT-aware punching: {a} x {b}");
    require_lab(&test);
    let lab = Lab::pair(&format!("ns{}{}", code(a), code(b)), a, b);
    let addr = format!("{}:3478", lab.get("SRV_IP"));
    let _server = Proc::spawn(
        "server",
        &lab.ns("srv"),
        &[
            "server",
            "--listen",
            &addr,
            "--alt-addr",
            lab.get("SRV_IP2"),
        ],
    );
    let home = tempdir(&lab.prefix);
    let extra = ["--punch-timeout", DEADLINE_SECS, "--transport", "udp"];
    let mut alice = spawn(
        "alice",
        &lab.ns("a"),
        &chat_args(&addr, "alice", &format!("{home}/a"), "never", &extra),
    );
    // alice's NAT type reaches the server before bob asks for her.
    let nat = alice.wait_event("nat", EVENT_TIMEOUT);
    assert!(
        nat.is_some(),
        "{test}: alice found no NAT type: {}",
        alice.events_text()
    );
    let mut extra_b = extra.to_vec();
    extra_b.extend(["--peer", "alice"]);
    let started = Instant::now();
    let mut bob = spawn(
        "bob",
        &lab.ns("b"),
        &chat_args(&addr, "bob", &format!("{home}/b"), "never", &extra_b),
    );
    let got = bob.wait_for(EVENT_TIMEOUT + Duration::from_secs(5), |v| {
        v["event"] == "connected" || v["event"] == "error"
    });
    let secs = started.elapsed().as_secs_f64();
    let Some((_, ev)) = got else {
        panic!("{test}: bob reported nothing: {}", bob.events_text());
    };
    if expect_direct {
        assert_eq!(ev["event"], "connected", "{test}: {}", bob.events_text());
        assert_eq!(ev["path"], "direct", "{test}: {ev}");
        record(&format!("{test:<48} direct as expected, after {secs:.1} s"));
    } else {
        assert_eq!(ev["event"], "error", "{test}: {}", bob.events_text());
        let reason = ev["reason"].as_str().unwrap_or("");
        assert!(
            reason.contains("no direct path possible"),
            "{test}: {reason}"
        );
        assert!(
            secs < 6.0,
            "{test}: the answer took {secs:.1} s, the punching deadline is {DEADLINE_SECS} s"
        );
        record(&format!(
            "{test:<48} refused after {secs:.1} s (deadline {DEADLINE_SECS} s): {reason}"
        ));
    }
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn symmetric_pair_is_refused_at_once() {
    run("symmetric", "symmetric", false);
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn symmetric_with_port_restricted_is_refused_at_once() {
    run("port-restricted-cone", "symmetric", false);
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn possible_pair_still_punches() {
    run("port-restricted-cone", "full-cone", true);
}
