//! IPv6 scenarios: dual-stack and IPv6-only sites (`punch-lab up ... TYPE+v6 | v6-only`),
//! a dual-stack `punch server` (its default `[::]:3478`) that every peer reaches by the
//! name `srv.lab`, which resolves to both families (Happy Eyeballs picks one), and a
//! counted stream of messages each run.

use std::time::Duration;

use serde_json::Value;

use super::relay::{assert_complete, Pair};
use super::{median, record_to, require_lab, Lab, Proc, RUNS};

/// Messages bob sends each run; all must reach alice once and in order.
pub const MESSAGES: usize = 20;

/// What one run showed.
#[derive(Debug, Clone)]
pub struct Run6 {
    /// The families alice and bob registered over (`registered` events).
    pub registered: (String, String),
    /// Bob's `connected` event.
    pub connected: Value,
    /// Bob's path events after it, in order.
    pub paths: Vec<Value>,
    /// Milliseconds from bob's start to its `connected` event.
    pub connect_ms: f64,
}

/// One run: a fresh lab of `a` x `b`, the dual-stack server, alice in site a, bob in
/// site b asking for alice with `--relay RELAY`; bob streams [`MESSAGES`] numbered lines
/// (all must arrive, once, in order) and alice answers.
pub fn run(test: &str, prefix: &str, a: &str, b: &str, relay: &str, extra: &[&str]) -> Run6 {
    let lab = Lab::pair(prefix, a, b);
    // Two SO_REUSEPORT workers: a client's two registrations (one per family) may then
    // reach the registry in either order, so the record may point at either family.
    let server = Proc::spawn("server", &lab.ns("srv"), &["server", "--workers", "2"]);
    let name = lab.get("SRV_NAME").to_string();
    let mut pair = Pair::with_server(&lab, &lab.ns("a"), &lab.ns("b"), relay, extra, server, name);
    let connected = pair.connected();
    let connect_ms = pair.started.elapsed().as_secs_f64() * 1000.0;
    let family = |p: &mut Proc| {
        p.wait_event("registered", Duration::from_secs(1))
            .map(|(_, v)| v["family"].as_str().unwrap_or("?").to_string())
            .unwrap_or_else(|| "?".into())
    };
    let registered = (family(&mut pair.alice), family(&mut pair.bob));
    pair.stream(MESSAGES, Duration::from_millis(20), |_, _| {});
    let got = pair.received(MESSAGES, Duration::from_secs(10));
    assert_complete(test, &got, MESSAGES, &pair);
    pair.answer_back(test);
    pair.bob.drain();
    let paths = pair
        .bob
        .seen
        .iter()
        .filter(|(_, v)| v["event"] == "path")
        .map(|(_, v)| v.clone())
        .collect();
    Run6 {
        registered,
        connected,
        paths,
        connect_ms,
    }
}

/// [`RUNS`] runs of `a` x `b` (chat options `extra` on both sides), each checked by
/// `check` (which panics with the reason); records one line in
/// target/lab-results/ipv6.txt with what bob connected over.
pub fn scenario(
    test: &str,
    code: &str,
    (a, b): (&str, &str),
    relay: &str,
    extra: &[&str],
    check: impl Fn(&Run6),
) {
    require_lab(test);
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let r = run(test, &format!("v6{code}{i}"), a, b, relay, extra);
        check(&r);
        runs.push(r);
    }
    let over: Vec<String> = runs
        .iter()
        .map(|r| {
            let last = final_path(r);
            format!(
                "{}/{}/{}",
                last["path"].as_str().unwrap_or("?"),
                last["transport"].as_str().unwrap_or("?"),
                last["family"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let reg: Vec<String> = runs
        .iter()
        .map(|r| format!("{}+{}", r.registered.0, r.registered.1))
        .collect();
    record_to(
        "ipv6.txt",
        &format!(
            "{test:<44} {}/{} runs, connected {} (registered {}), median connect {:.1} ms, \
             {MESSAGES}/{MESSAGES} messages in order each run (final path/transport/family)",
            runs.len(),
            RUNS,
            over.join(","),
            reg.join(","),
            median(runs.iter().map(|r| r.connect_ms).collect()),
        ),
    );
}

/// Bob's path at the end of the run: its last path event, else its connected event.
pub fn final_path(r: &Run6) -> &Value {
    r.paths.last().unwrap_or(&r.connected)
}

/// Bob ends on a direct path over IPv6, and never left it once there.
pub fn direct_over_ipv6(test: &str, r: &Run6) {
    let last = final_path(r);
    assert_eq!(last["path"], "direct", "{test}: {last}\n all: {r:?}");
    assert_eq!(last["family"], "ipv6", "{test}: {last}\n all: {r:?}");
    let first_direct = std::iter::once(&r.connected)
        .chain(&r.paths)
        .position(|p| p["path"] == "direct")
        .unwrap_or(0);
    for p in std::iter::once(&r.connected)
        .chain(&r.paths)
        .skip(first_direct)
    {
        assert_eq!(p["path"], "direct", "{test}: left the direct path: {p}");
    }
}
