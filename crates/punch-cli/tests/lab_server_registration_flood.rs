//! Lab: a registration flood of 50,000 distinct clients (names and keys, 500 source ports
//! of one host in the core namespace, `lab/register-flood.py`, each registering as a real
//! client does: challenged, then signed) while alice and bob, behind their own NATs,
//! register and chat: their messages must all arrive, once and in order.
//!
//! Twice: with the per-source registration limit off (`--register-rate 0`), the server takes
//! what it can (a test build logging every frame, on two cores shared with the suite, does
//! not keep up: the rest is lost in queues, and counted) and its memory per registration is
//! printed; with the
//! default limit, the flooding host gets its burst and rate and the rest is dropped
//! unanswered (the rejections are counted and printed), while the peers are served.
mod lab;

use std::time::Duration;

use lab::abuse::{record, status_kib, Script};
use lab::relay::{assert_complete, Pair, STREAM_GAP};
use lab::{require_lab, Lab};

const CLIENTS: u64 = 50_000;
const RATE: &str = "5000";
const MESSAGES: usize = 60;

/// One flood with the server started with `server_extra`: (answered, memory growth KiB).
fn flood(prefix: &str, server_extra: &[&str]) -> (u64, u64, u64) {
    let test = format!(
        "registration flood ({})",
        if server_extra.is_empty() {
            "default limits"
        } else {
            "no limit"
        }
    );
    let pr = "port-restricted-cone";
    let lab = Lab::pair(prefix, pr, pr);
    let mut pair = Pair::start_full(&lab, &lab.ns("a"), &lab.ns("b"), "auto", &[], server_extra);
    let server_pid = pair.server.as_ref().expect("server").pid();
    pair.connected();
    let before = status_kib(server_pid, "VmRSS:").expect("server RSS");
    let srv = lab.get("SRV_IP").to_string();
    let clients = CLIENTS.to_string();
    let mut script = Script::start(
        &lab,
        "core",
        "register-flood.py",
        &[srv.as_str(), "3478", clients.as_str(), RATE, "500"],
    );
    pair.stream(MESSAGES, STREAM_GAP, |_, _| {});
    let got = pair.received(MESSAGES, Duration::from_secs(30));
    assert_complete(&test, &got, MESSAGES, &pair);
    assert!(script.running(), "the flood ended before the chat did");
    let report = script.report();
    let server = pair.server.as_mut().expect("server");
    assert!(server.running(), "the server died under the flood");
    let after = status_kib(server_pid, "VmRSS:").expect("server RSS");
    let peak = status_kib(server_pid, "VmHWM:").expect("server peak RSS");
    let n = |k: &str| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {report}"))
    };
    let (sent, answered, challenged) = (n("sent"), n("registered"), n("challenged"));
    assert_eq!(sent, CLIENTS, "{report}");
    assert_eq!(n("refused"), 0, "signed registrations refused: {report}");
    let growth = after.saturating_sub(before);
    record(&format!(
        "{test}: {sent} clients in {}s, {challenged} challenged, {answered} registered \
         (signed), {} dropped unanswered; chat {}/{MESSAGES} in order; server RSS {:.1} -> \
         {:.1} MiB (peak {:.1}), {:.0} bytes per registration",
        report["seconds"],
        sent - answered,
        got.len(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        peak as f64 / 1024.0,
        if answered > 0 {
            growth as f64 * 1024.0 / answered as f64
        } else {
            f64::NAN
        },
    ));
    (sent, answered, growth)
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn without_a_limit_the_server_takes_what_it_can_and_peers_still_chat() {
    require_lab("registration flood");
    let (sent, answered, growth) = flood("rflood", &["--register-rate", "0"]);
    // Far more than the limit lets one host through (about 250: the other test), and
    // enough for the memory figure. A test build logging every frame at debug level, on
    // cores shared with the rest of the suite, takes a few thousand of the 50,000 in 10 s.
    assert!(answered >= 1_000, "{answered} of {sent} answered");
    assert!(
        growth > 0,
        "memory did not grow with {answered} registrations"
    );
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn with_the_default_limit_one_host_gets_its_share_and_peers_still_chat() {
    require_lab("registration flood");
    let (sent, answered, _) = flood("rfloodl", &[]);
    // 20/s with bursts of 40 over the flood's ~10 s: a few hundred at most.
    assert!(answered > 0, "the host's burst is answered");
    assert!(
        answered < 1_000,
        "{answered} of {sent} answered: the limit did not hold"
    );
}
